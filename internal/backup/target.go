package backup

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sluice-io/sluice/internal/vfs"
)

// Target is where a back-up's files live: a local directory (Dir) or a
// prefix of an S3 bucket (S3, in s3.go). Names are flat (no
// directories): the manifest and one data file per partition.
type Target interface {
	// Create starts writing the file name. It appears under name, whole,
	// only when Close returns nil; until then readers see the previous
	// file of that name, if any. Abort (see Abort) discards it.
	Create(name string) (io.WriteCloser, error)
	// Open reads the file name; when it does not exist the error wraps
	// fs.ErrNotExist.
	Open(name string) (io.ReadCloser, error)
	// List returns the names of the files, sorted; a target that does not
	// exist yet has none.
	List() ([]string, error)
	// Remove deletes the file name; removing a missing file is not an
	// error.
	Remove(name string) error
	// String says where the target is, for messages.
	String() string
}

// Aborter is implemented by the writers of Create that can discard what
// was written instead of publishing it.
type Aborter interface {
	Abort() error
}

// Abort discards w, a writer from Target.Create, without publishing it if
// it can; otherwise it closes it.
func Abort(w io.WriteCloser) error {
	if a, ok := w.(Aborter); ok {
		return a.Abort()
	}
	return w.Close()
}

// Dir is a Target in a local directory. Files are written atomically: to a
// temporary file in the same directory, fsynced, renamed into place, and
// the directory fsynced.
type Dir struct {
	path string
}

// tempMarker is in the names of Dir's temporary files, which List hides.
const tempMarker = ".tmp-"

// NewDir returns the directory path as a Target. The directory is created
// by the first Create if it does not exist.
func NewDir(path string) *Dir {
	return &Dir{path: filepath.Clean(path)}
}

// String is the directory's path.
func (d *Dir) String() string { return d.path }

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("back-up file name %q: want a plain file name", name)
	}
	return nil
}

// Create writes name through a temporary file.
func (d *Dir) Create(name string) (io.WriteCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	// Durably: a back-up whose directory entry a power cut takes back is
	// gone with all its files.
	if err := vfs.MkdirAll(vfs.OS(), d.path); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(d.path, "."+name+tempMarker+"*")
	if err != nil {
		return nil, err
	}
	return &dirFile{f: f, dir: d.path, final: filepath.Join(d.path, name)}, nil
}

// Open opens name for reading.
func (d *Dir) Open(name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(d.path, name))
}

// List returns the directory's files, without temporary files and
// subdirectories.
func (d *Dir) List() ([]string, error) {
	ents, err := os.ReadDir(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), tempMarker) {
			continue
		}
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names, nil
}

// Remove deletes name and fsyncs the directory.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(d.path, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(d.path)
}

// dirFile is a file of Dir being written.
type dirFile struct {
	f     *os.File
	dir   string
	final string
	done  bool
}

func (w *dirFile) Write(p []byte) (int, error) { return w.f.Write(p) }

// Close publishes the file: fsync, rename over the final name, fsync the
// directory. On failure the temporary file is removed.
func (w *dirFile) Close() error {
	if w.done {
		return errors.New("back-up file already closed")
	}
	w.done = true
	tmp := w.f.Name()
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, w.final)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", w.final, err)
	}
	return syncDir(w.dir)
}

// Abort removes the temporary file; the final name is untouched.
func (w *dirFile) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.f.Name())
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}
