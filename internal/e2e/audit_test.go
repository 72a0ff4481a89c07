package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
)

// The auditor against a 3-broker cluster: it creates its topic with one
// partition per broker and replication factor 3, and sees every heartbeat;
// then a broker stops mid-run: its partitions' leadership moves, and no
// acknowledged heartbeat is lost, duplicated or reordered.
func TestAuditCluster(t *testing.T) {
	tc := startCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(tc.addrs...), kgo.MetadataMinAge(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, tb := range tc.nodes {
		waitUntil(t, "every broker registered and unfenced", func() bool {
			n := 0
			for _, b := range tb.b.Image().Brokers {
				if !b.Fenced {
					n++
				}
			}
			return n == 3
		})
	}
	a, err := audit.New(ctx, audit.Options{
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(tc.addrs...)}, opts...)...)
		},
		Interval: 100 * time.Millisecond, Grace: 15 * time.Second, Logger: logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	td, err := adm.ListTopics(ctx, audit.DefaultTopic)
	if err != nil {
		t.Fatal(err)
	}
	ps := td[audit.DefaultTopic].Partitions
	if len(ps) != 3 {
		t.Fatalf("the audit topic has %d partitions, want one per broker", len(ps))
	}
	for _, p := range ps {
		if len(p.Replicas) != 3 {
			t.Fatalf("partition %d has replicas %v, want 3", p.Partition, p.Replicas)
		}
	}
	a.Start(ctx)
	// Wait for heartbeats on every partition, then stop the leader of
	// partition 0.
	waitSeen := func(n uint64) audit.Report {
		t.Helper()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			r := a.Report()
			ok := true
			for _, p := range r.Partitions {
				ok = ok && p.Seen >= n
			}
			if ok {
				return r
			}
			select {
			case <-ctx.Done():
				t.Fatalf("not %d heartbeats seen on every partition: %+v", n, r.Partitions)
			case <-tick.C:
			}
		}
	}
	r := waitSeen(5)
	victim := r.Partitions[0].Leader
	for _, b := range r.Brokers { // one partition per broker, placed round robin: each leads one
		if len(b.Partitions) != 1 {
			t.Errorf("broker %d leads partitions %v of the audit topic, want one", b.Broker, b.Partitions)
		}
	}
	tc.nodes[victim-1].stop()
	before := r.Partitions[0].Seen
	waitSeen(before + 20) // heartbeats flow again on every partition, through the new leaders
	a.StopProducing()
	a.Drain(ctx)
	a.RefreshLeaders(ctx)
	r = a.Report()
	for _, p := range r.Partitions {
		t.Logf("partition %d leader %d: sent %d acked %d seen %d lost %d late %d dup %d ooo %d produce errors %d p99 %s",
			p.Partition, p.Leader, p.Sent, p.Acked, p.Seen, p.Lost, p.Late, p.Duplicated, p.OutOfOrder, p.ProduceErrors, p.Latency(0.99))
		if p.Lost != 0 || p.Duplicated != 0 || p.OutOfOrder != 0 || p.Unexpected != 0 || p.Seen < p.Acked {
			t.Errorf("partition %d: %+v", p.Partition, p.Stats)
		}
		if p.Leader == victim {
			t.Errorf("partition %d still led by the stopped broker %d", p.Partition, victim)
		}
	}
}
