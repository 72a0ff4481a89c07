package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/vfs"
)

// openBroker opens a broker on a MemFS leading topics of n partitions each.
func openBroker(t testing.TB, n int, topics ...string) *broker.Broker {
	t.Helper()
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: t.TempDir(), Host: "127.0.0.1", Port: 9092, FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	for _, topic := range topics {
		if _, err := b.Meta().CreateTopic(context.Background(), topic, int32(n), []int32{1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	return b
}

func get(t testing.TB, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func closedReady() chan struct{} {
	ready := make(chan struct{})
	close(ready)
	return ready
}

// TestPprofOffByDefault: /debug/pprof/ shows the command line and hands
// out CPU profiles and traces to whoever reaches the HTTP port; on main
// it was served by default.
func TestPprofOffByDefault(t *testing.T) {
	h := Handler(NewMetrics(), closedReady())
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
		if code, _ := get(t, h, path); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
	if code, body := get(t, h, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
}

// TestPartitionMetricsByTopic: by default the partition gauges are summed
// by topic, one series per topic; on main every partition had seven.
func TestPartitionMetricsByTopic(t *testing.T) {
	b := openBroker(t, 3, "a", "b")
	m := NewMetrics()
	m.SetBroker(b)
	code, body := get(t, Handler(m, closedReady()), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	if strings.Contains(body, `partition="`) {
		t.Errorf("a series by partition in the default scrape:\n%s", grep(body, `partition="`))
	}
	for _, want := range []string{`sluice_log_end_offset{topic="a"} 0`, `sluice_log_segments{topic="b"} 3`,
		`sluice_topic_partitions{topic="a"} 3`, `sluice_partitions 6`, `sluice_log_open_files 6`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("no %q in the scrape:\n%s", want, grep(body, "sluice_"))
		}
	}
}

// grep returns the lines of s that contain sub.
func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
