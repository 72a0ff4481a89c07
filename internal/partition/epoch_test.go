package partition

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/sluice-io/sluice/internal/vfs"
)

// epochsWritten leaves a closed partition in t-0 whose leader epoch
// checkpoint says epoch 0 from offset 0 and epoch 3 from offset 5, and
// returns the checkpoint's bytes.
func epochsWritten(t *testing.T, fs vfs.FS) []byte {
	t.Helper()
	p := openP(t, fs, false)
	if _, err := p.Append(idemBatch(t, -1, -1, -1, 5)); err != nil {
		t.Fatal(err)
	}
	if err := p.BecomeLeader(3); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(idemBatch(t, -1, -1, -1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := vfs.ReadFile(fs, filepath.Join("t-0", epochCheckpointFile), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEpochCheckpointUnreadableFailsOpen: a leader epoch checkpoint that
// cannot be read now (too many open files, an I/O error) may be whole, so
// the open fails and leaves it as it is. On main the open went on with an
// empty history and BecomeLeader rewrote the file with epoch 0 alone.
func TestEpochCheckpointUnreadableFailsOpen(t *testing.T) {
	mem := vfs.NewMem()
	want := epochsWritten(t, mem)
	emfile := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if (op == vfs.OpOpen || op == vfs.OpRead) && strings.HasSuffix(path, epochCheckpointFile) {
			return syscall.EMFILE
		}
		return nil
	})
	p, err := Open(Options{FS: emfile, Dir: "t-0", Config: DefaultConfig(), Clean: true})
	if err == nil {
		p.Close()
		t.Fatal("open succeeded with an unreadable leader epoch checkpoint")
	}
	if !errors.Is(err, syscall.EMFILE) {
		t.Errorf("open: %v, want EMFILE", err)
	}
	got, err := vfs.ReadFile(mem, filepath.Join("t-0", epochCheckpointFile), 1<<20)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("checkpoint after the failed open: %q (%v), want %q untouched", got, err, want)
	}
	// Once the cause is gone, the partition opens with its history.
	p = openP(t, mem, false)
	defer p.Close()
	if e, off := p.EndOffsetForEpoch(0); e != 0 || off != 5 {
		t.Fatalf("epoch 0: %d %d, want 0 5", e, off)
	}
}

// TestEpochCheckpointDamagedMovedAside: a checkpoint whose bytes are not
// a checkpoint is kept as leader-epoch-checkpoint-corrupt and the history
// is rebuilt from the leader epochs of the log's batches.
func TestEpochCheckpointDamagedMovedAside(t *testing.T) {
	mem := vfs.NewMem()
	epochsWritten(t, mem)
	name := filepath.Join("t-0", epochCheckpointFile)
	damaged := []byte("0\n2\n0 0\n3 x\n")
	if err := vfs.WriteFileAtomic(mem, "t-0", name, damaged); err != nil {
		t.Fatal(err)
	}
	p := openP(t, mem, true)
	if got, err := vfs.ReadFile(mem, name+corruptSuffix, 1<<20); err != nil || !bytes.Equal(got, damaged) {
		t.Errorf("%s: %q (%v), want the damaged bytes %q", name+corruptSuffix, got, err, damaged)
	}
	for _, c := range []struct {
		epoch, wantEpoch int32
		wantEnd          int64
	}{{0, 0, 5}, {1, 0, 5}, {3, 3, 7}} {
		if e, off := p.EndOffsetForEpoch(c.epoch); e != c.wantEpoch || off != c.wantEnd {
			t.Errorf("epoch %d: %d %d, want %d %d", c.epoch, e, off, c.wantEpoch, c.wantEnd)
		}
	}
	p.Close()
	// The rebuilt checkpoint was written: a power cut keeps it.
	p, err := Open(Options{FS: mem.Crash(), Dir: "t-0", Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if e, off := p.EndOffsetForEpoch(1); e != 0 || off != 5 {
		t.Errorf("after a power cut, epoch 1: %d %d, want 0 5", e, off)
	}
}

// TestEpochCacheAsKafka: assign, truncateFromEnd and endOffsetFor follow
// Kafka's LeaderEpochFileCache (the cases of its LeaderEpochFileCacheTest).
func TestEpochCacheAsKafka(t *testing.T) {
	var c epochCache
	for _, e := range []epochEntry{{5, 11}, {6, 12}, {7, 13}} {
		if !c.assign(e.Epoch, e.StartOffset) {
			t.Fatalf("assign %v changed nothing", e)
		}
	}
	// The latest epoch again at a later offset: nothing changes.
	if c.assign(7, 20) {
		t.Fatal("assign of the latest epoch at a later offset changed the cache")
	}
	for _, q := range []struct {
		epoch, wantEpoch int32
		wantEnd          int64
	}{
		{4, 4, 11},  // below every epoch: the requested one and the first start
		{5, 5, 12},  // the next epoch's start
		{6, 6, 13},  //
		{7, 7, 100}, // the latest: the log end
		{8, -1, -1}, // above the latest
		{-1, -1, -1},
	} {
		if e, off := c.endOffsetFor(q.epoch, 100); e != q.wantEpoch || off != q.wantEnd {
			t.Errorf("endOffsetFor(%d): %d %d, want %d %d", q.epoch, e, off, q.wantEpoch, q.wantEnd)
		}
	}
	// Epoch 7 starting earlier (shouldTruncateIfMatchingEpochButEarlierStartingOffset):
	// epoch 6 wrote nothing.
	if !c.assign(7, 12) {
		t.Fatal("assign of the latest epoch at an earlier offset changed nothing")
	}
	if want := []epochEntry{{5, 11}, {7, 12}}; !reflect.DeepEqual(c.entries, want) {
		t.Fatalf("entries %v, want %v", c.entries, want)
	}
	if e, off := c.endOffsetFor(6, 0); e != 5 || off != 12 {
		t.Fatalf("endOffsetFor(6): %d %d, want 5 12", e, off)
	}
	// A new epoch at an offset an older one starts at: the older wrote
	// nothing and goes.
	c = epochCache{}
	c.assign(2, 10)
	c.assign(3, 10)
	if want := []epochEntry{{3, 10}}; !reflect.DeepEqual(c.entries, want) {
		t.Fatalf("entries %v, want %v", c.entries, want)
	}
	// A lower epoch than the latest (a follower appending what a new
	// leader has): the conflicting entries go.
	c = epochCache{entries: []epochEntry{{1, 0}, {2, 5}, {4, 9}}}
	c.assign(3, 7)
	if want := []epochEntry{{1, 0}, {2, 5}, {3, 7}}; !reflect.DeepEqual(c.entries, want) {
		t.Fatalf("entries %v, want %v", c.entries, want)
	}
	if c.startOffsetOf(2) != 5 || c.startOffsetOf(4) != -1 {
		t.Fatalf("start offsets %d %d", c.startOffsetOf(2), c.startOffsetOf(4))
	}
	if !c.truncateFromEnd(7) || c.truncateFromEnd(7) {
		t.Fatal("truncateFromEnd(7) did not drop exactly once")
	}
	if want := []epochEntry{{1, 0}, {2, 5}}; !reflect.DeepEqual(c.entries, want) {
		t.Fatalf("after truncateFromEnd(7): %v, want %v", c.entries, want)
	}
	// Checkpoints written before assign dropped same-offset entries
	// still load.
	if _, err := unmarshalEpochCache([]byte("0\n2\n2 10\n3 10\n")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"0\n2\n3 10\n2 11\n", "0\n2\n2 10\n3 9\n"} {
		if _, err := unmarshalEpochCache([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestEpochStartOffset: the leader's own epoch's start offset, for the
// rule that a follower joins the ISR only once it reached it.
func TestEpochStartOffset(t *testing.T) {
	p := openP(t, vfs.NewMem(), false)
	defer p.Close()
	if _, err := p.Append(idemBatch(t, -1, -1, -1, 4)); err != nil {
		t.Fatal(err)
	}
	if err := p.BecomeLeader(2); err != nil {
		t.Fatal(err)
	}
	if got := p.EpochStartOffset(2); got != 4 {
		t.Fatalf("epoch 2 starts at %d, want 4", got)
	}
	if got := p.EpochStartOffset(0); got != 0 {
		t.Fatalf("epoch 0 starts at %d, want 0", got)
	}
	if got := p.EpochStartOffset(1); got != -1 {
		t.Fatalf("epoch 1 (never led) starts at %d, want -1", got)
	}
	if got := p.LatestEpoch(); got != 2 {
		t.Fatalf("latest epoch %d, want 2", got)
	}
	f, err := Open(Options{FS: vfs.NewMem(), Dir: "t-1", Config: DefaultConfig(), Follower: true, LeaderEpoch: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.LatestEpoch(); got != -1 {
		t.Fatalf("latest epoch of an empty follower %d, want -1", got)
	}
}
