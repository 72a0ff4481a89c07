package metadata

import (
	"bytes"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/sluice-io/sluice/internal/vfs"
)

func openTestSnaps(t *testing.T, fsys vfs.FS) *snapshotStore {
	t.Helper()
	if err := vfs.MkdirAll(fsys, storeTestDir); err != nil {
		t.Fatal(err)
	}
	s, err := openSnapshotStore(fsys, storeTestDir, snapshotsRetained, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeTestSnapshot(t *testing.T, s *snapshotStore, index, term uint64, state []byte) string {
	t.Helper()
	sink, err := s.Create(1, index, term, testConfiguration, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(state); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}

func readTestSnapshot(s *snapshotStore, id string) (*raft.SnapshotMeta, []byte, error) {
	meta, rc, err := s.Open(id)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return meta, b, err
}

func listIDs(t *testing.T, s *snapshotStore) []string {
	t.Helper()
	metas, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range metas {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestSnapshotStore(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	s := openTestSnaps(t, mem)
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("fresh store lists %v", ids)
	}
	if _, err := s.Create(0, 1, 1, testConfiguration, 1, nil); err == nil {
		t.Error("a version 0 snapshot was created")
	}
	a := writeTestSnapshot(t, s, 10, 1, []byte("ten"))
	b := writeTestSnapshot(t, s, 9, 2, nil) // a later term sorts after, whatever the index
	c := writeTestSnapshot(t, s, 20, 2, bytes.Repeat([]byte("twenty"), 50000))
	if ids := listIDs(t, s); strings.Join(ids, ",") != c+","+b {
		t.Fatalf("List = %v, want [%s %s] (the oldest reaped)", ids, c, b)
	}
	_ = a
	meta, state, err := readTestSnapshot(s, c)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Index != 20 || meta.Term != 2 || meta.Size != 300000 || meta.ConfigurationIndex != 1 ||
		meta.Version != 1 || len(meta.Configuration.Servers) != 1 || !bytes.Equal(state, bytes.Repeat([]byte("twenty"), 50000)) {
		t.Fatalf("snapshot %s: %+v, %d bytes", c, meta, len(state))
	}
	if _, state, err := readTestSnapshot(s, b); err != nil || len(state) != 0 {
		t.Fatalf("empty snapshot: %d bytes, %v", len(state), err)
	}
	for _, id := range []string{"../../etc/passwd", "", "1-2", a} {
		if _, _, err := s.Open(id); err == nil {
			t.Errorf("Open(%q) succeeded", id)
		}
	}

	// A canceled snapshot leaves nothing; Close and Cancel are idempotent.
	sink, err := s.Create(1, 30, 2, testConfiguration, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink.Write([]byte("x"))
	if err := sink.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Cancel(); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("y")); err == nil {
		t.Error("Write after Cancel succeeded")
	}
	names, _ := mem.List(storeTestDir)
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) {
			t.Errorf("left behind: %s", n)
		}
	}
	sink, _ = s.Create(1, 40, 2, testConfiguration, 1, nil)
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil { // raft closes twice
		t.Fatal(err)
	}

	// The size limit.
	sink, _ = s.Create(1, 50, 2, testConfiguration, 1, nil)
	sink.(*snapshotSink).stateLen = maxSnapshotBytes
	if _, err := sink.Write([]byte("x")); err == nil {
		t.Error("a write past maxSnapshotBytes succeeded")
	}
	sink.Cancel()
}

// A damaged snapshot is still listed (raft must not think there is none),
// and Open refuses it, so that raft falls back to an older one.
func TestSnapshotStoreDamaged(t *testing.T) {
	t.Parallel()
	for name, damage := range map[string]func([]byte) []byte{
		"state byte": func(b []byte) []byte { b[len(b)-20] ^= 1; return b },
		"meta byte":  func(b []byte) []byte { b[snapshotHeadSize+3] ^= 1; return b },
		"magic":      func(b []byte) []byte { b[0] = 'X'; return b },
		"truncated":  func(b []byte) []byte { return b[:len(b)-1] },
		"empty":      func(b []byte) []byte { return nil },
		"crc":        func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mem := vfs.NewMem()
			s := openTestSnaps(t, mem)
			old := writeTestSnapshot(t, s, 5, 1, []byte("old state"))
			newest := writeTestSnapshot(t, s, 9, 1, []byte("new state"))
			path := filepath.Join(storeTestDir, newest+snapshotSuffix)
			b, err := readSmallFile(mem, path, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if err := vfs.WriteFileAtomic(mem, storeTestDir, path, damage(b)); err != nil {
				t.Fatal(err)
			}
			metas, err := s.List()
			if err != nil || len(metas) != 2 || metas[0].ID != newest || metas[0].Index != 9 || metas[0].Term != 1 {
				t.Fatalf("List = %+v, %v; want the damaged %s first", metas, err, newest)
			}
			if _, _, err := s.Open(newest); err == nil {
				t.Fatal("Open of a damaged snapshot succeeded")
			}
			if _, state, err := readTestSnapshot(s, old); err != nil || string(state) != "old state" {
				t.Fatalf("the older snapshot: %q, %v", state, err)
			}
		})
	}
}

// Unfinished snapshots are removed at open; finished ones are not.
func TestSnapshotStoreRemovesUnfinished(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	s := openTestSnaps(t, mem)
	id := writeTestSnapshot(t, s, 5, 1, []byte("kept"))
	sink, err := s.Create(1, 6, 1, testConfiguration, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink.Write([]byte("never finished"))
	crashed := mem.Crash()
	s2 := openTestSnaps(t, crashed)
	names, _ := crashed.List(storeTestDir)
	if strings.Join(names, ",") != id+snapshotSuffix {
		t.Fatalf("after reopen: %v", names)
	}
	if ids := listIDs(t, s2); len(ids) != 1 || ids[0] != id {
		t.Fatalf("List = %v", ids)
	}
}
