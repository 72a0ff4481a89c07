package metadata

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/sluice-io/sluice/internal/vfs"
)

// testdata/legacy-meta.tar.gz is a meta directory written by the code before
// the vfs stores (raft-boltdb's raft.db and raft's FileSnapshotStore, at
// commit c3f1cca, by TestWriteLegacyFixture there): bootstrap, one record of
// every kind, a snapshot, a topic, a second snapshot, three more records;
// the log compacted to 14..19 as raft compacts a long one, so the image
// needs the snapshot (index 16) and the log after it. image.bin is the
// image it held, as encodeSnapshot writes it.

// extractLegacyFixture unpacks the fixture into a new directory and returns
// the meta directory and the image it holds.
func extractLegacyFixture(t *testing.T) (string, *Image) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "meta")
	gz, err := os.Open(filepath.Join("testdata", "legacy-meta.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Close()
	zr, err := gzip.NewReader(gz)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var want *Image
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(hdr.Name, "..") {
			t.Fatalf("fixture entry %q", hdr.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == "image.bin" {
			if want, err = decodeSnapshot(bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		path := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if hdr.Typeflag == tar.TypeDir {
			err = os.MkdirAll(path, 0o755)
		} else {
			err = os.MkdirAll(filepath.Dir(path), 0o755)
			if err == nil {
				err = os.WriteFile(path, b, 0o600)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if want == nil || len(want.Topics) == 0 {
		t.Fatal("the fixture has no image")
	}
	return dir, want
}

func mustExist(t *testing.T, fsys vfs.FS, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := fsys.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func mustNotExist(t *testing.T, fsys vfs.FS, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := fsys.Stat(filepath.Join(dir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want it gone", n, err)
		}
	}
}

// Open imports a meta directory of the older format: the image after the
// import equals the one before, the old files are moved aside, and later
// starts use the new stores only.
func TestMigrateLegacyMetaDir(t *testing.T) {
	t.Parallel()
	dir, want := extractLegacyFixture(t)
	s := readyStore(t, dir, 1)
	if got := s.Image(); !reflect.DeepEqual(got, want) {
		t.Fatalf("image after the import:\n got %+v\nwant %+v", got, want)
	}
	fsys := vfs.OS()
	mustExist(t, fsys, dir, journalName, stableName, legacyLogName+migratedSuffix, legacySnapDir+migratedSuffix)
	mustNotExist(t, fsys, dir, legacyLogName, legacySnapDir)
	if first, _ := s.logs.FirstIndex(); first != 14 {
		t.Errorf("imported log starts at %d, want 14", first)
	}
	mustCreateTopic(t, s, "after-import", 1, []int32{1}, nil)
	want = s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := readyStore(t, dir, 1)
	if got := s2.Image(); !reflect.DeepEqual(got, want) {
		t.Fatalf("image after a restart:\n got %+v\nwant %+v", got, want)
	}
	mustExist(t, fsys, dir, legacyLogName+migratedSuffix, legacySnapDir+migratedSuffix)
}

// The newest old snapshot is damaged: the import takes the older one, as
// raft would have, and the log after it rebuilds the same image.
func TestMigrateLegacyDamagedNewestSnapshot(t *testing.T) {
	t.Parallel()
	dir, want := extractLegacyFixture(t)
	names, err := os.ReadDir(filepath.Join(dir, legacySnapDir))
	if err != nil || len(names) != 2 {
		t.Fatalf("fixture snapshots: %v %v", names, err)
	}
	state := filepath.Join(dir, legacySnapDir, names[1].Name(), legacyStateFile) // newest: term-index-time sorts
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 1
	if err := os.WriteFile(state, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s := readyStore(t, dir, 1)
	if got := s.Image(); !reflect.DeepEqual(got, want) {
		t.Fatalf("image after the import:\n got %+v\nwant %+v", got, want)
	}
	metas, _ := openSnapshotStoreForTest(t, dir).List()
	if len(metas) != 1 || metas[0].Index != 15 {
		t.Fatalf("imported snapshots %+v, want the one at index 15", metas)
	}
}

func openSnapshotStoreForTest(t *testing.T, dir string) *snapshotStore {
	t.Helper()
	s, err := openSnapshotStore(vfs.OS(), dir, snapshotsRetained, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Old files that cannot be read make Open fail and stay as they are: never
// a new cluster over them.
func TestMigrateLegacyRefusesUnreadable(t *testing.T) {
	t.Parallel()
	for name, damage := range map[string]func(t *testing.T, dir string){
		"no snapshot intact": func(t *testing.T, dir string) {
			names, _ := os.ReadDir(filepath.Join(dir, legacySnapDir))
			for _, n := range names {
				if err := os.WriteFile(filepath.Join(dir, legacySnapDir, n.Name(), legacyStateFile), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		},
		"raft.db not a bolt file": func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, legacyLogName), bytes.Repeat([]byte("garbage!"), 1024), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir, _ := extractLegacyFixture(t)
			damage(t, dir)
			s, err := Open(Config{Dir: dir, NodeID: 1, Logger: testLogger(t)})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), "older version") {
				t.Errorf("error does not say what it was doing: %v", err)
			}
			fsys := vfs.OS()
			mustExist(t, fsys, dir, legacyLogName, legacySnapDir)
			mustNotExist(t, fsys, dir, journalName, legacyLogName+migratedSuffix)
		})
	}
}

// An empty raft.db (created, then a crash before bolt wrote it) and an
// empty snapshots/ hold no state: a new cluster starts.
func TestMigrateLegacyEmpty(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "meta")
	if err := os.MkdirAll(filepath.Join(dir, legacySnapDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, legacyLogName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := readyStore(t, dir, 1)
	if img := s.Image(); img.ClusterID == "" || len(img.Topics) != 0 {
		t.Fatalf("image %+v", img)
	}
	mustExist(t, vfs.OS(), dir, legacyLogName+migratedSuffix, legacySnapDir+migratedSuffix)
}

// storesDump is what the new stores hold, to compare imports.
type storesDump struct {
	logs   []raft.Log
	stable map[string][]byte
	snaps  []string
	state  []byte // the newest snapshot's
	names  []string
}

func dumpStores(t *testing.T, fsys vfs.FS, dir string) storesDump {
	t.Helper()
	s, err := openRaftStores(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var d storesDump
	d.logs = slices.Clone(s.logs.entries)
	d.stable = maps.Clone(s.stable.kv)
	metas, err := s.snaps.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metas {
		d.snaps = append(d.snaps, m.ID)
	}
	if len(metas) > 0 {
		_, d.state, err = readTestSnapshot(s.snaps, metas[0].ID)
		if err != nil {
			t.Fatal(err)
		}
	}
	d.names, _ = fsys.List(dir)
	return d
}

func (d storesDump) diff(want storesDump) error {
	if len(d.logs) != len(want.logs) {
		return fmt.Errorf("%d log entries, want %d", len(d.logs), len(want.logs))
	}
	for i := range d.logs {
		if err := entryMatch(d.logs[i], want.logs[i]); err != nil {
			return err
		}
	}
	if !maps.EqualFunc(d.stable, want.stable, bytes.Equal) {
		return fmt.Errorf("stable %q, want %q", d.stable, want.stable)
	}
	if !slices.Equal(d.snaps, want.snaps) || !bytes.Equal(d.state, want.state) {
		return fmt.Errorf("snapshots %v (%d bytes), want %v (%d bytes)", d.snaps, len(d.state), want.snaps, len(want.state))
	}
	if !slices.Equal(d.names, want.names) {
		return fmt.Errorf("files %v, want %v", d.names, want.names)
	}
	return nil
}

// mirrorToMem copies the tree at dir on disk into a MemFS at the same path,
// durably. raft.db is read by bbolt from the disk at that path; every
// other file the import reads or writes goes through the MemFS.
func mirrorToMem(t *testing.T, dir string) *vfs.MemFS {
	t.Helper()
	mem := vfs.NewMem()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return vfs.MkdirAll(mem, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := vfs.Create(mem, path)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.Write(b); err != nil {
			return err
		}
		return f.Sync()
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

// A crash before (and a failure of) every filesystem operation of the
// import: running it again, after a restart or after a power cut, ends
// with the same stores as an import that was never interrupted.
func TestMigrateLegacyCrashAtEveryOp(t *testing.T) {
	t.Parallel()
	dir, _ := extractLegacyFixture(t)
	log := testLogger(t)

	ref := mirrorToMem(t, dir)
	total := 0
	if err := migrateLegacy(vfs.NewFault(ref, func(vfs.Op, string) error { total++; return nil }), dir, log); err != nil {
		t.Fatal(err)
	}
	want := dumpStores(t, ref, dir)
	if len(want.logs) != 6 || len(want.snaps) != 1 || len(want.stable) == 0 ||
		!slices.Contains(want.names, legacyLogName+migratedSuffix) || slices.Contains(want.names, legacyLogName) {
		t.Fatalf("reference import: %+v", want)
	}

	for k := 1; k <= total; k++ {
		mem := mirrorToMem(t, dir)
		n := 0
		var crashed *vfs.MemFS
		var op string
		fault := vfs.NewFault(mem, func(o vfs.Op, path string) error {
			if n++; n == k {
				crashed, op = mem.Crash(), fmt.Sprintf("%v %s", o, path)
				return vfs.ErrInjected
			}
			return nil
		})
		_ = migrateLegacy(fault, dir, log) // fails, or logs the failure and goes on
		for _, c := range []struct {
			name string
			fsys *vfs.MemFS
		}{{"restart", mem}, {"power cut", crashed}} {
			if err := migrateLegacy(c.fsys, dir, log); err != nil {
				t.Fatalf("op %d (%s) failed, then %s: import again: %v", k, op, c.name, err)
			}
			if err := dumpStores(t, c.fsys, dir).diff(want); err != nil {
				t.Fatalf("op %d (%s) failed, then %s: %v", k, op, c.name, err)
			}
		}
	}
}

func TestContiguousLegacyLog(t *testing.T) {
	t.Parallel()
	logs := func(idx ...uint64) []raft.Log {
		var out []raft.Log
		for _, i := range idx {
			out = append(out, raft.Log{Index: i})
		}
		return out
	}
	for _, c := range []struct {
		name string
		logs []raft.Log
		snap uint64 // 0: none
		want []uint64
		err  bool
	}{
		{"empty", nil, 0, nil, false},
		{"whole", logs(1, 2, 3), 0, []uint64{1, 2, 3}, false},
		{"after a snapshot", logs(4, 5), 3, []uint64{4, 5}, false},
		{"overlapping a snapshot", logs(2, 3, 4, 5), 3, []uint64{2, 3, 4, 5}, false},
		{"ends at the snapshot", logs(2, 3), 3, []uint64{2, 3}, false},
		{"all older than the snapshot", logs(1, 2), 9, nil, false},
		{"gap covered by the snapshot", logs(1, 2, 8, 9), 7, []uint64{8, 9}, false},
		{"gap not covered", logs(1, 2, 8, 9), 5, nil, true},
		{"gap, no snapshot", logs(1, 3), 0, nil, true},
		{"starts after the snapshot's end", logs(6, 7), 4, nil, true},
		{"starts past 1 without a snapshot", logs(3, 4), 0, nil, true},
	} {
		var snap *raft.SnapshotMeta
		if c.snap > 0 {
			snap = &raft.SnapshotMeta{Index: c.snap}
		}
		got, err := contiguousLegacyLog(c.logs, snap)
		if (err != nil) != c.err {
			t.Errorf("%s: error %v, want error %v", c.name, err, c.err)
			continue
		}
		var idx []uint64
		for _, l := range got {
			idx = append(idx, l.Index)
		}
		if !c.err && !slices.Equal(idx, c.want) {
			t.Errorf("%s: %v, want %v", c.name, idx, c.want)
		}
	}
}
