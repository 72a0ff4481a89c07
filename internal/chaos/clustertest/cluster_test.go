package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/chaos/nemesis"
	"github.com/sluice-io/sluice/internal/chaos/proxy"
	"github.com/sluice-io/sluice/internal/freeport"
)

// The cluster and its topic.
const (
	// voterCount is how many nodes are voters of the metadata quorum
	// (process.roles=broker,controller): nodes 1 to voterCount. A node
	// after them (drainNodes) is broker-only.
	voterCount = 3
	// drainNodes is how many nodes CHAOS_DRAIN=1 runs: the voters and a
	// broker-only node, so that a drained broker's replicas have
	// somewhere to go while the topic keeps replicationFactor.
	drainNodes        = voterCount + 1
	topic             = "chaos"
	partitions        = 3
	replicationFactor = 3
	minInsyncReplicas = 2
	// clientIP is the source address of every client connection: no node
	// has it, so network faults never apply to clients.
	clientIP = "127.0.0.1"
	// nodeIPBase, kafkaProxyIPBase and controllerProxyIPBase + node id
	// are the last byte of node i's addresses on 127.0.0.0/8.
	nodeIPBase            = 10
	kafkaProxyIPBase      = 20
	controllerProxyIPBase = 30
)

// Timeouts of the harness. Each bounds one wait; TestChaos's budget bounds
// the whole run.
const (
	// startTimeout bounds the first start of every node until each says
	// "sluice serving".
	startTimeout = 90 * time.Second
	// createTimeout bounds the topic's creation, retried while the
	// quorum elects its first controller and the brokers register.
	createTimeout = 60 * time.Second
	// metadataTimeout bounds one Metadata or ListOffsets request.
	metadataTimeout = 3 * time.Second
	// pollInterval is the pause between two looks at the cluster's
	// metadata while waiting for it to settle: the harness has no event
	// to wait on from another process.
	pollInterval = 250 * time.Millisecond
	// dialTimeout bounds a client's dial to a proxy.
	dialTimeout = 5 * time.Second
	// killTimeout bounds the wait for a node to exit after SIGTERM at the
	// end of a run before it is SIGKILLed.
	killTimeout = 10 * time.Second
	// tailLines is how many of a node's last output lines a failure
	// report shows.
	tailLines = 40
)

// brokerConfigs are the -c configs of every node: the topic's durability
// settings as broker defaults too, and a short replica.lag.time.max.ms so
// that a follower cut off by a fault leaves the ISR (and comes back) within
// a round.
func brokerConfigs() []string {
	return []string{
		"default.replication.factor=" + strconv.Itoa(replicationFactor),
		"min.insync.replicas=" + strconv.Itoa(minInsyncReplicas),
		"replica.lag.time.max.ms=5000",
		"broker.heartbeat.interval.ms=250",
		"broker.session.timeout.ms=1500",
		"unclean.leader.election.enable=false",
	}
}

// node is one `sluice serve` of the cluster and the proxies in front of
// it. Immutable after startCluster but for proc's own state.
type node struct {
	id int32
	ip netip.Addr // its listeners and the source of its connections
	// voter: a voter of the metadata quorum as well as a broker; false
	// for a broker-only node (process.roles=broker), which has no
	// controller listener, so neither controller nor controllerProxy,
	// and follows the metadata log as an observer: the active
	// controller sends it on the node's Kafka listener, through
	// kafkaProxy.
	voter bool
	// listen, controller and http are the addresses it listens on; the
	// same at every restart.
	listen, controller, http string
	kafkaProxy               *proxy.Proxy // its --advertised-address
	controllerProxy          *proxy.Proxy // its controller listener, for the other voters; nil for a broker-only node
	dataDir                  string
	proc                     *nemesis.Process
	tail                     *lineRing
}

// cluster is the running cluster, its proxies and an admin client that
// reaches it through the Kafka proxies from clientIP.
type cluster struct {
	nodes []*node
	log   *eventLog
	// clientLogLevel is what the clients log into the event log.
	clientLogLevel kgo.LogLevel
	admin          *kgo.Client
	adm            *kadm.Client
	// asked turns the node activeController asks first.
	asked atomic.Int64
}

// ipv4 is 127.0.0.last.
func ipv4(last int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, byte(last)}) }

// startCluster starts the proxies and nodeCount nodes (data in
// dir/node-N): the first voterCount voters of the metadata quorum and
// brokers, the others broker-only. It waits until every node says it is
// serving. Everything it starts is stopped by t.Cleanup: nodes SIGTERMed
// then SIGKILLed, proxies closed.
func startCluster(ctx context.Context, t *testing.T, dir string, elog *eventLog, nodeCount int) *cluster {
	t.Helper()
	if nodeCount < voterCount || nodeCount > drainNodes {
		t.Fatalf("BUG: a cluster of %d nodes: want %d to %d", nodeCount, voterCount, drainNodes)
	}
	c := &cluster{log: elog, clientLogLevel: envLogLevel(t, "CHAOS_CLIENT_LOG", kgo.LogLevelWarn)}
	for i := 1; i <= nodeCount; i++ {
		n := &node{id: int32(i), ip: ipv4(nodeIPBase + i), voter: i <= voterCount, dataDir: filepath.Join(dir, fmt.Sprintf("node-%d", i)), tail: newLineRing(tailLines)}
		addrs := []*string{&n.listen, &n.http}
		if n.voter {
			addrs = append(addrs, &n.controller)
		}
		for _, a := range addrs {
			addr, err := freeport.Addr(n.ip.String())
			if err != nil {
				t.Fatal(err)
			}
			*a = addr
		}
		var err error
		if n.kafkaProxy, err = proxy.New(net.JoinHostPort(ipv4(kafkaProxyIPBase+i).String(), "0"), n.listen); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.kafkaProxy.Close() })
		if n.voter {
			if n.controllerProxy, err = proxy.New(net.JoinHostPort(ipv4(controllerProxyIPBase+i).String(), "0"), n.controller); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { n.controllerProxy.Close() })
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		// Each node reaches the voters through their controller
		// proxies, and itself directly.
		var voters []string
		for _, o := range c.nodes {
			if !o.voter {
				continue
			}
			addr := o.controllerProxy.Addr()
			if o == n {
				addr = n.controller
			}
			voters = append(voters, fmt.Sprintf("%d@%s", o.id, addr))
		}
		args := []string{"serve", "--node-id", strconv.Itoa(int(n.id)),
			"--listen", n.listen, "--advertised-address", n.kafkaProxy.Addr()}
		if n.voter {
			args = append(args, "--controller-listen", n.controller)
		}
		args = append(args, "--controller-quorum-voters", strings.Join(voters, ","),
			"--http-listen", n.http, "--data-dir", n.dataDir, "--schema-registry-listen", "")
		for _, kv := range brokerConfigs() {
			args = append(args, "-c", kv)
		}
		if !n.voter {
			args = append(args, "-c", "process.roles=broker")
		}
		name := fmt.Sprintf("node%d", n.id)
		n.proc = nemesis.NewProcess(nemesis.ProcessConfig{
			Name:  name,
			Path:  sluiceBin,
			Args:  args,
			Ready: func(line string) bool { return strings.Contains(line, "sluice serving") },
			Logf: func(format string, args ...any) {
				line := fmt.Sprintf(format, args...)
				n.tail.add(line)
				elog.line(line)
			},
		})
		elog.printf("%s: %s %s", name, sluiceBin, strings.Join(args, " "))
	}
	t.Cleanup(func() { c.stop() })

	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.proc.Start(sctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("starting the cluster: %v\n%s", err, c.tails())
	}

	admin, err := kgo.NewClient(c.clientOpts("admin")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	c.admin, c.adm = admin, kadm.NewClient(admin)
	return c
}

// stop ends every node, SIGTERM first (a clean shutdown ends sooner than a
// kill's recovery would on a rerun, and its log says whether it worked),
// SIGKILL after killTimeout. Only the processes this test started, by PID.
func (c *cluster) stop() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n.proc == nil || !n.proc.Running() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.proc.Terminate(killTimeout); err != nil {
				c.log.printf("%s: stop: %v", n.proc.Name(), err)
			}
		}()
	}
	wg.Wait()
}

// clientOpts are the options of every client of the test: seeded with the
// Kafka proxies, dialing from clientIP, quick to refresh metadata after a
// leader moves, its log (warnings, or CHAOS_CLIENT_LOG's level) into the
// event log prefixed with name. AlwaysRetryEOF: a proxy whose
// node is down accepts a connection and closes it (where the node's own
// port would refuse it), which kgo otherwise takes for a TLS misconfiguration
// and fails the records at once instead of retrying.
func (c *cluster) clientOpts(name string) []kgo.Opt {
	var seeds []string
	for _, n := range c.nodes {
		seeds = append(seeds, n.kafkaProxy.Addr())
	}
	d := &net.Dialer{Timeout: dialTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}}
	return []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.Dialer(d.DialContext),
		kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.RequestTimeoutOverhead(5 * time.Second),
		kgo.AlwaysRetryEOF(),
		kgo.WithLogger(kgo.BasicLogger(c.log, c.clientLogLevel, func() string { return name + ": " })),
	}
}

// nemesisNodes describes the nodes to the nemesis: a process, its Kafka
// proxy and its controller proxy, its source address.
func (c *cluster) nemesisNodes() []nemesis.Node {
	var ns []nemesis.Node
	for _, n := range c.nodes {
		nd := nemesis.Node{Proc: n.proc, Proxy: n.kafkaProxy, IP: n.ip}
		if n.controllerProxy != nil {
			nd.OtherProxies = []*proxy.Proxy{n.controllerProxy}
		}
		ns = append(ns, nd)
	}
	return ns
}

// index is the position in c.nodes of the node with id, -1 if none.
func (c *cluster) index(id int32) int {
	return slices.IndexFunc(c.nodes, func(n *node) bool { return n.id == id })
}

// metadata asks any reachable node for the cluster's metadata and the
// topic's.
func (c *cluster) metadata(ctx context.Context) (kadm.Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	return c.adm.Metadata(ctx, topic)
}

// controllerMetadata is the cluster's metadata and the topic's as the
// active controller sees it: the metadata quorum's leader, named by
// DescribeQuorum, answers Metadata from its own image. Any other node
// answers from its image, which may lag after a fault: the broker-only
// node, cut off from the quorum's leader for 3 s, was seen answering the
// replicas and ISR of 6 s before, 4 s after its links healed and 3 s after
// the controller unfenced it (which, as in Kafka, waits only for the
// broker to have applied its own registration), and waitSettled, asking
// any node, took that for settled while the controller's ISR had 2
// replicas (seed 2 of CHAOS_DRAIN=1 CHAOS_ROUNDS=6).
func (c *cluster) controllerMetadata(ctx context.Context) (kadm.Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	ctl, err := c.activeController(ctx, c.admin)
	if err != nil {
		return kadm.Metadata{}, err
	}
	req := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, mt)
	resp, err := req.RequestWith(ctx, c.admin.Broker(int(ctl)))
	if err != nil {
		return kadm.Metadata{}, fmt.Errorf("metadata from node%d, the active controller: %w", ctl, err)
	}
	return metadataOf(resp), nil
}

// metadataOf is resp as kadm.Metadata (the fields the harness reads).
func metadataOf(resp *kmsg.MetadataResponse) kadm.Metadata {
	m := kadm.Metadata{Controller: resp.ControllerID, Topics: kadm.TopicDetails{}}
	if resp.ClusterID != nil {
		m.Cluster = *resp.ClusterID
	}
	for _, b := range resp.Brokers {
		m.Brokers = append(m.Brokers, kadm.BrokerDetail{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack})
	}
	slices.SortFunc(m.Brokers, func(a, b kadm.BrokerDetail) int { return int(a.NodeID - b.NodeID) })
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		td := kadm.TopicDetail{Topic: *t.Topic, IsInternal: t.IsInternal, Partitions: kadm.PartitionDetails{}, Err: kerr.ErrorForCode(t.ErrorCode)}
		for _, p := range t.Partitions {
			td.Partitions[p.Partition] = kadm.PartitionDetail{Topic: *t.Topic, Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
				Replicas: p.Replicas, ISR: p.ISR, OfflineReplicas: p.OfflineReplicas, Err: kerr.ErrorForCode(p.ErrorCode)}
		}
		m.Topics[*t.Topic] = td
	}
	return m
}

// createTopic creates the topic, retrying while the cluster forms (no
// controller yet, brokers still fenced) until createTimeout.
func (c *cluster) createTopic(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	minISR := strconv.Itoa(minInsyncReplicas)
	configs := map[string]*string{"min.insync.replicas": &minISR}
	var last error
	for {
		resp, err := c.adm.CreateTopic(ctx, partitions, replicationFactor, configs, topic)
		if err == nil {
			err = resp.Err
		}
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			return nil
		}
		last = err
		c.log.printf("test: creating topic %s: %v (retrying)", topic, err)
		if !sleep(ctx, pollInterval) {
			return fmt.Errorf("creating topic %s: %w (last error: %v)", topic, ctx.Err(), last)
		}
	}
}

// unsettled says what keeps m from being settled: each of the nodes a
// broker, a controller, and every partition of the topic with a leader and
// replicationFactor replicas, all in sync; "" when it is.
func unsettled(m kadm.Metadata, nodes int) string {
	var why []string
	if len(m.Brokers) != nodes {
		why = append(why, fmt.Sprintf("brokers %v", m.Brokers.NodeIDs()))
	}
	if m.Controller < 0 {
		why = append(why, "no controller")
	}
	td, ok := m.Topics[topic]
	switch {
	case !ok:
		why = append(why, "topic missing")
	case td.Err != nil:
		why = append(why, fmt.Sprintf("topic: %v", td.Err))
	case len(td.Partitions) != partitions:
		why = append(why, fmt.Sprintf("%d partitions", len(td.Partitions)))
	}
	for _, p := range td.Partitions.Sorted() {
		if p.Err != nil || p.Leader < 0 || len(p.Replicas) != replicationFactor || len(p.ISR) != len(p.Replicas) {
			why = append(why, describePartition(p))
		}
	}
	return strings.Join(why, "; ")
}

func describePartition(p kadm.PartitionDetail) string {
	s := fmt.Sprintf("partition %d: leader %d epoch %d replicas %v isr %v", p.Partition, p.Leader, p.LeaderEpoch, p.Replicas, p.ISR)
	if len(p.OfflineReplicas) > 0 {
		s += fmt.Sprintf(" offline %v", p.OfflineReplicas)
	}
	if p.Err != nil {
		s += fmt.Sprintf(" error %v", p.Err)
	}
	return s
}

// describe is m's controller and partitions in one line.
func describe(m kadm.Metadata) string {
	parts := []string{fmt.Sprintf("controller %d, brokers %v", m.Controller, m.Brokers.NodeIDs())}
	for _, p := range m.Topics[topic].Partitions.Sorted() {
		parts = append(parts, describePartition(p))
	}
	return strings.Join(parts, "; ")
}

// waitSettled waits up to timeout for the cluster to settle (unsettled),
// as the active controller sees it, and returns the metadata that showed
// it, or an error with the last state.
func (c *cluster) waitSettled(ctx context.Context, timeout time.Duration) (kadm.Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no metadata answer"
	for {
		m, err := c.controllerMetadata(ctx)
		if err != nil {
			last = fmt.Sprintf("metadata: %v", err)
		} else if last = unsettled(m, len(c.nodes)); last == "" {
			return m, nil
		}
		if !sleep(ctx, pollInterval) {
			return m, fmt.Errorf("the cluster did not settle within %v: %s", timeout, last)
		}
	}
}

// target returns the nemesis's Target: every other call the active
// controller, in between the leader of each partition in turn, as the
// metadata says; -1 when it does not answer.
func (c *cluster) target(ctx context.Context, logf func(string, ...any)) func() int {
	calls := 0
	return func() int {
		calls++
		m, err := c.metadata(ctx)
		if err != nil {
			logf("target: no metadata: %v", err)
			return -1
		}
		if calls%2 == 1 {
			logf("target: the active controller, node %d", m.Controller)
			return c.index(m.Controller)
		}
		p := int32(calls/2-1) % partitions
		leader := int32(-1)
		if d, ok := m.Topics[topic].Partitions[p]; ok {
			leader = d.Leader
		}
		logf("target: the leader of partition %d, node %d", p, leader)
		return c.index(leader)
	}
}

// running says which nodes are not running, "" when all are.
func (c *cluster) notRunning() string {
	var down []string
	for _, n := range c.nodes {
		if !n.proc.Running() {
			down = append(down, fmt.Sprintf("%s (%v)", n.proc.Name(), n.proc.ExitErr()))
		}
	}
	return strings.Join(down, ", ")
}

// tails is the last lines of every node's output.
func (c *cluster) tails() string {
	var b strings.Builder
	for _, n := range c.nodes {
		fmt.Fprintf(&b, "--- last lines of node%d (pid %d) ---\n", n.id, n.proc.PID())
		for _, l := range n.tail.lines() {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// envLogLevel is the kgo log level named by the environment variable
// (error, warn, info or debug), def when unset.
func envLogLevel(t *testing.T, name string, def kgo.LogLevel) kgo.LogLevel {
	t.Helper()
	switch v := os.Getenv(name); strings.ToLower(v) {
	case "":
		return def
	case "error":
		return kgo.LogLevelError
	case "warn":
		return kgo.LogLevelWarn
	case "info":
		return kgo.LogLevelInfo
	case "debug":
		return kgo.LogLevelDebug
	default:
		t.Fatalf("%s=%q: want error, warn, info or debug", name, v)
		return def
	}
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// lineRing keeps the last lines of a node's output. Safe for concurrent
// use.
type lineRing struct {
	mu   sync.Mutex
	buf  []string
	next int
	full bool
}

func newLineRing(n int) *lineRing { return &lineRing{buf: make([]string, n)} }

func (r *lineRing) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

func (r *lineRing) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return slices.Clone(r.buf[:r.next])
	}
	return append(slices.Clone(r.buf[r.next:]), r.buf[:r.next]...)
}

// eventLog is the run's timeline in one file: every node's output, the
// nemesis's and the test's steps and the clients' warnings, a line each,
// prefixed with the wall-clock time and the time since the start. Safe for
// concurrent use; lines after close are dropped (a node's last words after
// the test ended).
type eventLog struct {
	start time.Time

	mu     sync.Mutex
	f      *os.File
	closed bool
	err    error // the first write error
}

func newEventLog(path string, start time.Time) (*eventLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &eventLog{start: start, f: f}, nil
}

func (l *eventLog) printf(format string, args ...any) { l.line(fmt.Sprintf(format, args...)) }

func (l *eventLog) line(s string) {
	now := time.Now()
	s = fmt.Sprintf("%s +%7.3fs %s\n", now.Format("15:04:05.000"), now.Sub(l.start).Seconds(), strings.TrimRight(s, "\n"))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if _, err := l.f.WriteString(s); err != nil && l.err == nil {
		l.err = err
	}
}

// Write takes the clients' log output (kgo's BasicLogger writes a line at a
// time).
func (l *eventLog) Write(p []byte) (int, error) {
	for _, s := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.line("client: " + s)
	}
	return len(p), nil
}

func (l *eventLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return errors.Join(l.err, l.f.Close())
}
