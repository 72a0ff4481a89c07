package collect

import (
	"sync"
	"time"
)

// tokenBucket limits one source's requests: rate tokens a second, at most
// burst at once. Safe for concurrent use; the clock is the caller's.
type tokenBucket struct {
	rate  float64 // tokens per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	b := float64(burst)
	if b <= 0 {
		b = max(rate, 1)
	}
	return &tokenBucket{rate: rate, burst: b, tokens: b}
}

// allow takes a token at now, or returns how long until one is there.
func (tb *tokenBucket) allow(now time.Time) (ok bool, wait time.Duration) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if !tb.last.IsZero() {
		if d := now.Sub(tb.last).Seconds(); d > 0 {
			tb.tokens = min(tb.burst, tb.tokens+d*tb.rate)
		}
	}
	tb.last = now
	if tb.tokens >= 1 {
		tb.tokens--
		return true, 0
	}
	return false, time.Duration((1 - tb.tokens) / tb.rate * float64(time.Second))
}
