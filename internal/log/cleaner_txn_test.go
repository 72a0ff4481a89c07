package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// txnWorkload is a log of plain batches and transactional ones of several
// producers, committed, aborted and (at the end) still open.
type txnWorkload struct {
	produced map[int64]kv
	state    map[int64]byte // 'p' plain, 'c' committed, 'a' aborted, 'o' open
	pidOf    map[int64]int64
	markers  map[int64]bool  // marker offset -> commit
	markerOf map[int64]int64 // marker offset -> producer
	txnOf    map[int64]int64 // marker offset -> first offset of its transaction's data, -1 if none
	entries  []AbortedTxn
	open     map[int64]int64   // pid -> first offset of its open transaction
	openOffs map[int64][]int64 // pid -> offsets of its open transaction's records
	seqs     map[int64]int32
	n        int
}

func newTxnWorkload() *txnWorkload {
	return &txnWorkload{produced: map[int64]kv{}, state: map[int64]byte{}, pidOf: map[int64]int64{},
		markers: map[int64]bool{}, markerOf: map[int64]int64{}, txnOf: map[int64]int64{}, open: map[int64]int64{},
		openOffs: map[int64][]int64{}, seqs: map[int64]int32{}}
}

func (w *txnWorkload) lso(end int64) int64 {
	for _, f := range w.open {
		end = min(end, f)
	}
	return end
}

func (w *txnWorkload) records(rng *rand.Rand, keys int) []kv {
	var recs []kv
	for j, size := 0, 1+rng.Intn(4); j < size; j++ {
		w.n++
		recs = append(recs, kv{[]byte(fmt.Sprintf("key-%02d", rng.Intn(keys))), []byte(fmt.Sprintf("value-%d", w.n))})
	}
	return recs
}

func (w *txnWorkload) plain(t testing.TB, l *Log, rng *rand.Rand, keys int, ts int64) {
	t.Helper()
	recs := w.records(rng, keys)
	res, err := l.Append(keyedBatch(t, record.CodecNone, ts, recs))
	if err != nil {
		t.Fatal(err)
	}
	for j, r := range recs {
		w.produced[res.BaseOffset+int64(j)] = r
		w.state[res.BaseOffset+int64(j)] = 'p'
	}
}

func (w *txnWorkload) txnData(t testing.TB, l *Log, rng *rand.Rand, pid int64, keys int, ts int64, codec int) {
	t.Helper()
	recs := w.records(rng, keys)
	rs := make([]record.Record, len(recs))
	for i, r := range recs {
		rs[i] = record.Record{OffsetDelta: int32(i), TimestampDelta: int64(i), Key: r.key, Value: r.value}
	}
	b, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: ts, MaxTimestamp: ts + int64(len(recs)-1),
		Attributes: record.AttrTransactional, ProducerID: pid, ProducerEpoch: 0, BaseSequence: w.seqs[pid], Codec: codec}, rs)
	if err != nil {
		t.Fatal(err)
	}
	w.seqs[pid] += int32(len(recs))
	res, err := l.Append(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.open[pid]; !ok {
		w.open[pid] = res.BaseOffset
	}
	for j, r := range recs {
		off := res.BaseOffset + int64(j)
		w.produced[off] = r
		w.state[off] = 'o'
		w.pidOf[off] = pid
		w.openOffs[pid] = append(w.openOffs[pid], off)
	}
}

func markerBatch(t testing.TB, pid int64, commit bool, ts int64) []byte {
	t.Helper()
	typ := record.ControlAbort
	if commit {
		typ = record.ControlCommit
	}
	key := binary.BigEndian.AppendUint16(nil, 0)
	key = binary.BigEndian.AppendUint16(key, uint16(typ))
	value := binary.BigEndian.AppendUint16(nil, 0)
	value = binary.BigEndian.AppendUint32(value, 0)
	b, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: ts, MaxTimestamp: ts,
		Attributes: record.AttrTransactional | record.AttrControl, ProducerID: pid, ProducerEpoch: 0, BaseSequence: -1},
		[]record.Record{{Key: key, Value: value}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// end writes pid's marker (also when it has no open transaction here, as
// a coordinator may) and indexes an abort, as partition.WriteMarker does.
func (w *txnWorkload) end(t testing.TB, l *Log, pid int64, commit bool, ts int64) {
	t.Helper()
	res, err := l.Append(markerBatch(t, pid, commit, ts))
	if err != nil {
		t.Fatal(err)
	}
	m := res.BaseOffset
	w.markers[m] = commit
	w.markerOf[m] = pid
	first, ok := w.open[pid]
	if !ok {
		w.txnOf[m] = -1
		return
	}
	w.txnOf[m] = first
	st := byte('a')
	if commit {
		st = 'c'
	}
	for _, off := range w.openOffs[pid] {
		w.state[off] = st
	}
	delete(w.open, pid)
	delete(w.openOffs, pid)
	if !commit {
		e := AbortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: m, LastStableOffset: w.lso(m + 1)}
		w.entries = append(w.entries, e)
		if err := l.AppendAborted(e); err != nil {
			t.Fatal(err)
		}
	}
}

// produceTxn writes steps batches and markers of 4 transactional
// producers between plain batches; producer 9 opens a transaction at 60% of
// them that stays open (the last stable offset stays there).
func produceTxn(t testing.TB, l *Log, rng *rand.Rand, steps, keys int, ts int64) *txnWorkload {
	t.Helper()
	w := newTxnWorkload()
	for i := 0; i < steps; i++ {
		if i == steps*6/10 {
			w.txnData(t, l, rng, 9, keys, ts, record.CodecNone)
		}
		pid := int64(1 + rng.Intn(4))
		switch r := rng.Intn(10); {
		case r < 3:
			w.plain(t, l, rng, keys, ts)
		case r < 7:
			codec := record.CodecNone
			if pid == 2 {
				codec = record.CodecSnappy
			}
			w.txnData(t, l, rng, pid, keys, ts, codec)
		default:
			// Aborts are more frequent than commits, and producer 4 always aborts.
			w.end(t, l, pid, pid != 4 && rng.Intn(3) == 0, ts)
		}
	}
	return w
}

// committedLatest is what a read_committed consumer of the log up to lso
// should end with: each key's last plain or committed value below it.
func (w *txnWorkload) committedLatest(lso int64) map[string]int64 {
	out := map[string]int64{}
	offs := make([]int64, 0, len(w.produced))
	for off := range w.produced {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	for _, off := range offs {
		if off < lso && (w.state[off] == 'p' || w.state[off] == 'c') {
			out[string(w.produced[off].key)] = off
		}
	}
	return out
}

// consumeCommitted reads the log below lso as a read_committed consumer
// does (Kafka's CompletedFetch): fetches of random sizes, each with the
// aborted transactions AbortedTxns gives for its range; a transactional
// batch of a producer whose aborted transaction started at or before it is
// skipped until that producer's abort marker. It returns the records it
// hands out, by offset.
func consumeCommitted(t testing.TB, l *Log, lso int64, rng *rand.Rand) map[int64]kv {
	t.Helper()
	out := map[int64]kv{}
	var queue []AbortedTxn
	seen := map[int64]bool{}
	abortedPids := map[int64]bool{}
	off := l.StartOffset()
	for off < lso {
		b, err := l.ReadBatches(off, 64+rng.Intn(1500))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			break
		}
		type batch struct {
			raw []byte
			h   record.Header
		}
		var bs []batch
		it := record.NewIter(b)
		for {
			raw, h, ok := it.Next()
			if !ok || h.BaseOffset >= lso {
				break
			}
			if h.LastOffset() >= off {
				bs = append(bs, batch{raw, h})
			}
		}
		if len(bs) == 0 {
			break
		}
		fetchEnd := min(bs[len(bs)-1].h.LastOffset()+1, lso)
		for _, e := range l.AbortedTxns(off, fetchEnd) {
			if !seen[e.LastOffset] {
				seen[e.LastOffset] = true
				queue = append(queue, e)
			}
		}
		sort.Slice(queue, func(i, j int) bool { return queue[i].FirstOffset < queue[j].FirstOffset })
		for _, bt := range bs {
			h := bt.h
			if h.HasProducer() {
				for len(queue) > 0 && queue[0].FirstOffset <= h.LastOffset() {
					abortedPids[queue[0].ProducerID] = true
					queue = queue[1:]
				}
				if h.IsControl() {
					recs, err := record.Records(bt.raw, h, 1<<20)
					if err != nil {
						t.Fatal(err)
					}
					if len(recs) > 0 {
						if typ, _ := record.ParseControlKey(recs[0].Key); typ == record.ControlAbort {
							delete(abortedPids, h.ProducerID)
						}
					}
					off = h.LastOffset() + 1
					continue
				}
				if h.IsTransactional() && abortedPids[h.ProducerID] {
					off = h.LastOffset() + 1
					continue
				}
			}
			recs, err := record.Records(bt.raw, h, 1<<24)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if o := h.BaseOffset + int64(r.OffsetDelta); o >= off && o < lso {
					out[o] = kv{append([]byte(nil), r.Key...), cloneNil(r.Value)}
				}
			}
			off = h.LastOffset() + 1
		}
	}
	return out
}

// checkTxn verifies a log of w cleaned up to cleanedTo (at most its last
// stable offset lso): records are those produced at their offsets; below
// cleanedTo no aborted record is left and only the latest plain or
// committed record of a key; a read_committed consumer sees exactly the
// latest committed values; every transaction with a batch left still has
// its marker after it and no transaction is left open but the open ones.
func (w *txnWorkload) checkTxn(t testing.TB, l *Log, lso, cleanedTo int64, rng *rand.Rand) {
	t.Helper()
	w.checkTxnKept(t, l, lso, cleanedTo, cleanedTo, rng)
}

// checkTxnKept is checkTxn where only records at or past kept must all be
// there (a crash came during passes up to kept).
func (w *txnWorkload) checkTxnKept(t testing.TB, l *Log, lso, cleanedTo, kept int64, rng *rand.Rand) {
	t.Helper()
	got, _, headers := readLog(t, l)
	latest := w.committedLatest(cleanedTo)
	for off, r := range got {
		if _, ok := w.markers[off]; ok {
			continue
		}
		p, ok := w.produced[off]
		if !ok || !bytes.Equal(p.key, r.key) || !bytes.Equal(p.value, r.value) {
			t.Fatalf("offset %d holds %q=%q, produced %q=%q", off, r.key, r.value, p.key, p.value)
		}
		if off < cleanedTo && w.state[off] == 'a' {
			t.Fatalf("aborted record at %d (%s) still there below %d", off, r.key, cleanedTo)
		}
		if off < cleanedTo && latest[string(r.key)] != off {
			t.Fatalf("record at %d (%s) superseded by %d but still there", off, r.key, latest[string(r.key)])
		}
	}
	for off := range w.produced {
		if _, ok := got[off]; !ok && off >= kept {
			t.Fatalf("record at %d, at or past the cleaned end %d, lost", off, kept)
		}
	}
	// read_committed sees every committed latest value and nothing else.
	want := w.committedLatest(lso)
	seen := consumeCommitted(t, l, lso, rng)
	for off, r := range seen {
		if st := w.state[off]; st != 'p' && st != 'c' {
			t.Fatalf("read_committed consumer got %q=%q at %d (state %c)", r.key, r.value, off, st)
		}
	}
	for k, off := range want {
		if _, ok := seen[off]; !ok {
			t.Fatalf("read_committed consumer missed the latest value of %s at %d", k, off)
		}
	}
	// No marker goes while a batch of its transaction is there; no entry
	// of the transaction index outlives its marker, and an aborted
	// transaction with records left has its entry.
	present := map[int64]bool{}
	for _, h := range headers {
		present[h.BaseOffset] = true
	}
	entries := l.AbortedTxns(0, math.MaxInt64)
	for _, h := range headers {
		if h.IsControl() || !h.IsTransactional() {
			continue
		}
		m := int64(math.MaxInt64)
		for off, pid := range w.markerOf {
			if pid == h.ProducerID && off > h.BaseOffset {
				m = min(m, off)
			}
		}
		if m == math.MaxInt64 {
			continue // an open transaction
		}
		if !present[m] {
			t.Fatalf("marker at %d gone with a batch of its transaction left at %d", m, h.BaseOffset)
		}
		if !w.markers[m] && !slices.ContainsFunc(entries, func(e AbortedTxn) bool {
			return e.LastOffset == m && e.ProducerID == h.ProducerID && e.FirstOffset <= h.BaseOffset
		}) {
			t.Fatalf("aborted batch at %d left without its transaction index entry (marker %d)", h.BaseOffset, m)
		}
	}
	for _, e := range entries {
		if !present[e.LastOffset] || !slices.Contains(w.entries, e) {
			t.Fatalf("transaction index entry %+v without its marker", e)
		}
	}
	// Replaying the headers (partition recovery) finds no open transaction
	// but those that are open, and every marker of a transaction with a
	// batch left is there.
	open := map[int64]int64{}
	for _, h := range headers {
		switch {
		case h.IsControl():
			delete(open, h.ProducerID)
		case h.IsTransactional():
			if _, ok := open[h.ProducerID]; !ok {
				open[h.ProducerID] = h.BaseOffset
			}
		}
	}
	for pid, first := range open {
		if w.open[pid] != first {
			t.Fatalf("producer %d has a transaction open at %d after cleaning (open: %v)", pid, first, w.open)
		}
	}
	if len(open) != len(w.open) {
		t.Fatalf("open transactions %v after cleaning, want %v", open, w.open)
	}
}

func txnCleanOptions(lso, markerBound int64) CleanOptions {
	return CleanOptions{Map: NewOffsetMap(1<<20, 0.9), Force: true, LastStableOffset: lso, MarkerBound: markerBound}
}

func countMarkers(t testing.TB, l *Log) int {
	_, _, headers := readLog(t, l)
	n := 0
	for _, h := range headers {
		if h.IsControl() {
			n++
		}
	}
	return n
}

// TestCleanTransactions: aborted records go, committed ones compact like
// plain ones, nothing from the last stable offset on is touched, markers
// go only once their transaction's records are gone and their delete
// horizon passed, and the transaction index stays right for read_committed
// fetches of any range, through reopening.
func TestCleanTransactions(t *testing.T) {
	for _, seed := range []int64{1, 2, 3, 4} {
		// Even seeds keep the last batch of each producer, emptied (as
		// partition.Clean does): an aborted one keeps its marker and entry.
		keepEmpty := seed%2 == 0
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			mem := vfs.NewMem()
			now := time.UnixMilli(1_000_000)
			cfg := compactConfig()
			cfg.SegmentBytes = 1024
			cfg.DeleteRetentionMs = 1000
			l, err := Open(Options{FS: mem, Dir: "p-0", Config: cfg, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			w := produceTxn(t, l, rng, 400, 12, now.UnixMilli())
			lso := w.lso(l.EndOffset())
			if lso >= l.EndOffset() || len(w.entries) == 0 {
				t.Fatalf("workload: lso %d end %d, %d aborts", lso, l.EndOffset(), len(w.entries))
			}
			w.checkTxn(t, l, lso, 0, rng)
			tail, err := l.ReadBatches(lso, 1<<24)
			if err != nil {
				t.Fatal(err)
			}
			tail = slices.Clone(tail)
			markers := countMarkers(t, l)
			opts := func(lso int64) CleanOptions {
				o := txnCleanOptions(lso, math.MaxInt64)
				if keepEmpty {
					_, _, headers := readLog(t, l)
					last := map[int64]int64{}
					for _, h := range headers {
						if h.HasProducer() && !h.IsControl() {
							last[h.ProducerID] = h.LastOffset()
						}
					}
					o.KeepEmpty = func(h *record.Header) bool { return last[h.ProducerID] == h.LastOffset() }
				}
				return o
			}

			res, err := l.Clean(context.Background(), opts(lso))
			if err != nil {
				t.Fatal(err)
			}
			if res.EndOffset > lso || res.EndOffset < lso-400 || res.SegmentsIn == 0 {
				t.Fatalf("pass: %+v, lso %d", res, lso)
			}
			w.checkTxn(t, l, lso, res.EndOffset, rng)
			after, _ := l.ReadBatches(lso, 1<<24)
			if !bytes.Equal(after, tail) {
				t.Fatal("the log changed at or past the last stable offset")
			}
			if got := countMarkers(t, l); got != markers {
				t.Fatalf("%d markers after the first pass, want all %d (none has a delete horizon yet)", got, markers)
			}
			// Passes after the delete horizon remove markers of transactions
			// with no record left (the first pass removed their records).
			for i := 0; i < 3; i++ {
				now = now.Add(2 * time.Second)
				if res, err = l.Clean(context.Background(), opts(lso)); err != nil {
					t.Fatal(err)
				}
				w.checkTxn(t, l, lso, res.EndOffset, rng)
			}
			after, _ = l.ReadBatches(lso, 1<<24)
			if !bytes.Equal(after, tail) {
				t.Fatal("the log changed at or past the last stable offset")
			}
			if got := countMarkers(t, l); got >= markers {
				t.Fatalf("%d markers of %d left after the delete horizon", got, markers)
			}
			// A marker bound keeps markers: nothing left to remove below it
			// is removed by more passes either.
			left := countMarkers(t, l)
			l.Close()
			l, err = Open(Options{FS: mem, Dir: "p-0", Config: cfg, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			w.checkTxn(t, l, lso, res.EndOffset, rng)
			if got := countMarkers(t, l); got != left {
				t.Fatalf("%d markers after reopening, want %d", got, left)
			}
			// No .txnindex of a segment that is gone.
			names, _ := mem.List("p-0")
			for _, n := range names {
				if strings.HasSuffix(n, ".txnindex") {
					base, _ := parseSegmentName(strings.TrimSuffix(n, ".txnindex") + ".log")
					if !slices.ContainsFunc(l.segments, func(s *segment) bool { return s.baseOffset == base }) {
						t.Fatalf("orphaned %s", n)
					}
				}
			}
			// Once the transaction ends, all of it cleans.
			for pid := range w.open {
				w.end(t, l, pid, pid%2 == 0, now.UnixMilli())
			}
			w.plain(t, l, rng, 12, now.UnixMilli())
			l.mu.Lock()
			err = l.roll()
			l.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			end := l.EndOffset()
			for i := 0; i < 2; i++ {
				now = now.Add(2 * time.Second)
				res, err = l.Clean(context.Background(), opts(end))
				if err != nil {
					t.Fatal(err)
				}
				w.checkTxn(t, l, end, res.EndOffset, rng)
			}
			if keepEmpty {
				// Producer 9's last batch was aborted: it stays, emptied,
				// with its marker and its entry (checkTxn).
				_, _, headers := readLog(t, l)
				if !slices.ContainsFunc(headers, func(h record.Header) bool {
					return h.ProducerID == 9 && !h.IsControl() && h.Size() == record.HeaderSize
				}) {
					t.Fatal("no empty transactional batch kept")
				}
			}
		})
	}
}

// TestCleanTransactionsMarkerBound: markers at or past the bound stay.
func TestCleanTransactionsMarkerBound(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	now := time.UnixMilli(1_000_000)
	cfg := compactConfig()
	cfg.SegmentBytes = 1024
	l, err := Open(Options{FS: vfs.NewMem(), Dir: "p-0", Config: cfg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w := produceTxn(t, l, rng, 300, 12, now.UnixMilli())
	lso := w.lso(l.EndOffset())
	markers := countMarkers(t, l)
	for i := 0; i < 3; i++ {
		res, err := l.Clean(context.Background(), txnCleanOptions(lso, 0))
		if err != nil {
			t.Fatal(err)
		}
		w.checkTxn(t, l, lso, res.EndOffset, rng)
		now = now.Add(time.Hour)
	}
	if got := countMarkers(t, l); got != markers {
		t.Fatalf("%d markers of %d left with a marker bound of 0", got, markers)
	}
}

// TestCleanTxnCrashAtEveryStep takes a crash image before every mutating
// filesystem operation of passes over a transactional log (whose segments
// have .txnindex files that merge) and checks that each recovers with every
// committed record, the aborted ones still known as aborted, and that the
// recovered log cleans and reopens fine.
func TestCleanTxnCrashAtEveryStep(t *testing.T) {
	mutating := map[vfs.Op]bool{vfs.OpCreate: true, vfs.OpWrite: true, vfs.OpSync: true, vfs.OpTruncate: true,
		vfs.OpRemove: true, vfs.OpRename: true, vfs.OpSyncDir: true}
	txnOps := 0
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		var counting atomic.Bool
		var n atomic.Int64
		var snap *vfs.MemFS
		fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
			if counting.Load() && mutating[op] {
				if strings.Contains(path, ".txnindex") {
					txnOps++
				}
				if n.Add(1) == int64(step) {
					snap = mem.Crash()
				}
			}
			return nil
		})
		now := time.UnixMilli(1_000_000)
		cfg := compactConfig()
		cfg.SegmentBytes = 1024
		cfg.DeleteRetentionMs = 0
		opts := Options{FS: fs, Dir: "p-0", Config: cfg, Now: func() time.Time { return now }}
		l, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewSource(11))
		w := produceTxn(t, l, rng, 250, 12, now.UnixMilli())
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		synced := l.EndOffset()
		lso := w.lso(synced)
		counting.Store(true)
		// Two passes: the second removes markers (delete.retention.ms 0).
		var cleanedTo int64
		for i := 0; i < 2; i++ {
			res, err := l.Clean(context.Background(), txnCleanOptions(lso, math.MaxInt64))
			if err != nil {
				t.Fatal(err)
			}
			cleanedTo = res.EndOffset
			now = now.Add(time.Second)
		}
		counting.Store(false)
		l.Close()
		if snap == nil {
			if txnOps == 0 {
				t.Fatal("no pass touched a .txnindex")
			}
			t.Logf("crashed at each of %d steps (%d on .txnindex files)", step-1, txnOps)
			return
		}
		txnOps = 0
		l2, err := Open(Options{FS: snap, Dir: "p-0", Config: cfg, RecoveryPoint: synced, Now: opts.Now})
		if err != nil {
			t.Fatalf("step %d: reopen: %v", step, err)
		}
		if l2.EndOffset() != synced {
			t.Fatalf("step %d: end %d after crash, want %d", step, l2.EndOffset(), synced)
		}
		// The crash came somewhere in the passes: records below the
		// cleaned end may or may not be cleaned yet.
		w.checkTxnKept(t, l2, lso, 0, cleanedTo, rng)
		names, _ := snap.List("p-0")
		for _, name := range names {
			if strings.HasSuffix(name, swapSuffix) || strings.HasSuffix(name, cleanedSuffix) {
				t.Fatalf("step %d: %s left after recovery", step, name)
			}
		}
		for i := 0; i < 2; i++ {
			if _, err := l2.Clean(context.Background(), txnCleanOptions(lso, math.MaxInt64)); err != nil {
				t.Fatalf("step %d: clean after recovery: %v", step, err)
			}
			now = now.Add(time.Second)
		}
		w.checkTxn(t, l2, lso, cleanedTo, rng)
		l2.Close()
	}
}

// TestCleanTxnFaultAtEveryStep fails each filesystem operation of a pass
// over a transactional log in turn: the log stays readable and right, and
// recovers after a crash or a restart.
func TestCleanTxnFaultAtEveryStep(t *testing.T) {
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		var counting atomic.Bool
		var n atomic.Int64
		injected := false
		fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
			if counting.Load() && op != vfs.OpRead && n.Add(1) == int64(step) {
				injected = true
				return vfs.ErrInjected
			}
			return nil
		})
		now := time.UnixMilli(1_000_000)
		cfg := compactConfig()
		cfg.SegmentBytes = 1024
		cfg.DeleteRetentionMs = 0
		nowFn := func() time.Time { return now }
		l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, Now: nowFn})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewSource(12))
		w := produceTxn(t, l, rng, 250, 12, now.UnixMilli())
		l.Sync()
		synced := l.EndOffset()
		lso := w.lso(synced)
		// A first pass without faults: the faulted one removes markers too.
		res, err := l.Clean(context.Background(), txnCleanOptions(lso, math.MaxInt64))
		if err != nil {
			t.Fatal(err)
		}
		cleanedTo := res.EndOffset
		now = now.Add(time.Second)
		counting.Store(true)
		_, err = l.Clean(context.Background(), txnCleanOptions(lso, math.MaxInt64))
		counting.Store(false)
		if !injected {
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("failed each of %d steps", step-1)
			l.Close()
			return
		}
		if err == nil {
			t.Fatalf("step %d: injected fault not reported", step)
		}
		w.checkTxnKept(t, l, lso, 0, cleanedTo, rng)
		crashed := mem.Crash()
		l.Close()
		for name, dfs := range map[string]vfs.FS{"crash": crashed, "restart": mem} {
			l2, err := Open(Options{FS: dfs, Dir: "p-0", Config: cfg, RecoveryPoint: synced, Now: nowFn})
			if err != nil {
				t.Fatalf("step %d %s: reopen: %v", step, name, err)
			}
			if l2.EndOffset() != synced {
				t.Fatalf("step %d %s: end %d, want %d", step, name, l2.EndOffset(), synced)
			}
			w.checkTxnKept(t, l2, lso, 0, cleanedTo, rng)
			l2.Close()
		}
	}
}

// TestRecoveryCompletesTxnIndexSwaps plants the files of interrupted swaps
// of a segment with a transaction index by hand, the new .txnindex renamed
// into place before the log among them.
func TestRecoveryCompletesTxnIndexSwaps(t *testing.T) {
	mem := vfs.NewMem()
	cfg := compactConfig()
	cfg.SegmentBytes = 1024
	rng := rand.New(rand.NewSource(21))
	l := open(t, mem, cfg, 0)
	w := produceTxn(t, l, rng, 300, 12, 0)
	lso := w.lso(l.EndOffset())
	l.Close()
	oldEntries := func(lo, hi int64) []AbortedTxn {
		var out []AbortedTxn
		for _, e := range w.entries {
			if e.LastOffset >= lo && e.LastOffset < hi {
				out = append(out, e)
			}
		}
		return out
	}
	// The first new segment of a pass on a copy, with entries.
	cp := mem.Crash()
	lc := open(t, cp, cfg, 0)
	res, err := lc.Clean(context.Background(), txnCleanOptions(lso, math.MaxInt64))
	if err != nil {
		t.Fatal(err)
	}
	var ns *segment
	for _, s := range lc.segments {
		if len(s.aborted) > 0 {
			ns = s
			break
		}
	}
	if ns == nil {
		t.Fatal("no cleaned segment with a transaction index")
	}
	base, next, newAborted := ns.baseOffset, ns.nextOffset, slices.Clone(ns.aborted)
	newLog := copyFile(t, cp, "p-0/"+segmentName(base, ".log"))
	newTxn := copyFile(t, cp, "p-0/"+segmentName(base, ".txnindex"))
	lc.Close()
	if len(oldEntries(base, next)) == 0 {
		t.Fatal("old segments without entries")
	}
	for _, tc := range []struct {
		name     string
		plant    map[string][]byte
		del      []string
		complete bool
	}{
		{"txnindex cleaned only", map[string][]byte{segmentName(base, ".txnindex.cleaned"): newTxn}, nil, false},
		{"txnindex swap only", map[string][]byte{segmentName(base, ".txnindex.swap"): newTxn}, nil, false},
		{"swap, old segments there", map[string][]byte{segmentName(base, ".log.swap"): newLog, segmentName(base, ".txnindex.swap"): newTxn}, nil, true},
		{"swap, txnindex renamed", map[string][]byte{segmentName(base, ".log.swap"): newLog, segmentName(base, ".txnindex"): newTxn}, nil, true},
		{"swap, old segments half gone", map[string][]byte{segmentName(base, ".log.swap"): newLog, segmentName(base, ".txnindex.swap"): newTxn},
			[]string{segmentName(base, ".log"), segmentName(base, ".txnindex")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := mem.Crash()
			for n, b := range tc.plant {
				f, _ := fs.Create("p-0/" + n)
				f.Write(b)
				f.Sync()
				f.Close()
			}
			for _, n := range tc.del {
				fs.Remove("p-0/" + n)
			}
			fs.SyncDir("p-0")
			l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			names, _ := fs.List("p-0")
			for _, n := range names {
				if strings.HasSuffix(n, swapSuffix) || strings.HasSuffix(n, cleanedSuffix) {
					t.Fatalf("%s left", n)
				}
			}
			var got []AbortedTxn
			for _, s := range l.segments {
				if s.baseOffset >= base && s.baseOffset < next {
					got = append(got, s.aborted...)
				}
			}
			want := oldEntries(base, next)
			if tc.complete {
				want = newAborted
				if l.segments[0].baseOffset > base || !slices.ContainsFunc(l.segments, func(s *segment) bool {
					return s.baseOffset == base && s.size.Load() == int64(len(newLog))
				}) {
					t.Fatal("swap not completed")
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("entries %v after recovery, want %v", got, want)
			}
			if tc.complete {
				w.checkTxnKept(t, l, lso, 0, res.EndOffset, rng)
			} else {
				w.checkTxn(t, l, lso, 0, rng)
			}
		})
	}
}

// TestCleanAbortsWhenTxnIndexChanges: an entry indexed in a segment the
// pass is swapping (after it copied the transaction index) aborts the swap;
// the entry stays, in memory and on disk.
func TestCleanAbortsWhenTxnIndexChanges(t *testing.T) {
	mem := vfs.NewMem()
	cfg := compactConfig()
	cfg.SegmentBytes = 1024
	var l *Log
	var once sync.Once
	var entry AbortedTxn
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if op == vfs.OpRename && strings.HasSuffix(path, ".log"+cleanedSuffix) {
			once.Do(func() {
				if err := l.AppendAborted(entry); err != nil {
					t.Error(err)
				}
			})
		}
		return nil
	})
	l = open(t, fs, cfg, 0)
	produce(t, l, rand.New(rand.NewSource(8)), 400, 20, record.CodecNone, 0)
	l.mu.RLock()
	entry = AbortedTxn{ProducerID: 5, FirstOffset: l.segments[0].baseOffset, LastOffset: l.segments[0].nextOffset - 1, LastStableOffset: l.segments[0].nextOffset}
	l.mu.RUnlock()
	_, err := l.Clean(context.Background(), txnCleanOptions(math.MaxInt64, math.MaxInt64))
	if !errors.Is(err, ErrCleanAborted) {
		t.Fatalf("clean with the transaction index changed under it: %v", err)
	}
	names, _ := mem.List("p-0")
	for _, n := range names {
		if strings.HasSuffix(n, swapSuffix) || strings.HasSuffix(n, cleanedSuffix) {
			t.Fatalf("%s left", n)
		}
	}
	if got := l.AbortedTxns(0, math.MaxInt64); !slices.Equal(got, []AbortedTxn{entry}) {
		t.Fatalf("entries %v, want %v", got, entry)
	}
	l.Close()
	l = open(t, mem.Crash(), cfg, 0)
	defer l.Close()
	if got := l.AbortedTxns(0, math.MaxInt64); !slices.Equal(got, []AbortedTxn{entry}) {
		t.Fatalf("entries %v after reopening, want %v", got, entry)
	}
	// The next pass drops it: producer 5 has no batch in the log.
	if _, err := l.Clean(context.Background(), txnCleanOptions(math.MaxInt64, math.MaxInt64)); err != nil {
		t.Fatal(err)
	}
	if got := l.AbortedTxns(0, math.MaxInt64); len(got) != 0 {
		t.Fatalf("entries %v after a pass, want none", got)
	}
}
