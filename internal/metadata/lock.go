package metadata

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"syscall"

	"github.com/sluice-io/sluice/internal/vfs"
)

// lockName is the lock file in the meta directory.
const lockName = ".lock"

// dirLock holds a directory for one Store, so that a second process (or a
// second Store in this one) on the same data dir fails at Open instead of
// writing the same raft files. It is an exclusive flock(2) on <dir>/.lock
// when the FS is the operating system's (released by the kernel if the
// process dies); a filesystem that no other process can see (MemFS in
// tests) takes no lock.
type dirLock struct{ f vfs.File }

func lockDir(fsys vfs.FS, dir string) (*dirLock, error) {
	name := filepath.Join(dir, lockName)
	if _, err := fsys.Stat(name); errors.Is(err, iofs.ErrNotExist) {
		f, err := vfs.Create(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("metadata: create lock file: %w", err)
		}
		f.Close()
	}
	f, err := fsys.OpenAppend(name)
	if err != nil {
		return nil, fmt.Errorf("metadata: open lock file: %w", err)
	}
	if osf, ok := vfs.OSFile(f); ok {
		if err := syscall.Flock(int(osf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("metadata: %s is locked (is another sluice using this data dir?)", dir)
			}
			return nil, fmt.Errorf("metadata: lock %s: %w", name, err)
		}
	}
	return &dirLock{f: f}, nil
}

// release gives the directory up.
func (l *dirLock) release() error { return l.f.Close() }
