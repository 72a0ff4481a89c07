package e2e

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterDeadFollowerLeavesISR: a follower whose broker dies stops
// holding acks=all back once its broker is fenced (broker.session.timeout.ms),
// not after replica.lag.time.max.ms (30 s): the fenced broker's follower is
// no longer eligible for the ISR (KIP-841), so it does not count for the
// high watermark while out of it. (Before, the write waited 30 s.)
func TestClusterDeadFollowerLeavesISR(t *testing.T) {
	tc := startCluster(t, 3, map[string]string{"min.insync.replicas": "2"})
	adm := kadm.NewClient(tc.client())
	ctx := ctxT(t)
	if resp, err := adm.CreateTopic(ctx, 1, 3, nil, "dead"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := tc.client(kgo.DefaultProduceTopic("dead"))
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p := tc.nodes[0].b.Image().Topics["dead"].Partitions[0]
	var victim *testBroker
	for _, tb := range tc.nodes {
		if tb.b.NodeID() != p.Leader && !tb.b.Meta().IsController() {
			victim = tb
		}
	}
	if victim == nil {
		t.Skip("no follower that is not the controller")
	}
	victim.srv.Close()
	victim.b.Halt()
	start := time.Now()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("y")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	t.Logf("acks=all with a dead follower took %v", time.Since(start))
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("acks=all with a dead follower took %v: it waited for replica.lag.time.max.ms, not the fencing", d)
	}
}

// longSession is a broker session far longer than the tests wait, so that
// only the fencing of a broker whose connection closed can fence in time.
var longSession = map[string]string{"broker.session.timeout.ms": "120000"}

// TestClusterDeadBrokerFencedAtOnce: a broker whose process dies closes
// its connection to the controller; the controller fences it once it has
// not come back for a few heartbeat intervals, without waiting for its
// whole session (here 2 minutes). (Before, only the session counted.)
func TestClusterDeadBrokerFencedAtOnce(t *testing.T) {
	tc := startCluster(t, 3, longSession)
	victim := tc.notController()
	id := victim.b.NodeID()
	waitUntil(t, "every broker unfenced", func() bool {
		for _, b := range tc.nodes[0].b.Image().Brokers {
			if b.Fenced {
				return false
			}
		}
		return true
	})
	victim.srv.Close()
	victim.b.Halt() // as if killed: its connections close
	ctl := tc.controller()
	waitUntil(t, "the dead broker fenced", func() bool { return ctl.b.Image().Brokers[id].Fenced })
	// A broker that stays connected is not fenced for it.
	for _, tb := range tc.nodes {
		if tb != victim && ctl.b.Image().Brokers[tb.b.NodeID()].Fenced {
			t.Errorf("live broker %d was fenced", tb.b.NodeID())
		}
	}
}

// TestClusterOldControllerFencedAtOnce: a new active controller fences the
// previous one once it has not heard from it for a few heartbeat
// intervals: its predecessor most likely died, which is why it was
// elected. (Before, it gave it a whole session, here 2 minutes.)
func TestClusterOldControllerFencedAtOnce(t *testing.T) {
	tc := startCluster(t, 3, longSession)
	old := tc.controller()
	id := old.b.NodeID()
	old.stop()
	var ctl *testBroker
	waitUntil(t, "a new controller", func() bool { ctl = tc.controller(); return ctl != nil && ctl != old })
	waitUntil(t, "the old controller fenced", func() bool { return ctl.b.Image().Brokers[id].Fenced })
}
