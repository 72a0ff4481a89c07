package partition

import (
	"bytes"
	"errors"
	"path/filepath"
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
