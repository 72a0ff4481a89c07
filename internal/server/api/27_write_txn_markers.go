package api

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/txn"
)

// WriteTxnMarkers v0-2.
//
// Transaction coordinators send it to partition leaders (a coordinator
// writes markers to partitions it leads itself), and admin tools send it to
// abort a hanging transaction (kafka-transactions.sh abort): each marker is
// appended to the named partitions and committed (fsynced and, replicated,
// in every in-sync replica), and, in __consumer_offsets, applied to the
// group offsets. A marker of an epoch older than the producer's answers
// INVALID_PRODUCER_EPOCH; a partition led elsewhere NOT_LEADER_OR_FOLLOWER.
func (h *Handler) writeTxnMarkers(ctx context.Context, r *kmsg.WriteTxnMarkersRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	ctx, cancel := txnContext(ctx)
	defer cancel()
	for _, m := range r.Markers {
		rm := kmsg.WriteTxnMarkersResponseMarker{ProducerID: m.ProducerID}
		for _, t := range m.Topics {
			rt := kmsg.WriteTxnMarkersResponseMarkerTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				err := h.writeOneMarker(ctx, txn.TopicPartition{Topic: t.Topic, Partition: p}, m)
				rt.Partitions = append(rt.Partitions, kmsg.WriteTxnMarkersResponseMarkerTopicPartition{Partition: p, ErrorCode: errorCode(err)})
			}
			rm.Topics = append(rm.Topics, rt)
		}
		resp.Markers = append(resp.Markers, rm)
	}
	return resp
}

func (h *Handler) writeOneMarker(ctx context.Context, tp txn.TopicPartition, m kmsg.WriteTxnMarkersRequestMarker) error {
	if _, ok := h.b.Partition(tp.Topic, tp.Partition); !ok {
		if t := h.b.Image().Topics[tp.Topic]; t != nil && tp.Partition >= 0 && int(tp.Partition) < len(t.Partitions) {
			return kerr.NotLeaderForPartition
		}
		return kerr.UnknownTopicOrPartition
	}
	return h.b.WriteMarkerHere(ctx, tp, m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch)
}
