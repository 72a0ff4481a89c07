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
// Transactional ids come with the transactions issue; until then they get
// NOT_COORDINATOR (FindCoordinator is not advertised either, so
// transactional clients stop before they get here).
func (h *Handler) initProducerID(ctx context.Context, r *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if r.TransactionalID != nil {
		resp.ErrorCode = kerr.NotCoordinator.Code
		return resp
	}
	ctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
	defer cancel()
	id, err := h.b.Meta().AllocateProducerIDs(ctx, 1)
	if err != nil {
		h.logger.Warn("allocating a producer id", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}
