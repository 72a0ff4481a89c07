package collect

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are a collector's sluice_collect_ series, in its own registry
// (no globals: two collectors in one process, as in tests, do not clash).
type metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec // by stream and HTTP status code
	accepted       *prometheus.CounterVec // by stream
	invalid        *prometheus.CounterVec // by stream and reason
	dropped        *prometheus.CounterVec // by stream and reason (buffer_full, spool_full, delivery, spool_corrupt)
	produceSeconds prometheus.Histogram
	bufferedBytes  prometheus.Gauge
	spooled        *prometheus.CounterVec // by stream
	replayed       *prometheus.CounterVec // by stream
	spoolBytes     prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_collect_requests_total",
			Help: "HTTP requests to streams, by stream and status code."}, []string{"stream", "code"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_collect_events_accepted_total",
			Help: "Events valid and taken into the buffer."}, []string{"stream"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_collect_events_invalid_total",
			Help: "Events refused as invalid, by reason (bad_json, not_object, schema)."}, []string{"stream", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_collect_events_dropped_total",
			Help: "Valid events not delivered: buffer_full or spool_full (refused with a 503), spool_error (the spool's disk failed; 503), delivery (accepted, then failed or timed out, without a spool), spool_corrupt (spooled entries that did not read back)."},
			[]string{"stream", "reason"}),
		produceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_collect_produce_latency_seconds",
			Help:    "From an event's receipt to the cluster's acknowledgement of its record.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		bufferedBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_collect_buffered_bytes",
			Help: "Bytes of records accepted and not yet acknowledged by the cluster."}),
		spooled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_collect_events_spooled_total",
			Help: "Events written to the disk spool (the buffer was full, the spool was replaying, or the cluster failed them)."},
			[]string{"stream"}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_collect_events_replayed_total",
			Help: "Spooled events produced from the spool and acknowledged by the cluster."}, []string{"stream"}),
		spoolBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_collect_spool_bytes",
			Help: "Bytes of the disk spool's segment files."}),
	}
	m.reg.MustRegister(m.requests, m.accepted, m.invalid, m.dropped, m.produceSeconds, m.bufferedBytes,
		m.spooled, m.replayed, m.spoolBytes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
