package metadata

import (
	"fmt"
	"math"
	"slices"
)

// PartitionChange is one change to one partition in a ChangePartitions
// call: a leader election, an ISR change (AlterPartition), a reassignment,
// or a leader epoch bump. Nil fields are left as they are.
//
// The change is decided inside the FSM against the partition as it is when
// the record is applied, so the optimistic checks (ExpectLeaderEpoch,
// ExpectPartitionEpoch) are exact even when several changes race. Who may
// lead or be in sync (registered, unfenced brokers) is the controller's
// decision, not checked here; the structure of the result is.
type PartitionChange struct {
	Topic string `json:"topic"`
	// TopicID, if not zero, must be the topic's id (so a change computed
	// for a topic that was deleted and re-created under the same name is
	// refused with ErrUnknownPartition). With an empty Topic, the topic is
	// found by TopicID alone.
	TopicID   TopicID `json:"topicId"`
	Partition int32   `json:"partition"`

	Leader   *int32  `json:"leader,omitempty"` // new leader, -1 for none; nil: unchanged
	ISR      []int32 `json:"isr"`              // new ISR (empty is allowed with no leader); nil: unchanged
	Replicas []int32 `json:"replicas"`         // new replicas; nil: unchanged
	// Reassignment, if set, replaces the partition's adding and removing
	// replicas (both empty: no reassignment under way); nil: unchanged.
	// Each must be a subset of the (new) replicas, and they are disjoint.
	Reassignment *Reassignment `json:"reassignment,omitempty"`
	// BumpLeaderEpoch bumps the leader epoch even if the leader stays (as
	// Kafka does when a reassignment removes replicas, to fence them).
	BumpLeaderEpoch bool `json:"bumpLeaderEpoch,omitempty"`

	// ExpectLeaderEpoch, if set, must equal the partition's leader epoch,
	// else the change fails with ErrStaleLeaderEpoch (FENCED_LEADER_EPOCH).
	ExpectLeaderEpoch *int32 `json:"expectLeaderEpoch,omitempty"`
	// ExpectPartitionEpoch, if set, must equal the partition epoch, else
	// ErrStalePartitionEpoch (INVALID_UPDATE_VERSION).
	ExpectPartitionEpoch *int32 `json:"expectPartitionEpoch,omitempty"`
}

// Reassignment is a partition's reassignment state (Partition's
// AddingReplicas and RemovingReplicas).
type Reassignment struct {
	Adding   []int32 `json:"adding"`
	Removing []int32 `json:"removing"`
}

// applyChangePartitions applies every change or none: the first refused
// change fails the whole record and the image is unchanged. Changes are
// applied in order against the image as the earlier ones left it, but one
// partition may be named only once per record.
func applyChangePartitions(img *Image, changes []PartitionChange) (*Image, error) {
	if len(changes) == 0 || len(changes) > maxPartitionChanges {
		return nil, fmt.Errorf("%w: %d changes, want 1..%d", ErrInvalidPartitionChange, len(changes), maxPartitionChanges)
	}
	type key struct {
		topic     string
		partition int32
	}
	seen := make(map[key]bool, len(changes))
	changed := map[string]*Topic{} // topics copied by this record
	var order []string             // their names, in first-change order
	for i, c := range changes {
		old, err := changeTarget(img, c)
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", i, err)
		}
		k := key{old.Name, c.Partition}
		if seen[k] {
			return nil, fmt.Errorf("%w: change %d: %s-%d is changed twice in one record", ErrInvalidPartitionChange, i, old.Name, c.Partition)
		}
		seen[k] = true
		t := changed[old.Name]
		if t == nil {
			// A shallow copy: unchanged partitions share their (immutable)
			// slices with img; a changed one gets new ones.
			cp := *old
			cp.Partitions = slices.Clone(old.Partitions)
			t = &cp
			changed[old.Name] = t
			order = append(order, old.Name)
		}
		p, err := changePartition(t.Partitions[c.Partition], c)
		if err != nil {
			return nil, fmt.Errorf("change %d (%s-%d): %w", i, old.Name, c.Partition, err)
		}
		t.Partitions[c.Partition] = p
	}
	next := img.shallowClone()
	for _, name := range order {
		t := changed[name]
		next.Topics[t.Name] = t
		next.TopicsByID[t.ID] = t
	}
	return next, nil
}

// changeTarget finds the topic a change names and checks its partition.
func changeTarget(img *Image, c PartitionChange) (*Topic, error) {
	var t *Topic
	switch {
	case c.Topic != "":
		t = img.Topics[c.Topic]
		if t == nil {
			return nil, fmt.Errorf("%w: %q", ErrUnknownTopic, c.Topic)
		}
		if !c.TopicID.IsZero() && t.ID != c.TopicID {
			return nil, fmt.Errorf("%w: topic %q has id %s, the change is for id %s", ErrUnknownPartition, c.Topic, t.ID, c.TopicID)
		}
	case !c.TopicID.IsZero():
		t = img.TopicsByID[c.TopicID]
		if t == nil {
			return nil, fmt.Errorf("%w: id %s", ErrUnknownTopic, c.TopicID)
		}
	default:
		return nil, fmt.Errorf("%w: neither a topic name nor an id", ErrInvalidPartitionChange)
	}
	if c.Partition < 0 || int(c.Partition) >= len(t.Partitions) {
		return nil, fmt.Errorf("%w: %s-%d (the topic has %d)", ErrUnknownPartition, t.Name, c.Partition, len(t.Partitions))
	}
	return t, nil
}

// changePartition returns p after c, with fresh slices, or why c is refused.
func changePartition(p Partition, c PartitionChange) (Partition, error) {
	if c.ExpectLeaderEpoch != nil && *c.ExpectLeaderEpoch != p.LeaderEpoch {
		return p, fmt.Errorf("%w: leader epoch is %d, the change expected %d", ErrStaleLeaderEpoch, p.LeaderEpoch, *c.ExpectLeaderEpoch)
	}
	if c.ExpectPartitionEpoch != nil && *c.ExpectPartitionEpoch != p.PartitionEpoch {
		return p, fmt.Errorf("%w: partition epoch is %d, the change expected %d", ErrStalePartitionEpoch, p.PartitionEpoch, *c.ExpectPartitionEpoch)
	}
	out := p
	if c.Replicas != nil {
		if err := validReplicas(c.Replicas); err != nil {
			return p, err
		}
		out.Replicas = slices.Clone(c.Replicas)
	}
	if c.Leader != nil {
		out.Leader = *c.Leader
	}
	if c.ISR != nil {
		if len(c.ISR) > maxReplicationFactor {
			return p, fmt.Errorf("%w: ISR of %d, at most %d", ErrInvalidPartitionChange, len(c.ISR), maxReplicationFactor)
		}
		out.ISR = slices.Clone(c.ISR)
	}
	if c.Reassignment != nil {
		out.AddingReplicas, out.RemovingReplicas = nilIfEmpty(c.Reassignment.Adding), nilIfEmpty(c.Reassignment.Removing)
	}
	if err := validPartitionState(out.Replicas, out.Leader, out.ISR); err != nil {
		return p, fmt.Errorf("%w: %w", ErrInvalidPartitionChange, err)
	}
	if err := validReassignment(out); err != nil {
		return p, fmt.Errorf("%w: %w", ErrInvalidPartitionChange, err)
	}

	leaderChanged := out.Leader != p.Leader
	if leaderChanged || c.BumpLeaderEpoch {
		if p.LeaderEpoch == math.MaxInt32 {
			return p, fmt.Errorf("%w: leader epoch would overflow", ErrInvalidPartitionChange)
		}
		out.LeaderEpoch++
	}
	if out.LeaderEpoch != p.LeaderEpoch || leaderChanged ||
		!slices.Equal(out.ISR, p.ISR) || !slices.Equal(out.Replicas, p.Replicas) ||
		!slices.Equal(out.AddingReplicas, p.AddingReplicas) || !slices.Equal(out.RemovingReplicas, p.RemovingReplicas) {
		if p.PartitionEpoch == math.MaxInt32 {
			return p, fmt.Errorf("%w: partition epoch would overflow", ErrInvalidPartitionChange)
		}
		out.PartitionEpoch++
	}
	return out, nil
}

// validPartitionState checks a partition's replicas, leader and ISR
// together: Kafka allows an empty ISR only when there is no leader.
func validPartitionState(replicas []int32, leader int32, isr []int32) error {
	if err := validReplicas(replicas); err != nil {
		return err
	}
	if leader != -1 && !slices.Contains(replicas, leader) {
		return fmt.Errorf("leader %d is not a replica (%v)", leader, replicas)
	}
	for j, r := range isr {
		if !slices.Contains(replicas, r) || slices.Contains(isr[:j], r) {
			return fmt.Errorf("ISR %v is not a set of replicas %v", isr, replicas)
		}
	}
	if leader != -1 && !slices.Contains(isr, leader) {
		return fmt.Errorf("ISR %v does not hold the leader %d", isr, leader)
	}
	return nil
}

// validReassignment checks p's adding and removing replicas: distinct
// replicas of p, disjoint, and never all of them removed.
func validReassignment(p Partition) error {
	for _, set := range [][]int32{p.AddingReplicas, p.RemovingReplicas} {
		for j, r := range set {
			if !slices.Contains(p.Replicas, r) || slices.Contains(set[:j], r) {
				return fmt.Errorf("reassignment replicas %v are not a set of replicas %v", set, p.Replicas)
			}
		}
	}
	for _, r := range p.AddingReplicas {
		if slices.Contains(p.RemovingReplicas, r) {
			return fmt.Errorf("replica %d is both added and removed", r)
		}
	}
	if len(p.RemovingReplicas) >= len(p.Replicas) {
		return fmt.Errorf("a reassignment removing every replica %v", p.Replicas)
	}
	return nil
}

func nilIfEmpty(s []int32) []int32 {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}
