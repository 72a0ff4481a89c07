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
// v5 under transaction.version 2 (KIP-890 part 2) bumps the producer's
// epoch with every EndTxn (the markers carry the new one) and answers the
// new producer id and epoch; an abort with nothing open then succeeds, and
// a retried EndTxn gets the answer of the one that completed.
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
	bump := r.Version >= 5 && h.txnVersion >= 2
	pid, epoch, err := c.EndTxn(ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Commit, bump)
	resp.ErrorCode = errorCode(fenced(err, r.Version, 2))
	if err == nil {
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
	}
	return resp
}
