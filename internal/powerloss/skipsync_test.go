package powerloss

import (
	"slices"
	"strings"

	"github.com/sluice-io/sluice/internal/vfs"
)

// skipLogSync is a test fault: Sync of a segment (.log) file returns
// success without making anything durable, as a broker that forgot the
// fsync before answering acks=all would.
type skipLogSync struct{ vfs.FS }

type noSyncFile struct{ vfs.File }

func (noSyncFile) Sync() error { return nil }

func (fs skipLogSync) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(f.Name(), ".log") {
		return f, err
	}
	return noSyncFile{f}, nil
}

func (fs skipLogSync) Create(name string) (vfs.File, error) { return fs.wrap(fs.FS.Create(name)) }
func (fs skipLogSync) OpenAppend(name string) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenAppend(name))
}

// skipDirSync is a test fault: SyncDir returns success without making
// any directory entry durable, as a broker that never fsyncs a directory.
type skipDirSync struct{ vfs.FS }

func (skipDirSync) SyncDir(string) error { return nil }

func slicesSort(s []string) { slices.Sort(s) }

// skipMoveSync is a test fault: Sync of a file copied into a moving
// partition's "-future" directory returns success without making it
// durable, as a move that renamed its copy into place unsynced would.
type skipMoveSync struct{ vfs.FS }

func (fs skipMoveSync) Create(name string) (vfs.File, error) {
	f, err := fs.FS.Create(name)
	if err != nil || !strings.Contains(name, "-future") {
		return f, err
	}
	return noSyncFile{f}, nil
}
