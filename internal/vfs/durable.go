package vfs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
)

// The helpers below are how storage creates, renames and removes files and
// directories: each change is followed by an fsync of the directory (or
// directories) holding the entry, because on Linux (ext4, xfs) a new,
// renamed or removed name survives a power cut only once its directory has
// been fsynced, and neither os.MkdirAll nor bolt does that. A caller that
// changes many entries of one directory may use the FS methods and call
// SyncDir once at the end instead.

// MkdirAll creates dir and any missing parents durably: after each
// directory it creates, the parent holding it is fsynced. An existing dir
// is left as it is.
func MkdirAll(fs FS, dir string) error {
	dir = filepath.Clean(dir)
	// Walk up to the first ancestor that exists; everything below it is
	// created and must be made durable in its parent.
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		_, err := fs.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("vfs: stat %s: %w", d, err)
		}
		missing = append(missing, d)
		if parent := filepath.Dir(d); parent == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fs.MkdirAll(dir); err != nil {
		return fmt.Errorf("vfs: create %s: %w", dir, err)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := fs.SyncDir(filepath.Dir(missing[i])); err != nil {
			return fmt.Errorf("vfs: make %s durable: %w", missing[i], err)
		}
	}
	return nil
}

// Create creates or truncates name and fsyncs its directory, so that the
// new entry survives a power cut (its content does at the file's Sync).
func Create(fs FS, name string) (File, error) {
	f, err := fs.Create(name)
	if err != nil {
		return nil, err
	}
	if err := fs.SyncDir(filepath.Dir(name)); err != nil {
		f.Close()
		return nil, fmt.Errorf("vfs: make %s durable: %w", name, err)
	}
	return f, nil
}

// Rename renames oldname to newname and fsyncs the directory of each (one
// fsync when they share it).
func Rename(fs FS, oldname, newname string) error {
	if err := fs.Rename(oldname, newname); err != nil {
		return err
	}
	oldDir, newDir := filepath.Dir(oldname), filepath.Dir(newname)
	if err := fs.SyncDir(newDir); err != nil {
		return fmt.Errorf("vfs: make rename to %s durable: %w", newname, err)
	}
	if oldDir != newDir {
		if err := fs.SyncDir(oldDir); err != nil {
			return fmt.Errorf("vfs: make rename from %s durable: %w", oldname, err)
		}
	}
	return nil
}

// Remove removes a file or an empty directory and fsyncs its directory. A
// missing name is an error satisfying errors.Is(err, fs.ErrNotExist).
func Remove(fs FS, name string) error {
	if err := fs.Remove(name); err != nil {
		return err
	}
	if err := fs.SyncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("vfs: make removal of %s durable: %w", name, err)
	}
	return nil
}

// RemoveAll removes name and everything under it and fsyncs its directory.
// A missing name is not an error.
func RemoveAll(fs FS, name string) error {
	if err := fs.RemoveAll(name); err != nil {
		return err
	}
	if err := fs.SyncDir(filepath.Dir(name)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("vfs: make removal of %s durable: %w", name, err)
	}
	return nil
}
