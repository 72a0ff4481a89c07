package mirror

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the mirror's series on a registry of its own.
type metrics struct {
	reg        *prometheus.Registry
	records    *prometheus.CounterVec // by source topic
	bytes      *prometheus.CounterVec // by source topic: keys, values, headers
	skipped    *prometheus.CounterVec // by source topic: records that came from the target
	pauses     prometheus.Counter
	translated *prometheus.CounterVec // by group
	// configChanges: target topic configs set or deleted to follow the
	// source, by source topic and op; configRefused: those the target
	// refused.
	configChanges, configRefused *prometheus.CounterVec
}

var (
	lagDesc = prometheus.NewDesc("sluice_mirror_lag_records",
		"Source high watermark minus the source offset after the last record copied (acknowledged by the target), per source partition.",
		[]string{"topic", "partition"}, nil)
	behindDesc = prometheus.NewDesc("sluice_mirror_seconds_behind",
		"Now minus the timestamp of the last record copied, per source partition; 0 when the partition has no lag.",
		[]string{"topic", "partition"}, nil)
)

func newMetrics(m *Mirror) *metrics {
	x := &metrics{
		reg: prometheus.NewRegistry(),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_mirror_records_total",
			Help: "Records copied and acknowledged by the target, by source topic."}, []string{"topic"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_mirror_bytes_total",
			Help: "Bytes (keys, values, headers) copied and acknowledged by the target, by source topic."}, []string{"topic"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_mirror_skipped_total",
			Help: "Records not copied because their " + HeaderSource + " header names the target cluster, by source topic."}, []string{"topic"}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_mirror_fetch_pauses_total",
			Help: "Times source fetching paused because the bytes in flight to the target reached the limit."}),
		translated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_mirror_offsets_translated_total",
			Help: "Partition offsets of consumer groups committed on the target by offset translation, by group."}, []string{"group"}),
		configChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_mirror_topic_config_changes_total",
			Help: "Configs of target topics set (op=set) or deleted (op=delete) to follow their source topic's, by source topic."}, []string{"topic", "op"}),
		configRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_mirror_topic_config_refused_total",
			Help: "Config changes of target topics the target refused (tried again when the source's value changes), by source topic."}, []string{"topic"}),
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_mirror_in_flight_bytes",
		Help: "Bytes produced to the target and not yet acknowledged."}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return float64(m.inFlightBytes)
	})
	x.reg.MustRegister(x.records, x.bytes, x.skipped, x.pauses, x.translated, x.configChanges, x.configRefused, inFlight, partCollector{m})
	return x
}

// partCollector reports lag and seconds behind from the partition states.
type partCollector struct{ m *Mirror }

func (c partCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- behindDesc
}

func (c partCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for k, st := range c.m.parts {
		if st.highWater < 0 || st.next < 0 {
			continue
		}
		p := strconv.Itoa(int(k.partition))
		lag := max(st.highWater-st.next, 0)
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag), k.topic, p)
		behind := 0.0
		if lag > 0 && !st.lastTime.IsZero() {
			behind = max(now.Sub(st.lastTime).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(behindDesc, prometheus.GaugeValue, behind, k.topic, p)
	}
}
