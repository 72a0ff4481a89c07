package metadata

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-io/sluice/internal/vfs"
)

func TestStableStore(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	if err := vfs.MkdirAll(mem, storeTestDir); err != nil {
		t.Fatal(err)
	}
	s, err := openStableStore(mem, storeTestDir)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("CurrentTerm")); err != nil || len(v) != 0 {
		t.Fatalf("Get of a missing key = %q, %v", v, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 0 {
		t.Fatalf("GetUint64 of a missing key = %d, %v", v, err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 1<<40+3); err != nil {
		t.Fatal(err)
	}
	val := []byte("node-1")
	if err := s.Set([]byte("LastVoteCand"), val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store keeps its own copy
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUint64([]byte("LastVoteCand")); err == nil {
		t.Error("GetUint64 of a 6-byte value succeeded")
	}

	s2, err := openStableStore(mem.Crash(), storeTestDir)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s2.GetUint64([]byte("CurrentTerm")); v != 1<<40+3 {
		t.Errorf("CurrentTerm = %d after a crash", v)
	}
	if v, _ := s2.Get([]byte("LastVoteCand")); string(v) != "node-1" {
		t.Errorf("LastVoteCand = %q after a crash", v)
	}
	if err := s.Set([]byte("big"), make([]byte, maxStableBytes)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("an oversized value: %v", err)
	}
	if err := s.Set([]byte("after"), []byte("the refused one")); err != nil {
		t.Errorf("a refused Set made the store unusable: %v", err)
	}
}

// A damaged stable file is refused at open, never taken as empty (an empty
// stable store would let this node vote twice in a term).
func TestStableStoreDamaged(t *testing.T) {
	t.Parallel()
	good := encodeStable(map[string][]byte{"CurrentTerm": {0, 0, 0, 0, 0, 0, 0, 7}})
	for i := range good {
		b := slicesClone(good)
		b[i] ^= 0x10
		mem := vfs.NewMem()
		if err := vfs.MkdirAll(mem, storeTestDir); err != nil {
			t.Fatal(err)
		}
		if err := vfs.WriteFileAtomic(mem, storeTestDir, filepath.Join(storeTestDir, stableName), b); err != nil {
			t.Fatal(err)
		}
		if _, err := openStableStore(mem, storeTestDir); err == nil {
			t.Fatalf("a stable file with byte %d flipped was accepted", i)
		}
	}
	kv, err := decodeStable(good)
	if err != nil || !bytes.Equal(kv["CurrentTerm"], []byte{0, 0, 0, 0, 0, 0, 0, 7}) || len(kv) != 1 {
		t.Fatalf("decodeStable = %v, %v", kv, err)
	}
}
