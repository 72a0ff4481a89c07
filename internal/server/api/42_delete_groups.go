package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/server"
)

// DeleteGroups v0-3.
//
// Deletes empty groups: their committed offsets and metadata are
// tombstoned in __consumer_offsets, answered once fsynced. A group with
// members answers NON_EMPTY_GROUP; an unknown one GROUP_ID_NOT_FOUND. v3
// adds an error message.
func (h *Handler) deleteGroups(r *kmsg.DeleteGroupsRequest, reply func(server.Reply)) {
	resp := r.ResponseKind().(*kmsg.DeleteGroupsResponse)
	resp.Groups = make([]kmsg.DeleteGroupsResponseGroup, len(r.Groups))
	c, started := h.groups()
	done := gather(len(r.Groups), func() { reply(server.Reply{Msg: resp}) })
	for i, id := range r.Groups {
		rg := &resp.Groups[i]
		rg.Default()
		rg.Group = id
		answer := func(err error) {
			rg.ErrorCode = errorCode(err)
			if r.Version >= 3 {
				rg.ErrorMessage = errorMessage(err)
			}
			done()
		}
		if !started {
			answer(kerr.NotCoordinator)
			continue
		}
		c.Delete(id, answer)
	}
}
