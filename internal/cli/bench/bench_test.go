package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/benchref"
)

// runJSON runs o against addr and returns its one JSON line, parsed.
func runJSON(t *testing.T, ctx context.Context, o Options) (Result, map[string]any) {
	t.Helper()
	var out, errb bytes.Buffer
	o.Stdout, o.Stderr = &out, &errb
	if err := Run(ctx, o); err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", o.Mode, err, errb.String())
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("%s: want exactly one stdout line, got %q", o.Mode, out.String())
	}
	var r Result
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatalf("%s: stdout %q: %v", o.Mode, lines[0], err)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"mode", "records", "bytes", "seconds", "records_per_sec", "mib_per_sec", "p50_ms", "p99_ms", "p999_ms", "max_ms", "errors"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("%s: JSON line lacks %q: %s", o.Mode, k, lines[0])
		}
	}
	if !strings.Contains(errb.String(), o.Mode+": ") {
		t.Errorf("%s: no summary on stderr: %q", o.Mode, errb.String())
	}
	if r.Mode != o.Mode || r.Errors != 0 || r.Records <= 0 {
		t.Errorf("%s: implausible result %+v", o.Mode, r)
	}
	checkFigures(t, o.Mode, r)
	return r, raw
}

// checkFigures checks what holds of a Result however fast or slow the run
// was: the time is positive, and the rates are the counts over it (within
// the rounding of round, at most half a unit in the third significant
// digit).
func checkFigures(t *testing.T, what string, r Result) {
	t.Helper()
	if !(r.Seconds > 0) || math.IsInf(r.Seconds, 0) {
		t.Errorf("%s: seconds %v: a run takes a positive time, however fast", what, r.Seconds)
		return
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.006 }
	if want := float64(r.Records) / r.Seconds; !near(r.RecordsPerSec, want) {
		t.Errorf("%s: records_per_sec %v, want %d records / %v s = %v", what, r.RecordsPerSec, r.Records, r.Seconds, want)
	}
	if want := float64(r.Bytes) / (1 << 20) / r.Seconds; !near(r.MiBPerSec, want) {
		t.Errorf("%s: mib_per_sec %v, want %d bytes / %v s = %v MiB/s", what, r.MiBPerSec, r.Bytes, r.Seconds, want)
	}
}

// TestResultFigures: a run's figures do not depend on its speed: a run so
// fast that it took less than a millisecond, with sub-microsecond
// latencies, and one so slow that it moved less than a thousandth of a MiB
// a second, both report positive, consistent figures; a run of no
// measurable time reports 0 rates, not infinite or NaN ones (which the JSON
// line cannot carry).
func TestResultFigures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records int64
		bytes   int
		elapsed time.Duration
		latency time.Duration
	}{
		{"fast", 10, 50, 412 * time.Microsecond, 300 * time.Nanosecond},
		{"one nanosecond", 1, 1, time.Nanosecond, time.Nanosecond},
		{"slow", 10, 50, 2 * time.Hour, 3 * time.Minute},
		{"large", 1 << 40, 1 << 10, 90 * time.Second, 5 * time.Millisecond},
	} {
		var m meter
		for i := int64(0); i < tc.records && i < 1000; i++ {
			m.ok(tc.bytes, tc.latency)
		}
		m.records.Store(tc.records)
		m.bytes.Store(tc.records * int64(tc.bytes))
		m.txns.Add(1)
		m.commitHist.Record(tc.latency)
		m.flushHist.Record(tc.latency)
		r := m.result(ModeProduce, tc.elapsed, true)
		if _, err := json.Marshal(r); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		checkFigures(t, tc.name, r)
		if r.RecordsPerSec <= 0 || r.MiBPerSec <= 0 {
			t.Errorf("%s: zero rate: %+v", tc.name, r)
		}
		wantMs := float64(tc.latency) / 1e6
		for name, v := range map[string]*float64{"p50": r.P50Ms, "p99": r.P99Ms, "p999": r.P999Ms, "max": r.MaxMs,
			"txn commit p50": r.TxnCommitP50Ms, "txn commit max": r.TxnCommitMaxMs, "txn flush p99": r.TxnFlushP99Ms} {
			if v == nil {
				t.Errorf("%s: no %s latency", tc.name, name)
			} else if math.Abs(*v-wantMs) > wantMs*0.006 {
				t.Errorf("%s: %s latency %v ms, want %v ms", tc.name, name, *v, wantMs)
			}
		}
		var out bytes.Buffer
		printSummary(&out, r)
		if strings.Contains(out.String(), " 0 s") || strings.Contains(out.String(), " 0 MiB/s") || strings.Contains(out.String(), "p50 0 ") {
			t.Errorf("%s: summary shows a zero figure: %s", tc.name, out.String())
		}
	}
	var m meter
	m.ok(100, time.Millisecond)
	r := m.result(ModeProduce, 0, true)
	if _, err := json.Marshal(r); err != nil || r.RecordsPerSec != 0 || r.MiBPerSec != 0 || r.Seconds != 0 {
		t.Errorf("no measurable time: %+v, %v", r, err)
	}
}

func TestRound(t *testing.T) {
	for _, tc := range []struct {
		v      float64
		digits int
		want   float64
	}{
		{1.23456, 3, 1.235},
		{123456.789, 1, 123456.8},
		{0.0004, 3, 0.0004},
		{0.000412345, 3, 0.000412},
		{0.00000047683716, 3, 0.000000477},
		{1e-9, 3, 1e-9},
		{0.5, 0, 0.5},
		{0, 3, 0},
		{-0.000412345, 3, -0.000412},
	} {
		if got := round(tc.v, tc.digits); got != tc.want {
			t.Errorf("round(%v, %d) = %v, want %v", tc.v, tc.digits, got, tc.want)
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 1e-300} {
		if got := round(v, 3); !(got == v || math.IsNaN(v) && math.IsNaN(got)) {
			t.Errorf("round(%v) = %v", v, got)
		}
	}
}

func TestProduceConsumeE2EAgainstKfake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, stop, err := benchref.Start(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	base := Options{Brokers: addr, Topic: "bench-test", Partitions: 3, Quiet: true}

	p := base
	p.Mode, p.Records, p.RecordSize, p.Producers, p.Acks, p.Compression = ModeProduce, 3001, 100, 2, "all", "lz4"
	r, _ := runJSON(t, ctx, p)
	if r.Records != 3001 || r.Bytes != 3001*100 || r.P50Ms == nil || *r.P50Ms <= 0 || *r.MaxMs < *r.P999Ms || *r.P999Ms < *r.P99Ms || *r.P99Ms < *r.P50Ms {
		t.Errorf("produce: %+v", r)
	}

	p.Records, p.Producers, p.Acks, p.Compression = 999, 1, "1", "zstd"
	if r, _ = runJSON(t, ctx, p); r.Records != 999 {
		t.Errorf("produce acks=1: %+v", r)
	}

	c := base
	c.Mode = ModeConsume
	r, raw := runJSON(t, ctx, c)
	if r.Records != 4000 || r.Bytes != 4000*100 {
		t.Errorf("consume all: %+v", r)
	}
	if raw["p50_ms"] != nil {
		t.Errorf("consume reports a latency: %v", raw["p50_ms"])
	}
	c.Records = 1500
	if r, _ = runJSON(t, ctx, c); r.Records != 1500 {
		t.Errorf("consume --records 1500: %+v", r)
	}

	e := base
	e.Mode, e.Records, e.Rate, e.RecordSize, e.Acks = ModeE2E, 1000, 2000, 64, "all"
	r, _ = runJSON(t, ctx, e)
	// Every latency is measured within the run (produced after it started,
	// consumed before it ended), on the wall clock: a little slack for a
	// clock being slewed.
	if r.Records != 1000 || r.Bytes != 1000*64 || r.P50Ms == nil || *r.P50Ms <= 0 || *r.MaxMs > r.Seconds*1000*1.01+1 {
		t.Errorf("e2e: %+v", r)
	}

	// Everything e2e produced is in the topic too: 5000 records from the start.
	c.Records = 0
	if r, _ = runJSON(t, ctx, c); r.Records != 5000 {
		t.Errorf("consume after e2e: %+v", r)
	}
}

func TestTransactionalProduce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, stop, err := benchref.Start(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// Two producers of 1,250 records each, committing every 500: 3 commits
	// each (500, 500, 250).
	o := Options{Mode: ModeProduce, Brokers: addr, Topic: "txn-test", Partitions: 3, Records: 2500, RecordSize: 50,
		Producers: 2, Acks: "all", Compression: "none", Quiet: true, TransactionalID: "bench-test", TxnCommitRecords: 500}
	r, raw := runJSON(t, ctx, o)
	if r.Records != 2500 || r.Transactions != 6 || r.TxnCommitP50Ms == nil || *r.TxnCommitMaxMs < *r.TxnCommitP99Ms ||
		*r.TxnCommitP99Ms < *r.TxnCommitP50Ms || r.TxnFlushP50Ms == nil || r.TxnFlushP99Ms == nil {
		t.Errorf("transactional produce: %+v", r)
	}
	for _, k := range []string{"transactions", "txn_commit_p50_ms", "txn_commit_p99_ms", "txn_commit_max_ms", "txn_flush_p50_ms", "txn_flush_p99_ms"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("JSON line lacks %q", k)
		}
	}
	// By interval only (never reached here): one transaction, committed at the end.
	o.Records, o.Producers, o.TxnCommitRecords, o.TxnCommitInterval = 300, 1, 0, time.Hour
	if r, _ = runJSON(t, ctx, o); r.Records != 300 || r.Transactions != 1 {
		t.Errorf("transactional produce by interval: %+v", r)
	}
	// consume reads all 2,800 records; the transaction markers between them
	// take offsets but are not counted.
	c := Options{Mode: ModeConsume, Brokers: addr, Topic: "txn-test", Quiet: true}
	if r, _ = runJSON(t, ctx, c); r.Records != 2800 {
		t.Errorf("consume after transactional produce: %+v", r)
	}
	// A plain run's JSON line has no transaction fields.
	o.TransactionalID, o.TxnCommitInterval, o.Records = "", 0, 10
	if _, raw = runJSON(t, ctx, o); raw["transactions"] != nil || raw["txn_commit_p50_ms"] != nil {
		t.Errorf("idempotent run reports transactions: %v", raw)
	}
}

func TestE2EByDuration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr, stop, err := benchref.Start(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	o := Options{Mode: ModeE2E, Brokers: addr, Topic: "e2e-duration", Partitions: 2, RecordSize: 100,
		Duration: time.Second, Rate: 500, Producers: 2, Acks: "all", Compression: "none", Quiet: true}
	// Records are due at fixed slots (n/250 s for each producer), and those
	// due before the second is over are produced, however late: 500,
	// however fast or slow the run.
	r, _ := runJSON(t, ctx, o)
	if r.Records != 500 {
		t.Errorf("1 s at 500/s gave %d records, want 500", r.Records)
	}
}

func TestDisk(t *testing.T) {
	o := Options{Mode: ModeDisk, Dir: t.TempDir(), SizeMiB: 4, BlockSize: 64 << 10, SyncEvery: 4, Quiet: true}
	r, _ := runJSON(t, context.Background(), o)
	if r.Records != 64 || r.Bytes != 4<<20 || r.P50Ms == nil {
		t.Errorf("disk: %+v", r)
	}
}

func TestCommandFlags(t *testing.T) {
	t.Setenv("SLUICE_BROKERS", "127.0.0.1:1")
	cmd := Command()
	for _, mode := range []string{"produce", "consume", "e2e", "disk"} {
		sub, _, err := cmd.Find([]string{mode})
		if err != nil || sub.Name() != mode {
			t.Fatalf("no %s subcommand: %v", mode, err)
		}
		if mode == "disk" {
			continue
		}
		if got := sub.Flags().Lookup("brokers").DefValue; got != "127.0.0.1:1" {
			t.Errorf("%s --brokers default %q, want it from SLUICE_BROKERS", mode, got)
		}
	}
	e2e, _, _ := cmd.Find([]string{"e2e"})
	if got := e2e.Flags().Lookup("rate").DefValue; got != "1000" {
		t.Errorf("e2e --rate default %s", got)
	}
}

func TestValidate(t *testing.T) {
	for _, o := range []Options{
		{Mode: "nope"},
		{Mode: ModeProduce, Brokers: "x:1", Topic: "t", Acks: "2", Compression: "none"},
		{Mode: ModeProduce, Brokers: "x:1", Topic: "t", Acks: "all", Compression: "brotli"},
		{Mode: ModeE2E, Brokers: "x:1", Topic: "t", Acks: "all", Compression: "none", RecordSize: 4},
		{Mode: ModeProduce, Brokers: "", Topic: "t", Acks: "all", Compression: "none"},
		{Mode: ModeDisk, SizeMiB: 0, BlockSize: 1},
		{Mode: ModeProduce, Brokers: "x:1", Topic: "t", Acks: "all", Compression: "none", TxnCommitRecords: 10},
		{Mode: ModeProduce, Brokers: "x:1", Topic: "t", Acks: "1", Compression: "none", TransactionalID: "x"},
		{Mode: ModeProduce, Brokers: "x:1", Topic: "t", Acks: "all", Compression: "none", TransactionalID: "x", TxnCommitInterval: -1},
		{Mode: ModeE2E, Brokers: "x:1", Topic: "t", Acks: "all", Compression: "none", RecordSize: 64, TransactionalID: "x"},
	} {
		if err := Run(context.Background(), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
