package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// DefaultTopic is the audit topic.
	DefaultTopic = "__sluice_audit"
	// DefaultInterval is how often a heartbeat goes to every partition.
	DefaultInterval = time.Second
	// DefaultGrace is how long after its acknowledgement a heartbeat may
	// take to be seen before it counts as lost; also the producer's
	// delivery timeout.
	DefaultGrace = 30 * time.Second
	// topicRetention is the retention.ms of an audit topic the auditor
	// creates: heartbeats are worth nothing once seen.
	topicRetention = time.Hour
	// maxReplicationFactor of an audit topic the auditor creates (fewer
	// with fewer brokers).
	maxReplicationFactor = 3
	// metadataRefresh is how often the partitions' leaders are read again.
	metadataRefresh = 10 * time.Second
	// maxBufferedHeartbeats bounds the heartbeats waiting in the client for
	// the cluster (kgo's MaxBufferedRecords); over it a heartbeat fails at
	// once, a produce error. The delivery timeout (the grace period) empties
	// it: 30 s of 500 partitions at the default interval.
	maxBufferedHeartbeats = 16384
	// errLogEvery is the least time between two logged produce or fetch
	// errors: a cluster that is down is said every 10 s, not every beat.
	errLogEvery = 10 * time.Second
	// fetchErrBackoff is the pause after a poll that returned only errors.
	fetchErrBackoff = 200 * time.Millisecond
	// leaderWait bounds the wait for the leaders of a topic just created.
	leaderWait = 30 * time.Second
	// leaderPoll is how often the metadata is read during leaderWait.
	leaderPoll = 100 * time.Millisecond
	// metadataMinAge is the clients' least time between metadata refreshes
	// (kgo's default is 5 s): a topic just created, or a leader that moved,
	// is found within it.
	metadataMinAge = 250 * time.Millisecond
)

// Options configure an Auditor.
type Options struct {
	// NewClient builds a franz-go client for the cluster with the given
	// options added (seed brokers, TLS, client id are the caller's).
	NewClient func(opts ...kgo.Opt) (*kgo.Client, error)
	Topic     string        // "": DefaultTopic
	Interval  time.Duration // 0: DefaultInterval
	Grace     time.Duration // 0: DefaultGrace
	// Partitions of the audit topic when the auditor creates it; 0: one per
	// broker. An existing topic is used as it is.
	Partitions int
	Logger     *slog.Logger // nil: discard
}

func (o *Options) defaults() error {
	if o.NewClient == nil {
		panic("BUG: audit: Options.NewClient is nil")
	}
	if o.Topic == "" {
		o.Topic = DefaultTopic
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// A heartbeat is settled within the delivery timeout (Grace) plus the
	// grace period; the window must still hold it then.
	if o.Interval*WindowSeqs <= 2*o.Grace {
		return fmt.Errorf("audit: --interval %s with --grace %s: a partition's window of %d heartbeats would forget some before they are settled; raise --interval or shorten --grace",
			o.Interval, o.Grace, WindowSeqs)
	}
	return nil
}

// Auditor produces a heartbeat to every partition of the audit topic every
// Interval and consumes them back, tracking loss, duplicates, order and
// latency per partition (Tracker). It speaks only the Kafka protocol.
//
// Concurrency: mu guards the tracker, the leaders and the brokers; it is
// held only for bookkeeping, never across a call into the client (a
// promise can run inside TryProduce). Report and the metrics are safe to
// read at any time; Start, StopProducing, Drain and Close are called from
// one goroutine, in that order.
type Auditor struct {
	o          Options
	instance   InstanceID
	partitions []int32
	prod       *kgo.Client // producer and admin
	adm        *kadm.Client
	cons       *kgo.Client   // direct assignment from the end offsets at New
	started    time.Time     // New's end: the "since last seen" of a partition that saw nothing
	changed    chan struct{} // a heartbeat was seen or acknowledged (capacity 1)

	mu           sync.Mutex
	tr           *Tracker
	leaders      map[int32]int32 // partition -> leader broker; -1: none
	brokers      []int32         // brokers of the cluster, sorted
	lastErrLog   time.Time       // of a produce error
	lastFetchLog time.Time       // of a fetch error

	stopProduce chan struct{}
	produceDone chan struct{} // closed when the producer loop has returned
	stopOnce    sync.Once
	wg          sync.WaitGroup // the producer, the consumer and the metadata loop
	promises    sync.WaitGroup // heartbeats handed to the producer whose promise has not run
	cancel      context.CancelFunc
	closeOnce   sync.Once
	registry    *prometheus.Registry
}

// New ensures the audit topic exists (creating it with one partition per
// broker, or Options.Partitions, a replication factor of min(3, brokers)
// and a retention of an hour), reads its end offsets, and prepares an
// auditor that will consume from them: every heartbeat it produces after
// Start is after those offsets. The caller calls Close.
func New(ctx context.Context, o Options) (*Auditor, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	a := &Auditor{o: o, changed: make(chan struct{}, 1), stopProduce: make(chan struct{}), produceDone: make(chan struct{}), leaders: map[int32]int32{}}
	if _, err := rand.Read(a.instance[:]); err != nil {
		return nil, fmt.Errorf("audit: instance id: %w", err)
	}
	prod, err := o.NewClient(
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()), // and idempotent, kgo's default
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(o.Grace),
		kgo.MaxBufferedRecords(maxBufferedHeartbeats),
		kgo.MetadataMinAge(metadataMinAge),
	)
	if err != nil {
		return nil, err
	}
	a.prod, a.adm = prod, kadm.NewClient(prod)
	if err := a.ensureTopic(ctx); err != nil {
		prod.Close()
		return nil, err
	}
	ends, err := a.adm.ListEndOffsets(ctx, o.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		prod.Close()
		return nil, fmt.Errorf("audit: end offsets of %s: %w", o.Topic, err)
	}
	at := map[int32]kgo.Offset{}
	for _, p := range a.partitions {
		l, ok := ends.Lookup(o.Topic, p)
		if !ok {
			prod.Close()
			return nil, fmt.Errorf("audit: no end offset for %s partition %d; is its leader up?", o.Topic, p)
		}
		at[p] = kgo.NewOffset().At(l.Offset)
	}
	a.cons, err = o.NewClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: at}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.MetadataMinAge(metadataMinAge),
	)
	if err != nil {
		prod.Close()
		return nil, err
	}
	a.tr = NewTracker(a.instance, a.partitions, o.Grace)
	a.started = time.Now()
	a.registry = newRegistry(a)
	return a, nil
}

// ensureTopic creates the audit topic when it is missing, and reads its
// partitions, their leaders and the brokers.
func (a *Auditor) ensureTopic(ctx context.Context) error {
	md, err := a.adm.Metadata(ctx, a.o.Topic)
	if err != nil {
		return fmt.Errorf("audit: metadata: %w", err)
	}
	td, ok := md.Topics[a.o.Topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		n := a.o.Partitions
		if n <= 0 {
			n = len(md.Brokers)
		}
		rf := min(maxReplicationFactor, len(md.Brokers))
		retention := strconv.FormatInt(topicRetention.Milliseconds(), 10)
		_, err := a.adm.CreateTopic(ctx, int32(n), int16(rf), map[string]*string{"retention.ms": &retention}, a.o.Topic)
		switch {
		case err == nil:
			a.o.Logger.Info("created the audit topic", "topic", a.o.Topic, "partitions", n, "replication_factor", rf)
		case !errors.Is(err, kerr.TopicAlreadyExists): // another auditor's, just created
			return fmt.Errorf("audit: create topic %s (%d partitions, replication factor %d): %w; create it yourself with `sluice topic create %s`",
				a.o.Topic, n, rf, err, a.o.Topic)
		}
		wctx, cancel := context.WithTimeout(ctx, leaderWait)
		defer cancel()
		for {
			if md, err = a.adm.Metadata(wctx, a.o.Topic); err == nil {
				if td = md.Topics[a.o.Topic]; td.Err == nil && len(td.Partitions) > 0 && allLed(td) {
					break
				}
			}
			select {
			case <-wctx.Done():
				return fmt.Errorf("audit: topic %s created, but its partitions have no leaders within %s", a.o.Topic, leaderWait)
			case <-time.After(leaderPoll):
			}
		}
	} else if td.Err != nil {
		return fmt.Errorf("audit: topic %s: %w", a.o.Topic, td.Err)
	}
	a.partitions = td.Partitions.Numbers()
	slices.Sort(a.partitions)
	a.setMetadata(md)
	a.mu.Lock()
	defer a.mu.Unlock()
	led := map[int32]bool{}
	for _, l := range a.leaders {
		led[l] = true
	}
	var idle []int32
	for _, b := range a.brokers {
		if !led[b] {
			idle = append(idle, b)
		}
	}
	if len(idle) > 0 {
		a.o.Logger.Warn("some brokers lead no partition of the audit topic and are not audited as leaders; add partitions (`sluice topic add-partitions`) or move leaders",
			"topic", a.o.Topic, "brokers", idle)
	}
	return nil
}

func allLed(td kadm.TopicDetail) bool {
	for _, p := range td.Partitions {
		if p.Leader < 0 {
			return false
		}
	}
	return true
}

// setMetadata takes the leaders and brokers of md.
func (a *Auditor) setMetadata(md kadm.Metadata) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.brokers = md.Brokers.NodeIDs()
	slices.Sort(a.brokers)
	for _, p := range md.Topics[a.o.Topic].Partitions {
		a.leaders[p.Partition] = p.Leader
	}
}

// Instance is this auditor's instance id, in every heartbeat it produces.
func (a *Auditor) Instance() InstanceID { return a.instance }

// Registry is the auditor's own Prometheus registry (sluice_audit_*, Go
// and process metrics).
func (a *Auditor) Registry() *prometheus.Registry { return a.registry }

// Start begins producing and consuming heartbeats, until StopProducing
// and Close (or ctx's end).
func (a *Auditor) Start(ctx context.Context) {
	ctx, a.cancel = context.WithCancel(ctx)
	a.wg.Add(3)
	go func() { defer a.wg.Done(); consume(ctx, a.cons, &a.mu, a.tr, a.o.Logger, &a.lastFetchLog, a.signal) }()
	go func() { defer a.wg.Done(); defer close(a.produceDone); a.produceLoop(ctx) }()
	go func() { defer a.wg.Done(); a.metadataLoop(ctx) }()
}

// signal says that the tracker changed.
func (a *Auditor) signal() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// StopProducing stops the heartbeats and returns once the last one is
// handed to the client (after Start); the consumer goes on.
func (a *Auditor) StopProducing() {
	a.stopOnce.Do(func() { close(a.stopProduce) })
	if a.cancel != nil { // started
		<-a.produceDone
	}
}

// Drain waits until every heartbeat sent is settled or seen, for at most
// the grace period, then settles the rest (Tracker.Finish). Call it after
// StopProducing.
func (a *Auditor) Drain(ctx context.Context) {
	timer := time.NewTimer(a.o.Grace)
	defer timer.Stop()
	for {
		a.mu.Lock()
		n := a.tr.Outstanding()
		a.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-a.changed:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		break
	}
	a.mu.Lock()
	a.tr.Finish()
	a.mu.Unlock()
}

// Close stops everything and closes the clients; heartbeats still in the
// client fail (and are ignored).
func (a *Auditor) Close() {
	a.closeOnce.Do(func() {
		a.StopProducing()
		if a.cancel != nil {
			a.cancel()
		}
		a.wg.Wait()
		a.prod.Close()
		// kgo fails the heartbeats still buffered on another goroutine:
		// their promises log, and must be done before Close returns.
		a.promises.Wait()
		a.cons.Close()
	})
}

// produceLoop sends a heartbeat to every partition at once and then every
// Interval, and counts the overdue ones lost after each beat.
func (a *Auditor) produceLoop(ctx context.Context) {
	t := time.NewTicker(a.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-a.stopProduce: // also when the tick below was ready at the same time
			return
		default:
		}
		a.beat()
		select {
		case <-t.C:
		case <-a.stopProduce:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (a *Auditor) beat() {
	now := time.Now()
	for _, p := range a.partitions {
		a.mu.Lock()
		seq := a.tr.Sent(p)
		a.mu.Unlock()
		hb := Heartbeat{Instance: a.instance, Partition: p, Sequence: seq, Produced: now}
		rec := &kgo.Record{Topic: a.o.Topic, Partition: p, Value: AppendHeartbeat(make([]byte, 0, HeartbeatSize), hb), Timestamp: now}
		// Not the run's context: stopping the producer must not fail the
		// heartbeats in flight; the delivery timeout bounds them.
		a.promises.Add(1)
		a.prod.TryProduce(context.Background(), rec, func(_ *kgo.Record, err error) {
			defer a.promises.Done()
			a.mu.Lock()
			a.tr.Acked(p, seq, err, time.Now())
			logIt := err != nil && time.Since(a.lastErrLog) >= errLogEvery
			if logIt {
				a.lastErrLog = time.Now()
			}
			a.mu.Unlock()
			if logIt {
				a.o.Logger.Warn("heartbeat not produced", "topic", a.o.Topic, "partition", p, "err", err)
			}
			a.signal()
		})
	}
	a.mu.Lock()
	a.tr.Tick(now)
	a.mu.Unlock()
}

// consume reads the audit topic and feeds tr, under mu, until ctx ends or
// the client is closed; signal is called after each batch of records.
func consume(ctx context.Context, cl *kgo.Client, mu *sync.Mutex, tr *Tracker, log *slog.Logger, lastErrLog *time.Time, signal func()) {
	for {
		fs := cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return
		}
		var ferr error
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("%s partition %d: %w", topic, p, err)
			}
		})
		now := time.Now()
		n := 0
		mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			n++
			hb, err := DecodeHeartbeat(r.Value)
			if err != nil {
				tr.Undecodable(r.Partition)
				return
			}
			tr.Seen(r.Partition, hb, now)
		})
		logIt := ferr != nil && now.Sub(*lastErrLog) >= errLogEvery
		if logIt {
			*lastErrLog = now
		}
		mu.Unlock()
		if logIt {
			log.Warn("fetching heartbeats", "err", ferr)
		}
		if n > 0 {
			signal()
		} else if ferr != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(fetchErrBackoff):
			}
		}
	}
}

// metadataLoop reads the partitions' leaders every metadataRefresh.
func (a *Auditor) metadataLoop(ctx context.Context) {
	t := time.NewTicker(metadataRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.RefreshLeaders(ctx)
	}
}

// RefreshLeaders reads the partitions' leaders now; on an error the last
// known ones stay.
func (a *Auditor) RefreshLeaders(ctx context.Context) {
	md, err := a.adm.Metadata(ctx, a.o.Topic)
	if err != nil {
		return
	}
	if td, ok := md.Topics[a.o.Topic]; ok && td.Err == nil {
		a.setMetadata(md)
	}
}

// PartitionReport is one partition's line of a Report.
type PartitionReport struct {
	Partition int32 `json:"partition"`
	Leader    int32 `json:"leader"` // -1: none known
	Stats
	SinceLastSeen time.Duration `json:"-"` // since the last heartbeat seen, or since the start when none
}

// BrokerReport sums the partitions a broker leads.
type BrokerReport struct {
	Broker     int32   `json:"broker"`
	Partitions []int32 `json:"partitions"`
	Stats
	SinceLastSeen time.Duration `json:"-"`
}

// Report is a snapshot of an auditor's counts.
type Report struct {
	Instance   string            `json:"instance"`
	Topic      string            `json:"topic"`
	Elapsed    time.Duration     `json:"-"`
	Partitions []PartitionReport `json:"partitions"`
	Brokers    []BrokerReport    `json:"brokers"` // every broker of the cluster, with the partitions it leads now
}

// Report returns the counts so far, per partition and per broker (the
// partitions it leads now).
func (a *Auditor) Report() Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	r := Report{Instance: a.instance.String(), Topic: a.o.Topic, Elapsed: now.Sub(a.started)}
	since := func(s *Stats) time.Duration {
		if s.LastSeen.IsZero() {
			return now.Sub(a.started)
		}
		return now.Sub(s.LastSeen)
	}
	byBroker := map[int32]*BrokerReport{}
	for _, b := range a.brokers {
		byBroker[b] = &BrokerReport{Broker: b, Partitions: []int32{}}
	}
	for _, p := range a.partitions {
		leader, ok := a.leaders[p]
		if !ok {
			leader = -1
		}
		pr := PartitionReport{Partition: p, Leader: leader, Stats: a.tr.Stats(p)}
		pr.SinceLastSeen = since(&pr.Stats)
		r.Partitions = append(r.Partitions, pr)
		br := byBroker[leader]
		if br == nil {
			br = &BrokerReport{Broker: leader}
			byBroker[leader] = br
		}
		br.Partitions = append(br.Partitions, p)
		br.add(&pr.Stats)
	}
	for _, br := range byBroker {
		br.SinceLastSeen = since(&br.Stats)
		r.Brokers = append(r.Brokers, *br)
	}
	slices.SortFunc(r.Brokers, func(x, y BrokerReport) int { return int(x.Broker) - int(y.Broker) })
	return r
}
