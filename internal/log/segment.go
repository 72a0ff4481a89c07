package log

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// maxBatchBytes bounds the size of one stored batch that recovery will read
// into memory: a length field above it is corruption (socket.request.max.bytes).
const maxBatchBytes = 100 << 20

// scanChunkBytes is the read size used when scanning a segment at recovery.
const scanChunkBytes = 1 << 20

// segment is one .log file with its sparse indexes. The log's lock guards
// every field but size, which readers load atomically so that they never see
// bytes of a write in progress, and the atomics flushing and badIndex.
//
// Its indexes are in memory (index, timeIndex; files is nil) while it is
// the active segment and, once rolled, until the sync that writes its index
// files; from then on (flushed) they are read from the files on demand.
type segment struct {
	baseOffset int64
	dir        string
	logger     *slog.Logger // for a damaged index found by a lookup; nil logs nothing
	h          *fileHandle  // the .log file, opened on demand through the log's FileCache
	size       atomic.Int64
	nextOffset int64 // offset after the last batch in this segment

	index     offsetIndex
	timeIndex timeIndex
	files     *segmentIndexFiles // a flushed segment's index files; nil while in memory
	// bytesSinceIndex counts bytes appended since the last index entry.
	bytesSinceIndex int

	maxTimestamp         int64 // largest batch max timestamp, -1 if none
	offsetOfMaxTimestamp int64
	firstTimestamp       int64     // first batch's max timestamp, for segment.ms; -1 if empty or none
	created              time.Time // when this process created or opened the segment
	indexDirty           bool      // in-memory indexes differ from the files

	// flushed: a closed segment whose .log is fsynced, whose index files
	// are written and fsynced and whose directory entries are durable.
	// A segment is rolled unflushed; the next sync flushes it.
	flushed bool
	// flushing: a sync is making the segment durable outside the log's
	// lock: it is not deleted meanwhile.
	flushing atomic.Bool
	// badIndex: an index entry did not match the batch it points to (a
	// damaged index file). Lookups in the segment then walk its batches
	// from the start, and Close removes its index files so that the next
	// Open rebuilds them.
	badIndex atomic.Bool

	// recent remembers where the last batches are, so that fetches at the
	// tail (consumers that keep up) find their position without walking
	// batch headers from the last index entry. nil once flushed.
	recent *recentBatchRing

	// aborted is the segment's transaction index (.txnindex), in marker
	// order: the aborted transactions whose abort marker is in it.
	aborted []AbortedTxn
}

// recentBatches is how many of a segment's last batches are remembered.
const recentBatches = 64

type batchPos struct {
	base, last int64
	pos        int64
	size       int32
}

// recentBatchRing holds the last recentBatches batches of a segment.
type recentBatchRing struct {
	b    [recentBatches]batchPos
	next int // next slot to write; entries are in offset order from it
	len  int
}

func (r *recentBatchRing) add(b batchPos) {
	r.b[r.next] = b
	r.next = (r.next + 1) % recentBatches
	r.len = min(r.len+1, recentBatches)
}

// at returns the i-th remembered batch, oldest first.
func (r *recentBatchRing) at(i int) *batchPos {
	return &r.b[(r.next-r.len+i+recentBatches)%recentBatches]
}

// find looks off up among the remembered batches.
func (r *recentBatchRing) find(off int64) (batchPos, bool) {
	if r == nil || r.len == 0 || off < r.at(0).base {
		return batchPos{}, false
	}
	i := sort.Search(r.len, func(i int) bool { return r.at(i).last >= off })
	if i == r.len {
		return batchPos{}, false
	}
	return *r.at(i), true
}

func segmentName(base int64, ext string) string {
	return fmt.Sprintf("%020d%s", base, ext)
}

func parseSegmentName(name string) (int64, bool) {
	if !strings.HasSuffix(name, ".log") || len(name) != 24 {
		return 0, false
	}
	base, err := strconv.ParseInt(strings.TrimSuffix(name, ".log"), 10, 64)
	if err != nil || base < 0 {
		return 0, false
	}
	return base, true
}

func (s *segment) path(ext string) string {
	return filepath.Join(s.dir, segmentName(s.baseOffset, ext))
}

// newSegment opens (creating it if missing) the .log file of the segment
// at base, for appending; it stays open until the cache evicts it.
func newSegment(files *FileCache, fs vfs.FS, dir string, base int64, now time.Time) (*segment, error) {
	s := &segment{baseOffset: base, dir: dir, nextOffset: base, maxTimestamp: -1, offsetOfMaxTimestamp: -1,
		firstTimestamp: -1, created: now, recent: new(recentBatchRing)}
	h, err := files.createHandle(fs, s.path(".log"))
	if err != nil {
		return nil, fmt.Errorf("log: create segment %d: %w", base, err)
	}
	s.h = h
	return s, nil
}

// noteBatch updates the in-memory indexes and counters for a batch written
// at pos. As Kafka's LogSegment.append, both indexes are sparse: every
// index.interval.bytes the offset index gets the batch's position and the
// time index the largest timestamp so far with the offset of its batch
// (when larger than its last entry); finishTimeIndex adds the last one.
func (s *segment) noteBatch(h *record.Header, pos int64, indexInterval int) {
	if h.MaxTimestamp > s.maxTimestamp {
		s.maxTimestamp = h.MaxTimestamp
		s.offsetOfMaxTimestamp = h.LastOffset()
	}
	if s.bytesSinceIndex >= indexInterval || len(s.index.entries) == 0 && pos > 0 {
		s.index.add(uint32(h.BaseOffset-s.baseOffset), uint32(pos))
		s.addTimeEntry()
		s.bytesSinceIndex = 0
		s.indexDirty = true
	}
	s.bytesSinceIndex += h.Size()
	if pos == 0 {
		s.firstTimestamp = h.MaxTimestamp
	}
	s.nextOffset = h.LastOffset() + 1
	if s.recent == nil {
		s.recent = new(recentBatchRing)
	}
	s.recent.add(batchPos{base: h.BaseOffset, last: h.LastOffset(), pos: pos, size: int32(h.Size())})
}

// addTimeEntry adds the largest timestamp so far to the time index, if
// there is one and it is larger than the index's last (Kafka's
// TimeIndex.maybeAppend).
func (s *segment) addTimeEntry() {
	if s.offsetOfMaxTimestamp < 0 {
		return // no batch with a timestamp yet
	}
	n := len(s.timeIndex.entries)
	if n > 0 && s.timeIndex.entries[n-1].timestamp >= s.maxTimestamp {
		return
	}
	s.timeIndex.add(s.maxTimestamp, uint32(s.offsetOfMaxTimestamp-s.baseOffset))
	s.indexDirty = true
}

// finishTimeIndex adds the segment's largest timestamp to its time index,
// when the segment stops being active, is closed, or was scanned (Kafka's
// onBecomeInactiveSegment, close and recover): the last entry is what a
// reopened segment takes as its largest timestamp, for retention.
func (s *segment) finishTimeIndex() { s.addTimeEntry() }

// timeWaitedForRoll is how old the segment is for segment.ms, as Kafka's
// LogSegment measures it: when its first batch has a timestamp, the time
// from it to the timestamp of the batch about to be appended (so that the
// age survives restarts), else the time since the segment was created or
// opened by this process.
func (s *segment) timeWaitedForRoll(now time.Time, batchMaxTimestamp int64) int64 {
	if s.firstTimestamp >= 0 {
		return batchMaxTimestamp - s.firstTimestamp
	}
	return now.Sub(s.created).Milliseconds()
}

// scan reads the segment from the start, checking every batch (length,
// magic, CRC, offsets increasing), and rebuilds the indexes. It returns the
// position of the first bad byte, or the file size when all is well, and the
// reason it stopped.
func (s *segment) scan(indexInterval int) (validEnd int64, reason error) {
	f, err := s.h.acquire()
	if err != nil {
		return 0, fmt.Errorf("log: segment %d: %w", s.baseOffset, err)
	}
	defer s.h.release()
	size, err := f.Size()
	if err != nil {
		return 0, fmt.Errorf("log: size of segment %d: %w", s.baseOffset, err)
	}
	s.dropIndexFiles()
	s.index = offsetIndex{}
	s.timeIndex = timeIndex{}
	s.bytesSinceIndex = 0
	s.maxTimestamp, s.offsetOfMaxTimestamp, s.firstTimestamp = -1, -1, -1
	s.nextOffset = s.baseOffset
	s.indexDirty = true
	s.recent = new(recentBatchRing)
	s.badIndex.Store(false)

	buf := make([]byte, scanChunkBytes)
	var pos int64
	for pos < size {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-pos)], pos)
		if err != nil && !errors.Is(err, io.EOF) {
			return pos, fmt.Errorf("read at %d: %w", pos, err)
		}
		chunk := buf[:n]
		consumed := 0
		for {
			rest := chunk[consumed:]
			bsize, ok := record.PeekSize(rest)
			if !ok {
				break
			}
			if bsize < record.HeaderSize || bsize > maxBatchBytes {
				return pos + int64(consumed), fmt.Errorf("batch length %d at position %d", bsize, pos+int64(consumed))
			}
			if pos+int64(consumed)+int64(bsize) > size {
				return pos + int64(consumed), fmt.Errorf("torn batch at position %d: %d bytes claimed, %d left", pos+int64(consumed), bsize, size-pos-int64(consumed))
			}
			if bsize > len(rest) {
				if consumed == 0 {
					// A batch larger than the buffer: grow for it.
					buf = make([]byte, bsize)
				}
				break
			}
			h, err := record.Parse(rest[:bsize])
			if err != nil {
				return pos + int64(consumed), fmt.Errorf("at position %d: %w", pos+int64(consumed), err)
			}
			// Offsets never go backwards and stay within 32 bits of the
			// segment's base (the index holds relative offsets). Gaps are
			// fine: the log cleaner leaves them, as Kafka's does.
			if h.BaseOffset < s.nextOffset || h.LastOffset() < h.BaseOffset || h.LastOffset()-s.baseOffset > math.MaxInt32 {
				return pos + int64(consumed), fmt.Errorf("at position %d: batch offsets %d..%d, expected at least %d and at most %d",
					pos+int64(consumed), h.BaseOffset, h.LastOffset(), s.nextOffset, s.baseOffset+math.MaxInt32)
			}
			s.noteBatch(&h, pos+int64(consumed), indexInterval)
			consumed += bsize
		}
		if consumed == 0 && len(chunk) < record.LogOverhead {
			return pos, fmt.Errorf("torn batch header at position %d", pos)
		}
		pos += int64(consumed)
	}
	s.finishTimeIndex()
	return pos, nil
}

// loadIndexes checks the .index and .timeindex files of a segment trusted
// to be whole (below the recovery point, or after a clean shutdown) and
// takes its next offset and timestamps from them. inMemory reads them
// whole into memory (the active segment); otherwise lookups read the files
// on demand. The checks are those that cost a few reads, not a pass over
// the files: the sizes, the last offset index entry against the batch it
// points to, the batches after it up to the end, the last time index entry
// against its batch and those. Lookups check each entry they use too (see
// positionOf). On any problem it reports an error and the caller rescans.
func (s *segment) loadIndexes(fs vfs.FS, inMemory bool) error {
	err := s.loadIndexesUnchecked(fs, inMemory)
	if err != nil {
		s.dropIndexFiles()
		s.index, s.timeIndex = offsetIndex{}, timeIndex{}
	}
	return err
}

func (s *segment) loadIndexesUnchecked(fs vfs.FS, inMemory bool) error {
	size, err := s.h.size()
	if err != nil {
		return err
	}
	s.size.Store(size)
	s.dropIndexFiles()
	s.index, s.timeIndex = offsetIndex{}, timeIndex{}
	s.nextOffset = s.baseOffset
	s.maxTimestamp, s.offsetOfMaxTimestamp, s.firstTimestamp = -1, -1, -1
	s.indexDirty = false
	s.badIndex.Store(false)
	if size == 0 {
		// An empty segment (a new partition, or the active segment just
		// after a roll) has nothing to index.
		return nil
	}
	var tb []byte
	if inMemory {
		ib, err := readAll(fs, s.path(".index"))
		if err != nil {
			return err
		}
		if s.index, err = unmarshalOffsetIndex(ib, size); err != nil {
			return err
		}
		if tb, err = readAll(fs, s.path(".timeindex")); err != nil {
			return err
		}
	} else {
		files := &segmentIndexFiles{}
		for _, x := range []struct {
			ext        string
			entryBytes int
			to         **indexFile
		}{{".index", offsetIndexEntryBytes, &files.offsets}, {".timeindex", timeIndexEntryBytes, &files.times}} {
			fi, err := fs.Stat(s.path(x.ext))
			if err != nil {
				return err
			}
			if fi.Size()%int64(x.entryBytes) != 0 {
				return fmt.Errorf("log: %s is %d bytes, not a multiple of %d", x.ext, fi.Size(), x.entryBytes)
			}
			*x.to = newIndexFile(s.h.c, fs, s.path(x.ext), x.entryBytes, fi.Size())
		}
		s.files = files
		s.recent = nil
	}
	// The batches from the last indexed one to the end tell the segment's
	// next offset, and their largest timestamp.
	start := int64(0)
	if e, ok, err := s.lastOffsetEntry(); err != nil {
		return err
	} else if ok {
		if ok, err := s.checkOffsetEntry(e, size); err != nil || !ok {
			return errors.Join(fmt.Errorf("log: last index entry (%d at %d) does not point to its batch", e.relOffset, e.position), err)
		}
		start = int64(e.position)
	}
	last, tailMax, err := s.lastBatchFrom(start, size)
	if err != nil {
		return err
	}
	lastRel := uint32(last.LastOffset() - s.baseOffset)
	if inMemory {
		if s.timeIndex, err = unmarshalTimeIndex(tb, lastRel); err != nil {
			return err
		}
	}
	first, err := s.headerAt(0)
	if err != nil {
		return err
	}
	s.nextOffset = last.LastOffset() + 1
	s.firstTimestamp = first.MaxTimestamp
	// The last time index entry is the segment's largest timestamp (one is
	// added when a segment is rolled or closed): it must be at its batch
	// and at least every timestamp seen.
	te, ok, err := s.lastTimeEntry()
	if err != nil {
		return err
	}
	if !ok {
		if tailMax >= 0 || first.MaxTimestamp >= 0 {
			return fmt.Errorf("log: empty time index, batches with timestamps")
		}
		return nil // (no lookup used the offset index but to check its last entry)
	}
	if te.relOffset > lastRel || te.timestamp < tailMax || te.timestamp < first.MaxTimestamp {
		return fmt.Errorf("log: last time index entry (%d at %d) is not the largest timestamp", te.timestamp, te.relOffset)
	}
	if ok, err := s.checkTimeEntry(te, size); err != nil || !ok {
		return errors.Join(fmt.Errorf("log: last time index entry (%d at %d) does not match its batch", te.timestamp, te.relOffset), err)
	}
	if s.badIndex.Load() {
		return fmt.Errorf("log: index entries do not match their batches")
	}
	s.maxTimestamp, s.offsetOfMaxTimestamp = te.timestamp, s.baseOffset+int64(te.relOffset)
	return nil
}

// activate makes a flushed segment the active one again (recovery dropped
// the segments after it): its indexes are read into memory, or rebuilt
// when that fails.
func (s *segment) activate(fs vfs.FS, indexInterval int) error {
	if s.files == nil {
		return nil
	}
	if err := s.loadIndexes(fs, true); err == nil {
		s.recent = new(recentBatchRing)
		return nil
	}
	size := s.size.Load()
	if validEnd, reason := s.scan(indexInterval); validEnd != size || reason != nil {
		return fmt.Errorf("log: rescan segment %d: ends at %d of %d: %v", s.baseOffset, validEnd, size, reason)
	}
	return nil
}

// lastBatchFrom walks batch headers from pos to the end and returns the
// last, and the largest max timestamp of those it read (-1 if none).
func (s *segment) lastBatchFrom(pos, size int64) (record.Header, int64, error) {
	var last record.Header
	found := false
	maxTs := int64(-1)
	for pos < size {
		h, err := s.headerAt(pos)
		if err != nil {
			return last, maxTs, err
		}
		last, found = h, true
		maxTs = max(maxTs, h.MaxTimestamp)
		pos += int64(h.Size())
	}
	if !found || pos != size {
		return last, maxTs, fmt.Errorf("log: segment %d does not end on a batch boundary", s.baseOffset)
	}
	return last, maxTs, nil
}

// headerAt reads the batch header at pos without checking the CRC.
func (s *segment) headerAt(pos int64) (record.Header, error) {
	var b [record.HeaderSize]byte
	if _, err := s.h.readAt(b[:], pos); err != nil {
		return record.Header{}, fmt.Errorf("log: read batch header at %d of segment %d: %w", pos, s.baseOffset, err)
	}
	return record.ParseHeader(b[:])
}

// writeIndexFiles writes the in-memory indexes to the segment's .index and
// .timeindex (each to a temporary file, fsynced, renamed over the old). The
// caller fsyncs the directory. It reads the indexes without changing them:
// it may run outside the log's lock for a segment no longer appended to.
func (s *segment) writeIndexFiles(fs vfs.FS) error {
	for _, f := range []struct {
		ext  string
		data []byte
	}{{".index", s.index.marshal()}, {".timeindex", s.timeIndex.marshal()}} {
		if err := writeSynced(fs, s.path(f.ext)+".tmp", f.data); err != nil {
			return err
		}
		if err := fs.Rename(s.path(f.ext)+".tmp", s.path(f.ext)); err != nil {
			return fmt.Errorf("log: rename %s: %w", s.path(f.ext)+".tmp", err)
		}
	}
	return nil
}

// useIndexFiles drops the in-memory indexes of a closed segment whose index
// files are written: lookups read them from now on. Called with the log's
// lock held.
func (s *segment) useIndexFiles(fs vfs.FS) {
	s.dropIndexFiles()
	s.files = &segmentIndexFiles{
		offsets: newIndexFile(s.h.c, fs, s.path(".index"), offsetIndexEntryBytes, int64(len(s.index.entries))*offsetIndexEntryBytes),
		times:   newIndexFile(s.h.c, fs, s.path(".timeindex"), timeIndexEntryBytes, int64(len(s.timeIndex.entries))*timeIndexEntryBytes),
	}
	s.index, s.timeIndex = offsetIndex{}, timeIndex{}
	s.indexDirty = false
	s.recent = nil
}

func (s *segment) dropIndexFiles() {
	if s.files != nil {
		s.files.close()
		s.files = nil
	}
}

// closeFiles closes the segment's files, now or when the operations
// holding them end; they are never reopened.
func (s *segment) closeFiles() {
	s.h.retire()
	if s.files != nil {
		s.files.close()
	}
}

// markGone says the segment was deleted or replaced: its files are never
// reopened (their names may be another segment's now), and close once
// idle or at closeFiles.
func (s *segment) markGone() {
	s.h.markGone()
	if s.files != nil {
		s.files.offsets.h.markGone()
		s.files.times.h.markGone()
	}
}

// markBadIndex records that the segment's index is damaged or cannot be
// read: lookups stop using it (they walk the segment's batches from its
// start, slower but right), and Close removes its files for the next Open
// to rebuild.
func (s *segment) markBadIndex(why error) {
	if s.badIndex.CompareAndSwap(false, true) && s.logger != nil {
		s.logger.Warn("damaged index: reading the segment without it until it is rebuilt at the next start",
			"segment", s.path(".log"), "reason", why)
	}
}

func (s *segment) lastOffsetEntry() (offsetEntry, bool, error) {
	if s.files == nil {
		if n := len(s.index.entries); n > 0 {
			return s.index.entries[n-1], true, nil
		}
		return offsetEntry{}, false, nil
	}
	b, ok, err := s.files.offsets.last()
	if !ok || err != nil {
		return offsetEntry{}, false, err
	}
	return getOffsetEntry(b), true, nil
}

func (s *segment) lastTimeEntry() (timeEntry, bool, error) {
	if s.files == nil {
		if n := len(s.timeIndex.entries); n > 0 {
			return s.timeIndex.entries[n-1], true, nil
		}
		return timeEntry{}, false, nil
	}
	b, ok, err := s.files.times.last()
	if !ok || err != nil {
		return timeEntry{}, false, err
	}
	return getTimeEntry(b), true, nil
}

// offsetAtOrBelow returns the index entry with the largest offset at or
// below rel, unchecked.
func (s *segment) offsetAtOrBelow(rel uint32) (offsetEntry, bool, error) {
	if s.files == nil {
		e, ok := s.index.atOrBelow(rel)
		return e, ok, nil
	}
	b, ok, err := s.files.offsets.search(func(b []byte) bool { return getOffsetEntry(b).relOffset > rel })
	if !ok || err != nil {
		return offsetEntry{}, false, err
	}
	return getOffsetEntry(b), true, nil
}

// offsetAtOrBelowPosition returns the index entry with the largest
// position at or below pos, unchecked.
func (s *segment) offsetAtOrBelowPosition(pos uint32) (offsetEntry, bool, error) {
	if s.files == nil {
		e, ok := s.index.atOrBelowPosition(pos)
		return e, ok, nil
	}
	b, ok, err := s.files.offsets.search(func(b []byte) bool { return getOffsetEntry(b).position > pos })
	if !ok || err != nil {
		return offsetEntry{}, false, err
	}
	return getOffsetEntry(b), true, nil
}

// timeBelow returns the last time index entry with a timestamp below ts,
// unchecked.
func (s *segment) timeBelow(ts int64) (timeEntry, bool, error) {
	if s.files == nil {
		e, ok := s.timeIndex.below(ts)
		return e, ok, nil
	}
	b, ok, err := s.files.times.search(func(b []byte) bool { return getTimeEntry(b).timestamp >= ts })
	if !ok || err != nil {
		return timeEntry{}, false, err
	}
	return getTimeEntry(b), true, nil
}

// checkOffsetEntry tells whether an offset index entry points to a batch
// that starts at its offset and ends within the segment. An error is one
// reading the segment, not a mismatch.
func (s *segment) checkOffsetEntry(e offsetEntry, size int64) (bool, error) {
	pos := int64(e.position)
	if pos+record.HeaderSize > size {
		return false, nil
	}
	var b [record.HeaderSize]byte
	if _, err := s.h.readAt(b[:], pos); err != nil {
		return false, fmt.Errorf("log: read batch header at %d of segment %d: %w", pos, s.baseOffset, err)
	}
	h, err := record.ParseHeader(b[:])
	return err == nil && h.BaseOffset == s.baseOffset+int64(e.relOffset) && h.LastOffset() >= h.BaseOffset &&
		pos+int64(h.Size()) <= size, nil
}

// checkTimeEntry tells whether a time index entry is at a batch whose max
// timestamp it holds, as every entry written is (noteBatch).
func (s *segment) checkTimeEntry(e timeEntry, size int64) (bool, error) {
	off := s.baseOffset + int64(e.relOffset)
	pos, h, found, err := s.positionOf(off, size)
	if err != nil || !found || h.BaseOffset > off {
		return false, err
	}
	full, err := s.headerAt(pos)
	if err != nil {
		return false, err
	}
	return full.MaxTimestamp == e.timestamp, nil
}

// startPosition returns where to start walking batch headers for off: the
// position of the indexed batch with the largest offset at or below off,
// when it checks out against the batch there, else 0.
func (s *segment) startPosition(off, size int64) (int64, error) {
	if s.badIndex.Load() {
		return 0, nil
	}
	e, ok, err := s.offsetAtOrBelow(uint32(off - s.baseOffset))
	if errors.Is(err, errIndexOpen) {
		return 0, err
	}
	if err != nil {
		s.markBadIndex(err)
		return 0, nil
	}
	if !ok {
		return 0, nil
	}
	if ok, err := s.checkOffsetEntry(e, size); err != nil {
		return 0, err
	} else if !ok {
		s.markBadIndex(fmt.Errorf("index entry %d at %d does not start a batch with that offset", e.relOffset, e.position))
		return 0, nil
	}
	return int64(e.position), nil
}

// positionAtOrBelow returns the largest indexed position at or below pos
// and above from, checked, or from (a batch boundary).
func (s *segment) positionAtOrBelow(pos, from, size int64) (int64, error) {
	if s.badIndex.Load() {
		return from, nil
	}
	e, ok, err := s.offsetAtOrBelowPosition(uint32(min(pos, math.MaxUint32)))
	if errors.Is(err, errIndexOpen) {
		return from, err
	}
	if err != nil {
		s.markBadIndex(err)
		return from, nil
	}
	if !ok || int64(e.position) <= from {
		return from, nil
	}
	if ok, err := s.checkOffsetEntry(e, size); err != nil {
		return from, err
	} else if !ok {
		s.markBadIndex(fmt.Errorf("index entry %d at %d does not start a batch with that offset", e.relOffset, e.position))
		return from, nil
	}
	return int64(e.position), nil
}

// timeLookupStart returns the offset from which to read for the first
// record with a timestamp at or after ts: that of the last time index entry
// below ts (every record up to it is older than ts) when it checks out
// against its batch, else the segment's base.
func (s *segment) timeLookupStart(ts, size int64) (int64, error) {
	if s.badIndex.Load() {
		return s.baseOffset, nil
	}
	e, ok, err := s.timeBelow(ts)
	if errors.Is(err, errIndexOpen) {
		return s.baseOffset, err
	}
	if err != nil {
		s.markBadIndex(err)
		return s.baseOffset, nil
	}
	if !ok {
		return s.baseOffset, nil
	}
	if ok, err := s.checkTimeEntry(e, size); err != nil {
		return s.baseOffset, err
	} else if !ok {
		s.markBadIndex(fmt.Errorf("time index entry %d at %d does not match its batch", e.timestamp, e.relOffset))
		return s.baseOffset, nil
	}
	return s.baseOffset + int64(e.relOffset), nil
}

// positionOf returns the byte position of the first batch that holds an
// offset at or above off, or the segment's size when there is none. For a
// recent batch the header returned carries only its offsets and length.
func (s *segment) positionOf(off int64, size int64) (int64, record.Header, bool, error) {
	if off < s.baseOffset {
		off = s.baseOffset
	}
	if b, ok := s.recent.find(off); ok && b.pos+int64(b.size) <= size {
		h := record.Header{BaseOffset: b.base, LastOffsetDelta: int32(b.last - b.base), BatchLength: b.size - record.LogOverhead}
		return b.pos, h, true, nil
	}
	pos, err := s.startPosition(off, size)
	if err != nil {
		return 0, record.Header{}, false, err
	}
	for pos < size {
		h, err := s.headerAt(pos)
		if err != nil {
			return 0, h, false, err
		}
		if h.LastOffset() >= off {
			return pos, h, true, nil
		}
		pos += int64(h.Size())
	}
	return size, record.Header{}, false, nil
}

func readAll(fs vfs.FS, name string) ([]byte, error) {
	return vfs.ReadFile(fs, name, maxIndexFileBytes)
}

// maxIndexFileBytes bounds what is read of an index or checkpoint file.
const maxIndexFileBytes = 64 << 20
