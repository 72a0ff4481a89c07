package group

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func (h *harness) txnCommit(r TxnCommitRequest) *answer[CommitResult] {
	a, f := capture[CommitResult]()
	h.run(h.s.TxnCommit(h.now, r, f))
	return a
}

func (h *harness) fetchStable(g string, tps ...TopicPartition) FetchResult {
	a, f := capture[FetchResult]()
	h.run(h.s.FetchOffsets(h.now, FetchRequest{Group: g, Partitions: tps, MemberEpoch: -1, RequireStable: true}, f))
	if !a.got {
		h.t.Fatal("fetch not answered")
	}
	return a.v
}

func txnReq(g string, pid int64, offs ...CommitOffset) TxnCommitRequest {
	return TxnCommitRequest{Group: g, ProducerID: pid, ProducerEpoch: 0, Generation: -1, Offsets: offs}
}

func TestTxnCommitVisibleOnCommitMarker(t *testing.T) {
	h := newHarness(t, Settings{MaxMetadataBytes: 8})
	tp0, tp1, tp2 := TopicPartition{"t", 0}, TopicPartition{"t", 1}, TopicPartition{"t", 2}
	// A plain commit of tp2 is stable whatever the transactions do.
	h.commit(CommitRequest{Group: "g", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp2, Offset: 3}}})

	h.hold = true
	c := h.txnCommit(txnReq("g", 7,
		CommitOffset{TopicPartition: tp0, Offset: 10, LeaderEpoch: 2, Metadata: "m"},
		CommitOffset{TopicPartition: tp1, Offset: 20, LeaderEpoch: -1, Metadata: "far too long"}))
	if c.got {
		t.Fatal("txn commit answered before durable")
	}
	if len(h.held) != 1 || h.held[0].Producer == nil || h.held[0].Producer.ID != 7 || h.held[0].Producer.Epoch != 0 {
		t.Fatalf("txn commit append: %+v", h.held)
	}
	if len(h.held[0].Records) != 1 {
		t.Fatalf("records of the txn commit: %d, want 1 (the too-large metadata is refused)", len(h.held[0].Records))
	}
	// Not pending before it is durable.
	if f := h.fetchStable("g", tp0); f.Offsets[0].Err != nil {
		t.Fatalf("pending before durable: %+v", f)
	}
	h.release(nil)
	if !c.got || c.v.Errs[0] != nil || c.v.Errs[1] != kerr.OffsetMetadataTooLarge {
		t.Fatalf("txn commit: %+v", c.v)
	}
	// Pending: not visible, and require_stable answers UNSTABLE_OFFSET_COMMIT
	// for the pending partition only.
	if f := h.fetch("g", tp0); f.Offsets[0].Offset != -1 {
		t.Fatalf("pending offset visible: %+v", f)
	}
	f := h.fetchStable("g", tp0, tp1, tp2)
	if f.Err != nil || f.Offsets[0].Err != kerr.UnstableOffsetCommit || f.Offsets[1].Err != nil || f.Offsets[2].Err != nil || f.Offsets[2].Offset != 3 {
		t.Fatalf("require_stable while pending: %+v", f)
	}
	// Fetching every partition with require_stable fails as a whole.
	a, fn := capture[FetchResult]()
	h.run(h.s.FetchOffsets(h.now, FetchRequest{Group: "g", MemberEpoch: -1, RequireStable: true}, fn))
	if a.v.Err != kerr.UnstableOffsetCommit {
		t.Fatalf("require_stable fetch of all: %+v", a.v)
	}
	// Other groups are not affected.
	if f := h.fetchStable("other", tp0); f.Offsets[0].Err != nil {
		t.Fatalf("other group: %+v", f)
	}
	// A marker of another producer changes nothing.
	h.run(h.s.CompleteTxn(h.now, 8, true))
	if f := h.fetchStable("g", tp0); f.Offsets[0].Err != kerr.UnstableOffsetCommit {
		t.Fatalf("after another producer's marker: %+v", f)
	}

	h.run(h.s.CompleteTxn(h.now, 7, true))
	f = h.fetchStable("g", tp0, tp1)
	if f.Offsets[0].Err != nil || f.Offsets[0].Offset != 10 || f.Offsets[0].LeaderEpoch != 2 || f.Offsets[0].Metadata != "m" || f.Offsets[1].Offset != -1 {
		t.Fatalf("after commit marker: %+v", f)
	}
	// A second marker (a retry) is harmless.
	h.run(h.s.CompleteTxn(h.now, 7, true))
	if f := h.fetch("g", tp0); f.Offsets[0].Offset != 10 {
		t.Fatalf("after a second marker: %+v", f)
	}
}

func TestTxnCommitDroppedOnAbortMarker(t *testing.T) {
	h := newHarness(t, Settings{})
	tp := TopicPartition{"t", 0}
	h.commit(CommitRequest{Group: "g", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp, Offset: 5}}})
	if c := h.txnCommit(txnReq("g", 7, CommitOffset{TopicPartition: tp, Offset: 50})); !c.got || c.v.Errs[0] != nil {
		t.Fatalf("txn commit: %+v", c)
	}
	if f := h.fetch("g", tp); f.Offsets[0].Offset != 5 {
		t.Fatalf("pending offset replaced the committed one: %+v", f)
	}
	h.run(h.s.CompleteTxn(h.now, 7, false))
	if f := h.fetchStable("g", tp); f.Offsets[0].Err != nil || f.Offsets[0].Offset != 5 {
		t.Fatalf("after abort: %+v", f)
	}
	// A commit marker after the abort finds nothing pending.
	h.run(h.s.CompleteTxn(h.now, 7, true))
	if f := h.fetch("g", tp); f.Offsets[0].Offset != 5 {
		t.Fatalf("commit marker after abort: %+v", f)
	}
}

func TestTxnCommitOfTwoProducers(t *testing.T) {
	h := newHarness(t, Settings{})
	tp0, tp1 := TopicPartition{"t", 0}, TopicPartition{"t", 1}
	h.txnCommit(txnReq("g", 1, CommitOffset{TopicPartition: tp0, Offset: 1}))
	h.txnCommit(txnReq("g", 2, CommitOffset{TopicPartition: tp0, Offset: 2}, CommitOffset{TopicPartition: tp1, Offset: 2}))
	h.run(h.s.CompleteTxn(h.now, 2, true))
	// Producer 1 still holds tp0.
	f := h.fetchStable("g", tp0, tp1)
	if f.Offsets[0].Err != kerr.UnstableOffsetCommit || f.Offsets[1].Err != nil || f.Offsets[1].Offset != 2 {
		t.Fatalf("after producer 2 commits: %+v", f)
	}
	h.run(h.s.CompleteTxn(h.now, 1, false))
	f = h.fetchStable("g", tp0, tp1)
	if f.Offsets[0].Err != nil || f.Offsets[0].Offset != 2 || f.Offsets[1].Offset != 2 {
		t.Fatalf("after producer 1 aborts: %+v", f)
	}
}

func TestTxnCommitFailedAppend(t *testing.T) {
	h := newHarness(t, Settings{})
	tp := TopicPartition{"t", 0}
	h.hold = true
	c := h.txnCommit(txnReq("g", 7, CommitOffset{TopicPartition: tp, Offset: 1}))
	h.release(kerr.MessageTooLarge)
	if !c.got || c.v.Errs[0] != kerr.InvalidCommitOffsetSize {
		t.Fatalf("txn commit of a too-large batch: %+v", c.v)
	}
	if f := h.fetchStable("g", tp); f.Offsets[0].Err != nil || f.Offsets[0].Offset != -1 {
		t.Fatalf("failed txn commit left a pending offset: %+v", f)
	}
}

func TestTxnCommitValidatesMember(t *testing.T) {
	h := newHarness(t, Settings{})
	ids := h.stable("g", 1)
	tp := TopicPartition{"t", 0}
	for _, tc := range []struct {
		name string
		r    TxnCommitRequest
		want error
	}{
		{"no member details (before v3)", TxnCommitRequest{Group: "g", ProducerID: 1, Generation: -1}, nil},
		{"member", TxnCommitRequest{Group: "g", ProducerID: 1, MemberID: ids[0], Generation: 1}, nil},
		{"old generation", TxnCommitRequest{Group: "g", ProducerID: 1, MemberID: ids[0], Generation: 0}, kerr.IllegalGeneration},
		{"unknown member", TxnCommitRequest{Group: "g", ProducerID: 1, MemberID: "ghost", Generation: 1}, kerr.UnknownMemberID},
		{"new group is created", TxnCommitRequest{Group: "new", ProducerID: 1, Generation: -1}, nil},
	} {
		tc.r.Offsets = []CommitOffset{{TopicPartition: tp, Offset: 5}}
		if c := h.txnCommit(tc.r); !c.got || c.v.Errs[0] != tc.want {
			t.Errorf("%s: %+v, want %v", tc.name, c.v, tc.want)
		}
	}
}

func TestReplayTxnAndMarker(t *testing.T) {
	h := newHarness(t, Settings{})
	tp0, tp1 := TopicPartition{"t", 0}, TopicPartition{"t", 1}
	h.commit(CommitRequest{Group: "g", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp1, Offset: 9}}})
	plain := len(h.records)
	h.txnCommit(txnReq("g", 7, CommitOffset{TopicPartition: tp0, Offset: 70, LeaderEpoch: 1, Metadata: "x"}))
	h.txnCommit(txnReq("g", 8, CommitOffset{TopicPartition: tp1, Offset: 80}))
	h.txnCommit(txnReq("g", 9, CommitOffset{TopicPartition: tp0, Offset: 90}))
	if len(h.records) != plain+3 {
		t.Fatalf("%d records, want %d", len(h.records), plain+3)
	}
	txnRecs := h.records[plain:]
	// The log as loading reads it: the plain commit, the three
	// transactional batches, a commit marker for 7, an abort for 8; 9 is
	// still open.
	s2 := NewShard(Settings{MinSessionTimeout: 1})
	for _, r := range h.records[:plain] {
		if err := s2.Replay(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	for i, pid := range []int64{7, 8, 9} {
		if err := s2.ReplayTxn(pid, txnRecs[i].Key, txnRecs[i].Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := s2.ReplayTxn(7, []byte{0, 1, 0}, []byte{0}); err == nil {
		t.Fatal("ReplayTxn of a bad record: no error")
	}
	s2.ReplayMarker(7, true)
	s2.ReplayMarker(8, false)
	h2 := &harness{t: t, s: s2, now: h.now}
	h2.run(s2.Loaded(h2.now))
	f := h2.fetchStable("g", tp0, tp1)
	// tp0: 7's commit is applied but 9's is pending.
	if f.Offsets[0].Err != kerr.UnstableOffsetCommit {
		t.Fatalf("tp0 with producer 9 open: %+v", f)
	}
	if f.Offsets[1].Err != nil || f.Offsets[1].Offset != 9 {
		t.Fatalf("tp1 after 8 aborted: %+v", f)
	}
	if f := h2.fetch("g", tp0); f.Offsets[0].Offset != 70 || f.Offsets[0].LeaderEpoch != 1 || f.Offsets[0].Metadata != "x" {
		t.Fatalf("tp0 after 7 committed: %+v", f)
	}
	// The marker of 9 arrives after loading.
	h2.run(s2.CompleteTxn(h2.now, 9, true))
	if f := h2.fetchStable("g", tp0); f.Offsets[0].Err != nil || f.Offsets[0].Offset != 90 {
		t.Fatalf("tp0 after 9 committed: %+v", f)
	}
}

// TestTxnCommitOlderThanPlainCommit: Kafka (GroupMetadata.
// completePendingTxnOffsetCommit) applies a committed transactional offset
// only if the group's current offset of the partition was appended before
// it: a plain commit written after the transactional one wins.
func TestTxnCommitOlderThanPlainCommit(t *testing.T) {
	h := newHarness(t, Settings{})
	tp := TopicPartition{"t", 0}
	if c := h.txnCommit(txnReq("g", 7, CommitOffset{TopicPartition: tp, Offset: 50})); !c.got || c.v.Errs[0] != nil {
		t.Fatalf("txn commit: %+v", c)
	}
	if c := h.commit(CommitRequest{Group: "g", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp, Offset: 60}}}); !c.got || c.v.Errs[0] != nil {
		t.Fatalf("plain commit: %+v", c)
	}
	h.run(h.s.CompleteTxn(h.now, 7, true))
	if f := h.fetch("g", tp); f.Offsets[0].Offset != 60 {
		t.Fatalf("a commit marker overwrote the later plain commit: offset %d, want 60", f.Offsets[0].Offset)
	}
}
