package record

import (
	"errors"
	"fmt"
	"testing"
)

func TestRecompress(t *testing.T) {
	for _, from := range allCodecs {
		for _, to := range allCodecs {
			t.Run(fmt.Sprintf("%s-%s", codecName(from), codecName(to)), func(t *testing.T) {
				recs := sampleRecords(20)
				b, err := BuildBatch(testSpec(from), recs)
				if err != nil {
					t.Fatal(err)
				}
				h, err := ValidateProduced(b)
				if err != nil {
					t.Fatal(err)
				}
				orig := append([]byte(nil), b...)
				out, err := Recompress(b, h, to, 0, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				if string(b) != string(orig) {
					t.Fatal("input modified")
				}
				g, err := ValidateProduced(out)
				if err != nil {
					t.Fatal(err)
				}
				want := h
				want.Attributes = h.Attributes&^AttrCompressionMask | int16(to)
				want.BatchLength, want.CRC = g.BatchLength, g.CRC
				want.MaxTimestamp = h.BaseTimestamp + 19*3 // the records' largest
				if g != want {
					t.Fatalf("header\n got %+v\nwant %+v", g, want)
				}
				got, err := Records(out, g, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				requireRecords(t, got, recs)
			})
		}
	}
}

func TestRecompressRenumbers(t *testing.T) {
	// A batch whose records' offset deltas are not 0..n-1 (but whose header
	// says n-1) comes out renumbered, as Kafka's rebuild does.
	recs := []Record{{OffsetDelta: 0, Value: []byte("a")}, {OffsetDelta: 1, Value: []byte("b")}, {OffsetDelta: 2, Value: []byte("c")}}
	spec := testSpec(CodecNone)
	spec.Attributes |= AttrLogAppendTime
	b, err := BuildBatch(spec, recs)
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the last record's offset delta 2 -> 1 (same varint size).
	// From the end: header count, value "c", value length, key length (null),
	// then the offset delta.
	i := len(b) - 5
	if b[i] != 4 { // zigzag(2)
		t.Fatalf("offset delta byte %d", b[i])
	}
	b[i] = 2
	SetLogAppendTime(b, spec.MaxTimestamp) // recompute the CRC
	h, err := ValidateProduced(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Recompress(b, h, CodecZstd, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ValidateProduced(out)
	if err != nil {
		t.Fatal(err)
	}
	if g.MaxTimestamp != spec.MaxTimestamp || g.Codec() != CodecZstd || g.LastOffsetDelta != 2 || g.BaseSequence != 17 {
		t.Fatalf("header %+v", g)
	}
	got, err := Records(out, g, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	requireRecords(t, got, recs)
}

func TestRecompressBounded(t *testing.T) {
	recs := []Record{{Value: make([]byte, 1<<20)}}
	b, err := BuildBatch(testSpec(CodecZstd), recs)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := ValidateProduced(b)
	if _, err := Recompress(b, h, CodecGzip, 0, 64<<10); !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
	// A lie about the record count is refused.
	b2, _ := BuildBatch(testSpec(CodecGzip), sampleRecords(3))
	h2, _ := ValidateProduced(b2)
	h2.RecordCount = 4
	if _, err := Recompress(b2, h2, CodecNone, 0, 1<<20); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("err %v, want ErrInvalidRecord", err)
	}
	if _, err := Recompress(b2, h2, 9, 0, 1<<20); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatalf("err %v", err)
	}
}
