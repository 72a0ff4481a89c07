package log

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// batch builds a valid batch of n records with values "<tag>-<i>".
func batch(t testing.TB, tag string, n int, ts int64) []byte {
	t.Helper()
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{OffsetDelta: int32(i), TimestampDelta: int64(i), Value: []byte(fmt.Sprintf("%s-%d", tag, i))}
	}
	b, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: ts, MaxTimestamp: ts + int64(n-1), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func open(t testing.TB, fs vfs.FS, cfg Config, recovery int64) *Log {
	t.Helper()
	l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, RecoveryPoint: recovery})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// values reads every record value in the log, in offset order.
func values(t testing.TB, l *Log) []string {
	t.Helper()
	var out []string
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
			// Offsets increase; the cleaner may leave gaps.
			if h.LastOffset() < off {
				t.Fatalf("batch at %d..%d, want at least %d", h.BaseOffset, h.LastOffset(), off)
			}
			recs, err := record.Records(raw, h, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				out = append(out, string(r.Value))
			}
			off = h.LastOffset() + 1
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
	}
	return out
}

func TestAppendReadRollReopen(t *testing.T) {
	fs := vfs.NewMem()
	cfg := Config{SegmentBytes: 1000, IndexIntervalBytes: 100}
	l := open(t, fs, cfg, 0)
	var want []string
	for i := 0; i < 100; i++ {
		b := batch(t, fmt.Sprint(i), 3, 1000+int64(i))
		res, err := l.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		if res.BaseOffset != int64(3*i) {
			t.Fatalf("base offset %d, want %d", res.BaseOffset, 3*i)
		}
		for j := 0; j < 3; j++ {
			want = append(want, fmt.Sprintf("%d-%d", i, j))
		}
	}
	if l.Segments() < 5 {
		t.Fatalf("%d segments; want rolls at 1000 bytes", l.Segments())
	}
	// Read from the middle of a batch returns the batch holding it.
	r, err := l.Read(151, 1<<20, l.EndOffset(), true)
	if err != nil || r.FirstBatch.BaseOffset != 150 {
		t.Fatalf("read 151: %+v %v", r.FirstBatch, err)
	}
	// A max offset stops the read before later batches.
	r, err = l.Read(150, 1<<20, 153, true)
	if err != nil || r.Size != int64(r.FirstBatch.Size()) {
		t.Fatalf("read to 153: size %d, first batch %d: %v", r.Size, r.FirstBatch.Size(), err)
	}
	// KIP-74: the first batch comes whole even above maxBytes.
	r, err = l.Read(0, 10, l.EndOffset(), true)
	if err != nil || r.Size != int64(r.FirstBatch.Size()) {
		t.Fatalf("read 10 bytes: size %d: %v", r.Size, err)
	}
	if _, err := l.Read(l.EndOffset()+1, 100, math.MaxInt64, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past end: %v", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := values(t, l); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("values differ")
	}
	// Clean close and reopen.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(Options{FS: fs, Dir: "p-0", Config: cfg, Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, l); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("values differ after reopen")
	}
	off, ts, found, err := l.OffsetForTimestamp(1050)
	if err != nil || !found || off != 146 || ts != 1050 { // batch 48 holds 1048..1050
		t.Fatalf("offset for 1050: %d %d %v %v", off, ts, found, err)
	}
	off, _, found, _ = l.OffsetForTimestamp(1051)
	if !found || off != 149 {
		t.Fatalf("offset for 1051: %d %v", off, found)
	}
	if _, _, found, _ := l.OffsetForTimestamp(99999); found {
		t.Fatalf("found an offset after every timestamp")
	}
	l.Close()
}

// TestCrashKeepsSynced appends, syncs some, crashes the FS at random points
// and checks that everything synced survives and the log is consistent.
func TestCrashKeepsSynced(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 50; round++ {
		fs := vfs.NewMem()
		cfg := Config{SegmentBytes: int64(300 + rng.Intn(2000)), IndexIntervalBytes: 64}
		l := open(t, fs, cfg, 0)
		var synced int64
		var all []string
		n := 5 + rng.Intn(60)
		for i := 0; i < n; i++ {
			b := batch(t, fmt.Sprint(i), 1+rng.Intn(4), int64(i))
			recs, _ := record.Records(b, mustHeader(t, b), 1<<20)
			if _, err := l.Append(b); err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				all = append(all, string(r.Value))
			}
			if rng.Intn(4) == 0 {
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
				synced = l.EndOffset()
			}
		}
		crashed := fs.Crash()
		l2, err := Open(Options{FS: crashed, Dir: "p-0", Config: cfg, RecoveryPoint: synced})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		if l2.EndOffset() < synced {
			t.Fatalf("round %d: end %d after crash, below synced %d", round, l2.EndOffset(), synced)
		}
		got := values(t, l2)
		if int64(len(got)) != l2.EndOffset() {
			t.Fatalf("round %d: %d values, end offset %d", round, len(got), l2.EndOffset())
		}
		for i, v := range got {
			if v != all[i] {
				t.Fatalf("round %d: value %d = %q, want %q", round, i, v, all[i])
			}
		}
		// The log takes appends after recovery.
		if _, err := l2.Append(batch(t, "after", 2, 0)); err != nil {
			t.Fatal(err)
		}
		l2.Close()
		l.Close()
	}
}

func mustHeader(t testing.TB, b []byte) record.Header {
	h, err := record.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestTornAndCorruptTail cuts the log at a torn or corrupted last batch.
func TestTornAndCorruptTail(t *testing.T) {
	for _, damage := range []string{"torn", "flip", "garbage"} {
		t.Run(damage, func(t *testing.T) {
			fs := vfs.NewMem()
			l := open(t, fs, Config{}, 0)
			for i := 0; i < 10; i++ {
				if _, err := l.Append(batch(t, fmt.Sprint(i), 2, 0)); err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			f, err := fs.OpenAppend("p-0/" + segmentName(0, ".log"))
			if err != nil {
				t.Fatal(err)
			}
			size, _ := f.Size()
			switch damage {
			case "torn":
				f.Truncate(size - 7)
			case "flip":
				b := make([]byte, 1)
				f.ReadAt(b, size-3)
				f.Truncate(size - 3)
				f.Write([]byte{b[0] ^ 0xff, 0, 0})
			case "garbage":
				f.Write(bytes.Repeat([]byte{0xee}, 40))
			}
			f.Sync()
			f.Close()
			l, err = Open(Options{FS: fs, Dir: "p-0"})
			if err != nil {
				t.Fatal(err)
			}
			want := int64(18)
			if damage == "garbage" {
				want = 20
			}
			if l.EndOffset() != want {
				t.Fatalf("end offset %d after %s tail, want %d", l.EndOffset(), damage, want)
			}
			if got := values(t, l); len(got) != int(want) {
				t.Fatalf("%d values", len(got))
			}
			if _, err := l.Append(batch(t, "x", 1, 0)); err != nil {
				t.Fatal(err)
			}
			l.Close()
		})
	}
}

// TestFsyncFailureIsSticky: a failed fsync fails the waiting producers and
// every later write, and no data is reported durable.
func TestFsyncFailureIsSticky(t *testing.T) {
	mem := vfs.NewMem()
	fail := false
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if fail && op == vfs.OpSync {
			return vfs.ErrInjected
		}
		return nil
	})
	l := open(t, fs, Config{}, 0)
	if _, err := l.Append(batch(t, "a", 1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	fail = true
	res, err := l.Append(batch(t, "b", 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SyncTo(res.LastOffset + 1); !errors.Is(err, ErrStorage) {
		t.Fatalf("sync with failing fsync: %v", err)
	}
	if l.DurableOffset() != 1 {
		t.Fatalf("durable offset %d, want 1", l.DurableOffset())
	}
	if _, err := l.Append(batch(t, "c", 1, 0)); !errors.Is(err, ErrStorage) {
		t.Fatalf("append after fsync failure: %v", err)
	}
	l.Close()
}

// TestShortWrite: a short write (ENOSPC) fails the append and leaves no torn
// batch behind.
func TestShortWrite(t *testing.T) {
	mem := vfs.NewMem()
	short := false
	fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
		if short && op == vfs.OpWrite {
			return &vfs.ShortWrite{N: 10, Err: errors.New("no space left on device")}
		}
		return nil
	})
	l := open(t, fs, Config{}, 0)
	l.Append(batch(t, "a", 1, 0))
	l.Sync()
	short = true
	if _, err := l.Append(batch(t, "b", 1, 0)); !errors.Is(err, ErrStorage) {
		t.Fatalf("short write: %v", err)
	}
	short = false
	l.Close()
	l2, err := Open(Options{FS: mem.Crash(), Dir: "p-0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, l2); len(got) != 1 || got[0] != "a-0" {
		t.Fatalf("after short write and crash: %v", got)
	}
}

func TestRetention(t *testing.T) {
	fs := vfs.NewMem()
	now := time.UnixMilli(1_000_000)
	l, err := Open(Options{FS: fs, Dir: "p-0", Config: Config{SegmentBytes: 200, RetentionMs: 1000, RetentionBytes: -1}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		ts := now.UnixMilli() - 5000
		if i >= 10 {
			ts = now.UnixMilli()
		}
		if _, err := l.Append(batch(t, fmt.Sprint(i), 1, ts)); err != nil {
			t.Fatal(err)
		}
	}
	n := l.Retain()
	if n == 0 || l.StartOffset() == 0 || l.StartOffset() > 10 {
		t.Fatalf("retention deleted %d segments, start %d", n, l.StartOffset())
	}
	// Deleted segments' files are gone from the directory.
	names, _ := fs.List("p-0")
	for _, name := range names {
		if base, ok := parseSegmentName(name); ok && base < l.StartOffset() {
			t.Fatalf("segment %s left", name)
		}
	}
	if _, err := l.DeleteRecordsBefore(15, l.EndOffset()); err != nil {
		t.Fatal(err)
	}
	if l.StartOffset() != 15 {
		t.Fatalf("start %d after DeleteRecords, want 15", l.StartOffset())
	}
	if _, err := l.Read(14, 100, l.EndOffset(), true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	l.Close()
}

// FuzzRecovery writes valid batches, then arbitrary bytes, and checks that
// recovery never fails or panics and keeps exactly the valid prefix. The
// high bits of n, when below its low three, truncate the log to that many
// batches first and append the rest again (a follower's TruncateTo).
func FuzzRecovery(f *testing.F) {
	f.Add([]byte{}, uint8(3))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 61}, uint8(1))
	f.Add(bytes.Repeat([]byte{0xff}, 80), uint8(2))
	good := batch(f, "seed", 2, 0)
	f.Add(good[:40], uint8(0))
	f.Add(good, uint8(5))
	f.Add(good[:50], uint8(2<<3|5))
	f.Fuzz(func(t *testing.T, tail []byte, n uint8) {
		fs := vfs.NewMem()
		l := open(t, fs, Config{}, 0)
		count, cut := int(n%8), int(n>>3)
		for i := 0; i < count; i++ {
			if _, err := l.Append(batch(t, fmt.Sprint(i), 2, 0)); err != nil {
				t.Fatal(err)
			}
		}
		if cut > 0 && cut < count {
			if err := l.TruncateTo(int64(2 * cut)); err != nil {
				t.Fatal(err)
			}
			for i := cut; i < count; i++ {
				if _, err := l.Append(batch(t, fmt.Sprint(i), 2, 0)); err != nil {
					t.Fatal(err)
				}
			}
		}
		want := l.EndOffset()
		l.Close()
		f, err := fs.OpenAppend("p-0/" + segmentName(0, ".log"))
		if err != nil {
			t.Fatal(err)
		}
		f.Write(tail)
		f.Sync()
		f.Close()
		l, err = Open(Options{FS: fs, Dir: "p-0"})
		if err != nil {
			t.Fatalf("recovery failed: %v", err)
		}
		defer l.Close()
		if l.EndOffset() < want {
			t.Fatalf("end %d after recovery, want at least %d", l.EndOffset(), want)
		}
		vals := values(t, l)
		for i := 0; i < int(want); i++ {
			if vals[i] != fmt.Sprintf("%d-%d", i/2, i%2) {
				t.Fatalf("value %d = %q", i, vals[i])
			}
		}
	})
}

// TestRebuildsDamagedIndexes: a missing or damaged index of a trusted
// segment is rebuilt from the segment at open.
func TestRebuildsDamagedIndexes(t *testing.T) {
	fs := vfs.NewMem()
	cfg := Config{SegmentBytes: 500, IndexIntervalBytes: 64}
	l := open(t, fs, cfg, 0)
	for i := 0; i < 40; i++ {
		if _, err := l.Append(batch(t, fmt.Sprint(i), 2, int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	want := values(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := fs.List("p-0")
	var damaged int
	for _, n := range names {
		switch {
		case damaged == 0 && len(n) > 6 && n[len(n)-6:] == ".index":
			fs.Remove("p-0/" + n)
			damaged++
		case damaged == 1 && len(n) > 10 && n[len(n)-10:] == ".timeindex":
			f, _ := fs.Create("p-0/" + n)
			f.Write([]byte{1, 2, 3})
			f.Close()
			damaged++
		}
	}
	l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := values(t, l); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("values differ after index rebuild")
	}
	if off, _, found, err := l.OffsetForTimestamp(30); err != nil || !found || off != 59 { // batch 29 holds 29, 30
		t.Fatalf("time lookup after rebuild: %d %v %v", off, found, err)
	}
}

// TestSegmentMsAcrossRestarts: a partition that gets a record now and then
// on a broker restarted more often than segment.ms still rolls its segment
// by the records' timestamps (Kafka's timeWaitedForRoll: the new batch's
// timestamp minus the segment's first), so retention.ms deletes old data.
func TestSegmentMsAcrossRestarts(t *testing.T) {
	fs := vfs.NewMem()
	start := time.UnixMilli(1_000_000)
	now := start
	cfg := Config{SegmentMs: 1000, RetentionMs: 3000}
	reopen := func(clean bool) *Log {
		t.Helper()
		l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, Clean: clean, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	const step = 200 * time.Millisecond
	for i := 0; i < 40; i++ {
		l := reopen(i%3 != 0) // clean restarts, and some after a crash
		if _, err := l.Append(batch(t, fmt.Sprint(i), 1, now.UnixMilli())); err != nil {
			t.Fatal(err)
		}
		l.Retain()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if i%3 == 1 {
			fs = fs.Crash()
		}
		now = now.Add(step)
	}
	l := reopen(true)
	defer l.Close()
	l.Retain()
	if l.Segments() < 2 {
		t.Fatalf("%d segments after %v of records with segment.ms %dms", l.Segments(), now.Sub(start), cfg.SegmentMs)
	}
	// Every record older than retention.ms plus one segment's span is gone.
	oldest := start.Add(step * time.Duration(l.StartOffset())).UnixMilli()
	if limit := now.UnixMilli() - cfg.RetentionMs - cfg.SegmentMs - step.Milliseconds(); oldest < limit {
		t.Fatalf("oldest record kept is %dms old, past retention.ms %d + segment.ms %d", now.UnixMilli()-oldest, cfg.RetentionMs, cfg.SegmentMs)
	}
}

// firstAtOrAfter is OffsetForTimestamp by brute force over every record.
func firstAtOrAfter(t testing.TB, l *Log, ts int64) (int64, int64, bool) {
	t.Helper()
	for off := l.StartOffset(); off < l.EndOffset(); {
		b, err := l.ReadBatches(off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		it := record.NewIter(b)
		for {
			raw, h, ok := it.Next()
			if !ok {
				break
			}
			recs, err := record.Records(raw, h, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				o := h.BaseOffset + int64(r.OffsetDelta)
				if rts := h.BaseTimestamp + r.TimestampDelta; o >= l.StartOffset() && rts >= ts {
					return o, rts, true
				}
			}
			off = h.LastOffset() + 1
		}
	}
	return 0, 0, false
}

// TestTimeIndexSparse: the time index gets an entry with each offset index
// entry (every index.interval.bytes) and one when the segment is closed,
// as Kafka's, not one per batch; OffsetForTimestamp stays exact, with
// timestamps going up and down, in memory, from files, after a crash.
func TestTimeIndexSparse(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	mem := vfs.NewMem()
	cfg := Config{SegmentBytes: 8000, IndexIntervalBytes: 500}
	l := open(t, mem, cfg, 0)
	ts := int64(10_000)
	var batches int
	var maxSeen, maxSeenAt int64
	for i := 0; i < 600; i++ {
		ts += int64(rng.Intn(40)) - 15 // mostly up, sometimes back
		n := 1 + rng.Intn(3)
		res := mustAppend(t, l, batch(t, fmt.Sprint(i), n, ts))
		if ts+int64(n)-1 > maxSeen {
			maxSeen, maxSeenAt = ts+int64(n)-1, res.LastOffset
		}
		batches++
	}
	maxTs := ts + 100
	check := func(l *Log, what string) {
		t.Helper()
		for q := int64(9_000); q <= maxTs; q += 1 + int64(rng.Intn(5)) {
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
	check(l, "open")
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	crashed := mem.Crash()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := mem.List("p-0")
	var timeEntries, offsetEntries, segments int
	for _, n := range names {
		fi, err := mem.Stat("p-0/" + n)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(n, ".timeindex"):
			timeEntries += int(fi.Size()) / timeIndexEntryBytes
		case strings.HasSuffix(n, ".index"):
			offsetEntries += int(fi.Size()) / offsetIndexEntryBytes
		case strings.HasSuffix(n, ".log"):
			segments++
		}
	}
	if timeEntries > offsetEntries+segments {
		t.Fatalf("%d time index entries for %d batches, %d offset index entries and %d segments: want at most one per offset index entry and one per segment",
			timeEntries, batches, offsetEntries, segments)
	}
	l2, err := Open(Options{FS: mem, Dir: "p-0", Config: cfg, Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	check(l2, "reopened")
	if gotTs, gotAt := l2.MaxTimestamp(); gotTs != maxSeen || gotAt != maxSeenAt {
		t.Fatalf("max timestamp %d at %d after reopen, want %d at %d", gotTs, gotAt, maxSeen, maxSeenAt)
	}
	l2.Close()
	l3, err := Open(Options{FS: crashed, Dir: "p-0", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	check(l3, "crashed")
	l3.Close()
}
