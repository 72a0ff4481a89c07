package metadata

import (
	"bytes"
	"maps"
	"testing"

	"github.com/hashicorp/raft"
)

// Fuzz targets for the decoders of the raft stores' files. Their seed
// corpora are in testdata/fuzz/<target>/: journals (whole, torn, damaged
// in the middle), snapshot files (whole, empty state, damaged) and stable
// files.

func FuzzDecodeJournal(f *testing.F) {
	j, _ := testJournal()
	f.Add(j)
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, good, err := decodeJournal(b)
		if err != nil {
			return
		}
		if good < 0 || good > len(b) {
			t.Fatalf("good prefix %d of %d bytes", good, len(b))
		}
		for i := 1; i < len(entries); i++ {
			if entries[i].Index != entries[i-1].Index+1 {
				t.Fatalf("entry %d after %d", entries[i].Index, entries[i-1].Index)
			}
		}
		// What remains after the cut is whole.
		again, good2, err := decodeJournal(b[:good])
		if err != nil || good2 != good || len(again) != len(entries) {
			t.Fatalf("the cut journal: %d entries, %d bytes, %v; want %d, %d", len(again), good2, err, len(entries), good)
		}
		// Encoding the entries again gives the same entries.
		re := appendFrames(nil, maxJournalFrameBytes, func(yield func(*raft.Log) bool) {
			for i := range entries {
				if !yield(&entries[i]) {
					return
				}
			}
		})
		back, good3, err := decodeJournal(re)
		if err != nil || good3 != len(re) || len(back) != len(entries) {
			t.Fatalf("re-encoded: %d entries, %d of %d bytes, %v", len(back), good3, len(re), err)
		}
		for i := range back {
			if err := entryMatch(back[i], entries[i]); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzReadSnapshotFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		meta, off, err := readSnapshotFile(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if off < snapshotHeadSize || off+meta.Size+snapshotTailSize != int64(len(b)) {
			t.Fatalf("state at %d, %d bytes, in a %d-byte file", off, meta.Size, len(b))
		}
		m2, off2, err := readSnapshotMeta(bytes.NewReader(b), int64(len(b)))
		if err != nil || off2 != off || !metaEqual(m2, meta) {
			t.Fatalf("readSnapshotMeta disagrees: %+v %d %v", m2, off2, err)
		}
	})
}

func FuzzDecodeStable(f *testing.F) {
	f.Add(encodeStable(map[string][]byte{"CurrentTerm": {0, 0, 0, 0, 0, 0, 0, 2}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		kv, err := decodeStable(b)
		if err != nil {
			return
		}
		back, err := decodeStable(encodeStable(kv))
		if err != nil || !maps.EqualFunc(back, kv, bytes.Equal) {
			t.Fatalf("re-encoded: %q, %v; want %q", back, err, kv)
		}
	})
}
