package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
)

const (
	// HeaderSource is the header naming the cluster id of the cluster a
	// mirrored record was first written to (loop prevention).
	HeaderSource = "sluice-mirror-source"
	// DefaultGroup is the source consumer group with no Group.
	DefaultGroup = "sluice-mirror"
	// DefaultMaxInFlightBytes bounds the bytes (keys, values, headers) of
	// records produced to the target and not yet acknowledged; over it,
	// source fetches pause until half of it is acknowledged.
	DefaultMaxInFlightBytes = 64 << 20
	// DefaultTopicSyncInterval is how often source topics and partition
	// counts are looked at again (new topics, added partitions).
	DefaultTopicSyncInterval = 30 * time.Second
	// DefaultCommitInterval is how often acknowledged source offsets are
	// committed: what a crash can make the next run copy twice.
	DefaultCommitInterval = time.Second
	// DefaultCheckpointInterval is how often consumer groups' offsets are
	// translated to the target.
	DefaultCheckpointInterval = 10 * time.Second
	// DefaultTimeout bounds connecting and each admin request.
	DefaultTimeout = 10 * time.Second
	// DefaultStopTimeout bounds a clean stop: waiting for the target to
	// acknowledge what was produced, then the last commit.
	DefaultStopTimeout = 30 * time.Second
	// offsetSyncEvery is how many acknowledged records of a partition go
	// between two kept offset syncs: the most a translated offset replays.
	offsetSyncEvery = 100
	// maxOffsetSyncs is how many offset syncs a partition keeps (the
	// oldest go first): 0 is not allowed.
	maxOffsetSyncs = 1024
	// maxFetchBytes caps a fetch response's bytes (kgo's default, 50 MiB);
	// below it, a fetch is at most MaxInFlightBytes. A broker still returns
	// a first record batch larger than that whole.
	maxFetchBytes = 50 << 20
	// partitionWait bounds the wait for the producer to see partitions just
	// added to the target.
	partitionWait = 30 * time.Second
	// partitionPoll is how often the metadata is read during partitionWait.
	partitionPoll = 100 * time.Millisecond
	clientID      = "sluice-mirror"
	// preserveClientID is the target client's id under PreserveOffsets:
	// the only producer a copy takes (internal/config.MirrorClientID).
	preserveClientID = "sluice-mirror-offsets"
)

// Options configure a Mirror. Source, Target and Topics are required.
type Options struct {
	Source, Target     []string      // seed brokers, host:port
	Topics             string        // regexp that a topic's whole name matches
	Group              string        // source consumer group; "" is DefaultGroup
	TopicPrefix        string        // target topic = TopicPrefix + source topic
	ReplicationFactor  int16         // of created target topics; 0 or -1: the target's default
	MaxInFlightBytes   int64         // 0: DefaultMaxInFlightBytes
	TopicSyncInterval  time.Duration // 0: DefaultTopicSyncInterval
	CommitInterval     time.Duration // 0: DefaultCommitInterval
	CheckpointInterval time.Duration // 0: DefaultCheckpointInterval; negative: no offset translation
	Timeout            time.Duration // connecting, admin requests; 0: DefaultTimeout
	StopTimeout        time.Duration // 0: DefaultStopTimeout
	SessionTimeout     time.Duration // of the source group member; 0: kgo's default (45 s). A crashed mirror's partitions wait this long for the next
	Logger             *slog.Logger  // nil: discard
	// PreserveOffsets copies each source partition with its offsets, to a
	// Sluice target only (see the package doc); Group, MaxInFlightBytes,
	// CommitInterval and SessionTimeout then do not apply.
	PreserveOffsets bool
	// Audit counts every record whose copy the target acknowledged, as the
	// audit stage "mirror", under its SOURCE topic name, partition and
	// offset (so that a run that copies the same offsets again is
	// deduplicated by the report); nil: no counting. Under
	// PreserveOffsets the records of aborted transactions are counted too
	// (they are copied). The caller closes it after Run returns.
	Audit *audit.Counter
}

// Mirror copies topics from a source cluster to a target cluster. Make one
// with New, then call Run once.
type Mirror struct {
	opts   Options
	re     *regexp.Regexp
	log    *slog.Logger
	src    *kgo.Client // consumer (group), owned by Run
	dst    *kgo.Client // idempotent producer
	srcAdm *kadm.Client
	dstAdm *kadm.Client

	sourceID, targetID string // cluster ids

	metrics *metrics
	acked   chan struct{} // a ping for each acknowledgement (backpressure wait)

	// topicMu serializes topic syncs and guards topics: the source topics
	// consumed and their partition counts as last made sure of on the
	// target. Lock order: topicMu, then mu.
	topicMu sync.Mutex
	topics  map[string]int32
	// checked: target topics known to be this source's offset-preserving
	// mirrors (PreserveOffsets).
	checked map[string]bool
	// synced: per target topic, the configs the mirror set there (or
	// found equal to the source's) and their values; refused: the
	// values the target refused, not tried again until the source's
	// value changes (configsync.go).
	synced, refused map[string]map[string]string
	// ready is what the producer is known to see: partitions of a topic
	// (by source name) below it can be produced to. Owned by Run's goroutine.
	ready map[string]int32

	mu            sync.Mutex // guards what follows
	parts         map[tp]*partState
	inFlightBytes int64
	err           error // first produce error: nothing is marked after it
	abort         context.CancelFunc

	pres *preserver // the copy goroutines, under PreserveOffsets; nil otherwise
}

type tp struct {
	topic     string
	partition int32
}

// partState is a source partition's copy state, guarded by Mirror.mu.
type partState struct {
	inFlight    int          // records produced, not yet acknowledged
	pendingMark *kgo.Record  // highest skipped record whose mark waits for the records in flight before it
	highWater   int64        // source high watermark at the last fetch; -1 unknown
	next        int64        // source offset after the last mirrored (acknowledged or skipped) record; -1 unknown
	lastTime    time.Time    // timestamp of the last acknowledged record
	syncs       []offsetSync // kept offset syncs, by increasing Source, offsetSyncEvery apart
	newest      offsetSync   // the last acknowledged record's
	hasNewest   bool
}

// offsetSync says the source record at Source is the target record at Target.
type offsetSync struct {
	Source, Target int64
}

// New connects to both clusters (each must answer within Timeout) and
// returns a Mirror ready to Run. It fails when Topics is not a valid
// regexp, or when both sides are the same cluster.
func New(ctx context.Context, o Options) (*Mirror, error) {
	if len(o.Source) == 0 || len(o.Target) == 0 {
		return nil, errors.New("mirror: the source and target brokers are both needed")
	}
	if o.Topics == "" {
		return nil, errors.New("mirror: no topics regexp; give one (\".*\" for all topics)")
	}
	re, err := regexpFull(o.Topics)
	if err != nil {
		return nil, err
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.ReplicationFactor == 0 {
		o.ReplicationFactor = -1
	}
	if o.MaxInFlightBytes <= 0 {
		o.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if o.TopicSyncInterval <= 0 {
		o.TopicSyncInterval = DefaultTopicSyncInterval
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = DefaultCommitInterval
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Mirror{opts: o, re: re, log: o.Logger, acked: make(chan struct{}, 1),
		topics: map[string]int32{}, checked: map[string]bool{},
		synced: map[string]map[string]string{}, refused: map[string]map[string]string{}, ready: map[string]int32{}, parts: map[tp]*partState{}}
	m.metrics = newMetrics(m)

	srcOpts := []kgo.Opt{
		kgo.SeedBrokers(o.Source...), kgo.ClientID(clientID), kgo.DialTimeout(o.Timeout),
		kgo.MetadataMaxAge(o.TopicSyncInterval), kgo.MetadataMinAge(min(o.TopicSyncInterval, time.Second)),
	}
	if o.PreserveOffsets {
		// The copy goroutines fetch with raw requests; the target's log
		// end is their progress, so there is no source group.
		m.pres = &preserver{started: map[string]int32{}}
	} else {
		srcOpts = append(srcOpts,
			kgo.ConsumerGroup(o.Group),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.AutoCommitMarks(), kgo.AutoCommitInterval(o.CommitInterval),
			// What the consumer buffers ahead is bounded like what is in flight.
			kgo.FetchMaxBytes(int32(min(o.MaxInFlightBytes, maxFetchBytes))),
		)
	}
	if o.SessionTimeout > 0 && !o.PreserveOffsets {
		srcOpts = append(srcOpts, kgo.SessionTimeout(o.SessionTimeout), kgo.HeartbeatInterval(min(o.SessionTimeout/10, 3*time.Second)))
	}
	m.src, err = kgo.NewClient(srcOpts...)
	if err != nil {
		return nil, fmt.Errorf("mirror: source client: %w", err)
	}
	dstID := clientID
	if o.PreserveOffsets {
		dstID = preserveClientID
	}
	m.dst, err = kgo.NewClient(
		kgo.SeedBrokers(o.Target...), kgo.ClientID(dstID), kgo.DialTimeout(o.Timeout),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MetadataMaxAge(o.TopicSyncInterval), kgo.MetadataMinAge(min(o.TopicSyncInterval, time.Second)),
	)
	if err != nil {
		m.src.Close()
		return nil, fmt.Errorf("mirror: target client: %w", err)
	}
	m.srcAdm, m.dstAdm = kadm.NewClient(m.src), kadm.NewClient(m.dst)
	for _, a := range []*kadm.Client{m.srcAdm, m.dstAdm} {
		a.SetTimeoutMillis(int32(o.Timeout.Milliseconds()))
	}
	if err := m.identify(ctx); err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

// regexpFull compiles a regexp that a topic's whole name must match.
func regexpFull(expr string) (*regexp.Regexp, error) {
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		return nil, fmt.Errorf("mirror: topics regexp %q: %w", expr, err)
	}
	return re, nil
}

// identify learns both cluster ids.
func (m *Mirror) identify(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	for _, side := range []struct {
		name  string
		seeds []string
		adm   *kadm.Client
		id    *string
	}{{"source", m.opts.Source, m.srcAdm, &m.sourceID}, {"target", m.opts.Target, m.dstAdm, &m.targetID}} {
		md, err := side.adm.BrokerMetadata(ctx)
		if err != nil {
			return fmt.Errorf("mirror: cannot reach the %s cluster at %s: %w", side.name, strings.Join(side.seeds, ","), err)
		}
		if md.Cluster == "" {
			return fmt.Errorf("mirror: the %s cluster at %s has no cluster id (Metadata v2+); loop prevention needs one", side.name, strings.Join(side.seeds, ","))
		}
		*side.id = md.Cluster
	}
	if m.sourceID == m.targetID && m.opts.TopicPrefix == "" {
		return fmt.Errorf("mirror: source and target are the same cluster (%s); mirroring a cluster into itself needs --topic-prefix", m.sourceID)
	}
	return nil
}

// SourceClusterID and TargetClusterID are the clusters' ids.
func (m *Mirror) SourceClusterID() string { return m.sourceID }
func (m *Mirror) TargetClusterID() string { return m.targetID }

// Registry is the mirror's Prometheus registry (sluice_mirror_*).
func (m *Mirror) Registry() *prometheus.Registry { return m.metrics.reg }

func (m *Mirror) close() {
	m.src.Close()
	m.dst.Close()
}

// Run copies until ctx is done or a produce fails, then stops cleanly:
// it waits (at most StopTimeout) for the target to acknowledge what was
// produced, commits the acknowledged source offsets, leaves the group and
// closes both clients. It returns nil after a stop by ctx.
func (m *Mirror) Run(ctx context.Context) error {
	if m.pres != nil {
		return m.runPreserve(ctx)
	}
	defer m.close()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.mu.Lock()
	m.abort = cancel // a produce error ends the copy loop's poll
	m.mu.Unlock()
	if err := m.syncTopics(runCtx, true); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	bg := make(chan struct{})
	go func() {
		defer close(bg)
		m.background(runCtx)
	}()
	err := m.copyLoop(runCtx)
	cancel()
	<-bg
	return errors.Join(err, m.stop())
}

// background re-syncs topics every TopicSyncInterval and writes
// checkpoints every CheckpointInterval until ctx is done.
func (m *Mirror) background(ctx context.Context) {
	topics := time.NewTicker(m.opts.TopicSyncInterval)
	defer topics.Stop()
	var checkpoints <-chan time.Time
	if m.opts.CheckpointInterval > 0 {
		t := time.NewTicker(m.opts.CheckpointInterval)
		defer t.Stop()
		checkpoints = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-topics.C:
			if err := m.syncTopics(ctx, true); err != nil && ctx.Err() == nil {
				m.log.Warn("topic sync failed; retried at the next one", "err", err)
			}
		case <-checkpoints:
			if _, err := m.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("offset translation failed; retried at the next checkpoint", "err", err)
			}
		}
	}
}

// stop flushes the producer and commits what it acknowledged.
func (m *Mirror) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.StopTimeout)
	defer cancel()
	var errs []error
	if err := m.dst.Flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("mirror: stop: records not all acknowledged by the target within %s (the next run copies them again): %w", m.opts.StopTimeout, err))
	}
	if err := m.src.CommitMarkedOffsets(ctx); err != nil {
		errs = append(errs, fmt.Errorf("mirror: stop: commit source offsets (the next run copies again since the last commit): %w", err))
	}
	m.src.LeaveGroupContext(ctx)
	m.mu.Lock()
	if m.err != nil {
		errs = append(errs, m.err)
	}
	m.mu.Unlock()
	return errors.Join(errs...)
}

// copyLoop polls the source and produces each record to the target.
func (m *Mirror) copyLoop(ctx context.Context) error {
	for {
		fetches := m.src.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			m.log.Warn("fetch from the source failed; retried", "topic", t, "partition", p, "err", err)
		})
		var err error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if err != nil {
				return
			}
			m.setHighWater(fp.Topic, fp.Partition, fp.HighWatermark)
			for _, r := range fp.Records {
				if m.waitInFlight(ctx) != nil {
					return // stopping: the rest is not marked, the next run copies it
				}
				if err = m.copyRecord(ctx, r); err != nil {
					return
				}
			}
		})
		if ctx.Err() != nil {
			return nil // stopping
		}
		if err != nil {
			return err
		}
		if err := m.failed(); err != nil {
			return nil // stop reports it
		}
	}
}

func (m *Mirror) failed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// waitInFlight, called before each record is produced, pauses fetching
// while the bytes in flight exceed the limit, until they fall to half of
// it; it returns ctx's error if ctx ends first. The bytes in flight thus
// stay below MaxInFlightBytes plus one record.
func (m *Mirror) waitInFlight(ctx context.Context) error {
	over := func(limit int64) bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.inFlightBytes > limit && m.err == nil
	}
	if !over(m.opts.MaxInFlightBytes) {
		return nil
	}
	m.topicMu.Lock()
	topics := m.consumed()
	m.topicMu.Unlock()
	m.src.PauseFetchTopics(topics...)
	m.metrics.pauses.Inc()
	defer m.src.ResumeFetchTopics(topics...)
	for over(m.opts.MaxInFlightBytes / 2) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.acked:
		}
	}
	return nil
}

func (m *Mirror) consumed() []string {
	out := make([]string, 0, len(m.topics))
	for t := range m.topics {
		out = append(out, t)
	}
	return out
}

// part returns the state of a source partition, creating it; m.mu is held.
func (m *Mirror) part(topic string, partition int32) *partState {
	k := tp{topic, partition}
	st := m.parts[k]
	if st == nil {
		st = &partState{highWater: -1, next: -1}
		m.parts[k] = st
	}
	return st
}

func (m *Mirror) setHighWater(topic string, partition int32, hw int64) {
	m.mu.Lock()
	m.part(topic, partition).highWater = hw
	m.mu.Unlock()
}

// recordBytes is what a record counts against MaxInFlightBytes.
func recordBytes(r *kgo.Record) int64 {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// origin returns the record's HeaderSource value.
func origin(r *kgo.Record) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == HeaderSource {
			return string(h.Value), true
		}
	}
	return "", false
}

// copyRecord produces r to the target, or skips it when it came from there.
func (m *Mirror) copyRecord(ctx context.Context, r *kgo.Record) error {
	if err := m.ensurePartition(ctx, r.Topic, r.Partition); err != nil {
		return err
	}
	from, has := origin(r)
	if has && from == m.targetID {
		m.skip(r)
		return nil
	}
	headers := r.Headers
	if !has {
		headers = make([]kgo.RecordHeader, 0, len(r.Headers)+1)
		headers = append(headers, r.Headers...)
		headers = append(headers, kgo.RecordHeader{Key: HeaderSource, Value: []byte(m.sourceID)})
	}
	out := &kgo.Record{Topic: m.opts.TopicPrefix + r.Topic, Partition: r.Partition,
		Key: r.Key, Value: r.Value, Headers: headers, Timestamp: r.Timestamp}
	size := recordBytes(r)
	m.mu.Lock()
	st := m.part(r.Topic, r.Partition)
	if st.next < 0 {
		st.next = r.Offset
	}
	st.inFlight++
	m.inFlightBytes += size
	m.mu.Unlock()
	// Not ctx: a record polled is produced even while stopping; stop's
	// flush bounds the wait.
	m.dst.Produce(context.Background(), out, func(out *kgo.Record, err error) {
		m.ack(st, r, out, size, err)
	})
	return nil
}

// skip passes over a record that came from the target: its offset is
// marked at once when nothing of its partition is in flight, else after
// the records in flight before it are acknowledged.
func (m *Mirror) skip(r *kgo.Record) {
	m.metrics.skipped.WithLabelValues(r.Topic).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.part(r.Topic, r.Partition)
	if st.inFlight == 0 {
		if m.err == nil {
			st.next = r.Offset + 1
			m.src.MarkCommitRecords(r)
		}
		return
	}
	st.pendingMark = r
}

// ack is the producer's promise for src, copied as out. Promises of one
// partition come in produce order, from kgo's promise goroutine.
func (m *Mirror) ack(st *partState, src, out *kgo.Record, size int64, err error) {
	if err == nil {
		m.opts.Audit.Count(src.Topic, src.Partition, src.Offset, src.Timestamp)
	}
	m.mu.Lock()
	defer func() {
		m.mu.Unlock()
		select {
		case m.acked <- struct{}{}:
		default:
		}
	}()
	st.inFlight--
	m.inFlightBytes -= size
	if err != nil {
		if m.err == nil {
			if m.abort != nil {
				m.abort()
			}
			m.err = fmt.Errorf("mirror: produce to %s[%d] failed (the mirror stops; the next run starts at source offset %d of %s[%d]): %w",
				out.Topic, out.Partition, src.Offset, src.Topic, src.Partition, err)
		}
		return
	}
	if m.err != nil {
		return // never commit past a failed record
	}
	m.metrics.records.WithLabelValues(src.Topic).Inc()
	m.metrics.bytes.WithLabelValues(src.Topic).Add(float64(size))
	st.next, st.lastTime = src.Offset+1, src.Timestamp
	st.addSync(src.Offset, out.Offset)
	mark := src
	if p := st.pendingMark; p != nil {
		if p.Offset < src.Offset {
			st.pendingMark = nil
		} else if st.inFlight == 0 {
			mark, st.next, st.pendingMark = p, p.Offset+1, nil
		}
	}
	m.src.MarkCommitRecords(mark)
}

// addSync records that the source record at source is the target record
// at target: always as the newest sync, and as a kept one when it is
// offsetSyncEvery offsets past the last kept one. A source offset at or
// below ones already recorded (a replay after a restart or a rebalance)
// first drops those: the newer copy is the one to resume from.
func (st *partState) addSync(source, target int64) {
	for len(st.syncs) > 0 && st.syncs[len(st.syncs)-1].Source >= source {
		st.syncs = st.syncs[:len(st.syncs)-1]
	}
	s := offsetSync{source, target}
	st.newest, st.hasNewest = s, true
	if n := len(st.syncs); n == 0 || source-st.syncs[n-1].Source >= offsetSyncEvery {
		st.syncs = append(st.syncs, s)
		if len(st.syncs) > maxOffsetSyncs {
			st.syncs = append(st.syncs[:0], st.syncs[len(st.syncs)-maxOffsetSyncs:]...)
		}
	}
}

// translate returns the target offset of the latest sync at or below
// source, and false when there is none.
func (st *partState) translate(source int64) (int64, bool) {
	if st.hasNewest && st.newest.Source <= source {
		return st.newest.Target, true
	}
	for i := len(st.syncs) - 1; i >= 0; i-- {
		if st.syncs[i].Source <= source {
			return st.syncs[i].Target, true
		}
	}
	return 0, false
}
