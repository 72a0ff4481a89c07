package api

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerID v0-5.
//
// For an idempotent producer (no transactional id) it allocates a new
// producer id, epoch 0, through the metadata quorum, so ids are never
// reused across restarts. A producer that asks with its current id and
// epoch (KIP-360, v3+) also gets a fresh id: sequence state starts anew.
// With a transactional id the transaction coordinator answers (Kafka's
// rules: a new id gets a producer id at epoch 0, a known one its epoch
// bumped, fencing older producers and aborting their open transaction;
// transaction.timeout.ms above transaction.max.timeout.ms is
// INVALID_TRANSACTION_TIMEOUT). PRODUCER_FENCED is answered from v4,
// INVALID_PRODUCER_EPOCH before.
func (h *Handler) initProducerID(ctx context.Context, r *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if r.TransactionalID != nil {
		c, ok := h.txns()
		if !ok {
			resp.ErrorCode = kerr.NotCoordinator.Code
			return resp
		}
		ctx, cancel := txnContext(ctx)
		defer cancel()
		pid, epoch, err := c.InitProducerID(ctx, *r.TransactionalID, r.TransactionTimeoutMillis, r.ProducerID, r.ProducerEpoch)
		if err != nil {
			resp.ErrorCode = errorCode(fenced(err, r.Version, 4))
			return resp
		}
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
		return resp
	}
	ctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
	defer cancel()
	id, err := h.b.NewProducerID(ctx)
	if err != nil {
		h.logger.Warn("allocating a producer id", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}
