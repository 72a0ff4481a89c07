package log

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// truncModel is what a log written by truncWorkload holds: every batch's
// offsets, values and largest timestamp, in order.
type truncModel struct {
	batches []truncBatch
}

type truncBatch struct {
	base, last int64
	maxTs      int64
	values     []string
}

// upTo is the model of the log truncated at off (a batch boundary).
func (m truncModel) upTo(off int64) truncModel {
	var out truncModel
	for _, b := range m.batches {
		if b.base < off {
			out.batches = append(out.batches, b)
		}
	}
	return out
}

func (m truncModel) values() []string {
	var out []string
	for _, b := range m.batches {
		out = append(out, b.values...)
	}
	return out
}

func (m truncModel) end() int64 {
	if len(m.batches) == 0 {
		return 0
	}
	return m.batches[len(m.batches)-1].last + 1
}

// maxTimestamp is the largest timestamp and the last offset of the first
// batch holding it, as Log.MaxTimestamp reports them.
func (m truncModel) maxTimestamp() (int64, int64) {
	ts, off := int64(-1), int64(-1)
	for _, b := range m.batches {
		if b.maxTs > ts {
			ts, off = b.maxTs, b.last
		}
	}
	return ts, off
}

// truncWorkload appends n batches of one to three records whose
// timestamps go up and down, syncing now and then.
func truncWorkload(t testing.TB, l *Log, rng *rand.Rand, n int, m *truncModel) {
	t.Helper()
	for i := 0; i < n; i++ {
		k := 1 + rng.Intn(3)
		ts := 10_000 + int64(rng.Intn(500))
		tag := fmt.Sprintf("%d.%d", len(m.batches), rng.Intn(1000))
		res := mustAppend(t, l, batch(t, tag, k, ts))
		b := truncBatch{base: res.BaseOffset, last: res.LastOffset, maxTs: ts + int64(k) - 1}
		for j := 0; j < k; j++ {
			b.values = append(b.values, fmt.Sprintf("%s-%d", tag, j))
		}
		m.batches = append(m.batches, b)
		if rng.Intn(5) == 0 {
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// checkModel compares the log with the model: values, offsets, the
// largest timestamp and lookups by time.
func checkModel(t testing.TB, l *Log, m truncModel, what string) {
	t.Helper()
	if l.EndOffset() != m.end() {
		t.Fatalf("%s: end offset %d, want %d", what, l.EndOffset(), m.end())
	}
	if got, want := values(t, l), m.values(); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
		t.Fatalf("%s: %d values, want %d (first difference at %d)", what, len(got), len(want), firstDiff(got, want))
	}
	if ts, off := l.MaxTimestamp(); len(m.batches) > 0 {
		wantTs, wantOff := m.maxTimestamp()
		if ts != wantTs || off != wantOff {
			t.Fatalf("%s: max timestamp %d at %d, want %d at %d", what, ts, off, wantTs, wantOff)
		}
	}
	for q := int64(9_990); q <= 10_510; q += 37 {
		off, gotTs, found, err := l.OffsetForTimestamp(q)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		wantOff, wantTs, wantFound := firstAtOrAfter(t, l, q)
		if found != wantFound || off != wantOff || gotTs != wantTs {
			t.Fatalf("%s: offset for %d: %d at %d (%v), want %d at %d (%v)", what, q, off, gotTs, found, wantOff, wantTs, wantFound)
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestTruncateTo cuts a log of many segments (closed and flushed, closed
// and not yet flushed, active) at batch boundaries in each kind of segment,
// at a segment's base and at its end, and checks the log left: its
// content, its largest timestamp and lookups by time, appends continuing at
// the offset, and the same after a clean reopen and after a crash.
func TestTruncateTo(t *testing.T) {
	cfg := Config{SegmentBytes: 700, IndexIntervalBytes: 100}
	build := func(t *testing.T, seed int64) (*vfs.MemFS, *Log, truncModel, []int64) {
		rng := rand.New(rand.NewSource(seed))
		fs := vfs.NewMem()
		l := open(t, fs, cfg, 0)
		var m truncModel
		truncWorkload(t, l, rng, 60, &m)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		// Reopened cleanly: closed segments read their index files, the
		// active one has its indexes in memory; more appends roll
		// segments that stay unflushed until a sync.
		l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, Clean: true})
		if err != nil {
			t.Fatal(err)
		}
		truncWorkload(t, l, rng, 20, &m)
		l.mu.RLock()
		var bases []int64
		for _, s := range l.segments {
			bases = append(bases, s.baseOffset)
		}
		l.mu.RUnlock()
		return fs, l, m, bases
	}
	_, l, m, bases := build(t, 1)
	l.Close()
	if len(bases) < 6 {
		t.Fatalf("%d segments, want many", len(bases))
	}
	var cuts []int64
	for _, b := range m.batches {
		cuts = append(cuts, b.base)
	}
	// Every segment base, plus batches in the middle of segments.
	var points []int64
	points = append(points, bases[1:]...)
	for i := 3; i < len(cuts); i += 7 {
		points = append(points, cuts[i])
	}
	points = append(points, cuts[len(cuts)-1], cuts[1])
	for _, off := range points {
		t.Run(fmt.Sprint(off), func(t *testing.T) {
			fs, l, m, _ := build(t, 1)
			durable := l.DurableOffset()
			if err := l.TruncateTo(off); err != nil {
				t.Fatal(err)
			}
			want := m.upTo(off)
			checkModel(t, l, want, "truncated")
			if d := l.DurableOffset(); d != off {
				t.Fatalf("durable offset %d after truncating to %d, want all of it", d, off)
			}
			crashed := fs.Crash()
			// Appends continue at the offset and roll as before.
			rng := rand.New(rand.NewSource(off))
			truncWorkload(t, l, rng, 15, &want)
			if want.batches[len(want.upTo(off).batches)].base != off {
				t.Fatalf("the first append after the truncation went to %d, want %d", want.batches[len(want.upTo(off).batches)].base, off)
			}
			checkModel(t, l, want, "appended after")
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l2, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, Clean: true})
			if err != nil {
				t.Fatal(err)
			}
			checkModel(t, l2, want, "clean reopen")
			l2.Close()
			// A crash right after the truncation: the stale recovery
			// point the broker may still have checkpointed is above it.
			l3, err := Open(Options{FS: crashed, Dir: "p-0", Config: cfg, RecoveryPoint: durable})
			if err != nil {
				t.Fatal(err)
			}
			checkModel(t, l3, m.upTo(off), "crash after the truncation")
			mustAppend(t, l3, batch(t, "x", 1, 10_000))
			l3.Close()
		})
	}
	t.Run("inside a batch", func(t *testing.T) {
		_, l, m, _ := build(t, 1)
		defer l.Close()
		var b truncBatch
		for _, b = range m.batches {
			if b.last > b.base {
				break
			}
		}
		if err := l.CheckTruncation(b.base + 1); !errors.Is(err, ErrNotBatchBoundary) {
			t.Fatalf("check a truncation inside the batch %d..%d: %v", b.base, b.last, err)
		}
		for _, ok := range []int64{b.base, b.last + 1, 0, m.end(), m.end() + 1} {
			if err := l.CheckTruncation(ok); err != nil {
				t.Fatalf("check a truncation to %d: %v", ok, err)
			}
		}
		if err := l.TruncateTo(b.base + 1); !errors.Is(err, ErrNotBatchBoundary) {
			t.Fatalf("truncate inside the batch %d..%d: %v", b.base, b.last, err)
		}
		checkModel(t, l, m, "after a refused truncation")
	})
	t.Run("past the end", func(t *testing.T) {
		_, l, m, _ := build(t, 1)
		defer l.Close()
		for _, off := range []int64{m.end(), m.end() + 5} {
			if err := l.TruncateTo(off); err != nil {
				t.Fatal(err)
			}
		}
		checkModel(t, l, m, "after truncating at the end")
		if err := l.TruncateTo(-1); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("truncate to -1: %v", err)
		}
	})
	t.Run("to the log start", func(t *testing.T) {
		fs, l, _, _ := build(t, 1)
		if err := l.TruncateTo(0); err != nil {
			t.Fatal(err)
		}
		checkModel(t, l, truncModel{}, "truncated to 0")
		if l.Segments() != 1 || l.StartOffset() != 0 {
			t.Fatalf("%d segments from %d after truncating to 0", l.Segments(), l.StartOffset())
		}
		l.Close()
		names, _ := fs.List("p-0")
		if len(names) != 1 || names[0] != segmentName(0, ".log") {
			t.Fatalf("files left: %v", names)
		}
	})
}

// TestTruncateTxnIndex: the transaction index entries whose markers are
// cut go with them, durably; earlier ones stay.
func TestTruncateTxnIndex(t *testing.T) {
	fs := vfs.NewMem()
	cfg := Config{SegmentBytes: 300}
	l := open(t, fs, cfg, 0)
	var entries []AbortedTxn
	for i := 0; i < 8; i++ {
		first := mustAppend(t, l, batch(t, "x", 2, 0)).BaseOffset
		m := mustAppend(t, l, marker(t, int64(i), false)).BaseOffset
		e := AbortedTxn{ProducerID: int64(i), FirstOffset: first, LastOffset: m, LastStableOffset: m + 1}
		if err := l.AppendAborted(e); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// Cut at a transaction's marker: its entry goes, its records stay.
	cut := entries[5].LastOffset
	if err := l.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	if got := l.AbortedTxns(0, l.EndOffset()+100); !reflect.DeepEqual(got, entries[:5]) {
		t.Fatalf("after the truncation: %+v, want %+v", got, entries[:5])
	}
	// The marker again, with its entry: appended as before.
	m := mustAppend(t, l, marker(t, 5, false)).BaseOffset
	if m != cut {
		t.Fatalf("marker at %d, want %d", m, cut)
	}
	if err := l.AppendAborted(entries[5]); err != nil {
		t.Fatal(err)
	}
	crashed := fs.Crash()
	l2, err := Open(Options{FS: crashed, Dir: "p-0", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if got := l2.AbortedTxns(0, 1000); !reflect.DeepEqual(got, entries[:5]) && !reflect.DeepEqual(got, entries[:6]) {
		t.Fatalf("after a crash: %+v", got)
	}
	l.Close()
}

// syncSkipper passes everything to its FS, except that while on, File.Sync
// and SyncDir return success without making anything durable: a log that
// forgot the fsyncs of its truncation.
type syncSkipper struct {
	vfs.FS
	on *atomic.Bool
}

type skipSyncFile struct {
	vfs.File
	on *atomic.Bool
}

func (f skipSyncFile) Sync() error {
	if f.on.Load() {
		return nil
	}
	return f.File.Sync()
}

func (fs syncSkipper) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return skipSyncFile{f, fs.on}, nil
}

func (fs syncSkipper) Create(name string) (vfs.File, error) { return fs.wrap(fs.FS.Create(name)) }
func (fs syncSkipper) OpenAppend(name string) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenAppend(name))
}

func (fs syncSkipper) SyncDir(dir string) error {
	if fs.on.Load() {
		return nil
	}
	return fs.FS.SyncDir(dir)
}

// truncationSurvivesCrash writes a log of several segments, syncs it,
// truncates it to a batch in an earlier segment, cuts the power and
// reopens; it reports how the reopened log differs from the truncated one.
// skip makes the truncation's fsyncs no-ops.
func truncationSurvivesCrash(t *testing.T, skip bool) error {
	mem := vfs.NewMem()
	on := new(atomic.Bool)
	cfg := Config{SegmentBytes: 500, IndexIntervalBytes: 64}
	l := open(t, syncSkipper{mem, on}, cfg, 0)
	var m truncModel
	truncWorkload(t, l, rand.New(rand.NewSource(3)), 40, &m)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	durable := l.DurableOffset()
	off := m.batches[len(m.batches)/3].base
	on.Store(skip)
	if err := l.TruncateTo(off); err != nil {
		t.Fatal(err)
	}
	on.Store(false)
	crashed := mem.Crash()
	l.Close()
	l2, err := Open(Options{FS: crashed, Dir: "p-0", Config: cfg, RecoveryPoint: durable})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if l2.EndOffset() != off {
		return fmt.Errorf("the log ends at %d after the power cut, truncated to %d (it ended at %d): the suffix came back", l2.EndOffset(), off, m.end())
	}
	if got, want := values(t, l2), m.upTo(off).values(); !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%d values after the power cut, want %d", len(got), len(want))
	}
	return nil
}

// TestTruncationIsDurable: a power cut right after TruncateTo returns
// brings back none of the suffix; the twin, whose truncation skips its
// fsyncs, shows the check catches a truncation that is not durable.
func TestTruncationIsDurable(t *testing.T) {
	if err := truncationSurvivesCrash(t, false); err != nil {
		t.Fatal(err)
	}
	if err := truncationSurvivesCrash(t, true); err == nil {
		t.Fatal("a truncation without its fsyncs survived the power cut: the check cannot fail")
	} else {
		t.Logf("without the fsyncs: %v", err)
	}
}

// TestTruncateCrashAtEveryStep takes a crash image before every write,
// truncate, fsync, create, remove and directory fsync of a truncation (and
// of a TruncateFullyAndStartAt) and checks that each recovers a prefix of the
// log that holds everything below the truncation offset: never a log with
// a hole, never less than was durable.
func TestTruncateCrashAtEveryStep(t *testing.T) {
	mutating := map[vfs.Op]bool{vfs.OpCreate: true, vfs.OpWrite: true, vfs.OpSync: true, vfs.OpTruncate: true,
		vfs.OpRemove: true, vfs.OpRename: true, vfs.OpSyncDir: true}
	cfg := Config{SegmentBytes: 400, IndexIntervalBytes: 64}
	for _, full := range []bool{false, true} {
		for step := 1; ; step++ {
			mem := vfs.NewMem()
			var (
				counting atomic.Bool
				n        atomic.Int64
				mu       sync.Mutex
				snap     *vfs.MemFS
			)
			fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
				if counting.Load() && mutating[op] && n.Add(1) == int64(step) {
					mu.Lock()
					snap = mem.Crash()
					mu.Unlock()
				}
				return nil
			})
			l := open(t, fs, cfg, 0)
			var m truncModel
			truncWorkload(t, l, rand.New(rand.NewSource(5)), 40, &m)
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			durable := l.DurableOffset()
			off := m.batches[len(m.batches)/2].base
			after := m.upTo(off)
			counting.Store(true)
			var err error
			if full {
				off = m.end() + 100
				after = truncModel{}
				err = l.TruncateFullyAndStartAt(off)
			} else {
				err = l.TruncateTo(off)
			}
			if err != nil {
				t.Fatal(err)
			}
			counting.Store(false)
			l.Close()
			mu.Lock()
			s := snap
			mu.Unlock()
			if s == nil {
				if step < 5 {
					t.Fatalf("only %d steps", step)
				}
				t.Logf("full=%v: crashed at each of %d steps", full, step-1)
				break
			}
			what := fmt.Sprintf("full=%v step %d", full, step)
			l2, err := Open(Options{FS: s, Dir: "p-0", Config: cfg, RecoveryPoint: durable})
			if err != nil {
				t.Fatalf("%s: reopen: %v", what, err)
			}
			got := values(t, l2)
			all := m.values()
			switch {
			case full && len(got) == 0:
				// Emptied (the new segment at off, or none yet).
			case len(got) < len(after.values()) || len(got) > len(all):
				t.Fatalf("%s: %d values after the crash, want between %d and %d", what, len(got), len(after.values()), len(all))
			case !reflect.DeepEqual(got, all[:len(got)]):
				t.Fatalf("%s: the log after the crash is not a prefix of the log before (first difference at %d)", what, firstDiff(got, all))
			}
			mustAppend(t, l2, batch(t, "after", 1, 0))
			l2.Close()
		}
	}
}

// TestTruncateFullyAndStartAt: the log is emptied and starts at the offset,
// above or below its old end (even at an old segment's base), durably;
// appends continue there.
func TestTruncateFullyAndStartAt(t *testing.T) {
	for _, start := range []int64{0, 17, 1000} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			mem := vfs.NewMem()
			cfg := Config{SegmentBytes: 400, IndexIntervalBytes: 64}
			l := open(t, mem, cfg, 0)
			var m truncModel
			truncWorkload(t, l, rand.New(rand.NewSource(9)), 30, &m)
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := l.TruncateFullyAndStartAt(start); err != nil {
				t.Fatal(err)
			}
			if l.StartOffset() != start || l.EndOffset() != start || l.Segments() != 1 || l.DurableOffset() != start {
				t.Fatalf("start %d, end %d, %d segments, durable %d; want %d, %d, 1, %d",
					l.StartOffset(), l.EndOffset(), l.Segments(), l.DurableOffset(), start, start, start)
			}
			if got := values(t, l); len(got) != 0 {
				t.Fatalf("%d values left", len(got))
			}
			if ts, off := l.MaxTimestamp(); ts != -1 || off != -1 {
				t.Fatalf("max timestamp %d at %d in an empty log", ts, off)
			}
			if got := l.AbortedTxns(0, 1<<40); len(got) != 0 {
				t.Fatalf("aborted transactions left: %+v", got)
			}
			crashed := mem.Crash()
			res := mustAppend(t, l, batch(t, "a", 2, 10_000))
			if res.BaseOffset != start {
				t.Fatalf("first append at %d, want %d", res.BaseOffset, start)
			}
			l.Close()
			// The broker's log start checkpoint may still say 0.
			l2, err := Open(Options{FS: crashed, Dir: "p-0", Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			if l2.StartOffset() != start || l2.EndOffset() != start {
				t.Fatalf("after a crash: start %d, end %d, want %d", l2.StartOffset(), l2.EndOffset(), start)
			}
			names, _ := crashed.List("p-0")
			if len(names) != 1 || names[0] != segmentName(start, ".log") {
				t.Fatalf("files after a crash: %v", names)
			}
		})
	}
}

// TestAppendAsFollower: batches keep the offsets they carry, gaps (a
// cleaned leader log) included; one below the log end offset is refused;
// a gap wider than a segment can index rolls at the batch. A clean reopen
// and a crash keep the offsets; a truncation into a gap ends the log there.
func TestAppendAsFollower(t *testing.T) {
	at := func(base int64, tag string, n int) []byte {
		b := batch(t, tag, n, 0)
		record.SetBaseOffset(b, base)
		return b
	}
	wantBases := []int64{0, 3, 10, 11, 1 << 32}
	for _, crash := range []bool{false, true} {
		mem := vfs.NewMem()
		l := open(t, mem, Config{}, 0)
		for i, base := range wantBases {
			n := []int{3, 2, 1, 4, 2}[i]
			res, err := l.AppendAsFollower(at(base, fmt.Sprint(base), n))
			if err != nil {
				t.Fatal(err)
			}
			if res.BaseOffset != base || res.LastOffset != base+int64(n)-1 || l.EndOffset() != res.LastOffset+1 {
				t.Fatalf("batch at %d: %+v, end %d", base, res, l.EndOffset())
			}
		}
		if l.Segments() != 2 {
			t.Fatalf("%d segments, want a roll at the batch 2^32 offsets on", l.Segments())
		}
		if _, err := l.AppendAsFollower(at(5, "back", 1)); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("batch below the end: %v", err)
		}
		if _, err := l.AppendAsFollower(at(l.EndOffset()-1, "back", 1)); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("batch overlapping the end: %v", err)
		}
		fs := mem
		if crash {
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			fs = mem.Crash()
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err := Open(Options{FS: fs, Dir: "p-0", Clean: !crash})
		if err != nil {
			t.Fatal(err)
		}
		var bases []int64
		if err := l.WalkHeaders(0, func(h record.Header, _ record.ControlType) error {
			bases = append(bases, h.BaseOffset)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(bases, wantBases) || l.EndOffset() != 1<<32+2 {
			t.Fatalf("crash=%v: batches at %v, end %d; want %v, %d", crash, bases, l.EndOffset(), wantBases, int64(1<<32+2))
		}
		// A truncation into the gap: appends continue at the offset.
		if err := l.TruncateTo(7); err != nil {
			t.Fatal(err)
		}
		if l.EndOffset() != 7 || l.Segments() != 1 {
			t.Fatalf("end %d and %d segments after truncating into a gap, want 7 and 1", l.EndOffset(), l.Segments())
		}
		if res := mustAppend(t, l, batch(t, "x", 1, 0)); res.BaseOffset != 7 {
			t.Fatalf("append after truncating into a gap at %d", res.BaseOffset)
		}
		if got, want := values(t, l), []string{"0-0", "0-1", "0-2", "3-0", "3-1", "x-0"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("values %v, want %v", got, want)
		}
		l.Close()
	}
}

// TestTruncateAbortsCleaning: a truncation does not wait for a cleaning pass
// to finish its work: the pass gives up at its next read or write.
func TestTruncateAbortsCleaning(t *testing.T) {
	mem := vfs.NewMem()
	cfg := compactConfig()
	cfg.SegmentBytes = 300
	l := open(t, mem, cfg, 0)
	defer l.Close()
	rng := rand.New(rand.NewSource(2))
	produce(t, l, rng, 200, 5, record.CodecNone, 0)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	var off int64
	if err := l.WalkHeaders(0, func(h record.Header, _ record.ControlType) error {
		if h.BaseOffset <= l.EndOffset()/2 {
			off = h.BaseOffset
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	throttle := NewThrottler(1, nil, func(ctx context.Context, _ time.Duration) error {
		once.Do(func() {
			close(entered)
			<-release
		})
		return nil
	})
	cleaned := make(chan error, 1)
	go func() {
		_, err := l.Clean(context.Background(), CleanOptions{LastStableOffset: math.MaxInt64, MarkerBound: math.MaxInt64,
			Map: NewOffsetMap(1<<16, 0.9), Force: true, Throttle: throttle})
		cleaned <- err
		once.Do(func() { close(entered) }) // a pass that never read fails below
	}()
	<-entered
	truncated := make(chan error, 1)
	go func() { truncated <- l.TruncateTo(off) }()
	for l.truncating.Load() == 0 {
		runtime.Gosched()
	}
	close(release)
	if err := <-cleaned; !errors.Is(err, ErrCleanAborted) {
		t.Fatalf("cleaning during a truncation: %v, want ErrCleanAborted", err)
	}
	if err := <-truncated; err != nil {
		t.Fatal(err)
	}
	names, _ := mem.List("p-0")
	for _, n := range names {
		if strings.Contains(n, cleanedSuffix) || strings.Contains(n, swapSuffix) {
			t.Fatalf("cleaning left %s", n)
		}
	}
}
