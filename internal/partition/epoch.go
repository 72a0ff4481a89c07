package partition

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// epochEntry says that leader epoch Epoch wrote its first batch at StartOffset.
type epochEntry struct {
	Epoch       int32
	StartOffset int64
}

// epochCache is the leader-epoch-checkpoint: which epoch wrote which offsets,
// for OffsetForLeaderEpoch and, in a cluster, follower truncation. Kafka's
// text format: version line "0", count line, then "epoch offset" lines.
type epochCache struct {
	entries []epochEntry // increasing in both fields
}

const epochCheckpointFile = "leader-epoch-checkpoint"

func (c *epochCache) latest() (epochEntry, bool) {
	if len(c.entries) == 0 {
		return epochEntry{}, false
	}
	return c.entries[len(c.entries)-1], true
}

// assign records that epoch starts at offset, as Kafka's
// LeaderEpochFileCache.assign: nothing changes when epoch is the latest and
// starts at or below offset; otherwise the entries that conflict with it
// (an epoch at or above it, or one starting at or after offset: written by
// a leader whose records were truncated, or that wrote none) are dropped
// and it is added. It returns whether the cache changed.
func (c *epochCache) assign(epoch int32, offset int64) bool {
	if last, ok := c.latest(); ok && last.Epoch == epoch && last.StartOffset <= offset {
		return false
	}
	n := len(c.entries)
	for n > 0 && (c.entries[n-1].Epoch >= epoch || c.entries[n-1].StartOffset >= offset) {
		n--
	}
	c.entries = append(c.entries[:n], epochEntry{epoch, offset})
	return true
}

// truncateFromEnd drops the entries starting at or after end (Kafka's
// truncateFromEnd: the log was cut there); it returns whether any went.
func (c *epochCache) truncateFromEnd(end int64) bool {
	n := len(c.entries)
	for n > 0 && c.entries[n-1].StartOffset >= end {
		n--
	}
	changed := n < len(c.entries)
	c.entries = c.entries[:n]
	return changed
}

// startOffsetOf is the offset where epoch started, -1 when the cache does
// not know the epoch (Kafka's epochEntry).
func (c *epochCache) startOffsetOf(epoch int32) int64 {
	for _, e := range c.entries {
		if e.Epoch == epoch {
			return e.StartOffset
		}
	}
	return -1
}

// endOffsetFor answers OffsetForLeaderEpoch as Kafka's
// LeaderEpochFileCache.endOffsetFor: for the latest epoch, it and the log
// end offset; for an earlier one, the largest epoch at or below it and the
// offset where the next epoch starts; for one below every epoch known, the
// requested epoch and the first epoch's start offset (the records before it
// are gone from the log: the follower truncates to there); -1, -1 for an
// undefined epoch (below 0), one above the latest, or an empty cache.
func (c *epochCache) endOffsetFor(epoch int32, logEnd int64) (int32, int64) {
	last, ok := c.latest()
	if !ok || epoch < 0 {
		return -1, -1
	}
	if epoch == last.Epoch {
		return epoch, logEnd
	}
	higher := -1
	for i, e := range c.entries {
		if e.Epoch > epoch {
			higher = i
			break
		}
	}
	if higher < 0 {
		return -1, -1
	}
	if higher == 0 {
		return epoch, c.entries[0].StartOffset
	}
	return c.entries[higher-1].Epoch, c.entries[higher].StartOffset
}

func (c *epochCache) marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "0\n%d\n", len(c.entries))
	for _, e := range c.entries {
		fmt.Fprintf(&b, "%d %d\n", e.Epoch, e.StartOffset)
	}
	return b.Bytes()
}

func unmarshalEpochCache(b []byte) (epochCache, error) {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) < 2 || lines[0] != "0" {
		return epochCache{}, fmt.Errorf("partition: %s: bad header", epochCheckpointFile)
	}
	n, err := strconv.Atoi(lines[1])
	if err != nil || n < 0 || n != len(lines)-2 {
		return epochCache{}, fmt.Errorf("partition: %s: count %q does not match %d lines", epochCheckpointFile, lines[1], len(lines)-2)
	}
	var c epochCache
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) != 2 {
			return epochCache{}, fmt.Errorf("partition: %s: bad line %q", epochCheckpointFile, line)
		}
		e, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		// Epochs increase; start offsets do not decrease (two epochs at
		// one offset were written before assign dropped the first).
		last, ok := c.latest()
		if err1 != nil || err2 != nil || ok && (last.Epoch >= int32(e) || last.StartOffset > o) {
			return epochCache{}, fmt.Errorf("partition: %s: bad line %q", epochCheckpointFile, line)
		}
		c.entries = append(c.entries, epochEntry{int32(e), o})
	}
	return c, nil
}
