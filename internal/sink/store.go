package sink

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sluice-io/sluice/internal/backup"
)

// FileScheme starts a local directory location: file:///data/sink or
// file://relative/dir.
const FileScheme = "file://"

// maxCachedDirs caps the Targets a Store keeps; past it the cache starts
// over (a Target is cheap to make again).
const maxCachedDirs = 4096

// Store is where a sink's objects go: a tree of directories, each a
// backup.Target with its atomic create (Dir: temp file, fsync, rename,
// directory fsync; S3: one PUT of the object's known size, backup.S3.Put).
type Store interface {
	// Dir returns the Target for the directory dir (a relative path of
	// plain elements separated by "/").
	Dir(dir string) (backup.Target, error)
	// String says where the store is.
	String() string
}

// OpenStore returns the store at loc: s3://bucket/prefix (reached with
// cfg) or file://DIR. It makes no request.
func OpenStore(ctx context.Context, loc string, cfg backup.S3Config) (Store, error) {
	switch {
	case backup.IsS3(loc):
		s, err := backup.NewS3(ctx, loc, cfg)
		if err != nil {
			return nil, err
		}
		return &s3Store{root: s, dirs: map[string]*backup.S3{}}, nil
	case strings.HasPrefix(loc, FileScheme):
		root := strings.TrimPrefix(loc, FileScheme)
		if root == "" {
			return nil, fmt.Errorf("--to %q: no directory; write file:///abs/dir or file://rel/dir", loc)
		}
		return dirStore{root: filepath.Clean(root)}, nil
	}
	return nil, fmt.Errorf("--to %q: want s3://bucket/prefix or file://DIR", loc)
}

type dirStore struct{ root string }

func (d dirStore) Dir(dir string) (backup.Target, error) {
	if err := backup.CheckSubDir(dir); err != nil {
		return nil, err
	}
	return backup.NewDir(filepath.Join(d.root, filepath.FromSlash(dir))), nil
}

func (d dirStore) String() string { return FileScheme + d.root }

type s3Store struct {
	root *backup.S3
	mu   sync.Mutex
	dirs map[string]*backup.S3
}

func (s *s3Store) Dir(dir string) (backup.Target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.dirs[dir]; ok {
		return t, nil
	}
	t, err := s.root.Sub(dir)
	if err != nil {
		return nil, err
	}
	if len(s.dirs) >= maxCachedDirs {
		clear(s.dirs)
	}
	s.dirs[dir] = t
	return t, nil
}

func (s *s3Store) String() string { return s.root.String() }
