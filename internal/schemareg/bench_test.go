package schemareg_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

// TestBenchRegistry measures the registry for BENCHMARKS.md; it runs only
// with SLUICE_BENCH_REGISTRY set (seconds per figure). Figures, logged:
// registrations per second (new schemas, one client, each answered once its
// record is applied: acks=all, so an fsync each) and lookups per second of a
// cached schema id (GET /schemas/ids/{id} from 8 goroutines over HTTP).
func TestBenchRegistry(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("SLUICE_BENCH_REGISTRY"))
	if secs <= 0 {
		t.Skip("set SLUICE_BENCH_REGISTRY (seconds per figure) to run the registry benchmark")
	}
	in := openInstance(t, startBroker(t))
	ctx := context.Background()
	dur := time.Duration(secs) * time.Second
	n := 0
	start := time.Now()
	var lastID int
	for time.Since(start) < dur {
		s := fmt.Sprintf(`{"type":"record","name":"R%d","fields":[{"name":"f","type":"string"}]}`, n)
		ss, err := in.cl.CreateSchema(ctx, fmt.Sprintf("bench-%d-value", n), sr.Schema{Schema: s})
		if err != nil {
			t.Fatal(err)
		}
		lastID = ss.ID
		n++
	}
	regRate := float64(n) / time.Since(start).Seconds()
	url := in.srv.URL + "/schemas/ids/" + strconv.Itoa(lastID)
	var lookups, failures atomic.Int64
	var wg sync.WaitGroup
	start = time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < dur {
				resp, err := http.Get(url)
				if err != nil || resp.StatusCode != http.StatusOK {
					failures.Add(1)
				} else {
					lookups.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("FIGURE registrations %d in %v: %.0f/s; cached id lookups over HTTP (8 goroutines): %.0f/s, %d failed",
		n, dur, regRate, float64(lookups.Load())/time.Since(start).Seconds(), failures.Load())
}
