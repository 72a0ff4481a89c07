// Package txn is the transaction coordinator: Kafka's state machine for
// transactional ids (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
// EndTxn), kept in the compacted internal topic __transaction_state in
// Kafka's record formats, and the writer of the commit and abort markers
// that end a transaction in each of its partitions.
package txn

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Topic is the internal topic holding the transactions' state.
const Topic = "__transaction_state"

// State is a transaction's state, with Kafka's numbering (the value kept
// in __transaction_state).
type State int8

// The states of a transaction.
const (
	Empty State = iota
	Ongoing
	PrepareCommit
	PrepareAbort
	CompleteCommit
	CompleteAbort
	Dead
	PrepareEpochFence
)

var stateNames = []string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int8(s))
}

// ParseState reads a state's name as Kafka's tools write it
// (ListTransactions state filters); the match ignores case.
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if strings.EqualFold(n, name) {
			return State(i), true
		}
	}
	return 0, false
}

// TopicPartition names a partition of a transaction.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// meta is what the coordinator keeps of one transactional id: the value of
// its __transaction_state record.
type meta struct {
	id            string
	producerID    int64
	lastProducer  int64 // the producer id before the last one was exhausted, -1 if none
	epoch         int16
	lastEpoch     int16 // the epoch before the last bump, -1 if none
	timeoutMs     int32
	state         State
	partitions    map[TopicPartition]struct{}
	startMs       int64 // when the transaction started, -1 when none is open
	lastUpdateMs  int64
	clientVersion int16
}

func (m meta) clone() meta {
	m.partitions = maps.Clone(m.partitions)
	if m.partitions == nil {
		m.partitions = map[TopicPartition]struct{}{}
	}
	return m
}

func (m *meta) sortedPartitions() []TopicPartition {
	out := slices.Collect(maps.Keys(m.partitions))
	slices.SortFunc(out, func(a, b TopicPartition) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition) - int(b.Partition)
	})
	return out
}

// The __transaction_state record formats: key TxnMetadataKey v0, value
// TxnMetadataValue v1 (flexible; Kafka 3.5+ reads it).
const (
	keyVersion   = 0
	valueVersion = 1
)

func encodeKey(id string) []byte {
	k := kmsg.TxnMetadataKey{Version: keyVersion, TransactionalID: id}
	return k.AppendTo(nil)
}

func encodeValue(m *meta) []byte {
	v := kmsg.NewTxnMetadataValue()
	v.Version = valueVersion
	v.ProducerID, v.ProducerEpoch, v.TimeoutMillis = m.producerID, m.epoch, m.timeoutMs
	v.State = kmsg.TransactionState(m.state)
	v.LastUpdateTimestamp, v.StartTimestamp = m.lastUpdateMs, m.startMs
	v.PreviousProducerID = m.lastProducer
	v.NextProducerEpoch = m.lastEpoch // our use: the epoch before the last bump
	v.ClientTransactionVersion = m.clientVersion
	for _, tp := range m.sortedPartitions() {
		if n := len(v.Topics); n == 0 || v.Topics[n-1].Topic != tp.Topic {
			v.Topics = append(v.Topics, kmsg.TxnMetadataValueTopic{Topic: tp.Topic})
		}
		t := &v.Topics[len(v.Topics)-1]
		t.Partitions = append(t.Partitions, tp.Partition)
	}
	return v.AppendTo(nil)
}

// decodeRecord reads a __transaction_state record; a nil meta is a
// tombstone. Keys of other versions are not ours (ok false).
func decodeRecord(key, value []byte) (id string, m *meta, ok bool, err error) {
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(key); err != nil {
		return "", nil, false, fmt.Errorf("txn: bad key: %w", err)
	}
	if k.Version != keyVersion {
		return "", nil, false, nil
	}
	if value == nil {
		return k.TransactionalID, nil, true, nil
	}
	v := kmsg.NewTxnMetadataValue()
	if err := v.ReadFrom(value); err != nil {
		return "", nil, false, fmt.Errorf("txn: bad value of %q: %w", k.TransactionalID, err)
	}
	m = &meta{id: k.TransactionalID, producerID: v.ProducerID, lastProducer: v.PreviousProducerID,
		epoch: v.ProducerEpoch, lastEpoch: v.NextProducerEpoch, timeoutMs: v.TimeoutMillis,
		state: State(v.State), startMs: v.StartTimestamp, lastUpdateMs: v.LastUpdateTimestamp,
		clientVersion: v.ClientTransactionVersion, partitions: map[TopicPartition]struct{}{}}
	if v.Version == 0 {
		m.lastProducer, m.lastEpoch = -1, -1
	}
	for _, t := range v.Topics {
		for _, p := range t.Partitions {
			m.partitions[TopicPartition{t.Topic, p}] = struct{}{}
		}
	}
	return k.TransactionalID, m, true, nil
}
