package vfs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"syscall"
)

// LockName is the lock file LockDir keeps in a directory.
const LockName = ".lock"

// DirLock holds a directory for one owner; Release gives it up.
type DirLock struct{ f File }

// LockDir takes dir for one owner, so that a second process (or a second
// owner in this one) on the same directory fails at open instead of
// writing the same files. It is an exclusive flock(2) on dir/.lock when
// fsys is the operating system's (the kernel releases it if the process
// dies); a filesystem no other process can see (MemFS) takes no lock.
// what names the owner in the error, e.g. "another sluice using this data
// dir".
func LockDir(fsys FS, dir, what string) (*DirLock, error) {
	name := filepath.Join(dir, LockName)
	if _, err := fsys.Stat(name); errors.Is(err, iofs.ErrNotExist) {
		f, err := Create(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("vfs: create lock file: %w", err)
		}
		f.Close()
	}
	f, err := fsys.OpenAppend(name)
	if err != nil {
		return nil, fmt.Errorf("vfs: open lock file: %w", err)
	}
	if osf, ok := OSFile(f); ok {
		if err := syscall.Flock(int(osf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%s is locked (is %s?)", dir, what)
			}
			return nil, fmt.Errorf("vfs: lock %s: %w", name, err)
		}
	}
	return &DirLock{f: f}, nil
}

// Release gives the directory up.
func (l *DirLock) Release() error { return l.f.Close() }
