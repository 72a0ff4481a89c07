package replica

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const lag = DefaultReplicaLagTimeMax

// mustLeader makes broker 1 the leader of replicas 1,2,3 with the given ISR
// at t0, and fails the test on an error.
func mustLeader(t *testing.T, cfg Config, isr []int32, log LogOffsets) *Leader {
	t.Helper()
	l, err := NewLeader(cfg, 1, PartitionState{LeaderEpoch: 1, PartitionEpoch: 1, Replicas: []int32{1, 2, 3}, ISR: isr}, log, t0)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustFetch(t *testing.T, l *Leader, id int32, offset int64, now time.Time) bool {
	t.Helper()
	moved, err := l.FollowerFetched(id, offset, now)
	if err != nil {
		t.Fatal(err)
	}
	return moved
}

// mustCommit takes the proposal in flight and commits it as proposed, with
// the partition epoch bumped.
func mustCommit(t *testing.T, l *Leader, now time.Time) AlterPartition {
	t.Helper()
	p, ok := l.InFlight()
	if !ok {
		t.Fatal("no proposal in flight")
	}
	if _, err := l.Committed(p, LeaderAndISR{LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch + 1, ISR: p.ISR}, now); err != nil {
		t.Fatal(err)
	}
	return p
}

func ids(s ...int32) []int32 { return s }

func TestNewLeaderRefusesBadState(t *testing.T) {
	ok := PartitionState{LeaderEpoch: 1, PartitionEpoch: 1, Replicas: ids(1, 2, 3), ISR: ids(1, 2)}
	okLog := LogOffsets{LogEndOffset: 10, HighWatermark: 5, EpochStartOffset: 10}
	tests := []struct {
		name string
		p    func(*PartitionState)
		log  func(*LogOffsets)
	}{
		{"leader not assigned", func(p *PartitionState) { p.Replicas = ids(2, 3) }, nil},
		{"leader not in ISR", func(p *PartitionState) { p.ISR = ids(2, 3) }, nil},
		{"ISR member not assigned", func(p *PartitionState) { p.ISR = ids(1, 4) }, nil},
		{"replica twice", func(p *PartitionState) { p.Replicas = ids(1, 2, 2) }, nil},
		{"ISR member twice", func(p *PartitionState) { p.ISR = ids(1, 1) }, nil},
		{"negative epoch", func(p *PartitionState) { p.LeaderEpoch = -1 }, nil},
		{"HW above LEO", nil, func(o *LogOffsets) { o.HighWatermark = 11 }},
		{"negative HW", nil, func(o *LogOffsets) { o.HighWatermark = -1 }},
		{"epoch start above LEO", nil, func(o *LogOffsets) { o.EpochStartOffset = 11 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, log := ok, okLog
			p.Replicas, p.ISR = slices.Clone(ok.Replicas), slices.Clone(ok.ISR)
			if tt.p != nil {
				tt.p(&p)
			}
			if tt.log != nil {
				tt.log(&log)
			}
			if _, err := NewLeader(Config{}, 1, p, log, t0); !errors.Is(err, ErrInvalidPartitionState) {
				t.Fatalf("got %v, want ErrInvalidPartitionState", err)
			}
		})
	}
	if _, err := NewLeader(Config{}, 1, ok, okLog, t0); err != nil {
		t.Fatalf("valid state: %v", err)
	}
}

func TestNewLeaderStart(t *testing.T) {
	// Alone in its ISR: the HW follows the leader at once.
	l := mustLeader(t, Config{}, ids(1), LogOffsets{LogEndOffset: 10, HighWatermark: 4, EpochStartOffset: 10})
	if l.HighWatermark() != 10 {
		t.Fatalf("alone in the ISR: HW %d, want 10", l.HighWatermark())
	}
	// With followers in the ISR, whose LEOs are unknown: the HW waits.
	l = mustLeader(t, Config{}, ids(1, 2, 3), LogOffsets{LogEndOffset: 10, HighWatermark: 4, EpochStartOffset: 10})
	if l.HighWatermark() != 4 {
		t.Fatalf("followers unknown: HW %d, want 4", l.HighWatermark())
	}
	for _, f := range l.Followers() {
		if f.LogEndOffset != -1 || f.Lag != -1 || f.LastCaughtUpTime != t0 || !f.LastFetchTime.IsZero() || !f.InSync {
			t.Fatalf("follower at start: %+v", f)
		}
	}
}

func TestShrinkOnlyAfterLagTime(t *testing.T) {
	tests := []struct {
		name string
		// f2 is what follower 2 does; follower 3 stays caught up.
		f2         func(l *Leader)
		tick       time.Duration
		wantShrink bool
	}{
		{"never fetched, at exactly the lag", func(*Leader) {}, lag, false},
		{"never fetched, past the lag", func(*Leader) {}, lag + time.Millisecond, true},
		{
			"stuck behind since t=1s",
			func(l *Leader) { l.FollowerFetched(2, 5, at(time.Second)) },
			lag + time.Millisecond, true,
		},
		{
			"caught up at 1s, stuck since",
			func(l *Leader) { l.FollowerFetched(2, 10, at(time.Second)) },
			lag + time.Second, false,
		},
		{
			"caught up at 1s, stuck since, past the lag",
			func(l *Leader) { l.FollowerFetched(2, 10, at(time.Second)) },
			lag + time.Second + time.Millisecond, true,
		},
		{
			// The leader's LEO has not moved: a follower with the whole log
			// is in sync however long ago it fetched.
			"has the leader's whole log",
			func(l *Leader) {
				l.LeaderAppended(20, at(500*time.Millisecond))
				l.FollowerFetched(2, 20, at(time.Second))
			},
			time.Hour, false,
		},
		{
			// Ahead of the LEO the leader reported (it fsynced first).
			"ahead of the leader",
			func(l *Leader) { l.FollowerFetched(2, 25, at(time.Second)) },
			time.Hour, false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustLeader(t, Config{}, ids(1, 2, 3), LogOffsets{LogEndOffset: 10, HighWatermark: 0, EpochStartOffset: 10})
			tt.f2(l)
			l.LeaderAppended(20, at(2*time.Second))
			// Follower 3 keeps fetching the whole log.
			mustFetch(t, l, 3, 20, at(tt.tick))
			l.Tick(at(tt.tick))
			p, ok := l.TakeProposal()
			if ok != tt.wantShrink {
				t.Fatalf("proposal %+v %v, want shrink %v", p, ok, tt.wantShrink)
			}
			if ok && (p.Expand || !slices.Equal(p.Changed, ids(2)) || !slices.Equal(p.ISR, ids(1, 3))) {
				t.Fatalf("proposal %+v, want follower 2 removed", p)
			}
		})
	}
}

func TestSteadyProduceKeepsSlowFollowerInSync(t *testing.T) {
	// The leader appends 10 records every 100 ms for two minutes; follower 2
	// always fetches what the leader had at its previous fetch, so it is
	// never at the leader's LEO but never more than 100 ms from it.
	l := mustLeader(t, Config{}, ids(1, 2), LogOffsets{})
	var prev int64
	for ms := time.Duration(0); ms <= 2*time.Minute; ms += 100 * time.Millisecond {
		now := at(ms)
		l.LeaderAppended(l.LogEndOffset()+10, now)
		mustFetch(t, l, 2, prev, now)
		prev = l.LogEndOffset()
		l.Tick(now)
		if p, ok := l.InFlight(); ok {
			t.Fatalf("at %v: proposed %+v for a follower 100 ms behind", ms, p)
		}
	}
	f, _ := l.Follower(2)
	if l.LogEndOffset()-f.LogEndOffset != 10 || l.HighWatermark() != f.LogEndOffset {
		t.Fatalf("leader LEO %d, follower %+v, HW %d", l.LogEndOffset(), f, l.HighWatermark())
	}
}

func TestExpandConditions(t *testing.T) {
	tests := []struct {
		name string
		// The leader has LEO 100, HW 50, epoch start 80; follower 3 is out
		// of the ISR and fetches at offset.
		offset     int64
		ineligible bool
		inflight   bool
		wantExpand bool
	}{
		{"below the HW", 40, false, false, false},
		{"at the HW, below the epoch start", 60, false, false, false},
		{"at the epoch start", 80, false, false, true},
		{"at the LEO", 100, false, false, true},
		{"fenced", 100, true, false, false},
		{"another proposal in flight", 100, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewLeader(Config{}, 1,
				PartitionState{LeaderEpoch: 1, PartitionEpoch: 1, Replicas: ids(1, 2, 3, 4), ISR: ids(1, 2, 4)},
				LogOffsets{LogEndOffset: 100, HighWatermark: 50, EpochStartOffset: 80}, t0)
			if err != nil {
				t.Fatal(err)
			}
			mustFetch(t, l, 2, 100, at(time.Second))
			if tt.inflight {
				// Follower 4 never fetches: its removal goes in flight.
				mustFetch(t, l, 2, 100, at(lag+2*time.Second))
				l.Tick(at(lag + 2*time.Second))
				if p, ok := l.TakeProposal(); !ok || p.Expand {
					t.Fatalf("no shrink in flight: %+v", p)
				}
			}
			if tt.ineligible {
				l.SetEligible(3, false, at(time.Second))
			}
			mustFetch(t, l, 3, tt.offset, at(lag+3*time.Second))
			p, ok := l.TakeProposal()
			if ok != tt.wantExpand {
				t.Fatalf("proposal %+v %v, want expand %v", p, ok, tt.wantExpand)
			}
			if ok && (!p.Expand || !slices.Equal(p.ISR, ids(1, 2, 3, 4)) || !slices.Equal(p.Changed, ids(3)) ||
				p.LeaderEpoch != 1 || p.PartitionEpoch != 1) {
				t.Fatalf("proposal %+v, want follower 3 added at epochs 1/1", p)
			}
		})
	}
}

func TestOneProposalInFlight(t *testing.T) {
	l := mustLeader(t, Config{}, ids(1, 2), LogOffsets{LogEndOffset: 10})
	// Follower 2 never fetches; follower 3 (outside the ISR) catches up
	// after follower 2's removal was proposed.
	l.Tick(at(lag + time.Second))
	shrink, ok := l.TakeProposal()
	if !ok || shrink.Expand {
		t.Fatalf("want a shrink, got %+v %v", shrink, ok)
	}
	if p, ok := l.TakeProposal(); ok {
		t.Fatalf("the same proposal handed out twice: %+v", p)
	}
	mustFetch(t, l, 3, 10, at(lag+2*time.Second))
	l.Tick(at(lag + 3*time.Second))
	if p, ok := l.InFlight(); !ok || p.seq != shrink.seq {
		t.Fatalf("in flight %+v, want the shrink still", p)
	}
	if _, ok := l.TakeProposal(); ok {
		t.Fatal("a second proposal while one is in flight")
	}
	mustCommit(t, l, at(lag+4*time.Second))
	if !slices.Equal(l.ISR(), ids(1)) || l.PartitionEpoch() != 2 {
		t.Fatalf("ISR %v partition epoch %d after the shrink", l.ISR(), l.PartitionEpoch())
	}
	// Now follower 3's next fetch proposes it.
	mustFetch(t, l, 3, 10, at(lag+5*time.Second))
	if p, ok := l.TakeProposal(); !ok || !p.Expand || !slices.Equal(p.ISR, ids(1, 3)) || p.PartitionEpoch != 2 {
		t.Fatalf("want follower 3 proposed at partition epoch 2, got %+v %v", p, ok)
	}
}

func TestFailedReturnsToCommitted(t *testing.T) {
	l := mustLeader(t, Config{}, ids(1, 2), LogOffsets{LogEndOffset: 10})
	mustFetch(t, l, 2, 10, at(time.Second))
	mustFetch(t, l, 3, 10, at(time.Second))
	p, ok := l.TakeProposal()
	if !ok || !p.Expand {
		t.Fatalf("want an expansion, got %+v", p)
	}
	if !slices.Equal(l.MaximalISR(), ids(1, 2, 3)) || !slices.Equal(l.ISR(), ids(1, 2)) {
		t.Fatalf("pending: maximal %v committed %v", l.MaximalISR(), l.ISR())
	}
	if _, err := l.Failed(p, at(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.InFlight(); ok || !slices.Equal(l.MaximalISR(), ids(1, 2)) || !slices.Equal(l.ISR(), ids(1, 2)) || l.PartitionEpoch() != 1 {
		t.Fatalf("after failure: maximal %v committed %v partition epoch %d", l.MaximalISR(), l.ISR(), l.PartitionEpoch())
	}
	// The failed proposal's answer again, or a commit of it: stale.
	if _, err := l.Failed(p, at(2*time.Second)); !errors.Is(err, ErrStaleAlterPartition) {
		t.Fatalf("failing it twice: %v", err)
	}
	if _, err := l.Committed(p, LeaderAndISR{LeaderEpoch: 1, PartitionEpoch: 2, ISR: p.ISR}, at(2*time.Second)); !errors.Is(err, ErrStaleAlterPartition) {
		t.Fatalf("committing a failed proposal: %v", err)
	}
	// The next fetch proposes again: a new proposal, which the old one's
	// answer cannot settle.
	mustFetch(t, l, 3, 10, at(3*time.Second))
	again, ok := l.TakeProposal()
	if !ok || !slices.Equal(again.ISR, p.ISR) {
		t.Fatalf("want the expansion again, got %+v %v", again, ok)
	}
	if _, err := l.Committed(p, LeaderAndISR{LeaderEpoch: 1, PartitionEpoch: 2, ISR: p.ISR}, at(3*time.Second)); !errors.Is(err, ErrStaleAlterPartition) {
		t.Fatalf("the old proposal's answer settled the new one: %v", err)
	}
}

func TestCommittedStaleOrInvalidKeepsInFlight(t *testing.T) {
	tests := []struct {
		name   string
		answer LeaderAndISR
		want   error
	}{
		{"another leader epoch", LeaderAndISR{LeaderEpoch: 2, PartitionEpoch: 2, ISR: ids(1, 2, 3)}, ErrStaleAlterPartition},
		{"older partition epoch", LeaderAndISR{LeaderEpoch: 1, PartitionEpoch: 0, ISR: ids(1, 2, 3)}, ErrStaleAlterPartition},
		{"ISR without the leader", LeaderAndISR{LeaderEpoch: 1, PartitionEpoch: 2, ISR: ids(2, 3)}, ErrInvalidPartitionState},
		{"ISR member not assigned", LeaderAndISR{LeaderEpoch: 1, PartitionEpoch: 2, ISR: ids(1, 2, 9)}, ErrInvalidPartitionState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustLeader(t, Config{}, ids(1, 2), LogOffsets{LogEndOffset: 10})
			mustFetch(t, l, 3, 10, at(time.Second))
			p, _ := l.TakeProposal()
			if _, err := l.Committed(p, tt.answer, at(2*time.Second)); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if q, ok := l.InFlight(); !ok || q.seq != p.seq || !slices.Equal(l.ISR(), ids(1, 2)) {
				t.Fatalf("after an ignored answer: in flight %+v %v, ISR %v", q, ok, l.ISR())
			}
		})
	}
	// The controller's ISR wins over the proposed one.
	l := mustLeader(t, Config{}, ids(1, 2), LogOffsets{LogEndOffset: 10})
	mustFetch(t, l, 3, 10, at(time.Second))
	p, _ := l.TakeProposal()
	if _, err := l.Committed(p, LeaderAndISR{LeaderEpoch: 1, PartitionEpoch: 5, ISR: ids(3, 1)}, at(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.ISR(), ids(1, 3)) || l.PartitionEpoch() != 5 {
		t.Fatalf("ISR %v partition epoch %d, want the controller's [1 3] at 5", l.ISR(), l.PartitionEpoch())
	}
}

func TestMaximalISRHoldsHighWatermark(t *testing.T) {
	t.Run("pending expansion counts the joining follower", func(t *testing.T) {
		l := mustLeader(t, Config{}, ids(1, 2), LogOffsets{LogEndOffset: 100, HighWatermark: 100, EpochStartOffset: 100})
		mustFetch(t, l, 2, 100, at(time.Second))
		mustFetch(t, l, 3, 100, at(time.Second))
		p, ok := l.TakeProposal()
		if !ok || !p.Expand {
			t.Fatal("no expansion")
		}
		// Well past the lag, follower 3 no longer counts as caught up; it
		// holds the HW only because its expansion is pending.
		later := at(lag + 10*time.Second)
		l.LeaderAppended(150, later)
		mustFetch(t, l, 2, 150, later)
		if l.HighWatermark() != 100 {
			t.Fatalf("HW %d, want 100 (follower 3 is joining)", l.HighWatermark())
		}
		if moved, err := l.Failed(p, later); err != nil || !moved || l.HighWatermark() != 150 {
			t.Fatalf("after the expansion failed: moved %v err %v HW %d, want 150", moved, err, l.HighWatermark())
		}
	})
	t.Run("pending shrink still counts the leaving follower", func(t *testing.T) {
		l := mustLeader(t, Config{}, ids(1, 2, 3), LogOffsets{LogEndOffset: 100, HighWatermark: 0, EpochStartOffset: 100})
		mustFetch(t, l, 3, 60, at(time.Second))
		mustFetch(t, l, 2, 100, at(time.Second))
		if l.HighWatermark() != 60 {
			t.Fatalf("HW %d, want 60", l.HighWatermark())
		}
		later := at(lag + 2*time.Second)
		mustFetch(t, l, 2, 100, later)
		l.Tick(later)
		p, ok := l.TakeProposal()
		if !ok || p.Expand || !slices.Equal(p.Changed, ids(3)) {
			t.Fatalf("want follower 3 removed, got %+v", p)
		}
		l.LeaderAppended(120, later)
		mustFetch(t, l, 2, 120, later)
		if l.HighWatermark() != 60 || !slices.Equal(l.MaximalISR(), ids(1, 2, 3)) {
			t.Fatalf("HW %d maximal %v, want 60 with 3 still in", l.HighWatermark(), l.MaximalISR())
		}
		moved, err := l.Committed(p, LeaderAndISR{LeaderEpoch: 1, PartitionEpoch: 2, ISR: p.ISR}, later)
		if err != nil || !moved || l.HighWatermark() != 120 {
			t.Fatalf("after the shrink committed: moved %v err %v HW %d, want 120", moved, err, l.HighWatermark())
		}
	})
	t.Run("caught-up follower outside the ISR holds it while eligible", func(t *testing.T) {
		l := mustLeader(t, Config{}, ids(1, 2), LogOffsets{LogEndOffset: 100, HighWatermark: 50, EpochStartOffset: 100})
		// Follower 3 reaches the leader's LEO while fenced, so it is not
		// proposed, then is unfenced; the leader appends and follower 2
		// follows.
		l.SetEligible(3, false, at(0))
		mustFetch(t, l, 3, 100, at(time.Second))
		l.SetEligible(3, true, at(time.Second))
		if _, ok := l.InFlight(); ok {
			t.Fatal("an ineligible follower was proposed")
		}
		l.LeaderAppended(150, at(2*time.Second))
		mustFetch(t, l, 2, 150, at(2*time.Second))
		// Follower 3 was caught up at 1s: within the lag it holds the HW.
		if l.HighWatermark() != 100 {
			t.Fatalf("HW %d, want 100 (follower 3 is caught up and eligible)", l.HighWatermark())
		}
		// Fenced, it no longer does.
		if moved := l.SetEligible(3, false, at(3*time.Second)); !moved || l.HighWatermark() != 150 {
			t.Fatalf("fenced follower 3: moved %v HW %d, want 150", moved, l.HighWatermark())
		}
	})
	t.Run("ineligible follower in the ISR still counts", func(t *testing.T) {
		l := mustLeader(t, Config{}, ids(1, 2, 3), LogOffsets{LogEndOffset: 100, HighWatermark: 0, EpochStartOffset: 100})
		l.SetEligible(3, false, at(0))
		mustFetch(t, l, 2, 100, at(time.Second))
		mustFetch(t, l, 3, 70, at(time.Second))
		if l.HighWatermark() != 70 {
			t.Fatalf("HW %d, want 70", l.HighWatermark())
		}
	})
}

func TestHighWatermarkNeverGoesBack(t *testing.T) {
	l := mustLeader(t, Config{}, ids(1, 2), LogOffsets{LogEndOffset: 100, HighWatermark: 50, EpochStartOffset: 100})
	steps := []struct {
		name string
		do   func()
	}{
		{"follower fetches below the HW", func() { mustFetch(t, l, 2, 10, at(time.Second)) }},
		{"follower reaches 80", func() { mustFetch(t, l, 2, 80, at(2*time.Second)) }},
		{"follower truncated to 60", func() { mustFetch(t, l, 2, 60, at(3*time.Second)) }},
		{"follower 3 below the HW is added by metadata", func() {
			mustFetch(t, l, 3, 20, at(4*time.Second))
			if _, err := l.MakeLeader(PartitionState{LeaderEpoch: 2, PartitionEpoch: 3, Replicas: ids(1, 2, 3), ISR: ids(1, 2, 3)}, at(4*time.Second)); err != nil {
				t.Fatal(err)
			}
		}},
		{"time passes", func() { l.Tick(at(time.Hour)) }},
	}
	hw := l.HighWatermark()
	for _, s := range steps {
		s.do()
		if l.HighWatermark() < hw {
			t.Fatalf("%s: HW went back from %d to %d", s.name, hw, l.HighWatermark())
		}
		hw = l.HighWatermark()
	}
	if hw != 80 {
		t.Fatalf("HW %d, want 80", hw)
	}
}

func TestProduceAdmission(t *testing.T) {
	l := mustLeader(t, Config{MinInsyncReplicas: 2}, ids(1, 2, 3), LogOffsets{})
	if err := l.CheckProduce(-1); err != nil {
		t.Fatal(err)
	}
	l.LeaderAppended(10, at(time.Second))
	if done, err := l.Acked(10); done || err != nil {
		t.Fatalf("before replication: done %v err %v", done, err)
	}
	mustFetch(t, l, 2, 10, at(time.Second))
	mustFetch(t, l, 3, 10, at(time.Second))
	if l.HighWatermark() != 10 {
		t.Fatalf("HW %d", l.HighWatermark())
	}
	// The waiter is not polled yet: meanwhile both followers fall behind
	// and their removal is committed.
	l.LeaderAppended(20, at(2*time.Second))
	l.Tick(at(lag + 2*time.Second))
	mustCommit(t, l, at(lag+2*time.Second))
	if !slices.Equal(l.ISR(), ids(1)) || !l.UnderMinISR() || !l.UnderReplicated() {
		t.Fatalf("ISR %v under min %v", l.ISR(), l.UnderMinISR())
	}
	if done, err := l.Acked(10); !done || !errors.Is(err, ErrNotEnoughReplicasAfterAppend) {
		t.Fatalf("waiter after the shrink: done %v err %v", done, err)
	}
	if err := l.CheckProduce(-1); !errors.Is(err, ErrNotEnoughReplicas) {
		t.Fatalf("acks=all under min ISR: %v", err)
	}
	for _, acks := range []int16{0, 1} {
		if err := l.CheckProduce(acks); err != nil {
			t.Fatalf("acks=%d under min ISR: %v", acks, err)
		}
	}
	// Under min ISR the HW stays, even alone in the ISR.
	if moved := l.LeaderAppended(30, at(lag+3*time.Second)); moved || l.HighWatermark() != 10 {
		t.Fatalf("under min ISR: moved %v HW %d", moved, l.HighWatermark())
	}
	// Follower 2 catches up and rejoins: the HW moves to what both have.
	mustFetch(t, l, 2, 30, at(lag+4*time.Second))
	mustCommit(t, l, at(lag+4*time.Second))
	if l.UnderMinISR() || l.HighWatermark() != 30 {
		t.Fatalf("after rejoin: ISR %v HW %d", l.ISR(), l.HighWatermark())
	}
	if done, err := l.Acked(30); !done || err != nil {
		t.Fatalf("acked at 30: %v %v", done, err)
	}
	if done, err := l.Acked(31); done || err != nil {
		t.Fatalf("acked at 31: %v %v", done, err)
	}
}

func TestEffectiveMinISR(t *testing.T) {
	// min.insync.replicas above the replication factor counts as the
	// replication factor.
	l, err := NewLeader(Config{MinInsyncReplicas: 3}, 1, PartitionState{Replicas: ids(1, 2), ISR: ids(1, 2)}, LogOffsets{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CheckProduce(-1); err != nil || l.UnderMinISR() {
		t.Fatalf("ISR of 2 with min 3 and RF 2: %v", err)
	}
}

func TestFetchErrors(t *testing.T) {
	l := mustLeader(t, Config{}, ids(1, 2), LogOffsets{LogEndOffset: 10})
	for _, id := range []int32{1, 9} {
		if _, err := l.FollowerFetched(id, 5, at(time.Second)); !errors.Is(err, ErrUnknownReplica) {
			t.Fatalf("fetch from %d: %v", id, err)
		}
	}
	if _, err := l.FollowerFetched(2, -1, at(time.Second)); !errors.Is(err, ErrInvalidOffset) {
		t.Fatalf("negative offset: %v", err)
	}
	if f, _ := l.Follower(2); f.LogEndOffset != -1 {
		t.Fatalf("a refused fetch changed the follower: %+v", f)
	}
	if _, ok := l.Follower(9); ok {
		t.Fatal("follower 9 exists")
	}
}

func TestMakeLeader(t *testing.T) {
	l := mustLeader(t, Config{}, ids(1, 2), LogOffsets{LogEndOffset: 10})
	mustFetch(t, l, 2, 10, at(time.Second))
	mustFetch(t, l, 3, 10, at(time.Second))
	p, _ := l.TakeProposal()

	if _, err := l.MakeLeader(PartitionState{LeaderEpoch: 1, PartitionEpoch: 0, Replicas: ids(1, 2, 3), ISR: ids(1)}, at(2*time.Second)); !errors.Is(err, ErrStaleMetadata) {
		t.Fatalf("older partition epoch: %v", err)
	}
	if _, err := l.MakeLeader(PartitionState{LeaderEpoch: 0, PartitionEpoch: 4, Replicas: ids(1, 2, 3), ISR: ids(1)}, at(2*time.Second)); !errors.Is(err, ErrInvalidPartitionState) {
		t.Fatalf("leader epoch going back: %v", err)
	}
	if _, ok := l.InFlight(); !ok {
		t.Fatal("refused metadata dropped the proposal")
	}

	// A new leader epoch with a new assignment: follower 3 leaves, 4 joins.
	l.LeaderAppended(20, at(3*time.Second))
	if _, err := l.MakeLeader(PartitionState{LeaderEpoch: 2, PartitionEpoch: 3, Replicas: ids(4, 1, 2), ISR: ids(1, 2)}, at(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.InFlight(); ok {
		t.Fatal("metadata did not drop the proposal in flight")
	}
	if _, err := l.Committed(p, LeaderAndISR{LeaderEpoch: 1, PartitionEpoch: 2, ISR: p.ISR}, at(3*time.Second)); !errors.Is(err, ErrStaleAlterPartition) {
		t.Fatalf("answer to a dropped proposal: %v", err)
	}
	if l.LeaderEpoch() != 2 || l.PartitionEpoch() != 3 || l.EpochStartOffset() != 20 || !slices.Equal(l.Replicas(), ids(4, 1, 2)) {
		t.Fatalf("epoch %d/%d start %d replicas %v", l.LeaderEpoch(), l.PartitionEpoch(), l.EpochStartOffset(), l.Replicas())
	}
	var got []string
	for _, f := range l.Followers() {
		got = append(got, strings.Join([]string{itoa(f.ID), itoa(f.LogEndOffset), fmtTime(f.LastCaughtUpTime), fmtTime(f.LastFetchTime)}, ":"))
	}
	// Follower 2 keeps its LEO and gets a lag period from the new epoch;
	// follower 4 is new.
	if want := []string{"4:-1:never:never", "2:10:3s:3s"}; !slices.Equal(got, want) {
		t.Fatalf("followers %v, want %v", got, want)
	}
	// Follower 2 at 10 is below the epoch start 20: the HW (10) waits.
	if l.HighWatermark() != 10 {
		t.Fatalf("HW %d", l.HighWatermark())
	}
	// Follower 4 at the HW but below the epoch start cannot join.
	mustFetch(t, l, 4, 15, at(4*time.Second))
	if _, ok := l.InFlight(); ok {
		t.Fatal("follower 4 below the epoch start was proposed")
	}
	mustFetch(t, l, 4, 20, at(5*time.Second))
	if q, ok := l.InFlight(); !ok || !slices.Equal(q.ISR, ids(1, 2, 4)) || q.LeaderEpoch != 2 || q.PartitionEpoch != 3 {
		t.Fatalf("follower 4 at the epoch start: %+v %v", q, ok)
	}
	// Same epochs again (the metadata repeats itself): accepted, drops the
	// proposal.
	if _, err := l.MakeLeader(PartitionState{LeaderEpoch: 2, PartitionEpoch: 3, Replicas: ids(4, 1, 2), ISR: ids(1, 2)}, at(6*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.InFlight(); ok {
		t.Fatal("repeated metadata kept the proposal")
	}
}

func TestLeaderAppendedBackwardsPanics(t *testing.T) {
	l := mustLeader(t, Config{}, ids(1), LogOffsets{LogEndOffset: 10})
	defer func() {
		r := recover()
		if s, _ := r.(string); !strings.HasPrefix(s, "BUG: replica:") {
			t.Fatalf("recovered %v", r)
		}
	}()
	l.LeaderAppended(9, at(time.Second))
}

func itoa[T int32 | int64](v T) string { return strconv.FormatInt(int64(v), 10) }
