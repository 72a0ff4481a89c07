package collect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/vfs"
)

// Spool limits.
const (
	// DefaultSpoolBytes bounds a spool's files on disk; full, a request
	// the in-memory buffer cannot take is a 503.
	DefaultSpoolBytes = 1 << 30
	// spoolSegmentBytes: a segment takes no more entries once it holds
	// this much, so that replayed bytes are given back to the disk in
	// pieces of about this size.
	spoolSegmentBytes = 16 << 20
	// spoolReplayWindowBytes bounds the bytes of records one replay step
	// reads and has in flight (and at most half the in-memory buffer).
	spoolReplayWindowBytes = 4 << 20
	// spoolQueueLen bounds the puts waiting for the spool's writer; a
	// full queue makes the handler wait for the disk, not the cluster.
	spoolQueueLen = 256
	// spoolBatchMax bounds the puts one fsync covers.
	spoolBatchMax = 128
	// spoolRetryBackoff is how long replay waits after the cluster failed
	// some of its records before it produces them again.
	spoolRetryBackoff = time.Second
	// spoolMaxAttempts: a replayed record the cluster fails this many
	// times (each after the replay client's own retries) is dropped.
	spoolMaxAttempts = 5
	// spoolReadyHeadroomBytes: /readyz says not ready when the spool has
	// less room than this left (or a sixteenth of a smaller spool).
	spoolReadyHeadroomBytes = 4 << 20
)

// errSpoolFull: the spool cannot take a request's records; the handler
// answers 503 with Retry-After.
var errSpoolFull = errors.New("collect: disk spool full")

// errSpoolClosed: a put after the collector closed its spool.
var errSpoolClosed = errors.New("collect: spool closed")

// spoolSegment is one segment file as the writer and the replayer share
// it (guarded by diskSpool.mu).
type spoolSegment struct {
	seq    uint64
	size   int64 // bytes synced: replay reads up to here
	sealed bool  // takes no more entries: removable once replayed
}

// spoolPut is one request's entry on its way to the writer.
type spoolPut struct {
	entry []byte
	done  chan error
}

// diskSpool is a collector's disk spool: records the in-memory buffer cannot
// take while the cluster is slow or down are appended to segment files,
// fsynced before the request is answered, and replayed to the cluster in
// the order they were spooled once it takes them again.
//
// Ordering: while anything is spooled and not yet acknowledged, every
// request goes to the spool, so that no event overtakes an earlier one on
// its way to a partition; once replay has caught up, requests go to the
// in-memory buffer again. Records the cluster fails after they were
// buffered in memory are spooled too, after whatever is spooled already.
//
// One goroutine writes (a batch of puts, then one fsync for them all) and
// one replays (a window of entries, produced and acknowledged, then the
// position saved in replay.checkpoint). Entries are read only up to what
// was fsynced, so no record is sent before it is durable here.
type diskSpool struct {
	fs    vfs.FS
	dir   string
	limit int64
	// segmentBytes is spoolSegmentBytes (tests roll segments sooner).
	segmentBytes int64
	log          *slog.Logger
	m            *metrics
	buf          *buffer
	cl           *kgo.Client // the replay producer
	lock         *vfs.DirLock

	puts    chan *spoolPut
	sealReq chan struct{} // replay asks the writer to seal the caught-up segment
	stop    chan struct{} // closed by Close: replay stops
	stopW   chan struct{} // closed by Close after replay: the writer stops
	wDone   chan struct{}
	rDone   chan struct{}

	mu       sync.Mutex
	segs     []*spoolSegment // oldest first; segs[0] is the one replay reads
	readOff  int64           // in segs[0]: every entry before it is acknowledged
	bytes    int64           // on disk, plus puts reserved and not yet written
	inflight int             // puts reserved and not yet answered
	nextSeq  uint64
	changed  chan struct{} // closed and replaced when segs, readOff or inflight change
}

// openSpool opens (creating) the spool in dir on fsys and recovers it: a
// torn tail is cut from each segment, segments the checkpoint says were
// replayed are removed. It starts neither goroutine: start does.
func openSpool(fsys vfs.FS, dir string, limit int64, log *slog.Logger, m *metrics) (*diskSpool, error) {
	if limit <= 0 {
		limit = DefaultSpoolBytes
	}
	if err := vfs.MkdirAll(fsys, dir); err != nil {
		return nil, fmt.Errorf("collect: spool dir: %w", err)
	}
	lock, err := vfs.LockDir(fsys, dir, "another sluice collect using this spool dir; give each its own --spool-dir")
	if err != nil {
		return nil, fmt.Errorf("collect: spool: %w", err)
	}
	s := &diskSpool{fs: fsys, dir: dir, limit: limit, segmentBytes: spoolSegmentBytes, log: log, m: m, lock: lock,
		puts: make(chan *spoolPut, spoolQueueLen), sealReq: make(chan struct{}, 1),
		stop: make(chan struct{}), stopW: make(chan struct{}), wDone: make(chan struct{}), rDone: make(chan struct{}),
		changed: make(chan struct{}), nextSeq: 1}
	if err := s.recover(); err != nil {
		lock.Release()
		return nil, err
	}
	return s, nil
}

// recover lists the segments, cuts torn tails and applies the checkpoint.
func (s *diskSpool) recover() error {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return fmt.Errorf("collect: list spool dir: %w", err)
	}
	var cp spoolCheckpoint
	if b, err := vfs.ReadFile(s.fs, filepath.Join(s.dir, checkpointName), checkpointBytes+1); err == nil {
		if cp, err = decodeCheckpoint(b); err != nil {
			// Replaying from the start of the oldest segment again
			// duplicates, and loses nothing.
			s.log.Warn("spool checkpoint unreadable; replaying every segment from its start", "err", err)
			cp = spoolCheckpoint{}
		}
	} else if !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("collect: read spool checkpoint: %w", err)
	}
	removed := false
	for _, name := range names {
		if strings.HasSuffix(name, ".tmp") {
			s.fs.Remove(filepath.Join(s.dir, name))
			removed = true
			continue
		}
		seq, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		path := filepath.Join(s.dir, name)
		if seq < cp.seq {
			// Replayed; the crash came before its removal.
			if err := s.fs.Remove(path); err != nil {
				return fmt.Errorf("collect: remove replayed spool segment: %w", err)
			}
			removed = true
			continue
		}
		size, err := s.cutTornTail(path)
		if err != nil {
			return err
		}
		s.segs = append(s.segs, &spoolSegment{seq: seq, size: size, sealed: true})
		s.bytes += size
		s.nextSeq = max(s.nextSeq, seq+1)
	}
	s.nextSeq = max(s.nextSeq, cp.seq+1)
	if removed {
		if err := s.fs.SyncDir(s.dir); err != nil {
			return fmt.Errorf("collect: sync spool dir: %w", err)
		}
	}
	if len(s.segs) > 0 && s.segs[0].seq == cp.seq {
		if cp.off <= s.segs[0].size {
			s.readOff = cp.off
		} else {
			s.log.Warn("spool checkpoint past the end of its segment; replaying the segment from its start",
				"segment", segmentName(cp.seq), "checkpoint", cp.off, "size", s.segs[0].size)
		}
	}
	if n := s.unacked(); n > 0 {
		s.log.Info("spool holds events from before; replaying them", "dir", s.dir, "bytes", n, "segments", len(s.segs))
	}
	s.m.spoolBytes.Set(float64(s.bytes))
	return nil
}

func parseSegmentName(name string) (uint64, bool) {
	num, ok := strings.CutSuffix(name, spoolSuffix)
	if !ok || len(num) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	return seq, err == nil
}

// cutTornTail truncates the segment at path after its last intact entry
// (a write a crash tore), durably, and returns its length.
func (s *diskSpool) cutTornTail(path string) (int64, error) {
	data, err := vfs.ReadFile(s.fs, path, spoolSegmentBytes+maxSpoolEntryBytes+spoolEntryHeaderBytes)
	if err != nil {
		return 0, fmt.Errorf("collect: read spool segment: %w", err)
	}
	valid, damaged := intactEnd(data)
	if damaged > 0 {
		s.log.Error("spool segment has damaged bytes between intact entries (the disk corrupted synced data); "+
			"they are skipped, the entries after them kept", "segment", path, "damaged_bytes", damaged)
	}
	if valid == len(data) {
		return int64(valid), nil
	}
	s.log.Warn("spool segment ends in a torn entry; cutting it off", "segment", path,
		"kept", valid, "cut", len(data)-valid)
	f, err := s.fs.OpenAppend(path)
	if err != nil {
		return 0, fmt.Errorf("collect: open spool segment: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(int64(valid)); err != nil {
		return 0, fmt.Errorf("collect: cut spool segment: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("collect: sync spool segment: %w", err)
	}
	return int64(valid), nil
}

// start runs the writer and the replayer, producing with cl under buf's
// accounting.
func (s *diskSpool) start(buf *buffer, cl *kgo.Client) {
	s.buf, s.cl = buf, cl
	go s.writeLoop()
	go s.replayLoop()
}

// notifyLocked wakes whoever waits on a change. Caller holds mu.
func (s *diskSpool) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// unacked is the bytes spooled and not yet acknowledged by the cluster.
// Caller holds mu (or owns s).
func (s *diskSpool) unacked() int64 {
	var n int64
	for _, seg := range s.segs {
		n += seg.size
	}
	return n - s.readOff
}

// pending reports whether anything is spooled and not yet acknowledged,
// or on its way to the spool: new requests must then follow it there.
func (s *diskSpool) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight > 0 || s.unacked() > 0
}

// full reports whether the spool is nearly full (for /readyz).
func (s *diskSpool) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes+min(spoolReadyHeadroomBytes, s.limit/16) > s.limit
}

// put appends recs (of one request of stream) to the spool and returns
// once they are fsynced, or returns errSpoolFull without taking any. It
// waits for the disk, never for the cluster.
func (s *diskSpool) put(stream string, recs []*kgo.Record) error {
	entry := appendEntry(nil, stream, recs)
	if len(entry)-spoolEntryHeaderBytes > maxSpoolEntryBytes {
		return fmt.Errorf("collect: %d bytes of records is more than a spool entry holds", len(entry))
	}
	n := int64(len(entry))
	s.mu.Lock()
	if s.bytes+n > s.limit {
		s.mu.Unlock()
		return errSpoolFull
	}
	s.bytes += n
	s.inflight++
	s.mu.Unlock()
	p := &spoolPut{entry: entry, done: make(chan error, 1)}
	var err error
	select {
	case s.puts <- p:
		select {
		case err = <-p.done:
		case <-s.wDone:
			// The writer stopped with p still queued (or just answered).
			select {
			case err = <-p.done:
			default:
				err = errSpoolClosed
			}
		}
	case <-s.stopW:
		err = errSpoolClosed
	}
	s.mu.Lock()
	s.inflight--
	if err != nil {
		s.bytes -= n
	}
	s.m.spoolBytes.Set(float64(s.bytes))
	s.notifyLocked()
	s.mu.Unlock()
	if err == nil {
		s.m.spooled.WithLabelValues(stream).Add(float64(len(recs)))
	}
	return err
}

// writeLoop appends the queued puts to the active segment, a batch at a
// time with one fsync, until stopW is closed.
func (s *diskSpool) writeLoop() {
	defer close(s.wDone)
	var (
		f       vfs.File // the active segment; nil until a put needs one
		cur     *spoolSegment
		written int64 // bytes in f (synced or not)
		batch   []*spoolPut
	)
	// seal closes the active segment; its synced size stays as it is.
	seal := func() {
		if f == nil {
			return
		}
		f.Close()
		f = nil
		s.mu.Lock()
		cur.sealed = true
		s.notifyLocked()
		s.mu.Unlock()
	}
	defer seal()
	for {
		batch = batch[:0]
		select {
		case p := <-s.puts:
			batch = append(batch, p)
		case <-s.sealReq:
			s.mu.Lock()
			caughtUp := cur != nil && len(s.segs) > 0 && s.segs[0] == cur && s.readOff == cur.size && s.inflight == 0
			s.mu.Unlock()
			if caughtUp && written == cur.size {
				seal()
			}
			continue
		case <-s.stopW:
			return
		}
	drain:
		for len(batch) < spoolBatchMax {
			select {
			case p := <-s.puts:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		errs := make([]error, len(batch))
		synced := 0 // puts of batch[:synced] are durable
		for i, p := range batch {
			if f != nil && written > 0 && written+int64(len(p.entry)) > s.segmentBytes {
				if err := s.syncActive(f, cur, written); err != nil {
					for j := synced; j < i; j++ {
						errs[j] = err
					}
				}
				synced = i
				seal()
			}
			if f == nil {
				var err error
				if f, cur, err = s.newSegment(); err != nil {
					errs[i] = err
					continue
				}
				written = 0
			}
			if _, err := f.Write(p.entry); err != nil {
				errs[i] = fmt.Errorf("collect: write spool segment: %w", err)
				// Cut what the failed write left, so that the next entry
				// follows the last whole one; if that fails too, the
				// segment takes nothing more.
				if terr := f.Truncate(written); terr != nil {
					s.syncActive(f, cur, written)
					seal()
				}
				continue
			}
			written += int64(len(p.entry))
		}
		if f != nil {
			if err := s.syncActive(f, cur, written); err != nil {
				for j := synced; j < len(batch); j++ {
					if errs[j] == nil {
						errs[j] = err
					}
				}
				// After a failed fsync the file's state is unknown: take
				// nothing more into it (and never read past its last
				// good sync).
				seal()
			}
		}
		for i, p := range batch {
			p.done <- errs[i]
		}
	}
}

// syncActive fsyncs the active segment and publishes its new size.
func (s *diskSpool) syncActive(f vfs.File, cur *spoolSegment, written int64) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("collect: sync spool segment: %w", err)
	}
	s.mu.Lock()
	cur.size = written
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}

// newSegment creates the next segment file durably and lists it.
func (s *diskSpool) newSegment() (vfs.File, *spoolSegment, error) {
	s.mu.Lock()
	seq := s.nextSeq
	s.nextSeq++
	s.mu.Unlock()
	path := filepath.Join(s.dir, segmentName(seq))
	f, err := s.fs.OpenAppend(path)
	if err != nil {
		return nil, nil, fmt.Errorf("collect: create spool segment: %w", err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("collect: sync spool dir: %w", err)
	}
	seg := &spoolSegment{seq: seq}
	s.mu.Lock()
	s.segs = append(s.segs, seg)
	s.mu.Unlock()
	return f, seg, nil
}

// replayLoop produces the spooled records in order until stop is closed.
func (s *diskSpool) replayLoop() {
	defer close(s.rDone)
	var (
		rf    vfs.File // segs[0], opened for reading
		rfSeq uint64
	)
	defer func() {
		if rf != nil {
			rf.Close()
		}
	}()
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		s.mu.Lock()
		if len(s.segs) == 0 {
			wait := s.changed
			s.mu.Unlock()
			if !s.waitFor(wait) {
				return
			}
			continue
		}
		seg := s.segs[0]
		off, size, sealed := s.readOff, seg.size, seg.sealed
		if off == size && !sealed {
			// Caught up with the active segment: ask the writer to seal it
			// (once no put is in flight) so that it can be removed.
			wait := s.changed
			s.mu.Unlock()
			select {
			case s.sealReq <- struct{}{}:
			default:
			}
			if !s.waitFor(wait) {
				return
			}
			continue
		}
		s.mu.Unlock()
		if off == size {
			// Sealed and replayed: give its bytes back.
			if rf != nil && rfSeq == seg.seq {
				rf.Close()
				rf = nil
			}
			if err := s.removeSegment(seg); err != nil {
				s.log.Error("spool: remove replayed segment; replay stops", "err", err)
				<-s.stop
				return
			}
			continue
		}
		if rf == nil || rfSeq != seg.seq {
			if rf != nil {
				rf.Close()
			}
			var err error
			if rf, err = s.fs.Open(filepath.Join(s.dir, segmentName(seg.seq))); err != nil {
				s.log.Error("spool: open segment; replay stops", "err", err)
				<-s.stop
				return
			}
			rfSeq = seg.seq
		}
		end, ok := s.replayWindow(rf, seg, off, size)
		if !ok {
			return
		}
		s.mu.Lock()
		s.readOff = end
		s.notifyLocked()
		s.mu.Unlock()
		if err := vfs.WriteFileAtomic(s.fs, s.dir, filepath.Join(s.dir, checkpointName),
			spoolCheckpoint{seq: seg.seq, off: end}.encode()); err != nil {
			// Only a restart would notice: it replays this window again.
			s.log.Warn("spool: save replay checkpoint", "err", err)
		}
	}
}

// skipDamaged returns how many bytes from off on, in the segment read by
// rf (size bytes long), come before its next intact entry (or its end).
func (s *diskSpool) skipDamaged(rf vfs.File, off, size int64) (int64, bool) {
	rest, err := readAt(rf, off, size-off)
	if err != nil {
		s.log.Error("spool: read segment; replay stops", "err", err)
		return 0, false
	}
	if next := nextEntry(rest, 1); next >= 0 {
		return int64(next), true
	}
	return size - off, true
}

// waitFor waits for ch to close; false when the spool stops first.
func (s *diskSpool) waitFor(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-s.stop:
		return false
	}
}

// replayWindow reads the entries of seg from off (up to a window, at least
// one entry, never past size) and produces their records until the cluster
// has acknowledged every one. It returns the offset after them, or false
// when the spool stopped first.
func (s *diskSpool) replayWindow(rf vfs.File, seg *spoolSegment, off, size int64) (int64, bool) {
	window := min(int64(spoolReplayWindowBytes), max(s.buf.limit/2, 1), size-off)
	data, err := readAt(rf, off, window)
	if err == nil && len(data) >= spoolEntryHeaderBytes {
		// The first entry may be longer than the window: read it whole.
		if need := declaredLen(data); need > int64(len(data)) && need <= size-off {
			data, err = readAt(rf, off, need)
		}
	}
	if err != nil {
		s.log.Error("spool: read segment; replay stops", "segment", segmentName(seg.seq), "err", err)
		<-s.stop
		return 0, false
	}
	var recs []spooledRecord
	used := 0
	for used < len(data) {
		n, err := entryLen(data[used:])
		if err != nil {
			if used > 0 && declaredLen(data[used:]) > int64(len(data)-used) {
				break // the window ends inside this entry
			}
			// Synced bytes that do not read back: the disk corrupted
			// them. Skip to the next intact entry in the segment; only
			// the damaged entry is lost.
			skip, ok := s.skipDamaged(rf, off+int64(used), size)
			if !ok {
				<-s.stop
				return 0, false
			}
			s.log.Error("spool: damaged entry in a synced segment skipped", "segment", segmentName(seg.seq),
				"offset", off+int64(used), "bytes", skip)
			s.m.dropped.WithLabelValues("", "spool_corrupt").Inc()
			used += int(skip)
			break
		}
		stream, rs, err := decodeEntry(data[used+spoolEntryHeaderBytes : used+n])
		if err != nil {
			s.log.Error("spool: undecodable entry skipped", "segment", segmentName(seg.seq), "offset", off+int64(used))
			s.m.dropped.WithLabelValues("", "spool_corrupt").Inc()
		}
		for _, r := range rs {
			recs = append(recs, spooledRecord{stream: stream, rec: r})
		}
		used += n
	}
	for len(recs) > 0 {
		failed, errs, ok := s.buf.produceWait(s.cl, s.stop, recs)
		if !ok {
			return 0, false
		}
		// The replay client retries what can be retried for as long as it
		// takes: a record it fails was refused (too large, not authorized,
		// no such topic). It is tried a few times, then given up on, so
		// that one record cannot stall the spool for good.
		recs = recs[:0]
		for i, r := range failed {
			if r.attempts < spoolMaxAttempts {
				recs = append(recs, r)
				continue
			}
			s.log.Error("spool: the cluster refuses a replayed event; dropped", "stream", r.stream,
				"topic", r.rec.Topic, "attempts", r.attempts, "err", errs[i])
			s.m.dropped.WithLabelValues(r.stream, "rejected").Inc()
		}
		if len(recs) == 0 {
			break
		}
		s.log.Warn("spool: the cluster failed replayed records; producing them again", "records", len(recs),
			"in", spoolRetryBackoff, "err", errs[0])
		select {
		case <-time.After(spoolRetryBackoff):
		case <-s.stop:
			return 0, false
		}
	}
	return off + int64(used), true
}

// declaredLen is the whole length the entry header at the start of b
// claims (b holds at least the header).
func declaredLen(b []byte) int64 {
	if len(b) < spoolEntryHeaderBytes {
		return spoolEntryHeaderBytes
	}
	return spoolEntryHeaderBytes + int64(binary.BigEndian.Uint32(b))
}

// readAt reads n bytes of f at off.
func readAt(f vfs.File, off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if m, err := f.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && int64(m) == n) {
		return nil, err
	}
	return b, nil
}

// spooledRecord is a record read back from the spool, with its stream
// and how many times the cluster failed it.
type spooledRecord struct {
	stream   string
	rec      *kgo.Record
	attempts int
}

// removeSegment deletes a replayed, sealed segment durably and gives its
// bytes back.
func (s *diskSpool) removeSegment(seg *spoolSegment) error {
	if err := vfs.Remove(s.fs, filepath.Join(s.dir, segmentName(seg.seq))); err != nil {
		return err
	}
	s.mu.Lock()
	s.segs = s.segs[1:]
	s.readOff = 0
	s.bytes -= seg.size
	s.m.spoolBytes.Set(float64(s.bytes))
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}

// Close stops replay, waiting at most until ctx is done for the records
// it has in flight; closeWriter stops the writer. The collector closes
// the producer between the two, so that records the producer fails on
// its way down are still spooled.
func (s *diskSpool) Close(ctx context.Context) {
	close(s.stop)
	select {
	case <-s.rDone:
	case <-ctx.Done():
	}
}

// closeWriter stops the writer (after Close) and releases the directory.
func (s *diskSpool) closeWriter() error {
	close(s.stopW)
	<-s.wDone
	return s.lock.Release()
}
