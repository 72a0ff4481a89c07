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

// Stats reads every loaded partition's groups, in partition order, for
// metrics. It is read-only; partitions that do not answer before ctx ends
// are left out.
func (c *Coordinator) Stats(ctx context.Context) []GroupStats {
	c.mu.RLock()
	shards := c.shards
	c.mu.RUnlock()
	results := make([]chan []GroupStats, len(shards))
	for i, sh := range shards {
		ch := make(chan []GroupStats, 1)
		results[i] = ch
		ev := func(s *Shard, now time.Time) Output { return s.Stats(now, func(r []GroupStats) { ch <- r }) }
		select {
		case sh.events <- ev:
		case <-ctx.Done():
			results[i] = nil
		case <-c.ctx.Done():
			results[i] = nil
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
		case <-c.ctx.Done():
			return out
		}
	}
	return out
}
