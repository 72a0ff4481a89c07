package vfs

import (
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
)

// TestFaultEachOp fails one op at a time and checks that exactly the calls of
// that op fail, with the injected error, and that the inner FS is untouched.
func TestFaultEachOp(t *testing.T) {
	calls := []struct {
		op Op
		do func(fs FS, f File) error
	}{
		{OpCreate, func(fs FS, _ File) error { _, err := fs.Create("d/new"); return err }},
		{OpCreate, func(fs FS, _ File) error { _, err := fs.OpenAppend("d/new"); return err }},
		{OpOpen, func(fs FS, _ File) error { _, err := fs.Open("d/a"); return err }},
		{OpWrite, func(_ FS, f File) error { _, err := f.Write([]byte("x")); return err }},
		{OpSync, func(_ FS, f File) error { return f.Sync() }},
		{OpTruncate, func(_ FS, f File) error { return f.Truncate(1) }},
		{OpRemove, func(fs FS, _ File) error { return fs.Remove("d/b") }},
		{OpRemove, func(fs FS, _ File) error { return fs.RemoveAll("d/b") }},
		{OpRename, func(fs FS, _ File) error { return fs.Rename("d/b", "d/c") }},
		{OpMkdir, func(fs FS, _ File) error { return fs.MkdirAll("d/sub") }},
		{OpList, func(fs FS, _ File) error { _, err := fs.List("d"); return err }},
		{OpStat, func(fs FS, _ File) error { _, err := fs.Stat("d/a"); return err }},
		{OpSyncDir, func(fs FS, _ File) error { return fs.SyncDir("d") }},
		{OpRead, func(_ FS, f File) error { _, err := f.ReadAt(make([]byte, 1), 0); return err }},
		{OpRead, func(_ FS, f File) error { _, err := f.Read(make([]byte, 1)); return err }},
	}
	for _, failing := range []Op{OpCreate, OpOpen, OpWrite, OpSync, OpTruncate, OpRemove,
		OpRename, OpMkdir, OpList, OpStat, OpSyncDir, OpRead} {
		t.Run(failing.String(), func(t *testing.T) {
			mem := NewMem()
			must(t, MkdirAll(mem, "d"))
			for _, name := range []string{"d/a", "d/b"} {
				f, err := mem.Create(name)
				must(t, err)
				write(t, f, "abc")
				must(t, f.Close())
			}
			var seen []string
			fs := NewFault(mem, func(op Op, path string) error {
				if op == failing {
					seen = append(seen, path)
					return ErrInjected
				}
				return nil
			})
			f, err := NewFault(mem, nil).Open("d/a") // wrapped, never fails
			must(t, err)
			rw, err := fs.OpenAppend("d/a")
			if failing == OpCreate {
				rw, err = mem.OpenAppend("d/a")
			}
			must(t, err)
			rw = &faultFile{File: rw, inject: fs.(*faultFS).inject}
			for i, c := range calls {
				file := rw
				if c.op == OpRead {
					file = f
					file = &faultFile{File: f, inject: fs.(*faultFS).inject}
				}
				err := c.do(fs, file)
				if c.op == failing && !errors.Is(err, ErrInjected) {
					t.Errorf("call %d (%v): err %v, want ErrInjected", i, c.op, err)
				}
				if c.op != failing && errors.Is(err, ErrInjected) {
					t.Errorf("call %d (%v): failed with %v", i, c.op, err)
				}
			}
			if len(seen) == 0 {
				t.Errorf("inject never saw %v", failing)
			}
		})
	}
}

func TestFaultShortWrite(t *testing.T) {
	tests := []struct {
		name    string
		inject  error
		buf     string
		wantN   int
		wantErr error
		want    string // file content afterwards
	}{
		{"enospc midway", &ShortWrite{N: 3, Err: syscall.ENOSPC}, "abcdef", 3, syscall.ENOSPC, "abc"},
		{"nil Err is ErrShortWrite", &ShortWrite{N: 2}, "abcdef", 2, io.ErrShortWrite, "ab"},
		{"nothing written", &ShortWrite{N: 0, Err: syscall.ENOSPC}, "abcdef", 0, syscall.ENOSPC, ""},
		{"negative N clamped", &ShortWrite{N: -4, Err: ErrInjected}, "abcdef", 0, ErrInjected, ""},
		{"N past buffer clamped", &ShortWrite{N: 99, Err: ErrInjected}, "abc", 3, ErrInjected, "abc"},
		{"plain ENOSPC writes nothing", syscall.ENOSPC, "abcdef", 0, syscall.ENOSPC, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := NewMem()
			fs := NewFault(mem, func(op Op, _ string) error {
				if op == OpWrite {
					return tt.inject
				}
				return nil
			})
			f, err := fs.Create("f")
			must(t, err)
			n, err := f.Write([]byte(tt.buf))
			if n != tt.wantN || !errors.Is(err, tt.wantErr) {
				t.Errorf("Write = %d, %v; want %d, %v", n, err, tt.wantN, tt.wantErr)
			}
			if got, _ := readAll(t, mem, "f"); string(got) != tt.want {
				t.Errorf("content %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFailAfter(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		err      error
		writes   int
		wantOK   int
		wantErr  error
		wantFile string
	}{
		{"enospc from third write", 3, syscall.ENOSPC, 5, 2, syscall.ENOSPC, "ab"},
		{"first write fails", 1, nil, 3, 0, ErrInjected, ""},
		{"never reached", 10, ErrInjected, 3, 3, nil, "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := NewMem()
			fs := NewFault(mem, FailAfter(OpWrite, tt.n, tt.err))
			f, err := fs.Create("f") // other ops pass
			must(t, err)
			must(t, f.Sync())
			ok := 0
			for i := range tt.writes {
				_, err := f.Write([]byte{"abcdefgh"[i]})
				switch {
				case err == nil:
					if ok != i {
						t.Errorf("write %d succeeded after a failure", i+1)
					}
					ok++
				case !errors.Is(err, tt.wantErr):
					t.Errorf("write %d: err %v, want %v", i+1, err, tt.wantErr)
				}
			}
			if ok != tt.wantOK {
				t.Errorf("%d writes succeeded, want %d", ok, tt.wantOK)
			}
			if got, _ := readAll(t, mem, "f"); string(got) != tt.wantFile {
				t.Errorf("content %q, want %q", got, tt.wantFile)
			}
		})
	}

	t.Run("concurrent calls count exactly", func(t *testing.T) {
		const goroutines, each, n = 8, 50, 100
		inject := FailAfter(OpSync, n, ErrInjected)
		var mu sync.Mutex
		failed := 0
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range each {
					inject(OpWrite, "x") // another op: not counted
					if inject(OpSync, "x") != nil {
						mu.Lock()
						failed++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		if want := goroutines*each - (n - 1); failed != want {
			t.Errorf("%d calls failed, want %d", failed, want)
		}
	})

	t.Run("n below 1 panics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("FailAfter(op, 0, err) did not panic")
			}
		}()
		FailAfter(OpSync, 0, nil)
	})
}
