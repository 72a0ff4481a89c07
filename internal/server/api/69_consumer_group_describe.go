package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/server"
)

// ConsumerGroupDescribe v0-1 (KIP-848).
//
// Each consumer group's state (Empty, Assigning, Reconciling, Stable),
// group and assignment epochs, assignor, and members with their epochs,
// subscriptions, current and target assignments (v1+: member type 1,
// consumer). A group that is unknown or classic is GROUP_ID_NOT_FOUND.
func (h *Handler) consumerGroupDescribe(r *kmsg.ConsumerGroupDescribeRequest, reply func(server.Reply)) {
	resp := r.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	resp.Groups = make([]kmsg.ConsumerGroupDescribeResponseGroup, len(r.Groups))
	c, started := h.groups()
	done := gather(len(r.Groups), func() { reply(server.Reply{Msg: resp}) })
	for i, id := range r.Groups {
		rg := &resp.Groups[i]
		rg.Default()
		rg.Group = id
		if r.IncludeAuthorizedOperations {
			rg.AuthorizedOperations = groupAuthorizedOperations
		}
		answer := func(d group.ConsumerDescription) {
			rg.ErrorCode = errorCode(d.Err)
			rg.ErrorMessage = errorMessage(d.Err)
			if d.Err == nil {
				img := h.b.Image()
				rg.State, rg.Epoch, rg.AssignmentEpoch, rg.AssignorName = d.State, d.Epoch, d.AssignmentEpoch, d.Assignor
				for _, m := range d.Members {
					rm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
					rm.MemberID, rm.InstanceID, rm.RackID, rm.MemberEpoch = m.MemberID, m.InstanceID, m.RackID, m.MemberEpoch
					rm.ClientID, rm.ClientHost = m.ClientID, m.ClientHost
					rm.SubscribedTopics, rm.SubscribedTopicRegex = m.Subscribed, m.SubscribedRegex
					if rm.SubscribedTopics == nil {
						rm.SubscribedTopics = []string{}
					}
					rm.Assignment = describeAssignment(img, m.Assigned)
					rm.TargetAssignment = describeAssignment(img, m.Target)
					rm.MemberType = 1
					rg.Members = append(rg.Members, rm)
				}
			}
			done()
		}
		if id == "" {
			answer(group.ConsumerDescription{Group: id, Err: kerr.InvalidGroupID})
			continue
		}
		if !started {
			answer(group.ConsumerDescription{Group: id, Err: kerr.NotCoordinator})
			continue
		}
		c.ConsumerDescribe(id, answer)
	}
}

func describeAssignment(img *metadata.Image, tps []group.TopicPartition) kmsg.Assignment {
	a := kmsg.NewAssignment()
	a.TopicPartitions = []kmsg.AssignmentTopicPartition{}
	for _, tp := range tps {
		t, ok := img.Topics[tp.Topic]
		if !ok {
			continue
		}
		n := len(a.TopicPartitions)
		if n == 0 || a.TopicPartitions[n-1].Topic != tp.Topic {
			atp := kmsg.NewAssignmentTopicPartition()
			atp.TopicID, atp.Topic = [16]byte(t.ID), tp.Topic
			a.TopicPartitions = append(a.TopicPartitions, atp)
			n++
		}
		a.TopicPartitions[n-1].Partitions = append(a.TopicPartitions[n-1].Partitions, tp.Partition)
	}
	return a
}
