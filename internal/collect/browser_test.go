package collect_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/collect"
)

// Limits of the browser test, which shows its pages about a second after
// chromium starts.
const (
	browserReportTimeout  = 30 * time.Second // until both pages have reported
	browserConsumeTimeout = 15 * time.Second // then until the events are in the topic
	chromiumWaitDelay     = 5 * time.Second  // after the kill, for chromium's children to close its output
)

// shopPage is served by the allowed origin; %[1]s is the page's
// configuration (JSON), %[2]s the URL of evilPage. It sends these events:
//
//   - beacon: navigator.sendBeacon with a string (text/plain, the token in
//     the query), a simple request: no preflight;
//   - beacon-json: sendBeacon with an application/json Blob, preflighted,
//     with credentials (a beacon always sends them): the preflight needs
//     Access-Control-Allow-Origin with the origin itself and
//     Access-Control-Allow-Credentials;
//   - fetch: application/json and Authorization: Bearer, preflighted, and
//     the page reads the answer, which needs Access-Control-Allow-Origin
//     on the POST's answer too;
//   - slow-1, then slow-2 with the token of a source over its rate limit:
//     the page reads the 429 and its Retry-After, which a browser hides
//     from a cross-origin page unless Access-Control-Expose-Headers names
//     it.
//
// It then reports to /done on its own origin. A beacon may still be in
// flight then: sendBeacon only queues it.
const shopPage = `<!doctype html>
<html><head><title>shop</title></head><body>
<iframe src="%[2]s"></iframe>
<script>
const cfg = %[1]s;
const report = (r) => fetch("/done", {method: "POST", body: JSON.stringify(r)});
window.onerror = (msg) => { report({error: String(msg)}); };
(async () => {
	const r = {};
	try {
		r.beacon = navigator.sendBeacon(cfg.url + "?token=" + cfg.token,
			JSON.stringify({id: "beacon", via: "sendBeacon", user: "u1"}));
		r.beacon_json = navigator.sendBeacon(cfg.url + "?token=" + cfg.token,
			new Blob([JSON.stringify({id: "beacon-json", via: "sendBeacon", user: "u2"})], {type: "application/json"}));
		const res = await fetch(cfg.url, {method: "POST",
			headers: {"Content-Type": "application/json", "Authorization": "Bearer " + cfg.token},
			body: JSON.stringify({id: "fetch", via: "fetch", user: "u3"})});
		r.fetch_status = res.status;
		r.fetch_answer = await res.json();
		const slow = (id) => fetch(cfg.url, {method: "POST",
			headers: {"Content-Type": "application/json", "Authorization": "Bearer " + cfg.slow_token},
			body: JSON.stringify({id: id, via: "fetch", user: "u6"})});
		r.slow1_status = (await slow("slow-1")).status;
		const s2 = await slow("slow-2");
		r.slow2_status = s2.status;
		r.slow2_retry_after = s2.headers.get("Retry-After");
	} catch (e) {
		r.error = String(e);
	}
	report(r);
})();
</script></body></html>`

// evilPage is served by an origin the collector does not allow (in an
// iframe of shopPage). Both of its fetches reject in the page, for
// different reasons: the simple one (text/plain, the token in the query)
// is sent, and only its answer is hidden from the page; the preflighted
// one (application/json, Authorization) is never sent, because its
// preflight gets no Access-Control-Allow-Origin. The page reports after
// both have settled.
const evilPage = `<!doctype html>
<html><head><title>evil</title></head><body>
<script>
const cfg = %[1]s;
const report = (r) => fetch("/done", {method: "POST", body: JSON.stringify(r)});
window.onerror = (msg) => { report({error: String(msg)}); };
(async () => {
	const r = {};
	try {
		await fetch(cfg.url + "?token=" + cfg.token, {method: "POST", headers: {"Content-Type": "text/plain"},
			body: JSON.stringify({id: "evil-simple", user: "u4"})});
		r.simple = "read";
	} catch (e) {
		r.simple = "rejected: " + e;
	}
	try {
		await fetch(cfg.url, {method: "POST",
			headers: {"Content-Type": "application/json", "Authorization": "Bearer " + cfg.token},
			body: JSON.stringify({id: "evil-preflighted", user: "u5"})});
		r.preflighted = "read";
	} catch (e) {
		r.preflighted = "rejected: " + e;
	}
	report(r);
})();
</script></body></html>`

// pageServer serves *page at / and takes its report (a JSON object) at
// POST /done, passing it on reports. It is not started, so that its
// origin (its listener's address) can go into the pages before they are
// served: set *page, then Start.
func pageServer(t *testing.T, page *string, reports chan<- map[string]any) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, *page)
	})
	mux.HandleFunc("POST /done", func(w http.ResponseWriter, r *http.Request) {
		var rep map[string]any
		if b, err := io.ReadAll(r.Body); err != nil || json.Unmarshal(b, &rep) != nil {
			rep = map[string]any{"error": fmt.Sprintf("unreadable report %q: %v", b, err)}
		}
		select {
		case reports <- rep:
		default: // a second report (window.onerror after the first): the first decides
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewUnstartedServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// chromiumPath finds chromium, skipping the test when there is none
// unless SLUICE_REQUIRE_CHROMIUM is set (as in CI), where it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SLUICE_REQUIRE_CHROMIUM") != "" {
		t.Fatal("no chromium (nor chromium-browser) in PATH, and SLUICE_REQUIRE_CHROMIUM is set: apt-get install chromium")
	}
	t.Skip("no chromium in PATH (apt-get install chromium; SLUICE_REQUIRE_CHROMIUM=1 makes this a failure)")
	return ""
}

// startChromium runs headless chromium (bin) on pageURL until the end of the
// test, when it is killed by its pid; its output goes to the test log
// only if the test failed. The channel is closed when chromium exits.
func startChromium(t *testing.T, bin, pageURL string, ports ...string) <-chan struct{} {
	t.Helper()
	profile := t.TempDir() // removed after the kill: cleanups run last first
	cmd := exec.Command(bin,
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir="+profile, "--no-first-run", "--no-default-browser-check",
		"--disable-extensions", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-default-apps", "--mute-audio",
		// httptest's ports are ephemeral; never mind chromium's unsafe ports.
		"--explicitly-allowed-ports="+strings.Join(ports, ","),
		pageURL)
	var out bytes.Buffer // written by exec's copying goroutine, read after Wait
	cmd.Stdout, cmd.Stderr = &out, &out
	// Chromium's children inherit the pipe: Wait returns when the last of
	// them has closed it, or this long after chromium has exited.
	cmd.WaitDelay = chromiumWaitDelay
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("chromium ran %v, exit %v; its output:\n%s", time.Since(start).Round(time.Millisecond), waitErr, out.String())
		}
	})
	return exited
}

// awaitReport waits for a page's report, failing the test if chromium
// exits first or the report does not come before deadline.
func awaitReport(t *testing.T, what string, reports <-chan map[string]any, exited <-chan struct{}, deadline <-chan time.Time) map[string]any {
	t.Helper()
	select {
	case r := <-reports:
		if e, ok := r["error"]; ok {
			t.Fatalf("%s page: %v (report %v)", what, e, r)
		}
		return r
	case <-exited:
		t.Fatalf("chromium exited before the %s page reported", what)
	case <-deadline:
		t.Fatalf("no report from the %s page within %v", what, browserReportTimeout)
	}
	return nil
}

// eventsByID reads topic from the start until it has every id in want or
// timeout passes, then 300ms more for records that should not be; it
// returns the events (JSON objects) by their id field. Unlike consume, it
// does not fail on a missing event, so that the test can say which.
func eventsByID(t *testing.T, brokers, topic string, want []string, timeout time.Duration) map[string]*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]*kgo.Record{}
	add := func(recs []*kgo.Record) {
		for _, r := range recs {
			var ev struct{ ID string }
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				t.Fatalf("record %q: %v", r.Value, err)
			}
			if got[ev.ID] != nil {
				t.Errorf("event %s twice in %s", ev.ID, topic)
			}
			got[ev.ID] = r
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for ctx.Err() == nil && slices.ContainsFunc(want, func(id string) bool { return got[id] == nil }) {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if ctx.Err() == nil {
				t.Logf("fetch %s/%d: %v", topic, p, err)
			}
		})
		add(fs.Records())
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	add(cl.PollFetches(ctx2).Records())
	return got
}

// requestLog records the requests a handler receives, on arrival, with
// the status of its answer once its header is written (before it
// leaves). It is safe for concurrent use.
type requestLog struct {
	mu  sync.Mutex
	log []*loggedRequest
}

type loggedRequest struct {
	origin, what string // what: "POST text/plain", "OPTIONS [authorization,content-type]"
	code         int    // 0 until the answer's header is written
}

func (l *requestLog) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		what := r.Method
		if r.Method == http.MethodOptions {
			what += " [" + r.Header.Get("Access-Control-Request-Headers") + "]"
		} else {
			ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
			what += " " + cmp.Or(ct, "-")
			if r.Header.Get("Authorization") != "" {
				what += " bearer"
			}
		}
		lr := &loggedRequest{origin: r.Header.Get("Origin"), what: what}
		l.mu.Lock()
		l.log = append(l.log, lr)
		l.mu.Unlock()
		next.ServeHTTP(&codeWriter{ResponseWriter: w, l: l, r: lr}, r)
	})
}

// requests returns the requests from origin so far, as "what -> code",
// sorted.
func (l *requestLog) requests(origin string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.log {
		if r.origin == origin {
			out = append(out, fmt.Sprintf("%s -> %d", r.what, r.code))
		}
	}
	slices.Sort(out)
	return out
}

// codeWriter notes the status code of an answer in its request's log.
type codeWriter struct {
	http.ResponseWriter
	l *requestLog
	r *loggedRequest
}

func (w *codeWriter) WriteHeader(code int) {
	w.l.mu.Lock()
	if w.r.code == 0 {
		w.r.code = code
	}
	w.l.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
}

func (w *codeWriter) Write(b []byte) (int, error) {
	w.l.mu.Lock()
	if w.r.code == 0 {
		w.r.code = http.StatusOK
	}
	w.l.mu.Unlock()
	return w.ResponseWriter.Write(b)
}

// A real browser (headless chromium) posts events to the collector from an
// allowed origin with sendBeacon (a simple request, and a preflighted one
// with credentials) and with preflighted fetches whose answers it reads,
// Retry-After of a 429 included;
// from an origin not allowed, the browser sends a simple fetch (CORS hides
// only the answer) and refuses to send a preflighted one after its
// preflight: the collector never sees that POST, and its event is not in
// the topic.
func TestBrowserCORS(t *testing.T) {
	chromium := chromiumPath(t)
	b := startBroker(t)
	createTopic(t, b.addr, "web", 1)

	// Two page servers on 127.0.0.1 with different ports: two origins.
	shopReports, evilReports := make(chan map[string]any, 1), make(chan map[string]any, 1)
	var shopHTML, evilHTML string
	shop := pageServer(t, &shopHTML, shopReports)
	evil := pageServer(t, &evilHTML, evilReports)
	shopOrigin, evilOrigin := "http://"+shop.Listener.Addr().String(), "http://"+evil.Listener.Addr().String()

	c, _ := startCollector(t, b.addr, fmt.Sprintf(`
cors: {allowed_origins: [%q]}
sources:
  site: {token: site-secret}
  slow: {token: slow-secret, rate_per_second: 0.001, burst: 1}
streams:
  web: {topic: web, key_field: user, sources: [site, slow]}
`, shopOrigin), nil)
	// The collector's handler, served again behind a recorder of its requests.
	reqs := &requestLog{}
	collector := httptest.NewServer(reqs.record(c.Handler()))
	t.Cleanup(collector.Close)
	base := collector.URL
	cfg, err := json.Marshal(map[string]string{"url": base + "/v1/streams/web", "token": "site-secret", "slow_token": "slow-secret"})
	if err != nil {
		t.Fatal(err)
	}
	shopHTML = fmt.Sprintf(shopPage, cfg, evilOrigin+"/")
	evilHTML = fmt.Sprintf(evilPage, cfg)
	shop.Start()
	evil.Start()

	var ports []string
	for _, ln := range []net.Listener{shop.Listener, evil.Listener, collector.Listener} {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		ports = append(ports, port)
	}
	start := time.Now()
	exited := startChromium(t, chromium, shopOrigin+"/", ports...)
	deadline := time.After(browserReportTimeout)
	shopRep := awaitReport(t, "allowed origin's", shopReports, exited, deadline)
	evilRep := awaitReport(t, "other origin's", evilReports, exited, deadline)
	t.Logf("pages reported %v after chromium's start: allowed origin %v; other origin %v",
		time.Since(start).Round(time.Millisecond), shopRep, evilRep)

	for _, k := range []string{"beacon", "beacon_json"} {
		if shopRep[k] != true {
			t.Errorf("sendBeacon (%s) returned %v, want true (queued)", k, shopRep[k])
		}
	}
	if shopRep["slow1_status"] != float64(http.StatusAccepted) || shopRep["slow2_status"] != float64(http.StatusTooManyRequests) {
		t.Errorf("allowed origin's fetches over the rate limit: status %v then %v, want 202 then 429", shopRep["slow1_status"], shopRep["slow2_status"])
	}
	if s, _ := shopRep["slow2_retry_after"].(string); s == "" || strings.Trim(s, "0123456789") != "" {
		t.Errorf("allowed origin's fetch over the rate limit: the page read Retry-After %v, want seconds (Access-Control-Expose-Headers)",
			shopRep["slow2_retry_after"])
	}
	if ans, _ := shopRep["fetch_answer"].(map[string]any); shopRep["fetch_status"] != float64(http.StatusAccepted) || ans["accepted"] != float64(1) {
		t.Errorf("allowed origin's fetch: status %v, answer %v; want 202 and 1 accepted, read by the page",
			shopRep["fetch_status"], shopRep["fetch_answer"])
	}
	for _, k := range []string{"simple", "preflighted"} {
		if s, _ := evilRep[k].(string); !strings.HasPrefix(s, "rejected: TypeError") {
			t.Errorf("other origin's %s fetch: %q, want it rejected by the browser (a TypeError)", k, evilRep[k])
		}
	}

	// Chromium stays up while the beacons may be in flight.
	want := []string{"beacon", "beacon-json", "evil-simple", "fetch", "slow-1"}
	got := eventsByID(t, b.addr, "web", want, browserConsumeTimeout)
	for id, what := range map[string]string{
		"beacon":      "sendBeacon's text/plain event (a simple request)",
		"beacon-json": "sendBeacon's application/json event (preflighted, with credentials: Access-Control-Allow-Credentials)",
		"fetch":       "fetch's event (preflighted: Access-Control-Allow-Origin and -Allow-Headers)",
		// CORS is not access control: the other origin's simple request
		// was sent and taken (its token admits it); the browser only hid
		// the answer from the page.
		"evil-simple": "the other origin's simple fetch (sent; CORS hides only its answer)",
		"slow-1":      "the first fetch of the source with a rate limit",
	} {
		if got[id] == nil {
			t.Errorf("missing %s: %s", id, what)
		}
	}
	if r := got["evil-preflighted"]; r != nil {
		t.Errorf("the other origin's preflighted fetch delivered %s: the browser should not have sent it", r.Value)
	}
	if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, want) {
		t.Errorf("events %v, want %v", ids, want)
	}
	type fields struct{ via, user, source string }
	wantFields := map[string]fields{
		"beacon":      {"sendBeacon", "u1", "site"},
		"beacon-json": {"sendBeacon", "u2", "site"},
		"fetch":       {"fetch", "u3", "site"},
		"evil-simple": {"", "u4", "site"},
		"slow-1":      {"fetch", "u6", "slow"},
	}
	for id, r := range got {
		var ev struct{ Via, User string }
		json.Unmarshal(r.Value, &ev)
		w, ok := wantFields[id]
		if have := (fields{ev.Via, ev.User, headers(r)[collect.HeaderSource]}); !ok || have != w || string(r.Key) != w.user {
			t.Errorf("event %s: %s, key %q, headers %v; want via %q, user %q as key, source %q", id, r.Value, r.Key, headers(r), w.via, w.user, w.source)
		}
	}

	// What the collector saw: all of it by now, since a request is
	// recorded on arrival and each one led to a record or to a page's
	// report. From the other origin, the simple POST and a preflight,
	// refused, and then no POST with Authorization: had the browser sent
	// one, its page would have reported only after the answer.
	shopSaw, evilSaw := reqs.requests(shopOrigin), reqs.requests(evilOrigin)
	t.Logf("the collector saw, from the allowed origin: %q; from the other: %q", shopSaw, evilSaw)
	if want := []string{"OPTIONS [authorization,content-type] -> 403", "POST text/plain -> 202"}; !slices.Equal(evilSaw, want) {
		t.Errorf("the collector saw from the other origin %q, want %q", evilSaw, want)
	}
	// From the allowed one, the five POSTs and at least one preflight
	// (how many depends on what the browser found in its preflight cache,
	// which is up to timing).
	isPreflight := func(s string) bool { return strings.HasPrefix(s, "OPTIONS ") }
	shopPOSTs := slices.DeleteFunc(slices.Clone(shopSaw), isPreflight)
	if want := []string{"POST application/json -> 202", "POST application/json bearer -> 202", "POST application/json bearer -> 202",
		"POST application/json bearer -> 429", "POST text/plain -> 202"}; !slices.Equal(shopPOSTs, want) {
		t.Errorf("the collector saw from the allowed origin the POSTs %q, want %q", shopPOSTs, want)
	}
	preflights := slices.DeleteFunc(slices.Clone(shopSaw), func(s string) bool { return !isPreflight(s) })
	if len(preflights) == 0 || slices.ContainsFunc(preflights, func(s string) bool { return !strings.HasSuffix(s, " -> 204") }) {
		t.Errorf("the collector saw from the allowed origin the preflights %q, want at least one, all answered 204", preflights)
	}
}
