package crashtest

// TestCrashCompaction: acks=all writes to a few hundred reused keys of a
// compacted topic with 64 KiB segments, which the log cleaner compacts
// all the time (min.cleanable.dirty.ratio 0.01, log.cleaner.backoff.ms
// 20), SIGKILLed at random, inside a cleaner pass (once a .cleaned or
// .swap file is there), at a segment roll or inside a clean shutdown
// (TestCrashSegmentRolls' kill plans). After each restart a full
// read must hold, for every key, its latest acknowledged write at the
// offset it was acknowledged at, or a later write of the test: compaction
// may drop older values, never the latest acknowledged one, nor let an
// older one outlive a newer one. No record may appear that the test did
// not write.

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
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
	compactTopic = "compact"
	// compactKeys is how many keys the load writes: key i lives on
	// partition i%partitions and only goroutine i%producers writes it,
	// so its writes reach the log in the order they were made.
	compactKeys = 240
	// compactSegmentBytes is the topic's segment.bytes.
	compactSegmentBytes = 64 << 10
	// compactPad is the filler in every value after the key and sequence.
	compactPad = 256
	// tombstoneEvery: about one write in this many is a tombstone.
	tombstoneEvery = 8
	// defaultCompactRounds is how many kills TestCrashCompaction does;
	// CRASH_COMPACT_ROUNDS overrides it.
	defaultCompactRounds = 8
	// cleanerWait bounds how long a kill inside a cleaner pass waits for
	// one.
	cleanerWait = 5 * time.Second
)

// compactWrite is one write of a key: its sequence number among the key's
// writes, where it was acknowledged, and whether it was a tombstone.
type compactWrite struct {
	seq    int64 // -1: none
	offset int64
	tomb   bool
}

// compactState is what the test wrote and what was acknowledged, per key,
// across rounds.
type compactState struct {
	// Per key, touched only by the key's goroutine during a round.
	next     []int64 // the next sequence number
	lastTomb []int64 // the latest sequence number written as a tombstone, -1 none

	mu    sync.Mutex
	acked []compactWrite // the latest acknowledged write
}

func newCompactState() *compactState {
	s := &compactState{next: make([]int64, compactKeys), lastTomb: make([]int64, compactKeys), acked: make([]compactWrite, compactKeys)}
	for i := range s.acked {
		s.lastTomb[i] = -1
		s.acked[i].seq = -1
	}
	return s
}

// compactTomb tells whether the test writes key's write seq as a tombstone
// (never its first).
func compactTomb(key int, seq int64) bool {
	return seq > 0 && (int64(key)*7+seq*13)%tombstoneEvery == 0
}

func compactKey(key int) string { return fmt.Sprintf("k%04d", key) }

// compactValue is the value of key's write seq (nil for a tombstone).
func compactValue(key int, seq int64, pad []byte) []byte {
	if compactTomb(key, seq) {
		return nil
	}
	return append([]byte(fmt.Sprintf("%s=%d|", compactKey(key), seq)), pad...)
}

func TestCrashCompaction(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and kills a real broker; skipped under -short")
	}
	rounds := txnEnvInt(t, "CRASH_COMPACT_ROUNDS", defaultCompactRounds)
	if rounds < 1 {
		t.Fatal("CRASH_COMPACT_ROUNDS must be at least 1")
	}
	budget := 3*time.Minute + time.Duration(rounds)*roundBudget
	if dl, ok := t.Deadline(); ok {
		budget = min(budget, time.Until(dl)-15*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()

	dir := t.TempDir()
	bin := buildSluice(ctx, t, dir)
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "broker.log")
	args := []string{"-c", "log.cleaner.backoff.ms=20"}
	pad := []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz012345", compactPad/32))
	dirs := partitionDirs(dataDir, compactTopic, partitions)

	st := newCompactState()
	var (
		midPass, acks int
		kinds         []string
		last          compactRead
	)
	start := time.Now()
	for round := 0; round < rounds; round++ {
		if ctx.Err() != nil {
			t.Fatalf("round %d: test budget of %v used up", round, budget)
		}
		b := startBrokerAt(ctx, t, bin, dataDir, logPath, round, freeport.ForTest(t, "127.0.0.1"), args...)
		if round == 0 {
			compactCreateTopic(ctx, t, b)
		} else {
			last = verifyCompacted(ctx, t, b, st, pad, round)
		}
		var plan killPlan
		kind := ""
		switch round % 4 {
		case 0:
			kind, plan = "random", killAtRandom
		case 1:
			kind, plan = "cleaner", killInCleanerPass(dirs)
		case 2:
			kind, plan = "roll", killAtRoll(dirs, round%8 == 2)
		default:
			kind, plan = "shutdown", killInShutdown(dataDir, round%8 == 3)
		}
		n := compactProduce(ctx, t, b, round, st, pad, plan)
		acks += n
		left := cleanerLeftovers(dirs)
		if len(left) > 0 {
			midPass++
		}
		kinds = append(kinds, kind)
		if testing.Verbose() {
			t.Logf("round %d (%s): %d writes acknowledged; %d cleaner passes so far; files of an unfinished pass: %v; %s",
				round, kind, n, cleanerPasses(logPath), left, lastMarker(logPath))
		}
	}
	b := startBrokerAt(ctx, t, bin, dataDir, logPath, rounds, freeport.ForTest(t, "127.0.0.1"), args...)
	last = verifyCompacted(ctx, t, b, st, pad, rounds)
	if err := b.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: broker did not exit cleanly: %v\n%s", err, tail(logPath))
	}
	passes := cleanerPasses(logPath)
	t.Logf("%d rounds (%v) in %v: %d writes acknowledged to %d keys; %d cleaner passes; %d kills left a pass unfinished; the last read held %d records over %d offsets (%d keys present, %d tombstones)",
		rounds, kinds, time.Since(start).Round(time.Millisecond), acks, compactKeys, passes, midPass,
		last.records, last.span, last.keys, last.tombstones)
	if passes == 0 {
		t.Errorf("the log cleaner never finished a pass: the test did not exercise compaction\n%s", tail(logPath))
	}
	if int64(last.records)*2 > last.span {
		t.Errorf("the last read held %d records over %d offsets: the log was hardly compacted", last.records, last.span)
	}
	if rounds >= 3 && midPass == 0 {
		t.Errorf("no kill of %d landed inside a cleaner pass (no .cleaned or .swap file left)", rounds)
	}
}

func compactCreateTopic(ctx context.Context, t *testing.T, b *broker) {
	t.Helper()
	cl := b.client()
	defer cl.Close()
	str := func(s string) *string { return &s }
	configs := map[string]*string{
		"cleanup.policy":            str("compact"),
		"segment.bytes":             str(strconv.Itoa(compactSegmentBytes)),
		"min.cleanable.dirty.ratio": str("0.01"),
		"delete.retention.ms":       str("200"), // tombstones go during the test
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, configs, compactTopic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v\n%s", compactTopic, err, tail(b.log))
	}
	for {
		md, err := kadm.NewClient(cl).Metadata(ctx, compactTopic)
		if err == nil {
			if td, ok := md.Topics[compactTopic]; ok && td.Err == nil && len(td.Partitions) == partitions {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("topic %s not in metadata with %d partitions (last error %v)", compactTopic, partitions, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// compactProduce writes to random keys of each goroutine until kill has
// ended the broker, and returns how many writes were acknowledged.
func compactProduce(ctx context.Context, t *testing.T, b *broker, round int, st *compactState, pad []byte, kill killPlan) int {
	t.Helper()
	var n int
	next := func(g int) *kgo.Record {
		key := g + producers*mrand.IntN(compactKeys/producers)
		seq := st.next[key]
		st.next[key]++
		if compactTomb(key, seq) {
			st.lastTomb[key] = seq
		}
		return &kgo.Record{
			Partition: int32(key % partitions),
			Key:       []byte(compactKey(key)),
			Value:     compactValue(key, seq, pad),
			Headers:   []kgo.RecordHeader{{Key: "seq", Value: []byte(strconv.FormatInt(seq, 10))}},
		}
	}
	done := func(r *kgo.Record, err error) {
		if err != nil {
			return
		}
		key, _ := strconv.Atoi(strings.TrimPrefix(string(r.Key), "k"))
		seq, _ := strconv.ParseInt(string(r.Headers[0].Value), 10, 64)
		st.mu.Lock()
		defer st.mu.Unlock()
		n++
		if seq > st.acked[key].seq {
			st.acked[key] = compactWrite{seq, r.Offset, r.Value == nil}
		}
	}
	runLoad(ctx, t, b, round, []kgo.Opt{kgo.DefaultProduceTopic(compactTopic), kgo.ProducerBatchCompression(kgo.NoCompression())}, next, done, kill)
	return n
}

// killInCleanerPass SIGKILLs the broker once, after killWhen's warm-up, one
// of dirs holds a file of an unfinished cleaner pass (.cleaned or .swap).
func killInCleanerPass(dirs []string) killPlan {
	return func(ctx context.Context, t *testing.T, b *broker, round int) string {
		t.Helper()
		return killWhen(ctx, t, b, round, cleanerWait, [2]time.Duration{0, aimDelay}, func() func() (string, bool) {
			return func() (string, bool) {
				if left := cleanerLeftovers(dirs); len(left) > 0 {
					return "cleaner pass writing " + left[0], true
				}
				return "", false
			}
		})
	}
}

// cleanerLeftovers lists the .cleaned and .swap files in dirs.
func cleanerLeftovers(dirs []string) []string {
	var out []string
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if n := e.Name(); strings.HasSuffix(n, ".cleaned") || strings.HasSuffix(n, ".swap") {
				out = append(out, filepath.Base(d)+"/"+n)
			}
		}
	}
	return out
}

// cleanerPasses counts the broker's "cleaned log" lines.
func cleanerPasses(logPath string) int {
	data, _ := os.ReadFile(logPath)
	return strings.Count(string(data), `msg="cleaned log"`)
}

// compactRead sums up one full read.
type compactRead struct {
	records, keys, tombstones int
	span                      int64 // offsets below the seals
}

// verifyCompacted seals every partition (a record of key "seal"), reads
// the topic from its start to the seals and checks it against st (values
// padded with pad).
func verifyCompacted(ctx context.Context, t *testing.T, b *broker, st *compactState, pad []byte, round int) compactRead {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after restart %d: "+format+"\n%s", append([]any{round}, append(args, tail(b.log))...)...)
	}

	seal := fmt.Sprintf("seal-%d", round)
	sealAt := map[int32]int64{}
	{
		cl := b.client(kgo.DefaultProduceTopic(compactTopic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		var rs []*kgo.Record
		for p := int32(0); p < partitions; p++ {
			rs = append(rs, &kgo.Record{Partition: p, Key: []byte("seal"), Value: []byte(seal)})
		}
		res := cl.ProduceSync(ctx, rs...)
		cl.Close()
		if err := res.FirstErr(); err != nil {
			fail("sealing %s: %v", compactTopic, err)
		}
		for _, r := range res {
			sealAt[r.Record.Partition] = r.Record.Offset
		}
	}

	from := map[int32]kgo.Offset{}
	for p := int32(0); p < partitions; p++ {
		from[p] = kgo.NewOffset().AtStart()
	}
	cl := b.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{compactTopic: from}),
		kgo.FetchMaxWait(250*time.Millisecond))
	defer cl.Close()
	type seen struct {
		seq    int64
		offset int64
		tomb   bool
	}
	lastOf := make([]seen, compactKeys) // per key, the latest record read
	for i := range lastOf {
		lastOf[i].seq = -1
	}
	lastOff := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		lastOff[p] = -1
	}
	sealed := map[int32]bool{}
	var sum compactRead
	for len(sealed) < partitions {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			fail("reading %s did not reach the seals %v within %v (reached %v)", compactTopic, sealAt, verifyTimeout, lastOff)
		}
		fs.EachError(func(tp string, p int32, err error) { fail("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			p := r.Partition
			if sealed[p] {
				return
			}
			if r.Offset <= lastOff[p] {
				fail("partition %d: offset %d after %d: offsets must strictly increase", p, r.Offset, lastOff[p])
			}
			lastOff[p] = r.Offset
			if string(r.Key) == "seal" {
				if !strings.HasPrefix(string(r.Value), "seal-") {
					fail("partition %d offset %d: seal record with value %q", p, r.Offset, r.Value)
				}
				if r.Offset == sealAt[p] {
					sealed[p] = true
				}
				return
			}
			sum.records++
			key, err := strconv.Atoi(strings.TrimPrefix(string(r.Key), "k"))
			if err != nil || key < 0 || key >= compactKeys || string(r.Key) != compactKey(key) {
				fail("partition %d offset %d: key %q was never written", p, r.Offset, r.Key)
			}
			if int32(key%partitions) != p {
				fail("partition %d offset %d: key %q belongs on partition %d", p, r.Offset, r.Key, key%partitions)
			}
			var seq int64 = -1
			if len(r.Headers) == 1 && r.Headers[0].Key == "seq" {
				seq, err = strconv.ParseInt(string(r.Headers[0].Value), 10, 64)
			}
			if err != nil || seq < 0 || seq >= st.next[key] {
				fail("partition %d offset %d: key %q write %d (headers %v) was never made (%d made)", p, r.Offset, r.Key, seq, r.Headers, st.next[key])
			}
			want := compactValue(key, seq, pad)
			if (r.Value == nil) != (want == nil) || string(r.Value) != string(want) {
				fail("partition %d offset %d: key %q write %d holds %.40q, want %.40q", p, r.Offset, r.Key, seq, r.Value, want)
			}
			if prev := lastOf[key]; seq <= prev.seq {
				fail("key %q: write %d at offset %d follows write %d at offset %d: an older write outlived a newer one, or one is there twice",
					r.Key, seq, r.Offset, prev.seq, prev.offset)
			}
			if a := st.acked[key]; seq == a.seq && r.Offset != a.offset {
				fail("key %q write %d was acknowledged at offset %d but is at %d", r.Key, seq, a.offset, r.Offset)
			}
			lastOf[key] = seen{seq, r.Offset, r.Value == nil}
		})
	}
	for p := int32(0); p < partitions; p++ {
		sum.span += sealAt[p]
	}
	for key, a := range st.acked {
		got := lastOf[key]
		if got.seq >= 0 {
			sum.keys++
			if got.tomb {
				sum.tombstones++
			}
		}
		switch {
		case a.seq < 0:
		case got.seq > a.seq:
			// A later write, in flight at a kill, was stored.
		case got.seq == a.seq:
			// Checked in the loop: at its acknowledged offset.
		case got.seq < 0 && (a.tomb || st.lastTomb[key] > a.seq):
			// Deleted: the tombstone is gone after delete.retention.ms.
		case got.seq < 0:
			fail("key %q: its latest acknowledged write %d (offset %d) is gone and no later tombstone was written: the key is missing",
				compactKey(key), a.seq, a.offset)
		default:
			fail("key %q: the latest record read is write %d (offset %d), older than the latest acknowledged write %d (offset %d)",
				compactKey(key), got.seq, got.offset, a.seq, a.offset)
		}
	}
	return sum
}
