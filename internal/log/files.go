package log

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-io/sluice/internal/vfs"
)

// FileCache bounds how many segment files (.log files, and the .index and
// .timeindex files of closed segments) the logs sharing it hold open at
// once: a broker makes one for all its partitions, so that a broker with
// more partitions than file descriptors still opens them all. A file is
// opened when a read, append or sync needs it and stays open until it is
// evicted to make room for another: the least recently used idle file goes
// first (the CLOCK approximation of LRU: a use sets a bit, the eviction
// hand clears bits until it finds an idle file with none).
//
// A file is idle, and may be closed, when nobody holds it (reads, appends
// and syncs hold it while they run), it has no write that an fsync has not
// covered (a write error found by writeback after a close could go unseen
// by a later fsync on a new descriptor), and no reader handed the file by
// Log.Read may still use it: such a reader holds it until ReadResult.Release,
// or for file.delete.delay.ms (at least minReadLease) after the read when it
// never calls Release (the fetch path releases a file once its response is
// written). When every open file is held, a file is opened beyond the
// limit rather than failing the operation; Stats counts those. A lease is
// never broken before its time: a fetch spanning more partitions than the
// limit holds them all until its response is written (breaking leases
// past a margin made such a fetch fail and be retried for ever).
//
// Safe for concurrent use. Lock order: a handle's syncMu, then
// FileCache.mu, then a handle's mu; at most two handles' mu at once, and
// only under FileCache.mu (the second is an eviction victim). Callers (the
// logs) take their own locks before any of these.
type FileCache struct {
	limit int // 0: no limit
	now   func() time.Time

	mu   sync.Mutex
	ring []*fileHandle // handles with a file open; the CLOCK's ring
	hand int

	openCount atomic.Int64 // len(ring), read without mu
	opens     atomic.Int64
	evictions atomic.Int64
	overLimit atomic.Int64
}

// NewFileCache returns a cache that keeps at most limit files open (0: no
// limit, every file stays open until its log closes, as before the cache).
func NewFileCache(limit int) *FileCache {
	if limit < 0 {
		panic(fmt.Sprintf("BUG: log.NewFileCache: limit %d", limit))
	}
	return &FileCache{limit: limit, now: time.Now}
}

// FileCacheStats describe a FileCache.
type FileCacheStats struct {
	Limit     int   // the most files kept open; 0 is no limit
	Open      int   // files open now
	Opens     int64 // files opened since the cache was made
	Evictions int64 // idle files closed to make room
	OverLimit int64 // files opened beyond the limit because every open one was in use
}

// Stats reports the cache's state.
func (c *FileCache) Stats() FileCacheStats {
	c.mu.Lock()
	open := len(c.ring)
	c.mu.Unlock()
	return FileCacheStats{Limit: c.limit, Open: open, Opens: c.opens.Load(),
		Evictions: c.evictions.Load(), OverLimit: c.overLimit.Load()}
}

// errFileGone: the file of a deleted or replaced segment, closed, is asked
// for again. Its log no longer lists the segment; callers that read it
// outside the log's lock (the cleaner) find out and give up.
var errFileGone = errors.New("log: segment file closed: the segment was deleted or replaced")

// fileHandle is one file of a segment, open or not. Its fields are
// guarded by mu; slot by the cache's mu.
type fileHandle struct {
	c    *FileCache
	fs   vfs.FS
	name string

	used atomic.Bool // the CLOCK bit: used since the hand last passed

	// syncMu serializes fsyncs of f: the log's and one made to close it
	// share the descriptor, and Linux reports a writeback error to the
	// first fsync only; the one that sees it records it (syncErr) before
	// the other can return.
	syncMu sync.Mutex

	mu sync.Mutex
	f  vfs.File
	// writable: (re)opened for appending (the active segment, recovery),
	// else read-only. A reopen never creates the file.
	writable bool
	refs     int // operations holding f
	// readers: Log.Read results not released yet; leaseUntil: when those
	// that are never released stop holding f.
	readers    int
	leaseUntil time.Time
	// writes counts writes and truncations through f, synced those the
	// last successful fsync covered: f is not closed while they differ.
	writes, synced uint64
	// syncErr: an fsync made to close f failed; f stays open and the next
	// sync reports it.
	syncErr error
	// pinned: never evicted (its name was removed while the log still
	// reads it: a failed cleaner swap); closed when retired.
	pinned bool
	// gone: the segment was deleted or replaced: the file is never
	// reopened, and closed once idle. retired: its log let go of it (the
	// segment's file.delete.delay.ms passed, or the log closed): closed
	// once nobody holds it, leased readers or not.
	gone, retired bool
	slot          int // index in c.ring, -1 when f is nil
}

// newHandle returns a handle on name, not open yet.
func (c *FileCache) newHandle(fs vfs.FS, name string, writable bool) *fileHandle {
	return &fileHandle{c: c, fs: fs, name: name, writable: writable, slot: -1}
}

// createHandle opens name for appending, creating it if missing (a new
// segment), and returns its handle.
func (c *FileCache) createHandle(fs vfs.FS, name string) (*fileHandle, error) {
	h := c.newHandle(fs, name, true)
	if _, err := c.open(h, true); err != nil {
		return nil, err
	}
	h.release()
	return h, nil
}

// acquire returns the open file and holds it until release.
func (h *fileHandle) acquire() (vfs.File, error) {
	h.mu.Lock()
	if f := h.f; f != nil {
		h.refs++
		h.mu.Unlock()
		if !h.used.Load() {
			h.used.Store(true)
		}
		return f, nil
	}
	h.mu.Unlock()
	return h.c.open(h, false)
}

// maxEvictionSyncs bounds the fsyncs one open makes to free a descriptor
// held by a file with unsynced writes, before it opens beyond the limit.
const maxEvictionSyncs = 2

// open opens h's file, making room first, and holds it.
func (c *FileCache) open(h *fileHandle, create bool) (vfs.File, error) {
	for syncs := 0; ; syncs++ {
		c.mu.Lock()
		v := c.makeRoomLocked(syncs < maxEvictionSyncs)
		if v == nil {
			break // c.mu held
		}
		c.mu.Unlock()
		// Room would take closing v, whose writes are not fsynced yet:
		// fsync them first, outside the cache's lock.
		v.syncForEviction()
	}
	defer c.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f != nil {
		h.refs++
		return h.f, nil
	}
	if h.gone {
		return nil, fmt.Errorf("%w: %s", errFileGone, h.name)
	}
	var (
		f   vfs.File
		err error
	)
	switch {
	case create:
		f, err = h.fs.OpenAppend(h.name)
	case h.writable:
		// OpenAppend creates a missing file: a segment file that vanished
		// must be an error, not an empty segment.
		if _, err = h.fs.Stat(h.name); err == nil {
			f, err = h.fs.OpenAppend(h.name)
		}
	default:
		f, err = h.fs.Open(h.name)
	}
	if err != nil {
		return nil, fmt.Errorf("log: open %s: %w", h.name, err)
	}
	c.opens.Add(1)
	if c.limit > 0 && len(c.ring) >= c.limit {
		c.overLimit.Add(1)
	}
	h.f = f
	h.refs++
	h.used.Store(true)
	h.slot = len(c.ring)
	c.ring = append(c.ring, h)
	c.openCount.Store(int64(len(c.ring)))
	return f, nil
}

// makeRoomLocked closes idle files until one more fits under the limit, or
// the hand has gone round twice. When only files with unsynced writes
// could go and syncOK is set, it returns one of them, held: the caller
// fsyncs it (syncForEviction) and tries again. Called with c.mu held.
func (c *FileCache) makeRoomLocked(syncOK bool) *fileHandle {
	if c.limit == 0 {
		return nil
	}
	var unsynced *fileHandle
	now := c.now()
	for steps := 2 * len(c.ring); len(c.ring) >= c.limit && steps > 0; steps-- {
		if c.hand >= len(c.ring) {
			c.hand = 0
		}
		v := c.ring[c.hand]
		if v.used.Swap(false) {
			c.hand++
			continue
		}
		v.mu.Lock()
		switch {
		case v.idleLocked(now):
			v.closeLocked()
			c.evictions.Add(1)
		case unsynced == nil && v.idleButUnsyncedLocked(now):
			unsynced = v
			c.hand++
		default:
			c.hand++
		}
		v.mu.Unlock()
	}
	if len(c.ring) < c.limit || unsynced == nil || !syncOK {
		return nil
	}
	unsynced.mu.Lock()
	unsynced.refs++
	unsynced.mu.Unlock()
	return unsynced
}

// syncForEviction fsyncs a file that an open wants to close, its holder
// having taken it (makeRoomLocked). A failure is kept for the log's next
// sync, which reports it: the writes it did not make durable may be lost.
func (h *fileHandle) syncForEviction() {
	h.syncMu.Lock()
	defer h.syncMu.Unlock()
	h.mu.Lock()
	f, gen := h.f, h.writes
	h.mu.Unlock()
	if err := f.Sync(); err != nil {
		h.mu.Lock()
		if h.syncErr == nil {
			h.syncErr = err
		}
		h.mu.Unlock()
		h.release()
		return
	}
	h.releaseAfter(false, gen)
}

// idleLocked says whether h's file may be closed. Called with h.mu held.
func (h *fileHandle) idleLocked(now time.Time) bool {
	return h.writes == h.synced && h.idleButUnsyncedLocked(now)
}

// idleButUnsyncedLocked says whether h's file may be closed once its
// writes are fsynced. Called with h.mu held.
func (h *fileHandle) idleButUnsyncedLocked(now time.Time) bool {
	return h.refs == 0 && !h.pinned && h.syncErr == nil && (h.readers == 0 || !now.Before(h.leaseUntil))
}

// keepOpen pins h's file, open now (the caller holds it), until retired.
func (h *fileHandle) keepOpen() {
	h.mu.Lock()
	h.pinned = true
	h.mu.Unlock()
}

// closeLocked closes h's file and takes it out of the ring. Called with
// c.mu and h.mu held.
func (h *fileHandle) closeLocked() {
	c := h.c
	h.f.Close()
	h.f = nil
	last := len(c.ring) - 1
	moved := c.ring[last]
	c.ring[h.slot] = moved
	moved.slot = h.slot
	c.ring[last] = nil
	c.ring = c.ring[:last]
	c.openCount.Store(int64(len(c.ring)))
	h.slot = -1
}

// release ends a hold taken by acquire.
func (h *fileHandle) release() { h.releaseAfter(false, 0) }

// releaseAfter ends a hold; wrote says the holder wrote or truncated the
// file, synced that it fsynced it with writes counted at gen.
func (h *fileHandle) releaseAfter(wrote bool, syncedGen uint64) {
	h.mu.Lock()
	h.refs--
	if h.refs < 0 {
		h.mu.Unlock()
		panic("BUG: log: file handle released more often than acquired: " + h.name)
	}
	if wrote {
		h.writes++
	}
	if syncedGen > h.synced {
		h.synced = syncedGen
	}
	closeNow := h.doneLocked()
	h.mu.Unlock()
	if closeNow {
		h.closeIfDone()
	}
}

// doneLocked says whether h's file is to be closed now that a hold on it
// ended: its segment is gone, or the cache is over its limit (every file
// was held when one more was opened) and h's is idle. Called with h.mu
// held.
func (h *fileHandle) doneLocked() bool {
	if h.f == nil || h.refs > 0 {
		return false
	}
	if h.retired {
		return true
	}
	over := h.c.limit > 0 && h.c.openCount.Load() > int64(h.c.limit)
	return (h.gone || over) && h.idleLocked(h.c.now())
}

// markGone says the segment was deleted or replaced: its file, open or
// not, is never opened again, and closes once idle.
func (h *fileHandle) markGone() {
	h.mu.Lock()
	h.gone = true
	h.mu.Unlock()
	h.closeIfDone()
}

// retire says the log let go of the file (after a deleted segment's
// file.delete.delay.ms, or at close): it is closed now, or when the last
// operation holding it ends, whether leased readers are done or not.
func (h *fileHandle) retire() {
	h.mu.Lock()
	h.gone, h.retired = true, true
	h.mu.Unlock()
	h.closeIfDone()
}

func (h *fileHandle) closeIfDone() {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.doneLocked() {
		h.closeLocked()
	}
}

// setWritable says how a later reopen opens the file: for appending (the
// active segment) or read-only (a closed one).
func (h *fileHandle) setWritable(w bool) {
	h.mu.Lock()
	h.writable = w
	h.mu.Unlock()
}

// lease hands the open file to a reader outside the log (a fetch's
// sendfile region): it stays open until release is called or, if it never
// is, for d.
func (h *fileHandle) lease(d time.Duration) (vfs.File, error) {
	f, err := h.acquire()
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.readers++
	if until := h.c.now().Add(d); until.After(h.leaseUntil) {
		h.leaseUntil = until
	}
	h.refs--
	h.mu.Unlock()
	return f, nil
}

// endLease is a leased reader saying it is done with the file.
func (h *fileHandle) endLease() {
	h.mu.Lock()
	if h.readers > 0 {
		h.readers--
	}
	closeNow := h.doneLocked()
	h.mu.Unlock()
	if closeNow {
		h.closeIfDone()
	}
}

func (h *fileHandle) readAt(b []byte, off int64) (int, error) {
	f, err := h.acquire()
	if err != nil {
		return 0, err
	}
	defer h.release()
	return f.ReadAt(b, off)
}

func (h *fileHandle) size() (int64, error) {
	f, err := h.acquire()
	if err != nil {
		return 0, err
	}
	defer h.release()
	return f.Size()
}

func (h *fileHandle) write(b []byte) (int, error) {
	f, err := h.acquire()
	if err != nil {
		return 0, err
	}
	n, err := f.Write(b)
	h.releaseAfter(true, 0)
	return n, err
}

func (h *fileHandle) truncate(size int64) error {
	f, err := h.acquire()
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	h.releaseAfter(true, 0)
	return err
}

// sync fsyncs the file; the writes made before it count as synced once it
// succeeds. A failed fsync made to evict the file fails it too.
func (h *fileHandle) sync() error {
	f, err := h.acquire()
	if err != nil {
		return err
	}
	h.syncMu.Lock()
	defer h.syncMu.Unlock()
	h.mu.Lock()
	gen, serr := h.writes, h.syncErr
	h.mu.Unlock()
	if serr != nil {
		h.release()
		return serr
	}
	if err := f.Sync(); err != nil {
		h.release()
		return err
	}
	h.releaseAfter(false, gen)
	return nil
}

// isOpenError says whether err is a failure to open a file for lack of
// descriptors or memory: nothing was written, and a later try may work.
func isOpenError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOMEM)
}
