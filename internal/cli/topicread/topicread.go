// Package topicread reads a topic's partitions from their start to the end
// offsets seen when reading began, with plain Fetch requests (no consumer
// group). It follows the fetch position past gaps in the offsets (a
// compacted log) and past control batches, which a consumer that stops at
// the record before the end offset would wait at forever.
package topicread

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Range is a partition's offsets to read: from Start up to End, exclusive.
type Range struct {
	Start, End int64
}

// Empty says whether the range holds no offsets.
func (r Range) Empty() bool { return r.End <= r.Start }

// Ranges lists the log start and end offsets of topic's partitions parts.
func Ranges(ctx context.Context, cl *kgo.Client, topic string, parts []int32) (map[int32]Range, error) {
	adm := kadm.NewClient(cl) // not closed: that would close cl
	list := func(what string, fn func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
		l, err := fn(ctx, topic)
		if err != nil {
			return nil, fmt.Errorf("%s offsets of %s: %w", what, topic, err)
		}
		m := map[int32]int64{}
		for _, p := range parts {
			lo, ok := l.Lookup(topic, p)
			if !ok {
				return nil, fmt.Errorf("%s offset of %s/%d: not in the broker's answer", what, topic, p)
			}
			if lo.Err != nil {
				return nil, fmt.Errorf("%s offset of %s/%d: %w", what, topic, p, lo.Err)
			}
			m[p] = lo.Offset
		}
		return m, nil
	}
	starts, err := list("start", adm.ListStartOffsets)
	if err != nil {
		return nil, err
	}
	ends, err := list("end", adm.ListEndOffsets)
	if err != nil {
		return nil, err
	}
	out := map[int32]Range{}
	for _, p := range parts {
		out[p] = Range{Start: starts[p], End: ends[p]}
	}
	return out, nil
}

const (
	maxWait        = 500 * time.Millisecond
	partitionBytes = 8 << 20
	requestBytes   = 64 << 20
	maxRetries     = 20
	retryBackoff   = 100 * time.Millisecond
	maxStalls      = 10
)

// Read calls fn with every record of topic in ranges, each partition's in
// offset order (partitions interleave), until every partition reaches its
// End; records at or past End are not passed. If the log start moves past
// a partition's position while reading (retention), reading goes on from
// the new start. An error from fn stops reading and is returned.
func Read(ctx context.Context, cl *kgo.Client, topic string, ranges map[int32]Range, fn func(*kgo.Record) error) error {
	pos := map[int32]int64{}
	for p, r := range ranges {
		if !r.Empty() {
			pos[p] = r.Start
		}
	}
	if len(pos) == 0 {
		return nil
	}
	rd := &reader{cl: cl, topic: topic, dec: kgo.DefaultDecompressor()}
	if err := rd.refresh(ctx); err != nil {
		return err
	}
	stalls := map[int32]int{}
	retries := 0
	retry := func(cause error) error {
		retries++
		if retries > maxRetries {
			return fmt.Errorf("read %s: %w", topic, cause)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retryBackoff):
		}
		return rd.refresh(ctx)
	}
	for len(pos) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		byLeader := map[int32][]int32{}
		for p := range pos {
			l, ok := rd.leaders[p]
			if !ok {
				return fmt.Errorf("read %s: partition %d is not in the metadata", topic, p)
			}
			byLeader[l] = append(byLeader[l], p)
		}
		for _, leader := range slices.Sorted(maps.Keys(byLeader)) {
			parts := slices.Sorted(slices.Values(byLeader[leader]))
			resp, err := rd.fetch(ctx, leader, parts, pos)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err := retry(err); err != nil {
					return err
				}
				break
			}
			needRefresh := false
			answered := map[int32]bool{}
			for _, rt := range resp.Topics {
				for i := range rt.Partitions {
					rp := &rt.Partitions[i]
					p := rp.Partition
					off, ok := pos[p]
					if !ok || !slices.Contains(parts, p) || answered[p] {
						continue
					}
					answered[p] = true
					end := ranges[p].End
					perr := kerr.ErrorForCode(rp.ErrorCode)
					switch {
					case errors.Is(perr, kerr.OffsetOutOfRange):
						// Retention moved the log start past us.
						r, err := Ranges(ctx, cl, topic, []int32{p})
						if err != nil {
							return err
						}
						if r[p].Start <= off {
							return fmt.Errorf("read %s/%d at offset %d: %w", topic, p, off, perr)
						}
						pos[p] = r[p].Start
						if pos[p] >= end {
							delete(pos, p)
						}
						continue
					case perr != nil && kerr.IsRetriable(perr):
						needRefresh = true
						continue
					case perr != nil:
						return fmt.Errorf("read %s/%d at offset %d: %w", topic, p, off, perr)
					}
					fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
						Offset: off, Topic: topic, Partition: p,
					}, rp, rd.dec, nil)
					if fp.Err != nil {
						return fmt.Errorf("read %s/%d at offset %d: %w", topic, p, off, fp.Err)
					}
					for _, r := range fp.Records {
						if r.Offset >= end {
							break
						}
						if err := fn(r); err != nil {
							return err
						}
					}
					switch {
					case next >= end:
						delete(pos, p)
					case next > off:
						pos[p] = next
						stalls[p] = 0
					case rp.HighWatermark <= off:
						// The log ends before the end seen at start (it
						// was truncated): nothing more to read.
						delete(pos, p)
					default:
						stalls[p]++
						if stalls[p] > maxStalls {
							return fmt.Errorf("read %s/%d: no progress at offset %d (high watermark %d)", topic, p, off, rp.HighWatermark)
						}
					}
				}
			}
			for _, p := range parts {
				if _, ok := pos[p]; ok && !answered[p] {
					stalls[p]++
					if stalls[p] > maxStalls {
						return fmt.Errorf("read %s/%d: the broker does not answer for it", topic, p)
					}
				}
			}
			if needRefresh {
				if err := retry(errors.New("partitions without a leader")); err != nil {
					return err
				}
				break
			}
			retries = 0
		}
	}
	return nil
}

type reader struct {
	cl      *kgo.Client
	topic   string
	topicID [16]byte
	leaders map[int32]int32
	dec     kgo.Decompressor
}

// refresh loads the topic's id and partition leaders.
func (rd *reader) refresh(ctx context.Context) error {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(rd.topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, rd.cl)
	if err != nil {
		return fmt.Errorf("metadata of %s: %w", rd.topic, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != rd.topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return fmt.Errorf("metadata of %s: %w", rd.topic, err)
		}
		rd.topicID = t.TopicID
		rd.leaders = map[int32]int32{}
		for _, p := range t.Partitions {
			if p.Leader >= 0 {
				rd.leaders[p.Partition] = p.Leader
			}
		}
		return nil
	}
	return fmt.Errorf("metadata of %s: not in the broker's answer", rd.topic)
}

func (rd *reader) fetch(ctx context.Context, leader int32, parts []int32, pos map[int32]int64) (*kmsg.FetchResponse, error) {
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis = int32(maxWait.Milliseconds())
	req.MinBytes = 1
	req.MaxBytes = requestBytes
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = rd.topic
	rt.TopicID = rd.topicID
	for _, p := range parts {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p
		rp.FetchOffset = pos[p]
		rp.PartitionMaxBytes = partitionBytes
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := rd.cl.Broker(int(leader)).Request(ctx, req)
	if err != nil {
		return nil, err
	}
	fr := resp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(fr.ErrorCode); err != nil {
		return nil, err
	}
	return fr, nil
}
