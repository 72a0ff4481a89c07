package audit

import (
	"math"
	"time"

	"github.com/sluice-io/sluice/internal/loglin"
)

// latencyHist is a log-linear latency histogram: 32 linear buckets below
// 32 ns, then 16 per power of two, so a quantile it reports is at most 1/16
// (6%) above the true value; latencies above histMax count as histMax.
// 592 buckets, about 4.7 KiB. Not safe for concurrent use: its owner's lock
// guards it.
type latencyHist struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

const (
	histSubBits = 5                      // 32 linear buckets
	histHalf    = 1 << (histSubBits - 1) // 16 buckets per power of two above
	histMaxBits = 40                     // 2^40 ns, about 18 minutes
	histMax     = time.Duration(1<<histMaxBits - 1)
	histBuckets = (1 << histSubBits) + (histMaxBits-histSubBits)*histHalf
)

// histBucketing is the histogram's bucketing; histBuckets is its
// Len(histMaxBits) (TestHistBuckets).
var histBucketing = loglin.Buckets{SubBits: histSubBits}

// record adds one latency; a negative one (the wall clock stepped back)
// counts as zero.
func (h *latencyHist) record(d time.Duration) {
	d = min(max(d, 0), histMax)
	h.counts[histBucketing.Of(uint64(d))]++
	h.n++
	h.max = max(h.max, d)
}

// merge adds o's latencies to h.
func (h *latencyHist) merge(o *latencyHist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the latency at q (0..1): the top of the bucket holding
// the ceil(q*n)-th smallest, at most the exact maximum; 0 with no latency.
func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(h.n))), 1)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(time.Duration(histBucketing.High(i)), h.max)
		}
	}
	return h.max
}
