package partition

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/vfs"
)

// TestLastStableOffsetNeverPassesAnOpenTransaction opens and aborts
// transactions one after another (data batch at 2k, abort marker at 2k+1)
// while another goroutine samples the last stable offset. A sample that
// covers the data batch of a transaction whose marker is not yet in the log
// would let a read_committed fetch return records of a transaction that is
// still open, with no aborted-transaction entry for them. The check reads
// the log end after the last stable offset: if it is still 2k+1, the marker
// was not appended when the last stable offset was computed. Run it with
// -race: the ordering between the log end, the first unstable offset and
// the high watermark is what it checks.
// With a durable high watermark a third goroutine flushes all along, so
// the fsyncs race the appends too.
//
// Under an external high watermark (a cluster's), the replication layer
// moves it as far as it may at every chance: from the partition's
// callback, and from another goroutine all along.
func TestLastStableOffsetNeverPassesAnOpenTransaction(t *testing.T) {
	for _, external := range []bool{false, true} {
		for _, durable := range []bool{false, true} {
			name := map[bool]string{false: "hw-follows-appends", true: "hw-durable"}[durable]
			if external {
				name += "-external"
			}
			t.Run(name, func(t *testing.T) {
				testLSONeverPassesOpenTxn(t, durable, external)
			})
		}
	}
}

func testLSONeverPassesOpenTxn(t *testing.T, durable, external bool) {
	cfg := DefaultConfig()
	cfg.DurableHighWatermark = durable
	p, err := Open(Options{FS: vfs.NewMem(), Dir: "t-0", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if external {
		p.SetExternalHighWatermark(true)
		p.SetOnLocalEnd(func() { p.AdvanceHighWatermark(math.MaxInt64) })
	}
	const (
		pid  = 42
		txns = 500
	)
	var (
		stop       atomic.Bool
		wg         sync.WaitGroup
		violations atomic.Int64
		samples    atomic.Int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			lso := p.LastStableOffset()
			end := p.Log().EndOffset()
			samples.Add(1)
			runtime.Gosched()
			// end odd: the data batch at end-1 is in the log, its marker
			// is not; the last stable offset must not be past it.
			if end%2 == 1 && lso >= end {
				violations.Add(1)
			}
		}
	}()
	if durable {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := p.Flush(); err != nil {
					t.Error(err)
					return
				}
				runtime.Gosched()
			}
		}()
	}
	if external {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				p.AdvanceHighWatermark(math.MaxInt64)
				runtime.Gosched()
			}
		}()
	}
	for k := range txns {
		if _, err := p.Append(txnBatch(t, pid, 0, int32(k), 1, 1000)); err != nil {
			t.Fatal(err)
		}
		if _, err := p.WriteMarker(pid, 0, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := violations.Load(); n > 0 {
		t.Fatalf("the last stable offset was past an open transaction in %d of %d samples", n, samples.Load())
	}
	t.Logf("%d samples", samples.Load())
}

// TestDurableHighWatermark: with DurableHighWatermark the high watermark
// (and so the last stable offset, ListOffsets latest and what fetches
// return) stays at the last fsynced offset; WaitDurable and Flush move it
// and wake the watchers; OnUnflushed is told once per Flush.
func TestDurableHighWatermark(t *testing.T) {
	var told []*Partition
	fs := vfs.NewMem()
	cfg := DefaultConfig()
	cfg.DurableHighWatermark = true
	p, err := Open(Options{FS: fs, Dir: "t-0", Config: cfg,
		OnUnflushed: func(p *Partition) { told = append(told, p) }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Close() }()
	wake := make(chan struct{}, 1)
	p.Watch(wake)
	res, err := p.Append(idemBatch(t, 1, 0, 0, 3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(idemBatch(t, 1, 0, 3, 2)); err != nil {
		t.Fatal(err)
	}
	if hw, end := p.HighWatermark(), p.Log().EndOffset(); hw != 0 || end != 5 {
		t.Fatalf("after two appends: high watermark %d, log end %d; want 0 and 5", hw, end)
	}
	if p.LastStableOffset() != 0 {
		t.Fatalf("last stable offset %d before the fsync", p.LastStableOffset())
	}
	if len(told) != 1 {
		t.Fatalf("OnUnflushed told %d times, want once until a Flush", len(told))
	}
	select {
	case <-wake:
		t.Fatal("watcher woken before the high watermark moved")
	default:
	}
	if err := p.WaitDurable(res.LastOffset); err != nil {
		t.Fatal(err)
	}
	// One fsync covers both batches (group commit): the high watermark
	// moves over everything fsynced.
	if hw := p.HighWatermark(); hw != 5 {
		t.Fatalf("high watermark %d after WaitDurable, want 5", hw)
	}
	select {
	case <-wake:
	default:
		t.Fatal("watcher not woken when the high watermark moved")
	}
	if _, err := p.Append(idemBatch(t, 1, 0, 5, 1)); err != nil {
		t.Fatal(err)
	}
	// The flusher was told once and has not flushed yet.
	if len(told) != 1 {
		t.Fatalf("OnUnflushed told %d times before a Flush, want once", len(told))
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if hw := p.HighWatermark(); hw != 6 {
		t.Fatalf("high watermark %d after Flush, want 6", hw)
	}
	if _, err := p.Append(idemBatch(t, 1, 0, 6, 1)); err != nil {
		t.Fatal(err)
	}
	if len(told) != 2 {
		t.Fatalf("OnUnflushed told %d times after a Flush and an append, want 2", len(told))
	}
	// A crash keeps everything below the high watermark.
	p2, err := Open(Options{FS: fs.Crash(), Dir: "t-0", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if end := p2.Log().EndOffset(); end < 6 {
		t.Fatalf("log end %d after a crash, below the high watermark 6 consumers saw", end)
	}
}

// blockingFS blocks the first op on a path with the given suffix once
// armed, until release is called (any number of times), telling blocked
// when it does.
func blockingFS(op vfs.Op, suffix string) (fs vfs.FS, arm func(), blocked chan struct{}, release func()) {
	blocked = make(chan struct{})
	released := make(chan struct{})
	var once, releaseOnce sync.Once
	var armed atomic.Bool
	fs = vfs.NewFault(vfs.NewMem(), func(o vfs.Op, path string) error {
		if o == op && armed.Load() && strings.HasSuffix(path, suffix) {
			once.Do(func() {
				close(blocked)
				<-released
			})
		}
		return nil
	})
	return fs, func() { armed.Store(true) }, blocked, func() { releaseOnce.Do(func() { close(released) }) }
}

// within fails the test unless f returns within a generous bound: a call
// that waits for a blocked fsync never returns before release.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s waited for a blocked disk operation", what)
	}
}

// TestCheckpointFsyncOutsideAppendLock: appends go on while a producer
// snapshot's fsync is stuck (on main the snapshot's three fsyncs ran under
// the append lock, every minute, in every partition).
func TestCheckpointFsyncOutsideAppendLock(t *testing.T) {
	fs, arm, blocked, release := blockingFS(vfs.OpSync, ".snapshot.tmp")
	p, err := Open(Options{FS: fs, Dir: "t-0", Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Close() }()
	defer release() // before Close, also when the test fails
	if _, err := p.Append(idemBatch(t, 1, 0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	arm()
	cp := make(chan error, 1)
	go func() { cp <- p.Checkpoint() }()
	<-blocked
	within(t, "an append during a producer snapshot", func() {
		if _, err := p.Append(idemBatch(t, 1, 0, 1, 1)); err != nil {
			t.Error(err)
		}
	})
	release()
	if err := <-cp; err != nil {
		t.Fatal(err)
	}
}

// TestFetchStateWithoutAppendLock: what a fetch reads of a partition (the
// leader epoch, the high watermark, the last stable offset) does not wait
// for an append in progress (on main the leader epoch took the append lock).
func TestFetchStateWithoutAppendLock(t *testing.T) {
	fs, arm, blocked, release := blockingFS(vfs.OpWrite, ".log")
	p, err := Open(Options{FS: fs, Dir: "t-0", Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Close() }()
	defer release() // before Close, also when the test fails
	arm()
	appended := make(chan error, 1)
	go func() {
		_, err := p.Append(idemBatch(t, 1, 0, 0, 1))
		appended <- err
	}()
	<-blocked
	within(t, "reading the leader epoch and offsets during an append", func() {
		p.LeaderEpoch()
		p.HighWatermark()
		p.LastStableOffset()
	})
	release()
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
}

// TestExternalHighWatermark: handed to the replication layer, the high
// watermark no longer follows appends or fsyncs; AdvanceHighWatermark moves
// it, never past LocalEnd (the published end, and under
// DurableHighWatermark the fsynced one) and never down, waking the
// watchers; the callback is told when LocalEnd may have moved (after an
// append, or after an fsync when durable). Taken back, it catches up.
func TestExternalHighWatermark(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable=%v", durable), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DurableHighWatermark = durable
			p, err := Open(Options{FS: vfs.NewMem(), Dir: "t-0", Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if _, err := p.Append(idemBatch(t, 1, 0, 0, 2)); err != nil {
				t.Fatal(err)
			}
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			if hw := p.HighWatermark(); hw != 2 {
				t.Fatalf("high watermark %d before the switch, want 2", hw)
			}
			p.SetExternalHighWatermark(true)
			var told atomic.Int64
			p.SetOnLocalEnd(func() { told.Add(1) })
			wake := make(chan struct{}, 1)
			p.Watch(wake)
			res, err := p.Append(idemBatch(t, 1, 0, 2, 3))
			if err != nil {
				t.Fatal(err)
			}
			if hw := p.HighWatermark(); hw != 2 {
				t.Fatalf("high watermark %d after an append, want it left at 2", hw)
			}
			wantLocal := int64(5)
			if durable {
				wantLocal = 2 // not fsynced yet
				if n := told.Load(); n != 0 {
					t.Fatalf("told %d times before an fsync, want 0", n)
				}
				if err := p.WaitDurable(res.LastOffset); err != nil {
					t.Fatal(err)
				}
				if hw := p.HighWatermark(); hw != 2 {
					t.Fatalf("high watermark %d after an fsync, want it left at 2", hw)
				}
			}
			if n := told.Load(); n == 0 {
				t.Fatal("the callback was not told that the local end moved")
			}
			if durable {
				wantLocal = 5
			}
			if got := p.LocalEnd(); got != wantLocal {
				t.Fatalf("local end %d, want %d", got, wantLocal)
			}
			select {
			case <-wake:
				t.Fatal("watcher woken although the high watermark did not move")
			default:
			}
			if !p.AdvanceHighWatermark(4) || p.HighWatermark() != 4 {
				t.Fatalf("AdvanceHighWatermark(4): high watermark %d", p.HighWatermark())
			}
			select {
			case <-wake:
			default:
				t.Fatal("watcher not woken when the high watermark moved")
			}
			if p.AdvanceHighWatermark(3) || p.HighWatermark() != 4 {
				t.Fatalf("AdvanceHighWatermark(3) moved the high watermark down to %d", p.HighWatermark())
			}
			if !p.AdvanceHighWatermark(100) || p.HighWatermark() != 5 {
				t.Fatalf("AdvanceHighWatermark(100): high watermark %d, want the local end 5", p.HighWatermark())
			}
			// Past what is fsynced: the local end holds it back.
			if _, err := p.Append(idemBatch(t, 1, 0, 5, 1)); err != nil {
				t.Fatal(err)
			}
			p.AdvanceHighWatermark(100)
			want := map[bool]int64{false: 6, true: 5}[durable]
			if hw := p.HighWatermark(); hw != want {
				t.Fatalf("high watermark %d after an unflushed append, want %d", hw, want)
			}
			if p.LastStableOffset() != want {
				t.Fatalf("last stable offset %d, want %d", p.LastStableOffset(), want)
			}
			// Back to a single node: it catches up with the local end.
			p.SetExternalHighWatermark(false)
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			if hw := p.HighWatermark(); hw != 6 {
				t.Fatalf("high watermark %d once taken back, want 6", hw)
			}
			if _, err := p.Append(idemBatch(t, 1, 0, 6, 1)); err != nil {
				t.Fatal(err)
			}
			if !durable && p.HighWatermark() != 7 {
				t.Fatalf("high watermark %d after an append once taken back, want 7", p.HighWatermark())
			}
		})
	}
}

// TestFollowerRefusesClientWrites: a follower answers client appends,
// coordinator appends and markers with ErrNotLeader, and becomes leader
// again; a leader refuses replicated batches with ErrNotFollower.
func TestFollowerRefusesClientWrites(t *testing.T) {
	p, err := Open(Options{FS: vfs.NewMem(), Dir: "t-0", Config: DefaultConfig(), Follower: true, LeaderEpoch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.IsLeader() || p.LeaderEpoch() != 4 {
		t.Fatalf("opened as a follower: leader %v, epoch %d", p.IsLeader(), p.LeaderEpoch())
	}
	if e, off := p.EndOffsetForEpoch(4); e != -1 || off != -1 {
		t.Fatalf("a follower assigned its own epoch: %d %d", e, off)
	}
	if _, err := p.Append(idemBatch(t, 1, 0, 0, 1)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Append on a follower: %v", err)
	}
	if _, err := p.AppendFromCoordinator(txnBatch(t, 1, 0, -1, 1, 0)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AppendFromCoordinator on a follower: %v", err)
	}
	if _, err := p.WriteMarker(1, 0, true, 0); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("WriteMarker on a follower: %v", err)
	}
	if p.Log().EndOffset() != 0 {
		t.Fatalf("a follower's log took %d records", p.Log().EndOffset())
	}
	if err := p.BecomeLeader(5); err != nil {
		t.Fatal(err)
	}
	if !p.IsLeader() {
		t.Fatal("not leader after BecomeLeader")
	}
	res, err := p.Append(idemBatch(t, 1, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AppendReplicated(nil); !errors.Is(err, ErrNotFollower) {
		t.Fatalf("AppendReplicated on the leader: %v", err)
	}
	if err := p.BecomeFollower(6); err != nil {
		t.Fatal(err)
	}
	// An acks=all wait on a replica that stopped leading.
	if err := p.WaitDurable(res.LastOffset); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("WaitDurable after BecomeFollower: %v", err)
	}
	if _, err := p.Append(idemBatch(t, 1, 0, 1, 1)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Append after BecomeFollower: %v", err)
	}
	if e, off := p.EndOffsetForEpoch(5); e != 5 || off != 1 {
		t.Fatalf("epoch 5 on a follower: %d %d, want 5 and the log end 1", e, off)
	}
	if e, off := p.EndOffsetForEpoch(6); e != -1 || off != -1 {
		t.Fatalf("epoch 6, which the follower's log does not have: %d %d, want -1 -1", e, off)
	}
}
