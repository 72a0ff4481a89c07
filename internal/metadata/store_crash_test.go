package metadata

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/sluice-io/sluice/internal/vfs"
)

// These tests run raft itself on the stores, on a vfs.MemFS that they crash:
// what a crash keeps is only what was fsynced, and a directory entry only
// once its directory was fsynced.

// memDataDir is the broker's data dir in these tests; Open creates it.
const memDataDir = "/data"

func openMemStore(t *testing.T, fsys vfs.FS) *Store {
	t.Helper()
	s, err := Open(Config{Dir: filepath.Join(memDataDir, "meta"), NodeID: 1, Logger: testLogger(t), FS: fsys})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.WaitReady(testCtx(t)); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	return s
}

// The defect this store fixes: a power cut right after the first start
// (cluster bootstrapped, a topic created) lost the whole meta directory,
// because neither the data dir nor meta/ was fsynced after raft.db and
// snapshots/ were created; the restart bootstrapped a new cluster and the
// broker deleted every partition directory as unknown.
func TestStoreCrashAfterFirstStart(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	s := openMemStore(t, mem)
	boot := s.Image()
	afterBoot := mem.Crash()
	tp := mustCreateTopic(t, s, "orders", 3, []int32{1}, map[string]string{"retention.ms": "1000"})
	want := s.Image()
	afterTopic := mem.Crash()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s1 := openMemStore(t, afterBoot)
	if got := s1.Image(); got.ClusterID != boot.ClusterID || got.ControllerID != 1 {
		t.Fatalf("after a crash right after the first start: cluster %q controller %d, want cluster %q (a new cluster was bootstrapped)",
			got.ClusterID, got.ControllerID, boot.ClusterID)
	}

	s2 := openMemStore(t, afterTopic)
	got := s2.Image()
	checkImage(t, got)
	if got.Topics["orders"] == nil || got.Topics["orders"].ID != tp.ID {
		t.Fatalf("after a crash: topic orders is %+v, want id %s", got.Topics["orders"], tp.ID)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("image after a crash:\n got %+v\nwant %+v", got, want)
	}
}

// A meta directory that exists but whose entry in the data dir was never
// fsynced (os.MkdirAll by an older version) is made durable by Open.
func TestStoreCrashAfterOpenOfUnsyncedMetaDir(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	if err := vfs.MkdirAll(mem, memDataDir); err != nil {
		t.Fatal(err)
	}
	if err := mem.MkdirAll(filepath.Join(memDataDir, "meta")); err != nil { // not synced
		t.Fatal(err)
	}
	s := openMemStore(t, mem)
	mustCreateTopic(t, s, "orders", 1, []int32{1}, nil)
	want := s.Image()
	crashed := mem.Crash()
	s.Close()
	if got := openMemStore(t, crashed).Image(); !reflect.DeepEqual(got, want) {
		t.Fatalf("image after a crash:\n got %+v\nwant %+v", got, want)
	}
}

// Writes, snapshots (one of them compacting the log), more writes, a crash:
// the image comes back from the newest snapshot plus the log after it.
func TestStoreCrashAfterSnapshots(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	s := openMemStore(t, mem)
	populate(t, s)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	// More than trailingLogs records, so that the next snapshot compacts.
	for i := range trailingLogs + 50 {
		if _, err := s.AllocateProducerIDs(ctx, int64(1+i%5)); err != nil {
			t.Fatal(err)
		}
	}
	mustCreateTopic(t, s, "before-second-snapshot", 1, []int32{1}, nil)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.logs.FirstIndex(); first <= 1 {
		t.Fatalf("log not compacted by the snapshot: first index %d", first)
	}
	mustCreateTopic(t, s, "after-snapshots", 2, []int32{1}, nil)
	want := s.Image()
	crashed := mem.Crash()
	s.Close()

	s2 := openMemStore(t, crashed)
	got := s2.Image()
	checkImage(t, got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("image after a crash differs: got %d topics, index %d, next pid %d; want %d, %d, %d",
			len(got.Topics), got.Index, got.NextProducerID, len(want.Topics), want.Index, want.NextProducerID)
	}
}

// A damaged newest snapshot: raft restores the older one and replays the
// log after it (trailingLogs keeps it), so nothing is lost.
func TestStoreDamagedNewestSnapshot(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	s := openMemStore(t, mem)
	populate(t, s)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	mustCreateTopic(t, s, "between", 1, []int32{1}, nil)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	mustCreateTopic(t, s, "after", 1, []int32{1}, nil)
	want := s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(memDataDir, "meta")
	snaps, err := openSnapshotStore(mem, dir, snapshotsRetained, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ids := listIDs(t, snaps)
	if len(ids) != 2 {
		t.Fatalf("snapshots %v, want 2", ids)
	}
	path := filepath.Join(dir, ids[0]+snapshotSuffix)
	b, err := readSmallFile(mem, path, maxSnapshotBytes)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	if err := vfs.WriteFileAtomic(mem, dir, path, b); err != nil {
		t.Fatal(err)
	}

	s2 := openMemStore(t, mem)
	if got := s2.Image(); !reflect.DeepEqual(got, want) {
		t.Fatalf("image with a damaged newest snapshot:\n got %+v\nwant %+v", got, want)
	}
}
