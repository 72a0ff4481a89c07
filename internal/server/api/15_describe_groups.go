package api

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/server"
)

// DescribeGroups v0-6.
//
// Each group's state, protocol type, and members (client id and host; v4+
// group.instance.id); while Stable also the selected protocol and each
// member's metadata and assignment. A group never seen, or deleted, is
// state "Dead" with no error, except from v6 (KIP-1043), which adds
// GROUP_ID_NOT_FOUND. v3+ report the authorized operations when asked:
// with no ACLs, all of them.
func (h *Handler) describeGroups(r *kmsg.DescribeGroupsRequest, reply func(server.Reply)) {
	resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
	resp.Groups = make([]kmsg.DescribeGroupsResponseGroup, len(r.Groups))
	c, started := h.groups()
	done := gather(len(r.Groups), func() { reply(server.Reply{Msg: resp}) })
	for i, id := range r.Groups {
		rg := &resp.Groups[i]
		rg.Default()
		rg.Group = id
		if r.IncludeAuthorizedOperations {
			rg.AuthorizedOperations = groupAuthorizedOperations
		}
		answer := func(d group.Description) {
			err := d.Err
			if errors.Is(err, kerr.GroupIDNotFound) && r.Version < 6 {
				err = nil
			}
			rg.ErrorCode = errorCode(err)
			if r.Version >= 6 {
				rg.ErrorMessage = errorMessage(err)
			}
			rg.State, rg.ProtocolType, rg.Protocol = d.State, d.ProtocolType, d.Protocol
			for _, m := range d.Members {
				rm := kmsg.NewDescribeGroupsResponseGroupMember()
				rm.MemberID, rm.InstanceID, rm.ClientID, rm.ClientHost = m.MemberID, m.InstanceID, m.ClientID, m.ClientHost
				rm.ProtocolMetadata, rm.MemberAssignment = m.Metadata, m.Assignment
				rg.Members = append(rg.Members, rm)
			}
			done()
		}
		if !started {
			answer(group.Description{Group: id, Err: kerr.NotCoordinator})
			continue
		}
		c.Describe(id, answer)
	}
}
