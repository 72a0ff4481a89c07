package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/server"
)

// OffsetFetch v0-10.
//
// The committed offsets of the partitions asked for, or (v2+, a null topic
// list) of every partition the group committed. A partition with no
// commit, of a group with no members or one never seen, answers offset -1
// and no error, as Kafka does: tools read idle groups' offsets all the
// time. v8+ ask for several groups at once, each answered on its own; v10
// names topics by id (unknown ids: UNKNOWN_TOPIC_ID). A group-level error
// (COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR) is per partition before
// v2, at the top level in v2-v7, per group from v8. RequireStable (v7+)
// answers UNSTABLE_OFFSET_COMMIT (retriable) for a partition whose offset a
// transaction committed and has not ended yet.
func (h *Handler) offsetFetch(r *kmsg.OffsetFetchRequest, reply func(server.Reply)) {
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	c, started := h.groups()
	if r.Version < 8 {
		var tps []group.TopicPartition
		if r.Topics != nil || r.Version < 2 {
			tps = []group.TopicPartition{}
			for _, t := range r.Topics {
				for _, p := range t.Partitions {
					tps = append(tps, group.TopicPartition{Topic: t.Topic, Partition: p})
				}
			}
		}
		answer := func(res group.FetchResult) {
			if res.Err != nil {
				resp.ErrorCode = errorCode(res.Err)
				if r.Version < 2 {
					// No top-level error yet: every partition carries it.
					for _, tp := range tps {
						res.Offsets = append(res.Offsets, group.FetchedOffset{TopicPartition: tp, Offset: -1, LeaderEpoch: -1})
					}
				}
			}
			for _, o := range res.Offsets {
				if n := len(resp.Topics); n == 0 || resp.Topics[n-1].Topic != o.Topic {
					rt := kmsg.NewOffsetFetchResponseTopic()
					rt.Topic = o.Topic
					resp.Topics = append(resp.Topics, rt)
				}
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata = o.Partition, o.Offset, o.LeaderEpoch, kmsg.StringPtr(o.Metadata)
				if res.Err != nil {
					rp.ErrorCode = resp.ErrorCode
				} else if o.Err != nil {
					rp.ErrorCode = errorCode(o.Err)
				}
				t := &resp.Topics[len(resp.Topics)-1]
				t.Partitions = append(t.Partitions, rp)
			}
			reply(server.Reply{Msg: resp})
		}
		if !started {
			answer(group.FetchResult{Err: kerr.NotCoordinator})
			return
		}
		c.FetchOffsets(group.FetchRequest{Group: r.Group, Partitions: tps, RequireStable: r.RequireStable}, answer)
		return
	}

	img := h.b.Image()
	resp.Groups = make([]kmsg.OffsetFetchResponseGroup, len(r.Groups))
	done := gather(len(r.Groups), func() { reply(server.Reply{Msg: resp}) })
	for i, rg := range r.Groups {
		sg := &resp.Groups[i]
		sg.Default()
		sg.Group = rg.Group
		// Topics named by an id this broker does not know answer
		// UNKNOWN_TOPIC_ID; the others are looked up.
		var tps []group.TopicPartition
		var unknownIDs []kmsg.OffsetFetchResponseGroupTopic
		if rg.Topics != nil {
			tps = []group.TopicPartition{}
			for _, rt := range rg.Topics {
				name := rt.Topic
				if r.Version >= 10 {
					t, ok := img.TopicsByID[metadata.TopicID(rt.TopicID)]
					if !ok {
						st := kmsg.NewOffsetFetchResponseGroupTopic()
						st.TopicID = rt.TopicID
						for _, p := range rt.Partitions {
							sp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
							sp.Partition, sp.Offset, sp.LeaderEpoch, sp.Metadata = p, -1, -1, kmsg.StringPtr("")
							sp.ErrorCode = kerr.UnknownTopicID.Code
							st.Partitions = append(st.Partitions, sp)
						}
						unknownIDs = append(unknownIDs, st)
						continue
					}
					name = t.Name
				}
				for _, p := range rt.Partitions {
					tps = append(tps, group.TopicPartition{Topic: name, Partition: p})
				}
			}
		}
		answer := func(res group.FetchResult) {
			sg.ErrorCode = errorCode(res.Err)
			if res.Err == nil {
				for _, o := range res.Offsets {
					if n := len(sg.Topics); n == 0 || sg.Topics[n-1].Topic != o.Topic {
						st := kmsg.NewOffsetFetchResponseGroupTopic()
						st.Topic = o.Topic
						if r.Version >= 10 {
							t, ok := img.Topics[o.Topic]
							if !ok {
								continue // a deleted topic has no id to answer with
							}
							st.TopicID = t.ID
						}
						sg.Topics = append(sg.Topics, st)
					}
					sp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					sp.Partition, sp.Offset, sp.LeaderEpoch, sp.Metadata = o.Partition, o.Offset, o.LeaderEpoch, kmsg.StringPtr(o.Metadata)
					sp.ErrorCode = errorCode(o.Err)
					st := &sg.Topics[len(sg.Topics)-1]
					st.Partitions = append(st.Partitions, sp)
				}
				sg.Topics = append(sg.Topics, unknownIDs...)
			}
			done()
		}
		if !started {
			answer(group.FetchResult{Err: kerr.NotCoordinator})
			continue
		}
		fr := group.FetchRequest{Group: rg.Group, Partitions: tps, MemberEpoch: -1, RequireStable: r.RequireStable}
		if r.Version >= 9 {
			fr.MemberID, fr.MemberEpoch = rg.MemberID, rg.MemberEpoch
		}
		c.FetchOffsets(fr, answer)
	}
}
