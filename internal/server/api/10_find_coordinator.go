package api

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/txn"
)

// Coordinator key types.
const (
	coordinatorGroup       = 0
	coordinatorTransaction = 1
)

// FindCoordinator v0-6.
//
// Key type 0 (group): the leader of the partition of __consumer_offsets
// that the group id hashes to (Kafka's hash); on one node, this broker. The topic is created on first use, as Kafka does, and the
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
		if id, err := h.coordinatorFor(ctx, r.CoordinatorType, key); err != nil {
			c.ErrorCode, c.ErrorMessage = errorCode(err), errorMessage(err)
		} else if b, ok := h.b.Image().Brokers[id]; ok && !b.Fenced {
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

// coordinatorFor returns the broker that coordinates key of keyType: the
// leader of the internal topic's partition the key hashes to (creating the
// topic on first use). On one node that is this broker, once the partition
// is open.
func (h *Handler) coordinatorFor(ctx context.Context, keyType int8, key string) (int32, error) {
	var topic string
	switch keyType {
	case coordinatorGroup:
		if _, err := h.ensureGroups(ctx); err != nil {
			return -1, err
		}
		topic = group.Topic
	case coordinatorTransaction:
		if _, err := h.ensureTxns(ctx); err != nil {
			return -1, err
		}
		topic = txn.Topic
	default:
		return -1, fmt.Errorf("%w: coordinator type %d is not served", kerr.InvalidRequest, keyType)
	}
	t := h.b.Image().Topics[topic]
	if t == nil || len(t.Partitions) == 0 {
		return -1, fmt.Errorf("%w: %s does not exist yet", kerr.CoordinatorNotAvailable, topic)
	}
	p := group.PartitionFor(key, len(t.Partitions))
	leader := t.Partitions[p].Leader
	if leader < 0 {
		return -1, fmt.Errorf("%w: partition %d of %s has no leader", kerr.CoordinatorNotAvailable, p, topic)
	}
	if !h.b.Clustered() {
		if _, ok := h.b.Partition(topic, p); !ok {
			return -1, fmt.Errorf("%w: partition %d of %s is not open here", kerr.CoordinatorNotAvailable, p, topic)
		}
	}
	return leader, nil
}
