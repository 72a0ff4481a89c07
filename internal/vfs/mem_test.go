package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
)

// readAll returns the content of name on fs, or ok=false when it is missing.
func readAll(t *testing.T, fs FS, name string) (data []byte, ok bool) {
	t.Helper()
	f, err := fs.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	data, err = io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return data, true
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, f File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestMemCrash(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, fs *MemFS) // starts with dir "d" durable
		want map[string]string             // path -> content after the crash; missing paths absent
		gone []string                      // paths that must not exist after the crash
		dirs []string                      // directories that must exist after the crash
	}{
		{
			name: "unsynced append dropped",
			run: func(t *testing.T, fs *MemFS) {
				f, err := fs.Create("d/a")
				must(t, err)
				write(t, f, "synced")
				must(t, f.Sync())
				must(t, fs.SyncDir("d"))
				write(t, f, "+lost")
			},
			want: map[string]string{"d/a": "synced"},
		},
		{
			name: "synced data kept",
			run: func(t *testing.T, fs *MemFS) {
				f, err := fs.OpenAppend("d/a")
				must(t, err)
				must(t, fs.SyncDir("d"))
				write(t, f, "one")
				write(t, f, "two")
				must(t, f.Sync())
				must(t, f.Close())
			},
			want: map[string]string{"d/a": "onetwo"},
		},
		{
			name: "file synced but dir entry not synced is gone",
			run: func(t *testing.T, fs *MemFS) {
				f, err := fs.Create("d/a")
				must(t, err)
				write(t, f, "data")
				must(t, f.Sync())
			},
			gone: []string{"d/a"},
		},
		{
			name: "dir entry synced but content not synced is empty",
			run: func(t *testing.T, fs *MemFS) {
				f, err := fs.Create("d/a")
				must(t, err)
				must(t, fs.SyncDir("d"))
				write(t, f, "data")
			},
			want: map[string]string{"d/a": ""},
		},
		{
			name: "rename without SyncDir undone",
			run: func(t *testing.T, fs *MemFS) {
				f, err := fs.Create("d/a")
				must(t, err)
				write(t, f, "a")
				must(t, f.Sync())
				must(t, fs.SyncDir("d"))
				must(t, fs.Rename("d/a", "d/b"))
			},
			want: map[string]string{"d/a": "a"},
			gone: []string{"d/b"},
		},
		{
			name: "rename with SyncDir kept",
			run: func(t *testing.T, fs *MemFS) {
				f, err := fs.Create("d/a")
				must(t, err)
				write(t, f, "a")
				must(t, f.Sync())
				must(t, fs.Rename("d/a", "d/b"))
				must(t, fs.SyncDir("d"))
			},
			want: map[string]string{"d/b": "a"},
			gone: []string{"d/a"},
		},
		{
			name: "remove without SyncDir undone",
			run: func(t *testing.T, fs *MemFS) {
				f, err := fs.Create("d/a")
				must(t, err)
				write(t, f, "a")
				must(t, f.Sync())
				must(t, fs.SyncDir("d"))
				must(t, fs.Remove("d/a"))
			},
			want: map[string]string{"d/a": "a"},
		},
		{
			name: "removeall with SyncDir kept",
			run: func(t *testing.T, fs *MemFS) {
				must(t, fs.MkdirAll("d/sub"))
				f, err := fs.Create("d/sub/a")
				must(t, err)
				must(t, f.Sync())
				must(t, fs.SyncDir("d/sub"))
				must(t, fs.RemoveAll("d/sub"))
				must(t, fs.SyncDir("d"))
			},
			gone: []string{"d/sub", "d/sub/a"},
		},
		{
			name: "unsynced truncate undone",
			run: func(t *testing.T, fs *MemFS) {
				f, err := fs.Create("d/a")
				must(t, err)
				write(t, f, "abcdef")
				must(t, f.Sync())
				must(t, fs.SyncDir("d"))
				must(t, f.Truncate(2))
				write(t, f, "XYZ") // at offset 6, after a zero gap
			},
			want: map[string]string{"d/a": "abcdef"},
		},
		{
			name: "synced truncate then append kept",
			run: func(t *testing.T, fs *MemFS) {
				f, err := fs.OpenAppend("d/a")
				must(t, err)
				must(t, fs.SyncDir("d"))
				write(t, f, "abcdef")
				must(t, f.Sync())
				must(t, f.Truncate(2))
				write(t, f, "XY")
				must(t, f.Sync())
				write(t, f, "lost")
			},
			want: map[string]string{"d/a": "abXY"},
		},
		{
			name: "recreate over synced file undone",
			run: func(t *testing.T, fs *MemFS) {
				f, err := fs.Create("d/a")
				must(t, err)
				write(t, f, "old")
				must(t, f.Sync())
				must(t, fs.SyncDir("d"))
				g, err := fs.Create("d/a")
				must(t, err)
				write(t, g, "new")
			},
			want: map[string]string{"d/a": "old"},
		},
		{
			name: "mkdirall undone without SyncDir of the parent",
			run: func(t *testing.T, fs *MemFS) {
				must(t, fs.MkdirAll("d/x/y"))
				f, err := fs.Create("d/x/y/a")
				must(t, err)
				must(t, f.Sync())
				must(t, fs.SyncDir("d/x/y"))
			},
			gone: []string{"d/x", "d/x/y/a"},
		},
		{
			name: "mkdirall kept after SyncDir of the parents",
			run: func(t *testing.T, fs *MemFS) {
				must(t, fs.MkdirAll("d/x/y"))
				must(t, fs.SyncDir("d"))
				must(t, fs.SyncDir("d/x"))
			},
			dirs: []string{"d/x", "d/x/y"},
		},
		{
			name: "vfs.MkdirAll durable",
			run: func(t *testing.T, fs *MemFS) {
				must(t, MkdirAll(fs, "d/x/y"))
			},
			dirs: []string{"d/x", "d/x/y"},
		},
		{
			name: "vfs.Create, Rename and Remove durable",
			run: func(t *testing.T, fs *MemFS) {
				f, err := Create(fs, "d/a")
				must(t, err)
				write(t, f, "a")
				must(t, f.Sync())
				g, err := Create(fs, "d/b")
				must(t, err)
				write(t, g, "b")
				must(t, g.Sync())
				must(t, MkdirAll(fs, "d/e"))
				must(t, Rename(fs, "d/a", "d/e/c"))
				must(t, Remove(fs, "d/b"))
			},
			want: map[string]string{"d/e/c": "a"},
			gone: []string{"d/a", "d/b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewMem()
			must(t, MkdirAll(fs, "d"))
			tt.run(t, fs)
			after := fs.Crash()
			for name, want := range tt.want {
				got, ok := readAll(t, after, name)
				if !ok {
					t.Errorf("%s missing after crash, want %q", name, want)
				} else if string(got) != want {
					t.Errorf("%s after crash = %q, want %q", name, got, want)
				}
			}
			for _, name := range tt.gone {
				if _, err := after.Stat(name); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("stat %s after crash: err %v, want ErrNotExist", name, err)
				}
			}
			for _, name := range tt.dirs {
				if fi, err := after.Stat(name); err != nil || !fi.IsDir() {
					t.Errorf("%s after crash: %v, %v", name, fi, err)
				}
			}
		})
	}
}

// TestMemCrashIndependent checks that the crashed copy and the original do
// not share bytes, in either direction.
func TestMemCrashIndependent(t *testing.T) {
	fs := NewMem()
	f, err := fs.Create("a")
	must(t, err)
	write(t, f, "hello")
	must(t, f.Sync())
	must(t, fs.SyncDir("/"))
	after := fs.Crash()

	// Overwrite and append on the original.
	must(t, f.Truncate(1))
	write(t, f, "ZZZZZZ")
	must(t, f.Sync())
	// Overwrite and append on the copy.
	g, err := after.OpenAppend("a")
	must(t, err)
	write(t, g, "!!")
	must(t, g.Truncate(2))
	write(t, g, "??")

	// Create is not append mode: the write lands at the old offset, as on POSIX.
	if got, _ := readAll(t, fs, "a"); string(got) != "h\x00\x00\x00\x00ZZZZZZ" {
		t.Errorf("original = %q, want %q", got, "h\x00\x00\x00\x00ZZZZZZ")
	}
	if got, _ := readAll(t, after, "a"); string(got) != "he??" {
		t.Errorf("crashed copy = %q, want %q", got, "he??")
	}
	if got, _ := readAll(t, after.Crash(), "a"); string(got) != "hello" {
		t.Errorf("crashed copy crashed again = %q, want %q", got, "hello")
	}
}

// TestWriteFileAtomicCrash fails WriteFileAtomic at each of its operations in
// turn, crashes, and checks that the file holds the old or the new content,
// and the new one whenever WriteFileAtomic reported success.
func TestWriteFileAtomicCrash(t *testing.T) {
	const (
		dir  = "/data/meta"
		name = "/data/meta/checkpoint"
		old  = "old content"
		new_ = "new content, longer"
	)
	modes := []struct {
		name string
		// inject returns the injector failing at the k-th op (from 1).
		inject func(k int) (inject func(Op, string) error, fired func() bool)
	}{
		{
			// The k-th op fails and the caller carries on (closes, returns).
			name: "one op fails",
			inject: func(k int) (func(Op, string) error, func() bool) {
				var mu sync.Mutex
				calls := 0
				return func(Op, string) error {
						mu.Lock()
						defer mu.Unlock()
						calls++
						if calls == k {
							return ErrInjected
						}
						return nil
					}, func() bool {
						mu.Lock()
						defer mu.Unlock()
						return calls >= k
					}
			},
		},
		{
			// The process dies at the k-th op: nothing after it reaches disk.
			name: "dead from op",
			inject: func(k int) (func(Op, string) error, func() bool) {
				var mu sync.Mutex
				calls := 0
				return func(Op, string) error {
						mu.Lock()
						defer mu.Unlock()
						calls++
						if calls >= k {
							return ErrInjected
						}
						return nil
					}, func() bool {
						mu.Lock()
						defer mu.Unlock()
						return calls >= k
					}
			},
		},
		{
			// A full disk: the write lands halfway, everything else works.
			name: "short write at op",
			inject: func(k int) (func(Op, string) error, func() bool) {
				var mu sync.Mutex
				calls := 0
				return func(op Op, _ string) error {
						mu.Lock()
						defer mu.Unlock()
						calls++
						if calls == k && op == OpWrite {
							return &ShortWrite{N: 4, Err: syscall.ENOSPC}
						}
						return nil
					}, func() bool {
						mu.Lock()
						defer mu.Unlock()
						return calls >= k
					}
			},
		},
	}
	for _, m := range modes {
		for k := 1; ; k++ {
			mem := NewMem()
			must(t, MkdirAll(mem, dir))
			must(t, WriteFileAtomic(mem, dir, name, []byte(old)))
			inject, fired := m.inject(k)
			err := WriteFileAtomic(NewFault(mem, inject), dir, name, []byte(new_))
			if !fired() {
				if err != nil {
					t.Fatalf("%s: no fault injected, WriteFileAtomic: %v", m.name, err)
				}
				if k < 5 {
					t.Fatalf("%s: only %d ops, want at least 5", m.name, k-1)
				}
				break
			}
			got, ok := readAll(t, mem.Crash(), name)
			switch {
			case !ok:
				t.Errorf("%s at op %d: %s missing after crash", m.name, k, name)
			case err == nil && string(got) != new_:
				t.Errorf("%s at op %d: WriteFileAtomic succeeded, after crash %q, want %q", m.name, k, got, new_)
			case string(got) != old && string(got) != new_:
				t.Errorf("%s at op %d: after crash %q, want %q or %q (err %v)", m.name, k, got, old, new_, err)
			}
		}
	}
}

func TestMemFileSemantics(t *testing.T) {
	fs := NewMem()
	must(t, fs.MkdirAll("/d"))

	f, err := fs.Create("d/a") // relative and absolute name the same file
	must(t, err)
	write(t, f, "abc")
	must(t, f.Close())

	tests := []struct {
		name string
		do   func() error
		want error // errors.Is target; nil means success
	}{
		{"open read-only then write", func() error {
			f, err := fs.Open("/d/a")
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("x"))
			return err
		}, os.ErrPermission},
		{"open read-only then truncate", func() error {
			f, err := fs.Open("/d/./a")
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(0)
		}, os.ErrPermission},
		{"write after close", func() error { _, err := f.Write([]byte("x")); return err }, os.ErrClosed},
		{"read after close", func() error { _, err := f.Read(make([]byte, 1)); return err }, os.ErrClosed},
		{"readat after close", func() error { _, err := f.ReadAt(make([]byte, 1), 0); return err }, os.ErrClosed},
		{"sync after close", f.Sync, os.ErrClosed},
		{"truncate after close", func() error { return f.Truncate(0) }, os.ErrClosed},
		{"size after close", func() error { _, err := f.Size(); return err }, os.ErrClosed},
		{"close after close", f.Close, os.ErrClosed},
		{"stat missing", func() error { _, err := fs.Stat("d/nope"); return err }, os.ErrNotExist},
		{"open missing", func() error { _, err := fs.Open("d/nope"); return err }, os.ErrNotExist},
		{"create in missing dir", func() error { _, err := fs.Create("x/a"); return err }, os.ErrNotExist},
		{"remove missing", func() error { return fs.Remove("d/nope") }, os.ErrNotExist},
		{"rename missing", func() error { return fs.Rename("d/nope", "d/b") }, os.ErrNotExist},
		{"list missing", func() error { _, err := fs.List("nope"); return err }, os.ErrNotExist},
		{"syncdir missing", func() error { return fs.SyncDir("nope") }, os.ErrNotExist},
		{"removeall missing", func() error { return fs.RemoveAll("nope/deeper") }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("remove non-empty dir", func(t *testing.T) {
		if err := fs.Remove("d"); err == nil {
			t.Error("removed a non-empty directory")
		}
	})

	t.Run("append writes at end", func(t *testing.T) {
		g, err := fs.OpenAppend("/d/a")
		must(t, err)
		defer g.Close()
		write(t, g, "de")
		h, err := fs.Create("d/b")
		must(t, err)
		defer h.Close()
		write(t, h, "12345")
		must(t, h.Truncate(2))
		write(t, h, "6") // Create's handle keeps its offset: zero gap
		if got, _ := readAll(t, fs, "d/a"); string(got) != "abcde" {
			t.Errorf("d/a = %q, want %q", got, "abcde")
		}
		if got, _ := readAll(t, fs, "d/b"); string(got) != "12\x00\x00\x006" {
			t.Errorf("d/b = %q", got)
		}
		buf := make([]byte, 4)
		if n, err := g.ReadAt(buf, 3); n != 2 || err != io.EOF || string(buf[:n]) != "de" {
			t.Errorf("ReadAt past end = %d, %v, %q", n, err, buf[:n])
		}
	})

	t.Run("stat and list", func(t *testing.T) {
		must(t, fs.MkdirAll("d/sub"))
		names, err := fs.List("/d")
		must(t, err)
		if want := []string{"a", "b", "sub"}; !slices.Equal(names, want) {
			t.Errorf("List = %v, want %v", names, want)
		}
		fi, err := fs.Stat("d/a")
		must(t, err)
		if fi.Name() != "a" || fi.Size() != 5 || fi.IsDir() {
			t.Errorf("Stat d/a = %s %d %v", fi.Name(), fi.Size(), fi.IsDir())
		}
		di, err := fs.Stat("d/sub/")
		must(t, err)
		if di.Name() != "sub" || !di.IsDir() {
			t.Errorf("Stat d/sub = %s %v", di.Name(), di.IsDir())
		}
		g, err := fs.OpenAppend("d/a")
		must(t, err)
		write(t, g, "f")
		must(t, g.Close())
		fi2, err := fs.Stat("d/a")
		must(t, err)
		if !fi2.ModTime().After(fi.ModTime()) {
			t.Errorf("ModTime did not advance: %v then %v", fi.ModTime(), fi2.ModTime())
		}
	})

	t.Run("rename replaces", func(t *testing.T) {
		must(t, fs.Rename("d/b", "/d/a"))
		if got, _ := readAll(t, fs, "d/a"); string(got) != "12\x00\x00\x006" {
			t.Errorf("d/a = %q", got)
		}
		if _, err := fs.Stat("d/b"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("d/b still there: %v", err)
		}
		if err := fs.Rename("d", "d/sub/d"); err == nil {
			t.Error("moved a directory into itself")
		}
	})
}

// TestMemConcurrentReadAt runs readers against one appender; run it with
// -race. Record i is recordSize bytes of byte(i), so a reader can check any
// prefix it sees.
func TestMemConcurrentReadAt(t *testing.T) {
	const (
		records    = 300
		recordSize = 37
		readers    = 4
	)
	fs := NewMem()
	w, err := fs.OpenAppend("log")
	must(t, err)
	done := make(chan struct{}) // closed once the writer has stopped
	var wg sync.WaitGroup
	errs := make(chan error, readers+1)
	for r := range readers {
		wg.Go(func() {
			f, err := fs.Open("log")
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			for {
				var stopped bool
				select {
				case <-done:
					stopped = true // this pass sees the final file
				default:
				}
				size, err := f.Size()
				if err != nil {
					errs <- err
					return
				}
				if size%recordSize != 0 {
					errs <- fmt.Errorf("reader %d: size %d not a whole number of records", r, size)
					return
				}
				if size > 0 {
					i := (size/recordSize - 1) * int64(r+1) / readers
					buf := make([]byte, recordSize)
					if _, err := f.ReadAt(buf, i*recordSize); err != nil {
						errs <- fmt.Errorf("reader %d: ReadAt record %d: %w", r, i, err)
						return
					}
					if want := bytes.Repeat([]byte{byte(i)}, recordSize); !bytes.Equal(buf, want) {
						errs <- fmt.Errorf("reader %d: record %d = %v", r, i, buf)
						return
					}
				}
				if stopped {
					if size != records*recordSize {
						errs <- fmt.Errorf("reader %d: final size %d, want %d", r, size, records*recordSize)
					}
					return
				}
			}
		})
	}
	for i := range records {
		if _, err := w.Write(bytes.Repeat([]byte{byte(i)}, recordSize)); err != nil {
			errs <- err
			break
		}
		if i%50 == 0 {
			if err := w.Sync(); err != nil {
				errs <- err
				break
			}
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
