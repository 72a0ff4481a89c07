package metadata

import (
	"fmt"

	"github.com/sluice-io/sluice/internal/vfs"
)

// lockDir holds the meta directory for one Store, so that a second process
// (or a second Store in this one) on the same data dir fails at Open
// instead of writing the same raft files.
func lockDir(fsys vfs.FS, dir string) (*vfs.DirLock, error) {
	l, err := vfs.LockDir(fsys, dir, "another sluice using this data dir")
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	return l, nil
}
