//go:build unix

package sink

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/sink/format"
)

// BenchmarkEncode measures the sink's own path from polled records to
// sealed in-memory files, without a broker or a store: records of
// TestBenchSink's shape (a 16-byte key, a JSON value of about 200 bytes)
// on 3 partitions, taken a poll of 30,000 at a time by encode, every
// sealed file's pieces released after each poll as an upload would, so
// that it runs in the steady state of a long-lived sink. MB/s are of keys
// and values going in. It is steadier than TestBenchSink (no broker, no
// disk, no other process), for comparing builds of the encoding path;
// cpu-ns/op (the process's user and system CPU time per record, all
// goroutines) is steadier still on a busy machine than ns/op.
func BenchmarkEncode(b *testing.B) {
	const (
		partitions = 3
		pollSize   = 30_000
	)
	pad := strings.Repeat("y", 140)
	recs := make([]*kgo.Record, pollSize)
	var in int64
	ts := time.Date(2026, 3, 1, 22, 30, 0, 0, time.UTC)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "bench", Partition: int32(i % partitions), Timestamp: ts, Key: []byte(fmt.Sprintf("key-%012d", i)),
			Value: []byte(fmt.Sprintf(`{"id":%d,"user":"u%07d","country":"%s","pad":"%s"}`, i, i%9973, []string{"fr", "de", "jp", "br"}[i%4], pad))}
		in += int64(len(recs[i].Key) + len(recs[i].Value))
	}
	tm, err := ParseTemplate("dt={{date}}")
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"jsonl", "parquet"} {
		b.Run(name, func(b *testing.B) {
			f, err := format.New(name, format.Options{})
			if err != nil {
				b.Fatal(err)
			}
			s, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Topics: "bench", Store: dirStore{root: b.TempDir()}, Format: f,
				PartitionBy: tm, RollBytes: 4 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer s.cl.Close()
			parts := make([]*part, partitions)
			for i := range parts {
				parts[i] = &part{tp: tp{"bench", int32(i)}, loaded: true, openFirst: -1, hw: -1, committed: -1, open: map[string]*openFile{}}
			}
			ctx := context.Background()
			b.SetBytes(in / pollSize)
			b.ResetTimer()
			cpu0 := cpuTime(b)
			byPart := make([][]*kgo.Record, partitions)
			for _, r := range recs {
				byPart[r.Partition] = append(byPart[r.Partition], r)
			}
			for done := 0; done < b.N; done += pollSize {
				ws := make([]*work, partitions)
				for i, p := range parts {
					for j, r := range byPart[i] {
						r.Offset = int64(done/partitions + j)
					}
					ws[i] = &work{p: p, recs: byPart[i]}
				}
				for _, w := range ws {
					for len(w.recs) > 0 {
						if err := s.encode(ctx, ws); err != nil {
							b.Fatal(err)
						}
					}
				}
				for _, p := range parts {
					for _, c := range p.sealed {
						for _, o := range c.objects {
							// Uploaded: as finish does.
							p.bytes -= o.data.Len()
							s.buffered.Add(-o.data.Len())
							o.data.release()
						}
					}
					p.sealed = nil
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user and system CPU time so far, in ns.
func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
