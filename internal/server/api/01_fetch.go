package api

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/server"
)

// Limits of a fetch.
const (
	// maxFetchResponseBytes is the broker's fetch.max.bytes: a response
	// holds at most this much record data, whatever the client asks.
	maxFetchResponseBytes = 55 << 20
	// maxFetchWait bounds max.wait.ms.
	maxFetchWait = 5 * time.Minute
)

// Fetch v4-18.
//
// Reads each partition from the batch holding the fetch offset up to the
// high watermark (or, for read_committed, the last stable offset, with the
// aborted transactions whose records the range holds), within the partition's and the
// response's byte limits; the first batch of the first partition with data
// is sent whole even when larger (KIP-74). A fetch that finds less than
// min.bytes waits up to max.wait.ms and is woken by appends, not by polling.
// v13+ name topics by id. v7+ keep fetch sessions (KIP-227, see
// fetch_session.go): the request's session id and epoch choose a context
// (newFetchContext), which says what to read; the response is cut down to
// what changed for an incremental fetch, and a session is created for a
// full one, only when answered (fetchContext.finish), after any long poll.
// Follower fetches come with replication.
func (h *Handler) fetch(ctx context.Context, r *kmsg.FetchRequest, reply func(server.Reply)) {
	maxBytes := int(r.MaxBytes)
	if r.Version < 3 || maxBytes <= 0 || maxBytes > maxFetchResponseBytes {
		maxBytes = maxFetchResponseBytes
	}
	wait := time.Duration(r.MaxWaitMillis) * time.Millisecond
	wait = min(max(wait, 0), maxFetchWait)

	if id := replicaID(r); id >= 0 {
		h.replicaFetch(ctx, r, id, reply)
		return
	}
	fc, errResp := h.newFetchContext(r)
	if errResp != nil {
		reply(server.Reply{Msg: errResp})
		return
	}
	r = fc.read
	// One wake-up channel for the whole fetch, registered with every
	// partition it reads before reading it (so no append is missed), and
	// dropped from them when the fetch is answered.
	wake := make(chan struct{}, 1)
	rd := h.readFetch(r, maxBytes, wake)
	if rd.bytes >= int(r.MinBytes) || wait == 0 || len(rd.watched) == 0 || hasError(rd.resp) {
		unwatch(rd.watched, wake)
		fc.finish(&rd)
		h.answerFetch(rd, reply)
		return
	}
	h.observer.Purgatory("fetch", 1)
	go func() {
		defer h.observer.Purgatory("fetch", -1)
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			timedOut := false
			select {
			case <-ctx.Done():
				unwatch(rd.watched, wake)
				server.ReleaseRegions(rd.regions)
				reply(server.Reply{None: true})
				return
			case <-timer.C:
				timedOut = true
			case <-wake:
			}
			server.ReleaseRegions(rd.regions) // read again below
			rd = h.readFetch(r, maxBytes, wake)
			if timedOut || rd.bytes >= int(r.MinBytes) || len(rd.watched) == 0 || hasError(rd.resp) {
				unwatch(rd.watched, wake)
				fc.finish(&rd)
				h.answerFetch(rd, reply)
				return
			}
		}
	}()
}

// unwatch drops a fetch's wake-up channel from the partitions it read.
func unwatch(parts []*partition.Partition, wake chan<- struct{}) {
	for _, p := range parts {
		p.Unwatch(wake)
	}
}

// answerFetch reports what a response carries to the observer and sends it.
func (h *Handler) answerFetch(rd fetchRead, reply func(server.Reply)) {
	for _, f := range rd.flows {
		h.observer.Fetched(f.topic, f.bytes, f.records)
	}
	reply(server.Reply{Msg: rd.resp, Regions: rd.regions})
}

// hasError says whether any partition carries an error, or a preferred
// read replica (KIP-392): such a response is sent at once so the client
// can act on it.
func hasError(resp *kmsg.FetchResponse) bool {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 || p.PreferredReadReplica >= 0 {
				return true
			}
		}
	}
	return false
}

// fetchRead is a fetch response built from what the logs hold now.
type fetchRead struct {
	resp  *kmsg.FetchResponse
	bytes int // record bytes found
	// watched are the partitions read, each told to send on the fetch's
	// wake-up channel when its high watermark moves.
	watched []*partition.Partition
	// regions are sent by the writer in place of the records' markers.
	regions []server.Region
	flows   []topicFlow // per topic, for metrics
}

// topicFlow is what one topic of a fetch response carries.
type topicFlow struct {
	topic          string
	bytes, records int
}

// readFetch builds a response from what the logs hold now.
func (h *Handler) readFetch(r *kmsg.FetchRequest, maxBytes int, wake chan<- struct{}) fetchRead {
	rd := fetchRead{resp: r.ResponseKind().(*kmsg.FetchResponse)}
	img := h.b.Image()
	for _, rt := range r.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.TopicID = rt.TopicID
		var t *metadata.Topic
		topicErr := kerr.UnknownTopicOrPartition
		if r.Version >= 13 {
			t = img.TopicsByID[metadata.TopicID(rt.TopicID)]
			topicErr = kerr.UnknownTopicID
			// A session's topic id whose name (resolved when it was
			// known) is now another topic's: the topic was recreated
			// (Kafka: INCONSISTENT_TOPIC_ID, so the client starts over).
			if other := img.Topics[rt.Topic]; t == nil && rt.Topic != "" && other != nil {
				topicErr = kerr.InconsistentTopicID
			}
		} else {
			st.Topic = rt.Topic
			t = img.Topics[rt.Topic]
		}
		flow := topicFlow{}
		if t != nil {
			flow.topic = t.Name
		}
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			sp.PreferredReadReplica = -1
			// Empty, not null: librdkafka refuses a null record set.
			sp.RecordBatches = []byte{}
			if t == nil {
				sp.ErrorCode = topicErr.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p, ok := h.b.Partition(t.Name, rp.Partition)
			if ok && r.Version >= 11 {
				// KIP-392: a consumer in another rack than this leader
				// is sent to an in-sync replica in its own.
				if id := h.b.PreferredReadReplica(t.Name, rp.Partition, r.Rack); id >= 0 {
					sp.PreferredReadReplica = id
					sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = p.HighWatermark(), p.LastStableOffset(), p.Log().StartOffset()
					st.Partitions = append(st.Partitions, sp)
					continue
				}
			}
			if !ok && r.Version >= 11 {
				// KIP-392: a consumer (v11+ names its rack) may read a
				// follower, up to the follower's high watermark.
				p, ok = h.b.Follower(t.Name, rp.Partition)
			}
			if !ok {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				if rp.Partition >= 0 && int(rp.Partition) < len(t.Partitions) {
					sp.ErrorCode = kerr.NotLeaderForPartition.Code
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p.Watch(wake)
			rd.watched = append(rd.watched, p)
			region, records, err := readPartition(p, &rp, &sp, r.IsolationLevel, min(int(rp.PartitionMaxBytes), maxBytes-rd.bytes), rd.bytes == 0)
			if err != nil {
				sp.ErrorCode = errorCode(err)
			} else if region.Size > 0 {
				sp.RecordBatches = region.Marker
				rd.regions = append(rd.regions, region)
				rd.bytes += int(region.Size)
				flow.bytes += int(region.Size)
				flow.records += records
			}
			st.Partitions = append(st.Partitions, sp)
		}
		if flow.bytes > 0 {
			rd.flows = append(rd.flows, flow)
		}
		rd.resp.Topics = append(rd.resp.Topics, st)
	}
	addFetchLeaderHints(img, rd.resp)
	return rd
}

// readPartition fills one partition of the response but its records,
// which it returns as a file region, with the number of records in it
// from the fetch offset (for metrics).
func readPartition(p *partition.Partition, rp *kmsg.FetchRequestTopicPartition, sp *kmsg.FetchResponseTopicPartition, isolation int8, maxBytes int, first bool) (server.Region, int, error) {
	if err := checkLeaderEpoch(p, rp.CurrentLeaderEpoch); err != nil {
		return server.Region{}, 0, err
	}
	hw := p.HighWatermark()
	lso := p.LastStableOffset()
	sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = hw, lso, p.Log().StartOffset()
	limit := hw
	if isolation == 1 {
		limit = lso
		sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
	}
	res, err := p.Log().Read(rp.FetchOffset, max(maxBytes, 0), limit, first)
	if err != nil || res.Size == 0 {
		return server.Region{}, 0, err
	}
	if isolation == 1 {
		for _, a := range p.AbortedTxns(rp.FetchOffset, res.NextOffset) {
			sp.AbortedTransactions = append(sp.AbortedTransactions, kmsg.FetchResponseTopicPartitionAbortedTransaction{
				ProducerID: a.ProducerID, FirstOffset: a.FirstOffset})
		}
	}
	records := res.NextOffset - max(rp.FetchOffset, res.FirstBatch.BaseOffset)
	return fileRegion(res), int(records), nil
}

// fileRegion is a read's file range as a response region with a fresh
// marker.
func fileRegion(res log.ReadResult) server.Region {
	marker := make([]byte, server.RegionMarkerBytes)
	binary.BigEndian.PutUint64(marker, rand.Uint64())
	binary.BigEndian.PutUint64(marker[8:], rand.Uint64())
	return server.Region{Marker: marker, File: res.File, Pos: res.Position, Size: res.Size, Release: res.Release}
}

// checkLeaderEpoch compares a client's current leader epoch (-1: no check)
// with ours, as Kafka does for fetches and offset lookups.
func checkLeaderEpoch(p *partition.Partition, epoch int32) error {
	if epoch < 0 {
		return nil
	}
	switch ours := p.LeaderEpoch(); {
	case epoch > ours:
		return kerr.UnknownLeaderEpoch
	case epoch < ours:
		return kerr.FencedLeaderEpoch
	}
	return nil
}
