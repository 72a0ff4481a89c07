package e2e

import (
	"context"
	"crypto/rand"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
)

// TestClusterReplicationThrottle: with leader.replication.throttled.rate
// and follower.replication.throttled.rate set cluster-wide and a topic's
// leader/follower.replication.throttled.replicas set to "*" (KIP-73), a
// replica added by AlterPartitionAssignments copies the topic no faster
// than the throttle; a topic without the lists, copied between the same
// two brokers at the same time, is not held to it. Only an upper bound on
// the throttled rate is asserted: a loaded machine can only make a copy
// slower.
func TestClusterReplicationThrottle(t *testing.T) {
	const (
		throttle   = 1 << 20 // bytes per second, both sides
		dataBytes  = 8 << 20 // per topic
		valueBytes = 32 << 10
		// maxRatio is the throttled copy's rate over the throttle that
		// fails the test. The throttle lets one fetch's bytes
		// (replica.fetch.max.bytes, 1 MiB) run ahead of it: at most
		// 8/7 of it for 8 MiB.
		maxRatio = 1.2
		// copyTimeout bounds each copy: 8 MiB at 1 MiB/s takes 8 s.
		copyTimeout = 2 * time.Minute
	)
	const (
		leaderID, followerID = int32(1), int32(2)
		slow, fast           = "throttled", "unthrottled"
	)
	tc := startCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := tc.client(kgo.ProducerBatchCompression(kgo.NoCompression()))
	adm := kadm.NewClient(cl)

	// Both topics on the leader alone, so the new replicas of both come
	// from one leader to one follower, through the same fetcher.
	for _, name := range []string{slow, fast} {
		createAssigned(ctx, t, cl, name, []int32{leaderID})
	}
	leader, follower := tc.nodes[leaderID-1].b, tc.nodes[followerID-1].b
	waitUntil(t, "the topics open on their leader", func() bool {
		parts := leader.Partitions()
		_, ok1 := parts[broker.TopicPartition{Topic: slow}]
		_, ok2 := parts[broker.TopicPartition{Topic: fast}]
		return ok1 && ok2
	})
	value := make([]byte, valueBytes)
	for _, name := range []string{slow, fast} {
		for range dataBytes / valueBytes {
			rand.Read(value) // incompressible, should a codec be chosen
			cl.Produce(ctx, &kgo.Record{Topic: name, Value: append([]byte(nil), value...)}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("produce to %s: %v", name, err)
				}
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	rate := strconv.Itoa(throttle)
	brokerRes, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "leader.replication.throttled.rate", Value: &rate},
		{Op: kadm.SetConfig, Name: "follower.replication.throttled.rate", Value: &rate},
	}) // no broker: the cluster-wide default, resource ""
	if err != nil {
		t.Fatal(err)
	}
	all := "*"
	topicRes, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "leader.replication.throttled.replicas", Value: &all},
		{Op: kadm.SetConfig, Name: "follower.replication.throttled.replicas", Value: &all},
	}, slow)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range append(brokerRes, topicRes...) {
		if r.Err != nil {
			t.Fatalf("alter configs of %q: %v %s", r.Name, r.Err, r.ErrMessage)
		}
	}
	for _, b := range []*broker.Broker{leader, follower} {
		waitUntil(t, "the throttle configs on both brokers", func() bool {
			img := b.Image()
			return img.BrokerConfigs["leader.replication.throttled.rate"] == rate &&
				img.BrokerConfigs["follower.replication.throttled.rate"] == rate &&
				img.Topics[slow].Configs["follower.replication.throttled.replicas"] == all &&
				img.Topics[slow].Configs["leader.replication.throttled.replicas"] == all
		})
	}

	// Add the follower to both partitions at once, and time each copy
	// from the request until the follower's log ends where the leader's
	// does.
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign(slow, 0, []int32{leaderID, followerID})
	req.Assign(fast, 0, []int32{leaderID, followerID})
	start := time.Now()
	res, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); err != nil {
		t.Fatalf("reassign: %v", err)
	}
	took := map[string]time.Duration{}
	size := map[string]int64{}
	deadline := start.Add(copyTimeout)
	for len(took) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("copies not done after %v: done %v", copyTimeout, took)
		}
		for _, name := range []string{slow, fast} {
			if _, ok := took[name]; ok {
				continue
			}
			tp := broker.TopicPartition{Topic: name}
			lp, fp := leader.Partitions()[tp], follower.Partitions()[tp]
			if lp != nil && fp != nil && fp.Log().EndOffset() == lp.Log().EndOffset() {
				took[name] = time.Since(start)
				size[name] = lp.Log().Size()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}

	slowRate := float64(size[slow]) / took[slow].Seconds()
	fastRate := float64(size[fast]) / took[fast].Seconds()
	t.Logf("throttled copy: %d bytes in %v: %.0f B/s, %.3f x the throttle of %d B/s",
		size[slow], took[slow].Round(time.Millisecond), slowRate, slowRate/throttle, throttle)
	t.Logf("unthrottled copy (same leader, follower and time): %d bytes in %v: %.0f B/s, %.3f x the throttle",
		size[fast], took[fast].Round(time.Millisecond), fastRate, fastRate/throttle)
	if slowRate > maxRatio*throttle {
		t.Errorf("the throttled copy ran at %.0f B/s, %.3f x the throttle of %d B/s (at most %.1f x allowed)",
			slowRate, slowRate/throttle, throttle, maxRatio)
	}
}

// createAssigned creates a one-partition topic on the given replicas
// (CreateTopics with a manual ReplicaAssignment).
func createAssigned(ctx context.Context, t *testing.T, cl *kgo.Client, name string, replicas []int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, -1, -1
	a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
	a.Partition, a.Replicas = 0, replicas
	rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create %s on %v: %v", name, replicas, err)
	}
}
