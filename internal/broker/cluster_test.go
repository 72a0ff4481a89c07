package broker

import (
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/netmux"
)

// testNode is one node of an in-process test cluster.
type testNode struct {
	id      int32
	dir     string
	kafka   net.Listener // reserved for the broker's advertised address
	ctrl    string
	b       *Broker
	voters  []metadata.Voter
	configs map[string]string
}

// startCluster opens n brokers on 127.0.0.1 (random ports), each a voter.
func startCluster(t *testing.T, n int, configs map[string]string) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	var voters []metadata.Voter
	ctrlLns := make([]net.Listener, n)
	for i := range nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctrlLns[i] = ln
		id := int32(i + 1)
		voters = append(voters, metadata.Voter{ID: id, Addr: ln.Addr().String()})
		kl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &testNode{id: id, dir: filepath.Join(t.TempDir(), "node"), kafka: kl, ctrl: ln.Addr().String(), configs: configs}
		t.Cleanup(func() { kl.Close() })
	}
	errs := make(chan error, n)
	for i, nd := range nodes {
		nd.voters = voters
		go func() { errs <- nd.open(ctrlLns[i]) }()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			if nd.b != nil {
				nd.b.Close()
			}
		}
	})
	return nodes
}

func (nd *testNode) open(ctrlLn net.Listener) error {
	if ctrlLn == nil {
		var err error
		if ctrlLn, err = net.Listen("tcp", nd.ctrl); err != nil {
			return err
		}
	}
	host, port, _ := net.SplitHostPort(nd.kafka.Addr().String())
	p, _ := strconv.Atoi(port)
	b, err := Open(Config{NodeID: nd.id, DataDir: nd.dir, Host: host, Port: int32(p), Static: nd.configs,
		Voters: nd.voters, ControllerMux: netmux.New(ctrlLn, nil)})
	if err != nil {
		return err
	}
	nd.b = b
	return nil
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterRegistersAndFences(t *testing.T) {
	nodes := startCluster(t, 3, map[string]string{"broker.session.timeout.ms": "1500", "broker.heartbeat.interval.ms": "100"})
	img := nodes[0].b.Image()
	for _, nd := range nodes {
		waitFor(t, "every broker registered and unfenced on every node", 10*time.Second, func() bool {
			img := nd.b.Image()
			if len(img.Brokers) != 3 {
				return false
			}
			for _, br := range img.Brokers {
				if br.Fenced || br.Epoch <= 0 {
					return false
				}
			}
			return true
		})
		if got := nd.b.Image().ClusterID; got != img.ClusterID || got == "" {
			t.Fatalf("node %d has cluster id %q, node 1 %q", nd.id, got, img.ClusterID)
		}
	}
	// Stop a broker that is not the controller without a controlled
	// shutdown: its session runs out and the controller fences it.
	ctrl := nodes[0].b.Image().ControllerID
	var victim *testNode
	for _, nd := range nodes {
		if nd.id != ctrl {
			victim = nd
			break
		}
	}
	victim.b.cancel() // heartbeats stop; the process "hangs"
	waitFor(t, "the silent broker fenced", 10*time.Second, func() bool {
		return nodes[ctrl-1].b.Image().Brokers[victim.id].Fenced
	})
}
