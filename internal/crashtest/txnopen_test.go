package crashtest

// TestCrashTransactions: transactional producers commit and abort
// transactions, one holds a transaction open, and an idempotent acks=all
// producer writes alongside, into a topic with 64 KiB segments and a
// compacted one cleaned all the time, while the broker is SIGKILLed at
// random, at a segment roll, inside a cleaner pass or inside a clean
// shutdown (which may finish first). After each restart:
// the open transaction still holds the last stable offset; then new
// producers with the same transactional ids abort what was open, and
// read_committed must see exactly the committed transactions and the
// acknowledged plain records (a transaction whose EndTxn was cut by the
// kill whole or not at all), each at its acknowledged offset, and nothing
// of an aborted or open one. TestTxnCrashAbortVisibility covers a few
// known transactions across one kill with the default segments.

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"path/filepath"
	"slices"
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
	txnSegTopic     = "txn-seg"
	txnCompactTopic = "txn-compact"
	// txnLoopers is how many transactional ids commit and abort in a loop.
	txnLoopers = 3
	// txnMaxRecords bounds a looped transaction's records per topic.
	txnMaxRecords = 12
	// txnAbortOneIn: a looped transaction is aborted one time in this many.
	txnAbortOneIn = 4
	// txnHolderRecords is how many records per partition and topic the
	// held transaction writes before it waits for the kill.
	txnHolderRecords = 2
	// txnSegmentBytes is both topics' segment.bytes.
	txnSegmentBytes = 64 << 10
	// txnPad is the filler sent with every record.
	txnPad = 200
	// defaultTxnOpenRounds is how many kills TestCrashTransactions does;
	// CRASH_TXN_OPEN_ROUNDS overrides it.
	defaultTxnOpenRounds = 8
	txnHolderID          = "crash-hold"
)

// txnOutcome is what became of a transaction, as its producer knows it.
type txnOutcome int

const (
	txnOpen      txnOutcome = iota // never ended (or its abort was cut): must vanish
	txnCommitted                   // EndTxn(commit) answered: every record stays
	txnAborted                     // EndTxn(abort) answered: must vanish
	txnInDoubt                     // EndTxn(commit) cut by the kill: all or nothing
)

func (o txnOutcome) String() string {
	return [...]string{"open", "committed", "aborted", "in doubt"}[o]
}

// txnKey names a record the test produced: its value, unique, is also its
// key.
type txnKey struct{ topic, value string }

// txnWrite is one record the test produced.
type txnWrite struct {
	txn       int // index in txnLoad.txns; -1: not transactional
	partition int32
	offset    int64 // where it was acknowledged; -1: not acknowledged
}

// txnLoad is everything TestCrashTransactions wrote, across rounds.
type txnLoad struct {
	mu     sync.Mutex
	writes map[txnKey]*txnWrite
	txns   []txnOutcome
	names  []string // of txns, for messages
	// holderFirst is, per topic and partition, the first acknowledged
	// offset of the transaction held open at the last kill.
	holderFirst map[string]map[int32]int64
}

func (l *txnLoad) begin(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.txns = append(l.txns, txnOpen)
	l.names = append(l.names, name)
	return len(l.txns) - 1
}

func (l *txnLoad) end(txn int, o txnOutcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.txns[txn] = o
}

// records makes a record of value to each of topics (default: both) on
// partition p, noted as written (not yet acknowledged) by txn.
func (l *txnLoad) records(txn int, p int32, value string, headers []kgo.RecordHeader, topics ...string) []*kgo.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(topics) == 0 {
		topics = []string{txnSegTopic, txnCompactTopic}
	}
	var rs []*kgo.Record
	for _, tp := range topics {
		l.writes[txnKey{tp, value}] = &txnWrite{txn: txn, partition: p, offset: -1}
		rs = append(rs, &kgo.Record{Topic: tp, Partition: p, Key: []byte(value), Value: []byte(value), Headers: headers})
	}
	return rs
}

func (l *txnLoad) acked(r *kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes[txnKey{r.Topic, string(r.Value)}].offset = r.Offset
}

func TestCrashTransactions(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and kills a real broker; skipped under -short")
	}
	rounds := txnEnvInt(t, "CRASH_TXN_OPEN_ROUNDS", defaultTxnOpenRounds)
	if rounds < 1 {
		t.Fatal("CRASH_TXN_OPEN_ROUNDS must be at least 1")
	}
	budget := 3*time.Minute + time.Duration(rounds)*2*roundBudget
	if dl, ok := t.Deadline(); ok {
		budget = min(budget, time.Until(dl)-15*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()

	dir := t.TempDir()
	bin := buildSluice(ctx, t, dir)
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "broker.log")
	args := append(txnBrokerArgs(), "-c", "log.cleaner.backoff.ms=20")
	pad := make([]byte, txnPad)
	rand.Read(pad)
	segDirs := partitionDirs(dataDir, txnSegTopic, partitions)
	compactDirs := partitionDirs(dataDir, txnCompactTopic, partitions)

	l := &txnLoad{writes: map[txnKey]*txnWrite{}}
	var kinds []string
	start := time.Now()
	for round := 0; round < rounds; round++ {
		if ctx.Err() != nil {
			t.Fatalf("round %d: test budget of %v used up", round, budget)
		}
		b := startBrokerAt(ctx, t, bin, dataDir, logPath, round, freeport.ForTest(t, "127.0.0.1"), args...)
		if round == 0 {
			txnOpenCreateTopics(ctx, t, b)
		} else {
			txnCheckHeld(ctx, t, b, l, round)
		}
		// New producers for every transactional id: their
		// InitProducerId aborts what the kill left open.
		cls := txnOpenClients(ctx, t, b, pad)
		if round > 0 {
			txnOpenVerify(ctx, t, b, l, round)
		}
		var plan killPlan
		kind := ""
		switch round % 4 {
		case 0:
			kind, plan = "random", killAtRandom
		case 1:
			kind, plan = "roll", killAtRoll(append(slices.Clone(segDirs), compactDirs...), round%8 == 1)
		case 2:
			kind, plan = "cleaner", killInCleanerPass(compactDirs)
		default:
			// A shutdown that completes snapshots the held
			// transaction; the clean start must still know it.
			kind, plan = "shutdown", killInShutdown(dataDir, round%8 == 3)
		}
		kinds = append(kinds, kind)
		before := l.counts()
		txnOpenProduce(ctx, t, b, round, l, cls, pad, plan, kind != "cleaner")
		if testing.Verbose() {
			t.Logf("round %d (%s): transactions %v (before: %v); %s", round, kind, l.counts(), before, lastMarker(logPath))
		}
	}
	b := startBrokerAt(ctx, t, bin, dataDir, logPath, rounds, freeport.ForTest(t, "127.0.0.1"), args...)
	txnCheckHeld(ctx, t, b, l, rounds)
	txnOpenClients(ctx, t, b, pad)
	txnOpenVerify(ctx, t, b, l, rounds)
	if err := b.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: broker did not exit cleanly: %v\n%s", err, tail(logPath))
	}
	counts := l.counts()
	plain := 0
	for _, w := range l.writes {
		if w.txn < 0 && w.offset >= 0 {
			plain++
		}
	}
	t.Logf("%d rounds (%v) in %v: transactions %v; %d plain records acknowledged; %d cleaner passes; read_committed held exactly the committed ones after every restart",
		rounds, kinds, time.Since(start).Round(time.Millisecond), counts, plain, cleanerPasses(logPath))
	if counts[txnCommitted] == 0 || counts[txnAborted] == 0 || counts[txnOpen] < rounds {
		t.Errorf("transactions %v: the test wants some committed, some aborted and one open at each kill", counts)
	}
}

func (l *txnLoad) counts() map[txnOutcome]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[txnOutcome]int{}
	for _, o := range l.txns {
		m[o]++
	}
	return m
}

func txnOpenCreateTopics(ctx context.Context, t *testing.T, b *broker) {
	t.Helper()
	cl := b.client()
	defer cl.Close()
	adm := kadm.NewClient(cl)
	str := func(s string) *string { return &s }
	seg := str(strconv.Itoa(txnSegmentBytes))
	for _, c := range []struct {
		topic   string
		configs map[string]*string
	}{
		{txnSegTopic, map[string]*string{"segment.bytes": seg}},
		{txnCompactTopic, map[string]*string{"segment.bytes": seg, "cleanup.policy": str("compact"), "min.cleanable.dirty.ratio": str("0.01")}},
	} {
		resp, err := adm.CreateTopic(ctx, partitions, 1, c.configs, c.topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("creating topic %s: %v\n%s", c.topic, err, tail(b.log))
		}
	}
	txnCreateTopicsWait(ctx, t, adm, txnSegTopic, txnCompactTopic)
}

// txnCreateTopicsWait waits until the topics are in the metadata with
// their partitions.
func txnCreateTopicsWait(ctx context.Context, t *testing.T, adm *kadm.Client, names ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		md, err := adm.Metadata(ctx, names...)
		ok := err == nil
		for _, n := range names {
			td, found := md.Topics[n]
			ok = ok && found && td.Err == nil && len(td.Partitions) == partitions
		}
		if ok {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("topics %v not in metadata (last error %v)", names, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// txnOpenClients makes a client for each transactional id (the loopers',
// then the holder's) and has each get its producer id, which fences the
// previous producer and aborts its open transaction; then the plain
// producer.
func txnOpenClients(ctx context.Context, t *testing.T, b *broker, pad []byte) []*kgo.Client {
	t.Helper()
	var cls []*kgo.Client
	for i := 0; i <= txnLoopers; i++ {
		id := txnHolderID
		if i < txnLoopers {
			id = fmt.Sprintf("crash-loop-%d", i)
		}
		cl := b.client(kgo.TransactionalID(id), kgo.TransactionTimeout(60*time.Second),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
		t.Cleanup(cl.Close)
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, _, err := cl.ProducerID(ictx)
		cancel()
		if err != nil {
			t.Fatalf("InitProducerId for %s: %v\n%s", id, err, tail(b.log))
		}
		cls = append(cls, cl)
	}
	plain := b.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProduceRequestTimeout(10*time.Second))
	t.Cleanup(plain.Close)
	return append(cls, plain)
}

// txnOpenProduce runs the load on cls (txnOpenClients') until kill has
// ended the broker. The held transaction writes to the compacted topic too
// when holdCompacted; else that topic's last stable offset moves on, so
// that the log cleaner has work while the load runs.
func txnOpenProduce(ctx context.Context, t *testing.T, b *broker, round int, l *txnLoad, cls []*kgo.Client, pad []byte, kill killPlan, holdCompacted bool) {
	t.Helper()
	headers := []kgo.RecordHeader{{Key: "pad", Value: pad}}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg      sync.WaitGroup // producing goroutines
		pending sync.WaitGroup // the plain producer's promises not yet called
	)
	produce := func(cl *kgo.Client, rs []*kgo.Record) error {
		res := cl.ProduceSync(pctx, rs...)
		for _, r := range res {
			if r.Err == nil {
				l.acked(r.Record)
			}
		}
		return res.FirstErr()
	}
	for i := 0; i < txnLoopers; i++ {
		cl := cls[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; pctx.Err() == nil; n++ {
				name := fmt.Sprintf("loop%d-r%d-t%d", i, round, n)
				if err := cl.BeginTransaction(); err != nil {
					t.Errorf("%s: BeginTransaction: %v", name, err)
					return
				}
				txn := l.begin(name)
				var rs []*kgo.Record
				for j := range 1 + mrand.IntN(txnMaxRecords) {
					rs = append(rs, l.records(txn, mrand.Int32N(partitions), fmt.Sprintf("%s-%d", name, j), headers)...)
				}
				if produce(cl, rs) != nil {
					return // the kill: the transaction stays open
				}
				commit := mrand.IntN(txnAbortOneIn) != 0
				err := cl.EndTransaction(pctx, kgo.TransactionEndTry(commit))
				switch {
				case err == nil && commit:
					l.end(txn, txnCommitted)
				case err == nil:
					l.end(txn, txnAborted)
				case commit:
					l.end(txn, txnInDoubt)
					return
				default:
					return // an abort cut short: open or aborted
				}
			}
		}()
	}
	// The holder: one transaction, open until the kill.
	holder := cls[txnLoopers]
	if err := holder.BeginTransaction(); err != nil {
		t.Fatalf("holder: BeginTransaction: %v", err)
	}
	hold := l.begin(fmt.Sprintf("hold-r%d", round))
	holdTopics := []string{txnSegTopic}
	if holdCompacted {
		holdTopics = append(holdTopics, txnCompactTopic)
	}
	var hrs []*kgo.Record
	for p := int32(0); p < partitions; p++ {
		for j := range txnHolderRecords {
			hrs = append(hrs, l.records(hold, p, fmt.Sprintf("hold-r%d-p%d-%d", round, p, j), headers, holdTopics...)...)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		produce(holder, hrs)
	}()
	// The plain producer.
	plain := cls[txnLoopers+1]
	wg.Add(1)
	go func() {
		defer wg.Done()
		sem := make(chan struct{}, inFlightPerProducer)
		for n := 0; ; n++ {
			for _, r := range l.records(-1, mrand.Int32N(partitions), fmt.Sprintf("plain-r%d-%d", round, n), headers) {
				select {
				case sem <- struct{}{}:
				case <-pctx.Done():
					return
				}
				pending.Add(1)
				plain.Produce(pctx, r, func(r *kgo.Record, err error) {
					defer pending.Done()
					<-sem
					if err == nil {
						l.acked(r)
					}
				})
			}
		}
	}()
	why := kill(pctx, t, b, round)
	appendLog(b.log, fmt.Sprintf("==== round %d: %s ====\n", round, why))
	stop()
	done := make(chan struct{})
	go func() {
		for _, cl := range cls {
			cl.Close() // fails what is buffered or in flight
		}
		wg.Wait()
		pending.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("round %d: producers did not finish within 30s of the broker's death", round)
	}
	// Where the held transaction's records are, for txnCheckHeld.
	l.mu.Lock()
	defer l.mu.Unlock()
	l.holderFirst = map[string]map[int32]int64{}
	for _, r := range hrs {
		w := l.writes[txnKey{r.Topic, string(r.Value)}]
		if w.offset < 0 {
			continue
		}
		m := l.holderFirst[r.Topic]
		if m == nil {
			m = map[int32]int64{}
			l.holderFirst[r.Topic] = m
		}
		if o, ok := m[w.partition]; !ok || w.offset < o {
			m[w.partition] = w.offset
		}
	}
}

// txnCheckHeld checks, after a restart and before any producer returns,
// that the transaction held open at the kill still holds each partition's
// last stable offset at or below its first record.
func txnCheckHeld(ctx context.Context, t *testing.T, b *broker, l *txnLoad, round int) {
	t.Helper()
	for tp, first := range l.holderFirst {
		hwm, lso := txnOffsetsOf(t, b, tp)
		for p, o := range first {
			if lso[p] > o || hwm[p] <= o {
				t.Errorf("after restart %d: %s/%d: the transaction held open at the kill has a record at offset %d, but the last stable offset is %d (high watermark %d): the restarted broker lost the open transaction",
					round, tp, p, o, lso[p], hwm[p])
			}
		}
	}
}

// txnOpenVerify seals both topics and checks what read_committed (both
// topics) and read_uncommitted (the uncompacted one) read against l.
func txnOpenVerify(ctx context.Context, t *testing.T, b *broker, l *txnLoad, round int) {
	t.Helper()
	marker := fmt.Sprintf("seal-%d", time.Now().UnixNano())
	{
		cl := b.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
		var rs []*kgo.Record
		for _, tp := range []string{txnSegTopic, txnCompactTopic} {
			for p := int32(0); p < partitions; p++ {
				rs = append(rs, &kgo.Record{Topic: tp, Partition: p, Key: []byte("seal"), Value: []byte(marker)})
			}
		}
		err := cl.ProduceSync(ctx, rs...).FirstErr()
		cl.Close()
		if err != nil {
			t.Fatalf("after restart %d: sealing: %v\n%s", round, err, tail(b.log))
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var problems []string
	nProblems := 0
	report := func(format string, args ...any) {
		nProblems++
		if len(problems) < 20 {
			problems = append(problems, "  "+fmt.Sprintf(format, args...))
		}
	}
	for _, c := range []struct {
		topic string
		iso   kgo.IsolationLevel
	}{
		{txnSegTopic, kgo.ReadCommitted()},
		{txnCompactTopic, kgo.ReadCommitted()},
		{txnSegTopic, kgo.ReadUncommitted()},
	} {
		committed := c.iso == kgo.ReadCommitted()
		what := c.topic + " " + txnIsoName(c.iso)
		got := txnReadSealed(ctx, t, b, c.topic, partitions, marker, c.iso)
		seen := map[string]bool{}
		inDoubt := map[int]int{} // records read of each in-doubt transaction
		for p, rs := range got {
			for _, r := range rs {
				w := l.writes[txnKey{c.topic, r.value}]
				switch {
				case w == nil:
					report("%s: partition %d offset %d holds %q, which the test never wrote", what, p, r.offset, r.value)
					continue
				case seen[r.value]:
					report("%s: %q is there twice (again at partition %d offset %d)", what, r.value, p, r.offset)
				case w.partition != p:
					report("%s: %q was written to partition %d but is on %d", what, r.value, w.partition, p)
				case w.offset >= 0 && w.offset != r.offset:
					report("%s: %q was acknowledged at offset %d of partition %d but is at %d", what, r.value, w.offset, p, r.offset)
				}
				seen[r.value] = true
				if w.txn < 0 || !committed {
					continue
				}
				switch o := l.txns[w.txn]; o {
				case txnCommitted:
				case txnInDoubt:
					inDoubt[w.txn]++
				default:
					report("%s: partition %d offset %d: %q of transaction %s (%v) is visible", what, p, r.offset, r.value, l.names[w.txn], o)
				}
			}
		}
		want := map[int]int{} // records of each in-doubt transaction in the topic
		for key, w := range l.writes {
			if key.topic != c.topic {
				continue
			}
			v := key.value
			if w.txn >= 0 && l.txns[w.txn] == txnInDoubt {
				want[w.txn]++
			}
			mustBe := w.offset >= 0 && (!committed || w.txn < 0 || l.txns[w.txn] == txnCommitted)
			if mustBe && !seen[v] {
				kind := "plain record"
				if w.txn >= 0 {
					kind = fmt.Sprintf("record of transaction %s (%v)", l.names[w.txn], l.txns[w.txn])
				}
				report("%s: %s %q, acknowledged at partition %d offset %d, is missing", what, kind, v, w.partition, w.offset)
			}
		}
		for txn, n := range inDoubt {
			if n != want[txn] {
				report("%s: %d of the %d records of transaction %s, whose commit the kill cut, are visible: want all or none", what, n, want[txn], l.names[txn])
			}
		}
	}
	if nProblems > 0 {
		t.Fatalf("after restart %d: %d problems (the first %d):\n%s\n%s", round, nProblems, len(problems), strings.Join(problems, "\n"), tail(b.log))
	}
}
