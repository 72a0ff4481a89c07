package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// replica is a partition on a MemFS with a clock the test sets.
type replica struct {
	t    testing.TB
	fs   *vfs.MemFS
	p    *Partition
	now  time.Time
	opts Options
}

func newReplica(t testing.TB, follower bool, epoch int32) *replica {
	r := &replica{t: t, fs: vfs.NewMem(), now: time.UnixMilli(1_700_000_000_000)}
	r.opts = Options{Dir: "t-0", Config: DefaultConfig(), Follower: follower, LeaderEpoch: epoch,
		Now: func() time.Time { return r.now }}
	r.open(r.fs)
	return r
}

func (r *replica) open(fs vfs.FS) {
	r.t.Helper()
	o := r.opts
	o.FS = fs
	p, err := Open(o)
	if err != nil {
		r.t.Fatal(err)
	}
	r.p = p
}

// crash cuts the power (after an fsync of everything when synced) and
// opens the replica again as a follower in epoch.
func (r *replica) crash(synced bool, epoch int32) {
	r.t.Helper()
	if synced {
		if err := r.p.Flush(); err != nil {
			r.t.Fatal(err)
		}
	}
	r.fs = r.fs.Crash()
	r.p.Close()
	r.opts.Follower, r.opts.LeaderEpoch = true, epoch
	r.open(r.fs)
}

func (r *replica) append(b []byte) AppendResult {
	r.t.Helper()
	res, err := r.p.Append(b)
	if err != nil {
		r.t.Fatal(err)
	}
	r.now = r.now.Add(time.Millisecond)
	return res
}

func (r *replica) marker(pid int64, commit bool) {
	r.t.Helper()
	if _, err := r.p.WriteMarker(pid, 0, commit, 5); err != nil {
		r.t.Fatal(err)
	}
	r.now = r.now.Add(time.Millisecond)
}

// logBytes is every batch of p's log from offset from, as fetches return
// them.
func logBytes(t testing.TB, p *Partition, from int64) []byte {
	t.Helper()
	var out []byte
	for off := max(from, p.Log().StartOffset()); off < p.Log().EndOffset(); {
		b, err := p.Log().ReadBatches(off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			break
		}
		out = append(out, b...)
		it := record.NewIter(b)
		for {
			_, h, ok := it.Next()
			if !ok {
				break
			}
			off = h.LastOffset() + 1
		}
	}
	return out
}

// replicate copies the leader's log to the follower as its fetcher would:
// from the follower's log end, in chunks of random sizes cut anywhere, so
// that most end in a partial batch.
func replicate(t *testing.T, leader, follower *Partition, rng *rand.Rand) {
	t.Helper()
	for follower.Log().EndOffset() < leader.Log().EndOffset() {
		all := logBytes(t, leader, follower.Log().EndOffset())
		n := len(all)
		if rng != nil {
			n = 1 + rng.Intn(len(all))
		}
		last, err := follower.AppendReplicated(all[:n])
		if err != nil {
			t.Fatal(err)
		}
		if last >= 0 && last+1 != follower.Log().EndOffset() {
			t.Fatalf("AppendReplicated returned %d, the log ends at %d", last, follower.Log().EndOffset())
		}
	}
}

// replicaState is what must be the same on a leader and its follower.
type replicaState struct {
	producers     []byte
	ongoing       map[int64]int64
	firstUnstable int64
	epochs        []epochEntry
	aborted       []log.AbortedTxn
	end           int64
	lso           int64
}

func stateOf(t testing.TB, p *Partition) replicaState {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	return replicaState{
		producers:     marshalSnapshot(p.producers),
		ongoing:       maps(p.ongoing),
		firstUnstable: p.firstUnstable.Load(),
		epochs:        append([]epochEntry(nil), p.epochs.entries...),
		aborted:       p.log.AbortedTxns(0, math.MaxInt64),
		end:           p.log.EndOffset(),
	}
}

func maps(m map[int64]int64) map[int64]int64 {
	out := make(map[int64]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// sameReplicas fails unless the two replicas' logs are byte-identical and
// their producer, transaction and epoch state the same.
func sameReplicas(t *testing.T, a, b *Partition, what string) {
	t.Helper()
	if !bytes.Equal(logBytes(t, a, 0), logBytes(t, b, 0)) {
		t.Fatalf("%s: the logs differ (ends %d and %d)", what, a.Log().EndOffset(), b.Log().EndOffset())
	}
	sa, sb := stateOf(t, a), stateOf(t, b)
	if !bytes.Equal(sa.producers, sb.producers) {
		t.Fatalf("%s: producer state differs:\n%+v\n%+v", what, a.Producers(), b.Producers())
	}
	sa.producers, sb.producers = nil, nil
	if !reflect.DeepEqual(sa, sb) {
		t.Fatalf("%s: state differs:\n%+v\n%+v", what, sa, sb)
	}
}

// leaderWorkload appends, on a leader in epoch 1, idempotent, plain and
// transactional batches (committed, aborted while another is open, one
// left open), a coordinator's transactional batch, markers, and moves to
// epoch 2 halfway. It returns the last idempotent batch of producer 1,
// whose retry must be deduplicated, and where it went.
func leaderWorkload(t testing.TB, r *replica) ([]byte, AppendResult) {
	t.Helper()
	const ts = 1_700_000_000_000
	r.append(idemBatch(t, 1, 0, 0, 3))
	r.append(idemBatch(t, -1, -1, -1, 2))
	r.append(txnBatch(t, 3, 0, 0, 2, ts))
	r.append(idemBatch(t, 1, 0, 3, 2))
	r.marker(3, true)
	r.append(txnBatch(t, 4, 0, 0, 1, ts))
	r.append(txnBatch(t, 3, 0, 2, 1, ts))
	r.marker(4, false) // while 3's second transaction is open
	if err := r.p.BecomeLeader(2); err != nil {
		t.Fatal(err)
	}
	r.append(idemBatch(t, 2, 0, 0, 1))
	if _, err := r.p.AppendFromCoordinator(txnBatch(t, 6, 0, -1, 1, ts)); err != nil {
		t.Fatal(err)
	}
	r.marker(6, true)
	r.marker(3, false)
	r.append(txnBatch(t, 7, 0, 0, 2, ts)) // left open
	last := idemBatch(t, 1, 0, 5, 1)
	res := r.append(bytes.Clone(last))
	r.append(idemBatch(t, -1, -1, -1, 1))
	return last, res
}

// TestAppendReplicated: a follower that replays the leader's batches
// (fetched in chunks that end in partial batches) has the same log, byte
// for byte, and the same producer state, open transactions, aborted
// transactions and leader epochs; so does it after a power cut and a
// restart; and once leader it deduplicates a retry of a batch it only
// replicated.
func TestAppendReplicated(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			leader := newReplica(t, false, 1)
			defer func() { leader.p.Close() }()
			retry, orig := leaderWorkload(t, leader)
			follower := newReplica(t, true, 2)
			defer func() { follower.p.Close() }()
			replicate(t, leader.p, follower.p, rng)
			sameReplicas(t, leader.p, follower.p, "replicated")
			if lso := follower.p.LastStableOffset(); lso > stateOf(t, follower.p).firstUnstable {
				t.Fatalf("follower's last stable offset %d past its open transaction", lso)
			}
			if seed == 2 {
				// A snapshot midway: the restart below replays from it.
				if err := follower.p.Checkpoint(); err != nil {
					t.Fatal(err)
				}
			}
			follower.crash(true, 2)
			sameReplicas(t, leader.p, follower.p, "after a power cut")
			if err := follower.p.BecomeLeader(3); err != nil {
				t.Fatal(err)
			}
			d, err := follower.p.Append(retry)
			if err != nil || !d.Duplicate || d.BaseOffset != orig.BaseOffset || d.LastOffset != orig.LastOffset {
				t.Fatalf("retry on the new leader: %+v %v, want a duplicate at %d", d, err, orig.BaseOffset)
			}
			if _, err := follower.p.Append(idemBatch(t, 1, 0, 9, 1)); !errors.Is(err, ErrOutOfOrderSequence) {
				t.Fatalf("a gap on the new leader: %v", err)
			}
			if _, err := follower.p.Append(idemBatch(t, 1, 0, 6, 1)); err != nil {
				t.Fatalf("the next sequence on the new leader: %v", err)
			}
		})
	}
}

// TestAppendReplicatedChecks: nothing is appended from batches that fail
// a check, or that do not start at the log end; a batch past the end (a
// cleaned leader log) is taken; an empty or all-partial response appends
// nothing.
func TestAppendReplicatedChecks(t *testing.T) {
	leader := newReplica(t, false, 1)
	defer leader.p.Close()
	leaderWorkload(t, leader)
	all := logBytes(t, leader.p, 0)
	follower := newReplica(t, true, 2)
	defer follower.p.Close()
	first, _ := record.ParseHeader(all)
	// The first batch and part of the second.
	last, err := follower.p.AppendReplicated(all[:first.Size()+30])
	if err != nil || last != first.LastOffset() {
		t.Fatalf("a batch and a partial one: %d %v", last, err)
	}
	before := logBytes(t, follower.p, 0)
	rest := logBytes(t, leader.p, last+1)
	check := func(what string, b []byte, want error) {
		t.Helper()
		got, err := follower.p.AppendReplicated(b)
		if !errors.Is(err, want) || got != -1 {
			t.Fatalf("%s: %d %v, want %v", what, got, err, want)
		}
		if !bytes.Equal(logBytes(t, follower.p, 0), before) {
			t.Fatalf("%s: the log changed", what)
		}
	}
	check("nothing", nil, nil)
	check("a partial header", rest[:7], nil)
	check("a partial batch", rest[:40], nil)
	check("again from the start", all, ErrOffsetMismatch)
	flipped := bytes.Clone(rest)
	flipped[len(flipped)-1] ^= 1 // the last batch's CRC
	check("a corrupt batch last", flipped, ErrCorruptMessage)
	old := bytes.Clone(rest)
	old[16] = 1
	check("magic 1", old, ErrUnsupportedMagic)
	h, _ := record.ParseHeader(rest)
	twice := append(bytes.Clone(rest[:h.Size()]), rest[:h.Size()]...)
	check("a batch twice", twice, ErrCorruptMessage)
	short := bytes.Clone(rest)
	binary.BigEndian.PutUint32(short[8:], 20) // batch length below a header
	check("a short length", short, ErrCorruptMessage)
	// A gap: the leader's cleaner removed the offsets before the batch.
	gap := bytes.Clone(rest[:h.Size()])
	record.SetBaseOffset(gap, h.BaseOffset+10)
	if got, err := follower.p.AppendReplicated(gap); err != nil || got != h.LastOffset()+10 {
		t.Fatalf("a batch past the log end: %d %v", got, err)
	}
}

// divergence sets up KIP-101's case: replica b led epoch 1 and wrote a
// suffix (an idempotent batch, a transaction left open, a committed one)
// that a, its follower, did not fetch; a became leader in epoch 2 and
// wrote other batches (producer 1's retry among them). snapshot says where
// b took a producer snapshot: "none", "common" (below the divergence) or
// "suffix" (above it).
func divergence(t *testing.T, snapshot string) (a, b *replica, diverged int64) {
	t.Helper()
	const ts = 1_700_000_000_000
	b = newReplica(t, false, 1)
	a = newReplica(t, true, 1)
	b.append(idemBatch(t, 1, 0, 0, 2))
	b.append(txnBatch(t, 3, 0, 0, 1, ts))
	b.marker(3, false)
	b.append(txnBatch(t, 4, 0, 0, 1, ts))
	replicate(t, b.p, a.p, nil)
	diverged = b.p.Log().EndOffset()
	if snapshot == "common" {
		if err := b.p.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	// b's suffix in epoch 1.
	b.append(idemBatch(t, 1, 0, 2, 3))
	b.append(txnBatch(t, 5, 0, 0, 2, ts)) // open
	b.marker(4, true)
	b.append(idemBatch(t, -1, -1, -1, 4))
	if snapshot == "suffix" {
		if err := b.p.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	// a leads epoch 2.
	if err := a.p.BecomeLeader(2); err != nil {
		t.Fatal(err)
	}
	a.append(idemBatch(t, 2, 0, 0, 1))
	a.append(idemBatch(t, 1, 0, 2, 3)) // producer 1's retry of what b took
	a.marker(4, false)
	a.append(txnBatch(t, 6, 0, 0, 1, ts))
	return a, b, diverged
}

// TestDivergentSuffixTruncated: the old leader b comes back as a follower
// with an epoch-1 suffix the new leader a does not have. OffsetForLeaderEpoch
// on a (EndOffsetForEpoch of b's latest epoch) says where epoch 1 ended on
// a; b truncates there, fetches from a, and ends with the same log byte for
// byte and the same producer, transaction and epoch state (its open
// transaction from the suffix gone), whether b's producer snapshot was
// below the divergence, above it, or absent, and across a power cut right
// after the truncation.
func TestDivergentSuffixTruncated(t *testing.T) {
	for _, snapshot := range []string{"none", "common", "suffix"} {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/crash=%v", snapshot, crash), func(t *testing.T) {
				a, b, diverged := divergence(t, snapshot)
				defer func() { a.p.Close(); b.p.Close() }()
				if err := b.p.BecomeFollower(2); err != nil {
					t.Fatal(err)
				}
				latest, ok := b.p.epochs.latest()
				if !ok || latest.Epoch != 1 {
					t.Fatalf("b's latest epoch %+v", latest)
				}
				epoch, end := a.p.EndOffsetForEpoch(latest.Epoch)
				if epoch != 1 || end != diverged {
					t.Fatalf("OffsetForLeaderEpoch(1) on the new leader: %d %d, want 1 %d", epoch, end, diverged)
				}
				if err := b.p.TruncateTo(min(end, b.p.Log().EndOffset())); err != nil {
					t.Fatal(err)
				}
				if b.p.Log().EndOffset() != diverged || b.p.HighWatermark() > diverged {
					t.Fatalf("after the truncation: end %d, high watermark %d, want %d", b.p.Log().EndOffset(), b.p.HighWatermark(), diverged)
				}
				for _, pi := range b.p.Producers() {
					if pi.ID == 5 {
						t.Fatalf("producer 5 of the truncated suffix is still known: %+v", pi)
					}
				}
				if fu := stateOf(t, b.p).firstUnstable; fu != 4 {
					t.Fatalf("first unstable offset %d after the truncation, want 4 (producer 4's open transaction)", fu)
				}
				names, _ := b.fs.List("t-0")
				for _, n := range names {
					if off, ok := parseSnapshotName(n); ok && off > diverged {
						t.Fatalf("snapshot %s above the truncation left", n)
					}
				}
				if crash {
					b.crash(false, 2)
				}
				replicate(t, a.p, b.p, rand.New(rand.NewSource(7)))
				sameReplicas(t, a.p, b.p, "after the truncation and the fetches")
				// b takes over again: it deduplicates a's batches.
				if err := b.p.BecomeLeader(3); err != nil {
					t.Fatal(err)
				}
				if d, err := b.p.Append(idemBatch(t, 1, 0, 2, 3)); err != nil || !d.Duplicate {
					t.Fatalf("producer 1's retry on b: %+v %v", d, err)
				}
			})
		}
	}
}

// skipSyncFS passes everything to its FS, except that while on, File.Sync
// and SyncDir succeed without making anything durable: a partition whose
// truncation forgot its fsyncs.
type skipSyncFS struct {
	vfs.FS
	on *atomic.Bool
}

type skipSyncFile struct {
	vfs.File
	on *atomic.Bool
}

func (f skipSyncFile) Sync() error {
	if f.on.Load() {
		return nil
	}
	return f.File.Sync()
}

func (fs skipSyncFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return skipSyncFile{f, fs.on}, nil
}

func (fs skipSyncFS) Create(name string) (vfs.File, error) { return fs.wrap(fs.FS.Create(name)) }
func (fs skipSyncFS) OpenAppend(name string) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenAppend(name))
}

func (fs skipSyncFS) SyncDir(dir string) error {
	if fs.on.Load() {
		return nil
	}
	return fs.FS.SyncDir(dir)
}

// truncationSurvives writes a partition with producers and transactions,
// snapshots and fsyncs it, truncates it, cuts the power and reopens: it
// reports how the reopened partition differs from the truncated one.
// skip makes the truncation's fsyncs no-ops.
func truncationSurvives(t *testing.T, skip bool) error {
	mem := vfs.NewMem()
	on := new(atomic.Bool)
	r := &replica{t: t, fs: mem, now: time.UnixMilli(1_700_000_000_000)}
	r.opts = Options{Dir: "t-0", Config: DefaultConfig(), LeaderEpoch: 1, Now: func() time.Time { return r.now }}
	r.open(skipSyncFS{mem, on})
	defer func() { r.p.Close() }()
	leaderWorkload(t, r)
	if err := r.p.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	off := r.p.EpochStartOffset(2)
	on.Store(skip)
	if err := r.p.TruncateTo(off); err != nil {
		t.Fatal(err)
	}
	on.Store(false)
	want := stateOf(t, r.p)
	crashed := mem.Crash()
	r.p.Close()
	r.opts.Follower = true
	r.open(crashed)
	got := stateOf(t, r.p)
	if got.end != off {
		return fmt.Errorf("the log ends at %d after the power cut, truncated to %d: the suffix came back", got.end, off)
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("the state after the power cut differs:\n%+v\n%+v", got, want)
	}
	return nil
}

// TestTruncationSurvivesPowerCut: a power cut right after TruncateTo
// brings back none of the suffix: not its batches, not its producer
// snapshot, not its leader epoch. The twin, whose truncation skips its
// fsyncs, shows that the check catches a truncation that is not durable.
func TestTruncationSurvivesPowerCut(t *testing.T) {
	if err := truncationSurvives(t, false); err != nil {
		t.Fatal(err)
	}
	if err := truncationSurvives(t, true); err == nil {
		t.Fatal("a truncation without its fsyncs survived the power cut: the check cannot fail")
	} else {
		t.Logf("without the fsyncs: %v", err)
	}
}

// TestTruncateToEdges: a truncation at or past the log end
// cuts nothing but drops a leader epoch entry at the log end (an epoch
// this replica led without writing), as Kafka does; one inside a batch is
// refused and changes nothing.
func TestTruncateToEdges(t *testing.T) {
	r := newReplica(t, false, 1)
	defer r.p.Close()
	r.append(idemBatch(t, 1, 0, 0, 3))
	if err := r.p.BecomeLeader(2); err != nil {
		t.Fatal(err)
	}
	if err := r.p.BecomeFollower(3); err != nil {
		t.Fatal(err)
	}
	if err := r.p.TruncateTo(100); err != nil {
		t.Fatal(err)
	}
	if want := []epochEntry{{1, 0}}; !reflect.DeepEqual(r.p.epochs.entries, want) {
		t.Fatalf("epochs %v, want %v", r.p.epochs.entries, want)
	}
	if err := r.p.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, r.p)
	files, _ := r.fs.List("t-0")
	if err := r.p.TruncateTo(1); !errors.Is(err, log.ErrNotBatchBoundary) {
		t.Fatalf("truncate inside a batch: %v", err)
	}
	if got := stateOf(t, r.p); !reflect.DeepEqual(got, before) || r.p.LocalEnd() != 3 {
		t.Fatalf("a refused truncation changed the state:\n%+v\n%+v (local end %d)", got, before, r.p.LocalEnd())
	}
	if got, _ := r.fs.List("t-0"); !reflect.DeepEqual(got, files) {
		t.Fatalf("a refused truncation changed the files: %v, were %v", got, files)
	}
	if err := r.p.TruncateTo(-1); !errors.Is(err, log.ErrOffsetOutOfRange) {
		t.Fatalf("truncate to -1: %v", err)
	}
}

// TestTruncateFullyAndStartAt: a follower behind its leader's log start
// starts over there: empty log, no producer, no epoch, no snapshot, the
// high watermark at the offset; the leader's batches from there are taken,
// and a power cut keeps all of it.
func TestTruncateFullyAndStartAt(t *testing.T) {
	leader := newReplica(t, false, 1)
	defer leader.p.Close()
	leaderWorkload(t, leader)
	f := newReplica(t, true, 2)
	defer func() { f.p.Close() }()
	// The follower had some other history.
	other := newReplica(t, false, 0)
	other.append(txnBatch(t, 9, 0, 0, 2, 0))
	other.append(idemBatch(t, 8, 0, 0, 5))
	replicate(t, other.p, f.p, nil)
	other.p.Close()
	if err := f.p.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	start := leader.p.EpochStartOffset(2)
	wake := make(chan struct{}, 1)
	f.p.Watch(wake)
	if err := f.p.TruncateFullyAndStartAt(start); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		st := stateOf(t, f.p)
		if f.p.Log().StartOffset() != start || st.end != start || len(st.epochs) != 0 || len(st.ongoing) != 0 ||
			st.firstUnstable != math.MaxInt64 || len(f.p.Producers()) != 0 || len(st.aborted) != 0 {
			t.Fatalf("%s: %+v, start %d, %d producers", what, st, f.p.Log().StartOffset(), len(f.p.Producers()))
		}
		names, _ := f.fs.List("t-0")
		for _, n := range names {
			if _, ok := parseSnapshotName(n); ok {
				t.Fatalf("%s: snapshot %s left", what, n)
			}
		}
	}
	check("truncated")
	if hw := f.p.HighWatermark(); hw != start {
		t.Fatalf("high watermark %d, want %d", hw, start)
	}
	select {
	case <-wake:
	default:
		t.Fatal("watchers not woken when the high watermark moved")
	}
	f.crash(false, 2)
	check("after a power cut")
	replicate(t, leader.p, f.p, nil)
	if !bytes.Equal(logBytes(t, f.p, start), logBytes(t, leader.p, start)) {
		t.Fatal("the follower's log from the start differs from the leader's")
	}
	if e, off := f.p.EndOffsetForEpoch(2); e != 2 || off != leader.p.Log().EndOffset() {
		t.Fatalf("epoch 2 on the follower: %d %d", e, off)
	}
}

// TestAppendReplicatedLogAppendTime: under message.timestamp.type=
// LogAppendTime the leader notes its producers' batches with the time it
// stored, as its follower (and its own restart) reads them back: on main
// it noted the producer's timestamp, and a follower's producer state
// (the batches' timestamps, the last timestamp producer expiry goes by)
// differed from its leader's.
func TestAppendReplicatedLogAppendTime(t *testing.T) {
	leader := newReplica(t, false, 1)
	defer leader.p.Close()
	cfg := DefaultConfig()
	cfg.LogAppendTime = true
	leader.p.SetConfig(cfg)
	leader.append(idemBatch(t, 1, 0, 0, 2))
	leader.append(txnBatch(t, 3, 0, 0, 1, 5))
	leader.marker(3, true)
	follower := newReplica(t, true, 1)
	defer follower.p.Close()
	follower.p.SetConfig(cfg)
	replicate(t, leader.p, follower.p, nil)
	sameReplicas(t, leader.p, follower.p, "LogAppendTime")
}
