package vfs

import (
	"errors"
	"fmt"
	"io"
)

// ReadFile reads the whole of a small file (a checkpoint, an index, a
// snapshot), refusing one larger than limit bytes before allocating: a
// damaged or foreign file must not cost memory its size field claims. A
// missing file is an error satisfying errors.Is(err, fs.ErrNotExist).
func ReadFile(fs FS, name string, limit int64) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("vfs: size of %s: %w", name, err)
	}
	if size > limit {
		return nil, fmt.Errorf("vfs: %s is %d bytes, above the %d-byte limit for it", name, size, limit)
	}
	b := make([]byte, size)
	if n, err := f.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && int64(n) == size) {
		return nil, fmt.Errorf("vfs: read %s: %w", name, err)
	}
	return b, nil
}
