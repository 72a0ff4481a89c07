package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/server"
)

// ConsumerGroupHeartbeat v0-1 (KIP-848).
//
// The next-generation consumer group protocol: the member joins with epoch
// 0, heartbeats with its epoch and owned partitions, and the coordinator
// answers its epoch and, when it changes, its assignment, computed on the
// server (uniform or range assignor). Epoch -1 leaves, -2 leaves a static
// member's place for its restart. Topics travel by id: partitions of a
// topic id not known here are dropped from what the member reports owning.
// v0 members get their id from the coordinator; from v1 the client makes
// it up (an empty one is INVALID_REQUEST).
// Answered by the group coordinator's goroutine.
func (h *Handler) consumerGroupHeartbeat(req *server.Request, r *kmsg.ConsumerGroupHeartbeatRequest, reply func(server.Reply)) {
	answer := func(res group.ConsumerHeartbeatResult) {
		resp := r.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
		resp.ErrorCode = errorCode(res.Err)
		if res.Err != nil {
			if res.ErrMessage != "" {
				resp.ErrorMessage = &res.ErrMessage
			} else {
				resp.ErrorMessage = errorMessage(res.Err)
			}
			resp.MemberEpoch = res.MemberEpoch
			if res.MemberID != "" {
				resp.MemberID = &res.MemberID
			}
			reply(server.Reply{Msg: resp})
			return
		}
		resp.MemberID = &res.MemberID
		resp.MemberEpoch = res.MemberEpoch
		resp.HeartbeatIntervalMillis = res.HeartbeatInterval
		if res.HasAssignment {
			img := h.b.Image()
			a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
			a.Topics = []kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{}
			var cur *kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic
			for _, tp := range res.Assignment {
				t, ok := img.Topics[tp.Topic]
				if !ok {
					continue
				}
				if cur == nil || cur.TopicID != [16]byte(t.ID) {
					a.Topics = append(a.Topics, kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic())
					cur = &a.Topics[len(a.Topics)-1]
					cur.TopicID = [16]byte(t.ID)
				}
				cur.Partitions = append(cur.Partitions, tp.Partition)
			}
			resp.Assignment = &a
		}
		reply(server.Reply{Msg: resp})
	}
	c, ok := h.groups()
	if !ok {
		answer(group.ConsumerHeartbeatResult{Err: kerr.NotCoordinator, MemberID: r.MemberID, MemberEpoch: r.MemberEpoch})
		return
	}
	img := h.b.Image()
	topics := make(map[string]int32, len(img.Topics))
	for name, t := range img.Topics {
		topics[name] = int32(len(t.Partitions))
	}
	gr := group.ConsumerHeartbeatRequest{
		Group: r.Group, MemberID: r.MemberID, MemberEpoch: r.MemberEpoch, InstanceID: r.InstanceID, RackID: r.RackID,
		RebalanceTimeoutMs: r.RebalanceTimeoutMillis, SubscribedTopics: r.SubscribedTopicNames,
		SubscribedRegex: r.SubscribedTopicRegex, ServerAssignor: r.ServerAssignor,
		ClientID: deref(req.ClientID), ClientHost: clientHost(req.Remote), Topics: topics,
		ClientMemberID: r.Version >= 1,
	}
	if r.Topics != nil {
		gr.OwnedKnown = true
		gr.Owned = []group.TopicPartition{}
		for _, t := range r.Topics {
			topic, ok := img.TopicsByID[metadata.TopicID(t.TopicID)]
			if !ok {
				continue
			}
			for _, p := range t.Partitions {
				gr.Owned = append(gr.Owned, group.TopicPartition{Topic: topic.Name, Partition: p})
			}
		}
	}
	c.ConsumerHeartbeat(gr, answer)
}
