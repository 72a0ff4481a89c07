// Package e2e runs real Kafka clients (franz-go kgo and kadm) against an
// in-process broker on a loopback socket with its data on real files.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/httpapi"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/server/api"
)

// testBroker is a broker serving on a random loopback port.
type testBroker struct {
	t       *testing.T
	metrics *httpapi.Metrics
	dir     string
	addr    string
	b       *broker.Broker
	srv     *server.Server
	done    chan struct{}
}

func logger(t *testing.T) *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// start opens a broker on dir (reusing the port of addr when given).
func start(t *testing.T, dir, addr string, static map[string]string) *testBroker {
	t.Helper()
	return startWith(t, dir, addr, static, nil)
}

// startWith is start with a last say on the broker's Config.
func startWith(t *testing.T, dir, addr string, static map[string]string, edit func(*broker.Config)) *testBroker {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	m := httpapi.NewMetricsWithOptions(httpapi.MetricsOptions{PartitionLevel: true}) // the tests read partition series
	cfg := broker.Config{NodeID: 1, DataDir: dir, Host: host, Port: int32(port), Static: static,
		Logger: logger(t), RetentionCheckInterval: time.Hour, OnFsync: m.Fsync}
	if edit != nil {
		edit(&cfg)
	}
	b, err := broker.Open(cfg)
	if err != nil {
		ln.Close()
		t.Fatalf("open broker: %v", err)
	}
	m.SetBroker(b)
	tb := &testBroker{t: t, metrics: m, dir: dir, addr: ln.Addr().String(), b: b, done: make(chan struct{})}
	h := api.New(b, logger(t))
	h.SetObserver(m)
	tb.srv = server.New(h, logger(t))
	tb.srv.SetObserver(m)
	go func() {
		defer close(tb.done)
		tb.srv.Serve(ln)
	}()
	t.Cleanup(tb.stop)
	return tb
}

func (tb *testBroker) stop() {
	if tb.srv == nil {
		return
	}
	tb.srv.Close()
	<-tb.done
	if err := tb.b.Close(); err != nil {
		tb.t.Errorf("close broker: %v", err)
	}
	tb.srv = nil
}

func (tb *testBroker) client(opts ...kgo.Opt) *kgo.Client {
	tb.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(tb.addr), kgo.MetadataMinAge(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Cleanup(cl.Close)
	return cl
}

func (tb *testBroker) admin() *kadm.Client {
	return kadm.NewClient(tb.client())
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func createTopic(t *testing.T, adm *kadm.Client, name string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(ctxT(t), partitions, 1, configs, name)
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic %s: %v %v", name, err, resp.Err)
	}
}

// consumeAll reads every partition of topic from the start to its end.
func consumeAll(t *testing.T, tb *testBroker, topic string, want int) []*kgo.Record {
	t.Helper()
	cl := tb.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	ctx := ctxT(t)
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before timeout", len(out), want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	if len(out) != want {
		t.Fatalf("consumed %d records, want %d", len(out), want)
	}
	return out
}

func TestProduceConsumeCodecsAndAcks(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	adm := tb.admin()
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	acks := map[string]kgo.Acks{"0": kgo.NoAck(), "1": kgo.LeaderAck(), "all": kgo.AllISRAcks()}
	for cname, codec := range codecs {
		for aname, ack := range acks {
			t.Run(cname+"/acks="+aname, func(t *testing.T) {
				topic := "rt-" + cname + "-" + aname
				createTopic(t, adm, topic, 6, nil)
				opts := []kgo.Opt{kgo.ProducerBatchCompression(codec), kgo.RequiredAcks(ack), kgo.DefaultProduceTopic(topic),
					kgo.ProducerBatchMaxBytes(2 << 20)}
				if aname != "all" {
					opts = append(opts, kgo.DisableIdempotentWrite())
				}
				cl := tb.client(opts...)
				var recs []*kgo.Record
				big := bytes.Repeat([]byte("x"), 1_000_000)
				recs = append(recs,
					&kgo.Record{Key: []byte("k-null"), Value: nil},
					&kgo.Record{Key: []byte("k-empty"), Value: []byte{}},
					&kgo.Record{Key: nil, Value: []byte("no key")},
					&kgo.Record{Key: []byte("k-big"), Value: big},
					&kgo.Record{Key: []byte("k-h"), Value: []byte("headers"), Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: nil}}},
				)
				for i := 0; i < 200; i++ {
					recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%17)), Value: []byte(fmt.Sprintf("v%d", i))})
				}
				if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
					t.Fatalf("produce: %v", err)
				}
				got := consumeAll(t, tb, topic, len(recs))
				byKey := map[string][]*kgo.Record{}
				for _, r := range got {
					byKey[string(r.Key)] = append(byKey[string(r.Key)], r)
				}
				for _, want := range recs[:5] {
					g := byKey[string(want.Key)]
					if len(g) != 1 {
						t.Fatalf("key %q: got %d records", want.Key, len(g))
					}
					r := g[0]
					if !bytes.Equal(r.Value, want.Value) || (r.Value == nil) != (want.Value == nil) {
						t.Errorf("key %q: value of %d bytes (nil %v), want %d (nil %v)", want.Key, len(r.Value), r.Value == nil, len(want.Value), want.Value == nil)
					}
					if len(r.Headers) != len(want.Headers) {
						t.Errorf("key %q: %d headers, want %d", want.Key, len(r.Headers), len(want.Headers))
					}
					for i := range want.Headers {
						if i < len(r.Headers) && (r.Headers[i].Key != want.Headers[i].Key || !bytes.Equal(r.Headers[i].Value, want.Headers[i].Value)) {
							t.Errorf("header %d: %+v, want %+v", i, r.Headers[i], want.Headers[i])
						}
					}
				}
				// Per partition, values of one key keep their produce order.
				last := map[string]int{}
				for _, r := range got {
					var n int
					if _, err := fmt.Sscanf(string(r.Value), "v%d", &n); err != nil {
						continue
					}
					if p, ok := last[string(r.Key)]; ok && n <= p {
						t.Errorf("key %s: v%d after v%d", r.Key, n, p)
					}
					last[string(r.Key)] = n
				}
			})
		}
	}
}

func TestMessageTooLarge(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	createTopic(t, tb.admin(), "big", 1, nil)
	cl := tb.client(kgo.DefaultProduceTopic("big"), kgo.ProducerBatchMaxBytes(4<<20), kgo.RecordRetries(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: bytes.Repeat([]byte("y"), 1_100_000)}).FirstErr()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("MESSAGE_TOO_LARGE")) {
		t.Fatalf("produce of 1.1 MB: %v, want MESSAGE_TOO_LARGE", err)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	tb := start(t, dir, "", nil)
	createTopic(t, tb.admin(), "keep", 3, nil)
	cl := tb.client(kgo.DefaultProduceTopic("keep"))
	var recs []*kgo.Record
	for i := 0; i < 3000; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(fmt.Sprintf("value-%d", i))})
	}
	if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	addr := tb.addr
	tb.stop()

	tb2 := start(t, dir, addr, nil)
	got := consumeAll(t, tb2, "keep", len(recs))
	seen := map[string]bool{}
	for _, r := range got {
		seen[string(r.Value)] = true
	}
	for _, r := range recs {
		if !seen[string(r.Value)] {
			t.Fatalf("lost %s after restart", r.Value)
		}
	}
	// Producing continues at the old end.
	cl2 := tb2.client(kgo.DefaultProduceTopic("keep"))
	if err := cl2.ProduceSync(ctxT(t), &kgo.Record{Key: []byte("0"), Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ends, err := tb2.admin().ListEndOffsets(ctxT(t), "keep")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != int64(len(recs))+1 {
		t.Fatalf("end offsets sum to %d, want %d", total, len(recs)+1)
	}
}

func TestListOffsets(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	adm := tb.admin()
	createTopic(t, adm, "lo", 1, nil)
	cl := tb.client(kgo.DefaultProduceTopic("lo"))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := 0; i < 10; i++ {
		r := &kgo.Record{Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(i) * time.Minute)}
		if err := cl.ProduceSync(ctxT(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	start, err := adm.ListStartOffsets(ctxT(t), "lo")
	if err != nil {
		t.Fatal(err)
	}
	end, err := adm.ListEndOffsets(ctxT(t), "lo")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := start.Lookup("lo", 0); o.Offset != 0 {
		t.Errorf("start offset %d, want 0", o.Offset)
	}
	if o, _ := end.Lookup("lo", 0); o.Offset != 10 {
		t.Errorf("end offset %d, want 10", o.Offset)
	}
	for _, tc := range []struct {
		at   time.Time
		want int64
	}{
		{base.Add(-time.Minute), 0},
		{base, 0},
		{base.Add(3*time.Minute + time.Second), 4},
		{base.Add(9 * time.Minute), 9},
		{base.Add(20 * time.Minute), 10}, // none: kadm reports the end
	} {
		got, err := adm.ListOffsetsAfterMilli(ctxT(t), tc.at.UnixMilli(), "lo")
		if err != nil {
			t.Fatal(err)
		}
		o, _ := got.Lookup("lo", 0)
		if o.Err != nil || o.Offset != tc.want {
			t.Errorf("offset after %v: %d (%v), want %d", tc.at.Sub(base), o.Offset, o.Err, tc.want)
		}
	}
}

func TestRetentionAndDeleteRecords(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	adm := tb.admin()
	seg := "1024"
	ret := "4096"
	createTopic(t, adm, "ret", 1, map[string]*string{"segment.bytes": &seg, "retention.bytes": &ret})
	cl := tb.client(kgo.DefaultProduceTopic("ret"), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1))
	for i := 0; i < 200; i++ {
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: bytes.Repeat([]byte{'r'}, 200)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := tb.b.Partition("ret", 0)
	before := p.Log().Segments()
	tb.b.EnforceRetention()
	after := p.Log().Segments()
	if after >= before || p.Log().Size() > 4096+1024 {
		t.Fatalf("retention: %d segments -> %d, size %d", before, after, p.Log().Size())
	}
	starts, err := adm.ListStartOffsets(ctxT(t), "ret")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := starts.Lookup("ret", 0)
	if o.Offset <= 0 {
		t.Fatalf("log start offset %d after retention, want > 0", o.Offset)
	}
	// DeleteRecords moves the start further.
	to := kadm.Offsets{}
	to.AddOffset("ret", 0, 195, -1)
	resp, err := adm.DeleteRecords(ctxT(t), to)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := resp.Lookup("ret", 0); r.Err != nil || r.LowWatermark != 195 {
		t.Fatalf("delete records: %+v", r)
	}
	got := consumeAll(t, tb, "ret", 5)
	if got[0].Offset != 195 {
		t.Fatalf("first offset after DeleteRecords %d, want 195", got[0].Offset)
	}
}

func TestTopicAdmin(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	adm := tb.admin()
	createTopic(t, adm, "adm", 2, nil)
	if resp, _ := adm.CreateTopic(ctxT(t), 1, 1, nil, "adm"); resp.Err == nil {
		t.Errorf("second create succeeded")
	}
	if resp, _ := adm.CreateTopic(ctxT(t), 1, 1, nil, "bad/name"); resp.Err == nil {
		t.Errorf("invalid name accepted")
	}
	if _, err := adm.UpdatePartitions(ctxT(t), 5, "adm"); err != nil {
		t.Fatal(err)
	}
	md, err := adm.Metadata(ctxT(t), "adm")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(md.Topics["adm"].Partitions); n != 5 {
		t.Fatalf("%d partitions after increase, want 5", n)
	}
	// Produce to the new partition works.
	cl := tb.client()
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "adm", Partition: 4, Value: []byte("p4")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Configs: described with defaults, altered, described again.
	v := "3600000"
	if _, err := adm.AlterTopicConfigs(ctxT(t), []kadm.AlterConfig{{Name: "retention.ms", Value: &v}}, "adm"); err != nil {
		t.Fatal(err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctxT(t), "adm")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("adm", nil)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, c := range rc.Configs {
		found[c.Key] = c.MaybeValue()
	}
	if found["retention.ms"] != "3600000" || found["max.message.bytes"] != "1048588" || found["cleanup.policy"] != "delete" {
		t.Fatalf("configs: retention.ms=%q max.message.bytes=%q cleanup.policy=%q", found["retention.ms"], found["max.message.bytes"], found["cleanup.policy"])
	}

	if _, err := adm.DeleteTopics(ctxT(t), "adm"); err != nil {
		t.Fatal(err)
	}
	md, err = adm.Metadata(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := md.Topics["adm"]; ok {
		t.Fatalf("topic still listed after delete")
	}
	if _, err := os.Stat(tb.dir + "/adm-0"); !os.IsNotExist(err) {
		t.Fatalf("partition directory left after delete: %v", err)
	}
}

func TestAutoCreateAndLongPoll(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	consumer := tb.client(kgo.ConsumeTopics("auto"), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.AllowAutoTopicCreation(), kgo.FetchMaxWait(5*time.Second))
	got := make(chan *kgo.Record, 1)
	go func() {
		for {
			fs := consumer.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			for _, r := range fs.Records() {
				got <- r
				return
			}
		}
	}()
	producer := tb.client(kgo.DefaultProduceTopic("auto"), kgo.AllowAutoTopicCreation())
	// Give the consumer time to start its long poll at the end.
	time.Sleep(500 * time.Millisecond)
	sent := time.Now()
	if err := producer.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("wake")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if string(r.Value) != "wake" {
			t.Fatalf("got %q", r.Value)
		}
		t.Logf("tailing consumer got the record %v after produce", time.Since(sent))
	case <-time.After(30 * time.Second):
		t.Fatal("tailing consumer never got the record")
	}
}
