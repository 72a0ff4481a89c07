package collect_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// metric reads one sample of the collector's /metrics (0 when absent).
func metric(t *testing.T, base, series string) float64 {
	t.Helper()
	m := do(t, http.MethodGet, base+"/metrics", nil, nil)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	sub := re.FindSubmatch(m.body)
	if sub == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(sub[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// eventNumbers returns the "n" of each record's JSON value, failing the
// test on a number seen twice.
func eventNumbers(t *testing.T, recs []*kgo.Record) map[int]bool {
	t.Helper()
	seen := map[int]bool{}
	for _, r := range recs {
		var ev struct{ N int }
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatalf("record %q: %v", r.Value, err)
		}
		if seen[ev.N] {
			t.Fatalf("event %d delivered twice", ev.N)
		}
		seen[ev.N] = true
	}
	return seen
}

// With the broker down, the collector keeps answering 202: what the
// small buffer cannot take and what the cluster fails after the delivery
// timeout go to the disk spool. When the broker is back, every accepted
// event is in the topic once, and new requests go to memory again.
func TestSpoolWhileBrokerDown(t *testing.T) {
	dataDir := t.TempDir()
	b := startBrokerOn(t, dataDir, "127.0.0.1:0")
	createTopic(t, b.addr, "events", 1)
	spoolDir := t.TempDir()
	_, base := startCollector(t, b.addr, fmt.Sprintf(`
limits: {buffer_bytes: 2000, delivery_timeout: 1s}
spool: {dir: %s}
streams:
  events: {topic: events}
`, spoolDir), nil)
	u := base + "/v1/streams/events"
	wantCode(t, "with the broker up", post(t, u, `{"n":0}`, nil), http.StatusAccepted)
	consume(t, b.addr, "events", 1)

	b.stop()
	const n = 300
	for i := 1; i <= n; i++ {
		body := fmt.Sprintf(`{"n":%d}`, i)
		if i%10 == 0 {
			body = fmt.Sprintf(`[{"n":%d},{"n":%d}]`, i, n+i) // two in one request
		}
		wantCode(t, fmt.Sprintf("event %d with the broker down", i), post(t, u, body, nil), http.StatusAccepted)
	}
	accepted := n + n/10 + 1
	// The buffer's records fail after the 1 s delivery timeout and are
	// spooled behind the others.
	time.Sleep(1500 * time.Millisecond)
	spooled := metric(t, base, `sluice_collect_events_spooled_total{stream="events"}`)
	if spooled < float64(accepted-1-20) {
		t.Fatalf("%v events spooled of %d accepted with the broker down", spooled, accepted-1)
	}
	if files, _ := filepath.Glob(filepath.Join(spoolDir, "*.spool")); len(files) == 0 {
		t.Fatal("no spool segment on disk")
	}

	b = startBrokerOn(t, dataDir, b.addr)
	recs := consume(t, b.addr, "events", accepted)
	seen := eventNumbers(t, recs)
	for i := 0; i <= n; i++ {
		if !seen[i] || (i > 0 && i%10 == 0 && !seen[n+i]) {
			t.Fatalf("event %d (or its pair) missing", i)
		}
	}
	// Everything spooled was replayed, the spool's files given back.
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, base, `sluice_collect_spool_bytes`) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spool still holds %v bytes", metric(t, base, `sluice_collect_spool_bytes`))
		}
		time.Sleep(50 * time.Millisecond)
	}
	spooled = metric(t, base, `sluice_collect_events_spooled_total{stream="events"}`)
	if r := metric(t, base, `sluice_collect_events_replayed_total{stream="events"}`); r != spooled {
		t.Fatalf("%v replayed, %v spooled", r, spooled)
	}
	// Caught up: the next events go through memory, not the spool.
	for i := range 5 {
		wantCode(t, "after the replay", post(t, u, fmt.Sprintf(`{"n":%d}`, 1000+i), nil), http.StatusAccepted)
	}
	consume(t, b.addr, "events", accepted+5)
	if s := metric(t, base, `sluice_collect_events_spooled_total{stream="events"}`); s != spooled {
		t.Fatalf("%v spooled after the replay caught up, %v before", s, spooled)
	}
	if m := metric(t, base, `sluice_collect_events_dropped_total{reason="delivery",stream="events"}`); m != 0 {
		t.Fatalf("%v events dropped", m)
	}
}

// A full spool answers 503 with Retry-After, taking none of the request;
// what it took is delivered once the broker is back.
func TestSpoolFull503(t *testing.T) {
	dataDir := t.TempDir()
	b := startBrokerOn(t, dataDir, "127.0.0.1:0")
	createTopic(t, b.addr, "events", 1)
	c, base := startCollector(t, b.addr, fmt.Sprintf(`
limits: {buffer_bytes: 1000, retry_after: 3s}
spool: {dir: %s, max_bytes: 3000}
streams:
  events: {topic: events}
`, t.TempDir()), nil)
	u := base + "/v1/streams/events"
	if err := c.Ready(); err != nil {
		t.Fatalf("not ready with an empty spool: %v", err)
	}
	b.stop()
	accepted := 0
	var a answer
	for i := range 200 {
		if a = post(t, u, fmt.Sprintf(`{"n":%d}`, i), nil); a.code != http.StatusAccepted {
			break
		}
		accepted++
	}
	wantCode(t, "spool full", a, http.StatusServiceUnavailable)
	if a.header.Get("Retry-After") != "3" || !bytes.Contains(a.body, []byte("spool")) {
		t.Fatalf("503: Retry-After %q, %s", a.header.Get("Retry-After"), a.body)
	}
	// The buffer holds about 6 of these, 3000 bytes of spool some 25.
	if accepted < 15 || accepted > 60 {
		t.Fatalf("%d events accepted with a 1000-byte buffer and a 3000-byte spool", accepted)
	}
	if err := c.Ready(); err == nil {
		t.Fatal("ready with a full spool")
	}
	if d := metric(t, base, `sluice_collect_events_dropped_total{reason="spool_full",stream="events"}`); d != 1 {
		t.Fatalf("%v counted dropped for a full spool, want 1", d)
	}
	b = startBrokerOn(t, dataDir, b.addr)
	eventNumbers(t, consume(t, b.addr, "events", accepted))
}

// A damaged entry in the middle of a spool segment (bytes that were
// fsynced and do not read back: the disk's fault, not a torn write) costs
// that entry only: the entries after it are replayed, not cut off at
// recovery or skipped with the rest of the segment.
func TestSpoolDamagedEntryKeepsTheRest(t *testing.T) {
	first := startBrokerOn(t, t.TempDir(), "127.0.0.1:0")
	createTopic(t, first.addr, "events", 1)
	spoolDir := t.TempDir()
	_, base := startCollector(t, first.addr, fmt.Sprintf(`
limits: {buffer_bytes: 200, delivery_timeout: 1s}
spool: {dir: %s}
streams:
  events: {topic: events}
`, spoolDir), nil)
	first.stop()
	const n = 60
	u := base + "/v1/streams/events"
	for i := range n {
		wantCode(t, fmt.Sprintf("event %d", i), post(t, u, fmt.Sprintf(`{"n":%d}`, i), nil), http.StatusAccepted)
	}
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, base, `sluice_collect_events_spooled_total{stream="events"}`) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d events spooled", metric(t, base, `sluice_collect_events_spooled_total{stream="events"}`), n)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A copy of the spool (each put was fsynced before its 202), one byte
	// of it damaged halfway through its first segment, replayed by a
	// second collector into another broker: the first never gets its
	// broker back.
	copyDir := t.TempDir()
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "*.spool"))
	if len(segs) == 0 {
		t.Fatal("no spool segment")
	}
	for i, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			b[len(b)/2] ^= 0x40
		}
		if err := os.WriteFile(filepath.Join(copyDir, filepath.Base(seg)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	second := startBrokerOn(t, t.TempDir(), "127.0.0.1:0")
	createTopic(t, second.addr, "events", 1)
	_, base2 := startCollector(t, second.addr, fmt.Sprintf(`
spool: {dir: %s}
streams:
  events: {topic: events}
`, copyDir), nil)
	seen := eventNumbers(t, consume(t, second.addr, "events", n-1))
	deadline = time.Now().Add(30 * time.Second)
	for metric(t, base2, `sluice_collect_spool_bytes`) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spool still holds %v bytes", metric(t, base2, `sluice_collect_spool_bytes`))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := metric(t, base2, `sluice_collect_events_dropped_total{reason="spool_corrupt",stream=""}`); d != 1 {
		t.Fatalf("%v damaged entries counted, want 1", d)
	}
	if len(seen) != n-1 {
		t.Fatalf("%d events replayed, want %d (all but the damaged one)", len(seen), n-1)
	}
}
