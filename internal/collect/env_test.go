package collect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/collect"
	"github.com/sluice-io/sluice/internal/schemareg"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/server/api"
)

func testLogger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testBroker is a single-node broker on 127.0.0.1 with data in a temporary
// directory; stop is idempotent and runs at the end of the test.
type testBroker struct {
	addr string
	stop func()
}

func startBroker(t *testing.T) *testBroker {
	t.Helper()
	return startBrokerOn(t, t.TempDir(), "127.0.0.1:0")
}

// startBrokerOn starts a broker on dataDir listening on addr: a broker
// stopped before comes back with its topics on the same address.
func startBrokerOn(t *testing.T, dataDir, addr string) *testBroker {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: dataDir, Host: host, Port: int32(port),
		Logger: testLogger(), RetentionCheckInterval: time.Hour})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := server.New(api.New(b, testLogger()), testLogger())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	var once sync.Once
	tb := &testBroker{addr: ln.Addr().String(), stop: func() {
		once.Do(func() {
			srv.Close()
			<-done
			if err := b.Close(); err != nil {
				t.Errorf("close broker: %v", err)
			}
		})
	}}
	t.Cleanup(tb.stop)
	return tb
}

// startRegistry serves a schema registry (internal/schemareg) on the
// broker over real HTTP; it returns its URL and a client.
func startRegistry(t *testing.T, brokers string) (string, *sr.Client) {
	t.Helper()
	reg, err := schemareg.Open(schemareg.Config{Brokers: []string{brokers}, Logger: testLogger(),
		ClientOpts: []kgo.Opt{kgo.MetadataMinAge(50 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-reg.Ready():
	case <-time.After(60 * time.Second):
		reg.Close()
		t.Fatal("registry not ready after 60s")
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(func() { srv.Close(); reg.Close() })
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, cl
}

func register(t *testing.T, cl *sr.Client, subject, schema string, typ sr.SchemaType) int {
	t.Helper()
	id, err := cl.RegisterSchema(ctxT(t), subject, sr.Schema{Schema: schema, Type: typ}, -1, -1)
	if err != nil {
		t.Fatalf("register %s: %v", subject, err)
	}
	return id
}

func createTopic(t *testing.T, brokers, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctxT(t), partitions, 1, nil, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic %s: %v %v", topic, err, resp.Err)
	}
}

// consume reads n records of topic from the start, failing the test if
// they do not come within a minute or if more come.
func consume(t *testing.T, brokers, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d records of %s, want %d", len(recs), topic, n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	// Anything more would be a duplicate or a record that should not be.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if more := cl.PollFetches(ctx2).Records(); len(more) > 0 {
		t.Fatalf("consumed %d more records of %s than the %d expected", len(more), topic, n)
	}
	return recs
}

// collector runs a collector of config (YAML) against brokers over real
// HTTP, its schemas fetched; it returns the collector and its URL.
func startCollector(t *testing.T, brokers, config string, now func() time.Time) (*collect.Collector, string) {
	t.Helper()
	cfg, err := collect.ParseConfig([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	c, err := collect.New(collect.Options{Brokers: []string{brokers}, Config: cfg, Logger: testLogger(), Now: now,
		ClientOpts: []kgo.Opt{kgo.MetadataMinAge(50 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c, srv.URL
}

// answer is an HTTP answer, its body read.
type answer struct {
	code   int
	header http.Header
	body   []byte
}

func (a answer) resp(t *testing.T) collect.Response {
	t.Helper()
	var r collect.Response
	if err := json.Unmarshal(a.body, &r); err != nil {
		t.Fatalf("answer %d %q: %v", a.code, a.body, err)
	}
	return r
}

func do(t *testing.T, method, url string, body []byte, header map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return answer{code: res.StatusCode, header: res.Header, body: b}
}

func post(t *testing.T, url, body string, header map[string]string) answer {
	t.Helper()
	if header == nil {
		header = map[string]string{}
	}
	if _, ok := header["Content-Type"]; !ok {
		header["Content-Type"] = "application/json"
	}
	return do(t, http.MethodPost, url, []byte(body), header)
}

func wantCode(t *testing.T, what string, a answer, code int) {
	t.Helper()
	if a.code != code {
		t.Fatalf("%s: %d %s, want %d", what, a.code, strings.TrimSpace(string(a.body)), code)
	}
}
