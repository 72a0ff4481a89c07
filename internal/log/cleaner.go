package log

// The log cleaner: compaction of logs whose cleanup.policy includes compact,
// after Kafka's LogCleaner.
//
// One pass (Clean) over a log:
//
//  1. The dirty section is [firstDirty, firstUncleanable): from where the
//     last pass stopped (the cleaner-offset-checkpoint) up to the active
//     segment, or up to the first segment holding a record younger than
//     min.compaction.lag.ms. An OffsetMap of key -> last offset is built over
//     it; when the map is full the pass stops there (endOffset) and leaves
//     the rest for the next pass.
//  2. Every segment below endOffset, the clean ones too, is rewritten, in
//     groups whose original sizes add up to at most segment.bytes, so that
//     small segments merge. A record survives if it is at or past endOffset,
//     or it has a key and is that key's latest record, unless it is a
//     tombstone (null value) whose delete horizon has passed. Records
//     without a key are dropped, as Kafka drops them.
//  3. Batches keep their base and last offsets (so offsets never change and
//     gaps are left), their producer id, epoch and base sequence, and their
//     attributes; a batch that lost records is rebuilt with the same codec
//     (at the codec's default level). Control batches are kept whole
//     (transaction markers: see 5). A batch that lost all its records is dropped, unless
//     it is the last batch of a producer the partition still tracks: that
//     one stays as an empty batch so that the producer's sequence numbers
//     survive a restart (Kafka's RETAIN_EMPTY).
//  4. Tombstones get a delete horizon the first time the cleaner keeps them
//     (KIP-534): the batch's DeleteHorizon attribute is set and its base
//     timestamp becomes now + delete.retention.ms (record timestamp deltas
//     are rebased, so record timestamps do not change). A later pass after
//     the horizon drops them. A log whose earliest horizon has passed is due
//     for a pass even when it is not dirty.
//  5. Transactions (Kafka's CleanedTransactionMetadata): the pass ends at
//     the base of the segment holding the partition's last stable offset
//     (CleanOptions.LastStableOffset), so records of undecided transactions
//     are never touched. Records of aborted transactions (their batch lies
//     within an entry of the transaction index) are dropped and never enter
//     the offset map. A marker stays while a batch of its transaction was
//     read by the pass (removed by it or not); then it gets a delete
//     horizon like a tombstone, and a pass after it removes the marker
//     (never one at or past CleanOptions.MarkerBound). A rewritten
//     segment's .txnindex holds the entries of the segments it replaces,
//     less those of aborted transactions the pass read no batch of.
//
// Each group's new segment replaces the old ones crash-safely, with Kafka's
// file suffixes:
//
//  1. write <base>.log.cleaned, .index.cleaned, .timeindex.cleaned and,
//     when the old segments had a transaction index, .txnindex.cleaned
//     (empty if need be); fsync each;
//  2. rename the indexes, then the log, to .swap; fsync the directory. The
//     durable <base>.log.swap is the commit point;
//  3. under the log's lock: remove the old segments' files, fsync the
//     directory, rename the .swap files to their plain names, fsync the
//     directory, and put the new segment in the segment list. Readers see
//     either the old segments or the new one; files they already hold stay
//     open for file.delete.delay.ms.
//
// Open (completeSwaps) rolls back an interruption before the commit point
// (removes .cleaned files and index .swap files without a .log.swap) and
// completes one after it (removes the segments whose base offsets lie in
// the .log.swap's offset range, except a <base>.txnindex without a
// <base>.txnindex.swap, which is the new one already renamed, then renames
// the .swap files into place). Segments of
// the group above the new segment's last offset, if any, hold only records
// the pass removed; leaving them keeps the log consistent (offsets still
// increase, every surviving record is there) and the next pass removes them.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// ErrCleanAborted: the log changed under a cleaning pass (retention or
// DeleteRecords removed a segment it was rewriting, the log closed, or a
// truncation is waiting for the pass to end).
// Nothing was lost; the next pass starts afresh.
var ErrCleanAborted = errors.New("log: cleaning aborted")

const (
	cleanedSuffix = ".cleaned"
	swapSuffix    = ".swap"
	// maxCleanerDecompressedBytes bounds one batch decompressed by the
	// cleaner; a larger one stops the pass with an error.
	maxCleanerDecompressedBytes = 256 << 20
	// DefaultCleanerIOBufferBytes is log.cleaner.io.buffer.size: the read
	// and the write buffer of a pass (each grows for a larger batch).
	DefaultCleanerIOBufferBytes = 512 << 10
)

// CleanerState is how dirty a log is, for choosing the log to clean and for
// metrics. Byte counts are of whole segments.
type CleanerState struct {
	Compact bool // the log's cleanup.policy includes compact
	// FirstDirtyOffset: offsets below were cleaned by an earlier pass.
	FirstDirtyOffset int64
	// FirstUncleanableOffset: the active segment's base, or the base of the
	// first dirty segment holding a record younger than min.compaction.lag.ms
	// or the last stable offset (CleanerStateBelow), if lower.
	FirstUncleanableOffset int64
	CleanBytes             int64 // segments below the first dirty offset
	DirtyBytes             int64 // segments from it to the first uncleanable offset
	// DirtyRatio is DirtyBytes / (CleanBytes + DirtyBytes); 0 for none.
	DirtyRatio float64
	// OldestDirtyTimestamp is the first batch timestamp of the first segment
	// holding uncleaned records (the active one included), -1 if none.
	OldestDirtyTimestamp int64
	// Due: the dirty ratio is above min.cleanable.dirty.ratio, or an
	// uncleaned record is older than max.compaction.lag.ms, or a
	// tombstone's delete horizon has passed.
	Due bool
	// HorizonUnknown: no pass has run since the log was opened, so whether
	// tombstones are due is not known until LoadDeleteHorizon.
	HorizonUnknown bool
}

// CleanOptions configure one pass.
type CleanOptions struct {
	// Map holds the keys of the dirty section; its size bounds the pass's
	// memory. Required; Clean resets it.
	Map *OffsetMap
	// Throttle limits the bytes read and written; nil is unlimited.
	Throttle *Throttler
	// IOBufferBytes is the read and write buffer size; 0 is the default.
	IOBufferBytes int
	// KeepEmpty says whether a batch from an idempotent producer whose
	// records are all removed stays as an empty batch (the last batch of a
	// producer still tracked). nil drops every emptied batch.
	KeepEmpty func(h *record.Header) bool
	// Force runs the pass even when the log is not Due (CleanNow, tests).
	Force bool
	// LastStableOffset bounds the pass: nothing at or past it is cleaned
	// (Kafka's cleanable range ends at the last stable offset), so records
	// of undecided transactions are never touched. The zero value cleans
	// nothing; a log without transactions passes math.MaxInt64.
	LastStableOffset int64
	// MarkerBound: transaction markers at or past it are always kept.
	// partition.Clean passes the offset of its latest producer snapshot: a
	// restart replays the log from there, so a marker past it must stay for
	// the transactions the snapshot holds open to end. The zero value keeps
	// every marker.
	MarkerBound int64
}

// CleanResult tells what a pass did.
type CleanResult struct {
	Cleaned          bool  // a pass ran (the log was due, or forced)
	FirstDirtyOffset int64 // the dirty section started here
	EndOffset        int64 // and the offset map covered it up to here
	BytesRead        int64 // read from segments, offset map and copy
	BytesIn          int64 // size of the segments rewritten
	BytesOut         int64 // size of the segments that replaced them
	SegmentsIn       int
	SegmentsOut      int
	RecordsRemoved   int64
	Duration         time.Duration
}

// FirstDirtyOffset is the offset below which the log has been cleaned, for
// the broker's cleaner-offset-checkpoint.
func (l *Log) FirstDirtyOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return max(l.firstDirty, l.logStart)
}

// CleanerState reports how dirty the log is now, for a log without
// transactions (see CleanerStateBelow).
func (l *Log) CleanerState() CleanerState { return l.CleanerStateBelow(math.MaxInt64) }

// CleanerStateBelow reports how dirty the log is now when nothing at or past
// lastStable (the partition's last stable offset) may be cleaned.
func (l *Log) CleanerStateBelow(lastStable int64) CleanerState {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cleanerStateLocked(l.now().UnixMilli(), lastStable)
}

func (l *Log) cleanerStateLocked(nowMs, lastStable int64) CleanerState {
	st := CleanerState{Compact: l.cfg.Compact, OldestDirtyTimestamp: -1, HorizonUnknown: !l.horizonKnown}
	if len(l.segments) == 0 {
		return st
	}
	closed := l.segments[:len(l.segments)-1]
	firstDirty := min(max(l.firstDirty, l.logStart), l.next.Load())
	firstUncleanable := l.stableFloorLocked(lastStable)
	if lag := l.cfg.MinCompactionLagMs; lag > 0 {
		for _, s := range closed {
			if s.nextOffset > firstDirty && s.maxTimestamp > nowMs-lag {
				firstUncleanable = min(firstUncleanable, s.baseOffset)
				break
			}
		}
	}
	st.FirstDirtyOffset, st.FirstUncleanableOffset = firstDirty, max(firstUncleanable, firstDirty)
	for _, s := range closed {
		switch {
		case s.baseOffset < firstDirty:
			st.CleanBytes += s.size.Load()
		case s.baseOffset < firstUncleanable:
			st.DirtyBytes += s.size.Load()
		}
	}
	if total := st.CleanBytes + st.DirtyBytes; total > 0 {
		st.DirtyRatio = float64(st.DirtyBytes) / float64(total)
	}
	for _, s := range l.segments {
		if s.nextOffset > firstDirty && s.size.Load() > 0 {
			st.OldestDirtyTimestamp = s.firstTimestamp
			break
		}
	}
	if !l.cfg.Compact {
		return st
	}
	cleanable := firstDirty < firstUncleanable
	maxLag := l.cfg.MaxCompactionLagMs
	switch {
	case cleanable && st.DirtyBytes > 0 && st.DirtyRatio > l.cfg.MinCleanableDirtyRatio:
		st.Due = true
	case cleanable && maxLag > 0 && st.OldestDirtyTimestamp >= 0 && nowMs-st.OldestDirtyTimestamp > maxLag:
		st.Due = true
	case l.horizonKnown && l.horizon >= 0 && l.horizon <= nowMs && len(closed) > 0:
		st.Due = true
	}
	return st
}

// stableFloorLocked is where cleaning must stop for the last stable offset
// lastStable: the base of the segment holding it (or of the active
// segment). Nothing at or past the last stable offset is cleaned, nor any
// segment holding it: an abort marker lies past the last stable offset
// read before its transaction index entry was written, so no segment a
// pass rewrites can get an entry meanwhile.
func (l *Log) stableFloorLocked(lastStable int64) int64 {
	for _, s := range l.segments[:len(l.segments)-1] {
		if s.nextOffset > lastStable {
			return s.baseOffset
		}
	}
	return l.segments[len(l.segments)-1].baseOffset
}

// LoadDeleteHorizon finds the earliest delete horizon of the tombstones in
// the cleaned part of the log by reading batch headers, once after Open, so
// that CleanerState can tell when they are due. It does not hold the log's
// lock while it reads.
func (l *Log) LoadDeleteHorizon() error {
	l.mu.RLock()
	if l.closed || l.horizonKnown || len(l.segments) == 0 {
		l.mu.RUnlock()
		return nil
	}
	segs := slices.Clone(l.segments[:len(l.segments)-1])
	firstDirty := max(l.firstDirty, l.logStart)
	l.mu.RUnlock()
	horizon := int64(-1)
	for _, s := range segs {
		if s.baseOffset >= firstDirty {
			break
		}
		size := s.size.Load()
		for pos := int64(0); pos < size; {
			h, err := s.headerAt(pos)
			if err != nil {
				return err
			}
			if h.Attributes&record.AttrDeleteHorizon != 0 && (horizon < 0 || h.BaseTimestamp < horizon) {
				horizon = h.BaseTimestamp
			}
			pos += int64(h.Size())
		}
	}
	l.mu.Lock()
	if !l.horizonKnown {
		l.horizon, l.horizonKnown = horizon, true
	}
	l.mu.Unlock()
	return nil
}

// Clean runs one cleaning pass if the log is compacted and due (or
// opts.Force). Passes on one log are serialized; appends, reads, retention
// and syncs go on meanwhile, the log's lock being held only to swap
// segments. Errors: ErrCleanAborted when the log changed under the pass,
// ctx's error when it ended, a storage error (the log then takes no more
// writes, as after a failed fsync) when a swap failed past its commit
// point, any other error (a corrupt batch) leaves the log as it was.
func (l *Log) Clean(ctx context.Context, opts CleanOptions) (CleanResult, error) {
	if opts.Map == nil {
		panic("BUG: log.Clean without an offset map")
	}
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	began := time.Now()
	// Segments rolled since the last sync are synced first: a sync writes
	// their index files outside the log's lock, which a swap must not
	// race, so the pass leaves alone any segment still unflushed.
	if err := l.syncRolled(); err != nil {
		return CleanResult{}, err
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return CleanResult{}, ErrClosed
	}
	if err := l.unwritableLocked(); err != nil {
		l.mu.RUnlock()
		return CleanResult{}, err
	}
	cfg := l.cfg
	nowMs := l.now().UnixMilli()
	st := l.cleanerStateLocked(nowMs, opts.LastStableOffset)
	segs := slices.Clone(l.segments[:len(l.segments)-1]) // never the active segment
	stableFloor := l.stableFloorLocked(opts.LastStableOffset)
	for _, s := range segs {
		if !s.flushed { // rolled after syncRolled
			stableFloor = min(stableFloor, s.baseOffset)
			break
		}
	}
	// The aborted transactions, by producer. The caller read the last
	// stable offset before: every transaction with records below it is
	// decided, and an abort's entry is indexed before the last stable
	// offset moves past its records, so all the pass may remove are here.
	aborted := map[int64][]AbortedTxn{}
	for _, s := range l.segments {
		for _, e := range s.aborted {
			aborted[e.ProducerID] = append(aborted[e.ProducerID], e)
		}
	}
	l.mu.RUnlock()

	res := CleanResult{FirstDirtyOffset: st.FirstDirtyOffset, EndOffset: st.FirstDirtyOffset}
	if !cfg.Compact || !opts.Force && !st.Due {
		return res, nil
	}
	res.Cleaned = true
	bufBytes := opts.IOBufferBytes
	if bufBytes <= 0 {
		bufBytes = DefaultCleanerIOBufferBytes
	}
	c := &cleaning{l: l, ctx: ctx, opts: opts, cfg: cfg, nowMs: nowMs, m: opts.Map, res: &res,
		readBuf: make([]byte, bufBytes), writeBuf: make([]byte, 0, bufBytes), horizon: -1,
		aborted: aborted, txnData: map[int64]bool{}, observed: map[int64]bool{}}
	end, err := c.buildMap(segs, st.FirstDirtyOffset, st.FirstUncleanableOffset)
	if err != nil {
		return res, l.cleanErr(segs, err)
	}
	end = min(end, stableFloor) // (even if the last stable offset went back below firstDirty)
	res.EndOffset = end
	c.end = end
	var todo []*segment
	for _, s := range segs {
		if s.baseOffset >= end {
			break
		}
		todo = append(todo, s)
	}
	for _, g := range groupSegments(todo, cfg.SegmentBytes) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := c.cleanGroup(g); err != nil {
			return res, l.cleanErr(segs, err)
		}
	}
	l.mu.Lock()
	l.firstDirty = max(l.firstDirty, end)
	l.horizon, l.horizonKnown = c.horizon, true
	l.mu.Unlock()
	res.Duration = time.Since(began)
	l.logger.Info("cleaned log", "dir", l.dir, "first_dirty", res.FirstDirtyOffset, "end", end,
		"segments_in", res.SegmentsIn, "segments_out", res.SegmentsOut, "bytes_in", res.BytesIn,
		"bytes_out", res.BytesOut, "records_removed", res.RecordsRemoved, "duration", res.Duration)
	return res, nil
}

// syncRolled makes the segments rolled so far durable (flushed).
func (l *Log) syncRolled() error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	activeBase := l.segments[len(l.segments)-1].baseOffset
	l.mu.RUnlock()
	return l.SyncTo(activeBase)
}

// cleanErr turns a failure into ErrCleanAborted when segments the pass read
// are gone from the log (retention or DeleteRecords closed their files).
func (l *Log) cleanErr(segs []*segment, err error) error {
	if errors.Is(err, ErrCleanAborted) || errors.Is(err, ErrStorage) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return fmt.Errorf("%w: log closed: %v", ErrCleanAborted, err)
	}
	for _, s := range segs {
		if !slices.Contains(l.segments, s) {
			return fmt.Errorf("%w: segment %d removed: %v", ErrCleanAborted, s.baseOffset, err)
		}
	}
	return err
}

// groupSegments splits segs (consecutive, oldest first) into runs that are
// each cleaned into one segment (Kafka's groupSegmentsBySize): a run's
// original sizes add up to at most maxBytes (segment.bytes), and its
// offsets stay within MaxInt32 of its base.
func groupSegments(segs []*segment, maxBytes int64) [][]*segment {
	maxBytes = min(maxBytes, math.MaxInt32)
	var groups [][]*segment
	for i := 0; i < len(segs); {
		size := segs[i].size.Load()
		j := i + 1
		for ; j < len(segs); j++ {
			s := segs[j]
			if size+s.size.Load() > maxBytes || s.nextOffset-1-segs[i].baseOffset > math.MaxInt32 {
				break
			}
			size += s.size.Load()
		}
		groups = append(groups, segs[i:j])
		i = j
	}
	return groups
}

// cleaning is the state of one pass; owned by its goroutine.
type cleaning struct {
	l        *Log
	ctx      context.Context
	opts     CleanOptions
	cfg      Config
	nowMs    int64
	m        *OffsetMap
	end      int64 // records at or past it are kept as they are
	res      *CleanResult
	readBuf  []byte
	writeBuf []byte
	horizon  int64 // earliest delete horizon of kept tombstones and markers, -1 if none
	// aborted holds the aborted transactions by producer, in marker order.
	aborted map[int64][]AbortedTxn
	// txnData: producers of which a transactional batch was read since
	// their last marker; their next marker stays (Kafka's
	// CleanedTransactionMetadata). Passes read the log from its first
	// segment, so every batch of a transaction still there is seen.
	txnData map[int64]bool
	// observed: the aborted transactions (by marker offset) of which the
	// pass read a batch. The transaction index of a rewritten segment keeps
	// only those (and those past the pass's end), as Kafka's does: the
	// entry of one whose records an earlier pass removed goes, in the same
	// swap that gives its marker a delete horizon, so that no entry
	// outlives its marker (a read_committed consumer that met the entry
	// would skip the producer's later transactions until the marker).
	observed map[int64]bool
}

// abortedEntry returns the aborted transaction the transactional batch h
// belongs to: the entry of its producer that spans its base offset.
func (c *cleaning) abortedEntry(h *record.Header) (AbortedTxn, bool) {
	if !h.IsTransactional() || h.IsControl() {
		return AbortedTxn{}, false
	}
	es := c.aborted[h.ProducerID]
	i := sort.Search(len(es), func(i int) bool { return es[i].LastOffset >= h.BaseOffset })
	if i < len(es) && es[i].FirstOffset <= h.BaseOffset {
		return es[i], true
	}
	return AbortedTxn{}, false
}

func (c *cleaning) isAborted(h *record.Header) bool {
	_, ok := c.abortedEntry(h)
	return ok
}

func (c *cleaning) throttle(n int) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if c.l.truncating.Load() > 0 {
		return fmt.Errorf("%w: the log is being truncated", ErrCleanAborted)
	}
	return c.opts.Throttle.Wait(c.ctx, n)
}

// buildMap puts the keys of the records in [from, to) into the offset map
// and returns the offset it stopped at: to, or the first record whose key
// did not fit.
func (c *cleaning) buildMap(segs []*segment, from, to int64) (int64, error) {
	c.m.Reset()
	for _, s := range segs {
		if s.baseOffset >= to {
			break
		}
		if s.nextOffset <= from {
			continue
		}
		r := c.reader(s)
		for {
			raw, h, ok, err := r.next()
			if err != nil {
				return 0, err
			}
			if !ok {
				break
			}
			if h.LastOffset() < from || h.IsControl() || c.isAborted(&h) {
				continue // aborted records must not shadow committed ones
			}
			if h.BaseOffset >= to {
				return to, nil
			}
			recs, err := record.Records(raw, h, maxCleanerDecompressedBytes)
			if err != nil {
				return 0, fmt.Errorf("log: segment %d: decode batch at offset %d: %w", s.baseOffset, h.BaseOffset, err)
			}
			for i := range recs {
				off := h.BaseOffset + int64(recs[i].OffsetDelta)
				if off < from || off >= to || recs[i].Key == nil {
					continue
				}
				if !c.m.Put(recs[i].Key, off) {
					return off, nil
				}
			}
		}
	}
	return to, nil
}

// batchReader reads the batches of one segment in order through the pass's
// read buffer, checking each (CRC included) and throttled.
type batchReader struct {
	c      *cleaning
	s      *segment
	pos    int64 // file position of buf[hi]
	size   int64
	lo, hi int // unread bytes are c.readBuf[lo:hi]
	last   int64
}

func (c *cleaning) reader(s *segment) *batchReader {
	return &batchReader{c: c, s: s, size: s.size.Load(), last: s.baseOffset - 1}
}

// next returns the next batch, valid until the following call.
func (r *batchReader) next() ([]byte, record.Header, bool, error) {
	for {
		buf := r.c.readBuf
		win := buf[r.lo:r.hi]
		if bsize, ok := record.PeekSize(win); ok {
			if bsize < record.HeaderSize || bsize > maxBatchBytes {
				return nil, record.Header{}, false, fmt.Errorf("log: segment %d: batch length %d at position %d", r.s.baseOffset, bsize, r.pos-int64(len(win)))
			}
			if bsize <= len(win) {
				h, err := record.Parse(win[:bsize])
				if err != nil {
					return nil, h, false, fmt.Errorf("log: segment %d at position %d: %w", r.s.baseOffset, r.pos-int64(len(win)), err)
				}
				if h.BaseOffset <= r.last || h.LastOffset() < h.BaseOffset {
					return nil, h, false, fmt.Errorf("log: segment %d: batch offset %d after %d", r.s.baseOffset, h.BaseOffset, r.last)
				}
				r.last = h.LastOffset()
				r.lo += bsize
				return win[:bsize], h, true, nil
			}
			if bsize > len(buf) {
				grown := make([]byte, bsize)
				copy(grown, win)
				r.c.readBuf, buf = grown, grown
				r.lo, r.hi = 0, len(win)
			}
		}
		if r.pos >= r.size {
			if r.hi > r.lo {
				return nil, record.Header{}, false, fmt.Errorf("log: segment %d: %d bytes of a torn batch at its end", r.s.baseOffset, r.hi-r.lo)
			}
			return nil, record.Header{}, false, nil
		}
		n := copy(buf, buf[r.lo:r.hi])
		r.lo, r.hi = 0, n
		want := int(min(int64(len(buf)-r.hi), r.size-r.pos))
		if err := r.c.throttle(want); err != nil {
			return nil, record.Header{}, false, err
		}
		got, err := r.s.h.readAt(buf[r.hi:r.hi+want], r.pos)
		if got < want {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, record.Header{}, false, fmt.Errorf("log: read segment %d at %d: %w", r.s.baseOffset, r.pos, err)
		}
		r.hi += got
		r.pos += int64(got)
		r.c.res.BytesRead += int64(got)
	}
}

// filter returns what of a batch survives: raw itself when all of it does,
// nil when none does, else a rebuilt batch. changed reports anything but raw.
func (c *cleaning) filter(raw []byte, h record.Header) (out []byte, changed bool, err error) {
	hasHorizon := h.Attributes&record.AttrDeleteHorizon != 0
	if h.IsControl() {
		return c.filterMarker(raw, h)
	}
	e, aborted := c.abortedEntry(&h)
	if aborted {
		c.observed[e.LastOffset] = true
	}
	if h.IsTransactional() {
		c.txnData[h.ProducerID] = true
	}
	if h.BaseOffset >= c.end {
		return raw, false, nil
	}
	recs, err := record.Records(raw, h, maxCleanerDecompressedBytes)
	if err != nil {
		return nil, false, fmt.Errorf("log: decode batch at offset %d: %w", h.BaseOffset, err)
	}
	horizonPassed := hasHorizon && h.BaseTimestamp <= c.nowMs
	kept := make([]record.Record, 0, len(recs))
	tombstones := false
	for _, r := range recs {
		off := h.BaseOffset + int64(r.OffsetDelta)
		if off < c.end {
			if r.Key == nil || aborted {
				continue
			}
			if latest, ok := c.m.Get(r.Key); ok && off < latest {
				continue
			}
			if r.Value == nil && horizonPassed {
				continue
			}
		}
		kept = append(kept, r)
		tombstones = tombstones || r.Value == nil
	}
	c.res.RecordsRemoved += int64(len(recs) - len(kept))
	keepEmpty := func() bool { return h.HasProducer() && c.opts.KeepEmpty != nil && c.opts.KeepEmpty(&h) }
	switch {
	case len(recs) == 0:
		// An empty batch left by an earlier pass: kept while its producer needs it.
		if keepEmpty() {
			return raw, false, nil
		}
		return nil, true, nil
	case len(kept) == len(recs) && (!tombstones || hasHorizon):
		if tombstones {
			c.noteHorizon(h.BaseTimestamp)
		}
		return raw, false, nil
	case len(kept) == 0:
		if !keepEmpty() {
			return nil, true, nil
		}
		out, err = record.BuildBatch(record.BatchSpec{
			BaseOffset: h.BaseOffset, PartitionLeaderEpoch: h.LeaderEpoch,
			Attributes:     h.Attributes &^ (record.AttrCompressionMask | record.AttrDeleteHorizon),
			FirstTimestamp: h.MaxTimestamp, MaxTimestamp: h.MaxTimestamp,
			ProducerID: h.ProducerID, ProducerEpoch: h.ProducerEpoch, BaseSequence: h.BaseSequence,
			LastOffsetDelta: h.LastOffsetDelta,
		}, nil)
		return out, true, err
	}
	// Rebuild with the survivors. Record timestamps stay as they were: the
	// deltas are rebased on the new base timestamp, which is the delete
	// horizon when the batch keeps tombstones, else the first record's.
	attrs := h.Attributes &^ record.AttrDeleteHorizon
	abs := func(r *record.Record) int64 { return h.BaseTimestamp + r.TimestampDelta }
	base := abs(&kept[0])
	switch {
	case tombstones && hasHorizon:
		base = h.BaseTimestamp
		attrs |= record.AttrDeleteHorizon
	case tombstones:
		base = c.nowMs + min(c.cfg.DeleteRetentionMs, math.MaxInt64/2)
		attrs |= record.AttrDeleteHorizon
	}
	if tombstones {
		c.noteHorizon(base)
	}
	maxTs := h.MaxTimestamp
	if h.Attributes&record.AttrLogAppendTime == 0 {
		maxTs = math.MinInt64
		for i := range kept {
			maxTs = max(maxTs, abs(&kept[i]))
		}
	}
	for i := range kept {
		kept[i].TimestampDelta = abs(&kept[i]) - base
	}
	out, err = record.BuildBatch(record.BatchSpec{
		BaseOffset: h.BaseOffset, PartitionLeaderEpoch: h.LeaderEpoch, Attributes: attrs,
		FirstTimestamp: base, MaxTimestamp: maxTs,
		ProducerID: h.ProducerID, ProducerEpoch: h.ProducerEpoch, BaseSequence: h.BaseSequence,
		Codec: int(h.Codec()), LastOffsetDelta: h.LastOffsetDelta,
	}, kept)
	if err != nil {
		return nil, false, fmt.Errorf("log: rebuild batch at offset %d: %w", h.BaseOffset, err)
	}
	return out, true, nil
}

// filterMarker returns what of a control batch (a transaction marker)
// survives, as Kafka's cleaner does: a marker stays while a batch of its
// transaction may remain (one was read since the producer's previous
// marker, removed or not by this pass); then it gets a delete horizon
// (now + delete.retention.ms, so that consumers that read the transaction's
// records still see it end), and a pass after the horizon removes it.
// Markers at or past the pass's end or its MarkerBound stay.
func (c *cleaning) filterMarker(raw []byte, h record.Header) ([]byte, bool, error) {
	// (An entry of the transaction index that the pass keeps must keep its
	// marker too: observed covers an index whose entries do not line up
	// with the producer's markers.)
	hadData := c.txnData[h.ProducerID] || c.observed[h.BaseOffset]
	delete(c.txnData, h.ProducerID)
	if hadData || h.LastOffset() >= c.end || h.LastOffset() >= c.opts.MarkerBound {
		return raw, false, nil
	}
	if h.Attributes&record.AttrDeleteHorizon != 0 {
		if h.BaseTimestamp <= c.nowMs {
			c.res.RecordsRemoved += int64(h.LastOffsetDelta) + 1
			return nil, true, nil
		}
		c.noteHorizon(h.BaseTimestamp)
		return raw, false, nil
	}
	recs, err := record.Records(raw, h, maxControlBatchBytes)
	if err != nil {
		return nil, false, fmt.Errorf("log: decode control batch at offset %d: %w", h.BaseOffset, err)
	}
	if len(recs) == 0 {
		return nil, true, nil // an empty control batch: nothing to keep
	}
	horizon := c.nowMs + min(c.cfg.DeleteRetentionMs, math.MaxInt64/2)
	for i := range recs {
		recs[i].TimestampDelta += h.BaseTimestamp - horizon
	}
	out, err := record.BuildBatch(record.BatchSpec{
		BaseOffset: h.BaseOffset, PartitionLeaderEpoch: h.LeaderEpoch,
		Attributes:     (h.Attributes &^ record.AttrCompressionMask) | record.AttrDeleteHorizon,
		FirstTimestamp: horizon, MaxTimestamp: h.MaxTimestamp,
		ProducerID: h.ProducerID, ProducerEpoch: h.ProducerEpoch, BaseSequence: h.BaseSequence,
		LastOffsetDelta: h.LastOffsetDelta,
	}, recs)
	if err != nil {
		return nil, false, fmt.Errorf("log: rebuild control batch at offset %d: %w", h.BaseOffset, err)
	}
	c.noteHorizon(horizon)
	return out, true, nil
}

func (c *cleaning) noteHorizon(ts int64) {
	if c.horizon < 0 || ts < c.horizon {
		c.horizon = ts
	}
}

// path names a file of the segment at base with a suffix (cleaned or swap).
func (l *Log) path(base int64, ext, suffix string) string {
	return filepath.Join(l.dir, segmentName(base, ext)+suffix)
}

// segmentExts are the files of a segment; swapExts are those a swap
// renames, the log last (its rename is the commit point).
var (
	segmentExts = []string{".log", ".index", ".timeindex", ".txnindex"}
	swapExts    = []string{".index", ".timeindex", ".txnindex", ".log"}
)

// groupAborted is the transaction index of the segment replacing g: the
// entries of all of g's segments, in marker order. Called with mu held.
func groupAborted(g []*segment) []AbortedTxn {
	var out []AbortedTxn
	for _, s := range g {
		out = append(out, s.aborted...)
	}
	return out
}

// cleanGroup rewrites the segments of g into one and swaps it in.
func (c *cleaning) cleanGroup(g []*segment) (err error) {
	l := c.l
	base := g[0].baseOffset
	f, err := l.fs.Create(l.path(base, ".log", cleanedSuffix))
	if err != nil {
		return fmt.Errorf("log: create cleaned segment %d: %w", base, err)
	}
	ns := &segment{baseOffset: base, dir: l.dir, nextOffset: base, maxTimestamp: -1,
		offsetOfMaxTimestamp: -1, firstTimestamp: -1, created: l.now()}
	swapped := false
	// The new segment's file is written here and reopened, by its final
	// name, through the log's FileCache once swapped in.
	defer f.Close()
	defer func() {
		if !swapped {
			for _, ext := range segmentExts {
				_ = l.fs.Remove(l.path(base, ext, cleanedSuffix))
			}
		}
	}()
	var pos int64
	buf := c.writeBuf[:0]
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if err := c.throttle(len(buf)); err != nil {
			return err
		}
		if _, err := f.Write(buf); err != nil {
			return fmt.Errorf("log: write cleaned segment %d: %w", base, err)
		}
		buf = buf[:0]
		return nil
	}
	changed := len(g) > 1
	var in int64
	for _, s := range g {
		r := c.reader(s)
		for {
			raw, h, ok, err := r.next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			out, ch, err := c.filter(raw, h)
			if err != nil {
				return fmt.Errorf("log: segment %d: %w", s.baseOffset, err)
			}
			changed = changed || ch
			if out == nil {
				continue
			}
			oh := h
			if ch {
				if oh, err = record.ParseHeader(out); err != nil {
					return err
				}
			}
			if len(buf)+len(out) > cap(buf) {
				if err := flush(); err != nil {
					return err
				}
			}
			if len(out) > cap(buf) {
				if err := c.throttle(len(out)); err != nil {
					return err
				}
				if _, err := f.Write(out); err != nil {
					return fmt.Errorf("log: write cleaned segment %d: %w", base, err)
				}
			} else {
				buf = append(buf, out...)
			}
			ns.noteBatch(&oh, pos, c.cfg.IndexIntervalBytes)
			pos += int64(len(out))
		}
		in += s.size.Load()
	}
	c.res.BytesIn += in
	if !changed {
		return nil // one segment, nothing removed: leave it be
	}
	if err := flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("log: sync cleaned segment %d: %w", base, err)
	}
	ns.size.Store(pos)
	ns.finishTimeIndex()
	if err := writeSynced(l.fs, l.path(base, ".index", cleanedSuffix), ns.index.marshal()); err != nil {
		return err
	}
	if err := writeSynced(l.fs, l.path(base, ".timeindex", cleanedSuffix), ns.timeIndex.marshal()); err != nil {
		return err
	}
	ns.indexDirty = false
	// The transaction index carries over, less the entries of aborted
	// transactions with no batch left (see observed). replaceSegments
	// checks that the old segments' entries did not change meanwhile.
	l.mu.RLock()
	src := groupAborted(g)
	l.mu.RUnlock()
	for _, e := range src {
		if c.observed[e.LastOffset] || e.LastOffset >= c.end {
			ns.aborted = append(ns.aborted, e)
		}
	}
	exts := []string{".index", ".timeindex", ".log"}
	if len(src) > 0 {
		// Written even when empty: the old segments had a .txnindex, and
		// completeSwaps counts on a new one having a .swap until renamed.
		if err := writeSynced(l.fs, l.path(base, ".txnindex", cleanedSuffix), marshalTxnIndex(ns.aborted)); err != nil {
			return err
		}
		exts = swapExts
	}
	// .cleaned -> .swap, the log last: its rename is the commit point.
	for _, ext := range exts {
		if err := l.fs.Rename(l.path(base, ext, cleanedSuffix), l.path(base, ext, swapSuffix)); err != nil {
			return l.abortSwap(base, fmt.Errorf("log: rename cleaned segment %d: %w", base, err))
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return l.abortSwap(base, fmt.Errorf("log: sync dir: %w", err))
	}
	if err := l.replaceSegments(g, ns, src, exts); err != nil {
		if errors.Is(err, ErrCleanAborted) {
			return l.abortSwap(base, err)
		}
		// Past the commit point: the next Open completes the swap.
		swapped = true
		return err
	}
	swapped = true
	c.res.SegmentsIn += len(g)
	c.res.SegmentsOut++
	c.res.BytesOut += pos
	return nil
}

// abortSwap removes a new segment's .swap and .cleaned files before its
// commit. If they cannot be removed for sure, a crash could later complete a
// stale swap over newer segments, so the log fails instead.
func (l *Log) abortSwap(base int64, cause error) error {
	var errs []error
	for _, ext := range segmentExts {
		for _, suffix := range []string{swapSuffix, cleanedSuffix} {
			if err := l.fs.Remove(l.path(base, ext, suffix)); err != nil && !isNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		if err := l.fs.SyncDir(l.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		err := fmt.Errorf("log: remove aborted swap of segment %d: %w", base, errors.Join(errs...))
		l.mu.Lock()
		l.fail(err)
		l.mu.Unlock()
		return fmt.Errorf("%w: %v (after: %v)", ErrStorage, err, cause)
	}
	return cause
}

// replaceSegments completes a swap whose .log.swap is durable: under the
// lock, the old segments' files go, the .swap files take their names and the
// new segment takes the old ones' place in the list. If the old segments are
// no longer in the log it returns ErrCleanAborted having changed nothing. A
// failure past that fails the log; the next Open completes the swap.
func (l *Log) replaceSegments(old []*segment, ns *segment, oldAborted []AbortedTxn, exts []string) error {
	l.rewrites.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	i := slices.Index(l.segments, old[0])
	if l.closed || l.unwritableLocked() != nil || i < 0 || i+len(old) >= len(l.segments) ||
		!slices.Equal(l.segments[i:i+len(old)], old) {
		return fmt.Errorf("%w: segments changed during cleaning", ErrCleanAborted)
	}
	if !slices.Equal(groupAborted(old), oldAborted) {
		// An abort marker written just before a roll had its entry indexed
		// after the pass copied the transaction index.
		return fmt.Errorf("%w: transaction index changed during cleaning", ErrCleanAborted)
	}
	// The old segments' files are removed below: they are opened first,
	// and kept open if the swap fails after, so that the log stays
	// readable until it is reopened.
	for j, s := range old {
		if _, err := s.h.acquire(); err != nil {
			for _, o := range old[:j] {
				o.h.release()
			}
			return fmt.Errorf("%w: open segment %d: %v", ErrCleanAborted, s.baseOffset, err)
		}
	}
	swapped := false
	defer func() {
		for _, s := range old {
			if !swapped {
				s.h.keepOpen()
			}
			s.h.release()
		}
	}()
	storageErr := func(err error) error {
		l.fail(err)
		return fmt.Errorf("%w: swap cleaned segment %d: %v", ErrStorage, ns.baseOffset, err)
	}
	for _, s := range old {
		for _, ext := range segmentExts {
			if err := l.fs.Remove(s.path(ext)); err != nil && !isNotExist(err) {
				return storageErr(err)
			}
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return storageErr(err)
	}
	for _, ext := range exts {
		if err := l.fs.Rename(l.path(ns.baseOffset, ext, swapSuffix), ns.path(ext)); err != nil {
			return storageErr(err)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return storageErr(err)
	}
	swapped = true
	ns.h = l.files.newHandle(l.fs, ns.path(".log"), false)
	l.segments = slices.Concat(l.segments[:i], []*segment{ns}, l.segments[i+len(old):])
	for _, s := range old {
		l.closeLater(s)
	}
	ns.logger = l.logger
	ns.useIndexFiles(l.fs)
	ns.flushed = true
	return nil
}

// writeSynced writes a new file and fsyncs it.
func writeSynced(fs vfs.FS, name string, data []byte) error {
	f, err := fs.Create(name)
	if err != nil {
		return fmt.Errorf("log: create %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("log: write %s: %w", name, err)
	}
	return nil
}

// parseSegmentFile reads the base offset and extension of a segment file
// name (<20 digits><ext>, ext one of segmentExts).
func parseSegmentFile(name string) (int64, string, bool) {
	if len(name) < 21 {
		return 0, "", false
	}
	ext := name[20:]
	if !slices.Contains(segmentExts, ext) {
		return 0, "", false
	}
	base, err := strconv.ParseInt(name[:20], 10, 64)
	if err != nil || base < 0 {
		return 0, "", false
	}
	return base, ext, true
}

// completeSwaps finishes or rolls back cleanings a crash interrupted (see
// the top of this file). names is the directory listing.
func (l *Log) completeSwaps(names []string) error {
	var swaps []int64
	dirty := false
	remove := func(name string) error {
		dirty = true
		if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil && !isNotExist(err) {
			return fmt.Errorf("log: remove %s: %w", name, err)
		}
		return nil
	}
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, cleanedSuffix):
			if err := remove(n); err != nil {
				return err
			}
		case strings.HasSuffix(n, ".log"+swapSuffix):
			if base, _, ok := parseSegmentFile(strings.TrimSuffix(n, swapSuffix)); ok {
				swaps = append(swaps, base)
			}
		}
	}
	sort.Slice(swaps, func(i, j int) bool { return swaps[i] < swaps[j] })
	for _, n := range names {
		if base, ext, ok := parseSegmentFile(strings.TrimSuffix(n, swapSuffix)); ok && ext != ".log" &&
			strings.HasSuffix(n, swapSuffix) && !slices.Contains(swaps, base) {
			if err := remove(n); err != nil { // index .swap files from before a commit point
				return err
			}
		}
	}
	for _, base := range swaps {
		next, err := l.recoverSwapFile(base)
		if err != nil {
			return err
		}
		l.logger.Warn("completing an interrupted log cleaner swap", "dir", l.dir, "segment", base, "next_offset", next)
		// The new segment's transaction index was renamed into place
		// already if its .swap is gone while the plain one is there: a
		// pass writes one (empty if need be) whenever the old segments had
		// a .txnindex, so it has a .swap until renamed.
		txnSwapped := !slices.Contains(names, segmentName(base, ".txnindex")+swapSuffix)
		for _, n := range names {
			if b, ext, ok := parseSegmentFile(n); ok && b >= base && b < max(next, base+1) &&
				!(b == base && ext == ".txnindex" && txnSwapped) {
				if err := remove(n); err != nil {
					return err
				}
			}
		}
		for _, ext := range swapExts {
			err := l.fs.Rename(l.path(base, ext, swapSuffix), l.path(base, ext, ""))
			if err != nil && !(ext != ".log" && isNotExist(err)) {
				return fmt.Errorf("log: complete swap of segment %d: %w", base, err)
			}
		}
	}
	if dirty || len(swaps) > 0 {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("log: sync dir: %w", err)
		}
	}
	return nil
}

// recoverSwapFile scans a .log.swap file and returns the offset after its
// last batch. It was fsynced before its rename, so a bad batch is damage:
// it is cut there, as recovery cuts any segment.
func (l *Log) recoverSwapFile(base int64) (int64, error) {
	name := l.path(base, ".log", swapSuffix)
	s := &segment{baseOffset: base, dir: l.dir, nextOffset: base, h: l.files.newHandle(l.fs, name, true)}
	defer s.h.retire()
	size, err := s.h.size()
	if err != nil {
		return 0, fmt.Errorf("log: size of %s: %w", name, err)
	}
	validEnd, reason := s.scan(l.cfg.IndexIntervalBytes)
	if validEnd < size {
		l.logger.Warn("cut a damaged swap segment", "dir", l.dir, "segment", base, "position", validEnd, "reason", reason)
		if err := s.h.truncate(validEnd); err != nil {
			return 0, fmt.Errorf("log: truncate %s: %w", name, err)
		}
		if err := s.h.sync(); err != nil {
			return 0, fmt.Errorf("log: sync %s: %w", name, err)
		}
		// Its indexes may point past the cut: rebuild them.
		for _, ext := range []string{".index", ".timeindex"} {
			if err := l.fs.Remove(l.path(base, ext, swapSuffix)); err != nil && !isNotExist(err) {
				return 0, err
			}
		}
	} else if reason != nil {
		return 0, fmt.Errorf("log: scan %s: %w", name, reason)
	}
	return s.nextOffset, nil
}
