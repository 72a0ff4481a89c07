package group

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// harness drives a Shard with a fake clock. Appends are made durable at
// once unless hold is set; their records are kept for replay tests.
type harness struct {
	t       *testing.T
	s       *Shard
	now     time.Time
	hold    bool
	held    []Append
	records []Record
	ids     int
}

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, cfg Settings) *harness {
	h := &harness{t: t, now: t0}
	cfg.NewMemberID = func(clientID string, instanceID *string) string {
		h.ids++
		if instanceID != nil {
			return fmt.Sprintf("%s-%d", *instanceID, h.ids)
		}
		return fmt.Sprintf("%s-%d", clientID, h.ids)
	}
	if cfg.InitialRebalanceDelay == 0 {
		cfg.InitialRebalanceDelay = -1 // none, unless a test wants one
	}
	cfg.MinSessionTimeout = time.Millisecond
	h.s = NewShard(cfg)
	h.run(h.s.Loaded(h.now))
	return h
}

// run carries out an Output as the runner would.
func (h *harness) run(out Output) {
	for _, a := range out.Appends {
		h.records = append(h.records, a.Records...)
		if h.hold {
			h.held = append(h.held, a)
			continue
		}
		defer func(id uint64) { h.run(h.s.AppendDone(h.now, id, nil)) }(a.ID)
	}
	for _, r := range out.Replies {
		r()
	}
}

// release makes the held appends durable (or fails them with err).
func (h *harness) release(err error) {
	held := h.held
	h.held, h.hold = nil, false
	for _, a := range held {
		h.run(h.s.AppendDone(h.now, a.ID, err))
	}
}

// advance moves the clock and fires the timers due.
func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.run(h.s.Tick(h.now))
}

type answer[T any] struct {
	got bool
	v   T
}

func capture[T any]() (*answer[T], func(T)) {
	a := &answer[T]{}
	return a, func(v T) {
		if a.got {
			panic("answered twice")
		}
		a.got, a.v = true, v
	}
}

func subscription(topics ...string) []byte {
	m := kmsg.ConsumerMemberMetadata{Version: 0, Topics: topics}
	return m.AppendTo(nil)
}

// joinReq is a consumer's JoinGroup (v9) for group g.
func joinReq(g, memberID string, protocols ...string) JoinRequest {
	if len(protocols) == 0 {
		protocols = []string{"range"}
	}
	r := JoinRequest{Group: g, MemberID: memberID, ClientID: "c", ClientHost: "/127.0.0.1",
		SessionTimeout: 10_000, RebalanceTimeout: 30_000, ProtocolType: "consumer",
		RequireKnownMemberID: true, SkipAssignment: true}
	for _, p := range protocols {
		r.Protocols = append(r.Protocols, Protocol{Name: p, Metadata: subscription("t")})
	}
	return r
}

func (h *harness) join(r JoinRequest) *answer[JoinResult] {
	a, f := capture[JoinResult]()
	h.run(h.s.Join(h.now, r, f))
	return a
}

func (h *harness) sync(r SyncRequest) *answer[SyncResult] {
	a, f := capture[SyncResult]()
	h.run(h.s.Sync(h.now, r, f))
	return a
}

func (h *harness) heartbeat(g, member string, gen int32) error {
	a, f := capture[error]()
	h.run(h.s.Heartbeat(h.now, HeartbeatRequest{Group: g, MemberID: member, Generation: gen}, f))
	if !a.got {
		h.t.Fatal("heartbeat not answered")
	}
	return a.v
}

func (h *harness) commit(r CommitRequest) *answer[CommitResult] {
	a, f := capture[CommitResult]()
	h.run(h.s.Commit(h.now, r, f))
	return a
}

func (h *harness) fetch(g string, tps ...TopicPartition) FetchResult {
	a, f := capture[FetchResult]()
	h.run(h.s.FetchOffsets(h.now, FetchRequest{Group: g, Partitions: tps}, f))
	return a.v
}

func (h *harness) describe(g string) Description {
	a, f := capture[Description]()
	h.run(h.s.Describe(h.now, g, f))
	return a.v
}

// member joins g as a new dynamic member (MEMBER_ID_REQUIRED, then the
// join proper) and returns its id and the parked join.
func (h *harness) member(g string, protocols ...string) (string, *answer[JoinResult]) {
	h.t.Helper()
	first := h.join(joinReq(g, "", protocols...))
	if !first.got || !errors.Is(first.v.Err, kerr.MemberIDRequired) || first.v.MemberID == "" {
		h.t.Fatalf("first join: %+v", first)
	}
	return first.v.MemberID, h.join(joinReq(g, first.v.MemberID, protocols...))
}

// stable makes a stable group g of n members and returns their ids, the
// leader first.
func (h *harness) stable(g string, n int) []string {
	h.t.Helper()
	var ids []string
	var joins []*answer[JoinResult]
	for range n {
		id, j := h.member(g)
		ids = append(ids, id)
		joins = append(joins, j)
	}
	h.advance(0) // the initial delay (none)
	var gen int32
	leader := ""
	for i, j := range joins {
		if !j.got || j.v.Err != nil {
			h.t.Fatalf("join %d: %+v", i, j)
		}
		gen, leader = j.v.Generation, j.v.Leader
	}
	assign := map[string][]byte{}
	for _, id := range ids {
		assign[id] = []byte("a:" + id)
	}
	var syncs []*answer[SyncResult]
	for _, id := range ids {
		r := SyncRequest{Group: g, MemberID: id, Generation: gen}
		if id == leader {
			r.Assignments = assign
		}
		syncs = append(syncs, h.sync(r))
	}
	for i, s := range syncs {
		if !s.got || s.v.Err != nil || string(s.v.Assignment) != "a:"+ids[i] {
			h.t.Fatalf("sync %d: %+v", i, s)
		}
	}
	if d := h.describe(g); d.State != "Stable" {
		h.t.Fatalf("state %s after syncs", d.State)
	}
	for i, id := range ids {
		if id == leader {
			ids[0], ids[i] = ids[i], ids[0]
		}
	}
	return ids
}

func TestJoinSyncHeartbeat(t *testing.T) {
	h := newHarness(t, Settings{InitialRebalanceDelay: 100 * time.Millisecond})
	id, j := h.member("g")
	if j.got {
		t.Fatalf("join answered during the initial delay: %+v", j.v)
	}
	if d := h.describe("g"); d.State != "PreparingRebalance" || len(d.Members) != 1 {
		t.Fatalf("describe: %+v", d)
	}
	h.advance(99 * time.Millisecond)
	if j.got {
		t.Fatal("answered before the delay ended")
	}
	h.advance(time.Millisecond)
	if !j.got || j.v.Err != nil || j.v.Generation != 1 || j.v.Leader != id || j.v.MemberID != id ||
		*j.v.Protocol != "range" || *j.v.ProtocolType != "consumer" || len(j.v.Members) != 1 {
		t.Fatalf("join: %+v", j.v)
	}
	if err := h.heartbeat("g", id, 1); err != nil {
		t.Fatalf("heartbeat in CompletingRebalance: %v", err)
	}
	h.hold = true
	s := h.sync(SyncRequest{Group: "g", MemberID: id, Generation: 1, ProtocolType: strPtr("consumer"), Protocol: strPtr("range"),
		Assignments: map[string][]byte{id: []byte("mine"), "stranger": []byte("x")}})
	if s.got {
		t.Fatal("sync answered before the group metadata is durable")
	}
	h.release(nil)
	if !s.got || s.v.Err != nil || string(s.v.Assignment) != "mine" || *s.v.Protocol != "range" {
		t.Fatalf("sync: %+v", s.v)
	}
	d := h.describe("g")
	if d.State != "Stable" || d.Protocol != "range" || len(d.Members) != 1 || string(d.Members[0].Assignment) != "mine" {
		t.Fatalf("describe: %+v", d)
	}
	for _, tc := range []struct {
		member string
		gen    int32
		want   error
	}{{id, 1, nil}, {id, 2, kerr.IllegalGeneration}, {"nobody", 1, kerr.UnknownMemberID}} {
		if err := h.heartbeat("g", tc.member, tc.gen); !errors.Is(err, tc.want) && err != tc.want {
			t.Errorf("heartbeat %s gen %d: %v, want %v", tc.member, tc.gen, err, tc.want)
		}
	}
	if err := h.heartbeat("unknown", id, 1); err != kerr.UnknownMemberID {
		t.Errorf("heartbeat of unknown group: %v", err)
	}
	if err := h.heartbeat("", id, 1); err != kerr.InvalidGroupID {
		t.Errorf("heartbeat of empty group id: %v", err)
	}
}

func TestInitialDelayWaitsForMoreMembers(t *testing.T) {
	h := newHarness(t, Settings{InitialRebalanceDelay: 100 * time.Millisecond})
	_, j1 := h.member("g")
	h.advance(60 * time.Millisecond)
	_, j2 := h.member("g")
	h.advance(40 * time.Millisecond) // the first delay ended: a member came, another delay
	h.advance(99 * time.Millisecond)
	if j1.got || j2.got {
		t.Fatal("answered while members still arrive")
	}
	h.advance(time.Millisecond)
	if !j1.got || !j2.got || j1.v.Generation != 1 || j2.v.Generation != 1 || j1.v.Leader != j2.v.Leader {
		t.Fatalf("joins: %+v %+v", j1.v, j2.v)
	}
	if len(j1.v.Members)+len(j2.v.Members) != 2 {
		t.Fatal("the leader alone gets the two members")
	}
}

func TestNewMemberRebalancesAStableGroup(t *testing.T) {
	h := newHarness(t, Settings{})
	ids := h.stable("g", 2)
	newID, jn := h.member("g")
	if jn.got {
		t.Fatal("new member answered before the others rejoined")
	}
	for _, id := range ids {
		if err := h.heartbeat("g", id, 1); err != kerr.RebalanceInProgress {
			t.Fatalf("heartbeat during rebalance: %v", err)
		}
	}
	j0 := h.join(joinReq("g", ids[0]))
	j1 := h.join(joinReq("g", ids[1]))
	for _, j := range []*answer[JoinResult]{jn, j0, j1} {
		if !j.got || j.v.Err != nil || j.v.Generation != 2 || j.v.Leader != ids[0] {
			t.Fatalf("join: %+v", j.v)
		}
	}
	if len(j0.v.Members) != 3 || len(jn.v.Members) != 0 {
		t.Fatalf("members: leader %d, new %d", len(j0.v.Members), len(jn.v.Members))
	}
	_ = newID
}

func TestSessionTimeoutRemovesMember(t *testing.T) {
	h := newHarness(t, Settings{})
	ids := h.stable("g", 2)
	for range 4 {
		h.advance(4 * time.Second)
		if err := h.heartbeat("g", ids[0], 1); err != nil && err != kerr.RebalanceInProgress {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	// ids[1] sent nothing for 16 s, past its 10 s session.
	d := h.describe("g")
	if d.State != "PreparingRebalance" || len(d.Members) != 1 || d.Members[0].MemberID != ids[0] {
		t.Fatalf("after the session timeout: %+v", d)
	}
	if err := h.heartbeat("g", ids[1], 1); err != kerr.UnknownMemberID {
		t.Fatalf("heartbeat of the expired member: %v", err)
	}
	j := h.join(joinReq("g", ids[0]))
	if !j.got || j.v.Generation != 2 || len(j.v.Members) != 1 {
		t.Fatalf("rejoin: %+v", j.v)
	}
}

func TestRebalanceTimeoutDropsMembersThatDoNotRejoin(t *testing.T) {
	h := newHarness(t, Settings{})
	ids := h.stable("g", 2)
	j0 := h.join(joinReq("g", ids[0], "range")) // the leader forces a rebalance
	if j0.got {
		t.Fatal("answered before the other member rejoined")
	}
	// ids[1] heartbeats but never rejoins.
	for range 7 {
		h.advance(5 * time.Second)
		if err := h.heartbeat("g", ids[1], 1); err != kerr.RebalanceInProgress && err != kerr.UnknownMemberID {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	if !j0.got || j0.v.Generation != 2 || len(j0.v.Members) != 1 {
		t.Fatalf("join after the rebalance timeout: %+v", j0.v)
	}
	if err := h.heartbeat("g", ids[1], 2); err != kerr.UnknownMemberID {
		t.Fatalf("dropped member's heartbeat: %v", err)
	}
}

func TestPendingSyncExpiry(t *testing.T) {
	h := newHarness(t, Settings{})
	a, ja := h.member("g")
	b, jb := h.member("g")
	h.advance(0)
	if !ja.got || !jb.got {
		t.Fatal("joins not answered")
	}
	leader := ja.v.Leader
	follower := a
	if follower == leader {
		follower = b
	}
	s := h.sync(SyncRequest{Group: "g", MemberID: leader, Generation: 1, Assignments: map[string][]byte{leader: []byte("x"), follower: []byte("y")}})
	if !s.got || s.v.Err != nil {
		t.Fatalf("leader sync: %+v", s.v)
	}
	// The follower never syncs; it heartbeats, but that is not enough.
	for range 7 {
		h.advance(5 * time.Second)
		_ = h.heartbeat("g", leader, 1)
		_ = h.heartbeat("g", follower, 1)
	}
	d := h.describe("g")
	for _, m := range d.Members {
		if m.MemberID == follower {
			t.Fatalf("follower still a member: %+v", d)
		}
	}
	if d.State != "PreparingRebalance" {
		t.Fatalf("state %s", d.State)
	}
}

func TestLeaveGroup(t *testing.T) {
	h := newHarness(t, Settings{})
	ids := h.stable("g", 3)
	a, f := capture[LeaveResult]()
	h.run(h.s.Leave(h.now, "g", []LeaveMember{{MemberID: ids[1]}, {MemberID: "ghost"}, {MemberID: ids[2]}}, f))
	if !a.got || a.v.Err != nil || a.v.Members[0] != nil || a.v.Members[1] != kerr.UnknownMemberID || a.v.Members[2] != nil {
		t.Fatalf("leave: %+v", a.v)
	}
	if d := h.describe("g"); d.State != "PreparingRebalance" || len(d.Members) != 1 {
		t.Fatalf("after leave: %+v", d)
	}
	j := h.join(joinReq("g", ids[0]))
	if !j.got || j.v.Generation != 2 || len(j.v.Members) != 1 {
		t.Fatalf("rejoin: %+v", j.v)
	}
	a, f = capture[LeaveResult]()
	h.run(h.s.Leave(h.now, "nope", []LeaveMember{{MemberID: "x"}, {MemberID: "y"}}, f))
	if a.v.Err != nil || len(a.v.Members) != 2 || a.v.Members[0] != kerr.UnknownMemberID || a.v.Members[1] != kerr.UnknownMemberID {
		t.Fatalf("leave of unknown group: %+v", a.v)
	}
	// The last member leaving empties the group.
	a, f = capture[LeaveResult]()
	h.run(h.s.Leave(h.now, "g", []LeaveMember{{MemberID: ids[0]}}, f))
	if d := h.describe("g"); d.State != "Empty" || len(d.Members) != 0 {
		t.Fatalf("after the last leave: %+v", d)
	}
}

func TestStaticMemberRejoinsWithoutRebalance(t *testing.T) {
	h := newHarness(t, Settings{})
	inst := func(s string) *string { return &s }
	static := func(instance, memberID string) JoinRequest {
		r := joinReq("g", memberID)
		r.InstanceID = inst(instance)
		return r
	}
	ja := h.join(static("a", ""))
	jb := h.join(static("b", ""))
	h.advance(0)
	if !ja.got || !jb.got || ja.v.Err != nil || jb.v.Err != nil {
		t.Fatalf("static joins (no MEMBER_ID_REQUIRED): %+v %+v", ja.v, jb.v)
	}
	leader, other := ja.v.MemberID, jb.v.MemberID
	if ja.v.Leader != leader {
		t.Fatalf("leader %s, want the first member %s", ja.v.Leader, leader)
	}
	h.sync(SyncRequest{Group: "g", MemberID: other, Generation: 1, InstanceID: inst("b")})
	h.sync(SyncRequest{Group: "g", MemberID: leader, Generation: 1, InstanceID: inst("a"),
		Assignments: map[string][]byte{leader: []byte("A"), other: []byte("B")}})

	// b restarts: a new member id, the same generation and assignment.
	rb := h.join(static("b", ""))
	if !rb.got || rb.v.Err != nil || rb.v.Generation != 1 || rb.v.MemberID == other || rb.v.Leader != leader || rb.v.SkipAssignment {
		t.Fatalf("static rejoin: %+v", rb.v)
	}
	if d := h.describe("g"); d.State != "Stable" {
		t.Fatalf("state %s after a static rejoin", d.State)
	}
	s := h.sync(SyncRequest{Group: "g", MemberID: rb.v.MemberID, InstanceID: inst("b"), Generation: 1})
	if !s.got || s.v.Err != nil || string(s.v.Assignment) != "B" {
		t.Fatalf("sync after static rejoin: %+v", s.v)
	}
	// The old member id is fenced.
	a, f := capture[error]()
	h.run(h.s.Heartbeat(h.now, HeartbeatRequest{Group: "g", MemberID: other, InstanceID: inst("b"), Generation: 1}, f))
	if a.v != kerr.FencedInstanceID {
		t.Fatalf("old member's heartbeat: %v", a.v)
	}
	// The leader restarts: told it leads, with the members, but must
	// not assign (KIP-814).
	ra := h.join(static("a", ""))
	if !ra.got || ra.v.Err != nil || ra.v.Leader != ra.v.MemberID || !ra.v.SkipAssignment || len(ra.v.Members) != 2 {
		t.Fatalf("static leader rejoin: %+v", ra.v)
	}
	// Before v9 the old leader id is answered instead.
	old := static("b", "")
	old.SkipAssignment = false
	rb2 := h.join(old)
	if !rb2.got || rb2.v.Err != nil || rb2.v.Leader != ra.v.MemberID || len(rb2.v.Members) != 0 {
		t.Fatalf("v8 static rejoin: %+v", rb2.v)
	}
	if d := h.describe("g"); d.State != "Stable" || len(d.Members) != 2 {
		t.Fatalf("after the rejoins: %+v", d)
	}
	// A static member coming back with no protocol in common is refused.
	changed := static("b", "")
	changed.Protocols = []Protocol{{Name: "roundrobin"}}
	if j := h.join(changed); j.v.Err != kerr.InconsistentGroupProtocol {
		t.Fatalf("inconsistent protocol: %+v", j.v)
	}
}

func TestStaticMemberFencedWhileParked(t *testing.T) {
	h := newHarness(t, Settings{})
	static := func(instance, memberID string) JoinRequest {
		r := joinReq("g", memberID)
		r.InstanceID = &instance
		return r
	}
	ja := h.join(static("a", ""))
	jb := h.join(static("b", ""))
	h.advance(0)
	a, b := ja.v.MemberID, jb.v.MemberID
	h.sync(SyncRequest{Group: "g", MemberID: b, Generation: 1})
	h.sync(SyncRequest{Group: "g", MemberID: a, Generation: 1, Assignments: map[string][]byte{a: []byte("A"), b: []byte("B")}})
	// The leader a rejoins and waits for b; meanwhile a restarted a
	// takes its instance id over.
	parked := h.join(static("a", a))
	takeover := h.join(static("a", ""))
	if !parked.got || parked.v.Err != kerr.FencedInstanceID {
		t.Fatalf("the parked join of the old member id: %+v", parked.v)
	}
	if takeover.got {
		t.Fatalf("takeover answered before b rejoined: %+v", takeover.v)
	}
	rb := h.join(static("b", b))
	if !takeover.got || takeover.v.Err != nil || takeover.v.Generation != 2 || !rb.got || rb.v.Generation != 2 {
		t.Fatalf("takeover %+v, b %+v", takeover.v, rb.v)
	}
	if s := h.sync(SyncRequest{Group: "g", MemberID: a, Generation: 2}); s.v.Err != kerr.FencedInstanceID && s.v.Err != kerr.UnknownMemberID {
		t.Fatalf("sync of the fenced member id: %+v", s.v)
	}
}

func TestProtocolSelection(t *testing.T) {
	h := newHarness(t, Settings{})
	_, j1 := h.member("g", "range", "roundrobin")
	_, j2 := h.member("g", "roundrobin", "range")
	_, j3 := h.member("g", "roundrobin", "sticky")
	h.advance(0)
	for _, j := range []*answer[JoinResult]{j1, j2, j3} {
		if !j.got || j.v.Err != nil || *j.v.Protocol != "roundrobin" {
			t.Fatalf("join: %+v", j.v)
		}
	}
	// A member with none of the group's common protocols is refused, so
	// is one of another protocol type.
	if j := h.join(joinReq("g", "", "sticky")); j.v.Err != kerr.InconsistentGroupProtocol {
		t.Fatalf("no common protocol: %+v", j.v)
	}
	other := joinReq("g", "", "roundrobin")
	other.ProtocolType = "connect"
	if j := h.join(other); j.v.Err != kerr.InconsistentGroupProtocol {
		t.Fatalf("other protocol type: %+v", j.v)
	}
	empty := joinReq("new", "")
	empty.Protocols = nil
	if j := h.join(empty); j.v.Err != kerr.InconsistentGroupProtocol {
		t.Fatalf("no protocols: %+v", j.v)
	}
	// The vote, not the order of the first member, decides.
	h2 := newHarness(t, Settings{})
	_, k1 := h2.member("g", "range", "roundrobin")
	_, k2 := h2.member("g", "roundrobin", "range")
	_, k3 := h2.member("g", "roundrobin", "range")
	h2.advance(0)
	for _, j := range []*answer[JoinResult]{k1, k2, k3} {
		if *j.v.Protocol != "roundrobin" {
			t.Fatalf("vote: %+v", j.v)
		}
	}
}

func TestJoinErrors(t *testing.T) {
	h := newHarness(t, Settings{MaxSessionTimeout: 20 * time.Second, MaxSize: 2})
	for _, tc := range []struct {
		r    JoinRequest
		want error
	}{
		{joinReq("", ""), kerr.InvalidGroupID},
		{func() JoinRequest { r := joinReq("g", ""); r.SessionTimeout = 30_000; return r }(), kerr.InvalidSessionTimeout},
		{joinReq("g", "someone"), kerr.UnknownMemberID},
	} {
		if j := h.join(tc.r); !j.got || j.v.Err != tc.want || j.v.Generation != -1 {
			t.Errorf("%+v: %+v, want %v", tc.r, j.v, tc.want)
		}
	}
	h.stable("g", 2)
	if j := h.join(joinReq("g", "")); j.v.Err != kerr.GroupMaxSizeReached {
		t.Errorf("third member over group.max.size: %+v", j.v)
	}
	// Before v4 a first join is a member at once.
	h2 := newHarness(t, Settings{})
	r := joinReq("g", "")
	r.RequireKnownMemberID = false
	j := h2.join(r)
	h2.advance(0)
	if !j.got || j.v.Err != nil || j.v.MemberID == "" || j.v.Generation != 1 {
		t.Errorf("v3 join: %+v", j.v)
	}
	if h := newHarness(t, Settings{}); true {
		h.s = NewShard(Settings{})
		if j := h.join(joinReq("g", "")); j.v.Err != kerr.CoordinatorLoadInProgress {
			t.Errorf("join while loading: %+v", j.v)
		}
	}
}

func TestSyncErrors(t *testing.T) {
	h := newHarness(t, Settings{})
	ids := h.stable("g", 1)
	for _, tc := range []struct {
		r    SyncRequest
		want error
	}{
		{SyncRequest{Group: "other", MemberID: ids[0], Generation: 1}, kerr.UnknownMemberID},
		{SyncRequest{Group: "g", MemberID: "ghost", Generation: 1}, kerr.UnknownMemberID},
		{SyncRequest{Group: "g", MemberID: ids[0], Generation: 7}, kerr.IllegalGeneration},
		{SyncRequest{Group: "g", MemberID: ids[0], Generation: 1, Protocol: strPtr("roundrobin")}, kerr.InconsistentGroupProtocol},
		{SyncRequest{Group: "g", MemberID: ids[0], Generation: 1, ProtocolType: strPtr("connect")}, kerr.InconsistentGroupProtocol},
		{SyncRequest{Group: "", MemberID: ids[0], Generation: 1}, kerr.InvalidGroupID},
	} {
		if s := h.sync(tc.r); !s.got || s.v.Err != tc.want {
			t.Errorf("%+v: %+v, want %v", tc.r, s.v, tc.want)
		}
	}
	// A failed metadata write fails the syncs and starts over.
	h2 := newHarness(t, Settings{})
	id, j := h2.member("g")
	h2.advance(0)
	h2.hold = true
	s := h2.sync(SyncRequest{Group: "g", MemberID: id, Generation: j.v.Generation, Assignments: map[string][]byte{id: []byte("x")}})
	h2.release(kerr.NotCoordinator)
	if !s.got || s.v.Err != kerr.NotCoordinator {
		t.Fatalf("sync with a failed write: %+v", s.v)
	}
	if d := h2.describe("g"); d.State != "PreparingRebalance" {
		t.Fatalf("state %s", d.State)
	}
}

func TestRebalanceAnswersParkedSyncs(t *testing.T) {
	h := newHarness(t, Settings{})
	a, ja := h.member("g")
	b, jb := h.member("g")
	h.advance(0)
	follower := a
	if ja.v.Leader == a {
		follower = b
	}
	_ = jb
	s := h.sync(SyncRequest{Group: "g", MemberID: follower, Generation: 1})
	if s.got {
		t.Fatal("the follower's sync is answered before the leader's")
	}
	h.member("g") // a third member restarts the rebalance
	if !s.got || s.v.Err != kerr.RebalanceInProgress {
		t.Fatalf("parked sync: %+v", s.v)
	}
}

func TestCommitAndFetch(t *testing.T) {
	h := newHarness(t, Settings{MaxMetadataBytes: 8})
	tp := func(p int32) TopicPartition { return TopicPartition{"t", p} }
	// An unknown group answers -1 and no error.
	if f := h.fetch("nobody", tp(0), tp(1)); f.Err != nil || len(f.Offsets) != 2 || f.Offsets[0].Offset != -1 || f.Offsets[1].LeaderEpoch != -1 {
		t.Fatalf("fetch of unknown group: %+v", f)
	}
	if f := h.fetch("nobody"); f.Err != nil || len(f.Offsets) != 0 {
		t.Fatalf("fetch all of unknown group: %+v", f)
	}
	// A simple consumer (generation -1) commits; visible once durable.
	h.hold = true
	c := h.commit(CommitRequest{Group: "simple", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{
		{TopicPartition: tp(0), Offset: 10, LeaderEpoch: 3, Metadata: "m"},
		{TopicPartition: tp(1), Offset: 20, LeaderEpoch: -1, Metadata: "way too long"},
	}})
	if c.got {
		t.Fatal("commit answered before durable")
	}
	if f := h.fetch("simple", tp(0)); f.Offsets[0].Offset != -1 {
		t.Fatalf("offset visible before durable: %+v", f)
	}
	h.release(nil)
	if !c.got || c.v.Errs[0] != nil || c.v.Errs[1] != kerr.OffsetMetadataTooLarge {
		t.Fatalf("commit: %+v", c.v)
	}
	f := h.fetch("simple", tp(0), tp(1))
	if f.Offsets[0].Offset != 10 || f.Offsets[0].LeaderEpoch != 3 || f.Offsets[0].Metadata != "m" || f.Offsets[1].Offset != -1 {
		t.Fatalf("fetch: %+v", f)
	}
	if f := h.fetch("simple"); len(f.Offsets) != 1 || f.Offsets[0].TopicPartition != tp(0) {
		t.Fatalf("fetch all: %+v", f)
	}

	ids := h.stable("g", 2)
	for _, tc := range []struct {
		name string
		r    CommitRequest
		want error
	}{
		{"member", CommitRequest{Group: "g", MemberID: ids[1], Generation: 1}, nil},
		{"old generation", CommitRequest{Group: "g", MemberID: ids[1], Generation: 0}, kerr.IllegalGeneration},
		{"unknown member", CommitRequest{Group: "g", MemberID: "ghost", Generation: 1}, kerr.UnknownMemberID},
		{"non-member of a live group", CommitRequest{Group: "g", Generation: -1}, kerr.UnknownMemberID},
		{"unknown group, old version", CommitRequest{Group: "u", MemberID: "m", Generation: 3}, kerr.IllegalGeneration},
		{"unknown group, v9", CommitRequest{Group: "u", MemberID: "m", Generation: 3, GroupNotFound: true}, kerr.GroupIDNotFound},
	} {
		tc.r.RetentionMs = -1
		tc.r.Offsets = []CommitOffset{{TopicPartition: tp(0), Offset: 5}}
		if c := h.commit(tc.r); !c.got || c.v.Errs[0] != tc.want {
			t.Errorf("%s: %+v, want %v", tc.name, c.v, tc.want)
		}
	}
	// During CompletingRebalance members must finish the rebalance first.
	j := h.join(joinReq("g", ids[0]))
	j1 := h.join(joinReq("g", ids[1]))
	if !j.got || !j1.got {
		t.Fatal("rejoins not answered")
	}
	if c := h.commit(CommitRequest{Group: "g", MemberID: ids[1], Generation: 2, RetentionMs: -1,
		Offsets: []CommitOffset{{TopicPartition: tp(0), Offset: 6}}}); c.v.Errs[0] != kerr.RebalanceInProgress {
		t.Errorf("commit during CompletingRebalance: %+v", c.v)
	}
}

func TestReplayRestoresGroupsAndOffsets(t *testing.T) {
	h := newHarness(t, Settings{})
	ids := h.stable("g", 2)
	h.commit(CommitRequest{Group: "g", MemberID: ids[0], Generation: 1, RetentionMs: -1,
		Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 0}, Offset: 42, LeaderEpoch: 1, Metadata: "x"}}})
	h.commit(CommitRequest{Group: "simple", Generation: -1, RetentionMs: -1,
		Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 1}, Offset: 7, LeaderEpoch: -1}}})
	h.commit(CommitRequest{Group: "simple", Generation: -1, RetentionMs: -1,
		Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 1}, Offset: 8, LeaderEpoch: -1}}})
	// A deleted group leaves only tombstones.
	h.stable("gone", 1)
	a, f := capture[LeaveResult]()
	h.run(h.s.Leave(h.now, "gone", []LeaveMember{{MemberID: h.describe("gone").Members[0].MemberID}}, f))
	ad, fd := capture[error]()
	h.run(h.s.Delete(h.now, "gone", fd))
	if !a.got || !ad.got || ad.v != nil {
		t.Fatalf("leave %+v, delete %+v", a.v, ad.v)
	}

	s2 := NewShard(Settings{MinSessionTimeout: time.Millisecond})
	for _, r := range h.records {
		if err := s2.Replay(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := s2.Replay([]byte{0, 1, 0}, []byte{0}); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("bad key: %v", err)
	}
	if err := s2.Replay([]byte{0, 5, 1}, []byte{1}); err != nil {
		t.Fatalf("a KIP-848 record is skipped: %v", err)
	}
	h2 := &harness{t: t, s: s2, now: h.now.Add(time.Minute)}
	h2.run(s2.Loaded(h2.now))
	d := h2.describe("g")
	if d.State != "Stable" || len(d.Members) != 2 || d.Protocol != "range" || string(d.Members[0].Assignment) == "" {
		t.Fatalf("reloaded group: %+v", d)
	}
	if f := h2.fetch("g", TopicPartition{"t", 0}); f.Offsets[0].Offset != 42 || f.Offsets[0].LeaderEpoch != 1 || f.Offsets[0].Metadata != "x" {
		t.Fatalf("reloaded offset: %+v", f)
	}
	if f := h2.fetch("simple", TopicPartition{"t", 1}); f.Offsets[0].Offset != 8 {
		t.Fatalf("reloaded simple offset: %+v", f)
	}
	if d := h2.describe("gone"); d.Err != kerr.GroupIDNotFound {
		t.Fatalf("deleted group came back: %+v", d)
	}
	// The members heartbeat with their generation; if they do not come
	// back within their session, they expire.
	if err := h2.heartbeat("g", ids[0], 1); err != nil {
		t.Fatalf("heartbeat after reload: %v", err)
	}
	h2.advance(11 * time.Second)
	if d := h2.describe("g"); d.State == "Stable" {
		t.Fatalf("members never came back, still %+v", d)
	}
}

func TestExpireOffsets(t *testing.T) {
	h := newHarness(t, Settings{OffsetsRetention: time.Hour})
	tp := TopicPartition{"t", 0}
	h.commit(CommitRequest{Group: "simple", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp, Offset: 1}}})
	h.commit(CommitRequest{Group: "explicit", Generation: -1, RetentionMs: 60_000, Offsets: []CommitOffset{{TopicPartition: tp, Offset: 1}}})
	ids := h.stable("g", 1)
	h.commit(CommitRequest{Group: "g", MemberID: ids[0], Generation: 1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp, Offset: 2}}})

	h.now = h.now.Add(2 * time.Minute)
	h.run(h.s.ExpireOffsets(h.now))
	if f := h.fetch("explicit", tp); f.Offsets[0].Offset != -1 {
		t.Fatal("an offset past its explicit expiry survived")
	}
	if f := h.fetch("simple", tp); f.Offsets[0].Offset != 1 {
		t.Fatal("a fresh offset expired")
	}
	h.now = h.now.Add(time.Hour)
	_ = h.heartbeat("g", ids[0], 1)
	h.run(h.s.ExpireOffsets(h.now))
	if f := h.fetch("simple", tp); f.Offsets[0].Offset != -1 {
		t.Fatal("a simple offset older than the retention survived")
	}
	if d := h.describe("simple"); d.Err != kerr.GroupIDNotFound {
		t.Fatalf("a group with nothing left survived: %+v", d)
	}
	if f := h.fetch("g", tp); f.Offsets[0].Offset != 2 {
		t.Fatal("a stable group's offset of a subscribed topic expired")
	}
	// Once the group empties, its offsets expire a retention later.
	a, f := capture[LeaveResult]()
	h.run(h.s.Leave(h.now, "g", []LeaveMember{{MemberID: ids[0]}}, f))
	_ = a
	h.advance(30 * time.Minute)
	h.run(h.s.ExpireOffsets(h.now))
	if f := h.fetch("g", tp); f.Offsets[0].Offset != 2 {
		t.Fatal("expired before a retention passed since the group emptied")
	}
	h.advance(31 * time.Minute)
	n := len(h.records)
	h.run(h.s.ExpireOffsets(h.now))
	if d := h.describe("g"); d.Err != kerr.GroupIDNotFound {
		t.Fatalf("empty group without offsets survived: %+v", d)
	}
	if got := h.records[n:]; len(got) != 2 || got[0].Value != nil || got[1].Value != nil {
		t.Fatalf("tombstones: %+v", got)
	}
}

func TestDeleteGroupsAndOffsets(t *testing.T) {
	h := newHarness(t, Settings{})
	del := func(g string) error {
		a, f := capture[error]()
		h.run(h.s.Delete(h.now, g, f))
		return a.v
	}
	if err := del("nobody"); err != kerr.GroupIDNotFound {
		t.Errorf("delete unknown: %v", err)
	}
	ids := h.stable("g", 1)
	h.commit(CommitRequest{Group: "g", MemberID: ids[0], Generation: 1, RetentionMs: -1,
		Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 0}, Offset: 1}, {TopicPartition: TopicPartition{"other", 0}, Offset: 1}}})
	if err := del("g"); err != kerr.NonEmptyGroup {
		t.Errorf("delete non-empty: %v", err)
	}
	od := func(tps ...TopicPartition) OffsetDeleteResult {
		a, f := capture[OffsetDeleteResult]()
		h.run(h.s.DeleteOffsets(h.now, "g", tps, f))
		return a.v
	}
	res := od(TopicPartition{"t", 0}, TopicPartition{"other", 0}, TopicPartition{"never", 3})
	if res.Err != nil || res.Partitions[0] != kerr.GroupSubscribedToTopic || res.Partitions[1] != nil || res.Partitions[2] != nil {
		t.Fatalf("offset delete: %+v", res)
	}
	if f := h.fetch("g"); len(f.Offsets) != 1 {
		t.Fatalf("offsets after delete: %+v", f)
	}
	a, f := capture[LeaveResult]()
	h.run(h.s.Leave(h.now, "g", []LeaveMember{{MemberID: ids[0]}}, f))
	_ = a
	if err := del("g"); err != nil {
		t.Fatalf("delete empty: %v", err)
	}
	if d := h.describe("g"); d.Err != kerr.GroupIDNotFound || d.State != "Dead" {
		t.Fatalf("deleted group: %+v", d)
	}
	if f := h.fetch("g"); len(f.Offsets) != 0 {
		t.Fatalf("offsets of a deleted group: %+v", f)
	}
}

func TestList(t *testing.T) {
	h := newHarness(t, Settings{})
	h.stable("b", 1)
	h.commit(CommitRequest{Group: "a", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 0}}}})
	list := func(r ListRequest) []string {
		a, f := capture[ListResult]()
		h.run(h.s.List(h.now, r, f))
		var out []string
		for _, l := range a.v.Groups {
			out = append(out, l.Group+":"+l.State+":"+l.ProtocolType)
		}
		return out
	}
	for _, tc := range []struct {
		r    ListRequest
		want string
	}{
		{ListRequest{}, "[a:Empty: b:Stable:consumer]"},
		{ListRequest{States: []string{"stable"}}, "[b:Stable:consumer]"},
		{ListRequest{States: []string{"Empty", "Dead"}}, "[a:Empty:]"},
		{ListRequest{Types: []string{"Classic"}}, "[a:Empty: b:Stable:consumer]"},
		{ListRequest{Types: []string{"consumer"}}, "[]"},
	} {
		if got := fmt.Sprint(list(tc.r)); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.r, got, tc.want)
		}
	}
}

func TestPartitionFor(t *testing.T) {
	for _, tc := range []struct {
		group string
		n     int
		want  int32
	}{
		{"", 50, 0},
		{"hello", 50, 99162322 % 50},             // "hello".hashCode() = 99162322
		{"polygenelubricants", 50, 0},            // hashCode() = Integer.MIN_VALUE; Utils.abs gives 0
		{"Aa", 7, 2112 % 7}, {"BB", 7, 2112 % 7}, // the classic collision
		{"\U0001F600", 50, int32((0xD83D*31 + 0xDE00) % 50)}, // UTF-16 surrogates, as Java
	} {
		if got := PartitionFor(tc.group, tc.n); got != tc.want {
			t.Errorf("PartitionFor(%q, %d) = %d, want %d", tc.group, tc.n, got, tc.want)
		}
	}
}

func TestRejoinWithoutChange(t *testing.T) {
	h := newHarness(t, Settings{})
	ids := h.stable("g", 2)
	// A follower rejoining with the same metadata gets the generation back.
	j := h.join(joinReq("g", ids[1]))
	if !j.got || j.v.Err != nil || j.v.Generation != 1 || j.v.Leader != ids[0] || len(j.v.Members) != 0 {
		t.Fatalf("follower rejoin: %+v", j.v)
	}
	if d := h.describe("g"); d.State != "Stable" {
		t.Fatalf("state %s", d.State)
	}
	// New metadata needs a rebalance.
	changed := joinReq("g", ids[1])
	changed.Protocols[0].Metadata = subscription("t", "u")
	if j := h.join(changed); j.got {
		t.Fatalf("changed metadata answered at once: %+v", j.v)
	}
	lj := h.join(joinReq("g", ids[0]))
	if !lj.got || lj.v.Generation != 2 {
		t.Fatalf("leader rejoin: %+v", lj.v)
	}
	// In CompletingRebalance a repeated join is answered the same.
	again := h.join(joinReq("g", ids[0]))
	if !again.got || again.v.Generation != 2 || len(again.v.Members) != 2 || again.v.Leader != ids[0] {
		t.Fatalf("repeated join: %+v", again.v)
	}
}

func TestPendingMemberHoldsRebalance(t *testing.T) {
	h := newHarness(t, Settings{})
	ids := h.stable("g", 1)
	first := h.join(joinReq("g", ""))
	if first.v.Err != kerr.MemberIDRequired {
		t.Fatalf("first join: %+v", first.v)
	}
	// The leader forces a rebalance; the pending member id holds it up
	// until its session timeout, since it never comes back.
	j := h.join(joinReq("g", ids[0]))
	h.advance(9 * time.Second)
	if j.got {
		t.Fatalf("answered while a pending member may still come: %+v", j.v)
	}
	h.advance(time.Second)
	if !j.got || j.v.Generation != 2 || len(j.v.Members) != 1 {
		t.Fatalf("after the pending member expired: %+v", j.v)
	}
	// A pending member may also leave.
	p := h.join(joinReq("g", ""))
	a, f := capture[LeaveResult]()
	h.run(h.s.Leave(h.now, "g", []LeaveMember{{MemberID: p.v.MemberID}}, f))
	if a.v.Members[0] != nil {
		t.Fatalf("pending leave: %+v", a.v)
	}
	if j := h.join(joinReq("g", p.v.MemberID)); j.v.Err != kerr.UnknownMemberID {
		t.Fatalf("join with the id of a pending member that left: %+v", j.v)
	}
}

func TestNewMemberJoinTimeout(t *testing.T) {
	h := newHarness(t, Settings{NewMemberJoinTimeout: 20 * time.Second})
	ids := h.stable("g", 1)
	_, jn := h.member("g") // parks a rebalance that the leader never rejoins
	for range 4 {
		h.advance(5 * time.Second)
		_ = h.heartbeat("g", ids[0], 1)
	}
	// A new member's join may stay parked for the new member join timeout.
	if !jn.got || jn.v.Err != kerr.UnknownMemberID {
		t.Fatalf("new member after its join timeout: %+v", jn.v)
	}
	// At the rebalance timeout (30 s) the leader that did not rejoin goes
	// too, and the group is empty.
	for range 2 {
		h.advance(5 * time.Second)
		_ = h.heartbeat("g", ids[0], 1)
	}
	if d := h.describe("g"); d.State != "Empty" || len(d.Members) != 0 {
		t.Fatalf("after the rebalance timeout: %+v", d)
	}
}

func TestLeaveByInstanceID(t *testing.T) {
	h := newHarness(t, Settings{})
	inst := "i"
	r := joinReq("g", "")
	r.InstanceID = &inst
	j := h.join(r)
	h.advance(0)
	h.sync(SyncRequest{Group: "g", MemberID: j.v.MemberID, Generation: 1, InstanceID: &inst})
	a, f := capture[LeaveResult]()
	other := "other"
	h.run(h.s.Leave(h.now, "g", []LeaveMember{{InstanceID: &other}, {MemberID: "x", InstanceID: &inst}, {InstanceID: &inst}}, f))
	if a.v.Members[0] != kerr.UnknownMemberID || a.v.Members[1] != kerr.FencedInstanceID || a.v.Members[2] != nil {
		t.Fatalf("leave: %+v", a.v)
	}
	if d := h.describe("g"); d.State != "Empty" {
		t.Fatalf("state %s", d.State)
	}
}

func TestAbortAnswersParked(t *testing.T) {
	h := newHarness(t, Settings{})
	_, j := h.member("g")
	h.hold = true
	c := h.commit(CommitRequest{Group: "s", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 0}}}})
	h.run(h.s.Abort(h.now, kerr.NotCoordinator))
	if !j.got || j.v.Err != kerr.NotCoordinator || !c.got || c.v.Errs[0] != kerr.NotCoordinator {
		t.Fatalf("join %+v, commit %+v", j.v, c.v)
	}
	if f := h.fetch("s"); f.Err != kerr.NotCoordinator {
		t.Fatalf("fetch after abort: %+v", f)
	}
}
