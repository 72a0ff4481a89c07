package api

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/server"
)

// ListGroups v0-5.
//
// Every group this broker coordinates, with its protocol type; v4+ with
// its state and a state filter (KIP-518), v5+ with its type ("classic")
// and a type filter (KIP-848). Filters compare case-insensitively; an
// empty filter matches all. While a partition of __consumer_offsets is
// still loading, the answer carries COORDINATOR_LOAD_IN_PROGRESS and the
// groups of the others.
func (h *Handler) listGroups(r *kmsg.ListGroupsRequest, reply func(server.Reply)) {
	answer := func(groups []group.Listing, err error) {
		resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
		if !errors.Is(err, kerr.NotCoordinator) {
			resp.ErrorCode = errorCode(err)
		}
		for _, g := range groups {
			rg := kmsg.NewListGroupsResponseGroup()
			rg.Group, rg.ProtocolType, rg.GroupState, rg.GroupType = g.Group, g.ProtocolType, g.State, g.Type
			resp.Groups = append(resp.Groups, rg)
		}
		reply(server.Reply{Msg: resp})
	}
	c, ok := h.groups()
	if !ok {
		answer(nil, nil)
		return
	}
	lr := group.ListRequest{}
	if r.Version >= 4 {
		lr.States = r.StatesFilter
	}
	if r.Version >= 5 {
		lr.Types = r.TypesFilter
	}
	c.List(lr, answer)
}
