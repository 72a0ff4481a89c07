package sink_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/backup/s3test"
	"github.com/sluice-io/sluice/internal/sink"
	"github.com/sluice-io/sluice/internal/sink/format"
)

const testTemplate = "dt={{date}}/hour={{hour}}/c={{field:country}}"

func options(t *testing.T, c *cluster, topic string, store sink.Store) sink.Options {
	t.Helper()
	tm, err := sink.ParseTemplate(testTemplate)
	if err != nil {
		t.Fatal(err)
	}
	f, err := format.New("jsonl", format.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return sink.Options{Brokers: []string{c.addr}, Topics: topic, Group: "g-" + topic, Store: store, Format: f,
		PartitionBy: tm, RollBytes: 8 << 10, RollTime: 200 * time.Millisecond, SessionTimeout: 6 * time.Second}
}

// roundTrip produces records, sinks them, and checks the store and the
// committed offsets; read returns what the store holds.
func roundTrip(t *testing.T, store sink.Store, read func() map[string]*object) {
	c := startCluster(t)
	const topic, partitions, n = "events", 3, 3000
	c.create(t, topic, partitions)
	c.produce(t, topic, partitions, 0, n/2)
	r := runSink(t, options(t, c, topic, store))
	c.produce(t, topic, partitions, n/2, n) // some while it runs
	c.waitCommitted(t, "g-"+topic, topic, 25*time.Second, r.status)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	objs := read()
	check(t, objs, topic, partitions, testTemplate, c.ends(t, topic))
	dirs := map[string]bool{}
	for k := range objs {
		dirs[k[:strings.LastIndex(k, "/")]] = true
	}
	for _, want := range []string{"events/dt=2026-03-01/hour=22/c=fr", "events/dt=2026-03-01/hour=23/c=us_east", "events/dt=2026-03-01/hour=23/c=__missing__"} {
		if !dirs[want] {
			t.Fatalf("no objects in %s; directories: %v", want, dirs)
		}
	}
	t.Logf("%d records in %d objects in %d directories", n, len(objs), len(dirs))
}

func TestRoundTripDir(t *testing.T) {
	root, store := dirStore(t)
	roundTrip(t, store, func() map[string]*object { return readDir(t, root) })
}

func TestRoundTripS3(t *testing.T) {
	srv := s3test.Start(t)
	store, err := sink.OpenStore(context.Background(), "s3://"+srv.Bucket+"/lake/raw", backup.S3Config{Endpoint: srv.Endpoint, Creds: srv.Creds()})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, store, func() map[string]*object { return readS3(t, srv.Client(), srv.Bucket, "lake/raw") })
}

// failingStore lets allow uploads through, then fails every other one.
type failingStore struct {
	sink.Store
	mu      sync.Mutex
	allow   int
	refused int
}

func (f *failingStore) Dir(dir string) (backup.Target, error) {
	t, err := f.Store.Dir(dir)
	return failingTarget{t, f}, err
}

func (f *failingStore) refusals() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refused
}

type failingTarget struct {
	backup.Target
	f *failingStore
}

func (t failingTarget) Create(name string) (io.WriteCloser, error) {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.f.allow == 0 {
		t.f.refused++
		return nil, errors.New("injected: the store is gone")
	}
	t.f.allow--
	return t.Target.Create(name)
}

// TestPendingReplay stops a sink after some objects of a flush were
// uploaded and before its offsets were committed, then runs another with
// other roll settings: it cuts the pending range where the first did, so
// the first run's objects are rewritten with the same names and content,
// and no record is stored twice.
func TestPendingReplay(t *testing.T) {
	c := startCluster(t)
	const topic, partitions, n = "replay", 3, 3000
	c.create(t, topic, partitions)
	c.produce(t, topic, partitions, 0, n)
	root, dir := dirStore(t)
	fs := &failingStore{Store: dir, allow: 5}
	r := runSink(t, options(t, c, topic, fs))
	deadline := time.Now().Add(20 * time.Second)
	for fs.refusals() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no upload refused in 20 s%s", r.status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.stop() // mid-flush: no commit past the pending one
	first := readDir(t, root)
	if len(first) == 0 {
		t.Fatal("the first run uploaded nothing")
	}
	com := c.committed(t, "g-"+topic, topic)
	pending := 0
	for p, o := range com {
		if strings.HasPrefix(o.Metadata, "sluice-sink/1 cuts=") {
			pending++
			t.Logf("partition %d: committed %d, metadata %q", p, o.At, o.Metadata)
		}
	}
	if pending == 0 {
		t.Fatalf("no pending flush in the committed metadata: %v", com)
	}
	covered(t, first, com)

	// Other roll settings: without the pending cuts they would cut elsewhere.
	o := options(t, c, topic, dir)
	o.RollBytes, o.RollTime = 3<<10, 50*time.Millisecond
	r2 := runSink(t, o)
	c.waitCommitted(t, "g-"+topic, topic, 25*time.Second, r2.status)
	if err := r2.stop(); err != nil {
		t.Fatal(err)
	}
	all := readDir(t, root)
	for k, o := range first {
		if a, ok := all[k]; !ok || string(a.data) != string(o.data) {
			t.Fatalf("object %s of the first run is gone or changed", k)
		}
	}
	check(t, all, topic, partitions, testTemplate, c.ends(t, topic))
	t.Logf("first run: %d objects before the store failed; in all %d objects", len(first), len(all))
}

// TestS3Killed kills the S3 server while the sink runs and starts it
// again: uploads are retried, the group never commits past what the store
// has (checked while it is down, on its files), and every record ends up
// stored exactly once.
func TestS3Killed(t *testing.T) {
	srv := s3test.Start(t)
	c := startCluster(t)
	const topic, partitions, n = "s3kill", 3, 6000
	c.create(t, topic, partitions)
	store, err := sink.OpenStore(context.Background(), "s3://"+srv.Bucket+"/k", backup.S3Config{Endpoint: srv.Endpoint, Creds: srv.Creds(), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	o := options(t, c, topic, store)
	o.RollTime = 100 * time.Millisecond
	r := runSink(t, o)
	c.produce(t, topic, partitions, 0, n/3)
	deadline := time.Now().Add(20 * time.Second)
	for len(c.committed(t, "g-"+topic, topic)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("nothing committed in 20 s%s", r.status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Kill()
	c.produce(t, topic, partitions, n/3, 2*n/3)
	bucketDir := filepath.Join(srv.Dir, srv.Bucket, "k")
	for range 5 {
		time.Sleep(200 * time.Millisecond)
		covered(t, readDir(t, bucketDir), c.committed(t, "g-"+topic, topic))
	}
	if errs := metricValue(t, r.s, "sluice_sink_upload_errors_total"); errs == 0 {
		t.Logf("no upload failed while the store was down (nothing was due)")
	}
	srv.Restart()
	c.produce(t, topic, partitions, 2*n/3, n)
	c.waitCommitted(t, "g-"+topic, topic, 25*time.Second, r.status)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	check(t, readS3(t, srv.Client(), srv.Bucket, "k"), topic, partitions, testTemplate, c.ends(t, topic))
	t.Logf("upload errors while the store was down: %.0f", metricValue(t, r.s, "sluice_sink_upload_errors_total"))
}

func metricValue(t *testing.T, s *sink.Sink, name string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return v
}

func (f *failingStore) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.allow = 1 << 30
}

// TestZombieFenced: a sink whose store fails stays inside a flush (it
// uploads before it commits) while another sink joins the group; the
// group drops it after its rebalance timeout and the other sink finishes
// the pending flush and the rest. When its store comes back, the first
// sink uploads what it had (the same objects) and its commit is refused:
// the committed offsets stay at the ends, and every record is stored
// exactly once.
func TestZombieFenced(t *testing.T) {
	c := startCluster(t)
	const topic, partitions, n = "zombie", 3, 3000
	c.create(t, topic, partitions)
	c.produce(t, topic, partitions, 0, n)
	root, dir := dirStore(t)
	fs := &failingStore{Store: dir, allow: 5}
	o := options(t, c, topic, fs)
	o.RebalanceTimeout = 2 * time.Second
	zombie := runSink(t, o)
	deadline := time.Now().Add(20 * time.Second)
	for fs.refusals() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no upload refused in 20 s%s", zombie.status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	o2 := options(t, c, topic, dir)
	o2.RebalanceTimeout = 2 * time.Second
	next := runSink(t, o2)
	c.waitCommitted(t, "g-"+topic, topic, 25*time.Second, next.status)
	if got := metricValue(t, zombie.s, "sluice_sink_commit_errors_total"); got != 0 {
		t.Fatalf("the stuck sink committed (or failed to) %v times before its store came back", got)
	}
	fs.release()
	for metricValue(t, zombie.s, "sluice_sink_commit_errors_total") == 0 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("the fenced sink's commit did not fail%s", zombie.status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ends := c.ends(t, topic)
	for p, o := range c.committed(t, "g-"+topic, topic) {
		if o.At != ends[p] || o.Metadata != "" {
			t.Fatalf("partition %d: committed %d %q after the fenced sink's commit, want %d", p, o.At, o.Metadata, ends[p])
		}
	}
	if err := next.stop(); err != nil {
		t.Fatal(err)
	}
	zombie.stop()
	check(t, readDir(t, root), topic, partitions, testTemplate, ends)
}

// TestMemoryLimitCuts: with files that never roll by size or time, only
// the limit on buffered bytes cuts them (the largest partition first), the
// buffered bytes stay near it, and a clean stop flushes the rest.
func TestMemoryLimitCuts(t *testing.T) {
	c := startCluster(t)
	const topic, partitions, n, limit = "memory", 3, 3000, 16 << 10
	c.create(t, topic, partitions)
	root, dir := dirStore(t)
	o := options(t, c, topic, dir)
	o.RollBytes, o.RollTime, o.MaxBufferedBytes = 1<<30, time.Hour, limit
	r := runSink(t, o)
	c.produce(t, topic, partitions, 0, n)
	var most float64
	deadline := time.Now().Add(20 * time.Second)
	for metricValue(t, r.s, "sluice_sink_records_total") < n*3/4 {
		most = max(most, metricValue(t, r.s, "sluice_sink_buffered_bytes"))
		if time.Now().After(deadline) {
			t.Fatalf("%v records stored in 20 s%s", metricValue(t, r.s, "sluice_sink_records_total"), r.status())
		}
		time.Sleep(time.Millisecond)
	}
	// Open files, the batch in flight, and up to 256 records more.
	if most > 2*limit+256*300 {
		t.Fatalf("%.0f bytes buffered at most, with a limit of %d", most, limit)
	}
	stored := metricValue(t, r.s, "sluice_sink_records_total")
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// The clean stop flushed what it had taken (maybe not all).
	com := c.committed(t, "g-"+topic, topic)
	covered(t, readDir(t, root), com)
	t.Logf("%.0f records stored before the stop, %d committed after it", stored, sumAt(com))
	if sumAt(com) < int64(stored) {
		t.Fatalf("the clean stop committed %d records, fewer than the %.0f stored before it", sumAt(com), stored)
	}
	o.RollTime = 50 * time.Millisecond
	r = runSink(t, o)
	c.waitCommitted(t, "g-"+topic, topic, 20*time.Second, r.status)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	ends := c.ends(t, topic)
	objs := readDir(t, root)
	check(t, objs, topic, partitions, testTemplate, ends)
	t.Logf("%d objects; at most %.0f bytes buffered (limit %d)", len(objs), most, limit)
}

// A topic whose name starts with "." matches --topics but is not sunk: its
// objects would be hidden files (which a directory store refuses and query
// engines pass over). Before, its uploads were retried for ever and held
// back every other topic's commits.
func TestDotTopicNotSunk(t *testing.T) {
	c := startCluster(t)
	c.create(t, ".hidden", 1)
	c.create(t, "shown", 1)
	c.produce(t, ".hidden", 1, 0, 50)
	c.produce(t, "shown", 1, 0, 50)
	root, store := dirStore(t)
	o := options(t, c, "shown", store)
	o.Topics, o.Group = `\.hidden|shown`, "g-dot"
	r := runSink(t, o)
	c.waitCommitted(t, "g-dot", "shown", 20*time.Second, r.status)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if com := c.committed(t, "g-dot", ".hidden"); len(com) != 0 {
		t.Fatalf("offsets committed for .hidden: %v", com)
	}
	check(t, readDir(t, root), "shown", 1, testTemplate, c.ends(t, "shown"))
}
