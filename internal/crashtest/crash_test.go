// Package crashtest kills a real `sluice serve` process with SIGKILL while
// producers write to it, restarts it on the same data directory and checks
// that nothing it acknowledged was lost, moved or duplicated.
package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/freeport"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	topic      = "crash"
	partitions = 3
	producers  = 4
	// defaultRounds is how many kill/restart rounds run; CRASH_ROUNDS
	// overrides it (`make crash` runs more).
	defaultRounds = 20
	// roundBudget is the time allowed per round: the whole test gets
	// rounds*roundBudget, at least minBudget, capped by go test's -timeout.
	roundBudget = 12 * time.Second
	minBudget   = 4*time.Minute + 30*time.Second
	// killMin and killMax bound when, after producing starts, the broker
	// is killed.
	killMin = 100 * time.Millisecond
	killMax = 700 * time.Millisecond
	// inFlightPerProducer bounds each producer goroutine's unacknowledged
	// records.
	inFlightPerProducer = 32

	startTimeout  = 30 * time.Second
	exitTimeout   = 20 * time.Second
	verifyTimeout = 60 * time.Second
	buildTimeout  = 3 * time.Minute
)

// acked is one acknowledged record: where the broker said it put it.
type acked struct {
	partition int32
	offset    int64
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and kills a real broker 20+ times; skipped under -short")
	}
	rounds := defaultRounds
	if s := os.Getenv("CRASH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CRASH_ROUNDS=%q: want a positive integer", s)
		}
		rounds = n
	}
	budget := max(time.Duration(rounds)*roundBudget, minBudget)
	if dl, ok := t.Deadline(); ok {
		budget = min(budget, time.Until(dl)-15*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()

	dir := t.TempDir()
	bin := buildSluice(ctx, t, dir)
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "broker.log")

	ackedAt := map[string]acked{} // value -> where it was acknowledged
	var seq [producers]int64      // per producer, across rounds: values never repeat
	start := time.Now()
	var produced, verifiedTotal int
	for round := 0; round < rounds; round++ {
		if ctx.Err() != nil {
			t.Fatalf("round %d: test budget of %v used up", round, budget)
		}
		b := startBroker(ctx, t, bin, dataDir, logPath, round)
		if round == 0 {
			createTopic(ctx, t, b)
		} else {
			verifiedTotal = verify(ctx, t, b, ackedAt, round)
		}
		n := produceAndKill(ctx, t, b, round, &seq, ackedAt)
		produced += n
		if testing.Verbose() {
			t.Logf("round %d: %d records acknowledged before SIGKILL (%d in all)", round, n, len(ackedAt))
		}
	}
	// A last start: verify the last round, then a clean SIGTERM shutdown.
	b := startBroker(ctx, t, bin, dataDir, logPath, rounds)
	verifiedTotal = verify(ctx, t, b, ackedAt, rounds)
	if err := b.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: broker did not exit cleanly: %v\n%s", err, tail(logPath))
	}
	if len(ackedAt) == 0 {
		t.Fatalf("no record was acknowledged in %d rounds: the test checked nothing\n%s", rounds, tail(logPath))
	}
	t.Logf("%d rounds of SIGKILL and restart in %v: %d records acknowledged, all %d found exactly once at their acknowledged offsets (log holds %d records in all); clean SIGTERM exit",
		rounds, time.Since(start).Round(time.Millisecond), produced, len(ackedAt), verifiedTotal)
}

// buildSluice builds the broker binary into dir.
func buildSluice(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "sluice")
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sluice-io/sluice/cmd/sluice")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	return bin
}

// broker is one running `sluice serve`.
type broker struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	log  string
	done chan struct{} // closed when the process has exited; err is then set
	err  error
}

// startBroker starts the broker on fresh random ports and waits until it
// accepts connections. A port taken between picking and binding is retried.
func startBroker(ctx context.Context, t *testing.T, bin, dataDir, logPath string, round int) *broker {
	t.Helper()
	for attempt := 0; ; attempt++ {
		b, err := tryStart(ctx, t, bin, dataDir, logPath, round)
		if err == nil {
			return b
		}
		if attempt < 2 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		t.Fatalf("round %d: starting the broker: %v\n%s", round, err, tail(logPath))
	}
}

// tryStart starts the broker on a new port (tryStartAt, txn_test.go).
func tryStart(ctx context.Context, t *testing.T, bin, dataDir, logPath string, round int) (*broker, error) {
	return tryStartAt(ctx, t, bin, dataDir, logPath, round, freeport.ForTest(t, "127.0.0.1"), nil)
}

// stop sends sig and waits for the process to exit.
func (b *broker) stop(sig syscall.Signal) error {
	select {
	case <-b.done:
		return fmt.Errorf("broker had already exited: %v", b.err)
	default:
	}
	if err := b.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	// ErrProcessDone: it exited between the check above and the signal
	// (a shutdown round's SIGTERM finishing just before its SIGKILL).
	select {
	case <-b.done:
	case <-time.After(exitTimeout):
		return fmt.Errorf("broker did not exit within %v of %v", exitTimeout, sig)
	}
	if sig == syscall.SIGKILL {
		return nil
	}
	return b.err
}

func (b *broker) client(opts ...kgo.Opt) *kgo.Client {
	b.t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(b.addr), kgo.DisableClientMetrics(),
		kgo.RetryTimeout(20 * time.Second), kgo.DialTimeout(5 * time.Second)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.t.Fatalf("kgo client: %v", err)
	}
	return cl
}

func createTopic(ctx context.Context, t *testing.T, b *broker) {
	t.Helper()
	cl := b.client()
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatalf("creating topic %s with %d partitions: %v\n%s", topic, partitions, err, tail(b.log))
	}
	for {
		md, err := adm.Metadata(ctx, topic)
		if err == nil {
			if td, ok := md.Topics[topic]; ok && td.Err == nil && len(td.Partitions) == partitions {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("topic %s not in metadata with %d partitions after creating it (last error %v)", topic, partitions, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// produceAndKill produces from several goroutines until it SIGKILLs the
// broker at a random moment, and records what was acknowledged. It returns
// how many records were acknowledged this round.
func produceAndKill(ctx context.Context, t *testing.T, b *broker, round int, seq *[producers]int64, ackedAt map[string]acked) int {
	t.Helper()
	return produceUntilDead(ctx, t, b, round, seq, ackedAt, nil, killAtRandom)
}

// killPlan ends the broker while produceUntilDead's load runs: it returns
// once b has exited (SIGKILLed, or shut down by a signal it sent first),
// saying what it waited for.
type killPlan func(ctx context.Context, t *testing.T, b *broker, round int) string

// killAtRandom SIGKILLs b killMin..killMax after it is called.
func killAtRandom(ctx context.Context, t *testing.T, b *broker, round int) string {
	t.Helper()
	killAfter := killMin + rand.N(killMax-killMin)
	select {
	case <-time.After(killAfter):
	case <-b.done:
		t.Fatalf("round %d: broker exited by itself while producing (%v)\n%s", round, b.err, tail(b.log))
	}
	if err := b.stop(syscall.SIGKILL); err != nil {
		t.Fatalf("round %d: SIGKILL: %v", round, err)
	}
	return fmt.Sprintf("SIGKILL after %v", killAfter)
}

// produceUntilDead is produceAndKill with pad sent along with every record
// (a header, so that the value stays the record's identity; batches then go
// uncompressed, so that pad fills segments) and kill deciding when and how
// the broker dies.
func produceUntilDead(ctx context.Context, t *testing.T, b *broker, round int, seq *[producers]int64, ackedAt map[string]acked, pad []byte, kill killPlan) int {
	t.Helper()
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic)}
	var headers []kgo.RecordHeader
	if len(pad) > 0 {
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
		headers = []kgo.RecordHeader{{Key: "pad", Value: pad}}
	}
	var (
		mu   sync.Mutex
		acks = map[string]acked{}
	)
	next := func(g int) *kgo.Record {
		n := seq[g]
		seq[g]++
		return &kgo.Record{Partition: int32(n % partitions), Value: []byte(fmt.Sprintf("g%d-%d", g, n)), Headers: headers}
	}
	done := func(r *kgo.Record, err error) {
		if err != nil {
			return
		}
		mu.Lock()
		acks[string(r.Value)] = acked{r.Partition, r.Offset}
		mu.Unlock()
	}
	runLoad(ctx, t, b, round, opts, next, done, kill)
	for v, a := range acks {
		if prev, dup := ackedAt[v]; dup {
			t.Fatalf("round %d: value %q acknowledged twice (at %d/%d and %d/%d)", round, v, prev.partition, prev.offset, a.partition, a.offset)
		}
		ackedAt[v] = a
	}
	return len(acks)
}

// runLoad produces with acks=all (idempotently) from producers goroutines,
// each with up to inFlightPerProducer records unacknowledged, until kill has
// ended the broker; then it fails what is left and returns once every
// record's done has been called. next(g) makes goroutine g's next record
// (called by g alone); done is called once for each record, concurrently,
// with its outcome. opts add to (or override) the client's settings.
func runLoad(ctx context.Context, t *testing.T, b *broker, round int, opts []kgo.Opt, next func(g int) *kgo.Record, done func(*kgo.Record, error), kill killPlan) {
	t.Helper()
	cl := b.client(append([]kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent writes are on by default
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProduceRequestTimeout(10 * time.Second),
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}, opts...)...)
	var (
		wg      sync.WaitGroup // producer goroutines
		pending sync.WaitGroup // promises not yet called
	)
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	for g := 0; g < producers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem := make(chan struct{}, inFlightPerProducer)
			for {
				select {
				case sem <- struct{}{}:
				case <-pctx.Done():
					return
				}
				pending.Add(1)
				cl.Produce(pctx, next(g), func(r *kgo.Record, err error) {
					defer pending.Done()
					<-sem
					done(r, err)
				})
			}
		}()
	}
	why := kill(pctx, t, b, round)
	appendLog(b.log, fmt.Sprintf("==== round %d: %s ====\n", round, why))
	stopProducing()
	wg.Wait()
	closed := make(chan struct{})
	go func() {
		cl.Close() // fails what is still buffered or in flight
		pending.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatalf("round %d: producer did not finish within 30s of the broker's death", round)
	}
}

// verify reads every partition from its start to its end and checks every
// acknowledged record is there exactly once at its acknowledged offset,
// offsets increase, and no value appears twice. It returns how many records
// the log holds.
func verify(ctx context.Context, t *testing.T, b *broker, ackedAt map[string]acked, round int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after restart %d: "+format+"\n%s", append([]any{round}, append(args, tail(b.log))...)...)
	}

	adm := b.client()
	defer adm.Close()
	starts, err := kadm.NewClient(adm).ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		fail("listing start offsets: %v", err)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		fail("listing end offsets: %v", err)
	}
	from := map[int32]kgo.Offset{}
	end := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		s, ok1 := starts.Lookup(topic, p)
		e, ok2 := ends.Lookup(topic, p)
		if !ok1 || !ok2 {
			fail("no offsets listed for partition %d", p)
		}
		if s.Offset != 0 {
			fail("partition %d starts at %d, not 0 (no retention or deletion ran)", p, s.Offset)
		}
		end[p] = e.Offset
		from[p] = kgo.NewOffset().AtStart()
	}
	for v, a := range ackedAt {
		if a.offset >= end[a.partition] {
			fail("record %q acknowledged at partition %d offset %d is lost: the partition ends at %d",
				v, a.partition, a.offset, end[a.partition])
		}
	}

	cl := b.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchMaxWait(250*time.Millisecond))
	defer cl.Close()
	type at struct {
		partition int32
		offset    int64
	}
	seen := map[string]at{}
	last := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		last[p] = -1
	}
	total := 0
	done := func() bool {
		for p := int32(0); p < partitions; p++ {
			if last[p] < end[p]-1 {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			fail("reading back did not reach the end offsets %v within %v (got to %v)", end, verifyTimeout, last)
		}
		for _, fe := range fs.Errors() {
			fail("fetch %s [%d]: %v", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			p := r.Partition
			if r.Offset <= last[p] {
				fail("partition %d: offset %d after %d: offsets must strictly increase", p, r.Offset, last[p])
			}
			last[p] = r.Offset
			if r.Offset >= end[p] {
				return // appended after the end offsets were listed: nothing does that
			}
			total++
			v := string(r.Value)
			if prev, dup := seen[v]; dup {
				fail("value %q is in the log twice: partition %d offset %d and partition %d offset %d",
					v, prev.partition, prev.offset, p, r.Offset)
			}
			seen[v] = at{p, r.Offset}
			if a, ok := ackedAt[v]; ok && (a.partition != p || a.offset != r.Offset) {
				fail("record %q was acknowledged at partition %d offset %d but is at partition %d offset %d",
					v, a.partition, a.offset, p, r.Offset)
			}
		})
	}
	for v, a := range ackedAt {
		if _, ok := seen[v]; !ok {
			fail("acknowledged record %q (partition %d offset %d) is missing from the log", v, a.partition, a.offset)
		}
	}
	return total
}

// appendLog adds a marker line to the broker log.
func appendLog(path, line string) {
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		f.WriteString(line)
		f.Close()
	}
}

// logSince returns the log from byte offset mark on.
func logSince(path string, mark int64) string {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < mark {
		return ""
	}
	return string(data[mark:])
}

// tail returns the broker log's last lines, for failure messages.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no broker log: %v)", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	return "---- broker log (last lines) ----\n" + strings.Join(lines, "\n")
}
