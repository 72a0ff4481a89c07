package replica

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Kafka's defaults for the two configs the leader follows.
const (
	// DefaultReplicaLagTimeMax is replica.lag.time.max.ms: how long an
	// in-sync follower may go without being caught up before the leader
	// proposes to drop it from the ISR.
	DefaultReplicaLagTimeMax = 30 * time.Second
	// DefaultMinInsyncReplicas is min.insync.replicas: the least ISR size,
	// leader included, for an acks=all produce and for the HW to move.
	DefaultMinInsyncReplicas = 1
)

// acksAll is the acks of a Produce request that waits for the ISR.
const acksAll int16 = -1

// Errors a Leader returns, wrapped with context. The broker maps them to
// Kafka error codes.
var (
	// ErrNotEnoughReplicas refuses an acks=all produce before it is
	// appended: NOT_ENOUGH_REPLICAS.
	ErrNotEnoughReplicas = errors.New("replica: not enough in-sync replicas")
	// ErrNotEnoughReplicasAfterAppend fails an acks=all produce that was
	// appended and reached the HW, but the ISR fell below
	// min.insync.replicas meanwhile: NOT_ENOUGH_REPLICAS_AFTER_APPEND.
	ErrNotEnoughReplicasAfterAppend = errors.New("replica: not enough in-sync replicas after the append")
	// ErrUnknownReplica is a fetch from a broker that is not a follower in
	// the partition's assignment. Kafka answers UNKNOWN_LEADER_EPOCH when
	// the request carries a leader epoch (the follower retries, as it does
	// while a reassignment reaches the leader) and NOT_LEADER_OR_FOLLOWER
	// otherwise.
	ErrUnknownReplica = errors.New("replica: not a follower in the partition's assignment")
	// ErrInvalidOffset is a negative fetch offset, which no log has; the
	// broker answers OFFSET_OUT_OF_RANGE (its own range check against the
	// log comes first and catches it).
	ErrInvalidOffset = errors.New("replica: invalid fetch offset")
	// ErrInvalidPartitionState is metadata (or a controller answer) that no
	// leader can follow: an ISR that is not part of the assignment or that
	// lacks the leader, duplicate replicas, offsets out of order.
	ErrInvalidPartitionState = errors.New("replica: invalid partition state")
	// ErrStaleMetadata is metadata with an older partition epoch than the
	// leader's; it is ignored (the leader already saw newer state, possibly
	// from an AlterPartition answer).
	ErrStaleMetadata = errors.New("replica: stale partition metadata ignored")
	// ErrStaleAlterPartition is an AlterPartition answer that no longer
	// applies: its proposal is not the one in flight, or the answer carries
	// another leader epoch or an older partition epoch. It is ignored.
	ErrStaleAlterPartition = errors.New("replica: stale AlterPartition answer ignored")
)

// Config is the part of the topic and broker configs a leader follows. The
// zero Config is Kafka's defaults.
type Config struct {
	// ReplicaLagTimeMax is replica.lag.time.max.ms; 0 means
	// DefaultReplicaLagTimeMax.
	ReplicaLagTimeMax time.Duration
	// MinInsyncReplicas is the topic's min.insync.replicas; 0 means
	// DefaultMinInsyncReplicas. Above the replication factor it counts as
	// the replication factor (Kafka's effectiveMinIsr).
	MinInsyncReplicas int
}

func (c Config) withDefaults() Config {
	if c.ReplicaLagTimeMax <= 0 {
		c.ReplicaLagTimeMax = DefaultReplicaLagTimeMax
	}
	if c.MinInsyncReplicas <= 0 {
		c.MinInsyncReplicas = DefaultMinInsyncReplicas
	}
	return c
}

// PartitionState is the partition as the metadata gives it to its leader.
type PartitionState struct {
	LeaderEpoch int32
	// PartitionEpoch is bumped by the controller on every change of the
	// partition (ISR, assignment, leader); AlterPartition is based on it.
	PartitionEpoch int32
	// Replicas is the assignment, leader included, in the metadata's order.
	Replicas []int32
	// ISR is the committed in-sync replica set; it includes the leader.
	ISR []int32
}

// LeaderAndISR is the controller's answer to an AlterPartition: the state it
// committed.
type LeaderAndISR struct {
	LeaderEpoch    int32
	PartitionEpoch int32
	ISR            []int32
}

// LogOffsets is the leader's own log when it becomes leader.
type LogOffsets struct {
	LogEndOffset int64
	// HighWatermark is the HW the node had as a follower (or alone); the
	// leader's HW starts there and never goes below it.
	HighWatermark int64
	// EpochStartOffset is the leader's LEO when its leader epoch began. A
	// follower joins the ISR only once it has reached it: before that it may
	// lack records the HW already covers from the previous epoch.
	EpochStartOffset int64
}

// AlterPartition is an ISR change the leader proposes to the controller
// (Kafka's PendingExpandIsr and PendingShrinkIsr). It is proposed, not
// applied: the committed ISR changes only when the controller's answer
// arrives (Committed).
type AlterPartition struct {
	LeaderEpoch int32
	// PartitionEpoch is the partition epoch the proposal is based on; the
	// controller refuses it if the partition has moved on.
	PartitionEpoch int32
	// ISR is the proposed ISR, sorted.
	ISR []int32
	// Expand is true when Changed joins the ISR, false when Changed leaves.
	Expand  bool
	Changed []int32

	// seq tells this proposal from an identical earlier one, so that a late
	// answer to it cannot settle a later proposal.
	seq uint64
}

// FollowerStatus is what the leader knows of one follower, for metrics and
// describe output.
type FollowerStatus struct {
	ID int32
	// LogEndOffset is the offset of its last fetch; -1 until it fetches from
	// this leader.
	LogEndOffset int64
	// Lag is the leader's LEO minus the follower's, at least 0; -1 while the
	// follower's LEO is unknown.
	Lag int64
	// LastCaughtUpTime is the zero time if it never was caught up under this
	// leader.
	LastCaughtUpTime time.Time
	LastFetchTime    time.Time
	// InSync says it is in the committed ISR.
	InSync bool
	// Eligible is false while the metadata fences it or it shuts down.
	Eligible bool
}

// Leader is the partition leader's replication state: its followers, the ISR,
// the HW, and the one ISR change in flight. The broker's replica manager owns
// it and calls it under the partition's lock; it is not safe for concurrent
// use. Methods that take a time expect wall-clock times (the zero time.Time
// stands for "never"); a clock that steps back only delays ISR decisions.
type Leader struct {
	cfg  Config
	self int32

	leaderEpoch    int32
	partitionEpoch int32
	// replicas is the assignment, self included, in the metadata's order.
	replicas []int32
	// followers are the assignment without self, in the same order.
	followers []follower
	// isr is the committed ISR, sorted.
	isr []int32
	// ineligible are the brokers the metadata fences or shuts down,
	// assigned or not, so that an assignment change keeps them.
	ineligible map[int32]bool

	// inflight is the ISR change proposed and not yet answered; sent says
	// TakeProposal has handed it out.
	inflight *AlterPartition
	sent     bool
	seq      uint64

	leo              int64
	hw               int64
	epochStartOffset int64
}

// NewLeader makes this node (self) the leader of a partition at time now,
// with the metadata's state p and its own log's offsets. Every follower
// starts with an unknown LEO; those in the ISR count as caught up at now, the
// others as never (Kafka's makeLeader for a new leader). The HW starts at
// log.HighWatermark and moves up at once if the ISR allows it (a leader
// alone in its ISR).
func NewLeader(cfg Config, self int32, p PartitionState, log LogOffsets, now time.Time) (*Leader, error) {
	if err := checkPartitionState(self, p); err != nil {
		return nil, err
	}
	if log.HighWatermark < 0 || log.HighWatermark > log.LogEndOffset ||
		log.EpochStartOffset < 0 || log.EpochStartOffset > log.LogEndOffset {
		return nil, fmt.Errorf("%w: log end offset %d, high watermark %d, epoch start offset %d",
			ErrInvalidPartitionState, log.LogEndOffset, log.HighWatermark, log.EpochStartOffset)
	}
	l := &Leader{
		cfg:              cfg.withDefaults(),
		self:             self,
		leaderEpoch:      p.LeaderEpoch,
		partitionEpoch:   p.PartitionEpoch,
		ineligible:       make(map[int32]bool),
		leo:              log.LogEndOffset,
		hw:               log.HighWatermark,
		epochStartOffset: log.EpochStartOffset,
	}
	l.setAssignment(p)
	for i := range l.followers {
		f := &l.followers[i]
		f.reset(now, l.epochStartOffset, true, slices.Contains(l.isr, f.id))
	}
	l.maybeIncrementHighWatermark(now)
	return l, nil
}

// checkPartitionState refuses metadata that would break the leader's
// invariants: the leader is assigned and in the ISR, the ISR is part of the
// assignment, nobody is listed twice.
func checkPartitionState(self int32, p PartitionState) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %s (leader %d, replicas %v, ISR %v, leader epoch %d, partition epoch %d)",
			ErrInvalidPartitionState, why, self, p.Replicas, p.ISR, p.LeaderEpoch, p.PartitionEpoch)
	}
	if p.LeaderEpoch < 0 || p.PartitionEpoch < 0 {
		return bad("negative epoch")
	}
	if hasDuplicates(p.Replicas) {
		return bad("a replica assigned twice")
	}
	if !slices.Contains(p.Replicas, self) {
		return bad("the leader is not assigned")
	}
	return checkISR(self, p.Replicas, p.ISR, bad)
}

func checkISR(self int32, replicas, isr []int32, bad func(string) error) error {
	if hasDuplicates(isr) {
		return bad("an ISR member listed twice")
	}
	if !slices.Contains(isr, self) {
		return bad("the leader is not in the ISR")
	}
	for _, id := range isr {
		if !slices.Contains(replicas, id) {
			return bad(fmt.Sprintf("ISR member %d is not assigned", id))
		}
	}
	return nil
}

func hasDuplicates(ids []int32) bool {
	s := slices.Clone(ids)
	slices.Sort(s)
	return len(slices.Compact(s)) != len(ids)
}

// setAssignment takes the metadata's assignment and committed ISR, keeping
// what it knows of followers that stay, starting new ones empty, and dropping
// any proposal in flight (Kafka's updateAssignmentAndIsr): the metadata
// supersedes it, and an answer to it will be stale.
func (l *Leader) setAssignment(p PartitionState) {
	followers := make([]follower, 0, len(p.Replicas)-1)
	for _, id := range p.Replicas {
		if id == l.self {
			continue
		}
		if f := l.follower(id); f != nil {
			followers = append(followers, *f)
		} else {
			followers = append(followers, newFollower(id))
		}
	}
	l.replicas = slices.Clone(p.Replicas)
	l.followers = followers
	l.isr = sorted(p.ISR)
	l.inflight = nil
	l.sent = false
}

func sorted(ids []int32) []int32 {
	s := slices.Clone(ids)
	slices.Sort(s)
	return s
}

func (l *Leader) follower(id int32) *follower {
	for i := range l.followers {
		if l.followers[i].id == id {
			return &l.followers[i]
		}
	}
	return nil
}

// MakeLeader applies a metadata change for the partition while this node
// stays its leader (Kafka's makeLeader on a leader). Metadata older than the
// leader's partition epoch is ignored with ErrStaleMetadata. Otherwise the
// assignment and committed ISR become the metadata's and a proposal in flight
// is dropped. A new leader epoch starts at the leader's current LEO: followers
// keep their LEOs, those in the ISR get a full lag period from now, the
// others must fetch again before they count as caught up. It reports whether
// the HW moved.
func (l *Leader) MakeLeader(p PartitionState, now time.Time) (hwChanged bool, err error) {
	if err := checkPartitionState(l.self, p); err != nil {
		return false, err
	}
	if p.PartitionEpoch < l.partitionEpoch {
		return false, fmt.Errorf("%w: partition epoch %d, the leader is at %d",
			ErrStaleMetadata, p.PartitionEpoch, l.partitionEpoch)
	}
	if p.LeaderEpoch < l.leaderEpoch {
		return false, fmt.Errorf("%w: leader epoch %d went back from %d at partition epoch %d",
			ErrInvalidPartitionState, p.LeaderEpoch, l.leaderEpoch, p.PartitionEpoch)
	}
	l.setAssignment(p)
	if p.LeaderEpoch > l.leaderEpoch {
		l.epochStartOffset = l.leo
		for i := range l.followers {
			f := &l.followers[i]
			f.reset(now, l.epochStartOffset, false, slices.Contains(l.isr, f.id))
		}
		l.leaderEpoch = p.LeaderEpoch
	}
	l.partitionEpoch = p.PartitionEpoch
	return l.maybeIncrementHighWatermark(now), nil
}

// LeaderAppended records the leader's new LEO after an append (under
// acks-all, after the fsync that made it durable) and reports whether the HW
// moved: with no follower in the ISR it follows the leader.
//
// The leader's log never shrinks while it leads; a LEO below the previous one
// is a bug in the caller and panics.
func (l *Leader) LeaderAppended(leo int64, now time.Time) (hwChanged bool) {
	if leo < l.leo {
		panic(fmt.Sprintf("BUG: replica: leader log end offset moved back from %d to %d", l.leo, leo))
	}
	l.leo = leo
	return l.maybeIncrementHighWatermark(now)
}

// FollowerFetched records a fetch from follower id at fetchOffset, its LEO,
// that arrived at now. The broker has checked the fetch against the log
// first; the offset may pass the LEO the leader reported (under acks-all the
// follower may have fsynced records the leader has not yet), and counts as
// caught up then. The fetch may propose adding the follower to the ISR (see
// TakeProposal). It reports whether the HW moved; a fetch from a broker that
// is not a follower of the partition changes nothing and returns
// ErrUnknownReplica.
func (l *Leader) FollowerFetched(id int32, fetchOffset int64, now time.Time) (hwChanged bool, err error) {
	f := l.follower(id)
	if f == nil {
		return false, fmt.Errorf("%w: broker %d fetched, assignment %v, leader epoch %d, partition epoch %d",
			ErrUnknownReplica, id, l.replicas, l.leaderEpoch, l.partitionEpoch)
	}
	if fetchOffset < 0 {
		return false, fmt.Errorf("%w: follower %d fetched at offset %d", ErrInvalidOffset, id, fetchOffset)
	}
	f.fetched(fetchOffset, l.leo, now)
	l.maybeExpandISR(f)
	return l.maybeIncrementHighWatermark(now), nil
}

// maybeExpandISR proposes adding f to the ISR once it has the HW and the
// start of the leader's epoch (Kafka's maybeExpandIsr and isFollowerInSync),
// unless another proposal is in flight or the metadata fences it. The lag
// time is not checked: a follower judges itself in sync by the HW alone, and
// so does the leader.
func (l *Leader) maybeExpandISR(f *follower) {
	if l.inflight != nil || slices.Contains(l.isr, f.id) || l.ineligible[f.id] {
		return
	}
	if f.logEndOffset < l.hw || f.logEndOffset < l.epochStartOffset {
		return
	}
	l.propose(sorted(append(slices.Clone(l.isr), f.id)), true, []int32{f.id})
}

// Tick lets the leader look at the time: in-sync followers that have not
// been caught up for more than ReplicaLagTimeMax, and do not have the
// leader's whole log, are proposed for removal from the ISR in one proposal
// (Kafka's maybeShrinkIsr), unless a proposal is in flight. The leader never
// removes itself. It reports whether the HW moved (a follower outside the ISR
// that stops being caught up no longer holds it back).
func (l *Leader) Tick(now time.Time) (hwChanged bool) {
	l.maybeShrinkISR(now)
	return l.maybeIncrementHighWatermark(now)
}

func (l *Leader) maybeShrinkISR(now time.Time) {
	if l.inflight != nil {
		return
	}
	var out []int32
	for _, id := range l.isr {
		if id == l.self {
			continue
		}
		f := l.follower(id)
		if f == nil {
			panic(fmt.Sprintf("BUG: replica: ISR member %d is not a follower of %v", id, l.replicas))
		}
		if !f.caughtUp(l.leo, now, l.cfg.ReplicaLagTimeMax) {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return
	}
	isr := slices.DeleteFunc(slices.Clone(l.isr), func(id int32) bool { return slices.Contains(out, id) })
	l.propose(isr, false, out)
}

func (l *Leader) propose(isr []int32, expand bool, changed []int32) {
	l.seq++
	l.inflight = &AlterPartition{
		LeaderEpoch:    l.leaderEpoch,
		PartitionEpoch: l.partitionEpoch,
		ISR:            isr,
		Expand:         expand,
		Changed:        changed,
		seq:            l.seq,
	}
	l.sent = false
}

// TakeProposal returns the ISR change to send to the controller as
// AlterPartition, once: it is then in flight until Committed, Failed or
// MakeLeader settles it, and no other is proposed meanwhile. To resend it
// (the controller could not be reached), use InFlight.
func (l *Leader) TakeProposal() (AlterPartition, bool) {
	if l.inflight == nil || l.sent {
		return AlterPartition{}, false
	}
	l.sent = true
	return l.inflight.clone(), true
}

// InFlight returns the proposal in flight, sent or not.
func (l *Leader) InFlight() (AlterPartition, bool) {
	if l.inflight == nil {
		return AlterPartition{}, false
	}
	return l.inflight.clone(), true
}

func (p *AlterPartition) clone() AlterPartition {
	c := *p
	c.ISR = slices.Clone(p.ISR)
	c.Changed = slices.Clone(p.Changed)
	return c
}

// Committed applies the controller's answer to proposal p: the ISR and
// partition epoch it committed become the leader's (the controller's ISR
// wins over the proposed one), and the HW may move, which it reports. An
// answer to a proposal that is no longer in flight, or with another leader
// epoch, or an older partition epoch, is ignored with ErrStaleAlterPartition
// (Kafka's handleAlterPartitionUpdate); in the last two cases the proposal
// stays in flight until the metadata settles it with MakeLeader. So does an
// answer whose ISR the leader cannot follow (ErrInvalidPartitionState).
func (l *Leader) Committed(p AlterPartition, answer LeaderAndISR, now time.Time) (hwChanged bool, err error) {
	if err := l.checkInFlight(p); err != nil {
		return false, err
	}
	if answer.LeaderEpoch != l.leaderEpoch || answer.PartitionEpoch < l.partitionEpoch {
		return false, fmt.Errorf("%w: answer at leader epoch %d, partition epoch %d; the leader is at %d, %d",
			ErrStaleAlterPartition, answer.LeaderEpoch, answer.PartitionEpoch, l.leaderEpoch, l.partitionEpoch)
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: AlterPartition answer: %s (leader %d, replicas %v, ISR %v)",
			ErrInvalidPartitionState, why, l.self, l.replicas, answer.ISR)
	}
	if err := checkISR(l.self, l.replicas, answer.ISR, bad); err != nil {
		return false, err
	}
	l.isr = sorted(answer.ISR)
	l.partitionEpoch = answer.PartitionEpoch
	l.inflight = nil
	l.sent = false
	return l.maybeIncrementHighWatermark(now), nil
}

// Failed settles proposal p as refused without effect: the leader goes back
// to the last committed ISR and may propose again on a later fetch or Tick.
// It reports whether the HW moved (a refused expansion no longer holds it
// back).
//
// Only answers that say the change was not applied justify this: Kafka's
// OPERATION_NOT_ATTEMPTED and INELIGIBLE_REPLICA. For FENCED_LEADER_EPOCH,
// INVALID_UPDATE_VERSION, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID,
// INVALID_REQUEST and NEW_LEADER_ELECTED the broker calls nothing and waits
// for the metadata (MakeLeader); for other errors it resends p.
func (l *Leader) Failed(p AlterPartition, now time.Time) (hwChanged bool, err error) {
	if err := l.checkInFlight(p); err != nil {
		return false, err
	}
	l.inflight = nil
	l.sent = false
	return l.maybeIncrementHighWatermark(now), nil
}

func (l *Leader) checkInFlight(p AlterPartition) error {
	if l.inflight == nil || l.inflight.seq != p.seq {
		return fmt.Errorf("%w: the answered proposal (ISR %v at partition epoch %d) is not in flight",
			ErrStaleAlterPartition, p.ISR, p.PartitionEpoch)
	}
	return nil
}

// SetEligible records whether broker id may join the ISR: the metadata
// fences brokers that stop heartbeating and marks those in controlled
// shutdown, and neither may join (Kafka's isReplicaIsrEligible). An
// ineligible follower outside the ISR no longer holds the HW back; one in the
// ISR does until the controller removes it. It reports whether the HW moved.
func (l *Leader) SetEligible(id int32, eligible bool, now time.Time) (hwChanged bool) {
	if eligible {
		delete(l.ineligible, id)
	} else {
		l.ineligible[id] = true
	}
	return l.maybeIncrementHighWatermark(now)
}

// maybeIncrementHighWatermark moves the HW up to the least LEO among the
// leader, the maximal ISR, and the followers outside it that are caught up
// and eligible to join (so that a joining follower is not outrun by the HW
// it must reach), as Kafka's maybeIncrementLeaderHW does. Under
// min.insync.replicas the HW stays (Kafka 3.7+, KAFKA-15583): acks=1 records
// become visible only once enough replicas have them. The HW never goes back.
//
// It runs after every event, where Kafka runs it after appends, fetches that
// move a LEO, AlterPartition commits and elections: the same rule at more
// moments, so the HW gets no further than Kafka's would, only sooner.
func (l *Leader) maybeIncrementHighWatermark(now time.Time) bool {
	if l.UnderMinISR() {
		return false
	}
	maximal := l.MaximalISR()
	hw := l.leo
	for i := range l.followers {
		f := &l.followers[i]
		if f.logEndOffset >= hw {
			continue
		}
		if slices.Contains(maximal, f.id) ||
			(f.caughtUp(l.leo, now, l.cfg.ReplicaLagTimeMax) && !l.ineligible[f.id]) {
			hw = f.logEndOffset
		}
	}
	if hw <= l.hw {
		return false
	}
	l.hw = hw
	return true
}

// HighWatermark is the offset below which records are committed: every
// member of the maximal ISR has them.
func (l *Leader) HighWatermark() int64 { return l.hw }

// LogEndOffset is the leader's own LEO as last reported.
func (l *Leader) LogEndOffset() int64 { return l.leo }

// LeaderEpoch is the epoch this node leads in.
func (l *Leader) LeaderEpoch() int32 { return l.leaderEpoch }

// PartitionEpoch is the partition epoch of the committed ISR.
func (l *Leader) PartitionEpoch() int32 { return l.partitionEpoch }

// EpochStartOffset is the leader's LEO when its leader epoch began; the
// broker records it in the leader epoch cache when the epoch changes.
func (l *Leader) EpochStartOffset() int64 { return l.epochStartOffset }

// Replicas is the assignment, leader included, in the metadata's order.
func (l *Leader) Replicas() []int32 { return slices.Clone(l.replicas) }

// ISR is the committed in-sync replica set, sorted: what the controller has
// recorded, what min.insync.replicas is checked against before an append.
func (l *Leader) ISR() []int32 { return slices.Clone(l.isr) }

// MaximalISR is the ISR the HW waits for: the committed ISR plus a follower
// whose expansion is in flight (it may be committed any moment). A follower
// whose removal is in flight stays in it until the removal is committed, as
// the removal may fail.
func (l *Leader) MaximalISR() []int32 {
	if l.inflight != nil && l.inflight.Expand {
		return slices.Clone(l.inflight.ISR)
	}
	return slices.Clone(l.isr)
}

// effectiveMinISR is min.insync.replicas, at most the replication factor.
func (l *Leader) effectiveMinISR() int {
	return min(l.cfg.MinInsyncReplicas, len(l.replicas))
}

// UnderReplicated says the committed ISR lacks some assigned replica.
func (l *Leader) UnderReplicated() bool { return len(l.isr) < len(l.replicas) }

// UnderMinISR says the committed ISR is smaller than min.insync.replicas:
// acks=all produces are refused and the HW does not move.
func (l *Leader) UnderMinISR() bool { return len(l.isr) < l.effectiveMinISR() }

// CheckProduce is checked before appending a produce with the given acks: an
// acks=all produce is refused with ErrNotEnoughReplicas while the committed
// ISR is under min.insync.replicas (Kafka's appendRecordsToLeader).
func (l *Leader) CheckProduce(acks int16) error {
	if acks == acksAll && l.UnderMinISR() {
		return fmt.Errorf("%w: ISR %v is smaller than min.insync.replicas %d",
			ErrNotEnoughReplicas, l.isr, l.effectiveMinISR())
	}
	return nil
}

// Acked says whether an acks=all produce whose records end before
// requiredOffset is done: once the HW reaches requiredOffset every member of
// the maximal ISR has them. If the maximal ISR has meanwhile fallen below
// min.insync.replicas the produce is done with
// ErrNotEnoughReplicasAfterAppend (Kafka's checkEnoughReplicasReachOffset).
// The broker polls it whenever the HW moves; a produce not done by its
// timeout is answered REQUEST_TIMED_OUT.
func (l *Leader) Acked(requiredOffset int64) (done bool, err error) {
	if l.hw < requiredOffset {
		return false, nil
	}
	if maximal := l.MaximalISR(); len(maximal) < l.effectiveMinISR() {
		return true, fmt.Errorf("%w: ISR %v is smaller than min.insync.replicas %d at offset %d",
			ErrNotEnoughReplicasAfterAppend, maximal, l.effectiveMinISR(), requiredOffset)
	}
	return true, nil
}

// Followers returns what the leader knows of each follower, in assignment
// order.
func (l *Leader) Followers() []FollowerStatus {
	out := make([]FollowerStatus, 0, len(l.followers))
	for i := range l.followers {
		out = append(out, l.status(&l.followers[i]))
	}
	return out
}

// Follower returns what the leader knows of follower id, and false if id is
// not a follower of the partition.
func (l *Leader) Follower(id int32) (FollowerStatus, bool) {
	f := l.follower(id)
	if f == nil {
		return FollowerStatus{}, false
	}
	return l.status(f), true
}

func (l *Leader) status(f *follower) FollowerStatus {
	lag := int64(-1)
	if f.logEndOffset != unknownOffset {
		lag = max(0, l.leo-f.logEndOffset)
	}
	return FollowerStatus{
		ID:               f.id,
		LogEndOffset:     f.logEndOffset,
		Lag:              lag,
		LastCaughtUpTime: f.lastCaughtUpTime,
		LastFetchTime:    f.lastFetchTime,
		InSync:           slices.Contains(l.isr, f.id),
		Eligible:         !l.ineligible[f.id],
	}
}
