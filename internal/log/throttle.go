package log

import (
	"context"
	"math"
	"sync"
	"time"
)

// Throttler limits the bytes per second that the log cleaner reads and
// writes (log.cleaner.io.max.bytes.per.second), shared by every cleaner
// thread so that compaction never starves produce and fetch of disk
// bandwidth. It is a token bucket holding at most one second of bytes; a
// caller taking more than there is goes into debt and sleeps until it is
// repaid, so any request size works at any rate. Safe for concurrent use.
type Throttler struct {
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	mu     sync.Mutex
	rate   float64 // bytes per second; 0 is unlimited
	tokens float64
	last   time.Time
}

// unlimitedRate is the rate from which a Throttler never waits (Kafka's
// default, Double.MaxValue, is far above it).
const unlimitedRate = 1e18

// NewThrottler returns a throttler at bytesPerSecond (at or above 1e18, or
// not positive: unlimited). now and sleep are the clock; nil means the real
// one.
func NewThrottler(bytesPerSecond float64, now func() time.Time, sleep func(context.Context, time.Duration) error) *Throttler {
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	t := &Throttler{now: now, sleep: sleep}
	t.SetRate(bytesPerSecond)
	return t
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// SetRate changes the rate (a dynamic config change); the bucket starts full.
func (t *Throttler) SetRate(bytesPerSecond float64) {
	if bytesPerSecond <= 0 || bytesPerSecond >= unlimitedRate || math.IsNaN(bytesPerSecond) {
		bytesPerSecond = 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if bytesPerSecond == t.rate {
		return
	}
	t.rate, t.tokens, t.last = bytesPerSecond, bytesPerSecond, t.now()
}

// Wait takes n bytes from the bucket, sleeping while it is in debt. It
// returns early with ctx's error when ctx ends.
func (t *Throttler) Wait(ctx context.Context, n int) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	if t.rate == 0 {
		t.mu.Unlock()
		return nil
	}
	now := t.now()
	t.tokens = min(t.rate, t.tokens+now.Sub(t.last).Seconds()*t.rate)
	t.last = now
	t.tokens -= float64(n)
	var d time.Duration
	if t.tokens < 0 {
		d = time.Duration(-t.tokens / t.rate * float64(time.Second))
	}
	t.mu.Unlock()
	if d > 0 {
		return t.sleep(ctx, d)
	}
	return nil
}
