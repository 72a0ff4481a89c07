// Package log is one partition's append-only log on disk: a directory of
// segments whose .log files hold record batches byte-for-byte as they travel
// on the wire, with sparse offset and time indexes beside them.
//
// The log assigns offsets, rolls segments, recovers after a crash by cutting
// the first torn or corrupt batch, deletes old segments for retention and
// makes appends durable with group commit: many callers waiting on SyncTo
// share one fsync.
package log

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// Errors callers map to Kafka error codes.
var (
	// ErrOffsetOutOfRange: the offset is below the log start or above the end.
	ErrOffsetOutOfRange = errors.New("log: offset out of range")
	// ErrStorage: a write, fsync or file open failed (KAFKA_STORAGE_ERROR).
	// After a full disk (the error also satisfies errors.Is(err,
	// syscall.ENOSPC)) or a lack of descriptors (EMFILE) a later append may
	// succeed; after any other failure the log's directory is offline (see
	// LogDir) and takes no more writes until the broker restarts.
	ErrStorage = errors.New("log: storage failed")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("log: closed")
)

// Config holds the topic configs the log obeys. Zero values mean the
// defaults of DefaultConfig.
type Config struct {
	SegmentBytes       int64         // segment.bytes: roll when the active segment would exceed it
	SegmentMs          int64         // segment.ms: roll when the active segment is older
	IndexIntervalBytes int           // index.interval.bytes: bytes between offset index entries
	RetentionMs        int64         // retention.ms: -1 keeps forever
	RetentionBytes     int64         // retention.bytes: -1 keeps everything
	FileDeleteDelay    time.Duration // file.delete.delay.ms: how long readers may still use a deleted segment

	// cleanup.policy. The zero value is Kafka's default, delete: retention
	// applies and the cleaner leaves the log alone.
	Compact  bool // compact is in the policy: the cleaner keeps the last record of every key
	NoDelete bool // delete is not in the policy: retention.ms and retention.bytes do not apply
	// The cleaner's configs are taken as they are (0 is a valid value).
	MinCompactionLagMs     int64   // min.compaction.lag.ms: younger records are not cleaned
	MaxCompactionLagMs     int64   // max.compaction.lag.ms: an older uncleaned record makes the log due; 0 is none
	DeleteRetentionMs      int64   // delete.retention.ms: how long tombstones stay once the cleaner has seen them
	MinCleanableDirtyRatio float64 // min.cleanable.dirty.ratio: the log is due above this share of dirty bytes
}

// DefaultConfig returns Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:       1 << 30,
		SegmentMs:          7 * 24 * 3600 * 1000,
		IndexIntervalBytes: 4096,
		RetentionMs:        7 * 24 * 3600 * 1000,
		RetentionBytes:     -1,
		FileDeleteDelay:    time.Minute,

		MaxCompactionLagMs:     math.MaxInt64,
		DeleteRetentionMs:      24 * 3600 * 1000,
		MinCleanableDirtyRatio: 0.5,
	}
}

// Options configure Open.
type Options struct {
	FS     vfs.FS
	Dir    string
	Config Config
	// RecoveryPoint is the offset below which the log was known durable
	// (from the broker's checkpoint): segments wholly below it are trusted.
	RecoveryPoint int64
	// LogStartOffset from the broker's checkpoint (DeleteRecords, retention).
	LogStartOffset int64
	// Clean says the broker shut down cleanly: no segment is rescanned
	// unless its index files are missing or damaged.
	Clean  bool
	Logger *slog.Logger
	Now    func() time.Time
	// OnSync, if set, is told how long each fsync of a segment took.
	OnSync func(time.Duration)
	// FirstDirtyOffset from the broker's cleaner-offset-checkpoint: the
	// cleaner has compacted the log below it.
	FirstDirtyOffset int64
	// Files opens and closes the log's segment files, bounded for all the
	// logs sharing it (one per broker). nil: a cache of the log's own
	// without a limit, every file open until the log closes.
	Files *FileCache
	// LogDir is the health of the directory holding the log, shared by
	// the logs in it (one per broker data dir): a failure of one log takes
	// the others' writes offline too. nil: one of the log's own.
	LogDir *LogDir
}

// pendingClose is a deleted or replaced segment whose files close later.
type pendingClose struct {
	timer *time.Timer
	seg   *segment
	done  *atomic.Bool // the timer has closed them
}

// Log is one partition's log. All methods are safe for concurrent use.
//
// Lock order: cleanMu before mu before syncMu. Appends hold mu; no fsync
// runs under it but in Close, recovery, the cleaner's swaps, retention's
// deletions and AppendAborted. A roll only switches the active segment to a
// new file; the sync that follows (SyncTo, started by the roll or by a
// caller) fsyncs the rolled segment, writes its indexes and fsyncs the
// directory without holding mu. Clean holds cleanMu for a whole pass and mu
// only to read the segment list and to swap segments. The FileCache's locks
// come after all of these: a segment's file is opened, under mu or not,
// when an operation needs it. Under descriptor pressure an open may fsync
// another idle file with unsynced writes to close it (FileCache), the one
// case of an fsync while an append or a roll holds mu. A truncation
// (TruncateTo, TruncateFullyAndStartAt) takes cleanMu, then the syncer's
// turn (stopSyncs), then mu, and fsyncs under all three.
type Log struct {
	fs     vfs.FS
	files  *FileCache
	ld     *LogDir
	dir    string
	logger *slog.Logger
	now    func() time.Time
	onSync func(time.Duration)

	mu       sync.RWMutex
	cfg      Config
	segments []*segment // sorted by base offset; the last is active
	logStart int64
	next     atomic.Int64 // log end offset; written under mu
	failed   error        // sticky storage failure
	closed   bool
	pending  []pendingClose // deleted segments whose files close later
	// noSpace: the last append (or roll, or index write) found the disk
	// full; cleared by one that succeeds.
	noSpace atomic.Bool

	// cleanMu serializes cleaning passes. firstDirty (the cleaner offset
	// checkpoint), horizon (the earliest delete horizon of kept
	// tombstones, -1 if none) and horizonKnown are guarded by mu.
	cleanMu      sync.Mutex
	firstDirty   int64
	horizon      int64
	horizonKnown bool
	// truncating counts truncations waiting for cleanMu: a pass in
	// progress gives up at its next read or write (ErrCleanAborted).
	truncating atomic.Int32
	// rewrites counts the truncations and cleaner swaps begun (Rewrites).
	rewrites atomic.Uint64

	syncMu   sync.Mutex
	syncCond *sync.Cond
	syncing  bool
	durable  atomic.Int64 // offsets below are durable (see DurableOffset)
	// dirDirty: a roll created a segment file since the last fsync of
	// the directory; the next sync fsyncs it.
	dirDirty atomic.Bool
}

// Rewrites counts the operations begun that change bytes already in a
// segment file rather than append to it: truncations and the cleaner's
// swaps. While it stays the same, every segment file only grows, so a copy
// of the log's directory brings a file up to date by copying its tail (a
// move between log dirs does).
func (l *Log) Rewrites() uint64 { return l.rewrites.Load() }

// Open opens or creates the log in opts.Dir and recovers it.
func Open(opts Options) (*Log, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OnSync == nil {
		opts.OnSync = func(time.Duration) {}
	}
	if opts.Files == nil {
		opts.Files = NewFileCache(0)
	}
	if opts.LogDir == nil {
		opts.LogDir = NewLogDir(opts.Dir, opts.Logger)
	}
	l := &Log{fs: opts.FS, files: opts.Files, ld: opts.LogDir, dir: opts.Dir, logger: opts.Logger, now: opts.Now, onSync: opts.OnSync, cfg: withDefaults(opts.Config),
		firstDirty: opts.FirstDirtyOffset, horizon: -1}
	l.syncCond = sync.NewCond(&l.syncMu)
	if err := vfs.MkdirAll(l.fs, l.dir); err != nil {
		return nil, fmt.Errorf("log: create %s: %w", l.dir, err)
	}
	if err := l.recover(opts); err != nil {
		l.closeFiles()
		return nil, err
	}
	return l, nil
}

func withDefaults(c Config) Config {
	d := DefaultConfig()
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = d.SegmentBytes
	}
	if c.SegmentMs <= 0 {
		c.SegmentMs = d.SegmentMs
	}
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = d.IndexIntervalBytes
	}
	if c.RetentionMs == 0 {
		c.RetentionMs = d.RetentionMs
	}
	if c.RetentionBytes == 0 {
		c.RetentionBytes = d.RetentionBytes
	}
	if c.FileDeleteDelay < 0 {
		c.FileDeleteDelay = 0
	}
	if c.MaxCompactionLagMs <= 0 {
		c.MaxCompactionLagMs = math.MaxInt64
	}
	return c
}

// recover loads the segments, rescanning those that may hold unsynced
// bytes, and cuts the log at the first bad batch.
func (l *Log) recover(opts Options) error {
	names, err := l.fs.List(l.dir)
	if err != nil {
		return fmt.Errorf("log: list %s: %w", l.dir, err)
	}
	// A cleaning interrupted by a crash is rolled back or completed first.
	if err := l.completeSwaps(names); err != nil {
		return err
	}
	if names, err = l.fs.List(l.dir); err != nil {
		return fmt.Errorf("log: list %s: %w", l.dir, err)
	}
	var bases []int64
	for _, name := range names {
		if strings.HasSuffix(name, ".tmp") {
			_ = l.fs.Remove(l.dir + "/" + name)
			continue
		}
		if base, ok := parseSegmentName(name); ok {
			bases = append(bases, base)
		}
	}
	// A transaction index without its segment (left by a cleaner that did
	// not carry transaction indexes through merges) is stale.
	for _, name := range names {
		if base, ext, ok := parseSegmentFile(name); ok && ext == ".txnindex" && !slices.Contains(bases, base) {
			l.logger.Warn("removing a transaction index without its segment", "dir", l.dir, "file", name)
			_ = l.fs.Remove(l.dir + "/" + name)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	now := l.now()
	// Recovery makes durable what it keeps: a closed segment it scans gets
	// its .log fsynced and its index files written, and the directory is
	// fsynced at the end (a roll leaves both to the next sync, which a
	// crash may have beaten).
	syncDir := !opts.Clean
	for i, base := range bases {
		seg, err := newSegment(l.files, l.fs, l.dir, base, now)
		if err != nil {
			return err
		}
		l.segments = append(l.segments, seg)
		if err := seg.loadTxnIndex(l.fs); errors.Is(err, errTxnIndexDamaged) {
			// Kept for inspection, never deleted; the partition rebuilds
			// the entries of markers after its producer snapshot.
			aside := seg.path(".txnindex") + corruptSuffix
			l.logger.Warn("moving a damaged txnindex aside", "dir", l.dir, "segment", base, "to", aside, "err", err)
			if err := vfs.Rename(l.fs, seg.path(".txnindex"), aside); err != nil {
				return fmt.Errorf("log: move damaged txnindex of segment %d aside: %w", base, err)
			}
		} else if err != nil {
			// Only a missing file may be rebuilt: an index that cannot be
			// read now (too many open files, an I/O error) may be fine.
			return fmt.Errorf("log: load the transaction index of segment %d (left as it is; fix the cause and restart): %w", base, err)
		}
		last := i == len(bases)-1
		// A segment is trusted if a later one starts at or below the
		// recovery point: all of it was durable.
		trusted := opts.Clean || i+1 < len(bases) && bases[i+1] <= opts.RecoveryPoint
		if trusted {
			// Only the last segment, the active one, keeps its indexes
			// in memory; the others read their files on demand.
			if err := seg.loadIndexes(l.fs, last); err == nil {
				seg.flushed = !last
				seg.logger = l.logger
				continue
			} else {
				l.logger.Warn("rebuilding index", "dir", l.dir, "segment", base, "reason", err)
			}
		}
		size, err := seg.h.size()
		if err != nil {
			return fmt.Errorf("log: size of segment %d: %w", base, err)
		}
		validEnd, reason := seg.scan(l.cfg.IndexIntervalBytes)
		seg.logger = l.logger
		if validEnd < size {
			l.logger.Warn("cut log at a torn or corrupt batch", "dir", l.dir, "segment", base,
				"position", validEnd, "bytes_cut", size-validEnd, "reason", reason)
			if err := seg.h.truncate(validEnd); err != nil {
				return fmt.Errorf("log: truncate segment %d: %w", base, err)
			}
			if err := seg.h.sync(); err != nil {
				return fmt.Errorf("log: sync segment %d: %w", base, err)
			}
			seg.size.Store(validEnd)
			// Everything after the cut is gone too.
			for _, later := range bases[i+1:] {
				l.logger.Warn("deleting segment after the cut", "dir", l.dir, "segment", later)
				for _, ext := range []string{".log", ".index", ".timeindex", ".txnindex"} {
					if err := l.fs.Remove(l.dir + "/" + segmentName(later, ext)); err != nil && !isNotExist(err) {
						return fmt.Errorf("log: remove segment %d: %w", later, err)
					}
				}
			}
			syncDir = true
			break
		} else if reason != nil {
			return fmt.Errorf("log: scan segment %d: %w", base, reason)
		}
		seg.size.Store(validEnd)
		if !last {
			if err := l.flushRecovered(seg); err != nil {
				return err
			}
			syncDir = true
		}
	}
	// Drop empty segments other than the last: a crash right after a roll
	// can leave one, and its base may not match the next segment.
	for len(l.segments) > 1 && l.segments[len(l.segments)-1].size.Load() == 0 &&
		l.segments[len(l.segments)-2].nextOffset > l.segments[len(l.segments)-1].baseOffset {
		last := l.segments[len(l.segments)-1]
		l.segments = l.segments[:len(l.segments)-1]
		last.closeFiles()
		_ = l.fs.Remove(last.path(".log"))
		_ = l.fs.Remove(last.path(".txnindex"))
		syncDir = true
	}
	if len(l.segments) == 0 {
		seg, err := newSegment(l.files, l.fs, l.dir, max(opts.LogStartOffset, 0), now)
		if err != nil {
			return err
		}
		seg.logger = l.logger
		l.segments = []*segment{seg}
		syncDir = true
	}
	active := l.segments[len(l.segments)-1]
	active.flushed = false
	if err := active.activate(l.fs, l.cfg.IndexIntervalBytes); err != nil {
		return err
	}
	// Closed segments are only read from now on: a reopen is read-only.
	for _, s := range l.segments[:len(l.segments)-1] {
		s.h.setWritable(false)
	}
	l.next.Store(active.nextOffset)
	if err := l.cutTxnIndexLocked(active.nextOffset); err != nil {
		return err
	}
	l.logStart = max(opts.LogStartOffset, l.segments[0].baseOffset)
	if l.logStart > l.next.Load() {
		l.logStart = l.next.Load()
	}
	// After a crash the recovered tail may sit only in the page cache:
	// make it durable before calling it so. A clean close already did.
	if !opts.Clean {
		if err := active.h.sync(); err != nil {
			return fmt.Errorf("log: sync active segment: %w", err)
		}
	}
	if syncDir {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("log: sync dir: %w", err)
		}
	}
	l.durable.Store(l.next.Load())
	return nil
}

// flushRecovered makes a closed segment that recovery scanned durable, as
// the sync after its roll would have: its .log fsynced (a process crash
// leaves written bytes in the page cache only) and its index files
// written. The caller fsyncs the directory.
func (l *Log) flushRecovered(seg *segment) error {
	if err := seg.h.sync(); err != nil {
		return fmt.Errorf("log: sync segment %d: %w", seg.baseOffset, err)
	}
	if err := seg.writeIndexFiles(l.fs); err != nil {
		return fmt.Errorf("log: write indexes of segment %d: %w", seg.baseOffset, err)
	}
	seg.useIndexFiles(l.fs)
	seg.flushed = true
	return nil
}

// corruptSuffix names a damaged file moved aside at recovery.
const corruptSuffix = "-corrupt"

func isNotExist(err error) bool { return errors.Is(err, iofs.ErrNotExist) }

// AppendResult tells where a batch went.
type AppendResult struct {
	BaseOffset int64
	LastOffset int64
	Position   int64 // byte position in its segment
}

// Append writes one batch, whose header the caller has validated, at the
// log end offset: it rewrites the batch's base offset in place (the CRC does
// not cover it) and returns the offsets it got. The bytes are in the page
// cache when Append returns; SyncTo makes them durable.
func (l *Log) Append(batch []byte) (AppendResult, error) {
	return l.append(batch, false)
}

// AppendAsFollower writes one batch at the offsets it carries, as a
// follower copies its leader's log (Kafka's appendAsFollower): its base
// offset must be at or past the log end offset. A gap between the two is
// kept, as the leader's log cleaner left it; the log end offset becomes
// the offset after the batch. The caller has checked the batch (CRC
// included); the log checks only what its own recovery would refuse (a
// batch larger than recovery reads, offsets going backwards).
func (l *Log) AppendAsFollower(batch []byte) (AppendResult, error) {
	return l.append(batch, true)
}

func (l *Log) append(batch []byte, keepOffsets bool) (AppendResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return AppendResult{}, ErrClosed
	}
	if err := l.unwritableLocked(); err != nil {
		return AppendResult{}, err
	}
	h, err := record.ParseHeader(batch)
	if err != nil {
		return AppendResult{}, err
	}
	if h.Size() != len(batch) {
		return AppendResult{}, fmt.Errorf("log: batch length %d does not match its %d bytes", h.Size(), len(batch))
	}
	if keepOffsets {
		if err := l.checkFollowerBatch(&h); err != nil {
			return AppendResult{}, err
		}
	} else {
		record.SetBaseOffset(batch, l.next.Load())
		h.BaseOffset = l.next.Load()
	}
	base := h.BaseOffset
	if err := l.maybeRoll(len(batch), &h); err != nil {
		return AppendResult{}, err
	}
	seg := l.segments[len(l.segments)-1]
	pos := seg.size.Load()
	if _, err := seg.h.write(batch); err != nil {
		if isOpenError(err) {
			// The file could not be opened (too many open files): nothing
			// was written, and a later append may succeed.
			return AppendResult{}, fmt.Errorf("%w: append to segment %d: %w", ErrStorage, seg.baseOffset, err)
		}
		// A short write leaves a torn batch; cut it so that readers and
		// the next start see none of it.
		if terr := seg.h.truncate(pos); terr != nil {
			l.fail(fmt.Errorf("append to segment %d: %w; cut the torn write: %w", seg.baseOffset, err, terr))
		} else if isNoSpace(err) {
			// A full disk: nothing of the batch is left, and the next
			// append tries again (once space is freed it succeeds).
			l.noteNoSpace(err)
		} else {
			l.fail(fmt.Errorf("append to segment %d: %w", seg.baseOffset, err))
		}
		return AppendResult{}, fmt.Errorf("%w: append to segment %d: %w", ErrStorage, seg.baseOffset, err)
	}
	seg.noteBatch(&h, pos, l.cfg.IndexIntervalBytes)
	seg.size.Store(pos + int64(len(batch)))
	l.next.Store(h.LastOffset() + 1)
	l.noteWritten()
	return AppendResult{BaseOffset: base, LastOffset: h.LastOffset(), Position: pos}, nil
}

// checkFollowerBatch refuses a batch AppendAsFollower cannot store as it
// is. Called with mu held.
func (l *Log) checkFollowerBatch(h *record.Header) error {
	switch end := l.next.Load(); {
	case h.Size() > maxBatchBytes:
		return fmt.Errorf("log: batch of %d bytes at offset %d is above %d, the most recovery reads", h.Size(), h.BaseOffset, maxBatchBytes)
	case h.BaseOffset < end:
		return fmt.Errorf("%w: batch at offset %d is below the log end offset %d", ErrOffsetOutOfRange, h.BaseOffset, end)
	case h.LastOffsetDelta < 0 || h.BaseOffset > math.MaxInt64-int64(h.LastOffsetDelta)-1:
		return fmt.Errorf("log: batch at offset %d has last offset delta %d", h.BaseOffset, h.LastOffsetDelta)
	}
	seg := l.segments[len(l.segments)-1]
	if seg.size.Load() == 0 && h.LastOffset()-seg.baseOffset > math.MaxInt32 {
		// A roll cannot help: the empty active segment would stay
		// behind. TruncateFullyAndStartAt the batch's offset instead.
		return fmt.Errorf("%w: batch at offset %d is more than 2^31 offsets past the empty segment at %d",
			ErrOffsetOutOfRange, h.BaseOffset, seg.baseOffset)
	}
	return nil
}

// unwritableLocked returns why the log takes no writes, or nil: its own
// failure, or its directory's. Called with mu held.
func (l *Log) unwritableLocked() error {
	if l.failed != nil {
		return fmt.Errorf("%w: %v", ErrStorage, l.failed)
	}
	if off := l.ld.Offline(); off != nil {
		return fmt.Errorf("%w: log directory %s is offline since %s failed: %v", ErrStorage, l.ld.Path(), off.Log, off.Err)
	}
	return nil
}

// fail makes a storage failure sticky: the log, and every log of its
// directory, take no more writes until the broker restarts. Called with mu
// held.
func (l *Log) fail(err error) {
	if l.failed == nil {
		l.failed = err
		l.logger.Error("log storage failed; no more writes until restart", "dir", l.dir, "err", err)
		l.ld.fail(l.dir, err)
	}
}

// noteNoSpace records that a write found the disk full.
func (l *Log) noteNoSpace(err error) {
	l.noSpace.Store(true)
	l.ld.full(l.dir, err)
}

// noteWritten clears the full-disk state after a write that succeeded.
func (l *Log) noteWritten() {
	if l.noSpace.Load() {
		l.noSpace.Store(false)
	}
	if l.ld.NoSpace() != nil {
		l.ld.spaceReturned()
	}
}

// StorageError says why the log refuses appends, if it does: reason is
// ReasonIOError (a write or fsync of its own failed), ReasonLogDirOffline
// (one of another log of its directory did) or ReasonNoSpace (its last
// append found the disk full, and no write in the directory succeeded
// since); "" and nil when it takes appends.
func (l *Log) StorageError() (reason string, err error) {
	l.mu.RLock()
	failed := l.failed
	l.mu.RUnlock()
	if failed != nil {
		return ReasonIOError, failed
	}
	if off := l.ld.Offline(); off != nil {
		return ReasonLogDirOffline, off.Err
	}
	if full := l.ld.NoSpace(); full != nil && l.noSpace.Load() {
		return ReasonNoSpace, full.Err
	}
	return "", nil
}

// maybeRoll starts a new segment when the active one is full, older than
// segment.ms (timeWaitedForRoll), or cannot index the batch (relative
// offsets and positions are 32-bit).
func (l *Log) maybeRoll(size int, h *record.Header) error {
	seg := l.segments[len(l.segments)-1]
	cur := seg.size.Load()
	if cur == 0 {
		return nil
	}
	full := cur+int64(size) > l.cfg.SegmentBytes || cur+int64(size) > math.MaxInt32
	old := seg.timeWaitedForRoll(l.now(), h.MaxTimestamp) > l.cfg.SegmentMs
	wide := h.LastOffset()-seg.baseOffset > math.MaxInt32
	if !full && !old && !wide {
		return nil
	}
	return l.rollAt(h.BaseOffset)
}

// roll makes the active segment read-only and opens a new one at the log
// end offset. Called with mu held, it does no fsync: the rolled segment is
// left unflushed, and a sync started here (as Kafka's roll schedules a
// flush) fsyncs it, writes its index files and fsyncs the directory,
// outside mu, before DurableOffset passes it.
func (l *Log) roll() error { return l.rollAt(l.next.Load()) }

// rollAt is roll with the new segment at base when base is past the log
// end offset: a follower's batch that starts past it (Kafka rolls at the
// batch's offset).
func (l *Log) rollAt(base int64) error {
	seg := l.segments[len(l.segments)-1]
	seg.finishTimeIndex()
	next, err := newSegment(l.files, l.fs, l.dir, max(base, l.next.Load()), l.now())
	if err != nil {
		// Nothing was written: a lack of descriptors or of space leaves
		// the log as it was, for a later append to try again.
		switch {
		case isOpenError(err):
		case isNoSpace(err):
			l.noteNoSpace(err)
		default:
			l.fail(err)
		}
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	seg.h.setWritable(false)
	next.logger = l.logger
	l.dirDirty.Store(true)
	seg.flushed = false
	l.segments = append(l.segments, next)
	go l.syncAfterRoll(next.baseOffset)
	return nil
}

// syncAfterRoll makes a rolled segment durable soon, even if no producer
// waits for a sync: its indexes leave the heap once their files are
// written.
func (l *Log) syncAfterRoll(off int64) {
	if err := l.SyncTo(off); err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrStorage) && !errors.Is(err, ErrOffsetOutOfRange) {
		l.logger.Warn("sync after roll", "dir", l.dir, "err", err)
	}
}

func (l *Log) advanceDurable(off int64) {
	for {
		cur := l.durable.Load()
		if off <= cur || l.durable.CompareAndSwap(cur, off) {
			return
		}
	}
}

// SyncTo returns once every offset below off is durable (see
// DurableOffset). Concurrent callers share fsyncs: while one runs, the
// others wait, and the next one covers everything appended meanwhile
// (group commit). A sync fsyncs the segments rolled since the last one and
// writes their index files, fsyncs the active segment and, after a roll,
// the directory; it holds the log's lock only to read the segment list and
// at the end to drop the flushed segments' in-memory indexes.
func (l *Log) SyncTo(off int64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	for {
		if l.durable.Load() >= off {
			return nil
		}
		if !l.syncing {
			break
		}
		l.syncCond.Wait()
	}
	l.syncing = true
	l.syncMu.Unlock()

	end, err := l.flush()

	l.syncMu.Lock()
	l.syncing = false
	l.syncCond.Broadcast()
	if err != nil {
		return err
	}
	l.advanceDurable(end)
	if end < off {
		// Callers sync what they appended: a truncation removed it.
		return fmt.Errorf("%w: sync to %d past the log end %d (the log was truncated)", ErrOffsetOutOfRange, off, end)
	}
	return nil
}

// flush makes every offset below the log end durable and returns that end.
// Only the syncer (syncing set) calls it.
func (l *Log) flush() (int64, error) {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return 0, ErrClosed
	}
	if err := l.unwritableLocked(); err != nil {
		l.mu.RUnlock()
		return 0, err
	}
	end := l.next.Load()
	active := l.segments[len(l.segments)-1]
	// The rolled segments not yet flushed are the last closed ones.
	first := len(l.segments) - 1
	for first > 0 && !l.segments[first-1].flushed {
		first--
	}
	rolled := slices.Clone(l.segments[first : len(l.segments)-1])
	for _, s := range rolled {
		s.flushing.Store(true)
	}
	active.flushing.Store(true) // a roll and a deletion may come meanwhile
	dirDirty := l.dirDirty.Swap(false)
	l.mu.RUnlock()

	// A failed fsync is fatal whatever its errno (the kernel may have
	// dropped the pages it could not write); a lack of descriptors to open
	// a file, or of space for an index file, is not: the next sync does it
	// all again.
	var err error
	transient := false
	for _, s := range rolled {
		if err = s.h.sync(); err != nil {
			err = fmt.Errorf("fsync segment %d: %w", s.baseOffset, err)
			transient = isOpenError(err)
			break
		}
		if err = s.writeIndexFiles(l.fs); err != nil {
			err = fmt.Errorf("write indexes of segment %d: %w", s.baseOffset, err)
			transient = isOpenError(err) || isNoSpace(err)
			break
		}
	}
	if err == nil {
		began := time.Now()
		err = active.h.sync()
		l.onSync(time.Since(began))
		if err != nil {
			err = fmt.Errorf("fsync: %w", err)
			transient = isOpenError(err)
		}
	}
	if err == nil && (dirDirty || len(rolled) > 0) {
		if err = l.fs.SyncDir(l.dir); err != nil {
			err = fmt.Errorf("fsync dir: %w", err)
		}
	}
	active.flushing.Store(false)
	if err == nil && len(rolled) == 0 {
		return end, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range rolled {
		s.flushing.Store(false)
		if err == nil && !s.flushed && slices.Contains(l.segments, s) {
			s.useIndexFiles(l.fs)
			s.flushed = true
		}
	}
	if err != nil {
		if transient {
			if dirDirty {
				l.dirDirty.Store(true)
			}
			if isNoSpace(err) {
				l.noteNoSpace(err)
			}
			return 0, fmt.Errorf("%w: %w", ErrStorage, err)
		}
		l.fail(err)
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return end, nil
}

// Sync makes everything appended so far durable.
func (l *Log) Sync() error { return l.SyncTo(l.next.Load()) }

// EndOffset is the log end offset: the offset the next batch gets.
func (l *Log) EndOffset() int64 { return l.next.Load() }

// DurableOffset is the offset below which everything survives a power
// cut: the segments' data, their files' directory entries, and the index
// files of every segment before the one holding it (what recovery trusts
// below the recovery point). It is the recovery point the broker
// checkpoints; it advances when a SyncTo (or Close) returns, and decreases
// only with a truncation (TruncateTo, TruncateFullyAndStartAt), to the new
// log end offset.
func (l *Log) DurableOffset() int64 { return l.durable.Load() }

// StartOffset is the log start offset.
func (l *Log) StartOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.logStart
}

// Size is the bytes of all segments.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, s := range l.segments {
		n += s.size.Load()
	}
	return n
}

// Segments is the number of segments.
func (l *Log) Segments() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.segments)
}

// SetConfig changes the configs (after an AlterConfigs).
func (l *Log) SetConfig(c Config) {
	l.mu.Lock()
	l.cfg = withDefaults(c)
	l.mu.Unlock()
}

// ReadResult is a byte range of one segment file holding whole batches,
// except that the last may be cut short by maxBytes, as Kafka sends it:
// clients drop a partial trailing batch.
//
// File stays open for the reader (the log's FileCache neither evicts nor
// closes it) until Release is called or, failing that, for at least
// file.delete.delay.ms (readLease) after Read, even if the segment is
// deleted meanwhile. Callers that are done with it call Release, so that
// the file may be closed at once when the cache needs room.
type ReadResult struct {
	File     vfs.File
	Position int64
	Size     int64
	// FirstBatch is the header of the first batch in the range.
	FirstBatch record.Header
	// NextOffset is the offset after the last whole batch in the range.
	NextOffset int64

	h *fileHandle // the lease on File, nil when the range is empty
}

// Release tells that the reader is done with File. It may be called once
// per ReadResult; on an empty result it does nothing.
func (r *ReadResult) Release() {
	if r.h != nil {
		r.h.endLease()
		r.h = nil
	}
}

// minReadLease is the shortest time a reader keeps a segment file it was
// handed without calling Release, whatever file.delete.delay.ms says.
const minReadLease = 10 * time.Second

// readLease is how long a reader that never calls Release keeps File.
func (l *Log) readLease() time.Duration { return max(l.cfg.FileDeleteDelay, minReadLease) }

// Read returns the bytes of the batches from the one holding offset,
// stopping before maxOffset (the high watermark) and after maxBytes. With
// minOneBatch the first batch is returned whole even if it is larger than
// maxBytes (KIP-74). An offset equal to the end gives an empty result.
func (l *Log) Read(offset int64, maxBytes int, maxOffset int64, minOneBatch bool) (ReadResult, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ReadResult{}, ErrClosed
	}
	end := l.next.Load()
	if offset < l.logStart || offset > end {
		return ReadResult{}, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, offset, l.logStart, end)
	}
	if offset >= maxOffset || offset == end {
		return ReadResult{}, nil
	}
	i := sort.Search(len(l.segments), func(i int) bool { return l.segments[i].baseOffset > offset }) - 1
	if i < 0 {
		i = 0
	}
	for ; i < len(l.segments); i++ {
		seg := l.segments[i]
		size := seg.size.Load()
		pos, h, ok, err := seg.positionOf(offset, size)
		if err != nil {
			return ReadResult{}, err
		}
		if !ok {
			continue // offset is past this segment's batches
		}
		if h.BaseOffset >= maxOffset {
			return ReadResult{}, nil
		}
		endPos := size
		if maxOffset < seg.nextOffset {
			p, _, found, err := seg.positionOf(maxOffset, size)
			if err != nil {
				return ReadResult{}, err
			}
			if found {
				endPos = p
			}
		}
		n := endPos - pos
		if n > int64(maxBytes) {
			n = int64(maxBytes)
		}
		if n < int64(h.Size()) {
			if !minOneBatch {
				return ReadResult{}, nil
			}
			n = int64(h.Size())
		}
		next := h.LastOffset() + 1
		switch {
		case n == endPos-pos && endPos == size:
			next = seg.nextOffset
		case n == endPos-pos:
			next = maxOffset
		default:
			// Cut by maxBytes: walk the headers of the last index
			// interval to find the last whole batch.
			cut := pos + n
			p, err := seg.positionAtOrBelow(cut, pos, size)
			if err != nil {
				return ReadResult{}, err
			}
			for p < cut {
				bh, err := seg.headerAt(p)
				if err != nil {
					return ReadResult{}, err
				}
				if p+int64(bh.Size()) > cut {
					break
				}
				next = bh.LastOffset() + 1
				p += int64(bh.Size())
			}
		}
		f, err := seg.h.lease(l.readLease())
		if err != nil {
			return ReadResult{}, fmt.Errorf("%w: read segment %d: %v", ErrStorage, seg.baseOffset, err)
		}
		return ReadResult{File: f, Position: pos, Size: n, FirstBatch: h, NextOffset: next, h: seg.h}, nil
	}
	return ReadResult{}, nil
}

// ReadBatches returns a copy of whole batches from offset, at most maxBytes
// (but at least one batch). For internal readers: idempotence replay, tests,
// ListOffsets by time.
func (l *Log) ReadBatches(offset int64, maxBytes int) ([]byte, error) {
	r, err := l.Read(offset, maxBytes, math.MaxInt64, true)
	if err != nil || r.Size == 0 {
		return nil, err
	}
	defer r.Release()
	b := make([]byte, r.Size)
	if _, err := r.File.ReadAt(b, r.Position); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("log: read at %d: %w", r.Position, err)
	}
	// Cut a partial trailing batch.
	it := record.NewIter(b)
	for {
		if _, _, ok := it.Next(); !ok {
			break
		}
	}
	return b[:it.Pos()], nil
}

// OffsetForTimestamp returns the first offset whose record timestamp is at
// or after ts, and that timestamp; found is false when none is.
func (l *Log) OffsetForTimestamp(ts int64) (offset, timestamp int64, found bool, err error) {
	l.mu.RLock()
	var start int64 = -1
	if l.closed {
		l.mu.RUnlock()
		return 0, 0, false, ErrClosed
	}
	for _, seg := range l.segments {
		if size := seg.size.Load(); seg.maxTimestamp >= ts && size > 0 {
			var err error
			if start, err = seg.timeLookupStart(ts, size); err != nil {
				l.mu.RUnlock()
				return 0, 0, false, err
			}
			break
		}
	}
	logStart := l.logStart
	l.mu.RUnlock()
	if start < 0 {
		return 0, 0, false, nil
	}
	start = max(start, logStart)
	for {
		b, err := l.ReadBatches(start, timeLookupReadBytes)
		if err != nil {
			return 0, 0, false, err
		}
		if len(b) == 0 {
			return 0, 0, false, nil
		}
		it := record.NewIter(b)
		for {
			batch, h, ok := it.Next()
			if !ok {
				break
			}
			start = h.LastOffset() + 1
			if h.MaxTimestamp < ts {
				continue
			}
			recs, err := record.Records(batch, h, maxBatchBytes)
			if err != nil {
				return 0, 0, false, fmt.Errorf("log: decode batch at %d: %w", h.BaseOffset, err)
			}
			for _, r := range recs {
				rts := h.BaseTimestamp + r.TimestampDelta
				if h.Attributes&record.AttrLogAppendTime != 0 {
					rts = h.MaxTimestamp
				}
				off := h.BaseOffset + int64(r.OffsetDelta)
				if rts >= ts && off >= logStart {
					return off, rts, true, nil
				}
			}
		}
		if err := it.Err(); err != nil {
			return 0, 0, false, err
		}
	}
}

// timeLookupReadBytes is how much OffsetForTimestamp reads per step.
const timeLookupReadBytes = 1 << 20

// MaxTimestamp returns the largest timestamp in the log and its offset
// (ListOffsets with timestamp -3, KIP-734), or -1, -1 when empty.
func (l *Log) MaxTimestamp() (ts, offset int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	ts, offset = -1, -1
	for _, seg := range l.segments {
		if seg.maxTimestamp > ts {
			ts, offset = seg.maxTimestamp, seg.offsetOfMaxTimestamp
		}
	}
	return ts, offset
}

// DeleteRecordsBefore moves the log start offset up to off (DeleteRecords)
// and deletes segments wholly below it. off must be at most hw.
func (l *Log) DeleteRecordsBefore(off, hw int64) (int64, error) {
	// Rolled segments are synced first: a segment a sync is flushing is
	// not deleted.
	if err := l.syncRolled(); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if off < 0 || off > hw || off > l.next.Load() {
		return 0, fmt.Errorf("%w: %d above the high watermark %d", ErrOffsetOutOfRange, off, hw)
	}
	if off > l.logStart {
		l.logStart = off
	}
	l.deleteSegmentsLocked(func(s *segment, _ int64) bool { return s.nextOffset <= l.logStart })
	return l.logStart, nil
}

// Retain deletes segments past retention.ms or beyond retention.bytes,
// rolling the active segment when it alone is too old. It returns the
// number of segments deleted. Only the delete cleanup policy has retention.
func (l *Log) Retain() int {
	// Rolled segments are synced first: a segment a sync is flushing is
	// not deleted (it goes at the next call).
	if err := l.syncRolled(); err != nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.unwritableLocked() != nil || l.cfg.NoDelete {
		return 0
	}
	nowMs := l.now().UnixMilli()
	expired := func(s *segment) bool {
		if s.size.Load() == 0 && s != l.segments[len(l.segments)-1] {
			return true // emptied by the cleaner
		}
		return l.cfg.RetentionMs >= 0 && s.maxTimestamp >= 0 && nowMs-s.maxTimestamp > l.cfg.RetentionMs
	}
	active := l.segments[len(l.segments)-1]
	if len(l.segments) == 1 && active.size.Load() > 0 && expired(active) {
		if err := l.roll(); err != nil {
			return 0
		}
	}
	return l.deleteSegmentsLocked(func(s *segment, remaining int64) bool {
		if expired(s) {
			return true
		}
		return l.cfg.RetentionBytes >= 0 && remaining-s.size.Load() >= l.cfg.RetentionBytes
	})
}

// deleteSegmentsLocked deletes segments from the front while del says so,
// never the active one. remaining is the log's size before s goes.
func (l *Log) deleteSegmentsLocked(del func(s *segment, remaining int64) bool) int {
	var total int64
	for _, s := range l.segments {
		total += s.size.Load()
	}
	n := 0
	// (A segment a sync is flushing stays until the next time.)
	for len(l.segments) > 1 && !l.segments[0].flushing.Load() && del(l.segments[0], total) {
		s := l.segments[0]
		l.segments = l.segments[1:]
		total -= s.size.Load()
		n++
		if l.segments[0].baseOffset > l.logStart {
			l.logStart = l.segments[0].baseOffset
		}
		// Unlink now; readers holding the file keep reading it until the
		// delayed close.
		for _, ext := range []string{".log", ".index", ".timeindex", ".txnindex"} {
			if err := l.fs.Remove(s.path(ext)); err != nil && !isNotExist(err) {
				l.logger.Warn("remove segment file", "path", s.path(ext), "err", err)
			}
		}
		l.closeLater(s)
		l.logger.Info("deleted segment", "dir", l.dir, "segment", s.baseOffset)
	}
	if n > 0 {
		_ = l.fs.SyncDir(l.dir)
	}
	return n
}

// closeLater closes the files of a deleted or replaced segment after
// file.delete.delay.ms, so that readers holding them finish; they are never
// reopened from now on (another segment may have their names), and close
// sooner if idle. Called with mu held.
func (l *Log) closeLater(s *segment) {
	s.markGone()
	l.pending = slices.DeleteFunc(l.pending, func(p pendingClose) bool { return p.done.Load() })
	done := new(atomic.Bool)
	l.pending = append(l.pending, pendingClose{time.AfterFunc(l.cfg.FileDeleteDelay, func() {
		s.closeFiles()
		done.Store(true)
	}), s, done})
}

// Close makes the log durable (as a sync does, and the active segment's
// indexes too) and closes every file. A cleanly closed log needs no rescan
// at the next Open. A log that takes no writes (StorageError: failed, or
// its directory offline) is closed without a flush and Close returns
// ErrStorage; so does a flush that fails (a full disk failing an index
// file, after every segment's data is fsynced).
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.stopSyncs()

	l.mu.Lock()
	defer l.mu.Unlock()
	// A log that takes no writes is closed as it is: its directory may be
	// failing, and the next start recovers it from its recovery point.
	err := l.unwritableLocked()
	if err == nil {
		if err = l.flushAllLocked(); err != nil {
			err = fmt.Errorf("%w: close: %w", ErrStorage, err)
		} else {
			l.advanceDurable(l.next.Load())
		}
	}
	l.closeFiles()
	l.resumeSyncs()
	return err
}

// stopSyncs waits out a sync in flight and keeps others from starting,
// until resumeSyncs.
func (l *Log) stopSyncs() {
	l.syncMu.Lock()
	for l.syncing {
		l.syncCond.Wait()
	}
	l.syncing = true
	l.syncMu.Unlock()
}

func (l *Log) resumeSyncs() {
	l.syncMu.Lock()
	l.syncing = false
	l.syncCond.Broadcast()
	l.syncMu.Unlock()
}

// flushAllLocked does at close what a sync does, plus the active segment's
// index files; a segment whose index turned out damaged has its index
// files removed instead, for the next Open to rebuild. Called with mu held
// and syncs stopped.
func (l *Log) flushAllLocked() error {
	active := l.segments[len(l.segments)-1]
	active.finishTimeIndex()
	// The data first: a full disk that fails an index file below leaves
	// no record unsynced.
	for _, s := range l.segments {
		if s == active || !s.flushed {
			if err := s.h.sync(); err != nil {
				return fmt.Errorf("fsync segment %d: %w", s.baseOffset, err)
			}
		}
	}
	for _, s := range l.segments {
		closed := s != active
		if closed && s.flushed && !s.badIndex.Load() {
			continue
		}
		if s.badIndex.Load() {
			for _, ext := range []string{".index", ".timeindex"} {
				if err := l.fs.Remove(s.path(ext)); err != nil && !isNotExist(err) {
					return fmt.Errorf("remove damaged index of segment %d: %w", s.baseOffset, err)
				}
			}
			continue
		}
		if closed || s.indexDirty || s.size.Load() > 0 {
			if err := s.writeIndexFiles(l.fs); err != nil {
				return fmt.Errorf("write indexes of segment %d: %w", s.baseOffset, err)
			}
			s.indexDirty = false
		}
		if closed {
			s.useIndexFiles(l.fs)
			s.flushed = true
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("fsync dir: %w", err)
	}
	l.dirDirty.Store(false)
	return nil
}

// Delete closes the log and removes its directory (DeleteTopics).
func (l *Log) Delete() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	// A sync in flight may be writing index files: wait for it.
	l.stopSyncs()
	l.mu.Lock()
	l.closeFiles()
	l.mu.Unlock()
	l.resumeSyncs() // later ones find the log closed
	// A cleaning pass in progress fails fast on the closed files; wait for
	// it so that it creates no file in the directory being removed.
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	if err := vfs.RemoveAll(l.fs, l.dir); err != nil {
		return fmt.Errorf("log: delete %s: %w", l.dir, err)
	}
	return nil
}

func (l *Log) closeFiles() {
	for _, p := range l.pending {
		if p.timer.Stop() {
			p.seg.closeFiles()
		}
	}
	l.pending = nil
	for _, s := range l.segments {
		s.closeFiles()
	}
	l.segments = nil
}

// WalkHeaders calls fn with the header of every batch from the one holding
// offset from to the end, reading headers only, and for a control batch
// (a transaction marker) its type. It is how producer state is rebuilt from
// the log tail.
func (l *Log) WalkHeaders(from int64, fn func(h record.Header, control record.ControlType) error) error {
	return l.WalkHeadersAndControl(from, func(h record.Header, c Control) error { return fn(h, c.Type) })
}

// Control is the first record of a control batch: its type (from the key)
// and its value (a transaction marker's version and coordinator epoch).
type Control struct {
	Type  record.ControlType
	Value []byte
}

// WalkHeadersAndControl is WalkHeaders with a control batch's value too,
// for those (the partition's producer state) that need a marker's
// coordinator epoch. Value is nil for other batches.
func (l *Log) WalkHeadersAndControl(from int64, fn func(h record.Header, control Control) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	from = max(from, l.logStart)
	for _, seg := range l.segments {
		if seg.nextOffset <= from {
			continue
		}
		size := seg.size.Load()
		pos, _, ok, err := seg.positionOf(from, size)
		if err != nil {
			return err
		}
		for ok && pos < size {
			h, err := seg.headerAt(pos)
			if err != nil {
				return err
			}
			var ctl Control
			if h.IsControl() {
				if ctl, err = seg.controlAt(h, pos); err != nil {
					return err
				}
			}
			if err := fn(h, ctl); err != nil {
				return err
			}
			pos += int64(h.Size())
		}
	}
	return nil
}
