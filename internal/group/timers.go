package group

import (
	"container/heap"
	"time"
)

// timerKind says what a timer ends.
type timerKind uint8

const (
	// timerHeartbeat: a member's session (or new-member join) timeout.
	timerHeartbeat timerKind = iota
	// timerPending: a member id handed out with MEMBER_ID_REQUIRED that
	// was never used.
	timerPending
	// timerJoin: the end of PreparingRebalance (rebalance timeout, or the
	// initial rebalance delay of a new group).
	timerJoin
	// timerSync: members of a new generation that never sent SyncGroup.
	timerSync
	timerConsumerSession
	timerConsumerRevoke
)

// timer is one deadline. Its target (member, pending member or group)
// holds the id of its current timer; a timer whose id its target no longer
// holds is stale and is dropped unfired: cancelling is forgetting the id.
type timer struct {
	at     time.Time
	id     uint64
	kind   timerKind
	group  string
	member string
}

// timerHeap orders timers by deadline, then id.
type timerHeap []timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].id < h[j].id
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// schedule adds a timer at now+d and returns its id.
func (s *Shard) schedule(kind timerKind, g *group, memberID string, d time.Duration) uint64 {
	s.lastTimer++
	heap.Push(&s.timers, timer{at: s.now.Add(d), id: s.lastTimer, kind: kind, group: g.id, member: memberID})
	return s.lastTimer
}

// live says whether t is still its target's current timer.
func (s *Shard) live(t timer) bool {
	g := s.groups[t.group]
	if g == nil {
		return false
	}
	switch t.kind {
	case timerHeartbeat:
		m := g.members[t.member]
		return m != nil && m.timer == t.id
	case timerPending:
		return g.pending[t.member] == t.id
	case timerJoin:
		return g.joinTimer == t.id
	case timerSync:
		return g.syncTimer == t.id
	case timerConsumerSession:
		if g.cg == nil {
			return false
		}
		m := g.cg.members[t.member]
		return m != nil && m.timer == t.id
	case timerConsumerRevoke:
		if g.cg == nil {
			return false
		}
		m := g.cg.members[t.member]
		return m != nil && m.revokeTimer == t.id && len(m.revoking) > 0
	}
	return false
}

// NextDeadline is when Tick next has work, if ever.
func (s *Shard) NextDeadline() (time.Time, bool) {
	for len(s.timers) > 0 {
		if s.live(s.timers[0]) {
			return s.timers[0].at, true
		}
		heap.Pop(&s.timers)
	}
	return time.Time{}, false
}

// Tick fires every timer due at now.
func (s *Shard) Tick(now time.Time) Output {
	s.begin(now)
	for len(s.timers) > 0 && !s.timers[0].at.After(now) {
		t := heap.Pop(&s.timers).(timer)
		if !s.live(t) {
			continue
		}
		g := s.groups[t.group]
		switch t.kind {
		case timerHeartbeat:
			m := g.members[t.member]
			m.timer = 0
			s.expireMember(g, m)
		case timerPending:
			delete(g.pending, t.member)
			if g.state == PreparingRebalance {
				s.maybeCompleteJoin(g)
			}
		case timerJoin:
			g.joinTimer = 0
			if g.joinInitial {
				s.initialDelayDone(g)
			} else {
				s.completeJoin(g)
			}
		case timerSync:
			g.syncTimer = 0
			s.expirePendingSync(g)
		case timerConsumerSession, timerConsumerRevoke:
			s.expireConsumerMember(g, g.cg.members[t.member])
		}
	}
	return s.end()
}
