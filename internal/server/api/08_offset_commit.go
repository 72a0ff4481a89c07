package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/server"
)

// OffsetCommit v0-10.
//
// Partitions of topics that do not exist answer UNKNOWN_TOPIC_OR_PARTITION
// (v10 names topics by id: UNKNOWN_TOPIC_ID); the rest go to the group
// coordinator, which answers once the offsets are fsynced in
// __consumer_offsets. Generation -1 with no member id (and v0) commits for
// a consumer outside group management, which only an empty group takes;
// members must name their generation (ILLEGAL_GENERATION, or from v9
// GROUP_ID_NOT_FOUND when the group is gone). Metadata above
// offset.metadata.max.bytes is OFFSET_METADATA_TOO_LARGE. v2-v4 retention
// times set an explicit expiry.
func (h *Handler) offsetCommit(r *kmsg.OffsetCommitRequest, reply func(server.Reply)) {
	resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
	img := h.b.Image()
	type slot struct{ t, p int }
	var (
		offsets []group.CommitOffset
		slots   []slot
	)
	for ti, rt := range r.Topics {
		st := kmsg.NewOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *metadata.Topic
		topicErr := kerr.UnknownTopicOrPartition
		if r.Version >= 10 {
			t, topicErr = img.TopicsByID[metadata.TopicID(rt.TopicID)], kerr.UnknownTopicID
		} else {
			t = img.Topics[rt.Topic]
		}
		for pi, rp := range rt.Partitions {
			sp := kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case t == nil:
				sp.ErrorCode = topicErr.Code
			case rp.Partition < 0 || int(rp.Partition) >= len(t.Partitions):
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				offsets = append(offsets, group.CommitOffset{TopicPartition: group.TopicPartition{Topic: t.Name, Partition: rp.Partition},
					Offset: rp.Offset, LeaderEpoch: rp.LeaderEpoch, Metadata: deref(rp.Metadata)})
				slots = append(slots, slot{ti, pi})
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	answer := func(errs []error) {
		for i, s := range slots {
			resp.Topics[s.t].Partitions[s.p].ErrorCode = errorCode(errs[i])
		}
		reply(server.Reply{Msg: resp})
	}
	if len(offsets) == 0 {
		reply(server.Reply{Msg: resp})
		return
	}
	c, ok := h.groups()
	if !ok {
		errs := make([]error, len(offsets))
		for i := range errs {
			errs[i] = kerr.NotCoordinator
		}
		answer(errs)
		return
	}
	cr := group.CommitRequest{Group: r.Group, MemberID: r.MemberID, InstanceID: r.InstanceID, Generation: r.Generation,
		Offsets: offsets, RetentionMs: -1, GroupNotFound: r.Version >= 9}
	if r.Version >= 2 && r.Version <= 4 {
		cr.RetentionMs = r.RetentionTimeMillis
	}
	c.Commit(cr, func(res group.CommitResult) { answer(res.Errs) })
}
