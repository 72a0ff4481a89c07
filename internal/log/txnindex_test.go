package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// marker is a transaction marker (control batch) of producer pid.
func marker(t testing.TB, pid int64, commit bool) []byte {
	t.Helper()
	typ := record.ControlAbort
	if commit {
		typ = record.ControlCommit
	}
	key := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 0), uint16(typ))
	value := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, 0), 0)
	b, err := record.BuildBatch(record.BatchSpec{Attributes: record.AttrTransactional | record.AttrControl,
		ProducerID: pid, ProducerEpoch: 0, BaseSequence: -1}, []record.Record{{Key: key, Value: value}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAppend(t testing.TB, l *Log, b []byte) AppendResult {
	t.Helper()
	res, err := l.Append(b)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestTxnIndexCodec(t *testing.T) {
	entries := []AbortedTxn{{1, 0, 5, 0}, {2, 3, 9, 6}, {-1, -5, 1 << 40, 1<<40 + 1}}
	b := marshalTxnIndex(entries)
	if len(b) != len(entries)*txnIndexEntryBytes {
		t.Fatalf("%d bytes for %d entries", len(b), len(entries))
	}
	got, err := unmarshalTxnIndex(b)
	if err != nil || !reflect.DeepEqual(got, entries) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// A torn trailing entry is dropped.
	if got, err := unmarshalTxnIndex(b[:len(b)-3]); err != nil || !reflect.DeepEqual(got, entries[:2]) {
		t.Fatalf("torn tail: %+v %v", got, err)
	}
	// An unknown version or entries out of marker order before the last
	// entry are errors; as the last entry they are a torn append, dropped.
	bad := bytes.Clone(b)
	bad[txnIndexEntryBytes] = 1
	if _, err := unmarshalTxnIndex(bad); err == nil {
		t.Fatal("version 256 in the middle: no error")
	}
	bad = bytes.Clone(b)
	bad[2*txnIndexEntryBytes] = 1
	if got, err := unmarshalTxnIndex(bad); err != nil || !reflect.DeepEqual(got, entries[:2]) {
		t.Fatalf("version 256 last: %+v %v", got, err)
	}
	if _, err := unmarshalTxnIndex(marshalTxnIndex([]AbortedTxn{{1, 0, 5, 0}, {2, 0, 5, 0}, {3, 6, 7, 0}})); err == nil {
		t.Fatal("two entries with one marker offset: no error")
	}
	if _, err := unmarshalTxnIndex(marshalTxnIndex([]AbortedTxn{{1, 6, 5, 0}, {3, 6, 7, 0}})); err == nil {
		t.Fatal("first offset after the marker: no error")
	}
	zeroed := append(marshalTxnIndex(entries[1:2]), make([]byte, txnIndexEntryBytes)...)
	if got, err := unmarshalTxnIndex(zeroed); err != nil || !reflect.DeepEqual(got, entries[1:2]) {
		t.Fatalf("zeroed last entry: %+v %v", got, err)
	}
	if got, err := unmarshalTxnIndex(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty: %+v %v", got, err)
	}
}

// FuzzTxnIndex: unmarshalTxnIndex never panics, and what it accepts
// marshals back to the input's first entries: all of its whole entries, or
// all but the last (a torn append).
func FuzzTxnIndex(f *testing.F) {
	f.Add([]byte{})
	f.Add(marshalTxnIndex([]AbortedTxn{{1, 0, 5, 0}}))
	f.Add(marshalTxnIndex([]AbortedTxn{{1, 0, 5, 0}, {7, 2, 9, 6}})[:50])
	f.Add(marshalTxnIndex([]AbortedTxn{{1, 0, 5, 0}, {2, 0, 5, 0}}))
	f.Add(bytes.Repeat([]byte{0xff}, 2*txnIndexEntryBytes))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := unmarshalTxnIndex(b)
		if err != nil {
			return
		}
		whole := len(b) / txnIndexEntryBytes
		if len(entries) != whole && len(entries) != whole-1 {
			t.Fatalf("%d entries from %d bytes", len(entries), len(b))
		}
		if got := marshalTxnIndex(entries); !bytes.Equal(got, b[:len(entries)*txnIndexEntryBytes]) {
			t.Fatalf("re-marshalled\n%x\nwant\n%x", got, b[:len(entries)*txnIndexEntryBytes])
		}
		for i, e := range entries {
			if e.FirstOffset > e.LastOffset || i > 0 && entries[i-1].LastOffset >= e.LastOffset {
				t.Fatalf("accepted entry %d out of order: %+v", i, entries)
			}
		}
	})
}

// TestAbortedTxnsAcrossSegments: entries go to the segment of their marker,
// survive a clean reopen, and AbortedTxns selects by range.
func TestAbortedTxnsAcrossSegments(t *testing.T) {
	fs := vfs.NewMem()
	cfg := Config{SegmentBytes: 200} // about two batches a segment
	l := open(t, fs, cfg, 0)
	var entries []AbortedTxn
	for i := 0; i < 6; i++ {
		first := mustAppend(t, l, batch(t, "x", 2, 0)).BaseOffset
		m := mustAppend(t, l, marker(t, int64(i), i%2 == 1)).BaseOffset
		if i%2 == 1 {
			continue // committed: no entry
		}
		e := AbortedTxn{ProducerID: int64(i), FirstOffset: first, LastOffset: m, LastStableOffset: m + 1}
		if err := l.AppendAborted(e); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	if l.Segments() < 3 {
		t.Fatalf("%d segments, want several", l.Segments())
	}
	// A replayed entry at or below the last one is ignored.
	if err := l.AppendAborted(entries[1]); err != nil {
		t.Fatal(err)
	}
	check := func(l *Log, what string) {
		t.Helper()
		if got := l.AbortedTxns(0, l.EndOffset()); !reflect.DeepEqual(got, entries) {
			t.Fatalf("%s: all: %+v, want %+v", what, got, entries)
		}
		// [3, 7): entry 1 (6-8) only; entry 0's marker (2) is before 3.
		if got := l.AbortedTxns(3, 7); !reflect.DeepEqual(got, entries[1:2]) {
			t.Fatalf("%s: [3,7): %+v", what, got)
		}
		// A range inside one transaction's records.
		if got := l.AbortedTxns(1, 2); !reflect.DeepEqual(got, entries[:1]) {
			t.Fatalf("%s: [1,2): %+v", what, got)
		}
		if got := l.AbortedTxns(l.EndOffset(), l.EndOffset()+10); len(got) != 0 {
			t.Fatalf("%s: past the end: %+v", what, got)
		}
	}
	check(l, "open")
	// WalkHeaders reads the markers' types.
	var ctls []record.ControlType
	if err := l.WalkHeaders(0, func(h record.Header, c record.ControlType) error {
		if h.IsControl() {
			ctls = append(ctls, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []record.ControlType{0, 1, 0, 1, 0, 1}
	if !reflect.DeepEqual(ctls, want) {
		t.Fatalf("control types %v, want %v", ctls, want)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	check(l, "reopened")
	l.Close()
}

// TestTxnIndexCutWithLog: an entry whose marker was lost in a crash (the
// index is durable at once, the log was not synced) is dropped at
// recovery, and a damaged .txnindex is moved aside.
func TestTxnIndexCutWithLog(t *testing.T) {
	fs := vfs.NewMem()
	l := open(t, fs, Config{}, 0)
	mustAppend(t, l, batch(t, "a", 2, 0))
	m0 := mustAppend(t, l, marker(t, 1, false)).BaseOffset
	e0 := AbortedTxn{ProducerID: 1, FirstOffset: 0, LastOffset: m0, LastStableOffset: m0 + 1}
	if err := l.AppendAborted(e0); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	first := mustAppend(t, l, batch(t, "b", 2, 0)).BaseOffset
	m1 := mustAppend(t, l, marker(t, 2, false)).BaseOffset
	if err := l.AppendAborted(AbortedTxn{ProducerID: 2, FirstOffset: first, LastOffset: m1, LastStableOffset: m1 + 1}); err != nil {
		t.Fatal(err)
	}
	crashed := fs.Crash()
	l2 := open(t, crashed, Config{}, 0)
	if l2.EndOffset() != m0+1 {
		t.Fatalf("end %d after crash, want %d", l2.EndOffset(), m0+1)
	}
	if got := l2.AbortedTxns(0, 100); !reflect.DeepEqual(got, []AbortedTxn{e0}) {
		t.Fatalf("after crash: %+v", got)
	}
	l2.Close()
	// The cut was written back: a clean reopen sees it too.
	l2, err := Open(Options{FS: crashed, Dir: "p-0", Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := l2.AbortedTxns(0, 100); !reflect.DeepEqual(got, []AbortedTxn{e0}) {
		t.Fatalf("reopened after crash: %+v", got)
	}
	l2.Close()

	// A damaged index is moved aside (the partition rebuilds what it can).
	l.Close()
	name := "p-0/" + segmentName(0, ".txnindex")
	b, err := readAll(fs, name)
	if err != nil {
		t.Fatal(err)
	}
	b[0] = 9
	if err := vfs.WriteFileAtomic(fs, "p-0", name, b); err != nil {
		t.Fatal(err)
	}
	l3, err := Open(Options{FS: fs, Dir: "p-0", Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if got := l3.AbortedTxns(0, 100); len(got) != 0 {
		t.Fatalf("damaged index read: %+v", got)
	}
	if _, err := fs.Stat(name); err == nil {
		t.Fatal("damaged index still in place")
	}
	if got := copyFile(t, fs, name+corruptSuffix); !bytes.Equal(got, b) {
		t.Fatalf("damaged index not moved aside: %x", got)
	}
}

// TestTxnIndexOpenErrorFailsOpen: an error other than "does not exist"
// opening a .txnindex at start (here too many open files) fails the open
// and leaves the file as it was; nothing is dropped.
func TestTxnIndexOpenErrorFailsOpen(t *testing.T) {
	mem := vfs.NewMem()
	l := open(t, mem, Config{}, 0)
	mustAppend(t, l, batch(t, "a", 2, 0))
	m := mustAppend(t, l, marker(t, 1, false)).BaseOffset
	e := AbortedTxn{ProducerID: 1, FirstOffset: 0, LastOffset: m, LastStableOffset: m + 1}
	if err := l.AppendAborted(e); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	name := "p-0/" + segmentName(0, ".txnindex")
	before := copyFile(t, mem, name)
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if op == vfs.OpOpen && path == name {
			return syscall.EMFILE
		}
		return nil
	})
	for _, clean := range []bool{true, false} {
		l2, err := Open(Options{FS: fs, Dir: "p-0", Clean: clean})
		if !errors.Is(err, syscall.EMFILE) {
			if l2 != nil {
				l2.Close()
			}
			t.Fatalf("clean=%v: open with an unreadable txnindex: %v, want EMFILE", clean, err)
		}
		if got := copyFile(t, mem, name); !bytes.Equal(got, before) {
			t.Fatalf("clean=%v: txnindex changed by a failed open: %x, was %x", clean, got, before)
		}
	}
	// Once the file opens again, the entry is there.
	l3, err := Open(Options{FS: mem, Dir: "p-0", Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if got := l3.AbortedTxns(0, 100); !reflect.DeepEqual(got, []AbortedTxn{e}) {
		t.Fatalf("after the fault: %+v", got)
	}
}

// countingFS counts the bytes written and the fsyncs of files whose names
// hold a substring.
type countingFS struct {
	vfs.FS
	match        string
	bytes, syncs atomic.Int64
	dirSyncs     atomic.Int64
}

type countingFile struct {
	vfs.File
	fs *countingFS
}

func (c *countingFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.Contains(f.Name(), c.match) {
		return f, err
	}
	return countingFile{f, c}, nil
}

func (c *countingFS) Create(name string) (vfs.File, error)     { return c.wrap(c.FS.Create(name)) }
func (c *countingFS) OpenAppend(name string) (vfs.File, error) { return c.wrap(c.FS.OpenAppend(name)) }
func (c *countingFS) SyncDir(dir string) error {
	c.dirSyncs.Add(1)
	return c.FS.SyncDir(dir)
}

func (f countingFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.fs.bytes.Add(int64(n))
	return n, err
}

func (f countingFile) Sync() error {
	f.fs.syncs.Add(1)
	return f.File.Sync()
}

// TestTxnIndexAppendOnly: each abort appends one entry to the .txnindex
// and fsyncs it once (Kafka's TransactionIndex.append), instead of
// rewriting the file whole; a torn trailing entry left by a crash is cut
// before the next append.
func TestTxnIndexAppendOnly(t *testing.T) {
	mem := vfs.NewMem()
	fs := &countingFS{FS: mem, match: ".txnindex"}
	l := open(t, fs, Config{}, 0)
	const n = 50
	var entries []AbortedTxn
	for i := 0; i < n; i++ {
		first := mustAppend(t, l, batch(t, "a", 1, 0)).BaseOffset
		m := mustAppend(t, l, marker(t, int64(i), false)).BaseOffset
		e := AbortedTxn{ProducerID: int64(i), FirstOffset: first, LastOffset: m, LastStableOffset: m + 1}
		entries = append(entries, e)
		dirSyncs := fs.dirSyncs.Load()
		if err := l.AppendAborted(e); err != nil {
			t.Fatal(err)
		}
		if d := fs.dirSyncs.Load() - dirSyncs; i > 0 && d != 0 {
			t.Fatalf("abort %d: %d directory fsyncs, want none once the file exists", i, d)
		}
	}
	if got, want := fs.bytes.Load(), int64(n*txnIndexEntryBytes); got != want {
		t.Fatalf("%d aborts wrote %d bytes of txnindex, want %d (one entry each)", n, got, want)
	}
	if got := fs.syncs.Load(); got != n {
		t.Fatalf("%d aborts took %d txnindex fsyncs, want %d", n, got, n)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// A torn append (a crash in the middle of a write): its bytes are
	// ignored at start and cut before the next entry.
	name := "p-0/" + segmentName(0, ".txnindex")
	f, err := mem.OpenAppend(name)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 10))
	f.Sync()
	f.Close()
	crashed := mem.Crash()
	l2 := open(t, crashed, Config{}, 0)
	if got := l2.AbortedTxns(0, l2.EndOffset()); !reflect.DeepEqual(got, entries) {
		t.Fatalf("after a torn append: %d entries, want %d", len(got), len(entries))
	}
	first := mustAppend(t, l2, batch(t, "b", 1, 0)).BaseOffset
	m := mustAppend(t, l2, marker(t, 99, false)).BaseOffset
	e := AbortedTxn{ProducerID: 99, FirstOffset: first, LastOffset: m, LastStableOffset: m + 1}
	if err := l2.AppendAborted(e); err != nil {
		t.Fatal(err)
	}
	entries = append(entries, e)
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := int64(len(copyFile(t, crashed, name))); got != int64(len(entries)*txnIndexEntryBytes) {
		t.Fatalf("txnindex is %d bytes, want %d", got, len(entries)*txnIndexEntryBytes)
	}
	l3, err := Open(Options{FS: crashed.Crash(), Dir: "p-0", Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if got := l3.AbortedTxns(0, l3.EndOffset()); !reflect.DeepEqual(got, entries) {
		t.Fatalf("after appending past a torn entry: %+v", got[len(got)-2:])
	}
	l.Close()
}
