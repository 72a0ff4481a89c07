// Package powerloss runs the real broker, protocol server and franz-go
// producers on the crash-simulating in-memory filesystem (vfs.MemFS) and
// cuts the power at random moments: everything not fsynced (file bytes,
// and directory entries whose directory was not fsynced) is dropped, the
// broker is started again on what is left, and every record acknowledged
// with acks=all before the cut must be there, at its offset. Unlike the
// SIGKILL crash tests (internal/crashtest), this one loses the page cache,
// so it fails if an fsync the broker relies on is missing. cluster_test.go
// cuts the power of a whole three-node cluster at once.
package powerloss

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/server/api"
	"github.com/sluice-io/sluice/internal/vfs"
)

// Sizes of a run.
const (
	producers  = 3
	partitions = 4
	// maxCutDelay bounds how long producers run before a cut; a third of
	// the rounds cut within the first 30 ms after the topic or the broker
	// came up.
	maxCutDelay = 400 * time.Millisecond
	// roundTimeout bounds one round's restart and check.
	roundTimeout = 2 * time.Minute
)

// rounds is POWERLOSS_ROUNDS, or def.
func rounds(t *testing.T, def int) int {
	if v := os.Getenv("POWERLOSS_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("POWERLOSS_ROUNDS=%q", v)
		}
		return n
	}
	return def
}

func logger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// node is a broker and its protocol server on one filesystem.
type node struct {
	b    *broker.Broker
	srv  *server.Server
	addr string
	done chan struct{}
}

func tryStartNode(fs vfs.FS, dir string, logDirs ...string) (*node, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: dir, LogDirs: logDirs, Host: host, Port: int32(port), FS: fs, Logger: logger(),
		Static: map[string]string{"group.initial.rebalance.delay.ms": "0"}, RetentionCheckInterval: time.Hour})
	if err != nil {
		ln.Close()
		return nil, err
	}
	n := &node{b: b, addr: ln.Addr().String(), done: make(chan struct{})}
	n.srv = server.New(api.New(b, logger()), logger())
	go func() {
		defer close(n.done)
		n.srv.Serve(ln)
	}()
	return n, nil
}

// stop ends a node whose filesystem has been cut: what it writes now goes
// nowhere that matters, so its close error is ignored.
func (n *node) stop() {
	n.srv.Close()
	<-n.done
	n.b.Close()
}

// acked is a record acknowledged with acks=all.
type acked struct {
	partition int32
	offset    int64
}

// ledger holds every acknowledged record's value by position, as of the
// last cut: acknowledgements that come after a cut are from the broker
// that lost its power (it runs on until it is stopped, on a filesystem no
// longer the disk's), so they are dropped, not recorded.
type ledger struct {
	mu   sync.Mutex
	got  map[acked]string
	open bool // acknowledgements are recorded (between resume and cut)
	// failed counts the produce errors producers saw while open, by
	// error (a figure for the report: none is expected before a cut).
	failed map[string]int
}

func (l *ledger) fail(err error) {
	l.mu.Lock()
	if l.open {
		if l.failed == nil {
			l.failed = map[string]int{}
		}
		l.failed[err.Error()]++
	}
	l.mu.Unlock()
}

// failures returns the produce errors counted since the last call.
func (l *ledger) failures() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failed
	l.failed = nil
	return f
}

func (l *ledger) add(r *kgo.Record) {
	l.mu.Lock()
	if l.open {
		l.got[acked{r.Partition, r.Offset}] = string(r.Value)
	}
	l.mu.Unlock()
}

func (l *ledger) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got)
}

// resume records acknowledgements again (a new broker is up).
func (l *ledger) resume() {
	l.mu.Lock()
	l.open = true
	l.mu.Unlock()
}

// cut stops recording and returns what was acknowledged: call it just
// before the power cut, so that everything it returns was acknowledged,
// and so fsynced, before the cut.
func (l *ledger) cut() map[acked]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open = false
	out := make(map[acked]string, len(l.got))
	for k, v := range l.got {
		out[k] = v
	}
	return out
}

// produce runs idempotent acks=all producers against seeds until ctx ends,
// each producing at most limit records (0: no limit), with opts after the
// defaults.
func produce(ctx context.Context, seeds []string, topic string, round, limit int, l *ledger, opts ...kgo.Opt) *sync.WaitGroup {
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic),
				kgo.RequiredAcks(kgo.AllISRAcks()), kgo.MaxBufferedRecords(2000),
				kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(0)}, opts...)...)
			if err != nil {
				return
			}
			defer cl.Close()
			for seq := 0; ctx.Err() == nil && (limit == 0 || seq < limit); seq++ {
				r := kgo.StringRecord(fmt.Sprintf("r%d-p%d-%d", round, p, seq))
				cl.Produce(ctx, r, func(r *kgo.Record, err error) {
					if err == nil {
						l.add(r)
					} else {
						l.fail(err)
					}
				})
			}
			cl.Flush(ctx) // until the records are answered or ctx ends
		}()
	}
	return &wg
}

// readAll reads every partition of topic from its start to its high
// watermark, by offset, through the brokers at seeds.
func readAll(t *testing.T, seeds []string, topic string) (map[acked]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()
	adm, cl := admin(t, seeds...)
	defer cl.Close()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	offsets := map[string]map[int32]kgo.Offset{topic: {}}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			offsets[topic][o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	out := map[acked]string{}
	if len(want) == 0 {
		return out, nil
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumePartitions(offsets), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	for len(want) > 0 {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading %s back: %v; partitions left %v", topic, ctx.Err(), want)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return nil, fmt.Errorf("fetch partition %d: %w", errs[0].Partition, errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[acked{r.Partition, r.Offset}] = string(r.Value)
			if r.Offset+1 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	return out, nil
}

func admin(t *testing.T, seeds ...string) (*kadm.Client, *kgo.Client) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	return kadm.NewClient(cl), cl
}

// run cuts the power rounds times under producers and checks the log after
// each restart. It returns the first loss found (nil: none), so that a test
// can also assert that a broken broker is caught.
// Each round's cut comes after minAcked more records were acknowledged.
func run(t *testing.T, nrounds, minAcked int, wrap func(vfs.FS) vfs.FS) error {
	return runWith(t, nrounds, minAcked, wrap, nil)
}

// runWith is run with more log dirs than the data dir (logDirs), and
// during each round moves partitions between them (AlterReplicaLogDir)
// when logDirs are given.
func runWith(t *testing.T, nrounds, minAcked int, wrap func(vfs.FS) vfs.FS, logDirs []string) error {
	dir := filepath.Join(t.TempDir(), "data")
	all := append([]string{dir}, logDirs...)
	fs := vfs.NewMem()
	l := &ledger{got: map[acked]string{}}
	const topic = "powerloss"
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := range nrounds {
		n, err := tryStartNode(wrap(fs), dir, logDirs...)
		if err != nil {
			return fmt.Errorf("round %d: start: %w", round, err)
		}
		if round == 0 {
			adm, cl := admin(t, n.addr)
			ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
			res, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
			cancel()
			cl.Close()
			if err == nil && !errors.Is(res.Err, kerr.TopicAlreadyExists) {
				err = res.Err
			}
			if err != nil {
				t.Fatalf("create topic: %v", err)
			}
		}
		delay := time.Duration(rng.Int64N(int64(maxCutDelay)))
		if round%3 == 0 {
			delay = time.Duration(rng.Int64N(int64(30 * time.Millisecond)))
		}
		ctx, cancel := context.WithCancel(context.Background())
		l.resume()
		wg := produce(ctx, []string{n.addr}, topic, round, 0, l)
		if len(logDirs) > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				moveAround(ctx, n.b, topic, all, rng.Uint64())
			}()
		}
		for base := l.len(); l.len() < base+minAcked; {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(delay)
		// What was acknowledged before the cut must survive it.
		want := l.cut()
		fs = fs.Crash()
		cancel()
		n.stop()
		wg.Wait()
		t.Logf("round %d: power cut %v after start, %d records acknowledged so far", round, delay, len(want))

		if n, err = tryStartNode(fs, dir, logDirs...); err != nil {
			return fmt.Errorf("round %d (cut %v after start): restart: %w", round, delay, err)
		}
		got, err := readAll(t, []string{n.addr}, topic)
		n.stop()
		if err != nil {
			return fmt.Errorf("round %d (cut %v after start, %d records acknowledged): %w", round, delay, len(want), err)
		}
		// The check's own restart wrote to fs: start the next round from
		// what it left (a clean shutdown), as a real machine would.
		var lost []string
		for pos, v := range want {
			if got[pos] != v {
				lost = append(lost, fmt.Sprintf("%d@%d=%q (found %q)", pos.partition, pos.offset, v, got[pos]))
			}
		}
		if len(lost) > 0 {
			slicesSort(lost)
			return fmt.Errorf("round %d (cut %v after start): %d of %d acknowledged records lost or changed, e.g. %s",
				round, delay, len(lost), len(want), strings.Join(lost[:min(5, len(lost))], ", "))
		}
	}
	return nil
}

// moveAround moves the topic's partitions between the log dirs until ctx
// ends, one at a time, each to a dir chosen at random.
func moveAround(ctx context.Context, b *broker.Broker, topic string, dirs []string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	for ctx.Err() == nil {
		tp := broker.TopicPartition{Topic: topic, Partition: rng.Int32N(partitions)}
		if err := b.AlterReplicaLogDir(tp, dirs[rng.IntN(len(dirs))]); err != nil {
			return // the partition is not open (the broker is stopping)
		}
		for ctx.Err() == nil && len(b.Moves()) > 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// TestPowerLossLogDirMoves cuts the power while partitions move between
// log dirs (AlterReplicaLogDirs) under the producers: every move's copy,
// renames and removal are synced in an order that leaves one complete copy
// whenever the power goes, and every acknowledged record is found.
func TestPowerLossLogDirMoves(t *testing.T) {
	logDirs := []string{filepath.Join(t.TempDir(), "data2"), filepath.Join(t.TempDir(), "data3")}
	if err := runWith(t, rounds(t, 4), 0, func(fs vfs.FS) vfs.FS { return fs }, logDirs); err != nil {
		t.Fatal(err)
	}
}

// TestPowerLossCatchesUnsyncedMove: with the files a move copies left
// unsynced (a test fault), a cut after a move loses what was moved.
func TestPowerLossCatchesUnsyncedMove(t *testing.T) {
	logDirs := []string{filepath.Join(t.TempDir(), "data2"), filepath.Join(t.TempDir(), "data3")}
	err := runWith(t, 3, 5000, func(fs vfs.FS) vfs.FS { return skipMoveSync{fs} }, logDirs)
	if err == nil {
		t.Fatal("no acknowledged record lost with the moved files unsynced: the test cannot see a move's missing fsync")
	}
	t.Logf("caught, as it should: %v", err)
}

// TestPowerLoss cuts the power under idempotent acks=all producers,
// including within the first milliseconds after the broker and the topic
// come up, and finds every acknowledged record after each restart.
// `make test` runs a few rounds; `make crash` many (POWERLOSS_ROUNDS).
func TestPowerLoss(t *testing.T) {
	if err := run(t, rounds(t, 4), 0, func(fs vfs.FS) vfs.FS { return fs }); err != nil {
		t.Fatal(err)
	}
}

// TestPowerLossCatchesSkippedDirSync: with directory fsyncs skipped (a
// test fault: SyncDir does nothing), the first cut loses the data dir's new
// entries (the metadata, the partition directories) and the check fails.
func TestPowerLossCatchesSkippedDirSync(t *testing.T) {
	err := run(t, 1, 100, func(fs vfs.FS) vfs.FS { return skipDirSync{fs} })
	if err == nil {
		t.Fatal("a power cut with no directory fsyncs lost nothing: the check cannot fail")
	}
	t.Logf("caught, as it must be: %v", err)
}

// TestPowerLossCatchesSkippedFsync: with the segment fsync skipped (a test
// fault: Sync of .log files does nothing), the same check finds lost
// records, so it can fail.
func TestPowerLossCatchesSkippedFsync(t *testing.T) {
	err := run(t, 1, 100, func(fs vfs.FS) vfs.FS { return skipLogSync{fs} })
	if err == nil {
		t.Fatal("acknowledged records survived a power cut although their fsync was skipped: the check cannot fail")
	}
	t.Logf("caught, as it must be: %v", err)
}
