package partition

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// txnBatch is a transactional batch of n records of pid at epoch, sequence
// seq (-1: none, as a coordinator writes), timestamped ts.
func txnBatch(t testing.TB, pid int64, epoch int16, seq int32, n int, ts int64) []byte {
	t.Helper()
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{OffsetDelta: int32(i), Value: []byte(fmt.Sprintf("%d-%d", pid, i))}
	}
	b, err := record.BuildBatch(record.BatchSpec{Attributes: record.AttrTransactional, FirstTimestamp: ts, MaxTimestamp: ts,
		ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq}, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// txnP is a partition with a clock the test moves.
type txnP struct {
	t   *testing.T
	fs  *vfs.MemFS
	p   *Partition
	now time.Time
}

func newTxnP(t *testing.T) *txnP {
	tp := &txnP{t: t, fs: vfs.NewMem(), now: time.UnixMilli(1_000_000)}
	tp.open(true)
	return tp
}

func (tp *txnP) open(clean bool) {
	tp.t.Helper()
	p, err := Open(Options{FS: tp.fs, Dir: "t-0", Config: DefaultConfig(), Clean: clean, Now: func() time.Time { return tp.now }})
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.p = p
}

// reopen closes cleanly, or crashes the filesystem, and opens again.
func (tp *txnP) reopen(crash bool) {
	tp.t.Helper()
	if crash {
		tp.fs = tp.fs.Crash()
	} else if err := tp.p.Close(); err != nil {
		tp.t.Fatal(err)
	}
	tp.open(!crash)
}

func (tp *txnP) append(b []byte) AppendResult {
	tp.t.Helper()
	res, err := tp.p.Append(b)
	if err != nil {
		tp.t.Fatal(err)
	}
	return res
}

func (tp *txnP) marker(pid int64, epoch int16, commit bool) int64 {
	tp.t.Helper()
	res, err := tp.p.WriteMarker(pid, epoch, commit, 5)
	if err != nil {
		tp.t.Fatal(err)
	}
	if res.BaseOffset != res.LastOffset {
		tp.t.Fatalf("marker of %d offsets", res.LastOffset-res.BaseOffset+1)
	}
	if err := tp.p.WaitDurable(res.LastOffset); err != nil {
		tp.t.Fatal(err)
	}
	return res.BaseOffset
}

func (tp *txnP) wantLSO(want int64) {
	tp.t.Helper()
	if got := tp.p.LastStableOffset(); got != want {
		tp.t.Fatalf("LSO %d, want %d (HW %d)", got, want, tp.p.HighWatermark())
	}
}

func (tp *txnP) wantStable() { tp.t.Helper(); tp.wantLSO(tp.p.HighWatermark()) }

func (tp *txnP) wantAborted(want ...log.AbortedTxn) {
	tp.t.Helper()
	if got := tp.p.AbortedTxns(0, tp.p.HighWatermark()); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		tp.t.Fatalf("aborted %+v, want %+v", got, want)
	}
}

// controlTypes reads back the types of the partition's control batches.
func (tp *txnP) controlTypes() []record.ControlType {
	tp.t.Helper()
	var out []record.ControlType
	if err := tp.p.Log().WalkHeaders(0, func(h record.Header, c record.ControlType) error {
		if h.IsControl() {
			out = append(out, c)
		}
		return nil
	}); err != nil {
		tp.t.Fatal(err)
	}
	return out
}

func TestLastStableOffsetAndMarkers(t *testing.T) {
	tp := newTxnP(t)
	defer func() { tp.p.Close() }()
	tp.append(idemBatch(t, 1, 0, 0, 2)) // 0-1: not transactional
	tp.wantStable()
	a := tp.append(txnBatch(t, 10, 0, 0, 3, 0)).BaseOffset // 2-4
	tp.wantLSO(a)
	b := tp.append(txnBatch(t, 11, 0, 0, 1, 0)).BaseOffset // 5
	tp.append(txnBatch(t, 10, 0, 3, 1, 0))                 // 6: a's second batch
	tp.append(idemBatch(t, 1, 0, 2, 1))                    // 7
	tp.wantLSO(a)
	if tp.p.HighWatermark() != 8 {
		t.Fatalf("HW %d", tp.p.HighWatermark())
	}
	info := tp.p.Producers()
	if len(info) != 3 || info[1].ID != 10 || info[1].TxnStartOffset != a || info[2].TxnStartOffset != b || info[0].TxnStartOffset != -1 {
		t.Fatalf("producers: %+v", info)
	}
	// Committing 10 moves the LSO to 11's start.
	m10 := tp.marker(10, 0, true)
	tp.wantLSO(b)
	tp.wantAborted()
	// Aborting 11 makes everything stable and records the abort.
	m11 := tp.marker(11, 0, false)
	tp.wantStable()
	tp.wantAborted(log.AbortedTxn{ProducerID: 11, FirstOffset: b, LastOffset: m11, LastStableOffset: m11 + 1})
	if got := tp.controlTypes(); !reflect.DeepEqual(got, []record.ControlType{record.ControlCommit, record.ControlAbort}) {
		t.Fatalf("control types %v", got)
	}
	info = tp.p.Producers()
	for _, pi := range info {
		if pi.TxnStartOffset != -1 {
			t.Fatalf("producer %d still in a transaction: %+v", pi.ID, pi)
		}
		if pi.ID != 1 && pi.CoordinatorEpoch != 5 {
			t.Fatalf("coordinator epoch of %d: %+v", pi.ID, pi)
		}
	}
	if m10 >= m11 {
		t.Fatal("marker offsets")
	}

	// An abort while an older transaction is open records that one's start
	// as the last stable offset.
	c := tp.append(txnBatch(t, 12, 0, 0, 2, 0)).BaseOffset
	d := tp.append(txnBatch(t, 13, 0, 0, 2, 0)).BaseOffset
	m13 := tp.marker(13, 0, false)
	tp.wantLSO(c)
	e := tp.append(txnBatch(t, 14, 0, 0, 1, 0)).BaseOffset
	m12 := tp.marker(12, 0, false)
	tp.wantLSO(e)
	m14 := tp.marker(14, 0, true)
	tp.wantStable()
	all := []log.AbortedTxn{
		{ProducerID: 11, FirstOffset: b, LastOffset: m11, LastStableOffset: m11 + 1},
		{ProducerID: 13, FirstOffset: d, LastOffset: m13, LastStableOffset: c},
		{ProducerID: 12, FirstOffset: c, LastOffset: m12, LastStableOffset: e},
	}
	tp.wantAborted(all...)
	// Ranges: what a read_committed fetch of [from, to) needs.
	if got := tp.p.AbortedTxns(m11+1, d); !reflect.DeepEqual(got, all[2:]) {
		t.Fatalf("aborted in [%d,%d): %+v", m11+1, d, got)
	}
	if got := tp.p.AbortedTxns(m14, m14+1); len(got) != 0 {
		t.Fatalf("aborted at the last marker: %+v", got)
	}

	// A marker for a producer with nothing open here (a transaction that
	// wrote elsewhere) records nothing and keeps the LSO.
	tp.marker(99, 0, false)
	tp.marker(10, 0, false)
	tp.wantStable()
	tp.wantAborted(all...)
	// A marker at an older epoch than the producer's is refused.
	tp.append(txnBatch(t, 15, 3, 0, 1, 0))
	if _, err := tp.p.WriteMarker(15, 2, false, 5); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("marker at an old epoch: %v", err)
	}
	tp.wantLSO(tp.p.HighWatermark() - 1)
}

// TestMarkerWithBumpedEpochFences: an abort marker at a bumped epoch (a
// fenced or timed-out producer) refuses the old epoch, and the new epoch
// starts its sequences at 0.
func TestMarkerWithBumpedEpochFences(t *testing.T) {
	tp := newTxnP(t)
	defer func() { tp.p.Close() }()
	first := tp.append(txnBatch(t, 10, 0, 0, 2, 0)).BaseOffset
	m := tp.marker(10, 1, false)
	tp.wantAborted(log.AbortedTxn{ProducerID: 10, FirstOffset: first, LastOffset: m, LastStableOffset: m + 1})
	if _, err := tp.p.Append(txnBatch(t, 10, 0, 2, 1, 0)); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("old epoch after the fence: %v", err)
	}
	if info := tp.p.Producers(); len(info) != 1 || info[0].Epoch != 1 || info[0].LastSequence != -1 {
		t.Fatalf("producer after the fence: %+v", info)
	}
	tp.append(txnBatch(t, 10, 1, 0, 1, 0))
}

func TestClientControlBatchRefused(t *testing.T) {
	tp := newTxnP(t)
	defer func() { tp.p.Close() }()
	key := []byte{0, 0, 0, 1} // version 0, COMMIT
	b, err := record.BuildBatch(record.BatchSpec{Attributes: record.AttrTransactional | record.AttrControl,
		ProducerID: 10, ProducerEpoch: 0, BaseSequence: -1}, []record.Record{{Key: key, Value: []byte{0, 0, 0, 0, 0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.p.Append(b); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("client control batch: %v", err)
	}
	// A transactional batch needs a producer id.
	nb := txnBatch(t, -1, -1, -1, 1, 0)
	if _, err := tp.p.Append(nb); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("transactional batch without a producer: %v", err)
	}
	if tp.p.HighWatermark() != 0 {
		t.Fatalf("HW %d after refused batches", tp.p.HighWatermark())
	}
}

// TestAppendFromCoordinator: a coordinator's transactional batches carry no
// sequence; only the epoch is checked.
func TestAppendFromCoordinator(t *testing.T) {
	tp := newTxnP(t)
	defer func() { tp.p.Close() }()
	r1, err := tp.p.AppendFromCoordinator(txnBatch(t, 10, 2, -1, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	tp.wantLSO(r1.BaseOffset)
	// The same batch again is appended again (no sequence, no dedup).
	r2, err := tp.p.AppendFromCoordinator(txnBatch(t, 10, 2, -1, 1, 0))
	if err != nil || r2.Duplicate || r2.BaseOffset != r1.BaseOffset+1 {
		t.Fatalf("second coordinator batch: %+v %v", r2, err)
	}
	// A client's batch without a sequence from an unknown producer is refused.
	if _, err := tp.p.Append(txnBatch(t, 11, 0, 5, 1, 0)); !errors.Is(err, ErrUnknownProducerID) {
		t.Fatalf("client batch at sequence 5 of an unknown producer: %v", err)
	}
	// An older epoch is refused, a newer one accepted.
	if _, err := tp.p.AppendFromCoordinator(txnBatch(t, 10, 1, -1, 1, 0)); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("coordinator batch at an older epoch: %v", err)
	}
	if _, err := tp.p.AppendFromCoordinator(txnBatch(t, 10, 3, -1, 1, 0)); err != nil {
		t.Fatalf("coordinator batch at a newer epoch: %v", err)
	}
	tp.wantLSO(r1.BaseOffset)
	m := tp.marker(10, 3, false)
	tp.wantStable()
	tp.wantAborted(log.AbortedTxn{ProducerID: 10, FirstOffset: r1.BaseOffset, LastOffset: m, LastStableOffset: m + 1})
}

// TestTxnStateSurvivesReopen: open transactions (the LSO) and aborted
// entries survive a clean close and a crash.
func TestTxnStateSurvivesReopen(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			tp := newTxnP(t)
			defer func() { tp.p.Close() }()
			b := tp.append(txnBatch(t, 11, 0, 0, 2, 0)).BaseOffset
			m11 := tp.marker(11, 0, false)
			a := tp.append(txnBatch(t, 10, 0, 0, 2, 0)).BaseOffset // stays open
			tp.append(idemBatch(t, 1, 0, 0, 1))
			if err := tp.p.Log().Sync(); err != nil {
				t.Fatal(err)
			}
			want := log.AbortedTxn{ProducerID: 11, FirstOffset: b, LastOffset: m11, LastStableOffset: m11 + 1}
			tp.reopen(crash)
			tp.wantLSO(a)
			tp.wantAborted(want)
			if info := tp.p.Producers(); len(info) != 3 || info[1].ID != 10 || info[1].TxnStartOffset != a {
				t.Fatalf("producers after reopen: %+v", info)
			}
			// The open transaction goes on and ends.
			tp.append(txnBatch(t, 10, 0, 2, 1, 0))
			m10 := tp.marker(10, 0, false)
			tp.wantStable()
			tp.wantAborted(want, log.AbortedTxn{ProducerID: 10, FirstOffset: a, LastOffset: m10, LastStableOffset: m10 + 1})
			tp.reopen(crash)
			tp.wantStable()
			tp.wantAborted(want, log.AbortedTxn{ProducerID: 10, FirstOffset: a, LastOffset: m10, LastStableOffset: m10 + 1})
		})
	}
}

// TestTxnIndexRebuiltAfterSnapshot: an abort whose index entry was lost
// (a crash between the marker and the index write) is rebuilt from the log
// after the producer snapshot; an open transaction from before the
// snapshot keeps the LSO.
func TestTxnIndexRebuiltAfterSnapshot(t *testing.T) {
	tp := newTxnP(t)
	defer func() { tp.p.Close() }()
	a := tp.append(txnBatch(t, 10, 0, 0, 2, 0)).BaseOffset // open across the snapshot
	if err := tp.p.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	b := tp.append(txnBatch(t, 11, 0, 0, 1, 0)).BaseOffset
	m11 := tp.marker(11, 0, false)
	if err := tp.p.Log().Sync(); err != nil {
		t.Fatal(err)
	}
	tp.fs = tp.fs.Crash()
	names, err := tp.fs.List("t-0")
	if err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, n := range names {
		if len(n) > 9 && n[len(n)-9:] == ".txnindex" {
			if err := tp.fs.Remove("t-0/" + n); err != nil {
				t.Fatal(err)
			}
			removed++
		}
	}
	if removed != 1 {
		t.Fatalf("%d .txnindex files in %v", removed, names)
	}
	tp.open(false)
	tp.wantLSO(a)
	tp.wantAborted(log.AbortedTxn{ProducerID: 11, FirstOffset: b, LastOffset: m11, LastStableOffset: a})
	if info := tp.p.Producers(); len(info) != 2 || info[0].TxnStartOffset != a {
		t.Fatalf("producers: %+v", info)
	}
}

// TestTxnIndexAheadOfLogIsCut: the index entry is durable at once but the
// marker is not until synced; after a crash that loses the marker, the
// entry is dropped and the transaction is open again.
func TestTxnIndexAheadOfLogIsCut(t *testing.T) {
	tp := newTxnP(t)
	defer func() { tp.p.Close() }()
	a := tp.append(txnBatch(t, 10, 0, 0, 2, 0)).BaseOffset
	if err := tp.p.Log().Sync(); err != nil {
		t.Fatal(err)
	}
	res, err := tp.p.WriteMarker(10, 0, false, 0) // not synced
	if err != nil {
		t.Fatal(err)
	}
	tp.wantAborted(log.AbortedTxn{ProducerID: 10, FirstOffset: a, LastOffset: res.BaseOffset, LastStableOffset: res.BaseOffset + 1})
	tp.fs = tp.fs.Crash()
	tp.open(false)
	if tp.p.HighWatermark() != res.BaseOffset {
		t.Fatalf("HW %d after the crash, want %d (marker lost)", tp.p.HighWatermark(), res.BaseOffset)
	}
	tp.wantAborted()
	tp.wantLSO(a)
	// The coordinator writes the marker again.
	m := tp.marker(10, 0, false)
	tp.wantStable()
	tp.wantAborted(log.AbortedTxn{ProducerID: 10, FirstOffset: a, LastOffset: m, LastStableOffset: m + 1})
	tp.reopen(false)
	tp.wantAborted(log.AbortedTxn{ProducerID: 10, FirstOffset: a, LastOffset: m, LastStableOffset: m + 1})
}

func TestExpireProducers(t *testing.T) {
	tp := newTxnP(t)
	defer func() { tp.p.Close() }()
	tp.append(idemBatch(t, 1, 0, 0, 1))   // timestamp 0
	tp.append(txnBatch(t, 2, 0, 0, 1, 0)) // open: never expires
	recent, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: tp.now.UnixMilli() - 10, MaxTimestamp: tp.now.UnixMilli() - 10,
		ProducerID: 3, ProducerEpoch: 0, BaseSequence: 0}, []record.Record{{Value: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	tp.append(recent)
	if n := tp.p.ExpireProducers(tp.now.UnixMilli(), 60_000); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if info := tp.p.Producers(); len(info) != 2 || info[0].ID != 2 || info[1].ID != 3 {
		t.Fatalf("producers: %+v", info)
	}
	// An expired producer must start a new sequence.
	if _, err := tp.p.Append(idemBatch(t, 1, 0, 1, 1)); !errors.Is(err, ErrUnknownProducerID) {
		t.Fatalf("expired producer at sequence 1: %v", err)
	}
	tp.append(idemBatch(t, 1, 0, 0, 1))
	// A marker's timestamp counts as activity.
	tp.now = tp.now.Add(time.Hour)
	tp.marker(2, 0, true)
	if n := tp.p.ExpireProducers(tp.now.UnixMilli(), 60_000); n != 2 {
		t.Fatalf("expired %d, want 2 (1 and 3): %+v", n, tp.p.Producers())
	}
	if info := tp.p.Producers(); len(info) != 1 || info[0].ID != 2 || info[0].LastTimestamp != tp.now.UnixMilli() {
		t.Fatalf("producers: %+v", info)
	}
}

// TestMarkerOnlyProducerSurvivesRestart: a producer whose last entry is a
// marker (fenced by an abort at a bumped epoch) keeps its epoch, activity
// time and coordinator epoch across a clean restart, so that it is not
// expired at once and DescribeProducers reports the same.
func TestMarkerOnlyProducerSurvivesRestart(t *testing.T) {
	tp := newTxnP(t)
	defer func() { tp.p.Close() }()
	tp.append(txnBatch(t, 10, 0, 0, 1, tp.now.UnixMilli()))
	tp.marker(10, 1, false) // coordinator epoch 5
	before := tp.p.Producers()
	tp.reopen(false)
	after := tp.p.Producers()
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("producer state changed across a clean restart: before %+v, after %+v", before, after)
	}
	if n := tp.p.ExpireProducers(tp.now.UnixMilli(), 60_000); n != 0 {
		t.Fatalf("expired %d right after restart", n)
	}
}

// TestAbortWithFailedIndexWrite: when the .txnindex write of an abort
// fails, the aborted records must not become readable as committed: either
// the LSO stays below them, or the coordinator's retry of the marker
// records the entry.
func TestAbortWithFailedIndexWrite(t *testing.T) {
	var failIndex atomic.Bool
	fs := vfs.NewFault(vfs.NewMem(), func(op vfs.Op, path string) error {
		if failIndex.Load() && op == vfs.OpCreate && strings.HasSuffix(path, ".txnindex.tmp") {
			return vfs.ErrInjected
		}
		return nil
	})
	p, err := Open(Options{FS: fs, Dir: "t-0", Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Close() }()
	res, err := p.Append(txnBatch(t, 10, 0, 0, 2, 0))
	if err != nil {
		t.Fatal(err)
	}
	first := res.BaseOffset
	failIndex.Store(true)
	if _, err := p.WriteMarker(10, 0, false, 0); !errors.Is(err, ErrStorage) {
		t.Fatalf("marker with a failing index: %v", err)
	}
	failIndex.Store(false)
	exposed := func() bool {
		lso := p.LastStableOffset()
		if lso <= first {
			return false
		}
		for _, a := range p.AbortedTxns(first, lso) {
			if a.ProducerID == 10 && a.FirstOffset <= first {
				return false
			}
		}
		return true
	}
	exposedAfterFailure := exposed()
	// The coordinator retries the marker.
	if r, err := p.WriteMarker(10, 0, false, 0); err != nil {
		t.Fatalf("retried marker: %v", err)
	} else if err := p.WaitDurable(r.LastOffset); err != nil {
		t.Fatal(err)
	}
	exposedAfterRetry := exposed()
	// A clean restart: the snapshot written at close is past the marker.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p, err = Open(Options{FS: fs, Dir: "t-0", Config: DefaultConfig(), Clean: true}); err != nil {
		t.Fatal(err)
	}
	if exposedAfterFailure || exposedAfterRetry || exposed() {
		t.Fatalf("aborted records from offset %d exposed to read_committed (after the failure: %v, after the retry: %v, after a clean restart: %v; LSO %d, aborted %+v)",
			first, exposedAfterFailure, exposedAfterRetry, exposed(), p.LastStableOffset(), p.AbortedTxns(0, p.HighWatermark()))
	}
}

// TestMarkerFromOldCoordinatorFenced: a marker whose coordinator epoch is
// older than the producer's last marker's is refused
// (TRANSACTION_COORDINATOR_FENCED) and changes nothing.
func TestMarkerFromOldCoordinatorFenced(t *testing.T) {
	tp := newTxnP(t)
	defer func() { tp.p.Close() }()
	tp.append(txnBatch(t, 10, 0, 0, 1, tp.now.UnixMilli()))
	tp.marker(10, 0, true) // coordinator epoch 5
	first := tp.p.HighWatermark()
	tp.append(txnBatch(t, 10, 0, 1, 1, tp.now.UnixMilli()))
	if _, err := tp.p.WriteMarker(10, 0, false, 4); !errors.Is(err, ErrCoordinatorFenced) {
		t.Fatalf("marker from coordinator epoch 4 after 5: %v, want ErrCoordinatorFenced", err)
	}
	tp.wantLSO(first)
	tp.marker(10, 0, false)
	tp.wantLSO(tp.p.HighWatermark())
}
