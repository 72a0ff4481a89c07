// Package availability measures how much of a chaos run the cluster took
// writes: the share of wall time in which some produce succeeded, and the
// longest stretch in which none did.
//
// Time is cut into fixed buckets from a start instant; a bucket is available
// if a produce that succeeded ended (was acknowledged) inside it. A produce
// is counted when it is acknowledged, not when it was sent: one that waited
// through an outage and then succeeded does not make the outage available.
// A stretch with no attempt at all counts as unavailable, so the producers
// must run throughout the measured window.
//
// The Recorder takes the instants from its callers (no clock inside), so
// tests feed it synthetic timestamps.
package availability

import (
	"fmt"
	"sync"
	"time"
)

// maxBuckets bounds the memory of a Recorder: one bool per bucket, 1 MiB in
// all (12 days of 1 s buckets). Attempts ending later are counted in
// Report.OutOfRange and otherwise ignored.
const maxBuckets = 1 << 20

// Recorder collects produce attempts. It is safe for concurrent use: every
// producer goroutine reports into the same one.
type Recorder struct {
	start  time.Time
	bucket time.Duration

	mu         sync.Mutex
	ok         []bool // per bucket: a produce succeeded in it; grown on demand
	attempts   int
	succeeded  int
	outOfRange int
	maxLatency time.Duration
}

// New returns a Recorder whose buckets of width bucket start at start.
func New(start time.Time, bucket time.Duration) *Recorder {
	if bucket <= 0 {
		panic(fmt.Sprintf("BUG: availability: bucket width %v: want > 0", bucket))
	}
	return &Recorder{start: start, bucket: bucket}
}

// Record reports one produce attempt: sent at start, answered (or given up
// on) at end, failed if err is not nil.
func (r *Recorder) Record(start, end time.Time, err error) {
	if end.Before(start) {
		panic(fmt.Sprintf("BUG: availability: attempt ends at %v, before it started at %v", end, start))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if err != nil {
		return
	}
	r.succeeded++
	r.maxLatency = max(r.maxLatency, end.Sub(start))
	i, ok := r.index(end)
	if !ok {
		r.outOfRange++
		return
	}
	if i >= len(r.ok) {
		r.ok = append(r.ok, make([]bool, i+1-len(r.ok))...)
	}
	r.ok[i] = true
}

// index is the bucket t falls in, false if before start or past maxBuckets.
func (r *Recorder) index(t time.Time) (int, bool) {
	if t.Before(r.start) {
		return 0, false
	}
	i := t.Sub(r.start) / r.bucket
	if i >= maxBuckets {
		return 0, false
	}
	return int(i), true
}

// Report is availability over [start, end).
type Report struct {
	Start, End time.Time
	Bucket     time.Duration
	// Buckets is how many buckets the window spans, the last one maybe in
	// part; Available is how many of them had a successful produce.
	Buckets   int
	Available int
	// Availability is the share of the window's wall time in available
	// buckets, from 0 to 1 (a partial last bucket weighs its part); 0 for
	// an empty window.
	Availability float64
	// LongestOutage is the longest run of unavailable buckets, starting at
	// LongestOutageStart (zero time when there was none).
	LongestOutage      time.Duration
	LongestOutageStart time.Time
	// Attempts, Succeeded and Failed count every attempt reported, inside
	// the window or not.
	Attempts  int
	Succeeded int
	Failed    int
	// OutOfRange counts successes that ended before start or too late to
	// be kept (maxBuckets).
	OutOfRange int
	// MaxLatency is the longest successful attempt, start to end.
	MaxLatency time.Duration
}

func (rp Report) String() string {
	s := fmt.Sprintf("availability %.1f%% (%d of %s of %v available over %v); %d of %s succeeded, the slowest in %v",
		100*rp.Availability, rp.Available, plural(rp.Buckets, "bucket"), rp.Bucket, rp.End.Sub(rp.Start),
		rp.Succeeded, plural(rp.Attempts, "produce attempt"), rp.MaxLatency)
	if rp.LongestOutage > 0 {
		s += fmt.Sprintf("; longest outage %v from +%v", rp.LongestOutage, rp.LongestOutageStart.Sub(rp.Start))
	}
	if rp.OutOfRange > 0 {
		s += fmt.Sprintf("; %s outside the window ignored", plural(rp.OutOfRange, "success"))
	}
	return s
}

func plural(n int, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case noun[len(noun)-1] == 's':
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Report measures the window from the Recorder's start to end. Successes
// ending at or after end are left out of it.
func (r *Recorder) Report(end time.Time) Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := Report{
		Start: r.start, End: end, Bucket: r.bucket,
		Attempts: r.attempts, Succeeded: r.succeeded, Failed: r.attempts - r.succeeded,
		OutOfRange: r.outOfRange, MaxLatency: r.maxLatency,
	}
	window := end.Sub(r.start)
	if window <= 0 {
		rp.End = r.start
		return rp
	}
	if window/r.bucket >= maxBuckets {
		// Past what Record keeps: measure the part it kept (no overflow:
		// maxBuckets*bucket <= window).
		window = maxBuckets * r.bucket
		end = r.start.Add(window)
		rp.End = end
	}
	rp.Buckets = int((window + r.bucket - 1) / r.bucket)
	var available, outage time.Duration
	var outageStart time.Time
	for i := range rp.Buckets {
		from := r.start.Add(time.Duration(i) * r.bucket)
		width := min(r.bucket, end.Sub(from))
		if i < len(r.ok) && r.ok[i] {
			rp.Available++
			available += width
			outage = 0
			continue
		}
		if outage == 0 {
			outageStart = from
		}
		outage += width
		if outage > rp.LongestOutage {
			rp.LongestOutage, rp.LongestOutageStart = outage, outageStart
		}
	}
	rp.Availability = float64(available) / float64(window)
	return rp
}
