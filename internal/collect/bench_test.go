package collect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/collect"
)

// The load of TestBenchCollect.
const (
	benchEventBytes = 300  // every event is exactly this many bytes of JSON
	benchBatch      = 100  // events per request of a batch figure (a JSON array)
	benchClients    = 8    // goroutines posting, each on its own keep-alive connection
	benchPartitions = 6    // of every topic (the default of `sluice bench produce`)
	benchUsers      = 1000 // distinct user_id values (the record key)
	benchPool       = 4000 // distinct events, cycled through
	// benchMaxInFlight bounds the requests the paced generator has open;
	// a request due while it is reached is not sent, and counted.
	benchMaxInFlight = 1024
	// benchDeliveryTimeout bounds the wait for the accepted events to reach
	// the topic after a figure's load.
	benchDeliveryTimeout = 2 * time.Minute
	// benchBackoff is how long a closed-loop client waits after a 503
	// before it posts the same request again.
	benchBackoff = 5 * time.Millisecond
)

const benchAvroSchema = `{"type":"record","name":"BenchEvent","namespace":"bench","fields":[
 {"name":"user_id","type":"string"},
 {"name":"session_id","type":"string"},
 {"name":"event","type":"string"},
 {"name":"url","type":"string"},
 {"name":"referrer","type":["null","string"],"default":null},
 {"name":"ts","type":"long"},
 {"name":"screen_w","type":"int"},
 {"name":"screen_h","type":"int"},
 {"name":"ua","type":"string"}]}`

// benchJSONSchema says what benchAvroSchema says, as a JSON Schema.
const benchJSONSchema = `{"type":"object","additionalProperties":false,
 "required":["user_id","session_id","event","url","ts","screen_w","screen_h","ua"],
 "properties":{"user_id":{"type":"string"},"session_id":{"type":"string"},"event":{"type":"string"},
  "url":{"type":"string"},"referrer":{"type":["null","string"]},"ts":{"type":"integer"},
  "screen_w":{"type":"integer"},"screen_h":{"type":"integer"},"ua":{"type":"string"}}}`

// TestBenchCollect measures the collector for BENCHMARKS.md; it runs only
// with SLUICE_BENCH_COLLECT set (seconds per figure). Everything runs in
// this one process on one broker: broker, registry, collector, load
// generator and the reference producer share the machine's cores.
//
// Figures, logged in one block:
//   - throughput of POST /v1/streams/{stream} for 300-byte JSON events, for
//     a stream with an Avro schema (encoded to Avro) and one with a JSON
//     Schema (sent as received), with 100 events per request (a JSON
//     array) and with one (a browser's beacon): 8 goroutines in a closed
//     loop over keep-alive HTTP for the given seconds, then until the
//     topic's high watermark holds every event answered 202. Events/s and
//     MB/s (10^6 bytes of event JSON) are over that whole time;
//   - the reference: the same event bytes (as values, with the same keys),
//     as many as the larger batch figure, produced from one kgo client
//     with the options of `sluice bench produce` (acks=all, idempotent,
//     no linger, 1 MiB batches), and each figure's ratio to it, by wall
//     time and by CPU time of the process;
//   - accept latency (request start to the 202) under an open-loop load
//     paced at half of each figure's measured rate, p50/p99/max.
func TestBenchCollect(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("SLUICE_BENCH_COLLECT"))
	if secs <= 0 {
		t.Skip("set SLUICE_BENCH_COLLECT (seconds per figure) to run the collector benchmark")
	}
	dur := time.Duration(secs) * time.Second
	b := startBroker(t)
	regURL, reg := startRegistry(t, b.addr)
	register(t, reg, "bench-avro-value", benchAvroSchema, sr.TypeAvro)
	register(t, reg, "bench-json-value", benchJSONSchema, sr.TypeJSON)
	for _, topic := range []string{"bench-avro", "bench-json", "bench-reference"} {
		createTopic(t, b.addr, topic, benchPartitions)
	}
	_, base := startCollector(t, b.addr, fmt.Sprintf(`
schema_registry: %s
streams:
  avro: {topic: bench-avro, key_field: user_id, schema: {subject: bench-avro-value}}
  json: {topic: bench-json, key_field: user_id, schema: {subject: bench-json-value}}
`, regURL), nil)

	bn := newBenchEnv(t, b.addr, dur, benchMaxInFlight)
	batches := benchBodies(bn.events)
	singles := bn.events

	figs := []*benchFigure{
		{name: "avro, 100/request", stream: "avro", topic: "bench-avro", bodies: batches, perReq: benchBatch},
		{name: "json, 100/request", stream: "json", topic: "bench-json", bodies: batches, perReq: benchBatch},
		{name: "avro, 1/request", stream: "avro", topic: "bench-avro", bodies: singles, perReq: 1},
		{name: "json, 1/request", stream: "json", topic: "bench-json", bodies: singles, perReq: 1},
	}
	for _, f := range figs[:2] {
		bn.throughput(base, f)
	}
	ref := bn.reference("bench-reference", max(figs[0].events, figs[1].events))
	for _, f := range figs[2:] {
		bn.throughput(base, f)
	}
	for _, f := range figs {
		bn.latency(base, f)
	}

	var out strings.Builder
	fmt.Fprintf(&out, "FIGURES collector, %d-byte JSON events, %d partitions, key user_id (%d users); GOMAXPROCS %d, NumCPU %d, "+
		"shared by broker, registry, collector, load generator and reference producer (one process); the aim is 0.5x the reference per core\n",
		benchEventBytes, benchPartitions, benchUsers, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Fprintf(&out, "throughput, %d clients in a closed loop over keep-alive HTTP for %v, until delivered (high watermark = events answered 202):\n", benchClients, dur)
	for _, f := range figs {
		fmt.Fprintf(&out, "  %-18s %8.0f events/s %6.2f MB/s  %.2fx reference, %.2fx per CPU-s  (%d events in %.2f s, %d requests, %d answered 503, CPU %s)\n",
			f.name, f.rate(), f.mbps(), f.rate()/ref.rate(), ratio(f.perCPU(), ref.perCPU()),
			f.events, f.elapsed.Seconds(), f.requests, f.refused, cpuFig(f.cpu, f.elapsed))
	}
	fmt.Fprintf(&out, "  %-18s %8.0f events/s %6.2f MB/s  (%d records in %.2f s, one kgo client, acks=all, idempotent, linger 0, CPU %s)\n",
		"reference kgo", ref.rate(), ref.mbps(), ref.events, ref.elapsed.Seconds(), cpuFig(ref.cpu, ref.elapsed))
	fmt.Fprintf(&out, "accept latency (request start to 202), open loop paced at half the rate above, for %v:\n", dur)
	for _, f := range figs {
		l := f.lat
		fmt.Fprintf(&out, "  %-18s %7.1f requests/s (%7.0f events/s): p50 %s p99 %s max %s ms  (%d requests, %d not 202, %d not sent (%d open); p99 from the scheduled time %s ms)\n",
			f.name, l.reqRate, l.reqRate*float64(f.perReq), ms(l.p50), ms(l.p99), ms(l.max), l.sent, l.non202, l.skipped, benchMaxInFlight, ms(l.p99Sched))
	}
	t.Logf("\n%s", out.String())
}

// newBenchEnv returns the benchmarks' admin client, an HTTP client keeping
// up to conns connections, and the events, all closed at the test's end.
func newBenchEnv(t *testing.T, brokers string, dur time.Duration, conns int) *benchEnv {
	t.Helper()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admCl.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	bn := &benchEnv{t: t, adm: kadm.NewClient(admCl), brokers: brokers, dur: dur, http: &http.Client{Transport: tr}}
	bn.events, bn.keys = benchEvents(t)
	return bn
}

// benchEnv is what the figures of TestBenchCollect share.
type benchEnv struct {
	t       *testing.T
	adm     *kadm.Client
	brokers string
	dur     time.Duration
	http    *http.Client
	events  [][]byte // benchPool events of benchEventBytes
	keys    [][]byte // the user_id of each event
}

// benchFigure is one stream and request size: its throughput, then its
// latency at half of it.
type benchFigure struct {
	name, stream, topic string
	bodies              [][]byte // request bodies, cycled through
	perReq              int      // events per body

	events   int64 // delivered (answered 202 and in the topic)
	requests int64
	refused  int64 // answered 503 (and sent again)
	elapsed  time.Duration
	cpu      time.Duration // of the process, -1 when unknown

	lat benchLatency
}

func (f *benchFigure) rate() float64 { return float64(f.events) / f.elapsed.Seconds() }
func (f *benchFigure) mbps() float64 {
	return float64(f.events) * benchEventBytes / 1e6 / f.elapsed.Seconds()
}

// perCPU is events per CPU-second of the process, 0 when unknown.
func (f *benchFigure) perCPU() float64 {
	if f.cpu <= 0 {
		return 0
	}
	return float64(f.events) / f.cpu.Seconds()
}

type benchLatency struct {
	reqRate       float64
	sent, non202  int
	skipped       int // due while benchMaxInFlight were open
	p50, p99, max time.Duration
	p99Sched      time.Duration // from the time the request was due
}

// benchEvents returns benchPool distinct pageview events of exactly
// benchEventBytes each, and their keys.
func benchEvents(t *testing.T) (events, keys [][]byte) {
	t.Helper()
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789-"
	for i := range benchPool {
		user := fmt.Sprintf("u%05d", i%benchUsers)
		referrer := `"https://www.example.org/search?q=shoes"`
		if i%3 == 0 {
			referrer = "null"
		}
		head := fmt.Sprintf(`{"user_id":%q,"session_id":"s%08x","event":"pageview","url":"https://shop.example.com/p/`, user, uint32(i*2654435761))
		tail := fmt.Sprintf(`","referrer":%s,"ts":%d,"screen_w":1920,"screen_h":1080,"ua":"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"}`,
			referrer, 1767225600000+int64(i)*137)
		pad := benchEventBytes - len(head) - len(tail)
		if pad < 1 {
			t.Fatalf("BUG: event %d is %d bytes without its URL path, over %d", i, len(head)+len(tail), benchEventBytes)
		}
		path := make([]byte, pad)
		for j := range path {
			path[j] = letters[(i*7+j*13)%len(letters)]
		}
		e := []byte(head + string(path) + tail)
		if len(e) != benchEventBytes || !json.Valid(e) {
			t.Fatalf("BUG: event %d is %d bytes (valid JSON: %v)", i, len(e), json.Valid(e))
		}
		events = append(events, e)
		keys = append(keys, []byte(user))
	}
	return events, keys
}

// benchBodies groups events benchBatch at a time into JSON arrays.
func benchBodies(events [][]byte) [][]byte {
	var bodies [][]byte
	for i := 0; i+benchBatch <= len(events); i += benchBatch {
		body := append([]byte{'['}, bytes.Join(events[i:i+benchBatch], []byte{','})...)
		bodies = append(bodies, append(body, ']'))
	}
	return bodies
}

// post sends one body; it returns the status code and the events the
// answer says were accepted.
func (bn *benchEnv) post(url string, body []byte) (int, int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := bn.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(res.Body) // all of it: the connection is then reused
	if err != nil {
		return 0, 0, err
	}
	if res.StatusCode != http.StatusAccepted {
		return res.StatusCode, 0, fmt.Errorf("%d %s", res.StatusCode, bytes.TrimSpace(answer))
	}
	var r collect.Response
	if err := json.Unmarshal(answer, &r); err != nil {
		return res.StatusCode, 0, fmt.Errorf("202 %q: %w", answer, err)
	}
	if r.Invalid > 0 {
		return res.StatusCode, r.Accepted, fmt.Errorf("202 with %d invalid events: %s", r.Invalid, answer)
	}
	return res.StatusCode, r.Accepted, nil
}

// highWatermark is the sum of topic's partitions' high watermarks.
func (bn *benchEnv) highWatermark(ctx context.Context, topic string) (int64, error) {
	offs, err := bn.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	if err := offs.Error(); err != nil {
		return 0, err
	}
	var n int64
	offs.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n, nil
}

// waitDelivered waits until topic's high watermark is want, failing the
// test if it passes it (a duplicate) or does not reach it in time.
func (bn *benchEnv) waitDelivered(topic string, want int64) {
	t := bn.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchDeliveryTimeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := bn.highWatermark(ctx, topic)
		if err == nil && n == want {
			return
		}
		if err == nil && n > want {
			t.Fatalf("%s: high watermark %d, over the %d events accepted", topic, n, want)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: high watermark %d (%v) after %v, want %d", topic, n, err, benchDeliveryTimeout, want)
		case <-tick.C:
		}
	}
}

func (bn *benchEnv) mustHighWatermark(topic string) int64 {
	bn.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := bn.highWatermark(ctx, topic)
	if err != nil {
		bn.t.Fatalf("%s: high watermark: %v", topic, err)
	}
	return n
}

// throughput runs f's closed-loop load for bn.dur and waits for delivery.
func (bn *benchEnv) throughput(base string, f *benchFigure) {
	t := bn.t
	url := base + "/v1/streams/" + f.stream
	from := bn.mustHighWatermark(f.topic)
	deadline := time.Now().Add(bn.dur)
	var accepted, requests, refused atomic.Int64
	var errOnce sync.Once
	var firstErr error
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for g := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; time.Now().Before(deadline); i++ {
				body := f.bodies[i%len(f.bodies)]
				for {
					requests.Add(1)
					code, n, err := bn.post(url, body)
					accepted.Add(int64(n))
					if code == http.StatusServiceUnavailable {
						refused.Add(1)
						time.Sleep(benchBackoff)
						continue
					}
					if err != nil {
						errOnce.Do(func() { firstErr = err })
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("%s: %v", f.name, firstErr)
	}
	bn.waitDelivered(f.topic, from+accepted.Load())
	f.elapsed = time.Since(start)
	f.cpu = cpuSince(cpu0)
	f.events, f.requests, f.refused = accepted.Load(), requests.Load(), refused.Load()
}

// reference produces n of the events (values and keys, no headers) to
// topic from one kgo client set up as `sluice bench produce` sets up its
// producers, and waits for every acknowledgement.
func (bn *benchEnv) reference(topic string, n int64) *benchFigure {
	t := bn.t
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(bn.brokers),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.RecordDeliveryTimeout(2*time.Minute),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), benchDeliveryTimeout)
	defer cancel()
	// One record first, so that the figure does not time the connection,
	// the metadata and the producer id (the collector has them by now).
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: bn.keys[0], Value: bn.events[0]}).FirstErr(); err != nil {
		t.Fatalf("reference: %v", err)
	}
	var failed atomic.Int64
	var errOnce sync.Once
	var firstErr error
	cpu0 := cpuTime()
	start := time.Now()
	for i := range n {
		j := i % int64(len(bn.events))
		cl.Produce(ctx, &kgo.Record{Key: bn.keys[j], Value: bn.events[j]}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				errOnce.Do(func() { firstErr = err })
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("reference: flush: %v", err)
	}
	f := &benchFigure{name: "reference", events: n, elapsed: time.Since(start), cpu: cpuSince(cpu0)}
	if firstErr != nil {
		t.Fatalf("reference: %d records failed, the first: %v", failed.Load(), firstErr)
	}
	if hw := bn.mustHighWatermark(topic); hw != n+1 {
		t.Fatalf("reference: high watermark %d, want %d", hw, n+1)
	}
	return f
}

// latency posts f's bodies open loop at half f's measured rate for bn.dur:
// request i is due at start + i/rate whether or not the earlier ones have
// been answered (up to benchMaxInFlight open).
func (bn *benchEnv) latency(base string, f *benchFigure) {
	t := bn.t
	url := base + "/v1/streams/" + f.stream
	l := &f.lat
	l.reqRate = f.rate() / 2 / float64(f.perReq)
	n := int(l.reqRate * bn.dur.Seconds())
	if n < 1 {
		t.Fatalf("%s: %.2f requests/s for %v is no request", f.name, l.reqRate, bn.dur)
	}
	interval := time.Duration(float64(time.Second) / l.reqRate)
	from := bn.mustHighWatermark(f.topic)
	lats := make([]time.Duration, n)  // request start to answer; -1: not sent
	sched := make([]time.Duration, n) // scheduled time to answer
	codes := make([]int, n)
	var accepted atomic.Int64
	open := make(chan struct{}, benchMaxInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case open <- struct{}{}:
		default:
			lats[i] = -1
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-open }()
			sent := time.Now()
			code, acc, _ := bn.post(url, f.bodies[i%len(f.bodies)])
			end := time.Now()
			lats[i], sched[i], codes[i] = end.Sub(sent), end.Sub(due), code
			accepted.Add(int64(acc))
		}()
	}
	wg.Wait()
	bn.waitDelivered(f.topic, from+accepted.Load())
	var got, gotSched []time.Duration
	for i := range n {
		switch {
		case lats[i] < 0:
			l.skipped++
		case codes[i] != http.StatusAccepted:
			l.non202++
		default:
			got = append(got, lats[i])
			gotSched = append(gotSched, sched[i])
		}
	}
	l.sent = n - l.skipped
	if len(got) == 0 {
		t.Fatalf("%s: no request of %d answered 202", f.name, n)
	}
	slices.Sort(got)
	slices.Sort(gotSched)
	l.p50, l.p99, l.max = quantile(got, 0.5), quantile(got, 0.99), got[len(got)-1]
	l.p99Sched = quantile(gotSched, 0.99)
}

// quantile of sorted: the ceil(q*n)-th smallest.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }

func ratio(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a / b
}

// cpuFig is cpu as seconds and as cores busy over elapsed.
func cpuFig(cpu, elapsed time.Duration) string {
	if cpu < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.2f s, %.2f cores", cpu.Seconds(), cpu.Seconds()/elapsed.Seconds())
}

// clockTicks is Linux's USER_HZ, the unit of /proc/self/stat's times.
const clockTicks = 100

// cpuTime is the user and system CPU time of this process so far, from
// /proc/self/stat (-1 where there is none), at 10 ms resolution.
func cpuTime() time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return -1
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces): state is field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(utime+stime) * time.Second / clockTicks
}

func cpuSince(from time.Duration) time.Duration {
	now := cpuTime()
	if from < 0 || now < 0 {
		return -1
	}
	return now - from
}
