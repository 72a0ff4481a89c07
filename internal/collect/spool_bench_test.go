package collect_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBenchSpool measures the disk spool for BENCHMARKS.md; it runs only
// with SLUICE_BENCH_COLLECT set (seconds of load). With the broker down, 8
// clients post 100-event batches of 300-byte events to a stream without a
// schema for that long: the spool write rate, against the raw disk
// writing the same bytes in the same directory (1 MiB writes, an fsync
// each). Then the broker comes back: the replay rate, from its restart
// until every accepted event is in the topic, timed from the first one
// there, against one kgo client
// producing the same events (as TestBenchCollect's reference).
// SLUICE_BENCH_DIR places the spool (default: a temporary directory).
func TestBenchSpool(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("SLUICE_BENCH_COLLECT"))
	if secs <= 0 {
		t.Skip("set SLUICE_BENCH_COLLECT (seconds per figure) to run the spool benchmark")
	}
	dur := time.Duration(secs) * time.Second
	dataDir := t.TempDir()
	b := startBrokerOn(t, dataDir, "127.0.0.1:0")
	createTopic(t, b.addr, "bench-spool", benchPartitions)
	createTopic(t, b.addr, "bench-reference", benchPartitions)
	spoolDir, err := os.MkdirTemp(os.Getenv("SLUICE_BENCH_DIR"), "sluice-bench-spool-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(spoolDir) })
	_, base := startCollector(t, b.addr, fmt.Sprintf(`
limits: {buffer_bytes: 8388608, delivery_timeout: 1s}
spool: {dir: %s, max_bytes: 8589934592}
streams:
  s: {topic: bench-spool, key_field: user_id}
`, spoolDir), nil)
	bn := newBenchEnv(t, b.addr, dur, benchClients)
	bodies := benchBodies(bn.events)
	ref := bn.reference("bench-reference", 100_000)

	b.stop()
	url := base + "/v1/streams/s"
	var accepted atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(dur)
	start := time.Now()
	for g := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; time.Now().Before(deadline); i++ {
				code, n, err := bn.post(url, bodies[i%len(bodies)])
				if err != nil || code != http.StatusAccepted {
					t.Errorf("post with the broker down: %d %v", code, err)
					return
				}
				accepted.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	writeSecs := time.Since(start).Seconds()
	// The buffer's last records fail after the 1 s delivery timeout and
	// are spooled too.
	spooledWant := float64(accepted.Load())
	for metric(t, base, `sluice_collect_events_spooled_total{stream="s"}`) < spooledWant-float64(8<<20/benchEventBytes) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	spooled := metric(t, base, `sluice_collect_events_spooled_total{stream="s"}`)
	spoolBytes := metric(t, base, `sluice_collect_spool_bytes`)
	rawRate := rawDiskRate(t, spoolDir, int64(spoolBytes))

	restart := time.Now()
	b = startBrokerOn(t, dataDir, b.addr)
	// The replay rate is timed from the first record in the topic: before
	// it, the broker opens and the producers reconnect (their backoff).
	var first time.Time
	for {
		if hw, err := bn.highWatermark(t.Context(), "bench-spool"); err == nil && hw > 0 {
			first = time.Now()
			break
		}
		time.Sleep(time.Millisecond)
	}
	bn.waitDelivered("bench-spool", accepted.Load())
	replaySecs := time.Since(first).Seconds()
	reconnectSecs := first.Sub(restart).Seconds()

	n := float64(accepted.Load())
	t.Logf("\nFIGURES spool, %d-byte JSON events in %d-event requests from %d clients, broker down for %v; spool in %s\n"+
		"  write:  %8.0f events/s %6.2f MB/s of events (%.0f accepted, %.0f spooled, %.1f MiB of segments, %.1f MiB/s to disk); raw disk %.1f MiB/s (1 MiB writes, fsync each): %.2fx\n"+
		"  replay: %8.0f events/s %6.2f MB/s from the first replayed record until all %.0f are in the topic (%.2f s; %.2f s before it from the broker's restart); one kgo client producing the same events %.0f events/s: %.2fx\n",
		benchEventBytes, benchBatch, benchClients, dur, spoolDir,
		n/writeSecs, n*benchEventBytes/writeSecs/1e6, n, spooled, spoolBytes/(1<<20), spoolBytes/(1<<20)/writeSecs, rawRate,
		spoolBytes/(1<<20)/writeSecs/rawRate,
		n/replaySecs, n*benchEventBytes/replaySecs/1e6, n, replaySecs, reconnectSecs, ref.rate(), n/replaySecs/ref.rate())
}

// rawDiskRate writes n bytes (at least 64 MiB) to a new file in dir, 1 MiB
// at a time with an fsync after each, and returns MiB/s.
func rawDiskRate(t *testing.T, dir string, n int64) float64 {
	n = max(n, 64<<20)
	f, err := os.Create(filepath.Join(dir, "raw-disk-reference"))
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i * 7)
	}
	start := time.Now()
	for written := int64(0); written < n; written += int64(len(block)) {
		if _, err := f.Write(block); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	return float64(n) / (1 << 20) / time.Since(start).Seconds()
}
