package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/server"
)

// JoinGroup v0-9.
//
// Answered later, from the group coordinator: a join is parked until the
// group's rebalance completes (all members rejoined, the rebalance timeout,
// or for a new group group.initial.rebalance.delay.ms). v0 has no
// rebalance timeout: the session timeout stands in. v4+ first joins of
// dynamic members are answered MEMBER_ID_REQUIRED with their member id
// (KIP-394); v5+ carry group.instance.id (static membership, KIP-345); v9
// tells a restarted static leader to skip assigning (KIP-814). Before the
// offsets topic exists every join answers NOT_COORDINATOR.
func (h *Handler) joinGroup(req *server.Request, r *kmsg.JoinGroupRequest, reply func(server.Reply)) {
	answer := func(res group.JoinResult) {
		resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode = errorCode(res.Err)
		resp.Generation, resp.MemberID, resp.LeaderID = res.Generation, res.MemberID, res.Leader
		resp.ProtocolType, resp.Protocol, resp.SkipAssignment = res.ProtocolType, res.Protocol, res.SkipAssignment
		for _, m := range res.Members {
			rm := kmsg.NewJoinGroupResponseMember()
			rm.MemberID, rm.InstanceID, rm.ProtocolMetadata = m.MemberID, m.InstanceID, m.Metadata
			resp.Members = append(resp.Members, rm)
		}
		reply(server.Reply{Msg: resp})
	}
	c, ok := h.groups()
	if !ok {
		answer(group.JoinResult{Err: kerr.NotCoordinator, MemberID: r.MemberID, Generation: -1})
		return
	}
	j := group.JoinRequest{
		Group: r.Group, MemberID: r.MemberID, InstanceID: r.InstanceID,
		ClientID: deref(req.ClientID), ClientHost: clientHost(req.Remote),
		SessionTimeout: r.SessionTimeoutMillis, RebalanceTimeout: r.RebalanceTimeoutMillis,
		ProtocolType: r.ProtocolType, RequireKnownMemberID: r.Version >= 4, SkipAssignment: r.Version >= 9,
		Reason: deref(r.Reason),
	}
	if r.Version == 0 {
		j.RebalanceTimeout = r.SessionTimeoutMillis
	}
	for _, p := range r.Protocols {
		j.Protocols = append(j.Protocols, group.Protocol{Name: p.Name, Metadata: p.Metadata})
	}
	c.Join(j, answer)
}
