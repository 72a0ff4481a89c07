package bench

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestBucketsAreContiguousAndBounded(t *testing.T) {
	if histBuckets != buckets.Len(64) {
		t.Fatalf("histBuckets %d, the bucketing has %d below 2^64", histBuckets, buckets.Len(64))
	}
	prev := -1
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1, 1<<64 - 1} {
		i := buckets.Of(v)
		if i < prev || i >= histBuckets {
			t.Fatalf("buckets.Of(%d) = %d (prev %d, buckets %d)", v, i, prev, histBuckets)
		}
		prev = i
		if hi := buckets.High(i); hi < v || float64(hi-v) > float64(v)/64+1 {
			t.Fatalf("buckets.High(buckets.Of(%d)) = %d: outside 1/64", v, hi)
		}
		if i > 0 && buckets.High(i-1) >= v {
			t.Fatalf("value %d also fits bucket %d", v, i-1)
		}
	}
	for i := 1; i < histBuckets; i++ {
		if buckets.Of(buckets.High(i-1)+1) != i {
			t.Fatalf("bucket %d does not start right after bucket %d", i, i-1)
		}
	}
}

func TestQuantilesWithinOnePercentAndAHalf(t *testing.T) {
	var h histogram
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]time.Duration, 100000)
	for i := range vals {
		vals[i] = time.Duration(r.ExpFloat64() * float64(2*time.Millisecond))
		h.Record(vals[i])
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		if got < want || float64(got-want) > float64(want)*0.016 {
			t.Errorf("q%.3f = %v, want %v (+1.6%%)", q, got, want)
		}
	}
	if h.Max() != vals[len(vals)-1] || h.Quantile(1) != vals[len(vals)-1] {
		t.Errorf("max %v, q1 %v, want %v", h.Max(), h.Quantile(1), vals[len(vals)-1])
	}
	if h.Count() != uint64(len(vals)) {
		t.Errorf("count %d", h.Count())
	}
}
