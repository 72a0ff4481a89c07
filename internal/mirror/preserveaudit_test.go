package mirror

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/record"
)

// TestMirrorPreserveAuditCounts: an offset-preserving mirror with Audit
// counts, from the batches it copied, exactly what the audit's topic stage
// counts in the source topics: records of committed and aborted
// transactions but not their markers (payments), the records a compacted
// topic kept and not its gaps (ledger), records stamped with the log's
// append time (stamped), with compressed and uncompressed batches, and
// records written while the mirror runs.
func TestMirrorPreserveAuditCounts(t *testing.T) {
	a := connect(t, clitest.Start(t, map[string]string{"group.initial.rebalance.delay.ms": "0", "log.cleaner.backoff.ms": "50"}).Addr)
	b := connect(t, startBroker(t))
	compactedWithGaps(t, a, "ledger")
	a.create(t, "payments", 2, nil)
	transactions(t, a, "payments", 2, "tx1", false)
	s := func(v string) *string { return &v }
	a.create(t, "stamped", 1, map[string]*string{"message.timestamp.type": s("LogAppendTime")})
	plain, err := kgo.NewClient(kgo.SeedBrokers(a.addr), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for i := range 40 { // uncompressed batches, a record each, with gaps in time
		r := &kgo.Record{Topic: "stamped", Value: []byte(fmt.Sprint(i))}
		if err := plain.ProduceSync(clitest.Ctx(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	a.produce(t, &kgo.Record{Topic: "stamped", Value: []byte(endValue)})

	counter, err := audit.NewCounter(clitest.Ctx(t), audit.CounterOptions{Stage: audit.StageMirror, FlushInterval: 100 * time.Millisecond,
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(a.addr)}, opts...)...)
		}})
	if err != nil {
		t.Fatal(err)
	}
	_, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "ledger|payments|stamped",
		PreserveOffsets: true, Audit: counter})
	transactions(t, a, "payments", 2, "tx2", true) // while the mirror runs
	for _, topic := range []string{"ledger", "payments", "stamped"} {
		waitEnds(t, a, b, topic)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := counter.Close(clitest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	// Since: before every record of the test.
	r, err := audit.BuildCountReport(clitest.Ctx(t), audit.ReportOptions{Since: time.UnixMilli(1_600_000_000_000), Settle: -1,
		CountTopics: true, Expect: []string{audit.StageMirror},
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(a.addr)}, opts...)...)
		}})
	if err != nil {
		t.Fatal(err)
	}
	total := map[string]int64{}
	for _, w := range r.Windows {
		m, tp := w.Stages[audit.StageMirror], w.Stages[audit.StageTopic]
		if m.Count != tp.Count {
			t.Errorf("%s %s: mirror counted %d, the topic holds %d", w.Topic, w.Window, m.Count, tp.Count)
		}
		total[w.Topic] += tp.Count
	}
	if r.Missing != 0 || r.Extra != 0 {
		t.Errorf("report: %d missing, %d extra: %+v", r.Missing, r.Extra, r.Windows)
	}
	// payments: per partition, twice 5 plain records and 3 transactions
	// of 5 (one aborted: its records are in the topic, counted), and the
	// end record.
	if total["payments"] != 2*(20+20+1) || total["stamped"] != 41 || total["ledger"] == 0 {
		t.Errorf("records counted by the topic stage: %v", total)
	}
	if s := counter.Stats(); s.Counted == 0 {
		t.Errorf("counter stats %+v", s)
	}
	t.Logf("windows %d, records %v", len(r.Windows), total)
}

// FuzzCountRecords: countRecords never panics, and on every records
// section that record.Records decodes it finds the same records, at the
// same offsets and times.
func FuzzCountRecords(f *testing.F) {
	var data []byte
	for i := range 3 {
		data = record.AppendRecord(data, record.Record{TimestampDelta: int64(i*1000 - 500), OffsetDelta: int32(i * 2),
			Key: []byte("k"), Value: []byte(fmt.Sprint(i)), Headers: []record.RecordHeader{{Key: "h", Value: []byte("v")}}})
	}
	f.Add(int64(100), int64(1_700_000_000_000), int16(0), int32(3), int64(99), data)
	f.Add(int64(0), int64(5), int16(record.AttrLogAppendTime), int32(3), int64(3), data)
	f.Add(int64(7), int64(0), int16(0), int32(2), int64(0), data)
	f.Add(int64(0), int64(0), int16(0), int32(1), int64(0), []byte{0x02, 0x00})
	f.Fuzz(func(t *testing.T, base, baseTs int64, attrs int16, count int32, from int64, data []byte) {
		attrs &^= record.AttrCompressionMask | record.AttrControl
		spec := record.BatchSpec{BaseOffset: base, Attributes: attrs, FirstTimestamp: baseTs, MaxTimestamp: baseTs + 1,
			ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
		b, err := record.BuildBatch(spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, data...)
		binary.BigEndian.PutUint32(b[8:], uint32(len(b)-record.LogOverhead)) // batchLength
		binary.BigEndian.PutUint32(b[57:], uint32(count))                    // recordCount
		h, err := record.ParseHeader(b)
		if err != nil {
			return
		}
		type got struct{ offset, ms int64 }
		var seen []got
		cerr := countRecords(b[record.HeaderSize:], &h, from, func(offset, ms int64) { seen = append(seen, got{offset, ms}) })
		recs, err := record.Records(b, h, 1<<20)
		if err != nil {
			return
		}
		if cerr != nil {
			t.Fatalf("countRecords: %v; record.Records decodes %d records", cerr, len(recs))
		}
		var want []got
		for _, r := range recs {
			o, ms := h.BaseOffset+int64(r.OffsetDelta), h.BaseTimestamp+r.TimestampDelta
			if h.Attributes&record.AttrLogAppendTime != 0 {
				ms = h.MaxTimestamp
			}
			if o >= from {
				want = append(want, got{o, ms})
			}
		}
		if !slices.Equal(seen, want) {
			t.Fatalf("countRecords found %v, record.Records %v", seen, want)
		}
	})
}

// BenchmarkCountBatches: the CPU cost of counting a 1 MiB fetch for the
// audit in the offset-preserving mode (batches of 100 records of a 16-byte
// key and a 200-byte random value, uncompressed and snappy), without the
// Counter's own lock (a nil Counter takes the tally and drops it).
func BenchmarkCountBatches(b *testing.B) {
	for _, codec := range []int{record.CodecNone, record.CodecSnappy} {
		var raw []byte
		n := 0
		for off := int64(0); len(raw) < 1<<20; off += 100 {
			var recs []record.Record
			for i := range 100 {
				v := make([]byte, 200)
				rand.Read(v)
				recs = append(recs, record.Record{TimestampDelta: int64(i), OffsetDelta: int32(i), Key: []byte(fmt.Sprintf("key-%012d", off+int64(i))), Value: v})
			}
			batch, err := record.BuildBatch(record.BatchSpec{BaseOffset: off, FirstTimestamp: 1_700_000_000_000 + off, MaxTimestamp: 1_700_000_000_000 + off + 99,
				ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Codec: codec}, recs)
			if err != nil {
				b.Fatal(err)
			}
			raw = append(raw, batch...)
			n += 100
		}
		m := &Mirror{}
		b.Run(fmt.Sprintf("codec=%d", codec), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := m.countBatches("t", 0, raw, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
	}
}
