package e2e

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// consumerConfigs keep KIP-848 tests fast: short heartbeats and sessions.
var consumerConfigs = map[string]string{
	"group.initial.rebalance.delay.ms":     "0",
	"group.consumer.heartbeat.interval.ms": "100",
	"group.consumer.session.timeout.ms":    "6000",
}

// overlap says whether some partition is held by two members at once.
func overlap(members []*groupMember) bool {
	seen := map[int32]bool{}
	for _, m := range members {
		for _, p := range m.partitions() {
			if seen[p] {
				return true
			}
			seen[p] = true
		}
	}
	return false
}

// TestConsumerGroupKgo: kgo members with the server-side assignor
// (KIP-848, uniform and range) split a 6-partition topic with no overlap;
// a third joins and a member leaves, and the rest take over.
func TestConsumerGroupKgo(t *testing.T) {
	tb := start(t, t.TempDir(), "", consumerConfigs)
	adm := tb.admin()
	for _, bal := range []struct {
		name string
		b    kgo.GroupBalancer
	}{
		{"uniform", kgo.CooperativeStickyBalancer()},
		{"range", kgo.RangeBalancer()},
	} {
		t.Run(bal.name, func(t *testing.T) {
			topic, group := "kip848-"+bal.name, "g848-"+bal.name
			createTopic(t, adm, topic, 6, nil)
			w := newWatch()
			opts := []kgo.Opt{kgo.ServerSideBalancer(), kgo.Balancers(bal.b)}
			var overlapped bool
			check := func(ms []*groupMember, n int) func() bool {
				return func() bool {
					if overlap(ms) {
						overlapped = true
					}
					return split(ms, n)
				}
			}
			a := tb.member(t, w, group, topic, opts...)
			b := tb.member(t, w, group, topic, opts...)
			w.until(t, "two members to split six partitions", check([]*groupMember{a, b}, 6))
			for _, m := range []*groupMember{a, b} {
				if n := len(m.partitions()); n != 3 {
					t.Errorf("a member holds %d partitions, want 3", n)
				}
			}
			c := tb.member(t, w, group, topic, opts...)
			w.until(t, "three members to split six partitions", check([]*groupMember{a, b, c}, 6))
			// The members see the split before their next heartbeats
			// acknowledge it: the group is Reconciling until then.
			d := describeConsumerGroup(t, tb, group)
			for deadline := time.Now().Add(15 * time.Second); d.State != "Stable" && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				d = describeConsumerGroup(t, tb, group)
			}
			if d.State != "Stable" || len(d.Members) != 3 || d.AssignorName != bal.name {
				t.Errorf("described %s with %d members, assignor %s", d.State, len(d.Members), d.AssignorName)
			}
			produceN(t, tb, topic, 120, 0)
			w.until(t, "every record to be consumed", func() bool {
				return a.consumed()+b.consumed()+c.consumed() >= 120
			})
			c.close()
			w.until(t, "two members to take over", check([]*groupMember{a, b}, 6))
			if overlapped {
				t.Errorf("a partition was held by two members at once")
			}
			// The group's offsets were committed with member epochs.
			if err := a.cl.CommitUncommittedOffsets(ctxT(t)); err != nil {
				t.Fatalf("commit: %v", err)
			}
		})
	}
}

func describeConsumerGroup(t *testing.T, tb *testBroker, group string) kmsg.ConsumerGroupDescribeResponseGroup {
	t.Helper()
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctxT(t), tb.client())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Groups[0]
}

// hb is a raw ConsumerGroupHeartbeat.
type hb struct {
	t     *testing.T
	cl    *kgo.Client
	group string
	topic string
	id    [16]byte
}

func (h hb) send(member string, epoch int32, owned []int32, join bool) *kmsg.ConsumerGroupHeartbeatResponse {
	h.t.Helper()
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Group, req.MemberID, req.MemberEpoch = h.group, member, epoch
	if join {
		req.RebalanceTimeoutMillis = 10000
		req.SubscribedTopicNames = []string{h.topic}
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	}
	if owned != nil {
		rt := kmsg.NewConsumerGroupHeartbeatRequestTopic()
		rt.TopicID, rt.Partitions = h.id, owned
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{rt}
	}
	resp, err := req.RequestWith(ctxT(h.t), h.cl)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

func assigned(t *testing.T, resp *kmsg.ConsumerGroupHeartbeatResponse) []int32 {
	t.Helper()
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if resp.Assignment == nil {
		return nil
	}
	var out []int32
	for _, tp := range resp.Assignment.Topics {
		out = append(out, tp.Partitions...)
	}
	slices.Sort(out)
	return out
}

// TestConsumerGroupReconciliation drives the KIP-848 protocol by hand: a
// partition moves to a new member only once its old owner has revoked it;
// epochs fence stale heartbeats and commits; a leaving member's partitions
// are reassigned; classic and consumer groups do not mix.
func TestConsumerGroupReconciliation(t *testing.T) {
	tb := start(t, t.TempDir(), "", consumerConfigs)
	adm := tb.admin()
	createTopic(t, adm, "recon", 6, nil)
	cl := tb.client()
	md, err := adm.ListTopics(ctxT(t), "recon")
	if err != nil {
		t.Fatal(err)
	}
	h := hb{t: t, cl: cl, group: "recon-g", topic: "recon", id: md["recon"].ID}
	all := []int32{0, 1, 2, 3, 4, 5}

	ra := h.send("member-a", 0, nil, true)
	if got := assigned(t, ra); !slices.Equal(got, all) || ra.MemberEpoch != 1 {
		t.Fatalf("first member: epoch %d, partitions %v", ra.MemberEpoch, got)
	}
	if ra.HeartbeatIntervalMillis != 100 {
		t.Errorf("heartbeat interval %d, want the broker's 100", ra.HeartbeatIntervalMillis)
	}
	// B joins: its target is half, all still held by A.
	rb := h.send("member-b", 0, nil, true)
	if got := assigned(t, rb); len(got) != 0 || rb.MemberEpoch != 2 {
		t.Fatalf("second member before revocation: epoch %d, partitions %v", rb.MemberEpoch, got)
	}
	// A is told to keep three: it stays at epoch 1 until it revokes.
	ra = h.send("member-a", 1, all, false)
	keepA := assigned(t, ra)
	if len(keepA) != 3 || ra.MemberEpoch != 1 {
		t.Fatalf("first member revoking: epoch %d, partitions %v", ra.MemberEpoch, keepA)
	}
	rb = h.send("member-b", 2, []int32{}, false)
	if got := assigned(t, rb); len(got) != 0 {
		t.Fatalf("second member got %v before the first revoked them", got)
	}
	// A reports the revocation done: it moves to epoch 2; B gets the rest.
	ra = h.send("member-a", 1, keepA, false)
	if ra.ErrorCode != 0 || ra.MemberEpoch != 2 {
		t.Fatalf("first member after revoking: %v epoch %d", kerr.ErrorForCode(ra.ErrorCode), ra.MemberEpoch)
	}
	rb = h.send("member-b", 2, []int32{}, false)
	gotB := assigned(t, rb)
	if len(gotB) != 3 || slices.ContainsFunc(gotB, func(p int32) bool { return slices.Contains(keepA, p) }) {
		t.Fatalf("second member after revocation: %v (first keeps %v)", gotB, keepA)
	}

	// Epochs: a heartbeat from the future is fenced; a commit with an old
	// epoch is stale, with the current one accepted.
	if r := h.send("member-a", 7, keepA, false); r.ErrorCode != kerr.FencedMemberEpoch.Code {
		t.Errorf("heartbeat with a wrong epoch: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := h.send("nobody", 3, []int32{}, false); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Errorf("heartbeat of an unknown member: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	commit := func(member string, epoch int32) error {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = "recon-g", member, epoch
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = "recon", h.id
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = keepA[0], 5
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxT(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		return kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
	}
	if err := commit("member-a", 1); !errors.Is(err, kerr.StaleMemberEpoch) {
		t.Errorf("commit with an old epoch: %v", err)
	}
	if err := commit("member-a", 2); err != nil {
		t.Errorf("commit with the member's epoch: %v", err)
	}
	if err := commit("", -1); !errors.Is(err, kerr.UnknownMemberID) {
		t.Errorf("commit without a member to a group with members: %v", err)
	}

	// Shared namespace: a classic join to this group is refused.
	jr := kmsg.NewPtrJoinGroupRequest()
	jr.Group, jr.ProtocolType, jr.SessionTimeoutMillis, jr.RebalanceTimeoutMillis = "recon-g", "consumer", 10000, 10000
	jr.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 0}}}
	jresp, err := jr.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if jresp.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Errorf("classic join to a consumer group: %v", kerr.ErrorForCode(jresp.ErrorCode))
	}
	lreq := kmsg.NewPtrListGroupsRequest()
	lreq.TypesFilter = []string{"consumer"}
	lresp, err := lreq.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(lresp.Groups) != 1 || lresp.Groups[0].Group != "recon-g" || lresp.Groups[0].GroupType != "consumer" {
		t.Errorf("consumer groups listed: %+v", lresp.Groups)
	}

	// A leaves: B gets everything.
	if r := h.send("member-a", -1, nil, false); r.ErrorCode != 0 || r.MemberEpoch != -1 {
		t.Fatalf("leave: %v epoch %d", kerr.ErrorForCode(r.ErrorCode), r.MemberEpoch)
	}
	rb = h.send("member-b", 2, gotB, false)
	if got := assigned(t, rb); !slices.Equal(got, all) {
		t.Fatalf("after the first member left, the second holds %v", got)
	}
	d := describeConsumerGroup(t, tb, "recon-g")
	if d.ErrorCode != 0 || len(d.Members) != 1 || d.Members[0].MemberID != "member-b" || d.State != "Stable" {
		t.Errorf("described: %+v", d)
	}
	// DescribeGroups (kadm, the sluice group CLI) reads it as a consumer
	// group with its assignment.
	dg, err := adm.DescribeGroups(ctxT(t), "recon-g")
	if err != nil {
		t.Fatal(err)
	}
	if g := dg["recon-g"]; g.Err != nil || g.ProtocolType != "consumer" || len(g.Members) != 1 {
		t.Errorf("DescribeGroups: %+v", g)
	} else if a, ok := g.Members[0].Assigned.AsConsumer(); !ok || len(a.Topics) != 1 || len(a.Topics[0].Partitions) != 6 {
		t.Errorf("DescribeGroups assignment: %+v", g.Members[0].Assigned)
	}
	// /metrics counts consumer group members too, and the committed lag.
	text := scrape(t, tb)
	if v := metricValue(t, text, `sluice_group_members{group="recon-g"}`); v != 1 {
		t.Errorf("sluice_group_members %v, want 1", v)
	}
	if v := metricValue(t, text, `sluice_group_lag{group="recon-g",partition="`+strconv.Itoa(int(keepA[0]))+`",topic="recon"}`); v != 0 {
		t.Errorf("lag %v, want 0 (empty partition, committed 5)", v)
	}
	// An empty member id is refused from v1: the client makes it up.
	jreq := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	jreq.Group, jreq.RebalanceTimeoutMillis, jreq.SubscribedTopicNames = "recon-g", 1000, []string{"recon"}
	hresp, err := jreq.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if hresp.ErrorCode != kerr.InvalidRequest.Code {
		t.Errorf("v1 join without a member id: %v", kerr.ErrorForCode(hresp.ErrorCode))
	}
}

// TestConsumerGroupRestart: a KIP-848 group's committed offsets survive a
// broker restart; its members, kept in memory, rejoin (UNKNOWN_MEMBER_ID,
// then epoch 0) and resume at the committed offsets.
func TestConsumerGroupRestart(t *testing.T) {
	dir := t.TempDir()
	tb := start(t, dir, "", consumerConfigs)
	createTopic(t, tb.admin(), "resume848", 3, nil)
	produceN(t, tb, "resume848", 60, 0)
	w := newWatch()
	m := tb.member(t, w, "g848", "resume848", kgo.ServerSideBalancer(), kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit())
	w.until(t, "60 records", func() bool { return m.consumed() >= 60 })
	if err := m.cl.CommitUncommittedOffsets(ctxT(t)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	before := describeConsumerGroup(t, tb, "g848")
	if len(before.Members) != 1 {
		t.Fatalf("before restart: %+v", before)
	}

	addr := tb.addr
	tb.stop()
	tb = start(t, dir, addr, consumerConfigs)
	offs, err := tb.admin().FetchOffsets(ctxT(t), "g848")
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, ps := range offs {
		for _, o := range ps {
			total += o.At
		}
	}
	if total != 60 {
		t.Errorf("committed offsets after restart add up to %d, want 60", total)
	}
	produceN(t, tb, "resume848", 30, 60)
	w.until(t, "the 30 new records", func() bool { return m.consumed() >= 90 })
	m.mu.Lock()
	seen := map[string]int{}
	for _, r := range m.records {
		seen[string(r.Value)]++
	}
	m.mu.Unlock()
	for i := 0; i < 90; i++ {
		if n := seen[fmt.Sprintf("v%d", i)]; n != 1 {
			t.Errorf("record v%d consumed %d times", i, n)
		}
	}
	// The member rejoins on its next heartbeats.
	deadline := time.Now().Add(30 * time.Second)
	for {
		after := describeConsumerGroup(t, tb, "g848")
		if after.ErrorCode == 0 && len(after.Members) == 1 && after.State == "Stable" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart the member did not rejoin: %+v", after)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConsumerGroupSessionTimeout: a KIP-848 member that vanishes without
// leaving is removed after group.consumer.session.timeout.ms and the
// survivor takes its partitions.
func TestConsumerGroupSessionTimeout(t *testing.T) {
	cfg := map[string]string{
		"group.consumer.heartbeat.interval.ms": "100",
		"group.consumer.session.timeout.ms":    "1000",
	}
	tb := start(t, t.TempDir(), "", cfg)
	createTopic(t, tb.admin(), "st848", 4, nil)
	w := newWatch()
	opts := []kgo.Opt{kgo.ServerSideBalancer(), kgo.Balancers(kgo.CooperativeStickyBalancer())}
	keep := tb.member(t, w, "g", "st848", opts...)
	d := &killableDialer{}
	gone := tb.member(t, w, "g", "st848", append(opts, kgo.Dialer(d.dial), kgo.RetryTimeout(time.Second))...)
	w.until(t, "two members to split", func() bool { return split([]*groupMember{keep, gone}, 4) })
	d.kill()
	w.until(t, "the survivor to take every partition", func() bool { return len(keep.partitions()) == 4 })
}
