package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/httpapi"
)

func scrape(t *testing.T, tb *testBroker) string {
	t.Helper()
	ready := make(chan struct{})
	close(ready)
	srv := httptest.NewServer(httpapi.Handler(tb.metrics, ready))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + " (\\S+)$").FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no series %s", series)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestMetrics(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	createTopic(t, tb.admin(), "met", 3, nil)
	cl := tb.client(kgo.DefaultProduceTopic("met"))
	var recs []*kgo.Record
	for i := 0; i < 500; i++ {
		recs = append(recs, &kgo.Record{Value: []byte("metric value")})
	}
	if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumeAll(t, tb, "met", len(recs))
	text := scrape(t, tb)
	if v := metricValue(t, text, `sluice_topic_records_in_total{topic="met"}`); v != 500 {
		t.Errorf("records in %v, want 500", v)
	}
	if v := metricValue(t, text, `sluice_topic_records_out_total{topic="met"}`); v != 500 {
		t.Errorf("records out %v, want 500", v)
	}
	if v := metricValue(t, text, `sluice_partitions`); v != 3 {
		t.Errorf("partitions %v", v)
	}
	var ends float64
	for p := 0; p < 3; p++ {
		ends += metricValue(t, text, `sluice_log_end_offset{partition="`+strconv.Itoa(p)+`",topic="met"}`)
	}
	if ends != 500 {
		t.Errorf("end offsets sum %v", ends)
	}
	if metricValue(t, text, "sluice_log_fsync_duration_seconds_count") == 0 {
		t.Errorf("no fsyncs observed under acks=all")
	}
	if !regexp.MustCompile(`sluice_requests_total\{api="Produce",version="\d+"\}`).MatchString(text) {
		t.Errorf("no produce request counter")
	}
}

// TestDashboardUsesRealNames: every sluice_ metric the Grafana dashboard
// queries exists on /metrics.
func TestDashboardUsesRealNames(t *testing.T) {
	dash, err := os.ReadFile("../../deploy/grafana/sluice.json")
	if err != nil {
		t.Fatal(err)
	}
	tb := start(t, t.TempDir(), "", nil)
	createTopic(t, tb.admin(), "dash", 1, nil)
	cl := tb.client(kgo.DefaultProduceTopic("dash"))
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumeAll(t, tb, "dash", 1)
	// A transaction, so that the coordinator reports its ids.
	tx := tb.client(kgo.DefaultProduceTopic("dash"), kgo.TransactionalID("dash"))
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("t")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx.EndTransaction(ctxT(t), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	text := scrape(t, tb)
	for _, name := range regexp.MustCompile(`sluice_[a-z_]+`).FindAllString(string(dash), -1) {
		if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).MatchString(text) {
			t.Errorf("dashboard queries %s, which /metrics does not have", name)
		}
	}
}
