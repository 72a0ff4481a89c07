package metadata

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	iofs "io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/sluice-io/sluice/internal/vfs"
)

// Each Raft snapshot is one file in Dir, <term>-<index>.snapshot (both
// numbers 20 digits, so names sort by age within a term), written as
// <name>.<n>.tmp, fsynced, renamed into place and the directory fsynced:
// a crash leaves a whole snapshot or none. The newest snapshotsRetained
// are kept.
//
//	0   [4]byte "SLSN"
//	4   uint32  format version (1)
//	8   uint32  length M of the meta
//	12  uint32  CRC-32C of the meta
//	16  meta: raft.SnapshotMeta as JSON (its Size is in the trailer)
//	16+M  the FSM's state, as Persist wrote it
//	end-12  uint64 length of the state
//	end-4   uint32 CRC-32C of every byte before it
//
// Integers are little-endian. List reads only the meta; Open checks the
// whole file's checksum before handing out the state, so that raft, which
// restores the newest snapshot that opens, falls back to an older one
// instead of restoring a damaged one.
const (
	snapshotSuffix      = ".snapshot"
	snapshotMagic       = "SLSN"
	snapshotFileVersion = 1
	snapshotHeadSize    = 16 // bytes: magic, version, meta length, meta CRC
	snapshotTailSize    = 12 // bytes: state length, file CRC

	// maxSnapshotMetaBytes bounds the meta of a snapshot: raft's
	// SnapshotMeta, whose size grows with the quorum's configuration.
	maxSnapshotMetaBytes = 1 << 20 // bytes
	// The state is at most maxSnapshotBytes, what Restore accepts.
)

// snapshotStore is the raft.SnapshotStore of a Store. Safe for concurrent
// use: raft creates snapshots on its snapshot goroutine and lists and opens
// them on its main one. mu serializes the rename of a finished snapshot
// with the removal of old ones.
type snapshotStore struct {
	fs     vfs.FS
	dir    string
	retain int
	log    *slog.Logger

	mu  sync.Mutex
	seq uint64 // makes temporary names unique
}

var _ raft.SnapshotStore = (*snapshotStore)(nil)

// openSnapshotStore returns the store of the snapshots in dir, after
// removing the temporary files of snapshots that a crash interrupted.
func openSnapshotStore(fsys vfs.FS, dir string, retain int, log *slog.Logger) (*snapshotStore, error) {
	if retain < 1 {
		panic(fmt.Sprintf("BUG: metadata: snapshot store must retain at least one snapshot, not %d", retain))
	}
	names, err := fsys.List(dir)
	if err != nil {
		return nil, fmt.Errorf("metadata: list snapshots: %w", err)
	}
	removed := false
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) && strings.Contains(n, snapshotSuffix+".") {
			if err := fsys.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
				return nil, fmt.Errorf("metadata: remove unfinished snapshot: %w", err)
			}
			removed = true
		}
	}
	if removed {
		if err := fsys.SyncDir(dir); err != nil {
			return nil, fmt.Errorf("metadata: remove unfinished snapshots: %w", err)
		}
	}
	return &snapshotStore{fs: fsys, dir: dir, retain: retain, log: log}, nil
}

// snapshotID names the snapshot of index taken in term.
func snapshotID(term, index uint64) string { return fmt.Sprintf("%020d-%020d", term, index) }

// parseSnapshotID returns the term and index an id names.
func parseSnapshotID(id string) (term, index uint64, ok bool) {
	t, i, found := strings.Cut(id, "-")
	if !found || len(t) != 20 || len(i) != 20 {
		return 0, 0, false
	}
	term, err1 := strconv.ParseUint(t, 10, 64)
	index, err2 := strconv.ParseUint(i, 10, 64)
	return term, index, err1 == nil && err2 == nil
}

// Create starts a snapshot of index taken in term. Only version 1 (raft's
// current one) is written.
func (s *snapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("metadata: unsupported snapshot version %d", version)
	}
	return s.create(raft.SnapshotMeta{
		Version:            version,
		ID:                 snapshotID(term, index),
		Index:              index,
		Term:               term,
		Configuration:      configuration,
		ConfigurationIndex: configurationIndex,
	})
}

// create starts a snapshot with meta (its ID names the file, Size is
// ignored).
func (s *snapshotStore) create(meta raft.SnapshotMeta) (*snapshotSink, error) {
	meta.Size = 0
	mj, err := json.Marshal(&meta)
	if err != nil {
		return nil, fmt.Errorf("metadata: encode snapshot meta: %w", err)
	}
	if len(mj) > maxSnapshotMetaBytes {
		return nil, fmt.Errorf("metadata: snapshot meta is %d bytes, the limit is %d", len(mj), maxSnapshotMetaBytes)
	}
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	final := filepath.Join(s.dir, meta.ID+snapshotSuffix)
	tmp := fmt.Sprintf("%s.%d%s", final, seq, tmpSuffix)
	f, err := vfs.Create(s.fs, tmp)
	if err != nil {
		return nil, fmt.Errorf("metadata: create snapshot: %w", err)
	}
	sink := &snapshotSink{store: s, meta: meta, tmp: tmp, final: final, f: f, crc: crc32.New(crc32c)}
	sink.w = bufio.NewWriterSize(io.MultiWriter(f, sink.crc), 64<<10)
	head := make([]byte, snapshotHeadSize, snapshotHeadSize+len(mj))
	copy(head, snapshotMagic)
	binary.LittleEndian.PutUint32(head[4:], snapshotFileVersion)
	binary.LittleEndian.PutUint32(head[8:], uint32(len(mj)))
	binary.LittleEndian.PutUint32(head[12:], crc32.Checksum(mj, crc32c))
	if _, err := sink.w.Write(append(head, mj...)); err != nil {
		sink.Cancel()
		return nil, fmt.Errorf("metadata: write snapshot: %w", err)
	}
	return sink, nil
}

// List returns the snapshots on disk, newest first. A snapshot whose meta
// cannot be read is still listed (with the term and index of its name), so
// that raft tries to open it, fails on its checksum and falls back to an
// older one, or refuses to start if none opens: skipping it silently could
// make raft start from a log whose beginning only the snapshot held.
func (s *snapshotStore) List() ([]*raft.SnapshotMeta, error) {
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	var out []*raft.SnapshotMeta
	for _, id := range ids {
		meta, err := s.readMeta(id)
		if errors.Is(err, iofs.ErrNotExist) {
			continue // removed since ids listed it
		}
		if err != nil {
			s.log.Warn("metadata: unreadable snapshot meta", "id", id, "err", err)
			term, index, _ := parseSnapshotID(id)
			meta = &raft.SnapshotMeta{Version: 1, ID: id, Index: index, Term: term}
		}
		out = append(out, meta)
	}
	return out, nil
}

// ids returns the ids of the finished snapshots, newest first.
func (s *snapshotStore) ids() ([]string, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, fmt.Errorf("metadata: list snapshots: %w", err)
	}
	var ids []string
	for _, n := range names {
		id, ok := strings.CutSuffix(n, snapshotSuffix)
		if _, _, valid := parseSnapshotID(id); ok && valid {
			ids = append(ids, id)
		}
	}
	// Zero-padded term then index: the names sort by age.
	slices.Sort(ids)
	slices.Reverse(ids)
	return ids, nil
}

// readMeta reads the meta of the snapshot id without checking its state.
func (s *snapshotStore) readMeta(id string) (*raft.SnapshotMeta, error) {
	f, err := s.fs.Open(filepath.Join(s.dir, id+snapshotSuffix))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	meta, _, err := readSnapshotMeta(f, size)
	if err != nil {
		return nil, err
	}
	if err := checkSnapshotID(meta, id); err != nil {
		return nil, err
	}
	return meta, nil
}

func checkSnapshotID(meta *raft.SnapshotMeta, id string) error {
	if term, index, _ := parseSnapshotID(id); meta.ID != id || meta.Term != term || meta.Index != index {
		return fmt.Errorf("snapshot file %s holds snapshot %s (term %d, index %d)", id, meta.ID, meta.Term, meta.Index)
	}
	return nil
}

// Open checks the snapshot's checksum and returns its meta and a reader of
// its state.
func (s *snapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if _, _, ok := parseSnapshotID(id); !ok {
		return nil, nil, fmt.Errorf("metadata: %q is not a snapshot id", id)
	}
	f, err := s.fs.Open(filepath.Join(s.dir, id+snapshotSuffix))
	if err != nil {
		return nil, nil, fmt.Errorf("metadata: open snapshot: %w", err)
	}
	size, err := f.Size()
	if err == nil {
		var meta *raft.SnapshotMeta
		var off int64
		if meta, off, err = readSnapshotFile(f, size); err == nil {
			if err = checkSnapshotID(meta, id); err == nil {
				r := bufio.NewReaderSize(io.NewSectionReader(f, off, meta.Size), 64<<10)
				return meta, &snapshotReader{Reader: r, f: f}, nil
			}
		}
	}
	f.Close()
	return nil, nil, fmt.Errorf("metadata: snapshot %s: %w", id, err)
}

type snapshotReader struct {
	*bufio.Reader
	f vfs.File
}

func (r *snapshotReader) Close() error { return r.f.Close() }

// readSnapshotMeta reads and checks the header and trailer of a snapshot
// file of size bytes, and returns its meta (with Size) and the offset of
// its state. It does not read the state.
func readSnapshotMeta(r io.ReaderAt, size int64) (*raft.SnapshotMeta, int64, error) {
	if size < snapshotHeadSize+snapshotTailSize {
		return nil, 0, fmt.Errorf("%d bytes is too short for a snapshot file", size)
	}
	var head [snapshotHeadSize]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return nil, 0, err
	}
	if string(head[:4]) != snapshotMagic {
		return nil, 0, errors.New("not a snapshot file")
	}
	if v := binary.LittleEndian.Uint32(head[4:]); v != snapshotFileVersion {
		return nil, 0, fmt.Errorf("snapshot file version %d, this node knows only %d; upgrade this node", v, snapshotFileVersion)
	}
	m := int64(binary.LittleEndian.Uint32(head[8:]))
	if m > maxSnapshotMetaBytes || snapshotHeadSize+m+snapshotTailSize > size {
		return nil, 0, fmt.Errorf("bad meta length %d in a %d-byte snapshot file", m, size)
	}
	mj := make([]byte, m)
	if _, err := r.ReadAt(mj, snapshotHeadSize); err != nil {
		return nil, 0, err
	}
	if crc32.Checksum(mj, crc32c) != binary.LittleEndian.Uint32(head[12:]) {
		return nil, 0, errors.New("meta checksum mismatch")
	}
	var tail [snapshotTailSize]byte
	if _, err := r.ReadAt(tail[:], size-snapshotTailSize); err != nil {
		return nil, 0, err
	}
	off := snapshotHeadSize + m
	stateLen := binary.LittleEndian.Uint64(tail[:8])
	if stateLen > maxSnapshotBytes || off+int64(stateLen)+snapshotTailSize != size {
		return nil, 0, fmt.Errorf("state length %d does not fit a %d-byte snapshot file", stateLen, size)
	}
	var meta raft.SnapshotMeta
	if err := json.Unmarshal(mj, &meta); err != nil {
		return nil, 0, fmt.Errorf("decode snapshot meta: %w", err)
	}
	if meta.Version != 1 {
		return nil, 0, fmt.Errorf("raft snapshot version %d", meta.Version)
	}
	meta.Size = int64(stateLen)
	return &meta, off, nil
}

// readSnapshotFile is readSnapshotMeta plus a check of the whole file's
// checksum. Snapshot files come from disk, so it checks every length and
// never panics (FuzzReadSnapshotFile).
func readSnapshotFile(r io.ReaderAt, size int64) (*raft.SnapshotMeta, int64, error) {
	meta, off, err := readSnapshotMeta(r, size)
	if err != nil {
		return nil, 0, err
	}
	crc := crc32.New(crc32c)
	if _, err := io.Copy(crc, io.NewSectionReader(r, 0, size-4)); err != nil {
		return nil, 0, err
	}
	var sum [4]byte
	if _, err := r.ReadAt(sum[:], size-4); err != nil {
		return nil, 0, err
	}
	if crc.Sum32() != binary.LittleEndian.Uint32(sum[:]) {
		return nil, 0, errors.New("checksum mismatch")
	}
	return meta, off, nil
}

// reap removes the snapshots older than the newest retain. A failure is
// logged, not returned: the new snapshot is already durable, and an old one
// left behind (or brought back by a crash) is only listed after it.
func (s *snapshotStore) reap() {
	ids, err := s.ids()
	if err != nil {
		s.log.Warn("metadata: removing old snapshots", "err", err)
		return
	}
	if len(ids) <= s.retain {
		return
	}
	for _, id := range ids[s.retain:] {
		if err := s.fs.Remove(filepath.Join(s.dir, id+snapshotSuffix)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			s.log.Warn("metadata: removing an old snapshot", "id", id, "err", err)
		}
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		s.log.Warn("metadata: removing old snapshots", "err", err)
	}
}

// snapshotSink writes one snapshot. raft uses it from one goroutine.
type snapshotSink struct {
	store      *snapshotStore
	meta       raft.SnapshotMeta
	tmp, final string
	f          vfs.File
	w          *bufio.Writer // to f and crc
	crc        hash.Hash32
	stateLen   int64
	done       bool
	closeErr   error
}

var _ raft.SnapshotSink = (*snapshotSink)(nil)

func (k *snapshotSink) ID() string { return k.meta.ID }

// Write appends to the state; past maxSnapshotBytes it fails.
func (k *snapshotSink) Write(p []byte) (int, error) {
	if k.done {
		return 0, errors.New("metadata: write to a finished snapshot")
	}
	if k.stateLen+int64(len(p)) > maxSnapshotBytes {
		return 0, fmt.Errorf("metadata: snapshot larger than %d bytes", maxSnapshotBytes)
	}
	n, err := k.w.Write(p)
	k.stateLen += int64(n)
	return n, err
}

// Close finishes the snapshot durably and removes old ones. Later calls
// return the first call's result (raft calls it twice: in the FSM's
// Persist and after).
func (k *snapshotSink) Close() error {
	if k.done {
		return k.closeErr
	}
	k.done = true
	k.closeErr = k.finish()
	return k.closeErr
}

func (k *snapshotSink) finish() error {
	err := binary.Write(k.w, binary.LittleEndian, uint64(k.stateLen))
	if err == nil {
		err = k.w.Flush()
	}
	if err == nil {
		_, err = k.f.Write(binary.LittleEndian.AppendUint32(nil, k.crc.Sum32()))
	}
	if err == nil {
		err = k.f.Sync()
	}
	if cerr := k.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = removeIfExists(k.store.fs, k.tmp)
		return fmt.Errorf("metadata: write snapshot %s: %w", k.meta.ID, err)
	}
	k.store.mu.Lock()
	defer k.store.mu.Unlock()
	if err := vfs.Rename(k.store.fs, k.tmp, k.final); err != nil {
		_ = removeIfExists(k.store.fs, k.tmp)
		return fmt.Errorf("metadata: finish snapshot %s: %w", k.meta.ID, err)
	}
	k.store.reap()
	return nil
}

// Cancel drops the snapshot.
func (k *snapshotSink) Cancel() error {
	if k.done {
		return nil
	}
	k.done = true
	k.closeErr = errors.New("metadata: snapshot canceled")
	k.f.Close()
	return removeIfExists(k.store.fs, k.tmp)
}
