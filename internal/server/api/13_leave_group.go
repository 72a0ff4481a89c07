package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/server"
)

// LeaveGroup v0-5.
//
// v0-2 name one member; v3+ a batch (KIP-345), where an empty member id
// with a group.instance.id removes that static member (an admin's removal),
// each member answered on its own. The group rebalances once for the
// batch. An unknown group or member is UNKNOWN_MEMBER_ID; before v3 the
// member's error is the response's.
func (h *Handler) leaveGroup(r *kmsg.LeaveGroupRequest, reply func(server.Reply)) {
	members := make([]group.LeaveMember, 0, len(r.Members))
	if r.Version < 3 {
		members = append(members, group.LeaveMember{MemberID: r.MemberID})
	} else {
		for _, m := range r.Members {
			members = append(members, group.LeaveMember{MemberID: m.MemberID, InstanceID: m.InstanceID, Reason: deref(m.Reason)})
		}
	}
	answer := func(res group.LeaveResult) {
		resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
		resp.ErrorCode = errorCode(res.Err)
		if r.Version < 3 {
			if res.Err == nil && len(res.Members) == 1 {
				resp.ErrorCode = errorCode(res.Members[0])
			}
			reply(server.Reply{Msg: resp})
			return
		}
		for i, err := range res.Members {
			rm := kmsg.NewLeaveGroupResponseMember()
			rm.MemberID, rm.InstanceID = members[i].MemberID, members[i].InstanceID
			rm.ErrorCode = errorCode(err)
			resp.Members = append(resp.Members, rm)
		}
		reply(server.Reply{Msg: resp})
	}
	c, ok := h.groups()
	if !ok {
		answer(group.LeaveResult{Err: kerr.NotCoordinator})
		return
	}
	c.Leave(r.Group, members, answer)
}
