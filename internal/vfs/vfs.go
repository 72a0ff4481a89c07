// Package vfs is the filesystem seam of Sluice's storage. Every byte the broker
// keeps on disk goes through an FS, so that tests can swap the operating
// system's filesystem for one that loses unsynced data on a simulated crash,
// or that fails writes, fsyncs and renames on demand (the model is pebble's vfs).
//
// The interface is deliberately small: what a log of append-only segments and a
// handful of checkpoint files need, nothing more.
package vfs

import (
	"io"
	"os"
)

// File is an open file. Implementations are safe for concurrent ReadAt calls;
// Write, Truncate and Sync are called by a single owner at a time.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Closer
	// Sync makes everything written so far durable (fsync).
	Sync() error
	// Truncate cuts or extends the file to size bytes.
	Truncate(size int64) error
	// Size is the current length of the file in bytes.
	Size() (int64, error)
	// Name is the path the file was opened with.
	Name() string
}

// FS is a filesystem. Paths are plain OS-style paths (filepath.Join works).
type FS interface {
	// Create creates or truncates name and opens it for reading and writing.
	Create(name string) (File, error)
	// OpenAppend opens name for reading and appending, creating it if missing.
	// The file's write position starts at its end.
	OpenAppend(name string) (File, error)
	// Open opens name read-only.
	Open(name string) (File, error)
	// Remove deletes a file or an empty directory.
	Remove(name string) error
	// RemoveAll deletes a directory tree; a missing path is not an error.
	RemoveAll(name string) error
	// Rename atomically replaces newname with oldname (same directory tree).
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(dir string) error
	// List returns the names (not paths) of the entries of dir, sorted.
	List(dir string) ([]string, error)
	// Stat describes name; a missing file reports an error that satisfies
	// errors.Is(err, os.ErrNotExist).
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the directory's entries (creates, renames, removes) durable.
	SyncDir(dir string) error
}
