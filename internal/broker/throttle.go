package broker

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/metadata"
)

// Replication throttling (KIP-73, Kafka's ReplicationQuotaManager). A topic
// names the replicas whose copying is throttled in
// leader.replication.throttled.replicas (the leader's side: what it sends
// to followers) and follower.replication.throttled.replicas (the
// follower's side: what its fetcher asks for), as partitionId:brokerId
// items or "*" for every replica of the topic. Each broker has one quota
// per side, shared by all the partitions it throttles on that side, whose
// bound is the broker config leader.replication.throttled.rate or
// follower.replication.throttled.rate, re-read at every check so that a
// dynamic change applies at once.
//
// While a side's quota is exceeded, a leader answers its throttled
// partitions in a follower's fetch without records (api/replica_fetch.go),
// and a follower leaves its throttled partitions out of its fetches
// (fetcher.go); other partitions are never held back. Each side records the
// bytes of its throttled partitions it sent or received.

// Names of the configs of replication throttling.
const (
	leaderThrottledReplicasConfig   = "leader.replication.throttled.replicas"
	followerThrottledReplicasConfig = "follower.replication.throttled.replicas"
	leaderThrottledRateConfig       = "leader.replication.throttled.rate"
	followerThrottledRateConfig     = "follower.replication.throttled.rate"
)

// Replication quota windows, Kafka's defaults.
const (
	// replicationQuotaSampleWindow is how long one sample of a quota's
	// rate lasts (replication.quota.window.size.seconds, 1 s).
	replicationQuotaSampleWindow = time.Second
	// replicationQuotaSamples is how many samples a quota's rate is
	// measured over (replication.quota.window.num, 11): about the last
	// 11 s.
	replicationQuotaSamples = 11
	// replicationQuotaWindow is the span of the samples kept: a sample
	// that started this long ago no longer counts.
	replicationQuotaWindow = replicationQuotaSamples * replicationQuotaSampleWindow
	// minThrottleRecheck is the shortest wait before a partition held
	// back by a quota is looked at again, so that a rate hovering at its
	// bound does not spin fetches.
	minThrottleRecheck = 10 * time.Millisecond
	// unthrottledRate is the rates' default, Long.MAX_VALUE bytes per
	// second: no throttle.
	unthrottledRate = math.MaxInt64
)

// rateSample is the bytes recorded in one sample window, from start.
type rateSample struct {
	start time.Time // zero: never used
	bytes int64
}

// replicationQuota measures the rate, in bytes per second, of one side's
// throttled replication on this broker, in a sliding window of
// replicationQuotaSamples samples of replicationQuotaSampleWindow each (as
// Kafka's Rate over a SampledStat): a sample starts at the first bytes
// recorded after the previous one ended, and samples older than the
// window are forgotten. The rate is the bytes of the kept samples over the
// time since the oldest one started, at least one sample window.
//
// Kafka counts at least samples-1 whole windows (10 s) as elapsed, so a
// quota that measured nothing lately lets about ten seconds' worth of bytes
// through at once before it throttles; counting the real elapsed time (at
// least one window, so a single fetch never trips it) keeps a copy that
// starts, such as a new replica's, at the rate from its first second.
//
// The clock is the now each method is given. The zero value is ready.
// Safe for concurrent use.
type replicationQuota struct {
	mu      sync.Mutex
	samples [replicationQuotaSamples]rateSample
	cur     int // the sample being filled
	// total is every byte recorded since the start (metrics).
	total atomic.Int64
}

// record counts n bytes at now.
func (q *replicationQuota) record(n int64, now time.Time) {
	if n <= 0 {
		return
	}
	q.total.Add(n)
	q.mu.Lock()
	defer q.mu.Unlock()
	if s := q.samples[q.cur]; s.start.IsZero() || now.Sub(s.start) >= replicationQuotaSampleWindow {
		if !s.start.IsZero() {
			q.cur = (q.cur + 1) % replicationQuotaSamples
		}
		q.samples[q.cur] = rateSample{start: now}
	}
	q.samples[q.cur].bytes += n
}

// measureLocked returns the bytes of the samples in the window at now and
// the time since the oldest of them started (not floored). q.mu held.
func (q *replicationQuota) measureLocked(now time.Time) (bytes int64, elapsed time.Duration) {
	var oldest time.Time
	for _, s := range q.samples {
		if s.start.IsZero() || now.Sub(s.start) >= replicationQuotaWindow {
			continue
		}
		bytes += s.bytes
		if oldest.IsZero() || s.start.Before(oldest) {
			oldest = s.start
		}
	}
	if bytes == 0 {
		return 0, 0
	}
	return bytes, max(now.Sub(oldest), 0)
}

// rate is the measured rate at now, in bytes per second.
func (q *replicationQuota) rate(now time.Time) float64 {
	q.mu.Lock()
	bytes, elapsed := q.measureLocked(now)
	q.mu.Unlock()
	if bytes == 0 {
		return 0
	}
	return float64(bytes) / max(elapsed, replicationQuotaSampleWindow).Seconds()
}

// exceeded reports whether the rate at now, counting pending bytes about to
// be sent as well (those a response already holds), is above bound bytes
// per second. A bound of unthrottledRate (or, never valid, below 1) is
// never exceeded.
func (q *replicationQuota) exceeded(bound, pending int64, now time.Time) bool {
	if bound <= 0 || bound == unthrottledRate {
		return false
	}
	q.mu.Lock()
	bytes, elapsed := q.measureLocked(now)
	q.mu.Unlock()
	bytes += max(pending, 0)
	if bytes == 0 {
		return false
	}
	return float64(bytes) > float64(bound)*max(elapsed, replicationQuotaSampleWindow).Seconds()
}

// delay is how long from now until the rate falls to bound if nothing more
// is recorded: when a partition held back should be looked at again. It is
// 0 when the quota is not exceeded, and at most the window (by then every
// sample counted now has expired).
func (q *replicationQuota) delay(bound int64, now time.Time) time.Duration {
	if bound <= 0 || bound == unthrottledRate {
		return 0
	}
	q.mu.Lock()
	bytes, elapsed := q.measureLocked(now)
	q.mu.Unlock()
	// The bytes take bytes/bound seconds at the bound; the rate is back
	// at the bound once that much time has passed since the oldest
	// sample started (exceeded implies it is over one sample window, so
	// the floor does not apply).
	d := float64(bytes)/float64(bound)*float64(time.Second) - float64(elapsed)
	return time.Duration(min(max(d, 0), float64(replicationQuotaWindow)))
}

// ThrottledReplicas is a topic's leader.replication.throttled.replicas or
// follower.replication.throttled.replicas as it applies to one broker: the
// partitions of the topic whose replica on that broker is throttled. The
// zero value throttles none.
type ThrottledReplicas struct {
	all        bool
	partitions map[int32]bool
}

// parseThrottledReplicas reads a throttled replica list (already
// validated by config: "*", or partitionId:brokerId items) for broker, as
// Kafka's parseThrottledPartitions: "" is none, "*" every partition, else
// the partitions of the items naming broker. An item that does not parse
// (never stored: the config is validated when set) is skipped.
func parseThrottledReplicas(v string, broker int32) ThrottledReplicas {
	v = strings.TrimSpace(v)
	switch v {
	case "":
		return ThrottledReplicas{}
	case "*":
		return ThrottledReplicas{all: true}
	}
	var r ThrottledReplicas
	for _, it := range strings.Split(v, ",") {
		ps, bs, ok := strings.Cut(it, ":")
		if !ok {
			continue
		}
		p, perr := strconv.ParseInt(strings.TrimSpace(ps), 10, 32)
		id, berr := strconv.ParseInt(strings.TrimSpace(bs), 10, 32)
		if perr != nil || berr != nil || int32(id) != broker {
			continue
		}
		if r.partitions == nil {
			r.partitions = map[int32]bool{}
		}
		r.partitions[int32(p)] = true
	}
	return r
}

// Has reports whether partition's replica is throttled.
func (r ThrottledReplicas) Has(partition int32) bool {
	return r.all || r.partitions[partition]
}

// LeaderThrottledReplicas returns the partitions of t that this broker
// throttles when it leads them and followers fetch them
// (leader.replication.throttled.replicas naming this broker, or "*"). A
// nil t throttles none. Parse once per topic per fetch, not per partition:
// a list can name thousands of replicas.
func (b *Broker) LeaderThrottledReplicas(t *metadata.Topic) ThrottledReplicas {
	return b.throttledReplicas(t, leaderThrottledReplicasConfig)
}

// followerThrottledReplicas returns the partitions of t whose fetching
// this broker throttles as their follower
// (follower.replication.throttled.replicas naming this broker, or "*").
func (b *Broker) followerThrottledReplicas(t *metadata.Topic) ThrottledReplicas {
	return b.throttledReplicas(t, followerThrottledReplicasConfig)
}

// throttledReplicas reads the throttled replica list called name of t
// from the image the caller holds. These two topic configs have no broker
// synonym, so the effective value is the topic's own, else the config's
// default; config.Topic (what TopicConfig resolves, with every other config
// checked) does not carry them, and resolving them all on each fetch would
// cost more than the fetch.
func (b *Broker) throttledReplicas(t *metadata.Topic, name string) ThrottledReplicas {
	if t == nil {
		return ThrottledReplicas{}
	}
	v, ok := t.Configs[name]
	if !ok {
		d, _ := config.TopicDef(name)
		v = d.Default
	}
	return parseThrottledReplicas(v, b.cfg.NodeID)
}

// LeaderQuotaExceeded reports whether what this broker sent followers of
// its leader-throttled partitions lately, with pending bytes about to be
// sent, is above leader.replication.throttled.rate: a follower's fetch
// then gets those partitions without records.
func (b *Broker) LeaderQuotaExceeded(pending int64) bool {
	return b.leaderQuota.exceeded(b.brokerInt(leaderThrottledRateConfig), pending, b.cfg.Now())
}

// RecordLeaderReplication counts n bytes of leader-throttled partitions
// sent to a follower.
func (b *Broker) RecordLeaderReplication(n int64) { b.leaderQuota.record(n, b.cfg.Now()) }

// LeaderQuotaDelay is how long until the leader's quota is no longer
// exceeded if nothing more is sent, at least minThrottleRecheck: how long
// a follower's fetch that holds back a throttled partition may wait before
// it looks again.
func (b *Broker) LeaderQuotaDelay() time.Duration {
	return max(b.leaderQuota.delay(b.brokerInt(leaderThrottledRateConfig), b.cfg.Now()), minThrottleRecheck)
}

// followerQuotaExceeded reports whether what this broker fetched lately of
// its follower-throttled partitions is above
// follower.replication.throttled.rate: its fetchers then leave them out.
func (b *Broker) followerQuotaExceeded() bool {
	return b.followerQuota.exceeded(b.brokerInt(followerThrottledRateConfig), 0, b.cfg.Now())
}

// recordFollowerReplication counts n bytes of follower-throttled
// partitions received from a leader.
func (b *Broker) recordFollowerReplication(n int64) { b.followerQuota.record(n, b.cfg.Now()) }

// followerQuotaDelay is as LeaderQuotaDelay for the follower's quota.
func (b *Broker) followerQuotaDelay() time.Duration {
	return max(b.followerQuota.delay(b.brokerInt(followerThrottledRateConfig), b.cfg.Now()), minThrottleRecheck)
}

// followerThrottled returns those of parts (partitions a fetcher is about
// to fetch) that this broker throttles as their follower, reading each
// topic's list once, from img.
func (b *Broker) followerThrottled(img *metadata.Image, parts map[TopicPartition]*followed) map[TopicPartition]bool {
	var out map[TopicPartition]bool
	byTopic := map[string]ThrottledReplicas{}
	for tp := range parts {
		r, ok := byTopic[tp.Topic]
		if !ok {
			r = b.followerThrottledReplicas(img.Topics[tp.Topic])
			byTopic[tp.Topic] = r
		}
		if r.Has(tp.Partition) {
			if out == nil {
				out = map[TopicPartition]bool{}
			}
			out[tp] = true
		}
	}
	return out
}
