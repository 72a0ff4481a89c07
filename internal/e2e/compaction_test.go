package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/record"
)

// produced is what a test wrote to a topic, for checking it after cleaning.
type produced struct {
	byOffset map[int32]map[int64]kvRec // partition -> offset -> record
	latest   map[string]kvRec          // key -> its last record
	end      map[int32]int64           // partition -> log end offset
}

type kvRec struct {
	key       string
	value     string
	tombstone bool
	partition int32
	offset    int64
}

func (p *produced) add(rs []*kgo.Record) {
	for _, r := range rs {
		kv := kvRec{key: string(r.Key), value: string(r.Value), tombstone: r.Value == nil, partition: r.Partition, offset: r.Offset}
		if p.byOffset[r.Partition] == nil {
			p.byOffset[r.Partition] = map[int64]kvRec{}
		}
		p.byOffset[r.Partition][r.Offset] = kv
		p.latest[kv.key] = kv
		p.end[r.Partition] = max(p.end[r.Partition], r.Offset+1)
	}
}

// merge adds what q wrote after p.
func (p *produced) merge(q *produced) {
	for part, offs := range q.byOffset {
		for _, r := range offs {
			if p.byOffset[part] == nil {
				p.byOffset[part] = map[int64]kvRec{}
			}
			p.byOffset[part][r.offset] = r
		}
		p.end[part] = max(p.end[part], q.end[part])
	}
	for k, r := range q.latest {
		p.latest[k] = r
	}
}

// emptyBatches counts the batches without records in topic's partitions.
func emptyBatches(t *testing.T, tb *testBroker, topic string, partitions int32) int {
	t.Helper()
	n := 0
	for part := int32(0); part < partitions; part++ {
		p, _ := tb.b.Partition(topic, part)
		err := p.Log().WalkHeaders(0, func(h record.Header, _ record.ControlType) error {
			if h.RecordCount == 0 {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// produceKeyed writes n records over keys keys, every tenth a tombstone, in
// requests of 1,000.
func produceKeyed(t *testing.T, cl *kgo.Client, topic string, n, keys int, seed int64) *produced {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	p := &produced{byOffset: map[int32]map[int64]kvRec{}, latest: map[string]kvRec{}, end: map[int32]int64{}}
	for i := 0; i < n; {
		var rs []*kgo.Record
		for ; len(rs) < 1000 && i < n; i++ {
			r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("key-%04d", rng.Intn(keys)))}
			if rng.Intn(10) != 0 {
				r.Value = []byte(fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", rng.Intn(40))))
			}
			rs = append(rs, r)
		}
		if err := cl.ProduceSync(ctxT(t), rs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		p.add(rs)
	}
	return p
}

// readTopic reads every partition of topic from its start to the end
// offsets of p and returns the records by partition, checking that each is
// the record produced at its offset and that offsets increase.
func readTopic(t *testing.T, tb *testBroker, topic string, p *produced, opts ...kgo.Opt) (map[int32][]kvRec, error) {
	t.Helper()
	parts := map[int32]kgo.Offset{}
	for part := range p.end {
		parts[part] = kgo.NewOffset().AtStart()
	}
	cl := tb.client(append([]kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchMaxWait(100 * time.Millisecond)}, opts...)...)
	defer cl.Close()
	out := map[int32][]kvRec{}
	last := map[int32]int64{}
	ctx := ctxT(t)
	for done := 0; done < len(p.end); {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := fs.Err(); err != nil {
			return nil, err
		}
		for _, r := range fs.Records() {
			want, ok := p.byOffset[r.Partition][r.Offset]
			if !ok || want.key != string(r.Key) || want.value != string(r.Value) || want.tombstone != (r.Value == nil) {
				return nil, fmt.Errorf("partition %d offset %d holds %q=%q, produced %q=%q", r.Partition, r.Offset, r.Key, r.Value, want.key, want.value)
			}
			if l, ok := last[r.Partition]; ok && r.Offset <= l {
				return nil, fmt.Errorf("partition %d: offset %d after %d", r.Partition, r.Offset, l)
			}
			last[r.Partition] = r.Offset
			out[r.Partition] = append(out[r.Partition], want)
			if r.Offset == p.end[r.Partition]-1 {
				done++
			}
		}
	}
	return out, nil
}

// view applies records in offset order: the key-value content a consumer
// that read the topic from the start holds.
func view(recs map[int32][]kvRec) map[string]string {
	v := map[string]string{}
	for _, rs := range recs {
		for _, r := range rs {
			if r.tombstone {
				delete(v, r.key)
			} else {
				v[r.key] = r.value
			}
		}
	}
	return v
}

func (p *produced) wantView() map[string]string {
	v := map[string]string{}
	for k, r := range p.latest {
		if !r.tombstone {
			v[k] = r.value
		}
	}
	return v
}

func sameView(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %s = %q, want %q", k, got[k], v)
		}
	}
}

// checkCompacted: below each partition's cleaned offset a key appears once,
// as its last record there; tombstones there only if allowed.
func checkCompacted(t *testing.T, tb *testBroker, topic string, recs map[int32][]kvRec, tombstonesAllowed bool) (kept, tombstones int) {
	t.Helper()
	for part, rs := range recs {
		p, ok := tb.b.Partition(topic, part)
		if !ok {
			t.Fatalf("no partition %d", part)
		}
		cleaned := p.Log().FirstDirtyOffset()
		seen := map[string]bool{}
		for _, r := range rs {
			if r.offset >= cleaned {
				continue
			}
			kept++
			if seen[r.key] {
				t.Fatalf("partition %d: key %s twice below the cleaned offset %d", part, r.key, cleaned)
			}
			seen[r.key] = true
			if r.tombstone {
				tombstones++
				if !tombstonesAllowed {
					t.Fatalf("partition %d: tombstone of %s at %d past delete.retention.ms", part, r.key, r.offset)
				}
			}
		}
		if cleaned == 0 {
			t.Fatalf("partition %d not cleaned", part)
		}
	}
	return kept, tombstones
}

// TestCompactionKeepsLastValueOfEveryKey is issue 5's test: 100,000 records
// over 1,000 keys with deletes into a compacted topic; after the cleaner the
// topic holds exactly the last value of each key, offsets unchanged;
// tombstones vanish after delete.retention.ms; a consumer reading during
// cleaning sees a consistent log.
func TestCompactionKeepsLastValueOfEveryKey(t *testing.T) {
	// No background passes: the test drives them with CleanNow.
	tb := start(t, t.TempDir(), "", map[string]string{"log.cleaner.threads": "0"})
	adm := tb.admin()
	const retention = 1500 * time.Millisecond
	configs := map[string]*string{
		"cleanup.policy":      ptr("compact"),
		"segment.bytes":       ptr("65536"),
		"delete.retention.ms": ptr(fmt.Sprint(retention.Milliseconds())),
	}
	createTopic(t, adm, "kv", 2, configs)
	// Two idempotent producers, one after the other: every record of the
	// first one's last batch is overwritten by the second, and that batch
	// stays, empty, to keep the first producer's sequence numbers.
	first := tb.client(kgo.DefaultProduceTopic("kv"), kgo.ProducerLinger(0))
	p := produceKeyed(t, first, "kv", 50_000, 1000, 1)
	second := tb.client(kgo.DefaultProduceTopic("kv"), kgo.ProducerLinger(0))
	p.merge(produceKeyed(t, second, "kv", 50_000, 1000, 2))
	want := p.wantView()

	// A consumer reads while the cleaner runs.
	var wg sync.WaitGroup
	var during map[int32][]kvRec
	var duringErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		during, duringErr = readTopic(t, tb, "kv", p, kgo.FetchMaxBytes(32<<10), kgo.FetchMaxPartitionBytes(16<<10))
	}()
	if err := tb.b.CleanNow(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if duringErr != nil {
		t.Fatalf("consumer during cleaning: %v", duringErr)
	}
	sameView(t, view(during), want)

	after, err := readTopic(t, tb, "kv", p)
	if err != nil {
		t.Fatal(err)
	}
	sameView(t, view(after), want)
	kept, tombstones := checkCompacted(t, tb, "kv", after, true)
	total := 0
	for _, rs := range after {
		total += len(rs)
	}
	if tombstones == 0 || total > 20_000 {
		t.Fatalf("after cleaning: %d records (%d below the cleaned offsets, %d tombstones)", total, kept, tombstones)
	}
	t.Logf("100,000 records -> %d (%d cleaned, %d tombstones)", total, kept, tombstones)
	if empty := emptyBatches(t, tb, "kv", 2); empty == 0 {
		t.Errorf("no empty batch kept for the first producer")
	}

	// Past delete.retention.ms the next pass drops the tombstones.
	time.Sleep(retention + 100*time.Millisecond)
	if err := tb.b.CleanNow(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	final, err := readTopic(t, tb, "kv", p)
	if err != nil {
		t.Fatal(err)
	}
	sameView(t, view(final), want)
	checkCompacted(t, tb, "kv", final, false)

	// The metrics show it; a restart keeps it.
	text := scrape(t, tb)
	if v := metricValue(t, text, "sluice_cleaner_bytes_cleaned_total"); v == 0 {
		t.Errorf("no bytes cleaned in the metrics")
	}
	if v := metricValue(t, text, `sluice_cleaner_dirty_ratio{partition="0",topic="kv"}`); v != 0 {
		t.Errorf("dirty ratio %v right after cleaning", v)
	}
	metricValue(t, text, `sluice_cleaner_lag_seconds{partition="1",topic="kv"}`)
	dir := tb.dir
	tb.stop()
	tb2 := start(t, dir, "", map[string]string{"log.cleaner.threads": "0"})
	again, err := readTopic(t, tb2, "kv", p)
	if err != nil {
		t.Fatal(err)
	}
	sameView(t, view(again), want)
	checkCompacted(t, tb2, "kv", again, false)
}

func ptr(s string) *string { return &s }

// TestCompactionOfEachCodec: batches of each codec are compacted and keep it.
func TestCompactionOfEachCodec(t *testing.T) {
	tb := start(t, t.TempDir(), "", map[string]string{"log.cleaner.threads": "0"})
	adm := tb.admin()
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	ps := map[string]*produced{}
	for name, codec := range codecs {
		topic := "codec-" + name
		createTopic(t, adm, topic, 1, map[string]*string{"cleanup.policy": ptr("compact"), "segment.bytes": ptr("16384")})
		cl := tb.client(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(0))
		ps[topic] = produceKeyed(t, cl, topic, 5000, 100, int64(len(name)))
	}
	if err := tb.b.CleanNow(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for topic, p := range ps {
		recs, err := readTopic(t, tb, topic, p)
		if err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		sameView(t, view(recs), p.wantView())
		if kept, _ := checkCompacted(t, tb, topic, recs, true); kept > 100 {
			t.Fatalf("%s: %d records below the cleaned offset for 100 keys", topic, kept)
		}
		// The stored batches keep the producer's codec.
		part, _ := tb.b.Partition(topic, 0)
		b, err := part.Log().ReadBatches(0, 1<<20)
		if err != nil || len(b) < 61 {
			t.Fatalf("%s: read: %v", topic, err)
		}
		if codec := b[22] & 7; codec != map[string]byte{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[strings.TrimPrefix(topic, "codec-")] {
			t.Fatalf("%s: first batch has codec %d", topic, codec)
		}
	}
}

// TestCompactedTopicRefusesKeylessRecords: Kafka's INVALID_RECORD.
func TestCompactedTopicRefusesKeylessRecords(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	createTopic(t, tb.admin(), "nokey", 1, map[string]*string{"cleanup.policy": ptr("compact,delete")})
	cl := tb.client(kgo.DefaultProduceTopic("nokey"), kgo.RecordRetries(0))
	err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("no key")}).FirstErr()
	if !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless record: %v, want INVALID_RECORD", err)
	}
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestBackgroundCleaner: with the default ratio the broker's own cleaner
// compacts a dirty log without being asked.
func TestBackgroundCleaner(t *testing.T) {
	tb := start(t, t.TempDir(), "", map[string]string{"log.cleaner.backoff.ms": "50", "log.cleaner.threads": "2"})
	createTopic(t, tb.admin(), "bg", 3, map[string]*string{"cleanup.policy": ptr("compact"), "segment.bytes": ptr("16384")})
	cl := tb.client(kgo.DefaultProduceTopic("bg"))
	p := produceKeyed(t, cl, "bg", 10_000, 50, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for tb.b.CleanerStats().Passes < 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("background cleaner ran %d passes", tb.b.CleanerStats().Passes)
		case <-time.After(20 * time.Millisecond):
		}
	}
	recs, err := readTopic(t, tb, "bg", p)
	if err != nil {
		t.Fatal(err)
	}
	sameView(t, view(recs), p.wantView())
}

// TestAlterToCompact: a topic created with the delete policy and altered to
// compact is compacted from then on (and then refuses keyless records).
func TestAlterToCompact(t *testing.T) {
	tb := start(t, t.TempDir(), "", map[string]string{"log.cleaner.threads": "0"})
	adm := tb.admin()
	createTopic(t, adm, "alter", 1, map[string]*string{"segment.bytes": ptr("16384")})
	cl := tb.client(kgo.DefaultProduceTopic("alter"), kgo.RecordRetries(0))
	p := produceKeyed(t, cl, "alter", 3000, 20, 4)
	if err := tb.b.CleanNow(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	part, _ := tb.b.Partition("alter", 0)
	if part.Log().FirstDirtyOffset() != 0 {
		t.Fatal("a delete-policy topic was cleaned")
	}
	resp, err := adm.AlterTopicConfigs(ctxT(t), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: ptr("compact")}}, "alter")
	if err != nil || resp[0].Err != nil {
		t.Fatalf("alter cleanup.policy: %v %v", err, resp)
	}
	if err := tb.b.CleanNow(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	recs, err := readTopic(t, tb, "alter", p)
	if err != nil {
		t.Fatal(err)
	}
	sameView(t, view(recs), p.wantView())
	if kept, _ := checkCompacted(t, tb, "alter", recs, true); kept > 20 {
		t.Fatalf("%d records below the cleaned offset for 20 keys", kept)
	}
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("no key")}).FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless record after altering to compact: %v", err)
	}
}
