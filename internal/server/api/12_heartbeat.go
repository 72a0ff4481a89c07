package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/server"
)

// Heartbeat v0-4.
//
// Restarts the member's session timeout. REBALANCE_IN_PROGRESS tells it
// to rejoin; ILLEGAL_GENERATION that it is behind; an unknown group or
// member is UNKNOWN_MEMBER_ID; a static member whose instance id moved on
// is FENCED_INSTANCE_ID (v3+ carry group.instance.id). Answered by the
// group coordinator's goroutine.
func (h *Handler) heartbeat(r *kmsg.HeartbeatRequest, reply func(server.Reply)) {
	answer := func(err error) {
		resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = errorCode(err)
		reply(server.Reply{Msg: resp})
	}
	c, ok := h.groups()
	if !ok {
		answer(kerr.NotCoordinator)
		return
	}
	c.Heartbeat(group.HeartbeatRequest{Group: r.Group, MemberID: r.MemberID, InstanceID: r.InstanceID, Generation: r.Generation}, answer)
}
