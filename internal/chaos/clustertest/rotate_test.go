package clustertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/chaos/checker"
)

// rotateStopTimeout bounds a clean stop during the rotation: the broker's
// controlled shutdown waits up to 30 s for the controller.
const rotateStopTimeout = 45 * time.Second

// leadTimeout bounds making one replica its partition's leader in
// readEveryReplica.
const leadTimeout = 30 * time.Second

// rotation is what rotateLeaders read: every partition read back under the
// leaders left after each node's clean stop, and who led what.
type rotation struct {
	committed, uncommitted []checker.Record
	// leaders are, per partition, the nodes it was read from.
	leaders map[int32][]int32
}

// rotateLeaders stops each node in turn with SIGTERM (a controlled
// shutdown, which moves its leaderships to the other replicas in the ISR),
// reads every partition back from the leaders left, both isolation levels,
// then starts the node again and waits for the cluster to settle. The
// final read after the chaos saw one replica of each partition; these see
// others (and readEveryReplica the ones they missed), so that replicas
// that diverged below the high watermark show in the checker as one
// offset read with two values. A node that does not stop cleanly, or a
// partition left without a leader, is an error.
func rotateLeaders(ctx context.Context, c *cluster, logf func(string, ...any)) (rotation, error) {
	rot := rotation{leaders: map[int32][]int32{}}
	for _, n := range c.nodes {
		if err := n.proc.Terminate(rotateStopTimeout); err != nil {
			return rot, fmt.Errorf("stopping node%d cleanly: %w", n.id, err)
		}
		m, err := c.waitLeaders(ctx, n.id)
		if err != nil {
			return rot, fmt.Errorf("with node%d stopped: %w", n.id, err)
		}
		for _, p := range m.Topics[topic].Partitions.Sorted() {
			if !slices.Contains(rot.leaders[p.Partition], p.Leader) {
				rot.leaders[p.Partition] = append(rot.leaders[p.Partition], p.Leader)
			}
		}
		logf("rotation: node%d stopped cleanly; %s", n.id, describe(m))
		cr, err := readBack(ctx, c, true)
		if err != nil {
			return rot, fmt.Errorf("with node%d stopped: %w", n.id, err)
		}
		ur, err := readBack(ctx, c, false)
		if err != nil {
			return rot, fmt.Errorf("with node%d stopped: %w", n.id, err)
		}
		rot.committed = append(rot.committed, cr...)
		rot.uncommitted = append(rot.uncommitted, ur...)
		sctx, cancel := context.WithTimeout(ctx, startTimeout)
		err = n.proc.Start(sctx)
		cancel()
		if err != nil {
			return rot, fmt.Errorf("starting node%d again: %w", n.id, err)
		}
		if _, err := c.waitSettled(ctx, settleTimeout); err != nil {
			return rot, fmt.Errorf("after starting node%d again: %w", n.id, err)
		}
	}
	return rot, nil
}

// waitLeaders waits up to settleTimeout until every partition has a leader
// other than the stopped node, as the active controller sees it.
func (c *cluster) waitLeaders(ctx context.Context, stopped int32) (m kadm.Metadata, err error) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	last := "no metadata answer"
	for {
		m, err = c.controllerMetadata(ctx)
		if err != nil {
			last = fmt.Sprintf("metadata: %v", err)
		} else if last = leaderless(m, stopped); last == "" {
			return m, nil
		}
		if !sleep(ctx, pollInterval) {
			return m, fmt.Errorf("partitions without a leader %v after node%d stopped: %s", settleTimeout, stopped, last)
		}
	}
}

// leaderless says which partitions have no leader, or the stopped node
// for one; "" when none.
func leaderless(m kadm.Metadata, stopped int32) string {
	td, ok := m.Topics[topic]
	if !ok || len(td.Partitions) != partitions {
		return "topic missing or incomplete"
	}
	var why string
	for _, p := range td.Partitions.Sorted() {
		if p.Err != nil || p.Leader < 0 || p.Leader == stopped {
			why += describePartition(p) + "; "
		}
	}
	return why
}

// readEveryReplica reads each partition back from every replica the
// rotation did not read it from: it makes that replica the leader (a
// reassignment to the same replicas with it first, which completes at
// once, then a preferred leader election) and reads the partition, both
// isolation levels. The rotation moves only the leaderships of the node
// it stops, to whichever replica the controller elects, so a replica may
// never lead (with a fourth node, the partitions not on the stopped node
// do not move at all). Run it on a settled cluster, after rotateLeaders;
// it adds to rot.
func readEveryReplica(ctx context.Context, c *cluster, rot *rotation, logf func(string, ...any)) error {
	m, err := c.waitSettled(ctx, settleTimeout)
	if err != nil {
		return err
	}
	for _, pd := range m.Topics[topic].Partitions.Sorted() {
		p := pd.Partition
		for _, r := range pd.Replicas {
			if slices.Contains(rot.leaders[p], r) {
				continue
			}
			if err := c.makeLeader(ctx, p, r); err != nil {
				return err
			}
			cr, err := readBackPartitions(ctx, c, true, []int32{p})
			if err != nil {
				return fmt.Errorf("partition %d led by node%d: %w", p, r, err)
			}
			ur, err := readBackPartitions(ctx, c, false, []int32{p})
			if err != nil {
				return fmt.Errorf("partition %d led by node%d: %w", p, r, err)
			}
			rot.committed = append(rot.committed, cr...)
			rot.uncommitted = append(rot.uncommitted, ur...)
			rot.leaders[p] = append(rot.leaders[p], r)
			logf("replica sweep: partition %d read from node%d: %d records read_committed, %d read_uncommitted", p, r, len(cr), len(ur))
		}
	}
	return nil
}

// makeLeader makes node r the leader of partition p, within leadTimeout:
// puts it first in p's replicas (AlterPartitionAssignments), then asks for
// a preferred leader election, until the metadata shows it leading. Errors
// on the way are logged and retried.
func (c *cluster) makeLeader(ctx context.Context, p, r int32) error {
	ctx, cancel := context.WithTimeout(ctx, leadTimeout)
	defer cancel()
	last := "no metadata answer"
	for {
		m, err := c.controllerMetadata(ctx)
		pd, ok := m.Topics[topic].Partitions[p]
		switch {
		case err != nil:
			last = fmt.Sprintf("metadata: %v", err)
		case !ok:
			last = fmt.Sprintf("partition %d missing", p)
		case pd.Leader == r:
			return nil
		case !slices.Contains(pd.Replicas, r):
			return fmt.Errorf("making node%d lead partition %d: not a replica: %s", r, p, describePartition(pd))
		case pd.Replicas[0] != r:
			last = describePartition(pd)
			target := append([]int32{r}, slices.DeleteFunc(slices.Clone(pd.Replicas), func(x int32) bool { return x == r })...)
			var req kadm.AlterPartitionAssignmentsReq
			req.Assign(topic, p, target)
			res, err := c.adm.AlterPartitionAssignments(ctx, req)
			if err == nil {
				err = res.Error()
			}
			if err != nil {
				c.log.printf("test: partition %d: reordering its replicas to %v: %v (retrying)", p, target, err)
			}
		default:
			last = describePartition(pd)
			var s kadm.TopicsSet
			s.Add(topic, p)
			res, err := c.adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, s)
			if err == nil {
				err = res[topic][p].Err
			}
			if err != nil && !errors.Is(err, kerr.ElectionNotNeeded) {
				c.log.printf("test: partition %d: electing node%d, its preferred leader: %v (retrying)", p, r, err)
			}
		}
		if !sleep(ctx, pollInterval) {
			return fmt.Errorf("node%d did not become the leader of partition %d within %v: %s", r, p, leadTimeout, last)
		}
	}
}
