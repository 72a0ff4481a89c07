package api

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/server"
)

// forwardedKeys are the admin APIs that change the metadata and so run on
// the active controller: a broker that is not it forwards them there
// (Kafka's brokers forward them to their controller too) and relays the
// answer, so a client may send them to any broker.
var forwardedKeys = map[int16]bool{
	19: true, // CreateTopics
	20: true, // DeleteTopics
	33: true, // AlterConfigs
	37: true, // CreatePartitions
	43: true, // ElectLeaders
	44: true, // IncrementalAlterConfigs
	45: true, // AlterPartitionReassignments
	46: true, // ListPartitionReassignments: the controller's view, as in Kafka
	55: true, // DescribeQuorum
	64: true, // UnregisterBroker
}

// ForwardedKeys returns the admin API keys that brokers forward to the
// active controller, for the controller listener to answer with this
// package's handler (broker.ServeAdmin).
func ForwardedKeys() map[int16]bool { return maps.Clone(forwardedKeys) }

// selfLeaderWait bounds how long a node that raft has just elected waits
// to become the active controller (a barrier and one record) before it
// handles an admin request.
const selfLeaderWait = 5 * time.Second

// minForwardTimeout is the least time a forwarded request is given, even
// when its own timeout is shorter (a timeout of a few milliseconds asks not
// to wait for the outcome, not to fail on the way to the controller).
const minForwardTimeout = 5 * time.Second

// forwardTimeout bounds a forwarded request when the request itself has no
// timeout of its own.
const forwardTimeout = 60 * time.Second

// forward sends req to the active controller if it must run there and this
// node is not it; it reports whether it did (and will reply).
func (h *Handler) forward(ctx context.Context, req *server.Request, reply func(server.Reply)) bool {
	if !forwardedKeys[req.Key] || !h.b.Clustered() {
		return false
	}
	meta := h.b.Meta()
	if id, ok := meta.Leader(); ok && id == h.b.NodeID() && !meta.IsController() {
		// Just elected, still announcing itself: wait (briefly) rather
		// than forward to itself, which would queue behind its own
		// request on the one connection it keeps to each address.
		wctx, cancel := context.WithTimeout(ctx, selfLeaderWait)
		meta.WaitReady(wctx)
		cancel()
	}
	if meta.IsController() {
		return false
	}
	go func() {
		// A request's own timeout bounds its forwarding too, so that it
		// is not applied long after its client gave up on it.
		limit := forwardTimeout
		if tr, ok := req.Msg.(interface{ Timeout() int32 }); ok && tr.Timeout() > 0 {
			limit = min(limit, max(time.Duration(tr.Timeout())*time.Millisecond, minForwardTimeout))
		}
		fctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		resp, err := h.b.Forward(fctx, req.Msg)
		if errors.Is(err, broker.ErrNowController) {
			h.Handle(ctx, req, reply)
			return
		}
		if err != nil {
			// The client sees a broken connection and retries, finding
			// the controller again (as after any network failure).
			h.logger.Info("forwarding to the controller failed", "api", kmsg.NameForKey(req.Key), "err", err)
			reply(server.Reply{Close: true})
			return
		}
		if ct, ok := resp.(*kmsg.CreateTopicsResponse); ok {
			h.awaitTopics(fctx, ct)
		}
		reply(server.Reply{Msg: resp})
	}()
	return true
}

// awaitTopics waits (bounded by ctx) until this broker's metadata has the
// topics the controller created, so that the client's next Metadata
// request to this broker finds them.
func (h *Handler) awaitTopics(ctx context.Context, resp *kmsg.CreateTopicsResponse) {
	for {
		ch := h.b.Meta().Changes()
		img := h.b.Image()
		missing := false
		for _, t := range resp.Topics {
			if _, ok := img.Topics[t.Topic]; t.ErrorCode == 0 && !ok {
				missing = true
			}
		}
		if !missing {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}
