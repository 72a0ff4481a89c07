package txn

import (
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func sampleMeta() *meta {
	return &meta{id: "tx", producerID: 42, lastProducer: 41, epoch: 3, lastEpoch: 2, timeoutMs: 60_000,
		state: Ongoing, startMs: 1000, lastUpdateMs: 2000,
		partitions: map[TopicPartition]struct{}{{"a", 1}: {}, {"a", 0}: {}, {"b", 7}: {}}}
}

func TestStateRecordRoundTrip(t *testing.T) {
	m := sampleMeta()
	id, got, ok, err := decodeRecord(encodeKey(m.id), encodeValue(m))
	if err != nil || !ok || id != "tx" || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %q %+v %v %v", id, got, ok, err)
	}
	// A tombstone.
	if id, got, ok, err := decodeRecord(encodeKey("tx"), nil); err != nil || !ok || id != "tx" || got != nil {
		t.Fatalf("tombstone: %q %+v %v %v", id, got, ok, err)
	}
	// A key of another version is not ours.
	k := kmsg.TxnMetadataKey{Version: 1, TransactionalID: "tx"}
	if _, _, ok, err := decodeRecord(k.AppendTo(nil), encodeValue(m)); ok || err != nil {
		t.Fatalf("key v1: %v %v", ok, err)
	}
	// A value v0 (what older Kafka writes) has no previous producer.
	v := kmsg.NewTxnMetadataValue()
	v.Version, v.ProducerID, v.ProducerEpoch, v.TimeoutMillis, v.State = 0, 5, 1, 100, kmsg.TransactionState(CompleteCommit)
	v.Topics = []kmsg.TxnMetadataValueTopic{{Topic: "t", Partitions: []int32{0}}}
	_, got, ok, err = decodeRecord(encodeKey("old"), v.AppendTo(nil))
	if err != nil || !ok || got.producerID != 5 || got.lastProducer != -1 || got.lastEpoch != -1 || got.state != CompleteCommit ||
		len(got.partitions) != 1 {
		t.Fatalf("value v0: %+v %v %v", got, ok, err)
	}
	if _, _, _, err := decodeRecord([]byte{0}, nil); err == nil {
		t.Fatal("short key: no error")
	}
	if _, _, _, err := decodeRecord(encodeKey("x"), []byte{0, 1, 2}); err == nil {
		t.Fatal("short value: no error")
	}
}

func TestParseState(t *testing.T) {
	for i := range stateNames {
		if s, ok := ParseState(State(i).String()); !ok || s != State(i) {
			t.Fatalf("%s: %v %v", State(i), s, ok)
		}
	}
	if s, ok := ParseState("ongoing"); !ok || s != Ongoing {
		t.Fatal("case is not ignored")
	}
	if _, ok := ParseState("Nope"); ok {
		t.Fatal("unknown state parsed")
	}
	if State(42).String() != "State(42)" {
		t.Fatal(State(42).String())
	}
}

// FuzzDecodeTxnRecord: decodeRecord never panics, and a meta it decodes
// encodes and decodes back to itself.
func FuzzDecodeTxnRecord(f *testing.F) {
	m := sampleMeta()
	f.Add(encodeKey(m.id), encodeValue(m), false)
	f.Add(encodeKey("gone"), []byte(nil), true)
	v := kmsg.NewTxnMetadataValue()
	v.Topics = []kmsg.TxnMetadataValueTopic{{Topic: "t", Partitions: []int32{3, 3, 1}}, {Topic: "t", Partitions: []int32{2}}}
	f.Add(encodeKey("v0"), v.AppendTo(nil), false)
	f.Add([]byte{0, 1, 0, 1, 'x'}, []byte{0, 1}, false)
	f.Add([]byte{}, []byte{}, false)
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		}
		id, m, ok, err := decodeRecord(key, value)
		if err != nil || !ok || m == nil {
			return
		}
		if m.id != id {
			t.Fatalf("meta id %q, key id %q", m.id, id)
		}
		id2, m2, ok, err := decodeRecord(encodeKey(id), encodeValue(m))
		if err != nil || !ok || id2 != id {
			t.Fatalf("re-decode: %q %v %v", id2, ok, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-decoded\n%+v\nwant\n%+v", m2, m)
		}
	})
}
