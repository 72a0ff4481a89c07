package record

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The committed seed corpus under testdata/fuzz is written by
//
//	go test ./internal/record -run TestWriteFuzzCorpus -args -fuzzcorpus
//
// from batches produced by franz-go (through kfake) and by BuildBatch.
var writeFuzzCorpus = flag.Bool("fuzzcorpus", false, "rewrite the seed corpus under testdata/fuzz")

// fuzzMax bounds decompression in the fuzz targets.
const fuzzMax = 1 << 20

// seedBatches are small valid batches built here, added to every run's
// corpus besides the committed files.
func seedBatches() [][]byte {
	var out [][]byte
	recs := []Record{
		{Value: []byte("v")},
		{OffsetDelta: 1, TimestampDelta: 5, Key: []byte("k"), Value: bytes.Repeat([]byte("ab"), 40),
			Headers: []RecordHeader{{Key: "h", Value: nil}, {Key: "", Value: []byte{}}}},
		{OffsetDelta: 3, TimestampDelta: -2, Key: []byte{}},
	}
	for _, codec := range allCodecs {
		b, err := BuildBatch(BatchSpec{BaseOffset: 10, FirstTimestamp: 1000, MaxTimestamp: 1005, ProducerID: 1, BaseSequence: 0, Codec: codec}, recs)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	// A transaction marker: a control batch holding a commit record.
	b, err := BuildBatch(BatchSpec{Attributes: AttrControl | AttrTransactional, ProducerID: 7, ProducerEpoch: 1, BaseSequence: -1},
		[]Record{{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 3}}})
	if err != nil {
		panic(err)
	}
	return append(out, b)
}

func FuzzParse(f *testing.F) {
	for _, b := range seedBatches() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, ok := PeekSize(data); ok != (len(data) >= LogOverhead) {
			t.Fatal("PeekSize")
		}
		hh, herr := ParseHeader(data)
		if herr == nil && (hh.Magic != 2 || hh.Size() < HeaderSize || len(data) < HeaderSize) {
			t.Fatalf("ParseHeader accepted %+v", hh)
		}
		if herr == nil && hh.Size() <= len(data) {
			// Mutations rarely keep the CRC right: also check the batch
			// with its CRC fixed, to get past Parse into the records.
			fixed := bytes.Clone(data[:hh.Size()])
			binary.BigEndian.PutUint32(fixed[offCRC:], Checksum(fixed))
			checkParsed(t, fixed, hh)
		}
		checkParsed(t, data, hh)
	})
}

// checkParsed checks Parse and what follows it on data, whose ParseHeader
// result is hh.
func checkParsed(t *testing.T, data []byte, hh Header) {
	h, err := Parse(data)
	if err != nil {
		if _, verr := ValidateProduced(data); verr == nil {
			t.Fatal("ValidateProduced accepted what Parse refused")
		}
		return
	}
	hh.CRC = h.CRC
	if h != hh {
		t.Fatalf("Parse %+v, ParseHeader %+v", h, hh)
	}
	if h.Size() > len(data) || Checksum(data[:h.Size()]) != h.CRC {
		t.Fatalf("Parse accepted a bad batch: %+v", h)
	}
	_, _ = ValidateProduced(data)
	recs, err := Records(data, h, fuzzMax)
	if err != nil {
		if !errors.Is(err, ErrInvalidRecord) {
			t.Fatalf("Records error %v does not wrap ErrInvalidRecord", err)
		}
	} else if len(recs) != int(h.RecordCount) {
		t.Fatalf("%d records, header says %d", len(recs), h.RecordCount)
	}
	_, _, _ = FirstAtOrAfter(data, h, h.BaseTimestamp, fuzzMax)
	if h.IsControl() && err == nil {
		for _, r := range recs {
			_, _ = ParseControlKey(r.Key)
		}
	}
	it := NewIter(data)
	n := 0
	for {
		b, bh, ok := it.Next()
		if !ok {
			break
		}
		if len(b) != bh.Size() {
			t.Fatal("Iter returned a slice of the wrong size")
		}
		n++
	}
	if n == 0 {
		t.Fatalf("Iter found no batch where Parse did: %v", it.Err())
	}
}

func FuzzRecords(f *testing.F) {
	for _, b := range seedBatches() {
		h, _ := Parse(b)
		f.Add(uint8(h.Codec()), h.Attributes&^AttrCompressionMask, h.RecordCount, b[HeaderSize:])
	}
	f.Fuzz(func(t *testing.T, codec uint8, attrs int16, count int32, payload []byte) {
		c := int(codec % 5)
		b := rawBatch(c, attrs&^AttrCompressionMask, count, payload)
		h, err := Parse(b)
		if err != nil {
			if count >= 0 {
				t.Fatalf("Parse: %v", err)
			}
			h, _ = ParseHeader(b)
		}
		_, _, ferr := FirstAtOrAfter(b, h, 0, fuzzMax)
		if ferr != nil && !errors.Is(ferr, ErrInvalidRecord) {
			t.Fatalf("FirstAtOrAfter error %v does not wrap ErrInvalidRecord", ferr)
		}
		recs, err := Records(b, h, fuzzMax)
		if err != nil {
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("Records error %v does not wrap ErrInvalidRecord", err)
			}
			return
		}
		if len(recs) != int(count) {
			t.Fatalf("%d records, count %d", len(recs), count)
		}
		// What decodes re-encodes to the same records, unless its offset
		// deltas are not a valid sequence for BuildBatch.
		spec := BatchSpec{Attributes: attrs, Codec: c, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
		rb, err := BuildBatch(spec, recs)
		if err != nil {
			if errors.Is(err, ErrInvalidRecord) {
				return
			}
			t.Fatal(err)
		}
		rh, err := Parse(rb)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Records(rb, rh, fuzzMax)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, recs) {
			t.Fatal("re-encoded records differ")
		}
		if c == CodecNone && len(rb)-HeaderSize > len(payload) {
			t.Fatal("re-encoding grew the records")
		}
	})
}

func FuzzDecompress(f *testing.F) {
	in := bytes.Repeat([]byte("fuzz me "), 50)
	for _, codec := range allCodecs {
		c, _ := Compress(codec, in, 0)
		f.Add(uint8(codec), c, uint32(len(in)))
		f.Add(uint8(codec), c, uint32(len(in)-1))
	}
	f.Add(uint8(CodecSnappy), xerialFrame(in, 100), uint32(len(in)))
	f.Fuzz(func(t *testing.T, codec uint8, src []byte, maxBytes uint32) {
		c := int(codec % 5)
		// Small limits keep each run fast: a run still going when
		// -fuzztime ends is reported as "context deadline exceeded".
		limit := int(maxBytes % (256 << 10))
		out, err := Decompress(c, src, limit)
		if err != nil {
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("error %v does not wrap ErrInvalidRecord", err)
			}
			return
		}
		if len(out) > limit {
			t.Fatalf("%d bytes out, limit %d", len(out), limit)
		}
		// What decodes survives a roundtrip through our compressor.
		comp, err := Compress(c, out, 0)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decompress(c, comp, len(out))
		if err != nil || !bytes.Equal(back, out) {
			t.Fatalf("roundtrip: %v", err)
		}
	})
}

func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeFuzzCorpus {
		t.Skip("run with -fuzzcorpus to rewrite testdata/fuzz")
	}
	write := func(target, name string, vals ...any) {
		var b bytes.Buffer
		b.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case uint8:
				fmt.Fprintf(&b, "byte(%q)\n", v)
			default:
				fmt.Fprintf(&b, "%T(%v)\n", v, v)
			}
		}
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Batches from a real client: franz-go producing to kfake, one topic
	// per codec, a few small records with every shape of key, value and
	// header, compressible so that the client keeps the compression.
	c := newKfake(t, "none", "gzip", "snappy", "lz4", "zstd")
	base := time.UnixMilli(1_700_000_000_000)
	for _, codec := range allCodecs {
		topic := codecName(codec)
		cl := newKgo(t, c, kgo.ProducerBatchCompression(kgoCodecs[codec]), kgo.ProducerLinger(50*time.Millisecond))
		recs := []*kgo.Record{
			{Topic: topic, Timestamp: base},
			{Topic: topic, Timestamp: base.Add(3 * time.Millisecond), Key: []byte("key"), Value: []byte{}},
			{Topic: topic, Timestamp: base.Add(time.Millisecond), Key: []byte{}, Value: bytes.Repeat([]byte("sluice "), 12),
				Headers: []kgo.RecordHeader{{Key: "h", Value: nil}, {Key: "", Value: []byte{}}, {Key: "trace", Value: []byte("abc")}}},
			{Topic: topic, Timestamp: base.Add(2 * time.Millisecond), Key: []byte("key"), Value: bytes.Repeat([]byte("sluice "), 12)},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		cancel()
		batches := fetchRaw(t, cl, topic, len(recs))
		if len(batches) != 1 {
			t.Fatalf("%s: %d batches", topic, len(batches))
		}
		b := batches[0]
		h, err := Parse(b)
		if err != nil || int(h.Codec()) != codec {
			t.Fatalf("%s: %+v %v", topic, h, err)
		}
		payload := b[HeaderSize:]
		write("FuzzParse", "client-"+topic, b)
		write("FuzzRecords", "client-"+topic, uint8(codec), h.Attributes&^AttrCompressionMask, h.RecordCount, payload)
		if codec != CodecNone {
			data, err := Decompress(codec, payload, fuzzMax)
			if err != nil {
				t.Fatal(err)
			}
			write("FuzzDecompress", "client-"+topic, uint8(codec), payload, uint32(len(data)))
		}
	}

	// Two batches back to back, the way a fetch returns them.
	seeds := seedBatches()
	write("FuzzParse", "two-batches", append(append([]byte{}, seeds[0]...), seeds[2]...))
	// A control batch (commit marker).
	ctl := seeds[len(seeds)-1]
	write("FuzzParse", "control-commit", ctl)
	h, _ := Parse(ctl)
	write("FuzzRecords", "control-commit", uint8(0), h.Attributes, h.RecordCount, ctl[HeaderSize:])
	// A LogAppendTime batch.
	lat := bytes.Clone(seeds[CodecLZ4])
	SetLogAppendTime(lat, 1_800_000_000_000)
	write("FuzzParse", "log-append-time", lat)
	h, _ = Parse(lat)
	write("FuzzRecords", "log-append-time", uint8(CodecLZ4), h.Attributes&^AttrCompressionMask, h.RecordCount, lat[HeaderSize:])
	// Xerial framed snappy, as the Java client writes it.
	in := bytes.Repeat([]byte("xerial framed snappy "), 20)
	write("FuzzDecompress", "xerial", uint8(CodecSnappy), xerialFrame(in, 128), uint32(len(in)))
	// A bound one byte short.
	z, _ := Compress(CodecZstd, in, 0)
	write("FuzzDecompress", "zstd-over-limit", uint8(CodecZstd), z, uint32(len(in)-1))
}
