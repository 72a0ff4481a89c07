package group

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/metrics"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// heapAllocBytes is the bytes allocated on the heap so far by the whole
// process. Allocations larger than 32 KiB count at once, smaller ones when
// their span fills, so a difference is exact for the large allocations a
// length field could cause and within a few KiB otherwise.
func heapAllocBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// maxDecodeAllocBytes is what decoding n bytes of a record may allocate:
// copies of its strings and the member slice are a small multiple of n,
// plus slack for the accounting of small allocations.
func maxDecodeAllocBytes(n int) uint64 { return 1<<20 + 64*uint64(n) }

// recordSeeds are records of __consumer_offsets as we write them, as
// older brokers wrote them, and damaged.
func recordSeeds() []Record {
	tp := TopicPartition{"orders", 3}
	now := time.UnixMilli(1_700_000_000_000)
	g := newGroup("g", now)
	for i, id := range []string{"c-1", "c-2"} {
		m := &member{id: id, clientID: "c", clientHost: "/10.0.0.1", sessionTimeout: 45_000, rebalanceTimeout: 300_000,
			protocolType: ConsumerProtocolType, protocols: []Protocol{{"range", subscription("orders")}},
			assignment: []byte(fmt.Sprintf("a:%d", i))}
		if i == 1 {
			m.instanceID = kmsg.StringPtr("static-1")
		}
		g.add(m)
	}
	g.protocol, g.generation, g.state = "range", 7, Stable

	v0 := kmsg.OffsetCommitValue{Version: 0, Offset: 5, Metadata: "m", CommitTimestamp: 1_600_000_000_000}
	key0 := kmsg.OffsetCommitKey{Version: 0, Group: "old", Topic: "t", Partition: 0}
	gv0 := kmsg.GroupMetadataValue{Version: 0, ProtocolType: "consumer", Generation: 1, Protocol: kmsg.StringPtr("range"),
		Leader: kmsg.StringPtr("m"), Members: []kmsg.GroupMetadataValueMember{{MemberID: "m", ClientID: "c",
			ClientHost: "h", SessionTimeoutMillis: 10_000, Subscription: subscription("t"), Assignment: []byte{}}}}
	gv4 := kmsg.GroupMetadataValue{Version: 4, ProtocolType: "consumer", Generation: 2, CurrentStateTimestamp: -1}
	gv4.Members = gv0.Members
	huge := kmsg.GroupMetadataValue{Version: 3, ProtocolType: "consumer", Generation: 1}
	hugeMembers := huge.AppendTo(nil)
	copy(hugeMembers[len(hugeMembers)-4:], []byte{0x7f, 0xff, 0xff, 0xff})
	dup := gv0
	dup.Members = []kmsg.GroupMetadataValueMember{gv0.Members[0], gv0.Members[0]}

	return []Record{
		{offsetKey("g", tp), offsetValue(offset{Offset: 42, LeaderEpoch: 3, Metadata: "meta", CommitTime: now})},
		{offsetKey("g", tp), offsetValue(offset{Offset: 42, LeaderEpoch: -1, CommitTime: now, ExpireTime: now.Add(time.Hour)})},
		{offsetKey("g", tp), nil},
		{key0.AppendTo(nil), v0.AppendTo(nil)},
		{groupKey("g"), groupValue(g, nil)},
		{groupKey("g"), nil},
		{groupKey("old"), gv0.AppendTo(nil)},
		{groupKey("flexible"), gv4.AppendTo(nil)},
		{groupKey("g"), hugeMembers},
		{groupKey("dup"), dup.AppendTo(nil)},
		{[]byte{0, 3, 0, 1, 'x'}, []byte{0, 0}},            // KIP-848 record
		{[]byte{0, 1, 0x7f, 0xff, 'g'}, []byte{0, 3}},      // string longer than the key
		{[]byte{0, 1}, offsetValue(offset{Offset: 1})[:9]}, // truncated
		{[]byte{}, []byte{}},
	}
}

// FuzzConsumerOffsetsRecord: decodeRecord never panics, refuses with
// ErrBadRecord, allocates no more than a small multiple of its input, and
// what it accepts re-encodes to records that decode (and load) the same.
func FuzzConsumerOffsetsRecord(f *testing.F) {
	for _, r := range recordSeeds() {
		f.Add(r.Key, r.Value, r.Value == nil)
	}
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		}
		before := heapAllocBytes()
		d, err := decodeRecord(key, value)
		if n := heapAllocBytes() - before; n > maxDecodeAllocBytes(len(key)+len(value)) {
			t.Fatalf("decoding %d bytes allocated %d", len(key)+len(value), n)
		}
		if err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error without ErrBadRecord: %v", err)
			}
			return
		}
		switch d.kind {
		case recordOffset:
			checkOffsetRecord(t, d, value == nil)
		case recordGroup:
			checkGroupRecord(t, d, value == nil)
		case recordOther:
			if d.version < firstUnknownKeyVersion {
				t.Fatalf("key version %d skipped as unknown", d.version)
			}
		default:
			t.Fatalf("kind %d", d.kind)
		}
	})
}

func checkOffsetRecord(t *testing.T, d decoded, tombstone bool) {
	t.Helper()
	if (d.offset == nil) != tombstone {
		t.Fatalf("offset %v for a tombstone: %v", d.offset, tombstone)
	}
	key := offsetKey(d.group, d.tp)
	var value []byte
	if d.offset != nil {
		value = offsetValue(*d.offset)
	}
	d2, err := decodeRecord(key, value)
	if err != nil {
		t.Fatalf("re-encoded offset commit: %v", err)
	}
	if d2.kind != recordOffset || d2.group != d.group || d2.tp != d.tp || (d2.offset == nil) != tombstone {
		t.Fatalf("re-decoded %+v, want %+v", d2, d)
	}
	if d.offset == nil {
		return
	}
	if !sameOffset(*d2.offset, *d.offset) {
		t.Fatalf("re-decoded offset %+v, want %+v", *d2.offset, *d.offset)
	}
	if again := offsetValue(*d2.offset); !bytes.Equal(again, value) {
		t.Fatalf("offset commit value re-encodes as %x, then %x", value, again)
	}
}

func sameOffset(a, b offset) bool {
	return a.Offset == b.Offset && a.LeaderEpoch == b.LeaderEpoch && a.Metadata == b.Metadata &&
		a.CommitTime.Equal(b.CommitTime) && a.ExpireTime.Equal(b.ExpireTime)
}

func checkGroupRecord(t *testing.T, d decoded, tombstone bool) {
	t.Helper()
	if (d.meta == nil) != tombstone {
		t.Fatalf("metadata %v for a tombstone: %v", d.meta, tombstone)
	}
	if d2, err := decodeRecord(groupKey(d.group), nil); err != nil || d2.kind != recordGroup || d2.group != d.group {
		t.Fatalf("re-encoded group key: %+v %v", d2, err)
	}
	if d.meta == nil {
		return
	}
	g := newGroup(d.group, time.Time{})
	loadGroupValue(g, d.meta)
	checkLoaded(t, g)
	value := groupValue(g, nil)
	d2, err := decodeRecord(groupKey(d.group), value)
	if err != nil || d2.meta == nil {
		t.Fatalf("re-encoded group metadata: %v", err)
	}
	g2 := newGroup(d.group, time.Time{})
	loadGroupValue(g2, d2.meta)
	checkLoaded(t, g2)
	if again := groupValue(g2, nil); !bytes.Equal(again, value) {
		t.Fatalf("group metadata re-encodes as %x, then %x", value, again)
	}
}

// checkLoaded checks a group loaded from a record: one member per id, in
// order, its leader among them, and the protocol counts and static ids
// those of its members.
func checkLoaded(t *testing.T, g *group) {
	t.Helper()
	if len(g.order) != len(g.members) {
		t.Fatalf("%d members in order %q", len(g.members), g.order)
	}
	supported, static := map[string]int{}, map[string]string{}
	for _, id := range g.order {
		m := g.members[id]
		if m == nil || m.id != id {
			t.Fatalf("member %q in order is %+v", id, m)
		}
		for _, p := range m.protocols {
			supported[p.Name]++
		}
		if m.instanceID != nil {
			static[*m.instanceID] = id
		}
	}
	if len(g.members) > 0 && g.members[g.leader] == nil || len(g.members) == 0 && g.leader != "" {
		t.Fatalf("leader %q of %q", g.leader, g.order)
	}
	if fmt.Sprint(supported) != fmt.Sprint(g.supported) || fmt.Sprint(static) != fmt.Sprint(g.static) {
		t.Fatalf("supported %v static %v, members say %v %v", g.supported, g.static, supported, static)
	}
}

// FuzzOffsetCommitRoundTrip: an offset commit as the coordinator makes it
// (millisecond times; an explicit expiry, from OffsetCommit v1-v4, comes
// without a leader epoch) decodes to itself.
func FuzzOffsetCommitRoundTrip(f *testing.F) {
	f.Add("g", "orders", int32(3), int64(42), int32(3), "meta", int64(1_700_000_000_000), false, int64(0))
	f.Add("g", "t", int32(0), int64(-1), int32(-1), "", int64(0), true, int64(1_700_000_000_000))
	f.Add("", "", int32(-1), int64(1<<62), int32(1<<30), "\x00\xff", int64(-1), true, int64(-1))
	f.Fuzz(func(t *testing.T, grp, topic string, partition int32, off int64, epoch int32, meta string, commitMs int64, expires bool, expireMs int64) {
		if len(grp) > 1<<15-1 || len(topic) > 1<<15-1 || len(meta) > 1<<15-1 {
			return // not a valid string of the format; requests carry no such names
		}
		tp := TopicPartition{topic, partition}
		o := offset{Offset: off, LeaderEpoch: epoch, Metadata: meta, CommitTime: time.UnixMilli(commitMs)}
		if expires {
			o.LeaderEpoch, o.ExpireTime = -1, time.UnixMilli(expireMs)
		}
		d, err := decodeRecord(offsetKey(grp, tp), offsetValue(o))
		if err != nil {
			t.Fatal(err)
		}
		if d.kind != recordOffset || d.group != grp || d.tp != tp || d.offset == nil || !sameOffset(*d.offset, o) {
			t.Fatalf("decoded %+v (offset %+v), want %q %+v %+v", d, d.offset, grp, tp, o)
		}
	})
}

// FuzzGroupMetadataRoundTrip: a classic group's metadata as the
// coordinator writes it loads back to the same group: type, generation,
// protocol, leader, state time and members in order with their ids,
// client, timeouts, subscription and assignment.
func FuzzGroupMetadataRoundTrip(f *testing.F) {
	f.Add("consumer", "range", "c", "static", false, "client", "/10.0.0.1", int32(45_000), int32(300_000),
		subscription("orders"), []byte("assignment"), int32(7), int64(1_700_000_000_000), uint8(2))
	f.Add("connect", "sessioned", "w", "i", true, "", "", int32(10_000), int32(-1), []byte{}, []byte(nil), int32(1), int64(-1), uint8(1))
	f.Add("", "", "", "", false, "", "", int32(0), int32(0), []byte(nil), []byte(nil), int32(0), int64(0), uint8(0))
	f.Fuzz(func(t *testing.T, protocolType, protocol, memberID, instanceID string, static bool, clientID, clientHost string,
		session, rebalance int32, sub, assignment []byte, generation int32, stateMs int64, members uint8) {
		for _, s := range []string{protocolType, protocol, memberID, instanceID, clientID, clientHost} {
			if len(s) > 1<<15-16 {
				return // not a valid string of the format
			}
		}
		if rebalance < 0 {
			rebalance = session // JoinGroup v0 has none
		}
		g := newGroup("g", time.Time{})
		if stateMs >= 0 {
			g.stateTime = time.UnixMilli(stateMs)
		}
		g.protocolType, g.generation = protocolType, generation
		for i := range int(members % 4) {
			m := &member{id: fmt.Sprintf("%s-%d", memberID, i), clientID: clientID, clientHost: clientHost,
				sessionTimeout: session, rebalanceTimeout: rebalance, protocolType: protocolType,
				protocols: []Protocol{{protocol, sub}}, assignment: assignment}
			if static {
				m.instanceID = kmsg.StringPtr(fmt.Sprintf("%s-%d", instanceID, i))
			}
			g.add(m)
		}
		if len(g.members) > 0 {
			g.protocol = protocol
			g.leader = g.order[len(g.order)-1]
		}
		d, err := decodeRecord(groupKey("g"), groupValue(g, nil))
		if err != nil || d.kind != recordGroup || d.group != "g" || d.meta == nil {
			t.Fatalf("decoded %+v: %v", d, err)
		}
		g2 := newGroup("g", time.Time{})
		loadGroupValue(g2, d.meta)
		checkLoaded(t, g2)
		if g2.protocolType != g.protocolType || g2.generation != g.generation || g2.protocol != g.protocol ||
			g2.leader != g.leader || !g2.stateTime.Equal(g.stateTime) || !slices.Equal(g2.order, g.order) {
			t.Fatalf("loaded %q %d %q %q %v %q, want %q %d %q %q %v %q",
				g2.protocolType, g2.generation, g2.protocol, g2.leader, g2.stateTime, g2.order,
				g.protocolType, g.generation, g.protocol, g.leader, g.stateTime, g.order)
		}
		for _, id := range g.order {
			m, m2 := g.members[id], g2.members[id]
			if m2.clientID != m.clientID || m2.clientHost != m.clientHost || m2.sessionTimeout != m.sessionTimeout ||
				m2.rebalanceTimeout != m.rebalanceTimeout || (m2.instanceID == nil) != (m.instanceID == nil) ||
				m.instanceID != nil && *m2.instanceID != *m.instanceID ||
				!bytes.Equal(m2.metadata(g2.protocol), m.metadata(g.protocol)) || !bytes.Equal(m2.assignment, m.assignment) {
				t.Fatalf("member %q loaded as %+v, want %+v", id, m2, m)
			}
		}
	})
}

// TestGroupMetadataWithDuplicateMembers: a group metadata record that
// lists a member id or a group.instance.id twice (damage: we never write
// one) is refused. Loaded, the first made a shard panic on the member's
// LeaveGroup.
func TestGroupMetadataWithDuplicateMembers(t *testing.T) {
	m := kmsg.GroupMetadataValueMember{MemberID: "a", ClientID: "c", ClientHost: "h",
		RebalanceTimeoutMillis: 30_000, SessionTimeoutMillis: 10_000, Subscription: subscription("t"), Assignment: []byte{}}
	static := m
	static.InstanceID = kmsg.StringPtr("i")
	other := static
	other.MemberID = "b"
	for _, members := range [][]kmsg.GroupMetadataValueMember{{m, m}, {static, other}} {
		v := kmsg.NewGroupMetadataValue()
		v.Version, v.ProtocolType, v.Generation, v.Protocol, v.Leader = 3, "consumer", 1, kmsg.StringPtr("range"), kmsg.StringPtr("a")
		v.Members = members
		s := NewShard(Settings{MinSessionTimeout: time.Millisecond})
		if err := s.Replay(groupKey("g"), v.AppendTo(nil)); !errors.Is(err, ErrBadRecord) {
			t.Fatalf("replay of members %s and %s: %v", members[0].MemberID, members[1].MemberID, err)
		}
		h := &harness{t: t, s: s, now: t0}
		h.run(s.Loaded(h.now))
		a, f := capture[LeaveResult]()
		h.run(h.s.Leave(h.now, "g", []LeaveMember{{MemberID: "a"}}, f))
		if !a.got {
			t.Fatal("leave not answered")
		}
		if d := h.describe("g"); len(d.Members) != 0 {
			t.Fatalf("after leave: %+v", d)
		}
	}
}
