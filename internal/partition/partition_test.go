package partition

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

func idemBatch(t testing.TB, pid int64, epoch int16, seq int32, n int) []byte {
	t.Helper()
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{OffsetDelta: int32(i), Value: []byte(fmt.Sprintf("%d-%d", seq, i))}
	}
	b, err := record.BuildBatch(record.BatchSpec{ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq}, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openP(t *testing.T, fs vfs.FS, clean bool) *Partition {
	t.Helper()
	p, err := Open(Options{FS: fs, Dir: "t-0", Config: DefaultConfig(), Clean: clean})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIdempotence(t *testing.T) {
	fs := vfs.NewMem()
	p := openP(t, fs, false)
	mustAppend := func(b []byte) AppendResult {
		t.Helper()
		res, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	r0 := mustAppend(idemBatch(t, 7, 0, 0, 3))
	r1 := mustAppend(idemBatch(t, 7, 0, 3, 2))
	if r0.BaseOffset != 0 || r1.BaseOffset != 3 {
		t.Fatalf("offsets %d %d", r0.BaseOffset, r1.BaseOffset)
	}
	// A retry of either of the last batches gets its original offset.
	if d := mustAppend(idemBatch(t, 7, 0, 0, 3)); !d.Duplicate || d.BaseOffset != 0 {
		t.Fatalf("retry of first batch: %+v", d)
	}
	if d := mustAppend(idemBatch(t, 7, 0, 3, 2)); !d.Duplicate || d.BaseOffset != 3 {
		t.Fatalf("retry of second batch: %+v", d)
	}
	if p.Log().EndOffset() != 5 {
		t.Fatalf("end %d after retries, want 5", p.Log().EndOffset())
	}
	// A gap is refused.
	if _, err := p.Append(idemBatch(t, 7, 0, 9, 1)); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("gap: %v", err)
	}
	// A new epoch starts at 0; the old epoch is then fenced.
	mustAppend(idemBatch(t, 7, 1, 0, 1))
	if _, err := p.Append(idemBatch(t, 7, 0, 5, 1)); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("old epoch: %v", err)
	}
	// An unknown producer must start at sequence 0.
	if _, err := p.Append(idemBatch(t, 8, 0, 4, 1)); !errors.Is(err, ErrUnknownProducerID) {
		t.Fatalf("unknown producer at seq 4: %v", err)
	}
	mustAppend(idemBatch(t, 7, 1, 1, 2))

	// After a crash (no snapshot) the state is rebuilt from the log, and
	// after a clean close from the snapshot: retries are still recognised.
	for _, mode := range []string{"crash", "clean"} {
		if err := p.Log().Sync(); err != nil {
			t.Fatal(err)
		}
		var next vfs.FS
		if mode == "crash" {
			next = fs.Crash()
		} else {
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			next = fs
		}
		p = openP(t, next, mode == "clean")
		fs, _ = next.(*vfs.MemFS)
		d, err := p.Append(idemBatch(t, 7, 1, 1, 2))
		if err != nil || !d.Duplicate || d.BaseOffset != 6 {
			t.Fatalf("%s: retry after reopen: %+v %v", mode, d, err)
		}
		if _, err := p.Append(idemBatch(t, 7, 1, 5, 1)); !errors.Is(err, ErrOutOfOrderSequence) {
			t.Fatalf("%s: gap after reopen: %v", mode, err)
		}
	}
	p.Close()
}

func TestProduceChecks(t *testing.T) {
	p := openP(t, vfs.NewMem(), false)
	defer p.Close()
	b := idemBatch(t, -1, -1, -1, 1)
	b[len(b)-1] ^= 1 // breaks the CRC
	if _, err := p.Append(b); !errors.Is(err, ErrCorruptMessage) {
		t.Fatalf("bad crc: %v", err)
	}
	big := make([]record.Record, 1)
	big[0].Value = make([]byte, 1_100_000)
	bb, _ := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, big)
	if _, err := p.Append(bb); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	old := idemBatch(t, -1, -1, -1, 1)
	old[16] = 1 // magic
	if _, err := p.Append(old); !errors.Is(err, ErrUnsupportedMagic) && !errors.Is(err, ErrCorruptMessage) {
		t.Fatalf("magic 1: %v", err)
	}
}

func TestLeaderEpochs(t *testing.T) {
	fs := vfs.NewMem()
	p := openP(t, fs, false)
	p.Append(idemBatch(t, -1, -1, -1, 5))
	if err := p.BecomeLeader(3); err != nil {
		t.Fatal(err)
	}
	p.Append(idemBatch(t, -1, -1, -1, 2))
	if e, off := p.EndOffsetForEpoch(0); e != 0 || off != 5 {
		t.Fatalf("epoch 0: %d %d", e, off)
	}
	if e, off := p.EndOffsetForEpoch(1); e != 0 || off != 5 {
		t.Fatalf("epoch 1: %d %d", e, off)
	}
	if e, off := p.EndOffsetForEpoch(3); e != 3 || off != 7 {
		t.Fatalf("epoch 3: %d %d", e, off)
	}
	p.Close()
	p = openP(t, fs, true)
	defer p.Close()
	if e, off := p.EndOffsetForEpoch(0); e != 0 || off != 5 {
		t.Fatalf("epoch 0 after reopen: %d %d", e, off)
	}
	b, _ := p.Log().ReadBatches(5, 1<<20)
	h, _ := record.ParseHeader(b)
	if h.LeaderEpoch != 3 {
		t.Fatalf("batch leader epoch %d, want 3", h.LeaderEpoch)
	}
}

func TestSnapshotCodec(t *testing.T) {
	m := map[int64]*producerState{
		1: {epoch: 2, txnFirstOffset: -1, batches: []batchMeta{{0, 4, 10, 14, 99}}},
		9: {epoch: 0, txnFirstOffset: 5},
	}
	b := marshalSnapshot(m)
	got, err := unmarshalSnapshot(b)
	if err != nil || len(got) != 2 || got[1].batches[0].lastOffset != 14 || got[9].txnFirstOffset != 5 {
		t.Fatalf("roundtrip: %v %+v", err, got)
	}
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0x40
		if _, err := unmarshalSnapshot(c); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
}

func keyedIdemBatch(t *testing.T, pid int64, seq int32, codec int, keys ...string) []byte {
	t.Helper()
	recs := make([]record.Record, len(keys))
	for i, k := range keys {
		recs[i] = record.Record{OffsetDelta: int32(i), Value: []byte("v")}
		if k != "" {
			recs[i].Key = []byte(k)
		}
	}
	b, err := record.BuildBatch(record.BatchSpec{ProducerID: pid, ProducerEpoch: 0, BaseSequence: seq, Codec: codec}, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCompactedTopicRefusesRecordsWithoutKey(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Log.Compact = true
	p, err := Open(Options{FS: vfs.NewMem(), Dir: "t-0", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, codec := range []int{record.CodecNone, record.CodecZstd} {
		if _, err := p.Append(keyedIdemBatch(t, -1, -1, codec, "a", "", "b")); !errors.Is(err, ErrCompactedNoKey) {
			t.Fatalf("codec %d: keyless record in a compacted topic: %v", codec, err)
		}
		if _, err := p.Append(keyedIdemBatch(t, -1, -1, codec, "a", "b")); err != nil {
			t.Fatalf("codec %d: keyed records: %v", codec, err)
		}
	}
	cfg.Log.Compact = false
	p.SetConfig(cfg)
	if _, err := p.Append(keyedIdemBatch(t, -1, -1, record.CodecNone, "")); err != nil {
		t.Fatalf("keyless record after the topic stopped compacting: %v", err)
	}
}

// TestCleanKeepsProducerState: the cleaner leaves the emptied last batch of
// a producer, so that its state is rebuilt from the log without a snapshot.
func TestCleanKeepsProducerState(t *testing.T) {
	fs := vfs.NewMem()
	cfg := DefaultConfig()
	cfg.Log.Compact, cfg.Log.NoDelete, cfg.Log.SegmentBytes = true, true, 100
	p, err := Open(Options{FS: fs, Dir: "t-0", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend := func(b []byte) {
		t.Helper()
		if _, err := p.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(keyedIdemBatch(t, 7, 0, record.CodecNone, "a", "b"))
	mustAppend(keyedIdemBatch(t, 8, 0, record.CodecNone, "a", "b"))
	mustAppend(keyedIdemBatch(t, 8, 2, record.CodecNone, "c"))
	res, err := p.Clean(context.Background(), log.CleanOptions{Map: log.NewOffsetMap(1<<16, 0.9), Force: true})
	if err != nil || res.RecordsRemoved != 2 {
		t.Fatalf("clean: %+v %v", res, err)
	}
	p.Close()
	names, _ := fs.List("t-0")
	for _, n := range names {
		if strings.HasSuffix(n, ".snapshot") {
			fs.Remove("t-0/" + n)
		}
	}
	p, err = Open(Options{FS: fs, Dir: "t-0", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Append(keyedIdemBatch(t, 7, 5, record.CodecNone, "x")); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("producer 7 forgotten after cleaning: %v", err)
	}
	mustAppend(keyedIdemBatch(t, 7, 2, record.CodecNone, "x"))
}

// TestDeleteWhileCheckpointing: a producer snapshot racing a Delete never
// leaves the partition's directory behind (before, the snapshot was
// written into the directory being removed: "directory not empty").
func TestDeleteWhileCheckpointing(t *testing.T) {
	var batches [][]byte
	for i := range 21 {
		batches = append(batches, idemBatch(t, 7, 0, int32(i), 1))
	}
	for round := range 50 {
		dir := filepath.Join(t.TempDir(), "p-0")
		p, err := Open(Options{FS: vfs.OS(), Dir: dir, Config: DefaultConfig()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Append(batches[0]); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, b := range batches[1:] {
				p.Checkpoint()
				if _, err := p.Append(b); err != nil {
					return
				}
			}
		}()
		derr := p.Delete()
		<-done
		if derr != nil {
			t.Fatalf("round %d: delete: %v", round, derr)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			entries, _ := os.ReadDir(dir)
			t.Fatalf("round %d: the deleted partition's directory is still there: %v %v", round, err, entries)
		}
	}
}
