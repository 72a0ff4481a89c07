package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/server"
)

// SyncGroup v0-5.
//
// Answered later, from the group coordinator: every member's sync waits
// for the leader's, whose assignment is stored in __consumer_offsets
// (fsynced) before anyone gets theirs; members the leader left out get an
// empty assignment. v5+ protocol type and name, when sent, must be the
// group's (INCONSISTENT_GROUP_PROTOCOL). An unknown group or member is
// UNKNOWN_MEMBER_ID; a sync during a new rebalance REBALANCE_IN_PROGRESS.
func (h *Handler) syncGroup(r *kmsg.SyncGroupRequest, reply func(server.Reply)) {
	answer := func(res group.SyncResult) {
		resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = errorCode(res.Err)
		resp.ProtocolType, resp.Protocol = res.ProtocolType, res.Protocol
		resp.MemberAssignment = res.Assignment
		if resp.MemberAssignment == nil {
			resp.MemberAssignment = []byte{}
		}
		reply(server.Reply{Msg: resp})
	}
	c, ok := h.groups()
	if !ok {
		answer(group.SyncResult{Err: kerr.NotCoordinator})
		return
	}
	s := group.SyncRequest{Group: r.Group, MemberID: r.MemberID, InstanceID: r.InstanceID, Generation: r.Generation}
	if r.Version >= 5 {
		s.ProtocolType, s.Protocol = r.ProtocolType, r.Protocol
	}
	if len(r.GroupAssignment) > 0 {
		s.Assignments = make(map[string][]byte, len(r.GroupAssignment))
		for _, a := range r.GroupAssignment {
			s.Assignments[a.MemberID] = a.MemberAssignment
		}
	}
	c.Sync(s, answer)
}
