package api

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AddOffsetsToTxn v0-4.
//
// Adds the group's partition of __consumer_offsets to the transaction, so
// that the offsets the producer commits with TxnOffsetCommit get the
// transaction's marker. PRODUCER_FENCED from v2.
func (h *Handler) addOffsetsToTxn(ctx context.Context, r *kmsg.AddOffsetsToTxnRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	c, ok := h.txns()
	if !ok {
		resp.ErrorCode = kerr.NotCoordinator.Code
		return resp
	}
	if _, err := h.ensureGroups(ctx); err != nil {
		resp.ErrorCode = errorCode(err)
		return resp
	}
	ctx, cancel := txnContext(ctx)
	defer cancel()
	err := c.AddOffsets(ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Group)
	resp.ErrorCode = errorCode(fenced(err, r.Version, 2))
	return resp
}
