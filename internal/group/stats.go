package group

import (
	"context"
	"time"
)

// GroupStats is one group's member count and committed offsets, read for
// metrics.
type GroupStats struct {
	Group   string
	Members int
	Offsets map[TopicPartition]int64
}

// Stats handles a read of the shard's groups for metrics: nothing while
// the shard cannot serve.
func (s *Shard) Stats(now time.Time, reply func([]GroupStats)) Output {
	s.begin(now)
	var res []GroupStats
	if s.ready() == nil {
		for _, id := range s.sortedGroups() {
			g := s.groups[id]
			st := GroupStats{Group: id, Members: len(g.members) + g.consumerMembers(), Offsets: make(map[TopicPartition]int64, len(g.offsets))}
			for tp, o := range g.offsets {
				st.Offsets[tp] = o.Offset
			}
			res = append(res, st)
		}
	}
	s.out.Replies = append(s.out.Replies, func() { reply(res) })
	return s.end()
}

// Stats reads the groups of every partition this broker leads and has
// loaded, in partition order, for metrics (each broker reports the groups
// it coordinates). It is read-only; partitions that do not answer before
// ctx ends, or that are resigned meanwhile, are left out.
func (c *Coordinator) Stats(ctx context.Context) []GroupStats {
	runners := c.led()
	results := make([]chan []GroupStats, len(runners))
	for i, r := range runners {
		ch := make(chan []GroupStats, 1)
		ev := func(s *Shard, now time.Time) Output { return s.Stats(now, func(r []GroupStats) { ch <- r }) }
		if r.send(ctx, ev) {
			results[i] = ch
		}
	}
	var out []GroupStats
	for _, ch := range results {
		if ch == nil {
			continue
		}
		select {
		case r := <-ch:
			out = append(out, r...)
		case <-ctx.Done():
			return out
		}
	}
	return out
}
