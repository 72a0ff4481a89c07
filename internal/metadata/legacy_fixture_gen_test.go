package metadata

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// TestWriteLegacyFixture writes testdata/legacy-meta.tar.gz: a meta
// directory as the raft-boltdb store (raft.db) and raft's FileSnapshotStore
// (snapshots/) left it, and the image it holds, for the migration test. It
// runs only with SLUICE_WRITE_LEGACY_FIXTURE=1, and only while raft-boltdb
// is a dependency: the fixture is what that code path wrote.
func TestWriteLegacyFixture(t *testing.T) {
	if os.Getenv("SLUICE_WRITE_LEGACY_FIXTURE") != "1" {
		t.Skip("set SLUICE_WRITE_LEGACY_FIXTURE=1 to rewrite testdata/legacy-meta.tar.gz")
	}
	dir := filepath.Join(t.TempDir(), "meta")
	s := readyStore(t, dir, 1)
	populate(t, s)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	mustCreateTopic(t, s, "between-snapshots", 2, []int32{1}, map[string]string{"k": "v"})
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	// After the second snapshot: only in the log.
	mustCreateTopic(t, s, "after-snapshot", 1, []int32{1, 2}, nil)
	if err := s.SetTopicConfigs(testCtx(t), "t2", map[string]string{"retention.ms": "42"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AllocateProducerIDs(testCtx(t), 7); err != nil {
		t.Fatal(err)
	}
	want := s.Image()
	snapIndex := s.raft.Stats()["last_snapshot_index"]
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("last snapshot index %s, image index %d", snapIndex, want.Index)

	// Compact the log as raft does after a snapshot once the log is longer
	// than trailingLogs (it is not, here, to keep the fixture small): the
	// entries up to a few before the snapshot are gone, so the image can be
	// rebuilt only from the snapshot plus the log.
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := logs.FirstIndex()
	last, _ := logs.LastIndex()
	var si uint64
	for _, c := range snapIndex {
		si = si*10 + uint64(c-'0')
	}
	if err := logs.DeleteRange(first, si-3); err != nil {
		t.Fatal(err)
	}
	if err := logs.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("log was %d..%d, now %d..%d", first, last, si-2, last)

	var img bytes.Buffer
	if err := encodeSnapshot(&img, want); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "image.bin"), img.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	gz := gzip.NewWriter(&out)
	tw := tar.NewWriter(gz)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = hdr.ModTime.Truncate(1e9), 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "legacy-meta.tar.gz"), out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote testdata/legacy-meta.tar.gz, %d bytes", out.Len())
}
