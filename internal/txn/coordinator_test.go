package txn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// stateParts is the number of __transaction_state partitions of the tests.
const stateParts = 2

var (
	tp0 = TopicPartition{"t", 0}
	tp1 = TopicPartition{"t", 1}
)

// env is a coordinator over real partitions on a MemFS: the partitions of
// __transaction_state and the data partitions t-0 and t-1, which get the
// markers.
type env struct {
	t  *testing.T
	fs *vfs.MemFS

	mu    sync.Mutex
	state []*partition.Partition
	data  map[TopicPartition]*partition.Partition

	clockMu sync.Mutex
	now     time.Time

	nextPID     atomic.Int64
	failMarkers atomic.Int32 // marker writes still to fail
	markerCalls atomic.Int32
	groupsReady chan struct{}
	// Under mu: the coordinator epochs of the markers written, in order;
	// loadGate, when set, holds up the loads (Config.Partition) until it
	// is closed.
	markerEpochs []int32
	loadGate     chan struct{}

	cfg Config // the settings of the next coordinator (test knobs)
	c   *Coordinator
}

func newEnv(t *testing.T, cfg Config) *env {
	e := &env{t: t, fs: vfs.NewMem(), now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), cfg: cfg}
	e.nextPID.Store(1000)
	e.openPartitions(true)
	e.start()
	t.Cleanup(e.close)
	return e
}

func (e *env) openPart(dir string, clean bool) *partition.Partition {
	e.t.Helper()
	p, err := partition.Open(partition.Options{FS: e.fs, Dir: dir, Config: partition.DefaultConfig(), Clean: clean,
		Now: e.clock})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) openPartitions(clean bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.state = nil
	for p := 0; p < stateParts; p++ {
		e.state = append(e.state, e.openPart(fmt.Sprintf("%s-%d", Topic, p), clean))
	}
	e.data = map[TopicPartition]*partition.Partition{}
	for _, tp := range []TopicPartition{tp0, tp1} {
		e.data[tp] = e.openPart(fmt.Sprintf("%s-%d", tp.Topic, tp.Partition), clean)
	}
}

func (e *env) closePartitions() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.state {
		p.Close()
	}
	for _, p := range e.data {
		p.Close()
	}
	e.state, e.data = nil, nil
}

func (e *env) clock() time.Time {
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.clockMu.Lock()
	e.now = e.now.Add(d)
	e.clockMu.Unlock()
}

func (e *env) dataPart(tp TopicPartition) *partition.Partition {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.data[tp]
}

// newCoordinator returns a coordinator over the env's partitions, not
// started.
func (e *env) newCoordinator() *Coordinator {
	cfg := e.cfg
	cfg.Partition = func(p int32) (*partition.Partition, bool) {
		e.mu.Lock()
		gate := e.loadGate
		e.mu.Unlock()
		if gate != nil {
			<-gate
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if int(p) >= len(e.state) {
			return nil, false
		}
		return e.state[p], true
	}
	if cfg.AllocateProducerID == nil {
		cfg.AllocateProducerID = func(context.Context) (int64, error) { return e.nextPID.Add(1), nil }
	}
	cfg.WriteMarker = func(ctx context.Context, tp TopicPartition, pid int64, epoch int16, commit bool, cepoch int32) error {
		e.markerCalls.Add(1)
		if e.failMarkers.Add(-1) >= 0 {
			// As a broker answers when the partition's leader moved.
			return fmt.Errorf("injected marker failure: %w", partition.ErrNotLeader)
		}
		p := e.dataPart(tp)
		if p == nil {
			return ErrUnknownPartition
		}
		res, err := p.WriteMarker(pid, epoch, commit, cepoch)
		if err != nil {
			return err
		}
		if err := p.WaitDurable(res.LastOffset); err != nil {
			return err
		}
		e.mu.Lock()
		e.markerEpochs = append(e.markerEpochs, cepoch)
		e.mu.Unlock()
		return nil
	}
	if cfg.OffsetsPartitions == nil {
		cfg.OffsetsPartitions = func() int { return 0 }
	}
	if e.groupsReady != nil {
		ready := e.groupsReady
		cfg.GroupsReady = func() <-chan struct{} { return ready }
	}
	if cfg.AbortCheckInterval == 0 {
		cfg.AbortCheckInterval = time.Hour // no background work unless a test asks
	}
	cfg.Now = e.clock
	return New(cfg)
}

func (e *env) start() {
	e.t.Helper()
	e.c = e.newCoordinator()
	if err := e.c.Start(stateParts); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.c != nil {
		e.c.Close()
		e.c = nil
	}
	e.closePartitions()
}

// restart closes the coordinator and every partition (cleanly, or by a
// crash of the filesystem) and opens them again with a new coordinator.
func (e *env) restart(crash bool) {
	e.t.Helper()
	e.c.Close()
	e.reopen(crash)
}

// reopen is restart after the coordinator is closed.
func (e *env) reopen(crash bool) {
	e.t.Helper()
	if crash {
		e.fs = e.fs.Crash()
		e.mu.Lock()
		e.state, e.data = nil, nil // abandoned with the old filesystem
		e.mu.Unlock()
	} else {
		e.closePartitions()
	}
	e.openPartitions(!crash)
	e.start()
}

func (e *env) init(id string, timeoutMs int32) (int64, int16) {
	e.t.Helper()
	pid, epoch, err := e.c.InitProducerID(context.Background(), id, timeoutMs, -1, -1)
	if err != nil {
		e.t.Fatalf("InitProducerID %q: %v", id, err)
	}
	return pid, epoch
}

func (e *env) add(id string, pid int64, epoch int16, tps ...TopicPartition) {
	e.t.Helper()
	if err := e.c.AddPartitions(context.Background(), id, pid, epoch, tps, false); err != nil {
		e.t.Fatalf("AddPartitions %q: %v", id, err)
	}
}

// endTxn is EndTxn without the KIP-890 part 2 epoch bump.
func (e *env) endTxn(id string, pid int64, epoch int16, commit bool) error {
	_, _, err := e.c.EndTxn(context.Background(), id, pid, epoch, commit, false)
	return err
}

func (e *env) describe(id string) Description {
	e.t.Helper()
	d, err := e.c.Describe(id)
	if err != nil {
		e.t.Fatalf("Describe %q: %v", id, err)
	}
	return d
}

// produce appends a transactional batch of n records of pid at epoch to tp
// and returns its base offset.
func (e *env) produce(tp TopicPartition, pid int64, epoch int16, seq int32, n int) int64 {
	e.t.Helper()
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{OffsetDelta: int32(i), Value: []byte(fmt.Sprint(seq + int32(i)))}
	}
	b, err := record.BuildBatch(record.BatchSpec{Attributes: record.AttrTransactional,
		ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq}, recs)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.dataPart(tp).Append(b)
	if err != nil {
		e.t.Fatalf("produce to %v: %v", tp, err)
	}
	return res.BaseOffset
}

// mark is a marker read back from a data partition.
type mark struct {
	pid    int64
	epoch  int16
	commit bool
}

func (e *env) markers(tp TopicPartition) []mark {
	e.t.Helper()
	p := e.dataPart(tp)
	// Every segment: the log rolls on record timestamps (segment.ms), and
	// the test batches' (0) and the markers' (the env clock) are years apart.
	var out []mark
	for off, end := p.Log().StartOffset(), p.Log().EndOffset(); off < end; {
		buf, err := p.Log().ReadBatches(off, 1<<20)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(buf) == 0 {
			e.t.Fatalf("%v: nothing to read at %d, before the end %d", tp, off, end)
		}
		it := record.NewIter(buf)
		for {
			batch, h, ok := it.Next()
			if !ok {
				break
			}
			off = h.LastOffset() + 1
			if !h.IsControl() {
				continue
			}
			recs, err := record.Records(batch, h, 1<<20)
			if err != nil || len(recs) != 1 {
				e.t.Fatalf("marker at %d: %d records, %v", h.BaseOffset, len(recs), err)
			}
			typ, err := record.ParseControlKey(recs[0].Key)
			if err != nil {
				e.t.Fatal(err)
			}
			out = append(out, mark{h.ProducerID, h.ProducerEpoch, typ == record.ControlCommit})
		}
		if err := it.Err(); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

// waitState waits for id to reach state (the background check).
func (e *env) waitState(id string, want State) Description {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := e.c.Describe(id)
		if err == nil && d.State == want {
			return d
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%q: %+v %v, want state %s", id, d, err, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checks lets the background checks run every tick of the next d, in a
// synctest bubble: time moves only when every goroutine of the bubble is
// blocked, so each tick's check has finished before the next one, and all
// of them have when checks returns. What a check did not do is then
// asserted, not hoped for after a real sleep.
func (e *env) checks(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func isErr(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

func TestNotReadyBeforeStart(t *testing.T) {
	c := New(Config{})
	defer c.Close()
	if c.Started() {
		t.Fatal("started before Start")
	}
	if _, _, err := c.InitProducerID(context.Background(), "x", 1000, -1, -1); !errors.Is(err, kerr.NotCoordinator) {
		t.Fatalf("InitProducerID before Start: %v", err)
	}
	if _, err := c.List(ListFilter{MinDurationMs: -1}); !errors.Is(err, kerr.NotCoordinator) {
		t.Fatalf("List before Start: %v", err)
	}
	// A missing partition of Topic fails Start.
	c2 := New(Config{Partition: func(int32) (*partition.Partition, bool) { return nil, false }})
	if err := c2.Start(1); err == nil {
		t.Fatal("Start without partitions: no error")
	}
}

func TestInitProducerIDAndFencing(t *testing.T) {
	e := newEnv(t, Config{MaxTimeout: time.Minute})
	ctx := context.Background()
	pid, epoch := e.init("a", 10_000)
	if pid != 1001 || epoch != 0 {
		t.Fatalf("new id: %d/%d, want 1001/0", pid, epoch)
	}
	// A second id gets another producer id.
	if pid2, epoch2 := e.init("b", 10_000); pid2 != 1002 || epoch2 != 0 {
		t.Fatalf("second id: %d/%d", pid2, epoch2)
	}
	// Re-init bumps the epoch and keeps the producer id.
	if p, ep := e.init("a", 10_000); p != pid || ep != 1 {
		t.Fatalf("re-init: %d/%d, want %d/1", p, ep, pid)
	}
	// The old epoch is fenced.
	if err := e.c.AddPartitions(ctx, "a", pid, 0, []TopicPartition{tp0}, false); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("AddPartitions at the old epoch: %v", err)
	}
	if err := e.endTxn("a", pid, 0, true); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("EndTxn at the old epoch: %v", err)
	}
	if err := e.c.CheckProducer("a", pid, 0); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("CheckProducer at the old epoch: %v", err)
	}
	// An unknown producer id, or an unknown transactional id.
	if err := e.c.AddPartitions(ctx, "a", 999, 1, []TopicPartition{tp0}, false); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("AddPartitions of an unknown producer id: %v", err)
	}
	if err := e.endTxn("a", 999, 1, true); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("EndTxn of an unknown producer id: %v", err)
	}
	if err := e.c.AddPartitions(ctx, "nobody", pid, 1, []TopicPartition{tp0}, false); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("AddPartitions of an unknown id: %v", err)
	}
	if err := e.endTxn("nobody", pid, 1, false); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("EndTxn of an unknown id: %v", err)
	}
	if err := e.c.CheckProducer("nobody", pid, 1); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("CheckProducer of an unknown id: %v", err)
	}
	// EndTxn with no open transaction.
	if err := e.endTxn("a", pid, 1, true); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("EndTxn with no transaction: %v", err)
	}
	if err := e.endTxn("a", pid, 1, false); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("EndTxn abort with no transaction: %v", err)
	}

	// KIP-360: a retry of the InitProducerId that made epoch 1 (the producer
	// sends the epoch it had, 0) gets epoch 1 again; one with the current
	// epoch bumps it; any other is fenced.
	if p, ep, err := e.c.InitProducerID(ctx, "a", 10_000, pid, 0); err != nil || p != pid || ep != 1 {
		t.Fatalf("retry of the init: %d/%d %v", p, ep, err)
	}
	if p, ep, err := e.c.InitProducerID(ctx, "a", 10_000, pid, 1); err != nil || p != pid || ep != 2 {
		t.Fatalf("init with the current epoch: %d/%d %v", p, ep, err)
	}
	if _, _, err := e.c.InitProducerID(ctx, "a", 10_000, pid, 7); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("init with a wrong epoch: %v", err)
	}
	if _, _, err := e.c.InitProducerID(ctx, "a", 10_000, 5, 0); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("init with a wrong producer id: %v", err)
	}

	// transaction.max.timeout.ms.
	for _, ms := range []int32{0, -1, 60_001} {
		if _, _, err := e.c.InitProducerID(ctx, "c", ms, -1, -1); !errors.Is(err, kerr.InvalidTransactionTimeout) {
			t.Fatalf("timeout %d: %v", ms, err)
		}
	}
	if _, err := e.c.Describe("c"); !errors.Is(err, kerr.TransactionalIDNotFound) {
		t.Fatalf("refused init created the id: %v", err)
	}
	if _, ep, err := e.c.InitProducerID(ctx, "c", 60_000, -1, -1); err != nil || ep != 0 {
		t.Fatalf("timeout at the max: %d %v", ep, err)
	}
	if d := e.describe("c"); d.TimeoutMs != 60_000 || d.State != Empty || d.StartMs != -1 {
		t.Fatalf("describe c: %+v", d)
	}
	// A re-init changes the timeout.
	e.init("c", 5_000)
	if d := e.describe("c"); d.TimeoutMs != 5_000 || d.ProducerEpoch != 1 {
		t.Fatalf("describe c after re-init: %+v", d)
	}
}

func TestAllocateFailureCreatesNothing(t *testing.T) {
	fail := true
	e := newEnv(t, Config{AllocateProducerID: func(context.Context) (int64, error) {
		if fail {
			return -1, errors.New("no ids")
		}
		return 7, nil
	}})
	if _, _, err := e.c.InitProducerID(context.Background(), "a", 1000, -1, -1); !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("init: %v", err)
	}
	if l, err := e.c.List(ListFilter{MinDurationMs: -1}); err != nil || len(l) != 0 {
		t.Fatalf("list: %+v %v", l, err)
	}
	fail = false
	if pid, ep := e.init("a", 1000); pid != 7 || ep != 0 {
		t.Fatalf("init: %d/%d", pid, ep)
	}
}

func TestCommitAndAbortWriteMarkers(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	pid, epoch := e.init("a", 60_000)
	e.add("a", pid, epoch, tp0)
	e.add("a", pid, epoch, tp0, tp1) // a retry adds what is missing
	e.advance(time.Second)
	d := e.describe("a")
	if d.State != Ongoing || !reflect.DeepEqual(d.Partitions, []TopicPartition{tp0, tp1}) || d.StartMs != e.clock().Add(-time.Second).UnixMilli() {
		t.Fatalf("ongoing: %+v", d)
	}
	// verifyOnly answers without adding.
	if err := e.c.AddPartitions(ctx, "a", pid, epoch, []TopicPartition{tp1}, true); err != nil {
		t.Fatalf("verify of an added partition: %v", err)
	}
	if err := e.c.AddPartitions(ctx, "a", pid, epoch, []TopicPartition{{"t", 9}}, true); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("verify of a partition not added: %v", err)
	}
	if d := e.describe("a"); len(d.Partitions) != 2 {
		t.Fatalf("verify added a partition: %+v", d)
	}
	first0 := e.produce(tp0, pid, epoch, 0, 3)
	e.produce(tp1, pid, epoch, 0, 2)
	if lso := e.dataPart(tp0).LastStableOffset(); lso != first0 {
		t.Fatalf("LSO of t-0 in the transaction: %d, want %d", lso, first0)
	}
	if err := e.endTxn("a", pid, epoch, true); err != nil {
		t.Fatalf("commit: %v", err)
	}
	d = e.describe("a")
	if d.State != CompleteCommit || len(d.Partitions) != 0 || d.StartMs != -1 || d.ProducerEpoch != epoch {
		t.Fatalf("after commit: %+v", d)
	}
	for _, tp := range []TopicPartition{tp0, tp1} {
		if m := e.markers(tp); !reflect.DeepEqual(m, []mark{{pid, epoch, true}}) {
			t.Fatalf("markers of %v: %+v", tp, m)
		}
		p := e.dataPart(tp)
		if p.LastStableOffset() != p.HighWatermark() {
			t.Fatalf("LSO of %v after commit: %d, HW %d", tp, p.LastStableOffset(), p.HighWatermark())
		}
	}
	// A retry of the EndTxn succeeds; the opposite outcome does not.
	if err := e.endTxn("a", pid, epoch, true); err != nil {
		t.Fatalf("commit retry: %v", err)
	}
	if err := e.endTxn("a", pid, epoch, false); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("abort after commit: %v", err)
	}
	if n := len(e.markers(tp0)); n != 1 {
		t.Fatalf("%d markers after the retries, want 1", n)
	}

	// The next transaction aborts, in t-0 only.
	e.add("a", pid, epoch, tp0)
	if d := e.describe("a"); !reflect.DeepEqual(d.Partitions, []TopicPartition{tp0}) {
		t.Fatalf("second transaction holds the first one's partitions: %+v", d)
	}
	first := e.produce(tp0, pid, epoch, 3, 2)
	if err := e.endTxn("a", pid, epoch, false); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if d := e.describe("a"); d.State != CompleteAbort || len(d.Partitions) != 0 {
		t.Fatalf("after abort: %+v", d)
	}
	if m := e.markers(tp0); !reflect.DeepEqual(m, []mark{{pid, epoch, true}, {pid, epoch, false}}) {
		t.Fatalf("markers of t-0: %+v", m)
	}
	if m := e.markers(tp1); len(m) != 1 {
		t.Fatalf("t-1 got a marker of a transaction it was not in: %+v", m)
	}
	p := e.dataPart(tp0)
	ab := p.AbortedTxns(0, p.HighWatermark())
	if len(ab) != 1 || ab[0].ProducerID != pid || ab[0].FirstOffset != first || ab[0].LastOffset != first+2 {
		t.Fatalf("aborted transactions of t-0: %+v", ab)
	}
	if err := e.endTxn("a", pid, epoch, false); err != nil {
		t.Fatalf("abort retry: %v", err)
	}
	if err := e.endTxn("a", pid, epoch, true); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("commit after abort: %v", err)
	}
	// An empty transaction (no partitions) cannot be ended.
	if err := e.c.AddPartitions(ctx, "a", pid, epoch, nil, false); err != nil {
		t.Fatalf("add of nothing: %v", err)
	}
}

func TestInitAbortsOngoingTransaction(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	pid, epoch := e.init("a", 60_000)
	e.add("a", pid, epoch, tp0, tp1)
	first := e.produce(tp0, pid, epoch, 0, 2)
	// A new producer of the id (another instance) fences the first and
	// aborts its transaction.
	pid2, epoch2 := e.init("a", 60_000)
	if pid2 != pid || epoch2 <= epoch+1-1 || epoch2 != epoch+2 {
		t.Fatalf("init while ongoing: %d/%d, want %d/%d", pid2, epoch2, pid, epoch+2)
	}
	for _, tp := range []TopicPartition{tp0, tp1} {
		m := e.markers(tp)
		if len(m) != 1 || m[0].commit || m[0].pid != pid || m[0].epoch != epoch+1 {
			t.Fatalf("markers of %v: %+v, want one abort at the bumped epoch %d", tp, m, epoch+1)
		}
	}
	p := e.dataPart(tp0)
	if p.LastStableOffset() != p.HighWatermark() {
		t.Fatalf("LSO %d after the abort, HW %d", p.LastStableOffset(), p.HighWatermark())
	}
	if ab := p.AbortedTxns(0, p.HighWatermark()); len(ab) != 1 || ab[0].FirstOffset != first {
		t.Fatalf("aborted: %+v", ab)
	}
	// The fenced producer can neither end its transaction nor write.
	if err := e.endTxn("a", pid, epoch, true); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("EndTxn of the fenced producer: %v", err)
	}
	if err := e.c.AddPartitions(ctx, "a", pid, epoch, []TopicPartition{tp0}, false); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("AddPartitions of the fenced producer: %v", err)
	}
	recs := []record.Record{{Value: []byte("zombie")}}
	b, _ := record.BuildBatch(record.BatchSpec{Attributes: record.AttrTransactional, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: 2}, recs)
	if _, err := p.Append(b); !errors.Is(err, partition.ErrInvalidProducerEpoch) {
		t.Fatalf("produce of the fenced producer: %v", err)
	}
	if d := e.describe("a"); d.State != Empty || d.ProducerEpoch != epoch2 {
		t.Fatalf("after init: %+v", d)
	}
	// The new producer works.
	e.add("a", pid2, epoch2, tp0)
	e.produce(tp0, pid2, epoch2, 0, 1)
	if err := e.endTxn("a", pid2, epoch2, true); err != nil {
		t.Fatal(err)
	}
}

// TestTransactionTimeoutAborts runs in a synctest bubble, so that the
// checks that must leave a transaction alone have run when it is looked at.
func TestTransactionTimeoutAborts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 5 * time.Millisecond
		e := newEnv(t, Config{AbortCheckInterval: interval})
		pid, epoch := e.init("a", 1000)
		e.add("a", pid, epoch, tp0)
		e.produce(tp0, pid, epoch, 0, 1)
		// Not yet timed out: ten checks leave it open.
		e.advance(900 * time.Millisecond)
		e.checks(10 * interval)
		if d := e.describe("a"); d.State != Ongoing {
			t.Fatalf("aborted before its timeout: %+v", d)
		}
		// Past it, the next check aborts it.
		e.advance(200 * time.Millisecond)
		e.checks(interval)
		d := e.describe("a")
		if d.State != CompleteAbort || d.ProducerEpoch != epoch+1 || d.ProducerID != pid {
			t.Fatalf("a check after the timeout: %+v, want CompleteAbort at epoch %d", d, epoch+1)
		}
		if m := e.markers(tp0); !reflect.DeepEqual(m, []mark{{pid, epoch + 1, false}}) {
			t.Fatalf("markers: %+v", m)
		}
		if err := e.endTxn("a", pid, epoch, true); !errors.Is(err, kerr.ProducerFenced) {
			t.Fatalf("commit of the timed-out transaction: %v", err)
		}
		// An Empty id never times out.
		e.init("b", 1000)
		e.advance(time.Hour)
		e.checks(10 * interval)
		if d := e.describe("b"); d.State != Empty || d.ProducerEpoch != 0 {
			t.Fatalf("empty id after an hour: %+v", d)
		}
	})
}

// writeState appends a __transaction_state record as an earlier
// coordinator would have, for states the tests cannot reach quickly.
func (e *env) writeState(m *meta) {
	e.t.Helper()
	p, _ := e.c.cfg.Partition(group.PartitionFor(m.id, stateParts))
	b, err := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Key: encodeKey(m.id), Value: encodeValue(m)}})
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := p.Append(b)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := p.WaitDurable(res.LastOffset); err != nil {
		e.t.Fatal(err)
	}
}

func TestEpochExhaustion(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	e.writeState(&meta{id: "a", producerID: 500, lastProducer: -1, epoch: math.MaxInt16 - 2, lastEpoch: -1,
		timeoutMs: 60_000, state: CompleteCommit, startMs: -1, partitions: map[TopicPartition]struct{}{}})
	e.restart(false)
	if d := e.describe("a"); d.ProducerID != 500 || d.ProducerEpoch != math.MaxInt16-2 {
		t.Fatalf("loaded: %+v", d)
	}
	pid, epoch := e.init("a", 60_000)
	if pid != 500 || epoch != math.MaxInt16-1 {
		t.Fatalf("bump to the last epoch: %d/%d", pid, epoch)
	}
	// The epoch is exhausted: the next init gets a new producer id.
	pid2, epoch2 := e.init("a", 60_000)
	if pid2 == 500 || epoch2 != 0 {
		t.Fatalf("after exhaustion: %d/%d, want a new producer id at epoch 0", pid2, epoch2)
	}
	// The old producer id is gone.
	if err := e.c.AddPartitions(ctx, "a", 500, epoch, []TopicPartition{tp0}, false); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("old producer id: %v", err)
	}
	if err := e.c.Verify(500, epoch, tp0); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("verify of the old producer id: %v", err)
	}
	// KIP-360 retry of that init with the old producer id and epoch.
	if p, ep, err := e.c.InitProducerID(ctx, "a", 60_000, 500, epoch); err != nil || p != pid2 || ep != 0 {
		t.Fatalf("retry of the init after exhaustion: %d/%d %v", p, ep, err)
	}
	e.add("a", pid2, 0, tp0)
	if err := e.endTxn("a", pid2, 0, true); err != nil {
		t.Fatal(err)
	}
}

// TestEpochExhaustionWhileOngoing: an init while a transaction of the last
// epoch is open aborts it and moves to a new producer id.
func TestEpochExhaustionWhileOngoing(t *testing.T) {
	e := newEnv(t, Config{})
	e.writeState(&meta{id: "a", producerID: 500, lastProducer: -1, epoch: math.MaxInt16 - 1, lastEpoch: -1,
		timeoutMs: 60_000, state: Empty, startMs: -1, partitions: map[TopicPartition]struct{}{}})
	e.restart(false)
	e.add("a", 500, math.MaxInt16-1, tp0)
	e.produce(tp0, 500, math.MaxInt16-1, 0, 1)
	pid, epoch := e.init("a", 60_000)
	if pid == 500 || epoch != 0 {
		t.Fatalf("init: %d/%d", pid, epoch)
	}
	if m := e.markers(tp0); len(m) != 1 || m[0].commit || m[0].pid != 500 {
		t.Fatalf("markers: %+v", m)
	}
	if err := e.endTxn("a", 500, math.MaxInt16-1, true); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("EndTxn of the old producer: %v", err)
	}
}

// TestTimeoutAtLastEpochFences: a timed-out transaction at the last usable
// epoch must still fence its producer, as Kafka does (it bumps the epoch to
// Short.MaxValue for the abort).
func TestTimeoutAtLastEpochFences(t *testing.T) {
	e := newEnv(t, Config{AbortCheckInterval: 5 * time.Millisecond})
	ctx := context.Background()
	const last = math.MaxInt16 - 1
	e.writeState(&meta{id: "a", producerID: 500, lastProducer: -1, epoch: last, lastEpoch: -1,
		timeoutMs: 1000, state: Empty, startMs: -1, partitions: map[TopicPartition]struct{}{}})
	e.restart(false)
	e.add("a", 500, last, tp0)
	e.advance(2 * time.Second)
	e.waitState("a", CompleteAbort)
	if err := e.c.AddPartitions(ctx, "a", 500, last, []TopicPartition{tp0}, false); err == nil {
		t.Fatal("a transaction that timed out at epoch MaxInt16-1 did not fence its producer (Kafka bumps to MaxInt16)")
	}
}

func TestRestartLoadsState(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			e := newEnv(t, Config{})
			pa, ea := e.init("a", 60_000)
			e.add("a", pa, ea, tp0)
			if err := e.endTxn("a", pa, ea, true); err != nil {
				t.Fatal(err)
			}
			pb, eb := e.init("b", 30_000)
			e.add("b", pb, eb, tp0, tp1)
			e.produce(tp0, pb, eb, 0, 2)
			pc, _ := e.init("c", 10_000)
			e.init("c", 10_000)
			pd, ed := e.init("d", 10_000)
			e.add("d", pd, ed, tp1)
			if err := e.endTxn("d", pd, ed, false); err != nil {
				t.Fatal(err)
			}
			before := map[string]Description{}
			for _, id := range []string{"a", "b", "c", "d"} {
				before[id] = e.describe(id)
			}
			e.restart(crash)
			for id, want := range before {
				if got := e.describe(id); !reflect.DeepEqual(got, want) {
					t.Fatalf("%s after restart: %+v, want %+v", id, got, want)
				}
			}
			// The state goes on from there: b commits, c's old epoch is fenced,
			// a new id gets a producer id of the allocator.
			if err := e.endTxn("b", pb, eb, true); err != nil {
				t.Fatalf("commit of b after restart: %v", err)
			}
			if m := e.markers(tp0); len(m) != 2 || !m[1].commit || m[1].pid != pb {
				t.Fatalf("markers of t-0: %+v", m)
			}
			if err := e.c.CheckProducer("c", pc, 0); !errors.Is(err, kerr.ProducerFenced) {
				t.Fatalf("c at epoch 0: %v", err)
			}
			if err := e.c.CheckProducer("c", pc, 1); err != nil {
				t.Fatalf("c at epoch 1: %v", err)
			}
			if err := e.c.Verify(pb, eb, tp0); !errors.Is(err, kerr.InvalidTxnState) {
				t.Fatalf("verify after commit: %v", err)
			}
			// A retried EndTxn of d (completed before the restart) succeeds.
			if err := e.endTxn("d", pd, ed, false); err != nil {
				t.Fatalf("retry of d's abort after restart: %v", err)
			}
		})
	}
}

// TestPreparedTransactionCompleted: a marker write that fails is retried
// until it is written; a transaction whose markers are still failing
// stays in PrepareCommit and is completed by the next coordinator (after a
// restart, once groups are ready).
func TestPreparedTransactionCompleted(t *testing.T) {
	t.Run("retried", func(t *testing.T) {
		// A marker write that fails (the partition's leader moved) is
		// retried, and the EndTxn answers once it is written: it failed
		// with CONCURRENT_TRANSACTIONS before.
		e := newEnv(t, Config{})
		pid, epoch := e.init("a", 60_000)
		e.add("a", pid, epoch, tp0, tp1)
		e.produce(tp0, pid, epoch, 0, 1)
		e.failMarkers.Store(1)
		if err := e.endTxn("a", pid, epoch, true); err != nil {
			t.Fatalf("EndTxn with a failed marker: %v", err)
		}
		if n := e.markerCalls.Load(); n != 3 {
			t.Fatalf("%d marker writes, want 2 and the retry of the failed one", n)
		}
		d := e.describe("a")
		if d.State != CompleteCommit || d.ProducerEpoch != epoch || len(d.Partitions) != 0 {
			t.Fatalf("completed: %+v", d)
		}
		for _, tp := range []TopicPartition{tp0, tp1} {
			m := e.markers(tp)
			if len(m) == 0 {
				t.Fatalf("no marker in %v", tp)
			}
			for _, mk := range m {
				if !mk.commit || mk.pid != pid || mk.epoch != epoch {
					t.Fatalf("markers of %v: %+v", tp, m)
				}
			}
		}
		if err := e.endTxn("a", pid, epoch, true); err != nil {
			t.Fatalf("EndTxn retry once completed: %v", err)
		}
	})
	t.Run("restart", func(t *testing.T) { synctest.Test(t, testPreparedCompletedAfterRestart) })
	t.Run("abort of a fence found at start", func(t *testing.T) {
		// PrepareEpochFence (which Kafka may have written) is finished as an
		// abort.
		e := newEnv(t, Config{AbortCheckInterval: 5 * time.Millisecond})
		e.writeState(&meta{id: "f", producerID: 77, lastProducer: -1, epoch: 3, lastEpoch: -1, timeoutMs: 60_000,
			state: PrepareEpochFence, startMs: 1, partitions: map[TopicPartition]struct{}{tp1: {}}})
		e.restart(false)
		e.waitState("f", CompleteAbort)
		if m := e.markers(tp1); !reflect.DeepEqual(m, []mark{{77, 3, false}}) {
			t.Fatalf("markers: %+v", m)
		}
	})
}

// testPreparedCompletedAfterRestart: markers that failed until the restart
// are written by the next coordinator, once the groups are ready and not
// before. In a synctest
// bubble, so that "not before" is asserted after the background is blocked
// waiting for the groups, not after a real sleep.
func testPreparedCompletedAfterRestart(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	pid, epoch := e.init("a", 60_000)
	e.add("a", pid, epoch, tp0, tp1)
	first := e.produce(tp0, pid, epoch, 0, 1)
	e.failMarkers.Store(math.MaxInt32) // until the restart
	endCtx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, _, err := e.c.EndTxn(endCtx, "a", pid, epoch, true, false); !errors.Is(err, kerr.ConcurrentTransactions) {
		t.Fatalf("EndTxn with failing markers: %v", err)
	}
	if d := e.describe("a"); d.State != PrepareCommit {
		t.Fatalf("after failed markers: %+v", d)
	}
	// While prepared: a retry, or a new request, must wait.
	if err := e.endTxn("a", pid, epoch, true); !errors.Is(err, kerr.ConcurrentTransactions) {
		t.Fatalf("EndTxn while prepared: %v", err)
	}
	if err := e.c.AddPartitions(ctx, "a", pid, epoch, []TopicPartition{tp0}, false); !errors.Is(err, kerr.ConcurrentTransactions) {
		t.Fatalf("AddPartitions while prepared: %v", err)
	}
	if _, _, err := e.c.InitProducerID(ctx, "a", 60_000, -1, -1); !errors.Is(err, kerr.ConcurrentTransactions) {
		t.Fatalf("InitProducerID while prepared: %v", err)
	}
	if lso := e.dataPart(tp0).LastStableOffset(); lso != first {
		t.Fatalf("LSO %d while prepared, want %d", lso, first)
	}
	e.groupsReady = make(chan struct{})
	// Checks an hour apart (the env's default): what completes the
	// transaction below is the groups becoming ready, not a tick.
	e.c.Close() // the retries of the markers stop
	e.failMarkers.Store(0)
	failed := e.markerCalls.Load()
	e.reopen(false)
	if d := e.describe("a"); d.State != PrepareCommit || !reflect.DeepEqual(d.Partitions, []TopicPartition{tp0, tp1}) {
		t.Fatalf("loaded: %+v", d)
	}
	// The markers wait for the groups, however long they take: a day
	// later, with the background blocked on them, no marker was written.
	e.checks(24 * time.Hour)
	if n := e.markerCalls.Load(); n != failed {
		t.Fatalf("%d marker writes before the groups are ready, want the %d failed ones", n, failed)
	}
	if d := e.describe("a"); d.State != PrepareCommit {
		t.Fatalf("before the groups are ready: %+v", d)
	}
	// Once they are, the markers go out at once.
	close(e.groupsReady)
	e.checks(0)
	if d := e.describe("a"); d.State != CompleteCommit {
		t.Fatalf("once the groups are ready: %+v, want CompleteCommit", d)
	}
	if n := e.markerCalls.Load(); n != failed+2 {
		t.Fatalf("%d marker writes, want the %d failed ones and 2 once the groups are ready", n, failed)
	}
	for _, tp := range []TopicPartition{tp0, tp1} {
		if m := e.markers(tp); !reflect.DeepEqual(m, []mark{{pid, epoch, true}}) {
			t.Fatalf("markers of %v: %+v", tp, m)
		}
	}
	p := e.dataPart(tp0)
	if p.LastStableOffset() != p.HighWatermark() {
		t.Fatalf("LSO %d, HW %d", p.LastStableOffset(), p.HighWatermark())
	}
}

func TestDeletedPartitionNeedsNoMarker(t *testing.T) {
	e := newEnv(t, Config{})
	pid, epoch := e.init("a", 60_000)
	e.add("a", pid, epoch, tp0, TopicPartition{"deleted", 0})
	if err := e.endTxn("a", pid, epoch, false); err != nil {
		t.Fatalf("abort with a deleted partition: %v", err)
	}
	if d := e.describe("a"); d.State != CompleteAbort {
		t.Fatalf("%+v", d)
	}
}

func TestAddOffsets(t *testing.T) {
	n := 0
	e := newEnv(t, Config{OffsetsPartitions: func() int { return n }})
	ctx := context.Background()
	pid, epoch := e.init("a", 60_000)
	if err := e.c.AddOffsets(ctx, "a", pid, epoch, "g"); !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("AddOffsets before %s exists: %v", group.Topic, err)
	}
	n = 5
	if err := e.c.AddOffsets(ctx, "a", pid, epoch, "g"); err != nil {
		t.Fatal(err)
	}
	want := TopicPartition{group.Topic, group.PartitionFor("g", 5)}
	if d := e.describe("a"); !reflect.DeepEqual(d.Partitions, []TopicPartition{want}) || d.State != Ongoing {
		t.Fatalf("after AddOffsets: %+v", d)
	}
	if err := e.c.AddOffsets(ctx, "a", pid, epoch+1, "g"); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("AddOffsets at a wrong epoch: %v", err)
	}
}

func TestDescribeAndList(t *testing.T) {
	e := newEnv(t, Config{})
	if _, err := e.c.Describe("nobody"); !errors.Is(err, kerr.TransactionalIDNotFound) {
		t.Fatalf("describe unknown: %v", err)
	}
	pa, ea := e.init("a", 60_000) // Empty
	pb, eb := e.init("b", 60_000)
	e.add("b", pb, eb, tp0) // Ongoing since t0
	e.advance(10 * time.Second)
	pc, ec := e.init("c", 60_000)
	e.add("c", pc, ec, tp1) // Ongoing since t0+10s
	pd, ed := e.init("d", 60_000)
	e.add("d", pd, ed, tp1)
	if err := e.endTxn("d", pd, ed, true); err != nil { // CompleteCommit
		t.Fatal(err)
	}
	e.advance(5 * time.Second)
	ids := func(f ListFilter) []string {
		t.Helper()
		l, err := e.c.List(f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range l {
			out = append(out, x.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    ListFilter
		want []string
	}{
		{"all", ListFilter{MinDurationMs: -1}, []string{"a", "b", "c", "d"}},
		{"ongoing", ListFilter{States: []State{Ongoing}, MinDurationMs: -1}, []string{"b", "c"}},
		{"empty or committed", ListFilter{States: []State{Empty, CompleteCommit}, MinDurationMs: -1}, []string{"a", "d"}},
		{"by producer", ListFilter{ProducerIDs: []int64{pa, pc, 12345}, MinDurationMs: -1}, []string{"a", "c"}},
		{"state and producer", ListFilter{States: []State{Ongoing}, ProducerIDs: []int64{pa, pc}, MinDurationMs: -1}, []string{"c"}},
		{"open at least 10s", ListFilter{MinDurationMs: 10_000}, []string{"b"}},
		{"open at least 5s", ListFilter{MinDurationMs: 5_000}, []string{"b", "c"}},
		{"open at least 0", ListFilter{MinDurationMs: 0}, []string{"b", "c"}},
		{"none", ListFilter{States: []State{PrepareAbort}, MinDurationMs: -1}, nil},
	} {
		if got := ids(tc.f); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	l, _ := e.c.List(ListFilter{ProducerIDs: []int64{pb}, MinDurationMs: -1})
	if len(l) != 1 || l[0] != (Listing{ID: "b", ProducerID: pb, State: Ongoing}) {
		t.Fatalf("listing of b: %+v", l)
	}
	d := e.describe("b")
	want := Description{ID: "b", State: Ongoing, TimeoutMs: 60_000, StartMs: e.clock().Add(-15 * time.Second).UnixMilli(),
		ProducerID: pb, ProducerEpoch: eb, Partitions: []TopicPartition{tp0}}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("describe b: %+v, want %+v", d, want)
	}
	_ = ea
}

func TestVerifyAndCheckProducer(t *testing.T) {
	e := newEnv(t, Config{})
	pid, epoch := e.init("a", 60_000)
	if err := e.c.Verify(pid, epoch, tp0); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("verify with no transaction: %v", err)
	}
	e.add("a", pid, epoch, tp0)
	for _, tc := range []struct {
		name  string
		pid   int64
		epoch int16
		tp    TopicPartition
		want  error
	}{
		{"in the transaction", pid, epoch, tp0, nil},
		{"a newer epoch", pid, epoch + 1, tp0, nil},
		{"not added", pid, epoch, tp1, kerr.InvalidTxnState},
		{"unknown producer", 4242, 0, tp0, kerr.InvalidTxnState},
	} {
		if err := e.c.Verify(tc.pid, tc.epoch, tc.tp); !isErr(err, tc.want) {
			t.Errorf("verify %s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := e.c.CheckProducer("a", pid, epoch); err != nil {
		t.Fatalf("check current: %v", err)
	}
	if err := e.c.CheckProducer("a", pid+1, epoch); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("check of another producer id: %v", err)
	}
	if err := e.c.CheckProducer("a", pid, epoch+1); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("check of a newer epoch: %v", err)
	}
	// A bump (a new instance) makes the old epoch fail Verify.
	_, epoch2 := e.init("a", 60_000)
	if err := e.c.Verify(pid, epoch, tp0); !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("verify of the old epoch: %v", err)
	}
	if err := e.c.Verify(pid, epoch2, tp0); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("verify after the abort: %v", err)
	}
	if err := e.endTxn("a", pid, epoch2, true); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("EndTxn after the bump: %v", err)
	}
}

// TestExpireIDs runs in a synctest bubble: when b and c are looked at, the
// check that removed a has looked at them too.
func TestExpireIDs(t *testing.T) { synctest.Test(t, testExpireIDs) }

func testExpireIDs(t *testing.T) {
	const interval = 5 * time.Millisecond
	e := newEnv(t, Config{IDExpiration: time.Hour, ExpireCheckInterval: interval})
	pa, ea := e.init("a", 60_000)
	pb, eb := e.init("b", 60_000)
	e.add("b", pb, eb, tp0) // Ongoing: never expires
	e.advance(30 * time.Minute)
	e.init("c", 60_000)
	e.advance(29 * time.Minute)
	// a unused for 59 minutes: ten checks keep it.
	e.checks(10 * interval)
	if _, err := e.c.Describe("a"); err != nil {
		t.Fatalf("a unused for 59 minutes (expiration 60): %v", err)
	}
	e.advance(2 * time.Minute)
	e.checks(interval)
	if _, err := e.c.Describe("a"); !errors.Is(err, kerr.TransactionalIDNotFound) {
		t.Fatalf("a unused for 61 minutes (expiration 60): %v, want TransactionalIDNotFound", err)
	}
	for _, id := range []string{"b", "c"} {
		if _, err := e.c.Describe(id); err != nil {
			t.Fatalf("%s expired: %v", id, err)
		}
	}
	if err := e.c.CheckProducer("a", pa, ea); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("expired id: %v", err)
	}
	// The tombstone keeps it gone after a restart; a new init starts over.
	e.restart(false)
	if _, err := e.c.Describe("a"); !errors.Is(err, kerr.TransactionalIDNotFound) {
		t.Fatalf("expired id after restart: %v", err)
	}
	if pid, ep := e.init("a", 60_000); pid == pa || ep != 0 {
		t.Fatalf("init of an expired id: %d/%d", pid, ep)
	}
}

// TestConcurrentIDs runs transactions of several ids at once (for -race).
func TestConcurrentIDs(t *testing.T) {
	e := newEnv(t, Config{AbortCheckInterval: time.Millisecond})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("id-", i)
			pid, epoch, err := e.c.InitProducerID(ctx, id, 60_000, -1, -1)
			if err != nil {
				errs <- err
				return
			}
			for j := range 5 {
				if err := e.c.AddPartitions(ctx, id, pid, epoch, []TopicPartition{tp0, tp1}, false); err != nil {
					errs <- err
					return
				}
				if err := e.endTxn(id, pid, epoch, j%2 == 0); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if l, _ := e.c.List(ListFilter{States: []State{CompleteCommit}, MinDurationMs: -1}); len(l) != 4 {
		t.Fatalf("%+v", l)
	}
	if n := len(e.markers(tp0)); n != 20 {
		t.Fatalf("%d markers in t-0, want 20", n)
	}
}

// TestTimeoutAcrossRestart: a transaction open at a restart keeps its start
// time, and times out by it.
func TestTimeoutAcrossRestart(t *testing.T) {
	e := newEnv(t, Config{})
	pid, epoch := e.init("a", 5_000)
	e.add("a", pid, epoch, tp0)
	e.produce(tp0, pid, epoch, 0, 1)
	if err := e.dataPart(tp0).Log().Sync(); err != nil {
		t.Fatal(err)
	}
	e.cfg.AbortCheckInterval = 5 * time.Millisecond
	e.restart(true)
	if d := e.describe("a"); d.State != Ongoing {
		t.Fatalf("after restart: %+v", d)
	}
	e.advance(6 * time.Second)
	if d := e.waitState("a", CompleteAbort); d.ProducerEpoch != epoch+1 {
		t.Fatalf("timed out: %+v", d)
	}
	p := e.dataPart(tp0)
	if p.LastStableOffset() != p.HighWatermark() || len(p.AbortedTxns(0, p.HighWatermark())) != 1 {
		t.Fatalf("LSO %d HW %d aborted %+v", p.LastStableOffset(), p.HighWatermark(), p.AbortedTxns(0, p.HighWatermark()))
	}
}

// TestLoadSkipsForeignRecords: records with another key version are not
// the coordinator's, and a tombstone removes an id.
func TestLoadSkipsForeignRecords(t *testing.T) {
	e := newEnv(t, Config{})
	pid, _ := e.init("a", 60_000)
	e.init("b", 60_000)
	p, _ := e.c.cfg.Partition(group.PartitionFor("b", stateParts))
	k := kmsg.TxnMetadataKey{Version: 1, TransactionalID: "z"}
	bad, err := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, []record.Record{
		{Key: k.AppendTo(nil), Value: []byte{1, 2, 3}},
		{OffsetDelta: 1, Key: encodeKey("b"), Value: nil},
		{OffsetDelta: 2, Key: encodeKey("c"), Value: []byte{0, 1}}, // does not decode: skipped
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(bad); err != nil {
		t.Fatal(err)
	}
	e.restart(false)
	l, err := e.c.List(ListFilter{MinDurationMs: -1})
	if err != nil || len(l) != 1 || l[0].ID != "a" || l[0].ProducerID != pid {
		t.Fatalf("loaded: %+v %v", l, err)
	}
}

// TestEndTxnBumping: EndTxn under KIP-890 part 2 bumps the epoch at every
// end; the markers carry the new epoch; a retry (with the epoch before the
// bump) gets the same answer.
func TestEndTxnBumping(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	pid, epoch := e.init("a", 60_000)
	if err := e.c.AddImplicitly(ctx, pid, epoch, tp0); err != nil {
		t.Fatalf("implicit add: %v", err)
	}
	if d := e.describe("a"); d.State != Ongoing || !reflect.DeepEqual(d.Partitions, []TopicPartition{tp0}) {
		t.Fatalf("after the implicit add: %+v", d)
	}
	e.produce(tp0, pid, epoch, 0, 1)
	p2, e2, err := e.c.EndTxn(ctx, "a", pid, epoch, true, true)
	if err != nil || p2 != pid || e2 != epoch+1 {
		t.Fatalf("commit: %d/%d %v", p2, e2, err)
	}
	if m := e.markers(tp0); !reflect.DeepEqual(m, []mark{{pid, epoch + 1, true}}) {
		t.Fatalf("markers: %+v", m)
	}
	// A late write of the ended transaction is fenced in the partition.
	b, _ := record.BuildBatch(record.BatchSpec{Attributes: record.AttrTransactional, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: 1},
		[]record.Record{{Value: []byte("late")}})
	if _, err := e.dataPart(tp0).Append(b); !errors.Is(err, partition.ErrInvalidProducerEpoch) {
		t.Fatalf("late write: %v", err)
	}
	// The retry, and the opposite outcome.
	if p, ep, err := e.c.EndTxn(ctx, "a", pid, epoch, true, true); err != nil || p != pid || ep != epoch+1 {
		t.Fatalf("retry: %d/%d %v", p, ep, err)
	}
	if _, _, err := e.c.EndTxn(ctx, "a", pid, epoch, false, true); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("abort retry of a commit: %v", err)
	}
	// With no open transaction: a commit is refused, an abort bumps.
	if _, _, err := e.c.EndTxn(ctx, "a", pid, e2, true, true); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("commit of nothing: %v", err)
	}
	if p, ep, err := e.c.EndTxn(ctx, "a", pid, e2, false, true); err != nil || p != pid || ep != e2+1 {
		t.Fatalf("abort of nothing: %d/%d %v", p, ep, err)
	}
	if d := e.describe("a"); d.State != CompleteAbort || d.ProducerEpoch != e2+1 {
		t.Fatalf("after the abort of nothing: %+v", d)
	}
	// Implicit adds check the producer.
	if err := e.c.AddImplicitly(ctx, 4242, 0, tp0); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("implicit add of an unknown producer: %v", err)
	}
	if err := e.c.AddImplicitly(ctx, pid, epoch, tp0); !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("implicit add at an old epoch: %v", err)
	}
}

// TestEndTxnBumpingExhaustsEpochs: the EndTxn that spends the last epoch
// answers a new producer id, and its retry gets the same answer.
func TestEndTxnBumpingExhaustsEpochs(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	const start = math.MaxInt16 - 2
	e.writeState(&meta{id: "a", producerID: 500, lastProducer: -1, epoch: start, lastEpoch: -1,
		timeoutMs: 60_000, state: Empty, startMs: -1, partitions: map[TopicPartition]struct{}{}})
	e.restart(false)
	e.add("a", 500, start, tp0)
	pid, epoch, err := e.c.EndTxn(ctx, "a", 500, start, true, true)
	if err != nil || pid == 500 || epoch != 0 {
		t.Fatalf("commit at the last epochs: %d/%d %v", pid, epoch, err)
	}
	if m := e.markers(tp0); len(m) != 1 || !m[0].commit || m[0].pid != 500 || m[0].epoch != start+1 {
		t.Fatalf("markers: %+v", m)
	}
	if d := e.describe("a"); d.ProducerID != pid || d.ProducerEpoch != 0 || d.State != CompleteCommit {
		t.Fatalf("after: %+v", d)
	}
	p2, e2, err := e.c.EndTxn(ctx, "a", 500, start, true, true)
	if err != nil || p2 != pid || e2 != 0 {
		t.Fatalf("the retry of the EndTxn that spent the last epoch (producer 500 epoch %d) answered %d/%d %v, want %d/0",
			start, p2, e2, err, pid)
	}
}
