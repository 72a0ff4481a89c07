package bench

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/sluice-io/sluice/internal/loglin"
)

// histogram is a small HDR-style latency histogram: values (nanoseconds)
// fall into log-linear buckets, 64 per power of two above 128 ns, so a
// reported quantile is at most 1/64 (1.6%) above the true value. Record is
// lock-free and safe for concurrent use; quantiles read a racy but
// monotone snapshot, which is what a live progress line needs.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

const (
	histSubBits = 7                      // 128 linear buckets below 128 ns
	histHalf    = 1 << (histSubBits - 1) // 64 buckets per power of two above
	histBuckets = (1 << histSubBits) + (64-histSubBits)*histHalf
)

// buckets is the histogram's bucketing; histBuckets is its Len(64)
// (TestBucketsAreContiguousAndBounded).
var buckets = loglin.Buckets{SubBits: histSubBits}

// Record adds one latency; negative ones (clock steps) count as zero.
func (h *histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[buckets.Of(uint64(v))].Add(1)
	h.n.Add(1)
	for {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
}

// Count is how many latencies were recorded.
func (h *histogram) Count() uint64 { return h.n.Load() }

// Max is the largest recorded latency, exact.
func (h *histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the value at quantile q (0..1): the top of the bucket
// holding the ceil(q*n)-th smallest value, capped at the exact maximum.
func (h *histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			v := time.Duration(buckets.High(i))
			if m := h.Max(); v > m {
				v = m
			}
			return v
		}
	}
	return h.Max()
}
