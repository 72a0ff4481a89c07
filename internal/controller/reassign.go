package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/sluice-io/sluice/internal/metadata"
)

// Partition reassignment (KIP-455, AlterPartitionReassignments): a
// partition's replicas move from their current set to a target set without
// a moment with fewer copies than before.
//
// Started, the partition's replicas are the target followed by the ones
// being removed; the adding ones are replicas like any other: their brokers
// open them and fetch from the leader, and the leader takes them into the
// ISR once they have caught up (AlterPartition). Once every target replica
// is in the ISR, the controller completes it: the replicas become the
// target, the removed ones leave the ISR, the leader moves to a target
// replica if it was not one, and the leader epoch is bumped so that the
// removed replicas are fenced; their brokers then delete their copies.
// Cancelled, the partition goes back to its original replicas.

// Errors of AlterPartitionReassignments, per partition, as Kafka answers.
var (
	// ErrNoReassignmentInProgress: a cancel for a partition that is not
	// being reassigned (NO_REASSIGNMENT_IN_PROGRESS).
	ErrNoReassignmentInProgress = errors.New("controller: no reassignment in progress")
	// ErrInvalidReplicaAssignment: a target with duplicate or unknown
	// brokers, or none (INVALID_REPLICA_ASSIGNMENT).
	ErrInvalidReplicaAssignment = errors.New("controller: invalid replica assignment")
)

// ReassignRequest is one partition of AlterPartitionReassignments.
type ReassignRequest struct {
	Topic     string
	Partition int32
	// Replicas is the target; nil cancels the partition's reassignment.
	Replicas []int32
}

// Reassign starts, replaces or cancels reassignments. It returns each
// request's outcome (nil: accepted) in order; the error is for the whole
// call (not the controller, a failed write).
func (c *Controller) Reassign(ctx context.Context, reqs []ReassignRequest) ([]error, error) {
	if !c.active() {
		return nil, metadata.ErrNotController
	}
	img := c.meta.Image()
	out := make([]error, len(reqs))
	var changes []metadata.PartitionChange
	var at []int
	for i, r := range reqs {
		t := img.Topics[r.Topic]
		if t == nil || r.Partition < 0 || int(r.Partition) >= len(t.Partitions) {
			out[i] = metadata.ErrUnknownTopic
			continue
		}
		p := t.Partitions[r.Partition]
		var ch metadata.PartitionChange
		var err error
		if r.Replicas == nil {
			ch, err = c.cancelChange(img, t, p)
		} else {
			ch, err = c.startChange(img, t, p, r.Replicas)
		}
		if err != nil {
			out[i] = err
			continue
		}
		changes = append(changes, ch)
		at = append(at, i)
	}
	if err := c.write(ctx, changes); err != nil {
		return nil, err
	}
	for k, ch := range changes {
		c.log.Info("partition reassignment", "topic", ch.Topic, "partition", ch.Partition, "replicas", ch.Replicas,
			"cancel", reqs[at[k]].Replicas == nil)
	}
	// A target already in sync (a reordering, a removal) completes now.
	return out, c.completeReassignments(ctx)
}

// startChange is the change that starts reassigning p to target.
func (c *Controller) startChange(img *metadata.Image, t *metadata.Topic, p metadata.Partition, target []int32) (metadata.PartitionChange, error) {
	ch := metadata.PartitionChange{Topic: t.Name, TopicID: t.ID, Partition: p.ID}
	if len(target) == 0 {
		return ch, fmt.Errorf("%w: no replicas", ErrInvalidReplicaAssignment)
	}
	for j, r := range target {
		if slices.Contains(target[:j], r) {
			return ch, fmt.Errorf("%w: broker %d twice in %v", ErrInvalidReplicaAssignment, r, target)
		}
		if _, ok := img.Brokers[r]; !ok {
			return ch, fmt.Errorf("%w: broker %d is not registered", ErrInvalidReplicaAssignment, r)
		}
	}
	orig := p.OriginalReplicas()
	var adding, removing []int32
	for _, r := range target {
		if !slices.Contains(orig, r) {
			adding = append(adding, r)
		}
	}
	for _, r := range orig {
		if !slices.Contains(target, r) {
			removing = append(removing, r)
		}
	}
	replicas := append(slices.Clone(target), removing...)
	// Replicas being added by an earlier target but not by this one leave
	// the ISR (they are no replicas any more).
	isr := slices.DeleteFunc(slices.Clone(p.ISR), func(r int32) bool { return !slices.Contains(replicas, r) })
	leader := p.Leader
	if leader >= 0 && !slices.Contains(replicas, leader) {
		leader, _ = ElectLeader(replicas, isr, func(r int32) bool { return usable(img, r) }, false)
		ch.Leader = &leader
	}
	if len(isr) == 0 && leader >= 0 {
		return ch, fmt.Errorf("%w: no replica of the ISR %v stays", ErrInvalidReplicaAssignment, p.ISR)
	}
	ch.Replicas, ch.ISR = replicas, isr
	ch.Reassignment = &metadata.Reassignment{Adding: adding, Removing: removing}
	return ch, nil
}

// cancelChange is the change that takes p back to its original replicas.
func (c *Controller) cancelChange(img *metadata.Image, t *metadata.Topic, p metadata.Partition) (metadata.PartitionChange, error) {
	ch := metadata.PartitionChange{Topic: t.Name, TopicID: t.ID, Partition: p.ID}
	if !p.Reassigning() {
		return ch, ErrNoReassignmentInProgress
	}
	orig := p.OriginalReplicas()
	isr := slices.DeleteFunc(slices.Clone(p.ISR), func(r int32) bool { return !slices.Contains(orig, r) })
	if p.Leader >= 0 && !slices.Contains(orig, p.Leader) {
		leader, _ := ElectLeader(orig, isr, func(r int32) bool { return usable(img, r) }, false)
		ch.Leader = &leader
		ch.BumpLeaderEpoch = true
	}
	ch.Replicas, ch.ISR = slices.Clone(orig), isr
	ch.Reassignment = &metadata.Reassignment{}
	return ch, nil
}

// completeReassignments completes every reassignment whose target
// replicas are all in the ISR.
func (c *Controller) completeReassignments(ctx context.Context) error {
	img := c.meta.Image()
	var changes []metadata.PartitionChange
	for _, name := range sortedTopics(img) {
		t := img.Topics[name]
		for _, p := range t.Partitions {
			if !p.Reassigning() {
				continue
			}
			target := p.TargetReplicas()
			if !subset(target, p.ISR) {
				continue
			}
			isr := slices.DeleteFunc(slices.Clone(p.ISR), func(r int32) bool { return !slices.Contains(target, r) })
			le, pe := p.LeaderEpoch, p.PartitionEpoch
			ch := metadata.PartitionChange{Topic: t.Name, TopicID: t.ID, Partition: p.ID, Replicas: slices.Clone(target),
				ISR: isr, Reassignment: &metadata.Reassignment{}, ExpectLeaderEpoch: &le, ExpectPartitionEpoch: &pe,
				BumpLeaderEpoch: len(p.RemovingReplicas) > 0}
			if !slices.Contains(target, p.Leader) {
				leader, _ := ElectLeader(target, isr, func(r int32) bool { return usable(img, r) }, false)
				ch.Leader = &leader
			}
			changes = append(changes, ch)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	if err := c.write(ctx, changes); err != nil {
		if errors.Is(err, metadata.ErrStaleLeaderEpoch) || errors.Is(err, metadata.ErrStalePartitionEpoch) {
			return nil // it changed meanwhile; the next check sees it
		}
		return err
	}
	for _, ch := range changes {
		c.log.Info("partition reassignment completed", "topic", ch.Topic, "partition", ch.Partition, "replicas", ch.Replicas)
	}
	return nil
}

// Reassignments lists the reassignments under way (ListPartitionReassignments):
// for each partition being reassigned, its replicas, adding and removing.
func Reassignments(img *metadata.Image) map[PartitionRef]metadata.Partition {
	out := map[PartitionRef]metadata.Partition{}
	for name, t := range img.Topics {
		for _, p := range t.Partitions {
			if p.Reassigning() {
				out[PartitionRef{name, p.ID}] = p
			}
		}
	}
	return out
}

// subset reports whether every element of a is in b.
func subset(a, b []int32) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// Unregister removes broker id's registration (UnregisterBroker): the
// broker is gone for good, e.g. after a drain moved its replicas away. A
// broker-only node also leaves the metadata quorum's configuration. If
// the process still runs, its next heartbeat finds its epoch stale and it
// registers again (as in Kafka). metadata.ErrUnknownBroker if it is not
// registered.
func (c *Controller) Unregister(ctx context.Context, id int32) error {
	if !c.active() {
		return metadata.ErrNotController
	}
	if err := c.meta.UnregisterBroker(ctx, id); err != nil {
		return err
	}
	if err := c.meta.RemoveObserver(ctx, id); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.lastSeen, id)
	delete(c.lost, id)
	delete(c.reported, id)
	c.mu.Unlock()
	c.log.Info("broker unregistered", "broker", id)
	return nil
}
