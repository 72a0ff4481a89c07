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

// assign records that epoch starts at offset; it returns whether it changed.
func (c *epochCache) assign(epoch int32, offset int64) bool {
	if last, ok := c.latest(); ok && last.Epoch >= epoch {
		return false
	}
	c.entries = append(c.entries, epochEntry{epoch, offset})
	return true
}

// endOffsetFor answers OffsetForLeaderEpoch as Kafka's LeaderEpochFileCache:
// the largest epoch at or below the requested one and the offset where the
// next epoch starts (the log end for the latest epoch), or -1, -1.
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
		if err1 != nil || err2 != nil || !c.assign(int32(e), o) {
			return epochCache{}, fmt.Errorf("partition: %s: bad line %q", epochCheckpointFile, line)
		}
	}
	return c, nil
}
