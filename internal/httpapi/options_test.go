package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPprofOnRequest(t *testing.T) {
	h := NewHandler(NewMetrics(), closedReady(), HandlerOptions{Pprof: true})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
		if code, _ := get(t, h, path); code != http.StatusOK {
			t.Errorf("GET %s with Pprof: %d, want 200", path, code)
		}
	}
}

func TestPartitionMetricsOnRequest(t *testing.T) {
	b := openBroker(t, 3, "a")
	m := NewMetricsWithOptions(MetricsOptions{PartitionLevel: true})
	m.SetBroker(b)
	_, body := get(t, Handler(m, closedReady()), "/metrics")
	for p := range 3 {
		for _, name := range []string{"sluice_log_end_offset", "sluice_high_watermark", "sluice_log_size_bytes"} {
			if want := fmt.Sprintf(`%s{partition="%d",topic="a"} 0`, name, p); !strings.Contains(body, want+"\n") {
				t.Errorf("no %q in the scrape:\n%s", want, grep(body, "sluice_"))
			}
		}
	}
	if strings.Contains(body, "sluice_topic_partitions") {
		t.Error("per-topic series with PartitionLevel")
	}
}

// TestMeasureScrape (SLUICE_HTTPAPI_MEASURE=1) scrapes /metrics of a
// broker leading 10,000 partitions (100 topics of 100), by partition (as
// on main) and by topic (the default), in the same run.
func TestMeasureScrape(t *testing.T) {
	if os.Getenv("SLUICE_HTTPAPI_MEASURE") == "" {
		t.Skip("set SLUICE_HTTPAPI_MEASURE=1 to measure")
	}
	topics := make([]string, 100)
	for i := range topics {
		topics[i] = fmt.Sprintf("topic-%03d", i)
	}
	b := openBroker(t, 100, topics...)
	const rounds = 10
	for _, level := range []bool{true, false} {
		m := NewMetricsWithOptions(MetricsOptions{PartitionLevel: level})
		m.SetBroker(b)
		h := Handler(m, closedReady())
		var size int
		var took []time.Duration
		for range rounds {
			began := time.Now()
			code, body := get(t, h, "/metrics")
			took = append(took, time.Since(began))
			if code != http.StatusOK {
				t.Fatalf("GET /metrics: %d", code)
			}
			size = len(body)
			if level && !bytes.Contains([]byte(body), []byte(`partition="99",topic="topic-099"`)) {
				t.Fatal("partition series missing")
			}
		}
		slices.Sort(took)
		t.Logf("partition level %-5v: %d bytes, %d sluice_ series, scrape median %v (min %v, max %v, %d rounds)",
			level, size, countSeries(get(t, h, "/metrics")), took[rounds/2], took[0], took[rounds-1], rounds)
	}
}

func countSeries(_ int, body string) int {
	n := 0
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "sluice_") {
			n++
		}
	}
	return n
}
