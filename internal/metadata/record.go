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
//
// The cluster records (broker fencing, ChangePartitions, assigned
// placement) kept version 1: every entry written before them decodes and
// applies exactly as it did, and an older node refuses each new record
// without a new version byte: new types are unknown to it, and an assigned
// CreateTopic or CreatePartitions carries no "replicas", which it refuses
// as ErrInvalidReplicas. The one thing an older node would apply is a
// RegisterBroker with an incarnation id, without fencing it; older nodes
// only ever ran as a quorum of one, so none of them shares a log with a
// node that writes these records. A new version byte would instead have
// made every older node refuse every record written after an upgrade.
// SetPerBrokerConfigs kept version 1 for the same reason: an older node
// refuses it as an unknown type.
type record struct {
	Type recordType `json:"type"`

	Broker      *Broker           `json:"broker,omitempty"`      // RegisterBroker
	Topic       string            `json:"topic,omitempty"`       // topic records
	TopicID     *TopicID          `json:"topicId,omitempty"`     // CreateTopic: chosen by the proposer so Apply stays deterministic
	Partitions  int32             `json:"partitions,omitempty"`  // CreateTopic: count; CreatePartitions: new total
	Replicas    []int32           `json:"replicas,omitempty"`    // CreateTopic, CreatePartitions: the same replicas for every new partition
	Assignments [][]int32         `json:"assignments,omitempty"` // CreateTopic, CreatePartitions: one replica list per new partition, instead of Replicas
	Configs     map[string]string `json:"configs,omitempty"`     // CreateTopic, SetTopicConfigs, SetBrokerConfigs, SetPerBrokerConfigs
	Count       int64             `json:"count,omitempty"`       // AllocateProducerIDs
	NodeID      int32             `json:"nodeId,omitempty"`      // ActivateController, FenceBroker, UnfenceBroker, BeginControlledShutdown, UnregisterBroker, SetPerBrokerConfigs
	Epoch       int64             `json:"epoch,omitempty"`       // FenceBroker, UnfenceBroker, BeginControlledShutdown: the broker epoch the proposer acts on
	ClusterID   string            `json:"clusterId,omitempty"`   // ActivateController: used only if the image has none yet
	Changes     []PartitionChange `json:"changes,omitempty"`     // ChangePartitions
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

	recFenceBroker             recordType = "FenceBroker"
	recUnfenceBroker           recordType = "UnfenceBroker"
	recBeginControlledShutdown recordType = "BeginControlledShutdown"
	recUnregisterBroker        recordType = "UnregisterBroker"
	// recChangePartitions changes leaders, ISRs and replicas of any number
	// of partitions, all or nothing (partitionchange.go).
	recChangePartitions recordType = "ChangePartitions"

	// recSetPerBrokerConfigs replaces the dynamic configs of broker
	// NodeID (a registered one, unless the set is empty: that removes
	// them).
	recSetPerBrokerConfigs recordType = "SetPerBrokerConfigs"
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
	epoch int64  // RegisterBroker: the broker's new epoch
}

// apply returns the image after r, or an error and no image if r is refused
// in the state img. It never mutates img and must be deterministic: same
// img, r and index, same outcome, on every node and on every replay.
func apply(img *Image, r *record, index uint64) (*Image, applyResult) {
	next, res := applyRecord(img, r, index)
	if res.err != nil {
		return nil, res
	}
	next.Index = index
	return next, res
}

func applyRecord(img *Image, r *record, index uint64) (*Image, applyResult) {
	fail := func(err error) (*Image, applyResult) { return nil, applyResult{err: err} }
	switch r.Type {
	case recRegisterBroker:
		if r.Broker == nil {
			return fail(fmt.Errorf("%w: no broker in record", ErrInvalidBroker))
		}
		if err := validBroker(*r.Broker); err != nil {
			return fail(err)
		}
		if index > math.MaxInt64 {
			return fail(fmt.Errorf("%w: raft index %d does not fit a broker epoch", ErrInvalidBroker, index))
		}
		// The FSM, not the proposer, decides the epoch and the state: a
		// new registration starts fenced and out of controlled shutdown
		// (one without an incarnation id predates fencing and is not).
		b := *r.Broker
		b.Epoch = int64(index)
		b.Fenced = b.IncarnationID != ""
		b.InControlledShutdown = false
		next := img.shallowClone()
		next.Brokers[b.NodeID] = b
		return next, applyResult{epoch: b.Epoch}

	case recFenceBroker, recUnfenceBroker, recBeginControlledShutdown:
		b, ok := img.Brokers[r.NodeID]
		if !ok {
			return fail(fmt.Errorf("%w: %d", ErrUnknownBroker, r.NodeID))
		}
		if b.Epoch != r.Epoch {
			return fail(fmt.Errorf("%w: broker %d is at epoch %d, the %s request is for epoch %d", ErrStaleBrokerEpoch, r.NodeID, b.Epoch, r.Type, r.Epoch))
		}
		switch r.Type {
		case recFenceBroker:
			b.Fenced = true
		case recUnfenceBroker:
			if b.InControlledShutdown {
				return fail(fmt.Errorf("%w: broker %d is in controlled shutdown; it is unfenced only after it registers again", ErrInvalidBroker, r.NodeID))
			}
			b.Fenced = false
		case recBeginControlledShutdown:
			b.InControlledShutdown = true
		}
		next := img.shallowClone()
		next.Brokers[b.NodeID] = b
		return next, applyResult{}

	case recUnregisterBroker:
		if _, ok := img.Brokers[r.NodeID]; !ok {
			return fail(fmt.Errorf("%w: %d", ErrUnknownBroker, r.NodeID))
		}
		next := img.shallowClone()
		delete(next.Brokers, r.NodeID)
		// Its dynamic configs go too: a broker registering later with
		// the same id is another machine, which starts from the cluster
		// defaults (and is not cordoned).
		delete(next.PerBrokerConfigs, r.NodeID)
		return next, applyResult{}

	case recChangePartitions:
		next, err := applyChangePartitions(img, r.Changes)
		if err != nil {
			return fail(err)
		}
		return next, applyResult{}

	case recCreateTopic:
		assignments, err := newTopicAssignments(r)
		if err != nil {
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
		var parts []Partition
		if assignments != nil {
			parts = newAssignedPartitions(0, assignments)
		} else {
			parts = newPartitions(0, r.Partitions, r.Replicas)
		}
		t := &Topic{
			Name:       r.Topic,
			ID:         *r.TopicID,
			Partitions: parts,
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
		if len(r.Assignments) > 0 {
			// Assigned: the proposer computed the total from the count it
			// saw, so a concurrent growth makes this one fail, not stack.
			if err := validAssignments(r.Assignments, r.Replicas); err != nil {
				return fail(err)
			}
			if want := int64(cur) + int64(len(r.Assignments)); int64(r.Partitions) != want || want > maxPartitionsPerTopic {
				return fail(fmt.Errorf("%w: topic %q has %d partitions; %d new ones were assigned for a total of %d (at most %d); re-read the topic and retry",
					ErrInvalidPartitions, r.Topic, cur, len(r.Assignments), r.Partitions, maxPartitionsPerTopic))
			}
			t := *old // existing partitions are immutable: share them
			t.Partitions = append(slices.Clip(old.Partitions), newAssignedPartitions(cur, r.Assignments)...)
			return replaceTopic(img, &t), applyResult{}
		}
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

	case recSetPerBrokerConfigs:
		if r.NodeID < 0 {
			return fail(fmt.Errorf("%w: configs for node %d", ErrInvalidBroker, r.NodeID))
		}
		next := img.shallowClone()
		if len(r.Configs) == 0 {
			// Removing is fine whether or not the broker is registered,
			// so that a delete never fails for a broker that just left.
			delete(next.PerBrokerConfigs, r.NodeID)
			return next, applyResult{}
		}
		// Decided here, in log order, so that configs never outlive an
		// UnregisterBroker that raced with them.
		if _, ok := img.Brokers[r.NodeID]; !ok {
			return fail(fmt.Errorf("%w: %d; only a registered broker has configs of its own", ErrUnknownBroker, r.NodeID))
		}
		next.PerBrokerConfigs[r.NodeID] = cloneConfigs(r.Configs)
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

// newAssignedPartitions builds partitions from, from+1, ... with one
// replica list each, led by its first replica at epoch 0 with every replica
// in sync. Each gets its own slices.
func newAssignedPartitions(from int32, assignments [][]int32) []Partition {
	ps := make([]Partition, 0, len(assignments))
	for i, replicas := range assignments {
		ps = append(ps, Partition{
			ID:       from + int32(i),
			Leader:   replicas[0],
			Replicas: slices.Clone(replicas),
			ISR:      slices.Clone(replicas),
		})
	}
	return ps
}

// newTopicAssignments validates a CreateTopic record and returns its
// per-partition assignments, or nil if it gives every partition the same
// Replicas (the form written before assignments existed).
func newTopicAssignments(r *record) ([][]int32, error) {
	if len(r.Assignments) == 0 {
		return nil, validNewTopic(r.Topic, r.Partitions, r.Replicas)
	}
	if !validTopicName(r.Topic) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidTopic, r.Topic)
	}
	if err := validAssignments(r.Assignments, r.Replicas); err != nil {
		return nil, err
	}
	if int(r.Partitions) != len(r.Assignments) {
		return nil, fmt.Errorf("%w: %d partitions with %d assignments", ErrInvalidPartitions, r.Partitions, len(r.Assignments))
	}
	return r.Assignments, nil
}

// validAssignments checks one replica list per partition (and that the
// record does not also carry the one-list-for-all form).
func validAssignments(assignments [][]int32, replicas []int32) error {
	if len(assignments) == 0 || len(assignments) > maxPartitionsPerTopic {
		return fmt.Errorf("%w: %d assignments, want 1..%d", ErrInvalidPartitions, len(assignments), maxPartitionsPerTopic)
	}
	if len(replicas) > 0 {
		return fmt.Errorf("%w: both one replica list for all partitions and one per partition", ErrInvalidReplicas)
	}
	for i, a := range assignments {
		if err := validReplicas(a); err != nil {
			return fmt.Errorf("assignment %d: %w", i, err)
		}
	}
	return nil
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
	if len(b.IncarnationID) > maxIncarnationIDLen {
		return fmt.Errorf("%w: node %d: incarnation id of %d bytes, at most %d", ErrInvalidBroker, b.NodeID, len(b.IncarnationID), maxIncarnationIDLen)
	}
	if b.Epoch < 0 {
		return fmt.Errorf("%w: node %d: negative epoch %d", ErrInvalidBroker, b.NodeID, b.Epoch)
	}
	return nil
}
