package crashtest

// Transactions and idempotence across SIGKILLs of a real `sluice serve`:
//
//   - TestTxnCrashETL: a kgo GroupTransactSession copies numbered records
//     from one topic to another (consume-transform-produce, offsets
//     committed in the transactions) while the broker is SIGKILLed and
//     restarted on the same address; afterwards read_committed sees every
//     input record exactly once, in input order per partition.
//   - TestTxnCrashAbortVisibility: known aborted, committed and open
//     transactions, then SIGKILL: after the restart an open transaction
//     still holds the last stable offset, a new producer with the
//     transactional id aborts it, another one is aborted when it times out,
//     and read_committed never sees an aborted record, before the crash or
//     after; the group offsets committed in the transactions are pending
//     (UNSTABLE_OFFSET_COMMIT) across the restart and applied only by the
//     commits.
//   - TestIdempotentCrashRetry: idempotent producers whose in-flight batches
//     are retried into the restarted broker (same address, same producer
//     id): the broker must recognise the batches it wrote before the kill.
//     TestCrash (crash_test.go) checks that acknowledged records survive a
//     SIGKILL exactly once, but its producers are closed at each kill and
//     the broker comes back on other ports, so no batch is ever retried
//     across a restart; this test covers that.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/freeport"
)

const (
	// defaultTxnRounds is how many SIGKILLs TestTxnCrashETL and
	// TestIdempotentCrashRetry do; CRASH_TXN_ROUNDS overrides it.
	defaultTxnRounds = 4
	// defaultTxnRecords is how many records TestTxnCrashETL copies;
	// CRASH_TXN_RECORDS overrides it.
	defaultTxnRecords = 20000
	txnPartitions     = 3
	// etlBatch bounds the records in one transaction of the ETL loop.
	etlBatch = 200
	// etlWork is the loop's "transform" time per transaction: it keeps
	// the copy going long enough for every kill to land mid-stream.
	etlWork = 15 * time.Millisecond
	// txnCleanupIntervalConfig is Kafka's broker config for how often the
	// transaction coordinator looks for timed-out transactions.
	txnCleanupIntervalConfig = "transaction.abort.timed.out.transaction.cleanup.interval.ms"
	// progressTimeout bounds the wait for the ETL loop to commit a
	// transaction after a (re)start.
	progressTimeout = 90 * time.Second
)

func txnEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return n
}

// txnBrokerArgs are the `sluice serve -c` settings of these tests: no initial
// rebalance delay (every restart forgets the group's members) and, when the
// broker has the config, a fast timed-out-transaction check.
func txnBrokerArgs() []string {
	args := []string{"-c", "group.initial.rebalance.delay.ms=0"}
	if _, ok := config.BrokerDef(txnCleanupIntervalConfig); ok {
		args = append(args, "-c", txnCleanupIntervalConfig+"=500")
	}
	return args
}

// startBrokerAt is startBroker on a given Kafka address, so that running
// clients reconnect to the restarted broker; args are extra `serve` flags.
// A port still held a moment after the kill is retried.
func startBrokerAt(ctx context.Context, t *testing.T, bin, dataDir, logPath string, round int, addr string, args ...string) *broker {
	t.Helper()
	for attempt := 0; ; attempt++ {
		b, err := tryStartAt(ctx, t, bin, dataDir, logPath, round, addr, args)
		if err == nil {
			return b
		}
		if attempt < 20 && strings.Contains(err.Error(), "address already in use") {
			time.Sleep(250 * time.Millisecond)
			continue
		}
		t.Fatalf("round %d: starting the broker on %s: %v\n%s", round, addr, err, tail(logPath))
	}
}

func tryStartAt(ctx context.Context, t *testing.T, bin, dataDir, logPath string, round int, addr string, args []string) (*broker, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	fmt.Fprintf(lf, "==== round %d: start on %s ====\n", round, addr)
	mark, _ := lf.Seek(0, 1)
	cmd := exec.Command(bin, append([]string{"serve", "--listen", addr, "--http-listen", freeport.ForTest(t, "127.0.0.1"), "--data-dir", dataDir, "--schema-registry-listen", ""}, args...)...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &broker{t: t, cmd: cmd, addr: addr, log: logPath, done: make(chan struct{})}
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			cmd.Process.Kill()
			<-b.done
		}
	})
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-b.done:
			return nil, fmt.Errorf("broker exited while starting (%v): %s", b.err, logSince(logPath, mark))
		case <-ctx.Done():
			return nil, fmt.Errorf("test budget used up while starting the broker")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			// A goroutine dump in the log shows where the start is stuck.
			cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-b.done:
			case <-time.After(5 * time.Second):
			}
			return nil, fmt.Errorf("broker did not accept connections on %s within %v; its goroutines at SIGQUIT:\n%s",
				addr, startTimeout, txnGoroutines(logSince(logPath, mark)))
		}
		if !strings.Contains(logSince(logPath, mark), "sluice serving") {
			continue
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return b, nil
		}
	}
}

// txnGoroutines returns the goroutines of a Go traceback in log that are in
// sluice's own code (the rest is runtime and library noise), at most 60
// lines of them.
func txnGoroutines(log string) string {
	i := strings.Index(log, "goroutine ")
	if i < 0 {
		return "(no goroutine dump)"
	}
	var keep []string
	for _, g := range strings.Split(log[i:], "\n\n") {
		if strings.Contains(g, "sluice-io/sluice/internal") {
			keep = append(keep, g)
		}
	}
	lines := strings.Split(strings.Join(keep, "\n\n"), "\n")
	if len(lines) > 60 {
		lines = append(lines[:60], fmt.Sprintf("... %d more lines", len(lines)-60))
	}
	return strings.Join(lines, "\n")
}

// killMarked SIGKILLs b and marks the log.
func (b *broker) killMarked(t *testing.T, round int, why string) {
	t.Helper()
	if err := b.stop(syscall.SIGKILL); err != nil {
		t.Fatalf("round %d: SIGKILL: %v\n%s", round, err, tail(b.log))
	}
	appendLog(b.log, fmt.Sprintf("==== round %d: SIGKILL %s ====\n", round, why))
}

func txnCreateTopics(ctx context.Context, t *testing.T, b *broker, parts int32, names ...string) {
	t.Helper()
	cl := b.client()
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resps, err := adm.CreateTopics(ctx, parts, 1, nil, names...)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatalf("creating topics %v: %v\n%s", names, err, tail(b.log))
	}
	for {
		md, err := adm.Metadata(ctx, names...)
		ok := err == nil
		for _, n := range names {
			td, found := md.Topics[n]
			ok = ok && found && td.Err == nil && len(td.Partitions) == int(parts)
		}
		if ok {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("topics %v not in metadata with %d partitions (last error %v)", names, parts, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// txnSeal appends a unique marker to every partition of topic with an
// idempotent non-transactional producer; a reader that met it on every
// partition has read everything before it.
func txnSeal(ctx context.Context, t *testing.T, b *broker, topic string, parts int32) string {
	t.Helper()
	marker := fmt.Sprintf("seal-%d", time.Now().UnixNano())
	cl := b.client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer cl.Close()
	var rs []*kgo.Record
	for p := int32(0); p < parts; p++ {
		rs = append(rs, &kgo.Record{Partition: p, Value: []byte(marker)})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("sealing %s: %v\n%s", topic, err, tail(b.log))
	}
	return marker
}

// txnRec is one record read back.
type txnRec struct {
	value  string
	offset int64
}

// txnReadSealed reads topic from the start at iso until it meets marker on
// every partition and returns the records before it (seal markers left
// out), per partition. On a timeout it reports the partitions' high
// watermarks and last stable offsets.
func txnReadSealed(ctx context.Context, t *testing.T, b *broker, topic string, parts int32, marker string, iso kgo.IsolationLevel) map[int32][]txnRec {
	t.Helper()
	from := map[int32]kgo.Offset{}
	for p := int32(0); p < parts; p++ {
		from[p] = kgo.NewOffset().AtStart()
	}
	cl := b.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(250*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	out := map[int32][]txnRec{}
	sealed := map[int32]bool{}
	for len(sealed) < int(parts) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			hwm, lso := txnOffsetsOf(t, b, topic)
			t.Fatalf("reading %s at %s did not reach the marker on every partition within %v (reached on %v; high watermarks %v, last stable offsets %v)\n%s",
				topic, txnIsoName(iso), verifyTimeout, sealed, hwm, lso, tail(b.log))
		}
		fs.EachError(func(tp string, p int32, err error) {
			t.Fatalf("fetch %s/%d at %s: %v\n%s", tp, p, txnIsoName(iso), err, tail(b.log))
		})
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			switch {
			case sealed[r.Partition]:
			case v == marker:
				sealed[r.Partition] = true
			case strings.HasPrefix(v, "seal-"):
			default:
				out[r.Partition] = append(out[r.Partition], txnRec{v, r.Offset})
			}
		})
	}
	return out
}

// txnOffsetsOf lists topic's high watermarks and last stable offsets.
func txnOffsetsOf(t *testing.T, b *broker, topic string) (hwm, lso map[int32]int64) {
	t.Helper()
	cl := b.client()
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hwm, lso = map[int32]int64{}, map[int32]int64{}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("ListOffsets read_uncommitted %s: %v\n%s", topic, err, tail(b.log))
	}
	stable, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = stable.Error()
	}
	if err != nil {
		t.Fatalf("ListOffsets read_committed %s: %v\n%s", topic, err, tail(b.log))
	}
	ends.Each(func(o kadm.ListedOffset) { hwm[o.Partition] = o.Offset })
	stable.Each(func(o kadm.ListedOffset) { lso[o.Partition] = o.Offset })
	return hwm, lso
}

func txnIsoName(iso kgo.IsolationLevel) string {
	if iso == kgo.ReadCommitted() {
		return "read_committed"
	}
	return "read_uncommitted"
}

func txnValues(rs []txnRec) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.value
	}
	return out
}

// txnETLStats is what the ETL loop did.
type txnETLStats struct {
	committed    atomic.Int64 // transactions committed
	aborted      atomic.Int64 // transactions ended with an abort (rebalance, failed produce)
	endErrors    atomic.Int64 // End calls that returned an error (session then replaced)
	sessions     atomic.Int64
	recsCommited atomic.Int64 // records in committed transactions
	// abandoned are the records acknowledged in transactions the loop
	// walked away from; only the ETL goroutine touches it until it ends.
	abandoned []string
}

// txnETL runs GroupTransactSessions copying in to out (same partition, same
// value) until the group's committed offsets reach end on every partition
// or ctx ends. A session whose End fails is closed and replaced, as kgo
// documents. progress is signalled after every commit.
//
// A request on abandon makes it walk away from its next transaction once
// the records are written: it closes the session without ending the
// transaction (a crashed application) and closes the request's channel.
func txnETL(ctx context.Context, t *testing.T, addr, in, out string, end map[int32]int64, st *txnETLStats, progress chan<- struct{}, abandon <-chan chan struct{}, logf func(string, ...any)) error {
	newSession := func() (*kgo.GroupTransactSession, error) {
		st.sessions.Add(1)
		return kgo.NewGroupTransactSession(
			kgo.SeedBrokers(addr),
			kgo.DisableClientMetrics(),
			kgo.DialTimeout(2*time.Second),
			kgo.RetryTimeout(60*time.Second),
			kgo.MetadataMinAge(250*time.Millisecond), // find the restarted broker soon
			kgo.TransactionalID("crash-etl"),
			kgo.TransactionTimeout(20*time.Second),
			kgo.ConsumerGroup("crash-etl"),
			kgo.ConsumeTopics(in),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.RequireStableFetchOffsets(),
			kgo.SessionTimeout(10*time.Second),
			kgo.FetchMaxWait(250*time.Millisecond),
			kgo.DefaultProduceTopic(out),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.ProduceRequestTimeout(10*time.Second),
		)
	}
	closeSession := func(s *kgo.GroupTransactSession) error {
		done := make(chan struct{})
		go func() {
			s.Close()
			close(done)
		}()
		select {
		case <-done:
			return nil
		case <-time.After(90 * time.Second):
			return errors.New("closing a GroupTransactSession took over 90s")
		}
	}
	// finished asks the broker for the group's committed offsets.
	finished := func(s *kgo.GroupTransactSession) bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		offs, err := kadm.NewClient(s.Client()).FetchOffsets(cctx, "crash-etl")
		if err != nil || offs.Error() != nil {
			return false
		}
		for p, e := range end {
			o, ok := offs.Lookup(in, p)
			if !ok || o.At < e {
				return false
			}
		}
		return true
	}

	s, err := newSession()
	if err != nil {
		return err
	}
	defer func() { closeSession(s) }()
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := s.PollRecords(pctx, etlBatch)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				logf("fetch %s/%d: %v", tp, p, err)
			}
		})
		if fs.NumRecords() == 0 {
			if finished(s) {
				return nil
			}
			continue
		}
		time.Sleep(etlWork)
		if err := s.Begin(); err != nil {
			return fmt.Errorf("Begin: %w", err)
		}
		e := kgo.AbortingFirstErrPromise(s.Client())
		n := 0
		var ackMu sync.Mutex
		var written []string // acknowledged in this transaction
		fs.EachRecord(func(r *kgo.Record) {
			n++
			promise := e.Promise()
			s.Produce(ctx, &kgo.Record{Partition: r.Partition, Value: r.Value}, func(r *kgo.Record, err error) {
				if err == nil {
					ackMu.Lock()
					written = append(written, string(r.Value))
					ackMu.Unlock()
				}
				promise(r, err)
			})
		})
		produceErr := e.Err() // waits for every record
		select {
		case ack := <-abandon:
			// The application dies here: its transaction stays open
			// with written in the log, and the next session must
			// abort it (fencing this one) and copy them again.
			st.abandoned = append(st.abandoned, written...)
			logf("abandoning a session with a transaction of %d records open (%d acknowledged)", n, len(written))
			if err := closeSession(s); err != nil {
				return err
			}
			close(ack)
			if s, err = newSession(); err != nil {
				return err
			}
			continue
		default:
		}
		committed, err := s.End(ctx, produceErr == nil)
		switch {
		case err != nil:
			st.endErrors.Add(1)
			logf("End (produce error %v): %v; replacing the session", produceErr, err)
			if cerr := closeSession(s); cerr != nil {
				return cerr
			}
			if s, err = newSession(); err != nil {
				return err
			}
		case committed:
			st.committed.Add(1)
			st.recsCommited.Add(int64(n))
			select {
			case progress <- struct{}{}:
			default:
			}
		default:
			st.aborted.Add(1)
		}
	}
}

// TestTxnCrashETL copies records in exactly-once transactions while the
// broker is SIGKILLed under it, then checks the copy.
func TestTxnCrashETL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and kills a real broker; skipped under -short")
	}
	rounds := txnEnvInt(t, "CRASH_TXN_ROUNDS", defaultTxnRounds)
	n := txnEnvInt(t, "CRASH_TXN_RECORDS", defaultTxnRecords)
	if n < 1 {
		t.Fatalf("CRASH_TXN_RECORDS must be at least 1")
	}
	budget := 3*time.Minute + time.Duration(rounds)*30*time.Second
	if dl, ok := t.Deadline(); ok {
		budget = min(budget, time.Until(dl)-15*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()

	dir := t.TempDir()
	bin := buildSluice(ctx, t, dir)
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "broker.log")
	addr := freeport.ForTest(t, "127.0.0.1")
	args := txnBrokerArgs()
	const in, out = "etl-in", "etl-out"

	b := startBrokerAt(ctx, t, bin, dataDir, logPath, 0, addr, args...)
	txnCreateTopics(ctx, t, b, txnPartitions, in, out)

	// The input: in-000000.. spread round-robin over the partitions.
	want := map[int32][]string{}
	{
		cl := b.client(kgo.DefaultProduceTopic(in), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		var rs []*kgo.Record
		for i := 0; i < n; i++ {
			p := int32(i % txnPartitions)
			v := fmt.Sprintf("in-%06d", i)
			want[p] = append(want[p], v)
			rs = append(rs, &kgo.Record{Partition: p, Value: []byte(v)})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("producing the input: %v\n%s", err, tail(logPath))
		}
		cl.Close()
	}
	end := map[int32]int64{}
	for p, vs := range want {
		end[p] = int64(len(vs))
	}

	var st txnETLStats
	progress := make(chan struct{}, 1)
	abandon := make(chan chan struct{}, 1)
	etlDone := make(chan error, 1)
	var logMu sync.Mutex
	var etlLog []string
	logf := func(format string, a ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		etlLog = append(etlLog, fmt.Sprintf("%s "+format, append([]any{time.Since(start).Round(time.Millisecond)}, a...)...))
	}
	etlCtx, stopETL := context.WithCancel(ctx)
	defer stopETL()
	go func() { etlDone <- txnETL(etlCtx, t, addr, in, out, end, &st, progress, abandon, logf) }()
	etlLogTail := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		l := etlLog
		if len(l) > 30 {
			l = l[len(l)-30:]
		}
		return "---- ETL loop log (last lines) ----\n" + strings.Join(l, "\n")
	}

	var finishedEarly bool
	kills := 0
	for round := 0; round < rounds && !finishedEarly; round++ {
		// Wait for a commit on this broker, then kill at a random moment.
		select {
		case <-progress:
		case err := <-etlDone:
			if err != nil {
				t.Fatalf("round %d: the ETL loop failed: %v\n%s\n%s", round, err, etlLogTail(), tail(logPath))
			}
			finishedEarly = true
			t.Logf("the input was all copied before kill %d; %d kills done", round, kills)
			etlDone <- nil
			continue
		case <-time.After(progressTimeout):
			t.Fatalf("round %d: no transaction committed within %v of the broker's start (%d committed so far)\n%s\n%s",
				round, progressTimeout, st.committed.Load(), etlLogTail(), tail(logPath))
		}
		delay := time.Duration(rand.N(int64(400 * time.Millisecond)))
		time.Sleep(delay)
		why := fmt.Sprintf("%v after a commit, %d transactions committed so far (%d records), %d aborted, %d End errors",
			delay, st.committed.Load(), st.recsCommited.Load(), st.aborted.Load(), st.endErrors.Load())
		if round%2 == 1 {
			// The application dies with a transaction open, and the
			// broker right after it: the restarted broker must still
			// know the transaction, to abort it for the next session.
			ack := make(chan struct{})
			abandon <- ack
			select {
			case <-ack:
				why += ", with an abandoned transaction open"
			case err := <-etlDone:
				etlDone <- err
				<-abandon
				finishedEarly = true
			case <-time.After(progressTimeout):
				t.Fatalf("round %d: the ETL loop did not abandon a transaction within %v\n%s\n%s", round, progressTimeout, etlLogTail(), tail(logPath))
			}
			if finishedEarly {
				t.Logf("the input was all copied before kill %d; %d kills done", round, kills)
				continue
			}
		}
		b.killMarked(t, round, why)
		logf("SIGKILL %d: %s", round, why)
		kills++
		time.Sleep(time.Duration(rand.N(int64(500 * time.Millisecond))))
		b = startBrokerAt(ctx, t, bin, dataDir, logPath, round+1, addr, args...)
		select { // the next kill waits for a commit on this broker
		case <-progress:
		default:
		}
	}
	select {
	case err := <-etlDone:
		if err != nil {
			t.Fatalf("the ETL loop failed: %v\n%s\n%s", err, etlLogTail(), tail(logPath))
		}
	case <-ctx.Done():
		t.Fatalf("the ETL loop did not copy all %d records within the test budget %v (%d transactions committed, %d records in them)\n%s\n%s",
			n, budget, st.committed.Load(), st.recsCommited.Load(), etlLogTail(), tail(logPath))
	}
	etlTook := time.Since(start)

	// The group's committed offsets are the input's end.
	{
		cl := b.client()
		offs, err := kadm.NewClient(cl).FetchOffsets(ctx, "crash-etl")
		if err == nil {
			err = offs.Error()
		}
		if err != nil {
			t.Fatalf("fetching the group's offsets: %v", err)
		}
		for p, e := range end {
			if o, _ := offs.Lookup(in, p); o.At != e {
				t.Errorf("group crash-etl committed %s/%d at %d, want the end %d", in, p, o.At, e)
			}
		}
		cl.Close()
	}

	marker := txnSeal(ctx, t, b, out, txnPartitions)
	rc := txnReadSealed(ctx, t, b, out, txnPartitions, marker, kgo.ReadCommitted())
	ru := txnReadSealed(ctx, t, b, out, txnPartitions, marker, kgo.ReadUncommitted())
	dups := 0
	for p := int32(0); p < txnPartitions; p++ {
		got := txnValues(rc[p])
		if !slices.Equal(got, want[p]) {
			t.Errorf("read_committed %s/%d: %d records, want the %d of %s/%d exactly once in order; %s",
				out, p, len(got), len(want[p]), in, p, txnDiffSeq(got, want[p]))
		}
		// read_uncommitted: a superset, every committed record at the
		// same offset, every input record at least once.
		uAt := map[int64]string{}
		count := map[string]int{}
		for _, r := range ru[p] {
			uAt[r.offset] = r.value
			count[r.value]++
		}
		for _, r := range rc[p] {
			if v, ok := uAt[r.offset]; !ok || v != r.value {
				t.Errorf("%s/%d offset %d: read_committed read %q, read_uncommitted %q (present %v)", out, p, r.offset, r.value, v, ok)
				break
			}
		}
		inSet := map[string]bool{}
		for _, v := range want[p] {
			inSet[v] = true
			if count[v] == 0 {
				t.Errorf("read_uncommitted %s/%d lacks %s", out, p, v)
				break
			}
		}
		for v, c := range count {
			if !inSet[v] {
				t.Errorf("read_uncommitted %s/%d holds %q, not an input record of partition %d", out, p, v, p)
				break
			}
			dups += c - 1
		}
	}
	// Every record acknowledged in an abandoned transaction is in the log
	// (aborted) and was copied again (committed).
	all := map[string]int{}
	for p := int32(0); p < txnPartitions; p++ {
		for _, r := range ru[p] {
			all[r.value]++
		}
	}
	for _, v := range st.abandoned {
		if all[v] < 2 {
			t.Errorf("%s was acknowledged in an abandoned transaction and copied again, but read_uncommitted reads it %d times, want at least 2", v, all[v])
			break
		}
	}
	t.Logf("%d records copied in %v under %d SIGKILLs: %d transactions committed, %d aborted, %d End errors, %d sessions, %d records written in abandoned transactions; read_committed: each record once, in order; read_uncommitted: %d duplicates from aborted transactions",
		n, etlTook.Round(time.Millisecond), kills, st.committed.Load(), st.aborted.Load(), st.endErrors.Load(), st.sessions.Load(), len(st.abandoned), dups)
	if testing.Verbose() {
		t.Log(etlLogTail())
	}
	if err := b.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: broker did not exit cleanly: %v\n%s", err, tail(logPath))
	}
}

// txnDiffSeq describes the first difference of got from want.
func txnDiffSeq(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at index %d: got %q, want %q (got[%d:] starts %v)", i, got[i], want[i], i, got[i:min(len(got), i+5)])
		}
	}
	if len(got) > len(want) {
		return fmt.Sprintf("%d extra at the end, starting %v", len(got)-len(want), got[len(want):min(len(got), len(want)+5)])
	}
	return fmt.Sprintf("%d missing at the end, starting %v", len(want)-len(got), want[len(got):min(len(want), len(got)+5)])
}

// txnTopicID returns topic's id from the metadata.
func txnTopicID(ctx context.Context, t *testing.T, b *broker, topic string) [16]byte {
	t.Helper()
	cl := b.client()
	defer cl.Close()
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		t.Fatalf("metadata %s: %v", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		t.Fatalf("metadata %s: not found (%v)", topic, td.Err)
	}
	return td.ID
}

// txnAddOffsets commits offset for topic/p of group inside cl's open
// transaction: AddOffsetsToTxn, then TxnOffsetCommit, raw, with the
// producer's id and epoch.
func txnAddOffsets(ctx context.Context, t *testing.T, cl *kgo.Client, txnID, group, topic string, topicID [16]byte, p int32, offset int64) {
	t.Helper()
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		t.Fatalf("ProducerID: %v", err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, id, epoch, group
	for {
		resp, err := add.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("AddOffsetsToTxn: %v", err)
		}
		err = kerr.ErrorForCode(resp.ErrorCode)
		if errors.Is(err, kerr.ConcurrentTransactions) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("AddOffsetsToTxn(%s, producer %d epoch %d, group %s): %v", txnID, id, epoch, group, err)
		}
		break
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = txnID, group, id, epoch
	req.Generation = -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = topic, topicID // v0-v5, v6+
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = p, offset, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("TxnOffsetCommit: %v", err)
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("TxnOffsetCommit %s/%d offset %d: %v", topic, rp.Partition, offset, err)
			}
		}
	}
}

// txnFetchOffset is group's committed offset of topic/p by a raw
// OffsetFetch (either request layout); requireStable is KIP-447's flag.
// It returns the offset (-1: none) and the group's or partition's error.
func txnFetchOffset(ctx context.Context, t *testing.T, b *broker, group, topic string, topicID [16]byte, p int32, requireStable bool) (int64, error) {
	t.Helper()
	cl := b.client()
	defer cl.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group, req.RequireStable = group, requireStable
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{p}
	req.Topics = append(req.Topics, rt)
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	gt := kmsg.NewOffsetFetchRequestGroupTopic()
	gt.Topic, gt.TopicID, gt.Partitions = topic, topicID, []int32{p}
	rg.Topics = append(rg.Topics, gt)
	req.Groups = append(req.Groups, rg)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("OffsetFetch %s: %v\n%s", group, err, tail(b.log))
	}
	if resp.Version < 8 {
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return 0, err
		}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if rt.Topic == topic && rp.Partition == p {
					return rp.Offset, kerr.ErrorForCode(rp.ErrorCode)
				}
			}
		}
	}
	for _, g := range resp.Groups {
		if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
			return 0, err
		}
		for _, rt := range g.Topics {
			for _, rp := range rt.Partitions {
				if (rt.Topic == topic || rt.TopicID == topicID) && rp.Partition == p {
					return rp.Offset, kerr.ErrorForCode(rp.ErrorCode)
				}
			}
		}
	}
	t.Fatalf("OffsetFetch v%d %s: no answer for %s/%d", resp.Version, group, topic, p)
	return 0, nil
}

// TestTxnCrashAbortVisibility: aborted, committed and open transactions
// with known records, across a SIGKILL.
func TestTxnCrashAbortVisibility(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and kills a real broker; skipped under -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildSluice(ctx, t, dir)
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "broker.log")
	args := txnBrokerArgs()
	const topic, txnID, parts = "txn-vis", "crash-vis", int32(2)

	b := startBrokerAt(ctx, t, bin, dataDir, logPath, 0, freeport.ForTest(t, "127.0.0.1"), args...)
	txnCreateTopics(ctx, t, b, parts, topic)

	produce := func(cl *kgo.Client, tag string) {
		t.Helper()
		var rs []*kgo.Record
		for p := int32(0); p < parts; p++ {
			for i := 0; i < 3; i++ {
				rs = append(rs, &kgo.Record{Partition: p, Value: []byte(fmt.Sprintf("%s-p%d-%d", tag, p, i))})
			}
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("transactional produce %s: %v\n%s", tag, err, tail(logPath))
		}
	}
	// Each transaction of txnID also commits an offset of topic/0 for
	// group; the ones aborted must never show.
	const group = "crash-vis-group"
	topicID := txnTopicID(ctx, t, b, topic)
	txn := func(cl *kgo.Client, tag string, commit kgo.TransactionEndTry, offset int64) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		produce(cl, tag)
		txnAddOffsets(ctx, t, cl, txnID, group, topic, topicID, 0, offset)
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("ending %s (commit=%v): %v\n%s", tag, bool(commit), err, tail(logPath))
		}
	}
	expect := func(tags ...string) map[int32][]string {
		w := map[int32][]string{}
		for _, tag := range tags {
			for p := int32(0); p < parts; p++ {
				for i := 0; i < 3; i++ {
					w[p] = append(w[p], fmt.Sprintf("%s-p%d-%d", tag, p, i))
				}
			}
		}
		return w
	}
	// checkOffset: once no transaction with offsets is pending
	// (pending=false), OffsetFetch with require_stable answers want; while
	// one is (pending=true), UNSTABLE_OFFSET_COMMIT, and OffsetFetch without
	// it the last committed offset, want.
	checkOffset := func(when string, want int64, pending bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			off, err := txnFetchOffset(ctx, t, b, group, topic, topicID, 0, true)
			if pending {
				if !errors.Is(err, kerr.UnstableOffsetCommit) {
					t.Errorf("%s: OffsetFetch (require_stable) of %s with a transaction's offset pending answered %d, %v; want UNSTABLE_OFFSET_COMMIT", when, group, off, err)
				}
				break
			}
			if errors.Is(err, kerr.UnstableOffsetCommit) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond) // markers land just after EndTxn's answer
				continue
			}
			if err != nil || off != want {
				t.Errorf("%s: OffsetFetch (require_stable) of %s answered %d, %v; want %d", when, group, off, err, want)
			}
			break
		}
		if off, err := txnFetchOffset(ctx, t, b, group, topic, topicID, 0, false); err != nil || off != want {
			t.Errorf("%s: OffsetFetch of %s answered %d, %v; want %d", when, group, off, err, want)
		}
	}
	check := func(when string, committed, all []string) {
		t.Helper()
		marker := txnSeal(ctx, t, b, topic, parts)
		for _, c := range []struct {
			iso  kgo.IsolationLevel
			want map[int32][]string
		}{{kgo.ReadCommitted(), expect(committed...)}, {kgo.ReadUncommitted(), expect(all...)}} {
			got := txnReadSealed(ctx, t, b, topic, parts, marker, c.iso)
			for p := int32(0); p < parts; p++ {
				if !slices.Equal(txnValues(got[p]), c.want[p]) {
					t.Errorf("%s: %s partition %d read %v, want %v", when, txnIsoName(c.iso), p, txnValues(got[p]), c.want[p])
				}
			}
		}
	}

	p1 := b.client(kgo.TransactionalID(txnID), kgo.TransactionTimeout(60*time.Second),
		kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	txn(p1, "A", kgo.TryAbort, 50)
	txn(p1, "B", kgo.TryCommit, 100)
	check("before the crash", []string{"B"}, []string{"A", "B"})
	checkOffset("before the crash", 100, false)

	// C stays open across the kill, and so does T of another
	// transactional id with a 3 s timeout whose producer never returns:
	// the restarted broker must abort T when it times out.
	hwm0, _ := txnOffsetsOf(t, b, topic)
	if err := p1.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(p1, "C")
	txnAddOffsets(ctx, t, p1, txnID, group, topic, topicID, 0, 111)
	checkOffset("transaction C open", 100, true)
	pT := b.client(kgo.TransactionalID(txnID+"-timeout"), kgo.TransactionTimeout(3*time.Second),
		kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := pT.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(pT, "T")
	tBegan := time.Now()
	hwm, lso := txnOffsetsOf(t, b, topic)
	for p := int32(0); p < parts; p++ {
		if lso[p] != hwm0[p] || hwm[p] != hwm0[p]+6 {
			t.Errorf("transactions C and T open from offset %d on partition %d: last stable offset %d, high watermark %d; want %d and %d",
				hwm0[p], p, lso[p], hwm[p], hwm0[p], hwm0[p]+6)
		}
	}
	b.killMarked(t, 0, "with transactions C and T open")
	p1.Close()
	pT.Close()

	b = startBrokerAt(ctx, t, bin, dataDir, logPath, 1, freeport.ForTest(t, "127.0.0.1"), args...)
	hwm, lso = txnOffsetsOf(t, b, topic)
	for p := int32(0); p < parts; p++ {
		if lso[p] != hwm0[p] || hwm[p] < hwm0[p]+6 {
			t.Errorf("after the restart, transaction C (offsets %d-%d of partition %d) is still open: want last stable offset %d and high watermark at least %d, got %d and %d",
				hwm0[p], hwm0[p]+2, p, hwm0[p], hwm0[p]+6, lso[p], hwm[p])
		}
	}
	checkOffset("after the restart, C open", 100, true)
	// A new producer with the transactional id aborts C and commits D;
	// T ends by its timeout (check's read_committed waits for that).
	p2 := b.client(kgo.TransactionalID(txnID), kgo.TransactionTimeout(60*time.Second),
		kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	txn(p2, "D", kgo.TryCommit, 200)
	p2.Close()
	for {
		hwm, lso = txnOffsetsOf(t, b, topic)
		if lso[0] == hwm[0] && lso[1] == hwm[1] {
			break
		}
		if time.Since(tBegan) > time.Minute {
			t.Fatalf("transaction T (3 s timeout) still open a minute after it began and across a restart: last stable offsets %v, high watermarks %v\n%s",
				lso, hwm, tail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("transaction T (timeout 3s) ended %v after it began, across a SIGKILL and restart", time.Since(tBegan).Round(time.Millisecond))
	check("after the restart", []string{"B", "D"}, []string{"A", "B", "C", "T", "D"})
	checkOffset("after the restart, C aborted, D committed", 200, false)

	b.killMarked(t, 1, "after transaction D")
	b = startBrokerAt(ctx, t, bin, dataDir, logPath, 2, freeport.ForTest(t, "127.0.0.1"), args...)
	check("after a second SIGKILL and restart", []string{"B", "D"}, []string{"A", "B", "C", "T", "D"})
	checkOffset("after a second SIGKILL and restart", 200, false)
	if err := b.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: broker did not exit cleanly: %v\n%s", err, tail(logPath))
	}
}

// TestIdempotentCrashRetry: idempotent producers keep running while the
// broker is SIGKILLed and restarted on the same address; batches in flight
// at the kill are retried with their producer id and sequence numbers. No
// record may fail (the broker is back within a second and the delivery
// timeout is long), and each partition must hold exactly the values
// produced to it, once each, in order, at their acknowledged offsets.
func TestIdempotentCrashRetry(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and kills a real broker; skipped under -short")
	}
	rounds := txnEnvInt(t, "CRASH_TXN_ROUNDS", defaultTxnRounds)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+time.Duration(rounds)*20*time.Second)
	defer cancel()
	dir := t.TempDir()
	bin := buildSluice(ctx, t, dir)
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "broker.log")
	addr := freeport.ForTest(t, "127.0.0.1")
	const topic, parts = "idem", int32(3)

	b := startBrokerAt(ctx, t, bin, dataDir, logPath, 0, addr)
	txnCreateTopics(ctx, t, b, parts, topic)

	cl := b.client(kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DialTimeout(2*time.Second),
		kgo.ProduceRequestTimeout(10*time.Second), kgo.RecordDeliveryTimeout(2*time.Minute),
		kgo.RetryTimeout(2*time.Minute), kgo.MaxBufferedRecords(4096))
	var (
		mu       sync.Mutex
		ackedAt  = map[string]int64{} // value -> offset
		failures []string
		sent     [parts]atomic.Int64
		wg       sync.WaitGroup
	)
	pctx, stop := context.WithCancel(ctx)
	var prodWG sync.WaitGroup
	for p := int32(0); p < parts; p++ {
		prodWG.Add(1)
		go func() {
			defer prodWG.Done()
			for i := 0; pctx.Err() == nil; i++ {
				v := fmt.Sprintf("p%d-%07d", p, i)
				wg.Add(1)
				cl.Produce(ctx, &kgo.Record{Partition: p, Value: []byte(v)}, func(r *kgo.Record, err error) {
					defer wg.Done()
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						failures = append(failures, fmt.Sprintf("%s: %v", v, err))
						return
					}
					ackedAt[v] = r.Offset
				})
				sent[p].Store(int64(i + 1))
				if i%16 == 15 {
					time.Sleep(time.Millisecond) // many batches, at a pace the machine can bear
				}
			}
		}()
	}
	acks := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ackedAt)
	}
	pendingAtKills := 0 // records produced but not yet acknowledged at the kills
	for round := 0; round < rounds; round++ {
		base := acks()
		deadline := time.Now().Add(progressTimeout)
		for acks() < base+2000 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: fewer than 2000 records acknowledged within %v of the start (%d)\n%s", round, progressTimeout, acks()-base, tail(logPath))
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.N(int64(300 * time.Millisecond))))
		b.killMarked(t, round, fmt.Sprintf("with %d records acknowledged", acks()))
		pendingAtKills += int(sent[0].Load()+sent[1].Load()+sent[2].Load()) - acks()
		time.Sleep(time.Duration(rand.N(int64(500 * time.Millisecond))))
		b = startBrokerAt(ctx, t, bin, dataDir, logPath, round+1, addr)
	}
	// Some more after the last restart, then stop and wait for all.
	base := acks()
	for acks() < base+1000 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	prodWG.Wait()
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v\n%s", err, tail(logPath))
	}
	wg.Wait()
	cl.Close()
	total := int(sent[0].Load() + sent[1].Load() + sent[2].Load())
	if len(failures) > 0 {
		t.Errorf("%d of %d records failed although the broker was back within a second and the delivery timeout is 2m; first: %v",
			len(failures), total, failures[:min(5, len(failures))])
	}

	marker := txnSeal(ctx, t, b, topic, parts)
	got := txnReadSealed(ctx, t, b, topic, parts, marker, kgo.ReadUncommitted())
	for p := int32(0); p < parts; p++ {
		rs := got[p]
		if int64(len(rs)) != sent[p].Load() {
			t.Errorf("partition %d holds %d records, %d were produced to it (all acknowledged: %v)", p, len(rs), sent[p].Load(), len(failures) == 0)
		}
		for i, r := range rs {
			v := fmt.Sprintf("p%d-%07d", p, i)
			if r.value != v {
				t.Errorf("partition %d: record %d (offset %d) is %q, want %q: a retried batch was written twice or one was lost", p, i, r.offset, r.value, v)
				break
			}
			if o, ok := ackedAt[v]; ok && o != r.offset {
				t.Errorf("partition %d: %s acknowledged at offset %d, found at %d", p, v, o, r.offset)
				break
			}
		}
	}
	t.Logf("%d records from 3 idempotent producers across %d SIGKILLs (%d in flight or buffered at the kills, sent again to the restarted broker): %d acknowledged, %d failed",
		total, rounds, pendingAtKills, len(ackedAt), len(failures))
	if err := b.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: broker did not exit cleanly: %v\n%s", err, tail(logPath))
	}
}
