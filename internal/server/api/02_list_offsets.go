package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Special ListOffsets timestamps.
const (
	latestTimestamp        = -1 // the high watermark (last stable offset for read_committed)
	earliestTimestamp      = -2 // the log start offset
	maxTimestamp           = -3 // the record with the largest timestamp (KIP-734, v7+)
	earliestLocalTimestamp = -4 // the local log start (KIP-405, v8+): all of it is local
	latestTieredTimestamp  = -5 // the last tiered offset (KIP-1005, v9+): nothing is tiered
)

// ListOffsets v1-11.
//
// Answers each partition's earliest, latest, max-timestamp or
// by-timestamp offset: by timestamp is the first record whose timestamp is
// at or after the one asked for, found through the time index; none gives
// offset -1. The current leader epoch (v4+) is checked as for fetches.
func (h *Handler) listOffsets(r *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	img := h.b.Image()
	for _, rt := range r.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		_, known := img.Topics[rt.Topic]
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset, sp.LeaderEpoch = -1, -1, -1
			p, ok := h.b.Partition(rt.Topic, rp.Partition)
			if !known || !ok {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				if known {
					sp.ErrorCode = kerr.NotLeaderForPartition.Code
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if err := checkLeaderEpoch(p, rp.CurrentLeaderEpoch); err != nil {
				sp.ErrorCode = errorCode(err)
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			epoch := p.LeaderEpoch()
			switch rp.Timestamp {
			case latestTimestamp:
				sp.Offset = p.HighWatermark()
				if r.IsolationLevel == 1 {
					sp.Offset = p.LastStableOffset()
				}
				sp.LeaderEpoch = epoch
			case earliestTimestamp, earliestLocalTimestamp:
				sp.Offset = p.Log().StartOffset()
				sp.LeaderEpoch = epoch
			case latestTieredTimestamp:
				sp.Offset = -1
			case maxTimestamp:
				sp.Timestamp, sp.Offset = p.Log().MaxTimestamp()
				if sp.Offset >= 0 {
					sp.LeaderEpoch = epoch
				}
			default:
				if rp.Timestamp < 0 {
					sp.ErrorCode = kerr.InvalidRequest.Code
					break
				}
				off, ts, found, err := p.Log().OffsetForTimestamp(rp.Timestamp)
				switch {
				case err != nil:
					sp.ErrorCode = errorCode(err)
				case found:
					sp.Offset, sp.Timestamp, sp.LeaderEpoch = off, ts, epoch
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
