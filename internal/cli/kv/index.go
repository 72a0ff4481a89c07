package kv

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/cli/topicread"
)

// entry is the latest record of a key in a partition; a nil value with
// deleted set is a tombstone.
type entry struct {
	key       string
	value     []byte
	deleted   bool
	partition int32
	offset    int64
	timestamp time.Time
	headers   []kgo.RecordHeader
}

// index is the latest record of every key kept, per partition.
type index struct {
	topic      string
	partitions int
	parts      map[int32]map[string]*entry
	order      []int32 // the keys of parts, sorted
	records    int64   // read
	keyless    int64   // records without a key, not indexed
}

// load reads topic from the start to the end offsets it has now and
// indexes the keys that keep accepts (all when nil).
func load(ctx context.Context, c clientopts.Common, topic string, keep func(key []byte) bool) (*index, error) {
	cl, md, err := c.Connect(ctx, []string{topic})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	parts, err := clientopts.Partitions(md, topic)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, c.Wait())
	ranges, err := topicread.Ranges(lctx, cl, topic, parts)
	cancel()
	if err != nil {
		return nil, err
	}
	ix := &index{topic: topic, partitions: len(parts), parts: map[int32]map[string]*entry{}}
	err = topicread.Read(ctx, cl, topic, ranges, func(r *kgo.Record) error {
		ix.records++
		if r.Key == nil {
			ix.keyless++
			return nil
		}
		if keep != nil && !keep(r.Key) {
			return nil
		}
		m := ix.parts[r.Partition]
		if m == nil {
			m = map[string]*entry{}
			ix.parts[r.Partition] = m
		}
		// Copies: the record's slices pin its whole fetched batch.
		e := &entry{key: string(r.Key), deleted: r.Value == nil, partition: r.Partition, offset: r.Offset, timestamp: r.Timestamp}
		if r.Value != nil {
			e.value = bytes.Clone(r.Value)
		}
		for _, h := range r.Headers {
			e.headers = append(e.headers, kgo.RecordHeader{Key: h.Key, Value: cloneKeepNil(h.Value)})
		}
		m[e.key] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ix, nil
}

func cloneKeepNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

// latest returns key's latest record (which may be a tombstone), or nil.
// A key lives in the partition its hash picks, where put and delete write
// it: a record there decides. Only a key that has no record there (it was
// produced to a chosen partition, or with another partitioner) is looked up
// in the other partitions, where the record with the latest timestamp wins
// (on a tie, the lowest partition's).
func (ix *index) latest(key string) *entry {
	if len(ix.order) != len(ix.parts) {
		ix.order = slices.Sorted(maps.Keys(ix.parts))
	}
	if len(ix.order) == 0 {
		return nil
	}
	if e, ok := ix.parts[partitionOf(ix.topic, []byte(key), ix.partitions)][key]; ok {
		return e
	}
	var best *entry
	for _, p := range ix.order {
		if e, ok := ix.parts[p][key]; ok && (best == nil || e.timestamp.After(best.timestamp)) {
			best = e
		}
	}
	return best
}

// live returns the keys' latest records that are not tombstones, sorted by
// key.
func (ix *index) live() []*entry {
	seen := map[string]bool{}
	var out []*entry
	for _, m := range ix.parts {
		for k := range m {
			if seen[k] {
				continue
			}
			seen[k] = true
			if e := ix.latest(k); e != nil && !e.deleted {
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, func(a, b *entry) int { return strings.Compare(a.key, b.key) })
	return out
}

// partitionOf is the partition the default partitioner (Kafka's murmur2
// of the key, as the Java client and franz-go use) picks for key.
func partitionOf(topic string, key []byte, partitions int) int32 {
	if partitions <= 0 {
		return 0
	}
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: key}, partitions))
}
