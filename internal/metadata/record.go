package metadata

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
)

// A record is one metadata change, the payload of one Raft log entry.
//
// Encoding: one version byte (recordVersion), then a JSON object whose "type"
// field names the change. JSON keeps the log readable with a bolt dump and
// lets later versions add fields; a new field or record type that an older
// node must not ignore needs a new version byte, and an older node refuses
// (does not skip) a version it does not know.
type record struct {
	Type recordType `json:"type"`

	Broker     *Broker           `json:"broker,omitempty"`     // RegisterBroker
	Topic      string            `json:"topic,omitempty"`      // topic records
	TopicID    *TopicID          `json:"topicId,omitempty"`    // CreateTopic: chosen by the proposer so Apply stays deterministic
	Partitions int32             `json:"partitions,omitempty"` // CreateTopic: count; CreatePartitions: new total
	Replicas   []int32           `json:"replicas,omitempty"`   // CreateTopic, CreatePartitions
	Configs    map[string]string `json:"configs,omitempty"`    // CreateTopic, SetTopicConfigs, SetBrokerConfigs
	Count      int64             `json:"count,omitempty"`      // AllocateProducerIDs
	NodeID     int32             `json:"nodeId,omitempty"`     // ActivateController
	ClusterID  string            `json:"clusterId,omitempty"`  // ActivateController: used only if the image has none yet
}

type recordType string

const (
	recRegisterBroker      recordType = "RegisterBroker"
	recCreateTopic         recordType = "CreateTopic"
	recDeleteTopic         recordType = "DeleteTopic"
	recCreatePartitions    recordType = "CreatePartitions"
	recSetTopicConfigs     recordType = "SetTopicConfigs"
	recSetBrokerConfigs    recordType = "SetBrokerConfigs"
	recAllocateProducerIDs recordType = "AllocateProducerIDs"
	// recActivateController is written by a node once it is the Raft leader
	// and has applied everything before it: it makes that node the
	// ControllerID and, on the very first one, sets the ClusterID.
	recActivateController recordType = "ActivateController"
)

// recordVersion is the first byte of every encoded record.
const recordVersion byte = 1

func encodeRecord(r *record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("metadata: encode %s record: %w", r.Type, err)
	}
	if 1+len(b) > maxRecordBytes {
		return nil, fmt.Errorf("%w: %s record is %d bytes, the limit is %d", ErrRecordTooLarge, r.Type, 1+len(b), maxRecordBytes)
	}
	return append([]byte{recordVersion}, b...), nil
}

// decodeRecord reads what encodeRecord wrote. It reads bytes from disk (the
// Raft log), so it checks everything and never panics (FuzzDecodeRecord).
func decodeRecord(b []byte) (*record, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("metadata: empty record")
	}
	if len(b) > maxRecordBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrRecordTooLarge, len(b), maxRecordBytes)
	}
	if b[0] != recordVersion {
		return nil, fmt.Errorf("metadata: record version %d, this node knows only %d; upgrade this node", b[0], recordVersion)
	}
	var r record
	if err := json.Unmarshal(b[1:], &r); err != nil {
		return nil, fmt.Errorf("metadata: decode record: %w", err)
	}
	return &r, nil
}

// applyResult is what the FSM returns for each record, through
// raft.ApplyFuture.Response.
type applyResult struct {
	err   error
	topic *Topic // CreateTopic: the created topic, as it is in the new image
	first int64  // AllocateProducerIDs: the first id of the block
}

// apply returns the image after r, or an error and no image if r is refused
// in the state img. It never mutates img and must be deterministic: same
// img and r, same outcome, on every node and on every replay.
func apply(img *Image, r *record, index uint64) (*Image, applyResult) {
	next, res := applyRecord(img, r)
	if res.err != nil {
		return nil, res
	}
	next.Index = index
	return next, res
}

func applyRecord(img *Image, r *record) (*Image, applyResult) {
	fail := func(err error) (*Image, applyResult) { return nil, applyResult{err: err} }
	switch r.Type {
	case recRegisterBroker:
		if r.Broker == nil {
			return fail(fmt.Errorf("%w: no broker in record", ErrInvalidBroker))
		}
		if err := validBroker(*r.Broker); err != nil {
			return fail(err)
		}
		next := img.shallowClone()
		next.Brokers[r.Broker.NodeID] = *r.Broker
		return next, applyResult{}

	case recCreateTopic:
		if err := validNewTopic(r.Topic, r.Partitions, r.Replicas); err != nil {
			return fail(err)
		}
		if r.TopicID == nil || r.TopicID.IsZero() {
			return fail(fmt.Errorf("metadata: CreateTopic record without a topic id"))
		}
		if _, ok := img.Topics[r.Topic]; ok {
			return fail(fmt.Errorf("%w: %q", ErrTopicExists, r.Topic))
		}
		if _, ok := img.TopicsByID[*r.TopicID]; ok {
			// A random 122-bit id collided; the proposer may retry with a new one.
			return fail(fmt.Errorf("%w: topic id %s is taken", ErrTopicExists, r.TopicID))
		}
		t := &Topic{
			Name:       r.Topic,
			ID:         *r.TopicID,
			Partitions: newPartitions(0, r.Partitions, r.Replicas),
			Configs:    cloneConfigs(r.Configs),
		}
		next := img.shallowClone()
		next.Topics[t.Name] = t
		next.TopicsByID[t.ID] = t
		return next, applyResult{topic: t}

	case recDeleteTopic:
		old, ok := img.Topics[r.Topic]
		if !ok {
			return fail(fmt.Errorf("%w: %q", ErrUnknownTopic, r.Topic))
		}
		next := img.shallowClone()
		delete(next.Topics, old.Name)
		delete(next.TopicsByID, old.ID)
		return next, applyResult{}

	case recCreatePartitions:
		old, ok := img.Topics[r.Topic]
		if !ok {
			return fail(fmt.Errorf("%w: %q", ErrUnknownTopic, r.Topic))
		}
		cur := int32(len(old.Partitions))
		if r.Partitions <= cur || r.Partitions > maxPartitionsPerTopic {
			return fail(fmt.Errorf("%w: topic %q has %d partitions, asked for %d (want more, at most %d)",
				ErrInvalidPartitions, r.Topic, cur, r.Partitions, maxPartitionsPerTopic))
		}
		if err := validReplicas(r.Replicas); err != nil {
			return fail(err)
		}
		t := cloneTopic(old)
		t.Partitions = append(t.Partitions, newPartitions(cur, r.Partitions, r.Replicas)...)
		return replaceTopic(img, t), applyResult{}

	case recSetTopicConfigs:
		old, ok := img.Topics[r.Topic]
		if !ok {
			return fail(fmt.Errorf("%w: %q", ErrUnknownTopic, r.Topic))
		}
		t := *old // partitions are unchanged and immutable: share them
		t.Configs = cloneConfigs(r.Configs)
		return replaceTopic(img, &t), applyResult{}

	case recSetBrokerConfigs:
		next := img.shallowClone()
		next.BrokerConfigs = cloneConfigs(r.Configs)
		return next, applyResult{}

	case recAllocateProducerIDs:
		if r.Count <= 0 || r.Count > maxProducerIDBlock {
			return fail(fmt.Errorf("%w: %d, want 1..%d", ErrInvalidProducerIDCount, r.Count, maxProducerIDBlock))
		}
		if img.NextProducerID > math.MaxInt64-r.Count {
			return fail(ErrProducerIDsExhausted)
		}
		next := img.shallowClone()
		first := next.NextProducerID
		next.NextProducerID += r.Count
		return next, applyResult{first: first}

	case recActivateController:
		if r.NodeID < 0 {
			return fail(fmt.Errorf("metadata: ActivateController record with node id %d", r.NodeID))
		}
		next := img.shallowClone()
		next.ControllerID = r.NodeID
		if next.ClusterID == "" {
			if r.ClusterID == "" {
				return fail(fmt.Errorf("metadata: first ActivateController record without a cluster id"))
			}
			next.ClusterID = r.ClusterID
		}
		return next, applyResult{}
	}
	return fail(fmt.Errorf("metadata: unknown record type %q; upgrade this node", r.Type))
}

// replaceTopic returns a copy of img in which t replaces the topic of the same
// name and id.
func replaceTopic(img *Image, t *Topic) *Image {
	next := img.shallowClone()
	next.Topics[t.Name] = t
	next.TopicsByID[t.ID] = t
	return next
}

// newPartitions builds partitions [from, to), each led by replicas[0] at
// leader epoch 0 with every replica in sync. Each partition gets its own
// slices so that a later change to one never aliases another.
func newPartitions(from, to int32, replicas []int32) []Partition {
	ps := make([]Partition, 0, to-from)
	for id := from; id < to; id++ {
		ps = append(ps, Partition{
			ID:          id,
			Leader:      replicas[0],
			LeaderEpoch: 0,
			Replicas:    slices.Clone(replicas),
			ISR:         slices.Clone(replicas),
		})
	}
	return ps
}

// cloneConfigs copies a config map; nil becomes empty so images never hold nil maps.
func cloneConfigs(c map[string]string) map[string]string {
	if c == nil {
		return map[string]string{}
	}
	return maps.Clone(c)
}

func validNewTopic(name string, partitions int32, replicas []int32) error {
	if !validTopicName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	if partitions <= 0 || partitions > maxPartitionsPerTopic {
		return fmt.Errorf("%w: %d, want 1..%d", ErrInvalidPartitions, partitions, maxPartitionsPerTopic)
	}
	return validReplicas(replicas)
}

func validBroker(b Broker) error {
	if b.NodeID < 0 || b.Port < 0 || b.Port > math.MaxUint16 {
		return fmt.Errorf("%w: node %d port %d", ErrInvalidBroker, b.NodeID, b.Port)
	}
	return nil
}
