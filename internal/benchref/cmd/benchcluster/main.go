// Command benchcluster is the client side of scripts/bench-cluster.sh: the
// measurements of a running cluster that `sluice bench` does not make. It
// starts and stops no broker; the script owns the nodes and passes their
// PIDs where one is to be killed. Each subcommand prints one JSON line.
//
//	benchcluster healthy -brokers B -topics T1,T2 [-elect]
//	    waits until every replica of the topics' partitions is in the ISR
//	    (and, with -elect, each partition is led by its preferred replica,
//	    asking ElectLeaders for those that are not)
//	benchcluster failover -brokers B -topic T -partition P -pids 1=PID,2=PID,3=PID
//	    produces to P every -interval with a default kgo producer
//	    (idempotent, acks=all), kill -9s P's leader, and reports the gap in
//	    acknowledgements around the kill
//	benchcluster produce-loop -brokers B -topic T -partitions N
//	    produces every -interval, round robin over the N partitions, until
//	    SIGTERM or SIGINT (or -max-duration), then reports the errors the
//	    application saw and the latencies
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Limits.
const (
	// maxSamples bounds the acknowledgements a failover round or a
	// produce loop keeps (one a 10 ms tick is 100 a second: 10 minutes).
	maxSamples = 60_000
	// electEvery is the least time between two ElectLeaders requests of
	// one `healthy` wait.
	electEvery = 500 * time.Millisecond
	// maxTimeline bounds the Metadata changes a failover round keeps.
	maxTimeline = 200
	// flushTimeout bounds the wait for records still buffered when a
	// failover round or a produce loop stops.
	flushTimeout = 60 * time.Second
	// recordBytes is the value size of every record produced here.
	recordBytes = 100
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchcluster healthy|failover|produce-loop [flags] (-h for a subcommand's flags)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "healthy":
		err = runHealthy(ctx, os.Args[2:])
	case "failover":
		err = runFailover(ctx, os.Args[2:])
	case "produce-loop":
		err = runProduceLoop(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q: want healthy, failover or produce-loop", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcluster:", err)
		stop()
		os.Exit(1)
	}
}

func printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(b))
	return err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func newAdmin(brokers string) (*kadm.Client, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(cl), nil
}

// producerOpts are kgo's defaults (idempotent, acks=all, unbounded record
// retries) to partitions chosen by the caller; -log adds kgo's info log on
// stderr and -metadata-min-age overrides kgo's 5 s when not 0.
func producerOpts(brokers, topic string, logInfo bool, metaMinAge time.Duration) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	}
	if logInfo {
		opts = append(opts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, func() string {
			return time.Now().Format("15:04:05.000 ")
		})))
	}
	if metaMinAge > 0 {
		opts = append(opts, kgo.MetadataMinAge(metaMinAge))
	}
	return opts
}

// ---- healthy ----

type healthyResult struct {
	Op           string  `json:"op"`
	Topics       string  `json:"topics"`
	ISRSeconds   float64 `json:"isr_seconds"`  // until every replica was in the ISR
	Seconds      float64 `json:"seconds"`      // until done (with -elect: preferred leaders too)
	Elections    int     `json:"elections"`    // ElectLeaders requests sent
	DoneUnixMs   int64   `json:"done_unix_ms"` // when the wait ended
	ISRUnixMs    int64   `json:"isr_unix_ms"`  // when the ISR was first seen full
	Partitions   int     `json:"partitions"`
	NotPreferred int     `json:"not_preferred_at_start"`
}

func runHealthy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("healthy", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "seed brokers, comma-separated")
	topics := fs.String("topics", "", "topics to watch, comma-separated (required)")
	elect := fs.Bool("elect", false, "also restore preferred leaders with ElectLeaders")
	timeout := fs.Duration("timeout", 180*time.Second, "give up after this long")
	poll := fs.Duration("poll", 100*time.Millisecond, "time between two Metadata requests")
	_ = fs.Parse(args)
	if *topics == "" {
		return errors.New("healthy: -topics is required")
	}
	adm, err := newAdmin(*brokers)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	names := strings.Split(*topics, ",")
	start := time.Now()
	res := healthyResult{Op: "healthy", Topics: *topics, NotPreferred: -1}
	var isrAt, lastElect time.Time
	var last string
	for {
		md, err := adm.Metadata(ctx, names...)
		state, notPreferred, nNotPreferred, parts := "", kadm.TopicsSet{}, 0, 0
		if err != nil {
			state = "metadata: " + err.Error()
		}
		for _, name := range names {
			if err != nil {
				break
			}
			t, ok := md.Topics[name]
			if !ok || t.Err != nil {
				state = fmt.Sprintf("topic %s: %v", name, t.Err)
				break
			}
			for _, p := range t.Partitions.Sorted() {
				parts++
				switch {
				case p.Err != nil:
					state = fmt.Sprintf("%s/%d: %v", name, p.Partition, p.Err)
				case len(p.ISR) < len(p.Replicas):
					state = fmt.Sprintf("%s/%d: isr %v of replicas %v", name, p.Partition, p.ISR, p.Replicas)
				case len(p.Replicas) > 0 && p.Leader != p.Replicas[0]:
					notPreferred.Add(name, p.Partition)
					nNotPreferred++
				}
			}
		}
		if state == "" {
			if isrAt.IsZero() {
				isrAt = time.Now()
				res.NotPreferred = nNotPreferred
			}
			if !*elect || nNotPreferred == 0 {
				res.Partitions = parts
				break
			}
			state = fmt.Sprintf("%d partitions not led by their preferred replica", nNotPreferred)
			if time.Since(lastElect) >= electEvery {
				lastElect = time.Now()
				res.Elections++
				if _, err := adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, notPreferred); err != nil {
					state += "; ElectLeaders: " + err.Error()
				}
			}
		}
		if state != last {
			fmt.Fprintf(os.Stderr, "%s healthy: waiting: %s\n", time.Now().Format("15:04:05.000"), state)
			last = state
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("healthy: not healthy after %v: %s", time.Since(start).Round(time.Millisecond), state)
		case <-time.After(*poll):
		}
	}
	now := time.Now()
	res.Seconds = now.Sub(start).Seconds()
	res.ISRSeconds = isrAt.Sub(start).Seconds()
	res.DoneUnixMs = now.UnixMilli()
	res.ISRUnixMs = isrAt.UnixMilli()
	return printJSON(res)
}

// ---- producing on a tick ----

type ack struct {
	sent, acked time.Time
	partition   int32
	err         error
}

// ticker produces one record every interval, round robin over partitions,
// and keeps every acknowledgement (up to maxSamples).
type ticker struct {
	cl *kgo.Client

	mu       sync.Mutex
	acks     []ack
	produced int
	dropped  int // acknowledgements past maxSamples, not kept
}

func (t *ticker) run(ctx context.Context, interval time.Duration, partitions []int32) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	value := []byte(strings.Repeat("x", recordBytes))
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		r := &kgo.Record{Partition: partitions[i%len(partitions)], Value: value}
		sent := time.Now()
		t.mu.Lock()
		t.produced++
		t.mu.Unlock()
		// Produce, not TryProduce: with the buffer full it blocks, as an
		// application's would.
		t.cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
			a := ack{sent: sent, acked: time.Now(), partition: r.Partition, err: err}
			t.mu.Lock()
			if len(t.acks) < maxSamples {
				t.acks = append(t.acks, a)
			} else {
				t.dropped++
			}
			t.mu.Unlock()
		})
	}
}

func (t *ticker) snapshot() []ack {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.acks)
}

type latencies struct {
	P50Ms, P99Ms, MaxMs float64
}

func latencyOf(acks []ack) latencies {
	var ds []time.Duration
	for _, a := range acks {
		if a.err == nil {
			ds = append(ds, a.acked.Sub(a.sent))
		}
	}
	if len(ds) == 0 {
		return latencies{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 { return ms(ds[min(len(ds)-1, int(q*float64(len(ds))))]) }
	return latencies{P50Ms: at(0.50), P99Ms: at(0.99), MaxMs: ms(ds[len(ds)-1])}
}

// maxAckGap is the longest time between two successive successful
// acknowledgements at or after from, and when it ended.
func maxAckGap(acks []ack, from time.Time) (gap time.Duration, end time.Time) {
	var ts []time.Time
	for _, a := range acks {
		if a.err == nil && !a.acked.Before(from) {
			ts = append(ts, a.acked)
		}
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(ts); i++ {
		if d := ts[i].Sub(ts[i-1]); d > gap {
			gap, end = d, ts[i]
		}
	}
	return gap, end
}

func errorKinds(acks []ack) (n int, kinds map[string]int) {
	kinds = map[string]int{}
	for _, a := range acks {
		if a.err != nil {
			n++
			kinds[a.err.Error()]++
		}
	}
	return n, kinds
}

// ---- failover ----

// clientFailover is what one producer saw of one partition in a round.
type clientFailover struct {
	Client       string         `json:"client"`
	Partition    int32          `json:"partition"`
	Role         string         `json:"role"` // "leader": the killed node led it; "follower": it was in its ISR
	Recovered    bool           `json:"recovered"`
	GapMs        float64        `json:"gap_ms"`               // last ack before the kill to the first after it
	KillToAckMs  float64        `json:"kill_to_first_ack_ms"` // the kill to the first ack after the outage
	LastBeforeMs float64        `json:"last_ack_before_kill_ms"`
	Produced     int            `json:"produced"`
	Acked        int            `json:"acked"`
	Errors       int            `json:"errors"`
	ErrorKinds   map[string]int `json:"error_kinds,omitempty"`
	LatencyMaxMs float64        `json:"latency_max_ms"`
	LatencyP99Ms float64        `json:"latency_p99_ms"`
}

type failoverResult struct {
	Op               string  `json:"op"`
	Topic            string  `json:"topic"`
	Partition        int32   `json:"partition"`
	KilledNode       int32   `json:"killed_node"`
	KilledPid        int     `json:"killed_pid"`
	KilledController bool    `json:"killed_controller"` // the partition's leader was the active controller too
	NewLeader        int32   `json:"new_leader"`
	LeaderVisibleMs  float64 `json:"leader_visible_ms"` // the kill to a Metadata answer naming another leader (-1: not seen)
	// The default kgo producer's view of the partition whose leader was
	// killed: the figure.
	Recovered   bool    `json:"recovered"`
	GapMs       float64 `json:"gap_ms"`
	KillToAckMs float64 `json:"kill_to_first_ack_ms"`
	Errors      int     `json:"errors"`
	// Every producer and partition watched.
	Clients []clientFailover `json:"clients"`
	// Metadata's leader and ISR of the two partitions, at each change
	// (ms after the kill).
	Timeline []string `json:"metadata_timeline"`
}

// partitionsAt is Metadata of topic as broker id answers it.
func partitionsAt(ctx context.Context, cl *kgo.Client, id int32, topic string) (map[int32]kadm.PartitionDetail, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl.Broker(int(id)))
	if err != nil {
		return nil, err
	}
	out := map[int32]kadm.PartitionDetail{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out[p.Partition] = kadm.PartitionDetail{Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
				Replicas: p.Replicas, ISR: p.ISR}
		}
	}
	return out, nil
}

func parsePids(s string) (map[int32]int, error) {
	pids := map[int32]int{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		id, err1 := strconv.ParseInt(k, 10, 32)
		pid, err2 := strconv.Atoi(v)
		if !ok || err1 != nil || err2 != nil || pid <= 1 {
			return nil, fmt.Errorf("-pids %q: want NODE=PID,...", s)
		}
		pids[int32(id)] = pid
	}
	return pids, nil
}

// watched is one producer's ticker on one partition.
type watched struct {
	client, role string
	partition    int32
	t            *ticker
}

func (w watched) recoveredAt(killed time.Time) time.Time {
	for _, a := range w.t.snapshot() {
		if a.err == nil && a.sent.After(killed) {
			return a.acked
		}
	}
	return time.Time{}
}

func (w watched) result(killed time.Time, recovered bool) clientFailover {
	acks := w.t.snapshot()
	r := clientFailover{Client: w.client, Partition: w.partition, Role: w.role, Recovered: recovered}
	var lastBefore time.Time
	for _, a := range acks {
		if a.err == nil && !a.acked.After(killed) && a.acked.After(lastBefore) {
			lastBefore = a.acked
		}
	}
	if recovered {
		gap, end := maxAckGap(acks, lastBefore)
		r.GapMs, r.KillToAckMs = ms(gap), ms(end.Sub(killed))
	}
	r.LastBeforeMs = ms(killed.Sub(lastBefore))
	w.t.mu.Lock()
	r.Produced = w.t.produced
	w.t.mu.Unlock()
	r.Errors, r.ErrorKinds = errorKinds(acks)
	r.Acked = len(acks) - r.Errors
	l := latencyOf(acks)
	r.LatencyMaxMs, r.LatencyP99Ms = l.MaxMs, l.P99Ms
	return r
}

func runFailover(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("failover", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "seed brokers, comma-separated")
	topic := fs.String("topic", "", "topic (required)")
	partition := fs.Int("partition", 0, "the partition whose leader is killed")
	pidList := fs.String("pids", "", "NODE=PID of every node, comma-separated (required)")
	interval := fs.Duration("interval", 10*time.Millisecond, "time between two records to a partition")
	warmup := fs.Duration("warmup", 2*time.Second, "produce this long before the kill")
	settle := fs.Duration("settle", time.Second, "produce this long after every producer has an ack that follows the kill")
	timeout := fs.Duration("timeout", 60*time.Second, "give up waiting for an ack after the kill after this long")
	logInfo := fs.Bool("log", false, "kgo's info log on stderr")
	fastAge := fs.Duration("fast-metadata-min-age", 100*time.Millisecond, "a second kgo producer with this MetadataMinAge (kgo's default is 5s; 0: no second producer)")
	_ = fs.Parse(args)
	pids, err := parsePids(*pidList)
	if err != nil {
		return err
	}
	if *topic == "" {
		return errors.New("failover: -topic is required")
	}
	p := int32(*partition)
	adm, err := newAdmin(*brokers)
	if err != nil {
		return err
	}
	defer adm.Close()
	md, err := adm.Metadata(ctx, *topic)
	if err != nil {
		return fmt.Errorf("failover: metadata: %w", err)
	}
	parts := md.Topics[*topic].Partitions
	pd, ok := parts[p]
	if !ok || pd.Leader < 0 {
		return fmt.Errorf("failover: %s/%d has no leader in %+v", *topic, p, md.Topics[*topic])
	}
	killNode := pd.Leader
	pid, ok := pids[killNode]
	if !ok {
		return fmt.Errorf("failover: no PID given for node %d, the leader of %s/%d", killNode, *topic, p)
	}
	// A partition another node leads with the killed node in its ISR: what
	// acks=all producers to it see while that follower is gone.
	q := int32(-1)
	for _, d := range parts.Sorted() {
		if d.Leader >= 0 && d.Leader != killNode && slices.Contains(d.ISR, killNode) {
			q = d.Partition
			break
		}
	}
	res := failoverResult{Op: "failover", Topic: *topic, Partition: p, KilledNode: killNode, KilledPid: pid,
		KilledController: quorumLeader(ctx, *brokers) == killNode, NewLeader: -1, LeaderVisibleMs: -1}
	// Metadata during the round comes from one surviving broker, asked
	// directly (a client's "any broker" may be the dead one).
	ask := int32(-1)
	for _, b := range md.Brokers {
		if b.NodeID != killNode && (ask < 0 || b.NodeID < ask) {
			ask = b.NodeID
		}
	}
	pollCl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...))
	if err != nil {
		return err
	}
	defer pollCl.Close()
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, pollCl); err != nil { // learns the brokers
		return fmt.Errorf("failover: metadata: %w", err)
	}
	if _, err := partitionsAt(ctx, pollCl, ask, *topic); err != nil {
		return fmt.Errorf("failover: metadata from node %d: %w", ask, err)
	}

	type client struct {
		name string
		age  time.Duration
	}
	clients := []client{{"kgo", 0}}
	if *fastAge > 0 {
		clients = append(clients, client{"kgo-metadata-min-age-" + fastAge.String(), *fastAge})
	}
	var ws []watched
	var cls []*kgo.Client
	defer func() {
		for _, cl := range cls {
			cl.Close()
		}
	}()
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	var wg sync.WaitGroup
	// A client of its own for each partition: kgo keeps one produce request
	// in flight per broker, so a partition stalled on a broker would hold
	// the other partition's records to the same broker back.
	targets := []struct {
		role string
		p    int32
	}{{"leader", p}}
	if q >= 0 {
		targets = append(targets, struct {
			role string
			p    int32
		}{"follower", q})
	}
	for _, c := range clients {
		for _, tg := range targets {
			cl, err := kgo.NewClient(producerOpts(*brokers, *topic, *logInfo && c.age == 0 && tg.role == "leader", c.age)...)
			if err != nil {
				return err
			}
			cls = append(cls, cl)
			w := watched{client: c.name, role: tg.role, partition: tg.p, t: &ticker{cl: cl}}
			ws = append(ws, w)
			wg.Add(1)
			go func() { defer wg.Done(); w.t.run(pctx, *interval, []int32{tg.p}) }()
		}
	}

	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(*warmup):
	}
	for _, w := range ws {
		if n, kinds := errorKinds(w.t.snapshot()); n > 0 || len(w.t.snapshot()) == 0 {
			return fmt.Errorf("failover: before the kill: %s p%d: %d acks, errors %v", w.client, w.partition, len(w.t.snapshot()), kinds)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("failover: kill -9 %d (node %d): %w", pid, killNode, err)
	}
	killed := time.Now()
	fmt.Fprintf(os.Stderr, "%s failover: killed node %d (pid %d), leader of %s/%d (watching p%d as a follower partition)\n",
		killed.Format("15:04:05.000"), killNode, pid, *topic, p, q)

	// The broker side: when a Metadata answer first names another leader,
	// and every change of the two partitions' leader and ISR as Metadata
	// answers show them, until the producers stop.
	visibleDone := make(chan struct{})
	go func() {
		defer close(visibleDone)
		last := ""
		for pctx.Err() == nil && len(res.Timeline) < maxTimeline {
			mctx, cancel := context.WithTimeout(pctx, time.Second)
			parts, err := partitionsAt(mctx, pollCl, ask, *topic)
			cancel()
			if err == nil {
				at := ms(time.Since(killed))
				if l := parts[p].Leader; l >= 0 && l != killNode && res.LeaderVisibleMs < 0 {
					res.LeaderVisibleMs = at
				}
				now := fmt.Sprintf("p%d leader %d isr %v", p, parts[p].Leader, parts[p].ISR)
				if q >= 0 {
					now += fmt.Sprintf("; p%d leader %d isr %v", q, parts[q].Leader, parts[q].ISR)
				}
				if now != last {
					res.Timeline = append(res.Timeline, fmt.Sprintf("%.0f ms: %s", at, now))
					last = now
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// Recovered once every watched partition has an ack of a record sent
	// after the kill.
	deadline := killed.Add(*timeout)
	recovered := make([]bool, len(ws))
	for time.Now().Before(deadline) && ctx.Err() == nil {
		all := true
		for i, w := range ws {
			if !recovered[i] {
				recovered[i] = !w.recoveredAt(killed).IsZero()
			}
			all = all && recovered[i]
		}
		if all {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(*settle)
	stopProducing()
	wg.Wait()
	<-visibleDone
	for _, cl := range cls {
		fctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		_ = cl.Flush(fctx)
		cancel()
	}
	for i, w := range ws {
		r := w.result(killed, recovered[i])
		res.Clients = append(res.Clients, r)
		if w.client == "kgo" && w.role == "leader" {
			res.Recovered, res.GapMs, res.KillToAckMs, res.Errors = r.Recovered, r.GapMs, r.KillToAckMs, r.Errors
		}
	}
	if md, err := adm.Metadata(ctx, *topic); err == nil {
		res.NewLeader = md.Topics[*topic].Partitions[p].Leader
	}
	return printJSON(res)
}

// ---- produce-loop ----

type loopResult struct {
	Op           string         `json:"op"`
	Client       string         `json:"client"`
	Topic        string         `json:"topic"`
	Seconds      float64        `json:"seconds"`
	Produced     int            `json:"produced"`
	Acked        int            `json:"acked"`
	Errors       int            `json:"errors"` // delivery errors surfaced to the application
	Unanswered   int            `json:"unanswered"`
	ErrorKinds   map[string]int `json:"error_kinds,omitempty"`
	P50Ms        float64        `json:"latency_p50_ms"`
	P99Ms        float64        `json:"latency_p99_ms"`
	MaxMs        float64        `json:"latency_max_ms"`
	MaxAckGapMs  float64        `json:"max_ack_gap_ms"`
	DroppedStats int            `json:"samples_dropped,omitempty"`
}

func runProduceLoop(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("produce-loop", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "seed brokers, comma-separated")
	topic := fs.String("topic", "", "topic (required)")
	partitions := fs.Int("partitions", 6, "produce round robin to partitions 0..N-1")
	interval := fs.Duration("interval", 10*time.Millisecond, "time between two records")
	maxDuration := fs.Duration("max-duration", 10*time.Minute, "stop after this long even without a signal")
	logInfo := fs.Bool("log", false, "kgo's info log on stderr")
	metaMinAge := fs.Duration("metadata-min-age", 0, "kgo MetadataMinAge (0: kgo's default, 5s)")
	name := fs.String("name", "kgo", "the client's name in the result")
	_ = fs.Parse(args)
	if *topic == "" || *partitions < 1 {
		return errors.New("produce-loop: -topic and -partitions >= 1 are required")
	}
	cl, err := kgo.NewClient(producerOpts(*brokers, *topic, *logInfo, *metaMinAge)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var ps []int32
	for i := range *partitions {
		ps = append(ps, int32(i))
	}
	t := &ticker{cl: cl}
	pctx, cancel := context.WithTimeout(ctx, *maxDuration)
	defer cancel()
	start := time.Now()
	fmt.Fprintf(os.Stderr, "%s produce-loop: producing\n", start.Format("15:04:05.000"))
	t.run(pctx, *interval, ps) // until the signal or max-duration
	fctx, fcancel := context.WithTimeout(context.Background(), flushTimeout)
	_ = cl.Flush(fctx)
	fcancel()
	acks := t.snapshot()
	res := loopResult{Op: "produce-loop", Client: *name, Topic: *topic, Seconds: time.Since(start).Seconds()}
	t.mu.Lock()
	res.Produced, res.DroppedStats = t.produced, t.dropped
	t.mu.Unlock()
	res.Errors, res.ErrorKinds = errorKinds(acks)
	res.Acked = len(acks) - res.Errors
	res.Unanswered = res.Produced - len(acks) - res.DroppedStats
	l := latencyOf(acks)
	res.P50Ms, res.P99Ms, res.MaxMs = l.P50Ms, l.P99Ms, l.MaxMs
	gap, _ := maxAckGap(acks, start)
	res.MaxAckGapMs = ms(gap)
	return printJSON(res)
}

// quorumLeader is the metadata quorum's leader, the active controller, from
// DescribeQuorum (Metadata's controller id names a broker, which with
// dedicated controllers is not the controller); -1 if unknown.
func quorumLeader(ctx context.Context, brokers string) int32 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return -1
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeQuorumRequest()
	rt := kmsg.NewDescribeQuorumRequestTopic()
	rt.Topic = "__cluster_metadata"
	rt.Partitions = []kmsg.DescribeQuorumRequestTopicPartition{{Partition: 0}}
	req.Topics = []kmsg.DescribeQuorumRequestTopic{rt}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		return -1
	}
	return resp.Topics[0].Partitions[0].LeaderID
}
