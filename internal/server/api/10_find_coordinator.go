package api

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
)

// Coordinator key types.
const (
	coordinatorGroup       = 0
	coordinatorTransaction = 1
)

// FindCoordinator v0-6.
//
// Key type 0 (group): the leader of the partition of __consumer_offsets
// that the group id hashes to (Kafka's hash), which on one node is this
// broker. The topic is created on first use, as Kafka does, and the
// request waits for its partitions to open. Key type 1 (transactional id)
// is the same for __transaction_state, loaded before the answer; any other
// type (share groups, 2) INVALID_REQUEST. v4+ batch keys, each with
// its own answer; before v4 the single answer is at the top level.
func (h *Handler) findCoordinator(ctx context.Context, r *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.FindCoordinatorResponse)
	keys := r.CoordinatorKeys
	if r.Version < 4 {
		keys = []string{r.CoordinatorKey}
	}
	for _, key := range keys {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key = key
		c.NodeID, c.Port = -1, -1
		if err := h.coordinatorFor(ctx, r.CoordinatorType, key); err != nil {
			c.ErrorCode, c.ErrorMessage = errorCode(err), errorMessage(err)
		} else if b, ok := h.b.Image().Brokers[h.b.NodeID()]; ok {
			c.NodeID, c.Host, c.Port = b.NodeID, b.Host, b.Port
		} else {
			c.ErrorCode = kerr.CoordinatorNotAvailable.Code
		}
		resp.Coordinators = append(resp.Coordinators, c)
	}
	if r.Version < 4 {
		c := resp.Coordinators[0]
		resp.Coordinators = nil
		resp.ErrorCode, resp.NodeID, resp.Host, resp.Port = c.ErrorCode, c.NodeID, c.Host, c.Port
		if r.Version >= 1 {
			resp.ErrorMessage = c.ErrorMessage
		}
	}
	return resp
}

// coordinatorFor says whether this broker coordinates key of keyType.
func (h *Handler) coordinatorFor(ctx context.Context, keyType int8, key string) error {
	switch keyType {
	case coordinatorGroup:
		c, err := h.ensureGroups(ctx)
		if err != nil {
			return err
		}
		p := group.PartitionFor(key, c.Partitions())
		if _, ok := h.b.Partition(group.Topic, p); !ok {
			return fmt.Errorf("%w: partition %d of %s is not open here", kerr.CoordinatorNotAvailable, p, group.Topic)
		}
		return nil
	case coordinatorTransaction:
		if _, err := h.ensureTxns(ctx); err != nil {
			return err
		}
		return nil
	}
	return fmt.Errorf("%w: coordinator type %d is not served", kerr.InvalidRequest, keyType)
}
