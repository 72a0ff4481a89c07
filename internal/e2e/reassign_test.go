package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/cli"
	"github.com/sluice-io/sluice/internal/cli/cluster"
)

// TestClusterReassign: AlterPartitionReassignments moves a partition's
// replicas and its leadership to other brokers while an acks=all producer
// with default retries writes to it: no produce error, nothing
// acknowledged lost or doubled, the removed broker deletes its copy, and
// ListPartitionReassignments shows the move while it lasts. A
// reassignment that cannot finish (its new broker is down) is listed, and
// cancelling it restores the original replicas.
func TestClusterReassign(t *testing.T) {
	tc := startCluster(t, 4, map[string]string{"min.insync.replicas": "2"})
	ctx := ctxT(t)
	adm := kadm.NewClient(tc.client())
	if resp, err := adm.CreateTopic(ctx, 2, 3, nil, "mv"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	for _, tb := range tc.nodes {
		waitUntil(t, "topic everywhere", func() bool { _, ok := tb.b.Image().Topics["mv"]; return ok })
	}
	p0 := tc.nodes[0].b.Image().Topics["mv"].Partitions[0]
	// The target: every broker but the leader, so that both the data and
	// the leadership move.
	var target []int32
	for id := int32(1); id <= 4; id++ {
		if id != p0.Leader {
			target = append(target, id)
		}
	}

	// A producer writing to partition 0 throughout.
	cl := tc.client(kgo.DefaultProduceTopic("mv"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		failures []error
	)
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; pctx.Err() == nil; i++ {
			v := strconv.Itoa(i)
			err := cl.ProduceSync(pctx, &kgo.Record{Value: []byte(v), Partition: 0}).FirstErr()
			mu.Lock()
			switch {
			case err == nil:
				acked[v] = true
			case pctx.Err() == nil:
				failures = append(failures, err)
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	waitUntil(t, "some records acknowledged", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > 100 })

	var req kadm.AlterPartitionAssignmentsReq
	req.Assign("mv", 0, target)
	res, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); err != nil {
		t.Fatalf("reassign: %v", err)
	}
	ctl := tc.controller()
	waitUntil(t, "the reassignment completed", func() bool {
		p := ctl.b.Image().Topics["mv"].Partitions[0]
		return !p.Reassigning() && slices.Equal(p.Replicas, target) && slices.Contains(target, p.Leader)
	})
	waitUntil(t, "the removed broker deleted its copy", func() bool {
		_, ok := tc.nodes[p0.Leader-1].b.Partitions()[broker.TopicPartition{Topic: "mv", Partition: 0}]
		return !ok
	})
	waitUntil(t, "more records acknowledged by the new leader", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > 600 })
	stop()
	<-done
	if len(failures) > 0 {
		t.Fatalf("%d produce errors during the reassignment, first: %v", len(failures), failures[0])
	}
	cons := tc.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"mv": {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(200*time.Millisecond))
	readsAckedOnce(t, ctx, cons, acked)

	// Partition 1 to a broker that is down: it cannot catch up, so the
	// reassignment stays listed until it is cancelled.
	p1 := ctl.b.Image().Topics["mv"].Partitions[1]
	var down *testBroker
	for _, tb := range tc.nodes {
		if id := tb.b.NodeID(); !slices.Contains(p1.Replicas, id) && tb != ctl {
			down = tb
		}
	}
	if down == nil {
		t.Skip("no broker outside partition 1 that is not the controller")
	}
	down.srv.Close()
	<-down.done
	down.b.Halt()
	defer func() {
		if err := down.b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		down.srv = nil
	}()
	waitUntil(t, "the stopped broker fenced", func() bool { return ctl.b.Image().Brokers[down.b.NodeID()].Fenced })
	stuck := []int32{p1.Replicas[0], p1.Replicas[1], down.b.NodeID()}
	req = nil
	req.Assign("mv", 1, stuck)
	if res, err := adm.AlterPartitionAssignments(ctx, req); err != nil || res.Error() != nil {
		t.Fatalf("reassign to a stopped broker: %v %v", err, res.Error())
	}
	listed, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{"mv": {1: {}}})
	if err != nil {
		t.Fatal(err)
	}
	l, ok := listed["mv"][1]
	if !ok || !slices.Equal(l.AddingReplicas, []int32{down.b.NodeID()}) || !slices.Equal(l.RemovingReplicas, p1.Replicas[2:]) {
		t.Fatalf("listed %+v (found %v); want adding %d, removing %v", l, ok, down.b.NodeID(), p1.Replicas[2:])
	}
	if n := metricValue(t, scrape(t, ctl), "sluice_reassigning_partitions"); n != 1 {
		t.Errorf("sluice_reassigning_partitions = %v, want 1", n)
	}
	req = nil
	req.CancelAssign("mv", 1)
	if res, err := adm.AlterPartitionAssignments(ctx, req); err != nil || res.Error() != nil {
		t.Fatalf("cancel: %v %v", err, res.Error())
	}
	now := ctl.b.Image().Topics["mv"].Partitions[1]
	if now.Reassigning() || !slices.Equal(now.Replicas, p1.Replicas) {
		t.Fatalf("after cancel: replicas %v adding %v removing %v; want %v", now.Replicas, now.AddingReplicas, now.RemovingReplicas, p1.Replicas)
	}
	// Cancelling again: nothing in progress.
	res, err = adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); !errors.Is(err, kerr.NoReassignmentInProgress) {
		t.Fatalf("second cancel: %v, want NO_REASSIGNMENT_IN_PROGRESS", err)
	}
	// A target naming an unknown broker is refused.
	req = nil
	req.Assign("mv", 1, []int32{1, 2, 99})
	res, err = adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); !errors.Is(err, kerr.InvalidReplicaAssignment) {
		t.Fatalf("unknown broker: %v, want INVALID_REPLICA_ASSIGNMENT", err)
	}
}

// runCLI runs a sluice command line against the cluster and returns its
// output.
func runCLI(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	root := cli.Root()
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(ctx)
	return out.String() + errb.String(), err
}

// TestClusterReassignCommand: `sluice cluster reassign --topics RE
// --broker-list IDS` plans the fewest moves (replicas on allowed brokers
// stay), applies them with a throttle, waits, and removes the throttle;
// --status then finds nothing under way.
func TestClusterReassignCommand(t *testing.T) {
	tc := startCluster(t, 4, nil)
	ctx := ctxT(t)
	adm := kadm.NewClient(tc.client())
	if resp, err := adm.CreateTopic(ctx, 4, 2, nil, "cmd"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := tc.client(kgo.DefaultProduceTopic("cmd"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	for i := range 200 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	before := tc.nodes[0].b.Image().Topics["cmd"]
	bootstrap := tc.nodes[0].addr
	out, err := runCLI(t, ctx, "cluster", "reassign", "--topics", "cmd", "--broker-list", "1,2,3", "--throttle", "100", "--brokers", bootstrap)
	if err != nil {
		t.Fatalf("reassign: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Every partition has moved") || !strings.Contains(out, "Throttle removed") {
		t.Fatalf("output:\n%s", out)
	}
	throttled := 0.0
	for _, tb := range tc.nodes {
		throttled += metricValue(t, scrape(t, tb), `sluice_replication_throttled_bytes_total{side="leader"}`)
	}
	if throttled == 0 {
		t.Error("no bytes counted against the leaders' replication throttle")
	}
	after := tc.controller().b.Image().Topics["cmd"]
	for i, p := range after.Partitions {
		if slices.Contains(p.Replicas, 4) || len(p.Replicas) != 2 || p.Reassigning() {
			t.Errorf("partition %d: replicas %v (reassigning %v)", i, p.Replicas, p.Reassigning())
		}
		// Fewest moves: a replica that was on an allowed broker stayed.
		for _, r := range before.Partitions[i].Replicas {
			if r != 4 && !slices.Contains(p.Replicas, r) {
				t.Errorf("partition %d: replica %d moved needlessly (%v -> %v)", i, r, before.Partitions[i].Replicas, p.Replicas)
			}
		}
	}
	if _, ok := after.Configs["leader.replication.throttled.replicas"]; ok {
		t.Errorf("the throttle stayed on the topic: %v", after.Configs)
	}
	out, err = runCLI(t, ctx, "cluster", "reassign", "--status", "--brokers", bootstrap)
	if err != nil || !strings.Contains(out, "No reassignment under way") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}

// TestClusterDrain: `sluice cluster drain` moves every replica and
// leadership off a broker (internal topics too) while the others keep
// min.insync.replicas, and `sluice cluster unregister` removes it once
// stopped: clients no longer see it.
func TestClusterDrain(t *testing.T) {
	tc := startCluster(t, 4, map[string]string{"min.insync.replicas": "2"})
	ctx := ctxT(t)
	adm := kadm.NewClient(tc.client())
	if resp, err := adm.CreateTopic(ctx, 4, 3, nil, "drained"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	victim := tc.notController()
	id := victim.b.NodeID()
	bootstrap := tc.controller().addr
	out, err := runCLI(t, ctx, "cluster", "drain", strconv.Itoa(int(id)), "--brokers", bootstrap)
	if err != nil {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	img := tc.controller().b.Image()
	for _, topic := range img.Topics {
		for _, p := range topic.Partitions {
			if slices.Contains(p.Replicas, id) || p.Leader == id {
				t.Errorf("%s-%d still on broker %d: replicas %v leader %d", topic.Name, p.ID, id, p.Replicas, p.Leader)
			}
		}
	}
	if len(victim.b.Partitions()) != 0 {
		waitUntil(t, "the drained broker deleted its replicas", func() bool { return len(victim.b.Partitions()) == 0 })
	}
	victim.stop()
	out, err = runCLI(t, ctx, "cluster", "unregister", strconv.Itoa(int(id)), "--brokers", bootstrap)
	if err != nil {
		t.Fatalf("unregister: %v\n%s", err, out)
	}
	if _, ok := tc.controller().b.Image().Brokers[id]; ok {
		t.Fatalf("broker %d still registered", id)
	}
	out, err = runCLI(t, ctx, "cluster", "unregister", strconv.Itoa(int(id)), "--brokers", bootstrap)
	if err == nil || !strings.Contains(out+err.Error(), "BROKER_ID_NOT_REGISTERED") {
		t.Fatalf("second unregister: %v\n%s", err, out)
	}
}

// TestClusterTopicReplicationFactor: `sluice topic alter --replication-factor`
// adds copies of a topic's partitions (which catch up and join the ISR) and
// removes them again, keeping every record; `sluice cluster balance` then
// evens out the replicas per broker (its --dry-run changes nothing).
func TestClusterTopicReplicationFactor(t *testing.T) {
	tc := startCluster(t, 3, nil)
	ctx := ctxT(t)
	adm := kadm.NewClient(tc.client())
	if resp, err := adm.CreateTopic(ctx, 3, 1, nil, "rf"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := tc.client(kgo.DefaultProduceTopic("rf"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	acked := map[string]bool{}
	for i := range 300 {
		v := strconv.Itoa(i)
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		acked[v] = true
	}
	bootstrap := tc.nodes[0].addr
	check := func(rf int) {
		t.Helper()
		for _, p := range tc.controller().b.Image().Topics["rf"].Partitions {
			if len(p.Replicas) != rf || len(p.ISR) != rf || p.Reassigning() {
				t.Fatalf("partition %d after RF %d: replicas %v isr %v", p.ID, rf, p.Replicas, p.ISR)
			}
		}
	}
	if out, err := runCLI(t, ctx, "topic", "alter", "rf", "--replication-factor", "3", "--brokers", bootstrap); err != nil {
		t.Fatalf("alter to 3: %v\n%s", err, out)
	}
	check(3)
	leaders := 0.0
	for _, tb := range tc.nodes {
		leaders += metricValue(t, scrape(t, tb), "sluice_leader_partitions")
	}
	if leaders != 3 {
		t.Errorf("sluice_leader_partitions summed over the brokers = %v, want 3", leaders)
	}
	if out, err := runCLI(t, ctx, "topic", "alter", "rf", "--replication-factor", "2", "--brokers", bootstrap); err != nil {
		t.Fatalf("alter to 2: %v\n%s", err, out)
	}
	check(2)
	before := tc.controller().b.Image().Topics["rf"]
	out, err := runCLI(t, ctx, "cluster", "balance", "--dry-run", "--sample", "0", "--brokers", bootstrap)
	if err != nil {
		t.Fatalf("balance --dry-run: %v\n%s", err, out)
	}
	if after := tc.controller().b.Image().Topics["rf"]; after != before {
		t.Errorf("balance --dry-run changed the topic")
	}
	// Dropping copies need not leave the brokers even; balance makes them so.
	out, err = runCLI(t, ctx, "cluster", "balance", "--sample", "1s", "--brokers", bootstrap)
	if err != nil {
		t.Fatalf("balance: %v\n%s", err, out)
	}
	t.Logf("balance:\n%s", out)
	check(2)
	per := map[int32]int{}
	for _, p := range tc.controller().b.Image().Topics["rf"].Partitions {
		for _, r := range p.Replicas {
			per[r]++
		}
	}
	if per[1] != 2 || per[2] != 2 || per[3] != 2 {
		t.Errorf("replicas per broker after balance: %v, want 2 each", per)
	}
	cons := tc.client(kgo.ConsumeTopics("rf"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	readsAckedOnce(t, ctx, cons, acked)
}

// TestClusterBalanceBytes: replica counts even, broker 1 holding the two
// heavy partitions: `sluice cluster balance` swaps one of them with a light
// partition of another broker (counts kept), so that no broker holds both.
func TestClusterBalanceBytes(t *testing.T) {
	tc := startCluster(t, 3, nil)
	ctx := ctxT(t)
	cl := tc.client()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "w", -1, -1
	for p, b := range []int32{1, 1, 2, 2, 3, 3} {
		a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		a.Partition, a.Replicas = int32(p), []int32{b}
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create: %v %+v", err, resp)
	}
	prod := tc.client(kgo.DefaultProduceTopic("w"), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	v := make([]byte, 32<<10)
	for i := range v {
		v[i] = byte(i * 7)
	}
	for p := range int32(6) {
		n := 4
		if p < 2 {
			n = 128 // 4 MiB in each of broker 1's partitions
		}
		for range n {
			if err := prod.ProduceSync(ctx, &kgo.Record{Partition: p, Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := runCLI(t, ctx, "cluster", "balance", "--sample", "0", "--brokers", tc.nodes[0].addr)
	if err != nil {
		t.Fatalf("balance: %v\n%s", err, out)
	}
	t.Logf("balance:\n%s", out)
	parts := tc.controller().b.Image().Topics["w"].Partitions
	per := map[int32]int{}
	for _, p := range parts {
		for _, r := range p.Replicas {
			per[r]++
		}
	}
	if per[1] != 2 || per[2] != 2 || per[3] != 2 {
		t.Errorf("replicas per broker after balance: %v, want 2 each (counts kept)", per)
	}
	if parts[0].Replicas[0] == parts[1].Replicas[0] {
		t.Errorf("both heavy partitions still on broker %d: %v, %v", parts[0].Replicas[0], parts[0].Replicas, parts[1].Replicas)
	}
}

// TestClusterCordon: `sluice cluster drain` cordons its broker
// (cordoned.log.dirs=*, KIP-1066, set through a broker that forwards it to
// the controller) before moving its replicas off, so that afterwards no new
// topic or partition and no balance puts a replica on it, and topics that
// need it fail saying why; `sluice cluster info` shows it cordoned.
// `sluice cluster undrain` lifts the cordon: new topics use the broker
// again and balance moves replicas back onto it.
func TestClusterCordon(t *testing.T) {
	tc := startCluster(t, 3, nil)
	ctx := ctxT(t)
	adm := kadm.NewClient(tc.client())
	if resp, err := adm.CreateTopic(ctx, 3, 2, nil, "existing"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	// Not the controller: the cordon goes to it and is forwarded.
	victim := tc.notController()
	id := victim.b.NodeID()
	bootstrap := tc.controller().addr
	out, err := runCLI(t, ctx, "cluster", "drain", strconv.Itoa(int(id)), "--brokers", bootstrap)
	if err != nil {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	if !strings.Contains(out, "cordoned") {
		t.Errorf("drain did not say it cordoned the broker:\n%s", out)
	}
	for _, tb := range tc.nodes {
		if got := tb.b.Image().PerBrokerConfigs[id]["cordoned.log.dirs"]; got != "*" {
			t.Fatalf("node %d: broker %d's cordoned.log.dirs = %q, want *", tb.b.NodeID(), id, got)
		}
	}
	rcs, err := adm.DescribeBrokerConfigs(ctx, id)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("describe broker %d: %v %+v", id, err, rcs)
	}
	for _, c := range rcs[0].Configs {
		if c.Key == "cordoned.log.dirs" && (c.MaybeValue() != "*" || c.Source != kmsg.ConfigSourceDynamicBrokerConfig) {
			t.Errorf("broker %d describes cordoned.log.dirs=%q from %v, want * from DYNAMIC_BROKER_CONFIG", id, c.MaybeValue(), c.Source)
		}
	}

	onVictim := func(topic string) []int32 {
		t.Helper()
		var on []int32
		for _, p := range tc.controller().b.Image().Topics[topic].Partitions {
			if slices.Contains(p.Replicas, id) {
				on = append(on, p.ID)
			}
		}
		return on
	}
	// New topics and partitions, from a client bootstrapped on the drained
	// broker (kgo sends them to the controller).
	vadm := kadm.NewClient(victim.client())
	if resp, err := vadm.CreateTopic(ctx, 6, 2, nil, "new"); err != nil || resp.Err != nil {
		t.Fatalf("create with broker %d cordoned: %v %v", id, err, resp.Err)
	}
	if on := onVictim("new"); len(on) != 0 {
		t.Errorf("partitions %v of a new topic on cordoned broker %d", on, id)
	}
	if res, err := vadm.CreatePartitions(ctx, 6, "existing"); err != nil || res.Error() != nil {
		t.Fatalf("create partitions: %v %v", err, res.Error())
	}
	if on := onVictim("existing"); len(on) != 0 {
		t.Errorf("partitions %v of existing on drained and cordoned broker %d", on, id)
	}
	resp, err := vadm.CreateTopic(ctx, 1, 3, nil, "rf3")
	if err == nil {
		err = resp.Err
	}
	if !errors.Is(err, kerr.InvalidReplicationFactor) || !strings.Contains(resp.ErrMessage, "cordoned") {
		t.Errorf("rf 3 with one of 3 brokers cordoned: %v (%q), want INVALID_REPLICATION_FACTOR saying it is cordoned", err, resp.ErrMessage)
	}

	// Balance plans nothing onto it (the drained broker is empty: it
	// would get a third of the replicas otherwise).
	plan := func() cluster.Plan {
		t.Helper()
		out, err := runCLI(t, ctx, "cluster", "balance", "--dry-run", "--sample", "0", "-o", "json", "--brokers", bootstrap)
		if err != nil {
			t.Fatalf("balance --dry-run: %v\n%s", err, out)
		}
		var p cluster.Plan
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("balance --dry-run -o json: %v\n%s", err, out)
		}
		return p
	}
	for _, e := range plan().Partitions {
		if slices.Contains(e.Replicas, id) {
			t.Errorf("balance plans %s-%d onto cordoned broker %d: %v -> %v", e.Topic, e.Partition, id, e.Current, e.Replicas)
		}
	}
	out, err = runCLI(t, ctx, "cluster", "info", "-o", "json", "--brokers", bootstrap)
	if err != nil {
		t.Fatalf("info: %v\n%s", err, out)
	}
	var info cluster.Info
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info -o json: %v\n%s", err, out)
	}
	for _, b := range info.Brokers {
		if b.Cordoned != (b.ID == id) || b.CordonedError != "" {
			t.Errorf("info: broker %d cordoned %v (%s), want %v", b.ID, b.Cordoned, b.CordonedError, b.ID == id)
		}
	}

	out, err = runCLI(t, ctx, "cluster", "undrain", strconv.Itoa(int(id)), "--brokers", bootstrap)
	if err != nil {
		t.Fatalf("undrain: %v\n%s", err, out)
	}
	if !strings.Contains(out, "uncordoned") || !strings.Contains(out, "sluice cluster balance") {
		t.Errorf("undrain said:\n%s", out)
	}
	if resp, err := vadm.CreateTopic(ctx, 6, 2, nil, "after"); err != nil || resp.Err != nil {
		t.Fatalf("create after undrain: %v %v", err, resp.Err)
	}
	if on := onVictim("after"); len(on) == 0 {
		t.Errorf("no partition of a topic created after undrain on broker %d", id)
	}
	onto := 0
	for _, e := range plan().Partitions {
		if slices.Contains(e.Replicas, id) && !slices.Contains(e.Current, id) {
			onto++
		}
	}
	if onto == 0 {
		t.Errorf("after undrain, balance moves nothing back onto broker %d", id)
	}
}
