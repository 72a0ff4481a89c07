package loglin

import (
	"math/rand/v2"
	"testing"
)

// Every value falls into a bucket whose top is at or above it, within the
// promised relative error, and buckets are in value order.
func TestBuckets(t *testing.T) {
	for _, sub := range []int{1, 5, 7} {
		b := Buckets{SubBits: sub}
		n := b.Len(40)
		if got := b.Of(1<<40 - 1); got != n-1 {
			t.Fatalf("sub %d: the largest value's bucket %d, want %d", sub, got, n-1)
		}
		prevHigh := uint64(0)
		for i := range n {
			h := b.High(i)
			if i > 0 && h <= prevHigh {
				t.Fatalf("sub %d: bucket %d tops at %d, not above bucket %d's %d", sub, i, h, i-1, prevHigh)
			}
			if b.Of(h) != i || (i > 0 && b.Of(prevHigh+1) != i) {
				t.Fatalf("sub %d: bucket %d's bounds (%d, %d] fall into %d and %d", sub, i, prevHigh, h, b.Of(prevHigh+1), b.Of(h))
			}
			prevHigh = h
		}
		r := rand.New(rand.NewPCG(1, uint64(sub)))
		for range 100000 {
			v := r.Uint64N(1 << 40)
			h := b.High(b.Of(v))
			if h < v || float64(h-v) > float64(v)/float64(b.half())+1 {
				t.Fatalf("sub %d: %d in a bucket topping at %d", sub, v, h)
			}
		}
	}
}
