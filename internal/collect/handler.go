package collect

import (
	"bytes"
	"compress/gzip"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	sjson "github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Headers stamped on every record.
const (
	HeaderReceivedAt  = "sluice-received-at"  // RFC 3339 with nanoseconds, UTC
	HeaderCollectorID = "sluice-collector-id" // Config.CollectorID
	HeaderSource      = "sluice-source"       // the source whose token came with the event, if any
)

// corsMaxAge is how long a browser may cache a preflight answer.
const corsMaxAge = 10 * time.Minute

// transparentGIF is a 1x1 transparent GIF, the answer of the GET fallback.
var transparentGIF = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// EventError says why one event of a request was refused.
type EventError struct {
	Index  int    `json:"index"`  // position in the request, from 0
	Reason string `json:"reason"` // bad_json, not_object, schema
	Error  string `json:"error"`
}

// Response is the JSON answer to a POST: how many events were accepted
// and why the others were not.
type Response struct {
	Accepted int          `json:"accepted"`
	Invalid  int          `json:"invalid"`
	Errors   []EventError `json:"errors,omitempty"`
	// SchemaID is the registry id the accepted events were encoded with.
	SchemaID int `json:"schema_id,omitempty"`
}

// errorBody is the answer of a refused request.
type errorBody struct {
	Error string `json:"error"`
}

// event is one event of a request, or why it could not be read.
type event struct {
	raw    json.RawMessage
	reason string // "" when raw is JSON
	err    string
}

var (
	errEmptyBody = errors.New("empty body: send a JSON object, a JSON array of objects, or NDJSON")
	errTooLarge  = errors.New("body too large")
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (c *Collector) fail(w http.ResponseWriter, stream string, code int, msg string) {
	c.m.requests.WithLabelValues(stream, strconv.Itoa(code)).Inc()
	if code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", retryAfter(c.cfg.Limits.RetryAfter))
		}
	}
	writeJSON(w, code, errorBody{Error: msg})
}

// retryAfter is d in whole seconds, at least 1, for a Retry-After header.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// cors sets the CORS headers of an answer to an allowed origin; it reports
// whether the origin is allowed (or the request is not cross-origin).
func (c *Collector) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	w.Header().Add("Vary", "Origin")
	if origin == "" {
		return true
	}
	allowed := c.cfg.CORS.AllowedOrigins
	if !slices.Contains(allowed, origin) && !slices.Contains(allowed, "*") {
		return false
	}
	// The origin itself rather than "*": sendBeacon sends credentials, and
	// a browser refuses "*" with credentials.
	w.Header().Set("Access-Control-Allow-Origin", origin)
	w.Header().Set("Access-Control-Allow-Credentials", "true")
	// A page reads only safelisted headers of a cross-origin answer, and
	// Retry-After (of a 429 or 503) is not one.
	w.Header().Set("Access-Control-Expose-Headers", "Retry-After")
	return true
}

func (c *Collector) servePreflight(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.streams[r.PathValue("stream")]; !ok || !c.cors(w, r) {
		// No CORS headers: the browser refuses the request that follows.
		w.WriteHeader(http.StatusForbidden)
		return
	}
	w.Header().Set("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
	w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Content-Encoding, Authorization")
	w.Header().Set("Access-Control-Max-Age", strconv.Itoa(int(corsMaxAge.Seconds())))
	w.WriteHeader(http.StatusNoContent)
}

// admit finds the stream, checks the token and the rate limit; on a
// refusal it has answered and returns nil.
func (c *Collector) admit(w http.ResponseWriter, r *http.Request) (s *streamState, source string) {
	name := r.PathValue("stream")
	c.cors(w, r)
	s, ok := c.streams[name]
	if !ok {
		c.fail(w, "", http.StatusNotFound, fmt.Sprintf("no stream %q", name))
		return nil, ""
	}
	token := r.URL.Query().Get("token") // sendBeacon and the GIF cannot set headers
	if h := r.Header.Get("Authorization"); h != "" {
		t, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			c.fail(w, name, http.StatusUnauthorized, "Authorization: want Bearer TOKEN")
			return nil, ""
		}
		token = t
	}
	if token == "" {
		if len(s.cfg.Sources) > 0 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-collect"`)
			c.fail(w, name, http.StatusUnauthorized, "this stream needs a token: Authorization: Bearer TOKEN, or ?token=TOKEN")
			return nil, ""
		}
	} else {
		source = c.sourceOf(token)
		if source == "" || (len(s.cfg.Sources) > 0 && !slices.Contains(s.cfg.Sources, source)) {
			c.fail(w, name, http.StatusForbidden, "the token is not one of a source allowed on this stream")
			return nil, ""
		}
		if l := c.limiters[source]; l != nil {
			if ok, wait := l.allow(c.now()); !ok {
				w.Header().Set("Retry-After", retryAfter(wait))
				c.fail(w, name, http.StatusTooManyRequests, fmt.Sprintf("source %s is over its rate limit", source))
				return nil, ""
			}
		}
	}
	return s, source
}

// sourceOf returns the source whose token is token, "" for none; it
// compares every token in constant time.
func (c *Collector) sourceOf(token string) string {
	found := ""
	for t, name := range c.tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
			found = name
		}
	}
	return found
}

func (c *Collector) servePost(w http.ResponseWriter, r *http.Request) {
	s, source := c.admit(w, r)
	if s == nil {
		return
	}
	body, err := readBody(r, c.cfg.Limits.MaxBodyBytes)
	if errors.Is(err, errTooLarge) {
		c.fail(w, s.name, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes (limits.max_body_bytes)", c.cfg.Limits.MaxBodyBytes))
		return
	}
	if err != nil {
		c.fail(w, s.name, http.StatusBadRequest, err.Error())
		return
	}
	events, err := parseEvents(body)
	if err != nil {
		c.fail(w, s.name, http.StatusBadRequest, err.Error())
		return
	}
	if len(events) > c.cfg.Limits.MaxEvents {
		c.fail(w, s.name, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d events, over %d (limits.max_events)", len(events), c.cfg.Limits.MaxEvents))
		return
	}
	code, resp := c.ingest(w, s, source, events)
	if resp != nil {
		writeJSON(w, code, resp)
	}
}

// serveGIF is the fallback for pages without JavaScript (and email): the
// event is the query's data parameter (JSON), or else the query's other
// parameters as string fields. It answers a 1x1 GIF when accepted.
func (c *Collector) serveGIF(w http.ResponseWriter, r *http.Request) {
	s, source := c.admit(w, r)
	if s == nil {
		return
	}
	q := r.URL.Query()
	var raw []byte
	if d := q.Get("data"); d != "" {
		raw = []byte(d)
	} else {
		fields := map[string]string{}
		for k, v := range q {
			if k != "token" && len(v) > 0 {
				fields[k] = v[0]
			}
		}
		raw, _ = json.Marshal(fields)
	}
	if !json.Valid(raw) {
		c.fail(w, s.name, http.StatusBadRequest, "data: not JSON")
		return
	}
	code, resp := c.ingest(w, s, source, []event{{raw: raw}})
	if resp == nil {
		return
	}
	if code != http.StatusAccepted {
		writeJSON(w, code, resp)
		return
	}
	w.Header().Set("Content-Type", "image/gif")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(transparentGIF)
}

// ingest validates, encodes and buffers events. It returns the answer to
// write, or a nil Response when it has answered itself (503).
func (c *Collector) ingest(w http.ResponseWriter, s *streamState, source string, events []event) (int, *Response) {
	enc := s.encoder()
	if enc == nil {
		c.fail(w, s.name, http.StatusServiceUnavailable, "the stream's schema has not been fetched from the registry yet")
		return 0, nil
	}
	now := c.now()
	headers := []kgo.RecordHeader{
		{Key: HeaderReceivedAt, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
		{Key: HeaderCollectorID, Value: []byte(c.cfg.CollectorID)},
	}
	if source != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderSource, Value: []byte(source)})
	}
	resp := &Response{SchemaID: enc.schemaID()}
	recs := make([]*kgo.Record, 0, len(events))
	invalid := func(i int, reason, msg string) {
		resp.Invalid++
		resp.Errors = append(resp.Errors, EventError{Index: i, Reason: reason, Error: msg})
		c.m.invalid.WithLabelValues(s.name, reason).Inc()
	}
	for i, e := range events {
		if e.reason != "" {
			invalid(i, e.reason, e.err)
			continue
		}
		fields, err := decodeEvent(e.raw)
		if err != nil || fields == nil {
			invalid(i, reasonNotObject, "an event must be a JSON object")
			continue
		}
		value, err := enc.encode(e.raw, fields)
		if err != nil {
			invalid(i, reasonSchema, err.Error())
			continue
		}
		// The timestamp is the receive time, and kgo times the delivery
		// timeout from it: an event's age counts, not its wait in kgo.
		recs = append(recs, &kgo.Record{Topic: s.cfg.Topic, Key: keyOf(fields, s.cfg.KeyField), Value: value,
			Timestamp: now, Headers: headers})
	}
	if len(recs) == 0 {
		c.m.requests.WithLabelValues(s.name, "400").Inc()
		return http.StatusBadRequest, resp
	}
	if err := c.buf.produce(s.name, recs); err != nil {
		reason, msg := "buffer_full", "the collector's buffer is full (the cluster is slow or down); retry later"
		switch {
		case errors.Is(err, errSpoolFull):
			reason, msg = "spool_full", "the collector's buffer and disk spool are full (the cluster has been down or slow); retry later"
		case !errors.Is(err, errBufferFull):
			reason, msg = "spool_error", "the collector cannot write its disk spool; retry later"
			c.log.Error("spool write failed", "stream", s.name, "err", err)
		}
		c.m.dropped.WithLabelValues(s.name, reason).Add(float64(len(recs)))
		c.fail(w, s.name, http.StatusServiceUnavailable, msg)
		return 0, nil
	}
	resp.Accepted = len(recs)
	c.m.accepted.WithLabelValues(s.name).Add(float64(len(recs)))
	c.m.requests.WithLabelValues(s.name, "202").Inc()
	return http.StatusAccepted, resp
}

// keyOf returns the record key: the field's string, or its JSON text for
// another type (a number as written, an object or array compacted with
// its keys sorted); nil when the field is absent or null.
func keyOf(fields map[string]any, field string) []byte {
	if field == "" {
		return nil
	}
	switch v := fields[field].(type) {
	case nil:
		return nil
	case string:
		return []byte(v)
	case json.Number:
		return []byte(v)
	default:
		b, _ := json.Marshal(v)
		return b
	}
}

// readBody reads the body, gunzipped when it says so (Content-Encoding)
// or starts with gzip's magic (sendBeacon cannot set the header), at
// most limit bytes before and after.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, errTooLarge
	}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch {
	case enc == "gzip" || bytes.HasPrefix(body, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		body, err = io.ReadAll(io.LimitReader(zr, limit+1))
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		if int64(len(body)) > limit {
			return nil, errTooLarge
		}
	case enc == "" || enc == "identity":
	default:
		return nil, fmt.Errorf("Content-Encoding %q: want gzip or none", enc)
	}
	return body, nil
}

// parseEvents splits a body into events: a JSON array is its elements,
// anything else a sequence of JSON values (one object, or NDJSON). In
// NDJSON a line that is not JSON is one invalid event; a body with no
// JSON at all is an error (400).
func parseEvents(body []byte) ([]event, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errEmptyBody
	}
	// segmentio/encoding's parser, as in decodeEvent; the events point
	// into body (ZeroCopy), which is the request's own.
	if body[0] == '[' {
		var arr []json.RawMessage
		rest, err := sjson.Parse(body, &arr, sjson.ZeroCopy)
		if err == nil && len(bytes.TrimLeft(rest, jsonSpace)) != 0 {
			err = errors.New("data after the array")
		}
		if err != nil {
			return nil, fmt.Errorf("body is not JSON: %w", err)
		}
		if len(arr) == 0 {
			return nil, errEmptyBody
		}
		events := make([]event, len(arr))
		for i, raw := range arr {
			events[i] = event{raw: raw}
		}
		return events, nil
	}
	var events []event
	for rest := body; ; {
		rest = bytes.TrimLeft(rest, jsonSpace)
		if len(rest) == 0 {
			return events, nil
		}
		var raw json.RawMessage
		next, err := sjson.Parse(rest, &raw, sjson.ZeroCopy)
		if err == nil {
			events = append(events, event{raw: raw})
			rest = next
			continue
		}
		if !bytes.Contains(body, []byte("\n")) {
			return nil, fmt.Errorf("body is not JSON: %w", err)
		}
		break
	}
	// NDJSON with a bad line: line by line, so that one bad line
	// does not cost the others.
	events, valid := events[:0], 0
	for line := range bytes.Lines(body) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if json.Valid(line) {
			events = append(events, event{raw: line})
			valid++
		} else {
			events = append(events, event{reason: reasonBadJSON, err: "line is not JSON"})
		}
	}
	if valid == 0 {
		return nil, errors.New("body is not JSON (nor NDJSON)")
	}
	return events, nil
}
