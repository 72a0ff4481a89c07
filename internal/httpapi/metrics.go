// Package httpapi is the broker's HTTP side: Prometheus metrics on
// /metrics, liveness on /healthz, readiness on /readyz and, when turned on,
// Go's profiles on /debug/pprof/.
package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/txn"
)

// Metrics holds every sluice_ metric in its own registry (no globals). It
// implements server.Observer and api.Observer.
type Metrics struct {
	reg *prometheus.Registry

	connections    prometheus.Gauge
	requests       *prometheus.CounterVec
	requestSeconds *prometheus.HistogramVec
	bytesIn        *prometheus.CounterVec
	recordsIn      *prometheus.CounterVec
	bytesOut       *prometheus.CounterVec
	recordsOut     *prometheus.CounterVec
	purgatory      *prometheus.GaugeVec
	fsyncSeconds   prometheus.Histogram

	opts MetricsOptions
	// broker is set by SetBroker; /readyz reads its log dirs' health.
	broker atomic.Pointer[broker.Broker]

	// Label values are cached: building them per request would allocate.
	mu     sync.Mutex
	labels map[[2]int16][2]string
}

// MetricsOptions configure NewMetricsWithOptions.
type MetricsOptions struct {
	// PartitionLevel reports the partition gauges (log size, offsets,
	// segments, cleaner state) and group lag per partition, with a
	// partition label (the broker config metrics.partition.level=true).
	// Off, the default, they are reported per topic (summed, the cleaner's
	// as the largest), as Redpanda's aggregate_metrics: per partition, a
	// broker with 10,000 partitions answers a scrape with some 70,000
	// series.
	PartitionLevel bool
}

// NewMetrics registers the metrics with the default options (per-topic
// partition gauges).
func NewMetrics() *Metrics { return NewMetricsWithOptions(MetricsOptions{}) }

// NewMetricsWithOptions registers the metrics. The broker's gauges appear
// once SetBroker is called, when the broker is open.
func NewMetricsWithOptions(opts MetricsOptions) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), labels: map[[2]int16][2]string{}, opts: opts}
	m.connections = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_connections", Help: "Open Kafka client connections."})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_requests_total", Help: "Kafka requests answered, by API and version."}, []string{"api", "version"})
	m.requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sluice_request_duration_seconds", Help: "Time from reading a request to its reply being ready, by API and version.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14)}, []string{"api", "version"})
	m.bytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_topic_bytes_in_total", Help: "Record batch bytes appended, by topic."}, []string{"topic"})
	m.recordsIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_topic_records_in_total", Help: "Records appended, by topic."}, []string{"topic"})
	m.bytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_topic_bytes_out_total", Help: "Record batch bytes sent to consumers, by topic."}, []string{"topic"})
	m.recordsOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_topic_records_out_total", Help: "Records sent to consumers from their fetch offsets, by topic."}, []string{"topic"})
	m.purgatory = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_purgatory_size", Help: "Requests waiting: produce for fsync (acks=all), fetch for data (long poll)."}, []string{"api"})
	m.fsyncSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sluice_log_fsync_duration_seconds", Help: "Duration of each log segment fsync.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)})
	m.reg.MustRegister(m.connections, m.requests, m.requestSeconds, m.bytesIn, m.recordsIn, m.bytesOut,
		m.recordsOut, m.purgatory, m.fsyncSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetBroker adds the per-partition gauges read from b at scrape time.
func (m *Metrics) SetBroker(b *broker.Broker) {
	m.reg.MustRegister(&partitionCollector{b: b, partitionLevel: m.opts.PartitionLevel},
		&groupCollector{b: b, partitionLevel: m.opts.PartitionLevel})
	m.broker.Store(b)
}

// ConnectionOpened implements server.Observer.
func (m *Metrics) ConnectionOpened() { m.connections.Inc() }

// ConnectionClosed implements server.Observer.
func (m *Metrics) ConnectionClosed() { m.connections.Dec() }

// Request implements server.Observer.
func (m *Metrics) Request(key, version int16, elapsed time.Duration) {
	l := m.label(key, version)
	m.requests.WithLabelValues(l[0], l[1]).Inc()
	m.requestSeconds.WithLabelValues(l[0], l[1]).Observe(elapsed.Seconds())
}

func (m *Metrics) label(key, version int16) [2]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.labels[[2]int16{key, version}]
	if !ok {
		name := kmsg.NameForKey(key)
		if name == "" {
			name = "Unknown" + strconv.Itoa(int(key))
		}
		l = [2]string{name, strconv.Itoa(int(version))}
		m.labels[[2]int16{key, version}] = l
	}
	return l
}

// Produced implements api.Observer.
func (m *Metrics) Produced(topic string, bytes, records int) {
	m.bytesIn.WithLabelValues(topic).Add(float64(bytes))
	m.recordsIn.WithLabelValues(topic).Add(float64(records))
}

// Fetched implements api.Observer.
func (m *Metrics) Fetched(topic string, bytes, records int) {
	m.bytesOut.WithLabelValues(topic).Add(float64(bytes))
	m.recordsOut.WithLabelValues(topic).Add(float64(records))
}

// Purgatory implements api.Observer.
func (m *Metrics) Purgatory(api string, delta int) {
	m.purgatory.WithLabelValues(api).Add(float64(delta))
}

// Fsync is the log's fsync hook.
func (m *Metrics) Fsync(d time.Duration) { m.fsyncSeconds.Observe(d.Seconds()) }

// partitionCollector reports partitions' state at scrape time: by
// partition (topic and partition labels) when partitionLevel is set, else
// summed (offsets, sizes, segments) or maxed (cleaner state) by topic.
type partitionCollector struct {
	b              *broker.Broker
	partitionLevel bool
}

var (
	descPartitions = prometheus.NewDesc("sluice_partitions", "Partitions this broker holds a replica of (on a single node, every partition, all led here).", nil, nil)
	descLeaders    = prometheus.NewDesc("sluice_leader_partitions", "Partitions this broker leads.", nil, nil)
	descReassign   = prometheus.NewDesc("sluice_reassigning_partitions", "Partitions of the cluster being reassigned (from this broker's metadata).", nil, nil)
	descAdding     = prometheus.NewDesc("sluice_reassignment_adding_replicas", "Replicas this broker is adding for partitions being reassigned.", nil, nil)
	descAddingLag  = prometheus.NewDesc("sluice_reassignment_records_remaining", "How far the replicas this broker is adding are behind their leader's high watermark, in records.", nil, nil)
	descThrottled  = prometheus.NewDesc("sluice_replication_throttled_bytes_total", "Replication bytes counted against the replication throttle: sent to followers of leader-throttled partitions (side=leader), fetched for follower-throttled ones (side=follower).", []string{"side"}, nil)
	descUnderRepl  = prometheus.NewDesc("sluice_under_replicated_partitions", "Partitions this broker leads with fewer in-sync replicas than replicas.", nil, nil)
	descUnderMin   = prometheus.NewDesc("sluice_under_min_isr_partitions", "Partitions this broker leads with fewer in-sync replicas than min.insync.replicas: acks=all produce requests to them fail (NOT_ENOUGH_REPLICAS).", nil, nil)
	descOffline    = prometheus.NewDesc("sluice_offline_partitions", "Partitions of the cluster without a leader (from this broker's metadata): neither readable nor writable.", nil, nil)
	descISRShrinks = prometheus.NewDesc("sluice_isr_shrinks_total", "ISR shrinks this broker's leaderships made (a follower fell behind by replica.lag.time.max.ms or its broker was fenced).", nil, nil)
	descISRExpands = prometheus.NewDesc("sluice_isr_expands_total", "ISR expansions this broker's leaderships made (a follower caught up).", nil, nil)
	descLagRecords = prometheus.NewDesc("sluice_replica_max_lag_records", "The furthest any follower of a partition this broker leads is behind its leader, in records.", nil, nil)
	descLagSeconds = prometheus.NewDesc("sluice_replica_max_lag_seconds", "The longest any follower of a partition this broker leads has gone without catching up with its leader.", nil, nil)
	descFenced     = prometheus.NewDesc("sluice_broker_fenced", "1 while the controller has this broker fenced (it leads nothing and clients are not sent to it).", nil, nil)
	descController = prometheus.NewDesc("sluice_controller_active", "1 on the active controller (the metadata quorum's leader, caught up and announced).", nil, nil)
	descRaftTerm   = prometheus.NewDesc("sluice_raft_term", "The metadata quorum's Raft term as this node knows it.", nil, nil)
	descRaftCommit = prometheus.NewDesc("sluice_raft_commit_index", "The last metadata log entry this node knows committed.", nil, nil)
	descRaftApply  = prometheus.NewDesc("sluice_raft_applied_index", "The last metadata log entry this node has applied.", nil, nil)
	descTxns       = prometheus.NewDesc("sluice_transactions", "Transactional ids by state (Empty, Ongoing, PrepareCommit, ...).", []string{"state"}, nil)

	descBytesCleaned = prometheus.NewDesc("sluice_cleaner_bytes_cleaned_total", "Segment bytes the log cleaner has compacted.", nil, nil)
	descCleanPasses  = prometheus.NewDesc("sluice_cleaner_passes_total", "Log cleaner passes run.", nil, nil)

	descLogDirOffline = prometheus.NewDesc("sluice_log_dir_offline", "1 while a log directory is offline: a write or fsync failed, and its partitions refuse produce requests (KAFKA_STORAGE_ERROR) until the broker restarts.", []string{"dir"}, nil)
	descLogDirNoSpace = prometheus.NewDesc("sluice_log_dir_no_space", "1 while a write found a log directory full and none has succeeded since: produce requests fail until space is freed.", []string{"dir"}, nil)
	descLogDirParts   = prometheus.NewDesc("sluice_log_dir_partitions", "Partitions whose replica on this broker is in a log directory.", []string{"dir"}, nil)
	descLogDirBytes   = prometheus.NewDesc("sluice_log_dir_size_bytes", "Bytes of the partitions' logs in a log directory.", []string{"dir"}, nil)
	descLogDirMoving  = prometheus.NewDesc("sluice_log_dir_moves_bytes_remaining", "Bytes still to copy of the partitions moving into a log directory (AlterReplicaLogDirs).", []string{"dir"}, nil)
	descStorageError  = prometheus.NewDesc("sluice_partition_storage_error", "1 for a partition that refuses produce requests for its storage: reason io_error (a write or fsync of its log failed) or no_space (its last append found the disk full). Partitions refused because another one took the log directory offline show in sluice_log_dir_offline.", []string{"topic", "partition", "reason"}, nil)
	descOpenFiles     = prometheus.NewDesc("sluice_log_open_files", "Segment files the partitions hold open.", nil, nil)
	descOpenFilesMax  = prometheus.NewDesc("sluice_log_open_files_limit", "The most segment files held open at once; idle ones are closed beyond it.", nil, nil)
	descOverLimit     = prometheus.NewDesc("sluice_log_open_files_over_limit_total", "Segment files opened beyond the limit because every open one was in use.", nil, nil)

	// Per partition (MetricsOptions.PartitionLevel).
	partitionLabels = []string{"topic", "partition"}
	descLogSize     = prometheus.NewDesc("sluice_log_size_bytes", "Bytes of a partition's log on disk.", partitionLabels, nil)
	descLogStart    = prometheus.NewDesc("sluice_log_start_offset", "A partition's log start offset.", partitionLabels, nil)
	descLogEnd      = prometheus.NewDesc("sluice_log_end_offset", "A partition's log end offset.", partitionLabels, nil)
	descHW          = prometheus.NewDesc("sluice_high_watermark", "A partition's high watermark.", partitionLabels, nil)
	descSegments    = prometheus.NewDesc("sluice_log_segments", "A partition's segment count.", partitionLabels, nil)
	descLSO         = prometheus.NewDesc("sluice_last_stable_offset", "A partition's last stable offset: read_committed consumers read below it; behind the high watermark while a transaction is open.", partitionLabels, nil)
	descDirtyRatio  = prometheus.NewDesc("sluice_cleaner_dirty_ratio", "Share of a compacted partition's closed-segment bytes not yet cleaned (cleanable now).", partitionLabels, nil)
	descCleanerLag  = prometheus.NewDesc("sluice_cleaner_lag_seconds", "Age, by record timestamp, of a compacted partition's oldest uncleaned record; 0 when all is clean.", partitionLabels, nil)

	// By topic (the default): the same names, without the partition label.
	topicLabels         = []string{"topic"}
	descTopicPartitions = prometheus.NewDesc("sluice_topic_partitions", "Partitions of a topic this broker leads.", topicLabels, nil)
	descTopicLogSize    = prometheus.NewDesc("sluice_log_size_bytes", "Bytes of a topic's logs on disk (its partitions summed).", topicLabels, nil)
	descTopicLogStart   = prometheus.NewDesc("sluice_log_start_offset", "Sum of a topic's partitions' log start offsets.", topicLabels, nil)
	descTopicLogEnd     = prometheus.NewDesc("sluice_log_end_offset", "Sum of a topic's partitions' log end offsets.", topicLabels, nil)
	descTopicHW         = prometheus.NewDesc("sluice_high_watermark", "Sum of a topic's partitions' high watermarks.", topicLabels, nil)
	descTopicSegments   = prometheus.NewDesc("sluice_log_segments", "Segments of a topic's partitions.", topicLabels, nil)
	descTopicLSO        = prometheus.NewDesc("sluice_last_stable_offset", "Sum of a topic's partitions' last stable offsets; below the high watermark sum while a transaction is open.", topicLabels, nil)
	descTopicDirtyRatio = prometheus.NewDesc("sluice_cleaner_dirty_ratio", "Largest share, among a compacted topic's partitions, of closed-segment bytes not yet cleaned.", topicLabels, nil)
	descTopicCleanerLag = prometheus.NewDesc("sluice_cleaner_lag_seconds", "Age, by record timestamp, of the oldest uncleaned record of a compacted topic's partitions; 0 when all is clean.", topicLabels, nil)
)

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPartitions, descLeaders, descReassign, descAdding, descAddingLag, descThrottled, descUnderRepl, descUnderMin, descOffline, descISRShrinks, descISRExpands,
		descLagRecords, descLagSeconds, descFenced, descController, descRaftTerm, descRaftCommit, descRaftApply, descTxns, descBytesCleaned, descCleanPasses,
		descLogDirOffline, descLogDirNoSpace, descLogDirParts, descLogDirBytes, descLogDirMoving, descStorageError, descOpenFiles, descOpenFilesMax, descOverLimit} {
		ch <- d
	}
	ds := []*prometheus.Desc{descTopicPartitions, descTopicLogSize, descTopicLogStart, descTopicLogEnd, descTopicHW,
		descTopicSegments, descTopicLSO, descTopicDirtyRatio, descTopicCleanerLag}
	if c.partitionLevel {
		ds = []*prometheus.Desc{descLogSize, descLogStart, descLogEnd, descHW, descSegments, descLSO, descDirtyRatio, descCleanerLag}
	}
	for _, d := range ds {
		ch <- d
	}
}

// topicSums is a topic's partitions' state, added up at scrape time.
type topicSums struct {
	partitions                 int
	size, start, end, hw, lso  float64
	segments                   float64
	compact                    bool
	dirtyRatio, cleanerLagSecs float64 // the largest
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	parts := c.b.Partitions()
	ch <- prometheus.MustNewConstMetric(descPartitions, prometheus.GaugeValue, float64(len(parts)))
	rs := c.b.ReplicationStats()
	ch <- prometheus.MustNewConstMetric(descLeaders, prometheus.GaugeValue, float64(rs.Leaders))
	ch <- prometheus.MustNewConstMetric(descReassign, prometheus.GaugeValue, float64(rs.Reassigning))
	ch <- prometheus.MustNewConstMetric(descAdding, prometheus.GaugeValue, float64(rs.Adding))
	ch <- prometheus.MustNewConstMetric(descAddingLag, prometheus.GaugeValue, float64(rs.AddingLagRecords))
	ch <- prometheus.MustNewConstMetric(descThrottled, prometheus.CounterValue, float64(rs.ThrottledLeaderBytes), "leader")
	ch <- prometheus.MustNewConstMetric(descThrottled, prometheus.CounterValue, float64(rs.ThrottledFollowerBytes), "follower")
	ch <- prometheus.MustNewConstMetric(descUnderRepl, prometheus.GaugeValue, float64(rs.UnderReplicated))
	ch <- prometheus.MustNewConstMetric(descUnderMin, prometheus.GaugeValue, float64(rs.UnderMinISR))
	ch <- prometheus.MustNewConstMetric(descOffline, prometheus.GaugeValue, float64(rs.Offline))
	ch <- prometheus.MustNewConstMetric(descISRShrinks, prometheus.CounterValue, float64(rs.ISRShrinks))
	ch <- prometheus.MustNewConstMetric(descISRExpands, prometheus.CounterValue, float64(rs.ISRExpands))
	ch <- prometheus.MustNewConstMetric(descLagRecords, prometheus.GaugeValue, float64(rs.MaxLagRecords))
	ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, rs.MaxLagTime.Seconds())
	ch <- prometheus.MustNewConstMetric(descFenced, prometheus.GaugeValue, boolValue(rs.Fenced))
	ch <- prometheus.MustNewConstMetric(descController, prometheus.GaugeValue, boolValue(rs.Metadata.IsController))
	ch <- prometheus.MustNewConstMetric(descRaftTerm, prometheus.GaugeValue, float64(rs.Metadata.Term))
	ch <- prometheus.MustNewConstMetric(descRaftCommit, prometheus.GaugeValue, float64(rs.Metadata.CommitIndex))
	ch <- prometheus.MustNewConstMetric(descRaftApply, prometheus.GaugeValue, float64(rs.Metadata.AppliedIndex))
	cs := c.b.CleanerStats()
	if list, err := c.b.Txns().List(txn.ListFilter{MinDurationMs: -1}); err == nil {
		counts := map[string]int{}
		for _, l := range list {
			counts[l.State.String()]++
		}
		for state, n := range counts {
			ch <- prometheus.MustNewConstMetric(descTxns, prometheus.GaugeValue, float64(n), state)
		}
	}
	ch <- prometheus.MustNewConstMetric(descBytesCleaned, prometheus.CounterValue, float64(cs.BytesCleaned))
	ch <- prometheus.MustNewConstMetric(descCleanPasses, prometheus.CounterValue, float64(cs.Passes))
	dirParts, dirBytes, dirMoving := map[string]int{}, map[string]int64{}, map[string]int64{}
	for tp, p := range parts {
		if dir, _, ok := c.b.PartitionLogDir(tp); ok {
			dirParts[dir]++
			dirBytes[dir] += p.Log().Size()
		}
	}
	for _, mv := range c.b.Moves() {
		dirMoving[mv.Dest] += max(mv.Total-mv.Copied, 0)
	}
	for _, d := range c.b.LogDirs() {
		ch <- prometheus.MustNewConstMetric(descLogDirOffline, prometheus.GaugeValue, boolValue(d.Offline != nil), d.Path)
		ch <- prometheus.MustNewConstMetric(descLogDirNoSpace, prometheus.GaugeValue, boolValue(d.NoSpace != nil), d.Path)
		ch <- prometheus.MustNewConstMetric(descLogDirParts, prometheus.GaugeValue, float64(dirParts[d.Path]), d.Path)
		ch <- prometheus.MustNewConstMetric(descLogDirBytes, prometheus.GaugeValue, float64(dirBytes[d.Path]), d.Path)
		ch <- prometheus.MustNewConstMetric(descLogDirMoving, prometheus.GaugeValue, float64(dirMoving[d.Path]), d.Path)
	}
	fs := c.b.FileStats()
	ch <- prometheus.MustNewConstMetric(descOpenFiles, prometheus.GaugeValue, float64(fs.Open))
	ch <- prometheus.MustNewConstMetric(descOpenFilesMax, prometheus.GaugeValue, float64(fs.Limit))
	ch <- prometheus.MustNewConstMetric(descOverLimit, prometheus.CounterValue, float64(fs.OverLimit))
	// Partitions in storage error, by partition in either mode: there are
	// few, and which ones is what an operator needs.
	for tp, p := range parts {
		if reason, err := p.StorageError(); err != nil && reason != log.ReasonLogDirOffline {
			ch <- prometheus.MustNewConstMetric(descStorageError, prometheus.GaugeValue, 1, tp.Topic, strconv.Itoa(int(tp.Partition)), reason)
		}
	}
	nowMs := time.Now().UnixMilli()
	cleanerLag := func(oldestDirty int64) float64 {
		if oldestDirty < 0 {
			return 0
		}
		return max(float64(nowMs-oldestDirty)/1000, 0)
	}
	if c.partitionLevel {
		for tp, p := range parts {
			part := strconv.Itoa(int(tp.Partition))
			l := p.Log()
			ch <- prometheus.MustNewConstMetric(descLogSize, prometheus.GaugeValue, float64(l.Size()), tp.Topic, part)
			ch <- prometheus.MustNewConstMetric(descLogStart, prometheus.GaugeValue, float64(l.StartOffset()), tp.Topic, part)
			ch <- prometheus.MustNewConstMetric(descLogEnd, prometheus.GaugeValue, float64(l.EndOffset()), tp.Topic, part)
			ch <- prometheus.MustNewConstMetric(descHW, prometheus.GaugeValue, float64(p.HighWatermark()), tp.Topic, part)
			ch <- prometheus.MustNewConstMetric(descSegments, prometheus.GaugeValue, float64(l.Segments()), tp.Topic, part)
			ch <- prometheus.MustNewConstMetric(descLSO, prometheus.GaugeValue, float64(p.LastStableOffset()), tp.Topic, part)
			if st := p.CleanerState(); st.Compact {
				ch <- prometheus.MustNewConstMetric(descDirtyRatio, prometheus.GaugeValue, st.DirtyRatio, tp.Topic, part)
				ch <- prometheus.MustNewConstMetric(descCleanerLag, prometheus.GaugeValue, cleanerLag(st.OldestDirtyTimestamp), tp.Topic, part)
			}
		}
		return
	}
	topics := map[string]*topicSums{}
	for tp, p := range parts {
		t := topics[tp.Topic]
		if t == nil {
			t = &topicSums{}
			topics[tp.Topic] = t
		}
		l := p.Log()
		t.partitions++
		t.size += float64(l.Size())
		t.start += float64(l.StartOffset())
		t.end += float64(l.EndOffset())
		t.hw += float64(p.HighWatermark())
		t.lso += float64(p.LastStableOffset())
		t.segments += float64(l.Segments())
		if st := p.CleanerState(); st.Compact {
			t.compact = true
			t.dirtyRatio = max(t.dirtyRatio, st.DirtyRatio)
			t.cleanerLagSecs = max(t.cleanerLagSecs, cleanerLag(st.OldestDirtyTimestamp))
		}
	}
	for name, t := range topics {
		ch <- prometheus.MustNewConstMetric(descTopicPartitions, prometheus.GaugeValue, float64(t.partitions), name)
		ch <- prometheus.MustNewConstMetric(descTopicLogSize, prometheus.GaugeValue, t.size, name)
		ch <- prometheus.MustNewConstMetric(descTopicLogStart, prometheus.GaugeValue, t.start, name)
		ch <- prometheus.MustNewConstMetric(descTopicLogEnd, prometheus.GaugeValue, t.end, name)
		ch <- prometheus.MustNewConstMetric(descTopicHW, prometheus.GaugeValue, t.hw, name)
		ch <- prometheus.MustNewConstMetric(descTopicSegments, prometheus.GaugeValue, t.segments, name)
		ch <- prometheus.MustNewConstMetric(descTopicLSO, prometheus.GaugeValue, t.lso, name)
		if t.compact {
			ch <- prometheus.MustNewConstMetric(descTopicDirtyRatio, prometheus.GaugeValue, t.dirtyRatio, name)
			ch <- prometheus.MustNewConstMetric(descTopicCleanerLag, prometheus.GaugeValue, t.cleanerLagSecs, name)
		}
	}
}

// groupCollector reports consumer groups' members and lag at scrape time,
// read from the group coordinator: lag by partition when partitionLevel is
// set, else summed by topic.
type groupCollector struct {
	b              *broker.Broker
	partitionLevel bool
}

// groupScrapeTimeout bounds how long a scrape waits for the coordinator.
const groupScrapeTimeout = 5 * time.Second

var (
	descGroupLag      = prometheus.NewDesc("sluice_group_lag", "A group's lag on a partition: high watermark minus committed offset (partitions with a committed offset only).", []string{"group", "topic", "partition"}, nil)
	descGroupTopicLag = prometheus.NewDesc("sluice_group_lag", "A group's lag on a topic: high watermark minus committed offset, summed over the partitions with a committed offset.", []string{"group", "topic"}, nil)
	descGroupMembers  = prometheus.NewDesc("sluice_group_members", "A group's members.", []string{"group"}, nil)
)

func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.partitionLevel {
		ch <- descGroupLag
	} else {
		ch <- descGroupTopicLag
	}
	ch <- descGroupMembers
}

func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	coord := c.b.Groups()
	if coord == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupScrapeTimeout)
	defer cancel()
	for _, g := range coord.Stats(ctx) {
		ch <- prometheus.MustNewConstMetric(descGroupMembers, prometheus.GaugeValue, float64(g.Members), g.Group)
		byTopic := map[string]int64{}
		for tp, committed := range g.Offsets {
			p, ok := c.b.Partition(tp.Topic, tp.Partition)
			if !ok {
				continue
			}
			lag := max(p.HighWatermark()-committed, 0) // as Kafka: what a consumer can read
			if !c.partitionLevel {
				byTopic[tp.Topic] += lag
				continue
			}
			ch <- prometheus.MustNewConstMetric(descGroupLag, prometheus.GaugeValue, float64(lag),
				g.Group, tp.Topic, strconv.Itoa(int(tp.Partition)))
		}
		for topic, lag := range byTopic {
			ch <- prometheus.MustNewConstMetric(descGroupTopicLag, prometheus.GaugeValue, float64(lag), g.Group, topic)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// HandlerOptions configure NewHandler.
type HandlerOptions struct {
	// Pprof serves Go's profiles on /debug/pprof/. Off by default: they
	// show the command line and let anyone who reaches the HTTP port take
	// CPU time and traces; turn it on (`sluice serve --pprof`) on a port
	// only operators reach.
	Pprof bool
}

// degraded says why the broker, though serving, is not fully ready: a log
// directory offline or full; "" when it is.
func (m *Metrics) degraded() string {
	b := m.broker.Load()
	if b == nil {
		return ""
	}
	var why []string
	if rs := b.ReplicationStats(); rs.Fenced {
		why = append(why, "fenced by the controller: this broker has not caught up with the metadata or cannot reach the active controller; it leads nothing until then")
	}
	for _, d := range b.LogDirs() {
		if d.Offline != nil {
			why = append(why, fmt.Sprintf("log dir %s offline since %s (%s failed: %v); its partitions refuse writes until the broker restarts; check the disk first",
				d.Path, d.Offline.Since.UTC().Format(time.RFC3339), d.Offline.Log, d.Offline.Err))
		}
		if d.NoSpace != nil {
			why = append(why, fmt.Sprintf("log dir %s full since %s (%v); writes fail until space is freed",
				d.Path, d.NoSpace.Since.UTC().Format(time.RFC3339), d.NoSpace.Err))
		}
	}
	return strings.Join(why, "; ")
}

// Handler serves /metrics, /healthz and /readyz, without /debug/pprof/
// (NewHandler with the zero HandlerOptions).
func Handler(m *Metrics, ready <-chan struct{}) http.Handler {
	return NewHandler(m, ready, HandlerOptions{})
}

// NewHandler serves /metrics, /healthz (the process is alive), /readyz
// and, with opts.Pprof, /debug/pprof/. /readyz answers 200 "ready" once
// recovery finished and metadata loaded (ready is closed), 503
// "recovering" before, and 503 "degraded: <why>" while a log directory of
// the broker given to m.SetBroker is offline or full.
func NewHandler(m *Metrics, ready <-chan struct{}, opts HandlerOptions) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	if opts.Pprof {
		// Profiles, for "profile before you optimise" on a live broker.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-ready:
		default:
			http.Error(w, "recovering", http.StatusServiceUnavailable)
			return
		}
		if why := m.degraded(); why != "" {
			http.Error(w, "degraded: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
