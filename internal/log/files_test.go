package log

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sluice-io/sluice/internal/vfs"
)

// openFilesFS counts the files open through it, and the most ever open at
// once, as a process's descriptor table would.
type openFilesFS struct {
	vfs.FS
	mu      sync.Mutex
	open    int
	maxOpen int
}

type openFile struct {
	vfs.File
	fs     *openFilesFS
	closed bool
}

func (c *openFilesFS) opened(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open++
	c.maxOpen = max(c.maxOpen, c.open)
	return &openFile{File: f, fs: c}, nil
}

func (c *openFilesFS) Create(name string) (vfs.File, error) { return c.opened(c.FS.Create(name)) }
func (c *openFilesFS) OpenAppend(name string) (vfs.File, error) {
	return c.opened(c.FS.OpenAppend(name))
}
func (c *openFilesFS) Open(name string) (vfs.File, error) { return c.opened(c.FS.Open(name)) }

func (f *openFile) Close() error {
	f.fs.mu.Lock()
	if !f.closed {
		f.closed = true
		f.fs.open--
	}
	f.fs.mu.Unlock()
	return f.File.Close()
}

func (c *openFilesFS) counts() (open, maxOpen int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open, c.maxOpen
}

// emfileAbove fails opens with EMFILE while n files are open through c,
// as a process at its RLIMIT_NOFILE.
func emfileAbove(c *openFilesFS, n int) vfs.FS {
	return vfs.NewFault(c, func(op vfs.Op, _ string) error {
		if op == vfs.OpOpen || op == vfs.OpCreate {
			if open, _ := c.counts(); open >= n {
				return syscall.EMFILE
			}
		}
		return nil
	})
}

// TestManyLogsFewFiles: 200 logs of several segments each share a cache
// of 16 files; every log is written, read (offsets and times, so closed
// segments' index files are opened too), closed and reopened, and never
// are more than the cache's files open, plus the few that syncs after
// rolls, in the background, hold for a moment (an index being written).
// The process fails opens with EMFILE above 22 open files. On main every
// log kept each segment's .log open, and each closed segment's indexes
// once read: log 20 failed to open (without the EMFILE, 1401 files were
// open at once).
func TestManyLogsFewFiles(t *testing.T) {
	const (
		logs  = 200
		limit = 16
	)
	counting := &openFilesFS{FS: vfs.NewMem()}
	fs := emfileAbove(counting, limit+6)
	files := NewFileCache(limit)
	cfg := Config{SegmentBytes: 400, IndexIntervalBytes: 64}
	openAll := func() []*Log {
		ls := make([]*Log, logs)
		for i := range ls {
			l, err := Open(Options{FS: fs, Dir: fmt.Sprintf("p-%d", i), Config: cfg, Files: files, Clean: true})
			if err != nil {
				t.Fatalf("open log %d: %v", i, err)
			}
			ls[i] = l
		}
		return ls
	}
	ls := openAll()
	want := map[int][]string{}
	for round := range 8 {
		for i, l := range ls {
			tag := fmt.Sprintf("l%d-r%d", i, round)
			if _, err := l.Append(batch(t, tag, 3, int64(1000*round))); err != nil {
				t.Fatalf("append to log %d: %v", i, err)
			}
			if err := l.Sync(); err != nil { // as acks=all
				t.Fatalf("sync log %d: %v", i, err)
			}
			want[i] = append(want[i], tag+"-0", tag+"-1", tag+"-2")
		}
	}
	check := func(when string) {
		t.Helper()
		for i, l := range ls {
			if err := l.Sync(); err != nil {
				t.Fatalf("%s: sync log %d: %v", when, i, err)
			}
			if l.Segments() < 3 {
				t.Fatalf("%s: log %d has %d segments, want several", when, i, l.Segments())
			}
			if got := values(t, l); !slices.Equal(got, want[i]) {
				t.Fatalf("%s: log %d holds %v, want %v", when, i, got, want[i])
			}
			if off, _, ok := firstAtOrAfter(t, l, 3000); !ok || off != 9 {
				t.Fatalf("%s: log %d: first offset at time 3000 is %d (%v), want 9", when, i, off, ok)
			}
		}
	}
	check("written")
	for _, l := range ls {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ls = openAll()
	check("reopened")
	for _, l := range ls {
		l.Close()
	}
	open, maxOpen := counting.counts()
	st := files.Stats()
	t.Logf("%d logs: at most %d files open at once (cache limit %d), %d opens, %d evictions, %d over the limit",
		logs, maxOpen, limit, st.Opens, st.Evictions, st.OverLimit)
	if maxOpen > limit+3 {
		t.Errorf("%d files open at once, want at most %d", maxOpen, limit+3)
	}
	if open != 0 || st.Open != 0 {
		t.Errorf("%d files (cache: %d) still open after every log closed", open, st.Open)
	}
}

// TestReadLeaseAndUnsyncedFiles: a file handed to a reader stays open
// until Release even when the cache needs room; one with writes not yet
// fsynced is fsynced before it is closed.
func TestReadLeaseAndUnsyncedFiles(t *testing.T) {
	mem := vfs.NewMem()
	counting := &openFilesFS{FS: mem}
	files := NewFileCache(1)
	open := func(dir string) *Log {
		l, err := Open(Options{FS: counting, Dir: dir, Files: files})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(batch(t, dir, 1, 0)); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b := open("a"), open("b")
	defer a.Close()
	defer b.Close()
	r, err := a.Read(0, 1<<20, 1, false)
	if err != nil || r.Size == 0 {
		t.Fatalf("read: %v, %d bytes", err, r.Size)
	}
	if got := values(t, b); len(got) != 1 { // needs b's file: a's is leased
		t.Fatalf("b holds %v", got)
	}
	buf := make([]byte, r.Size)
	if _, err := r.File.ReadAt(buf, r.Position); err != nil {
		t.Fatalf("the leased file was closed under its reader: %v", err)
	}
	// b's file was opened beyond the limit, and closed when done with.
	if st := files.Stats(); st.Open != 1 || st.OverLimit != 1 {
		t.Fatalf("with a lease: %+v, want 1 open (a's), 1 over the limit", st)
	}
	r.Release()
	values(t, b) // a's file is free to go now
	if st := files.Stats(); st.Open != 1 || st.OverLimit != 1 {
		t.Fatalf("after the release: %+v, want 1 open, no more over the limit", st)
	}

	// An append not yet fsynced is fsynced before its file closes.
	if _, err := a.Append(batch(t, "a2", 1, 0)); err != nil {
		t.Fatal(err)
	}
	values(t, b)
	if st := files.Stats(); st.Open != 1 {
		t.Fatalf("with unsynced data: %+v, want 1 open", st)
	}
	after, err := Open(Options{FS: mem.Crash(), Dir: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if got := values(t, after); !slices.Equal(got, []string{"a-0", "a2-0"}) {
		t.Fatalf("after a crash, a holds %v: its file was closed before an fsync", got)
	}
}

// TestAppendWithoutDescriptors: an append whose segment file cannot be
// reopened (EMFILE: every descriptor is taken) fails with a storage error
// but leaves the log writable: the next append, once a descriptor is
// free, succeeds.
func TestAppendWithoutDescriptors(t *testing.T) {
	counting := &openFilesFS{FS: vfs.NewMem()}
	files := NewFileCache(1)
	var rlimit atomic.Int64 // 0: none
	fs := vfs.NewFault(counting, func(op vfs.Op, _ string) error {
		open, _ := counting.counts()
		if n := rlimit.Load(); n > 0 && int64(open) >= n && (op == vfs.OpOpen || op == vfs.OpCreate) {
			return syscall.EMFILE
		}
		return nil
	})
	a, err := Open(Options{FS: fs, Dir: "a", Files: files})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(Options{FS: fs, Dir: "b", Files: files})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Append(batch(t, "b", 1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	r, err := b.Read(0, 1<<20, 1, false) // b's file is held by a reader
	if err != nil || r.Size == 0 {
		t.Fatalf("read: %v, %d bytes", err, r.Size)
	}
	rlimit.Store(1) // the process has one descriptor, b's
	if _, err := a.Append(batch(t, "a", 1, 0)); !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("append without a descriptor: %v, want a storage error with EMFILE", err)
	}
	r.Release()
	if _, err := a.Append(batch(t, "a", 1, 0)); err != nil {
		t.Fatalf("append once b's file could close: %v", err)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := values(t, a); !slices.Equal(got, []string{"a-0"}) {
		t.Fatalf("a holds %v", got)
	}
}

// TestEvictionFsyncFailureFailsTheLog: when the fsync made to close a file
// with unsynced writes fails, the file stays open and the log's next sync
// fails for good: Linux reports a writeback error to one fsync only, and
// the writes it lost must never count as durable.
func TestEvictionFsyncFailureFailsTheLog(t *testing.T) {
	mem := vfs.NewMem()
	var fail atomic.Bool
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if op == vfs.OpSync && strings.HasPrefix(path, "a/") && fail.CompareAndSwap(true, false) {
			return syscall.EIO // once: a second fsync would succeed
		}
		return nil
	})
	files := NewFileCache(1)
	a, err := Open(Options{FS: fs, Dir: "a", Files: files})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Append(batch(t, "a", 1, 0)); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	b, err := Open(Options{FS: fs, Dir: "b", Files: files}) // makes room: fsyncs a's file, which fails
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if fail.Load() {
		t.Fatal("a's file was not fsynced to make room")
	}
	if err := a.Sync(); !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync after the failed eviction fsync: %v, want a storage error with EIO", err)
	}
	if a.DurableOffset() != 0 {
		t.Fatalf("durable offset %d after a lost write, want 0", a.DurableOffset())
	}
	if reason, _ := a.StorageError(); reason != ReasonIOError {
		t.Fatalf("storage error %q, want %q", reason, ReasonIOError)
	}
}

// TestLeasesHeldUntilReleased: files handed to readers (a fetch's sendfile
// regions) stay open, over the cache's limit if need be, until released;
// then they are closed to make room again. A fetch across more partitions
// than the limit must not find its files closed before its response is
// written.
func TestLeasesHeldUntilReleased(t *testing.T) {
	counting := &openFilesFS{FS: vfs.NewMem()}
	files := NewFileCache(8)
	var ls []*Log
	for i := range 40 {
		l, err := Open(Options{FS: counting, Dir: fmt.Sprintf("p-%d", i), Files: files})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := l.Append(batch(t, "v", 1, 0)); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	var held []ReadResult
	for _, l := range ls {
		r, err := l.Read(0, 1<<20, 1, false)
		if err != nil || r.Size == 0 {
			t.Fatalf("read: %v", err)
		}
		held = append(held, r)
	}
	for i := range held {
		b := make([]byte, held[i].Size)
		if _, err := held[i].File.ReadAt(b, held[i].Position); err != nil {
			t.Fatalf("read %d from a held file: %v", i, err)
		}
	}
	if st := files.Stats(); st.Open < len(ls) || st.OverLimit == 0 {
		t.Fatalf("with %d leases held: %+v; want every leased file open, over the limit", len(ls), st)
	}
	for i := range held {
		held[i].Release()
	}
	// Opens after the release make room by closing the released files.
	for _, l := range ls[:8] {
		if _, err := l.Append(batch(t, "w", 1, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if open, _ := counting.counts(); open > files.Stats().Limit+1 {
		t.Fatalf("%d files open after the leases were released, limit %d", open, files.Stats().Limit)
	}
}
