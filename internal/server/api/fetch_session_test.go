package api

import (
	"sync"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func sessionParts(n int) []*cachedPartition {
	parts := make([]*cachedPartition, n)
	for i := range parts {
		parts[i] = &cachedPartition{key: fetchSessionKey{topic: "t", partition: int32(i)}, hw: -1, lso: -1, logStart: -1}
	}
	return parts
}

func testCache(slots int) (*fetchSessionCache, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := newFetchSessionCache(slots, 120*time.Second)
	c.now = clk.now
	return c, clk
}

func TestFetchSessionCacheEviction(t *testing.T) {
	c, clk := testCache(2)
	a := c.create(false, true, sessionParts(2))
	b := c.create(false, true, sessionParts(3))
	if a == nil || b == nil || a.id == b.id || a.id <= 0 || b.id <= 0 {
		t.Fatalf("sessions %v %v", a, b)
	}
	if a.epoch != 1 {
		t.Fatalf("new session epoch %d, want 1", a.epoch)
	}
	// Full, nothing stale or old enough: a consumer's session gets no
	// slot, whatever its size.
	clk.t = clk.t.Add(time.Second)
	if s := c.create(false, true, sessionParts(100)); s != nil {
		t.Fatal("evicted a young session for a consumer")
	}
	// A follower's session evicts the smallest consumer's.
	f := c.create(true, true, sessionParts(5))
	if f == nil || c.get(a.id) != nil || c.get(b.id) == nil {
		t.Fatalf("follower session %v; a cached %v, b cached %v", f, c.get(a.id) != nil, c.get(b.id) != nil)
	}
	// But not a follower's, when young.
	if s := c.create(true, true, sessionParts(50)); s == nil || c.get(b.id) != nil {
		t.Fatalf("follower session over b: %v", s)
	}
	if s := c.create(true, true, sessionParts(500)); s != nil {
		t.Fatal("evicted a young follower session")
	}

	// Stale: the least recently used session idle longer than the
	// eviction time goes first, whatever its size.
	c, clk = testCache(2)
	a = c.create(false, false, sessionParts(10))
	clk.t = clk.t.Add(10 * time.Second)
	b = c.create(false, false, sessionParts(1))
	clk.t = clk.t.Add(100 * time.Second)
	c.touch(a, 10) // a used at 110s, b at 10s
	clk.t = clk.t.Add(25 * time.Second)
	if s := c.create(false, false, sessionParts(1)); s == nil || c.get(b.id) != nil || c.get(a.id) == nil {
		t.Fatalf("stale b not evicted: %v", s)
	}

	// Old (created over the eviction time ago) but in use: evicted only
	// for a larger session, the smallest first.
	c, clk = testCache(2)
	a = c.create(false, false, sessionParts(4))
	b = c.create(false, false, sessionParts(2))
	clk.t = clk.t.Add(200 * time.Second)
	c.touch(a, 4)
	c.touch(b, 2)
	clk.t = clk.t.Add(time.Second)
	if s := c.create(false, false, sessionParts(2)); s != nil {
		t.Fatal("evicted an equal session")
	}
	if s := c.create(false, false, sessionParts(3)); s == nil || c.get(b.id) != nil || c.get(a.id) == nil {
		t.Fatalf("smaller old b not evicted for a larger session: %v", s)
	}
}

func TestFetchSessionCacheBounds(t *testing.T) {
	c, _ := testCache(0)
	if s := c.create(false, true, sessionParts(1)); s != nil {
		t.Fatal("a session with no slots")
	}
	c, _ = testCache(10)
	if s := c.create(false, true, sessionParts(maxFetchSessionPartitions+1)); s != nil {
		t.Fatal("a session over the partition limit")
	}
	s := c.create(false, true, sessionParts(maxFetchSessionPartitions))
	if s == nil {
		t.Fatal("no session at the partition limit")
	}
	if c.touch(s, maxFetchSessionPartitions+1) || c.get(s.id) != nil || c.len() != 0 {
		t.Fatal("a session grown past the partition limit stays")
	}
	if c.partitions != 0 {
		t.Fatalf("%d partitions accounted in an empty cache", c.partitions)
	}
	s = c.create(false, true, sessionParts(3))
	if !c.remove(s.id) || c.remove(s.id) || c.partitions != 0 {
		t.Fatal("remove")
	}
}

func TestNextFetchEpoch(t *testing.T) {
	for _, c := range [][2]int32{{0, 1}, {1, 2}, {1<<31 - 1, 1}, {-1, -1}} {
		if got := nextFetchEpoch(c[0]); got != c[1] {
			t.Errorf("nextFetchEpoch(%d) = %d, want %d", c[0], got, c[1])
		}
	}
}

// TestFetchSessionCacheConcurrent uses one cache from many goroutines
// (run with -race).
func TestFetchSessionCacheConcurrent(t *testing.T) {
	c, _ := testCache(8)
	c.now = time.Now
	c.evictAfter = 0
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				s := c.create(g%2 == 0, true, sessionParts(1+i%5))
				if s == nil {
					continue
				}
				s.mu.Lock()
				s.epoch = nextFetchEpoch(s.epoch)
				c.touch(s, len(s.parts))
				s.mu.Unlock()
				if i%3 == 0 {
					c.remove(s.id)
				}
				_ = c.get(s.id)
			}
		}()
	}
	wg.Wait()
	if n := c.len(); n > 8 {
		t.Fatalf("%d sessions in 8 slots", n)
	}
	total := 0
	c.mu.Lock()
	for _, e := range c.sessions {
		total += e.size
	}
	if total != c.partitions {
		t.Fatalf("partitions accounted %d, held %d", c.partitions, total)
	}
	c.mu.Unlock()
}
