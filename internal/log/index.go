package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/sluice-io/sluice/internal/vfs"
)

// Index files use Kafka's entry layout: an .index entry is the offset relative
// to the segment's base (int32) and the byte position of the batch (int32); a
// .timeindex entry is a timestamp (int64) and a relative offset (int32).
// Both are sparse (an entry every index.interval.bytes, see noteBatch) and
// derived data, rebuilt by a scan whenever they are missing, short or
// inconsistent.
//
// Where they live: the active segment's indexes are in memory (offsetIndex,
// timeIndex), and so are a rolled segment's until the sync after its roll has
// written its files. From then on a closed segment reads its index files on
// demand (indexFile: ReadAt and a binary search over the file), so that the
// heap a log holds does not grow with the size of its closed segments.
const (
	offsetIndexEntryBytes = 8
	timeIndexEntryBytes   = 12
)

type offsetEntry struct {
	relOffset uint32
	position  uint32
}

type timeEntry struct {
	timestamp int64
	relOffset uint32
}

// offsetIndex maps offsets to file positions, in memory. Entries are in
// increasing order of both fields. Owned by its segment; guarded by the
// log's lock.
type offsetIndex struct {
	entries []offsetEntry
}

// atOrBelow returns the entry with the largest relative offset at or below rel.
func (x *offsetIndex) atOrBelow(rel uint32) (offsetEntry, bool) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].relOffset > rel })
	if i == 0 {
		return offsetEntry{}, false
	}
	return x.entries[i-1], true
}

// atOrBelowPosition returns the entry with the largest position at or below pos.
func (x *offsetIndex) atOrBelowPosition(pos uint32) (offsetEntry, bool) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].position > pos })
	if i == 0 {
		return offsetEntry{}, false
	}
	return x.entries[i-1], true
}

func (x *offsetIndex) add(rel, pos uint32) {
	if n := len(x.entries); n > 0 && (x.entries[n-1].relOffset >= rel || x.entries[n-1].position >= pos) {
		return
	}
	x.entries = append(x.entries, offsetEntry{rel, pos})
}

func (x *offsetIndex) marshal() []byte {
	b := make([]byte, len(x.entries)*offsetIndexEntryBytes)
	for i, e := range x.entries {
		putOffsetEntry(b[i*offsetIndexEntryBytes:], e)
	}
	return b
}

func putOffsetEntry(b []byte, e offsetEntry) {
	binary.BigEndian.PutUint32(b, e.relOffset)
	binary.BigEndian.PutUint32(b[4:], e.position)
}

func getOffsetEntry(b []byte) offsetEntry {
	return offsetEntry{binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])}
}

// unmarshalOffsetIndex decodes an .index file and checks it against the
// segment's size. Any inconsistency is an error: the caller rebuilds.
func unmarshalOffsetIndex(b []byte, logSize int64) (offsetIndex, error) {
	if len(b)%offsetIndexEntryBytes != 0 {
		return offsetIndex{}, fmt.Errorf("log: index size %d is not a multiple of %d", len(b), offsetIndexEntryBytes)
	}
	x := offsetIndex{entries: make([]offsetEntry, 0, len(b)/offsetIndexEntryBytes)}
	for i := 0; i < len(b); i += offsetIndexEntryBytes {
		e := getOffsetEntry(b[i:])
		if n := len(x.entries); n > 0 && (x.entries[n-1].relOffset >= e.relOffset || x.entries[n-1].position >= e.position) {
			return offsetIndex{}, fmt.Errorf("log: index entry %d out of order", i/offsetIndexEntryBytes)
		}
		if int64(e.position) >= logSize {
			return offsetIndex{}, fmt.Errorf("log: index entry %d points past the segment end", i/offsetIndexEntryBytes)
		}
		x.entries = append(x.entries, e)
	}
	return x, nil
}

// timeIndex maps timestamps to offsets, in memory; timestamps strictly
// increase and offsets do not decrease.
type timeIndex struct {
	entries []timeEntry
}

// below returns the last entry with a timestamp below ts, from where a scan
// for the first batch at or after ts can start.
func (x *timeIndex) below(ts int64) (timeEntry, bool) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].timestamp >= ts })
	if i == 0 {
		return timeEntry{}, false
	}
	return x.entries[i-1], true
}

func (x *timeIndex) add(ts int64, rel uint32) {
	if n := len(x.entries); n > 0 && (x.entries[n-1].timestamp >= ts || x.entries[n-1].relOffset > rel) {
		return
	}
	x.entries = append(x.entries, timeEntry{ts, rel})
}

func (x *timeIndex) marshal() []byte {
	b := make([]byte, len(x.entries)*timeIndexEntryBytes)
	for i, e := range x.entries {
		putTimeEntry(b[i*timeIndexEntryBytes:], e)
	}
	return b
}

func putTimeEntry(b []byte, e timeEntry) {
	binary.BigEndian.PutUint64(b, uint64(e.timestamp))
	binary.BigEndian.PutUint32(b[8:], e.relOffset)
}

func getTimeEntry(b []byte) timeEntry {
	return timeEntry{int64(binary.BigEndian.Uint64(b)), binary.BigEndian.Uint32(b[8:])}
}

func unmarshalTimeIndex(b []byte, maxRel uint32) (timeIndex, error) {
	if len(b)%timeIndexEntryBytes != 0 {
		return timeIndex{}, fmt.Errorf("log: time index size %d is not a multiple of %d", len(b), timeIndexEntryBytes)
	}
	x := timeIndex{entries: make([]timeEntry, 0, len(b)/timeIndexEntryBytes)}
	for i := 0; i < len(b); i += timeIndexEntryBytes {
		e := getTimeEntry(b[i:])
		if n := len(x.entries); n > 0 && (x.entries[n-1].timestamp >= e.timestamp || x.entries[n-1].relOffset > e.relOffset) {
			return timeIndex{}, fmt.Errorf("log: time index entry %d out of order", i/timeIndexEntryBytes)
		}
		if e.relOffset > maxRel {
			return timeIndex{}, fmt.Errorf("log: time index entry %d points past the segment end", i/timeIndexEntryBytes)
		}
		x.entries = append(x.entries, e)
	}
	return x, nil
}

// indexFile is a closed segment's .index or .timeindex, read on demand:
// each lookup is a binary search of ReadAt calls over the file, served by
// the page cache, and nothing of it stays on the heap. The file is opened
// through the log's FileCache at a lookup and may be closed between them.
//
// Its entries are not trusted: a lookup may return any entry, and the
// caller checks it against the segment's batches before using it (see
// segment.positionOf). Safe for concurrent use.
type indexFile struct {
	h          *fileHandle
	name       string
	entryBytes int
	n          int // entries, fixed when the file was written or checked at open
}

// errIndexOpen: an index file could not be opened for lack of descriptors
// (too many open files): its content is not known to be damaged, and a
// later lookup may open it. Other failures to open it (a missing file) make
// the lookup walk the segment instead, as a damaged index does.
var errIndexOpen = errors.New("log: index file not open")

func newIndexFile(c *FileCache, fs vfs.FS, name string, entryBytes int, size int64) *indexFile {
	return &indexFile{h: c.newHandle(fs, name, false), name: name, entryBytes: entryBytes, n: int(size / int64(entryBytes))}
}

func (x *indexFile) file() (vfs.File, error) {
	f, err := x.h.acquire()
	if err != nil && isOpenError(err) {
		return nil, fmt.Errorf("%w: %w", errIndexOpen, err)
	}
	return f, err
}

func (x *indexFile) close() { x.h.retire() }

// read reads entry i into b (entryBytes long).
func (x *indexFile) read(f vfs.File, i int, b []byte) error {
	if _, err := f.ReadAt(b, int64(i)*int64(x.entryBytes)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the file shrank under us
		}
		return fmt.Errorf("log: read entry %d of %s: %w", i, x.name, err)
	}
	return nil
}

// search returns the last entry, in file order, for which after is false,
// with the entries for which after is true assumed to come last (as
// sort.Search); ok is false when there is none. On a damaged file whose
// entries are out of order it still returns an entry for which after is
// false, if it returns one.
func (x *indexFile) search(after func(b []byte) bool) (entry []byte, ok bool, err error) {
	if x.n == 0 {
		return nil, false, nil
	}
	f, err := x.file()
	if err != nil {
		return nil, false, err
	}
	defer x.h.release()
	var buf [timeIndexEntryBytes]byte
	b := buf[:x.entryBytes]
	out := make([]byte, x.entryBytes)
	i, j := 0, x.n // entries before i are not after; from j on, they are
	for i < j {
		h := int(uint(i+j) >> 1)
		if err := x.read(f, h, b); err != nil {
			return nil, false, err
		}
		if after(b) {
			j = h
		} else {
			i = h + 1
			copy(out, b)
		}
	}
	if i == 0 {
		return nil, false, nil
	}
	return out, true, nil
}

// last returns the file's last entry; ok is false when it is empty.
func (x *indexFile) last() ([]byte, bool, error) {
	if x.n == 0 {
		return nil, false, nil
	}
	f, err := x.file()
	if err != nil {
		return nil, false, err
	}
	defer x.h.release()
	out := make([]byte, x.entryBytes)
	if err := x.read(f, x.n-1, out); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// segmentIndexFiles are the index files of a closed segment.
type segmentIndexFiles struct {
	offsets *indexFile
	times   *indexFile
}

func (s *segmentIndexFiles) close() {
	s.offsets.close()
	s.times.close()
}
