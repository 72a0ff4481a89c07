package log

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sluice-io/sluice/internal/vfs"
)

// diskFull is a filesystem that can run out of space: while full, writes
// land a few bytes and fail with ENOSPC, and creating a file fails too.
func diskFull(inner vfs.FS, full *atomic.Bool) vfs.FS {
	return vfs.NewFault(inner, func(op vfs.Op, _ string) error {
		if !full.Load() {
			return nil
		}
		switch op {
		case vfs.OpWrite:
			return &vfs.ShortWrite{N: 7, Err: syscall.ENOSPC}
		case vfs.OpCreate:
			return syscall.ENOSPC
		}
		return nil
	})
}

// TestNoSpaceThenSpace: appends on a full disk fail with a storage error
// (ENOSPC), also when they need a new segment, and leave nothing behind;
// once space is freed the next append succeeds, without a restart, and
// every acknowledged record is there after a power cut. On main the first
// ENOSPC failed the log until a restart.
func TestNoSpaceThenSpace(t *testing.T) {
	mem := vfs.NewMem()
	var full atomic.Bool
	dir := NewLogDir("p-0", nil)
	l, err := Open(Options{FS: diskFull(mem, &full), Dir: "p-0", Config: Config{SegmentBytes: 250}, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var want []string
	appendOK := func(tag string) {
		t.Helper()
		if _, err := l.Append(batch(t, tag, 1, 0)); err != nil {
			t.Fatalf("append %s: %v", tag, err)
		}
		if err := l.Sync(); err != nil {
			t.Fatalf("sync %s: %v", tag, err)
		}
		want = append(want, tag+"-0")
	}
	appendOK("a")
	full.Store(true)
	for i, tag := range []string{"b", "c", "d", "e"} { // the later ones need a new segment
		if i == 2 {
			full.Store(false)
			appendOK("filler") // the segment is now too full for another batch
			appendOK("filler2")
			full.Store(true)
		}
		_, err := l.Append(batch(t, tag, 1, 0))
		if !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("append %s on a full disk: %v, want a storage error with ENOSPC", tag, err)
		}
		if reason, _ := l.StorageError(); reason != ReasonNoSpace {
			t.Fatalf("after append %s: storage error %q, want %q", tag, reason, ReasonNoSpace)
		}
		if dir.NoSpace() == nil || dir.Offline() != nil {
			t.Fatalf("after append %s: log dir full %v, offline %v", tag, dir.NoSpace(), dir.Offline())
		}
	}
	if n := l.Segments(); n != 1 {
		t.Fatalf("%d segments before space is back, want 1 (the rolls failed)", n)
	}
	full.Store(false)
	appendOK("f")
	if n := l.Segments(); n != 2 {
		t.Fatalf("%d segments, want 2 (f needed a new one)", n)
	}
	if reason, err := l.StorageError(); reason != "" || err != nil || dir.NoSpace() != nil {
		t.Fatalf("space is back: storage error %q %v, log dir full %v", reason, err, dir.NoSpace())
	}
	appendOK("g")
	if got := values(t, l); !slices.Equal(got, want) {
		t.Fatalf("log holds %v, want %v", got, want)
	}
	after, err := Open(Options{FS: mem.Crash(), Dir: "p-0"})
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if got := values(t, after); !slices.Equal(got, want) {
		t.Fatalf("after a power cut the log holds %v, want %v", got, want)
	}
}

// TestNoSpaceForIndexes: a sync that cannot write a rolled segment's
// index files for lack of space fails, and the next one, with space,
// does it: the log never stops taking writes.
func TestNoSpaceForIndexes(t *testing.T) {
	mem := vfs.NewMem()
	var full atomic.Bool
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if full.Load() && op == vfs.OpCreate && strings.HasSuffix(path, ".index.tmp") {
			return syscall.ENOSPC
		}
		return nil
	})
	l, err := Open(Options{FS: fs, Dir: "p-0", Config: Config{SegmentBytes: 100}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	full.Store(true)
	for _, tag := range []string{"a", "b"} { // b rolls
		if _, err := l.Append(batch(t, tag, 1, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("sync without space for the index: %v", err)
	}
	if reason, _ := l.StorageError(); reason != ReasonNoSpace {
		t.Fatalf("storage error %q, want %q", reason, ReasonNoSpace)
	}
	full.Store(false)
	if err := l.Sync(); err != nil {
		t.Fatalf("sync with space again: %v", err)
	}
	if _, err := l.Append(batch(t, "c", 1, 0)); err != nil {
		t.Fatal(err)
	}
	if got := values(t, l); !slices.Equal(got, []string{"a-0", "b-0", "c-0"}) {
		t.Fatalf("log holds %v", got)
	}
}

// TestIOErrorTakesLogDirOffline: a write failing with EIO fails its log
// for good and takes its directory offline: the other logs of the
// directory refuse appends and syncs too (Kafka's LogDirFailureChannel),
// while what they hold stays readable; a close says so without flushing.
func TestIOErrorTakesLogDirOffline(t *testing.T) {
	mem := vfs.NewMem()
	var eio atomic.Bool
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if eio.Load() && op == vfs.OpWrite && strings.HasPrefix(path, "p-0/") {
			return syscall.EIO
		}
		return nil
	})
	dir := NewLogDir(".", nil)
	open := func(name string) *Log {
		l, err := Open(Options{FS: fs, Dir: name, LogDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(batch(t, name, 1, 0)); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		return l
	}
	p0, p1 := open("p-0"), open("p-1")
	eio.Store(true)
	if _, err := p0.Append(batch(t, "x", 1, 0)); !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with EIO: %v", err)
	}
	eio.Store(false)
	if _, err := p0.Append(batch(t, "y", 1, 0)); !errors.Is(err, ErrStorage) {
		t.Fatalf("append after EIO, the fault gone: %v, want it still refused", err)
	}
	if reason, err := p0.StorageError(); reason != ReasonIOError || !errors.Is(err, syscall.EIO) {
		t.Fatalf("p-0 storage error %q %v", reason, err)
	}
	if off := dir.Offline(); off == nil || off.Log != "p-0" || !errors.Is(off.Err, syscall.EIO) {
		t.Fatalf("log dir offline: %+v", off)
	}
	if _, err := p1.Append(batch(t, "z", 1, 0)); !errors.Is(err, ErrStorage) {
		t.Fatalf("append to another log of the offline dir: %v", err)
	}
	if reason, _ := p1.StorageError(); reason != ReasonLogDirOffline {
		t.Fatalf("p-1 storage error %q, want %q", reason, ReasonLogDirOffline)
	}
	if got := values(t, p1); !slices.Equal(got, []string{"p-1-0"}) {
		t.Fatalf("p-1 reads %v", got)
	}
	for _, l := range []*Log{p0, p1} {
		if err := l.Close(); !errors.Is(err, ErrStorage) {
			t.Errorf("close of %s: %v, want a storage error", l.dir, err)
		}
	}
}

// TestProbeSpace: the full state of a directory clears by a probe once
// space is freed, when no append comes to clear it.
func TestProbeSpace(t *testing.T) {
	mem := vfs.NewMem()
	var full atomic.Bool
	fs := diskFull(mem, &full)
	dir := NewLogDir("p-0", nil)
	l, err := Open(Options{FS: fs, Dir: "p-0", LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	full.Store(true)
	if _, err := l.Append(batch(t, "a", 1, 0)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if err := dir.ProbeSpace(fs); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("probe on a full disk: %v", err)
	}
	if dir.NoSpace() == nil {
		t.Fatal("a failed probe cleared the full state")
	}
	full.Store(false)
	if err := dir.ProbeSpace(fs); err != nil {
		t.Fatalf("probe with space: %v", err)
	}
	if reason, err := l.StorageError(); reason != "" || err != nil || dir.NoSpace() != nil {
		t.Fatalf("after the probe: %q %v, dir full %v", reason, err, dir.NoSpace())
	}
	if names, _ := mem.List("p-0"); slices.Contains(names, spaceProbeFile) {
		t.Fatalf("probe file left: %v", names)
	}
}
