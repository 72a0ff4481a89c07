package sink_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/sink"
	"github.com/sluice-io/sluice/internal/sink/format"
)

// cluster is a test broker with a client.
type cluster struct {
	addr string
	cl   *kgo.Client
	adm  *kadm.Client
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	// No initial rebalance delay: sinks join at once.
	b := clitest.Start(t, map[string]string{"group.initial.rebalance.delay.ms": "0"})
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &cluster{addr: b.Addr, cl: cl, adm: kadm.NewClient(cl)}
}

func (c *cluster) create(t *testing.T, topic string, partitions int32) {
	t.Helper()
	if _, err := c.adm.CreateTopic(clitest.Ctx(t), partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
}

// baseTime is the first record's timestamp; record i is i seconds later,
// so the records span hours.
var baseTime = time.Date(2026, 3, 1, 22, 30, 0, 0, time.UTC)

var countries = []string{"fr", "de", "jp", "br", "us/east"}

// value is record i's value: a JSON object with a country field, except
// every 7th record, which has none.
func value(i int) []byte {
	if i%7 == 3 {
		return []byte(fmt.Sprintf(`{"i":%d}`, i))
	}
	return []byte(fmt.Sprintf(`{"i":%d,"country":%q,"pad":"%s"}`, i, countries[i%len(countries)], strings.Repeat("x", 40)))
}

// produce writes records from..to-1 round robin to topic's partitions.
func (c *cluster) produce(t *testing.T, topic string, partitions int32, from, to int) {
	t.Helper()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i) % partitions, Key: []byte(strconv.Itoa(i)),
			Value: value(i), Timestamp: baseTime.Add(time.Duration(i) * time.Second)})
	}
	if err := c.cl.ProduceSync(clitest.Ctx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) ends(t *testing.T, topic string) map[int32]int64 {
	t.Helper()
	offs, err := c.adm.ListEndOffsets(clitest.Ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// committed returns the group's committed offsets and metadata of topic.
func (c *cluster) committed(t *testing.T, group, topic string) map[int32]kadm.OffsetResponse {
	t.Helper()
	offs, err := c.adm.FetchOffsetsForTopics(clitest.Ctx(t), group, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]kadm.OffsetResponse{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At >= 0 {
			out[o.Partition] = o
		}
	})
	return out
}

// waitCommitted waits until the group has committed every partition's
// end.
func (c *cluster) waitCommitted(t *testing.T, group, topic string, timeout time.Duration, stopped func() string) {
	t.Helper()
	ends := c.ends(t, topic)
	deadline := time.Now().Add(timeout)
	for {
		com := c.committed(t, group, topic)
		done := true
		for p, e := range ends {
			if com[p].At != e {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			msg := ""
			if stopped != nil {
				msg = stopped()
			}
			t.Fatalf("group %s did not commit the ends %v within %s: committed %v%s", group, ends, timeout, com, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// line is one JSON line of an object.
type line struct {
	Topic     string          `json:"topic"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	Timestamp int64           `json:"timestamp"`
	Key       json.RawMessage `json:"key"`
	Value     json.RawMessage `json:"value"`
}

// object is an object read back: its key below the store's root and its
// records.
type object struct {
	key   string
	data  []byte
	lines []line
}

// readDir reads every object under root (a file:// store, or versitygw's
// directory of a bucket), leaving out hidden entries (temporary files of
// uploads cut short).
func readDir(t *testing.T, root string) map[string]*object {
	t.Helper()
	out := map[string]*object{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && path != root {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		out[filepath.ToSlash(rel)] = parse(t, filepath.ToSlash(rel), data)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// readS3 reads every object under prefix/ of bucket through S3.
func readS3(t *testing.T, c *minio.Client, bucket, prefix string) map[string]*object {
	t.Helper()
	ctx := clitest.Ctx(t)
	out := map[string]*object{}
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		r, err := c.GetObject(ctx, bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		key := strings.TrimPrefix(o.Key, prefix+"/")
		out[key] = parse(t, key, data)
	}
	return out
}

func parse(t *testing.T, key string, data []byte) *object {
	t.Helper()
	o := &object{key: key, data: data}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("object %s: line %q: %v", key, sc.Text(), err)
		}
		o.lines = append(o.lines, l)
	}
	return o
}

// check verifies the objects: each object's name matches the offsets it
// holds and its directory the template; across objects every offset of
// each partition below ends appears exactly once, with its value. It
// returns how many records each partition has in the store, from 0 with
// no gap.
func check(t *testing.T, objs map[string]*object, topic string, partitions int32, tmpl string, ends map[int32]int64) {
	t.Helper()
	tm, err := sink.ParseTemplate(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int32]map[int64]string{}
	for p := range partitions {
		seen[p] = map[int64]string{}
	}
	for key, o := range objs {
		if len(o.lines) == 0 {
			t.Fatalf("object %s is empty", key)
		}
		first, last := o.lines[0], o.lines[len(o.lines)-1]
		want := fmt.Sprintf("%s+%d+%020d+%020d.jsonl", topic, first.Partition, first.Offset, last.Offset)
		if base := key[strings.LastIndex(key, "/")+1:]; base != want {
			t.Fatalf("object %s holds %s[%d] offsets %d..%d: want the name %s", key, first.Topic, first.Partition, first.Offset, last.Offset, want)
		}
		prev := int64(-1)
		for _, l := range o.lines {
			if l.Topic != topic || l.Partition != first.Partition || l.Offset <= prev {
				t.Fatalf("object %s: %s[%d] offset %d after %d", key, l.Topic, l.Partition, l.Offset, prev)
			}
			prev = l.Offset
			i, _ := strconv.Atoi(strings.Trim(string(l.Key), `"`))
			if string(l.Value) != string(value(i)) {
				t.Fatalf("object %s offset %d: value %s, want %s", key, l.Offset, l.Value, value(i))
			}
			r := &format.Record{Topic: topic, Partition: l.Partition, Offset: l.Offset, Timestamp: time.UnixMilli(l.Timestamp), Value: l.Value}
			dir := topic
			if sub := tm.Render(r); sub != "" {
				dir += "/" + sub
			}
			if wantKey := dir + "/" + want; key != wantKey {
				t.Fatalf("object %s: record at offset %d belongs in %s", key, l.Offset, wantKey)
			}
			if other, dup := seen[l.Partition][l.Offset]; dup {
				t.Fatalf("partition %d offset %d is in two objects: %s and %s", l.Partition, l.Offset, other, key)
			}
			seen[l.Partition][l.Offset] = key
		}
	}
	for p, end := range ends {
		for off := range end {
			if _, ok := seen[p][off]; !ok {
				t.Fatalf("partition %d offset %d is in no object (end %d, %d records stored)", p, off, end, len(seen[p]))
			}
		}
		if int64(len(seen[p])) != end {
			t.Fatalf("partition %d: %d records stored, end %d", p, len(seen[p]), end)
		}
	}
}

// covered checks that every offset below the committed offsets is in an
// object: the group never commits past what the store has.
func covered(t *testing.T, objs map[string]*object, committed map[int32]kadm.OffsetResponse) {
	t.Helper()
	have := map[int32]map[int64]bool{}
	for _, o := range objs {
		for _, l := range o.lines {
			if have[l.Partition] == nil {
				have[l.Partition] = map[int64]bool{}
			}
			have[l.Partition][l.Offset] = true
		}
	}
	for p, c := range committed {
		for off := range c.At {
			if !have[p][off] {
				t.Fatalf("partition %d: committed offset %d, but offset %d is in no object", p, c.At, off)
			}
		}
	}
}

// running is a sink run in the background.
type running struct {
	s      *sink.Sink
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

func runSink(t *testing.T, o sink.Options) *running {
	t.Helper()
	s, err := sink.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		err := s.Run(ctx)
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *running) stop() error {
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// status is for failure messages: whether the sink ended, and how.
func (r *running) status() string {
	select {
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return fmt.Sprintf(" (the sink ended: %v)", r.err)
	default:
		return " (the sink runs)"
	}
}

// dirStore is a file:// store in a temporary directory, and that
// directory.
func dirStore(t *testing.T) (string, sink.Store) {
	t.Helper()
	root := t.TempDir()
	store, err := sink.OpenStore(context.Background(), "file://"+root, backup.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	return root, store
}
