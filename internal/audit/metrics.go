package audit

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics is the auditor's sluice_audit_* series: a view of the tracker
// computed at each scrape (no state of its own), labelled by partition and
// by its leader now. A partition whose leader changes moves its series to
// the new broker's label.
type metrics struct {
	a                                                     *Auditor
	sent, acked, produceErrors, seen                      *prometheus.Desc
	lost, late, duplicated, outOfOrder, unexpected, undec *prometheus.Desc
	latency, lastSeen                                     *prometheus.Desc
}

func newRegistry(a *Auditor) *prometheus.Registry {
	labels := []string{"partition", "broker"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, labels, nil) }
	m := &metrics{
		a:             a,
		sent:          d("sluice_audit_heartbeats_sent_total", "Heartbeats handed to the producer."),
		acked:         d("sluice_audit_heartbeats_acked_total", "Heartbeats the cluster acknowledged (acks=all)."),
		produceErrors: d("sluice_audit_produce_errors_total", "Heartbeats whose produce failed or was not acknowledged within the delivery timeout (the grace period)."),
		seen:          d("sluice_audit_heartbeats_seen_total", "Distinct heartbeats of this auditor consumed back."),
		lost: d("sluice_audit_records_lost_total", "Acknowledged heartbeats not seen: passed over (a later one of the partition was consumed first) "+
			"or not seen within the grace period of their acknowledgement."),
		late:       d("sluice_audit_records_late_total", "Heartbeats counted lost that were consumed afterwards (lost minus late are still missing)."),
		duplicated: d("sluice_audit_records_duplicated_total", "Heartbeats consumed again after having been seen."),
		outOfOrder: d("sluice_audit_records_out_of_order_total", "Heartbeats consumed for the first time after a higher sequence of the same partition."),
		unexpected: d("sluice_audit_records_unexpected_total", "Records of this auditor with a sequence never sent, of another partition, or older than the tracking window."),
		undec:      d("sluice_audit_records_undecodable_total", "Records on the audit topic that are not heartbeats."),
		latency:    d("sluice_audit_latency_seconds", "From a heartbeat's produce to its consumption (wall clock of the auditor's host)."),
		lastSeen:   d("sluice_audit_last_seen_seconds", "Seconds since the last heartbeat of the partition was consumed (since the auditor's start when none was)."),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.sent, m.acked, m.produceErrors, m.seen, m.lost, m.late, m.duplicated, m.outOfOrder,
		m.unexpected, m.undec, m.latency, m.lastSeen} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	a := m.a
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	for _, p := range a.partitions {
		s := &a.tr.track(p).stats
		broker := "none"
		if l, ok := a.leaders[p]; ok && l >= 0 {
			broker = strconv.Itoa(int(l))
		}
		lv := []string{strconv.Itoa(int(p)), broker}
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
		}
		counter(m.sent, s.Sent)
		counter(m.acked, s.Acked)
		counter(m.produceErrors, s.ProduceErrors)
		counter(m.seen, s.Seen)
		counter(m.lost, s.Lost)
		counter(m.late, s.Late)
		counter(m.duplicated, s.Duplicated)
		counter(m.outOfOrder, s.OutOfOrder)
		counter(m.unexpected, s.Unexpected)
		counter(m.undec, s.Undecodable)
		buckets := make(map[float64]uint64, len(promBuckets))
		var cum uint64
		for i, b := range promBuckets {
			cum += s.prom[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(m.latency, s.Seen, s.latSum, buckets, lv...)
		last := s.LastSeen
		if last.IsZero() {
			last = a.started
		}
		since := 0.0
		if !last.IsZero() {
			since = now.Sub(last).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(m.lastSeen, prometheus.GaugeValue, since, lv...)
	}
}
