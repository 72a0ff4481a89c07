package metadata

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// changeImage has topic "p" with partitions led by 1 with replicas [1 2 3]
// and topic "q" with one partition, both in sync.
func changeImage(t *testing.T) *Image {
	t.Helper()
	p, q := newUUID(), newUUID()
	return applyAll(t, emptyImage(),
		&record{Type: recCreateTopic, Topic: "p", TopicID: &p, Partitions: 3, Replicas: []int32{1, 2, 3}},
		&record{Type: recCreateTopic, Topic: "q", TopicID: &q, Partitions: 1, Replicas: []int32{2, 3}},
	)
}

func TestChangePartition(t *testing.T) {
	base := Partition{ID: 0, Leader: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}}
	for _, c := range []struct {
		name   string
		change PartitionChange
		want   Partition
	}{
		{"nothing", PartitionChange{}, base},
		{"same values", PartitionChange{Leader: ptr(int32(1)), ISR: []int32{1, 2, 3}, Replicas: []int32{1, 2, 3}}, base},
		{"new leader", PartitionChange{Leader: ptr(int32(2))},
			Partition{Leader: 2, LeaderEpoch: 1, PartitionEpoch: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}}},
		{"shrink ISR", PartitionChange{ISR: []int32{1, 3}},
			Partition{Leader: 1, PartitionEpoch: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 3}}},
		{"reorder ISR", PartitionChange{ISR: []int32{3, 2, 1}},
			Partition{Leader: 1, PartitionEpoch: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{3, 2, 1}}},
		{"bump leader epoch", PartitionChange{BumpLeaderEpoch: true},
			Partition{Leader: 1, LeaderEpoch: 1, PartitionEpoch: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}}},
		{"no leader, empty ISR", PartitionChange{Leader: ptr(int32(-1)), ISR: []int32{}},
			Partition{Leader: -1, LeaderEpoch: 1, PartitionEpoch: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{}}},
		{"reassign", PartitionChange{Replicas: []int32{4, 1}, ISR: []int32{1}, BumpLeaderEpoch: true},
			Partition{Leader: 1, LeaderEpoch: 1, PartitionEpoch: 1, Replicas: []int32{4, 1}, ISR: []int32{1}}},
		{"expectations met", PartitionChange{ISR: []int32{1}, ExpectLeaderEpoch: ptr(int32(0)), ExpectPartitionEpoch: ptr(int32(0))},
			Partition{Leader: 1, PartitionEpoch: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1}}},
		{"start a reassignment", PartitionChange{Replicas: []int32{1, 2, 4, 3}, Reassignment: &Reassignment{Adding: []int32{4}, Removing: []int32{3}}},
			Partition{Leader: 1, PartitionEpoch: 1, Replicas: []int32{1, 2, 4, 3}, ISR: []int32{1, 2, 3},
				AddingReplicas: []int32{4}, RemovingReplicas: []int32{3}}},
		{"an empty reassignment is none", PartitionChange{Reassignment: &Reassignment{Adding: []int32{}}}, base},
	} {
		got, err := changePartition(base, c.change)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}

	for _, c := range []struct {
		name   string
		from   Partition
		change PartitionChange
		want   error
	}{
		{"stale leader epoch", base, PartitionChange{ISR: []int32{1}, ExpectLeaderEpoch: ptr(int32(1))}, ErrStaleLeaderEpoch},
		{"stale partition epoch", base, PartitionChange{ISR: []int32{1}, ExpectPartitionEpoch: ptr(int32(-1))}, ErrStalePartitionEpoch},
		{"leader not a replica", base, PartitionChange{Leader: ptr(int32(4))}, ErrInvalidPartitionChange},
		{"leader below -1", base, PartitionChange{Leader: ptr(int32(-2))}, ErrInvalidPartitionChange},
		{"leader not in ISR", base, PartitionChange{Leader: ptr(int32(2)), ISR: []int32{1}}, ErrInvalidPartitionChange},
		{"empty ISR with a leader", base, PartitionChange{ISR: []int32{}}, ErrInvalidPartitionChange},
		{"ISR not replicas", base, PartitionChange{ISR: []int32{1, 4}}, ErrInvalidPartitionChange},
		{"ISR duplicate", base, PartitionChange{ISR: []int32{1, 1}}, ErrInvalidPartitionChange},
		{"ISR too long", base, PartitionChange{ISR: make([]int32, maxReplicationFactor+1)}, ErrInvalidPartitionChange},
		{"replicas drop the ISR", base, PartitionChange{Replicas: []int32{1, 2}}, ErrInvalidPartitionChange},
		{"replicas drop the leader", base, PartitionChange{Replicas: []int32{2, 3}, ISR: []int32{2}}, ErrInvalidPartitionChange},
		{"replicas empty", base, PartitionChange{Replicas: []int32{}}, ErrInvalidReplicas},
		{"replicas duplicate", base, PartitionChange{Replicas: []int32{1, 1}}, ErrInvalidReplicas},
		{"leader epoch overflow", Partition{Leader: 1, LeaderEpoch: 1<<31 - 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}},
			PartitionChange{Leader: ptr(int32(2))}, ErrInvalidPartitionChange},
		{"partition epoch overflow", Partition{Leader: 1, PartitionEpoch: 1<<31 - 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}},
			PartitionChange{ISR: []int32{1}}, ErrInvalidPartitionChange},
		{"adding not a replica", base, PartitionChange{Reassignment: &Reassignment{Adding: []int32{4}}}, ErrInvalidPartitionChange},
		{"removing not a replica", base, PartitionChange{Reassignment: &Reassignment{Removing: []int32{5}}}, ErrInvalidPartitionChange},
		{"added and removed", base, PartitionChange{Reassignment: &Reassignment{Adding: []int32{2}, Removing: []int32{2}}}, ErrInvalidPartitionChange},
		{"every replica removed", base, PartitionChange{Reassignment: &Reassignment{Removing: []int32{1, 2, 3}}}, ErrInvalidPartitionChange},
		{"replicas drop an adding one", Partition{Leader: 1, Replicas: []int32{1, 4}, ISR: []int32{1}, AddingReplicas: []int32{4}},
			PartitionChange{Replicas: []int32{1}}, ErrInvalidPartitionChange},
	} {
		if got, err := changePartition(c.from, c.change); !errors.Is(err, c.want) {
			t.Errorf("%s: %+v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

func TestApplyChangePartitions(t *testing.T) {
	img := changeImage(t)
	p, q := img.Topics["p"], img.Topics["q"]

	// Several partitions of two topics, by name, by id and by both.
	next, res := apply(img, &record{Type: recChangePartitions, Changes: []PartitionChange{
		{Topic: "p", Partition: 2, Leader: ptr(int32(3))},
		{TopicID: q.ID, Partition: 0, ISR: []int32{2}},
		{Topic: "p", TopicID: p.ID, Partition: 0, ISR: []int32{1, 2}},
	}}, img.Index+1)
	if res.err != nil {
		t.Fatal(res.err)
	}
	checkImage(t, next)
	np, nq := next.Topics["p"], next.Topics["q"]
	if got := np.Partitions[2]; got.Leader != 3 || got.LeaderEpoch != 1 || got.PartitionEpoch != 1 {
		t.Errorf("p-2 = %+v", got)
	}
	if got := np.Partitions[0]; !reflect.DeepEqual(got.ISR, []int32{1, 2}) || got.LeaderEpoch != 0 || got.PartitionEpoch != 1 {
		t.Errorf("p-0 = %+v", got)
	}
	if got := nq.Partitions[0]; !reflect.DeepEqual(got.ISR, []int32{2}) || got.PartitionEpoch != 1 {
		t.Errorf("q-0 = %+v", got)
	}
	if !reflect.DeepEqual(np.Partitions[1], p.Partitions[1]) || np.ID != p.ID || next.TopicsByID[p.ID] != np {
		t.Error("an unchanged partition or the topic's identity changed")
	}
	if p.Partitions[2].Leader != 1 || q.Partitions[0].PartitionEpoch != 0 {
		t.Error("the input image changed")
	}

	// All or nothing: one refused change refuses the record.
	for name, changes := range map[string][]PartitionChange{
		"last refused":     {{Topic: "p", Partition: 0, ISR: []int32{1}}, {Topic: "q", Partition: 0, Leader: ptr(int32(1))}},
		"twice":            {{Topic: "p", Partition: 0, ISR: []int32{1}}, {Topic: "p", Partition: 0, ISR: []int32{1, 2}}},
		"twice, by id":     {{Topic: "p", Partition: 1, ISR: []int32{1}}, {TopicID: p.ID, Partition: 1, ISR: []int32{1}}},
		"unknown topic":    {{Topic: "p", Partition: 0, ISR: []int32{1}}, {Topic: "nope", Partition: 0}},
		"unknown id":       {{TopicID: newUUID(), Partition: 0}},
		"id mismatch":      {{Topic: "p", TopicID: q.ID, Partition: 0, ISR: []int32{1}}},
		"no topic":         {{Partition: 0}},
		"partition -1":     {{Topic: "p", Partition: -1}},
		"partition beyond": {{Topic: "p", Partition: 3}},
		"stale":            {{Topic: "q", Partition: 0, ISR: []int32{2}, ExpectPartitionEpoch: ptr(int32(1))}},
	} {
		if next, res := apply(img, &record{Type: recChangePartitions, Changes: changes}, img.Index+1); res.err == nil || next != nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, c := range map[string]struct {
		changes []PartitionChange
		want    error
	}{
		"unknown topic":  {[]PartitionChange{{Topic: "nope"}}, ErrUnknownTopic},
		"unknown id":     {[]PartitionChange{{TopicID: newUUID()}}, ErrUnknownTopic},
		"id mismatch":    {[]PartitionChange{{Topic: "p", TopicID: q.ID}}, ErrUnknownPartition},
		"partition":      {[]PartitionChange{{Topic: "p", Partition: 3}}, ErrUnknownPartition},
		"stale epoch":    {[]PartitionChange{{Topic: "p", ExpectLeaderEpoch: ptr(int32(5))}}, ErrStaleLeaderEpoch},
		"none":           {nil, ErrInvalidPartitionChange},
		"too many":       {make([]PartitionChange, maxPartitionChanges+1), ErrInvalidPartitionChange},
		"bad replicas":   {[]PartitionChange{{Topic: "p", Replicas: []int32{-1}}}, ErrInvalidReplicas},
		"leader outside": {[]PartitionChange{{Topic: "p", Leader: ptr(int32(7))}}, ErrInvalidPartitionChange},
	} {
		if _, res := apply(img, &record{Type: recChangePartitions, Changes: c.changes}, img.Index+1); !errors.Is(res.err, c.want) {
			t.Errorf("%s: %v, want %v", name, res.err, c.want)
		}
	}

	// Epochs chain: an AlterPartition built on the new state applies, one
	// built on the old state is refused.
	cur := next.Topics["p"].Partitions[2]
	next2, res := apply(next, &record{Type: recChangePartitions, Changes: []PartitionChange{{Topic: "p", Partition: 2, ISR: []int32{3, 1},
		ExpectLeaderEpoch: ptr(cur.LeaderEpoch), ExpectPartitionEpoch: ptr(cur.PartitionEpoch)}}}, next.Index+1)
	if res.err != nil || next2.Topics["p"].Partitions[2].PartitionEpoch != 2 {
		t.Fatalf("AlterPartition on the current epochs: %v", res.err)
	}
	if _, res := apply(next2, &record{Type: recChangePartitions, Changes: []PartitionChange{{Topic: "p", Partition: 2, ISR: []int32{3},
		ExpectLeaderEpoch: ptr(cur.LeaderEpoch), ExpectPartitionEpoch: ptr(cur.PartitionEpoch)}}}, next2.Index+1); !errors.Is(res.err, ErrStalePartitionEpoch) {
		t.Errorf("AlterPartition on an older partition epoch: %v", res.err)
	}
}

func TestApplyBrokerLifecycle(t *testing.T) {
	img := emptyImage()
	step := func(r *record) (*Image, applyResult) {
		t.Helper()
		next, res := apply(img, r, img.Index+1)
		if res.err == nil {
			checkImage(t, next)
			img = next
		}
		return next, res
	}
	mustStep := func(r *record) applyResult {
		t.Helper()
		_, res := step(r)
		if res.err != nil {
			t.Fatalf("%s: %v", r.Type, res.err)
		}
		return res
	}
	refused := func(r *record, want error) {
		t.Helper()
		before := img
		if _, res := step(r); !errors.Is(res.err, want) {
			t.Errorf("%s epoch %d: %v, want %v", r.Type, r.Epoch, res.err, want)
		}
		if img != before {
			t.Errorf("refused %s changed the image", r.Type)
		}
	}

	// A registration with an incarnation starts fenced at epoch = index;
	// the proposer's values of the FSM's fields are ignored.
	res := mustStep(&record{Type: recRegisterBroker, Broker: &Broker{NodeID: 1, Host: "h", Port: 1, IncarnationID: "a",
		Epoch: 99, Fenced: false, InControlledShutdown: true}})
	e1 := res.epoch
	if want := (Broker{NodeID: 1, Host: "h", Port: 1, IncarnationID: "a", Epoch: int64(img.Index), Fenced: true}); img.Brokers[1] != want || e1 != want.Epoch {
		t.Fatalf("registered %+v (epoch %d), want %+v", img.Brokers[1], e1, want)
	}
	refused(&record{Type: recUnfenceBroker, NodeID: 1, Epoch: e1 - 1}, ErrStaleBrokerEpoch)
	mustStep(&record{Type: recUnfenceBroker, NodeID: 1, Epoch: e1})
	if img.Brokers[1].Fenced {
		t.Error("still fenced after UnfenceBroker")
	}
	mustStep(&record{Type: recUnfenceBroker, NodeID: 1, Epoch: e1}) // idempotent
	mustStep(&record{Type: recFenceBroker, NodeID: 1, Epoch: e1})
	mustStep(&record{Type: recFenceBroker, NodeID: 1, Epoch: e1})
	if !img.Brokers[1].Fenced {
		t.Error("not fenced after FenceBroker")
	}
	mustStep(&record{Type: recUnfenceBroker, NodeID: 1, Epoch: e1})
	mustStep(&record{Type: recBeginControlledShutdown, NodeID: 1, Epoch: e1})
	if b := img.Brokers[1]; !b.InControlledShutdown || b.Fenced {
		t.Errorf("after BeginControlledShutdown: %+v", b)
	}
	refused(&record{Type: recUnfenceBroker, NodeID: 1, Epoch: e1}, ErrInvalidBroker)

	// The restarted broker registers again: new epoch, fenced, out of
	// controlled shutdown; the old incarnation's requests are stale.
	res = mustStep(&record{Type: recRegisterBroker, Broker: &Broker{NodeID: 1, Host: "h", Port: 1, IncarnationID: "b"}})
	e2 := res.epoch
	if b := img.Brokers[1]; e2 <= e1 || b.Epoch != e2 || !b.Fenced || b.InControlledShutdown || b.IncarnationID != "b" {
		t.Errorf("re-registered %+v (epoch %d after %d)", b, e2, e1)
	}
	refused(&record{Type: recFenceBroker, NodeID: 1, Epoch: e1}, ErrStaleBrokerEpoch)
	refused(&record{Type: recBeginControlledShutdown, NodeID: 1, Epoch: e1}, ErrStaleBrokerEpoch)
	refused(&record{Type: recFenceBroker, NodeID: 2, Epoch: e2}, ErrUnknownBroker)

	// A registration without an incarnation (as before fencing) is never
	// fenced.
	mustStep(&record{Type: recRegisterBroker, Broker: &Broker{NodeID: 2, Host: "g", Port: 2}})
	if b := img.Brokers[2]; b.Fenced || b.Epoch != int64(img.Index) {
		t.Errorf("legacy registration: %+v", b)
	}

	mustStep(&record{Type: recUnregisterBroker, NodeID: 1})
	if _, ok := img.Brokers[1]; ok || len(img.Brokers) != 1 {
		t.Errorf("after UnregisterBroker: %v", img.Brokers)
	}
	refused(&record{Type: recUnregisterBroker, NodeID: 1}, ErrUnknownBroker)
}

func TestApplyAssignedPlacement(t *testing.T) {
	id := newUUID()
	img := applyAll(t, emptyImage(),
		&record{Type: recCreateTopic, Topic: "a", TopicID: &id, Partitions: 3, Assignments: [][]int32{{1, 2}, {2, 3}, {3}}},
		&record{Type: recCreatePartitions, Topic: "a", Partitions: 5, Assignments: [][]int32{{4, 1}, {1}}},
	)
	checkImage(t, img)
	want := []Partition{
		{ID: 0, Leader: 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}},
		{ID: 1, Leader: 2, Replicas: []int32{2, 3}, ISR: []int32{2, 3}},
		{ID: 2, Leader: 3, Replicas: []int32{3}, ISR: []int32{3}},
		{ID: 3, Leader: 4, Replicas: []int32{4, 1}, ISR: []int32{4, 1}},
		{ID: 4, Leader: 1, Replicas: []int32{1}, ISR: []int32{1}},
	}
	if got := img.Topics["a"].Partitions; !reflect.DeepEqual(got, want) {
		t.Errorf("partitions:\n got %+v\nwant %+v", got, want)
	}
	// The assignment a proposer computed for 5 partitions does not apply
	// to a topic that has grown meanwhile.
	grown := applyAll(t, img, &record{Type: recCreatePartitions, Topic: "a", Partitions: 6, Replicas: []int32{1}})
	if _, res := apply(grown, &record{Type: recCreatePartitions, Topic: "a", Partitions: 6, Assignments: [][]int32{{2}}}, grown.Index+1); !errors.Is(res.err, ErrInvalidPartitions) {
		t.Errorf("assignment for a stale count: %v", res.err)
	}
	// Growing past the limit.
	many := make([][]int32, maxPartitionsPerTopic-4)
	for i := range many {
		many[i] = []int32{1}
	}
	if _, res := apply(img, &record{Type: recCreatePartitions, Topic: "a", Partitions: maxPartitionsPerTopic + 1, Assignments: many}, img.Index+1); !errors.Is(res.err, ErrInvalidPartitions) {
		t.Errorf("growing past the limit: %v", res.err)
	}
}

// Records as the version before clusters wrote them decode and apply as
// they did then: a registration is unfenced, partitions have epoch 0.
func TestOldRecordsApplyAsBefore(t *testing.T) {
	img := emptyImage()
	for i, raw := range []string{
		`{"type":"ActivateController","clusterId":"c","nodeId":1}`,
		`{"type":"RegisterBroker","broker":{"NodeID":1,"Host":"h","Port":9092,"Rack":"r"}}`,
		`{"type":"CreateTopic","topic":"t","topicId":"AAAAAAAAQACAAAAAAAAAAQ","partitions":2,"replicas":[1,2]}`,
		`{"type":"CreatePartitions","topic":"t","partitions":3,"replicas":[2]}`,
	} {
		r, err := decodeRecord(append([]byte{recordVersion}, raw...))
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		next, res := apply(img, r, uint64(i+1))
		if res.err != nil {
			t.Fatalf("record %d: %v", i, res.err)
		}
		img = next
	}
	checkImage(t, img)
	if b := img.Brokers[1]; b != (Broker{NodeID: 1, Host: "h", Port: 9092, Rack: "r", Epoch: 2}) {
		t.Errorf("broker %+v", b)
	}
	want := []Partition{
		{ID: 0, Leader: 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}},
		{ID: 1, Leader: 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}},
		{ID: 2, Leader: 2, Replicas: []int32{2}, ISR: []int32{2}},
	}
	if got := img.Topics["t"].Partitions; !reflect.DeepEqual(got, want) {
		t.Errorf("partitions %+v", got)
	}
	// New fields stay out of old records' encoding.
	b, _ := encodeRecord(&record{Type: recRegisterBroker, Broker: &Broker{NodeID: 1, Host: "h", Port: 9092}})
	if s := string(b[1:]); s != `{"type":"RegisterBroker","broker":{"NodeID":1,"Host":"h","Port":9092,"Rack":""}}` {
		t.Errorf("legacy registration encodes as %s", s)
	}
}

// A snapshot written before the cluster fields restores with their zero
// values, and one with them round-trips.
func TestOldSnapshotRestores(t *testing.T) {
	old := `{"clusterId":"c","controllerId":1,"brokers":[{"NodeID":1,"Host":"h","Port":9092,"Rack":""}],` +
		`"topics":[{"Name":"t","ID":"AAAAAAAAQACAAAAAAAAAAQ","Partitions":[{"ID":0,"Leader":1,"LeaderEpoch":3,"Replicas":[1],"ISR":[1]}],"Configs":{}}],` +
		`"brokerConfigs":{},"nextProducerId":5,"index":9}` + "\n"
	img, applied, err := decodeSnapshotApplied(strings.NewReader(string([]byte{snapshotVersion}) + old))
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img)
	if applied != 9 || img.Brokers[1] != (Broker{NodeID: 1, Host: "h", Port: 9092}) {
		t.Errorf("applied %d, broker %+v", applied, img.Brokers[1])
	}
	if p := img.Topics["t"].Partitions[0]; p.LeaderEpoch != 3 || p.PartitionEpoch != 0 {
		t.Errorf("partition %+v", p)
	}

	// Invariants of the new fields are checked on restore.
	for name, s := range map[string]string{
		"negative broker epoch":    strings.Replace(old, `"Rack":""`, `"Rack":"","Epoch":-1`, 1),
		"long incarnation":         strings.Replace(old, `"Rack":""`, `"Rack":"","IncarnationID":"`+strings.Repeat("x", maxIncarnationIDLen+1)+`"`, 1),
		"negative partition epoch": strings.Replace(old, `"LeaderEpoch":3`, `"LeaderEpoch":3,"PartitionEpoch":-1`, 1),
		"leader not in ISR":        strings.Replace(old, `"ISR":[1]`, `"ISR":[]`, 1),
	} {
		if s == old {
			t.Fatalf("%s: the test's replacement did not apply", name)
		}
		if _, err := decodeSnapshot(strings.NewReader(string([]byte{snapshotVersion}) + s)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
