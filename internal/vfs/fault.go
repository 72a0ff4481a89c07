package vfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
)

// Op names an operation that a fault-injecting FS lets a test fail.
type Op int

const (
	OpCreate   Op = iota + 1 // FS.Create and FS.OpenAppend (both may create the file)
	OpOpen                   // FS.Open
	OpWrite                  // File.Write
	OpSync                   // File.Sync
	OpTruncate               // File.Truncate
	OpRemove                 // FS.Remove and FS.RemoveAll
	OpRename                 // FS.Rename; the path given to inject is the old name
	OpMkdir                  // FS.MkdirAll
	OpList                   // FS.List
	OpStat                   // FS.Stat
	OpSyncDir                // FS.SyncDir
	OpRead                   // File.Read and File.ReadAt
)

var opNames = [...]string{
	OpCreate:   "create",
	OpOpen:     "open",
	OpWrite:    "write",
	OpSync:     "sync",
	OpTruncate: "truncate",
	OpRemove:   "remove",
	OpRename:   "rename",
	OpMkdir:    "mkdir",
	OpList:     "list",
	OpStat:     "stat",
	OpSyncDir:  "syncdir",
	OpRead:     "read",
}

func (op Op) String() string {
	if op > 0 && int(op) < len(opNames) {
		return opNames[op]
	}
	return fmt.Sprintf("Op(%d)", int(op))
}

// ErrInjected is the error a test hands to NewFault or FailAfter when the kind
// of failure does not matter. To simulate a full disk use syscall.ENOSPC
// instead: it comes back unchanged, so errors.Is(err, syscall.ENOSPC) holds;
// &ShortWrite{N: n, Err: syscall.ENOSPC} models a disk that fills up in the
// middle of a write.
var ErrInjected = errors.New("vfs: injected fault")

// ShortWrite, returned by an inject function for OpWrite, makes the write
// pass only the first N bytes of the buffer to the inner file and return
// (N, Err); a nil Err stands for io.ErrShortWrite. N is clamped to the
// buffer's length. Returned for any other op it is just an error.
type ShortWrite struct {
	N   int
	Err error
}

func (e *ShortWrite) Error() string {
	return fmt.Sprintf("vfs: short write of %d bytes: %v", e.N, e.Unwrap())
}

// Unwrap returns Err, or io.ErrShortWrite when Err is nil.
func (e *ShortWrite) Unwrap() error {
	if e.Err == nil {
		return io.ErrShortWrite
	}
	return e.Err
}

// NewFault wraps inner so that inject is called, with the op and the path,
// before every operation of the FS and of the files it opens (File.Size,
// File.Name and File.Close are not consulted). When inject returns an error
// the operation fails with that error, unchanged, without reaching inner;
// see ShortWrite for partial writes. A nil inject never fails anything.
//
// inject may be called from several goroutines at once and must be safe for
// that. The returned FS is as safe for concurrent use as inner.
func NewFault(inner FS, inject func(op Op, path string) error) FS {
	if inject == nil {
		inject = func(Op, string) error { return nil }
	}
	return &faultFS{inner: inner, inject: inject}
}

// FailAfter returns an inject function for NewFault that fails the n-th call
// of op (counting from 1) and every later one with err, or ErrInjected when
// err is nil; other ops always pass. Its counter is safe for concurrent use.
// n < 1 is a programmer error and panics.
func FailAfter(op Op, n int, err error) func(Op, string) error {
	if n < 1 {
		panic(fmt.Sprintf("BUG: vfs.FailAfter: n is %d, must be at least 1", n))
	}
	if err == nil {
		err = ErrInjected
	}
	var calls atomic.Int64
	return func(o Op, _ string) error {
		if o != op {
			return nil
		}
		if calls.Add(1) >= int64(n) {
			return err
		}
		return nil
	}
}

type faultFS struct {
	inner  FS
	inject func(Op, string) error
}

func (fs *faultFS) Create(name string) (File, error) {
	if err := fs.inject(OpCreate, name); err != nil {
		return nil, err
	}
	return fs.wrap(fs.inner.Create(name))
}

func (fs *faultFS) OpenAppend(name string) (File, error) {
	if err := fs.inject(OpCreate, name); err != nil {
		return nil, err
	}
	return fs.wrap(fs.inner.OpenAppend(name))
}

func (fs *faultFS) Open(name string) (File, error) {
	if err := fs.inject(OpOpen, name); err != nil {
		return nil, err
	}
	return fs.wrap(fs.inner.Open(name))
}

func (fs *faultFS) wrap(f File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, inject: fs.inject}, nil
}

func (fs *faultFS) Remove(name string) error {
	if err := fs.inject(OpRemove, name); err != nil {
		return err
	}
	return fs.inner.Remove(name)
}

func (fs *faultFS) RemoveAll(name string) error {
	if err := fs.inject(OpRemove, name); err != nil {
		return err
	}
	return fs.inner.RemoveAll(name)
}

func (fs *faultFS) Rename(oldname, newname string) error {
	if err := fs.inject(OpRename, oldname); err != nil {
		return err
	}
	return fs.inner.Rename(oldname, newname)
}

func (fs *faultFS) MkdirAll(dir string) error {
	if err := fs.inject(OpMkdir, dir); err != nil {
		return err
	}
	return fs.inner.MkdirAll(dir)
}

func (fs *faultFS) List(dir string) ([]string, error) {
	if err := fs.inject(OpList, dir); err != nil {
		return nil, err
	}
	return fs.inner.List(dir)
}

func (fs *faultFS) Stat(name string) (os.FileInfo, error) {
	if err := fs.inject(OpStat, name); err != nil {
		return nil, err
	}
	return fs.inner.Stat(name)
}

func (fs *faultFS) SyncDir(dir string) error {
	if err := fs.inject(OpSyncDir, dir); err != nil {
		return err
	}
	return fs.inner.SyncDir(dir)
}

// faultFile consults inject before the operations of the embedded File;
// Size, Name and Close go straight through.
type faultFile struct {
	File
	inject func(Op, string) error
}

func (f *faultFile) Read(p []byte) (int, error) {
	if err := f.inject(OpRead, f.Name()); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.inject(OpRead, f.Name()); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *faultFile) Write(p []byte) (int, error) {
	err := f.inject(OpWrite, f.Name())
	if err == nil {
		return f.File.Write(p)
	}
	var sw *ShortWrite
	if !errors.As(err, &sw) {
		return 0, err
	}
	n := min(max(sw.N, 0), len(p))
	if n > 0 {
		if written, werr := f.File.Write(p[:n]); werr != nil {
			return written, werr
		}
	}
	return n, sw.Unwrap()
}

func (f *faultFile) Sync() error {
	if err := f.inject(OpSync, f.Name()); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultFile) Truncate(size int64) error {
	if err := f.inject(OpTruncate, f.Name()); err != nil {
		return err
	}
	return f.File.Truncate(size)
}
