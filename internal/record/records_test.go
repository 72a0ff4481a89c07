package record

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// sampleRecords is a mix of what records hold: null and empty keys and
// values, headers with null and empty values, compressible and not.
func sampleRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		r := Record{OffsetDelta: int32(i), TimestampDelta: int64(i * 3)}
		switch i % 5 {
		case 0: // null key, null value
		case 1:
			r.Key = []byte(fmt.Sprintf("key-%d", i))
			r.Value = []byte{}
		case 2:
			r.Key = []byte{}
			r.Value = []byte(strings.Repeat(fmt.Sprintf("value %d ", i), 40))
			r.Headers = []RecordHeader{{Key: "h1", Value: []byte("v1")}, {Key: "null", Value: nil}, {Key: "", Value: []byte{}}}
		case 3:
			r.Key = []byte("k")
			r.Value = bytes.Repeat([]byte{byte(i)}, 3000)
			r.TimestampDelta = -int64(i) // out of order timestamps are legal
		case 4:
			r.Value = []byte("tombstone? no, a value with a null key")
			r.Headers = []RecordHeader{{Key: "trace-id", Value: []byte(fmt.Sprint(i * 7919))}}
		}
		recs[i] = r
	}
	return recs
}

func requireRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, fmtRecord(got[i]), fmtRecord(want[i]))
		}
	}
}

func fmtRecord(r Record) string {
	q := func(b []byte) string {
		if b == nil {
			return "null"
		}
		if len(b) > 20 {
			return fmt.Sprintf("%q...(%d)", b[:20], len(b))
		}
		return fmt.Sprintf("%q", b)
	}
	s := fmt.Sprintf("{attrs %d ts %d off %d key %s value %s headers [", r.Attributes, r.TimestampDelta, r.OffsetDelta, q(r.Key), q(r.Value))
	for _, h := range r.Headers {
		s += fmt.Sprintf("%q=%s ", h.Key, q(h.Value))
	}
	if r.Headers == nil {
		s += "nil"
	}
	return s + "]}"
}

func testSpec(codec int) BatchSpec {
	return BatchSpec{
		BaseOffset: 1000, PartitionLeaderEpoch: 7, Attributes: AttrTransactional,
		FirstTimestamp: 1_700_000_000_000, MaxTimestamp: 1_700_000_000_100,
		ProducerID: 42, ProducerEpoch: 3, BaseSequence: 17, Codec: codec,
	}
}

func TestBuildBatchRoundtrip(t *testing.T) {
	for _, codec := range allCodecs {
		for _, n := range []int{1, 2, 5, 100} {
			t.Run(fmt.Sprintf("%s/%d", codecName(codec), n), func(t *testing.T) {
				spec := testSpec(codec)
				recs := sampleRecords(n)
				b, err := BuildBatch(spec, recs)
				if err != nil {
					t.Fatal(err)
				}
				h, err := ValidateProduced(b)
				if err != nil {
					t.Fatal(err)
				}
				want := Header{
					BaseOffset: 1000, BatchLength: int32(len(b) - LogOverhead), LeaderEpoch: 7, Magic: 2, CRC: Checksum(b),
					Attributes: AttrTransactional | int16(codec), LastOffsetDelta: int32(n - 1),
					BaseTimestamp: spec.FirstTimestamp, MaxTimestamp: spec.MaxTimestamp,
					ProducerID: 42, ProducerEpoch: 3, BaseSequence: 17, RecordCount: int32(n),
				}
				if h != want {
					t.Fatalf("header\n got %+v\nwant %+v", h, want)
				}
				got, err := Records(b, h, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				requireRecords(t, got, recs)
			})
		}
	}
}

func TestBuildBatchGapsAndEmpty(t *testing.T) {
	recs := []Record{{OffsetDelta: 0, Value: []byte("a")}, {OffsetDelta: 3, Value: []byte("b")}, {OffsetDelta: 9}}
	for _, codec := range allCodecs {
		b, err := BuildBatch(BatchSpec{Codec: codec, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs)
		if err != nil {
			t.Fatal(err)
		}
		h, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if h.LastOffsetDelta != 9 || h.RecordCount != 3 || h.HasProducer() || h.Codec() != int8(codec) {
			t.Fatalf("header %+v", h)
		}
		got, err := Records(b, h, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		requireRecords(t, got, recs)

		// An empty batch, as compaction leaves behind.
		b, err = BuildBatch(BatchSpec{Codec: codec}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h, err = Parse(b); err != nil || h.RecordCount != 0 {
			t.Fatalf("empty batch: %+v %v", h, err)
		}
		if got, err = Records(b, h, 1<<20); err != nil || len(got) != 0 {
			t.Fatalf("empty batch records: %v %v", got, err)
		}

		// A compacted batch keeps its original last offset.
		b, err = BuildBatch(BatchSpec{Codec: codec, LastOffsetDelta: 12}, recs[:2])
		if err != nil {
			t.Fatal(err)
		}
		if h, err = Parse(b); err != nil || h.LastOffsetDelta != 12 || h.RecordCount != 2 {
			t.Fatalf("batch with kept last offset: %+v %v", h, err)
		}
		if got, err = Records(b, h, 1<<20); err != nil {
			t.Fatal(err)
		}
		requireRecords(t, got, recs[:2])
		// A LastOffsetDelta below the last record's delta is ignored.
		if b, err = BuildBatch(BatchSpec{Codec: codec, LastOffsetDelta: 1}, recs); err != nil {
			t.Fatal(err)
		}
		if h, _ = Parse(b); h.LastOffsetDelta != 9 {
			t.Fatalf("last offset delta %d, want 9", h.LastOffsetDelta)
		}
	}

	for _, bad := range [][]Record{
		{{OffsetDelta: -1}},
		{{OffsetDelta: 0}, {OffsetDelta: 0}},
		{{OffsetDelta: 2}, {OffsetDelta: 1}},
	} {
		if _, err := BuildBatch(BatchSpec{}, bad); !errors.Is(err, ErrInvalidRecord) {
			t.Fatalf("offset deltas %v: err %v", bad, err)
		}
	}
	if _, err := BuildBatch(BatchSpec{Codec: 5}, recs); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatalf("codec 5: %v", err)
	}
	if _, err := BuildBatch(BatchSpec{Codec: CodecLZ4, Level: 99}, recs); err == nil {
		t.Fatal("lz4 level 99 accepted")
	}
}

func TestAppendRecordBytes(t *testing.T) {
	for _, tc := range []struct {
		r    Record
		want []byte
	}{
		{Record{Value: []byte("a")}, []byte{14, 0, 0, 0, 1, 2, 'a', 0}},
		{Record{Key: []byte{}, Value: nil}, []byte{12, 0, 0, 0, 0, 1, 0}},
		{
			Record{Attributes: 0, TimestampDelta: -1, OffsetDelta: 64, Key: []byte("k"), Value: []byte("v"),
				Headers: []RecordHeader{{Key: "h", Value: nil}}},
			// length 12: attrs, ts -1 (1), offset 64 (0x80 0x01), key, value, 1 header: "h" null
			[]byte{24, 0, 1, 0x80, 0x01, 2, 'k', 2, 'v', 2, 2, 'h', 1},
		},
	} {
		got := AppendRecord([]byte{0xEE}, tc.r)
		if !bytes.Equal(got[1:], tc.want) || got[0] != 0xEE {
			t.Fatalf("%s: got % x, want % x", fmtRecord(tc.r), got[1:], tc.want)
		}
		var r Record
		rest, err := decodeRecord(got[1:], &r, true)
		if err != nil || len(rest) != 0 {
			t.Fatalf("decode: %v, %d left", err, len(rest))
		}
		requireRecords(t, []Record{r}, []Record{tc.r})
	}
}

// rawBatch puts payload behind a valid header claiming count records with
// codec; the CRC is correct so Parse accepts it.
func rawBatch(codec int, attrs int16, count int32, payload []byte) []byte {
	b, _ := BuildBatch(BatchSpec{Codec: codec, Attributes: attrs, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, nil)
	b = append(b[:HeaderSize:HeaderSize], payload...)
	binary.BigEndian.PutUint32(b[offBatchLength:], uint32(len(b)-LogOverhead))
	binary.BigEndian.PutUint32(b[offRecordCount:], uint32(count))
	binary.BigEndian.PutUint32(b[offCRC:], Checksum(b))
	return b
}

func TestRecordsMalformed(t *testing.T) {
	one := AppendRecord(nil, Record{Key: []byte("key"), Value: []byte("value"), Headers: []RecordHeader{{Key: "h", Value: []byte("v")}}})
	two := AppendRecord(append([]byte{}, one...), Record{OffsetDelta: 1})
	patch := func(b []byte, i int, v ...byte) []byte {
		b = append([]byte{}, b...)
		copy(b[i:], v)
		return b
	}
	cases := map[string]struct {
		count   int32
		payload []byte
	}{
		"count too high":           {3, two},
		"count too low":            {1, two},
		"count negative":           {-1, two},
		"truncated":                {1, one[:len(one)-1]},
		"length negative":          {1, patch(one, 0, 1)},
		"length beyond data":       {1, patch(one, 0, 0x7e)},
		"length short of fields":   {1, append(patch(one, 0, one[0]-2), 0)},
		"length past fields":       {1, append(patch(one, 0, one[0]+2), 0)},
		"varint too long":          {1, bytes.Repeat([]byte{0xff}, 11)},
		"varint32 overflow":        {1, append([]byte{0xff, 0xff, 0xff, 0xff, 0x7f}, one...)},
		"key length beyond record": {1, patch(one, 4, 0x40)},
		"header count negative":    {1, patch(one, len(one)-5, 3)},
		"header count huge":        {1, patch(one, len(one)-5, 0x7e)},
		"header key negative":      {1, patch(one, len(one)-4, 1)},
		"empty record":             {1, []byte{0}},
		"garbage":                  {1, []byte("this is not a record")},
	}
	for name, tc := range cases {
		b := rawBatch(CodecNone, 0, tc.count, tc.payload)
		h, err := ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		if recs, err := Records(b, h, 1<<20); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: err %v, recs %d; want ErrInvalidRecord", name, err, len(recs))
		}
	}

	// The valid payloads decode.
	for count, p := range map[int32][]byte{1: one, 2: two} {
		b := rawBatch(CodecNone, 0, count, p)
		h, _ := Parse(b)
		if recs, err := Records(b, h, 1<<20); err != nil || len(recs) != int(count) {
			t.Fatalf("valid payload: %d records, %v", len(recs), err)
		}
	}

	// Headers that disagree with b.
	b := rawBatch(CodecNone, 0, 2, two)
	h, _ := Parse(b)
	for name, mod := range map[string]func(*Header){
		"batch length past b":  func(h *Header) { h.BatchLength += 1 },
		"batch length too low": func(h *Header) { h.BatchLength = 10 },
		"magic":                func(h *Header) { h.Magic = 1 },
		"codec":                func(h *Header) { h.Attributes = 6 },
	} {
		hh := h
		mod(&hh)
		if _, err := Records(b, hh, 1<<20); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	if _, err := Records(b[:30], h, 1<<20); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("short b: %v", err)
	}

	// Compressed garbage, and a compressed section over maxBytes.
	for _, codec := range allCodecs[1:] {
		b := rawBatch(codec, 0, 1, []byte("not compressed at all, not even a little"))
		h, _ := Parse(b)
		if _, err := Records(b, h, 1<<20); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s garbage: %v", codecName(codec), err)
		}
		recs := sampleRecords(50)
		b, _ = BuildBatch(BatchSpec{Codec: codec}, recs)
		h, _ = Parse(b)
		if _, err := Records(b, h, 1000); !errors.Is(err, ErrInvalidRecord) || !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s over maxBytes: %v", codecName(codec), err)
		}
	}
}

func TestFirstAtOrAfter(t *testing.T) {
	const base = 10_000
	recs := []Record{
		{OffsetDelta: 0, TimestampDelta: 0},
		{OffsetDelta: 2, TimestampDelta: 10},
		{OffsetDelta: 5, TimestampDelta: 5},
		{OffsetDelta: 9, TimestampDelta: 20, Headers: []RecordHeader{{Key: "x"}}},
	}
	for _, codec := range allCodecs {
		spec := BatchSpec{BaseOffset: 500, FirstTimestamp: base, MaxTimestamp: base + 20, Codec: codec}
		b, err := BuildBatch(spec, recs)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := Parse(b)
		for _, tc := range []struct {
			ts     int64
			offset int64
			found  bool
		}{
			{0, 500, true}, {base, 500, true}, {base + 1, 502, true}, {base + 5, 502, true},
			{base + 10, 502, true}, {base + 11, 509, true}, {base + 20, 509, true}, {base + 21, 0, false},
		} {
			off, found, err := FirstAtOrAfter(b, h, tc.ts, 1<<20)
			if err != nil || off != tc.offset || found != tc.found {
				t.Fatalf("%s ts %d: got %d %v %v, want %d %v", codecName(codec), tc.ts, off, found, err, tc.offset, tc.found)
			}
		}

		// LogAppendTime: every record has the batch's max timestamp.
		SetLogAppendTime(b, base+1000)
		if h, err = Parse(b); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			ts    int64
			found bool
		}{{0, true}, {base + 15, true}, {base + 1000, true}, {base + 1001, false}} {
			off, found, err := FirstAtOrAfter(b, h, tc.ts, 1<<20)
			if err != nil || found != tc.found || (found && off != 500) {
				t.Fatalf("%s log append ts %d: got %d %v %v", codecName(codec), tc.ts, off, found, err)
			}
		}
	}

	// Empty batch, malformed batch.
	b, _ := BuildBatch(BatchSpec{}, nil)
	h, _ := Parse(b)
	if _, found, err := FirstAtOrAfter(b, h, 0, 1<<20); found || err != nil {
		t.Fatalf("empty batch: %v %v", found, err)
	}
	b = rawBatch(CodecNone, 0, 1, []byte{0x7e, 1, 2})
	h, _ = Parse(b)
	if _, _, err := FirstAtOrAfter(b, h, 0, 1<<20); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("malformed: %v", err)
	}
}

func TestParseControlKey(t *testing.T) {
	for _, tc := range []struct {
		key  []byte
		want ControlType
		ok   bool
	}{
		{[]byte{0, 0, 0, 0}, ControlAbort, true},
		{[]byte{0, 0, 0, 1}, ControlCommit, true},
		{[]byte{0, 1, 0, 1, 9, 9}, ControlCommit, true}, // newer version, extra bytes
		{[]byte{0, 0, 0, 3}, ControlType(3), true},
		{[]byte{0, 0, 0}, 0, false},
		{nil, 0, false},
		{[]byte{0xff, 0xff, 0, 1}, 0, false},
	} {
		got, err := ParseControlKey(tc.key)
		if (err == nil) != tc.ok || got != tc.want {
			t.Fatalf("% x: got %v %v", tc.key, got, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidRecord) {
			t.Fatalf("% x: %v", tc.key, err)
		}
	}
	if ControlCommit.String() != "COMMIT" || ControlAbort.String() != "ABORT" {
		t.Fatal("String")
	}
}

// --- Cross-checks against a real client (franz-go) and broker (kfake) ---

var kgoCodecs = map[int]kgo.CompressionCodec{
	CodecNone:   kgo.NoCompression(),
	CodecGzip:   kgo.GzipCompression(),
	CodecSnappy: kgo.SnappyCompression(),
	CodecLZ4:    kgo.Lz4Compression(),
	CodecZstd:   kgo.ZstdCompression(),
}

func newKfake(t testing.TB, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// oldVersions pins Fetch to v11 and Produce to v9, which address topics by
// name, so raw requests need no topic IDs.
func oldVersions() *kversion.Versions {
	v := kversion.Stable()
	v.SetMaxKeyVersion(0, 9)
	v.SetMaxKeyVersion(1, 11)
	return v
}

func newKgo(t testing.TB, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.MaxVersions(oldVersions())}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// kgoRecords are what the client tests produce: every shape of key, value
// and header, timestamps known to the millisecond.
func kgoRecords(topic string, n int, base time.Time) []*kgo.Record {
	var out []*kgo.Record
	for i, r := range sampleRecords(n) {
		kr := &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		out = append(out, kr)
	}
	return out
}

// fetchRaw fetches partition 0 of topic from offset 0 until it has n records
// and returns the raw record batches as the broker sent them.
func fetchRaw(t testing.TB, cl *kgo.Client, topic string, n int) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var batches [][]byte
	next, have := int64(0), 0
	for have < n {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 100
		req.MaxBytes = 8 << 20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = topic
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.FetchOffset = next
		fp.PartitionMaxBytes = 8 << 20
		fp.CurrentLeaderEpoch = -1
		ft.Partitions = append(ft.Partitions, fp)
		req.Topics = append(req.Topics, ft)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("fetch response %+v", resp)
		}
		p := resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			t.Fatal(err)
		}
		it := NewIter(p.RecordBatches)
		for {
			b, h, ok := it.Next()
			if !ok {
				break
			}
			batches = append(batches, append([]byte{}, b...))
			have += int(h.RecordCount)
			next = h.LastOffset() + 1
		}
		if it.Err() != nil {
			t.Fatalf("batches from the broker: %v", it.Err())
		}
	}
	return batches
}

func TestRealClientBatches(t *testing.T) {
	topics := map[int]string{}
	for _, codec := range allCodecs {
		topics[codec] = "client-" + codecName(codec)
	}
	c := newKfake(t, topics[0], topics[1], topics[2], topics[3], topics[4])
	base := time.UnixMilli(1_700_000_000_000)
	const n = 60

	for _, codec := range allCodecs {
		t.Run(codecName(codec), func(t *testing.T) {
			topic := topics[codec]
			cl := newKgo(t, c, kgo.ProducerBatchCompression(kgoCodecs[codec]), kgo.ProducerLinger(20*time.Millisecond))
			produced := kgoRecords(topic, n, base)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// Produce in two rounds, so that there are several batches.
			if err := cl.ProduceSync(ctx, produced[:n/2]...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if err := cl.ProduceSync(ctx, produced[n/2:]...).FirstErr(); err != nil {
				t.Fatal(err)
			}

			var got []Record
			var offsets, timestamps []int64
			for _, b := range fetchRaw(t, cl, topic, n) {
				h, err := ValidateProduced(b)
				if err != nil {
					t.Fatal(err)
				}
				if int(h.Codec()) != codec {
					t.Fatalf("batch codec %d, want %d", h.Codec(), codec)
				}
				if !h.HasProducer() || h.BaseSequence < 0 {
					t.Fatalf("idempotent producer fields missing: %+v", h)
				}
				recs, err := Records(b, h, 4<<20)
				if err != nil {
					t.Fatal(err)
				}
				maxTS := int64(-1 << 63)
				for _, r := range recs {
					offsets = append(offsets, h.BaseOffset+int64(r.OffsetDelta))
					ts := h.BaseTimestamp + r.TimestampDelta
					timestamps = append(timestamps, ts)
					maxTS = max(maxTS, ts)
					// Detach from the batch buffer.
					r.Key, r.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
					got = append(got, r)
				}
				if maxTS != h.MaxTimestamp {
					t.Fatalf("max timestamp %d, records' max %d", h.MaxTimestamp, maxTS)
				}
				// Rebuilding the batch from what we decoded gives the same
				// records back (the bytes may differ by compressor).
				spec := BatchSpec{BaseOffset: h.BaseOffset, PartitionLeaderEpoch: h.LeaderEpoch, Attributes: h.Attributes,
					FirstTimestamp: h.BaseTimestamp, MaxTimestamp: h.MaxTimestamp, ProducerID: h.ProducerID,
					ProducerEpoch: h.ProducerEpoch, BaseSequence: h.BaseSequence, Codec: codec}
				rb, err := BuildBatch(spec, recs)
				if err != nil {
					t.Fatal(err)
				}
				rh, err := ValidateProduced(rb)
				if err != nil {
					t.Fatal(err)
				}
				again, err := Records(rb, rh, 4<<20)
				if err != nil {
					t.Fatal(err)
				}
				requireRecords(t, again, recs)
				if codec == CodecNone && !bytes.Equal(rb[HeaderSize:], b[HeaderSize:]) {
					t.Fatal("uncompressed records encode differently from franz-go's")
				}
			}

			want := make([]Record, n)
			for i, kr := range produced {
				want[i] = Record{Key: kr.Key, Value: kr.Value}
				for _, h := range kr.Headers {
					want[i].Headers = append(want[i].Headers, RecordHeader{Key: h.Key, Value: h.Value})
				}
				if offsets[i] != int64(i) {
					t.Fatalf("record %d at offset %d", i, offsets[i])
				}
				if timestamps[i] != kr.Timestamp.UnixMilli() {
					t.Fatalf("record %d timestamp %d, want %d", i, timestamps[i], kr.Timestamp.UnixMilli())
				}
				// Deltas depend on batching; compare contents.
				got[i].OffsetDelta, got[i].TimestampDelta = 0, 0
			}
			requireRecords(t, got, want)
		})
	}
}

// TestRealClientReadsBuiltBatches produces batches built by BuildBatch with
// every codec and consumes them with franz-go, which decodes them itself.
func TestRealClientReadsBuiltBatches(t *testing.T) {
	const topic = "built"
	c := newKfake(t, topic)
	cl := newKgo(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	const per = 20
	base := int64(1_700_000_000_000)
	var want []Record
	for _, codec := range allCodecs {
		recs := sampleRecords(per)
		maxTS := int64(0)
		for _, r := range recs {
			maxTS = max(maxTS, base+r.TimestampDelta)
		}
		b, err := BuildBatch(BatchSpec{FirstTimestamp: base, MaxTimestamp: maxTS, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Codec: codec}, recs)
		if err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrProduceRequest()
		req.Acks = -1
		req.TimeoutMillis = 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = b
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if err := kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode); err != nil {
			t.Fatalf("%s: produce: %v", codecName(codec), err)
		}
		want = append(want, recs...)
	}

	consumer := newKgo(t, c, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []*kgo.Record
	for len(got) < len(want) {
		fs := consumer.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got = append(got, fs.Records()...)
	}
	if len(got) != len(want) {
		t.Fatalf("consumed %d records, want %d", len(got), len(want))
	}
	for i, kr := range got {
		w := want[i]
		if kr.Offset != int64(i) || kr.Timestamp.UnixMilli() != base+w.TimestampDelta ||
			!reflect.DeepEqual(kr.Key, w.Key) || !reflect.DeepEqual(kr.Value, w.Value) || len(kr.Headers) != len(w.Headers) {
			t.Fatalf("record %d: got offset %d ts %d key %q value %q, want %s", i, kr.Offset, kr.Timestamp.UnixMilli(), kr.Key, kr.Value, fmtRecord(w))
		}
		for j, h := range kr.Headers {
			if h.Key != w.Headers[j].Key || !reflect.DeepEqual(h.Value, w.Headers[j].Value) {
				t.Fatalf("record %d header %d: %q=%q", i, j, h.Key, h.Value)
			}
		}
	}
}
