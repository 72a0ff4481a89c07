package broker

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// TestHighWatermarkSurvivesPowerCut: under the default flush policy a
// consumer never sees a high watermark (and so never reads or commits past
// an offset) that a power cut takes back. On main the high watermark was the
// log end offset: a batch appended without an fsync (acks=1) counted at
// once, and a cut right after lost it below what consumers were told.
func TestHighWatermarkSurvivesPowerCut(t *testing.T) {
	mem := vfs.NewMem()
	dir := t.TempDir()
	b, err := Open(Config{NodeID: 1, DataDir: dir, Host: "127.0.0.1", Port: 9092, FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Meta().CreateTopic(context.Background(), "t", 1, []int32{1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	p, ok := b.Partition("t", 0)
	if !ok {
		t.Fatal("partition not open")
	}
	for i := range 50 {
		bt, err := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
			[]record.Record{{Value: []byte{byte(i)}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Append(bt); err != nil { // as acks=1: nobody waits for the fsync
			t.Fatal(err)
		}
		seen := p.HighWatermark()
		after := mem.Crash()
		q, err := partition.Open(partition.Options{FS: after, Dir: filepath.Join(dir, "t-0"), Config: partition.DefaultConfig()})
		if err != nil {
			t.Fatal(err)
		}
		end := q.Log().EndOffset()
		q.Close()
		if end < seen {
			t.Fatalf("append %d: consumers were shown high watermark %d; after a power cut the log ends at %d", i, seen, end)
		}
	}
}
