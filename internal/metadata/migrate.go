package metadata

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	iofs "io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/sluice-io/sluice/internal/vfs"
)

// Meta directories written before the vfs-based stores hold raft-boltdb's
// raft.db (bbolt buckets "logs": big-endian uint64 index -> msgpack-encoded
// raft.Log, and "conf": the stable store's keys) and raft's
// FileSnapshotStore under snapshots/ (<id>/meta.json with a CRC-64 of
// <id>/state.bin). migrateLegacy imports them once, then moves them aside.
const (
	legacyLogName   = "raft.db"
	legacySnapDir   = "snapshots"
	legacyMetaFile  = "meta.json"
	legacyStateFile = "state.bin"
	migratedSuffix  = ".migrated"

	// boltOpenTimeout bounds the wait for bolt's file lock on raft.db: an
	// older sluice still running on the data dir makes the import fail
	// instead of hang.
	boltOpenTimeout = time.Second
)

// migrateLegacy imports the raft state of the older on-disk format into the
// new stores in dir, if there is one and the new journal is not there yet:
// the log entries, the stable keys, and the newest snapshot whose checksum
// holds (raft would have restored that one). The new files are made durable
// before the journal is renamed into place, which is the commit point: a
// crash before it leaves the old files as they were and the import runs
// again (replacing what it wrote); a crash after it finds the journal and
// only moves the old files aside, as raft.db.migrated and
// snapshots.migrated (kept for an operator, never read again).
//
// raft.db is read through bbolt, which uses the operating system's files:
// the paths of fsys must be the OS's (they are, outside tests).
func migrateLegacy(fsys vfs.FS, dir string, log *slog.Logger) error {
	dbPath := filepath.Join(dir, legacyLogName)
	snapPath := filepath.Join(dir, legacySnapDir)
	hasDB, err := exists(fsys, dbPath)
	if err != nil {
		return err
	}
	hasSnaps, err := exists(fsys, snapPath)
	if err != nil {
		return err
	}
	if !hasDB && !hasSnaps {
		return nil
	}
	journal, err := exists(fsys, filepath.Join(dir, journalName))
	if err != nil {
		return err
	}
	if !journal {
		if err := importLegacy(fsys, dir, hasDB, hasSnaps, log); err != nil {
			return fmt.Errorf("metadata: import the raft state of %s written by an older version: %w", dir, err)
		}
	}
	for _, p := range []struct {
		path string
		has  bool
	}{{dbPath, hasDB}, {snapPath, hasSnaps}} {
		if !p.has {
			continue
		}
		to, err := freeName(fsys, p.path+migratedSuffix)
		if err != nil {
			return err
		}
		if err := vfs.Rename(fsys, p.path, to); err != nil {
			return fmt.Errorf("metadata: move %s aside after importing it: %w", p.path, err)
		}
		log.Info("metadata: moved the imported raft state of an older version aside", "from", p.path, "to", to)
	}
	return nil
}

// importLegacy writes the legacy state into new stores in dir, ending with
// the journal's rename into place.
func importLegacy(fsys vfs.FS, dir string, hasDB, hasSnaps bool, log *slog.Logger) error {
	var (
		logs []raft.Log
		conf map[string][]byte
		snap *raft.SnapshotMeta
		st   []byte
		err  error
	)
	if hasDB {
		if logs, conf, err = readLegacyBolt(fsys, filepath.Join(dir, legacyLogName)); err != nil {
			return err
		}
	}
	if hasSnaps {
		if snap, st, err = readLegacySnapshot(fsys, filepath.Join(dir, legacySnapDir), log); err != nil {
			return err
		}
	}
	if logs, err = contiguousLegacyLog(logs, snap); err != nil {
		return err
	}

	if snap != nil {
		snaps, err := openSnapshotStore(fsys, dir, snapshotsRetained, log)
		if err != nil {
			return err
		}
		meta := *snap
		meta.ID = snapshotID(meta.Term, meta.Index)
		sink, err := snaps.create(meta)
		if err != nil {
			return err
		}
		if _, err := sink.Write(st); err != nil {
			sink.Cancel()
			return err
		}
		if err := sink.Close(); err != nil {
			return err
		}
	}
	if len(conf) > 0 {
		stable, err := openStableStore(fsys, dir)
		if err != nil {
			return err
		}
		if err := stable.setMany(conf); err != nil {
			return err
		}
	}
	path := filepath.Join(dir, journalName)
	if _, err := writeJournalFile(fsys, path+tmpSuffix, logs); err != nil {
		return err
	}
	if err := vfs.Rename(fsys, path+tmpSuffix, path); err != nil {
		return fmt.Errorf("metadata: put the imported raft journal in place: %w", err)
	}
	first, last := uint64(0), uint64(0)
	if len(logs) > 0 {
		first, last = logs[0].Index, logs[len(logs)-1].Index
	}
	snapIndex := uint64(0)
	if snap != nil {
		snapIndex = snap.Index
	}
	log.Info("metadata: imported the raft state of an older version", "dir", dir,
		"first_index", first, "last_index", last, "snapshot_index", snapIndex, "stable_keys", len(conf))
	return nil
}

// readLegacyBolt reads every log entry and stable key of raft-boltdb's
// raft.db, read-only. An empty file (created, then a crash before bolt
// initialized it) holds nothing.
func readLegacyBolt(fsys vfs.FS, path string) ([]raft.Log, map[string][]byte, error) {
	fi, err := fsys.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() == 0 {
		return nil, nil, nil
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: boltOpenTimeout})
	if err != nil {
		return nil, nil, fmt.Errorf("open %s (is an older sluice still using this data dir?): %w", path, err)
	}
	defer db.Close()
	var logs []raft.Log
	conf := map[string][]byte{}
	err = db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte("logs")); b != nil {
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(k) != 8 {
					return fmt.Errorf("log key %x is not an 8-byte index", k)
				}
				var l raft.Log
				// Bolt's values live in its mmap, gone after Close: decode
				// from a copy.
				if err := codec.NewDecoderBytes(bytes.Clone(v), &codec.MsgpackHandle{}).Decode(&l); err != nil {
					return fmt.Errorf("log entry %d: %w", binary.BigEndian.Uint64(k), err)
				}
				if l.Index != binary.BigEndian.Uint64(k) {
					return fmt.Errorf("log entry under key %d has index %d", binary.BigEndian.Uint64(k), l.Index)
				}
				if len(l.Data)+len(l.Extensions) > maxLogEntryBytes {
					return fmt.Errorf("log entry %d is %d bytes, the limit is %d", l.Index, len(l.Data)+len(l.Extensions), maxLogEntryBytes)
				}
				logs = append(logs, l)
			}
		}
		if b := tx.Bucket([]byte("conf")); b != nil {
			return b.ForEach(func(k, v []byte) error {
				conf[string(k)] = bytes.Clone(v)
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return logs, conf, nil
}

// legacySnapshotMeta is raft's FileSnapshotStore meta.json.
type legacySnapshotMeta struct {
	raft.SnapshotMeta
	CRC []byte
}

// readLegacySnapshot returns the newest snapshot under dir whose state
// matches its CRC, as raft's FileSnapshotStore would restore it, or none
// if dir holds no snapshot. A damaged snapshot (missing file, bad meta, CRC
// mismatch) is skipped for an older one, as raft does; an I/O error fails
// the import, which must not settle for an older snapshot for good because
// of a passing error. Snapshots that exist but none of which is intact are
// an error.
func readLegacySnapshot(fsys vfs.FS, dir string, log *slog.Logger) (*raft.SnapshotMeta, []byte, error) {
	names, err := fsys.List(dir)
	if err != nil {
		return nil, nil, err
	}
	var metas []*legacySnapshotMeta
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) {
			continue // never finished
		}
		fi, err := fsys.Stat(filepath.Join(dir, n))
		if err != nil {
			return nil, nil, err
		}
		if !fi.IsDir() {
			continue
		}
		b, err := readSmallFile(fsys, filepath.Join(dir, n, legacyMetaFile), maxSnapshotMetaBytes)
		if errors.Is(err, iofs.ErrNotExist) {
			log.Warn("metadata: snapshot of an older version without its meta, skipped as raft would", "dir", n)
			continue
		}
		if err != nil {
			return nil, nil, err // an I/O error says nothing about the snapshot: do not fall back
		}
		var m legacySnapshotMeta
		if err := json.Unmarshal(b, &m); err != nil {
			log.Warn("metadata: unreadable snapshot of an older version", "dir", n, "err", err)
			continue
		}
		if m.ID != n || m.Version != 1 {
			log.Warn("metadata: skipping snapshot of an older version", "dir", n, "id", m.ID, "version", m.Version)
			continue
		}
		metas = append(metas, &m)
	}
	// Newest first, in FileSnapshotStore's order.
	slices.SortFunc(metas, func(a, b *legacySnapshotMeta) int {
		return -cmp.Or(cmp.Compare(a.Term, b.Term), cmp.Compare(a.Index, b.Index), strings.Compare(a.ID, b.ID))
	})
	for _, m := range metas {
		st, err := readSmallFile(fsys, filepath.Join(dir, m.ID, legacyStateFile), maxSnapshotBytes)
		if err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return nil, nil, err
		}
		if err == nil {
			h := crc64.New(crc64.MakeTable(crc64.ECMA))
			h.Write(st)
			if !bytes.Equal(h.Sum(nil), m.CRC) {
				err = errors.New("CRC mismatch")
			}
		}
		if err != nil {
			log.Warn("metadata: damaged snapshot of an older version, trying an older one", "id", m.ID, "err", err)
			continue
		}
		meta := m.SnapshotMeta
		meta.Size = int64(len(st))
		return &meta, st, nil
	}
	if len(metas) > 0 {
		return nil, nil, fmt.Errorf("none of the %d snapshots in %s reads back intact", len(metas), dir)
	}
	return nil, nil, nil
}

// contiguousLegacyLog returns the entries to import: raft-boltdb allowed
// gaps (after a snapshot was installed), the new log store does not. Entries
// before a gap are dropped when the snapshot covers the gap, and entries all
// older than the snapshot may go too when a gap separates them from it.
func contiguousLegacyLog(logs []raft.Log, snap *raft.SnapshotMeta) ([]raft.Log, error) {
	snapIndex := uint64(0)
	if snap != nil {
		snapIndex = snap.Index
	}
	for i := len(logs) - 1; i > 0; i-- {
		if logs[i].Index == logs[i-1].Index+1 {
			continue
		}
		if snapIndex+1 < logs[i].Index {
			return nil, fmt.Errorf("the log has no entries %d..%d and no snapshot covers them", logs[i-1].Index+1, logs[i].Index-1)
		}
		logs = logs[i:]
		break
	}
	if n := len(logs); n > 0 && logs[n-1].Index < snapIndex {
		// The whole log is older than the snapshot (and the entry after it
		// would not follow the last one).
		return nil, nil
	}
	if len(logs) > 0 && snapIndex+1 < logs[0].Index {
		return nil, fmt.Errorf("the log starts at %d but the snapshot ends at %d", logs[0].Index, snapIndex)
	}
	return logs, nil
}

// exists reports whether name exists.
func exists(fsys vfs.FS, name string) (bool, error) {
	_, err := fsys.Stat(name)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, iofs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("metadata: %w", err)
}

// freeName returns name, or name.1, name.2, ... for the first that does not
// exist.
func freeName(fsys vfs.FS, name string) (string, error) {
	for i := 0; ; i++ {
		n := name
		if i > 0 {
			n += "." + strconv.Itoa(i)
		}
		ok, err := exists(fsys, n)
		if err != nil || !ok {
			return n, err
		}
	}
}
