package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// AbortedTxn is one entry of a segment's transaction index (.txnindex): an
// aborted transaction of a producer, from its first offset in this
// partition to its abort marker (LastOffset), with the partition's last
// stable offset when it was aborted. read_committed fetches hand these to
// clients, which drop the aborted records.
type AbortedTxn struct {
	ProducerID       int64
	FirstOffset      int64
	LastOffset       int64
	LastStableOffset int64
}

// A .txnindex entry, in Kafka's format: version int16 (0), producer id
// int64, first offset int64, last offset int64, last stable offset int64.
const (
	txnIndexVersion    = 0
	txnIndexEntryBytes = 2 + 8 + 8 + 8 + 8
)

func marshalTxnIndex(entries []AbortedTxn) []byte {
	b := make([]byte, 0, len(entries)*txnIndexEntryBytes)
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, txnIndexVersion)
		b = binary.BigEndian.AppendUint64(b, uint64(e.ProducerID))
		b = binary.BigEndian.AppendUint64(b, uint64(e.FirstOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(e.LastOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(e.LastStableOffset))
	}
	return b
}

// unmarshalTxnIndex reads entries. The file is append-only and every
// append is fsynced before the next, so a crash can damage only the last
// entry: a trailing partial entry, or a last whole entry that is invalid
// (an unknown version, out of order: zeros where the write did not land),
// is dropped; an invalid entry before the last is an error.
func unmarshalTxnIndex(b []byte) ([]AbortedTxn, error) {
	n := len(b) / txnIndexEntryBytes
	out := make([]AbortedTxn, 0, n)
	for i := 0; i < n; i++ {
		e := b[i*txnIndexEntryBytes:]
		a := AbortedTxn{
			ProducerID:       int64(binary.BigEndian.Uint64(e[2:])),
			FirstOffset:      int64(binary.BigEndian.Uint64(e[10:])),
			LastOffset:       int64(binary.BigEndian.Uint64(e[18:])),
			LastStableOffset: int64(binary.BigEndian.Uint64(e[26:])),
		}
		var err error
		if v := binary.BigEndian.Uint16(e); v != txnIndexVersion {
			err = fmt.Errorf("log: txnindex entry %d has version %d", i, v)
		} else if a.FirstOffset > a.LastOffset || len(out) > 0 && out[len(out)-1].LastOffset >= a.LastOffset {
			err = fmt.Errorf("log: txnindex entry %d (%d-%d) out of order", i, a.FirstOffset, a.LastOffset)
		}
		if err != nil {
			if i == n-1 {
				break // a torn last append
			}
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// errTxnIndexDamaged: a .txnindex whose bytes are not entries (an unknown
// version, entries out of order, a size no segment can need). Recovery
// moves such a file aside; any other error opening it fails the open.
var errTxnIndexDamaged = errors.New("log: damaged txnindex")

// loadTxnIndex reads the segment's .txnindex, if any. A missing one is
// empty; a damaged one is reported as errTxnIndexDamaged (the partition
// rebuilds entries for markers after its producer snapshot, so only older
// aborts are lost); any other error (the file cannot be opened or read) is
// returned as it is, and the caller must not touch the file.
func (s *segment) loadTxnIndex(fs vfs.FS) error {
	name := s.path(".txnindex")
	f, err := fs.Open(name)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("log: open %s: %w", name, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return fmt.Errorf("log: size of %s: %w", name, err)
	}
	logSize, err := s.h.size()
	if err != nil {
		return fmt.Errorf("log: size of segment %d: %w", s.baseOffset, err)
	}
	// An entry needs a marker batch in the segment, larger than the entry:
	// a transaction index larger than its segment is damage.
	if size > max(maxIndexFileBytes, logSize) {
		return fmt.Errorf("%w: %s is %d bytes, its segment %d", errTxnIndexDamaged, name, size, logSize)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("log: read %s: %w", name, err)
	}
	entries, err := unmarshalTxnIndex(b)
	if err != nil {
		return fmt.Errorf("%w: %v", errTxnIndexDamaged, err)
	}
	s.aborted = entries
	return nil
}

// writeTxnIndex persists the segment's entries whole (write temp, fsync,
// rename), or removes the file when there are none. Only recovery uses it,
// to cut entries whose markers are gone; aborts append (appendTxnIndex).
func (s *segment) writeTxnIndex(fs vfs.FS) error {
	if len(s.aborted) == 0 {
		if err := vfs.Remove(fs, s.path(".txnindex")); err != nil && !isNotExist(err) {
			return err
		}
		return nil
	}
	return vfs.WriteFileAtomic(fs, s.dir, s.path(".txnindex"), marshalTxnIndex(s.aborted))
}

// appendTxnIndex appends e to the segment's .txnindex and fsyncs it, as
// Kafka's TransactionIndex.append: one entry written per abort, not the
// whole file. Bytes past the entries in memory (a torn append before a
// crash, or a failed one) are cut first. The first entry creates the file
// durably (write a temporary file, fsync, rename, fsync the directory), so
// that it never exists without a whole entry. The caller adds e to
// s.aborted once it returns nil.
func (s *segment) appendTxnIndex(fs vfs.FS, e AbortedTxn) error {
	name := s.path(".txnindex")
	entry := marshalTxnIndex([]AbortedTxn{e})
	_, err := fs.Stat(name)
	if isNotExist(err) && len(s.aborted) == 0 {
		return vfs.WriteFileAtomic(fs, s.dir, name, entry)
	}
	if err != nil {
		return err
	}
	f, err := fs.OpenAppend(name)
	if err != nil {
		return err
	}
	defer f.Close()
	want := int64(len(s.aborted)) * txnIndexEntryBytes
	size, err := f.Size()
	if err != nil {
		return err
	}
	if size != want {
		if err := f.Truncate(want); err != nil {
			return err
		}
	}
	if _, err := f.Write(entry); err != nil {
		_ = f.Truncate(want)
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Truncate(want)
		return err
	}
	return nil
}

// AppendAborted records an aborted transaction whose abort marker is at
// e.LastOffset, in the .txnindex of the segment holding the marker. The
// entry is durable when it returns. Entries must come in marker order; one
// at or below the last recorded marker is ignored (a replay at start).
func (l *Log) AppendAborted(e AbortedTxn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if last, ok := l.lastAbortedLocked(); ok && e.LastOffset <= last.LastOffset {
		return nil
	}
	i := sort.Search(len(l.segments), func(i int) bool { return l.segments[i].baseOffset > e.LastOffset }) - 1
	if i < 0 {
		return fmt.Errorf("log: abort marker %d is below the log start", e.LastOffset)
	}
	seg := l.segments[i]
	if err := seg.appendTxnIndex(l.fs, e); err != nil {
		return fmt.Errorf("%w: append to %s: %v", ErrStorage, filepath.Base(seg.path(".txnindex")), err)
	}
	seg.aborted = append(seg.aborted, e)
	return nil
}

func (l *Log) lastAbortedLocked() (AbortedTxn, bool) {
	for i := len(l.segments) - 1; i >= 0; i-- {
		if a := l.segments[i].aborted; len(a) > 0 {
			return a[len(a)-1], true
		}
	}
	return AbortedTxn{}, false
}

// AbortedTxns returns the aborted transactions that hold records in
// [from, to): those whose marker is at or after from and whose first
// offset is below to, in marker order (what a read_committed fetch of
// that range needs).
func (l *Log) AbortedTxns(from, to int64) []AbortedTxn {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []AbortedTxn
	i := sort.Search(len(l.segments), func(i int) bool { return l.segments[i].baseOffset > from }) - 1
	for i = max(i, 0); i < len(l.segments); i++ {
		for _, e := range l.segments[i].aborted {
			if e.LastOffset >= from && e.FirstOffset < to {
				out = append(out, e)
			}
		}
	}
	return out
}

// cutTxnIndexLocked drops entries whose marker is at or past end (the log
// was cut below them at recovery) and rewrites the files that changed.
func (l *Log) cutTxnIndexLocked(end int64) error {
	for _, s := range l.segments {
		n := len(s.aborted)
		for n > 0 && s.aborted[n-1].LastOffset >= end {
			n--
		}
		if n == len(s.aborted) {
			continue
		}
		s.aborted = s.aborted[:n]
		if err := s.writeTxnIndex(l.fs); err != nil {
			return fmt.Errorf("log: rewrite txnindex of segment %d: %w", s.baseOffset, err)
		}
	}
	return nil
}

// controlAt reads the control batch h at pos: its first record's type
// (from the key) and value.
func (s *segment) controlAt(h record.Header, pos int64) (Control, error) {
	if h.Size() > maxControlBatchBytes {
		return Control{}, fmt.Errorf("log: control batch at %d of segment %d is %d bytes, above %d", h.BaseOffset, s.baseOffset, h.Size(), maxControlBatchBytes)
	}
	b := make([]byte, h.Size())
	if _, err := s.h.readAt(b, pos); err != nil {
		return Control{}, fmt.Errorf("log: read control batch at %d of segment %d: %w", h.BaseOffset, s.baseOffset, err)
	}
	recs, err := record.Records(b, h, maxControlBatchBytes)
	if err != nil || len(recs) == 0 {
		return Control{}, fmt.Errorf("log: control batch at %d of segment %d: %d records, %v", h.BaseOffset, s.baseOffset, len(recs), err)
	}
	typ, err := record.ParseControlKey(recs[0].Key)
	return Control{Type: typ, Value: recs[0].Value}, err
}

// maxControlBatchBytes bounds a control batch read back (a marker is ~80 bytes).
const maxControlBatchBytes = 64 << 10
