package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/kclient"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/partition"
)

// Replica fetching (a follower's side of replication).
const (
	// fetchBackoff is the pause after a failed fetch (connection refused,
	// NOT_LEADER_OR_FOLLOWER while the metadata catches up). Kafka's
	// replica.fetch.backoff.ms is 1 s; a shorter pause makes failover
	// faster at the cost of a few more requests to a broker that is down.
	fetchBackoff = 100 * time.Millisecond
	// fetchRequestSlack is added to replica.fetch.wait.max.ms for the
	// deadline of one fetch.
	fetchRequestSlack = 10 * time.Second
	// replicaFetchVersion is the Fetch version followers send: v15+ names
	// the replica in ReplicaState with its broker epoch (KIP-903), v12+
	// carries LastFetchedEpoch and answers DivergingEpoch (KIP-595/320).
	replicaFetchVersion = 17
)

// followed is a partition this broker follows.
type followed struct {
	p       *partition.Partition
	topicID metadata.TopicID
	epoch   int32     // the leader epoch it follows in
	pause   time.Time // fetch it again only after this (a leader change in progress)
}

// fetcher fetches every partition this broker follows from one leader,
// with one connection and one request at a time (Kafka's
// ReplicaFetcherThread with num.replica.fetchers=1).
type fetcher struct {
	b      *Broker
	leader int32

	mu    sync.Mutex
	parts map[TopicPartition]*followed
	kick  chan struct{} // 1-buffered: the set changed
	stop  context.CancelFunc
	done  chan struct{}
}

// follow makes this broker fetch tp from leader in epoch.
func (b *Broker) follow(tp TopicPartition, p *partition.Partition, topicID metadata.TopicID, leader, epoch int32) {
	b.fetchMu.Lock()
	defer b.fetchMu.Unlock()
	for id, f := range b.fetchers {
		if id != leader && f.remove(tp) {
			b.stopIdleLocked(id, f)
		}
	}
	f := b.fetchers[leader]
	if f == nil {
		ctx, cancel := context.WithCancel(b.ctx)
		f = &fetcher{b: b, leader: leader, parts: map[TopicPartition]*followed{}, kick: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
		b.fetchers[leader] = f
		go f.run(ctx)
	}
	f.mu.Lock()
	if cur := f.parts[tp]; cur == nil || cur.epoch != epoch || cur.p != p {
		f.parts[tp] = &followed{p: p, topicID: topicID, epoch: epoch}
	}
	f.mu.Unlock()
	f.wake()
}

// stopFollowing stops fetching tp.
func (b *Broker) stopFollowing(tp TopicPartition) {
	b.fetchMu.Lock()
	defer b.fetchMu.Unlock()
	for id, f := range b.fetchers {
		if f.remove(tp) {
			b.stopIdleLocked(id, f)
		}
	}
}

// stopIdleLocked stops a fetcher that follows nothing. fetchMu held.
func (b *Broker) stopIdleLocked(id int32, f *fetcher) {
	f.mu.Lock()
	idle := len(f.parts) == 0
	f.mu.Unlock()
	if idle {
		f.stop()
		delete(b.fetchers, id)
	}
}

// stopFetchers stops every fetcher and waits for them.
func (b *Broker) stopFetchers() {
	b.fetchMu.Lock()
	fs := b.fetchers
	b.fetchers = map[int32]*fetcher{}
	b.fetchMu.Unlock()
	for _, f := range fs {
		f.stop()
		<-f.done
	}
}

func (f *fetcher) remove(tp TopicPartition) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.parts[tp]; !ok {
		return false
	}
	delete(f.parts, tp)
	return true
}

func (f *fetcher) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// run fetches until ctx ends.
func (f *fetcher) run(ctx context.Context) {
	defer close(f.done)
	log := f.b.logger.With("leader", f.leader)
	var conn *kclient.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-f.kick:
			return true
		case <-time.After(d):
			return true
		}
	}
	for ctx.Err() == nil {
		round := f.request()
		req := round.req
		if req == nil {
			wait := time.Hour // until the set changes
			if round.retry > 0 {
				wait = round.retry
			}
			if !sleep(wait) {
				return
			}
			continue
		}
		if conn == nil {
			var err error
			if conn, err = f.dial(ctx); err != nil {
				log.Debug("replica fetcher cannot reach the leader", "err", err)
				if !sleep(fetchBackoff) {
					return
				}
				continue
			}
		}
		rctx, cancel := context.WithTimeout(ctx, time.Duration(req.MaxWaitMillis)*time.Millisecond+fetchRequestSlack)
		v := min(conn.Version(1, replicaFetchVersion), replicaFetchVersion)
		var resp kmsg.Response
		err := kclient.ErrUnsupported
		if v >= 12 {
			resp, err = conn.RequestAt(rctx, req, v)
		}
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				log.Debug("replica fetch failed", "err", err)
			}
			conn.Close()
			conn = nil
			if !sleep(fetchBackoff) {
				return
			}
			continue
		}
		if f.handle(resp.(*kmsg.FetchResponse), round) {
			sleep(fetchBackoff)
		}
	}
}

// dial connects to the leader at the address it registered.
func (f *fetcher) dial(ctx context.Context) (*kclient.Conn, error) {
	br, ok := f.b.meta.Image().Brokers[f.leader]
	if !ok {
		return nil, fmt.Errorf("leader %d is not registered", f.leader)
	}
	dctx, cancel := context.WithTimeout(ctx, controllerRequestTimeout)
	defer cancel()
	return kclient.Dial(dctx, net.JoinHostPort(br.Host, strconv.Itoa(int(br.Port))),
		kclient.Options{ClientID: fmt.Sprintf("sluice-replica-fetcher-%d", f.b.cfg.NodeID), LocalAddr: f.b.cfg.LocalAddr})
}

// fetchRound is one fetch of a fetcher: the request and what it names.
type fetchRound struct {
	req   *kmsg.FetchRequest // nil: nothing to fetch now
	parts map[TopicPartition]*followed
	// throttled are the partitions of parts that this broker throttles
	// as their follower: their bytes count against
	// follower.replication.throttled.rate.
	throttled map[TopicPartition]bool
	// retry, when req is nil, is how long until a partition left out
	// (paused after an error, or held back by the follower's throttle)
	// may be fetched; 0: none was left out.
	retry time.Duration
}

// request builds the next fetch of every followed partition that is not
// paused, nor held back by the follower's throttle (KIP-73: while
// follower.replication.throttled.rate is exceeded, the partitions that
// follower.replication.throttled.replicas lists for this broker are left
// out, as Kafka's ReplicaFetcherThread does).
func (f *fetcher) request() fetchRound {
	b := f.b
	now := time.Now()
	f.mu.Lock()
	parts := make(map[TopicPartition]*followed, len(f.parts))
	for tp, fp := range f.parts {
		if now.After(fp.pause) {
			parts[tp] = fp
		}
	}
	paused := len(parts) < len(f.parts)
	f.mu.Unlock()
	var retry time.Duration
	if paused {
		retry = fetchBackoff
	}
	throttled := b.followerThrottled(b.meta.Image(), parts)
	if len(throttled) > 0 && b.followerQuotaExceeded() {
		for tp := range throttled {
			delete(parts, tp)
		}
		throttled = nil
		// The soonest a left-out partition may go: when the rate falls
		// to its bound, or a paused one's backoff ends.
		if d := b.followerQuotaDelay(); retry == 0 || d < retry {
			retry = d
		}
	}
	if len(parts) == 0 {
		return fetchRound{retry: retry}
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = b.cfg.NodeID
	req.ReplicaState.ID, req.ReplicaState.Epoch = b.cfg.NodeID, b.brokerEpoch.Load()
	req.MaxWaitMillis = int32(b.brokerInt("replica.fetch.wait.max.ms"))
	req.MinBytes = int32(b.brokerInt("replica.fetch.min.bytes"))
	req.MaxBytes = int32(b.brokerInt("replica.fetch.response.max.bytes"))
	req.SessionEpoch = -1 // no fetch session: every fetch names every partition
	partMax := int32(b.brokerInt("replica.fetch.max.bytes"))
	byTopic := map[string]int{}
	for tp, fp := range parts {
		i, ok := byTopic[tp.Topic]
		if !ok {
			t := kmsg.NewFetchRequestTopic()
			t.Topic, t.TopicID = tp.Topic, fp.topicID
			req.Topics = append(req.Topics, t)
			i = len(req.Topics) - 1
			byTopic[tp.Topic] = i
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = tp.Partition
		rp.CurrentLeaderEpoch = fp.epoch
		rp.FetchOffset = fp.p.Log().EndOffset()
		rp.LastFetchedEpoch = fp.p.LatestEpoch()
		rp.LogStartOffset = fp.p.Log().StartOffset()
		rp.PartitionMaxBytes = partMax
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	return fetchRound{req: req, parts: parts, throttled: throttled}
}

// handle applies a fetch response; it reports whether the fetcher should
// pause before the next fetch (the whole response was refused). The bytes
// of the throttled partitions it carries count against the follower's
// quota, whether or not they can be applied: they were fetched.
func (f *fetcher) handle(resp *kmsg.FetchResponse, round fetchRound) (pause bool) {
	b := f.b
	if resp.ErrorCode != 0 {
		b.logger.Debug("replica fetch refused", "leader", f.leader, "err", kerr.ErrorForCode(resp.ErrorCode))
		return true
	}
	parts := round.parts
	var throttledBytes int64
	defer func() { b.recordFollowerReplication(throttledBytes) }()
	durable := b.flushPolicy() == config.FlushPolicyAcksAll
	img := b.meta.Image()
	for _, rt := range resp.Topics {
		name := rt.Topic
		if t := img.TopicsByID[metadata.TopicID(rt.TopicID)]; t != nil {
			name = t.Name
		}
		for _, sp := range rt.Partitions {
			tp := TopicPartition{name, sp.Partition}
			fp := parts[tp]
			if fp == nil {
				continue
			}
			if round.throttled[tp] {
				throttledBytes += int64(len(sp.RecordBatches))
			}
			f.mu.Lock()
			current := f.parts[tp] == fp
			f.mu.Unlock()
			if !current {
				// The partition's leader or epoch changed while this
				// fetch was out: its answer is from a past leadership.
				continue
			}
			if err := f.apply(tp, fp, &sp, durable); err != nil {
				b.logger.Info("replica fetch", "partition", partitionDir(tp), "leader", f.leader, "err", err)
				f.pauseTP(tp, fp)
			}
		}
	}
	return false
}

// pauseTP pauses one partition after an error until the metadata moves on.
func (f *fetcher) pauseTP(tp TopicPartition, fp *followed) {
	f.mu.Lock()
	if cur := f.parts[tp]; cur == fp {
		fp.pause = time.Now().Add(fetchBackoff)
	}
	f.mu.Unlock()
}

// apply applies one partition of a fetch response.
func (f *fetcher) apply(tp TopicPartition, fp *followed, sp *kmsg.FetchResponseTopicPartition, durable bool) error {
	p := fp.p
	switch sp.ErrorCode {
	case 0:
	case kerr.OffsetOutOfRange.Code:
		// Behind the leader's log start (retention or DeleteRecords ran
		// there): start over at it. Ahead of the leader's end cannot
		// happen with leader epochs (the divergence check comes first);
		// if it does, cut back to the leader's high watermark.
		end := p.Log().EndOffset()
		switch {
		case sp.LogStartOffset >= 0 && end < sp.LogStartOffset:
			if err := p.TruncateFullyAndStartAt(sp.LogStartOffset); err != nil {
				return err
			}
			// The log start checkpoint must not keep an older start.
			return f.b.Checkpoint()
		case sp.HighWatermark >= 0 && end > sp.HighWatermark:
			return p.TruncateTo(sp.HighWatermark)
		}
		return kerr.OffsetOutOfRange
	default:
		return kerr.ErrorForCode(sp.ErrorCode)
	}
	if d := sp.DivergingEpoch; d.Epoch >= 0 || d.EndOffset >= 0 {
		return f.truncate(tp, p, d)
	}
	if len(sp.RecordBatches) > 0 {
		if _, err := p.AppendReplicated(sp.RecordBatches); err != nil && !errors.Is(err, partition.ErrOffsetMismatch) {
			return fmt.Errorf("append from the leader: %w", err)
		}
		if durable {
			// The next fetch reports our log end to the leader: under
			// acks-all it must be on disk first.
			if err := p.Flush(); err != nil {
				return err
			}
		}
	}
	p.AdvanceHighWatermark(sp.HighWatermark)
	// The leader's log start moved (DeleteRecords, retention): follow it,
	// as Kafka's follower does, so that a record deleted there does not
	// come back when this replica leads.
	if start := sp.LogStartOffset; start > p.Log().StartOffset() {
		end := p.Log().EndOffset()
		if _, err := p.Log().DeleteRecordsBefore(min(start, end), end); err != nil {
			return fmt.Errorf("follow the leader's log start %d: %w", start, err)
		}
	}
	return nil
}

// truncate cuts the follower's log where it diverged from the leader's
// (KIP-101/279): at the leader's end offset for the epoch it names, or
// this replica's own end for that epoch if smaller.
func (f *fetcher) truncate(tp TopicPartition, p *partition.Partition, d kmsg.FetchResponseTopicPartitionDivergingEpoch) error {
	target := d.EndOffset
	if d.Epoch < 0 {
		// The leader has no epoch at or below ours: keep only what is
		// known committed.
		target = p.HighWatermark()
	} else if ours, ourEnd := p.EndOffsetForEpoch(d.Epoch); ours >= 0 && ourEnd >= 0 {
		// Kafka's rule: the smaller of the leader's and our own end of
		// the last epoch we share.
		target = min(target, ourEnd)
	}
	f.b.logger.Info("truncating a diverged replica", "partition", partitionDir(tp), "leader", f.leader,
		"leader_epoch", d.Epoch, "leader_end_offset", d.EndOffset, "to", target, "log_end", p.Log().EndOffset())
	return p.TruncateTo(target)
}
