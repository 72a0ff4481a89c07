package log

import (
	"fmt"
	"testing"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// indexFuzzLog is the log FuzzIndexFiles damages: a few segments of batches
// with 1 to 3 records whose timestamps only go up (so that the largest
// timestamp so far at an offset is that of its batch, and a time index
// entry that matches its batch is true). It returns the filesystem, closed
// cleanly, and each offset's value and timestamp.
func indexFuzzLog(t testing.TB) (*vfs.MemFS, Config, []string, []int64) {
	t.Helper()
	fs := vfs.NewMem()
	cfg := Config{SegmentBytes: 1200, IndexIntervalBytes: 150}
	l := open(t, fs, cfg, 0)
	var vals []string
	var stamps []int64
	for i := 0; i < 40; i++ {
		n := 1 + i%3
		ts := int64(1000 + 10*i)
		mustAppend(t, l, batch(t, fmt.Sprint(i), n, ts))
		for j := 0; j < n; j++ {
			vals = append(vals, fmt.Sprintf("%d-%d", i, j))
			stamps = append(stamps, ts+int64(j))
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return fs, cfg, vals, stamps
}

func indexFuzzBases(t testing.TB, fs vfs.FS) []int64 {
	t.Helper()
	names, err := fs.List("p-0")
	if err != nil {
		t.Fatal(err)
	}
	var bases []int64
	for _, n := range names {
		if b, ok := parseSegmentName(n); ok {
			bases = append(bases, b)
		}
	}
	return bases
}

func writeFile(t testing.TB, fs vfs.FS, name string, b []byte) {
	t.Helper()
	f, err := fs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()
}

// FuzzIndexFiles writes arbitrary bytes as the .index and/or .timeindex of
// one segment (which, modulo the segments; keep bit 1 keeps the .index as
// it was, bit 2 the .timeindex) of a cleanly closed log and opens it, so
// that the index files are read, not rebuilt: the open must succeed (a bad
// index is rebuilt or bypassed), nothing panics, every read returns the
// batch holding the offset asked for, OffsetForTimestamp and MaxTimestamp
// give what the records say, and the log reopens as well.
func FuzzIndexFiles(f *testing.F) {
	fs, _, _, _ := indexFuzzLog(f)
	bases := indexFuzzBases(f, fs)
	for i, base := range bases {
		idx, _ := readAll(fs, "p-0/"+segmentName(base, ".index"))
		tidx, _ := readAll(fs, "p-0/"+segmentName(base, ".timeindex"))
		f.Add(idx, tidx, uint8(i), uint8(0))
		f.Add(idx[:len(idx)/2], tidx, uint8(i), uint8(2))
		f.Add(idx, tidx[:len(tidx)-4], uint8(i), uint8(1))
	}
	f.Add([]byte{}, []byte{}, uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, idx, tidx []byte, which, keep uint8) {
		fs, cfg, vals, stamps := indexFuzzLog(t)
		bases := indexFuzzBases(t, fs)
		base := bases[int(which)%len(bases)]
		if keep&1 == 0 {
			writeFile(t, fs, "p-0/"+segmentName(base, ".index"), idx)
		}
		if keep&2 == 0 {
			writeFile(t, fs, "p-0/"+segmentName(base, ".timeindex"), tidx)
		}
		fs.SyncDir("p-0")
		for round := 0; round < 2; round++ {
			l, err := Open(Options{FS: fs, Dir: "p-0", Config: cfg, Clean: true})
			if err != nil {
				t.Fatalf("round %d: open with a damaged index: %v", round, err)
			}
			checkIndexFuzzLog(t, l, vals, stamps)
			if err := l.Close(); err != nil {
				t.Fatalf("round %d: close: %v", round, err)
			}
		}
	})
}

func checkIndexFuzzLog(t *testing.T, l *Log, vals []string, stamps []int64) {
	t.Helper()
	end := int64(len(vals))
	if l.EndOffset() != end {
		t.Fatalf("end offset %d, want %d", l.EndOffset(), end)
	}
	if got := values(t, l); fmt.Sprint(got) != fmt.Sprint(vals) {
		t.Fatalf("values %v, want %v", got, vals)
	}
	// Every offset reads from the batch holding it.
	for off := int64(0); off < end; off++ {
		r, err := l.Read(off, 1<<20, end, true)
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		var b [record.HeaderSize]byte
		if _, err := r.File.ReadAt(b[:], r.Position); err != nil {
			t.Fatalf("read %d: header at %d: %v", off, r.Position, err)
		}
		h, err := record.ParseHeader(b[:])
		if err != nil || h.BaseOffset > off || h.LastOffset() < off || h.BaseOffset != r.FirstBatch.BaseOffset {
			t.Fatalf("read %d: batch %d..%d at %d (%v), said %d", off, h.BaseOffset, h.LastOffset(), r.Position, err, r.FirstBatch.BaseOffset)
		}
	}
	// Small reads, cut by maxBytes, in turn.
	var got []string
	for off := int64(0); off < end; {
		b, err := l.ReadBatches(off, 150)
		if err != nil || len(b) == 0 {
			t.Fatalf("read batches at %d: %d bytes, %v", off, len(b), err)
		}
		it := record.NewIter(b)
		for {
			raw, h, ok := it.Next()
			if !ok {
				break
			}
			if h.BaseOffset != off {
				t.Fatalf("read batches at %d: batch at %d", off, h.BaseOffset)
			}
			recs, err := record.Records(raw, h, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				got = append(got, string(r.Value))
			}
			off = h.LastOffset() + 1
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(vals) {
		t.Fatalf("small reads: %v", got)
	}
	for ts := stamps[0] - 5; ts <= stamps[len(stamps)-1]+5; ts += 3 {
		want := int64(-1)
		for o, s := range stamps {
			if s >= ts {
				want = int64(o)
				break
			}
		}
		off, rts, found, err := l.OffsetForTimestamp(ts)
		if err != nil {
			t.Fatalf("offset for %d: %v", ts, err)
		}
		if want < 0 && found || want >= 0 && (!found || off != want || rts != stamps[want]) {
			t.Fatalf("offset for %d: %d at %d (%v), want %d", ts, off, rts, found, want)
		}
	}
	if ts, off := l.MaxTimestamp(); ts != stamps[len(stamps)-1] || off != end-1 {
		t.Fatalf("max timestamp %d at %d, want %d at %d", ts, off, stamps[len(stamps)-1], end-1)
	}
}
