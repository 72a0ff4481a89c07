package collect_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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
