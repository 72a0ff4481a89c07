package mirror

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// clusterNode is one `sluice serve` process of a test cluster.
type clusterNode struct {
	id   int
	addr string
	cmd  *exec.Cmd
	log  string
}

// serveCluster runs n `sluice serve` processes (bin) as one cluster, each
// a voter of the metadata quorum, until the test ends; each is stopped by
// its PID.
func serveCluster(t *testing.T, bin string, n int) []*clusterNode {
	t.Helper()
	dir := t.TempDir()
	nodes := make([]*clusterNode, n)
	ctrl := make([]string, n)
	var voters []string
	for i := range nodes {
		nodes[i] = &clusterNode{id: i + 1, addr: clitest.FreeAddr(t), log: filepath.Join(dir, fmt.Sprintf("node%d.log", i+1))}
		ctrl[i] = clitest.FreeAddr(t)
		voters = append(voters, fmt.Sprintf("%d@%s", i+1, ctrl[i]))
	}
	for i, nd := range nodes {
		logf, err := os.Create(nd.log)
		if err != nil {
			t.Fatal(err)
		}
		nd.cmd = exec.Command(bin, "serve", "--node-id", fmt.Sprint(nd.id), "--listen", nd.addr, "--controller-listen", ctrl[i],
			"--controller-quorum-voters", strings.Join(voters, ","), "--data-dir", filepath.Join(dir, fmt.Sprintf("node%d", nd.id)),
			"--http-listen", clitest.FreeAddr(t), "--schema-registry-listen", "", "--log-level", "warn",
			"-c", "broker.heartbeat.interval.ms=500", "-c", "broker.session.timeout.ms=6000")
		nd.cmd.Stdout, nd.cmd.Stderr = logf, logf
		if err := nd.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if nd.cmd.ProcessState == nil {
				nd.cmd.Process.Signal(os.Interrupt)
				done := make(chan struct{})
				go func() { nd.cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					nd.cmd.Process.Kill()
					<-done
				}
			}
			logf.Close()
		})
	}
	return nodes
}

// connectAll is connect with several seed brokers.
func connectAll(t testing.TB, seeds []string) *cluster {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &cluster{addr: seeds[0], cl: cl, adm: kadm.NewClient(cl)}
}

// kill SIGKILLs the node, by PID.
func (nd *clusterNode) kill() {
	nd.cmd.Process.Kill()
	nd.cmd.Wait()
}

// TestMirrorPreserveToCluster mirrors, keeping offsets, into a 3-node
// Sluice cluster with replication factor 3, and SIGKILLs the leader of a
// copied partition mid-stream: the followers replicated the copy (gaps of
// transaction markers included) offset for offset, one of them takes
// over, and the copy ends as the source does, nothing missing or twice.
func TestMirrorPreserveToCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a 3-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sluice-io/sluice/cmd/sluice").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	nodes := serveCluster(t, bin, 3)
	var seeds []string
	for _, nd := range nodes {
		seeds = append(seeds, nd.addr)
	}
	b := connectAll(t, seeds)
	deadline := time.Now().Add(60 * time.Second)
	for {
		// Not kadm's BrokerMetadata: it answers the client's cached list.
		md, err := kmsg.NewPtrMetadataRequest().RequestWith(clitest.Ctx(t), b.cl)
		if err == nil && len(md.Brokers) == len(nodes) {
			break
		}
		if time.Now().After(deadline) {
			var logs []string
			for _, nd := range nodes {
				b, _ := os.ReadFile(nd.log)
				logs = append(logs, fmt.Sprintf("node %d:\n%s", nd.id, b))
			}
			t.Fatalf("the target cluster has not registered its 3 brokers in 60 s: %v %v\n%s", md.Brokers, err, strings.Join(logs, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	a := connect(t, startBroker(t))
	a.create(t, "orders", 2, nil)
	transactions(t, a, "orders", 2, "tx-before", false)
	// The first batches (offsets 0-4) deleted: the copy starts at 5 on an
	// empty log, a gap its followers take too.
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 5})
	del.Add(kadm.Offset{Topic: "orders", Partition: 1, At: 5})
	if resp, err := a.adm.DeleteRecords(clitest.Ctx(t), del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	more := make(chan struct{})
	wait := streamRecords(t, a, "orders", 2, 2000, 5*time.Millisecond, more)

	m, stop := start(t, Options{Source: []string{a.addr}, Target: seeds, Topics: "orders", PreserveOffsets: true, ReplicationFactor: 3})
	for sum(b.ends(t, "orders")) < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("the copy did not reach 1000 records in 60 s: %v", b.ends(t, "orders"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	md, err := b.adm.Metadata(clitest.Ctx(t), "orders")
	if err != nil {
		t.Fatal(err)
	}
	p0 := md.Topics["orders"].Partitions[0]
	if len(p0.Replicas) != 3 {
		t.Fatalf("orders[0] on the target has replicas %v, want 3", p0.Replicas)
	}
	var killed *clusterNode
	for _, nd := range nodes {
		if int32(nd.id) == p0.Leader {
			killed = nd
		}
	}
	if killed == nil {
		t.Fatalf("orders[0] leader %d is no node", p0.Leader)
	}
	before := b.ends(t, "orders")
	killed.kill()
	t.Logf("killed node %d, the leader of orders[0], at target ends %v", killed.id, before)
	var alive []string
	for _, nd := range nodes {
		if nd != killed {
			alive = append(alive, nd.addr)
		}
	}
	transactions(t, a, "orders", 2, "tx-after", true)
	close(more)
	wait()
	b = connectAll(t, alive)
	ends := waitEnds(t, a, b, "orders")
	for _, committed := range []bool{false, true} {
		src, dst := readToEnd(t, a.addr, "orders", 2, committed), readToEnd(t, alive[0], "orders", 2, committed)
		sameAtSameOffsets(t, fmt.Sprintf("orders (read_committed %v)", committed), src, dst)
	}
	starts := func(c *cluster) string {
		l, err := c.adm.ListStartOffsets(clitest.Ctx(t), "orders")
		if err != nil {
			t.Fatal(err)
		}
		out := map[int32]int64{}
		l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		return fmt.Sprint(out)
	}
	if s, d := starts(a), starts(b); s != d || s != fmt.Sprint(map[int32]int64{0: 5, 1: 5}) {
		t.Fatalf("log start offsets: source %s, target %s; want 5 on both", s, d)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("after the leader's SIGKILL the copy ends at %v, as the source; %v records copied", ends, metric(t, m, "sluice_mirror_records_total", "topic=orders"))
}
