package group

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

var cgTopics = map[string]int32{"t": 6, "u": 3}

func (h *harness) cgHeartbeat(r ConsumerHeartbeatRequest) ConsumerHeartbeatResult {
	h.t.Helper()
	if r.Group == "" {
		r.Group = "cg"
	}
	if r.Topics == nil {
		r.Topics = cgTopics
	}
	a, f := capture[ConsumerHeartbeatResult]()
	h.run(h.s.ConsumerHeartbeat(h.now, r, f))
	if !a.got {
		h.t.Fatal("no heartbeat reply")
	}
	return a.v
}

func (h *harness) cgJoin(id string, topics ...string) ConsumerHeartbeatResult {
	h.t.Helper()
	return h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: id, RebalanceTimeoutMs: 10000, SubscribedTopics: topics, OwnedKnown: true})
}

func parts(tps []TopicPartition) []int32 {
	var out []int32
	for _, tp := range tps {
		out = append(out, tp.Partition)
	}
	return out
}

func TestConsumerSessionTimeout(t *testing.T) {
	h := newHarness(t, Settings{ConsumerSessionTimeout: 10 * time.Second})
	a := h.cgJoin("a", "t")
	if a.Err != nil || len(a.Assignment) != 6 || a.HeartbeatInterval != 5000 {
		t.Fatalf("join: %+v", a)
	}
	b := h.cgJoin("b", "t")
	if b.Err != nil || len(b.Assignment) != 0 {
		t.Fatalf("join b: %+v", b)
	}
	// a never heartbeats again; b keeps its session alive and, once a
	// has expired, gets everything.
	for i := 0; i < 3; i++ {
		h.advance(4 * time.Second)
		b = h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "b", MemberEpoch: b.MemberEpoch, RebalanceTimeoutMs: -1, OwnedKnown: true, Owned: b.Assignment})
		if b.Err != nil {
			t.Fatalf("b: %v", b.Err)
		}
	}
	if len(b.Assignment) != 6 {
		t.Fatalf("after a expired, b holds %v", b.Assignment)
	}
	if r := h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "a", MemberEpoch: a.MemberEpoch, RebalanceTimeoutMs: -1}); !errors.Is(r.Err, kerr.UnknownMemberID) {
		t.Errorf("expired member heartbeats: %v", r.Err)
	}
}

func TestConsumerRevocationTimeout(t *testing.T) {
	h := newHarness(t, Settings{})
	a := h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "a", RebalanceTimeoutMs: 1000, SubscribedTopics: []string{"t"}, OwnedKnown: true})
	h.cgJoin("b", "t")
	// a is asked to revoke three and never reports them gone.
	r := h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "a", MemberEpoch: a.MemberEpoch, RebalanceTimeoutMs: -1, OwnedKnown: true, Owned: a.Assignment})
	if len(r.Assignment) != 3 {
		t.Fatalf("a told to keep %v", r.Assignment)
	}
	h.advance(2 * time.Second)
	if r := h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "a", MemberEpoch: a.MemberEpoch, RebalanceTimeoutMs: -1}); !errors.Is(r.Err, kerr.UnknownMemberID) {
		t.Errorf("member past its rebalance timeout: %v", r.Err)
	}
}

func TestConsumerStaticMember(t *testing.T) {
	h := newHarness(t, Settings{})
	inst := "i1"
	a := h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "a", InstanceID: &inst, RebalanceTimeoutMs: 10000, SubscribedTopics: []string{"t"}, OwnedKnown: true})
	if a.Err != nil || len(a.Assignment) != 6 {
		t.Fatalf("join: %+v", a)
	}
	if r := h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "a2", InstanceID: &inst, RebalanceTimeoutMs: 10000, SubscribedTopics: []string{"t"}, OwnedKnown: true}); !errors.Is(r.Err, kerr.UnreleasedInstanceID) {
		t.Fatalf("second member with the instance id: %v", r.Err)
	}
	if r := h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "a", InstanceID: &inst, MemberEpoch: -2, RebalanceTimeoutMs: -1}); r.Err != nil || r.MemberEpoch != -2 {
		t.Fatalf("static leave: %+v", r)
	}
	// The restarted member gets the same partitions and epoch back.
	r := h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "a2", InstanceID: &inst, RebalanceTimeoutMs: 10000, SubscribedTopics: []string{"t"}, OwnedKnown: true})
	if r.Err != nil || len(r.Assignment) != 6 || r.MemberID != "a2" || r.MemberEpoch != a.MemberEpoch {
		t.Fatalf("static rejoin: %+v", r)
	}
	d := h.s.consumerDescribe("cg")
	if len(d.Members) != 1 || d.Members[0].MemberID != "a2" || d.State != "Stable" {
		t.Errorf("described: %+v", d)
	}
}

func TestConsumerRangeAssignor(t *testing.T) {
	h := newHarness(t, Settings{})
	rng := AssignorRange
	h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "a", RebalanceTimeoutMs: 10000, SubscribedTopics: []string{"t", "u"}, ServerAssignor: &rng, OwnedKnown: true})
	h.cgHeartbeat(ConsumerHeartbeatRequest{MemberID: "b", RebalanceTimeoutMs: 10000, SubscribedTopics: []string{"t", "u"}, ServerAssignor: &rng, OwnedKnown: true})
	d := h.s.consumerDescribe("cg")
	if d.Assignor != AssignorRange {
		t.Fatalf("assignor %s", d.Assignor)
	}
	want := map[string][]TopicPartition{
		"a": {{"t", 0}, {"t", 1}, {"t", 2}, {"u", 0}, {"u", 1}},
		"b": {{"t", 3}, {"t", 4}, {"t", 5}, {"u", 2}},
	}
	for _, m := range d.Members {
		if !slices.Equal(m.Target, want[m.MemberID]) {
			t.Errorf("%s target %v, want %v", m.MemberID, m.Target, want[m.MemberID])
		}
	}
}

func TestConsumerErrors(t *testing.T) {
	h := newHarness(t, Settings{})
	bad := "nope"
	cases := []struct {
		r    ConsumerHeartbeatRequest
		want error
	}{
		{ConsumerHeartbeatRequest{MemberID: "x", SubscribedTopics: []string{"t"}}, kerr.InvalidRequest},         // no rebalance timeout
		{ConsumerHeartbeatRequest{MemberID: "x", RebalanceTimeoutMs: 1}, kerr.InvalidRequest},                   // no subscription
		{ConsumerHeartbeatRequest{MemberID: "x", MemberEpoch: 3, RebalanceTimeoutMs: -1}, kerr.UnknownMemberID}, // unknown group
		{ConsumerHeartbeatRequest{MemberID: "x", RebalanceTimeoutMs: 1, SubscribedTopics: []string{"t"}, ServerAssignor: &bad}, kerr.UnsupportedAssignor},
	}
	for i, c := range cases {
		if r := h.cgHeartbeat(c.r); !errors.Is(r.Err, c.want) {
			t.Errorf("case %d: %v, want %v", i, r.Err, c.want)
		}
	}
	// A classic group with members is not a consumer group.
	h.join(JoinRequest{Group: "classic", ClientID: "c", ProtocolType: "consumer", SessionTimeout: 10000, RebalanceTimeout: 10000,
		Protocols: []Protocol{{Name: "range"}}})
	if r := h.cgHeartbeat(ConsumerHeartbeatRequest{Group: "classic", MemberID: "x", RebalanceTimeoutMs: 1, SubscribedTopics: []string{"t"}}); !errors.Is(r.Err, kerr.GroupIDNotFound) {
		t.Errorf("heartbeat to a classic group: %v", r.Err)
	}
	// Offsets: fetching with a stale epoch.
	a := h.cgJoin("a", "t")
	id := "a"
	f := h.s.fetchOffsets(FetchRequest{Group: "cg", MemberID: &id, MemberEpoch: a.MemberEpoch + 5})
	if !errors.Is(f.Err, kerr.StaleMemberEpoch) {
		t.Errorf("offset fetch with a wrong epoch: %v", f.Err)
	}
	if f := h.s.fetchOffsets(FetchRequest{Group: "cg", MemberID: &id, MemberEpoch: a.MemberEpoch}); f.Err != nil {
		t.Errorf("offset fetch with the member's epoch: %v", f.Err)
	}
}

func TestConsumerRegexMatchesWholeName(t *testing.T) {
	re := "ord.*"
	m := &cmember{regex: &re}
	got := resolveSubscription(m, map[string]int32{"orders": 1, "big-orders": 1, "ord": 1, "__ord_internal": 1})
	if !slices.Equal(got, []string{"ord", "orders"}) {
		t.Errorf("resolved %v", got)
	}
	re = "__ord.*"
	if got := resolveSubscription(m, map[string]int32{"__ord_internal": 1}); !slices.Equal(got, []string{"__ord_internal"}) {
		t.Errorf("internal topic: resolved %v", got)
	}
}
