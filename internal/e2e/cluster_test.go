package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/controller"
	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/httpapi"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/netmux"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/server/api"
)

// testCluster is n brokers in this process, each a voter of the metadata
// quorum, on 127.0.0.1 with real sockets.
type testCluster struct {
	t      *testing.T
	nodes  []*testBroker
	cfgs   map[string]string
	voters []metadata.Voter
	dirs   []string
	addrs  []string // Kafka listeners
}

// clusterNodeConfigs are test-friendly timings: heartbeats often, and a
// session long enough for a loaded machine running the race detector.
var clusterNodeConfigs = map[string]string{
	"broker.heartbeat.interval.ms": "100",
	"broker.session.timeout.ms":    "3000",
}

func startCluster(t *testing.T, n int, static map[string]string) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, nodes: make([]*testBroker, n), cfgs: map[string]string{}}
	for k, v := range clusterNodeConfigs {
		tc.cfgs[k] = v
	}
	for k, v := range static {
		tc.cfgs[k] = v
	}
	type slot struct {
		kafka, ctrl net.Listener
	}
	slots := make([]slot, n)
	base := t.TempDir()
	for i := range slots {
		var err error
		if slots[i].kafka, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if slots[i].ctrl, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		tc.voters = append(tc.voters, metadata.Voter{ID: int32(i + 1), Addr: slots[i].ctrl.Addr().String()})
		tc.dirs = append(tc.dirs, filepath.Join(base, fmt.Sprintf("node-%d", i+1)))
		tc.addrs = append(tc.addrs, slots[i].kafka.Addr().String())
	}
	errs := make(chan error, n)
	for i := range slots {
		go func() {
			tb, err := tc.open(i, slots[i].kafka, slots[i].ctrl)
			tc.nodes[i] = tb
			errs <- err
		}()
	}
	var failed []error
	for range slots {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	t.Cleanup(func() {
		for _, tb := range tc.nodes {
			if tb != nil {
				tb.stop()
			}
		}
	})
	if len(failed) > 0 {
		t.Fatal(errors.Join(failed...))
	}
	return tc
}

// open opens node i on its listeners.
func (tc *testCluster) open(i int, ln, ctrl net.Listener) (*testBroker, error) {
	t := tc.t
	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	m := httpapi.NewMetricsWithOptions(httpapi.MetricsOptions{PartitionLevel: true})
	rack := ""
	if i < len(rackOf) {
		rack = rackOf[i]
	}
	b, err := broker.Open(broker.Config{NodeID: int32(i + 1), DataDir: tc.dirs[i], Host: host, Port: int32(port), Rack: rack,
		Static: tc.cfgs, Logger: logger(t).With("node", i+1), RetentionCheckInterval: time.Hour, OnFsync: m.Fsync,
		Voters: tc.voters, ControllerMux: netmux.New(ctrl, nil)})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("node %d: %w", i+1, err)
	}
	m.SetBroker(b)
	tb := &testBroker{t: t, metrics: m, dir: tc.dirs[i], addr: ln.Addr().String(), b: b, done: make(chan struct{})}
	h := api.New(b, logger(t))
	h.SetObserver(m)
	b.ServeAdmin(h, api.ForwardedKeys())
	tb.srv = server.New(h, logger(t))
	tb.srv.SetObserver(m)
	go func() {
		defer close(tb.done)
		tb.srv.Serve(ln)
	}()
	return tb, nil
}

// restart stops node i (cleanly) and opens it again at the same addresses
// on the same data.
func (tc *testCluster) restart(i int) {
	t := tc.t
	t.Helper()
	tc.nodes[i].stop()
	var ln, ctrl net.Listener
	var err error
	for range 100 { // the ports were just released
		if ln == nil {
			ln, _ = net.Listen("tcp", tc.addrs[i])
		}
		if ctrl == nil {
			ctrl, err = net.Listen("tcp", tc.voters[i].Addr)
		}
		if ln != nil && ctrl != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ln == nil || ctrl == nil {
		t.Fatalf("listen again for node %d: %v", i+1, err)
	}
	tb, err := tc.open(i, ln, ctrl)
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[i] = tb
}

// bootstrap is every node's address.
func (tc *testCluster) bootstrap() []string {
	var out []string
	for _, tb := range tc.nodes {
		out = append(out, tb.addr)
	}
	return out
}

func (tc *testCluster) client(opts ...kgo.Opt) *kgo.Client {
	tc.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(tc.bootstrap()...), kgo.MetadataMinAge(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(cl.Close)
	return cl
}

// controller is the node that is the active controller now.
func (tc *testCluster) controller() *testBroker {
	for _, tb := range tc.nodes {
		if tb.b.Meta().IsController() {
			return tb
		}
	}
	return nil
}

// notController is a node that is not the active controller.
func (tc *testCluster) notController() *testBroker {
	for _, tb := range tc.nodes {
		if !tb.b.Meta().IsController() {
			return tb
		}
	}
	return nil
}

// TestClusterCreatesTopicsAnywhere: an admin request sent to a broker that
// is not the controller is forwarded to it; replicas are placed over every
// broker; clients find each partition's leader and produce and consume
// through three brokers.
func TestClusterCreatesTopicsAnywhere(t *testing.T) {
	tc := startCluster(t, 3, nil)
	other := tc.notController()
	if other == nil {
		t.Fatal("no node is not the controller")
	}
	adm := kadm.NewClient(other.client())
	ctx := ctxT(t)
	resp, err := adm.CreateTopic(ctx, 6, 1, nil, "spread")
	if err != nil || resp.Err != nil {
		t.Fatalf("create through a non-controller: %v %v", err, resp.Err)
	}
	// Every node's metadata has it, with leaders on every broker.
	for _, tb := range tc.nodes {
		waitUntil(t, "topic on every node", func() bool { _, ok := tb.b.Image().Topics["spread"]; return ok })
	}
	leaders := map[int32]int{}
	for _, p := range tc.nodes[0].b.Image().Topics["spread"].Partitions {
		leaders[p.Leader]++
	}
	if len(leaders) != 3 {
		t.Fatalf("6 partitions led by %v, want all 3 brokers", leaders)
	}
	// RF 3: three distinct replicas each.
	resp, err = adm.CreateTopic(ctx, 3, 3, nil, "rf3")
	if err != nil || resp.Err != nil {
		t.Fatalf("create rf 3: %v %v", err, resp.Err)
	}
	waitUntil(t, "rf3 on node 1", func() bool { _, ok := tc.nodes[0].b.Image().Topics["rf3"]; return ok })
	for _, p := range tc.nodes[0].b.Image().Topics["rf3"].Partitions {
		if len(p.Replicas) != 3 || len(p.ISR) != 3 {
			t.Fatalf("rf3 partition %d: replicas %v isr %v", p.ID, p.Replicas, p.ISR)
		}
	}
	if resp, err := adm.CreateTopic(ctx, 1, 4, nil, "rf4"); err == nil && resp.Err == nil {
		t.Fatal("rf 4 on 3 brokers was created")
	}

	cl := tc.client(kgo.DefaultProduceTopic("spread"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	const n = 600
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	cons := tc.client(kgo.ConsumeTopics("spread"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	seen := map[string]bool{}
	for len(seen) < n {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", len(seen), n, err)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterKeepsReplicasItStopsLeading: a broker whose leaderships move
// away (here by its controlled shutdown) keeps its replicas' data. (Before,
// reconciling treated "not the leader" as "gone" and deleted them.)
func TestClusterKeepsReplicasItStopsLeading(t *testing.T) {
	tc := startCluster(t, 3, nil)
	adm := kadm.NewClient(tc.client())
	ctx := ctxT(t)
	if resp, err := adm.CreateTopic(ctx, 3, 3, nil, "kept"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	victim := tc.notController()
	waitUntil(t, "topic on the victim", func() bool { _, ok := victim.b.Image().Topics["kept"]; return ok })
	var led []string
	for _, p := range victim.b.Image().Topics["kept"].Partitions {
		if p.Leader == victim.b.NodeID() {
			led = append(led, fmt.Sprintf("kept-%d", p.ID))
		}
	}
	if len(led) == 0 {
		t.Fatal("the victim leads no partition of kept")
	}
	waitUntil(t, "the victim's partitions open", func() bool { return len(victim.b.Partitions()) == 3 })
	cl := tc.client(kgo.DefaultProduceTopic("kept"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	for i := range 30 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	// The controller moves the victim's leaderships away (what its
	// controlled shutdown asks for), while the victim keeps running.
	hb := controller.Heartbeat{NodeID: victim.b.NodeID(), Epoch: victim.b.BrokerEpoch(),
		MetadataIndex: victim.b.Image().Index, WantShutDown: true}
	if _, err := tc.controller().b.Controller().Heartbeat(ctx, hb); err != nil {
		t.Fatalf("controlled shutdown of %d: %v", hb.NodeID, err)
	}
	waitUntil(t, "the victim's leaderships moved", func() bool {
		for _, p := range victim.b.Image().Topics["kept"].Partitions {
			if p.Leader == victim.b.NodeID() {
				return false
			}
		}
		return true
	})
	if err := victim.b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	for _, d := range led {
		fi, err := os.Stat(filepath.Join(victim.dir, d, "00000000000000000000.log"))
		if err != nil || fi.Size() == 0 {
			t.Errorf("the stopped broker's replica %s lost its data: %v", d, err)
		}
	}
}

// TestClusterReplicates: an RF 3 topic's records reach every replica,
// byte for byte; acks=all is answered once the ISR has them; when the
// leader stops, another replica leads and every acknowledged record is
// still there.
func TestClusterReplicates(t *testing.T) {
	tc := startCluster(t, 3, map[string]string{"min.insync.replicas": "2"})
	adm := kadm.NewClient(tc.client())
	ctx := ctxT(t)
	if resp, err := adm.CreateTopic(ctx, 2, 3, nil, "rep"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := tc.client(kgo.DefaultProduceTopic("rep"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	const n = 400
	acked := map[string]bool{}
	for i := range n {
		v := strconv.Itoa(i)
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		acked[v] = true
	}
	// Every replica ends where the leader ends.
	for p := range int32(2) {
		waitUntil(t, fmt.Sprintf("rep-%d replicated to every node", p), func() bool {
			var ends []int64
			for _, tb := range tc.nodes {
				parts := tb.b.Partitions()
				pp, ok := parts[broker.TopicPartition{Topic: "rep", Partition: p}]
				if !ok {
					return false
				}
				ends = append(ends, pp.Log().EndOffset())
			}
			return ends[0] > 0 && ends[0] == ends[1] && ends[1] == ends[2]
		})
	}
	// Stop the leader of partition 0; the others carry on.
	img := tc.nodes[0].b.Image()
	leader := img.Topics["rep"].Partitions[0].Leader
	tc.nodes[leader-1].stop()
	for i := n; i < n+200; i++ {
		v := strconv.Itoa(i)
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %d after the leader stopped: %v", i, err)
		}
		acked[v] = true
	}
	var alive *testBroker
	for _, tb := range tc.nodes {
		if tb.srv != nil {
			alive = tb
		}
	}
	// The stopped broker left the ISRs (its controlled shutdown): the
	// leaders report their partitions under-replicated.
	waitUntil(t, "under-replicated partitions reported", func() bool {
		n := 0
		for _, tb := range tc.nodes {
			if tb.srv != nil {
				n += tb.b.ReplicationStats().UnderReplicated
			}
		}
		return n == 2
	})
	cons := alive.client(kgo.ConsumeTopics("rep"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	readsAckedOnce(t, ctx, cons, acked)
}

// TestClusterGroupsAndTransactions: consumer groups and transactions on a
// cluster, whose internal topics have three replicas and whose
// coordinators are the leaders of their partitions, on several brokers;
// then the coordinators move when a broker stops.
func TestClusterGroupsAndTransactions(t *testing.T) {
	tc := startCluster(t, 3, map[string]string{"min.insync.replicas": "2", "group.initial.rebalance.delay.ms": "0"})
	adm := kadm.NewClient(tc.client())
	ctx := ctxT(t)
	if resp, err := adm.CreateTopic(ctx, 3, 3, nil, "gt"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	txnRound := func(id string, from, n int, commit bool) {
		t.Helper()
		p := tc.client(kgo.TransactionalID(id), kgo.DefaultProduceTopic("gt"), kgo.TransactionTimeout(10*time.Second))
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := from; i < from+n; i++ {
			p.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, nil)
		}
		if err := p.Flush(ctx); err != nil {
			t.Fatalf("flush: %v", err)
		}
		if err := p.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction (commit %v): %v", commit, err)
		}
		p.Close()
	}
	txnRound("tx-a", 0, 50, true)
	txnRound("tx-b", 1000, 50, false)
	txnRound("tx-c", 50, 50, true)

	consume := func(want int) map[string]bool {
		t.Helper()
		cons := tc.client(kgo.ConsumeTopics("gt"), kgo.ConsumerGroup("g1"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond), kgo.DisableAutoCommit())
		seen := map[string]bool{}
		for len(seen) < want {
			fs := cons.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				t.Fatalf("consumed %d of %d: %v", len(seen), want, err)
			}
			fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
		}
		if err := cons.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
		cons.Close()
		return seen
	}
	seen := consume(100)
	for v := range seen {
		if n, _ := strconv.Atoi(v); n >= 1000 {
			t.Fatalf("read_committed consumer read aborted record %s", v)
		}
	}
	// Committed offsets are where the group left off.
	offs, err := adm.FetchOffsets(ctx, "g1")
	if err != nil || offs.Error() != nil {
		t.Fatalf("fetch offsets: %v %v", err, offs.Error())
	}
	if len(offs) == 0 {
		t.Fatal("the group committed no offsets")
	}
	// Stop the coordinator of g1 (controlled shutdown): its partition of
	// __consumer_offsets moves; the offsets are still there.
	fc := adm.FindGroupCoordinators(ctx, "g1")["g1"]
	if fc.Err != nil {
		t.Fatal(fc.Err)
	}
	coord := fc.NodeID
	tc.nodes[coord-1].stop()
	var alive *testBroker
	for _, tb := range tc.nodes {
		if tb.srv != nil {
			alive = tb
		}
	}
	// A client that starts while the stopped broker is still registered
	// unfenced learns it from Metadata and may send its FindCoordinator
	// there for as long as it keeps that metadata (kgo keeps dialing it):
	// start it once the broker is fenced, as the controller does as soon as
	// its connection closes. (This failed now and then, under load.)
	waitUntil(t, "the stopped coordinator fenced", func() bool { return alive.b.Image().Brokers[coord].Fenced })
	adm2 := kadm.NewClient(alive.client())
	var last string
	defer func() {
		if t.Failed() {
			ot := alive.b.Image().Topics[group.Topic]
			p := ot.Partitions[group.PartitionFor("g1", len(ot.Partitions))]
			t.Logf("last FetchOffsets of g1: %s; coordinator was %d; its partition %d: replicas %v isr %v leader %d; brokers %+v",
				last, coord, p.ID, p.Replicas, p.ISR, p.Leader, alive.b.Image().Brokers)
		}
	}()
	waitUntil(t, "g1's offsets at the new coordinator", func() bool {
		o, err := adm2.FetchOffsets(ctx, "g1")
		last = fmt.Sprintf("err %v, group err %v, %d topics (want %d)", err, o.Error(), len(o), len(offs))
		return err == nil && o.Error() == nil && len(o) == len(offs)
	})
	txnRound("tx-a", 100, 10, true) // the transaction coordinator of tx-a may have moved too
}

// TestClusterRestartRejoinsAndLeadsAgain: a broker restarted after its
// controlled shutdown catches up, rejoins the ISR of its partitions
// (AlterPartition expansion), and an ElectLeaders (preferred) gives it its
// leaderships back; DescribeQuorum shows the three voters.
func TestClusterRestartRejoinsAndLeadsAgain(t *testing.T) {
	tc := startCluster(t, 3, map[string]string{"min.insync.replicas": "2", "auto.leader.rebalance.enable": "false"})
	adm := kadm.NewClient(tc.client())
	ctx := ctxT(t)
	if resp, err := adm.CreateTopic(ctx, 3, 3, nil, "back"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	victim := 1 // node 2
	tc.restart(victim)
	cl := tc.client(kgo.DefaultProduceTopic("back"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	for i := range 60 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	id := int32(victim + 1)
	waitUntil(t, "the restarted broker back in every ISR", func() bool {
		for _, p := range tc.nodes[0].b.Image().Topics["back"].Partitions {
			if !slices.Contains(p.ISR, id) {
				return false
			}
		}
		return true
	})
	if _, err := adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, nil); err != nil {
		t.Fatalf("elect leaders: %v", err)
	}
	waitUntil(t, "preferred leaders", func() bool {
		for _, p := range tc.nodes[0].b.Image().Topics["back"].Partitions {
			if p.Leader != p.Replicas[0] {
				return false
			}
		}
		return true
	})
	req := kmsg.NewPtrDescribeQuorumRequest()
	rt := kmsg.NewDescribeQuorumRequestTopic()
	rt.Topic = "__cluster_metadata"
	rt.Partitions = []kmsg.DescribeQuorumRequestTopicPartition{{Partition: 0}}
	req.Topics = []kmsg.DescribeQuorumRequestTopic{rt}
	resp, err := req.RequestWith(ctx, tc.client())
	if err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("describe quorum: %v %+v", err, resp)
	}
	qp := resp.Topics[0].Partitions[0]
	if qp.ErrorCode != 0 || len(qp.CurrentVoters) != 3 || qp.LeaderID < 1 || qp.HighWatermark <= 0 {
		t.Fatalf("quorum: %+v", qp)
	}
}

// TestClusterDeleteRecordsReachesFollowers: records deleted with
// DeleteRecords at the leader are gone from its followers too, so that
// they do not come back when a follower leads.
func TestClusterDeleteRecordsReachesFollowers(t *testing.T) {
	tc := startCluster(t, 3, map[string]string{"min.insync.replicas": "2"})
	adm := kadm.NewClient(tc.client())
	ctx := ctxT(t)
	if resp, err := adm.CreateTopic(ctx, 1, 3, map[string]*string{"segment.bytes": kmsg.StringPtr("1024")}, "del"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := tc.client(kgo.DefaultProduceTopic("del"))
	for i := range 100 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprintf("record-%03d", i))}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "del", Partition: 0, At: 60})
	if _, err := adm.DeleteRecords(ctx, offs); err != nil {
		t.Fatalf("delete records: %v", err)
	}
	// Another record, so the followers fetch and hear of the new start.
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, tb := range tc.nodes {
		waitUntil(t, fmt.Sprintf("node %d's log start at 60", tb.b.NodeID()), func() bool {
			p, ok := tb.b.Partitions()[broker.TopicPartition{Topic: "del", Partition: 0}]
			return ok && p.Log().StartOffset() == 60
		})
	}
}

// TestClusterFetchFromClosestReplica: with the rack-aware replica selector
// a consumer in rack b is sent to the in-sync replica in rack b (KIP-392)
// and reads every record from it.
func TestClusterFetchFromClosestReplica(t *testing.T) {
	tc := startClusterRacks(t, []string{"a", "b", "c"}, map[string]string{"replica.selector.class": "org.apache.kafka.common.replica.RackAwareReplicaSelector"})
	adm := kadm.NewClient(tc.client())
	ctx := ctxT(t)
	if resp, err := adm.CreateTopic(ctx, 1, 3, nil, "near"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := tc.client(kgo.DefaultProduceTopic("near"))
	for i := range 50 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	leader := tc.nodes[0].b.Image().Topics["near"].Partitions[0].Leader
	// A consumer in a rack other than the leader's.
	racks := []string{"a", "b", "c"}
	rack := racks[leader%3] // node ids are 1..3 in racks a..c: this is another node's rack
	follower := tc.nodes[leader%3]
	before := followerFetches(follower)
	cons := tc.client(kgo.ConsumeTopics("near"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Rack(rack), kgo.FetchMaxWait(200*time.Millisecond))
	n := 0
	for n < 50 {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of 50: %v", n, err)
		}
		n += fs.NumRecords()
	}
	if followerFetches(follower) == before {
		t.Fatalf("the consumer in rack %s never fetched from the follower in its rack (node %d)", rack, follower.b.NodeID())
	}
}

// followerFetches counts the records a node served consumers of "near".
func followerFetches(tb *testBroker) float64 {
	text := scrape(tb.t, tb)
	if !strings.Contains(text, `sluice_topic_records_out_total{topic="near"}`) {
		return 0
	}
	return metricValue(tb.t, text, `sluice_topic_records_out_total{topic="near"}`)
}

// startClusterRacks is startCluster with node i in racks[i].
func startClusterRacks(t *testing.T, racks []string, static map[string]string) *testCluster {
	t.Helper()
	rackOf = racks
	t.Cleanup(func() { rackOf = nil })
	return startCluster(t, len(racks), static)
}

// rackOf, when set, gives startCluster's nodes their racks.
var rackOf []string

// TestClusterFiveNodes: five brokers and five voters; two of them stop
// (the active controller among them) and the other three go on: a new
// controller, leaders moved, every acknowledged record readable. (With
// min.insync.replicas 1: a partition whose two other replicas stopped
// takes acks=all writes on its last one.)
func TestClusterFiveNodes(t *testing.T) {
	tc := startCluster(t, 5, map[string]string{"min.insync.replicas": "1"})
	adm := kadm.NewClient(tc.client())
	ctx := ctxT(t)
	if resp, err := adm.CreateTopic(ctx, 5, 3, nil, "five"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := tc.client(kgo.DefaultProduceTopic("five"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	produce := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
		}
	}
	produce(0, 100)
	ctrl := tc.controller()
	stopped := map[int32]bool{ctrl.b.NodeID(): true}
	ctrl.stop()
	for _, tb := range tc.nodes {
		if !stopped[tb.b.NodeID()] {
			stopped[tb.b.NodeID()] = true
			tb.stop()
			break
		}
	}
	produce(100, 200)
	var alive *testBroker
	for _, tb := range tc.nodes {
		if !stopped[tb.b.NodeID()] {
			alive = tb
		}
	}
	waitUntil(t, "a new controller", func() bool {
		id := alive.b.Image().ControllerID
		return id > 0 && !stopped[id]
	})
	cons := alive.client(kgo.ConsumeTopics("five"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	seen := map[string]bool{}
	for len(seen) < 200 {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of 200: %v", len(seen), err)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
}
