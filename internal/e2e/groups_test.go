package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// groupConfigs keep group tests fast: no initial rebalance delay.
var groupConfigs = map[string]string{"group.initial.rebalance.delay.ms": "0"}

// groupMember is one kgo group consumer and what it has been assigned and
// has consumed, driven by its own polling goroutine.
type groupMember struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	w      *watch

	mu       sync.Mutex
	assigned map[int32]bool
	revokes  int
	records  []*kgo.Record
}

// watch wakes waiters whenever any member's state changes.
type watch struct {
	mu sync.Mutex
	ch chan struct{}
}

func newWatch() *watch { return &watch{ch: make(chan struct{})} }

func (w *watch) changed() {
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

// until waits for cond, re-checked on every change, for up to 30 s.
func (w *watch) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		w.mu.Lock()
		ch := w.ch
		w.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (tb *testBroker) member(t *testing.T, w *watch, group, topic string, opts ...kgo.Opt) *groupMember {
	t.Helper()
	m := &groupMember{w: w, assigned: map[int32]bool{}, done: make(chan struct{})}
	base := []kgo.Opt{
		kgo.SeedBrokers(tb.addr), kgo.MetadataMinAge(50 * time.Millisecond),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond), kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.SessionTimeout(6 * time.Second), kgo.RebalanceTimeout(10 * time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			for _, p := range a[topic] {
				m.assigned[p] = true
			}
			m.mu.Unlock()
			w.changed()
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, cl *kgo.Client, r map[string][]int32) {
			m.mu.Lock()
			for _, p := range r[topic] {
				delete(m.assigned, p)
			}
			m.revokes++
			m.mu.Unlock()
			// Commit what was consumed before the partitions move.
			_ = cl.CommitUncommittedOffsets(context.Background())
			w.changed()
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) {
			m.mu.Lock()
			for _, p := range l[topic] {
				delete(m.assigned, p)
			}
			m.mu.Unlock()
			w.changed()
		}),
	}
	if os.Getenv("SLUICE_TEST_KGO_LOG") != "" {
		base = append(base, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, nil)))
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if fs.IsClientClosed() {
				return
			}
			if recs := fs.Records(); len(recs) > 0 {
				m.mu.Lock()
				m.records = append(m.records, recs...)
				m.mu.Unlock()
				w.changed()
			}
		}
	}()
	t.Cleanup(m.close)
	return m
}

// close leaves the group (dynamic members) and stops polling.
func (m *groupMember) close() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cl.Close()
	<-m.done
	m.cancel = nil
}

func (m *groupMember) partitions() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int32, 0, len(m.assigned))
	for p := range m.assigned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func (m *groupMember) consumed() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}

// split says whether members hold every partition of n exactly once, each
// at least one.
func split(members []*groupMember, n int) bool {
	seen := map[int32]int{}
	for _, m := range members {
		ps := m.partitions()
		if len(ps) == 0 {
			return false
		}
		for _, p := range ps {
			seen[p]++
		}
	}
	if len(seen) != n {
		return false
	}
	for _, c := range seen {
		if c != 1 {
			return false
		}
	}
	return true
}

func produceN(t *testing.T, tb *testBroker, topic string, n, from int) {
	t.Helper()
	cl := tb.client(kgo.DefaultProduceTopic(topic))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: []byte(fmt.Sprintf("k%d", from+i)), Value: []byte(fmt.Sprintf("v%d", from+i))}
	}
	if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// TestGroupBalancers: three members of one group split a six-partition
// topic with no overlap and no gap, whichever balancer they use, and
// consume every record exactly once between them.
func TestGroupBalancers(t *testing.T) {
	tb := start(t, t.TempDir(), "", groupConfigs)
	adm := tb.admin()
	for _, bal := range []struct {
		name string
		b    kgo.GroupBalancer
	}{
		{"range", kgo.RangeBalancer()},
		{"roundrobin", kgo.RoundRobinBalancer()},
		{"sticky", kgo.StickyBalancer()},
		{"cooperative-sticky", kgo.CooperativeStickyBalancer()},
	} {
		t.Run(bal.name, func(t *testing.T) {
			topic, group := "split-"+bal.name, "g-"+bal.name
			createTopic(t, adm, topic, 6, nil)
			w := newWatch()
			var ms []*groupMember
			for range 3 {
				ms = append(ms, tb.member(t, w, group, topic, kgo.Balancers(bal.b)))
			}
			w.until(t, "three members to split six partitions", func() bool { return split(ms, 6) })
			for _, m := range ms {
				if n := len(m.partitions()); n != 2 {
					t.Errorf("a member holds %d partitions, want 2: %v", n, m.partitions())
				}
			}
			// Produced once the group is stable, each record goes to
			// the member holding its partition, once.
			produceN(t, tb, topic, 300, 0)
			w.until(t, "every record to be consumed", func() bool {
				return ms[0].consumed()+ms[1].consumed()+ms[2].consumed() >= 300
			})
			seen := map[string]bool{}
			for _, m := range ms {
				m.mu.Lock()
				for _, r := range m.records {
					if seen[string(r.Value)] {
						t.Errorf("record %s consumed twice", r.Value)
					}
					seen[string(r.Value)] = true
					if !m.assigned[r.Partition] {
						t.Errorf("record of partition %d consumed by a member holding %v", r.Partition, m.assigned)
					}
				}
				m.mu.Unlock()
			}
			if len(seen) != 300 {
				t.Errorf("%d distinct records consumed, want 300", len(seen))
			}
			described, err := adm.DescribeGroups(ctxT(t), group)
			if err != nil {
				t.Fatal(err)
			}
			d := described[group]
			if d.Err != nil || d.State != "Stable" || d.ProtocolType != "consumer" || d.Protocol != bal.name || len(d.Members) != 3 {
				t.Errorf("describe: state %s type %s protocol %s members %d err %v", d.State, d.ProtocolType, d.Protocol, len(d.Members), d.Err)
			}
			for _, dm := range d.Members {
				if dm.ClientHost != "/127.0.0.1" {
					t.Errorf("client host %q", dm.ClientHost)
				}
				if a, ok := dm.Assigned.AsConsumer(); !ok || len(a.Topics) != 1 || len(a.Topics[0].Partitions) != 2 {
					t.Errorf("described assignment %+v", dm.Assigned)
				}
			}
		})
	}
}

// TestGroupMemberLeaves: when a member leaves, the others take its
// partitions; when one joins, they give some up.
func TestGroupMemberLeaves(t *testing.T) {
	tb := start(t, t.TempDir(), "", groupConfigs)
	createTopic(t, tb.admin(), "leave", 6, nil)
	w := newWatch()
	ms := []*groupMember{tb.member(t, w, "g", "leave"), tb.member(t, w, "g", "leave"), tb.member(t, w, "g", "leave")}
	w.until(t, "three members to split", func() bool { return split(ms, 6) })
	ms[1].close()
	rest := []*groupMember{ms[0], ms[2]}
	w.until(t, "two members to split after a leave", func() bool {
		return split(rest, 6) && len(rest[0].partitions()) == 3
	})
	ms = append(rest, tb.member(t, w, "g", "leave", kgo.Balancers(kgo.CooperativeStickyBalancer(), kgo.RangeBalancer())))
	w.until(t, "three members to split after a join", func() bool { return split(ms, 6) })
}

// TestGroupSessionTimeout: a member that stops heartbeating (its broker
// connections gone) is removed after its session timeout, and the others
// take over its partitions.
func TestGroupSessionTimeout(t *testing.T) {
	tb := start(t, t.TempDir(), "", map[string]string{"group.initial.rebalance.delay.ms": "0", "group.min.session.timeout.ms": "500"})
	createTopic(t, tb.admin(), "st", 4, nil)
	w := newWatch()
	keep := tb.member(t, w, "g", "st", kgo.SessionTimeout(time.Second))
	d := &killableDialer{}
	gone := tb.member(t, w, "g", "st", kgo.SessionTimeout(time.Second), kgo.Dialer(d.dial), kgo.RetryTimeout(time.Second))
	w.until(t, "two members to split", func() bool { return split([]*groupMember{keep, gone}, 4) })
	d.kill()
	w.until(t, "the survivor to take every partition", func() bool { return len(keep.partitions()) == 4 })
}

// killableDialer dials normally until killed, then closes every connection
// it made and refuses new ones: a member that vanished without leaving.
type killableDialer struct {
	mu    sync.Mutex
	dead  bool
	conns []net.Conn
}

func (d *killableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return nil, errors.New("killed")
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, host)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *killableDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	for _, c := range d.conns {
		c.Close()
	}
}

// TestGroupOffsetsSurviveRestart: offsets committed by a group member are
// durable; after a broker restart a new member of the group resumes
// exactly at them.
func TestGroupOffsetsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	tb := start(t, dir, "", groupConfigs)
	createTopic(t, tb.admin(), "resume", 6, nil)
	produceN(t, tb, "resume", 120, 0)
	w := newWatch()
	m := tb.member(t, w, "g", "resume", kgo.DisableAutoCommit())
	w.until(t, "120 records", func() bool { return m.consumed() >= 120 })
	if err := m.cl.CommitUncommittedOffsets(ctxT(t)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	m.close()
	before, err := tb.admin().FetchOffsets(ctxT(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	ends, err := tb.admin().ListEndOffsets(ctxT(t), "resume")
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := before.Lookup("resume", o.Partition)
		if !ok || c.At != o.Offset {
			t.Errorf("partition %d: committed %+v, end %d", o.Partition, c, o.Offset)
		}
		total += c.At
	})
	if total != 120 {
		t.Fatalf("committed offsets add up to %d, want 120", total)
	}

	addr := tb.addr
	tb.stop()
	tb = start(t, dir, addr, groupConfigs)
	after, err := tb.admin().FetchOffsets(ctxT(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	before.Each(func(o kadm.OffsetResponse) {
		a, ok := after.Lookup(o.Topic, o.Partition)
		if !ok || a.At != o.At || a.Err != nil {
			t.Errorf("after restart %s/%d: %+v, want %d", o.Topic, o.Partition, a, o.At)
		}
	})
	produceN(t, tb, "resume", 30, 120)
	w = newWatch()
	m2 := tb.member(t, w, "g", "resume")
	w.until(t, "the 30 new records", func() bool { return m2.consumed() >= 30 })
	m2.mu.Lock()
	defer m2.mu.Unlock()
	for _, r := range m2.records {
		var i int
		fmt.Sscanf(string(r.Value), "v%d", &i)
		if i < 120 {
			t.Errorf("record %s consumed again after the restart", r.Value)
		}
	}
}

// TestGroupStaticMembership: a static member that restarts within its
// session timeout gets its partitions back with no rebalance: the other
// member's generation does not move and it revokes nothing.
func TestGroupStaticMembership(t *testing.T) {
	tb := start(t, t.TempDir(), "", groupConfigs)
	createTopic(t, tb.admin(), "static", 4, nil)
	w := newWatch()
	a := tb.member(t, w, "g", "static", kgo.InstanceID("a"))
	b := tb.member(t, w, "g", "static", kgo.InstanceID("b"))
	w.until(t, "two static members to split", func() bool { return split([]*groupMember{a, b}, 4) })
	_, gen := a.cl.GroupMetadata()
	bParts := b.partitions()
	revokes := a.revokes
	b.close() // a static member does not leave
	described, err := tb.admin().DescribeGroups(ctxT(t), "g")
	if err != nil || described["g"].State != "Stable" || len(described["g"].Members) != 2 {
		t.Fatalf("after b stopped: %+v %v", described["g"], err)
	}
	b2 := tb.member(t, w, "g", "static", kgo.InstanceID("b"))
	w.until(t, "the restarted member to get its partitions back", func() bool {
		return slices.Equal(b2.partitions(), bParts)
	})
	if _, g := a.cl.GroupMetadata(); g != gen {
		t.Errorf("generation moved from %d to %d: a rebalance happened", gen, g)
	}
	a.mu.Lock()
	if a.revokes != revokes {
		t.Errorf("the other member revoked partitions %d times", a.revokes-revokes)
	}
	a.mu.Unlock()
	described, err = tb.admin().DescribeGroups(ctxT(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	var instances []string
	for _, m := range described["g"].Members {
		instances = append(instances, *m.InstanceID)
	}
	slices.Sort(instances)
	if fmt.Sprint(instances) != "[a b]" {
		t.Errorf("members %v", instances)
	}
}

// TestGroupUnknownGroupAnswers: what Kafka answers without an error for
// groups it does not know.
func TestGroupUnknownGroupAnswers(t *testing.T) {
	tb := start(t, t.TempDir(), "", groupConfigs)
	createTopic(t, tb.admin(), "t", 2, nil)
	adm := tb.admin()
	offs, err := adm.FetchOffsetsForTopics(ctxT(t), "never-seen", "t")
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 2; p++ {
		o, ok := offs.Lookup("t", p)
		if !ok || o.Err != nil || o.At != -1 {
			t.Errorf("partition %d of an unknown group: %+v", p, o)
		}
	}
	cl := tb.client()
	// pinned is a client that speaks at most version v of API key.
	pinned := func(key, v int16) *kgo.Client {
		vs := kversion.Stable()
		vs.SetMaxKeyVersion(key, v)
		return tb.client(kgo.MaxVersions(vs))
	}
	// Single group (v1, v5, v7) and several groups (v8+), partitions named.
	for _, v := range []int16{1, 5, 7, 10} {
		req := kmsg.NewPtrOffsetFetchRequest()
		if v < 8 {
			req.Group = "never-seen"
			req.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1}}}
		} else {
			req.Groups = []kmsg.OffsetFetchRequestGroup{
				{Group: "never-seen", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{0, 1}}}},
				{Group: "also-never"},
			}
		}
		resp, err := req.RequestWith(ctxT(t), pinned(9, v))
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if resp.Version != v {
			t.Fatalf("sent v%d, want v%d", resp.Version, v)
		}
		if v < 8 {
			if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 2 {
				t.Fatalf("v%d: %+v", v, resp)
			}
			for _, p := range resp.Topics[0].Partitions {
				if p.Offset != -1 || p.ErrorCode != 0 {
					t.Errorf("v%d partition %+v", v, p)
				}
			}
			continue
		}
		if len(resp.Groups) != 2 || resp.Groups[0].ErrorCode != 0 || resp.Groups[1].ErrorCode != 0 || len(resp.Groups[1].Topics) != 0 {
			t.Fatalf("v%d: %+v", v, resp.Groups)
		}
		for _, p := range resp.Groups[0].Topics[0].Partitions {
			if p.Offset != -1 || p.ErrorCode != 0 {
				t.Errorf("v%d partition %+v", v, p)
			}
		}
	}
	// DescribeGroups: Dead, with GROUP_ID_NOT_FOUND from v6 only.
	for _, v := range []int16{0, 5, 6} {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{"never-seen"}
		resp, err := req.RequestWith(ctxT(t), pinned(15, v))
		if err != nil {
			t.Fatal(err)
		}
		g := resp.Groups[0]
		want := int16(0)
		if v >= 6 {
			want = kerr.GroupIDNotFound.Code
		}
		if g.State != "Dead" || g.ErrorCode != want {
			t.Errorf("describe v%d: %+v", v, g)
		}
	}
	// Heartbeat, SyncGroup and LeaveGroup of an unknown group: UNKNOWN_MEMBER_ID.
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = "never-seen", "m", 1
	if resp, err := hb.RequestWith(ctxT(t), cl); err != nil || resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Errorf("heartbeat: %+v %v", resp, err)
	}
	sg := kmsg.NewPtrSyncGroupRequest()
	sg.Group, sg.MemberID, sg.Generation = "never-seen", "m", 1
	if resp, err := sg.RequestWith(ctxT(t), cl); err != nil || resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Errorf("sync: %+v %v", resp, err)
	}
	lg := kmsg.NewPtrLeaveGroupRequest()
	lg.Group = "never-seen"
	lg.Members = []kmsg.LeaveGroupRequestMember{{MemberID: "m"}, {MemberID: "n"}}
	if resp, err := lg.RequestWith(ctxT(t), cl); err != nil || resp.ErrorCode != 0 || len(resp.Members) != 2 ||
		resp.Members[0].ErrorCode != kerr.UnknownMemberID.Code || resp.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
		t.Errorf("leave: %+v %v", resp, err)
	}
	// FindCoordinator: batched group keys, transactional ids, share groups (not served).
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKeys = []string{"a", "b"}
	resp, err := fc.RequestWith(ctxT(t), cl)
	if err != nil || len(resp.Coordinators) != 2 {
		t.Fatalf("find coordinator: %+v %v", resp, err)
	}
	for _, c := range resp.Coordinators {
		if c.ErrorCode != 0 || c.NodeID != 1 || c.Port <= 0 || (c.Key != "a" && c.Key != "b") {
			t.Errorf("find coordinator: %+v", c)
		}
	}
	fc.CoordinatorType = 1
	if resp, err := fc.RequestWith(ctxT(t), cl); err != nil || resp.Coordinators[0].ErrorCode != 0 || resp.Coordinators[0].NodeID != 1 {
		t.Errorf("find transaction coordinator: %+v %v", resp, err)
	}
	fc.CoordinatorType = 2 // share groups: not served
	if resp, err := fc.RequestWith(ctxT(t), cl); err != nil || resp.Coordinators[0].ErrorCode != kerr.InvalidRequest.Code {
		t.Errorf("find share coordinator: %+v %v", resp, err)
	}
}

// TestGroupAdmin: kadm lists, describes and deletes groups and offsets.
func TestGroupAdmin(t *testing.T) {
	tb := start(t, t.TempDir(), "", groupConfigs)
	adm := tb.admin()
	createTopic(t, adm, "adm", 3, nil)
	createTopic(t, adm, "other", 1, nil)
	w := newWatch()
	m := tb.member(t, w, "live", "adm")
	w.until(t, "the member to get the partitions", func() bool { return len(m.partitions()) == 3 })
	// A group that only stores offsets.
	if _, err := adm.CommitOffsets(ctxT(t), "offsets-only", kadm.OffsetsFromRecords(kgo.Record{Topic: "adm", Partition: 1, Offset: 4})); err != nil {
		t.Fatal(err)
	}
	listed, err := adm.ListGroups(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(listed.Sorted()) == "" || listed["live"].State != "Stable" || listed["live"].ProtocolType != "consumer" ||
		listed["offsets-only"].State != "Empty" {
		t.Fatalf("listed %+v", listed)
	}
	if l, err := adm.ListGroups(ctxT(t), "Empty"); err != nil || len(l) != 1 || l["offsets-only"].Group == "" {
		t.Fatalf("listed empty groups: %+v %v", l, err)
	}
	if l, err := adm.ListGroupsByType(ctxT(t), []string{"consumer"}); err != nil || len(l) != 0 {
		t.Fatalf("listed KIP-848 groups: %+v %v", l, err)
	}
	deleted, err := adm.DeleteGroups(ctxT(t), "live", "nope", "offsets-only")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(deleted["live"].Err, kerr.NonEmptyGroup) || !errors.Is(deleted["nope"].Err, kerr.GroupIDNotFound) || deleted["offsets-only"].Err != nil {
		t.Fatalf("delete: %+v", deleted)
	}
	// OffsetDelete: a consumed topic is refused, another is deleted.
	if err := m.cl.CommitUncommittedOffsets(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if rs, err := adm.CommitOffsets(ctxT(t), "live", kadm.OffsetsFromRecords(kgo.Record{Topic: "other", Partition: 0, Offset: 1})); err != nil ||
		!errors.Is(rs.Error(), kerr.UnknownMemberID) {
		t.Fatalf("a commit from outside a live group: %v %v", rs.Error(), err)
	}
	m.close()
	if rs, err := adm.CommitOffsets(ctxT(t), "live", kadm.OffsetsFromRecords(kgo.Record{Topic: "other", Partition: 0, Offset: 1})); err != nil || rs.Error() != nil {
		t.Fatalf("commit to the emptied group: %v %v", rs.Error(), err)
	}
	dr, err := adm.DeleteOffsets(ctxT(t), "live", kadm.TopicsSet{"other": {0: {}}})
	if err != nil || dr.Error() != nil {
		t.Fatalf("delete offsets: %+v %v", dr, err)
	}
	if o, _ := adm.FetchOffsets(ctxT(t), "live"); len(o["other"]) != 0 {
		t.Fatalf("deleted offset still there: %+v", o)
	}
	if d, err := adm.DeleteGroups(ctxT(t), "live"); err != nil || d["live"].Err != nil {
		t.Fatalf("delete the emptied group: %+v %v", d, err)
	}
	if listed, err := adm.ListGroups(ctxT(t)); err != nil || len(listed) != 0 {
		t.Fatalf("listed after deletes: %+v %v", listed, err)
	}
}
