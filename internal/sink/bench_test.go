package sink_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/backup/s3test"
	"github.com/sluice-io/sluice/internal/sink"
	"github.com/sluice-io/sluice/internal/sink/format"
)

// TestBenchSink (only with SLUICE_BENCH_SINK set) reads the same topic
// with a plain kgo consumer (direct, no group, no commits, records
// dropped) and sinks it in each format of SLUICE_BENCH_SINK_FORMATS
// (default "jsonl,parquet": JSON values in both; "raw" adds values
// written one after the other, the sink's own cost) to a directory and to
// a local versitygw, alternating, SLUICE_BENCH_SINK_ROUNDS times (default
// 2), and reports MB/s of keys and values and each sink's ratio to the
// plain consumer of its round (the ratios, not the MB/s, compare across a
// busy machine). A figure, not an assertion. SLUICE_BENCH_SINK_RECORDS
// sets the record count (default 500000, of a 16-byte key and a JSON
// value of about 200 bytes).
func TestBenchSink(t *testing.T) {
	if os.Getenv("SLUICE_BENCH_SINK") == "" {
		t.Skip("a benchmark: set SLUICE_BENCH_SINK=1")
	}
	n := 500_000
	if s := os.Getenv("SLUICE_BENCH_SINK_RECORDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	const partitions = 3
	c := startCluster(t)
	c.create(t, "bench", partitions)
	ctx := context.Background()
	pad := strings.Repeat("y", 140)
	var total int64
	for i := range n {
		r := &kgo.Record{Topic: "bench", Partition: int32(i % partitions), Key: []byte(fmt.Sprintf("key-%012d", i)),
			Value: []byte(fmt.Sprintf(`{"id":%d,"user":"u%07d","country":"%s","pad":"%s"}`, i, i%9973, countries[i%4], pad))}
		total += int64(len(r.Key) + len(r.Value))
		c.cl.Produce(ctx, r, nil)
	}
	if err := c.cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mbs := func(d time.Duration) float64 { return float64(total) / d.Seconds() / 1e6 }
	plain := func() time.Duration {
		began := time.Now()
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.ConsumeTopics("bench"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		for got := 0; got < n; {
			fs := cl.PollFetches(pctx)
			if pctx.Err() != nil {
				t.Fatal("plain consumer: timed out")
			}
			got += fs.NumRecords()
		}
		return time.Since(began)
	}
	formats := []string{"jsonl", "parquet"}
	if v := os.Getenv("SLUICE_BENCH_SINK_FORMATS"); v != "" {
		formats = strings.Split(v, ",")
	}
	rounds := 2
	if v := os.Getenv("SLUICE_BENCH_SINK_ROUNDS"); v != "" {
		rounds, _ = strconv.Atoi(v)
	}
	tm, _ := sink.ParseTemplate("dt={{date}}")
	// sunk returns the time from the start to every offset committed, and
	// from the first record taken (the group joined) to then.
	sunk := func(store sink.Store, group string, f format.Format) (time.Duration, time.Duration) {
		began := time.Now()
		r := runSink(t, sink.Options{Brokers: []string{c.addr}, Topics: "bench", Group: group, Store: store, Format: f,
			PartitionBy: tm, RollBytes: 4 << 20, RollTime: 200 * time.Millisecond})
		for metricValue(t, r.s, "sluice_sink_buffered_bytes")+metricValue(t, r.s, "sluice_sink_records_total") == 0 {
			time.Sleep(time.Millisecond)
		}
		joined := time.Now()
		c.waitCommitted(t, group, "bench", 5*time.Minute, r.status)
		d := time.Since(began)
		t.Logf("  (%s to join the group)", joined.Sub(began).Round(time.Millisecond))
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		return d, time.Since(joined)
	}
	srv := s3test.Start(t)
	for round := 1; round <= rounds; round++ {
		p := plain()
		t.Logf("%-30s round %d: %6.2fs, %6.1f MB/s", "plain kgo consumer", round, p.Seconds(), mbs(p))
		report := func(what string, d, j time.Duration) {
			t.Logf("%-30s round %d: %6.2fs, %6.1f MB/s, %.2fx the plain consumer; after the join %6.2fs, %6.1f MB/s, %.2fx",
				what, round, d.Seconds(), mbs(d), p.Seconds()/d.Seconds(), j.Seconds(), mbs(j), p.Seconds()/j.Seconds())
		}
		for _, name := range formats {
			var f format.Format = rawFormat{}
			if name != "raw" {
				var err error
				if f, err = format.New(name, format.Options{}); err != nil {
					t.Fatal(err)
				}
			}
			dir, _ := sink.OpenStore(ctx, "file://"+t.TempDir(), backup.S3Config{})
			d, j := sunk(dir, fmt.Sprintf("dir-%s-%d", name, round), f)
			report("sink "+name+" to a directory", d, j)
			if name == "raw" {
				continue
			}
			s3, _ := sink.OpenStore(ctx, fmt.Sprintf("s3://%s/%s%d", srv.Bucket, name, round), backup.S3Config{Endpoint: srv.Endpoint, Creds: srv.Creds()})
			d, j = sunk(s3, fmt.Sprintf("s3-%s-%d", name, round), f)
			report("sink "+name+" to versitygw", d, j)
		}
	}
}

// rawFormat writes values one after the other: the sink's own cost, with
// next to no encoding, for comparison with jsonl.
type rawFormat struct{}

func (rawFormat) Name() string { return "raw" }
func (rawFormat) Ext() string  { return ".raw" }
func (rawFormat) NewFile(w io.Writer) (format.File, error) {
	return &rawFile{w: w}, nil
}

type rawFile struct {
	w    io.Writer
	bufs [][]byte
	size int64
}

func (f *rawFile) Append(_ context.Context, r *format.Record) error {
	f.bufs = append(f.bufs, r.Value)
	f.size += int64(len(r.Value))
	return nil
}
func (f *rawFile) Size() int64  { return f.size }
func (f *rawFile) Records() int { return len(f.bufs) }
func (f *rawFile) Close() error {
	for _, b := range f.bufs {
		if _, err := f.w.Write(b); err != nil {
			return err
		}
	}
	return nil
}
