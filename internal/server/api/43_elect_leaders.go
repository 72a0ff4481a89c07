package api

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/controller"
	"github.com/sluice-io/sluice/internal/metadata"
)

// ElectLeaders v0-2.
//
// Runs on the active controller (forwarded there from other brokers):
// type 0 (preferred, the only one before v1) makes each partition's first
// replica its leader where that replica is in the ISR and its broker is up
// (PREFERRED_LEADER_NOT_AVAILABLE otherwise, ELECTION_NOT_NEEDED when it
// already leads); type 1 (unclean) gives a leaderless partition any live
// replica, in the ISR or not (ELECTION_NOT_NEEDED when it has a leader,
// ELIGIBLE_LEADERS_NOT_AVAILABLE when none is up). A null topic list means
// every partition; the answer then names those elected. On one node every
// partition already has its only replica as leader.
func (h *Handler) electLeaders(ctx context.Context, r *kmsg.ElectLeadersRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ElectLeadersResponse)
	typ := controller.ElectPreferred
	if r.Version >= 1 {
		typ = r.ElectionType
	}
	if typ != controller.ElectPreferred && typ != controller.ElectUnclean {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	var parts []controller.PartitionRef
	if r.Topics != nil {
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				parts = append(parts, controller.PartitionRef{Topic: t.Topic, Partition: p})
			}
		}
	}
	var results map[controller.PartitionRef]error
	if c := h.b.Controller(); c != nil {
		var err error
		ctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
		results, err = c.ElectLeaders(ctx, typ, parts)
		cancel()
		if err != nil {
			resp.ErrorCode = controller.ErrorCode(err)
			return resp
		}
	} else {
		results = map[controller.PartitionRef]error{}
		img := h.b.Image()
		for _, ref := range parts {
			t := img.Topics[ref.Topic]
			if t == nil || ref.Partition < 0 || int(ref.Partition) >= len(t.Partitions) {
				results[ref] = metadata.ErrUnknownTopic
			} else {
				results[ref] = controller.ErrElectionNotNeeded
			}
		}
	}
	byTopic := map[string]int{}
	add := func(ref controller.PartitionRef, err error) {
		i, ok := byTopic[ref.Topic]
		if !ok {
			resp.Topics = append(resp.Topics, kmsg.ElectLeadersResponseTopic{Topic: ref.Topic})
			i = len(resp.Topics) - 1
			byTopic[ref.Topic] = i
		}
		rp := kmsg.NewElectLeadersResponseTopicPartition()
		rp.Partition = ref.Partition
		rp.ErrorCode = electionCode(err)
		if err != nil {
			rp.ErrorMessage = kmsg.StringPtr(err.Error())
		}
		resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, rp)
	}
	if parts == nil {
		// All partitions: answer those elected, as Kafka does.
		for ref, err := range results {
			if err == nil {
				add(ref, nil)
			}
		}
		return resp
	}
	for _, ref := range parts {
		add(ref, results[ref])
	}
	return resp
}

func electionCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, controller.ErrElectionNotNeeded):
		return kerr.ElectionNotNeeded.Code
	case errors.Is(err, controller.ErrPreferredLeaderNotAvailable):
		return kerr.PreferredLeaderNotAvailable.Code
	case errors.Is(err, controller.ErrEligibleLeadersNotAvailable):
		return kerr.EligibleLeadersNotAvailable.Code
	case errors.Is(err, metadata.ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code
	}
	return controller.ErrorCode(err)
}
