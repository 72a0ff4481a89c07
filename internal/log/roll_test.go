package log

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/vfs"
)

// rollWorkload appends n batches of two records to l (rolling every few
// batches), calling SyncTo now and then, and returns the values in order.
func rollWorkload(t *testing.T, l *Log, n int, syncEvery int) []string {
	t.Helper()
	var all []string
	for i := 0; i < n; i++ {
		res := mustAppend(t, l, batch(t, fmt.Sprint(i), 2, int64(i)))
		all = append(all, fmt.Sprintf("%d-0", i), fmt.Sprintf("%d-1", i))
		if syncEvery > 0 && i%syncEvery == syncEvery-1 {
			if err := l.SyncTo(res.LastOffset + 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	return all
}

// checkRecovered opens a crash image with the recovery point the broker
// would have checkpointed and checks that every durable offset is there,
// with its value, and that the log takes appends and reopens.
func checkRecovered(t *testing.T, fs vfs.FS, cfg Config, durable int64, all []string, what string) {
	t.Helper()
	l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, RecoveryPoint: durable})
	if err != nil {
		t.Fatalf("%s: reopen: %v", what, err)
	}
	if l.EndOffset() < durable {
		t.Fatalf("%s: end %d after crash, below the durable offset %d", what, l.EndOffset(), durable)
	}
	got := values(t, l)
	if int64(len(got)) != l.EndOffset() {
		t.Fatalf("%s: %d values, end offset %d", what, len(got), l.EndOffset())
	}
	for i, v := range got {
		if v != all[i] {
			t.Fatalf("%s: value %d = %q, want %q", what, i, v, all[i])
		}
	}
	mustAppend(t, l, batch(t, "after", 1, 0))
	if err := l.Close(); err != nil {
		t.Fatalf("%s: close: %v", what, err)
	}
	l, err = Open(Options{FS: fs, Dir: "p-0", Config: cfg, Clean: true})
	if err != nil {
		t.Fatalf("%s: clean reopen: %v", what, err)
	}
	if got := values(t, l); got[len(got)-1] != "after-0" {
		t.Fatalf("%s: after a clean reopen: last value %q", what, got[len(got)-1])
	}
	l.Close()
}

// TestCrashBetweenRollAndSync: a roll leaves the rolled segment's fsync,
// its index files and the directory's fsync to the next sync; a crash
// before that sync loses nothing durable and recovers.
func TestCrashBetweenRollAndSync(t *testing.T) {
	mem := vfs.NewMem()
	var block atomic.Bool
	release := make(chan struct{})
	blocked := make(chan struct{}, 1)
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if block.Load() && (op == vfs.OpSync || op == vfs.OpSyncDir) {
			select {
			case blocked <- struct{}{}:
			default:
			}
			<-release
		}
		return nil
	})
	cfg := Config{SegmentBytes: 500, IndexIntervalBytes: 64}
	l := open(t, fs, cfg, 0)
	all := rollWorkload(t, l, 20, 1)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	durable := l.DurableOffset()
	segs := l.Segments()
	// Appends until a roll; the sync it starts blocks at its first fsync.
	block.Store(true)
	for i := 20; l.Segments() == segs; i++ {
		mustAppend(t, l, batch(t, fmt.Sprint(i), 2, int64(i)))
		all = append(all, fmt.Sprintf("%d-0", i), fmt.Sprintf("%d-1", i))
	}
	<-blocked
	for i := 1000; i < 1003; i++ { // into the new segment
		mustAppend(t, l, batch(t, fmt.Sprint(i), 2, int64(i)))
		all = append(all, fmt.Sprintf("%d-0", i), fmt.Sprintf("%d-1", i))
	}
	if l.DurableOffset() != durable {
		t.Fatalf("durable offset %d moved past %d before the sync after the roll", l.DurableOffset(), durable)
	}
	crashed := mem.Crash()
	close(release)
	block.Store(false)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if l.DurableOffset() != l.EndOffset() {
		t.Fatalf("durable offset %d after a sync, end %d", l.DurableOffset(), l.EndOffset())
	}
	l.Close()
	checkRecovered(t, crashed, cfg, durable, all, "crash before the sync after a roll")
}

// TestRollCrashAtEveryStep takes a crash image before every write, fsync,
// create, rename and directory fsync of appends that roll several segments
// and of the syncs they start, and checks that each recovers every offset
// that was durable at that point.
func TestRollCrashAtEveryStep(t *testing.T) {
	mutating := map[vfs.Op]bool{vfs.OpCreate: true, vfs.OpWrite: true, vfs.OpSync: true, vfs.OpTruncate: true,
		vfs.OpRemove: true, vfs.OpRename: true, vfs.OpSyncDir: true}
	cfg := Config{SegmentBytes: 400, IndexIntervalBytes: 64}
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		var (
			counting atomic.Bool
			n        atomic.Int64
			mu       sync.Mutex
			snap     *vfs.MemFS
			durable  int64
			l        *Log
		)
		fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
			if counting.Load() && mutating[op] && n.Add(1) == int64(step) {
				mu.Lock()
				snap, durable = mem.Crash(), l.DurableOffset()
				mu.Unlock()
			}
			return nil
		})
		l = open(t, fs, cfg, 0)
		counting.Store(true)
		all := rollWorkload(t, l, 24, 5)
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		counting.Store(false)
		l.Close()
		mu.Lock()
		s, d := snap, durable
		mu.Unlock()
		if s == nil {
			if step < 50 {
				t.Fatalf("only %d steps", step)
			}
			t.Logf("crashed at each of %d steps", step-1)
			return
		}
		checkRecovered(t, s, cfg, d, all, fmt.Sprintf("step %d", step))
	}
}

// TestRollSyncFaultAtEveryStep fails each filesystem operation of appends
// that roll and of the syncs after them: the failure is reported (the log
// then takes no more writes), the durable offset never passes what was
// made durable, and the log recovers after a restart or a crash.
func TestRollSyncFaultAtEveryStep(t *testing.T) {
	cfg := Config{SegmentBytes: 400, IndexIntervalBytes: 64}
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		var counting atomic.Bool
		var n atomic.Int64
		var injected atomic.Bool
		fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
			if counting.Load() && op != vfs.OpRead && op != vfs.OpOpen && op != vfs.OpStat && n.Add(1) == int64(step) {
				injected.Store(true)
				return vfs.ErrInjected
			}
			return nil
		})
		l := open(t, fs, cfg, 0)
		counting.Store(true)
		var all []string
		var failed error
		var durable int64
		for i := 0; i < 24 && failed == nil; i++ {
			res, err := l.Append(batch(t, fmt.Sprint(i), 2, int64(i)))
			if err != nil {
				failed = err
				break
			}
			all = append(all, fmt.Sprintf("%d-0", i), fmt.Sprintf("%d-1", i))
			if i%5 == 4 {
				if err := l.SyncTo(res.LastOffset + 1); err != nil {
					failed = err
					break
				}
				durable = res.LastOffset + 1
			}
		}
		if failed == nil {
			failed = l.Sync()
		}
		counting.Store(false)
		if !injected.Load() {
			if failed != nil {
				t.Fatal(failed)
			}
			l.Close()
			if step < 50 {
				t.Fatalf("only %d steps", step)
			}
			t.Logf("failed each of %d steps", step-1)
			return
		}
		if failed == nil {
			// The fault hit the sync after a roll, which runs on its own:
			// the log failed, the next append or sync says so.
			if _, err := l.Append(batch(t, "x", 1, 0)); err == nil {
				if err := l.Sync(); err == nil {
					t.Fatalf("step %d: injected fault not reported", step)
				}
			}
		} else if !errors.Is(failed, ErrStorage) {
			t.Fatalf("step %d: %v, want a storage error", step, failed)
		}
		if l.DurableOffset() < durable {
			t.Fatalf("step %d: durable offset %d below %d acknowledged", step, l.DurableOffset(), durable)
		}
		durable = l.DurableOffset()
		crashed := mem.Crash()
		l.Close()
		checkRecovered(t, crashed, cfg, durable, all, fmt.Sprintf("step %d crash", step))
		checkRecovered(t, mem, cfg, durable, all, fmt.Sprintf("step %d restart", step))
	}
}

// TestRollFsyncsOutsideLock: while the fsyncs and index writes of a roll
// are stuck (a slow disk), appends go on: the roll only switches files
// under the log's lock, and DurableOffset waits for the sync.
func TestRollFsyncsOutsideLock(t *testing.T) {
	mem := vfs.NewMem()
	var block atomic.Bool
	release := make(chan struct{})
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if block.Load() && (op == vfs.OpSync || op == vfs.OpSyncDir || op == vfs.OpRename) {
			<-release
		}
		return nil
	})
	cfg := Config{SegmentBytes: 500, IndexIntervalBytes: 64}
	l := open(t, fs, cfg, 0)
	defer l.Close()
	defer close(release)
	block.Store(true)
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 50; i++ { // several rolls
			if _, err := l.Append(batch(t, fmt.Sprint(i), 2, int64(i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("appends blocked behind a roll's fsync")
	}
	if l.Segments() < 5 {
		t.Fatalf("%d segments", l.Segments())
	}
	if l.DurableOffset() != 0 {
		t.Fatalf("durable offset %d while no fsync has finished", l.DurableOffset())
	}
}
