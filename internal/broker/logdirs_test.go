package broker

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sluice-io/sluice/internal/vfs"
)

// TestLogDirFailureIsolated: an I/O error in one log dir takes only that
// dir offline (Kafka's LogDirFailureChannel, per dir): its partitions refuse
// writes, the other dir's go on taking them, checkpoints are written to the
// dir still online, and a move into the failed dir is refused.
func TestLogDirFailureIsolated(t *testing.T) {
	mem := vfs.NewMem()
	root := t.TempDir()
	data, second := filepath.Join(root, "a"), filepath.Join(root, "b")
	var on atomic.Bool
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if on.Load() && strings.HasPrefix(path, second+"/") && (op == vfs.OpWrite || op == vfs.OpSync) {
			return syscall.EIO
		}
		return nil
	})
	b, err := Open(Config{NodeID: 1, DataDir: data, LogDirs: []string{second}, Host: "127.0.0.1", Port: 9092, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Meta().CreateTopic(context.Background(), "t", 4, []int32{1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	write := func(p int32) error { return writeOne(t, b, "t", p) }
	in := map[string][]int32{}
	for p := range int32(4) {
		dir, _, ok := b.PartitionLogDir(TopicPartition{"t", p})
		if !ok {
			t.Fatalf("t-%d has no log dir", p)
		}
		in[dir] = append(in[dir], p)
		if err := write(p); err != nil {
			t.Fatal(err)
		}
	}
	if len(in[data]) != 2 || len(in[second]) != 2 {
		t.Fatalf("4 partitions over 2 dirs: %v", in)
	}
	on.Store(true)
	if err := write(in[second][0]); err == nil {
		t.Fatal("a write to the failing dir succeeded")
	}
	for _, p := range in[data] {
		if err := write(p); err != nil {
			t.Errorf("t-%d, in the healthy dir: %v", p, err)
		}
	}
	for _, p := range in[second] {
		if err := write(p); err == nil {
			t.Errorf("t-%d, in the offline dir, took a write", p)
		}
	}
	for _, st := range b.LogDirs() {
		if (st.Offline != nil) != (st.Path == second) {
			t.Errorf("%s offline: %v", st.Path, st.Offline)
		}
	}
	if err := b.Checkpoint(); err != nil {
		t.Errorf("checkpoint with one dir offline: %v", err)
	}
	cp, err := readCheckpoint(mem, filepath.Join(data, recoveryCheckpointFile))
	if err != nil || len(cp) != 2 {
		t.Errorf("the healthy dir's recovery checkpoint: %v, %v (want its 2 partitions)", cp, err)
	}
	if err := b.AlterReplicaLogDir(TopicPartition{"t", in[data][0]}, second); !errors.Is(err, ErrLogDirOffline) {
		t.Errorf("move into the offline dir: %v, want ErrLogDirOffline", err)
	}
	if err := b.AlterReplicaLogDir(TopicPartition{"t", in[second][0]}, data); !errors.Is(err, ErrLogDirOffline) {
		t.Errorf("move out of the offline dir: %v, want ErrLogDirOffline", err)
	}
}
