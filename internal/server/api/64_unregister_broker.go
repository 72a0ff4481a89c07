package api

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/controller"
	"github.com/sluice-io/sluice/internal/metadata"
)

// UnregisterBroker v0 (KIP-500's kafka-cluster unregister).
//
// Runs on the active controller (forwarded there): removes a broker's
// registration, for a broker that is gone for good (`sluice cluster drain`
// moves its replicas away first). BROKER_ID_NOT_REGISTERED if it is not
// registered. A single node cannot unregister itself (INVALID_REQUEST).
func (h *Handler) unregisterBroker(ctx context.Context, r *kmsg.UnregisterBrokerRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.UnregisterBrokerResponse)
	c := h.b.Controller()
	if c == nil {
		resp.ErrorCode = kerr.InvalidRequest.Code
		resp.ErrorMessage = kmsg.StringPtr("a single node cannot unregister a broker")
		return resp
	}
	wctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
	defer cancel()
	err := c.Unregister(wctx, r.BrokerID)
	switch {
	case err == nil:
	case errors.Is(err, metadata.ErrUnknownBroker):
		resp.ErrorCode = kerr.BrokerIDNotRegistered.Code
	default:
		resp.ErrorCode = controller.ErrorCode(err)
	}
	if err != nil {
		resp.ErrorMessage = kmsg.StringPtr(err.Error())
	}
	return resp
}
