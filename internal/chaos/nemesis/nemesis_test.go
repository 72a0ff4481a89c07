package nemesis

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/chaos/proxy"
)

// clientIP is where the tests dial from as a client: not a node's address.
const clientIP = "127.0.0.1"

// cluster is three stand-in nodes on 127.0.0.2, .3 and .4, each behind a
// proxy on its own address, as the chaos test will run `sluice serve`.
func cluster(t *testing.T, logf func(string, ...any)) []Node {
	t.Helper()
	var nodes []Node
	for i := range 3 {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		p := echoProcess(t, fmt.Sprintf("node%d", i), ip, logf)
		start(t, p)
		px, err := proxy.New(ip+":0", echoAddr(p))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { px.Close() })
		nodes = append(nodes, Node{
			Proc:  p,
			Proxy: px,
			IP:    netip.MustParseAddr(ip),
			// A restarted stand-in listens on a new random port.
			Restarted: func() error { px.SetTarget(echoAddr(p)); return nil },
		})
	}
	return nodes
}

func newNemesis(t *testing.T, cfg Config) *Nemesis {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// expectRules checks the rule every node's proxy applies to every other
// node's connections, and to clients': want[i][j] is the rule at node i's
// proxy for node j (the diagonal stands for clients, who always pass).
func expectRules(t *testing.T, nodes []Node, want [3][3]proxy.Rule) {
	t.Helper()
	client := netip.MustParseAddr(clientIP)
	for i, n := range nodes {
		for j, o := range nodes {
			src := o.IP
			if i == j {
				src = client
			}
			if got := n.Proxy.Rule(src); got != want[i][j] {
				t.Errorf("node %d's proxy, connections from %v: %v; want %v", i, src, got, want[i][j])
			}
		}
	}
}

// expectHealthy checks every node is running and continued, and answers
// through its proxy every other node and a client.
func expectHealthy(t *testing.T, nodes []Node) {
	t.Helper()
	expectRules(t, nodes, [3][3]proxy.Rule{})
	for i, n := range nodes {
		if !n.Proc.Running() || n.Proc.Stopped() {
			t.Fatalf("node %d: running %v, stopped %v; want running", i, n.Proc.Running(), n.Proc.Stopped())
		}
		for j, o := range nodes {
			from := o.IP.String()
			if i == j {
				from = clientIP
			}
			expectEcho(t, dialFrom(t, n.Proxy.Addr(), from), fmt.Sprintf("%d to %d", j, i))
		}
	}
}

func TestInjectAndUndo(t *testing.T) {
	nodes := cluster(t, t.Logf)
	n := newNemesis(t, Config{Nodes: nodes, Rounds: 1, MinHold: time.Millisecond, MaxHold: time.Millisecond, MaxDelay: time.Second, Logf: t.Logf})
	ctx := context.Background()
	pass := proxy.Rule{}
	drop := proxy.Rule{Fault: proxy.Drop}
	toTarget := proxy.Rule{Fault: proxy.DropToTarget}
	toClient := proxy.Rule{Fault: proxy.DropToClient}
	ip := func(i int) string { return nodes[i].IP.String() }

	t.Run("kill -9 and restart", func(t *testing.T) {
		f := Fault{Kind: KillRestart, Node: 0}
		pid := nodes[0].Proc.PID()
		if err := n.Inject(f); err != nil {
			t.Fatal(err)
		}
		if nodes[0].Proc.Running() {
			t.Fatal("node 0 running after kill -9")
		}
		expectClosed(t, dialFrom(t, nodes[0].Proxy.Addr(), clientIP)) // nothing behind the proxy
		if err := n.Undo(ctx, f); err != nil {
			t.Fatal(err)
		}
		if !nodes[0].Proc.Running() || nodes[0].Proc.PID() == pid {
			t.Fatalf("after restart: running %v, pid %d (was %d); want a new process", nodes[0].Proc.Running(), nodes[0].Proc.PID(), pid)
		}
		expectEcho(t, dialFrom(t, nodes[0].Proxy.Addr(), clientIP), "restarted")
	})

	t.Run("SIGSTOP and SIGCONT", func(t *testing.T) {
		f := Fault{Kind: PauseResume, Node: 1}
		c := dialFrom(t, nodes[1].Proxy.Addr(), clientIP)
		expectEcho(t, c, "before")
		if err := n.Inject(f); err != nil {
			t.Fatal(err)
		}
		send(t, c, "paused")
		expectSilence(t, c)
		if s := procState(t, nodes[1].Proc.PID()); s != 'T' {
			t.Fatalf("node 1 in state %c; want T (stopped)", s)
		}
		if err := n.Undo(ctx, f); err != nil {
			t.Fatal(err)
		}
		expectRead(t, c, "paused")
	})

	t.Run("isolate", func(t *testing.T) {
		f := Fault{Kind: Isolate, Node: 2}
		if err := n.Inject(f); err != nil {
			t.Fatal(err)
		}
		expectRules(t, nodes, [3][3]proxy.Rule{
			{pass, pass, drop},
			{pass, pass, drop},
			{drop, drop, pass},
		})
		c := dialFrom(t, nodes[2].Proxy.Addr(), ip(0))
		send(t, c, "0 to 2")
		expectSilence(t, c)
		c = dialFrom(t, nodes[0].Proxy.Addr(), ip(2))
		send(t, c, "2 to 0")
		expectSilence(t, c)
		expectEcho(t, dialFrom(t, nodes[2].Proxy.Addr(), clientIP), "clients still reach it")
		if err := n.Undo(ctx, f); err != nil {
			t.Fatal(err)
		}
		expectRules(t, nodes, [3][3]proxy.Rule{})
		expectEcho(t, dialFrom(t, nodes[2].Proxy.Addr(), ip(0)), "0 to 2 healed")
	})

	t.Run("one-way partition into a node", func(t *testing.T) {
		f := Fault{Kind: OneWay, Node: 0, Inbound: true}
		if err := n.Inject(f); err != nil {
			t.Fatal(err)
		}
		// Node 1's requests to node 0 are lost at node 0's proxy; node
		// 0's requests to node 1 arrive, the answers are lost at node
		// 1's proxy.
		expectRules(t, nodes, [3][3]proxy.Rule{
			{pass, toTarget, toTarget},
			{toClient, pass, pass},
			{toClient, pass, pass},
		})
		c := dialFrom(t, nodes[0].Proxy.Addr(), ip(1))
		send(t, c, "1 to 0")
		expectSilence(t, c)
		if err := n.Undo(ctx, f); err != nil {
			t.Fatal(err)
		}
		expectRules(t, nodes, [3][3]proxy.Rule{})
	})

	t.Run("one-way partition out of a node", func(t *testing.T) {
		f := Fault{Kind: OneWay, Node: 0, Inbound: false}
		if err := n.Inject(f); err != nil {
			t.Fatal(err)
		}
		expectRules(t, nodes, [3][3]proxy.Rule{
			{pass, toClient, toClient},
			{toTarget, pass, pass},
			{toTarget, pass, pass},
		})
		c := dialFrom(t, nodes[1].Proxy.Addr(), ip(0))
		send(t, c, "0 to 1")
		expectSilence(t, c)
		if err := n.Undo(ctx, f); err != nil {
			t.Fatal(err)
		}
		expectRules(t, nodes, [3][3]proxy.Rule{})
	})

	t.Run("delay links", func(t *testing.T) {
		f := Fault{Kind: DelayLinks, Node: 1, Delay: 200 * time.Millisecond}
		if err := n.Inject(f); err != nil {
			t.Fatal(err)
		}
		d := proxy.Rule{Fault: proxy.Delay, Delay: f.Delay}
		expectRules(t, nodes, [3][3]proxy.Rule{
			{pass, d, pass},
			{d, pass, d},
			{pass, d, pass},
		})
		expectEcho(t, dialFrom(t, nodes[1].Proxy.Addr(), ip(2)), "slow but there")
		if err := n.Undo(ctx, f); err != nil {
			t.Fatal(err)
		}
	})

	expectHealthy(t, nodes)
}

// TestOtherProxies: a node with a second listener (a broker's controller
// listener) has a second proxy, and every network fault applies to both.
func TestOtherProxies(t *testing.T) {
	nodes := cluster(t, t.Logf)
	second := make([]*proxy.Proxy, len(nodes))
	for i := range nodes {
		px, err := proxy.New(nodes[i].IP.String()+":0", echoAddr(nodes[i].Proc))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { px.Close() })
		second[i] = px
		nodes[i].OtherProxies = []*proxy.Proxy{px}
	}
	n := newNemesis(t, Config{Nodes: nodes, Rounds: 1, MinHold: time.Millisecond, MaxHold: time.Millisecond, MaxDelay: time.Second, Logf: t.Logf})
	drop := proxy.Rule{Fault: proxy.Drop}
	expect := func(node int, want proxy.Rule) {
		t.Helper()
		for i := range nodes {
			for j, o := range nodes {
				r := proxy.Rule{}
				if i != j && (i == node || j == node) {
					r = want
				}
				if got := second[i].Rule(o.IP); got != r {
					t.Errorf("node %d's second proxy, connections from node %d: %v; want %v", i, j, got, r)
				}
			}
			if got := second[i].Rule(netip.MustParseAddr(clientIP)); got != (proxy.Rule{}) {
				t.Errorf("node %d's second proxy, clients: %v; want pass", i, got)
			}
		}
	}
	f := Fault{Kind: Isolate, Node: 1}
	if err := n.Inject(f); err != nil {
		t.Fatal(err)
	}
	expect(1, drop)
	c := dialFrom(t, second[1].Addr(), nodes[0].IP.String())
	send(t, c, "0 to 1's second listener")
	expectSilence(t, c)
	if err := n.Undo(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	expect(1, proxy.Rule{})
	if err := n.Inject(f); err != nil {
		t.Fatal(err)
	}
	if err := n.Heal(context.Background()); err != nil {
		t.Fatal(err)
	}
	expect(1, proxy.Rule{})
	expectEcho(t, dialFrom(t, second[1].Addr(), nodes[0].IP.String()), "0 to 1's second listener healed")
}

func TestRun(t *testing.T) {
	l := &logs{t: t}
	nodes := cluster(t, l.logf)
	pids := make([]int, len(nodes))
	for i, n := range nodes {
		pids[i] = n.Proc.PID()
	}
	const rounds = 12
	cfg := Config{
		Nodes: nodes, Seed: 7, Rounds: rounds,
		MinHold: 20 * time.Millisecond, MaxHold: 80 * time.Millisecond, Gap: 10 * time.Millisecond,
		MaxDelay: 50 * time.Millisecond,
		Target:   func() int { return 1 }, // the "controller"
		Logf:     l.logf,
	}
	faults, err := newNemesis(t, cfg).Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(faults) != rounds {
		t.Fatalf("%d faults; want %d", len(faults), rounds)
	}
	kinds := map[Kind]int{}
	onTarget := 0
	for _, f := range faults {
		kinds[f.Kind]++
		if f.Node == 1 {
			onTarget++
		}
		if f.Hold < cfg.MinHold || f.Hold > cfg.MaxHold || (f.Kind == DelayLinks && (f.Delay < cfg.MaxDelay/10 || f.Delay > cfg.MaxDelay)) {
			t.Errorf("%v: out of the configured bounds", f)
		}
	}
	t.Logf("faults by kind: %v; %d of %d on the target", kinds, onTarget, rounds)
	// The seed is fixed: these hold for it, and show that the faults were
	// really injected.
	if len(kinds) != len(AllKinds()) {
		t.Errorf("seed %d picked %v; want every kind (change the seed if the picking changed)", cfg.Seed, kinds)
	}
	if onTarget < rounds/2 {
		t.Errorf("%d of %d faults on the target node; want at least half", onTarget, rounds)
	}
	for _, f := range faults {
		if f.Kind == KillRestart && nodes[f.Node].Proc.PID() == pids[f.Node] {
			t.Errorf("%v: node %d still has pid %d", f, f.Node, pids[f.Node])
		}
	}
	for _, want := range []string{fmt.Sprintf("nemesis: seed 7, %d rounds", rounds), "nemesis: round 1/12: ", "nemesis: round 12/12: ", "nemesis: healed"} {
		if !l.has(want) {
			t.Errorf("no log line with %q", want)
		}
	}
	expectHealthy(t, nodes)
}

func TestNextIsSeeded(t *testing.T) {
	nodes := make([]Node, 3)
	for i := range nodes {
		nodes[i] = Node{Proc: NewProcess(ProcessConfig{Path: "/bin/true"}), IP: netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 2)})}
	}
	picks := func(seed uint64, target int) []Fault {
		cfg := Config{Nodes: nodes, Seed: seed, Rounds: 1, MinHold: time.Millisecond, MaxHold: time.Second, Kinds: []Kind{KillRestart, PauseResume}}
		if target >= 0 {
			cfg.Target = func() int { return target }
		}
		n := newNemesis(t, cfg)
		fs := make([]Fault, 50)
		for i := range fs {
			fs[i] = n.Next()
		}
		return fs
	}
	a, b, c := picks(1, -1), picks(1, -1), picks(2, -1)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed picked different faults")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 1 and 2 picked the same faults")
	}
	// A target changes the nodes picked, not anything else.
	aimed := picks(1, 2)
	for i := range a {
		a[i].Node, aimed[i].Node = 0, 0
	}
	if !reflect.DeepEqual(a, aimed) {
		t.Fatal("aiming at a target changed more than the nodes")
	}
}

func TestRunHealsWhenCancelled(t *testing.T) {
	for _, kind := range []Kind{KillRestart, PauseResume, Isolate} {
		t.Run(kind.String(), func(t *testing.T) {
			nodes := cluster(t, t.Logf)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			injected := make(chan struct{})
			cfg := Config{Nodes: nodes, Rounds: 3, MinHold: maxHold, MaxHold: maxHold, Kinds: []Kind{kind},
				Logf: func(format string, args ...any) {
					t.Logf(format, args...)
					if strings.HasPrefix(format, "nemesis: round") && !strings.Contains(format, "undone") {
						select {
						case <-injected:
						default:
							close(injected)
						}
					}
				}}
			n := newNemesis(t, cfg)
			done := make(chan error, 1)
			go func() {
				_, err := n.Run(ctx)
				done <- err
			}()
			<-injected
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Run: %v; want context canceled", err)
				}
			case <-time.After(startTimeout):
				t.Fatal("Run did not return after its context was cancelled")
			}
			expectHealthy(t, nodes)
		})
	}
}

func TestRunReportsANodeThatExitedByItself(t *testing.T) {
	nodes := cluster(t, t.Logf)
	if err := nodes[2].Proc.Kill(); err != nil { // not by the nemesis
		t.Fatal(err)
	}
	n := newNemesis(t, Config{Nodes: nodes, Rounds: 3, MinHold: time.Millisecond, MaxHold: time.Millisecond, Kinds: []Kind{PauseResume}, Logf: t.Logf})
	faults, err := n.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "node2") || !strings.Contains(err.Error(), "exited without being killed: signal: killed") {
		t.Fatalf("Run: %v; want node2 reported as exited", err)
	}
	if len(faults) != 0 {
		t.Fatalf("%d faults injected into a broken cluster; want 0", len(faults))
	}
	expectHealthy(t, nodes) // healed: restarted
}

func TestHeal(t *testing.T) {
	nodes := cluster(t, t.Logf)
	n := newNemesis(t, Config{Nodes: nodes, Rounds: 1, MinHold: time.Millisecond, MaxHold: time.Millisecond, MaxDelay: time.Second, Logf: t.Logf})
	for _, f := range []Fault{
		{Kind: KillRestart, Node: 0},
		{Kind: PauseResume, Node: 1},
		{Kind: Isolate, Node: 2},
		{Kind: DelayLinks, Node: 0, Delay: time.Hour},
	} {
		if err := n.Inject(f); err != nil {
			t.Fatalf("%v: %v", f, err)
		}
	}
	if err := n.Heal(context.Background()); err != nil {
		t.Fatal(err)
	}
	expectHealthy(t, nodes)
}

func TestConfigChecks(t *testing.T) {
	proc := NewProcess(ProcessConfig{Path: "/bin/true"})
	px, err := proxy.New("127.0.0.1:0", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	node := func(ip string) Node { return Node{Proc: proc, Proxy: px, IP: netip.MustParseAddr(ip)} }
	good := Config{Nodes: []Node{node("127.0.0.2"), node("127.0.0.3")}, Rounds: 1, MinHold: time.Millisecond, MaxHold: time.Second, MaxDelay: time.Second}
	if _, err := New(good); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	for name, edit := range map[string]func(c *Config){
		"no nodes":                  func(c *Config) { c.Nodes = nil },
		"negative rounds":           func(c *Config) { c.Rounds = -1 },
		"too many rounds":           func(c *Config) { c.Rounds = maxRounds + 1 },
		"no hold":                   func(c *Config) { c.MinHold = 0 },
		"max hold under min":        func(c *Config) { c.MaxHold = c.MinHold / 2 },
		"hold too long":             func(c *Config) { c.MaxHold = maxHold + 1 },
		"no delay for delay links":  func(c *Config) { c.MaxDelay = 0 },
		"delay too long":            func(c *Config) { c.MaxDelay = maxLinkDelay + 1 },
		"no kinds":                  func(c *Config) { c.Kinds = []Kind{} },
		"unknown kind":              func(c *Config) { c.Kinds = []Kind{DelayLinks + 1} },
		"one node, partitions":      func(c *Config) { c.Nodes = c.Nodes[:1]; c.Kinds = []Kind{Isolate} },
		"two nodes on one address":  func(c *Config) { c.Nodes[1].IP = c.Nodes[0].IP },
		"a node without a proxy":    func(c *Config) { c.Nodes[1].Proxy = nil },
		"a nil other proxy":         func(c *Config) { c.Nodes[1].OtherProxies = []*proxy.Proxy{nil} },
		"a node without a process":  func(c *Config) { c.Nodes[0].Proc = nil },
		"a node without an address": func(c *Config) { c.Nodes[1].IP = netip.Addr{} },
	} {
		c := good
		c.Nodes = append([]Node(nil), good.Nodes...)
		edit(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	// Process faults alone need neither proxies nor addresses.
	solo := Config{Nodes: []Node{{Proc: proc}}, Rounds: 1, MinHold: time.Millisecond, MaxHold: time.Millisecond, Kinds: []Kind{KillRestart, PauseResume}}
	if _, err := New(solo); err != nil {
		t.Errorf("one node, process faults only: %v", err)
	}
}
