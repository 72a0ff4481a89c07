package api

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// EndTxn v0-5.
//
// Commits or aborts the open transaction: the coordinator writes the
// prepare state, a marker to every partition of the transaction (the
// group offsets committed in it become visible, or are dropped), then the
// completion, and answers after all of it, so a read_committed consumer
// that reads after the answer sees the outcome. PRODUCER_FENCED from v2.
// The v5 response's producer id and epoch (KIP-890 part 2, where every
// EndTxn bumps the epoch) are the current ones: this broker does not
// advertise transaction.version 2, so clients keep the v1 protocol.
func (h *Handler) endTxn(ctx context.Context, r *kmsg.EndTxnRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.EndTxnResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	c, ok := h.txns()
	if !ok {
		resp.ErrorCode = kerr.NotCoordinator.Code
		return resp
	}
	ctx, cancel := txnContext(ctx)
	defer cancel()
	err := c.EndTxn(ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Commit)
	resp.ErrorCode = errorCode(fenced(err, r.Version, 2))
	if err == nil {
		resp.ProducerID, resp.ProducerEpoch = r.ProducerID, r.ProducerEpoch
	}
	return resp
}
