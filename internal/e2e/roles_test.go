package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/netmux"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/server/api"
)

// rolesCluster is a cluster with dedicated controllers
// (process.roles=controller, ids 1..nCtrl, no Kafka listener) and
// broker-only nodes (process.roles=broker, the ids after them), in this
// process on 127.0.0.1.
type rolesCluster struct {
	t      *testing.T
	voters []metadata.Voter
	nCtrl  int
	dirs   []string
	addrs  []string // Kafka listeners (brokers), controller listeners (controllers)
	nodes  []*roleNode
}

// roleNode is one node of a rolesCluster; srv is nil for a controller.
type roleNode struct {
	id   int32
	b    *broker.Broker
	srv  *server.Server
	done chan struct{}
}

func startRolesCluster(t *testing.T, nCtrl, nBrokers int, static map[string]string) *rolesCluster {
	t.Helper()
	rc := &rolesCluster{t: t, nCtrl: nCtrl}
	base := t.TempDir()
	lns := make([]net.Listener, nCtrl+nBrokers)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		rc.addrs = append(rc.addrs, ln.Addr().String())
		rc.dirs = append(rc.dirs, filepath.Join(base, fmt.Sprintf("node-%d", i+1)))
		if i < nCtrl {
			rc.voters = append(rc.voters, metadata.Voter{ID: int32(i + 1), Addr: ln.Addr().String()})
		}
	}
	rc.nodes = make([]*roleNode, len(lns))
	errs := make(chan error, len(lns))
	for i, ln := range lns {
		go func() {
			n, err := rc.open(i, ln, static)
			rc.nodes[i] = n
			errs <- err
		}()
	}
	var failed []error
	for range lns {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	t.Cleanup(func() {
		for _, n := range rc.nodes {
			if n != nil {
				n.stop(t)
			}
		}
	})
	if len(failed) > 0 {
		t.Fatal(errors.Join(failed...))
	}
	return rc
}

// open opens node i on ln: its controller listener or its Kafka listener.
func (rc *rolesCluster) open(i int, ln net.Listener, static map[string]string) (*roleNode, error) {
	t := rc.t
	cfgs := maps.Clone(clusterNodeConfigs)
	maps.Copy(cfgs, static)
	cfg := broker.Config{NodeID: int32(i + 1), DataDir: rc.dirs[i], Static: cfgs, Logger: logger(t).With("node", i+1),
		RetentionCheckInterval: time.Hour, Voters: rc.voters}
	mux := netmux.New(ln, nil)
	if i < rc.nCtrl {
		cfgs["process.roles"] = "controller"
		cfg.ControllerMux = mux
	} else {
		cfgs["process.roles"] = "broker"
		host, portStr, _ := net.SplitHostPort(ln.Addr().String())
		port, _ := strconv.Atoi(portStr)
		cfg.Host, cfg.Port, cfg.BrokerMux = host, int32(port), mux
	}
	b, err := broker.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", i+1, err)
	}
	n := &roleNode{id: int32(i + 1), b: b, done: make(chan struct{})}
	h := api.New(b, logger(t))
	b.ServeAdmin(h, api.ForwardedKeys())
	if i < rc.nCtrl {
		close(n.done)
		return n, nil
	}
	n.srv = server.New(h, logger(t))
	go func() {
		defer close(n.done)
		n.srv.Serve(mux.Kafka())
	}()
	return n, nil
}

func (n *roleNode) stop(t *testing.T) {
	if n.b == nil {
		return
	}
	if n.srv != nil {
		n.srv.Close()
	}
	<-n.done
	if err := n.b.Close(); err != nil {
		t.Errorf("close node %d: %v", n.id, err)
	}
	n.b = nil
}

// restart stops node i and opens it again on its address and data.
func (rc *rolesCluster) restart(i int, static map[string]string) {
	rc.t.Helper()
	rc.nodes[i].stop(rc.t)
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", rc.addrs[i]); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		rc.t.Fatalf("listen again for node %d: %v", i+1, err)
	}
	if rc.nodes[i], err = rc.open(i, ln, static); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rolesCluster) brokerAddrs() []string {
	var out []string
	for i, n := range rc.nodes[rc.nCtrl:] {
		if n.b != nil {
			out = append(out, rc.addrs[rc.nCtrl+i])
		}
	}
	return out
}

func (rc *rolesCluster) client(opts ...kgo.Opt) *kgo.Client {
	rc.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(rc.brokerAddrs()...), kgo.MetadataMinAge(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.t.Cleanup(cl.Close)
	return cl
}

// activeController is the index of the controller node that is active.
func (rc *rolesCluster) activeController() int {
	for {
		for i, n := range rc.nodes[:rc.nCtrl] {
			if n.b != nil && n.b.Meta().IsController() {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterDedicatedRoles: three controller-only nodes and three
// broker-only nodes (process.roles, as Kafka's production layout). The
// brokers follow the metadata quorum without voting; admin requests sent to
// a broker run on the active controller's listener; replicas and
// leaderships go to brokers only; clients are never told of a controller
// they cannot reach; and produce carries on while the active controller
// and then a partition leader stop, with nothing acknowledged lost; a
// broker restarted on its data rejoins the ISR.
func TestClusterDedicatedRoles(t *testing.T) {
	static := map[string]string{"min.insync.replicas": "2"}
	rc := startRolesCluster(t, 3, 3, static)
	ctx := ctxT(t)
	adm := kadm.NewClient(rc.client())
	if resp, err := adm.CreateTopic(ctx, 3, 3, nil, "roles"); err != nil || resp.Err != nil {
		t.Fatalf("create through a broker: %v %v", err, resp.Err)
	}
	brokerIDs := []int32{4, 5, 6}
	for _, n := range rc.nodes {
		waitUntil(t, fmt.Sprintf("topic on node %d", n.id), func() bool { _, ok := n.b.Image().Topics["roles"]; return ok })
	}
	img := rc.nodes[3].b.Image()
	if ids := slices.Sorted(maps.Keys(img.Brokers)); !slices.Equal(ids, brokerIDs) {
		t.Fatalf("registered brokers %v, want %v (controllers must not register)", ids, brokerIDs)
	}
	for _, p := range img.Topics["roles"].Partitions {
		if r := slices.Sorted(slices.Values(p.Replicas)); !slices.Equal(r, brokerIDs) || !slices.Contains(brokerIDs, p.Leader) {
			t.Fatalf("partition %d: replicas %v leader %d, want brokers %v only", p.ID, p.Replicas, p.Leader, brokerIDs)
		}
	}
	st := rc.nodes[rc.activeController()].b.Meta().Status()
	if !slices.Equal(st.Observers, brokerIDs) || len(st.Voters) != 3 {
		t.Fatalf("quorum: voters %v observers %v, want voters 1-3 and observers %v", st.Voters, st.Observers, brokerIDs)
	}
	meta, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(brokerIDs, meta.Controller) {
		t.Fatalf("clients are told the controller is %d, not a broker they can reach", meta.Controller)
	}

	cl := rc.client(kgo.DefaultProduceTopic("roles"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	acked := map[string]bool{}
	produce := func(from, to int, when string) {
		t.Helper()
		for i := from; i < to; i++ {
			v := strconv.Itoa(i)
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatalf("produce %d %s: %v", i, when, err)
			}
			acked[v] = true
		}
	}
	produce(0, 300, "at first")

	// The active controller stops: another takes over; admin requests
	// and produce carry on.
	old := rc.activeController()
	rc.nodes[old].stop(t)
	produce(300, 400, "with the controller stopped")
	if resp, err := adm.CreateTopic(ctx, 1, 3, nil, "after-controller"); err != nil || resp.Err != nil {
		t.Fatalf("create after the controller stopped: %v %v", err, resp.Err)
	}
	if now := rc.activeController(); now == old {
		t.Fatal("BUG: the stopped controller is active")
	}

	// A partition leader stops: its partitions fail over.
	leader := rc.nodes[3].b.Image().Topics["roles"].Partitions[0].Leader
	rc.nodes[leader-1].stop(t)
	produce(400, 600, "with a leader stopped")

	// Both come back; the broker rejoins every ISR from its data.
	rc.restart(old, nil)
	rc.restart(int(leader-1), static)
	back := rc.nodes[leader-1].b
	waitUntil(t, "the restarted broker back in every ISR", func() bool {
		for _, p := range back.Image().Topics["roles"].Partitions {
			if !slices.Contains(p.ISR, leader) {
				return false
			}
		}
		return true
	})

	cons := rc.client(kgo.ConsumeTopics("roles"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	readsAckedOnce(t, ctx, cons, acked)
}

// TestClusterTopicDescribeWithBrokerDown: `sluice topic describe` works
// while a broker that is still registered (not yet fenced) does not answer:
// the sizes it would report are unknown, the rest is shown. (Before, one
// broker's DescribeLogDirs failure failed the whole command.)
func TestClusterTopicDescribeWithBrokerDown(t *testing.T) {
	tc := startCluster(t, 3, nil)
	ctx := ctxT(t)
	if resp, err := kadm.NewClient(tc.client()).CreateTopic(ctx, 3, 3, nil, "desc"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	for _, tb := range tc.nodes {
		waitUntil(t, "topic everywhere", func() bool { _, ok := tb.b.Image().Topics["desc"]; return ok })
	}
	// Node 3 stops answering clients but keeps its session with the
	// controller: every Metadata still lists it.
	down := tc.nodes[2]
	down.srv.Close()
	<-down.done
	defer func() {
		if err := down.b.Close(); err != nil {
			t.Errorf("close node 3: %v", err)
		}
		down.srv = nil
	}()
	out, err := runCLI(t, ctx, "topic", "describe", "desc", "--brokers", tc.nodes[0].addr)
	if err != nil {
		t.Fatalf("topic describe with node 3 down: %v\n%s", err, out)
	}
	if !strings.Contains(out, "PARTITION") {
		t.Fatalf("topic describe printed:\n%s", out)
	}
}

// readsAckedOnce consumes with cons until every acknowledged value (the
// keys of acked) is read, and checks that each is read exactly once.
func readsAckedOnce(t *testing.T, ctx context.Context, cons *kgo.Client, acked map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for len(seen) < len(acked) {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d acknowledged: %v", len(seen), len(acked), err)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
	}
	for v := range acked {
		if seen[v] != 1 {
			t.Errorf("acknowledged record %s read %d times", v, seen[v])
		}
	}
}
