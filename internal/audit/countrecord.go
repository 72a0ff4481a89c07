package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// CountFormatVersion is the "v" of the count records this code writes
	// and the only one it reads; a new format gets a new number, and
	// DecodeCount refuses the others (an older report must not misread a
	// newer stage's counts).
	CountFormatVersion = 1
	// CountWindow is the width of a count window of record time: every
	// record is counted in the window [floor(timestamp), +CountWindow).
	CountWindow = time.Minute
	// maxCountRecordBytes bounds a count record's value, checked before
	// decoding (kgo's default producer limit is 1 MB).
	maxCountRecordBytes = 1 << 20
	// maxRangesPerRecord bounds the offset ranges of one count record
	// (each about 40 bytes of JSON: 4096 are about 160 KiB). The Counter
	// starts a new entry (a new gen) rather than pass it.
	maxRangesPerRecord = 4096
	// maxNameBytes bounds a stage or instance name.
	maxNameBytes = 64
	// maxTopicBytes is Kafka's longest topic name.
	maxTopicBytes = 249
)

// errBadCount is what DecodeCount's errors wrap.
var errBadCount = errors.New("audit: not a count record")

// Stage names of the pipeline, in pipeline order (the order a report
// compares them in). Other names are allowed and compared after these, in
// name order.
const (
	// StageCollect counts an event when the cluster acknowledged it
	// (acks=all) to the collector; ranges are the produced offsets.
	StageCollect = "collect"
	// StageTopic is computed by a report itself: the records in the topic,
	// by timestamp. Never published by a Counter.
	StageTopic = "topic"
	// StageMirror counts a record when the target cluster acknowledged its
	// copy; ranges are the SOURCE offsets.
	StageMirror = "mirror"
	// StageSink counts a record when the object holding it is uploaded and
	// committed; ranges are the offsets it was read at.
	StageSink = "sink"
)

// stageOrder is a stage's place in the comparison: known ones first.
func stageOrder(s string) int {
	switch s {
	case StageCollect:
		return 0
	case StageTopic:
		return 1
	case StageMirror:
		return 2
	case StageSink:
		return 3
	}
	return 4
}

// compareStages orders stage names as a report compares them.
func compareStages(a, b string) int {
	if oa, ob := stageOrder(a), stageOrder(b); oa != ob {
		return oa - ob
	}
	return strings.Compare(a, b)
}

// OffsetRange is the offsets First..Last (both included) of one partition.
type OffsetRange struct {
	Partition int32 `json:"p"`
	First     int64 `json:"first"`
	Last      int64 `json:"last"`
}

// Len is the number of offsets in the range.
func (r OffsetRange) Len() int64 { return r.Last - r.First + 1 }

// CountRecord is the value of a record on the counts topic: what one
// stage instance counted of one topic in one window, cumulative since the
// entry began. The Kafka key is Key(): the same key is published again,
// with a higher Count, as more records come, so that the newest record of
// a key is the whole of it (and a compacted topic keeps only that).
type CountRecord struct {
	Version int    `json:"v"`
	Stage   string `json:"stage"`
	// Instance is the random id of one run of one stage process.
	Instance string `json:"instance"`
	// Gen numbers the entries of an instance: a window counted again after
	// its entry was published and dropped (or an entry split at
	// maxRangesPerRecord) is a new entry under a new key.
	Gen    uint64 `json:"gen"`
	Topic  string `json:"topic"`
	Window int64  `json:"window_ms"` // start, Unix milliseconds, a multiple of CountWindow
	// Count is every record counted, duplicates within the instance
	// included.
	Count int64 `json:"count"`
	// Ranges are the distinct offsets counted, per partition, sorted,
	// neither overlapping nor adjacent: the offsets the stage read
	// (mirror, sink) or produced (collect). Count minus Unranged minus
	// their total is what the instance counted twice.
	Ranges []OffsetRange `json:"ranges,omitempty"`
	// Unranged is the records counted without an offset (never deduped).
	Unranged int64 `json:"unranged,omitempty"`
	// Published is when this version was produced (Unix ms), for humans.
	Published int64 `json:"published_ms,omitempty"`
}

// Key is the record's Kafka key: one per stage instance entry.
func (c *CountRecord) Key() string {
	return c.Stage + "/" + c.Instance + "/" + strconv.FormatUint(c.Gen, 10) + "/" + c.Topic + "/" + strconv.FormatInt(c.Window, 10)
}

// WindowStart is the window's start time.
func (c *CountRecord) WindowStart() time.Time { return time.UnixMilli(c.Window).UTC() }

// Distinct is the number of offsets in the ranges.
func (c *CountRecord) Distinct() int64 {
	var n int64
	for _, r := range c.Ranges {
		n += r.Len()
	}
	return n
}

// EncodeCount returns c as a record value.
func EncodeCount(c *CountRecord) ([]byte, error) {
	return json.Marshal(c)
}

// DecodeCount parses and checks a count record's value. Unknown fields
// are ignored (a later version 1 may add optional ones); every error wraps
// errBadCount.
func DecodeCount(b []byte) (CountRecord, error) {
	var c CountRecord
	if len(b) > maxCountRecordBytes {
		return c, fmt.Errorf("%w: %d bytes, over %d", errBadCount, len(b), maxCountRecordBytes)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: %v", errBadCount, err)
	}
	if err := c.check(); err != nil {
		return CountRecord{}, err
	}
	if len(c.Ranges) == 0 {
		c.Ranges = nil // "ranges":[] and none are the same record
	}
	return c, nil
}

func (c *CountRecord) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{errBadCount}, a...)...)
	}
	switch {
	case c.Version != CountFormatVersion:
		return bad("version %d, this sluice reads %d", c.Version, CountFormatVersion)
	case c.Stage == "" || len(c.Stage) > maxNameBytes || c.Stage == StageTopic:
		return bad("stage %q", c.Stage)
	case c.Instance == "" || len(c.Instance) > maxNameBytes:
		return bad("instance %q", c.Instance)
	case c.Topic == "" || len(c.Topic) > maxTopicBytes:
		return bad("topic %q", c.Topic)
	case c.Window%CountWindow.Milliseconds() != 0:
		return bad("window %d is not a multiple of %s", c.Window, CountWindow)
	case c.Count < 0 || c.Unranged < 0 || c.Unranged > c.Count:
		return bad("count %d, unranged %d", c.Count, c.Unranged)
	case len(c.Ranges) > maxRangesPerRecord:
		return bad("%d ranges, over %d", len(c.Ranges), maxRangesPerRecord)
	}
	total := c.Unranged
	for i, r := range c.Ranges {
		if r.Partition < 0 || r.First < 0 || r.Last < r.First {
			return bad("range %d: partition %d offsets %d-%d", i, r.Partition, r.First, r.Last)
		}
		if i > 0 {
			p := c.Ranges[i-1]
			if p.Partition > r.Partition || (p.Partition == r.Partition && p.Last+1 >= r.First) {
				return bad("range %d: not after range %d, apart", i, i-1)
			}
		}
		total += r.Len()
		if total > c.Count || total < 0 {
			return bad("ranges and unranged hold more records than the count %d", c.Count)
		}
	}
	return nil
}

// offsetSet is a set of offsets per partition as sorted, disjoint,
// non-adjacent spans.
type offsetSet map[int32][]span

type span struct{ first, last int64 }

// add inserts first..last into spans, merging; it returns the new spans.
func addSpan(spans []span, first, last int64) []span {
	n := len(spans)
	// The common case: offsets come in order.
	if n == 0 || first > spans[n-1].last+1 {
		return append(spans, span{first, last})
	}
	if first >= spans[n-1].first && first <= spans[n-1].last+1 {
		spans[n-1].last = max(spans[n-1].last, last)
		return spans
	}
	// i: the first span that ends at or after first-1 (may merge).
	i, _ := slices.BinarySearchFunc(spans, first, func(s span, f int64) int {
		if s.last+1 < f {
			return -1
		}
		return 1
	})
	j := i
	for j < n && spans[j].first <= last+1 {
		first, last = min(first, spans[j].first), max(last, spans[j].last)
		j++
	}
	return slices.Replace(spans, i, j, span{first, last})
}

func (s offsetSet) add(r OffsetRange) {
	s[r.Partition] = addSpan(s[r.Partition], r.First, r.Last)
}

// size is the number of offsets in the set.
func (s offsetSet) size() int64 {
	var n int64
	for _, spans := range s {
		for _, x := range spans {
			n += x.last - x.first + 1
		}
	}
	return n
}
