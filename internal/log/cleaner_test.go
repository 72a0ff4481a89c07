package log

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// kv is one produced record: a nil value is a tombstone.
type kv struct {
	key, value []byte
}

// keyedBatch builds a batch of records with keys and values.
func keyedBatch(t testing.TB, codec int, ts int64, recs []kv) []byte {
	t.Helper()
	rs := make([]record.Record, len(recs))
	for i, r := range recs {
		rs[i] = record.Record{OffsetDelta: int32(i), TimestampDelta: int64(i), Key: r.key, Value: r.value}
	}
	b, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: ts, MaxTimestamp: ts + int64(len(recs)-1),
		ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Codec: codec}, rs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readLog returns every record in the log by offset, checking that offsets
// increase, and the batch headers.
func readLog(t testing.TB, l *Log) (map[int64]kv, []int64, []record.Header) {
	t.Helper()
	got := map[int64]kv{}
	var order []int64
	var headers []record.Header
	off := l.StartOffset()
	for off < l.EndOffset() {
		b, err := l.ReadBatches(off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			break
		}
		it := record.NewIter(b)
		for {
			raw, h, ok := it.Next()
			if !ok {
				break
			}
			if h.LastOffset() < off {
				t.Fatalf("batch %d..%d read at %d", h.BaseOffset, h.LastOffset(), off)
			}
			headers = append(headers, h)
			recs, err := record.Records(raw, h, 1<<24)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				o := h.BaseOffset + int64(r.OffsetDelta)
				if len(order) > 0 && o <= order[len(order)-1] {
					t.Fatalf("offset %d after %d", o, order[len(order)-1])
				}
				order = append(order, o)
				got[o] = kv{append([]byte(nil), r.Key...), cloneNil(r.Value)}
			}
			off = h.LastOffset() + 1
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
	}
	return got, order, headers
}

func cloneNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// workload appends n records over keys keys (a share of them tombstones) in
// batches, and returns what was produced by offset.
type workload struct {
	produced map[int64]kv
	latest   map[string]int64   // key -> offset of its last record
	offsets  map[string][]int64 // key -> offsets of its records, increasing
}

// latestBelow is the offset of key's last record below end, -1 if none.
func (w *workload) latestBelow(key string, end int64) int64 {
	last := int64(-1)
	for _, o := range w.offsets[key] {
		if o < end {
			last = o
		}
	}
	return last
}

func produce(t testing.TB, l *Log, rng *rand.Rand, n, keys int, codec int, ts int64) *workload {
	t.Helper()
	return (&workload{produced: map[int64]kv{}, latest: map[string]int64{}, offsets: map[string][]int64{}}).add(t, l, rng, n, keys, codec, ts)
}

func (w *workload) add(t testing.TB, l *Log, rng *rand.Rand, n, keys int, codec int, ts int64) *workload {
	t.Helper()
	for i := 0; i < n; {
		size := 1 + rng.Intn(8)
		var recs []kv
		for j := 0; j < size && i < n; j, i = j+1, i+1 {
			k := []byte(fmt.Sprintf("key-%04d", rng.Intn(keys)))
			var v []byte
			if rng.Intn(10) != 0 {
				v = []byte(fmt.Sprintf("value-%d", i))
			}
			recs = append(recs, kv{k, v})
		}
		res, err := l.Append(keyedBatch(t, codec, ts, recs))
		if err != nil {
			t.Fatal(err)
		}
		for j, r := range recs {
			w.produced[res.BaseOffset+int64(j)] = r
			w.latest[string(r.key)] = res.BaseOffset + int64(j)
			w.offsets[string(r.key)] = append(w.offsets[string(r.key)], res.BaseOffset+int64(j))
		}
	}
	return w
}

// check verifies a log after cleaning up to cleanedTo: every record is one
// produced at its offset, every key's latest record is there (unless it is
// a tombstone below cleanedTo and tombstonesGone), and below cleanedTo only
// the last record of each key below it is left.
func (w *workload) check(t testing.TB, l *Log, cleanedTo int64, tombstonesGone bool) {
	t.Helper()
	got, _, _ := readLog(t, l)
	for off, r := range got {
		p, ok := w.produced[off]
		if !ok || string(p.key) != string(r.key) || string(p.value) != string(r.value) || (p.value == nil) != (r.value == nil) {
			t.Fatalf("offset %d holds %q=%q, produced %q=%q", off, r.key, r.value, p.key, p.value)
		}
		if last := w.latestBelow(string(r.key), cleanedTo); off < cleanedTo && last != off {
			t.Fatalf("offset %d (%s) superseded by %d but still there", off, r.key, last)
		}
		if off < cleanedTo && tombstonesGone && r.value == nil {
			t.Fatalf("tombstone at %d still there", off)
		}
	}
	for k, off := range w.latest {
		_, ok := got[off]
		if !ok && (w.produced[off].value != nil || !tombstonesGone || off >= cleanedTo) {
			t.Fatalf("latest record of %s at %d lost", k, off)
		}
	}
}

func compactConfig() Config {
	return Config{SegmentBytes: 4096, IndexIntervalBytes: 256, Compact: true, NoDelete: true,
		DeleteRetentionMs: 1000, MinCleanableDirtyRatio: 0.5}
}

func clean(t testing.TB, l *Log, force bool) CleanResult {
	t.Helper()
	res, err := l.Clean(context.Background(), CleanOptions{LastStableOffset: math.MaxInt64, MarkerBound: math.MaxInt64, Map: NewOffsetMap(1<<20, 0.9), Force: force})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestCleanKeepsLastRecordOfEveryKey(t *testing.T) {
	for _, codec := range []int{record.CodecNone, record.CodecGzip, record.CodecSnappy, record.CodecLZ4, record.CodecZstd} {
		t.Run(fmt.Sprint(codec), func(t *testing.T) {
			fs := vfs.NewMem()
			now := time.UnixMilli(1_000_000)
			l, err := Open(Options{FS: fs, Dir: "p-0", Config: compactConfig(), Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			w := produce(t, l, rand.New(rand.NewSource(int64(codec))), 1500, 60, codec, now.UnixMilli())
			before := l.Segments()
			end := l.EndOffset()
			activeBase := l.segments[len(l.segments)-1].baseOffset
			st := l.CleanerState()
			if !st.Due || st.DirtyRatio != 1 || st.FirstUncleanableOffset != activeBase {
				t.Fatalf("before cleaning: %+v", st)
			}
			res := clean(t, l, false)
			if !res.Cleaned || res.EndOffset != activeBase || res.SegmentsIn == 0 || res.RecordsRemoved == 0 {
				t.Fatalf("clean: %+v", res)
			}
			if l.EndOffset() != end || l.Segments() > before {
				t.Fatalf("end %d (was %d), %d segments (were %d)", l.EndOffset(), end, l.Segments(), before)
			}
			w.check(t, l, activeBase, false)
			// Batches keep their codec.
			_, _, hs := readLog(t, l)
			for _, h := range hs {
				if int(h.Codec()) != codec && h.RecordCount > 0 {
					t.Fatalf("batch at %d has codec %d, want %d", h.BaseOffset, h.Codec(), codec)
				}
			}
			if st := l.CleanerState(); st.Due || st.DirtyBytes != 0 || st.FirstDirtyOffset != activeBase {
				t.Fatalf("after cleaning: %+v", st)
			}
			// Tombstones go once their horizon has passed.
			now = now.Add(2 * time.Second)
			if st := l.CleanerState(); !st.Due {
				t.Fatalf("tombstones past their horizon but not due: %+v", st)
			}
			clean(t, l, false)
			w.check(t, l, activeBase, true)
			if l.Segments() >= before {
				t.Fatalf("%d segments after two passes, %d before: small segments not merged", l.Segments(), before)
			}
			if st := l.CleanerState(); st.Due {
				t.Fatalf("still due after dropping tombstones: %+v", st)
			}
			// What a reopen (clean or after a crash) sees is the same.
			want, _, _ := readLog(t, l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			for _, clean := range []bool{true, false} {
				l2, err := Open(Options{FS: fs, Dir: "p-0", Config: compactConfig(), Clean: clean})
				if err != nil {
					t.Fatal(err)
				}
				got, _, _ := readLog(t, l2)
				if fmt.Sprint(got) != fmt.Sprint(want) || l2.EndOffset() != end {
					t.Fatalf("reopen (clean %v): %d records, end %d; want %d, %d", clean, len(got), l2.EndOffset(), len(want), end)
				}
				l2.Close()
			}
		})
	}
}

// TestCleanSmallMapTakesSeveralPasses: a map too small for the dirty section
// stops early; later passes finish the job.
//
// Tombstones are kept for the whole test (delete.retention.ms an hour): with
// the default of these tests, 1 s, a slow run (the race detector under CI
// load) dropped them between passes, which changed what later passes could
// do and once left a pass with nothing it could clean (seen in CI).
func TestCleanSmallMapTakesSeveralPasses(t *testing.T) {
	fs := vfs.NewMem()
	cfg := compactConfig()
	cfg.DeleteRetentionMs = time.Hour.Milliseconds()
	l := open(t, fs, cfg, 0)
	defer l.Close()
	w := produce(t, l, rand.New(rand.NewSource(7)), 3000, 400, record.CodecNone, 0)
	activeBase := l.segments[len(l.segments)-1].baseOffset
	m := NewOffsetMap(100*offsetMapSlotBytes, 0.9) // 64 slots, 57 keys
	for pass := 0; ; pass++ {
		if pass > 200 {
			t.Fatal("no end to cleaning")
		}
		res, err := l.Clean(context.Background(), CleanOptions{LastStableOffset: math.MaxInt64, MarkerBound: math.MaxInt64, Map: m, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		if m.Len() > m.Capacity() || m.Capacity() != 57 {
			t.Fatalf("map holds %d, capacity %d", m.Len(), m.Capacity())
		}
		w.check(t, l, res.EndOffset, false)
		if res.EndOffset == activeBase {
			break
		}
		if pass > 0 && res.EndOffset <= res.FirstDirtyOffset {
			t.Fatalf("pass %d made no progress: %+v", pass, res)
		}
	}
	w.check(t, l, activeBase, false)
}

func TestCleanCompactionLags(t *testing.T) {
	fs := vfs.NewMem()
	now := time.UnixMilli(10_000_000)
	cfg := compactConfig()
	cfg.MinCompactionLagMs = 60_000
	cfg.MinCleanableDirtyRatio = 1
	l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Old records, then young ones.
	w := produce(t, l, rand.New(rand.NewSource(1)), 500, 50, record.CodecNone, now.UnixMilli()-120_000)
	l.mu.Lock()
	l.roll()
	l.mu.Unlock()
	youngFrom := l.EndOffset()
	w.add(t, l, rand.New(rand.NewSource(2)), 500, 50, record.CodecNone, now.UnixMilli())
	st := l.CleanerState()
	if st.FirstUncleanableOffset != youngFrom {
		t.Fatalf("first uncleanable %d, want %d (min.compaction.lag.ms)", st.FirstUncleanableOffset, youngFrom)
	}
	if st.Due || st.DirtyRatio != 1 {
		t.Fatalf("due with min.cleanable.dirty.ratio 1: %+v", st)
	}
	res := clean(t, l, true)
	if res.EndOffset != youngFrom {
		t.Fatalf("cleaned to %d, want %d", res.EndOffset, youngFrom)
	}
	got, _, _ := readLog(t, l)
	for off, r := range w.produced {
		if _, ok := got[off]; !ok && off >= youngFrom {
			t.Fatalf("young record %d (%s) cleaned within min.compaction.lag.ms", off, r.key)
		}
	}
	w.check(t, l, youngFrom, false)
	// max.compaction.lag.ms makes a log due whatever its ratio.
	cfg.MinCompactionLagMs = 0
	cfg.MaxCompactionLagMs = 30_000
	l.SetConfig(cfg)
	if st := l.CleanerState(); st.Due {
		t.Fatalf("due before max.compaction.lag.ms: %+v", st)
	}
	now = now.Add(time.Minute)
	if st := l.CleanerState(); !st.Due {
		t.Fatalf("records older than max.compaction.lag.ms but not due: %+v", st)
	}
}

func TestCleanKeepsEmptyBatchOfActiveProducer(t *testing.T) {
	fs := vfs.NewMem()
	l := open(t, fs, compactConfig(), 0)
	defer l.Close()
	producerBatch := func(pid int64, seq int32, recs []kv) []byte {
		rs := make([]record.Record, len(recs))
		for i, r := range recs {
			rs[i] = record.Record{OffsetDelta: int32(i), Key: r.key, Value: r.value}
		}
		b, err := record.BuildBatch(record.BatchSpec{ProducerID: pid, ProducerEpoch: 3, BaseSequence: seq, Codec: record.CodecLZ4}, rs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := []kv{{[]byte("a"), []byte("1")}, {[]byte("b"), []byte("1")}}
	r1, _ := l.Append(producerBatch(7, 0, a)) // last batch of producer 7
	r2, _ := l.Append(producerBatch(8, 0, a)) // producer 8 writes again below
	l.Append(producerBatch(8, 2, []kv{{[]byte("a"), []byte("2")}, {[]byte("b"), []byte("2")}, {[]byte("c"), []byte("2")}}))
	l.mu.Lock()
	l.roll()
	l.mu.Unlock()
	l.Append(producerBatch(9, 0, a))
	_, err := l.Clean(context.Background(), CleanOptions{LastStableOffset: math.MaxInt64, MarkerBound: math.MaxInt64, Map: NewOffsetMap(1<<20, 0.9), Force: true,
		KeepEmpty: func(h *record.Header) bool { return h.ProducerID == 7 && h.LastOffset() == r1.LastOffset }})
	if err != nil {
		t.Fatal(err)
	}
	_, _, hs := readLog(t, l)
	if len(hs) != 3 {
		t.Fatalf("%d batches: %+v", len(hs), hs)
	}
	e := hs[0]
	if e.RecordCount != 0 || e.ProducerID != 7 || e.ProducerEpoch != 3 || e.BaseSequence != 0 ||
		e.BaseOffset != r1.BaseOffset || e.LastOffset() != r1.LastOffset || e.Codec() != record.CodecNone {
		t.Fatalf("empty batch kept for producer 7: %+v", e)
	}
	if hs[1].BaseOffset <= r2.LastOffset || hs[1].ProducerID != 8 || hs[1].RecordCount != 3 {
		t.Fatalf("second batch %+v", hs[1])
	}
}

// TestCleanPartialBatchKeepsHeaderFields: a batch that loses some records
// keeps its offsets, producer fields, codec and record timestamps.
func TestCleanPartialBatchKeepsHeaderFields(t *testing.T) {
	fs := vfs.NewMem()
	l := open(t, fs, compactConfig(), 0)
	defer l.Close()
	rs := []record.Record{
		{OffsetDelta: 0, TimestampDelta: 5, Key: []byte("x"), Value: []byte("old")},
		{OffsetDelta: 1, TimestampDelta: 7, Key: []byte("y"), Value: []byte("keep"),
			Headers: []record.RecordHeader{{Key: "h", Value: []byte("v")}}},
		{OffsetDelta: 2, TimestampDelta: 9, Key: []byte("z"), Value: []byte("old")},
	}
	b, _ := record.BuildBatch(record.BatchSpec{FirstTimestamp: 1000, MaxTimestamp: 1009, ProducerID: 4, ProducerEpoch: 1,
		BaseSequence: 10, Codec: record.CodecZstd, PartitionLeaderEpoch: 6}, rs)
	l.Append(b)
	l.Append(keyedBatch(t, record.CodecNone, 2000, []kv{{[]byte("x"), []byte("new")}, {[]byte("z"), nil}}))
	l.mu.Lock()
	l.roll()
	l.mu.Unlock()
	clean(t, l, true)
	raw, err := l.ReadBatches(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := record.Parse(raw)
	recs, _ := record.Records(raw, h, 1<<20)
	if h.BaseOffset != 0 || h.LastOffsetDelta != 2 || h.ProducerID != 4 || h.ProducerEpoch != 1 || h.BaseSequence != 10 ||
		h.Codec() != record.CodecZstd || h.LeaderEpoch != 6 || h.MaxTimestamp != 1007 || len(recs) != 1 {
		t.Fatalf("cleaned batch %+v, %d records", h, len(recs))
	}
	if r := recs[0]; r.OffsetDelta != 1 || h.BaseTimestamp+r.TimestampDelta != 1007 || string(r.Value) != "keep" ||
		len(r.Headers) != 1 || string(r.Headers[0].Value) != "v" {
		t.Fatalf("kept record %+v", r)
	}
	// The tombstone's batch carries a delete horizon; record times hold.
	_, _, hs := readLog(t, l)
	th := hs[1]
	if th.Attributes&record.AttrDeleteHorizon == 0 || th.RecordCount != 2 {
		t.Fatalf("tombstone batch %+v", th)
	}
	r2, _ := l.ReadBatches(th.BaseOffset, 1<<20)
	trecs, _ := record.Records(r2[:th.Size()], th, 1<<20)
	if th.BaseTimestamp+trecs[1].TimestampDelta != 2001 || trecs[1].Value != nil {
		t.Fatalf("tombstone %+v at base %d", trecs[1], th.BaseTimestamp)
	}
}

func TestRetentionOnlyWithDeletePolicy(t *testing.T) {
	fs := vfs.NewMem()
	now := time.UnixMilli(1_000_000)
	cfg := Config{SegmentBytes: 200, RetentionMs: 1000, RetentionBytes: -1, Compact: true, NoDelete: true}
	l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 20; i++ {
		l.Append(keyedBatch(t, record.CodecNone, now.UnixMilli()-5000, []kv{{[]byte(fmt.Sprint(i)), []byte("v")}}))
	}
	if n := l.Retain(); n != 0 {
		t.Fatalf("compact policy: retention deleted %d segments", n)
	}
	cfg.NoDelete = false
	l.SetConfig(cfg)
	if n := l.Retain(); n == 0 {
		t.Fatal("compact,delete policy: retention deleted nothing")
	}
}

// TestReadersAndWritersDuringCleaning: reads and appends go on while passes
// run; every read sees records as produced, offsets increasing.
func TestReadersAndWritersDuringCleaning(t *testing.T) {
	fs := vfs.NewMem()
	cfg := compactConfig()
	cfg.FileDeleteDelay = 50 * time.Millisecond
	l := open(t, fs, cfg, 0)
	defer l.Close()
	var mu sync.Mutex
	produced := map[int64]kv{}
	appendSome := func(rng *rand.Rand, n int) {
		for i := 0; i < n; i++ {
			recs := []kv{{[]byte(fmt.Sprintf("k%d", rng.Intn(50))), []byte(fmt.Sprintf("v%d", rng.Int()))}}
			mu.Lock()
			res, err := l.Append(keyedBatch(t, record.CodecSnappy, 0, recs))
			if err != nil {
				mu.Unlock()
				t.Error(err)
				return
			}
			produced[res.BaseOffset] = recs[0]
			mu.Unlock()
		}
	}
	appendSome(rand.New(rand.NewSource(1)), 2000)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		appendSome(rand.New(rand.NewSource(2)), 2000)
	}()
	go func() {
		defer wg.Done()
		for !stop.Load() {
			off := l.StartOffset()
			last := int64(-1)
			for off < l.EndOffset() {
				b, err := l.ReadBatches(off, 8192)
				if err != nil {
					t.Error(err)
					return
				}
				if len(b) == 0 {
					break
				}
				it := record.NewIter(b)
				for {
					raw, h, ok := it.Next()
					if !ok {
						break
					}
					recs, err := record.Records(raw, h, 1<<20)
					if err != nil {
						t.Error(err)
						return
					}
					for _, r := range recs {
						o := h.BaseOffset + int64(r.OffsetDelta)
						mu.Lock()
						p := produced[o]
						mu.Unlock()
						if o <= last || string(p.key) != string(r.Key) || string(p.value) != string(r.Value) {
							t.Errorf("read %d=%s:%s after %d; produced %s:%s", o, r.Key, r.Value, last, p.key, p.value)
							return
						}
						last = o
					}
					off = h.LastOffset() + 1
				}
			}
		}
	}()
	for i := 0; i < 20; i++ {
		if _, err := l.Clean(context.Background(), CleanOptions{LastStableOffset: math.MaxInt64, MarkerBound: math.MaxInt64, Map: NewOffsetMap(1<<20, 0.9), Force: true}); err != nil {
			t.Error(err)
		}
	}
	stop.Store(true)
	wg.Wait()
}

// TestCleanCrashAtEveryStep takes a crash image of the filesystem before
// every write, sync, rename, remove and directory sync of a cleaning pass
// and checks that each recovers to a log with every surviving record.
func TestCleanCrashAtEveryStep(t *testing.T) {
	mutating := map[vfs.Op]bool{vfs.OpCreate: true, vfs.OpWrite: true, vfs.OpSync: true, vfs.OpTruncate: true,
		vfs.OpRemove: true, vfs.OpRename: true, vfs.OpSyncDir: true}
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		var counting atomic.Bool
		var n atomic.Int64
		var snap *vfs.MemFS
		fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
			if counting.Load() && mutating[op] && n.Add(1) == int64(step) {
				snap = mem.Crash()
			}
			return nil
		})
		cfg := compactConfig()
		cfg.SegmentBytes = 1024
		l := open(t, fs, cfg, 0)
		w := produce(t, l, rand.New(rand.NewSource(3)), 250, 20, record.CodecNone, 0)
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		synced := l.EndOffset()
		counting.Store(true)
		clean(t, l, true)
		counting.Store(false)
		l.Close()
		if snap == nil {
			if step < 10 {
				t.Fatalf("only %d steps", step)
			}
			t.Logf("crashed at each of %d steps", step-1)
			return
		}
		l2, err := Open(Options{FS: snap, Dir: "p-0", Config: cfg, RecoveryPoint: synced})
		if err != nil {
			t.Fatalf("step %d: reopen: %v", step, err)
		}
		if l2.EndOffset() != synced {
			t.Fatalf("step %d: end %d after crash, want %d", step, l2.EndOffset(), synced)
		}
		w.check(t, l2, 0, false)
		names, _ := snap.List("p-0")
		for _, name := range names {
			if strings.HasSuffix(name, swapSuffix) || strings.HasSuffix(name, cleanedSuffix) {
				t.Fatalf("step %d: %s left after recovery", step, name)
			}
		}
		// The recovered log cleans and reopens fine.
		clean(t, l2, true)
		w.check(t, l2, l2.segments[len(l2.segments)-1].baseOffset, false)
		l2.Close()
	}
}

// TestCleanFaultAtEveryStep fails each filesystem operation of a pass in
// turn: the pass reports it, the log stays readable, and it recovers after
// a crash or a restart with every surviving record.
func TestCleanFaultAtEveryStep(t *testing.T) {
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
		cfg := compactConfig()
		cfg.SegmentBytes = 1024
		l := open(t, fs, cfg, 0)
		w := produce(t, l, rand.New(rand.NewSource(4)), 250, 20, record.CodecSnappy, 0)
		l.Sync()
		synced := l.EndOffset()
		counting.Store(true)
		_, err := l.Clean(context.Background(), CleanOptions{LastStableOffset: math.MaxInt64, MarkerBound: math.MaxInt64, Map: NewOffsetMap(1<<20, 0.9), Force: true})
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
		w.check(t, l, 0, false) // still readable in the process
		crashed := mem.Crash()
		l.Close()
		for name, dfs := range map[string]vfs.FS{"crash": crashed, "restart": mem} {
			l2, err := Open(Options{FS: dfs, Dir: "p-0", Config: cfg, RecoveryPoint: synced})
			if err != nil {
				t.Fatalf("step %d %s: reopen: %v", step, name, err)
			}
			if l2.EndOffset() != synced {
				t.Fatalf("step %d %s: end %d, want %d", step, name, l2.EndOffset(), synced)
			}
			w.check(t, l2, 0, false)
			l2.Close()
		}
	}
}

// TestRecoveryCompletesOrRollsBackSwaps plants the files of interrupted
// swaps by hand.
func TestRecoveryCompletesOrRollsBackSwaps(t *testing.T) {
	mem := vfs.NewMem()
	cfg := compactConfig()
	cfg.SegmentBytes = 1024
	l := open(t, mem, cfg, 0)
	w := produce(t, l, rand.New(rand.NewSource(5)), 400, 20, record.CodecNone, 0)
	l.Close()
	names, _ := mem.List("p-0")
	var bases []int64
	for _, n := range names {
		if b, ok := parseSegmentName(n); ok {
			bases = append(bases, b)
		}
	}
	if len(bases) < 4 {
		t.Fatalf("%d segments", len(bases))
	}
	// A clean copy of the first three segments, made by a pass on a copy.
	cp := mem.Crash()
	lc := open(t, cp, cfg, 0)
	lc.mu.Lock()
	segs := lc.segments[:3]
	lc.mu.Unlock()
	c := &cleaning{l: lc, ctx: context.Background(), cfg: lc.cfg, m: NewOffsetMap(1<<20, 0.9), res: &CleanResult{},
		readBuf: make([]byte, 4096), writeBuf: make([]byte, 0, 4096), horizon: -1}
	c.end, _ = c.buildMap(lc.segments[:len(lc.segments)-1], 0, lc.segments[len(lc.segments)-1].baseOffset)
	if err := c.cleanGroup(segs); err != nil {
		t.Fatal(err)
	}
	newLog := copyFile(t, cp, "p-0/"+segmentName(bases[0], ".log"))
	newIndex := copyFile(t, cp, "p-0/"+segmentName(bases[0], ".index"))
	lc.Close()

	for _, tc := range []struct {
		name  string
		plant map[string][]byte
		del   []string
	}{
		{"cleaned only", map[string][]byte{segmentName(bases[0], ".log.cleaned"): newLog}, nil},
		{"index swap only", map[string][]byte{segmentName(bases[0], ".index.swap"): newIndex}, nil},
		{"swap, old segments there", map[string][]byte{segmentName(bases[0], ".log.swap"): newLog, segmentName(bases[0], ".index.swap"): newIndex}, nil},
		{"swap, old segments half gone", map[string][]byte{segmentName(bases[0], ".log.swap"): newLog},
			[]string{segmentName(bases[0], ".log"), segmentName(bases[0], ".index"), segmentName(bases[1], ".log")}},
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
			w.check(t, l, 0, false)
			names, _ := fs.List("p-0")
			for _, n := range names {
				if strings.HasSuffix(n, swapSuffix) || strings.HasSuffix(n, cleanedSuffix) {
					t.Fatalf("%s left", n)
				}
			}
			if strings.Contains(tc.name, "swap,") {
				// The new segment replaced those below its last offset.
				if l.segments[0].baseOffset != bases[0] || l.segments[0].size.Load() != int64(len(newLog)) ||
					l.segments[1].baseOffset < l.segments[0].nextOffset {
					t.Fatalf("segments %d (%d bytes), %d after completing the swap", l.segments[0].baseOffset,
						l.segments[0].size.Load(), l.segments[1].baseOffset)
				}
			}
		})
	}
}

func copyFile(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := f.Size()
	b := make([]byte, size)
	if n, err := f.ReadAt(b, 0); n < len(b) {
		t.Fatal(err)
	}
	return b
}

func TestCleanAbortsWhenRetentionRemovesSegments(t *testing.T) {
	mem := vfs.NewMem()
	cfg := compactConfig()
	cfg.NoDelete = false
	cfg.RetentionMs = -1
	cfg.RetentionBytes = -1
	cfg.FileDeleteDelay = 0
	var l *Log
	var cut int64
	var once sync.Once
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if op == vfs.OpCreate && strings.HasSuffix(path, cleanedSuffix) {
			once.Do(func() {
				if _, err := l.DeleteRecordsBefore(cut, l.EndOffset()); err != nil {
					t.Error(err)
				}
			})
		}
		return nil
	})
	l = open(t, fs, cfg, 0)
	defer l.Close()
	produce(t, l, rand.New(rand.NewSource(6)), 600, 30, record.CodecNone, 0)
	l.mu.RLock()
	cut = l.segments[1].nextOffset
	l.mu.RUnlock()
	_, err := l.Clean(context.Background(), CleanOptions{LastStableOffset: math.MaxInt64, MarkerBound: math.MaxInt64, Map: NewOffsetMap(1<<20, 0.9), Force: true})
	if !errors.Is(err, ErrCleanAborted) {
		t.Fatalf("clean with segments deleted under it: %v", err)
	}
	names, _ := mem.List("p-0")
	for _, n := range names {
		if strings.HasSuffix(n, swapSuffix) || strings.HasSuffix(n, cleanedSuffix) {
			t.Fatalf("%s left", n)
		}
	}
	readLog(t, l)
}

func TestOffsetMap(t *testing.T) {
	m := NewOffsetMap(1<<20, 0.9)
	if m.Capacity() != 29491 { // 1 MiB / 24 bytes, down to 32768 slots, 90% of them
		t.Fatalf("capacity %d", m.Capacity())
	}
	for i := 0; i < 10000; i++ {
		if !m.Put([]byte(fmt.Sprint(i%5000)), int64(i)) {
			t.Fatalf("put %d failed", i)
		}
	}
	if m.Len() != 5000 || m.LatestOffset() != 9999 {
		t.Fatalf("len %d latest %d", m.Len(), m.LatestOffset())
	}
	for i := 0; i < 5000; i++ {
		if off, ok := m.Get([]byte(fmt.Sprint(i))); !ok || off != int64(5000+i) {
			t.Fatalf("get %d: %d %v", i, off, ok)
		}
	}
	if _, ok := m.Get([]byte("absent")); ok {
		t.Fatal("found an absent key")
	}
	small := NewOffsetMap(10*offsetMapSlotBytes, 0.9) // 8 slots, 7 keys
	for i := 0; i < 7; i++ {
		if !small.Put([]byte{byte(i)}, int64(i)) {
			t.Fatalf("put %d into a map of %d", i, small.Capacity())
		}
	}
	if small.Put([]byte{99}, 99) || !small.Put([]byte{3}, 100) {
		t.Fatal("a full map took a new key or refused an update")
	}
	m.Reset()
	if m.Len() != 0 || m.LatestOffset() != -1 {
		t.Fatal("reset")
	}
}

func TestThrottler(t *testing.T) {
	now := time.Unix(0, 0)
	var slept time.Duration
	th := NewThrottler(1000, func() time.Time { return now }, func(_ context.Context, d time.Duration) error {
		slept += d
		now = now.Add(d)
		return nil
	})
	ctx := context.Background()
	th.Wait(ctx, 1000) // the bucket starts full
	if slept != 0 {
		t.Fatalf("slept %v with a full bucket", slept)
	}
	th.Wait(ctx, 500)
	th.Wait(ctx, 2000)
	if slept != 2500*time.Millisecond {
		t.Fatalf("slept %v for 2500 bytes at 1000/s, want 2.5s", slept)
	}
	th.SetRate(1.7976931348623157e308) // Kafka's default: unlimited
	slept = 0
	th.Wait(ctx, 1<<40)
	if slept != 0 {
		t.Fatalf("unlimited throttle slept %v", slept)
	}
	var nilT *Throttler
	if err := nilT.Wait(ctx, 10); err != nil {
		t.Fatal(err)
	}
}
