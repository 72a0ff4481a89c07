package vfs

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

var (
	errIsDir    = errors.New("vfs: is a directory")
	errNotDir   = errors.New("vfs: not a directory")
	errNotEmpty = errors.New("vfs: directory not empty")
	errReadOnly = fmt.Errorf("vfs: file opened read-only: %w", os.ErrPermission)
)

// MemFS is an in-memory FS that simulates what a machine crash keeps, after
// pebble's strict MemFS. Use it in storage tests: write through it, call
// Crash, reopen the store on the FS that Crash returns.
//
// Durability model:
//   - a file has its current bytes and its durable bytes, the content at its
//     last File.Sync; a crash keeps only the durable bytes (unsynced appends,
//     overwrites and truncations are undone);
//   - a directory entry (Create, OpenAppend creating a file, Rename, Remove,
//     RemoveAll) is durable only once SyncDir of its parent directory has run;
//     a crash restores the directory as it was at its last SyncDir. A file
//     created and synced but whose parent was never synced is gone after a
//     crash, and a rename not followed by SyncDir is undone;
//   - MkdirAll is no exception: a directory it creates is durable only once
//     its parent has been synced (vfs.MkdirAll does that).
//
// There is no working directory: a path is cleaned with filepath.Clean and a
// relative path is taken from the root, so "a/b" and "/a/b" name the same
// file.
//
// A MemFS and the files opened on it are safe for concurrent use: a single
// RWMutex guards the whole tree, so ReadAt, Size and Stat run concurrently
// while one writer appends. Errors are *os.PathError; a missing path
// satisfies errors.Is(err, os.ErrNotExist), any use of a closed file
// errors.Is(err, os.ErrClosed), a Write or Truncate on a file opened with
// Open errors.Is(err, os.ErrPermission).
type MemFS struct {
	mu      sync.RWMutex // guards everything below and every memNode and memFile
	root    *memNode
	lastMod time.Time // the last ModTime handed out; ModTimes strictly increase
}

var _ FS = (*MemFS)(nil)

// memNode is a file or a directory, the equivalent of an inode. Guarded by
// MemFS.mu.
type memNode struct {
	isDir   bool
	modTime time.Time

	// File: data is the current content, synced the content at the last
	// Sync. synced always has cap == len and is never written through; when
	// shared is set, data's backing array may also hold synced (or another
	// MemFS's copy of it), so bytes below len(data) are copied before being
	// overwritten. Appends past len(data) never touch a shared byte: every
	// slice that shares the array is capped at its length, and a shrinking
	// Truncate caps data, so growing after it reallocates.
	data   []byte
	synced []byte
	shared bool

	// Directory: children is the live view, syncedChildren the entries as of
	// the last SyncDir (what a crash keeps).
	children       map[string]*memNode
	syncedChildren map[string]*memNode
}

// NewMem returns an empty in-memory filesystem holding only its root
// directory.
func NewMem() *MemFS {
	fs := &MemFS{}
	fs.root = fs.newDir()
	return fs
}

// Crash returns a new MemFS holding what a machine crash at this instant would
// have left on disk: the directory entries as of each directory's last
// SyncDir, each file with its content as of its last Sync. The receiver and
// the files opened on it stay usable and are independent of the returned
// MemFS (think of them as the dead process, whose writes no longer reach the
// disk); tests normally drop them.
//
// A file that an unsynced cross-directory rename left durable in two
// directories comes back as two independent copies; a directory cycle such
// unsynced renames can create is cut.
func (fs *MemFS) Crash() *MemFS {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	return &MemFS{
		root:    crashCopy(fs.root, map[*memNode]bool{}),
		lastMod: fs.lastMod,
	}
}

// crashCopy copies the durable part of n; onPath holds the directories being
// copied above n, to cut cycles.
func crashCopy(n *memNode, onPath map[*memNode]bool) *memNode {
	if !n.isDir {
		return &memNode{modTime: n.modTime, data: n.synced, synced: n.synced, shared: true}
	}
	onPath[n] = true
	defer delete(onPath, n)
	c := &memNode{
		isDir:          true,
		modTime:        n.modTime,
		children:       make(map[string]*memNode, len(n.syncedChildren)),
		syncedChildren: make(map[string]*memNode, len(n.syncedChildren)),
	}
	for name, child := range n.syncedChildren {
		if onPath[child] {
			continue
		}
		cc := crashCopy(child, onPath)
		c.children[name] = cc
		c.syncedChildren[name] = cc
	}
	return c
}

// now returns a ModTime later than any handed out before. Caller holds mu.
func (fs *MemFS) now() time.Time {
	t := time.Now()
	if !t.After(fs.lastMod) {
		t = fs.lastMod.Add(time.Nanosecond)
	}
	fs.lastMod = t
	return t
}

func (fs *MemFS) newDir() *memNode {
	return &memNode{
		isDir:          true,
		modTime:        fs.now(),
		children:       map[string]*memNode{},
		syncedChildren: map[string]*memNode{},
	}
}

// splitPath cleans name and splits it into its components; the root is nil.
func splitPath(name string) []string {
	sep := string(filepath.Separator)
	p := strings.TrimPrefix(filepath.Clean(sep+name), sep)
	if p == "" {
		return nil
	}
	return strings.Split(p, sep)
}

// walk returns the node at parts. Caller holds mu.
func (fs *MemFS) walk(parts []string) (*memNode, error) {
	n := fs.root
	for _, p := range parts {
		if !n.isDir {
			return nil, errNotDir
		}
		child, ok := n.children[p]
		if !ok {
			return nil, os.ErrNotExist
		}
		n = child
	}
	return n, nil
}

// parent returns the directory holding name and name's last component.
// Caller holds mu.
func (fs *MemFS) parent(name string) (*memNode, string, error) {
	parts := splitPath(name)
	if len(parts) == 0 {
		return nil, "", os.ErrInvalid // the root has no parent
	}
	dir, err := fs.walk(parts[:len(parts)-1])
	if err != nil {
		return nil, "", err
	}
	if !dir.isDir {
		return nil, "", errNotDir
	}
	return dir, parts[len(parts)-1], nil
}

// Create creates or truncates name and opens it for reading and writing. The
// new directory entry is durable at SyncDir of the parent; truncating an
// existing file is durable at the file's next Sync.
func (fs *MemFS) Create(name string) (File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, err := fs.createLocked(name)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: name, Err: err}
	}
	n.data = nil
	n.modTime = fs.now()
	return &memFile{fs: fs, node: n, name: name}, nil
}

// OpenAppend opens name for reading and appending, creating it if missing.
func (fs *MemFS) OpenAppend(name string) (File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, err := fs.createLocked(name)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return &memFile{fs: fs, node: n, name: name, appendOnly: true}, nil
}

// createLocked returns the file at name, creating it if missing. Caller holds
// mu for writing.
func (fs *MemFS) createLocked(name string) (*memNode, error) {
	dir, base, err := fs.parent(name)
	if err != nil {
		return nil, err
	}
	if n, ok := dir.children[base]; ok {
		if n.isDir {
			return nil, errIsDir
		}
		return n, nil
	}
	n := &memNode{modTime: fs.now()}
	dir.children[base] = n
	dir.modTime = n.modTime
	return n, nil
}

// Open opens name read-only; Write and Truncate on the file fail.
func (fs *MemFS) Open(name string) (File, error) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	n, err := fs.walk(splitPath(name))
	if err == nil && n.isDir {
		err = errIsDir
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return &memFile{fs: fs, node: n, name: name, readOnly: true}, nil
}

// Remove deletes a file or an empty directory; durable at SyncDir of the
// parent. Files still open keep working.
func (fs *MemFS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir, base, err := fs.parent(name)
	if err == nil {
		n, ok := dir.children[base]
		switch {
		case !ok:
			err = os.ErrNotExist
		case n.isDir && len(n.children) > 0:
			err = errNotEmpty
		default:
			delete(dir.children, base)
			dir.modTime = fs.now()
		}
	}
	if err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	return nil
}

// RemoveAll deletes name and, for a directory, everything under it; durable
// at SyncDir of the parent. A missing path is not an error.
func (fs *MemFS) RemoveAll(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir, base, err := fs.parent(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "removeall", Path: name, Err: err}
	}
	if _, ok := dir.children[base]; ok {
		delete(dir.children, base)
		dir.modTime = fs.now()
	}
	return nil
}

// Rename atomically replaces newname with oldname; durable at SyncDir of
// both parents. Renaming a directory over an empty directory is allowed, as
// in POSIX.
func (fs *MemFS) Rename(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err := fs.renameLocked(oldname, newname); err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return nil
}

func (fs *MemFS) renameLocked(oldname, newname string) error {
	oldDir, oldBase, err := fs.parent(oldname)
	if err != nil {
		return err
	}
	newDir, newBase, err := fs.parent(newname)
	if err != nil {
		return err
	}
	src, ok := oldDir.children[oldBase]
	if !ok {
		return os.ErrNotExist
	}
	oldParts, newParts := splitPath(oldname), splitPath(newname)
	if slices.Equal(oldParts, newParts) {
		return nil
	}
	if src.isDir && len(newParts) > len(oldParts) && slices.Equal(newParts[:len(oldParts)], oldParts) {
		return os.ErrInvalid // a directory cannot move into itself
	}
	if dst, ok := newDir.children[newBase]; ok {
		switch {
		case dst.isDir && !src.isDir:
			return errIsDir
		case !dst.isDir && src.isDir:
			return errNotDir
		case dst.isDir && len(dst.children) > 0:
			return errNotEmpty
		}
	}
	delete(oldDir.children, oldBase)
	newDir.children[newBase] = src
	oldDir.modTime = fs.now()
	newDir.modTime = oldDir.modTime
	return nil
}

// MkdirAll creates a directory and its parents. Like the other directory
// changes, each new entry is durable at SyncDir of its parent.
func (fs *MemFS) MkdirAll(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.root
	for _, p := range splitPath(dir) {
		child, ok := n.children[p]
		if !ok {
			child = fs.newDir()
			n.children[p] = child
			n.modTime = child.modTime
		} else if !child.isDir {
			return &os.PathError{Op: "mkdir", Path: dir, Err: errNotDir}
		}
		n = child
	}
	return nil
}

// List returns the names of the entries of dir, sorted.
func (fs *MemFS) List(dir string) ([]string, error) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	n, err := fs.walk(splitPath(dir))
	if err == nil && !n.isDir {
		err = errNotDir
	}
	if err != nil {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: err}
	}
	return slices.Sorted(maps.Keys(n.children)), nil
}

// Stat describes name.
func (fs *MemFS) Stat(name string) (os.FileInfo, error) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	n, err := fs.walk(splitPath(name))
	if err != nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	return n.info(filepath.Base(filepath.Clean(name))), nil
}

// SyncDir makes the entries of dir durable: a later Crash keeps dir as it is
// now.
func (fs *MemFS) SyncDir(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, err := fs.walk(splitPath(dir))
	if err == nil && !n.isDir {
		err = errNotDir
	}
	if err != nil {
		return &os.PathError{Op: "syncdir", Path: dir, Err: err}
	}
	n.syncedChildren = maps.Clone(n.children)
	return nil
}

// info describes n. Caller holds mu.
func (n *memNode) info(name string) os.FileInfo {
	fi := memFileInfo{name: name, size: int64(len(n.data)), mode: 0o644, modTime: n.modTime}
	if n.isDir {
		fi.size = 0
		fi.mode = os.ModeDir | 0o755
	}
	return fi
}

// writeAt writes p at off, zero-filling any gap. Caller holds mu for writing.
func (n *memNode) writeAt(p []byte, off int64) {
	if off < int64(len(n.data)) && n.shared {
		n.data = slices.Clone(n.data)
		n.shared = false
	}
	if gap := off - int64(len(n.data)); gap > 0 {
		n.data = append(n.data, make([]byte, gap)...)
	}
	k := copy(n.data[off:], p)
	n.data = append(n.data, p[k:]...)
}

// truncate cuts or zero-extends the data to size. Caller holds mu for
// writing.
func (n *memNode) truncate(size int64) {
	if size <= int64(len(n.data)) {
		n.data = n.data[:size:size] // growing again must reallocate, see memNode
		return
	}
	n.data = append(n.data, make([]byte, size-int64(len(n.data)))...)
}

// memFile is a file opened on a MemFS. Its fields are guarded by fs.mu.
type memFile struct {
	fs         *MemFS
	node       *memNode
	name       string
	pos        int64 // offset of the next Read, and of the next Write unless appendOnly
	readOnly   bool
	appendOnly bool
	closed     bool
}

// check returns the error for op on f, if any. Caller holds fs.mu.
func (f *memFile) check(op string, write bool) error {
	if f.closed {
		return &os.PathError{Op: op, Path: f.name, Err: os.ErrClosed}
	}
	if write && f.readOnly {
		return &os.PathError{Op: op, Path: f.name, Err: errReadOnly}
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.pos >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[f.pos:])
	f.pos += int64(n)
	return n, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &os.PathError{Op: "readat", Path: f.name, Err: os.ErrInvalid}
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	off := f.pos
	if f.appendOnly {
		off = int64(len(f.node.data))
	}
	f.node.writeAt(p, off)
	f.pos = off + int64(len(p))
	f.node.modTime = f.fs.now()
	return len(p), nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("truncate", true); err != nil {
		return err
	}
	if size < 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: os.ErrInvalid}
	}
	f.node.truncate(size)
	f.node.modTime = f.fs.now()
	return nil
}

// Sync makes the current content durable: a later Crash keeps it.
func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("sync", false); err != nil {
		return err
	}
	n := f.node
	n.synced = n.data[:len(n.data):len(n.data)]
	n.shared = true
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	if err := f.check("stat", false); err != nil {
		return 0, err
	}
	return int64(len(f.node.data)), nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("close", false); err != nil {
		return err
	}
	f.closed = true
	return nil
}

func (f *memFile) Name() string { return f.name }

// memFileInfo is the os.FileInfo of a MemFS path, a snapshot taken by Stat.
type memFileInfo struct {
	name    string
	size    int64
	mode    os.FileMode
	modTime time.Time
}

func (fi memFileInfo) Name() string       { return fi.name }
func (fi memFileInfo) Size() int64        { return fi.size }
func (fi memFileInfo) Mode() os.FileMode  { return fi.mode }
func (fi memFileInfo) ModTime() time.Time { return fi.modTime }
func (fi memFileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi memFileInfo) Sys() any           { return nil }
