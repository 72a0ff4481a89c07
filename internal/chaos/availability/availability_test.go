package availability

import (
	"errors"
	"sync"
	"testing"
	"time"
)

var (
	t0     = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	errOut = errors.New("produce timed out")
)

// at is t0 plus d seconds.
func at(d float64) time.Time { return t0.Add(time.Duration(d * float64(time.Second))) }

type attempt struct {
	start, end float64 // seconds after t0
	failed     bool
}

func TestReport(t *testing.T) {
	for _, tc := range []struct {
		name     string
		attempts []attempt
		end      float64
		want     Report // Start, End, Bucket and the counts are filled in by the test
	}{
		{
			name:     "every second available",
			attempts: []attempt{{0, 0.5, false}, {1, 1.2, false}, {2.1, 2.9, false}, {3, 3.99, false}},
			end:      4,
			want:     Report{Buckets: 4, Available: 4, Availability: 1},
		},
		{
			name: "three seconds of failures in the middle",
			attempts: []attempt{
				{0, 0.1, false}, {1, 1.1, false}, {2, 2.1, false},
				{3, 3.5, true}, {3.5, 4.5, true}, {4.5, 5.5, true},
				{5.9, 6.1, false}, {7, 7.1, false}, {8, 8.1, false}, {9, 9.1, false},
			},
			end:  10,
			want: Report{Buckets: 10, Available: 7, Availability: 0.7, LongestOutage: 3 * time.Second, LongestOutageStart: at(3)},
		},
		{
			name: "a success that waited through the outage counts when it ends",
			attempts: []attempt{
				{0, 0.1, false}, {0.5, 4.5, false}, {5, 5.1, false},
			},
			end:  6,
			want: Report{Buckets: 6, Available: 3, Availability: 0.5, LongestOutage: 3 * time.Second, LongestOutageStart: at(1)},
		},
		{
			name:     "no attempts at the start and the end count as outages; the longest wins",
			attempts: []attempt{{2, 2.5, false}, {3, 3.2, false}},
			end:      8,
			want:     Report{Buckets: 8, Available: 2, Availability: 0.25, LongestOutage: 4 * time.Second, LongestOutageStart: at(4)},
		},
		{
			name:     "a partial last bucket weighs its part",
			attempts: []attempt{{0, 0.5, false}, {1, 1.5, false}},
			end:      2.5,
			want:     Report{Buckets: 3, Available: 2, Availability: 0.8, LongestOutage: 500 * time.Millisecond, LongestOutageStart: at(2)},
		},
		{
			name:     "a success at a bucket's edge belongs to the next",
			attempts: []attempt{{0.5, 1, false}},
			end:      2,
			want:     Report{Buckets: 2, Available: 1, Availability: 0.5, LongestOutage: time.Second, LongestOutageStart: at(0)},
		},
		{
			name:     "failures only",
			attempts: []attempt{{0, 1, true}, {1, 2, true}},
			end:      2,
			want:     Report{Buckets: 2, Availability: 0, LongestOutage: 2 * time.Second, LongestOutageStart: at(0)},
		},
		{
			name:     "successes before the start and after the end are left out",
			attempts: []attempt{{-2, -1, false}, {0, 0.5, false}, {2, 2.5, false}},
			end:      2,
			want:     Report{Buckets: 2, Available: 1, Availability: 0.5, LongestOutage: time.Second, LongestOutageStart: at(1), OutOfRange: 1},
		},
		{
			name:     "an empty window",
			attempts: []attempt{{0, 0.5, false}},
			end:      0,
			want:     Report{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(t0, time.Second)
			want := tc.want
			want.Start, want.End, want.Bucket = t0, at(tc.end), time.Second
			for _, a := range tc.attempts {
				var err error
				want.Attempts++
				if a.failed {
					err = errOut
					want.Failed++
				} else {
					want.Succeeded++
					want.MaxLatency = max(want.MaxLatency, at(a.end).Sub(at(a.start)))
				}
				r.Record(at(a.start), at(a.end), err)
			}
			got := r.Report(at(tc.end))
			if got != want {
				t.Errorf("Report:\n got %+v\nwant %+v", got, want)
			}
			t.Log(got)
		})
	}
}

func TestBoundedBuckets(t *testing.T) {
	r := New(t0, time.Second)
	last := t0.Add((maxBuckets - 1) * time.Second)
	r.Record(last, last, nil)
	r.Record(last.Add(time.Second), last.Add(time.Second), nil) // past the last bucket kept
	got := r.Report(last.Add(time.Hour))
	if got.Buckets != maxBuckets || got.Available != 1 || got.OutOfRange != 1 || !got.End.Equal(last.Add(time.Second)) {
		t.Fatalf("Report past maxBuckets: %+v; want %d buckets, 1 available, 1 out of range, the window cut at the last bucket", got, maxBuckets)
	}
	if got.LongestOutage != (maxBuckets-1)*time.Second {
		t.Fatalf("longest outage %v; want %v", got.LongestOutage, (maxBuckets-1)*time.Second)
	}
}

func TestConcurrentProducers(t *testing.T) {
	r := New(t0, time.Second)
	const producers, each = 8, 1000
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var err error
				if (p+i)%2 == 0 {
					err = errOut
				}
				start := t0.Add(time.Duration(i) * 10 * time.Millisecond)
				r.Record(start, start.Add(5*time.Millisecond), err)
			}
		}()
	}
	wg.Wait()
	got := r.Report(at(10))
	if got.Attempts != producers*each || got.Succeeded != producers*each/2 || got.Availability != 1 {
		t.Fatalf("after %d attempts from %d producers, half failed: %v", producers*each, producers, got)
	}
}

func TestMisuse(t *testing.T) {
	for name, f := range map[string]func(){
		"zero bucket":       func() { New(t0, 0) },
		"ends before start": func() { New(t0, time.Second).Record(at(2), at(1), nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
}
