package log

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// This file uses only the package's exported API, so that it also runs
// against older versions of the package for before/after figures.

// tinyBatch is a one-record batch of about 80 bytes.
func tinyBatch(t testing.TB, i int, ts int64) []byte {
	t.Helper()
	b, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: ts, MaxTimestamp: ts, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Value: []byte(fmt.Sprintf("value-%08d", i))}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestClosedSegmentIndexesHeapBounded: the indexes of closed segments are
// read from their files on demand, so the heap a log holds for them does
// not grow with their entries: only the active segment's are in memory.
// Measured after the segments were rolled and synced, and after a clean
// reopen. Real files: the in-memory FS would hold the data on the heap.
func TestClosedSegmentIndexesHeapBounded(t *testing.T) {
	const (
		segments     = 16
		segmentBytes = 512 << 10
		interval     = 32 // index.interval.bytes: an entry for about every batch
		// perSegment bounds the heap a closed segment may hold: its
		// struct and file handles, nothing per index entry. Each segment
		// has more than 6,000 entries (over 48 KiB in the .index alone).
		perSegment = 8 << 10
	)
	dir := t.TempDir()
	cfg := Config{SegmentBytes: segmentBytes, IndexIntervalBytes: interval}
	ts := time.Now().UnixMilli()
	before := heapInUse()
	l, err := Open(Options{FS: vfs.OS(), Dir: dir, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; l.Segments() <= segments; i++ {
		if _, err := l.Append(tinyBatch(t, i, ts+int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	entries := indexEntries(t, dir)
	live := int64(heapInUse()) - int64(before)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	before = heapInUse()
	l, err = Open(Options{FS: vfs.OS(), Dir: dir, Config: cfg, Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	reopened := int64(heapInUse()) - int64(before)
	n := l.Segments()
	runtime.KeepAlive(l)
	l.Close()
	t.Logf("%d segments, %d offset index entries: heap %d KiB (%d B a segment) live after rolls, %d KiB (%d B a segment) after reopen",
		n, entries, live>>10, live/int64(n), reopened>>10, reopened/int64(n))
	if entries < segments*6000 {
		t.Fatalf("only %d index entries in %d segments", entries, n)
	}
	for what, heap := range map[string]int64{"after rolls": live, "after reopen": reopened} {
		if heap > int64(n)*perSegment+(256<<10) {
			t.Errorf("%s the log holds %d KiB for %d segments with %d index entries: want at most %d B a segment",
				what, heap>>10, n, entries, perSegment)
		}
	}
}

// indexEntries counts the offset index entries of the segments in dir.
func indexEntries(t testing.TB, dir string) int {
	names, err := filepath.Glob(filepath.Join(dir, "*.index"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range names {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		n += int(fi.Size()) / 8
	}
	return n
}

// TestMeasureRollStall (SLUICE_LOG_MEASURE=1) appends one-record batches
// to a log on real files in SLUICE_LOG_MEASURE_DIR (default a temporary
// directory), with another goroutine calling SyncTo as acks=all producers
// do (unless SLUICE_LOG_MEASURE_ACKS1 is set), and reports how long the
// appends that rolled a segment took (the roll's time under the log's
// lock, which every other append waits out) and how long appends took
// overall. A figure for before/after comparisons, not an assertion.
func TestMeasureRollStall(t *testing.T) {
	if os.Getenv("SLUICE_LOG_MEASURE") == "" {
		t.Skip("set SLUICE_LOG_MEASURE=1 to measure")
	}
	dir := os.Getenv("SLUICE_LOG_MEASURE_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else {
		dir = filepath.Join(dir, "roll-stall")
		os.RemoveAll(dir)
		defer os.RemoveAll(dir)
	}
	segBytes := int64(64 << 20)
	if s := os.Getenv("SLUICE_LOG_MEASURE_SEGMENT_BYTES"); s != "" {
		segBytes, _ = strconv.ParseInt(s, 10, 64)
	}
	const rolls = 4
	l, err := Open(Options{FS: vfs.OS(), Dir: dir, Config: Config{SegmentBytes: segBytes}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ts := time.Now().UnixMilli()
	var (
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		syncs   int
		maxSync time.Duration
	)
	acksAll := os.Getenv("SLUICE_LOG_MEASURE_ACKS1") == ""
	wg.Add(1)
	go func() { // acks=all: sync what was appended, again and again
		defer wg.Done()
		for acksAll {
			select {
			case <-stop:
				return
			default:
			}
			began := time.Now()
			if err := l.SyncTo(l.EndOffset()); err != nil {
				t.Error(err)
				return
			}
			syncs++
			maxSync = max(maxSync, time.Since(began))
			time.Sleep(time.Millisecond)
		}
	}()
	began := time.Now()
	var waits, rollWaits []time.Duration
	segs := l.Segments()
	for i := 0; segs <= rolls; i++ {
		b := tinyBatch(t, i, ts+int64(i))
		t0 := time.Now()
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		waits = append(waits, d)
		if n := l.Segments(); n != segs {
			segs = n
			rollWaits = append(rollWaits, d)
		}
	}
	elapsed := time.Since(began)
	close(stop)
	wg.Wait()
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	q := func(p float64) time.Duration { return waits[int(p*float64(len(waits)-1))] }
	t.Logf("acks=all %v: %d appends of %d B in %v, %d MiB segments: the %d appends that rolled took %v; all appends p50 %v p99.9 %v p99.99 %v max %v; %d SyncTo calls, longest %v",
		acksAll, len(waits), len(tinyBatch(t, 0, ts)), elapsed.Round(time.Millisecond), segBytes>>20, len(rollWaits), rollWaits,
		q(0.5), q(0.999), q(0.9999), waits[len(waits)-1], syncs, maxSync.Round(time.Microsecond))
}
