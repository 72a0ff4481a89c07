package api

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/txn"
)

// AddPartitionsToTxn v0-5.
//
// v0-3 come from producers: one transaction, its partitions added to it
// (the transaction starts with the first). v4+ come from brokers, batched
// by transactional id, and may only verify (KIP-890). When a partition's
// topic does not exist, it answers UNKNOWN_TOPIC_OR_PARTITION and the
// others OPERATION_NOT_ATTEMPTED, as Kafka does; otherwise every partition
// carries the coordinator's answer. PRODUCER_FENCED from v2.
func (h *Handler) addPartitionsToTxn(ctx context.Context, r *kmsg.AddPartitionsToTxnRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if r.Version < 4 {
		topics := make([]kmsg.AddPartitionsToTxnRequestTransactionTopic, len(r.Topics))
		for i, t := range r.Topics {
			topics[i] = kmsg.AddPartitionsToTxnRequestTransactionTopic{Topic: t.Topic, Partitions: t.Partitions}
		}
		res := h.addTxnPartitions(ctx, r.Version, kmsg.AddPartitionsToTxnRequestTransaction{
			TransactionalID: r.TransactionalID, ProducerID: r.ProducerID, ProducerEpoch: r.ProducerEpoch, Topics: topics})
		for _, t := range res.Topics {
			rt := kmsg.AddPartitionsToTxnResponseTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				rt.Partitions = append(rt.Partitions, kmsg.AddPartitionsToTxnResponseTopicPartition{Partition: p.Partition, ErrorCode: p.ErrorCode})
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	for _, t := range r.Transactions {
		resp.Transactions = append(resp.Transactions, h.addTxnPartitions(ctx, r.Version, t))
	}
	return resp
}

func (h *Handler) addTxnPartitions(ctx context.Context, version int16, t kmsg.AddPartitionsToTxnRequestTransaction) kmsg.AddPartitionsToTxnResponseTransaction {
	out := kmsg.AddPartitionsToTxnResponseTransaction{TransactionalID: t.TransactionalID}
	img := h.b.Image()
	unknown := false
	var tps []txn.TopicPartition
	for _, rt := range t.Topics {
		mt := img.Topics[rt.Topic]
		for _, p := range rt.Partitions {
			if mt == nil || p < 0 || int(p) >= len(mt.Partitions) {
				unknown = true
			}
			tps = append(tps, txn.TopicPartition{Topic: rt.Topic, Partition: p})
		}
	}
	var err error
	c, ok := h.txns()
	switch {
	case !ok:
		err = kerr.NotCoordinator
	case unknown:
	default:
		ctx, cancel := txnContext(ctx)
		err = fenced(c.AddPartitions(ctx, t.TransactionalID, t.ProducerID, t.ProducerEpoch, tps, t.VerifyOnly), version, 2)
		cancel()
	}
	for _, rt := range t.Topics {
		st := kmsg.AddPartitionsToTxnResponseTransactionTopic{Topic: rt.Topic}
		mt := img.Topics[rt.Topic]
		for _, p := range rt.Partitions {
			code := errorCode(err)
			if unknown {
				code = kerr.OperationNotAttempted.Code
				if mt == nil || p < 0 || int(p) >= len(mt.Partitions) {
					code = kerr.UnknownTopicOrPartition.Code
				}
			}
			st.Partitions = append(st.Partitions, kmsg.AddPartitionsToTxnResponseTransactionTopicPartition{Partition: p, ErrorCode: code})
		}
		out.Topics = append(out.Topics, st)
	}
	return out
}
