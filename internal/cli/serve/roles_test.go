package serve

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/freeport"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// sluice serve with process.roles: a controller-only node (no Kafka
// listener; its controller listener answers the admin requests brokers
// forward) and a broker-only node that follows its quorum, used by a
// client through the broker alone.
func TestRunDedicatedRoles(t *testing.T) {
	ctrlAddr, brokerAddr := freeport.ForTest(t, "127.0.0.1"), freeport.ForTest(t, "127.0.0.1")
	voters := "1@" + ctrlAddr
	run := func(o Options) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, o) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve node %d: %v", o.NodeID, err)
			}
		})
	}
	run(Options{NodeID: 1, HTTPListen: freeport.ForTest(t, "127.0.0.1"), DataDir: t.TempDir(), LogLevel: "error",
		ControllerListen: ctrlAddr, Voters: voters, Configs: []string{"process.roles=controller"}})
	run(Options{NodeID: 2, Listen: brokerAddr, HTTPListen: freeport.ForTest(t, "127.0.0.1"), DataDir: t.TempDir(), LogLevel: "error",
		Voters: voters, Configs: []string{"process.roles=broker", "offsets.topic.replication.factor=1"}})

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr), kgo.DefaultProduceTopic("r"),
		kgo.ConsumeTopics("r"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(cl)
	var created bool
	for !created { // the broker serves once it has registered and caught up
		resp, err := adm.CreateTopic(ctx, 2, 1, nil, "r")
		if err == nil && resp.Err == nil {
			created = true
		} else if ctx.Err() != nil {
			t.Fatalf("create topic through the broker-only node: %v %v", err, resp.Err)
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	meta, err := adm.BrokerMetadata(ctx)
	if err != nil || len(meta.Brokers) != 1 || meta.Brokers[0].NodeID != 2 || meta.Controller != 2 {
		t.Fatalf("metadata: %+v %v; want broker 2 alone, named as the controller clients can reach", meta, err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fs := cl.PollFetches(ctx)
	if fs.NumRecords() != 1 {
		t.Fatalf("consumed %d records: %v", fs.NumRecords(), fs.Errors())
	}
}

// process.roles that cannot work stop sluice serve with what to do.
func TestRunRolesErrors(t *testing.T) {
	voters := "1@" + freeport.ForTest(t, "127.0.0.1")
	for name, c := range map[string]struct {
		o    Options
		want string
	}{
		"one role alone": {Options{NodeID: 1, Configs: []string{"process.roles=controller"}}, "needs --controller-quorum-voters"},
		"voter as broker": {Options{NodeID: 1, Voters: voters, Configs: []string{"process.roles=broker"}},
			"a voter needs the controller role"},
		"controller not a voter": {Options{NodeID: 2, Voters: voters, ControllerListen: freeport.ForTest(t, "127.0.0.1"), Configs: []string{"process.roles=controller"}},
			"not in --controller-quorum-voters"},
		"broker with a controller listener": {Options{NodeID: 2, Voters: voters, ControllerListen: freeport.ForTest(t, "127.0.0.1"), Configs: []string{"process.roles=broker"}},
			"has no controller listener"},
		"controller advertised": {Options{NodeID: 1, Voters: voters, AdvertisedAddress: "h:1", Configs: []string{"process.roles=controller"}},
			"no client listener"},
		"unknown role": {Options{NodeID: 1, Configs: []string{"process.roles=router"}}, "unknown role"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c.o.Listen, c.o.HTTPListen, c.o.DataDir, c.o.LogLevel = "127.0.0.1:0", "127.0.0.1:0", t.TempDir(), "error"
		err := Run(ctx, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// A node stopped (SIGTERM, Ctrl-C) while it waits for a metadata quorum
// stops at once and without an error, rather than after the two minutes it
// would wait for the other voters.
func TestRunStopsWhileWaitingForQuorum(t *testing.T) {
	ctrl := freeport.ForTest(t, "127.0.0.1")
	voters := "1@" + ctrl + ",2@" + freeport.ForTest(t, "127.0.0.1") + ",3@" + freeport.ForTest(t, "127.0.0.1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{NodeID: 1, Listen: freeport.ForTest(t, "127.0.0.1"), HTTPListen: freeport.ForTest(t, "127.0.0.1"),
			DataDir: t.TempDir(), LogLevel: "error", ControllerListen: ctrl, Voters: voters})
	}()
	// Waiting: its controller listener answers, no quorum can form.
	for {
		c, err := net.DialTimeout("tcp", ctrl, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve returned before it was stopped: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stopped while waiting for the quorum: %v; want a clean stop", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve still waiting for the quorum 30 s after it was stopped")
	}
}
