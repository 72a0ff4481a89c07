package mirror

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// startBroker starts a broker whose new groups rebalance at once.
func startBroker(t testing.TB) string {
	return clitest.Start(t, map[string]string{"group.initial.rebalance.delay.ms": "0"}).Addr
}

// cluster is a client and admin on one side.
type cluster struct {
	addr string
	cl   *kgo.Client
	adm  *kadm.Client
}

func connect(t testing.TB, addr string) *cluster {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &cluster{addr: addr, cl: cl, adm: kadm.NewClient(cl)}
}

func (c *cluster) create(t testing.TB, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := c.adm.CreateTopic(clitest.Ctx(t), partitions, -1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
}

// produce writes records (with their Partition set) and waits for acks.
func (c *cluster) produce(t testing.TB, recs ...*kgo.Record) {
	t.Helper()
	if err := c.cl.ProduceSync(clitest.Ctx(t), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// read returns the records of topic by partition once the topic holds
// want records in all, reading from the start; it fails after 30 s.
func (c *cluster) read(t testing.TB, topic string, want int) map[int32][]*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMaxAge(200*time.Millisecond), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := clitest.Ctx(t)
	out := map[int32][]*kgo.Record{}
	n := 0
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s on %s: %d records, want %d", topic, c.addr, n, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], r)
			n++
		})
	}
	if n != want {
		t.Fatalf("%s on %s: %d records, want %d", topic, c.addr, n, want)
	}
	return out
}

// ends returns the high watermarks of topic's partitions.
func (c *cluster) ends(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	l, err := c.adm.ListEndOffsets(clitest.Ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// start runs a mirror until the test ends (or stop is called) and returns it.
func start(t testing.TB, o Options) (m *Mirror, stop func() error) {
	t.Helper()
	if o.TopicSyncInterval == 0 {
		o.TopicSyncInterval = 200 * time.Millisecond
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = -1
	}
	if o.Logger == nil && os.Getenv("SLUICE_TEST_LOG") != "" {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	m, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stopped := false
	var runErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("mirror: %v", err)
		}
	})
	return m, stop
}

// rec is the i-th test record of partition p.
func rec(topic string, p int32, i int, base time.Time) *kgo.Record {
	r := &kgo.Record{Topic: topic, Partition: p,
		Key:       []byte(fmt.Sprintf("k%d-%d", p, i)),
		Value:     []byte(fmt.Sprintf("v%d-%d-%s", p, i, strings.Repeat("x", i%17))),
		Headers:   []kgo.RecordHeader{{Key: "h", Value: []byte(strconv.Itoa(i))}, {Key: "empty"}},
		Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
	switch i {
	case 3:
		r.Key = nil // null key
	case 4:
		r.Value = nil // tombstone
	}
	return r
}

// sameRecord fails unless got is want as the mirror copies it.
func sameRecord(t testing.TB, got, want *kgo.Record, sourceID string) {
	t.Helper()
	wantHeaders := append(append([]kgo.RecordHeader{}, want.Headers...), kgo.RecordHeader{Key: HeaderSource, Value: []byte(sourceID)})
	if !bytes.Equal(got.Key, want.Key) || (got.Key == nil) != (want.Key == nil) ||
		!bytes.Equal(got.Value, want.Value) || (got.Value == nil) != (want.Value == nil) ||
		!got.Timestamp.Equal(want.Timestamp) || len(got.Headers) != len(wantHeaders) {
		t.Fatalf("%s[%d]@%d: got key %q value %q ts %v headers %v; want key %q value %q ts %v headers %v",
			got.Topic, got.Partition, got.Offset, got.Key, got.Value, got.Timestamp, got.Headers,
			want.Key, want.Value, want.Timestamp, wantHeaders)
	}
	for i, h := range got.Headers {
		if h.Key != wantHeaders[i].Key || !bytes.Equal(h.Value, wantHeaders[i].Value) {
			t.Fatalf("%s[%d]@%d: headers %v, want %v", got.Topic, got.Partition, got.Offset, got.Headers, wantHeaders)
		}
	}
}

// compare fails unless target holds exactly the source's records, by
// partition and in order.
func compare(t testing.TB, src, dst map[int32][]*kgo.Record, sourceID string) {
	t.Helper()
	for p, want := range src {
		got := dst[p]
		if len(got) != len(want) {
			t.Fatalf("partition %d: %d records on the target, %d on the source", p, len(got), len(want))
		}
		for i := range want {
			sameRecord(t, got[i], want[i], sourceID)
		}
	}
	for p := range dst {
		if _, ok := src[p]; !ok {
			t.Fatalf("partition %d has records on the target only", p)
		}
	}
}

func TestMirrorCopiesTopics(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	retention := "123456789"
	a.create(t, "orders", 3, map[string]*string{"retention.ms": &retention})
	a.create(t, "other", 1, nil)
	base := time.UnixMilli(1_700_000_000_000)
	var recs []*kgo.Record
	for i := range 100 {
		for p := range int32(3) {
			recs = append(recs, rec("orders", p, i, base))
		}
	}
	a.produce(t, recs...)
	a.produce(t, &kgo.Record{Topic: "other", Value: []byte("not mirrored")})

	m, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "orders|new-.*"})
	if m.SourceClusterID() == m.TargetClusterID() {
		t.Fatalf("both brokers have cluster id %s", m.SourceClusterID())
	}
	compare(t, a.read(t, "orders", 300), b.read(t, "orders", 300), m.SourceClusterID())

	// Configs: the dynamic one is copied, as a dynamic topic config.
	rcs, err := b.adm.DescribeTopicConfigs(clitest.Ctx(t), "orders")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("orders", nil)
	found := false
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			found = c.Value != nil && *c.Value == retention && c.Source == 1
		}
	}
	if !found {
		t.Fatalf("retention.ms not copied as a dynamic topic config: %+v", rc.Configs)
	}

	// A new matching topic appears while the mirror runs.
	a.create(t, "new-events", 2, nil)
	var more []*kgo.Record
	for i := range 10 {
		more = append(more, rec("new-events", int32(i%2), i, base))
	}
	a.produce(t, more...)
	compare(t, a.read(t, "new-events", 10), b.read(t, "new-events", 10), m.SourceClusterID())

	// The source grows a partition: the target gets it, with its records.
	if _, err := a.adm.UpdatePartitions(clitest.Ctx(t), 4, "orders"); err != nil {
		t.Fatal(err)
	}
	connect(t, a.addr).produce(t, rec("orders", 3, 0, base), rec("orders", 3, 1, base)) // a client that sees partition 3
	compare(t, a.read(t, "orders", 302), b.read(t, "orders", 302), m.SourceClusterID())

	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if topics, _ := b.adm.ListTopics(clitest.Ctx(t)); topics.Has("other") {
		t.Fatal("topic other does not match, yet is on the target")
	}
	if got := metric(t, m, "sluice_mirror_records_total", "topic=orders"); got != 302 {
		t.Fatalf("records copied of orders: %v, want 302", got)
	}
	for _, l := range []string{"topic=orders,partition=0", "topic=orders,partition=3", "topic=new-events,partition=1"} {
		if got := metric(t, m, "sluice_mirror_lag_records", l); got != 0 {
			t.Fatalf("lag of %s: %v, want 0", l, got)
		}
	}
}

// metric returns the value of the series name{labels} ("k=v,k=v", in any
// order) of m's registry, or -1 when there is none.
func metric(t testing.TB, m *Mirror, name, labels string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, kv := range strings.Split(labels, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			want[k] = v
		}
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			if len(s.GetLabel()) != len(want) {
				continue
			}
			for _, l := range s.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			switch {
			case s.Counter != nil:
				return s.Counter.GetValue()
			case s.Gauge != nil:
				return s.Gauge.GetValue()
			}
		}
	}
	return -1
}
