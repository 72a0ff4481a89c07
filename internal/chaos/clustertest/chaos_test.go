package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/chaos/checker"
	"github.com/sluice-io/sluice/internal/chaos/nemesis"
)

// The nemesis.
const (
	// defaultRounds is how many faults a run injects (CHAOS_ROUNDS):
	// `go test` runs this short version, `make chaos` 40.
	defaultRounds = 4
	// maxEnvRounds bounds CHAOS_ROUNDS.
	maxEnvRounds = 10_000
	// minHold and maxHold bound how long a fault holds: longer than
	// broker.session.timeout.ms (1.5 s) so that a fault can fence a
	// broker and move its leaderships, short enough for many rounds.
	minHold = 2 * time.Second
	maxHold = 6 * time.Second
	// gap is the healed pause between two faults.
	gap = 2 * time.Second
	// maxLinkDelay bounds the delay of a DelayLinks fault: from a tenth
	// of it (no harm) to about the session timeout (fencing by delay).
	maxLinkDelay = 1500 * time.Millisecond
	// roundBudget is the most one round may take: its hold, the gap, a
	// restart after kill -9 and the Target's metadata request.
	roundBudget = maxHold + gap + 30*time.Second
	// fixedBudget bounds everything but the rounds and the rotation:
	// build, start, topic, settling, restoring the replicas the operator
	// moved, finishing the producers and the final reads.
	fixedBudget = 2*time.Minute + restoreTimeout + settleTimeout + flushTimeout + 2*readBackTimeout
	// rotationNodeBudget is what rotateLeaders and readEveryReplica take
	// per node on a cluster that works: a clean stop, reads and a
	// restart, and the reads from the replicas the rotation missed.
	rotationNodeBudget = time.Minute + partitions*leadTimeout/voterCount
	// settleTimeout bounds the wait, after the last fault is healed, for
	// every partition to have a leader and a full ISR.
	settleTimeout = 90 * time.Second
	// listedViolations is how many violations a failure report lists.
	listedViolations = 50
)

// summary is the one-line JSON result of a run, in the test log and
// appended to $CHAOS_REPORT.
type summary struct {
	Seed           uint64         `json:"seed"`
	Rounds         int            `json:"rounds"`
	Faults         map[string]int `json:"faults"`
	Acked          int            `json:"acked"`
	Unknown        int            `json:"unknown"`
	Observed       int            `json:"observed"`
	Violations     int            `json:"violations"`
	Availability   float64        `json:"availability"`
	LongestOutageS float64        `json:"longest_outage_s"`
	MaxAckLatencyS float64        `json:"max_ack_latency_s"`
	// Nodes is how many nodes ran: 3, or 4 with CHAOS_DRAIN=1.
	Nodes int `json:"nodes"`
	// Reassignments is what the operator did (with CHAOS_DRAIN=1, the
	// drains' partition moves); absent with CHAOS_REASSIGN=0.
	Reassignments *reassignSummary `json:"reassignments,omitempty"`
	// Drains is what the drain operator did; only with CHAOS_DRAIN=1.
	Drains          *drainSummary `json:"drains,omitempty"`
	Settled         bool          `json:"settled"`
	SettleS         float64       `json:"settle_s"`
	WallS           float64       `json:"wall_s"`
	Passed          bool          `json:"passed"`
	FailureMessages []string      `json:"failures,omitempty"`
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster chaos test: builds sluice and runs a 3-node cluster (4 with CHAOS_DRAIN=1) under faults; skipped under -short")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	rounds := envInt(t, "CHAOS_ROUNDS", defaultRounds)
	seed := envSeed(t)
	reassign := envReassign(t)
	drain := envDrain(t)
	if drain && !reassign {
		t.Fatal("CHAOS_DRAIN=1 drains brokers with reassignments: drop CHAOS_REASSIGN=0")
	}
	nodes := voterCount
	if drain {
		nodes = drainNodes
	}
	t.Logf("seed %d (CHAOS_SEED=%d replays the same faults), %d rounds, %d nodes, reassignments %v, drains %v", seed, seed, rounds, nodes, reassign, drain)

	budget := fixedBudget + time.Duration(nodes)*rotationNodeBudget + time.Duration(rounds)*roundBudget
	if dl, ok := t.Deadline(); ok {
		budget = min(budget, time.Until(dl)-30*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()

	start := time.Now()
	dir := logDir(t)
	elog, err := newEventLog(filepath.Join(dir, "chaos.log"), start)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := elog.close(); err != nil {
			t.Errorf("event log: %v", err)
		}
	})
	logf := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		elog.line(s)
		t.Logf("+%.1fs %s", time.Since(start).Seconds(), s)
	}

	c := startCluster(ctx, t, dir, elog, nodes)
	logf("cluster up in %v: %s", time.Since(start).Round(time.Millisecond), c.layout())
	if err := c.createTopic(ctx); err != nil {
		t.Fatalf("%v\n%s", err, c.tails())
	}
	m, err := c.waitSettled(ctx, settleTimeout)
	if err != nil {
		t.Fatalf("the new topic: %v\n%s", err, c.tails())
	}
	logf("topic %s ready: %s", topic, describe(m))

	h := newHistory(time.Now())
	w, err := startWorkload(ctx, c, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.close)
	select {
	case <-h.firstAck:
	case <-time.After(firstAckTimeout):
		t.Fatalf("no record acknowledged within %v on the healthy cluster; produce errors: %s\n%s", firstAckTimeout, h.failureSummary(), c.tails())
	}

	fw := &faultWatch{}
	nem, err := nemesis.New(nemesis.Config{
		Nodes: c.nemesisNodes(), Seed: seed, Rounds: rounds,
		MinHold: minHold, MaxHold: maxHold, Gap: gap, MaxDelay: maxLinkDelay,
		Target: c.target(ctx, logf),
		Logf: func(format string, args ...any) {
			s := fmt.Sprintf(format, args...)
			fw.line(s)
			logf("%s", s)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The operator reassigns partitions, or drains brokers, while the
	// nemesis runs.
	var op *operator
	var dr *drainer
	opDone := make(chan struct{})
	opCtx, opStop := context.WithCancel(ctx)
	defer opStop()
	switch {
	case drain:
		if dr, err = newDrainer(c, seed, fw, logf); err != nil {
			t.Fatal(err)
		}
		op = dr.operator
		t.Cleanup(op.close)
		go func() {
			defer close(opDone)
			dr.run(opCtx)
		}()
	case reassign:
		if op, err = newOperator(c, seed, fw, logf); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(op.close)
		go func() {
			defer close(opDone)
			op.run(opCtx)
		}()
	default:
		close(opDone)
	}
	faults, nemErr := nem.Run(ctx)
	opStop()
	<-opDone

	var failures []string
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	if nemErr != nil {
		fail("nemesis: %v", nemErr)
	}
	if op != nil {
		if err := op.restore(ctx); err != nil {
			fail("restoring the replicas after the reassignments: %v", err)
		}
	}
	settleStart := time.Now()
	m, settleErr := c.waitSettled(ctx, settleTimeout)
	settle := time.Since(settleStart)
	if settleErr != nil {
		fail("after healing: %v", settleErr)
	} else {
		logf("settled in %v: %s", settle.Round(time.Millisecond), describe(m))
	}
	stopAt := time.Now()
	if err := w.finish(); err != nil {
		fail("stopping the workload: %v", err)
	}
	acked, unknown, observed := h.counts()
	logf("workload stopped: %d acked, %d unknown, %d observed by the live consumers", acked, unknown, observed)

	// read_committed first: the log only grows, so the read_uncommitted
	// read after it holds every offset it shows.
	committedRecs, errC := readBack(ctx, c, true)
	if errC != nil {
		fail("final read_committed read: %v", errC)
	}
	uncommittedRecs, errU := readBack(ctx, c, false)
	if errU != nil {
		fail("final read_uncommitted read: %v", errU)
	}
	logf("read back %d records read_committed, %d read_uncommitted", len(committedRecs), len(uncommittedRecs))
	if down := c.notRunning(); down != "" {
		fail("nodes not running at the end: %s", down)
	}
	// Read the other replicas too, unless the cluster is broken already.
	if len(failures) == 0 {
		rot, err := rotateLeaders(ctx, c, logf)
		if err != nil {
			fail("leader rotation: %v", err)
		} else if err := readEveryReplica(ctx, c, &rot, logf); err != nil {
			fail("reading every replica: %v", err)
		}
		logf("rotation and replica sweep read %d records read_committed, %d read_uncommitted; leaders read per partition: %v",
			len(rot.committed), len(rot.uncommitted), rot.leaders)
		committedRecs = append(committedRecs, rot.committed...)
		uncommittedRecs = append(uncommittedRecs, rot.uncommitted...)
	}

	hist := h.checkerHistory(committedRecs, uncommittedRecs)
	res := checker.Check(hist)
	if !res.OK() {
		fail("checker: %v", res)
	}
	avail := h.avail.Report(stopAt)

	sum := summary{
		Seed: seed, Rounds: len(faults), Faults: map[string]int{}, Nodes: nodes,
		Acked: acked, Unknown: unknown, Observed: observed, Violations: res.TotalViolations,
		Availability: avail.Availability, LongestOutageS: avail.LongestOutage.Seconds(), MaxAckLatencyS: avail.MaxLatency.Seconds(),
		Settled: settleErr == nil, SettleS: settle.Seconds(), WallS: time.Since(start).Seconds(),
		Passed: len(failures) == 0, FailureMessages: failures,
	}
	for _, f := range faults {
		sum.Faults[f.Kind.String()]++
	}
	if op != nil {
		rs := op.summary()
		sum.Reassignments = &rs
	}
	if dr != nil {
		ds := dr.drainSummary()
		sum.Drains = &ds
	}
	writeSummary(t, sum)
	t.Logf("checker: %v", res)
	t.Logf("%v", avail)
	if fs := h.failureSummary(); fs != "" {
		t.Logf("produce failures: %s", fs)
	}
	if len(failures) == 0 {
		return
	}
	if err := writeHistory(filepath.Join(dir, "history.json"), hist); err != nil {
		t.Logf("saving the history: %v", err)
	}
	replay := fmt.Sprintf("CHAOS_SEED=%d CHAOS_ROUNDS=%d", seed, rounds)
	if !reassign {
		replay += " CHAOS_REASSIGN=0"
	}
	if drain {
		replay += " CHAOS_DRAIN=1"
	}
	t.Errorf("chaos run failed (seed %d: %s replays the faults and the operator's choices):\n%s\n%s\nrounds: %s\n%s\nacked %d, unknown %d, observed %d\nnode output, data dirs and history in %s\n%s",
		seed, replay, strings.Join(failures, "\n"), report(res), listFaults(faults), avail, acked, unknown, observed, dir, c.tails())
}

// layout is where each node and its proxies are.
func (c *cluster) layout() string {
	var parts []string
	for _, n := range c.nodes {
		if !n.voter {
			parts = append(parts, fmt.Sprintf("node%d pid %d at %s (kafka proxy %s, broker only)",
				n.id, n.proc.PID(), n.listen, n.kafkaProxy.Addr()))
			continue
		}
		parts = append(parts, fmt.Sprintf("node%d pid %d at %s (kafka proxy %s, controller %s via %s)",
			n.id, n.proc.PID(), n.listen, n.kafkaProxy.Addr(), n.controller, n.controllerProxy.Addr()))
	}
	return strings.Join(parts, "; ")
}

// report lists the checker's first violations.
func report(res checker.Result) string {
	var b strings.Builder
	for i, v := range res.Violations {
		if i == listedViolations {
			fmt.Fprintf(&b, "  ... %d more\n", res.TotalViolations-listedViolations)
			break
		}
		fmt.Fprintf(&b, "  %v\n", v)
	}
	return b.String()
}

func listFaults(fs []nemesis.Fault) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%d: %v", i+1, f)
	}
	return strings.Join(parts, "; ")
}

// writeSummary logs the one-line summary and appends it to $CHAOS_REPORT.
func writeSummary(t *testing.T, s summary) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("BUG: summary: %v", err)
	}
	t.Logf("chaos summary: %s", b)
	path := os.Getenv("CHAOS_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Errorf("CHAOS_REPORT: %v", err)
	}
}

// writeHistory saves a failed run's history, from which checker.Check
// replays the verdict.
func writeHistory(path string, h checker.History) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// logDir is where the nodes' output and data go: $CHAOS_LOGDIR (kept), or
// a temporary dir removed after the test unless it failed.
func logDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("CHAOS_LOGDIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("CHAOS_LOGDIR: %v", err)
		}
		d, err := os.MkdirTemp(d, "run-")
		if err != nil {
			t.Fatalf("CHAOS_LOGDIR: %v", err)
		}
		t.Logf("node output and data in %s", d)
		return d
	}
	d, err := os.MkdirTemp("", "sluice-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept %s (the nodes' output in chaos.log, their data dirs, the history)", d)
			return
		}
		os.RemoveAll(d)
	})
	return d
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxEnvRounds {
		t.Fatalf("%s=%q: want a number from 1 to %d", name, s, maxEnvRounds)
	}
	return n
}

// envReassign is CHAOS_REASSIGN: the operator runs unless it is "0".
func envReassign(t *testing.T) bool {
	t.Helper()
	switch s := os.Getenv("CHAOS_REASSIGN"); s {
	case "", "1":
		return true
	case "0":
		return false
	default:
		t.Fatalf("CHAOS_REASSIGN=%q: want 1 (the default) or 0", s)
		return false
	}
}

// envDrain is CHAOS_DRAIN: "1" runs four nodes and the drain operator
// (drain_test.go) instead of the replication-factor cycles; off by default.
func envDrain(t *testing.T) bool {
	t.Helper()
	switch s := os.Getenv("CHAOS_DRAIN"); s {
	case "", "0":
		return false
	case "1":
		return true
	default:
		t.Fatalf("CHAOS_DRAIN=%q: want 0 (the default) or 1", s)
		return false
	}
}

// envSeed is CHAOS_SEED, or a seed from the clock.
func envSeed(t *testing.T) uint64 {
	t.Helper()
	s := os.Getenv("CHAOS_SEED")
	if s == "" {
		return uint64(time.Now().UnixNano())
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("CHAOS_SEED=%q: want an unsigned integer", s)
	}
	return n
}
