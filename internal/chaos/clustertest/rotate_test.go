package clustertest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluice-io/sluice/internal/chaos/checker"
)

// rotateStopTimeout bounds a clean stop during the rotation: the broker's
// controlled shutdown waits up to 30 s for the controller.
const rotateStopTimeout = 45 * time.Second

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
// the others, so that replicas that diverged below the high watermark
// show in the checker as one offset read with two values. A node that does
// not stop cleanly, or a partition left without a leader, is an error.
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
// other than the stopped node, as the remaining nodes see it.
func (c *cluster) waitLeaders(ctx context.Context, stopped int32) (m kadm.Metadata, err error) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	last := "no metadata answer"
	for {
		m, err = c.metadata(ctx)
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
