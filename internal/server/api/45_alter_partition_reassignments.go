package api

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/controller"
	"github.com/sluice-io/sluice/internal/metadata"
)

// AlterPartitionReassignments v0-1 (KIP-455).
//
// Runs on the active controller (forwarded there from other brokers). For
// each partition, a replica list starts (or replaces) a reassignment to
// those brokers and a null one cancels it (NO_REASSIGNMENT_IN_PROGRESS when
// there is none). The new replicas copy the log from the leader; once all
// of the target is in the ISR the controller makes it the replica set and
// drops the others (see internal/controller/reassign.go), so clients see
// the move complete in Metadata and ListPartitionReassignments. A target
// with a duplicate or unregistered broker is INVALID_REPLICA_ASSIGNMENT;
// from v1, one that changes the replication factor while
// AllowReplicationFactorChange is false is INVALID_REPLICATION_FACTOR
// (KIP-860). On one node every partition keeps its only replica.
func (h *Handler) alterPartitionReassignments(ctx context.Context, r *kmsg.AlterPartitionAssignmentsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.AlterPartitionAssignmentsResponse)
	img := h.b.Image()
	var reqs []controller.ReassignRequest
	var pre []error // refused before reaching the controller
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			req := controller.ReassignRequest{Topic: t.Topic, Partition: p.Partition, Replicas: p.Replicas}
			var err error
			if r.Version >= 1 && !r.AllowReplicationFactorChange && p.Replicas != nil {
				if tt := img.Topics[t.Topic]; tt != nil && p.Partition >= 0 && int(p.Partition) < len(tt.Partitions) &&
					len(tt.Partitions[p.Partition].OriginalReplicas()) != len(p.Replicas) {
					err = errReplicationFactorChange
				}
			}
			reqs = append(reqs, req)
			pre = append(pre, err)
		}
	}
	results := make([]error, len(reqs))
	c := h.b.Controller()
	if c == nil {
		// One node: nothing can move; a target other than its one
		// broker names an unknown broker.
		for i, req := range reqs {
			results[i] = singleNodeReassign(img, h.b.NodeID(), req)
		}
	} else {
		var todo []controller.ReassignRequest
		var at []int
		for i, req := range reqs {
			if pre[i] != nil {
				results[i] = pre[i]
				continue
			}
			todo = append(todo, req)
			at = append(at, i)
		}
		if len(todo) > 0 {
			wctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
			res, err := c.Reassign(wctx, todo)
			cancel()
			if err != nil && res == nil {
				resp.ErrorCode = controller.ErrorCode(err)
				resp.ErrorMessage = kmsg.StringPtr(err.Error())
				return resp
			}
			for k, e := range res {
				results[at[k]] = e
			}
		}
	}
	i := 0
	for _, t := range r.Topics {
		rt := kmsg.NewAlterPartitionAssignmentsResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewAlterPartitionAssignmentsResponseTopicPartition()
			rp.Partition = p.Partition
			if err := results[i]; err != nil {
				rp.ErrorCode = reassignCode(err)
				rp.ErrorMessage = kmsg.StringPtr(err.Error())
			}
			i++
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// errReplicationFactorChange: a v1 request that does not allow it changes
// a partition's replication factor.
var errReplicationFactorChange = errors.New("the reassignment changes the replication factor, which the request does not allow")

// singleNodeReassign is a reassignment's outcome on a single node.
func singleNodeReassign(img *metadata.Image, self int32, req controller.ReassignRequest) error {
	t := img.Topics[req.Topic]
	switch {
	case t == nil || req.Partition < 0 || int(req.Partition) >= len(t.Partitions):
		return metadata.ErrUnknownTopic
	case req.Replicas == nil:
		return controller.ErrNoReassignmentInProgress
	case len(req.Replicas) != 1 || req.Replicas[0] != self:
		return controller.ErrInvalidReplicaAssignment
	}
	return nil
}

// reassignCode is the error code of a partition's reassignment outcome.
func reassignCode(err error) int16 {
	switch {
	case errors.Is(err, errReplicationFactorChange):
		return kerr.InvalidReplicationFactor.Code
	case errors.Is(err, controller.ErrNoReassignmentInProgress):
		return kerr.NoReassignmentInProgress.Code
	case errors.Is(err, controller.ErrInvalidReplicaAssignment):
		return kerr.InvalidReplicaAssignment.Code
	}
	return controller.ErrorCode(err)
}
