package auditcmd

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// createAuditTopic creates the audit topic with n partitions (one broker
// alone would get one).
func createAuditTopic(t *testing.T, addr string, n int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(clitest.Ctx(t), n, 1, nil, audit.DefaultTopic); err != nil {
		t.Fatal(err)
	}
}

func checkOptions(addr string, d time.Duration) (CheckOptions, clitest.IO) {
	c, bufs := clitest.Common(addr, nil)
	c.Timeout = 3 * time.Second
	return CheckOptions{Options: Options{Common: c, Topic: audit.DefaultTopic, Interval: 100 * time.Millisecond, Grace: 2 * time.Second,
		LogLevel: "error"}, Duration: d, Output: "json"}, bufs
}

func decode(t *testing.T, s string) jsonOut {
	t.Helper()
	var out jsonOut
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	return out
}

// A healthy broker: every heartbeat of every partition seen, nothing lost,
// a nil error (exit status 0).
func TestCheckHealthy(t *testing.T) {
	b := clitest.Start(t, nil)
	createAuditTopic(t, b.Addr, 3)
	o, bufs := checkOptions(b.Addr, 2*time.Second)
	if err := Check(clitest.Ctx(t), o); err != nil {
		t.Fatalf("check: %v\n%s%s", err, bufs.Out, bufs.Err)
	}
	out := decode(t, bufs.Out.String())
	if !out.OK || len(out.Problems) != 0 || len(out.Partitions) != 3 || len(out.Brokers) != 1 || len(out.Brokers[0].Partitions) != 3 {
		t.Fatalf("%s", bufs.Out)
	}
	for _, p := range append(out.Partitions, out.Brokers...) {
		if p.Sent < 15 || p.Seen != p.Sent || p.Acked != p.Sent || p.Lost != 0 || p.Duplicated != 0 || p.OutOfOrder != 0 ||
			p.ProduceErrors != 0 || p.Unexpected != 0 || p.P99Ms <= 0 || p.P99Ms < p.P50Ms {
			t.Errorf("%+v", p)
		}
	}
	if out.Brokers[0].Sent != 3*out.Partitions[0].Sent {
		t.Errorf("broker %d sent, partitions %d each", out.Brokers[0].Sent, out.Partitions[0].Sent)
	}
}

// The broker stops during the run: check says which partitions stopped
// seeing heartbeats and fails, within the duration plus the grace period.
func TestCheckBrokerStopped(t *testing.T) {
	b := clitest.Start(t, nil)
	createAuditTopic(t, b.Addr, 3)
	// A consumer of our own sees the auditor's first heartbeats: then the
	// broker stops.
	watch, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.ConsumeTopics(audit.DefaultTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	o, bufs := checkOptions(b.Addr, 3*time.Second)
	o.Output = "table"
	ctx := clitest.Ctx(t)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- Check(ctx, o) }()
	seen := map[int32]bool{}
	for len(seen) < 3 {
		fs := watch.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no heartbeat seen")
		}
		fs.EachRecord(func(r *kgo.Record) { seen[r.Partition] = true })
	}
	watch.Close()
	b.Stop()
	var cerr error
	select {
	case cerr = <-done:
	case <-time.After(3*time.Second + 2*time.Second + 15*time.Second):
		t.Fatal("check did not end within its duration and grace period (and 15 s)")
	}
	t.Logf("check took %s\n%s", time.Since(start), bufs.Out)
	if !errors.Is(cerr, ErrCheckFailed) {
		t.Fatalf("check: %v, want %v", cerr, ErrCheckFailed)
	}
	for p := range 3 {
		if want := "partition " + string(rune('0'+p)) + " (leader 1): "; !strings.Contains(cerr.Error(), want) {
			t.Errorf("the error does not name %q: %v", want, cerr)
		}
	}
	if !strings.Contains(cerr.Error(), "heartbeats not seen") && !strings.Contains(cerr.Error(), "nothing seen") {
		t.Errorf("error: %v", cerr)
	}
	table := bufs.Out.String()
	if !strings.Contains(table, "BROKER  PARTITIONS") || !strings.Contains(table, "PARTITION  LEADER") || strings.Count(table, " ago")+strings.Count(table, " never") < 3 {
		t.Errorf("table:\n%s", table)
	}
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) < 11 || f[0] == "PARTITION" || f[0] == "BROKER" {
			continue
		}
		// LAST-SEEN: the broker stopped within the first second of a 3 s run,
		// then check waited for the grace period. Our consumer seeing a
		// heartbeat does not mean the auditor's own consumer did before the
		// broker stopped (a loaded machine): then it saw nothing there.
		if f[10] == "never" {
			if f[3] != "0" {
				t.Errorf("last seen never but seen %s in %q", f[3], line)
			}
		} else if d, err := time.ParseDuration(f[10]); err != nil || d < 2*time.Second {
			t.Errorf("last seen %q in %q, want at least 2s ago", f[10], line)
		}
		if f[2] == f[3] {
			t.Errorf("sent %s = seen %s in %q", f[2], f[3], line)
		}
	}
}

func TestVerdict(t *testing.T) {
	r := audit.Report{Partitions: []audit.PartitionReport{
		{Partition: 0, Leader: 1, Stats: audit.Stats{Sent: 5, Acked: 5, Seen: 5}},
		{Partition: 1, Leader: 2, Stats: audit.Stats{Sent: 5}, SinceLastSeen: 3 * time.Second},
		{Partition: 2, Leader: -1, Stats: audit.Stats{Sent: 5, Acked: 5, Seen: 4, Lost: 2, Late: 1, Duplicated: 1}},
		{Partition: 3, Leader: 1, Stats: audit.Stats{Sent: 5, Acked: 5, Seen: 5, Lost: 1, Late: 1, OutOfOrder: 1}},
	}}
	got := verdict(r)
	want := []string{
		"partition 1 (leader 2): nothing seen (last 3s ago)",
		"partition 2 (leader none): 1 of 5 heartbeats not seen, 1 lost, 1 duplicated",
		"partition 3 (leader 1): 1 out of order",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// run serves the metrics of the heartbeats it sees until stopped.
func TestRunServesMetrics(t *testing.T) {
	b := clitest.Start(t, nil) // no audit topic: run creates it
	c, bufs := clitest.Common(b.Addr, nil)
	addr := clitest.FreeAddr(t)
	o := RunOptions{Options: Options{Common: c, Interval: 50 * time.Millisecond, Grace: 2 * time.Second, LogLevel: "info"}, Listen: addr}
	ctx := clitest.Ctx(t)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- Run(runCtx, o) }()
	want := `sluice_audit_heartbeats_seen_total{broker="1",partition="0"} `
	var body string
	for !strings.Contains(body, want) || strings.Contains(body, want+"0\n") {
		if res, err := http.Get("http://" + addr + "/metrics"); err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			body = string(b)
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned: %v\n%s", err, bufs.Err)
		case <-ctx.Done():
			t.Fatalf("no heartbeat seen in /metrics:\n%s", body)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, m := range []string{`sluice_audit_records_lost_total{broker="1",partition="0"} 0`, `sluice_audit_latency_seconds_bucket{broker="1",partition="0",le="+Inf"}`,
		`sluice_audit_last_seen_seconds{broker="1",partition="0"}`, "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics has no %s", m)
		}
	}
	t.Logf("seen after %s", time.Since(start))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("stopped after %s", time.Since(start))
	if !strings.Contains(bufs.Err.String(), "created the audit topic") {
		t.Errorf("log: %s", bufs.Err)
	}
}

func TestRefusals(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	o, _ := checkOptions(b.Addr, time.Second)
	o.Interval, o.Grace = 10*time.Millisecond, 30*time.Second
	if err := Check(ctx, o); err == nil || !strings.Contains(err.Error(), "raise --interval or shorten --grace") {
		t.Errorf("a window shorter than the grace period: %v", err)
	}
	dead := clitest.DeadAddr(t)
	o, _ = checkOptions(dead, time.Second)
	if err := Check(ctx, o); err == nil || !strings.Contains(err.Error(), "cannot reach broker at "+dead) {
		t.Errorf("dead broker: %v", err)
	}
	o, _ = checkOptions(b.Addr, time.Second)
	o.Output = "yaml"
	if err := Check(ctx, o); err == nil || !strings.Contains(err.Error(), `-o "yaml"`) {
		t.Errorf("-o yaml: %v", err)
	}
}
