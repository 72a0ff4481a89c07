package broker

import (
	"context"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/metadata"
)

var quotaEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// at is the fake clock d after quotaEpoch.
func at(d time.Duration) time.Time { return quotaEpoch.Add(d) }

// TestReplicationQuotaRate: the rate is the bytes of the kept samples over
// the time since the oldest started, at least one sample window; samples
// older than the window stop counting.
func TestReplicationQuotaRate(t *testing.T) {
	var q replicationQuota
	if r := q.rate(at(0)); r != 0 {
		t.Fatalf("empty quota: rate %v, want 0", r)
	}
	q.record(1000, at(0))
	// A single burst is spread over at least one sample window.
	if r := q.rate(at(0)); r != 1000 {
		t.Fatalf("rate right after 1000 bytes: %v, want 1000 (over one window)", r)
	}
	if r := q.rate(at(500 * time.Millisecond)); r != 1000 {
		t.Fatalf("rate at 0.5 s: %v, want 1000", r)
	}
	if r := q.rate(at(2 * time.Second)); r != 500 {
		t.Fatalf("rate at 2 s: %v, want 500", r)
	}
	// Recorded within the same sample, then in later ones.
	q.record(1000, at(900*time.Millisecond))
	q.record(2000, at(3*time.Second))
	if r := q.rate(at(4 * time.Second)); r != 1000 {
		t.Fatalf("4000 bytes over 4 s: rate %v, want 1000", r)
	}
	// At 11 s the first sample (started at 0, 2000 bytes) expires: the
	// one started at 3 s is the oldest.
	if r := q.rate(at(11 * time.Second)); r != 2000.0/8 {
		t.Fatalf("rate at 11 s: %v, want %v", r, 2000.0/8)
	}
	if r := q.rate(at(14 * time.Second)); r != 0 {
		t.Fatalf("rate once every sample expired: %v, want 0", r)
	}
	// Nothing negative or empty counts.
	q.record(0, at(15*time.Second))
	q.record(-5, at(15*time.Second))
	if r := q.rate(at(15 * time.Second)); r != 0 {
		t.Fatalf("rate after recording nothing: %v", r)
	}
}

// TestReplicationQuotaSlides: recording every second for longer than the
// window keeps only the last replicationQuotaSamples samples (the ring
// wraps), so the rate follows the recent traffic.
func TestReplicationQuotaSlides(t *testing.T) {
	var q replicationQuota
	for s := range 30 {
		n := int64(100)
		if s >= 20 {
			n = 300 // the traffic triples for the last 10 s
		}
		q.record(n, at(time.Duration(s)*time.Second))
	}
	// At 30 s the samples started at 20..29 s are kept (19 s expired at
	// 30 s): 10 x 300 bytes over 10 s.
	if r := q.rate(at(30 * time.Second)); r != 300 {
		t.Fatalf("rate %v, want 300 (the last 10 s)", r)
	}
	// Half a second earlier, the 100-byte sample started at 19 s still
	// counts: all 11 slots of the ring are in use.
	if r := q.rate(at(29*time.Second + 500*time.Millisecond)); math.Abs(r-(10*300+100)/10.5) > 1e-9 {
		t.Fatalf("rate %v, want %v", r, (10*300+100)/10.5)
	}
}

// TestReplicationQuotaExceeded: above the bound (pending bytes counted) is
// exceeded, at it is not; delay says when it stops being exceeded; the
// default bound never throttles.
func TestReplicationQuotaExceeded(t *testing.T) {
	const bound = 1000
	var q replicationQuota
	if q.exceeded(bound, 0, at(0)) || q.delay(bound, at(0)) != 0 {
		t.Fatal("an empty quota is exceeded")
	}
	if q.exceeded(bound, 1000, at(0)) || !q.exceeded(bound, 1001, at(0)) {
		t.Fatal("pending bytes: want 1000 within a 1000 B/s bound and 1001 beyond it")
	}
	q.record(1000, at(0))
	if q.exceeded(bound, 0, at(0)) {
		t.Fatal("1000 bytes in the first second of a 1000 B/s quota: exceeded")
	}
	q.record(1000, at(100*time.Millisecond))
	if !q.exceeded(bound, 0, at(100*time.Millisecond)) {
		t.Fatal("2000 bytes in 0.1 s of a 1000 B/s quota: not exceeded")
	}
	if d := q.delay(bound, at(100*time.Millisecond)); d != 1900*time.Millisecond {
		t.Fatalf("delay %v, want 1.9 s (2000 bytes take 2 s at the bound)", d)
	}
	if !q.exceeded(bound, 0, at(1999*time.Millisecond)) {
		t.Fatal("exceeded ended before its delay")
	}
	if q.exceeded(bound, 0, at(2*time.Second)) || q.delay(bound, at(2*time.Second)) != 0 {
		t.Fatal("still exceeded once the rate is back at the bound")
	}
	// A dynamic change of the bound applies to what was measured.
	if !q.exceeded(500, 0, at(2*time.Second)) {
		t.Fatal("a lower bound is not exceeded by the same history")
	}
	// The default (Long.MAX_VALUE) never throttles, nor delays.
	q.record(math.MaxInt32, at(2*time.Second))
	if q.exceeded(unthrottledRate, 0, at(2*time.Second)) || q.delay(unthrottledRate, at(2*time.Second)) != 0 {
		t.Fatal("the unthrottled rate throttles")
	}
	// A delay longer than the window is capped at it.
	if d := q.delay(1, at(2*time.Second)); d != replicationQuotaWindow {
		t.Fatalf("delay at 1 B/s: %v, want the window %v", d, replicationQuotaWindow)
	}
}

// TestReplicationQuotaHoldsCopyToBound drives a copy the way a leader and
// follower do (send a chunk whenever the quota is not exceeded, look again
// after its delay) on a fake clock, for longer than the window: the bytes
// sent never run ahead of the bound by more than the first window's and one
// chunk's worth, and the copy does not fall far behind it either.
func TestReplicationQuotaHoldsCopyToBound(t *testing.T) {
	const (
		bound = 1 << 20   // bytes per second
		chunk = 256 << 10 // one fetch's bytes
		span  = 40 * time.Second
	)
	var q replicationQuota
	var sent int64
	for now := time.Duration(0); now < span; {
		if q.exceeded(bound, 0, at(now)) {
			now += max(q.delay(bound, at(now)), minThrottleRecheck)
			continue
		}
		q.record(chunk, at(now))
		sent += chunk
		if limit := int64(bound*max(now, time.Second).Seconds()) + chunk; sent > limit {
			t.Fatalf("at %v: sent %d bytes, above the bound's %d", now, sent, limit)
		}
		now += time.Millisecond // the next fetch
	}
	if want := int64(0.95 * bound * span.Seconds()); sent < want {
		t.Fatalf("sent %d bytes in %v at %d B/s, want at least %d", sent, span, bound, want)
	}
}

// TestReplicationQuotaConcurrent: record and the checks are safe together
// (run with -race).
func TestReplicationQuotaConcurrent(t *testing.T) {
	var q replicationQuota
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				now := at(time.Duration(g*1000+i) * time.Millisecond)
				q.record(10, now)
				q.exceeded(1000, 5, now)
				q.delay(1000, now)
			}
		})
	}
	wg.Wait()
	if r := q.rate(at(4 * time.Second)); r <= 0 {
		t.Fatalf("rate %v after concurrent records", r)
	}
}

// TestParseThrottledReplicas: Kafka's parseThrottledPartitions: "" is none,
// "*" every partition, else the partitions whose items name the broker.
func TestParseThrottledReplicas(t *testing.T) {
	for _, tc := range []struct {
		v      string
		broker int32
		want   []int32 // of partitions 0..4
		all    bool
	}{
		{v: "", broker: 1},
		{v: "  ", broker: 1},
		{v: "*", broker: 1, all: true},
		{v: " * ", broker: 7, all: true},
		{v: "0:1,1:2,2:1", broker: 1, want: []int32{0, 2}},
		{v: "0:1,1:2,2:1", broker: 2, want: []int32{1}},
		{v: "0:1,1:2,2:1", broker: 3},
		{v: "0:101, 3:101 ,4:102", broker: 101, want: []int32{0, 3}},
		{v: "1:1,1:1", broker: 1, want: []int32{1}},
		// Never stored (config validates it), skipped item by item.
		{v: "x:1,2,3:y,4:1,99999999999:1", broker: 1, want: []int32{4}},
	} {
		r := parseThrottledReplicas(tc.v, tc.broker)
		for p := range int32(5) {
			want := tc.all
			for _, w := range tc.want {
				want = want || w == p
			}
			if got := r.Has(p); got != want {
				t.Errorf("%q for broker %d: partition %d throttled %v, want %v", tc.v, tc.broker, p, got, want)
			}
		}
		if tc.all != r.Has(1000) {
			t.Errorf("%q for broker %d: partition 1000 throttled %v", tc.v, tc.broker, r.Has(1000))
		}
	}
	var zero ThrottledReplicas
	if zero.Has(0) {
		t.Fatal("the zero ThrottledReplicas throttles")
	}
}

// TestBrokerReplicationThrottle: a broker reads the throttled replica
// lists from its topics' configs for its own id, and the rates from its
// static configs, overridden by dynamic ones as soon as they are set.
func TestBrokerReplicationThrottle(t *testing.T) {
	var (
		mu  sync.Mutex
		now = quotaEpoch
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b, err := Open(Config{NodeID: 1, DataDir: t.TempDir(), Host: "127.0.0.1", Port: 9092, Now: clock,
		Static: map[string]string{followerThrottledRateConfig: "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Meta().CreateTopic(ctx, "t", 3, []int32{1}, map[string]string{
		leaderThrottledReplicasConfig:   "0:1,1:2,2:1",
		followerThrottledReplicasConfig: "*",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Meta().CreateTopic(ctx, "plain", 1, []int32{1}, nil); err != nil {
		t.Fatal(err)
	}
	img := b.Image()
	lead := b.LeaderThrottledReplicas(img.Topics["t"])
	if !lead.Has(0) || lead.Has(1) || !lead.Has(2) {
		t.Fatalf("leader-throttled partitions of t on broker 1: 0 %v, 1 %v, 2 %v; want 0 and 2", lead.Has(0), lead.Has(1), lead.Has(2))
	}
	if follow := b.followerThrottledReplicas(img.Topics["t"]); !follow.Has(0) || !follow.Has(1) || !follow.Has(2) {
		t.Fatal("follower.replication.throttled.replicas=* does not throttle every partition")
	}
	if b.LeaderThrottledReplicas(img.Topics["plain"]).Has(0) || b.followerThrottledReplicas(img.Topics["plain"]).Has(0) || b.LeaderThrottledReplicas(nil).Has(0) {
		t.Fatal("a topic without the configs is throttled")
	}
	parts := map[TopicPartition]*followed{{"t", 1}: {}, {"plain", 0}: {}, {"gone", 0}: {}}
	if got := b.followerThrottled(img, parts); len(got) != 1 || !got[TopicPartition{"t", 1}] {
		t.Fatalf("follower-throttled of %v: %v, want t-1 alone", parts, got)
	}

	// The leader's rate is the default, unthrottled; the follower's the
	// static 1000 B/s.
	b.RecordLeaderReplication(1 << 30)
	if b.LeaderQuotaExceeded(0) {
		t.Fatal("the default leader.replication.throttled.rate throttles")
	}
	b.recordFollowerReplication(1500)
	if !b.followerQuotaExceeded() {
		t.Fatal("1500 bytes at once under a static 1000 B/s follower rate: not exceeded")
	}
	if d := b.followerQuotaDelay(); d != 1500*time.Millisecond {
		t.Fatalf("follower delay %v, want 1.5 s", d)
	}
	// Dynamic configs take effect without a restart, above static ones.
	if err := b.Meta().SetBrokerConfigs(ctx, map[string]string{
		leaderThrottledRateConfig:   strconv.Itoa(1 << 20),
		followerThrottledRateConfig: "2000",
	}); err != nil {
		t.Fatal(err)
	}
	if !b.LeaderQuotaExceeded(0) {
		t.Fatal("1 GiB sent under a dynamic 1 MiB/s leader rate: not exceeded")
	}
	if b.followerQuotaExceeded() {
		t.Fatal("1500 bytes under a dynamic 2000 B/s follower rate: exceeded")
	}
	if d := b.LeaderQuotaDelay(); d != replicationQuotaWindow {
		t.Fatalf("leader delay %v, want the window %v (1 GiB takes 1024 s at 1 MiB/s)", d, replicationQuotaWindow)
	}
	mu.Lock()
	now = now.Add(replicationQuotaWindow)
	mu.Unlock()
	if b.LeaderQuotaExceeded(0) || b.LeaderQuotaDelay() != minThrottleRecheck {
		t.Fatal("the leader quota is still exceeded once its samples expired")
	}
}

// TestPerBrokerThrottleRate: a rate set on this broker's own resource
// (kafka-reassign-partitions --throttle sets them so) beats the
// cluster-wide one; one set on another broker does not apply here.
func TestPerBrokerThrottleRate(t *testing.T) {
	b, err := Open(Config{NodeID: 1, DataDir: t.TempDir(), Host: "127.0.0.1", Port: 9092, Now: func() time.Time { return quotaEpoch }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if err := b.Meta().RegisterBroker(ctx, metadata.Broker{NodeID: 2, Host: "127.0.0.2", Port: 9092}); err != nil {
		t.Fatal(err)
	}
	b.recordFollowerReplication(1500)
	if err := b.Meta().SetBrokerConfigs(ctx, map[string]string{followerThrottledRateConfig: "2000"}); err != nil {
		t.Fatal(err)
	}
	if b.followerQuotaExceeded() {
		t.Fatal("1500 bytes under a cluster-wide 2000 B/s: exceeded")
	}
	if err := b.Meta().SetPerBrokerConfigs(ctx, 2, map[string]string{followerThrottledRateConfig: "1000"}); err != nil {
		t.Fatal(err)
	}
	if b.followerQuotaExceeded() {
		t.Fatal("broker 2's 1000 B/s throttles broker 1")
	}
	if err := b.Meta().SetPerBrokerConfigs(ctx, 1, map[string]string{followerThrottledRateConfig: "1000"}); err != nil {
		t.Fatal(err)
	}
	if !b.followerQuotaExceeded() {
		t.Fatal("1500 bytes under broker 1's own 1000 B/s (cluster-wide 2000): not exceeded")
	}
	if d := b.followerQuotaDelay(); d != 1500*time.Millisecond {
		t.Fatalf("follower delay %v, want 1.5 s at broker 1's own rate", d)
	}
	// Removing it falls back to the cluster-wide rate.
	if err := b.Meta().SetPerBrokerConfigs(ctx, 1, nil); err != nil {
		t.Fatal(err)
	}
	if b.followerQuotaExceeded() {
		t.Fatal("broker 1's rate removed: still throttled at it")
	}
}
