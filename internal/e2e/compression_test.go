package e2e

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/record"
)

// storedCodecs lists the codecs of a partition's stored data batches, in
// log order.
func storedCodecs(t *testing.T, tb *testBroker, topic string) []int8 {
	t.Helper()
	p, ok := tb.b.Partition(topic, 0)
	if !ok {
		t.Fatalf("partition %s-0 not open", topic)
	}
	var codecs []int8
	if err := p.Log().WalkHeaders(0, func(h record.Header, _ record.ControlType) error {
		if !h.IsControl() {
			codecs = append(codecs, h.Codec())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return codecs
}

// TestCompressionTypeRecompresses: a topic with compression.type=zstd
// stores batches produced uncompressed (or in another codec) as zstd, and
// follows the config when it is altered.
func TestCompressionTypeRecompresses(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	adm := tb.admin()
	const topic = "zstd-topic"
	zstd := "zstd"
	createTopic(t, adm, topic, 1, map[string]*string{"compression.type": &zstd})

	produce := func(codec kgo.CompressionCodec, from, n int) []*kgo.Record {
		t.Helper()
		cl := tb.client(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codec))
		var recs []*kgo.Record
		for i := from; i < from+n; i++ {
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)),
				Value:   bytes.Repeat([]byte(fmt.Sprintf("value %d ", i)), 20),
				Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}}})
		}
		if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		cl.Close()
		return recs
	}
	check := func(want []*kgo.Record) {
		t.Helper()
		got := consumeAll(t, tb, topic, len(want))
		for i, r := range got {
			w := want[i]
			if r.Offset != int64(i) || !bytes.Equal(r.Key, w.Key) || !bytes.Equal(r.Value, w.Value) ||
				len(r.Headers) != 1 || string(r.Headers[0].Value) != string(w.Headers[0].Value) {
				t.Fatalf("record %d: offset %d key %q value %q headers %v", i, r.Offset, r.Key, r.Value, r.Headers)
			}
		}
	}

	want := produce(kgo.NoCompression(), 0, 50)
	want = append(want, produce(kgo.SnappyCompression(), 50, 50)...)
	check(want)
	codecs := storedCodecs(t, tb, topic)
	if len(codecs) == 0 {
		t.Fatal("no batches stored")
	}
	for i, c := range codecs {
		if c != record.CodecZstd {
			t.Fatalf("batch %d stored with codec %d, want zstd (%v)", i, c, codecs)
		}
	}

	// Altered to gzip: new batches are stored gzip, old ones stay zstd.
	resp, err := adm.AlterTopicConfigs(ctxT(t), []kadm.AlterConfig{{Name: "compression.type", Value: strPtr("gzip")}}, topic)
	if err != nil || resp[0].Err != nil {
		t.Fatalf("alter: %v %v", err, resp)
	}
	want = append(want, produce(kgo.NoCompression(), 100, 50)...)
	check(want)
	after := storedCodecs(t, tb, topic)
	for i, c := range after {
		wantCodec := int8(record.CodecZstd)
		if i >= len(codecs) {
			wantCodec = record.CodecGzip
		}
		if c != wantCodec {
			t.Fatalf("batch %d stored with codec %d, want %d (%v)", i, c, wantCodec, after)
		}
	}
	if len(after) == len(codecs) {
		t.Fatal("no batch after the alter")
	}

	// Back to producer: batches keep the producer's codec.
	if resp, err := adm.AlterTopicConfigs(ctxT(t), []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "compression.type"}}, topic); err != nil || resp[0].Err != nil {
		t.Fatalf("alter: %v %v", err, resp)
	}
	n := len(after)
	want = append(want, produce(kgo.Lz4Compression(), 150, 50)...)
	check(want)
	for i, c := range storedCodecs(t, tb, topic)[n:] {
		if c != record.CodecLZ4 {
			t.Fatalf("batch %d after the delete stored with codec %d, want lz4", n+i, c)
		}
	}
}

func strPtr(s string) *string { return &s }
