package group

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// Tests of leadership: Elect and Resign as partitions of __consumer_offsets
// move between brokers (one Coordinator per broker over the same log).

func newTestCoordinator(t *testing.T, l *offsetsLog, cfg Config) *Coordinator {
	t.Helper()
	if cfg.Settings.MinSessionTimeout == 0 {
		cfg.Settings.MinSessionTimeout = time.Millisecond
	}
	if cfg.Settings.InitialRebalanceDelay == 0 {
		cfg.Settings.InitialRebalanceDelay = -1
	}
	cfg.Partition = l.partition
	c := New(cfg)
	t.Cleanup(c.Close)
	return c
}

func waitReady(t *testing.T, c *Coordinator) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("coordinator did not load")
	}
}

// waitFor waits for one value on ch.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

// waitLocalEnd waits, woken by the partition's SetOnLocalEnd hook through
// ch, until p's local end reaches end (an append of the coordinator).
func waitLocalEnd(t *testing.T, p *partition.Partition, ch <-chan struct{}, end int64) {
	t.Helper()
	for p.LocalEnd() < end {
		waitFor(t, ch, "append")
	}
}

func commitOffset(t *testing.T, c *Coordinator, group string, tp TopicPartition, off int64) error {
	t.Helper()
	cr := call(t, func(f func(CommitResult)) {
		c.Commit(CommitRequest{Group: group, Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp, Offset: off}}}, f)
	})
	return cr.Errs[0]
}

func fetchOffset(t *testing.T, c *Coordinator, group string, tp TopicPartition) FetchResult {
	t.Helper()
	return call(t, func(f func(FetchResult)) {
		c.FetchOffsets(FetchRequest{Group: group, Partitions: []TopicPartition{tp}}, f)
	})
}

// TestElectLoadsAnotherCoordinatorsWrites: a group and its offsets written
// through one coordinator are loaded by another elected over the same
// partition once the first resigned, and by the first when it is elected
// again; the resigned one answers NOT_COORDINATOR and lists nothing.
func TestElectLoadsAnotherCoordinatorsWrites(t *testing.T) {
	l := openOffsetsLog(t, vfs.NewMem(), 2)
	defer l.close()
	c1 := newTestCoordinator(t, l, Config{})
	p := PartitionFor("g", 2)
	c1.Elect(p, 2, 3)
	waitReady(t, c1)
	if c1.Partitions() != 2 {
		t.Fatalf("partitions %d, want 2", c1.Partitions())
	}
	// Only p is led: a group of the other partition has no coordinator here.
	other := "h" // hashes to the other partition
	if PartitionFor(other, 2) == p {
		t.Fatalf("%q and g hash to the same partition", other)
	}
	if d := call(t, func(f func(Description)) { c1.Describe(other, f) }); d.Err != kerr.NotCoordinator {
		t.Fatalf("describe of a group of a partition not led: %+v", d)
	}

	req := joinReq("g", "")
	first := call(t, func(f func(JoinResult)) { c1.Join(req, f) })
	req.MemberID = first.MemberID
	j := call(t, func(f func(JoinResult)) { c1.Join(req, f) })
	if j.Err != nil || j.Generation != 1 {
		t.Fatalf("join: %+v", j)
	}
	s := call(t, func(f func(SyncResult)) {
		c1.Sync(SyncRequest{Group: "g", MemberID: j.MemberID, Generation: 1, Assignments: map[string][]byte{j.MemberID: []byte("all")}}, f)
	})
	if s.Err != nil {
		t.Fatalf("sync: %+v", s)
	}
	tp := TopicPartition{"t", 0}
	cr := call(t, func(f func(CommitResult)) {
		c1.Commit(CommitRequest{Group: "g", MemberID: j.MemberID, Generation: 1, RetentionMs: -1,
			Offsets: []CommitOffset{{TopicPartition: tp, Offset: 42}}}, f)
	})
	if cr.Errs[0] != nil {
		t.Fatalf("commit: %+v", cr)
	}
	if st := c1.Stats(t.Context()); len(st) != 1 || st[0].Group != "g" {
		t.Fatalf("stats while leading: %+v", st)
	}

	c1.Resign(p, 4)
	if f := fetchOffset(t, c1, "g", tp); f.Err != kerr.NotCoordinator {
		t.Fatalf("fetch after resign: %+v", f)
	}
	if err := commitOffset(t, c1, "g", tp, 43); err != kerr.NotCoordinator {
		t.Fatalf("commit after resign: %v", err)
	}
	if groups, err := call2(t, func(f func([]Listing, error)) { c1.List(ListRequest{}, f) }); err != nil || len(groups) != 0 {
		t.Fatalf("list after resign: %+v %v", groups, err)
	}
	if st := c1.Stats(t.Context()); len(st) != 0 {
		t.Fatalf("stats after resign: %+v", st)
	}
	if c1.Partitions() != 2 {
		t.Fatalf("partitions after resign %d, want 2", c1.Partitions())
	}

	check := func(c *Coordinator) {
		t.Helper()
		if f := fetchOffset(t, c, "g", tp); f.Err != nil || f.Offsets[0].Offset != 42 {
			t.Fatalf("fetch after elect: %+v", f)
		}
		d := call(t, func(f func(Description)) { c.Describe("g", f) })
		if d.Err != nil || d.State != "Stable" || len(d.Members) != 1 || d.Members[0].MemberID != j.MemberID {
			t.Fatalf("describe after elect: %+v", d)
		}
		groups, err := call2(t, func(f func([]Listing, error)) { c.List(ListRequest{}, f) })
		if err != nil || len(groups) != 1 || groups[0].Group != "g" {
			t.Fatalf("list after elect: %+v %v", groups, err)
		}
	}
	c2 := newTestCoordinator(t, l, Config{})
	c2.Elect(p, 2, 4)
	waitReady(t, c2)
	check(c2)
	// The member's session goes on at the new coordinator.
	if err := call(t, func(f func(error)) {
		c2.Heartbeat(HeartbeatRequest{Group: "g", MemberID: j.MemberID, Generation: 1}, f)
	}); err != nil {
		t.Fatalf("heartbeat at the new coordinator: %v", err)
	}
	c2.Resign(p, 5)

	c1.Elect(p, 2, 5)
	waitReady(t, c1)
	check(c1)
}

// TestElectLoadInProgress: a new leader whose log holds records the old
// one appended but did not get committed loads them (they will be
// committed) and answers COORDINATOR_LOAD_IN_PROGRESS until they are; the
// old one answered the commit NOT_COORDINATOR on Resign. A transaction
// marker's completion waits for the load, and one of a partition not led
// fails at once.
func TestElectLoadInProgress(t *testing.T) {
	l := openOffsetsLog(t, vfs.NewMem(), 1)
	defer l.close()
	p, _ := l.partition(0)
	p.SetExternalHighWatermark(true)
	appended := make(chan struct{}, 16)
	p.SetOnLocalEnd(func() {
		select {
		case appended <- struct{}{}:
		default:
		}
	})
	tp := TopicPartition{"t", 0}

	c1 := newTestCoordinator(t, l, Config{CommitTimeout: time.Hour})
	c1.Elect(0, 1, 1)
	waitReady(t, c1)
	res := make(chan CommitResult, 1)
	c1.Commit(CommitRequest{Group: "g", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp, Offset: 7}}},
		func(r CommitResult) { res <- r })
	waitLocalEnd(t, p, appended, 1)
	p.AdvanceHighWatermark(p.LocalEnd())
	if r := waitFor(t, res, "commit answer"); r.Errs[0] != nil {
		t.Fatalf("commit: %+v", r)
	}
	// The next commit is appended but never committed: parked until Resign.
	c1.Commit(CommitRequest{Group: "g", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp, Offset: 8}}},
		func(r CommitResult) { res <- r })
	waitLocalEnd(t, p, appended, 2)
	c1.Resign(0, 2)
	if r := waitFor(t, res, "commit answer"); r.Errs[0] != kerr.NotCoordinator {
		t.Fatalf("parked commit after resign: %+v", r)
	}
	if p.HighWatermark() >= p.LocalEnd() {
		t.Fatalf("high watermark %d, want below the local end %d", p.HighWatermark(), p.LocalEnd())
	}

	c2 := newTestCoordinator(t, l, Config{})
	if ok := call(t, func(f func(bool)) { c2.CompleteTxn(0, 9, true, f) }); ok {
		t.Fatal("CompleteTxn of a partition not led: ok")
	}
	c2.Elect(0, 1, 2)
	if f := fetchOffset(t, c2, "g", tp); f.Err != kerr.CoordinatorLoadInProgress {
		t.Fatalf("fetch while loading: %+v", f)
	}
	if err := commitOffset(t, c2, "g", tp, 9); err != kerr.CoordinatorLoadInProgress {
		t.Fatalf("commit while loading: %v", err)
	}
	completed := make(chan bool, 1)
	c2.CompleteTxn(0, 9, true, func(ok bool) { completed <- ok })
	select {
	case <-c2.Ready():
		t.Fatal("ready while loading")
	default:
	}
	p.AdvanceHighWatermark(p.LocalEnd())
	waitReady(t, c2)
	if !waitFor(t, completed, "CompleteTxn answer") {
		t.Fatal("CompleteTxn parked during the load: not ok")
	}
	if f := fetchOffset(t, c2, "g", tp); f.Err != nil || f.Offsets[0].Offset != 8 {
		t.Fatalf("fetch after load: %+v (want the uncommitted commit of the old leader, 8)", f)
	}
}

// TestResignWhileLoading: a Resign of a partition still loading answers
// what waits for the load (false for CompleteTxn) and stops Ready waiting
// for it.
func TestResignWhileLoading(t *testing.T) {
	l := openOffsetsLog(t, vfs.NewMem(), 1)
	defer l.close()
	p, _ := l.partition(0)
	// The new leader's log end is not committed yet: its load waits.
	p.SetExternalHighWatermark(true)
	if _, err := p.Append(offsetBatch(t, "g", TopicPartition{"t", 0}, 3)); err != nil {
		t.Fatal(err)
	}
	c := newTestCoordinator(t, l, Config{})
	c.Elect(0, 1, 1)
	completed := make(chan bool, 1)
	c.CompleteTxn(0, 9, true, func(ok bool) { completed <- ok })
	c.Resign(0, 1)
	if waitFor(t, completed, "CompleteTxn answer") {
		t.Fatal("CompleteTxn parked during a load that was resigned: ok")
	}
	waitReady(t, c)
}

// TestResignAnswersParkedJoin: a JoinGroup waiting in a rebalance is
// answered NOT_COORDINATOR on Resign, and so are later requests.
func TestResignAnswersParkedJoin(t *testing.T) {
	l := openOffsetsLog(t, vfs.NewMem(), 1)
	defer l.close()
	c := newTestCoordinator(t, l, Config{Settings: Settings{InitialRebalanceDelay: time.Hour}})
	c.Start(1)
	waitReady(t, c)
	req := joinReq("g", "")
	first := call(t, func(f func(JoinResult)) { c.Join(req, f) })
	req.MemberID = first.MemberID
	joined := make(chan JoinResult, 1)
	c.Join(req, func(r JoinResult) { joined <- r })
	// The join waits out group.initial.rebalance.delay.ms; a describe
	// answered after it was queued shows it parked.
	if d := call(t, func(f func(Description)) { c.Describe("g", f) }); d.State != "PreparingRebalance" {
		t.Fatalf("describe with a parked join: %+v", d)
	}
	select {
	case r := <-joined:
		t.Fatalf("join answered before resign: %+v", r)
	default:
	}
	c.Resign(0, 0)
	if r := waitFor(t, joined, "join answer"); r.Err != kerr.NotCoordinator || r.Generation != -1 {
		t.Fatalf("parked join after resign: %+v", r)
	}
	if r := call(t, func(f func(JoinResult)) { c.Join(req, f) }); r.Err != kerr.NotCoordinator {
		t.Fatalf("join after resign: %+v", r)
	}
}

// TestElectResignEpochs: an Elect in the runner's epoch or an older one,
// and a Resign in an older one, change nothing; a newer Elect replaces the
// runner (a reload); an Elect with another partition count is ignored.
func TestElectResignEpochs(t *testing.T) {
	l := openOffsetsLog(t, vfs.NewMem(), 1)
	defer l.close()
	c := newTestCoordinator(t, l, Config{})
	c.Elect(0, 1, 5)
	waitReady(t, c)
	r := c.runnerOf(0)
	tp := TopicPartition{"t", 0}
	if err := commitOffset(t, c, "g", tp, 1); err != nil {
		t.Fatalf("commit: %v", err)
	}
	c.Elect(0, 1, 5)
	c.Elect(0, 1, 4)
	c.Resign(0, 4)
	c.Elect(0, 2, 9) // another partition count: a broker bug
	c.Start(1)       // the count is fixed: nothing
	if c.runnerOf(0) != r || c.Partitions() != 1 {
		t.Fatalf("runner replaced by a stale notice (partitions %d)", c.Partitions())
	}
	if f := fetchOffset(t, c, "g", tp); f.Err != nil || f.Offsets[0].Offset != 1 {
		t.Fatalf("fetch after stale notices: %+v", f)
	}

	c.Elect(0, 1, 6)
	if c.runnerOf(0) == r {
		t.Fatal("a newer epoch did not replace the runner")
	}
	waitReady(t, c)
	if f := fetchOffset(t, c, "g", tp); f.Err != nil || f.Offsets[0].Offset != 1 {
		t.Fatalf("fetch after a newer election: %+v", f)
	}
	c.Resign(0, 6)
	if f := fetchOffset(t, c, "g", tp); f.Err != kerr.NotCoordinator {
		t.Fatalf("fetch after resign: %+v", f)
	}
	c.Resign(0, 7) // nothing to resign, but an Elect must be newer
	c.Elect(0, 1, 7)
	if c.runnerOf(0) != nil {
		t.Fatal("an Elect in the epoch of a Resign started a runner")
	}
	c.Elect(0, 1, 8)
	waitReady(t, c)
	c.Resign(0, -1)
	if f := fetchOffset(t, c, "g", tp); f.Err != kerr.NotCoordinator {
		t.Fatalf("fetch after an unconditional resign: %+v", f)
	}
}

// TestCommitNotCommitted: a commit whose append the partition cannot
// commit any more (it turned follower after the append) is answered
// NOT_COORDINATOR, as is one it refuses (a follower takes no append); one
// the in-sync replicas do not take within CommitTimeout is answered
// COORDINATOR_NOT_AVAILABLE.
func TestCommitNotCommitted(t *testing.T) {
	l := openOffsetsLog(t, vfs.NewMem(), 1)
	defer l.close()
	p, _ := l.partition(0)
	c := newTestCoordinator(t, l, Config{CommitTimeout: time.Hour})
	c.Elect(0, 1, 0)
	waitReady(t, c)
	p.SetExternalHighWatermark(true)
	appended := make(chan struct{}, 16)
	p.SetOnLocalEnd(func() {
		select {
		case appended <- struct{}{}:
		default:
		}
	})
	tp := TopicPartition{"t", 0}
	res := make(chan CommitResult, 1)
	c.Commit(CommitRequest{Group: "g", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp, Offset: 7}}},
		func(r CommitResult) { res <- r })
	waitLocalEnd(t, p, appended, 1)
	if err := p.BecomeFollower(1); err != nil {
		t.Fatal(err)
	}
	if r := waitFor(t, res, "commit answer"); r.Errs[0] != kerr.NotCoordinator {
		t.Fatalf("commit whose append was not committed: %+v", r)
	}
	if f := fetchOffset(t, c, "g", tp); f.Err != nil || f.Offsets[0].Offset != -1 {
		t.Fatalf("fetch after a failed commit: %+v", f)
	}
	if err := commitOffset(t, c, "g", tp, 8); err != kerr.NotCoordinator {
		t.Fatalf("commit on a follower: %v", err)
	}

	l2 := openOffsetsLog(t, vfs.NewMem(), 1)
	defer l2.close()
	p2, _ := l2.partition(0)
	c2 := newTestCoordinator(t, l2, Config{CommitTimeout: 10 * time.Millisecond})
	c2.Elect(0, 1, 0)
	waitReady(t, c2)
	p2.SetExternalHighWatermark(true)
	if err := commitOffset(t, c2, "g", tp, 9); err != kerr.CoordinatorNotAvailable {
		t.Fatalf("commit not committed in time: %v", err)
	}
}

// TestStartThenReady: Ready after Start closes once every partition has
// loaded; an Elect in a newer epoch gives a new channel until it loaded.
func TestStartThenReady(t *testing.T) {
	l := openOffsetsLog(t, vfs.NewMem(), 2)
	defer l.close()
	p, _ := l.partition(1)
	c := newTestCoordinator(t, l, Config{})
	c.Start(2)
	waitReady(t, c)
	old := c.Ready()
	p.SetExternalHighWatermark(true)
	if _, err := p.Append(offsetBatch(t, "g", TopicPartition{"t", 0}, 3)); err != nil {
		t.Fatal(err)
	}
	c.Elect(1, 2, 1)
	select {
	case <-c.Ready():
		t.Fatal("ready while a newly elected partition loads")
	default:
	}
	select {
	case <-old:
	default:
		t.Fatal("the channel of Start reopened")
	}
	p.AdvanceHighWatermark(p.LocalEnd())
	waitReady(t, c)
	// "g" hashes to partition 1: the record appended is loaded.
	if PartitionFor("g", 2) != 1 {
		t.Fatalf("g hashes to %d", PartitionFor("g", 2))
	}
	if f := fetchOffset(t, c, "g", TopicPartition{"t", 0}); f.Err != nil || f.Offsets[0].Offset != 3 {
		t.Fatalf("fetch after load: %+v", f)
	}
}

// offsetBatch is a batch of one offset commit record.
func offsetBatch(t *testing.T, group string, tp TopicPartition, off int64) []byte {
	t.Helper()
	now := time.Now()
	b, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: now.UnixMilli(), MaxTimestamp: now.UnixMilli(), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Key: offsetKey(group, tp), Value: offsetValue(offset{Offset: off, LeaderEpoch: -1, CommitTime: now})}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
