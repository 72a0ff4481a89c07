package log

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Index files use Kafka's entry layout: an .index entry is the offset relative
// to the segment's base (int32) and the byte position of the batch (int32); a
// .timeindex entry is a timestamp (int64) and a relative offset (int32).
// Sluice keeps both sparse indexes in memory and writes them out when a
// segment is rolled, flushed or closed: they are derived data, rebuilt by a
// scan whenever they are missing, short or inconsistent.
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

// offsetIndex maps offsets to file positions. Entries are in increasing order
// of both fields. Owned by its segment; guarded by the log's lock.
type offsetIndex struct {
	entries []offsetEntry
}

// lookup returns the position of the last indexed batch whose base offset is
// at or below rel, or 0.
func (x *offsetIndex) lookup(rel uint32) uint32 {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].relOffset > rel })
	if i == 0 {
		return 0
	}
	return x.entries[i-1].position
}

// positionAtOrBelow returns the largest indexed position at or below pos, or 0.
func (x *offsetIndex) positionAtOrBelow(pos uint32) uint32 {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].position > pos })
	if i == 0 {
		return 0
	}
	return x.entries[i-1].position
}

func (x *offsetIndex) add(rel, pos uint32) {
	if n := len(x.entries); n > 0 && (x.entries[n-1].relOffset >= rel || x.entries[n-1].position >= pos) {
		return
	}
	x.entries = append(x.entries, offsetEntry{rel, pos})
}

// truncateAt drops entries for positions at or past pos.
func (x *offsetIndex) truncateAt(pos uint32) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].position >= pos })
	x.entries = x.entries[:i]
}

func (x *offsetIndex) marshal() []byte {
	b := make([]byte, len(x.entries)*offsetIndexEntryBytes)
	for i, e := range x.entries {
		binary.BigEndian.PutUint32(b[i*8:], e.relOffset)
		binary.BigEndian.PutUint32(b[i*8+4:], e.position)
	}
	return b
}

// unmarshalOffsetIndex decodes an .index file and checks it against the
// segment's size. Any inconsistency is an error: the caller rebuilds.
func unmarshalOffsetIndex(b []byte, logSize int64) (offsetIndex, error) {
	if len(b)%offsetIndexEntryBytes != 0 {
		return offsetIndex{}, fmt.Errorf("log: index size %d is not a multiple of %d", len(b), offsetIndexEntryBytes)
	}
	x := offsetIndex{entries: make([]offsetEntry, 0, len(b)/offsetIndexEntryBytes)}
	for i := 0; i < len(b); i += offsetIndexEntryBytes {
		e := offsetEntry{binary.BigEndian.Uint32(b[i:]), binary.BigEndian.Uint32(b[i+4:])}
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

// timeIndex maps timestamps to offsets; timestamps strictly increase.
type timeIndex struct {
	entries []timeEntry
}

// lookup returns the relative offset of the last entry with a timestamp
// below ts, from where a scan for the first batch at or after ts can start.
func (x *timeIndex) lookup(ts int64) uint32 {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].timestamp >= ts })
	if i == 0 {
		return 0
	}
	return x.entries[i-1].relOffset
}

func (x *timeIndex) add(ts int64, rel uint32) {
	if n := len(x.entries); n > 0 && (x.entries[n-1].timestamp >= ts || x.entries[n-1].relOffset > rel) {
		return
	}
	x.entries = append(x.entries, timeEntry{ts, rel})
}

func (x *timeIndex) truncateAt(rel uint32) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].relOffset >= rel })
	x.entries = x.entries[:i]
}

func (x *timeIndex) marshal() []byte {
	b := make([]byte, len(x.entries)*timeIndexEntryBytes)
	for i, e := range x.entries {
		binary.BigEndian.PutUint64(b[i*12:], uint64(e.timestamp))
		binary.BigEndian.PutUint32(b[i*12+8:], e.relOffset)
	}
	return b
}

func unmarshalTimeIndex(b []byte, maxRel uint32) (timeIndex, error) {
	if len(b)%timeIndexEntryBytes != 0 {
		return timeIndex{}, fmt.Errorf("log: time index size %d is not a multiple of %d", len(b), timeIndexEntryBytes)
	}
	x := timeIndex{entries: make([]timeEntry, 0, len(b)/timeIndexEntryBytes)}
	for i := 0; i < len(b); i += timeIndexEntryBytes {
		e := timeEntry{int64(binary.BigEndian.Uint64(b[i:])), binary.BigEndian.Uint32(b[i+8:])}
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
