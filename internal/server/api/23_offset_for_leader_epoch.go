package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetForLeaderEpoch v0-4.
//
// For each partition, the end offset of the requested leader epoch from
// the partition's leader epoch history: the largest epoch at or below the
// requested one (LeaderEpoch, v1+) and the offset where the epoch after it
// starts, or the log end offset for the current epoch. An epoch newer than
// any known answers -1/-1 without error, as Kafka does. Clients use it to
// detect truncation after a leader change (KIP-320).
//
// CurrentLeaderEpoch (v2+; -1 skips the check) fences a client whose
// metadata is stale: older than ours FENCED_LEADER_EPOCH, newer
// UNKNOWN_LEADER_EPOCH. Unknown topics or partitions get
// UNKNOWN_TOPIC_OR_PARTITION, partitions not led here
// NOT_LEADER_FOR_PARTITION. ReplicaID (v3+) is not looked at: followers and
// consumers get the same answer (there are no followers yet).
func (h *Handler) offsetForLeaderEpoch(r *kmsg.OffsetForLeaderEpochRequest) *kmsg.OffsetForLeaderEpochResponse {
	resp := r.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	resp.ThrottleMillis = 0
	img := h.b.Image()
	for _, rt := range r.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			_, part, err := h.ledPartition(img, rt.Topic, rp.Partition)
			if err == nil && r.Version >= 2 && rp.CurrentLeaderEpoch != -1 {
				switch cur := part.LeaderEpoch(); {
				case rp.CurrentLeaderEpoch < cur:
					err = kerr.FencedLeaderEpoch
				case rp.CurrentLeaderEpoch > cur:
					err = kerr.UnknownLeaderEpoch
				}
			}
			if err != nil {
				sp.ErrorCode = errorCode(err)
			} else {
				sp.LeaderEpoch, sp.EndOffset = part.EndOffsetForEpoch(rp.LeaderEpoch)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
