package api

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/txn"
)

// WriteTxnMarkers v0-2.
//
// Kafka's coordinators send it to partition leaders; on one node the
// coordinator writes its markers directly, so this serves the admin tools
// that abort a hanging transaction (kafka-transactions.sh abort): each
// marker is appended to the named partitions and made durable, and, in
// __consumer_offsets, applied to the group offsets. A marker of an epoch
// older than the producer's answers INVALID_PRODUCER_EPOCH.
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
	p, ok := h.b.Partition(tp.Topic, tp.Partition)
	if !ok {
		return kerr.UnknownTopicOrPartition
	}
	res, err := p.WriteMarker(m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch)
	if err != nil {
		return err
	}
	if err := p.WaitDurable(res.LastOffset); err != nil {
		return err
	}
	return h.b.CompleteGroupTxn(ctx, tp, m.ProducerID, m.Committed)
}
