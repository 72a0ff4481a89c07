package replica

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"
)

// Property test: random sequences of appends, fetches, ticks, proposals,
// answers, fencing and metadata changes, with the invariants checked after
// every step. Sequences are seeded 1, 2, 3, ... so a failure names the seed
// that reproduces it.

// propertyBudget bounds the test's wall time (it runs as many sequences as
// fit); propertySteps is the length of one sequence.
const (
	propertyBudget      = time.Second
	propertyBudgetShort = 200 * time.Millisecond
	propertySteps       = 300
)

func TestProperties(t *testing.T) {
	budget := propertyBudget
	if testing.Short() {
		budget = propertyBudgetShort
	}
	start := time.Now()
	seqs := 0
	for seed := int64(1); seqs == 0 || time.Since(start) < budget; seed++ {
		r := newRandomRun(seed)
		if err := r.run(propertySteps); err != nil {
			t.Fatalf("seed %d: %v\nlast steps:\n%s", seed, err, r.lastSteps(30))
		}
		seqs++
	}
	t.Logf("%d sequences of %d steps", seqs, propertySteps)
}

// randomRun drives one Leader with random but realistic events: the leader's
// LEO only grows, each follower's fetch offset only grows and never passes
// the leader's LEO, the controller answers proposals as proposed, and the
// metadata only removes members from the ISR (adding is the leader's job).
type randomRun struct {
	rng *rand.Rand
	l   *Leader
	now time.Time
	// fleo is each follower's log end, where its next fetch starts.
	fleo   map[int32]int64
	nextID int32
	trace  []string
}

func newRandomRun(seed int64) *randomRun {
	rng := rand.New(rand.NewSource(seed))
	r := &randomRun{rng: rng, now: t0, fleo: make(map[int32]int64)}
	n := 2 + rng.Intn(4)
	replicas := make([]int32, n)
	for i := range replicas {
		replicas[i] = int32(i + 1)
	}
	rng.Shuffle(n, func(i, j int) { replicas[i], replicas[j] = replicas[j], replicas[i] })
	r.nextID = int32(n + 1)
	self := replicas[rng.Intn(n)]
	isr := []int32{self}
	for _, id := range replicas {
		if id != self && rng.Intn(10) < 6 {
			isr = append(isr, id)
		}
	}
	leo := rng.Int63n(100)
	hw := rng.Int63n(leo + 1)
	for _, id := range replicas {
		if slices.Contains(isr, id) {
			// An ISR member has at least what the HW covers.
			r.fleo[id] = hw + rng.Int63n(leo-hw+1)
		} else {
			r.fleo[id] = rng.Int63n(leo + 1)
		}
	}
	cfg := Config{MinInsyncReplicas: rng.Intn(4), ReplicaLagTimeMax: time.Duration(1+rng.Intn(30)) * time.Second}
	p := PartitionState{LeaderEpoch: int32(rng.Intn(5)), PartitionEpoch: int32(rng.Intn(5)), Replicas: replicas, ISR: isr}
	l, err := NewLeader(cfg, self, p, LogOffsets{LogEndOffset: leo, HighWatermark: hw, EpochStartOffset: leo}, r.now)
	if err != nil {
		panic(fmt.Sprintf("BUG: replica test: %v", err))
	}
	r.l = l
	r.logf("leader self=%d %+v leo=%d hw=%d cfg=%+v", self, p, leo, hw, cfg)
	return r
}

func (r *randomRun) logf(format string, args ...any) {
	r.trace = append(r.trace, fmt.Sprintf("%v: ", r.now.Sub(t0))+fmt.Sprintf(format, args...))
}

func (r *randomRun) lastSteps(n int) string {
	return strings.Join(r.trace[max(0, len(r.trace)-n):], "\n")
}

// snapshot is what the invariants compare before and after a step.
type snapshot struct {
	hw       int64
	inflight AlterPartition
	hasPend  bool
	isr      []int32
}

func (r *randomRun) snap() snapshot {
	p, ok := r.l.InFlight()
	return snapshot{hw: r.l.HighWatermark(), inflight: p, hasPend: ok, isr: r.l.ISR()}
}

func (r *randomRun) followers() []int32 {
	var ids []int32
	for _, id := range r.l.Replicas() {
		if id != r.l.self {
			ids = append(ids, id)
		}
	}
	return ids
}

func (r *randomRun) run(steps int) error {
	if err := r.check(r.snap(), false); err != nil {
		return fmt.Errorf("after NewLeader: %w", err)
	}
	for i := 0; i < steps; i++ {
		if r.rng.Intn(20) == 0 {
			r.now = r.now.Add(time.Duration(r.rng.Int63n(int64(40 * time.Second))))
		} else {
			r.now = r.now.Add(time.Duration(r.rng.Int63n(int64(3 * time.Second))))
		}
		before := r.snap()
		settles, err := r.step()
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		if err := r.check(before, settles); err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
	}
	return nil
}

// step makes one random event and reports whether it may settle or replace
// the proposal in flight.
func (r *randomRun) step() (settles bool, err error) {
	l := r.l
	switch k := r.rng.Intn(100); {
	case k < 25:
		leo := l.LogEndOffset() + r.rng.Int63n(5)
		r.logf("append leo=%d", leo)
		l.LeaderAppended(leo, r.now)
	case k < 60:
		fs := r.followers()
		if r.rng.Intn(20) == 0 || len(fs) == 0 {
			r.logf("fetch from a stranger")
			hw := l.HighWatermark()
			if _, err := l.FollowerFetched(r.nextID+100, 0, r.now); !errors.Is(err, ErrUnknownReplica) {
				return false, fmt.Errorf("fetch from a stranger: %v", err)
			}
			if l.HighWatermark() != hw {
				return false, errors.New("a stranger's fetch moved the HW")
			}
			return false, nil
		}
		id := fs[r.rng.Intn(len(fs))]
		if gap := l.LogEndOffset() - r.fleo[id]; gap > 0 {
			r.fleo[id] += r.rng.Int63n(gap + 1)
		}
		r.logf("fetch %d offset=%d", id, r.fleo[id])
		if _, err := l.FollowerFetched(id, r.fleo[id], r.now); err != nil {
			return false, err
		}
	case k < 75:
		r.logf("tick")
		l.Tick(r.now)
	case k < 85:
		p, ok := l.TakeProposal()
		r.logf("take: %v %+v", ok, p)
		if _, again := l.TakeProposal(); again {
			return false, errors.New("a proposal handed out twice")
		}
	case k < 91:
		p, ok := l.InFlight()
		if !ok {
			return false, nil
		}
		if r.rng.Intn(5) == 0 {
			r.logf("commit at a stale leader epoch %+v", p)
			if _, err := l.Committed(p, LeaderAndISR{LeaderEpoch: p.LeaderEpoch + 1, PartitionEpoch: p.PartitionEpoch + 1, ISR: p.ISR}, r.now); !errors.Is(err, ErrStaleAlterPartition) {
				return false, fmt.Errorf("stale commit: %v", err)
			}
			return false, nil
		}
		r.logf("commit %+v", p)
		if _, err := l.Committed(p, LeaderAndISR{LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch + 1, ISR: p.ISR}, r.now); err != nil {
			return false, err
		}
		return true, nil
	case k < 95:
		p, ok := l.InFlight()
		if !ok {
			return false, nil
		}
		r.logf("fail %+v", p)
		if _, err := l.Failed(p, r.now); err != nil {
			return false, err
		}
		return true, nil
	case k < 98:
		fs := r.followers()
		if len(fs) == 0 {
			return false, nil
		}
		id, eligible := fs[r.rng.Intn(len(fs))], r.rng.Intn(2) == 0
		r.logf("eligible %d %v", id, eligible)
		l.SetEligible(id, eligible, r.now)
	default:
		return true, r.metadata()
	}
	return false, nil
}

// metadata makes a metadata change: the controller may drop ISR members,
// bump the leader epoch, add a new replica or remove one outside the ISR.
func (r *randomRun) metadata() error {
	l := r.l
	p := PartitionState{LeaderEpoch: l.LeaderEpoch(), PartitionEpoch: l.PartitionEpoch() + 1, Replicas: l.Replicas()}
	if r.rng.Intn(2) == 0 {
		p.LeaderEpoch++
	}
	for _, id := range l.ISR() {
		if id == l.self || r.rng.Intn(4) != 0 {
			p.ISR = append(p.ISR, id)
		}
	}
	switch r.rng.Intn(3) {
	case 0:
		id := r.nextID
		r.nextID++
		r.fleo[id] = r.rng.Int63n(l.LogEndOffset() + 1)
		p.Replicas = append(p.Replicas, id)
	case 1:
		p.Replicas = slices.DeleteFunc(p.Replicas, func(id int32) bool {
			return !slices.Contains(p.ISR, id) && r.rng.Intn(2) == 0
		})
	}
	r.logf("metadata %+v", p)
	_, err := l.MakeLeader(p, r.now)
	return err
}

// check verifies the invariants after a step, given the state before it.
func (r *randomRun) check(before snapshot, settles bool) error {
	l := r.l
	hw, leo := l.HighWatermark(), l.LogEndOffset()
	if hw > leo {
		return fmt.Errorf("HW %d above the leader's LEO %d", hw, leo)
	}
	if hw < before.hw {
		return fmt.Errorf("HW went back from %d to %d", before.hw, hw)
	}
	maximal := l.MaximalISR()
	for _, id := range maximal {
		if id == l.self {
			continue
		}
		f, ok := l.Follower(id)
		if !ok {
			return fmt.Errorf("maximal ISR member %d is not a follower", id)
		}
		if f.LogEndOffset == unknownOffset {
			if hw != before.hw {
				return fmt.Errorf("HW moved to %d while member %d's LEO is unknown", hw, id)
			}
		} else if hw > f.LogEndOffset {
			return fmt.Errorf("HW %d above member %d's LEO %d", hw, id, f.LogEndOffset)
		}
	}
	if !slices.Contains(l.ISR(), l.self) || !slices.Contains(maximal, l.self) {
		return fmt.Errorf("leader %d not in ISR %v / maximal %v", l.self, l.ISR(), maximal)
	}
	p, pending := l.InFlight()
	if pending && !slices.Contains(p.ISR, l.self) {
		return fmt.Errorf("proposal %+v drops the leader", p)
	}
	if before.hasPend && !settles && (!pending || p.seq != before.inflight.seq) {
		return fmt.Errorf("proposal in flight %+v replaced by %+v %v", before.inflight, p, pending)
	}
	if pending && (!before.hasPend || p.seq != before.inflight.seq) {
		if err := r.checkNewProposal(p, before); err != nil {
			return err
		}
	}
	if l.UnderMinISR() && hw != before.hw {
		return fmt.Errorf("HW moved from %d to %d under min ISR (ISR %v)", before.hw, hw, l.ISR())
	}
	minISR := min(l.cfg.MinInsyncReplicas, len(l.Replicas()))
	if err := l.CheckProduce(-1); (err != nil) != (len(l.ISR()) < minISR) {
		return fmt.Errorf("CheckProduce(-1) = %v with ISR %v and min ISR %d", err, l.ISR(), minISR)
	}
	required := r.rng.Int63n(leo + 2)
	done, err := l.Acked(required)
	if done != (hw >= required) || (err != nil) != (done && len(maximal) < minISR) {
		return fmt.Errorf("Acked(%d) = %v, %v with HW %d, maximal ISR %v, min ISR %d", required, done, err, hw, maximal, minISR)
	}
	return nil
}

// checkNewProposal checks a proposal made in this step against the state
// the step started from.
func (r *randomRun) checkNewProposal(p AlterPartition, before snapshot) error {
	l := r.l
	if p.LeaderEpoch != l.LeaderEpoch() || p.PartitionEpoch != l.PartitionEpoch() {
		return fmt.Errorf("proposal %+v not based on epochs %d/%d", p, l.LeaderEpoch(), l.PartitionEpoch())
	}
	for _, id := range p.Changed {
		f, ok := l.Follower(id)
		if !ok {
			return fmt.Errorf("proposal %+v changes a non-follower", p)
		}
		if p.Expand {
			if f.InSync || !f.Eligible || f.LogEndOffset < before.hw || f.LogEndOffset < l.EpochStartOffset() {
				return fmt.Errorf("expansion %+v of follower %+v (HW %d, epoch start %d)", p, f, before.hw, l.EpochStartOffset())
			}
			continue
		}
		if !f.InSync {
			return fmt.Errorf("shrink %+v of follower %+v outside the ISR", p, f)
		}
		if f.LogEndOffset >= l.LogEndOffset() {
			return fmt.Errorf("shrink %+v of follower %+v that has the leader's LEO %d", p, f, l.LogEndOffset())
		}
	}
	return nil
}
