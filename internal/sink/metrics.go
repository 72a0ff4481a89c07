package sink

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the sink's series on a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	records   *prometheus.CounterVec // by topic: records in objects uploaded and committed
	bytes     *prometheus.CounterVec // by topic: bytes of those objects
	objects   prometheus.Counter
	errors    prometheus.Counter
	commits   prometheus.Counter // failed commits
	lastFlush prometheus.Gauge
}

var lagDesc = prometheus.NewDesc("sluice_sink_lag_records",
	"High watermark minus the offset committed by the sink (records not yet in the store), per partition it owns.",
	[]string{"topic", "partition"}, nil)

var bufferedDesc = prometheus.NewDesc("sluice_sink_buffered_bytes",
	"Bytes of records encoded into files not yet uploaded (the limit is --max-buffered-bytes).", nil, nil)

func newMetrics(s *Sink) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_records_total",
			Help: "Records written to the store and committed, by topic."}, []string{"topic"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_bytes_total",
			Help: "Bytes of the objects written to the store and committed, by topic."}, []string{"topic"}),
		objects: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_objects_total",
			Help: "Objects uploaded (an object uploaded again after a crash or a failed commit counts again)."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_upload_errors_total",
			Help: "Failed uploads of an object (each is retried with backoff)."}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_commit_errors_total",
			Help: "Failed offset commits (the flush is replayed from the last committed offset)."}),
		lastFlush: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_sink_last_flush_timestamp_seconds",
			Help: "Unix time of the last flush whose objects were uploaded and whose offsets were committed."}),
	}
	m.reg.MustRegister(m.records, m.bytes, m.objects, m.errors, m.commits, m.lastFlush, partCollector{s})
	return m
}

// partCollector reports the per-partition lag and the buffered bytes.
type partCollector struct{ s *Sink }

func (c partCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- bufferedDesc
}

func (c partCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.statMu.Lock()
	defer c.s.statMu.Unlock()
	for k, st := range c.s.stats {
		if st.hw < 0 || st.committed < 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(max(st.hw-st.committed, 0)), k.topic, strconv.Itoa(int(k.partition)))
	}
	ch <- prometheus.MustNewConstMetric(bufferedDesc, prometheus.GaugeValue, float64(c.s.statBuffered))
}
