package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
)

// startLogDirs starts a broker with its data dir and two more log dirs.
func startLogDirs(t *testing.T, dirs []string, addr string) *testBroker {
	t.Helper()
	return startWith(t, dirs[0], addr, map[string]string{"group.initial.rebalance.delay.ms": "0"}, func(c *broker.Config) {
		c.LogDirs = dirs[1:]
	})
}

// partitionDirsOf maps each partition of topic to the log dir DescribeLogDirs
// lists it in (not as a future replica), failing on one listed twice.
func partitionDirsOf(t *testing.T, adm *kadm.Client, topic string) (dirs map[int32]string, futures int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs = map[int32]string{}
	all.Each(func(d kadm.DescribedLogDir) {
		if d.Err != nil {
			t.Errorf("log dir %s: %v", d.Dir, d.Err)
		}
		for _, p := range d.Topics[topic] {
			if p.IsFuture {
				futures++
				continue
			}
			if prev, ok := dirs[p.Partition]; ok {
				t.Errorf("%s-%d listed in %s and %s", topic, p.Partition, prev, d.Dir)
			}
			dirs[p.Partition] = d.Dir
		}
	})
	return dirs, futures
}

// TestLogDirs: a broker with three log dirs spreads new partitions over
// them (the fewest first), lists each dir in DescribeLogDirs, writes each
// dir's meta.properties and checkpoints, and finds every partition where
// it was after a restart.
func TestLogDirs(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	tb := startLogDirs(t, dirs, "")
	adm := tb.admin()
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 6, 1, nil, "spread"); err != nil {
		t.Fatal(err)
	}
	cl := tb.client(kgo.DefaultProduceTopic("spread"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	for i := range 60 {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	where, _ := partitionDirsOf(t, adm, "spread")
	count := map[string]int{}
	for _, d := range where {
		count[d]++
	}
	if len(where) != 6 || len(count) != 3 {
		t.Fatalf("6 partitions over 3 dirs: got %v", where)
	}
	text := scrape(t, tb)
	for d, n := range count {
		if n != 2 {
			t.Errorf("%s holds %d partitions, want 2 (%v)", d, n, where)
		}
		if got := metricValue(t, text, fmt.Sprintf("sluice_log_dir_partitions{dir=%q}", d)); got != 2 {
			t.Errorf("sluice_log_dir_partitions of %s = %v, want 2", d, got)
		}
		if got := metricValue(t, text, fmt.Sprintf("sluice_log_dir_size_bytes{dir=%q}", d)); got <= 0 {
			t.Errorf("sluice_log_dir_size_bytes of %s = %v, want its partitions' bytes", d, got)
		}
	}
	tb.stop()
	for _, d := range dirs {
		for _, f := range []string{"meta.properties", "recovery-point-offset-checkpoint", "log-start-offset-checkpoint"} {
			if _, err := os.Stat(filepath.Join(d, f)); err != nil {
				t.Errorf("%s: %v", d, err)
			}
		}
	}
	tb = startLogDirs(t, dirs, tb.addr)
	adm = tb.admin()
	again, _ := partitionDirsOf(t, adm, "spread")
	for p, d := range where {
		if again[p] != d {
			t.Errorf("after a restart spread-%d is in %q, was in %q", p, again[p], d)
		}
	}
	offs, err := adm.ListEndOffsets(ctx, "spread")
	if err != nil {
		t.Fatal(err)
	}
	offs.Each(func(o kadm.ListedOffset) {
		if o.Offset != 10 {
			t.Errorf("after a restart spread-%d ends at %d, want 10", o.Partition, o.Offset)
		}
	})
}

// TestAlterReplicaLogDirs moves a partition between log dirs while an
// acks=all kgo producer with default settings writes to it: no produce
// error, every acknowledged record read back once, the partition in its new
// dir (also after a restart) and nothing left in the old one. Kafka's error
// codes for a dir that is not a log dir and a partition not here.
func TestAlterReplicaLogDirs(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	tb := startLogDirs(t, dirs, "")
	adm := tb.admin()
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"segment.bytes": kadm.StringPtr("65536")}, "mv"); err != nil {
		t.Fatal(err)
	}
	where, _ := partitionDirsOf(t, adm, "mv")
	from := where[0]
	to := dirs[1]
	if from == to {
		to = dirs[2]
	}
	if abs, err := filepath.Abs(to); err == nil {
		to = abs
	}

	cl := tb.client(kgo.DefaultProduceTopic("mv"), kgo.ProducerBatchCompression(kgo.NoCompression()))
	defer cl.Close()
	var (
		mu      sync.Mutex
		acked   = map[string]bool{}
		errs    []error
		stop    = make(chan struct{})
		stopped = make(chan struct{})
	)
	go func() {
		defer close(stopped)
		rnd := rand.New(rand.NewPCG(1, 2))
		pad := make([]byte, 1000)
		for i := range pad {
			pad[i] = byte('a' + rnd.IntN(26))
		}
		var wg sync.WaitGroup
		for i := 0; ; i++ {
			select {
			case <-stop:
				wg.Wait()
				return
			default:
			}
			v := fmt.Sprintf("r%07d-%x", i, rnd.Int64()) + string(pad)
			wg.Add(1)
			cl.Produce(ctx, kgo.StringRecord(v), func(r *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				acked[string(r.Value)] = true
			})
			if i%500 == 499 {
				wg.Wait()
			}
		}
	}()
	waitUntil(t, "20 MB produced", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) > 20000
	})
	req := kadm.AlterReplicaLogDirsReq{}
	req.Add(to, kadm.TopicsSet{"mv": {0: {}}})
	req.Add("/no/such/dir", kadm.TopicsSet{"elsewhere": {0: {}}})
	req.Add(to, kadm.TopicsSet{"notyet": {0: {}}})
	resps, err := adm.AlterBrokerReplicaLogDirs(ctx, 1, req)
	if err != nil {
		t.Fatal(err)
	}
	resps.Each(func(r kadm.AlterReplicaLogDirsResponse) {
		var want error
		switch {
		case r.Dir == "/no/such/dir":
			want = kerr.LogDirNotFound
		case r.Topic == "notyet":
			want = kerr.ReplicaNotAvailable
		}
		if r.Err != want {
			t.Errorf("AlterReplicaLogDirs %s %s-%d: %v, want %v", r.Dir, r.Topic, r.Partition, r.Err, want)
		}
	})
	waitUntil(t, "mv-0 in its new log dir", func() bool {
		where, futures := partitionDirsOf(t, adm, "mv")
		return where[0] == to && futures == 0
	})
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	waitUntil(t, "more records after the move", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) > before+2000
	})
	close(stop)
	<-stopped
	if len(errs) > 0 {
		t.Fatalf("%d produce errors, first: %v", len(errs), errs[0])
	}
	if _, err := os.Stat(filepath.Join(from, "mv-0")); !os.IsNotExist(err) {
		t.Errorf("the old copy is still there: %v", err)
	}
	// A partition created later in the dir named before it existed.
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "notyet"); err != nil {
		t.Fatal(err)
	}
	if w, _ := partitionDirsOf(t, adm, "notyet"); w[0] != to {
		t.Errorf("notyet-0 created in %q, want %q (named by AlterReplicaLogDirs before it existed)", w[0], to)
	}

	tb.stop()
	tb = startLogDirs(t, dirs, tb.addr)
	if w, _ := partitionDirsOf(t, tb.admin(), "mv"); w[0] != to {
		t.Errorf("after a restart mv-0 is in %q, want %q", w[0], to)
	}
	consumer := tb.client(kgo.ConsumeTopics("mv"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer consumer.Close()
	seen := map[string]int{}
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < len(acked) && time.Now().Before(deadline) {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fs := consumer.PollFetches(fctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
	}
	lost, doubled := 0, 0
	for v := range acked {
		switch seen[v] {
		case 0:
			lost++
		case 1:
		default:
			doubled++
		}
	}
	if lost > 0 || doubled > 0 {
		t.Fatalf("%d acknowledged records: %d lost, %d read more than once", len(acked), lost, doubled)
	}
	t.Logf("%d records acknowledged around the move, all read back once", len(acked))
}

// copyTree copies the files of dir from into a new dir to.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInterruptedMoveRecovered: a start after a crash in the middle of a
// move between log dirs keeps one complete copy, whichever step the crash
// came after, and removes what the move left.
func TestInterruptedMoveRecovered(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	tb := startLogDirs(t, dirs, "")
	ctx := context.Background()
	adm := tb.admin()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "crash"); err != nil {
		t.Fatal(err)
	}
	cl := tb.client(kgo.DefaultProduceTopic("crash"))
	produced := 0
	produceSome := func() {
		for range 50 {
			if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(produced))).FirstErr(); err != nil {
				t.Fatal(err)
			}
			produced++
		}
	}
	produceSome()
	where, _ := partitionDirsOf(t, adm, "crash")
	cl.Close()
	tb.stop()
	src, dst := where[0], dirs[0]
	if src == dst {
		dst = dirs[1]
	}
	live := filepath.Join(src, "crash-0")
	future := filepath.Join(dst, "crash-0.0123456789abcdef-future")
	deleted := filepath.Join(src, "crash-0.0123456789abcdef-delete")

	check := func(step, wantDir string) {
		t.Helper()
		tb = startLogDirs(t, dirs, tb.addr)
		adm = tb.admin()
		if w, _ := partitionDirsOf(t, adm, "crash"); w[0] != wantDir {
			t.Errorf("%s: crash-0 in %q, want %q", step, w[0], wantDir)
		}
		offs, err := adm.ListEndOffsets(ctx, "crash")
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := offs.Lookup("crash", 0); o.Offset != int64(produced) {
			t.Errorf("%s: crash-0 ends at %d, want %d", step, o.Offset, produced)
		}
		for _, p := range []string{future, deleted} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s: %s is left (%v)", step, p, err)
			}
		}
		cl = tb.client(kgo.DefaultProduceTopic("crash"))
		produceSome()
		cl.Close()
		tb.stop()
	}
	// A crash during the copy: the source is in place.
	copyTree(t, live, future)
	check("copy made, source in place", src)
	// A crash after the source was renamed "-delete": the copy is complete.
	copyTree(t, live, future)
	if err := os.Rename(live, deleted); err != nil {
		t.Fatal(err)
	}
	check("source renamed, copy not yet in place", dst)
	// A crash after the copy went into place, before the source was removed.
	live, src, dst = filepath.Join(dst, "crash-0"), dst, src
	future = filepath.Join(dst, "crash-0.0123456789abcdef-future")
	deleted = filepath.Join(dst, "crash-0.0123456789abcdef-delete")
	copyTree(t, live, deleted)
	check("copy in place, source not removed", src)
	// A "-delete" with no copy anywhere (no move leaves that) is put back.
	if err := os.Rename(live, deleted); err != nil {
		t.Fatal(err)
	}
	check("only a -delete", dst)
}

// TestAlterReplicaLogDirsThrottled: replica.alter.log.dirs.io.max.bytes.per.second
// bounds a move's copy. The check is a lower bound on the move's time (a
// slow machine only makes it longer): a move of 8 MiB at 2 MiB/s, with a
// second's burst, takes at least 2.8 s (80% of 3.5 s).
func TestAlterReplicaLogDirsThrottled(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	tb := startLogDirs(t, dirs, "")
	adm := tb.admin()
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "slow"); err != nil {
		t.Fatal(err)
	}
	cl := tb.client(kgo.DefaultProduceTopic("slow"), kgo.ProducerBatchCompression(kgo.NoCompression()))
	defer cl.Close()
	rnd := rand.New(rand.NewPCG(3, 4))
	v := make([]byte, 64<<10)
	for range 8 << 20 / len(v) {
		for i := range v {
			v[i] = byte(rnd.Uint32())
		}
		if err := cl.ProduceSync(ctx, kgo.SliceRecord(v)).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	const rate = 2 << 20
	setBrokerConfig(t, tb, "replica.alter.log.dirs.io.max.bytes.per.second", fmt.Sprint(rate))
	where, _ := partitionDirsOf(t, adm, "slow")
	to := dirs[0]
	if where[0] == to {
		to = dirs[1]
	}
	req := kadm.AlterReplicaLogDirsReq{}
	req.Add(to, kadm.TopicsSet{"slow": {0: {}}})
	started := time.Now()
	if _, err := adm.AlterBrokerReplicaLogDirs(ctx, 1, req); err != nil {
		t.Fatal(err)
	}
	var sawFuture bool
	waitUntil(t, "slow-0 moved", func() bool {
		where, futures := partitionDirsOf(t, adm, "slow")
		sawFuture = sawFuture || futures > 0
		return where[0] == to && futures == 0
	})
	took := time.Since(started)
	size := float64(8 << 20)
	if min := time.Duration(0.8 * (size - rate) / rate * float64(time.Second)); took < min {
		t.Errorf("8 MiB moved in %v at %d B/s: faster than the throttle allows (at least %v)", took, rate, min)
	}
	if !sawFuture {
		t.Error("DescribeLogDirs never listed the move as a future replica")
	}
	t.Logf("8 MiB moved in %v at a %d MiB/s throttle: %.2f MiB/s", took, rate>>20, size/(1<<20)/took.Seconds())
}

// TestReassignPlanLogDirs: `sluice cluster reassign --plan` takes
// kafka-reassign-partitions' "log_dirs" and moves each named replica into
// its dir, waiting until the copy is done.
func TestReassignPlanLogDirs(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	tb := startLogDirs(t, dirs, "")
	ctx := ctxT(t)
	adm := tb.admin()
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "pd"); err != nil {
		t.Fatal(err)
	}
	cl := tb.client(kgo.DefaultProduceTopic("pd"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	for i := range 100 {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	where, _ := partitionDirsOf(t, adm, "pd")
	other := func(d string) string {
		if d == dirs[0] {
			return dirs[1]
		}
		return dirs[0]
	}
	plan := filepath.Join(t.TempDir(), "plan.json")
	body := fmt.Sprintf(`{"version":1,"partitions":[{"topic":"pd","partition":0,"replicas":[1],"log_dirs":[%q]},{"topic":"pd","partition":1,"replicas":[1],"log_dirs":["any"]}]}`,
		other(where[0]))
	if err := os.WriteFile(plan, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, ctx, "cluster", "reassign", "--plan", plan, "--brokers", tb.addr)
	if err != nil {
		t.Fatalf("reassign: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Every replica is in the log dir the plan names") || !strings.Contains(out, "LOG DIRS") {
		t.Errorf("output:\n%s", out)
	}
	after, _ := partitionDirsOf(t, adm, "pd")
	if after[0] != other(where[0]) || after[1] != where[1] {
		t.Errorf("after the plan: %v, want pd-0 in %s and pd-1 left in %s", after, other(where[0]), where[1])
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"version":1,"partitions":[{"topic":"pd","partition":0,"replicas":[1],"log_dirs":["any","any"]}]}`), 0o644)
	if out, err := runCLI(t, ctx, "cluster", "reassign", "--plan", bad, "--brokers", tb.addr); err == nil || !strings.Contains(err.Error(), "2 log_dirs for 1 replicas") {
		t.Errorf("a plan with 2 log dirs for 1 replica: %v\n%s", err, out)
	}
}

// TestCordonedLogDir: cordoned.log.dirs naming one of a broker's log dirs
// (KIP-1066) keeps new partitions out of it while its other dirs take them,
// and DescribeLogDirs says it is cordoned; * cordons the broker, so a single
// node takes no new topic; emptied, the dir takes partitions again.
func TestCordonedLogDir(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	tb := startLogDirs(t, dirs, "")
	adm := tb.admin()
	ctx := ctxT(t)
	cordon := func(v string) {
		t.Helper()
		op := kadm.AlterConfig{Name: "cordoned.log.dirs", Value: &v}
		if v == "" {
			op = kadm.AlterConfig{Op: kadm.DeleteConfig, Name: "cordoned.log.dirs"}
		}
		res, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{op}, 1)
		if err == nil {
			err = res[0].Err
		}
		if err != nil {
			t.Fatalf("cordoned.log.dirs=%q: %v", v, err)
		}
	}
	cordon(dirs[1])
	if _, err := adm.CreateTopic(ctx, 6, 1, nil, "c1"); err != nil {
		t.Fatal(err)
	}
	where, _ := partitionDirsOf(t, adm, "c1")
	for p, d := range where {
		if d == dirs[1] {
			t.Errorf("c1-%d went to the cordoned dir %s", p, d)
		}
	}
	all, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	all.Each(func(d kadm.DescribedLogDir) {
		req := kmsgDescribeLogDirsCordoned(t, tb, d.Dir)
		if req != (d.Dir == dirs[1]) {
			t.Errorf("%s: IsCordoned %v", d.Dir, req)
		}
	})
	cordon("*")
	if res, err := adm.CreateTopic(ctx, 1, 1, nil, "c2"); err == nil && res.Err == nil {
		t.Error("a topic was created on a single node whose broker is cordoned")
	}
	cordon("")
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "c3"); err != nil {
		t.Fatal(err)
	}
	if w, _ := partitionDirsOf(t, adm, "c3"); !slices.Contains(mapValues(w), dirs[1]) {
		t.Errorf("after the cordon was lifted no c3 partition went to %s: %v", dirs[1], w)
	}
}

// kmsgDescribeLogDirsCordoned asks the broker directly whether a log dir is
// cordoned (kadm does not return IsCordoned, and kgo's merge of a request
// sent to every broker drops it: hence one broker, by id).
func kmsgDescribeLogDirsCordoned(t *testing.T, tb *testBroker, dir string) bool {
	t.Helper()
	cl := tb.client()
	defer cl.Close()
	req := kmsg.NewPtrDescribeLogDirsRequest()
	kresp, err := cl.Broker(1).Request(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	resp := kresp.(*kmsg.DescribeLogDirsResponse)
	for _, d := range resp.Dirs {
		if d.Dir == dir {
			return d.IsCordoned
		}
	}
	t.Fatalf("no log dir %s in DescribeLogDirs", dir)
	return false
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
