package mirror

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// TestBenchMirror (only with SLUICE_BENCH_MIRROR set) copies the same
// records between two in-process brokers with the mirror and with a plain
// kgo loop (a direct consumer feeding an idempotent acks=all producer, same
// partitions, no group, no commits), and with the mirror keeping offsets
// (PreserveOffsets), three times each, alternating, and reports
// records/s and MB/s of each. A figure, not an assertion.
// SLUICE_BENCH_MIRROR_RECORDS sets the record count (default 1000000, of a
// 16-byte key and a 200-byte value).
func TestBenchMirror(t *testing.T) {
	if os.Getenv("SLUICE_BENCH_MIRROR") == "" {
		t.Skip("a benchmark: set SLUICE_BENCH_MIRROR=1")
	}
	n := 1_000_000
	if s := os.Getenv("SLUICE_BENCH_MIRROR_RECORDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	a, b := benchSource(t, n, func(int) time.Time { return time.Time{} })
	ctx := context.Background()
	bytesTotal := float64(n * (16 + benchValueBytes))
	report := func(what string, d time.Duration) {
		t.Logf("%-34s %d records in %6.2fs: %8.0f records/s, %6.1f MB/s", what, n, d.Seconds(), float64(n)/d.Seconds(), bytesTotal/d.Seconds()/1e6)
	}
	// copied waits until the target acknowledged n records of m's.
	copied := func(m *Mirror) (first time.Time) {
		deadline := time.Now().Add(5 * time.Minute)
		for first.IsZero() {
			if metric(t, m, "sluice_mirror_records_total", "topic=bench") > 0 {
				first = time.Now()
			}
			time.Sleep(time.Millisecond)
		}
		for metric(t, m, "sluice_mirror_records_total", "topic=bench") < float64(n) {
			if time.Now().After(deadline) {
				t.Fatal("not all copied in 5 minutes")
			}
			time.Sleep(2 * time.Millisecond)
		}
		return first
	}
	plain := func(target string) time.Duration {
		b.create(t, target, benchPartitions, nil)
		began := time.Now()
		src, err := kgo.NewClient(kgo.SeedBrokers(a.addr), kgo.ConsumeTopics("bench"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		dst, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		var failed atomic.Pointer[error]
		promise := func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		}
		pctx := clitest.Ctx(t)
		for copied := 0; copied < n; {
			fs := src.PollFetches(pctx)
			if pctx.Err() != nil {
				t.Fatal("plain loop: timed out")
			}
			fs.EachRecord(func(r *kgo.Record) {
				copied++
				dst.Produce(ctx, &kgo.Record{Topic: target, Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}, promise)
			})
		}
		if err := dst.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := failed.Load(); err != nil {
			t.Fatalf("plain loop: produce: %v", *err)
		}
		return time.Since(began)
	}
	mirrored := func(prefix string, preserve bool) time.Duration {
		began := time.Now()
		m, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "bench", TopicPrefix: prefix, Group: "bench-" + prefix,
			PreserveOffsets: preserve})
		first := copied(m)
		d := time.Since(began)
		t.Logf("  (of which %.2fs before the first record was acknowledged: group join, topic creation)", first.Sub(began).Seconds())
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := sum(b.ends(t, prefix+"bench")); got != int64(n) {
			t.Fatalf("%sbench on the target: %d records, want %d", prefix, got, n)
		}
		return d
	}
	for round := 1; round <= 3; round++ {
		report(fmt.Sprintf("plain kgo consume+produce, run %d", round), plain(fmt.Sprintf("plain%d", round)))
		report(fmt.Sprintf("sluice mirror, run %d", round), mirrored(fmt.Sprintf("m%d.", round), false))
		report(fmt.Sprintf("sluice mirror --preserve-offsets, run %d", round), mirrored(fmt.Sprintf("p%d.", round), true))
	}
}

// TestBenchMirrorAudit (only with SLUICE_BENCH_MIRROR_AUDIT set) copies the
// same records with the mirror (translating, and keeping offsets), with and without an audit Counter (counts
// published to the source cluster every 5 s), three times each,
// alternating, and reports records/s of each: the cost of --audit. A
// figure, not an assertion. SLUICE_BENCH_MIRROR_RECORDS sets the record
// count (default 300000, of a 16-byte key and a 200-byte value).
func TestBenchMirrorAudit(t *testing.T) {
	if os.Getenv("SLUICE_BENCH_MIRROR_AUDIT") == "" {
		t.Skip("a benchmark: set SLUICE_BENCH_MIRROR_AUDIT=1")
	}
	n := 300_000
	if s := os.Getenv("SLUICE_BENCH_MIRROR_RECORDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	// Timestamps over 30 minutes: the counter keeps 30 windows.
	base := time.Now().Add(-30 * time.Minute)
	a, b := benchSource(t, n, func(i int) time.Time { return base.Add(time.Duration(i) * 30 * time.Minute / time.Duration(n)) })
	run := func(prefix string, preserve, counting bool) time.Duration {
		var counter *audit.Counter
		if counting {
			var err error
			counter, err = audit.NewCounter(clitest.Ctx(t), audit.CounterOptions{Stage: audit.StageMirror,
				NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
					return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(a.addr)}, opts...)...)
				}})
			if err != nil {
				t.Fatal(err)
			}
		}
		began := time.Now()
		m, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "bench", TopicPrefix: prefix, Group: "bench-" + prefix, Audit: counter,
			PreserveOffsets: preserve})
		deadline := time.Now().Add(5 * time.Minute)
		for metric(t, m, "sluice_mirror_records_total", "topic=bench") < float64(n) {
			if time.Now().After(deadline) {
				t.Fatal("not all copied in 5 minutes")
			}
			time.Sleep(2 * time.Millisecond)
		}
		d := time.Since(began)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if err := counter.Close(clitest.Ctx(t)); err != nil {
			t.Fatal(err)
		}
		if counting {
			if s := counter.Stats(); s.Counted != int64(n) {
				t.Fatalf("counted %d of %d", s.Counted, n)
			}
		}
		return d
	}
	for round := 1; round <= 3; round++ {
		for _, preserve := range []bool{false, true} {
			for _, counting := range []bool{false, true} {
				d := run(fmt.Sprintf("r%d-%v-%v.", round, preserve, counting), preserve, counting)
				t.Logf("mirror, preserving offsets %-5v, audit counting %-5v run %d: %d records in %5.2fs: %8.0f records/s",
					preserve, counting, round, n, d.Seconds(), float64(n)/d.Seconds())
			}
		}
	}
}

// Records of the benchmarks: a 16-byte key and a benchValueBytes random
// value (kgo's default compression does not shrink it).
const benchValueBytes, benchPartitions = 200, 3

// benchSource starts two brokers and produces n records to topic bench on
// the first, round robin over its partitions, record i with timestamp
// ts(i) (zero: the produce time).
func benchSource(t *testing.T, n int, ts func(i int) time.Time) (a, b *cluster) {
	t.Helper()
	a, b = connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "bench", benchPartitions, nil)
	ctx := context.Background()
	for i := 0; i < n; i++ {
		value := make([]byte, benchValueBytes)
		rand.Read(value)
		a.cl.Produce(ctx, &kgo.Record{Topic: "bench", Partition: int32(i % benchPartitions), Key: []byte(fmt.Sprintf("key-%012d", i)),
			Value: value, Timestamp: ts(i)}, nil)
	}
	if err := a.cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return a, b
}
