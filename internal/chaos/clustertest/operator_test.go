package clustertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The operator: partition reassignments (AlterPartitionReassignments,
// KIP-455) while the nemesis injects faults. With three brokers and
// replication factor 3 no replica can move to a new broker, so the
// operator cycles each partition between 3 replicas and 2: a shrink drops
// one replica (the seeded source picks which, sometimes the leader, so
// that the leadership moves), a grow brings it back (sometimes at the
// front of the list, so that the preferred leader changes) and the
// returning broker copies the log again. Sometimes it cancels a
// reassignment in flight, and it cancels one that stays stuck. Its
// requests fail while the controller is unreachable: it logs them and
// tries again at its next step, never failing the test. Before the test
// settles, restore takes every partition back to 3 replicas with nothing
// in progress.
const (
	// opMinPause and opMaxPause bound the pause between two steps of the
	// operator, each on the next partition in turn.
	opMinPause = time.Second
	opMaxPause = 2500 * time.Millisecond
	// opPoll is how often the operator looks at the reassignments it
	// started while it pauses, to log when they complete.
	opPoll = 500 * time.Millisecond
	// opRequestTimeout bounds one request of the operator.
	opRequestTimeout = 5 * time.Second
	// cancelPercent is the chance that a grow is cancelled in flight,
	// cancelMinDelay to cancelMaxDelay after it started, and that a
	// reassignment found still under way is cancelled.
	cancelPercent  = 20
	cancelMinDelay = 100 * time.Millisecond
	cancelMaxDelay = 600 * time.Millisecond
	// leaderPercent is the chance that a shrink drops the leader.
	leaderPercent = 35
	// frontPercent is the chance that a grow puts the returning broker
	// first, as the preferred leader.
	frontPercent = 40
	// stuckAfter is how long a reassignment may stay under way before
	// the operator cancels it at its partition's next step.
	stuckAfter = 15 * time.Second
	// lostAfter is how long the operator waits for a reassignment that is
	// not listed, with replicas other than its target, before it stops
	// tracking it: one whose request's outcome was unknown and that never
	// took effect, or one seen from a controller that lags.
	lostAfter = 20 * time.Second
	// restoreTimeout bounds restore: cancelling what is under way and
	// growing every partition back to replicationFactor.
	restoreTimeout = 90 * time.Second
	// restoreConfirm is how long restore must keep seeing every partition
	// restored before it is done: a request of the operator's that had no
	// answer may still take effect.
	restoreConfirm = time.Second
)

// reassignSummary is what the operator did, in the run's summary.
type reassignSummary struct {
	// Started, Completed and Cancelled count the operator's
	// reassignments while the nemesis ran: accepted by the controller
	// (or, for a request without an answer, seen under way or done
	// later), seen completed, and cancelled.
	Started   int `json:"started"`
	Completed int `json:"completed"`
	Cancelled int `json:"cancelled"`
	// Shrinks, Grows and DrainMoves split Started: to 2 replicas, back
	// to 3, and (CHAOS_DRAIN=1, drain_test.go) a replica moved off a
	// drained broker onto the one that held none. LeaderDrops are those
	// that took the leader's replica away (shrinks, or moves off a
	// drained leader).
	Shrinks     int `json:"shrinks"`
	Grows       int `json:"grows"`
	DrainMoves  int `json:"drain_moves,omitempty"`
	LeaderDrops int `json:"leader_drops"`
	// StartedInFault and CompletedInFault are those started and seen
	// completed while a fault held.
	StartedInFault   int `json:"started_in_fault"`
	CompletedInFault int `json:"completed_in_fault"`
	// TooLate counts cancels answered NO_REASSIGNMENT_IN_PROGRESS: the
	// reassignment had completed.
	TooLate int `json:"cancel_too_late"`
	// Unanswered counts requests to start one whose outcome is unknown
	// (no answer: the controller unreachable, a timeout; or the
	// controller's write failed), of which Applied were seen to have
	// taken effect after all (and count in Started).
	Unanswered int `json:"unknown_outcome"`
	Applied    int `json:"unknown_applied"`
	// Lost counts reassignments the operator stopped tracking (lostAfter).
	Lost int `json:"lost,omitempty"`
	// Errors counts the operator's failed requests of any kind: no
	// answer or an error answered.
	Errors int `json:"errors"`
	// RestoreCancelled and RestoreGrown are what restore cancelled and
	// grew back to replicationFactor; RestoreS how long it took.
	RestoreCancelled int     `json:"restore_cancelled"`
	RestoreGrown     int     `json:"restore_grown"`
	RestoreS         float64 `json:"restore_s"`
}

// faultWatch tells, from the nemesis's log lines, whether a fault holds:
// from "nemesis: round i/n: <fault>" to "nemesis: round i/n: ... undone".
// Only for counting what the operator did under a fault.
type faultWatch struct{ on atomic.Bool }

func (w *faultWatch) line(s string) {
	if rest, ok := strings.CutPrefix(s, "nemesis: round "); ok {
		w.on.Store(!strings.HasSuffix(rest, " undone"))
	}
}

func (w *faultWatch) holding() bool { return w != nil && w.on.Load() }

// move is a reassignment the operator started and tracks.
type move struct {
	kind       string // "shrink", "grow" or "drain"
	leaderDrop bool   // a shrink, or a drain's move, that drops the leader
	drain      int    // the drain a "drain" move is part of (drainer.run), from 1
	seenBy     int32  // the controller whose view it was started from
	from       []int32
	target     []int32
	start      time.Time
	cancelSent bool // a cancel was sent whose outcome is unknown
	// unanswered: the outcome of the request to start it is unknown
	// (errUnknownOutcome); it may or may not have taken effect.
	unanswered bool
}

// partView is one partition as the controller sees it.
type partView struct {
	leader        int32
	replicas, isr []int32
	// listed: a reassignment is under way (ListPartitionReassignments).
	listed           bool
	adding, removing []int32
}

func (p partView) String() string {
	s := fmt.Sprintf("replicas %v leader %d isr %v", p.replicas, p.leader, p.isr)
	if p.listed {
		s += fmt.Sprintf(" (reassigning: adding %v removing %v)", p.adding, p.removing)
	}
	return s
}

// view is the topic as the controller sees it.
type view struct {
	controller int32 // the node asked: the active controller
	parts      [partitions]partView
}

// operator reassigns the topic's partitions; see the constants above.
type operator struct {
	c     *cluster
	cl    *kgo.Client
	rng   *rand.Rand
	logf  func(string, ...any)
	fault *faultWatch

	mu      sync.Mutex
	sum     reassignSummary
	pending map[int32]*move
	dropped map[int32]int32 // per partition, the broker its last shrink dropped
}

// newOperator makes the operator, its choices seeded with seed (another
// stream than the nemesis's), with an admin client of its own.
func newOperator(c *cluster, seed uint64, fault *faultWatch, logf func(string, ...any)) (*operator, error) {
	cl, err := kgo.NewClient(c.clientOpts("operator")...)
	if err != nil {
		return nil, err
	}
	return &operator{
		c: c, cl: cl,
		rng:   rand.New(rand.NewPCG(seed^0x6a09e667f3bcc908, seed+0xbb67ae8584caa73b)),
		logf:  func(format string, args ...any) { logf("operator: "+format, args...) },
		fault: fault, pending: map[int32]*move{}, dropped: map[int32]int32{},
	}, nil
}

func (o *operator) close() { o.cl.Close() }

// summary is a copy of the counts so far.
func (o *operator) summary() reassignSummary {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sum
}

func (o *operator) count(f func(s *reassignSummary)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(&o.sum)
}

// draws are the random choices of one step, all drawn at every step
// whatever the step does, so that the cluster's state does not shift the
// choices of the steps after.
type draws struct {
	dropAt      int  // which replica a shrink drops
	dropLeader  bool // a shrink drops the leader instead
	front       bool // a grow puts the returning broker first
	cancel      bool // cancel a grow in flight, or a reassignment under way
	cancelDelay time.Duration
	pause       time.Duration // before the step
}

func (o *operator) draw() draws {
	return draws{
		dropAt:      o.rng.IntN(replicationFactor),
		dropLeader:  o.rng.IntN(100) < leaderPercent,
		front:       o.rng.IntN(100) < frontPercent,
		cancel:      o.rng.IntN(100) < cancelPercent,
		cancelDelay: cancelMinDelay + time.Duration(o.rng.Int64N(int64(cancelMaxDelay-cancelMinDelay)+1)),
		pause:       opMinPause + time.Duration(o.rng.Int64N(int64(opMaxPause-opMinPause)+1)),
	}
}

// run takes a step on each partition in turn, a pause before each, until
// ctx ends.
func (o *operator) run(ctx context.Context) {
	o.logf("started: a step every %v to %v, partitions in turn", opMinPause, opMaxPause)
	for step := 0; ; step++ {
		d := o.draw()
		if !o.pause(ctx, d.pause) {
			o.logf("stopped after %d steps", step)
			return
		}
		o.step(ctx, int32(step%partitions), d)
	}
}

// pause waits d, looking every opPoll at what is pending; false when ctx
// ended.
func (o *operator) pause(ctx context.Context, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return ctx.Err() == nil
		}
		if !sleep(ctx, min(left, opPoll)) {
			return false
		}
		o.mu.Lock()
		n := len(o.pending)
		o.mu.Unlock()
		if n > 0 && time.Until(end) > opPoll/2 {
			if v, err := o.observe(ctx); err == nil {
				o.account(v)
			}
		}
	}
}

// step acts on partition p: cancels its reassignment if one is under way
// (sometimes, or when stuck), shrinks it if it has every replica, grows it
// back otherwise.
func (o *operator) step(ctx context.Context, p int32, d draws) {
	v, err := o.observe(ctx)
	if err != nil {
		o.count(func(s *reassignSummary) { s.Errors++ })
		o.logf("partition %d: no view of the cluster: %v (trying again at the next step)", p, err)
		return
	}
	o.account(v)
	pv := v.parts[p]
	o.mu.Lock()
	mv := o.pending[p]
	o.mu.Unlock()
	switch {
	case pv.listed:
		age := time.Duration(-1)
		if mv != nil {
			age = time.Since(mv.start)
		}
		if !d.cancel && mv != nil && age < stuckAfter {
			o.logf("partition %d: still reassigning (%v for %.1fs), leaving it: %v", p, mv.target, age.Seconds(), pv)
			return
		}
		why := "chosen"
		if mv == nil {
			why = "not one the operator tracks"
		} else if age >= stuckAfter {
			why = fmt.Sprintf("stuck for %.1fs", age.Seconds())
		}
		o.cancel(ctx, v.controller, p, why+": "+pv.String())
	case len(pv.replicas) >= replicationFactor:
		drop := pv.replicas[d.dropAt%len(pv.replicas)]
		leaderDrop := false
		if d.dropLeader && slices.Contains(pv.replicas, pv.leader) {
			drop = pv.leader
		}
		if drop == pv.leader {
			leaderDrop = true
		}
		target := slices.DeleteFunc(slices.Clone(pv.replicas), func(r int32) bool { return r == drop })
		what := fmt.Sprintf("dropping node%d", drop)
		if leaderDrop {
			what += ", the leader"
		}
		o.mu.Lock()
		o.dropped[p] = drop
		o.mu.Unlock()
		o.start(ctx, p, &move{kind: "shrink", from: slices.Clone(pv.replicas), target: target, leaderDrop: leaderDrop, seenBy: v.controller}, what, pv)
	default:
		var missing []int32
		for _, n := range o.c.nodes {
			if !slices.Contains(pv.replicas, n.id) {
				missing = append(missing, n.id)
			}
		}
		if len(missing) == 0 {
			o.logf("partition %d: nothing to do: %v", p, pv)
			return
		}
		back := missing[0]
		o.mu.Lock()
		if dr, ok := o.dropped[p]; ok && slices.Contains(missing, dr) {
			back = dr
		}
		o.mu.Unlock()
		target := append(slices.Clone(pv.replicas), back)
		what := fmt.Sprintf("node%d back last", back)
		if d.front {
			target = append([]int32{back}, pv.replicas...)
			what = fmt.Sprintf("node%d back first, the preferred leader", back)
		}
		if !o.start(ctx, p, &move{kind: "grow", from: slices.Clone(pv.replicas), target: target, seenBy: v.controller}, what, pv) {
			return
		}
		if d.cancel {
			if !sleep(ctx, d.cancelDelay) {
				return
			}
			o.cancel(ctx, v.controller, p, fmt.Sprintf("in flight, %v after it started", d.cancelDelay.Round(time.Millisecond)))
		}
	}
}

// start asks for p's reassignment mv and tracks it if accepted (true) or
// unanswered.
func (o *operator) start(ctx context.Context, p int32, mv *move, what string, pv partView) bool {
	kind, target := mv.kind, mv.target
	o.logf("partition %d: %s %v -> %v (%s); was %v as node%d, the controller, saw it", p, kind, pv.replicas, target, what, pv, mv.seenBy)
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign(topic, p, target)
	err := o.alter(ctx, mv.seenBy, req, p)
	mv.start = time.Now()
	if errors.Is(err, errUnknownOutcome) {
		// It may yet take effect: track it, account tells.
		mv.unanswered = true
		o.mu.Lock()
		o.pending[p] = mv
		o.sum.Errors++
		o.sum.Unanswered++
		o.mu.Unlock()
		o.logf("partition %d: %s to %v: %v (tracked in case it takes effect)", p, kind, target, err)
		return false
	}
	if err != nil {
		o.count(func(s *reassignSummary) { s.Errors++ })
		o.logf("partition %d: %s to %v refused: %v (trying again later)", p, kind, target, err)
		return false
	}
	inFault := o.fault.holding()
	o.mu.Lock()
	o.pending[p] = mv
	o.started(mv)
	if inFault {
		o.sum.StartedInFault++
	}
	o.mu.Unlock()
	o.logf("partition %d: %s to %v started%s", p, kind, target, faultNote(inFault))
	return true
}

// cancel cancels p's reassignment, asking node ctl (the controller); true
// when the controller says it did.
func (o *operator) cancel(ctx context.Context, ctl, p int32, why string) bool {
	o.logf("partition %d: cancelling its reassignment (%s)", p, why)
	var req kadm.AlterPartitionAssignmentsReq
	req.CancelAssign(topic, p)
	err := o.alter(ctx, ctl, req, p)
	o.mu.Lock()
	defer o.mu.Unlock()
	mv := o.pending[p]
	switch {
	case err == nil:
		o.sum.Cancelled++
		delete(o.pending, p)
		o.logf("partition %d: reassignment cancelled%s", p, faultNote(o.fault.holding()))
		return true
	case errors.Is(err, kerr.NoReassignmentInProgress):
		o.sum.TooLate++
		o.logf("partition %d: nothing to cancel: the reassignment had ended", p)
	default:
		o.sum.Errors++
		if mv != nil && errors.Is(err, errUnknownOutcome) {
			mv.cancelSent = true
		}
		o.logf("partition %d: cancel failed: %v", p, err)
	}
	return false
}

// errUnknownOutcome: a request got no answer, or an error for the whole
// request (not per partition): it may or may not take effect.
var errUnknownOutcome = errors.New("the outcome is unknown")

// alter sends req to node ctl and returns p's outcome, or the request's
// error (errUnknownOutcome when it may or may not take effect).
func (o *operator) alter(ctx context.Context, ctl int32, req kadm.AlterPartitionAssignmentsReq, p int32) error {
	res, err := o.reassign(ctx, ctl, req)
	if err != nil {
		return err
	}
	r, ok := res[topic][p]
	if !ok {
		return fmt.Errorf("no result for partition %d in the answer", p)
	}
	if r.Err != nil && r.ErrMessage != "" {
		return fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
	}
	return r.Err
}

// account logs and counts the pending reassignments v shows completed.
func (o *operator) account(v view) {
	inFault := o.fault.holding()
	o.mu.Lock()
	defer o.mu.Unlock()
	for p, mv := range o.pending {
		pv := v.parts[p]
		age := time.Since(mv.start)
		if mv.unanswered && (pv.listed || slices.Equal(pv.replicas, mv.target)) {
			mv.unanswered = false
			o.started(mv)
			o.sum.Applied++
			o.logf("partition %d: %s to %v took effect after all (%.1fs after it was asked): %v", p, mv.kind, mv.target, age.Seconds(), pv)
		}
		if pv.listed {
			continue
		}
		switch {
		case mv.unanswered && age > lostAfter:
			o.logf("partition %d: %s to %v never took effect: %v", p, mv.kind, mv.target, pv)
		case slices.Equal(pv.replicas, mv.target):
			o.sum.Completed++
			if inFault {
				o.sum.CompletedInFault++
			}
			o.logf("partition %d: %s %v -> %v completed within %.1fs%s: %v", p, mv.kind, mv.from, mv.target, age.Seconds(), faultNote(inFault), pv)
		case mv.cancelSent:
			o.sum.Cancelled++
			o.logf("partition %d: %s to %v cancelled (the cancel without an answer took effect): %v", p, mv.kind, mv.target, pv)
		case age > lostAfter:
			o.sum.Lost++
			o.logf("partition %d: %s to %v neither listed nor done after %.1fs, no longer tracked: %v", p, mv.kind, mv.target, age.Seconds(), pv)
		default:
			continue
		}
		delete(o.pending, p)
	}
}

// started counts mv started. o.mu held.
func (o *operator) started(mv *move) {
	o.sum.Started++
	if mv.leaderDrop {
		o.sum.LeaderDrops++
	}
	switch mv.kind {
	case "grow":
		o.sum.Grows++
	case "shrink":
		o.sum.Shrinks++
	case "drain":
		o.sum.DrainMoves++
	default:
		panic(fmt.Sprintf("BUG: operator: a move of kind %q", mv.kind))
	}
}

func faultNote(inFault bool) string {
	if inFault {
		return " (a fault holds)"
	}
	return ""
}

// observe is the topic as the active controller sees it. The metadata
// quorum's leader (DescribeQuorum, which any node forwards to it) is
// asked for the reassignments under way (ListPartitionReassignments), then
// for the partitions (Metadata). Not any node: every node answers both
// from its own metadata image, and a node that lags (one just cut off, or
// whose links to the quorum are still broken after a heal) shows the
// partitions of before the operator's latest changes, and even names
// itself the controller when the one in its image is fenced. Both answers
// come from the one image, a prefix of the committed metadata log, in
// that order: a reassignment that completes in between shows completed,
// not gone with other replicas, and one seen completed has completed.
// (A grow's replicas are its target from its start, so the listing and
// the replicas must not come from two nodes that lag differently.)
func (o *operator) observe(ctx context.Context) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, opRequestTimeout)
	defer cancel()
	var v view
	ctl, err := o.activeController(ctx)
	if err != nil {
		return v, err
	}
	v.controller = ctl
	b := o.cl.Broker(int(ctl))

	lreq := kmsg.NewPtrListPartitionReassignmentsRequest()
	lt := kmsg.NewListPartitionReassignmentsRequestTopic()
	lt.Topic = topic
	for p := range int32(partitions) {
		lt.Partitions = append(lt.Partitions, p)
	}
	lreq.Topics = append(lreq.Topics, lt)
	lresp, err := lreq.RequestWith(ctx, b)
	if err != nil {
		return v, fmt.Errorf("listing reassignments on node%d: %w", ctl, err)
	}
	if err := kerr.ErrorForCode(lresp.ErrorCode); err != nil {
		return v, fmt.Errorf("listing reassignments on node%d: %w", ctl, err)
	}

	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, b)
	if err != nil {
		return v, fmt.Errorf("metadata from node%d: %w", ctl, err)
	}
	seen := 0
	for _, t := range mresp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return v, fmt.Errorf("metadata from node%d: topic: %w", ctl, err)
		}
		for _, tp := range t.Partitions {
			if tp.Partition < 0 || tp.Partition >= partitions {
				continue
			}
			v.parts[tp.Partition] = partView{leader: tp.Leader, replicas: tp.Replicas, isr: tp.ISR}
			seen++
		}
	}
	if seen != partitions {
		return v, fmt.Errorf("metadata from node%d: %d partitions", ctl, seen)
	}
	for _, t := range lresp.Topics {
		if t.Topic != topic {
			continue
		}
		for _, l := range t.Partitions {
			if l.Partition >= 0 && l.Partition < partitions {
				pv := &v.parts[l.Partition]
				pv.listed, pv.adding, pv.removing = true, l.AddingReplicas, l.RemovingReplicas
			}
		}
	}
	return v, nil
}

// metadataQuorum is the metadata log as DescribeQuorum names it.
const metadataQuorum = "__cluster_metadata"

// activeController is the metadata quorum's leader, the active
// controller, as DescribeQuorum says (answered by the controller itself).
func (o *operator) activeController(ctx context.Context) (int32, error) {
	return o.c.activeController(ctx, o.cl)
}

// quorumAskTimeout bounds asking one node for the metadata quorum's
// leader before activeController asks the next.
const quorumAskTimeout = 1500 * time.Millisecond

// activeController asks the running nodes in turn (a different one first
// each call), through cl, for the metadata quorum's leader: the first
// answer wins. Not through kgo's routing of DescribeQuorum, an admin
// request that kgo sends to the controller its last Metadata named, and
// keeps sending there while that node does not answer (kgo forgets the
// controller on NOT_CONTROLLER, not on a timeout or a closed
// connection): the operator saw nothing for 19 s while the nemesis cut
// node1, the controller kgo had cached, off from the others (node1
// forwarding to a leader it could not reach), and waitLeaders, asking
// this way, waited its whole 90 s after the rotation stopped the
// controller.
func (c *cluster) activeController(ctx context.Context, cl *kgo.Client) (int32, error) {
	first := int(c.asked.Add(1))
	var errs []string
	for i := range c.nodes {
		n := c.nodes[(first+i)%len(c.nodes)]
		if !n.proc.Running() {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, quorumAskTimeout)
		ctl, err := describeQuorum(actx, cl.Broker(int(n.id)))
		cancel()
		if err == nil {
			return ctl, nil
		}
		errs = append(errs, fmt.Sprintf("node%d: %v", n.id, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return -1, errors.New("describing the metadata quorum: no node running")
	}
	return -1, fmt.Errorf("describing the metadata quorum: %s", strings.Join(errs, "; "))
}

// describeQuorum asks r for the metadata quorum's leader; a node that is
// not the leader forwards DescribeQuorum to it.
func describeQuorum(ctx context.Context, r kmsg.Requestor) (int32, error) {
	req := kmsg.NewPtrDescribeQuorumRequest()
	t := kmsg.NewDescribeQuorumRequestTopic()
	t.Topic = metadataQuorum
	p := kmsg.NewDescribeQuorumRequestTopicPartition()
	t.Partitions = append(t.Partitions, p) // partition 0
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, r)
	if err != nil {
		return -1, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return -1, err
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return -1, err
			}
			if rp.LeaderID < 0 {
				return -1, errors.New("no leader")
			}
			return rp.LeaderID, nil
		}
	}
	return -1, errors.New("an empty answer")
}

// restore takes every partition back to replicationFactor replicas with
// no reassignment under way, within restoreTimeout: it cancels what is
// under way, then grows back every partition short of a replica (the
// missing brokers last) and waits for those to complete, and for that to
// hold restoreConfirm. Run it once the operator stopped and the nemesis
// healed everything.
func (o *operator) restore(ctx context.Context) error {
	start := time.Now()
	defer func() { o.count(func(s *reassignSummary) { s.RestoreS = time.Since(start).Seconds() }) }()
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	o.logf("restoring: cancelling what is under way, then every partition back to %d replicas", replicationFactor)
	cancelled := false
	asked := map[int32]bool{} // partitions restore grew back
	var doneSince time.Time
	for {
		done, last := o.restorePass(ctx, &cancelled, asked)
		switch {
		case !done:
			doneSince = time.Time{}
		case doneSince.IsZero():
			doneSince = time.Now()
		case time.Since(doneSince) >= restoreConfirm:
			o.mu.Lock()
			for p, mv := range o.pending {
				o.logf("restoring: partition %d: %s to %v was neither seen completed nor cancelled", p, mv.kind, mv.target)
				delete(o.pending, p)
			}
			o.mu.Unlock()
			o.logf("restored in %.1fs: %s", time.Since(start).Seconds(), last)
			return nil
		}
		if !sleep(ctx, pollInterval) {
			return fmt.Errorf("not every partition back to %d replicas with nothing under way within %v: %s", replicationFactor, restoreTimeout, last)
		}
	}
}

// restorePass looks at the cluster and takes a restoreStep on the
// controller's word: true when restore is done; the state seen, or why
// nothing was.
func (o *operator) restorePass(ctx context.Context, cancelled *bool, asked map[int32]bool) (bool, string) {
	v, err := o.observe(ctx)
	if err != nil {
		o.logf("restoring: %v (retrying)", err)
		return false, err.Error()
	}
	o.account(v)
	state := describeView(v)
	done, err := o.restoreStep(ctx, v, cancelled, asked)
	if err != nil {
		o.logf("restoring: %v (retrying)", err)
		return false, state
	}
	return done, state
}

// reassign sends req (AlterPartitionReassignments) to node ctl, the
// active controller as the operator last saw it, and returns the
// partitions' outcomes, or errUnknownOutcome. Not through kadm, which sends it
// to the controller that kgo's metadata names: a node that lags may name
// itself, and a node that is not the controller forwards the request and
// may hold it, cut off from the controller, long after the operator gave
// up on it (up to its forwarding timeout, 60 s), to apply it when its
// links heal: while the operator restores the replicas, say.
func (o *operator) reassign(ctx context.Context, ctl int32, req kadm.AlterPartitionAssignmentsReq) (kadm.AlterPartitionAssignmentsResponses, error) {
	ctx, cancel := context.WithTimeout(ctx, opRequestTimeout)
	defer cancel()
	kreq := kmsg.NewPtrAlterPartitionAssignmentsRequest() // AllowReplicationFactorChange
	kreq.TimeoutMillis = int32(opRequestTimeout / time.Millisecond)
	for t, ps := range req {
		rt := kmsg.NewAlterPartitionAssignmentsRequestTopic()
		rt.Topic = t
		for p, replicas := range ps {
			rp := kmsg.NewAlterPartitionAssignmentsRequestTopicPartition()
			rp.Partition, rp.Replicas = p, replicas // nil cancels
			rt.Partitions = append(rt.Partitions, rp)
		}
		kreq.Topics = append(kreq.Topics, rt)
	}
	kresp, err := kreq.RequestWith(ctx, o.cl.Broker(int(ctl)))
	if err != nil {
		return nil, fmt.Errorf("%w: no answer from node%d: %w", errUnknownOutcome, ctl, err)
	}
	if err := kerr.ErrorForCode(kresp.ErrorCode); err != nil {
		msg := ""
		if kresp.ErrorMessage != nil {
			msg = ": " + *kresp.ErrorMessage
		}
		// An error for the whole request: the controller could not
		// write (REQUEST_TIMED_OUT, or NOT_CONTROLLER when it lost its
		// leadership while committing): the change may or may not
		// commit.
		return nil, fmt.Errorf("%w: node%d: %w%s", errUnknownOutcome, ctl, err, msg)
	}
	res := kadm.AlterPartitionAssignmentsResponses{}
	for _, rt := range kresp.Topics {
		ps := map[int32]kadm.AlterPartitionAssignmentsResponse{}
		res[rt.Topic] = ps
		for _, rp := range rt.Partitions {
			r := kadm.AlterPartitionAssignmentsResponse{Topic: rt.Topic, Partition: rp.Partition, Err: kerr.ErrorForCode(rp.ErrorCode)}
			if rp.ErrorMessage != nil {
				r.ErrMessage = *rp.ErrorMessage
			}
			ps[rp.Partition] = r
		}
	}
	return res, nil
}

// restoreStep is one pass of restore over v: the first cancels every
// reassignment under way, the others grow partitions back (the brokers
// missing, in node order, until replicationFactor: with a fourth node,
// any three will do). Done when every partition has its replicas and
// none is being reassigned.
func (o *operator) restoreStep(ctx context.Context, v view, cancelled *bool, asked map[int32]bool) (bool, error) {
	if !*cancelled {
		var req kadm.AlterPartitionAssignmentsReq
		for p, pv := range v.parts {
			if pv.listed {
				req.CancelAssign(topic, int32(p))
				o.logf("restoring: partition %d: cancelling: %v", p, pv)
			}
		}
		if len(req) > 0 {
			res, err := o.reassign(ctx, v.controller, req)
			if err != nil {
				return false, fmt.Errorf("cancelling: %w", err)
			}
			for _, r := range res.Sorted() {
				switch {
				case r.Err == nil:
					o.count(func(s *reassignSummary) { s.RestoreCancelled++ })
					o.mu.Lock()
					delete(o.pending, r.Partition)
					o.mu.Unlock()
					o.logf("restoring: partition %d: cancelled", r.Partition)
				case errors.Is(r.Err, kerr.NoReassignmentInProgress):
					o.logf("restoring: partition %d: nothing to cancel any more", r.Partition)
				default:
					return false, fmt.Errorf("cancelling partition %d: %w %s", r.Partition, r.Err, r.ErrMessage)
				}
			}
		}
		*cancelled = true
		return false, nil // look again before growing
	}
	done := true
	var req kadm.AlterPartitionAssignmentsReq
	for p, pv := range v.parts {
		if pv.listed {
			done = false
			continue
		}
		if len(pv.replicas) >= replicationFactor {
			continue
		}
		done = false
		target := slices.Clone(pv.replicas)
		for _, n := range o.c.nodes {
			if len(target) < replicationFactor && !slices.Contains(target, n.id) {
				target = append(target, n.id)
			}
		}
		req.Assign(topic, int32(p), target)
		o.logf("restoring: partition %d: %v -> %v", p, pv.replicas, target)
	}
	if len(req) == 0 {
		return done, nil
	}
	res, err := o.reassign(ctx, v.controller, req)
	if err != nil {
		return false, fmt.Errorf("growing back: %w", err)
	}
	for _, r := range res.Sorted() {
		if r.Err != nil {
			return false, fmt.Errorf("growing back partition %d: %w %s", r.Partition, r.Err, r.ErrMessage)
		}
		if !asked[r.Partition] {
			asked[r.Partition] = true
			o.count(func(s *reassignSummary) { s.RestoreGrown++ })
		}
		o.logf("restoring: partition %d: growing back", r.Partition)
	}
	return false, nil
}

func describeView(v view) string {
	parts := []string{fmt.Sprintf("as the controller, node%d, sees it", v.controller)}
	for p, pv := range v.parts {
		parts = append(parts, fmt.Sprintf("partition %d: %v", p, pv))
	}
	return strings.Join(parts, "; ")
}

func TestFaultWatch(t *testing.T) {
	var w faultWatch
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"nemesis: seed 1, 4 rounds of [kill -9], each held 2s to 6s", false},
		{"nemesis: round 1/4: kill -9 node 0 for 3s (node1)", true},
		{"target: the active controller, node 1", true},
		{"nemesis: node1 restarted as pid 12", true},
		{"nemesis: round 1/4: kill -9 of node1 undone", false},
		{"nemesis: round 2/4: isolate node 1 for 2s (node2)", true},
		{"nemesis: round 2/4: isolate of node2 undone", false},
	} {
		w.line(tc.line)
		if got := w.holding(); got != tc.want {
			t.Errorf("after %q: holding %v, want %v", tc.line, got, tc.want)
		}
	}
	if (*faultWatch)(nil).holding() {
		t.Error("a nil faultWatch holds a fault")
	}
}
