package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCleanerThroughput measures, in one run, the log cleaner's throughput
// (MB/s of segments compacted) and the produce throughput of a concurrent
// acks=all producer while a pass runs, against the same producer with the
// cleaner idle in a 10 s window before the pass and one as long as the pass
// after it; each
// round runs an unthrottled pass and one throttled by
// log.cleaner.io.max.bytes.per.second. BENCHMARKS.md has the figures.
// Not part of `make test`:
//
//	SLUICE_BENCH_CLEANER=1 go test -run TestCleanerThroughput -v -timeout 30m ./internal/e2e
//
// SLUICE_BENCH_DIRTY_MB (default 256) sizes the compacted log cleaned per
// round, SLUICE_BENCH_ROUNDS (default 3) the rounds, SLUICE_BENCH_THROTTLE_MB
// (default 16) the throttled rate.
func TestCleanerThroughput(t *testing.T) {
	if os.Getenv("SLUICE_BENCH_CLEANER") == "" {
		t.Skip("set SLUICE_BENCH_CLEANER=1 to run")
	}
	envInt := func(name string, def int) int {
		if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
			return n
		}
		return def
	}
	dirtyMB, rounds, throttleMB := envInt("SLUICE_BENCH_DIRTY_MB", 256), envInt("SLUICE_BENCH_ROUNDS", 3), envInt("SLUICE_BENCH_THROTTLE_MB", 16)
	dir := os.Getenv("SLUICE_BENCH_DIR") // default: the test's temp dir
	if dir == "" {
		dir = t.TempDir()
	} else {
		var err error
		if dir, err = os.MkdirTemp(dir, "cleaner-bench-"); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	tb := start(t, dir, "", map[string]string{"log.cleaner.threads": "0"}) // passes only by CleanNow
	adm := tb.admin()
	createTopic(t, adm, "load", 6, nil)

	// The load: one idempotent acks=all producer, 100-byte values,
	// uncompressed, as BENCHMARKS.md's workload (a), run continuously;
	// rates are sampled over the windows measured.
	var produced, producedBytes atomic.Int64
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl := tb.client(kgo.DefaultProduceTopic("load"), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(1<<20),
			kgo.ProducerBatchCompression(kgo.NoCompression()))
		value := bytes.Repeat([]byte("v"), 100)
		for loadCtx.Err() == nil {
			cl.Produce(loadCtx, &kgo.Record{Value: value}, func(r *kgo.Record, err error) {
				if err == nil {
					produced.Add(1)
					producedBytes.Add(int64(len(r.Value)))
				}
			})
		}
		cl.Flush(context.Background())
	}()
	// produceRequests counts Produce requests answered (the load's and
	// nothing else's during a window).
	produceRequests := func() float64 {
		var n float64
		for _, m := range regexp.MustCompile(`(?m)^sluice_requests_total\{api="Produce",version="\d+"\} (\S+)$`).FindAllStringSubmatch(scrape(t, tb), -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			n += v
		}
		return n
	}
	// window returns the load's records/s and records per produce request.
	window := func(d time.Duration, until <-chan struct{}) (recPerSec, perRequest float64, took time.Duration) {
		n0, r0, t0 := produced.Load(), produceRequests(), time.Now()
		if until != nil {
			<-until
		} else {
			time.Sleep(d)
		}
		el := time.Since(t0)
		n := float64(produced.Load() - n0)
		return n / el.Seconds(), n / max(produceRequests()-r0, 1), el
	}

	type row struct {
		mode      string // "on" or "throttled"
		round     int
		cleanedMB float64
		took      time.Duration
		cleanMBs  float64
		onRecs    float64 // produce rec/s during the pass
		offRecs   float64 // produce rec/s in a 10 s window before it and one of its length after it
		onPerReq  float64 // records per produce request during the pass
		offPerReq float64 // and in the idle windows
	}
	var rows []row
	for round := 1; round <= rounds; round++ {
		for _, mode := range []string{"on", "throttled"} {
			rate := "1.7976931348623157E308"
			if mode == "throttled" {
				rate = strconv.Itoa(throttleMB << 20)
			}
			setBrokerConfig(t, tb, "log.cleaner.io.max.bytes.per.second", rate)
			topic := fmt.Sprintf("dirty-%d-%s", round, mode)
			fillDirty(t, tb, topic, dirtyMB, int64(round))
			time.Sleep(time.Second) // let the fill settle
			beforeRecs, beforePerReq, beforeEl := window(10*time.Second, nil)
			before := tb.b.CleanerStats()
			done := make(chan struct{})
			var cerr error
			go func() {
				defer close(done)
				cerr = tb.b.CleanNow(context.Background())
			}()
			onRecs, onPerReq, el := window(0, done)
			if cerr != nil {
				t.Fatal(cerr)
			}
			after := tb.b.CleanerStats()
			cleaned := float64(after.BytesCleaned-before.BytesCleaned) / 1e6
			afterRecs, afterPerReq, afterEl := window(el, nil)
			offRecs := (beforeRecs*beforeEl.Seconds() + afterRecs*afterEl.Seconds()) / (beforeEl + afterEl).Seconds()
			rows = append(rows, row{mode: mode, round: round, cleanedMB: cleaned, took: el, cleanMBs: cleaned / el.Seconds(),
				onRecs: onRecs, offRecs: offRecs, onPerReq: onPerReq, offPerReq: (beforePerReq + afterPerReq) / 2})
			// Free the disk for the next round.
			if err := deleteTopic(t, tb, topic); err != nil {
				t.Fatal(err)
			}
		}
	}
	stopLoad()
	wg.Wait()

	t.Logf("%-9s %5s %10s %7s %12s %22s %21s %6s %18s", "cleaner", "round", "cleaned MB", "pass s", "cleaner MB/s",
		"produce rec/s, cleaning", "produce rec/s, idle", "ratio", "rec/request (idle)")
	byMode := map[string][]row{}
	for _, r := range rows {
		t.Logf("%-9s %5d %10.1f %7.2f %12.1f %22.0f %21.0f %6.2f %9.0f (%6.0f)", r.mode, r.round, r.cleanedMB, r.took.Seconds(), r.cleanMBs,
			r.onRecs, r.offRecs, r.onRecs/r.offRecs, r.onPerReq, r.offPerReq)
		byMode[r.mode] = append(byMode[r.mode], r)
	}
	median := func(rs []row, f func(row) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	for _, mode := range []string{"on", "throttled"} {
		rs := byMode[mode]
		t.Logf("median %-9s cleaner %.1f MB/s; produce %.0f rec/s while cleaning, %.0f rec/s idle; ratio %.2f", mode,
			median(rs, func(r row) float64 { return r.cleanMBs }), median(rs, func(r row) float64 { return r.onRecs }),
			median(rs, func(r row) float64 { return r.offRecs }), median(rs, func(r row) float64 { return r.onRecs / r.offRecs }))
	}
}

// fillDirty writes about mb MB of keyed 200-byte records into a new
// one-partition compacted topic of eight segments, each key written about
// four times, and fsyncs them (so that no writeback of the fill lands in a
// measured window). Replaced segments' blocks are freed at once
// (file.delete.delay.ms 0), within the pass.
func fillDirty(t *testing.T, tb *testBroker, topic string, mb int, seed int64) {
	t.Helper()
	createTopic(t, tb.admin(), topic, 1, map[string]*string{"cleanup.policy": ptr("compact"),
		"segment.bytes": ptr(strconv.Itoa(max(mb/8, 1) << 20)), "file.delete.delay.ms": ptr("0")})
	defer func() {
		p, _ := tb.b.Partition(topic, 0)
		if err := p.Log().Sync(); err != nil {
			t.Fatal(err)
		}
	}()
	cl := tb.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0), kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.DisableIdempotentWrite(), kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
	n := mb << 20 / 230
	keys := max(n/4, 1)
	rng := rand.New(rand.NewSource(seed))
	var werr atomic.Value
	for i := 0; i < n; i++ {
		value := make([]byte, 200)
		for j := range value {
			value[j] = 'A' + byte(rng.Intn(26))
		}
		r := &kgo.Record{Key: []byte(fmt.Sprintf("key-%09d", rng.Intn(keys))), Value: value}
		cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			if err != nil {
				werr.Store(err)
			}
		})
	}
	if err := cl.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err, _ := werr.Load().(error); err != nil {
		t.Fatal(err)
	}
	cl.Close()
}

func setBrokerConfig(t *testing.T, tb *testBroker, name, value string) {
	t.Helper()
	resp, err := tb.admin().AlterBrokerConfigs(ctxT(t), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: name, Value: &value}})
	if err == nil {
		for _, r := range resp {
			if r.Err != nil {
				err = fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
			}
		}
	}
	if err != nil {
		t.Fatalf("set %s=%s: %v", name, value, err)
	}
}

func deleteTopic(t *testing.T, tb *testBroker, topic string) error {
	t.Helper()
	resp, err := tb.admin().DeleteTopics(ctxT(t), topic)
	if err != nil {
		return err
	}
	return resp.Error()
}
