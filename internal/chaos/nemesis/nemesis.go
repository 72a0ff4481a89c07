// Package nemesis injects faults into a cluster of processes for the chaos
// test: it kill -9s and restarts nodes, SIGSTOPs and SIGCONTs them, and
// through the proxies in front of each node (internal/chaos/proxy)
// partitions a node from the others both ways or one way, and delays its
// links.
//
// The faults are picked from a seeded random source, so a failing run is
// replayed with its seed (given the same Target answers); one fault holds at
// a time, for a bounded time, and is undone before the next. Whatever
// happens, Run ends by healing everything: every node running and
// continued, every proxy passing everything. A node that exits without
// being killed is a finding, and Run fails with it.
package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/sluice-io/sluice/internal/chaos/proxy"
)

const (
	// maxRounds bounds Config.Rounds.
	maxRounds = 100_000
	// maxHold bounds how long one fault may hold (Config.MaxHold).
	maxHold = 5 * time.Minute
	// maxLinkDelay bounds Config.MaxDelay.
	maxLinkDelay = 30 * time.Second
	// restartTimeout bounds a restart after a kill, readiness included.
	restartTimeout = 60 * time.Second
	// healTimeout bounds Run's final Heal, which runs even when Run's
	// context has ended.
	healTimeout = 2 * restartTimeout
)

// Kind is a kind of fault.
type Kind int

const (
	// KillRestart SIGKILLs a node and starts it again when undone.
	KillRestart Kind = iota
	// PauseResume SIGSTOPs a node and SIGCONTs it when undone.
	PauseResume
	// Isolate drops everything between a node and the other nodes, both
	// ways; clients still reach it (the case of a deposed leader that
	// clients can talk to).
	Isolate
	// OneWay drops the messages of one direction between a node and the
	// other nodes: into it (Fault.Inbound) or out of it.
	OneWay
	// DelayLinks delays every chunk between a node and the other nodes,
	// both ways, by Fault.Delay.
	DelayLinks
)

// AllKinds lists every kind of fault.
func AllKinds() []Kind { return []Kind{KillRestart, PauseResume, Isolate, OneWay, DelayLinks} }

func (k Kind) String() string {
	switch k {
	case KillRestart:
		return "kill -9"
	case PauseResume:
		return "SIGSTOP"
	case Isolate:
		return "isolate"
	case OneWay:
		return "one-way partition"
	case DelayLinks:
		return "delay links"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// network says whether k works through the proxies.
func (k Kind) network() bool { return k == Isolate || k == OneWay || k == DelayLinks }

// Fault is one fault on one node.
type Fault struct {
	Kind Kind
	// Node is the index of the node in Config.Nodes.
	Node int
	// Hold is how long the fault lasts before Run undoes it.
	Hold time.Duration
	// Delay is the delay of DelayLinks.
	Delay time.Duration
	// Inbound is the direction of OneWay: true drops what the other nodes
	// send to Node, false what Node sends to them.
	Inbound bool
}

func (f Fault) String() string {
	s := fmt.Sprintf("%v node %d", f.Kind, f.Node)
	switch f.Kind {
	case DelayLinks:
		s += fmt.Sprintf(" by %v", f.Delay)
	case OneWay:
		if f.Inbound {
			s += " (others to it lost)"
		} else {
			s += " (its messages to others lost)"
		}
	}
	return s + fmt.Sprintf(" for %v", f.Hold)
}

// Node is one node of the cluster as the nemesis sees it.
type Node struct {
	Proc *Process
	// Proxy is the proxy in front of the node: every connection to it,
	// from the other nodes and from clients, goes through Proxy.
	Proxy *proxy.Proxy
	// OtherProxies are the proxies in front of the node's other listeners
	// (a broker's controller listener besides its Kafka one), if it has
	// more than one: the network faults apply to them as to Proxy.
	OtherProxies []*proxy.Proxy
	// IP is the source address of the node's outgoing connections (each
	// node binds its own 127.0.0.x), by which the other nodes' proxies
	// tell it from the rest. Clients must use other addresses.
	IP netip.Addr
	// Restarted, if set, is called after Proc is started again once it
	// is ready, e.g. to point Proxy at the port it bound this time.
	Restarted func() error
}

// proxies are every proxy in front of the node: Proxy, then OtherProxies.
func (nd Node) proxies() []*proxy.Proxy {
	if nd.Proxy == nil {
		return nd.OtherProxies
	}
	return append([]*proxy.Proxy{nd.Proxy}, nd.OtherProxies...)
}

// Config configures a Nemesis.
type Config struct {
	Nodes []Node
	// Seed seeds the choice of faults: the same seed (and the same Target
	// answers) gives the same faults.
	Seed uint64
	// Rounds is how many faults Run injects, one after the other.
	Rounds int
	// MinHold and MaxHold bound how long each fault holds.
	MinHold, MaxHold time.Duration
	// Gap is the healed pause between two faults (0: none).
	Gap time.Duration
	// MaxDelay bounds the delay of DelayLinks (picked from MaxDelay/10 to
	// MaxDelay).
	MaxDelay time.Duration
	// Kinds are the faults to pick from; nil means AllKinds.
	Kinds []Kind
	// Target, if set, names a node to aim at (its index; -1 for none):
	// the active controller, or the leader of a partition. Half of the
	// faults are aimed at it, the rest at a node picked at random.
	Target func() int
	// Logf receives every step. Nil discards them.
	Logf func(format string, args ...any)
}

// Nemesis injects faults into a cluster. It is driven from one goroutine:
// its methods are not safe for concurrent use.
type Nemesis struct {
	cfg    Config
	rng    *rand.Rand
	killed map[int]bool // nodes SIGKILLed by us and not yet restarted
}

// New checks cfg and returns a Nemesis.
func New(cfg Config) (*Nemesis, error) {
	if cfg.Kinds == nil {
		cfg.Kinds = AllKinds()
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Nemesis{
		cfg:    cfg,
		rng:    rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		killed: map[int]bool{},
	}, nil
}

func (cfg *Config) check() error {
	switch {
	case len(cfg.Nodes) == 0:
		return errors.New("nemesis: no nodes")
	case cfg.Rounds < 0 || cfg.Rounds > maxRounds:
		return fmt.Errorf("nemesis: %d rounds: want 0 to %d", cfg.Rounds, maxRounds)
	case cfg.MinHold <= 0 || cfg.MaxHold < cfg.MinHold || cfg.MaxHold > maxHold:
		return fmt.Errorf("nemesis: hold from %v to %v: want 0 < MinHold <= MaxHold <= %v", cfg.MinHold, cfg.MaxHold, maxHold)
	case cfg.Gap < 0 || cfg.Gap > maxHold:
		return fmt.Errorf("nemesis: gap %v: want 0 to %v", cfg.Gap, maxHold)
	case len(cfg.Kinds) == 0:
		return errors.New("nemesis: no kinds of fault")
	}
	ips := map[netip.Addr]int{}
	for i, n := range cfg.Nodes {
		if n.Proc == nil {
			return fmt.Errorf("nemesis: node %d has no process", i)
		}
		if j, ok := ips[n.IP]; ok && n.IP.IsValid() {
			return fmt.Errorf("nemesis: nodes %d and %d both have source address %v: the proxies could not tell them apart", j, i, n.IP)
		}
		ips[n.IP] = i
	}
	for _, k := range cfg.Kinds {
		if k < KillRestart || k > DelayLinks {
			return fmt.Errorf("nemesis: unknown kind of fault %d", int(k))
		}
		if !k.network() {
			continue
		}
		if len(cfg.Nodes) < 2 {
			return fmt.Errorf("nemesis: %v needs two nodes or more", k)
		}
		for i, n := range cfg.Nodes {
			if n.Proxy == nil || !n.IP.IsValid() {
				return fmt.Errorf("nemesis: %v needs a proxy and a source address for every node; node %d lacks one", k, i)
			}
			if slices.Contains(n.OtherProxies, nil) {
				return fmt.Errorf("nemesis: node %d has a nil proxy among its OtherProxies", i)
			}
		}
		if k == DelayLinks && (cfg.MaxDelay <= 0 || cfg.MaxDelay > maxLinkDelay) {
			return fmt.Errorf("nemesis: MaxDelay %v: want 0 < MaxDelay <= %v", cfg.MaxDelay, maxLinkDelay)
		}
	}
	return nil
}

func (n *Nemesis) logf(format string, args ...any) {
	if n.cfg.Logf != nil {
		n.cfg.Logf("nemesis: "+format, args...)
	}
}

// Next picks the next fault. It draws the same random numbers whatever it
// picks, so that a Target answering differently does not shift the faults
// after.
func (n *Nemesis) Next() Fault {
	kind := n.cfg.Kinds[n.rng.IntN(len(n.cfg.Kinds))]
	aim := n.rng.IntN(2) == 0
	node := n.rng.IntN(len(n.cfg.Nodes))
	hold := n.cfg.MinHold + time.Duration(n.rng.Int64N(int64(n.cfg.MaxHold-n.cfg.MinHold)+1))
	var delay time.Duration
	if n.cfg.MaxDelay > 0 {
		lo := max(n.cfg.MaxDelay/10, 1)
		delay = lo + time.Duration(n.rng.Int64N(int64(n.cfg.MaxDelay-lo)+1))
	}
	inbound := n.rng.IntN(2) == 0
	if aim && n.cfg.Target != nil {
		if t := n.cfg.Target(); t >= 0 && t < len(n.cfg.Nodes) {
			node = t
		}
	}
	f := Fault{Kind: kind, Node: node, Hold: hold, Inbound: inbound}
	if kind == DelayLinks {
		f.Delay = delay
	}
	return f
}

// Inject puts f in place.
func (n *Nemesis) Inject(f Fault) error {
	if f.Node < 0 || f.Node >= len(n.cfg.Nodes) {
		panic(fmt.Sprintf("BUG: nemesis: fault on node %d of %d", f.Node, len(n.cfg.Nodes)))
	}
	node := n.cfg.Nodes[f.Node]
	switch f.Kind {
	case KillRestart:
		if err := node.Proc.Kill(); err != nil {
			return err
		}
		n.killed[f.Node] = true
	case PauseResume:
		return node.Proc.Stop()
	case Isolate:
		n.links(f.Node, proxy.Rule{Fault: proxy.Drop}, proxy.Rule{Fault: proxy.Drop})
	case OneWay:
		// A connection from a to b carries a's requests to b as
		// client-to-target bytes through b's proxy, and b's answers back
		// as target-to-client bytes: to lose every message into the
		// node, drop the first kind at its proxy and the second at the
		// others'.
		if f.Inbound {
			n.links(f.Node, proxy.Rule{Fault: proxy.DropToTarget}, proxy.Rule{Fault: proxy.DropToClient})
		} else {
			n.links(f.Node, proxy.Rule{Fault: proxy.DropToClient}, proxy.Rule{Fault: proxy.DropToTarget})
		}
	case DelayLinks:
		if f.Delay <= 0 {
			panic(fmt.Sprintf("BUG: nemesis: %v with delay %v", f.Kind, f.Delay))
		}
		r := proxy.Rule{Fault: proxy.Delay, Delay: f.Delay}
		n.links(f.Node, r, r)
	default:
		panic(fmt.Sprintf("BUG: nemesis: unknown kind of fault %d", int(f.Kind)))
	}
	return nil
}

// links sets, for every other node o, atNode on node's proxies for o's
// connections, and atOthers on o's proxies for node's connections.
func (n *Nemesis) links(node int, atNode, atOthers proxy.Rule) {
	me := n.cfg.Nodes[node]
	for i, o := range n.cfg.Nodes {
		if i == node {
			continue
		}
		for _, px := range me.proxies() {
			px.Set(o.IP, atNode)
		}
		for _, px := range o.proxies() {
			px.Set(me.IP, atOthers)
		}
	}
}

// Undo takes f away: restarts the killed node (waiting until it is ready,
// within ctx), continues the stopped one, or clears the rules of the node's
// links.
func (n *Nemesis) Undo(ctx context.Context, f Fault) error {
	node := n.cfg.Nodes[f.Node]
	switch f.Kind {
	case KillRestart:
		if err := n.restart(ctx, f.Node); err != nil {
			return err
		}
	case PauseResume:
		return node.Proc.Cont()
	case Isolate, OneWay, DelayLinks:
		for i, o := range n.cfg.Nodes {
			if i == f.Node {
				continue
			}
			for _, px := range node.proxies() {
				px.Clear(o.IP)
			}
			for _, px := range o.proxies() {
				px.Clear(node.IP)
			}
		}
	default:
		panic(fmt.Sprintf("BUG: nemesis: unknown kind of fault %d", int(f.Kind)))
	}
	return nil
}

func (n *Nemesis) restart(ctx context.Context, i int) error {
	node := n.cfg.Nodes[i]
	ctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	if err := node.Proc.Start(ctx); err != nil {
		return err
	}
	delete(n.killed, i)
	if node.Restarted != nil {
		if err := node.Restarted(); err != nil {
			return fmt.Errorf("nemesis: after restarting %s: %w", node.Proc.Name(), err)
		}
	}
	n.logf("%s restarted as pid %d", node.Proc.Name(), node.Proc.PID())
	return nil
}

// Run injects Config.Rounds faults one after the other, each held for its
// Hold and undone, and returns them. Every node must be running when it
// starts. It stops early when ctx ends (returning
// ctx's error), when a fault cannot be injected or undone, or when a node
// has exited without being killed. Whatever happened, it heals everything
// before it returns.
func (n *Nemesis) Run(ctx context.Context) (faults []Fault, err error) {
	n.logf("seed %d, %d rounds of %v, each held %v to %v", n.cfg.Seed, n.cfg.Rounds, n.cfg.Kinds, n.cfg.MinHold, n.cfg.MaxHold)
	defer func() {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healTimeout)
		defer cancel()
		err = errors.Join(err, n.Heal(hctx))
	}()
	for round := 1; round <= n.cfg.Rounds; round++ {
		if err := n.crashed(); err != nil {
			return faults, err
		}
		f := n.Next()
		n.logf("round %d/%d: %v (%s)", round, n.cfg.Rounds, f, n.cfg.Nodes[f.Node].Proc.Name())
		if err := n.Inject(f); err != nil {
			return faults, fmt.Errorf("round %d: injecting %v: %w", round, f, err)
		}
		faults = append(faults, f)
		holdErr := sleep(ctx, f.Hold)
		// Undoing is healing: it runs to the end (restartTimeout) even
		// when ctx has ended.
		if err := n.Undo(context.WithoutCancel(ctx), f); err != nil {
			return faults, fmt.Errorf("round %d: undoing %v: %w", round, f, err)
		}
		n.logf("round %d/%d: %v of %s undone", round, n.cfg.Rounds, f.Kind, n.cfg.Nodes[f.Node].Proc.Name())
		if holdErr != nil {
			return faults, holdErr
		}
		if err := sleep(ctx, n.cfg.Gap); err != nil {
			return faults, err
		}
	}
	return faults, n.crashed()
}

// crashed reports nodes that exited without being killed.
func (n *Nemesis) crashed() error {
	var errs []error
	for i, node := range n.cfg.Nodes {
		if !n.killed[i] && !node.Proc.Running() {
			errs = append(errs, fmt.Errorf("nemesis: %s (pid %d) exited without being killed: %v", node.Proc.Name(), node.Proc.PID(), exitString(node.Proc.ExitErr())))
		}
	}
	return errors.Join(errs...)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Heal undoes every fault: every proxy passes everything again, every
// stopped node is continued, and every node not running (killed by us, or
// exited by itself, which is logged) is started again within ctx. It
// returns every failure, and tries every node whatever failed before.
func (n *Nemesis) Heal(ctx context.Context) error {
	var errs []error
	for _, node := range n.cfg.Nodes {
		for _, px := range node.proxies() {
			px.Heal()
		}
	}
	for i, node := range n.cfg.Nodes {
		switch {
		case node.Proc.Stopped():
			if err := node.Proc.Cont(); err != nil {
				errs = append(errs, err)
			}
		case !node.Proc.Running():
			if !n.killed[i] {
				n.logf("%s had exited without being killed (%v): starting it", node.Proc.Name(), exitString(node.Proc.ExitErr()))
			}
			if err := n.restart(ctx, i); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		n.logf("heal failed: %v", err)
		return err
	}
	n.logf("healed: every node running, every link passing")
	return nil
}
