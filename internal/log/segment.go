package log

import (
	"errors"
	"fmt"
	"io"
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
// bytes of a write in progress.
type segment struct {
	baseOffset int64
	dir        string
	file       vfs.File
	size       atomic.Int64
	nextOffset int64 // offset after the last batch in this segment

	index     offsetIndex
	timeIndex timeIndex
	// bytesSinceIndex counts bytes appended since the last index entry.
	bytesSinceIndex int

	maxTimestamp         int64 // largest batch max timestamp, -1 if none
	offsetOfMaxTimestamp int64
	firstTimestamp       int64     // first batch's max timestamp, for segment.ms; -1 if empty or none
	created              time.Time // when this process created or opened the segment
	indexDirty           bool      // in-memory indexes differ from the files

	// recent remembers where the last recentBatches batches are, so that
	// fetches at the tail (consumers that keep up) find their position
	// without walking batch headers from the last index entry.
	recent     [recentBatches]batchPos
	recentNext int // next slot to write; entries are in offset order from it
	recentLen  int

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

func newSegment(fs vfs.FS, dir string, base int64, now time.Time) (*segment, error) {
	s := &segment{baseOffset: base, dir: dir, nextOffset: base, maxTimestamp: -1, offsetOfMaxTimestamp: -1, firstTimestamp: -1, created: now}
	f, err := fs.OpenAppend(s.path(".log"))
	if err != nil {
		return nil, fmt.Errorf("log: create segment %d: %w", base, err)
	}
	s.file = f
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
	s.recent[s.recentNext] = batchPos{base: h.BaseOffset, last: h.LastOffset(), pos: pos, size: int32(h.Size())}
	s.recentNext = (s.recentNext + 1) % recentBatches
	s.recentLen = min(s.recentLen+1, recentBatches)
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

// recentAt returns the i-th remembered batch, oldest first.
func (s *segment) recentAt(i int) *batchPos {
	return &s.recent[(s.recentNext-s.recentLen+i+recentBatches)%recentBatches]
}

// findRecent looks off up among the remembered batches.
func (s *segment) findRecent(off int64) (batchPos, bool) {
	if s.recentLen == 0 || off < s.recentAt(0).base {
		return batchPos{}, false
	}
	i := sort.Search(s.recentLen, func(i int) bool { return s.recentAt(i).last >= off })
	if i == s.recentLen {
		return batchPos{}, false
	}
	return *s.recentAt(i), true
}

// scan reads the segment from the start, checking every batch (length,
// magic, CRC, offsets increasing), and rebuilds the indexes. It returns the
// position of the first bad byte, or the file size when all is well, and the
// reason it stopped.
func (s *segment) scan(indexInterval int) (validEnd int64, reason error) {
	size, err := s.file.Size()
	if err != nil {
		return 0, fmt.Errorf("log: size of segment %d: %w", s.baseOffset, err)
	}
	s.index = offsetIndex{}
	s.timeIndex = timeIndex{}
	s.bytesSinceIndex = 0
	s.maxTimestamp, s.offsetOfMaxTimestamp, s.firstTimestamp = -1, -1, -1
	s.nextOffset = s.baseOffset
	s.indexDirty = true
	s.recentLen, s.recentNext = 0, 0

	buf := make([]byte, scanChunkBytes)
	var pos int64
	for pos < size {
		n, err := s.file.ReadAt(buf[:min(int64(len(buf)), size-pos)], pos)
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

// loadIndexes reads the .index and .timeindex files, checking them against
// the segment. On any problem it reports an error and the caller rescans.
func (s *segment) loadIndexes(fs vfs.FS) error {
	size, err := s.file.Size()
	if err != nil {
		return err
	}
	s.size.Store(size)
	if size == 0 {
		// An empty segment (a new partition, or the active segment just
		// after a roll) has nothing to index.
		s.index, s.timeIndex = offsetIndex{}, timeIndex{}
		s.nextOffset = s.baseOffset
		return nil
	}
	ib, err := readAll(fs, s.path(".index"))
	if err != nil {
		return err
	}
	idx, err := unmarshalOffsetIndex(ib, size)
	if err != nil {
		return err
	}
	tb, err := readAll(fs, s.path(".timeindex"))
	if err != nil {
		return err
	}
	// The last batch tells the segment's next offset; the time index
	// cannot point past it.
	start := int64(0)
	if n := len(idx.entries); n > 0 {
		start = int64(idx.entries[n-1].position)
	}
	last, err := s.lastBatchFrom(start, size)
	if err != nil {
		return err
	}
	tidx, err := unmarshalTimeIndex(tb, uint32(last.LastOffset()-s.baseOffset))
	if err != nil {
		return err
	}
	s.index, s.timeIndex = idx, tidx
	s.nextOffset = last.LastOffset() + 1
	if n := len(tidx.entries); n > 0 {
		s.maxTimestamp = tidx.entries[n-1].timestamp
		s.offsetOfMaxTimestamp = s.baseOffset + int64(tidx.entries[n-1].relOffset)
	}
	first, err := s.headerAt(0)
	if err != nil {
		return err
	}
	s.firstTimestamp = first.MaxTimestamp
	return nil
}

// lastBatchFrom walks batch headers from pos to the end and returns the last.
func (s *segment) lastBatchFrom(pos, size int64) (record.Header, error) {
	var last record.Header
	found := false
	for pos < size {
		h, err := s.headerAt(pos)
		if err != nil {
			return last, err
		}
		last, found = h, true
		pos += int64(h.Size())
	}
	if !found || pos != size {
		return last, fmt.Errorf("log: segment %d does not end on a batch boundary", s.baseOffset)
	}
	return last, nil
}

// headerAt reads the batch header at pos without checking the CRC.
func (s *segment) headerAt(pos int64) (record.Header, error) {
	var b [record.HeaderSize]byte
	if _, err := s.file.ReadAt(b[:], pos); err != nil {
		return record.Header{}, fmt.Errorf("log: read batch header at %d of segment %d: %w", pos, s.baseOffset, err)
	}
	return record.ParseHeader(b[:])
}

// writeIndexes persists the in-memory indexes (write temp, fsync, rename).
func (s *segment) writeIndexes(fs vfs.FS) error {
	if !s.indexDirty {
		return nil
	}
	if err := vfs.WriteFileAtomic(fs, s.dir, s.path(".index"), s.index.marshal()); err != nil {
		return err
	}
	if err := vfs.WriteFileAtomic(fs, s.dir, s.path(".timeindex"), s.timeIndex.marshal()); err != nil {
		return err
	}
	s.indexDirty = false
	return nil
}

// positionOf returns the byte position of the first batch that holds an
// offset at or above off, or the segment's size when there is none. For a
// recent batch the header returned carries only its offsets and length.
func (s *segment) positionOf(off int64, size int64) (int64, record.Header, bool, error) {
	if off < s.baseOffset {
		off = s.baseOffset
	}
	if b, ok := s.findRecent(off); ok && b.pos+int64(b.size) <= size {
		h := record.Header{BaseOffset: b.base, LastOffsetDelta: int32(b.last - b.base), BatchLength: b.size - record.LogOverhead}
		return b.pos, h, true, nil
	}
	pos := int64(s.index.lookup(uint32(off - s.baseOffset)))
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
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size > maxIndexFileBytes {
		return nil, fmt.Errorf("log: %s is %d bytes, above the %d limit", name, size, maxIndexFileBytes)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

// maxIndexFileBytes bounds what is read of an index or checkpoint file.
const maxIndexFileBytes = 64 << 20
