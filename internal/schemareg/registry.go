package schemareg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultTopic is where the registry keeps its state, as Confluent's.
const DefaultTopic = "_schemas"

// Limits of the registry's work.
const (
	writeTimeout          = 30 * time.Second // a write: produce, then wait to apply it (50002 past it)
	maxRegisterAttempts   = 8                // registrations lost to concurrent ones before giving up (50001)
	startRetryBackoff     = time.Second      // between attempts to create _schemas or reach the log end at start
	maxVersionsPerSubject = 10_000           // versions of one subject, soft-deleted included (42205 past it)
	maxSubjects           = 100_000          // subjects (42205 past it)
	maxTopicReplicas      = 3                // _schemas' replication factor when there are this many brokers
	// DefaultReplicationCheckInterval is how often an instance checks that
	// the topic has min(3, brokers) replicas, and adds replicas when not.
	DefaultReplicationCheckInterval = 30 * time.Second
	// metadataMinAge bounds how stale the client's idea of the topic's
	// leader may be before a failed write refreshes it (kgo's default, 5 s,
	// made the first write after a leader's death take 4-5 s).
	metadataMinAge = 500 * time.Millisecond
)

// Config configures a Registry.
type Config struct {
	Brokers []string     // seed brokers of the Kafka cluster holding Topic
	Topic   string       // default DefaultTopic
	Logger  *slog.Logger // default: discards
	// ClientOpts are more options for the franz-go client (tests: a
	// client id, shorter waits).
	ClientOpts []kgo.Opt
	// ReplicationCheckInterval: default DefaultReplicationCheckInterval.
	ReplicationCheckInterval time.Duration
}

// Registry is a schema registry instance: one franz-go client that
// consumes the topic into a state and produces the writes. Any number of
// instances may serve the same topic; each answers reads from its own
// state and orders its writes through the log (see the package doc).
// Its methods are safe for concurrent use.
type Registry struct {
	cfg Config
	log *slog.Logger
	cl  *kgo.Client

	// mu guards st and applied. Lock order: writeMu, then mu.
	mu      sync.RWMutex
	st      *state
	applied chan struct{} // closed (and replaced) whenever records are applied

	writeMu sync.Mutex // one write at a time from this instance
	ready   chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// Open starts a registry: it creates the topic if it is missing (one
// partition, compacted), consumes it from the start, and becomes ready
// once it has applied the log up to a record it wrote itself at start
// (every record written before it). Until then every request is answered
// 503 (50003). Close stops it.
func Open(cfg Config) (*Registry, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("schemareg: no brokers to connect to")
	}
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReplicationCheckInterval <= 0 {
		cfg.ReplicationCheckInterval = DefaultReplicationCheckInterval
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("sluice-schema-registry"),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.KeepControlRecords(), // so that nothing is hidden from offset tracking
		kgo.MetadataMinAge(metadataMinAge),
	}, cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schemareg: client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{cfg: cfg, log: cfg.Logger, cl: cl, st: newState(), applied: make(chan struct{}),
		ready: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go r.run(ctx)
	return r, nil
}

// Close stops the registry and its client.
func (r *Registry) Close() {
	r.cancel()
	<-r.done
	r.cl.Close()
}

// Ready is closed once the registry has caught up with the log at start.
func (r *Registry) Ready() <-chan struct{} { return r.ready }

func (r *Registry) run(ctx context.Context) {
	defer close(r.done)
	for {
		err := r.ensureTopic(ctx)
		if err == nil {
			break
		}
		r.log.Warn("schema registry: cannot create its topic yet; retrying", "topic", r.cfg.Topic, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(startRetryBackoff):
		}
	}
	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.cfg.Topic: {0: kgo.NewOffset().AtStart()}})
	go r.catchUp(ctx)
	go r.keepReplicated(ctx)
	for {
		fetches := r.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fetches.EachError(func(t string, p int32, err error) {
			r.log.Warn("schema registry: fetch", "topic", t, "partition", p, "err", err)
		})
		r.mu.Lock()
		n := 0
		fetches.EachRecord(func(rec *kgo.Record) {
			if rec.Attrs.IsControl() {
				r.st.next = max(r.st.next, rec.Offset+1)
				return
			}
			if err := r.st.apply(rec.Offset, rec.Key, rec.Value); err != nil {
				r.log.Error("schema registry: skipping a record it cannot read", "topic", rec.Topic, "offset", rec.Offset, "err", err)
			}
			n++
		})
		if n > 0 || len(fetches) > 0 {
			close(r.applied)
			r.applied = make(chan struct{})
		}
		r.mu.Unlock()
	}
}

// catchUp writes a NOOP record and waits to apply it: then the state holds
// everything written before this instance started, and it is ready.
func (r *Registry) catchUp(ctx context.Context) {
	for {
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		_, err := r.produceAndApply(wctx, &kgo.Record{Key: encodeKey(recordKey{KeyType: keyNoop}), Value: []byte("{}")})
		cancel()
		if err == nil {
			r.mu.RLock()
			r.log.Info("schema registry: ready", "topic", r.cfg.Topic, "subjects", len(r.st.subjects), "next_offset", r.st.next)
			r.mu.RUnlock()
			close(r.ready)
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("schema registry: cannot reach the end of its topic yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(startRetryBackoff):
		}
	}
}

// ensureTopic creates the topic if it does not exist, and checks that it
// has the one partition that orders every write.
func (r *Registry) ensureTopic(ctx context.Context) error {
	adm := kadm.NewClient(r.cl)
	tctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	md, err := adm.Metadata(tctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if t, ok := md.Topics[r.cfg.Topic]; ok && t.Err == nil {
		if len(t.Partitions) != 1 {
			return fmt.Errorf("topic %s has %d partitions; the registry needs exactly 1 (its writes are ordered by one log)", r.cfg.Topic, len(t.Partitions))
		}
		return nil
	}
	rf := int16(min(len(md.Brokers), maxTopicReplicas))
	if rf < 1 {
		return errors.New("no brokers in the metadata")
	}
	compact := "compact"
	// kadm returns the topic's error as err too.
	_, err = adm.CreateTopic(tctx, 1, rf, map[string]*string{"cleanup.policy": &compact}, r.cfg.Topic)
	if errors.Is(err, kerr.TopicAlreadyExists) {
		// Another instance created it since the metadata above. (Not
		// an error to retry: the client would answer the next look
		// from the same metadata, cached for MetadataMinAge, 5 s by
		// default.)
		return nil
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", r.cfg.Topic, err)
	}
	r.log.Info("schema registry: created its topic", "topic", r.cfg.Topic, "replication_factor", rf)
	return nil
}

// keepReplicated checks every ReplicationCheckInterval that the topic has
// min(3, brokers) replicas and reassigns it to more when it has fewer. A
// topic created while the cluster was still forming gets fewer (the first
// instance takes min(3, brokers in its metadata), as Confluent's does, and
// the brokers of a cluster started together join some 50 ms apart); so
// does one created before brokers were added. Losing the only replica of
// the schemas would make every Avro record undecodable.
func (r *Registry) keepReplicated(ctx context.Context) {
	t := time.NewTicker(r.cfg.ReplicationCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.addReplicas(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("schema registry: cannot add replicas to its topic", "topic", r.cfg.Topic, "err", err)
		}
	}
}

// addReplicas reassigns the topic's partition to min(3, brokers) replicas
// when it has fewer and no reassignment is under way: its replicas, then
// the brokers holding none, by id.
func (r *Registry) addReplicas(ctx context.Context) error {
	adm := kadm.NewClient(r.cl)
	tctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	md, err := adm.Metadata(tctx, r.cfg.Topic)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	td, ok := md.Topics[r.cfg.Topic]
	if !ok || td.Err != nil || len(td.Partitions) != 1 {
		return nil // ensureTopic's business
	}
	replicas := td.Partitions[0].Replicas
	want := min(len(md.Brokers), maxTopicReplicas)
	if len(replicas) >= want {
		return nil
	}
	ongoing, err := adm.ListPartitionReassignments(tctx, kadm.TopicsSet{r.cfg.Topic: {0: {}}})
	if err != nil {
		return fmt.Errorf("list reassignments: %w", err)
	}
	if len(ongoing) > 0 {
		return nil
	}
	target := append([]int32(nil), replicas...)
	ids := md.Brokers.NodeIDs()
	slices.Sort(ids)
	for _, id := range ids {
		if len(target) == want {
			break
		}
		if !slices.Contains(target, id) {
			target = append(target, id)
		}
	}
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign(r.cfg.Topic, 0, target)
	resps, err := adm.AlterPartitionAssignments(tctx, req)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		return fmt.Errorf("reassign to %v: %w", target, err)
	}
	r.log.Info("schema registry: adding replicas to its topic", "topic", r.cfg.Topic, "replicas", replicas, "target", target)
	return nil
}

// produceAndApply writes records (acks=all, idempotent) and waits until
// this instance has applied them. It returns the offset of the last one.
func (r *Registry) produceAndApply(ctx context.Context, recs ...*kgo.Record) (int64, error) {
	for _, rec := range recs {
		rec.Topic = r.cfg.Topic
		rec.Partition = 0
	}
	results := r.cl.ProduceSync(ctx, recs...)
	if err := results.FirstErr(); err != nil {
		return 0, fmt.Errorf("write to %s: %w", r.cfg.Topic, err)
	}
	last := int64(-1)
	for _, res := range results {
		last = max(last, res.Record.Offset)
	}
	return last, r.waitApplied(ctx, last)
}

// waitApplied waits until the state has applied offset.
func (r *Registry) waitApplied(ctx context.Context, offset int64) error {
	for {
		r.mu.RLock()
		next, ch := r.st.next, r.applied
		r.mu.RUnlock()
		if next > offset {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting to read back offset %d of %s: %w", offset, r.cfg.Topic, ctx.Err())
		}
	}
}

// read runs f on the state, once the registry is ready.
func (r *Registry) read(f func(*state) error) error {
	select {
	case <-r.ready:
	default:
		return errorf(http.StatusServiceUnavailable, codeNotReady, "The schema registry is still reading %s; try again shortly", r.cfg.Topic)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return f(r.st)
}

// write runs one write: plan looks at the state (under the read lock) and
// returns the records to produce (none: nothing to write) and a check that
// runs on the state once they are applied; check returning retry means a
// concurrent write won and plan runs again.
func (r *Registry) write(ctx context.Context, plan func(*state) ([]*kgo.Record, error), check func(*state) (retry bool, err error)) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	for attempt := 0; attempt < maxRegisterAttempts; attempt++ {
		var recs []*kgo.Record
		if err := r.read(func(st *state) error {
			var err error
			recs, err = plan(st)
			return err
		}); err != nil {
			return err
		}
		if len(recs) > 0 {
			if _, err := r.produceAndApply(ctx, recs...); err != nil {
				if ctx.Err() != nil {
					return errorf(http.StatusInternalServerError, codeOperationTimeout, "Operation timed out: %v", err)
				}
				return errorf(http.StatusInternalServerError, codeStoreError, "Error in the backend data store: %v", err)
			}
		}
		if check == nil {
			return nil
		}
		var retry bool
		err := r.read(func(st *state) error {
			var err error
			retry, err = check(st)
			return err
		})
		if err != nil || !retry {
			return err
		}
	}
	return errorf(http.StatusInternalServerError, codeStoreError,
		"Gave up after %d attempts, each lost to a concurrent write; try again", maxRegisterAttempts)
}

func nonce() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("BUG: schemareg: crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}
