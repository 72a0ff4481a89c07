// Package httpapi is the broker's HTTP side: Prometheus metrics on
// /metrics, liveness on /healthz and readiness on /readyz.
package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
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

	// Label values are cached: building them per request would allocate.
	mu     sync.Mutex
	labels map[[2]int16][2]string
}

// NewMetrics registers the metrics. b may be nil until the broker is open;
// call SetBroker then so per-partition gauges appear.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), labels: map[[2]int16][2]string{}}
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
	m.reg.MustRegister(&partitionCollector{b: b}, &groupCollector{b: b})
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

// partitionCollector reports per-partition state at scrape time.
type partitionCollector struct{ b *broker.Broker }

var (
	descPartitions = prometheus.NewDesc("sluice_partitions", "Partitions this broker leads.", nil, nil)
	descUnderRepl  = prometheus.NewDesc("sluice_under_replicated_partitions", "Partitions with fewer in-sync replicas than replicas (always 0 on one node).", nil, nil)
	descLogSize    = prometheus.NewDesc("sluice_log_size_bytes", "Bytes of a partition's log on disk.", []string{"topic", "partition"}, nil)
	descLogStart   = prometheus.NewDesc("sluice_log_start_offset", "A partition's log start offset.", []string{"topic", "partition"}, nil)
	descLogEnd     = prometheus.NewDesc("sluice_log_end_offset", "A partition's log end offset.", []string{"topic", "partition"}, nil)
	descHW         = prometheus.NewDesc("sluice_high_watermark", "A partition's high watermark.", []string{"topic", "partition"}, nil)
	descSegments   = prometheus.NewDesc("sluice_log_segments", "A partition's segment count.", []string{"topic", "partition"}, nil)
	descLSO        = prometheus.NewDesc("sluice_last_stable_offset", "A partition's last stable offset: read_committed consumers read below it; behind the high watermark while a transaction is open.", []string{"topic", "partition"}, nil)
	descTxns       = prometheus.NewDesc("sluice_transactions", "Transactional ids by state (Empty, Ongoing, PrepareCommit, ...).", []string{"state"}, nil)

	descDirtyRatio   = prometheus.NewDesc("sluice_cleaner_dirty_ratio", "Share of a compacted partition's closed-segment bytes not yet cleaned (cleanable now).", []string{"topic", "partition"}, nil)
	descCleanerLag   = prometheus.NewDesc("sluice_cleaner_lag_seconds", "Age, by record timestamp, of a compacted partition's oldest uncleaned record; 0 when all is clean.", []string{"topic", "partition"}, nil)
	descBytesCleaned = prometheus.NewDesc("sluice_cleaner_bytes_cleaned_total", "Segment bytes the log cleaner has compacted.", nil, nil)
	descCleanPasses  = prometheus.NewDesc("sluice_cleaner_passes_total", "Log cleaner passes run.", nil, nil)
)

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPartitions, descUnderRepl, descLogSize, descLogStart, descLogEnd, descHW, descSegments,
		descLSO, descTxns, descDirtyRatio, descCleanerLag, descBytesCleaned, descCleanPasses} {
		ch <- d
	}
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	parts := c.b.Partitions()
	ch <- prometheus.MustNewConstMetric(descPartitions, prometheus.GaugeValue, float64(len(parts)))
	ch <- prometheus.MustNewConstMetric(descUnderRepl, prometheus.GaugeValue, 0)
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
	nowMs := time.Now().UnixMilli()
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
			lag := 0.0
			if st.OldestDirtyTimestamp >= 0 {
				lag = max(float64(nowMs-st.OldestDirtyTimestamp)/1000, 0)
			}
			ch <- prometheus.MustNewConstMetric(descDirtyRatio, prometheus.GaugeValue, st.DirtyRatio, tp.Topic, part)
			ch <- prometheus.MustNewConstMetric(descCleanerLag, prometheus.GaugeValue, lag, tp.Topic, part)
		}
	}
}

// groupCollector reports consumer groups' members and lag at scrape time,
// read from the group coordinator.
type groupCollector struct{ b *broker.Broker }

// groupScrapeTimeout bounds how long a scrape waits for the coordinator.
const groupScrapeTimeout = 5 * time.Second

var (
	descGroupLag     = prometheus.NewDesc("sluice_group_lag", "A group's lag on a partition: high watermark minus committed offset (partitions with a committed offset only).", []string{"group", "topic", "partition"}, nil)
	descGroupMembers = prometheus.NewDesc("sluice_group_members", "A group's members.", []string{"group"}, nil)
)

func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descGroupLag
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
		for tp, committed := range g.Offsets {
			p, ok := c.b.Partition(tp.Topic, tp.Partition)
			if !ok {
				continue
			}
			lag := max(p.HighWatermark()-committed, 0) // as Kafka: what a consumer can read
			ch <- prometheus.MustNewConstMetric(descGroupLag, prometheus.GaugeValue, float64(lag),
				g.Group, tp.Topic, strconv.Itoa(int(tp.Partition)))
		}
	}
}

// Handler serves /metrics, /debug/pprof/, /healthz (the process is alive) and /readyz
// (recovery finished and metadata loaded: ready is closed).
func Handler(m *Metrics, ready <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	// Profiles, for "profile before you optimise" on a live broker.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-ready:
			fmt.Fprintln(w, "ready")
		default:
			http.Error(w, "recovering", http.StatusServiceUnavailable)
		}
	})
	return mux
}
