package api

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/partition"
)

// DeleteRecords v0-2.
//
// Moves each partition's log start offset up to Offset (-1: the high
// watermark) and deletes the segments wholly below it; the answer's
// LowWatermark is the log start offset afterwards. An offset below the
// current log start changes nothing and succeeds, as in Kafka. Errors, with
// LowWatermark -1:
//   - an unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION;
//   - a partition this broker does not lead: NOT_LEADER_FOR_PARTITION;
//   - a negative offset other than -1, or one above the high watermark:
//     OFFSET_OUT_OF_RANGE;
//   - a topic whose cleanup.policy does not include delete:
//     POLICY_VIOLATION.
//
// The new log start offset is durable at the next checkpoint (every
// minute, and at shutdown), as in Kafka. TimeoutMillis is not used: one
// node has no followers to wait for.
func (h *Handler) deleteRecords(r *kmsg.DeleteRecordsRequest) *kmsg.DeleteRecordsResponse {
	resp := r.ResponseKind().(*kmsg.DeleteRecordsResponse)
	resp.ThrottleMillis = 0
	img := h.b.Image()
	for _, rt := range r.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			low, err := h.deletePartitionRecords(img, rt.Topic, rp.Partition, rp.Offset)
			if err != nil {
				sp.ErrorCode = errorCode(err)
				sp.LowWatermark = -1
			} else {
				sp.LowWatermark = low
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (h *Handler) deletePartitionRecords(img *metadata.Image, topic string, p int32, offset int64) (int64, error) {
	t, part, err := h.ledPartition(img, topic, p)
	if err != nil {
		return 0, err
	}
	hw := part.HighWatermark()
	if offset == -1 {
		offset = hw
	}
	if offset < 0 || offset > hw {
		return 0, codeErr(kerr.OffsetOutOfRange, "offset %d of %s-%d is not between 0 and the high watermark %d", offset, topic, p, hw)
	}
	tc, err := h.b.TopicConfig(t)
	if err == nil && !tc.Delete {
		return 0, codeErr(kerr.PolicyViolation, "Records of partition %s-%d can not be deleted due to the configured policy", topic, p)
	}
	low, err := part.Log().DeleteRecordsBefore(offset, hw)
	if err != nil {
		if errors.Is(err, log.ErrOffsetOutOfRange) {
			return 0, codeErr(kerr.OffsetOutOfRange, "%v", err)
		}
		h.logger.Warn("deleting records", "topic", topic, "partition", p, "offset", offset, "err", err)
		return 0, err
	}
	h.logger.Info("deleted records", "topic", topic, "partition", p, "log_start_offset", low)
	return low, nil
}

// ledPartition finds a partition this broker leads: UNKNOWN_TOPIC_OR_PARTITION
// if the metadata has no such partition, NOT_LEADER_FOR_PARTITION if it is
// not open here.
func (h *Handler) ledPartition(img *metadata.Image, topic string, p int32) (*metadata.Topic, *partition.Partition, error) {
	t, ok := img.Topics[topic]
	if !ok || p < 0 || int(p) >= len(t.Partitions) {
		return nil, nil, kerr.UnknownTopicOrPartition
	}
	part, ok := h.b.Partition(topic, p)
	if !ok {
		return nil, nil, kerr.NotLeaderForPartition
	}
	return t, part, nil
}
