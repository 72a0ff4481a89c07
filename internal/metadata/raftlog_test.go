package metadata

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluice-io/sluice/internal/vfs"
)

func openTestLog(t *testing.T, fsys vfs.FS) *logStore {
	t.Helper()
	if err := vfs.MkdirAll(fsys, storeTestDir); err != nil {
		t.Fatal(err)
	}
	s, err := openLogStore(fsys, storeTestDir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustStore(t *testing.T, s *logStore, logs []*raft.Log) {
	t.Helper()
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

func wantLogs(t *testing.T, s *logStore, ranges ...[3]uint64) {
	t.Helper()
	var want []raft.Log
	for _, r := range ranges {
		want = append(want, derefLogs(testEntries(r[0], r[1], r[2]))...)
	}
	if err := logsMatch(s, want); err != nil {
		t.Fatal(err)
	}
}

// The LogStore contract as raft uses it, and the refusals that keep the
// log without gaps.
func TestLogStoreContract(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	ops := 0
	s := openTestLog(t, vfs.NewFault(mem, func(vfs.Op, string) error { ops++; return nil }))
	wantLogs(t, s)
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog on an empty log = %v", err)
	}
	if !s.IsMonotonic() {
		t.Fatal("not monotonic")
	}
	mustStore(t, s, nil)
	mustStore(t, s, testEntries(5, 7, 1)) // an empty log starts anywhere
	mustStore(t, s, testEntries(8, 8, 1))
	if err := s.StoreLog(testEntries(8, 8, 2)[0]); err == nil {
		t.Error("overwriting entry 8 without deleting it succeeded")
	}
	if err := s.StoreLogs(testEntries(10, 11, 1)); err == nil {
		t.Error("a gap after 8 was accepted")
	}
	if err := s.StoreLogs([]*raft.Log{testEntries(9, 9, 1)[0], testEntries(11, 11, 1)[0]}); err == nil {
		t.Error("a batch with a gap was accepted")
	}
	big := testEntries(9, 9, 1)
	big[0].Data = make([]byte, maxLogEntryBytes+1)
	if err := s.StoreLogs(big); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("an oversized entry: %v", err)
	}
	wantLogs(t, s, [3]uint64{5, 8, 1})

	before := ops
	for _, r := range [][2]uint64{{1, 4}, {9, 20}, {7, 6}} {
		if err := s.DeleteRange(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if ops != before {
		t.Errorf("deleting nothing made %d filesystem operations", ops-before)
	}
	if err := s.DeleteRange(6, 7); err == nil {
		t.Error("deleting from the middle succeeded")
	}
	mustStore(t, s, testEntries(9, 12, 1))
	if err := s.DeleteRange(11, 100); err != nil { // suffix
		t.Fatal(err)
	}
	if err := s.DeleteRange(0, 6); err != nil { // prefix
		t.Fatal(err)
	}
	wantLogs(t, s, [3]uint64{7, 10, 1})
	mustStore(t, s, testEntries(11, 11, 2))
	wantLogs(t, s, [3]uint64{7, 10, 1}, [3]uint64{11, 11, 2})
	if err := s.DeleteRange(7, 11); err != nil { // everything
		t.Fatal(err)
	}
	wantLogs(t, s)
	mustStore(t, s, testEntries(100, 101, 3))

	s2 := openTestLog(t, mem)
	wantLogs(t, s2, [3]uint64{100, 101, 3})
	s2.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(testEntries(102, 102, 3)); !errors.Is(err, errLogClosed) {
		t.Errorf("StoreLogs after Close = %v", err)
	}
	wantLogs(t, s, [3]uint64{100, 101, 3}) // reads still answer
}

// After a failed append or fsync the journal's tail is unknown: every
// later write fails until a restart reads the journal again, which cuts
// the torn tail and keeps every acknowledged entry.
func TestLogStoreStickyAfterFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		op   vfs.Op
		err  error
	}{
		{"short write", vfs.OpWrite, &vfs.ShortWrite{N: 9}},
		{"failed fsync", vfs.OpSync, vfs.ErrInjected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mem := vfs.NewMem()
			failing := false
			s := openTestLog(t, vfs.NewFault(mem, func(op vfs.Op, _ string) error {
				if failing && op == tc.op {
					return tc.err
				}
				return nil
			}))
			mustStore(t, s, testEntries(1, 3, 1))
			failing = true
			if err := s.StoreLogs(testEntries(4, 5, 1)); err == nil {
				t.Fatal("StoreLogs succeeded through the fault")
			}
			failing = false
			if err := s.StoreLogs(testEntries(4, 5, 1)); err == nil {
				t.Fatal("StoreLogs after a failed one succeeded on the same journal")
			}
			if err := s.DeleteRange(1, 1); err == nil {
				t.Fatal("DeleteRange after a failed StoreLogs succeeded")
			}
			wantLogs(t, s, [3]uint64{1, 3, 1})

			// Restart: a torn frame is cut, durably. After a failed
			// fsync the whole frame may be there (it is, in a MemFS):
			// raft was told it failed, and either outcome is allowed.
			s2 := openTestLog(t, mem)
			old := [3]uint64{1, 3, 1}
			if tc.op == vfs.OpSync {
				old[1] = 5
			}
			wantLogs(t, s2, old)
			mustStore(t, s2, testEntries(old[1]+1, old[1]+3, 2))
			s3 := openTestLog(t, mem.Crash())
			wantLogs(t, s3, old, [3]uint64{old[1] + 1, old[1] + 3, 2})
		})
	}
}

// testJournal returns a journal of three frames and the third frame alone.
func testJournal() (journal, last []byte) {
	var b []byte
	var start int
	for _, r := range [][2]uint64{{1, 4}, {5, 5}, {6, 9}} {
		start = len(b)
		b = appendFrames(b, maxJournalFrameBytes, func(yield func(*raft.Log) bool) {
			for _, l := range testEntries(r[0], r[1], 1) {
				if !yield(l) {
					return
				}
			}
		})
	}
	return b, b[start:]
}

func checkDecoded(t *testing.T, b []byte, wantGood int, wantLast uint64) {
	t.Helper()
	entries, good, err := decodeJournal(b)
	if err != nil {
		t.Fatalf("decodeJournal: %v", err)
	}
	if good != wantGood {
		t.Fatalf("good prefix %d bytes, want %d", good, wantGood)
	}
	if len(entries) != int(wantLast) {
		t.Fatalf("%d entries, want %d", len(entries), wantLast)
	}
	for i, e := range entries {
		if err := entryMatch(e, *testEntries(uint64(i+1), uint64(i+1), 1)[0]); err != nil {
			t.Fatal(err)
		}
	}
}

// What a crash can leave of the last append is cut, whatever it is.
func TestDecodeJournalTornTail(t *testing.T) {
	t.Parallel()
	j, last := testJournal()
	checkDecoded(t, j, len(j), 9)
	whole := j[:len(j)-len(last)]
	for cut := 0; cut < len(last); cut++ {
		checkDecoded(t, j[:len(whole)+cut], len(whole), 5)
	}
	for name, tail := range map[string][]byte{
		"zeros":                  make([]byte, 300),
		"garbage":                bytes.Repeat([]byte{0xa5, 0x11, 0x00}, 50),
		"zeroed payload":         append(slicesClone(last[:frameHeadSize]), make([]byte, len(last)-frameHeadSize)...),
		"header, then zeros":     append(slicesClone(last[:frameHeadSize]), make([]byte, 3)...),
		"zeroed header":          append(make([]byte, frameHeadSize), last[frameHeadSize:]...),
		"last byte flipped":      append(slicesClone(last[:len(last)-1]), last[len(last)-1]^1),
		"a byte of the length":   append([]byte{last[0] ^ 0x40}, last[1:]...),
		"payload prefix, zeroes": append(slicesClone(last[:frameHeadSize+5]), make([]byte, len(last)-frameHeadSize-5)...),
	} {
		t.Run(name, func(t *testing.T) {
			checkDecoded(t, append(slicesClone(whole), tail...), len(whole), 5)
		})
	}
}

// Damage to any byte of a frame that is followed by an intact one is an
// error, never a silent cut.
func TestDecodeJournalCorruptMiddle(t *testing.T) {
	t.Parallel()
	j, last := testJournal()
	firstLen := len(appendFrames(nil, maxJournalFrameBytes, func(yield func(*raft.Log) bool) {
		for _, l := range testEntries(1, 4, 1) {
			if !yield(l) {
				return
			}
		}
	}))
	for off := 0; off < len(j)-len(last); off++ {
		b := slicesClone(j)
		b[off] ^= 0x08
		if _, _, err := decodeJournal(b); err == nil {
			t.Fatalf("flipping a bit at offset %d (frame %d) went unnoticed", off, 1+min(1, off/firstLen))
		}
	}
	// An intact frame whose entries do not follow the previous ones.
	b := slicesClone(j[:firstLen])
	b = appendFrames(b, maxJournalFrameBytes, func(yield func(*raft.Log) bool) { yield(testEntries(7, 7, 1)[0]) })
	if _, _, err := decodeJournal(b); err == nil {
		t.Fatal("a frame that skips indexes was accepted")
	}
}

// Open refuses a damaged journal and leaves it as it is.
func TestOpenLogStoreRefusesCorruptJournal(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	j, _ := testJournal()
	j[20] ^= 1
	if err := vfs.MkdirAll(mem, storeTestDir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(storeTestDir, journalName)
	if err := vfs.WriteFileAtomic(mem, storeTestDir, path, j); err != nil {
		t.Fatal(err)
	}
	_, err := openLogStore(mem, storeTestDir, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "offset 0") {
		t.Fatalf("open of a damaged journal: %v", err)
	}
	got, err := readSmallFile(mem, path, maxJournalBytes)
	if err != nil || !bytes.Equal(got, j) {
		t.Fatalf("the damaged journal was changed (%v)", err)
	}
}

// Entries round-trip through the journal with every field, including a
// zero AppendedAt, empty and nil data.
func TestJournalRoundTrip(t *testing.T) {
	t.Parallel()
	entries := derefLogs(testEntries(1, 20, 7))
	entries[3].AppendedAt = entries[3].AppendedAt.AddDate(-3000, 0, 0)
	entries[4].AppendedAt = time.Time{}
	entries[6].Data = []byte{}
	entries[7].Type = raft.LogConfiguration
	entries[8].Term = 1 << 62
	b := appendFrames(nil, maxJournalFrameBytes, func(yield func(*raft.Log) bool) {
		for i := range entries {
			if !yield(&entries[i]) {
				return
			}
		}
	})
	got, good, err := decodeJournal(b)
	if err != nil || good != len(b) || len(got) != len(entries) {
		t.Fatalf("decode: %d entries, %d of %d bytes, %v", len(got), good, len(b), err)
	}
	for i := range entries {
		if err := entryMatch(got[i], entries[i]); err != nil {
			t.Fatal(err)
		}
	}
	if !got[4].AppendedAt.IsZero() {
		t.Fatalf("zero AppendedAt came back as %v", got[4].AppendedAt)
	}
}

// A batch larger than a frame is split over several frames.
func TestAppendFramesSplits(t *testing.T) {
	t.Parallel()
	const maxFrame = 1000
	data := make([]byte, 300)
	b := appendFrames(nil, maxFrame, func(yield func(*raft.Log) bool) {
		for i := range 10 {
			if !yield(&raft.Log{Index: uint64(i + 1), Data: data}) {
				return
			}
		}
	})
	got, good, err := decodeJournal(b)
	if err != nil || good != len(b) || len(got) != 10 {
		t.Fatalf("%d entries of 10, %d of %d bytes, %v", len(got), good, len(b), err)
	}
	frames := 0
	for off := 0; off < len(b); frames++ {
		size, _, ok := frameHeader(b[off:])
		if !ok || size > maxFrame {
			t.Fatalf("frame at %d: %d bytes, %v", off, size, ok)
		}
		off += frameHeadSize + size
	}
	if frames != 4 { // three entries of ~310 bytes fit in 1000
		t.Fatalf("%d frames, want 4", frames)
	}
}
