package partition

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

var codecNames = map[int]string{
	record.CodecNone: "none", record.CodecGzip: "gzip", record.CodecSnappy: "snappy",
	record.CodecLZ4: "lz4", record.CodecZstd: "zstd",
}

var compressionTypes = map[string]int{ // compression.type -> stored codec, -1 the producer's
	config.CompressionProducer: -1, config.CompressionUncompressed: record.CodecNone,
	config.CompressionGzip: record.CodecGzip, config.CompressionSnappy: record.CodecSnappy,
	config.CompressionLz4: record.CodecLZ4, config.CompressionZstd: record.CodecZstd,
}

func compressedRecords(n int, seq int32) []record.Record {
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{OffsetDelta: int32(i), TimestampDelta: int64(i * 7),
			Key:     []byte(fmt.Sprintf("key-%d", i)),
			Value:   []byte(strings.Repeat(fmt.Sprintf("value %d/%d ", seq, i), 30)),
			Headers: []record.RecordHeader{{Key: "h", Value: []byte("v")}, {Key: "null"}}}
	}
	return recs
}

func compressedBatch(t *testing.T, codec int, attrs int16, pid int64, seq int32, n int) ([]byte, []record.Record) {
	t.Helper()
	recs := compressedRecords(n, seq)
	b, err := record.BuildBatch(record.BatchSpec{Attributes: attrs, FirstTimestamp: 1_000_000, MaxTimestamp: 1_000_000 + int64(7*(n-1)),
		ProducerID: pid, ProducerEpoch: 2, BaseSequence: seq, Codec: codec}, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b, recs
}

func openCompressed(t *testing.T, typ string) *Partition {
	t.Helper()
	cfg := DefaultConfig()
	cfg.CompressionType = typ
	p, err := Open(Options{FS: vfs.NewMem(), Dir: "t-0", Config: cfg, Clean: true,
		Now: func() time.Time { return time.UnixMilli(1_000_100) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// storedBatches reads back every batch of the partition's log.
func storedBatches(t *testing.T, p *Partition) (batches [][]byte, headers []record.Header) {
	t.Helper()
	b, err := p.Log().ReadBatches(0, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	it := record.NewIter(b)
	for {
		batch, h, ok := it.Next()
		if !ok {
			break
		}
		batches, headers = append(batches, batch), append(headers, h)
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
	return batches, headers
}

func TestCompressionType(t *testing.T) {
	for typ, want := range compressionTypes {
		for codec, name := range codecNames {
			t.Run(typ+"/"+name, func(t *testing.T) {
				p := openCompressed(t, typ)
				b1, recs1 := compressedBatch(t, codec, 0, 5, 0, 4)
				b2, recs2 := compressedBatch(t, codec, 0, -1, -1, 3) // not idempotent
				retry := append([]byte(nil), b1...)
				if _, err := p.Append(b1); err != nil {
					t.Fatal(err)
				}
				res, err := p.Append(b2)
				if err != nil || res.BaseOffset != 4 || res.LastOffset != 6 {
					t.Fatalf("second batch: %+v %v", res, err)
				}
				// The producer's retry is answered from its state.
				if d, err := p.Append(retry); err != nil || !d.Duplicate || d.BaseOffset != 0 || d.LastOffset != 3 {
					t.Fatalf("retry: %+v %v", d, err)
				}
				// So is the next sequence accepted, and a gap refused.
				b3, recs3 := compressedBatch(t, codec, 0, 5, 4, 2)
				if res, err := p.Append(b3); err != nil || res.BaseOffset != 7 {
					t.Fatalf("next sequence: %+v %v", res, err)
				}
				gap, _ := compressedBatch(t, codec, 0, 5, 9, 1)
				if _, err := p.Append(gap); !errors.Is(err, ErrOutOfOrderSequence) {
					t.Fatalf("gap: %v", err)
				}
				batches, hs := storedBatches(t, p)
				if len(batches) != 3 {
					t.Fatalf("%d batches stored", len(batches))
				}
				wantCodec := want
				if want < 0 {
					wantCodec = codec
				}
				for i, recs := range [][]record.Record{recs1, recs2, recs3} {
					h := hs[i]
					if int(h.Codec()) != wantCodec {
						t.Fatalf("batch %d stored with codec %d, want %d", i, h.Codec(), wantCodec)
					}
					if h.BaseTimestamp != 1_000_000 || h.MaxTimestamp != 1_000_000+int64(7*(len(recs)-1)) ||
						h.LastOffsetDelta != int32(len(recs)-1) || h.RecordCount != int32(len(recs)) {
						t.Fatalf("batch %d header %+v", i, h)
					}
					got, err := record.Records(batches[i], h, 1<<20)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, recs) {
						t.Fatalf("batch %d records differ:\n got %+v\nwant %+v", i, got, recs)
					}
				}
				if h := hs[0]; h.ProducerID != 5 || h.ProducerEpoch != 2 || h.BaseSequence != 0 {
					t.Fatalf("producer fields %+v", h)
				}
				if h := hs[2]; h.ProducerID != 5 || h.BaseSequence != 4 {
					t.Fatalf("producer fields %+v", h)
				}
				if h := hs[1]; h.ProducerID != -1 || h.BaseSequence != -1 {
					t.Fatalf("producer fields %+v", h)
				}
				// A batch in the topic's codec is stored byte for byte.
				if want >= 0 && codec == want {
					if !bytes.Equal(batches[0][record.LogOverhead+5:], retry[record.LogOverhead+5:]) {
						t.Fatal("batch in the topic's codec was rewritten")
					}
				}
			})
		}
	}
}

func TestCompressionKeepsTransactionalAndMarkers(t *testing.T) {
	p := openCompressed(t, config.CompressionZstd)
	b, recs := compressedBatch(t, record.CodecNone, record.AttrTransactional, 9, 0, 3)
	if _, err := p.Append(b); err != nil {
		t.Fatal(err)
	}
	if p.LastStableOffset() != 0 {
		t.Fatalf("LSO %d: the transaction is not open", p.LastStableOffset())
	}
	// Control batches are never recompressed: a marker, and one from a
	// coordinator.
	if _, err := p.WriteMarker(9, 2, true, 0); err != nil {
		t.Fatal(err)
	}
	if p.LastStableOffset() != p.HighWatermark() {
		t.Fatal("transaction still open after its marker")
	}
	ctl, err := record.BuildBatch(record.BatchSpec{Attributes: record.AttrTransactional | record.AttrControl,
		ProducerID: 11, ProducerEpoch: 0, BaseSequence: -1, Codec: record.CodecNone},
		[]record.Record{{Key: []byte{0, 0, 0, 0}, Value: []byte{0, 0, 0, 0, 0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	ctlCopy := append([]byte(nil), ctl...)
	if _, err := p.AppendFromCoordinator(ctl); err != nil {
		t.Fatal(err)
	}
	batches, hs := storedBatches(t, p)
	if len(hs) != 3 {
		t.Fatalf("%d batches", len(hs))
	}
	if hs[0].Codec() != record.CodecZstd || !hs[0].IsTransactional() || hs[0].IsControl() {
		t.Fatalf("data batch %+v", hs[0])
	}
	got, err := record.Records(batches[0], hs[0], 1<<20)
	if err != nil || !reflect.DeepEqual(got, recs) {
		t.Fatalf("records %v %+v", err, got)
	}
	for _, h := range hs[1:] {
		if !h.IsControl() || h.Codec() != record.CodecNone {
			t.Fatalf("control batch %+v", h)
		}
	}
	if !bytes.Equal(batches[2][record.LogOverhead+5:], ctlCopy[record.LogOverhead+5:]) {
		t.Fatal("coordinator's control batch rewritten")
	}
}

func TestCompressionLimits(t *testing.T) {
	// Recompressed to uncompressed, a batch whose records do not fit
	// max.message.bytes is refused, without expanding it beyond the limit.
	cfg := DefaultConfig()
	cfg.CompressionType = config.CompressionUncompressed
	cfg.MaxMessageBytes = 64 << 10
	p, err := Open(Options{FS: vfs.NewMem(), Dir: "t-0", Config: cfg, Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	big, err := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Codec: record.CodecZstd},
		[]record.Record{{Value: make([]byte, 10<<20)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(big) > 64<<10 {
		t.Fatalf("test batch of %d bytes", len(big))
	}
	if _, err := p.Append(big); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("err %v, want ErrMessageTooLarge", err)
	}
	// To a compressed codec the recompressed size is what is checked.
	cfg.CompressionType = config.CompressionGzip
	p.SetConfig(cfg)
	if _, err := p.Append(append([]byte(nil), big...)); err != nil {
		t.Fatalf("zstd batch recompressed with gzip: %v", err)
	}
	_, hs := storedBatches(t, p)
	if len(hs) != 1 || hs[0].Codec() != record.CodecGzip || hs[0].Size() > 64<<10 {
		t.Fatalf("stored %+v", hs)
	}
	// Malformed records inside a compressed batch are refused.
	bad, _ := compressedBatch(t, record.CodecSnappy, 0, -1, -1, 3)
	h, _ := record.ParseHeader(bad)
	payload, _ := record.Decompress(record.CodecSnappy, bad[record.HeaderSize:], 1<<20)
	payload = append(payload, 0x02, 0x00) // a truncated fourth record
	bad2 := append(append([]byte(nil), bad[:record.HeaderSize]...), mustCompress(t, payload)...)
	fixBatch(bad2, h)
	if _, err := p.Append(bad2); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("malformed records: %v", err)
	}
	// With the topic's codec changed, new batches follow it.
	cfg.CompressionType = config.CompressionLz4
	p.SetConfig(cfg)
	b, _ := compressedBatch(t, record.CodecNone, 0, -1, -1, 2)
	if _, err := p.Append(b); err != nil {
		t.Fatal(err)
	}
	if _, hs := storedBatches(t, p); hs[len(hs)-1].Codec() != record.CodecLZ4 {
		t.Fatalf("after the change: %+v", hs[len(hs)-1])
	}
}

func mustCompress(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := record.Compress(record.CodecSnappy, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fixBatch rewrites the batch length and CRC after the records changed.
func fixBatch(b []byte, h record.Header) {
	h.BatchLength = int32(len(b) - record.LogOverhead)
	putU32(b[8:], uint32(h.BatchLength))
	putU32(b[17:], record.Checksum(b))
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func TestCompressionLevels(t *testing.T) {
	for _, c := range []struct {
		in        int32
		gz, lz, z int
	}{{-1, 0, 0, 1}, {1, 1, 0, 1}, {3, 3, 3, 3}, {9, 9, 9, 9}, {17, 0, 9, 17}, {22, 0, 9, 22}, {-5, 0, 0, 1}} {
		if g, l, z := gzipLevel(c.in), lz4Level(c.in), zstdLevel(c.in); g != c.gz || l != c.lz || z != c.z {
			t.Errorf("level %d: gzip %d lz4 %d zstd %d, want %d %d %d", c.in, g, l, z, c.gz, c.lz, c.z)
		}
	}
	// Every level Kafka accepts compresses.
	src := bytes.Repeat([]byte("sluice "), 1000)
	for l := int32(-1); l <= 22; l++ {
		for codec, lvl := range map[int]int{record.CodecGzip: gzipLevel(l), record.CodecLZ4: lz4Level(l), record.CodecZstd: zstdLevel(l)} {
			if _, err := record.Compress(codec, src, lvl); err != nil {
				t.Fatalf("codec %d level %d (%d): %v", codec, l, lvl, err)
			}
		}
	}
}
