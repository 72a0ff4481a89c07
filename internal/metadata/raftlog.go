package metadata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	iofs "io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluice-io/sluice/internal/vfs"
)

// The Raft log is kept in memory and in an append-only journal file,
// <Dir>/raft.journal. Metadata logs are short (a snapshot every
// snapshotThreshold records, trailingLogs kept after it), so the whole log
// fits in memory and the journal is read once, at Open.
//
// The journal is a sequence of frames; each StoreLogs call appends one frame
// holding its entries, with one write and one fsync:
//
//	0   uint32  payload length, little-endian
//	4   uint32  CRC-32C of the payload
//	8   uint32  CRC-32C of bytes 0..7 (so a damaged length is never trusted)
//	12  payload: for each entry, in index order:
//	      uvarint index, uvarint term, byte type,
//	      uvarint length + data, uvarint length + extensions,
//	      varint AppendedAt seconds since 1970, uvarint nanoseconds
//
// The entries of one journal are consecutive: each frame starts right after
// the previous one ends. DeleteRange (a prefix after a snapshot, a suffix
// when a follower drops conflicting entries) writes the entries that remain
// to raft.journal.tmp, fsyncs it, renames it over raft.journal and fsyncs the
// directory: the work is bounded by the live log, which raft's snapshots
// keep short.
//
// Recovery: a crash can leave only the last frame incomplete (nothing is
// appended before the previous append's fsync has returned), so the journal
// is read frame by frame and cut at a torn last frame: a header shorter
// than 12 bytes, a payload that ends past the end of the file, a last frame
// whose payload checksum fails, or a damaged header followed by nothing
// that reads as a frame. A damaged frame with a good frame after it is
// corruption of data that was acknowledged, and Open refuses the journal.
const (
	journalName   = "raft.journal"
	tmpSuffix     = ".tmp"
	frameHeadSize = 12 // bytes: length, payload CRC, header CRC

	// maxLogEntryBytes bounds the data plus the extensions of one Raft log
	// entry: a metadata record (maxRecordBytes) or one of raft's own
	// entries (configuration, no-op), which are far smaller.
	maxLogEntryBytes = maxRecordBytes + 64<<10 // bytes
	// maxJournalFrameBytes bounds the payload of one frame. A StoreLogs
	// batch (raft passes at most MaxAppendEntries, 64 by default) fits in
	// one frame; a larger one is split over several, written together.
	maxJournalFrameBytes = 128 << 20 // bytes
	// maxJournalBytes bounds the journal file. It is read whole at Open;
	// StoreLogs refuses to grow it past this (snapshots compact it long
	// before: snapshotThreshold+trailingLogs small records).
	maxJournalBytes = 1 << 30 // bytes
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// errLogClosed is returned by the log store's writes after Close.
var errLogClosed = errors.New("metadata: raft log closed")

// logStore is the raft.LogStore of a Store.
//
// Concurrency: raft calls it from several goroutines (its main loop, the
// snapshot goroutine's compaction, replication); mu guards everything.
// Writes hold mu across their fsync, so reads wait for a write in flight.
//
// Failure: a write that fails after touching the journal (a failed write,
// fsync, or directory fsync) leaves the journal in a state the entries in
// memory may not match, so every later write fails with that error
// (sticky, as etcd and pebble do after a failed fsync): restarting the
// broker recovers from what the journal holds. Reads keep answering from
// memory.
type logStore struct {
	fs   vfs.FS
	dir  string
	path string

	mu      sync.RWMutex
	entries []raft.Log // consecutive indexes; Data and Extensions are never mutated
	f       vfs.File   // the journal, open for appending; nil after Close
	size    int64      // bytes in the journal, all of them fsynced
	err     error      // sticky: set when a write failed halfway or after Close
}

var (
	_ raft.LogStore          = (*logStore)(nil)
	_ raft.MonotonicLogStore = (*logStore)(nil)
)

// openLogStore reads (or creates) the journal in dir, cuts a torn tail and
// returns the store, open for appending.
func openLogStore(fsys vfs.FS, dir string, log *slog.Logger) (*logStore, error) {
	path := filepath.Join(dir, journalName)
	// A rewrite that a crash interrupted before its rename: never the journal.
	if err := removeIfExists(fsys, path+tmpSuffix); err != nil {
		return nil, err
	}
	if _, err := fsys.Stat(path); errors.Is(err, iofs.ErrNotExist) {
		f, err := vfs.Create(fsys, path)
		if err != nil {
			return nil, fmt.Errorf("metadata: create raft journal: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("metadata: create raft journal: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("metadata: raft journal: %w", err)
	}
	f, err := fsys.OpenAppend(path)
	if err != nil {
		return nil, fmt.Errorf("metadata: open raft journal: %w", err)
	}
	s := &logStore{fs: fsys, dir: dir, path: path, f: f}
	if err := s.recover(log); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// recover reads the journal into memory and cuts a torn tail.
func (s *logStore) recover(log *slog.Logger) error {
	size, err := s.f.Size()
	if err != nil {
		return fmt.Errorf("metadata: raft journal: %w", err)
	}
	if size > maxJournalBytes {
		return fmt.Errorf("metadata: %s is %d bytes, more than the limit of %d; it is not a journal this version wrote", s.path, size, maxJournalBytes)
	}
	b := make([]byte, size)
	if size > 0 {
		if _, err := s.f.ReadAt(b, 0); err != nil {
			return fmt.Errorf("metadata: read raft journal: %w", err)
		}
	}
	entries, good, err := decodeJournal(b)
	if err != nil {
		return fmt.Errorf("metadata: %s: %w; the log holds acknowledged metadata, so it is not cut: restore the meta directory from a backup or move it aside to start an empty cluster", s.path, err)
	}
	if good < len(b) {
		log.Warn("metadata: cutting the torn tail of the raft journal (an append that a crash interrupted, never acknowledged)",
			"path", s.path, "offset", good, "bytes", len(b)-good)
		if err := s.f.Truncate(int64(good)); err != nil {
			return fmt.Errorf("metadata: cut torn raft journal tail: %w", err)
		}
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("metadata: cut torn raft journal tail: %w", err)
		}
	}
	s.entries = entries
	s.size = int64(good)
	return nil
}

// FirstIndex returns the first index in the log, 0 if it is empty.
func (s *logStore) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.entries) == 0 {
		return 0, nil
	}
	return s.entries[0].Index, nil
}

// LastIndex returns the last index in the log, 0 if it is empty.
func (s *logStore) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.entries) == 0 {
		return 0, nil
	}
	return s.entries[len(s.entries)-1].Index, nil
}

// GetLog copies the entry at index into out (its Data and Extensions are
// shared and must not be mutated), or returns raft.ErrLogNotFound.
func (s *logStore) GetLog(index uint64, out *raft.Log) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.entries) == 0 || index < s.entries[0].Index || index > s.entries[len(s.entries)-1].Index {
		return raft.ErrLogNotFound
	}
	*out = s.entries[index-s.entries[0].Index]
	return nil
}

// StoreLog appends one entry; see StoreLogs.
func (s *logStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs appends entries, durably: it returns after one fsync of the
// journal. The entries must be consecutive and follow the last one (any
// index when the log is empty); the store is monotonic, so raft never
// leaves a gap.
func (s *logStore) StoreLogs(logs []*raft.Log) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if len(logs) == 0 {
		return nil
	}
	next := uint64(0) // 0: any index may start an empty log
	if n := len(s.entries); n > 0 {
		next = s.entries[n-1].Index + 1
	}
	for i, l := range logs {
		if l == nil {
			panic("BUG: metadata: StoreLogs with a nil entry")
		}
		if (i > 0 || next != 0) && l.Index != next {
			return fmt.Errorf("metadata: raft log entry %d does not follow %d; the log store keeps consecutive entries only", l.Index, next-1)
		}
		if l.Index == 0 {
			return errors.New("metadata: raft log entry with index 0")
		}
		if len(l.Data)+len(l.Extensions) > maxLogEntryBytes {
			return fmt.Errorf("metadata: raft log entry %d is %d bytes, the limit is %d", l.Index, len(l.Data)+len(l.Extensions), maxLogEntryBytes)
		}
		next = l.Index + 1
	}
	buf := appendFrames(nil, maxJournalFrameBytes, func(yield func(*raft.Log) bool) {
		for _, l := range logs {
			if !yield(l) {
				return
			}
		}
	})
	if s.size+int64(len(buf)) > maxJournalBytes {
		return fmt.Errorf("metadata: raft journal would grow past %d bytes; raft compacts it after each snapshot: check the log for snapshot errors", maxJournalBytes)
	}
	if _, err := s.f.Write(buf); err != nil {
		return s.fail(fmt.Errorf("metadata: append to raft journal: %w", err))
	}
	if err := s.f.Sync(); err != nil {
		return s.fail(fmt.Errorf("metadata: fsync raft journal: %w", err))
	}
	s.size += int64(len(buf))
	for _, l := range logs {
		s.entries = append(s.entries, *l)
	}
	return nil
}

// DeleteRange deletes the entries from min to max, inclusive. Only a
// prefix, a suffix or the whole log may go (raft never asks for more):
// deleting from the middle would leave a gap and is refused.
func (s *logStore) DeleteRange(min, max uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	n := len(s.entries)
	if n == 0 || min > max || max < s.entries[0].Index || min > s.entries[n-1].Index {
		return nil
	}
	first, last := s.entries[0].Index, s.entries[n-1].Index
	var keep []raft.Log
	switch {
	case min <= first && max >= last:
		// everything
	case min <= first:
		keep = s.entries[max-first+1:]
	case max >= last:
		keep = s.entries[:min-first]
	default:
		return fmt.Errorf("metadata: deleting raft log entries %d..%d from %d..%d would leave a gap", min, max, first, last)
	}
	return s.rewrite(keep)
}

// rewrite replaces the journal with one holding exactly keep. Caller holds
// mu for writing.
func (s *logStore) rewrite(keep []raft.Log) error {
	tmp := s.path + tmpSuffix
	size, err := writeJournalFile(s.fs, tmp, keep)
	if err != nil {
		return err // the journal is untouched
	}
	if err := s.fs.Rename(tmp, s.path); err != nil {
		_ = removeIfExists(s.fs, tmp)
		return fmt.Errorf("metadata: replace raft journal: %w", err)
	}
	// The new journal is in place; memory follows it. Until the directory
	// is fsynced a crash may bring the old one back.
	s.entries = slices.Clone(keep)
	s.size = size
	old := s.f
	s.f = nil
	old.Close() // its file is gone; nothing to lose
	if err := s.fs.SyncDir(s.dir); err != nil {
		return s.fail(fmt.Errorf("metadata: make raft journal replacement durable: %w", err))
	}
	f, err := s.fs.OpenAppend(s.path)
	if err != nil {
		return s.fail(fmt.Errorf("metadata: reopen raft journal: %w", err))
	}
	s.f = f
	return nil
}

// fail makes err sticky. Caller holds mu for writing.
func (s *logStore) fail(err error) error {
	s.err = fmt.Errorf("%w (the raft log refuses writes until the broker restarts and reads the journal again)", err)
	return s.err
}

// IsMonotonic tells raft that the store keeps no gaps: after installing a
// snapshot raft deletes the whole log instead of leaving a gap before the
// entries that follow it.
func (s *logStore) IsMonotonic() bool { return true }

// Close closes the journal. Later writes fail; reads still answer.
func (s *logStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = errLogClosed
	}
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// writeJournalFile writes entries to a new file at name as one journal and
// fsyncs it; its directory entry is made durable by the caller's rename.
// On failure the file is removed.
func writeJournalFile(fsys vfs.FS, name string, entries []raft.Log) (int64, error) {
	buf := appendFrames(nil, maxJournalFrameBytes, func(yield func(*raft.Log) bool) {
		for i := range entries {
			if !yield(&entries[i]) {
				return
			}
		}
	})
	f, err := vfs.Create(fsys, name)
	if err != nil {
		return 0, fmt.Errorf("metadata: create %s: %w", name, err)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = removeIfExists(fsys, name)
		return 0, fmt.Errorf("metadata: write %s: %w", name, err)
	}
	return int64(len(buf)), nil
}

// appendFrames encodes entries as journal frames appended to buf: one frame,
// or several if they would not fit in maxFrame bytes (maxJournalFrameBytes
// but in tests).
func appendFrames(buf []byte, maxFrame int, entries func(yield func(*raft.Log) bool)) []byte {
	start := -1 // offset of the open frame's header
	for l := range entries {
		if start >= 0 && len(buf)-start-frameHeadSize+entryMaxEncodedSize(l) > maxFrame {
			buf = sealFrame(buf, start)
			start = -1
		}
		if start < 0 {
			start = len(buf)
			buf = append(buf, make([]byte, frameHeadSize)...)
		}
		buf = appendEntry(buf, l)
	}
	if start >= 0 {
		buf = sealFrame(buf, start)
	}
	return buf
}

// entryMaxEncodedSize bounds the encoded size of l.
func entryMaxEncodedSize(l *raft.Log) int {
	return 5*binary.MaxVarintLen64 + 1 + len(l.Data) + len(l.Extensions)
}

func appendEntry(buf []byte, l *raft.Log) []byte {
	buf = binary.AppendUvarint(buf, l.Index)
	buf = binary.AppendUvarint(buf, l.Term)
	buf = append(buf, byte(l.Type))
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	buf = binary.AppendVarint(buf, l.AppendedAt.Unix())
	buf = binary.AppendUvarint(buf, uint64(l.AppendedAt.Nanosecond()))
	return buf
}

// sealFrame fills in the header of the frame that starts at start and runs
// to the end of buf.
func sealFrame(buf []byte, start int) []byte {
	h := buf[start : start+frameHeadSize]
	payload := buf[start+frameHeadSize:]
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(payload, crc32c))
	binary.LittleEndian.PutUint32(h[8:], crc32.Checksum(h[:8], crc32c))
	return buf
}

// frameHeader reads the header at the start of b: the payload length and
// CRC, and whether the header's own checksum holds.
func frameHeader(b []byte) (n int, sum uint32, ok bool) {
	if len(b) < frameHeadSize {
		return 0, 0, false
	}
	if crc32.Checksum(b[:8], crc32c) != binary.LittleEndian.Uint32(b[8:]) {
		return 0, 0, false
	}
	return int(binary.LittleEndian.Uint32(b[0:])), binary.LittleEndian.Uint32(b[4:]), true
}

// validFrameAt reports whether a whole, intact frame starts at b[0].
func validFrameAt(b []byte) bool {
	n, sum, ok := frameHeader(b)
	return ok && n > 0 && n <= maxJournalFrameBytes && n <= len(b)-frameHeadSize &&
		crc32.Checksum(b[frameHeadSize:frameHeadSize+n], crc32c) == sum
}

// decodeJournal decodes the frames of a journal. It returns the entries and
// the length of the prefix of b that holds them; what follows (a torn last
// frame, see the comment at the top of this file) is to be cut. A damaged
// frame that is not the last, or a frame whose content is invalid although
// its checksum holds, is an error. Journal bytes come from disk, so
// decodeJournal checks every length and never panics (FuzzDecodeJournal).
func decodeJournal(b []byte) ([]raft.Log, int, error) {
	var entries []raft.Log
	off := 0
	for off < len(b) {
		rest := b[off:]
		n, sum, ok := frameHeader(rest)
		switch {
		case !ok:
			if len(rest) < frameHeadSize || tornHeader(rest) {
				return entries, off, nil
			}
			return nil, 0, fmt.Errorf("damaged frame header at offset %d, with intact frames after it", off)
		case n == 0 || n > maxJournalFrameBytes:
			return nil, 0, fmt.Errorf("frame at offset %d has an intact header with an impossible length %d", off, n)
		case n > len(rest)-frameHeadSize:
			return entries, off, nil // the append was cut short
		case crc32.Checksum(rest[frameHeadSize:frameHeadSize+n], crc32c) != sum:
			if n == len(rest)-frameHeadSize {
				return entries, off, nil // the last frame, partly written
			}
			return nil, 0, fmt.Errorf("checksum mismatch in the frame at offset %d, which is not the last", off)
		}
		var err error
		if entries, err = decodeFrame(rest[frameHeadSize:frameHeadSize+n], entries); err != nil {
			return nil, 0, fmt.Errorf("frame at offset %d: %w", off, err)
		}
		off += frameHeadSize + n
	}
	return entries, off, nil
}

// tornHeader reports whether rest, which starts with a damaged frame
// header, can be what a crash left of one last append: it is no longer
// than one frame, and no intact frame starts anywhere in it.
func tornHeader(rest []byte) bool {
	if len(rest) > frameHeadSize+maxJournalFrameBytes {
		return false
	}
	for p := 1; p+frameHeadSize <= len(rest); p++ {
		if validFrameAt(rest[p:]) {
			return false
		}
	}
	return true
}

// decodeFrame appends the entries of one frame's payload to entries,
// checking that each follows the one before.
func decodeFrame(p []byte, entries []raft.Log) ([]raft.Log, error) {
	for len(p) > 0 {
		var l raft.Log
		var ok bool
		if l.Index, p, ok = uvarint(p); !ok {
			return nil, errors.New("truncated entry index")
		}
		if n := len(entries); (n > 0 && l.Index != entries[n-1].Index+1) || l.Index == 0 {
			prev := uint64(0)
			if n > 0 {
				prev = entries[n-1].Index
			}
			return nil, fmt.Errorf("entry %d after entry %d", l.Index, prev)
		}
		if l.Term, p, ok = uvarint(p); !ok {
			return nil, fmt.Errorf("entry %d: truncated term", l.Index)
		}
		if len(p) == 0 {
			return nil, fmt.Errorf("entry %d: truncated type", l.Index)
		}
		l.Type, p = raft.LogType(p[0]), p[1:]
		if l.Data, p, ok = lengthPrefixed(p); !ok {
			return nil, fmt.Errorf("entry %d: bad data length", l.Index)
		}
		if l.Extensions, p, ok = lengthPrefixed(p); !ok {
			return nil, fmt.Errorf("entry %d: bad extensions length", l.Index)
		}
		if len(l.Data)+len(l.Extensions) > maxLogEntryBytes {
			return nil, fmt.Errorf("entry %d: %d bytes, the limit is %d", l.Index, len(l.Data)+len(l.Extensions), maxLogEntryBytes)
		}
		sec, m := binary.Varint(p)
		if m <= 0 {
			return nil, fmt.Errorf("entry %d: bad time", l.Index)
		}
		p = p[m:]
		var nsec uint64
		if nsec, p, ok = uvarint(p); !ok || nsec >= 1e9 {
			return nil, fmt.Errorf("entry %d: bad time", l.Index)
		}
		l.AppendedAt = time.Unix(sec, int64(nsec)).UTC()
		entries = append(entries, l)
	}
	return entries, nil
}

func uvarint(p []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(p)
	if n <= 0 {
		return 0, p, false
	}
	return v, p[n:], true
}

// lengthPrefixed reads a uvarint length and that many bytes, copied (nil
// for none, as raft hands them in).
func lengthPrefixed(p []byte) ([]byte, []byte, bool) {
	n, p, ok := uvarint(p)
	if !ok || n > uint64(len(p)) {
		return nil, p, false
	}
	if n == 0 {
		return nil, p, true
	}
	return slices.Clone(p[:n]), p[n:], true
}

// removeIfExists removes name and fsyncs its directory; a missing name is
// not an error.
func removeIfExists(fsys vfs.FS, name string) error {
	if err := vfs.Remove(fsys, name); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("metadata: remove %s: %w", name, err)
	}
	return nil
}
