package collect_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/collect"
)

const pageviewV1 = `{"type":"record","name":"Pageview","namespace":"shop","fields":[
 {"name":"user_id","type":"string"},
 {"name":"url","type":"string"},
 {"name":"ms","type":"long"},
 {"name":"referrer","type":["null","string"],"default":null}]}`

// v2 adds a field with a default: backward compatible, so the registry
// takes it.
const pageviewV2 = `{"type":"record","name":"Pageview","namespace":"shop","fields":[
 {"name":"user_id","type":"string"},
 {"name":"url","type":"string"},
 {"name":"ms","type":"long"},
 {"name":"referrer","type":["null","string"],"default":null},
 {"name":"country","type":"string","default":"??"}]}`

const clickJSONSchema = `{"type":"object","required":["user_id","button"],
 "properties":{"user_id":{"type":"string"},"button":{"type":"string"}}}`

// fakeClock is a settable clock for rate limits and receive times.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Every answer but 503 (TestBufferFull503), on one collector; and the
// invalid events counted by reason in /metrics.
func TestAnswers(t *testing.T) {
	b := startBroker(t)
	regURL, reg := startRegistry(t, b.addr)
	register(t, reg, "pageviews-value", pageviewV1, sr.TypeAvro)
	for _, topic := range []string{"open", "pageviews", "private"} {
		createTopic(t, b.addr, topic, 1)
	}
	// Near the real time: kgo times a record's delivery from its timestamp.
	clock := &fakeClock{t: time.Now()}
	_, base := startCollector(t, b.addr, fmt.Sprintf(`
schema_registry: %s
limits: {max_body_bytes: 2000, max_events: 5}
sources:
  web: {token: web-secret, rate_per_second: 1, burst: 2}
  other: {token: other-secret}
streams:
  open: {topic: open}
  pageviews: {topic: pageviews, key_field: user_id, schema: {subject: pageviews-value, version: latest}}
  private: {topic: private, sources: [web]}
`, regURL), clock.now)
	u := base + "/v1/streams/"

	wantCode(t, "one valid event", post(t, u+"open", `{"a":1}`, nil), http.StatusAccepted)
	wantCode(t, "unknown stream", post(t, u+"nope", `{"a":1}`, nil), http.StatusNotFound)
	wantCode(t, "not JSON", post(t, u+"open", `{"a":`, nil), http.StatusBadRequest)
	wantCode(t, "text", post(t, u+"open", `hello`, nil), http.StatusBadRequest)
	wantCode(t, "empty", post(t, u+"open", ``, nil), http.StatusBadRequest)

	// Some invalid: 202 with which and why.
	a := post(t, u+"pageviews", `[
		{"user_id":"u1","url":"/a","ms":1},
		{"user_id":"u1","url":"/a","ms":"soon"},
		"not an object",
		{"user_id":"u2","url":"/b","ms":2,"referrer":"/a"}]`, nil)
	wantCode(t, "some invalid", a, http.StatusAccepted)
	r := a.resp(t)
	if r.Accepted != 2 || r.Invalid != 2 || len(r.Errors) != 2 ||
		r.Errors[0].Index != 1 || r.Errors[0].Reason != "schema" || !strings.Contains(r.Errors[0].Error, "ms") ||
		r.Errors[1].Index != 2 || r.Errors[1].Reason != "not_object" {
		t.Fatalf("some invalid: %s", a.body)
	}
	// None valid: 400, with the same per-event errors.
	a = post(t, u+"pageviews", `{"user_id":"u1","url":"/a"}`, nil)
	wantCode(t, "none valid", a, http.StatusBadRequest)
	if r := a.resp(t); r.Invalid != 1 || r.Errors[0].Reason != "schema" || !strings.Contains(r.Errors[0].Error, "ms: missing") {
		t.Fatalf("none valid: %s", a.body)
	}

	// Tokens.
	a = post(t, u+"private", `{"a":1}`, nil)
	wantCode(t, "no token", a, http.StatusUnauthorized)
	if a.header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
	wantCode(t, "wrong token", post(t, u+"private", `{"a":1}`, map[string]string{"Authorization": "Bearer guess"}), http.StatusForbidden)
	wantCode(t, "another source's token", post(t, u+"private", `{"a":1}`, map[string]string{"Authorization": "Bearer other-secret"}), http.StatusForbidden)
	wantCode(t, "unknown token on an open stream", post(t, u+"open", `{"a":1}`, map[string]string{"Authorization": "Bearer guess"}), http.StatusForbidden)

	// Rate limit: a burst of 2, then 429 until the clock moves on.
	web := map[string]string{"Authorization": "Bearer web-secret"}
	wantCode(t, "1st of the burst", post(t, u+"private", `{"a":1}`, web), http.StatusAccepted)
	wantCode(t, "2nd of the burst (token in the query)", post(t, u+"private?token=web-secret", `{"a":2}`, nil), http.StatusAccepted)
	a = post(t, u+"private", `{"a":3}`, web)
	wantCode(t, "over the rate", a, http.StatusTooManyRequests)
	if a.header.Get("Retry-After") != "1" {
		t.Fatalf("429 Retry-After %q, want 1", a.header.Get("Retry-After"))
	}
	clock.add(time.Second)
	wantCode(t, "a second later", post(t, u+"private", `{"a":4}`, web), http.StatusAccepted)

	// Size limits: the body, the body once gunzipped, the events.
	big := `{"pad":"` + strings.Repeat("x", 2000) + `"}`
	wantCode(t, "body over the limit", post(t, u+"open", big, nil), http.StatusRequestEntityTooLarge)
	bomb := gzipped(t, `{"pad":"`+strings.Repeat("x", 100000)+`"}`)
	if len(bomb) > 2000 {
		t.Fatalf("BUG: the gzipped body is %d bytes, not under the limit", len(bomb))
	}
	wantCode(t, "gunzipped over the limit", do(t, http.MethodPost, u+"open", bomb, map[string]string{"Content-Encoding": "gzip"}), http.StatusRequestEntityTooLarge)
	wantCode(t, "over max_events", post(t, u+"open", `[{},{},{},{},{},{}]`, nil), http.StatusRequestEntityTooLarge)
	wantCode(t, "at max_events", post(t, u+"open", `[{},{},{},{},{}]`, nil), http.StatusAccepted)

	// The records: 1+5 on open, 2 on pageviews, 3 on private.
	consume(t, b.addr, "open", 6)
	consume(t, b.addr, "pageviews", 2)
	consume(t, b.addr, "private", 3)

	m := do(t, http.MethodGet, base+"/metrics", nil, nil)
	for _, want := range []string{
		`sluice_collect_events_invalid_total{reason="schema",stream="pageviews"} 2`,
		`sluice_collect_events_invalid_total{reason="not_object",stream="pageviews"} 1`,
		`sluice_collect_events_accepted_total{stream="open"} 6`,
		`sluice_collect_requests_total{code="429",stream="private"} 1`,
		`sluice_collect_produce_latency_seconds_count`,
	} {
		if !bytes.Contains(m.body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	wantCode(t, "healthz", do(t, http.MethodGet, base+"/healthz", nil, nil), http.StatusOK)
	wantCode(t, "readyz", do(t, http.MethodGet, base+"/readyz", nil, nil), http.StatusOK)
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The full buffer answers 503 with Retry-After, whole requests only, and
// /readyz says not ready; a slow cluster before that is not a 5xx.
func TestBufferFull503(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b.addr, "events", 1)
	c, base := startCollector(t, b.addr, `
limits: {buffer_bytes: 1000, retry_after: 3s}
streams:
  events: {topic: events}
`, nil)
	u := base + "/v1/streams/events"
	wantCode(t, "with the broker up", post(t, u, `{"n":0}`, nil), http.StatusAccepted)
	consume(t, b.addr, "events", 1)
	b.stop()
	// Each event counts its bytes plus 64 of overhead plus headers (some
	// 70): about 150 bytes, so the buffer holds 6.
	accepted := 0
	var a answer
	for i := 1; i <= 20; i++ {
		if a = post(t, u, fmt.Sprintf(`{"n":%d}`, i), nil); a.code != http.StatusAccepted {
			break
		}
		accepted++
	}
	wantCode(t, "buffer full", a, http.StatusServiceUnavailable)
	if accepted < 3 || accepted > 10 {
		t.Fatalf("%d events accepted before 503 with a 1000-byte buffer", accepted)
	}
	if a.header.Get("Retry-After") != "3" {
		t.Fatalf("503 Retry-After %q, want 3", a.header.Get("Retry-After"))
	}
	// A request is refused whole: two events do not fit where one did not.
	wantCode(t, "two events", post(t, u, `[{"n":98},{"n":99}]`, nil), http.StatusServiceUnavailable)
	wantCode(t, "readyz", do(t, http.MethodGet, base+"/readyz", nil, nil), http.StatusServiceUnavailable)
	if err := c.Ready(); err == nil || !strings.Contains(err.Error(), "buffer full") {
		t.Fatalf("Ready: %v", err)
	}
	m := do(t, http.MethodGet, base+"/metrics", nil, nil)
	if !bytes.Contains(m.body, []byte(`sluice_collect_events_dropped_total{reason="buffer_full",stream="events"} 3`)) {
		t.Fatalf("/metrics: want 3 events dropped for a full buffer:\n%s", grep(m.body, "dropped"))
	}
}

func grep(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Avro: the records are in Confluent's wire format with the registry's
// id, decode to the events, carry the headers, and are keyed by user_id.
func TestAvroRecords(t *testing.T) {
	b := startBroker(t)
	regURL, reg := startRegistry(t, b.addr)
	// Another subject first, so that the id is not 1 by luck.
	register(t, reg, "other-value", `"string"`, sr.TypeAvro)
	id := register(t, reg, "pageviews-value", pageviewV1, sr.TypeAvro)
	createTopic(t, b.addr, "pageviews", 3)
	// A fixed receive time, near the real one (kgo times a record's
	// delivery from its timestamp), with nanoseconds.
	received := time.Now().UTC().Truncate(time.Second).Add(123456789)
	_, base := startCollector(t, b.addr, fmt.Sprintf(`
collector_id: edge-7
schema_registry: %s
streams:
  pageviews: {topic: pageviews, key_field: user_id, schema: {subject: pageviews-value, version: 1}}
`, regURL), func() time.Time { return received })
	events := []string{
		`{"user_id":"alice","url":"/","ms":1700000000000}`,
		`{"user_id":"bob","url":"/cart","ms":9007199254740993,"referrer":"/"}`,
		`{"user_id":"carol","url":"/x","ms":3,"referrer":{"string":"/y"}}`,
	}
	a := post(t, base+"/v1/streams/pageviews", "["+strings.Join(events, ",")+"]", nil)
	wantCode(t, "post", a, http.StatusAccepted)
	if r := a.resp(t); r.SchemaID != id || r.Accepted != 3 {
		t.Fatalf("answer %s, want 3 accepted with schema id %d", a.body, id)
	}
	schema := avro.MustParse(pageviewV1)
	byUser := map[string]map[string]any{}
	for _, rec := range consume(t, b.addr, "pageviews", 3) {
		if len(rec.Value) < 5 || rec.Value[0] != 0 {
			t.Fatalf("value %x: not Confluent's wire format", rec.Value)
		}
		if got := int(binary.BigEndian.Uint32(rec.Value[1:5])); got != id {
			t.Fatalf("schema id %d in the record, want %d", got, id)
		}
		var v map[string]any
		if err := avro.Unmarshal(schema, rec.Value[5:], &v); err != nil {
			t.Fatalf("decode %x: %v", rec.Value, err)
		}
		if string(rec.Key) != v["user_id"] {
			t.Fatalf("key %q, want the user_id %v", rec.Key, v["user_id"])
		}
		if !rec.Timestamp.Equal(received.Truncate(time.Millisecond)) {
			t.Fatalf("timestamp %v, want %v", rec.Timestamp, received)
		}
		h := headers(rec)
		if h[collect.HeaderCollectorID] != "edge-7" || h[collect.HeaderReceivedAt] != received.Format(time.RFC3339Nano) {
			t.Fatalf("headers %v", h)
		}
		byUser[string(rec.Key)] = v
	}
	if v := byUser["bob"]; v["ms"] != int64(9007199254740993) || v["url"] != "/cart" || v["referrer"] != "/" {
		t.Fatalf("bob's event decoded as %v", v)
	}
	if v := byUser["alice"]; v["referrer"] != nil || v["ms"] != int64(1700000000000) {
		t.Fatalf("alice's event decoded as %v", v)
	}
	if v := byUser["carol"]; v["referrer"] != "/y" {
		t.Fatalf("carol's event (union in Avro's JSON form) decoded as %v", v)
	}
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// "latest" follows a new version after a refresh: an event valid under v1
// and v2 is encoded with v1's id, then v2's, each decoding under its
// schema; an event using v2's field is refused under v1.
func TestSchemaEvolutionLatest(t *testing.T) {
	b := startBroker(t)
	regURL, reg := startRegistry(t, b.addr)
	id1 := register(t, reg, "pageviews-value", pageviewV1, sr.TypeAvro)
	createTopic(t, b.addr, "pageviews", 1)
	c, base := startCollector(t, b.addr, fmt.Sprintf(`
schema_registry: %s
refresh_interval: 1h
streams:
  pageviews: {topic: pageviews, key_field: user_id, schema: {subject: pageviews-value}}
`, regURL), nil)
	u := base + "/v1/streams/pageviews"
	both := `{"user_id":"u","url":"/","ms":1}`
	withCountry := `{"user_id":"u","url":"/","ms":2,"country":"NZ"}`
	wantCode(t, "v1 event under v1", post(t, u, both, nil), http.StatusAccepted)
	wantCode(t, "v2 event under v1", post(t, u, withCountry, nil), http.StatusBadRequest)

	id2 := register(t, reg, "pageviews-value", pageviewV2, sr.TypeAvro)
	if id2 == id1 {
		t.Fatal("BUG: v2 has v1's id")
	}
	if err := c.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	a := post(t, u, both, nil)
	wantCode(t, "v1 event under v2", a, http.StatusAccepted)
	if a.resp(t).SchemaID != id2 {
		t.Fatalf("after the refresh the schema id is %d, want v2's %d", a.resp(t).SchemaID, id2)
	}
	wantCode(t, "v2 event under v2", post(t, u, withCountry, nil), http.StatusAccepted)

	want := []struct {
		id      int
		schema  string
		country any
	}{{id1, pageviewV1, nil}, {id2, pageviewV2, "??"}, {id2, pageviewV2, "NZ"}}
	recs := consume(t, b.addr, "pageviews", 3)
	for i, rec := range recs {
		got := int(binary.BigEndian.Uint32(rec.Value[1:5]))
		if got != want[i].id {
			t.Fatalf("record %d has schema id %d, want %d", i, got, want[i].id)
		}
		var v map[string]any
		if err := avro.Unmarshal(avro.MustParse(want[i].schema), rec.Value[5:], &v); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if v["country"] != want[i].country {
			t.Fatalf("record %d: country %v, want %v", i, v["country"], want[i].country)
		}
	}
}

// Events of one key land in one partition, and the keys spread.
func TestKeyPartitioning(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b.addr, "clicks", 8)
	_, base := startCollector(t, b.addr, `
streams:
  clicks: {topic: clicks, key_field: user_id}
`, nil)
	users := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"}
	var nd strings.Builder
	n := 0
	for round := 0; round < 5; round++ {
		for _, u := range users {
			fmt.Fprintf(&nd, `{"user_id":%q,"n":%d}`+"\n", u, n)
			n++
		}
	}
	nd.WriteString(`{"user_id":42,"n":-1}` + "\n") // a number keys by its JSON text
	nd.WriteString(`{"n":-2}` + "\n")              // no key field: no key
	wantCode(t, "post", post(t, base+"/v1/streams/clicks", nd.String(), map[string]string{"Content-Type": "application/x-ndjson"}), http.StatusAccepted)
	partitionOf := map[string]int32{}
	partitions := map[int32]bool{}
	for _, rec := range consume(t, b.addr, "clicks", n+2) {
		var e struct {
			UserID any `json:"user_id"`
			N      int `json:"n"`
		}
		json.Unmarshal(rec.Value, &e)
		switch e.N {
		case -1:
			if string(rec.Key) != "42" {
				t.Fatalf("numeric key %q, want 42", rec.Key)
			}
			continue
		case -2:
			if rec.Key != nil {
				t.Fatalf("event without the key field has key %q", rec.Key)
			}
			continue
		}
		if string(rec.Key) != e.UserID {
			t.Fatalf("key %q for user %v", rec.Key, e.UserID)
		}
		if p, ok := partitionOf[string(rec.Key)]; ok && p != rec.Partition {
			t.Fatalf("key %s in partitions %d and %d", rec.Key, p, rec.Partition)
		}
		partitionOf[string(rec.Key)] = rec.Partition
		partitions[rec.Partition] = true
	}
	if len(partitions) < 3 {
		t.Fatalf("8 keys in %d partitions of 8: keys do not spread", len(partitions))
	}
}

// Bodies: gzip (by header and by magic), NDJSON with a bad line, array,
// text/plain (sendBeacon); a JSON Schema stream sends events as received.
func TestBodies(t *testing.T) {
	b := startBroker(t)
	regURL, reg := startRegistry(t, b.addr)
	jsID := register(t, reg, "clicks-value", clickJSONSchema, sr.TypeJSON)
	createTopic(t, b.addr, "raw", 1)
	createTopic(t, b.addr, "clicks", 1)
	createTopic(t, b.addr, "clicks-prefixed", 1)
	_, base := startCollector(t, b.addr, fmt.Sprintf(`
schema_registry: %s
streams:
  raw: {topic: raw}
  clicks: {topic: clicks, schema: {subject: clicks-value}}
  clicks-prefixed: {topic: clicks-prefixed, schema: {subject: clicks-value, json_wire_prefix: true}}
`, regURL), nil)
	u := base + "/v1/streams/raw"
	wantCode(t, "gzip", do(t, http.MethodPost, u, gzipped(t, `{"b":"gzip"}`),
		map[string]string{"Content-Encoding": "gzip", "Content-Type": "application/json"}), http.StatusAccepted)
	wantCode(t, "gzip without the header", do(t, http.MethodPost, u, gzipped(t, `{"b":"gzip-magic"}`),
		map[string]string{"Content-Type": "text/plain"}), http.StatusAccepted)
	a := post(t, u, "{\"b\":\"nd1\"}\n{\"b\":\nnot json\n{\"b\":\"nd2\"}\n", map[string]string{"Content-Type": "application/x-ndjson"})
	wantCode(t, "NDJSON with bad lines", a, http.StatusAccepted)
	if r := a.resp(t); r.Accepted != 2 || r.Invalid != 2 || r.Errors[0].Index != 1 || r.Errors[0].Reason != "bad_json" {
		t.Fatalf("NDJSON with bad lines: %s", a.body)
	}
	wantCode(t, "array", post(t, u, `[{"b":"arr1"},{"b":"arr2"}]`, nil), http.StatusAccepted)
	wantCode(t, "text/plain", post(t, u, `{"b":"beacon"}`, map[string]string{"Content-Type": "text/plain;charset=UTF-8"}), http.StatusAccepted)
	wantCode(t, "pretty-printed", post(t, u, "{\n  \"b\": \"pretty\"\n}\n", nil), http.StatusAccepted)
	var got []string
	for _, rec := range consume(t, b.addr, "raw", 8) {
		var e struct{ B string }
		if err := json.Unmarshal(rec.Value, &e); err != nil {
			t.Fatalf("value %q: %v", rec.Value, err)
		}
		got = append(got, e.B)
	}
	if want := "gzip gzip-magic nd1 nd2 arr1 arr2 beacon pretty"; strings.Join(got, " ") != want {
		t.Fatalf("values %v, want %s", got, want)
	}

	// JSON Schema: valid events as received (bytes unchanged), invalid
	// ones refused with the validator's reason.
	event := `{ "user_id": "u1",  "button": "buy" }`
	a = post(t, base+"/v1/streams/clicks", `[`+event+`, {"user_id":"u1"}]`, nil)
	wantCode(t, "JSON Schema", a, http.StatusAccepted)
	if r := a.resp(t); r.Accepted != 1 || r.Errors[0].Reason != "schema" || !strings.Contains(r.Errors[0].Error, "button") {
		t.Fatalf("JSON Schema: %s", a.body)
	}
	if v := consume(t, b.addr, "clicks", 1)[0].Value; string(v) != event {
		t.Fatalf("JSON Schema record %q, want the event as received %q", v, event)
	}
	wantCode(t, "JSON Schema, prefixed", post(t, base+"/v1/streams/clicks-prefixed", event, nil), http.StatusAccepted)
	v := consume(t, b.addr, "clicks-prefixed", 1)[0].Value
	if len(v) < 5 || v[0] != 0 || int(binary.BigEndian.Uint32(v[1:5])) != jsID || string(v[5:]) != event {
		t.Fatalf("prefixed JSON record %q, want 0, id %d, the event", v, jsID)
	}
}

// CORS: a preflight and a post from an allowed origin get the headers,
// from another origin they do not.
func TestCORS(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b.addr, "web", 1)
	_, base := startCollector(t, b.addr, `
cors: {allowed_origins: ["https://shop.example"]}
streams:
  web: {topic: web}
`, nil)
	u := base + "/v1/streams/web"
	pre := func(origin string) answer {
		return do(t, http.MethodOptions, u, nil, map[string]string{"Origin": origin,
			"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
	}
	a := pre("https://shop.example")
	wantCode(t, "preflight, allowed", a, http.StatusNoContent)
	if a.header.Get("Access-Control-Allow-Origin") != "https://shop.example" ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(a.header.Get("Access-Control-Allow-Headers")), "content-type") {
		t.Fatalf("preflight, allowed: headers %v", a.header)
	}
	a = pre("https://evil.example")
	if a.header.Get("Access-Control-Allow-Origin") != "" || a.header.Get("Access-Control-Allow-Methods") != "" {
		t.Fatalf("preflight, another origin: headers %v", a.header)
	}
	a = post(t, u, `{"a":1}`, map[string]string{"Origin": "https://shop.example", "Content-Type": "text/plain"})
	wantCode(t, "post, allowed", a, http.StatusAccepted)
	if a.header.Get("Access-Control-Allow-Origin") != "https://shop.example" || a.header.Get("Access-Control-Allow-Credentials") != "true" ||
		a.header.Get("Access-Control-Expose-Headers") != "Retry-After" {
		t.Fatalf("post, allowed: headers %v", a.header)
	}
	a = post(t, u, `{"a":2}`, map[string]string{"Origin": "https://evil.example", "Content-Type": "text/plain"})
	if a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("post, another origin: headers %v", a.header)
	}
}

// The GIF fallback: the event from ?data= or from the query's fields,
// answered with a GIF; an invalid event is not.
func TestGIF(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b.addr, "px", 1)
	_, base := startCollector(t, b.addr, `
sources:
  mail: {token: mail-secret}
streams:
  px: {topic: px, key_field: user_id, sources: [mail]}
`, nil)
	u := base + "/v1/streams/px"
	a := do(t, http.MethodGet, u+"?token=mail-secret&data="+url.QueryEscape(`{"user_id":"u1","open":true}`), nil, nil)
	wantCode(t, "data", a, http.StatusOK)
	if a.header.Get("Content-Type") != "image/gif" || !bytes.HasPrefix(a.body, []byte("GIF89a")) {
		t.Fatalf("answer %v %q, want a GIF", a.header, a.body)
	}
	wantCode(t, "fields", do(t, http.MethodGet, u+"?token=mail-secret&user_id=u2&campaign=spring", nil, nil), http.StatusOK)
	wantCode(t, "no token", do(t, http.MethodGet, u+"?user_id=u3", nil, nil), http.StatusUnauthorized)
	wantCode(t, "data not JSON", do(t, http.MethodGet, u+"?token=mail-secret&data=%7B", nil, nil), http.StatusBadRequest)
	recs := consume(t, b.addr, "px", 2)
	if string(recs[0].Value) != `{"user_id":"u1","open":true}` || string(recs[0].Key) != "u1" {
		t.Fatalf("record 0: %q %q", recs[0].Key, recs[0].Value)
	}
	var fields map[string]string
	if err := json.Unmarshal(recs[1].Value, &fields); err != nil || fields["user_id"] != "u2" || fields["campaign"] != "spring" ||
		fields["token"] != "" || string(recs[1].Key) != "u2" {
		t.Fatalf("record 1: %q %q", recs[1].Key, recs[1].Value)
	}
	if headers(recs[1])[collect.HeaderSource] != "mail" {
		t.Fatalf("record 1 headers %v, want the source", headers(recs[1]))
	}
}
