package collect_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/collect"
)

// With Audit, the collector counts every event the cluster acknowledged,
// those replayed from the spool after the cluster came back included, each
// once, with its offset; an event not yet acknowledged is not counted.
func TestAuditCountsBufferAndReplay(t *testing.T) {
	dataDir := t.TempDir()
	b := startBrokerOn(t, dataDir, "127.0.0.1:0")
	createTopic(t, b.addr, "events", 1)
	counts := startBroker(t) // the counts stay up while the data cluster is down
	newClient := func(opts ...kgo.Opt) (*kgo.Client, error) {
		return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(counts.addr)}, opts...)...)
	}
	counter, err := audit.NewCounter(ctxT(t), audit.CounterOptions{Stage: audit.StageCollect, NewClient: newClient, FlushInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer counter.Close(context.Background())
	cfg, err := collect.ParseConfig([]byte(fmt.Sprintf(`
limits: {buffer_bytes: 2000, delivery_timeout: 1s}
spool: {dir: %s}
streams:
  events: {topic: events}
`, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	c, err := collect.New(collect.Options{Brokers: []string{b.addr}, Config: cfg, Logger: testLogger(), Audit: counter,
		ClientOpts: []kgo.Opt{kgo.MetadataMinAge(50 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	u := srv.URL + "/v1/streams/events"
	started := time.Now()
	wantCode(t, "with the broker up", post(t, u, `{"n":0}`, nil), http.StatusAccepted)
	consume(t, b.addr, "events", 1)
	b.stop()
	const n = 60
	for i := 1; i <= n; i++ {
		wantCode(t, "with the broker down", post(t, u, fmt.Sprintf(`{"n":%d}`, i), nil), http.StatusAccepted)
	}
	if got := counter.Stats().Counted; got != 1 {
		t.Fatalf("%d counted with the broker down, want the 1 acknowledged", got)
	}
	b = startBrokerOn(t, dataDir, b.addr)
	recs := consume(t, b.addr, "events", n+1)
	if len(recs) != n+1 {
		t.Fatalf("%d records", len(recs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if replayed := metric(t, srv.URL, `sluice_collect_events_replayed_total{stream="events"}`); replayed == 0 {
		t.Fatal("nothing replayed from the spool: the test did not reach the replay path")
	}
	if err := counter.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := counter.Stats().Counted; got != n+1 {
		t.Fatalf("%d counted, want %d", got, n+1)
	}
	r, err := audit.BuildCountReport(ctx, audit.ReportOptions{NewClient: newClient, Since: started.Add(-time.Minute), Settle: -1})
	if err != nil {
		t.Fatal(err)
	}
	var total audit.StageCount
	for _, w := range r.Windows {
		s := w.Stages[audit.StageCollect]
		total.Count += s.Count
		total.Raw += s.Raw
	}
	if total.Count != n+1 || total.Raw != n+1 {
		t.Fatalf("collect stage %+v, want %d", total, n+1)
	}
}

// TestBenchCollectAudit (only with SLUICE_BENCH_COLLECT_AUDIT set, seconds
// per figure) measures the collector's throughput (100 JSON events per
// request, no schema, the closed loop of TestBenchCollect) with and
// without audit counting, three times each, alternating, in one process
// against one broker: the cost of --audit. A figure, not an assertion.
func TestBenchCollectAudit(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("SLUICE_BENCH_COLLECT_AUDIT"))
	if secs <= 0 {
		t.Skip("set SLUICE_BENCH_COLLECT_AUDIT (seconds per figure) to run")
	}
	b := startBroker(t)
	createTopic(t, b.addr, "bench-off", benchPartitions)
	createTopic(t, b.addr, "bench-on", benchPartitions)
	counter, err := audit.NewCounter(ctxT(t), audit.CounterOptions{Stage: audit.StageCollect,
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.addr)}, opts...)...)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer counter.Close(context.Background())
	start := func(topic string, counter *audit.Counter) string {
		cfg, err := collect.ParseConfig([]byte("streams:\n  s: {topic: " + topic + ", key_field: user_id}\n"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := collect.New(collect.Options{Brokers: []string{b.addr}, Config: cfg, Logger: testLogger(), Audit: counter})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Refresh(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(c.Handler())
		t.Cleanup(func() {
			srv.Close()
			c.Close(context.Background())
		})
		return srv.URL
	}
	off, on := start("bench-off", nil), start("bench-on", counter)
	bn := newBenchEnv(t, b.addr, time.Duration(secs)*time.Second, benchMaxInFlight)
	bodies := benchBodies(bn.events)
	var out strings.Builder
	var total, perCPU [2]float64
	for round := 1; round <= 3; round++ {
		for i, x := range []struct{ name, base, topic string }{{"off", off, "bench-off"}, {"on", on, "bench-on"}} {
			f := &benchFigure{name: x.name, stream: "s", topic: x.topic, bodies: bodies, perReq: benchBatch}
			bn.throughput(x.base, f)
			total[i] += f.rate()
			perCPU[i] += f.perCPU()
			fmt.Fprintf(&out, "  audit counting %-3s run %d: %8.0f events/s, %8.0f events per CPU-second (%d events in %.2f s, CPU %s)\n",
				x.name, round, f.rate(), f.perCPU(), f.events, f.elapsed.Seconds(), cpuFig(f.cpu, f.elapsed))
		}
	}
	if got := counter.Stats().Counted; got == 0 {
		t.Fatal("nothing counted")
	}
	fmt.Fprintf(&out, "  mean: off %.0f, on %.0f events/s: on/off %.3f; per CPU-second on/off %.3f (the machine is shared: per CPU-second is the steadier)\n",
		total[0]/3, total[1]/3, total[1]/total[0], ratio(perCPU[1], perCPU[0]))
	t.Logf("FIGURES collector with and without --audit, %d clients, %d events/request:\n%s", benchClients, benchBatch, out.String())
}
