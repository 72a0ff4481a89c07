package api

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/server"
)

// replicaID is the broker a Fetch comes from, or -1 for a consumer:
// ReplicaState.ID from v15 (KIP-903), ReplicaID before.
func replicaID(r *kmsg.FetchRequest) int32 {
	if r.Version >= 15 {
		return r.ReplicaState.ID
	}
	return r.ReplicaID
}

// replicaFetch answers a follower's Fetch (the leader's side of
// replication, Kafka's ReplicaManager.fetchMessages for a follower): for
// each partition, the follower's LastFetchedEpoch is checked against the
// leader's epochs (a diverged follower is told where, DivergingEpoch, and
// sent nothing); otherwise its fetch offset is its log end offset, which
// may move the ISR and the high watermark, and the leader sends what it
// has past it, up to its log end (not the high watermark: followers copy
// what is not yet committed). With nothing to send, the fetch waits up to
// MaxWaitMillis for an append. No fetch sessions: a follower names every
// partition each time.
//
// Replication throttling (KIP-73, Kafka's shouldLeaderThrottle): the
// partitions that leader.replication.throttled.replicas lists for this
// broker are answered without records while leader.replication.throttled.rate
// is exceeded, and their bytes count against it once sent. A fetch that
// holds one back waits at most until the rate is expected to fall, so that
// the throttle does not slow the copy below its rate.
func (h *Handler) replicaFetch(ctx context.Context, r *kmsg.FetchRequest, id int32, reply func(server.Reply)) {
	epoch := int64(-1)
	if r.Version >= 15 {
		epoch = r.ReplicaState.Epoch
	}
	maxBytes := int(r.MaxBytes)
	if maxBytes <= 0 || maxBytes > maxFetchResponseBytes {
		maxBytes = maxFetchResponseBytes
	}
	wait := min(max(time.Duration(r.MaxWaitMillis)*time.Millisecond, 0), maxFetchWait)
	wake := make(chan struct{}, 1)
	rd, watched, th := h.readReplicaFetch(r, id, epoch, maxBytes, wake)
	unwatchAll := func() {
		for _, lr := range watched {
			lr.Unwatch(wake)
		}
	}
	answer := func() {
		h.b.RecordLeaderReplication(th.bytes)
		h.answerFetch(rd, reply)
	}
	if th.held {
		wait = min(wait, h.b.LeaderQuotaDelay())
	}
	if rd.bytes >= int(max(r.MinBytes, 1)) || wait == 0 || len(watched) == 0 || hasError(rd.resp) {
		unwatchAll()
		answer()
		return
	}
	go func() {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			timedOut := false
			select {
			case <-ctx.Done():
				unwatchAll()
				server.ReleaseRegions(rd.regions)
				reply(server.Reply{None: true})
				return
			case <-timer.C:
				timedOut = true
			case <-wake:
			}
			server.ReleaseRegions(rd.regions)
			unwatchAll()
			rd, watched, th = h.readReplicaFetch(r, id, epoch, maxBytes, wake)
			if timedOut || rd.bytes > 0 || len(watched) == 0 || hasError(rd.resp) {
				unwatchAll()
				answer()
				return
			}
		}
	}()
}

// replicaThrottle is what a follower's fetch response holds of the
// partitions this leader throttles.
type replicaThrottle struct {
	// bytes are the record bytes of throttled partitions in the response,
	// counted against leader.replication.throttled.rate once it is sent.
	bytes int64
	// held: a throttled partition was answered without records because
	// the rate was exceeded.
	held bool
}

// readReplicaFetch builds a follower's response from what the logs hold
// now, registering wake with each leadership it read (throttled partitions
// held back included, so that an append still ends the wait).
func (h *Handler) readReplicaFetch(r *kmsg.FetchRequest, id int32, brokerEpoch int64, maxBytes int, wake chan<- struct{}) (fetchRead, []*broker.LeaderReplica, replicaThrottle) {
	rd := fetchRead{resp: r.ResponseKind().(*kmsg.FetchResponse)}
	var watched []*broker.LeaderReplica
	var th replicaThrottle
	img := h.b.Image()
	for _, rt := range r.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		t := img.Topics[rt.Topic]
		if r.Version >= 13 {
			t = img.TopicsByID[metadata.TopicID(rt.TopicID)]
		}
		throttled := h.b.LeaderThrottledReplicas(t)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			sp.PreferredReadReplica = -1
			sp.RecordBatches = []byte{}
			if t == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				if r.Version >= 13 {
					sp.ErrorCode = kerr.UnknownTopicID.Code
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			lr, ok := h.b.LeaderReplica(t.Name, rp.Partition)
			if !ok {
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				if rp.Partition < 0 || int(rp.Partition) >= len(t.Partitions) {
					sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p := lr.Partition()
			if err := checkLeaderEpoch(p, rp.CurrentLeaderEpoch); err != nil {
				sp.ErrorCode = errorCode(err)
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			lastEpoch := int32(-1)
			if r.Version >= 12 {
				lastEpoch = rp.LastFetchedEpoch
			}
			diverging, err := lr.FollowerFetch(id, brokerEpoch, rp.FetchOffset, lastEpoch)
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = p.HighWatermark(), p.LastStableOffset(), p.Log().StartOffset()
			if err != nil {
				sp.ErrorCode = errorCode(err)
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if diverging != nil {
				sp.DivergingEpoch = *diverging
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			lr.Watch(wake)
			watched = append(watched, lr)
			limited := throttled.Has(rp.Partition)
			if limited && h.b.LeaderQuotaExceeded(th.bytes) {
				th.held = true
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			res, err := p.Log().Read(rp.FetchOffset, max(min(int(rp.PartitionMaxBytes), maxBytes-rd.bytes), 0), p.Log().EndOffset(), rd.bytes == 0)
			if err != nil {
				sp.ErrorCode = errorCode(err)
			} else if res.Size > 0 {
				region := fileRegion(res)
				sp.RecordBatches = region.Marker
				rd.regions = append(rd.regions, region)
				rd.bytes += int(region.Size)
				if limited {
					th.bytes += region.Size
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		rd.resp.Topics = append(rd.resp.Topics, st)
	}
	return rd, watched, th
}
