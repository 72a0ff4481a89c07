package log

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/sluice-io/sluice/internal/vfs"
)

// Truncation is what a follower does to its log when it finds that its
// suffix diverges from its leader's (KIP-101, KIP-279: the offset comes from
// OffsetForLeaderEpoch, or the high watermark), and when it must start over
// at the leader's log start (Kafka's UnifiedLog.truncateTo and
// truncateFullyAndStartAt, LocalLog and LogSegment.truncateTo).
//
// A truncation is durable when it returns: the segments above the offset
// are unlinked and the directory fsynced, then the segment holding the
// offset is cut and fsynced, so that a power cut can bring back none of
// the suffix. The order is chosen so that a crash in the middle leaves a
// prefix of the old log, never a log with a hole: the segments above go
// first (top down), the cut comes last.
//
// It waits for a cleaning pass to end (one in progress is told to give up
// at its next read or write, ErrCleanAborted, unless it is past its commit
// point) and for a sync in flight, and takes the log's lock for the rest:
// appends, reads and syncs wait meanwhile. A reader handed a segment file
// by Read before the truncation keeps it: a deleted segment's file stays
// open until file.delete.delay.ms, but the bytes of the segment that is cut
// are cut under such a reader, which may read fewer bytes than it was told
// (or, once the log grows again, new batches), as with Kafka.

// ErrNotBatchBoundary: TruncateTo was given an offset inside a batch. The
// offsets a follower truncates to (an epoch's end offset from its leader,
// a high watermark, a log end offset) are batch boundaries: anything else
// is refused rather than rounded down to the batch's start.
var ErrNotBatchBoundary = errors.New("log: truncation offset is inside a batch")

// TruncateTo removes every batch at or after offset and makes that durable
// before it returns; the log end offset becomes offset and appends continue
// there. offset must be a batch boundary: a batch's base offset, an offset
// in a gap the log cleaner left, or the log end offset; one inside a batch
// is refused with ErrNotBatchBoundary and nothing changes (Kafka would cut
// the whole batch). An offset at or past the log end offset changes
// nothing; one at or below the log start offset empties the log as
// TruncateFullyAndStartAt(offset) does.
//
// Segments wholly at or past offset are deleted (their files are closed
// after file.delete.delay.ms, so that readers holding them finish); the
// segment holding offset is cut and becomes the active segment, its index
// entries and transaction index entries at or past offset dropped. What is
// left is durable: segments rolled and not yet synced below the cut are
// fsynced first, and the durable offset becomes offset. The cleaner's
// first dirty offset and the segments' in-memory state move back with the
// end.
//
// A failure to open the file to cut (too many open files) changes nothing;
// any failure past that (a remove, a truncate, an fsync) takes the log's
// directory offline (ErrStorage), as a failed append does: the next start
// recovers a prefix of the log as it was.
func (l *Log) TruncateTo(offset int64) error {
	if offset < 0 {
		return fmt.Errorf("%w: truncate to %d", ErrOffsetOutOfRange, offset)
	}
	unlock := l.lockForTruncation()
	defer unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.unwritableLocked(); err != nil {
		return err
	}
	if offset >= l.next.Load() {
		return nil
	}
	if offset <= l.logStart {
		return l.truncateFullyLocked(offset)
	}
	i, pos, err := l.cutPositionLocked(offset)
	if err != nil {
		return err
	}
	seg := l.segments[i]
	// Read before anything changes: a closed segment's indexes are in its
	// index files, removed below.
	x, t, indexed := seg.indexesInMemory(l.fs)
	// A closed segment's file is open read-only: the cut and later
	// appends take a new handle, opened before anything changes.
	newH := seg.h
	if i < len(l.segments)-1 {
		h, err := l.files.createHandle(l.fs, seg.path(".log"))
		if err != nil {
			return fmt.Errorf("%w: open segment %d to truncate it: %w", ErrStorage, seg.baseOffset, err)
		}
		newH = h
	}
	// From here on the log changes: a failure fails it.
	fail := func(err error) error {
		if newH != seg.h {
			newH.retire()
		}
		err = fmt.Errorf("truncate to %d: %w", offset, err)
		l.fail(err)
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	// The segments rolled below the cut and not yet flushed are flushed
	// first, as a sync would: the directory fsync below must not make the
	// cut segment's name durable while data before it is not (a crash
	// would leave a hole).
	for _, s := range l.segments[:i] {
		if !s.flushed {
			if err := l.flushRecovered(s); err != nil {
				return fail(err)
			}
		}
	}
	// The segments above, top down, with the cut segment's index files
	// (stale now: rebuilt from the data at the next start, or written at a
	// clean close), then the directory.
	later := l.segments[i+1:]
	for j := len(later) - 1; j >= 0; j-- {
		if err := l.removeSegmentFiles(later[j]); err != nil {
			return fail(err)
		}
	}
	for _, ext := range []string{".timeindex", ".index"} {
		if err := l.fs.Remove(seg.path(ext)); err != nil && !isNotExist(err) {
			return fail(fmt.Errorf("remove %s: %w", seg.path(ext), err))
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fail(fmt.Errorf("fsync dir: %w", err))
	}
	l.segments = l.segments[:i+1]
	for _, s := range later {
		l.closeLater(s)
	}
	// The cut.
	if err := newH.truncate(pos); err != nil {
		return fail(fmt.Errorf("truncate segment %d: %w", seg.baseOffset, err))
	}
	if err := newH.sync(); err != nil {
		return fail(fmt.Errorf("fsync segment %d: %w", seg.baseOffset, err))
	}
	if newH != seg.h {
		// The read-only handle goes as a deleted segment's does: readers
		// holding it finish, and it is never reopened.
		l.closeLater(&segment{baseOffset: seg.baseOffset, dir: seg.dir, h: seg.h, files: seg.files})
		seg.h, seg.files = newH, nil
	}
	seg.size.Store(pos)
	seg.h.setWritable(true)
	if err := seg.cutTo(x, t, indexed, pos, offset, l.cfg.IndexIntervalBytes, l.now()); err != nil {
		return fail(err)
	}
	l.next.Store(offset)
	if err := l.cutTxnIndexLocked(offset); err != nil {
		return fail(err)
	}
	l.afterTruncationLocked(offset)
	return nil
}

// CheckTruncation tells whether TruncateTo(offset) would refuse the
// offset itself (ErrNotBatchBoundary, ErrOffsetOutOfRange), without
// changing anything: for a caller with state of its own to cut first.
func (l *Log) CheckTruncation(offset int64) error {
	if offset < 0 {
		return fmt.Errorf("%w: truncate to %d", ErrOffsetOutOfRange, offset)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	if offset >= l.next.Load() || offset <= l.logStart {
		return nil
	}
	_, _, err := l.cutPositionLocked(offset)
	return err
}

// cutPositionLocked finds where TruncateTo cuts for offset, between the
// log start and end offsets: the index of the segment holding it (the
// last starting at or below it; the first starts at or below the log
// start) and the byte position of the first batch at or past it there
// (its size when none is). Called with mu held.
func (l *Log) cutPositionLocked(offset int64) (i int, pos int64, err error) {
	i = sort.Search(len(l.segments), func(i int) bool { return l.segments[i].baseOffset > offset }) - 1
	seg := l.segments[i]
	size := seg.size.Load()
	if offset >= seg.nextOffset {
		return i, size, nil
	}
	p, h, ok, err := seg.positionOf(offset, size)
	if err != nil {
		return 0, 0, fmt.Errorf("log: truncate to %d: %w", offset, err)
	}
	if !ok {
		return i, size, nil
	}
	if h.BaseOffset < offset {
		return 0, 0, fmt.Errorf("%w: %d is in the batch %d..%d", ErrNotBatchBoundary, offset, h.BaseOffset, h.LastOffset())
	}
	return i, p, nil
}

// TruncateFullyAndStartAt deletes every segment and starts an empty log
// whose start and end offsets are offset (a follower whose fetch offset is
// below its leader's log start offset). It is durable when it returns. A
// failure after the first file is removed takes the log's directory
// offline (ErrStorage); the next start finds an empty log, or a prefix of
// the old one.
func (l *Log) TruncateFullyAndStartAt(offset int64) error {
	if offset < 0 {
		return fmt.Errorf("%w: start at %d", ErrOffsetOutOfRange, offset)
	}
	unlock := l.lockForTruncation()
	defer unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.unwritableLocked(); err != nil {
		return err
	}
	return l.truncateFullyLocked(offset)
}

// lockForTruncation stops cleaning passes and syncs and takes mu, in the
// lock order (cleanMu, the syncer's turn, mu); it returns the unlock.
func (l *Log) lockForTruncation() (unlock func()) {
	l.rewrites.Add(1)
	l.truncating.Add(1)
	l.cleanMu.Lock()
	l.truncating.Add(-1)
	l.stopSyncs()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		l.resumeSyncs()
		l.cleanMu.Unlock()
	}
}

// truncateFullyLocked replaces every segment by an empty one at offset.
// Called with mu held, cleaning and syncs stopped.
func (l *Log) truncateFullyLocked(offset int64) error {
	fail := func(err error) error {
		err = fmt.Errorf("truncate fully and start at %d: %w", offset, err)
		l.fail(err)
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	old := l.segments
	for j := len(old) - 1; j >= 0; j-- {
		if err := l.removeSegmentFiles(old[j]); err != nil {
			return fail(err)
		}
	}
	// Removed first: the new segment may take an old one's name.
	seg, err := newSegment(l.files, l.fs, l.dir, offset, l.now())
	if err != nil {
		return fail(err)
	}
	seg.logger = l.logger
	if err := l.fs.SyncDir(l.dir); err != nil {
		seg.closeFiles()
		return fail(fmt.Errorf("fsync dir: %w", err))
	}
	l.segments = []*segment{seg}
	for _, s := range old {
		l.closeLater(s)
	}
	l.dirDirty.Store(false)
	l.next.Store(offset)
	l.logStart = offset
	l.horizon, l.horizonKnown = -1, true
	l.firstDirty = offset
	l.durable.Store(offset)
	return nil
}

// afterTruncationLocked moves back what the log keeps of its end: all of
// it is durable now.
func (l *Log) afterTruncationLocked(end int64) {
	l.durable.Store(end)
	l.firstDirty = min(l.firstDirty, end)
}

// removeSegmentFiles unlinks a segment's files, its .log last; the caller
// fsyncs the directory.
func (l *Log) removeSegmentFiles(s *segment) error {
	for _, ext := range []string{".txnindex", ".timeindex", ".index", ".log"} {
		if err := l.fs.Remove(s.path(ext)); err != nil && !isNotExist(err) {
			return fmt.Errorf("remove %s: %w", s.path(ext), err)
		}
	}
	return nil
}

// indexesInMemory returns a copy of the segment's indexes: its in-memory
// ones while it is active or unflushed, else those read from its index
// files. ok is false when the files cannot be read or are damaged.
func (s *segment) indexesInMemory(fs vfs.FS) (offsetIndex, timeIndex, bool) {
	if s.badIndex.Load() {
		return offsetIndex{}, timeIndex{}, false
	}
	if s.files == nil {
		return offsetIndex{entries: slices.Clone(s.index.entries)}, timeIndex{entries: slices.Clone(s.timeIndex.entries)}, true
	}
	size := s.size.Load()
	if size == 0 || s.nextOffset <= s.baseOffset {
		return offsetIndex{}, timeIndex{}, size == 0
	}
	ib, err := readAll(fs, s.path(".index"))
	if err != nil {
		return offsetIndex{}, timeIndex{}, false
	}
	x, err := unmarshalOffsetIndex(ib, size)
	if err != nil {
		return offsetIndex{}, timeIndex{}, false
	}
	tb, err := readAll(fs, s.path(".timeindex"))
	if err != nil {
		return offsetIndex{}, timeIndex{}, false
	}
	t, err := unmarshalTimeIndex(tb, uint32(s.nextOffset-1-s.baseOffset))
	if err != nil {
		return offsetIndex{}, timeIndex{}, false
	}
	return x, t, true
}

// cutTo makes the segment, whose file is cut to pos bytes, end at offset
// next, as the active segment: its indexes (x and t, from indexesInMemory;
// indexed false when they could not be had) drop the entries past the cut
// and stay in memory, and its largest timestamp is taken again from the
// last time index entry kept and the batches after the last offset index
// entry kept, as Kafka's LogSegment.truncateTo does. When the indexes do
// not match the batches the segment is rescanned instead. Called with the
// log's lock held.
func (s *segment) cutTo(x offsetIndex, t timeIndex, indexed bool, pos, next int64, indexInterval int, now time.Time) error {
	s.dropIndexFiles()
	s.recent = new(recentBatchRing)
	s.indexDirty = true
	s.flushed = false
	s.bytesSinceIndex = 0
	s.maxTimestamp, s.offsetOfMaxTimestamp = -1, -1
	s.index, s.timeIndex = offsetIndex{}, timeIndex{}
	if pos == 0 {
		s.nextOffset = next
		s.firstTimestamp = -1
		s.created = now
		return nil
	}
	if indexed && s.cutIndexes(x, t, pos, next) {
		s.nextOffset = next
		return nil
	}
	validEnd, reason := s.scan(indexInterval)
	if validEnd != pos || reason != nil {
		return fmt.Errorf("rescan segment %d after the cut: it ends at %d of %d: %v", s.baseOffset, validEnd, pos, reason)
	}
	s.nextOffset = next
	return nil
}

// cutIndexes installs x and t less their entries at or past the cut and
// recomputes the largest timestamp; false says the batches after the last
// entry kept do not end at pos below next (the index was wrong).
func (s *segment) cutIndexes(x offsetIndex, t timeIndex, pos, next int64) bool {
	rel := next - s.baseOffset
	n := len(x.entries)
	for n > 0 && (int64(x.entries[n-1].position) >= pos || int64(x.entries[n-1].relOffset) >= rel) {
		n--
	}
	m := len(t.entries)
	for m > 0 && int64(t.entries[m-1].relOffset) >= rel {
		m--
	}
	maxTs, maxOff := int64(-1), int64(-1)
	if m > 0 {
		e := t.entries[m-1]
		maxTs, maxOff = e.timestamp, s.baseOffset+int64(e.relOffset)
	}
	from := int64(0)
	if n > 0 {
		from = int64(x.entries[n-1].position)
	}
	p := from
	for p < pos {
		h, err := s.headerAt(p)
		if err != nil || h.LastOffset() >= next || h.BaseOffset < s.baseOffset {
			return false
		}
		if h.MaxTimestamp > maxTs {
			maxTs, maxOff = h.MaxTimestamp, h.LastOffset()
		}
		p += int64(h.Size())
	}
	if p != pos {
		return false
	}
	s.index.entries = x.entries[:n]
	s.timeIndex.entries = t.entries[:m]
	s.maxTimestamp, s.offsetOfMaxTimestamp = maxTs, maxOff
	s.bytesSinceIndex = int(pos - from)
	return true
}
