package partition

import (
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
func TestLastStableOffsetNeverPassesAnOpenTransaction(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(map[bool]string{false: "hw-follows-appends", true: "hw-durable"}[durable], func(t *testing.T) {
			testLSONeverPassesOpenTxn(t, durable)
		})
	}
}

func testLSONeverPassesOpenTxn(t *testing.T, durable bool) {
	cfg := DefaultConfig()
	cfg.DurableHighWatermark = durable
	p, err := Open(Options{FS: vfs.NewMem(), Dir: "t-0", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
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
