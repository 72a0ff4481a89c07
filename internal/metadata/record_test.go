package metadata

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	id := newUUID()
	for _, r := range []*record{
		{Type: recRegisterBroker, Broker: &Broker{NodeID: 3, Host: "h", Port: 9092, Rack: "r"}},
		{Type: recCreateTopic, Topic: "t", TopicID: &id, Partitions: 3, Replicas: []int32{0, 2}, Configs: map[string]string{"a": "b"}},
		{Type: recDeleteTopic, Topic: "t"},
		{Type: recCreatePartitions, Topic: "t", Partitions: 9, Replicas: []int32{1}},
		{Type: recSetTopicConfigs, Topic: "t", Configs: map[string]string{"x": ""}},
		{Type: recSetBrokerConfigs},
		{Type: recAllocateProducerIDs, Count: 12},
		{Type: recActivateController, NodeID: 0, ClusterID: "abc"},
		{Type: recRegisterBroker, Broker: &Broker{NodeID: 3, Host: "h", Port: 9092, IncarnationID: "i"}},
		{Type: recFenceBroker, NodeID: 3, Epoch: 12},
		{Type: recUnfenceBroker, NodeID: 3, Epoch: 12},
		{Type: recBeginControlledShutdown, NodeID: 3, Epoch: 12},
		{Type: recUnregisterBroker, NodeID: 3},
		{Type: recSetPerBrokerConfigs, NodeID: 3, Configs: map[string]string{"cordoned.log.dirs": "*"}},
		{Type: recCreateTopic, Topic: "t", TopicID: &id, Partitions: 2, Assignments: [][]int32{{1, 2}, {2, 3}}},
		{Type: recCreatePartitions, Topic: "t", Partitions: 3, Assignments: [][]int32{{3}}},
		{Type: recChangePartitions, Changes: []PartitionChange{
			{Topic: "t", TopicID: id, Partition: 1, Leader: ptr(int32(-1)), ISR: []int32{}, Replicas: []int32{2, 3},
				BumpLeaderEpoch: true, ExpectLeaderEpoch: ptr(int32(4)), ExpectPartitionEpoch: ptr(int32(0))},
			{Topic: "u", Partition: 0, ISR: nil}, // nil and empty differ: unchanged vs emptied
		}},
	} {
		b, err := encodeRecord(r)
		if err != nil {
			t.Fatalf("encode %+v: %v", r, err)
		}
		if b[0] != recordVersion {
			t.Errorf("version byte %d", b[0])
		}
		got, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
		}
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, nil},
		{"version 0", []byte("\x00{}"), nil},
		{"version 2", []byte("\x02{}"), nil},
		{"no json", []byte{recordVersion}, nil},
		{"bad json", []byte("\x01{"), nil},
		{"wrong field type", []byte(`` + "\x01" + `{"partitions":"x"}`), nil},
		{"bad topic id", []byte("\x01" + `{"topicId":"short"}`), nil},
		{"too large", append([]byte{recordVersion}, bytes.Repeat([]byte(" "), maxRecordBytes)...), ErrRecordTooLarge},
	} {
		_, err := decodeRecord(c.in)
		if err == nil {
			t.Errorf("%s: decoded", c.name)
		} else if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestEncodeRecordTooLarge(t *testing.T) {
	r := &record{Type: recSetBrokerConfigs, Configs: map[string]string{"k": strings.Repeat("v", maxRecordBytes)}}
	if _, err := encodeRecord(r); !errors.Is(err, ErrRecordTooLarge) {
		t.Errorf("encode = %v, want ErrRecordTooLarge", err)
	}
}

// applyAll applies records in order, failing the test on any refusal.
func applyAll(t testing.TB, img *Image, rs ...*record) *Image {
	t.Helper()
	for _, r := range rs {
		next, res := apply(img, r, img.Index+1)
		if res.err != nil {
			t.Fatalf("apply %+v: %v", r, res.err)
		}
		img = next
	}
	return img
}

func ptr[T any](v T) *T { return &v }

func testImage(t testing.TB) *Image {
	t.Helper()
	id1, id2, id3 := newUUID(), newUUID(), newUUID()
	img := applyAll(t, emptyImage(),
		&record{Type: recActivateController, NodeID: 2, ClusterID: newUUID().String()},
		&record{Type: recRegisterBroker, Broker: &Broker{NodeID: 1, Host: "a", Port: 1}},
		&record{Type: recRegisterBroker, Broker: &Broker{NodeID: 2, Host: "b", Port: 2, Rack: "x"}},
		&record{Type: recCreateTopic, Topic: "t1", TopicID: &id1, Partitions: 2, Replicas: []int32{1, 2}, Configs: map[string]string{"a": "1"}},
		&record{Type: recCreateTopic, Topic: "t2", TopicID: &id2, Partitions: 1, Replicas: []int32{2}},
		&record{Type: recCreatePartitions, Topic: "t2", Partitions: 3, Replicas: []int32{1}},
		&record{Type: recSetBrokerConfigs, Configs: map[string]string{"b": "2"}},
		&record{Type: recAllocateProducerIDs, Count: 7},
		// Brokers with incarnations, fenced, unfenced, shutting down.
		&record{Type: recRegisterBroker, Broker: &Broker{NodeID: 3, Host: "c", Port: 3, IncarnationID: "i3"}},
		&record{Type: recRegisterBroker, Broker: &Broker{NodeID: 4, Host: "d", Port: 4, IncarnationID: "i4"}},
		&record{Type: recRegisterBroker, Broker: &Broker{NodeID: 5, Host: "e", Port: 5, IncarnationID: "i5"}},
		&record{Type: recCreateTopic, Topic: "t3", TopicID: &id3, Partitions: 3, Assignments: [][]int32{{3, 4}, {4, 5}, {5, 3}}},
		// Per-broker configs, one of them of a broker unregistered below.
		&record{Type: recSetPerBrokerConfigs, NodeID: 2, Configs: map[string]string{"cordoned.log.dirs": "*"}},
		&record{Type: recSetPerBrokerConfigs, NodeID: 4, Configs: map[string]string{"follower.replication.throttled.rate": "1000"}},
	)
	return applyAll(t, img,
		&record{Type: recUnfenceBroker, NodeID: 4, Epoch: img.Brokers[4].Epoch},
		&record{Type: recUnfenceBroker, NodeID: 5, Epoch: img.Brokers[5].Epoch},
		&record{Type: recBeginControlledShutdown, NodeID: 5, Epoch: img.Brokers[5].Epoch},
		// Partitions with leader and partition epochs above 0, one leaderless.
		&record{Type: recChangePartitions, Changes: []PartitionChange{
			{Topic: "t3", Partition: 0, Leader: ptr(int32(4))},
			{Topic: "t3", Partition: 2, Leader: ptr(int32(-1)), ISR: []int32{}},
			{Topic: "t1", Partition: 1, ISR: []int32{1}},
		}},
	)
}

// apply never mutates its input image: check by encoding it before and after
// every kind of record, accepted or refused.
func TestApplyDoesNotMutate(t *testing.T) {
	img := testImage(t)
	var before bytes.Buffer
	if err := encodeSnapshot(&before, img); err != nil {
		t.Fatal(err)
	}
	id := newUUID()
	t1 := img.Topics["t1"].ID
	for _, r := range []*record{
		{Type: recRegisterBroker, Broker: &Broker{NodeID: 1, Host: "changed"}},
		{Type: recRegisterBroker, Broker: &Broker{NodeID: 9}},
		{Type: recCreateTopic, Topic: "t3", TopicID: &id, Partitions: 1, Replicas: []int32{1}},
		{Type: recCreateTopic, Topic: "t1", TopicID: &id, Partitions: 1, Replicas: []int32{1}},
		{Type: recCreateTopic, Topic: "t4", TopicID: &t1, Partitions: 1, Replicas: []int32{1}},
		{Type: recDeleteTopic, Topic: "t1"},
		{Type: recCreatePartitions, Topic: "t1", Partitions: 4, Replicas: []int32{2}},
		{Type: recSetTopicConfigs, Topic: "t1", Configs: map[string]string{"z": "z"}},
		{Type: recSetBrokerConfigs, Configs: map[string]string{"z": "z"}},
		{Type: recSetPerBrokerConfigs, NodeID: 2, Configs: map[string]string{"z": "z"}},
		{Type: recSetPerBrokerConfigs, NodeID: 1, Configs: map[string]string{"z": "z"}},
		{Type: recSetPerBrokerConfigs, NodeID: 2},
		{Type: recSetPerBrokerConfigs, NodeID: 9, Configs: map[string]string{"z": "z"}},
		{Type: recAllocateProducerIDs, Count: 100},
		{Type: recActivateController, NodeID: 5, ClusterID: "other"},
		{Type: recRegisterBroker, Broker: &Broker{NodeID: 4, Host: "again", IncarnationID: "new"}},
		{Type: recFenceBroker, NodeID: 4, Epoch: img.Brokers[4].Epoch},
		{Type: recUnfenceBroker, NodeID: 3, Epoch: img.Brokers[3].Epoch},
		{Type: recBeginControlledShutdown, NodeID: 4, Epoch: img.Brokers[4].Epoch},
		{Type: recUnregisterBroker, NodeID: 4},
		{Type: recCreateTopic, Topic: "t5", TopicID: &id, Partitions: 1, Assignments: [][]int32{{1}}},
		{Type: recCreatePartitions, Topic: "t3", Partitions: 4, Assignments: [][]int32{{4}}},
		{Type: recChangePartitions, Changes: []PartitionChange{
			{Topic: "t3", Partition: 0, Leader: ptr(int32(3)), Replicas: []int32{3, 4, 5}, ISR: []int32{3, 5}, BumpLeaderEpoch: true},
			{Topic: "t3", Partition: 1, ISR: []int32{4}},
		}},
		{Type: recChangePartitions, Changes: []PartitionChange{ // accepted, then refused: nothing may leak
			{Topic: "t1", Partition: 0, ISR: []int32{1}},
			{Topic: "t1", Partition: 1, Leader: ptr(int32(9))},
		}},
	} {
		apply(img, r, img.Index+1)
		var after bytes.Buffer
		if err := encodeSnapshot(&after, img); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before.Bytes(), after.Bytes()) {
			t.Fatalf("applying %s mutated the input image", r.Type)
		}
	}
}

func TestApplyRefusals(t *testing.T) {
	img := testImage(t)
	zero := TopicID{}
	id := newUUID()
	t1 := img.Topics["t1"].ID
	for _, c := range []struct {
		r    *record
		want error
	}{
		{&record{Type: recRegisterBroker}, ErrInvalidBroker},
		{&record{Type: recRegisterBroker, Broker: &Broker{NodeID: -1}}, ErrInvalidBroker},
		{&record{Type: recCreateTopic, Topic: "x", Partitions: 1, Replicas: []int32{1}}, nil},
		{&record{Type: recCreateTopic, Topic: "x", TopicID: &zero, Partitions: 1, Replicas: []int32{1}}, nil},
		{&record{Type: recCreateTopic, Topic: "t1", TopicID: &id, Partitions: 1, Replicas: []int32{1}}, ErrTopicExists},
		{&record{Type: recCreateTopic, Topic: "x", TopicID: &t1, Partitions: 1, Replicas: []int32{1}}, ErrTopicExists},
		{&record{Type: recCreateTopic, Topic: "a/b", TopicID: &id, Partitions: 1, Replicas: []int32{1}}, ErrInvalidTopic},
		{&record{Type: recCreateTopic, Topic: "x", TopicID: &id, Partitions: 0, Replicas: []int32{1}}, ErrInvalidPartitions},
		{&record{Type: recCreateTopic, Topic: "x", TopicID: &id, Partitions: 1}, ErrInvalidReplicas},
		{&record{Type: recDeleteTopic, Topic: "x"}, ErrUnknownTopic},
		{&record{Type: recCreatePartitions, Topic: "x", Partitions: 5, Replicas: []int32{1}}, ErrUnknownTopic},
		{&record{Type: recCreatePartitions, Topic: "t1", Partitions: 2, Replicas: []int32{1}}, ErrInvalidPartitions},
		{&record{Type: recCreatePartitions, Topic: "t1", Partitions: maxPartitionsPerTopic + 1, Replicas: []int32{1}}, ErrInvalidPartitions},
		{&record{Type: recCreatePartitions, Topic: "t1", Partitions: 3}, ErrInvalidReplicas},
		{&record{Type: recSetTopicConfigs, Topic: "x"}, ErrUnknownTopic},
		{&record{Type: recAllocateProducerIDs}, ErrInvalidProducerIDCount},
		{&record{Type: recAllocateProducerIDs, Count: maxProducerIDBlock + 1}, ErrInvalidProducerIDCount},
		{&record{Type: recActivateController, NodeID: -1}, nil},
		{&record{Type: recRegisterBroker, Broker: &Broker{NodeID: 1, IncarnationID: strings.Repeat("i", maxIncarnationIDLen+1)}}, ErrInvalidBroker},
		{&record{Type: recFenceBroker, NodeID: 9}, ErrUnknownBroker},
		{&record{Type: recUnfenceBroker, NodeID: 9}, ErrUnknownBroker},
		{&record{Type: recBeginControlledShutdown, NodeID: 9}, ErrUnknownBroker},
		{&record{Type: recUnregisterBroker, NodeID: 9}, ErrUnknownBroker},
		{&record{Type: recSetPerBrokerConfigs, NodeID: 9, Configs: map[string]string{"a": "1"}}, ErrUnknownBroker},
		{&record{Type: recSetPerBrokerConfigs, NodeID: -1}, ErrInvalidBroker},
		{&record{Type: recFenceBroker, NodeID: 3, Epoch: img.Brokers[3].Epoch - 1}, ErrStaleBrokerEpoch},
		{&record{Type: recUnfenceBroker, NodeID: 3, Epoch: img.Brokers[3].Epoch + 1}, ErrStaleBrokerEpoch},
		{&record{Type: recBeginControlledShutdown, NodeID: 3, Epoch: 0}, ErrStaleBrokerEpoch},
		{&record{Type: recUnfenceBroker, NodeID: 5, Epoch: img.Brokers[5].Epoch}, ErrInvalidBroker}, // in controlled shutdown
		{&record{Type: recCreateTopic, Topic: "x", TopicID: &id, Partitions: 2, Assignments: [][]int32{{1}}}, ErrInvalidPartitions},
		{&record{Type: recCreateTopic, Topic: "x", TopicID: &id, Partitions: 1, Assignments: [][]int32{{1}}, Replicas: []int32{1}}, ErrInvalidReplicas},
		{&record{Type: recCreateTopic, Topic: "x", TopicID: &id, Partitions: 2, Assignments: [][]int32{{1}, {}}}, ErrInvalidReplicas},
		{&record{Type: recCreateTopic, Topic: "x", TopicID: &id, Partitions: 1, Assignments: [][]int32{{2, 2}}}, ErrInvalidReplicas},
		{&record{Type: recCreateTopic, Topic: "a/b", TopicID: &id, Partitions: 1, Assignments: [][]int32{{1}}}, ErrInvalidTopic},
		{&record{Type: recCreateTopic, Topic: "t1", TopicID: &id, Partitions: 1, Assignments: [][]int32{{1}}}, ErrTopicExists},
		{&record{Type: recCreatePartitions, Topic: "t1", Partitions: 4, Assignments: [][]int32{{1}}}, ErrInvalidPartitions}, // t1 has 2: total would be 3
		{&record{Type: recCreatePartitions, Topic: "t1", Partitions: 3, Assignments: [][]int32{{1, -1}}}, ErrInvalidReplicas},
		{&record{Type: recCreatePartitions, Topic: "t1", Partitions: 3, Assignments: [][]int32{{1}}, Replicas: []int32{1}}, ErrInvalidReplicas},
		{&record{Type: recCreatePartitions, Topic: "x", Partitions: 1, Assignments: [][]int32{{1}}}, ErrUnknownTopic},
		{&record{Type: recChangePartitions}, ErrInvalidPartitionChange},
		{&record{Type: recChangePartitions, Changes: []PartitionChange{{Topic: "t1", Partition: 0, Leader: ptr(int32(9))}}}, ErrInvalidPartitionChange},
		{&record{Type: "Bogus"}, nil},
		{&record{}, nil},
	} {
		next, res := apply(img, c.r, 100)
		if res.err == nil || next != nil {
			t.Errorf("apply %+v accepted", c.r)
		} else if c.want != nil && !errors.Is(res.err, c.want) {
			t.Errorf("apply %+v = %v, want %v", c.r, res.err, c.want)
		}
	}

	// The first activation must carry a cluster id; later ones keep the first.
	if _, res := apply(emptyImage(), &record{Type: recActivateController, NodeID: 1}, 1); res.err == nil {
		t.Error("first activation without a cluster id accepted")
	}
	next, res := apply(img, &record{Type: recActivateController, NodeID: 7, ClusterID: "new"}, 100)
	if res.err != nil || next.ControllerID != 7 || next.ClusterID != img.ClusterID || next.Index != 100 {
		t.Errorf("re-activation: %+v, %v", next, res.err)
	}
}

func TestApplyProducerIDsExhausted(t *testing.T) {
	img := emptyImage()
	img.NextProducerID = math.MaxInt64 - 10
	next, res := apply(img, &record{Type: recAllocateProducerIDs, Count: 10}, 1)
	if res.err != nil || res.first != math.MaxInt64-10 || next.NextProducerID != math.MaxInt64 {
		t.Fatalf("last block: first %d next %+v err %v", res.first, next, res.err)
	}
	if _, res := apply(next, &record{Type: recAllocateProducerIDs, Count: 1}, 2); !errors.Is(res.err, ErrProducerIDsExhausted) {
		t.Errorf("beyond the last id: %v, want ErrProducerIDsExhausted", res.err)
	}
}

// Replaying the same records from the same image gives the same image.
func TestApplyDeterministic(t *testing.T) {
	id, id2 := newUUID(), newUUID()
	rs := []*record{
		{Type: recActivateController, NodeID: 0, ClusterID: "c"},
		{Type: recCreateTopic, Topic: "t", TopicID: &id, Partitions: 2, Replicas: []int32{1}},
		{Type: recCreatePartitions, Topic: "t", Partitions: 3, Replicas: []int32{2}},
		{Type: recAllocateProducerIDs, Count: 3},
		{Type: recRegisterBroker, Broker: &Broker{NodeID: 1, IncarnationID: "x"}},
		{Type: recCreateTopic, Topic: "u", TopicID: &id2, Partitions: 2, Assignments: [][]int32{{1, 2}, {2, 1}}},
		{Type: recCreatePartitions, Topic: "u", Partitions: 3, Assignments: [][]int32{{2}}},
		{Type: recChangePartitions, Changes: []PartitionChange{{Topic: "u", Partition: 1, Leader: ptr(int32(1))}}},
	}
	a := applyAll(t, emptyImage(), rs...)
	b := applyAll(t, emptyImage(), rs...)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("two replays differ:\n%+v\n%+v", a, b)
	}
}
