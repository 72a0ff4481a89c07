package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/server"
)

// OffsetDelete v0.
//
// Deletes a group's committed offsets of some partitions: all of them when
// the group is empty; of a consumer group with members, those of topics
// no member subscribes to (the others answer GROUP_SUBSCRIBED_TO_TOPIC); a
// non-consumer group with members answers NON_EMPTY_GROUP, an unknown one
// GROUP_ID_NOT_FOUND. Partitions of topics that do not exist answer
// UNKNOWN_TOPIC_OR_PARTITION.
func (h *Handler) offsetDelete(r *kmsg.OffsetDeleteRequest, reply func(server.Reply)) {
	resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
	img := h.b.Image()
	type slot struct{ t, p int }
	var (
		tps   []group.TopicPartition
		slots []slot
	)
	for ti, rt := range r.Topics {
		st := kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		t := img.Topics[rt.Topic]
		for pi, rp := range rt.Partitions {
			sp := kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition = rp.Partition
			if t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.Partitions) {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				tps = append(tps, group.TopicPartition{Topic: rt.Topic, Partition: rp.Partition})
				slots = append(slots, slot{ti, pi})
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	answer := func(res group.OffsetDeleteResult) {
		if res.Err != nil {
			resp.ErrorCode = errorCode(res.Err)
			resp.Topics = nil
		} else {
			for i, s := range slots {
				resp.Topics[s.t].Partitions[s.p].ErrorCode = errorCode(res.Partitions[i])
			}
		}
		reply(server.Reply{Msg: resp})
	}
	c, ok := h.groups()
	if !ok {
		answer(group.OffsetDeleteResult{Err: kerr.NotCoordinator})
		return
	}
	c.DeleteOffsets(r.Group, tps, answer)
}
