package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The drain operator (CHAOS_DRAIN=1): with a fourth broker, the topic's
// partitions (replicationFactor 3) have somewhere to go, and the operator
// drains brokers while the nemesis injects faults, as an operator taking a
// broker out of service would. A drain picks a broker (seeded; never the
// one the last completed drain emptied, which holds nothing), moves every
// replica of the topic off it with AlterPartitionReassignments (each
// partition's target is its replicas without the drained broker, in their
// order, then the broker that held none; a partition the drained broker
// leads gets the first remaining replica in the ISR first, its new
// preferred leader, which the controller elects when the reassignment
// completes), and looks every drainPoll at the active controller's view
// (ListPartitionReassignments and Metadata, operator.observe) until the
// drained broker is in no partition's replicas, ISR or leadership and
// nothing of the drain is under way: the drain completed. A partition
// whose move failed or went unanswered is asked again at the next look;
// one under way that the drain did not start is cancelled. Some drains
// are cancelled in flight (cancelPercent, cancelMinDelay to cancelMaxDelay
// after their first move started: every move of the drain still under way
// is cancelled, what completed stays), and a drain not done within
// drainTimeout is given up, its moves under way cancelled. Requests that
// fail are logged and counted, never failing the test. The partition
// moves are tracked and counted by the operator (operator_test.go: its
// account, start, cancel and restore), which also restores the replicas
// at the end.
const (
	// drainPoll is the pause between two looks of a drain at the
	// cluster: each retries what failed and checks for completion.
	drainPoll = time.Second
	// drainTimeout bounds one drain: a fault holds at most maxHold and
	// a killed broker restarts within about 10 s, after which a new
	// replica copies a log of a few MB in a second or two.
	drainTimeout = 45 * time.Second
	// drainLogEvery is how often a drain that waits logs what is left.
	drainLogEvery = 5 * time.Second
)

// drainSummary is what the drain operator did, in the run's summary
// ("drains"): Started = Completed + Cancelled + TimedOut + Interrupted.
type drainSummary struct {
	Started   int `json:"started"`
	Completed int `json:"completed"`
	// Cancelled: the operator cancelled the drain's moves in flight (at
	// least one cancel accepted; what had completed stays moved).
	Cancelled int `json:"cancelled"`
	// TimedOut: not done within drainTimeout, its moves under way
	// cancelled.
	TimedOut int `json:"timed_out"`
	// Interrupted: under way when the nemesis ended (restore cancels
	// what is left).
	Interrupted int `json:"interrupted"`
	// UnderFault counts the drains during which a fault held at one of
	// their looks at least, CompletedUnderFault those of them that
	// completed.
	UnderFault          int `json:"under_fault"`
	CompletedUnderFault int `json:"completed_under_fault"`
	// LongestS is the longest completed drain, in seconds.
	LongestS float64 `json:"longest_s"`
	// Drained lists the broker of each completed drain, in order.
	Drained []int32 `json:"drained"`
}

// drainer is the drain operator: an operator (its client, view of the
// cluster, tracked moves, counts and restore) that drains brokers instead
// of cycling replication factors. run owns rng and emptied; dsum is
// guarded by the operator's mu.
type drainer struct {
	*operator
	rng     *rand.Rand
	emptied int32 // the broker the last completed drain emptied; 0 none
	dsum    drainSummary
}

// newDrainer makes the drain operator, its choices seeded with seed (a
// stream of its own).
func newDrainer(c *cluster, seed uint64, fault *faultWatch, logf func(string, ...any)) (*drainer, error) {
	o, err := newOperator(c, seed, fault, logf)
	if err != nil {
		return nil, err
	}
	o.logf = func(format string, args ...any) { logf("drainer: "+format, args...) }
	return &drainer{operator: o, rng: rand.New(rand.NewPCG(seed^0x3c6ef372fe94f82b, seed+0xa54ff53a5f1d36f1))}, nil
}

// drainSummary is a copy of the drain counts so far.
func (d *drainer) drainSummary() drainSummary {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.dsum
	s.Drained = slices.Clone(s.Drained)
	return s
}

func (d *drainer) countDrain(f func(s *drainSummary)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(&d.dsum)
}

// drainDraws are the random choices of one drain, all drawn for every
// drain whatever it does.
type drainDraws struct {
	pickAny   int  // the broker to drain, of all, when none is emptied
	pickOther int  // the broker to drain, of those but the emptied one
	cancel    bool // cancel the drain in flight
	// cancelDelay is when, after the drain's first move started.
	cancelDelay time.Duration
	pause       time.Duration // before the drain
}

func (d *drainer) draw() drainDraws {
	n := len(d.c.nodes)
	return drainDraws{
		pickAny:     d.rng.IntN(n),
		pickOther:   d.rng.IntN(n - 1),
		cancel:      d.rng.IntN(100) < cancelPercent,
		cancelDelay: cancelMinDelay + time.Duration(d.rng.Int64N(int64(cancelMaxDelay-cancelMinDelay)+1)),
		pause:       opMinPause + time.Duration(d.rng.Int64N(int64(opMaxPause-opMinPause)+1)),
	}
}

// pick is the broker dr drains.
func (d *drainer) pick(dr drainDraws) int32 {
	if d.emptied == 0 {
		return d.c.nodes[dr.pickAny].id
	}
	var others []int32
	for _, n := range d.c.nodes {
		if n.id != d.emptied {
			others = append(others, n.id)
		}
	}
	return others[dr.pickOther]
}

// run drains one broker after the other, a pause before each, until ctx
// ends.
func (d *drainer) run(ctx context.Context) {
	d.logf("started: drains a broker of %d at a time, %v to %v apart, each within %v", len(d.c.nodes), opMinPause, opMaxPause, drainTimeout)
	for id := 1; ; id++ {
		dr := d.draw()
		if !d.pause(ctx, dr.pause) {
			d.logf("stopped after %d drains", id-1)
			return
		}
		d.drain(ctx, id, d.pick(dr), dr)
	}
}

// drainOutcome is how a drain ended.
type drainOutcome int

const (
	drainCompleted drainOutcome = iota
	drainCancelled
	drainTimedOut
	drainInterrupted
)

// drain moves every replica of the topic off broker b: drain number id.
func (d *drainer) drain(ctx context.Context, id int, b int32, dr drainDraws) {
	start := time.Now()
	d.countDrain(func(s *drainSummary) { s.Started++ })
	note := ""
	if dr.cancel {
		note = fmt.Sprintf(" (to be cancelled %v after its first move starts)", dr.cancelDelay.Round(time.Millisecond))
	}
	d.logf("drain %d: broker %d: moving every replica of %s off it%s", id, b, topic, note)
	underFault := false
	var cancelAt time.Time // set once a move started, if dr.cancel
	lastLog := start
	out := func(o drainOutcome, format string, args ...any) {
		el := time.Since(start)
		d.countDrain(func(s *drainSummary) {
			if underFault {
				s.UnderFault++
			}
			switch o {
			case drainCompleted:
				s.Completed++
				s.LongestS = max(s.LongestS, el.Seconds())
				s.Drained = append(s.Drained, b)
				if underFault {
					s.CompletedUnderFault++
				}
			case drainCancelled:
				s.Cancelled++
			case drainTimedOut:
				s.TimedOut++
			case drainInterrupted:
				s.Interrupted++
			}
		})
		d.logf("drain %d: broker %d: %s after %.1fs%s", id, b, fmt.Sprintf(format, args...), el.Seconds(), faultNote(underFault))
	}
	for {
		if ctx.Err() != nil {
			out(drainInterrupted, "interrupted, the nemesis done")
			return
		}
		underFault = underFault || d.fault.holding()
		v, err := d.observe(ctx)
		if err != nil && ctx.Err() != nil {
			continue // interrupted at the top
		}
		if err != nil {
			d.count(func(s *reassignSummary) { s.Errors++ })
			d.logf("drain %d: no view of the cluster: %v (looking again)", id, err)
		} else {
			d.account(v)
			underFault = underFault || d.fault.holding()
			ours := d.under(v, id)
			if left := holding(v, b); left == "" && len(ours) == 0 {
				d.emptied = b
				out(drainCompleted, "holds no replica, ISR place or leadership of %s any more, as node%d, the controller, sees it: completed", topic, v.controller)
				return
			} else if time.Since(start) >= drainTimeout {
				d.cancelAll(ctx, v.controller, id, ours, fmt.Sprintf("drain %d not done within %v", id, drainTimeout))
				out(drainTimedOut, "not drained within %v (%s): given up", drainTimeout, left)
				return
			}
			if !cancelAt.IsZero() && !time.Now().Before(cancelAt) {
				cancelAt = time.Time{}
				if d.cancelAll(ctx, v.controller, id, ours, fmt.Sprintf("drain %d chosen to be cancelled", id)) > 0 {
					out(drainCancelled, "cancelled in flight, %s left on it", holdingOrNone(v, b))
					return
				}
				d.logf("drain %d: nothing of it cancelled (too late, or the cancel failed): the drain goes on", id)
			}
			if d.step(ctx, v, id, b) && dr.cancel && cancelAt.IsZero() {
				cancelAt = time.Now().Add(dr.cancelDelay)
				dr.cancel = false // once per drain
			}
			if time.Since(lastLog) >= drainLogEvery {
				lastLog = time.Now()
				d.logf("drain %d: broker %d: waiting %.1fs: %s", id, b, time.Since(start).Seconds(), holdingOrNone(v, b))
			}
		}
		wait := drainPoll
		if !cancelAt.IsZero() {
			wait = max(0, min(wait, time.Until(cancelAt)))
		}
		if !sleep(ctx, wait) {
			continue // interrupted at the top
		}
	}
}

// step asks, for each partition of v that b still holds and that is not
// under way, to move it off b; cancels what is under way but not the
// drain's. True if a move started.
func (d *drainer) step(ctx context.Context, v view, id int, b int32) bool {
	startedOne := false
	for p := range int32(partitions) {
		pv := v.parts[p]
		if pv.listed {
			d.mu.Lock()
			mv := d.pending[p]
			d.mu.Unlock()
			if mv == nil || mv.drain != id {
				why := "not one the drainer tracks"
				if mv != nil {
					why = fmt.Sprintf("left from drain %d", mv.drain)
				}
				d.cancel(ctx, v.controller, p, why+": "+pv.String())
			}
			continue
		}
		if !slices.Contains(pv.replicas, b) {
			continue
		}
		ids := make([]int32, len(d.c.nodes))
		for i, n := range d.c.nodes {
			ids[i] = n.id
		}
		target := drainTarget(pv, b, ids)
		newcomer := target[len(target)-1]
		what := fmt.Sprintf("drain %d: node%d out, node%d in", id, b, newcomer)
		leaderDrop := pv.leader == b
		if leaderDrop {
			what += fmt.Sprintf(", node%d the leader's place first", target[0])
		}
		mv := &move{kind: "drain", drain: id, leaderDrop: leaderDrop, from: slices.Clone(pv.replicas), target: target, seenBy: v.controller}
		if d.start(ctx, p, mv, what, pv) {
			startedOne = true
		}
	}
	return startedOne
}

// under lists the partitions v shows under way with a move of drain id.
func (d *drainer) under(v view, id int) []int32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ps []int32
	for p := range int32(partitions) {
		if mv := d.pending[p]; v.parts[p].listed && mv != nil && mv.drain == id {
			ps = append(ps, p)
		}
	}
	return ps
}

// cancelAll cancels the reassignments of ps, asking node ctl; how many
// the controller cancelled.
func (d *drainer) cancelAll(ctx context.Context, ctl int32, id int, ps []int32, why string) int {
	n := 0
	for _, p := range ps {
		if d.cancel(ctx, ctl, p, why) {
			n++
		}
	}
	return n
}

// drainTarget is the target that moves partition pv off broker drained:
// its replicas without drained, in their order, then brokers holding none
// of it (the first in brokers' order) up to replicationFactor. If drained
// leads it, the first remaining replica in the ISR goes first: the
// controller elects the target's first replica in the ISR when the
// reassignment completes.
func drainTarget(pv partView, drained int32, brokers []int32) []int32 {
	target := slices.DeleteFunc(slices.Clone(pv.replicas), func(r int32) bool { return r == drained })
	if pv.leader == drained {
		if i := slices.IndexFunc(target, func(r int32) bool { return slices.Contains(pv.isr, r) }); i > 0 {
			r := target[i]
			target = append([]int32{r}, slices.Delete(target, i, i+1)...)
		}
	}
	for _, n := range brokers {
		if len(target) >= replicationFactor {
			break
		}
		if n != drained && !slices.Contains(target, n) {
			target = append(target, n)
		}
	}
	return target
}

// holding says which partitions of v broker b still has a part in (a
// replica, a place in the ISR, the leadership), "" when none.
func holding(v view, b int32) string {
	var parts []string
	for p, pv := range v.parts {
		if pv.leader == b || slices.Contains(pv.replicas, b) || slices.Contains(pv.isr, b) {
			parts = append(parts, fmt.Sprintf("partition %d: %v", p, pv))
		}
	}
	return strings.Join(parts, "; ")
}

func holdingOrNone(v view, b int32) string {
	if h := holding(v, b); h != "" {
		return h
	}
	return "nothing"
}

func TestDrainTarget(t *testing.T) {
	brokers := []int32{1, 2, 3, 4}
	for _, tc := range []struct {
		name    string
		pv      partView
		drained int32
		want    []int32
	}{
		{"a follower", partView{leader: 2, replicas: []int32{2, 1, 3}, isr: []int32{1, 2, 3}}, 1, []int32{2, 3, 4}},
		{"the last follower", partView{leader: 2, replicas: []int32{2, 4, 3}, isr: []int32{2, 3, 4}}, 3, []int32{2, 4, 1}},
		{"the leader, first", partView{leader: 1, replicas: []int32{1, 2, 3}, isr: []int32{1, 2, 3}}, 1, []int32{2, 3, 4}},
		{"the leader, not first", partView{leader: 3, replicas: []int32{1, 3, 4}, isr: []int32{1, 3, 4}}, 3, []int32{1, 4, 2}},
		{"the leader, the next out of the ISR", partView{leader: 1, replicas: []int32{1, 2, 4}, isr: []int32{1, 4}}, 1, []int32{4, 2, 3}},
		{"a replica short", partView{leader: 4, replicas: []int32{4, 1}, isr: []int32{4, 1}}, 1, []int32{4, 2, 3}},
		{"not a replica", partView{leader: 1, replicas: []int32{1, 2, 3}, isr: []int32{1, 2, 3}}, 4, []int32{1, 2, 3}},
	} {
		if got := drainTarget(tc.pv, tc.drained, brokers); !slices.Equal(got, tc.want) {
			t.Errorf("%s: draining %d from %v: %v, want %v", tc.name, tc.drained, tc.pv, got, tc.want)
		}
	}
}

func TestHolding(t *testing.T) {
	var v view
	v.parts[0] = partView{leader: 2, replicas: []int32{2, 3, 4}, isr: []int32{2, 3, 4}}
	v.parts[1] = partView{leader: 3, replicas: []int32{3, 4, 2}, isr: []int32{3, 4, 2}}
	v.parts[2] = partView{leader: 4, replicas: []int32{4, 2, 3}, isr: []int32{4, 2, 3}}
	if h := holding(v, 1); h != "" {
		t.Fatalf("broker 1 drained: %q", h)
	}
	v.parts[1].isr = append(v.parts[1].isr, 1) // a replica gone, its ISR place not
	if h := holding(v, 1); !strings.Contains(h, "partition 1:") {
		t.Fatalf("broker 1 still in an ISR: %q", h)
	}
	v.parts[1].isr = v.parts[1].isr[:3]
	v.parts[2].leader = 1
	if h := holding(v, 1); !strings.Contains(h, "partition 2:") {
		t.Fatalf("broker 1 still leading: %q", h)
	}
}
