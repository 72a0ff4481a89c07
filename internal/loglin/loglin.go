// Package loglin is the bucketing of log-linear (HDR-style) histograms:
// values below 2^SubBits each have a bucket of their own, and every power
// of two above is cut into 2^(SubBits-1) equal buckets, so the top of a
// value's bucket is at most 1/2^(SubBits-1) above it. It holds no counts:
// a histogram keeps them as it needs (atomic, or under its owner's lock).
package loglin

import "math/bits"

// Buckets is a bucketing with SubBits (at least 1) of resolution.
type Buckets struct{ SubBits int }

// Len is how many buckets hold the values below 2^maxBits.
func (b Buckets) Len(maxBits int) int {
	return 1<<b.SubBits + (maxBits-b.SubBits)*b.half()
}

func (b Buckets) half() int { return 1 << (b.SubBits - 1) }

// Of is the bucket of v.
func (b Buckets) Of(v uint64) int {
	l := bits.Len64(v)
	if l <= b.SubBits {
		return int(v)
	}
	m := l - b.SubBits // v>>m is in [half, 2*half)
	return 1<<b.SubBits + (m-1)*b.half() + int(v>>uint(m)) - b.half()
}

// High is the largest value that falls into bucket i.
func (b Buckets) High(i int) uint64 {
	if i < 1<<b.SubBits {
		return uint64(i)
	}
	j := i - 1<<b.SubBits
	m := j/b.half() + 1
	top := uint64(j%b.half() + b.half())
	return (top+1)<<uint(m) - 1
}
