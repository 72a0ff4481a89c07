package collect

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/vfs"
)

func testRecords(stream string, i, n int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for j := range recs {
		recs[j] = &kgo.Record{Topic: "t-" + stream, Key: []byte(fmt.Sprintf("k%d", i)),
			Value:     []byte(fmt.Sprintf(`{"i":%d,"j":%d}`, i, j)),
			Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i)),
			Headers:   []kgo.RecordHeader{{Key: "sluice-source", Value: []byte(stream)}}}
	}
	return recs
}

func TestSpoolEntryRoundTrip(t *testing.T) {
	recs := []*kgo.Record{
		{Topic: "a", Key: nil, Value: []byte("v"), Timestamp: time.UnixMilli(5)},
		{Topic: "b", Key: []byte{}, Value: nil, Timestamp: time.UnixMilli(-1),
			Headers: []kgo.RecordHeader{{Key: "h", Value: nil}, {Key: "", Value: []byte{}}, {Key: "x", Value: []byte("y")}}},
	}
	e := appendEntry(nil, "s", recs)
	n, err := entryLen(e)
	if err != nil || n != len(e) {
		t.Fatalf("entryLen %d %v, want %d", n, err, len(e))
	}
	stream, got, err := decodeEntry(e[spoolEntryHeaderBytes:])
	if err != nil || stream != "s" {
		t.Fatalf("decode: %q %v", stream, err)
	}
	if !reflect.DeepEqual(got, recs) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, recs)
	}
	// Every torn prefix is refused; every flipped byte fails the CRC.
	for i := range e {
		if _, err := entryLen(e[:i]); err == nil {
			t.Fatalf("a %d-byte prefix of a %d-byte entry passed", i, len(e))
		}
		c := bytes.Clone(e)
		c[i] ^= 0x40
		if _, err := entryLen(c); err == nil {
			t.Fatalf("byte %d flipped passed", i)
		}
	}
}

// spoolOn opens a spool on fsys with only its writer running (no cluster).
func spoolOn(t *testing.T, fsys vfs.FS, limit int64) *diskSpool {
	t.Helper()
	s, err := openSpool(fsys, "/spool", limit, slog.New(slog.DiscardHandler), newMetrics())
	if err != nil {
		t.Fatal(err)
	}
	go s.writeLoop()
	return s
}

// stopWriter stops a spoolOn spool's writer.
func (s *diskSpool) stopWriter() {
	close(s.stop)
	s.closeWriter()
}

// spooledValues reads back every record a spool holds after its replay
// position, in order.
func spooledValues(t *testing.T, s *diskSpool) []string {
	t.Helper()
	var out []string
	for i, seg := range s.segs {
		data, err := vfs.ReadFile(s.fs, filepath.Join(s.dir, segmentName(seg.seq)), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		off := 0
		if i == 0 {
			off = int(s.readOff)
		}
		for off < int(seg.size) {
			n, err := entryLen(data[off:])
			if err != nil {
				t.Fatalf("segment %d offset %d: %v", seg.seq, off, err)
			}
			_, recs, err := decodeEntry(data[off+spoolEntryHeaderBytes : off+n])
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				out = append(out, string(r.Value))
			}
			off += n
		}
	}
	return out
}

// Power cuts while four writers spool: every put answered before the cut
// is there afterwards, in each writer's order, and the spool reopens
// (a torn last entry is cut off).
func TestSpoolPowerLoss(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 5
	}
	segs := 0
	for round := range rounds {
		mem := vfs.NewMem()
		s := spoolOn(t, mem, 1<<30)
		s.segmentBytes = 64 << 10
		var (
			mu    sync.Mutex
			acked = map[string]bool{}
			stop  = make(chan struct{})
			wg    sync.WaitGroup
		)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					// Big entries now and then, so that segments roll.
					n := 1 + rand.IntN(3)
					if rand.IntN(50) == 0 {
						n = 20000
					}
					recs := testRecords(fmt.Sprint(w), w*1_000_000+i, n)
					if err := s.put(fmt.Sprint(w), recs); err != nil {
						return
					}
					mu.Lock()
					for _, r := range recs {
						acked[string(r.Value)] = true
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(5+rand.IntN(60)) * time.Millisecond)
		mu.Lock()
		must := make(map[string]bool, len(acked))
		for v := range acked {
			must[v] = true
		}
		mu.Unlock()
		crashed := mem.Crash()
		close(stop)
		s.stopWriter()
		wg.Wait()

		s2, err := openSpool(crashed, "/spool", 1<<30, slog.New(slog.DiscardHandler), newMetrics())
		if err != nil {
			t.Fatalf("round %d: reopen after the cut: %v", round, err)
		}
		got := spooledValues(t, s2)
		segs += len(s2.segs)
		t.Logf("round %d: %d acknowledged, %d kept, %d segments", round, len(must), len(got), len(s2.segs))
		have := map[string]bool{}
		last := map[int]int{}
		for _, v := range got {
			if have[v] {
				t.Fatalf("round %d: %s twice", round, v)
			}
			have[v] = true
			var i, j int
			fmt.Sscanf(v, `{"i":%d,"j":%d}`, &i, &j)
			w, seq := i/1_000_000, i%1_000_000
			if j == 0 {
				if seq <= last[w]-1 {
					t.Fatalf("round %d: writer %d's put %d after its put %d", round, w, seq, last[w]-1)
				}
				last[w] = seq + 1
			}
		}
		for v := range must {
			if !have[v] {
				t.Fatalf("round %d: %s was acknowledged before the power cut and is gone (%d of %d kept)",
					round, v, len(have), len(must))
			}
		}
		if len(must) == 0 {
			t.Logf("round %d: nothing acknowledged before the cut", round)
		}
		s2.lock.Release()
	}
	t.Logf("%d rounds, %d segments recovered", rounds, segs)
}

// A torn tail is cut at open; what follows goes after the last whole
// entry, and replay resumes at the checkpoint.
func TestSpoolRecovery(t *testing.T) {
	mem := vfs.NewMem()
	s := spoolOn(t, mem, 1<<30)
	for i := range 3 {
		if err := s.put("a", testRecords("a", i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	s.stopWriter()
	seg := filepath.Join("/spool", segmentName(1))
	f, err := mem.OpenAppend(seg)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := f.Size()
	torn := appendEntry(nil, "a", testRecords("a", 99, 1))
	f.Write(torn[:len(torn)-3])
	f.Close()

	s = spoolOn(t, mem, 1<<30)
	if got := spooledValues(t, s); len(got) != 3 {
		t.Fatalf("after a torn tail: %q, want the 3 whole entries", got)
	}
	if size, _ := mem.Stat(seg); size.Size() != whole {
		t.Fatalf("segment %d bytes after recovery, want %d", size.Size(), whole)
	}
	if err := s.put("a", testRecords("a", 3, 1)); err != nil {
		t.Fatal(err)
	}
	s.stopWriter()

	// The checkpoint after the first entry: the first is not replayed again.
	first := int64(len(appendEntry(nil, "a", testRecords("a", 0, 1))))
	if err := vfs.WriteFileAtomic(mem, "/spool", filepath.Join("/spool", checkpointName),
		spoolCheckpoint{seq: 1, off: first}.encode()); err != nil {
		t.Fatal(err)
	}
	s = spoolOn(t, mem, 1<<30)
	got := spooledValues(t, s)
	want := []string{`{"i":1,"j":0}`, `{"i":2,"j":0}`, `{"i":3,"j":0}`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after the checkpoint: %q, want %q", got, want)
	}
	s.stopWriter()

	// A checkpoint past segment 1: it was replayed, and is removed at open.
	if err := vfs.WriteFileAtomic(mem, "/spool", filepath.Join("/spool", checkpointName),
		spoolCheckpoint{seq: 2, off: 0}.encode()); err != nil {
		t.Fatal(err)
	}
	s = spoolOn(t, mem, 1<<30)
	if _, err := mem.Stat(seg); err == nil {
		t.Fatal("segment 1 kept after a checkpoint in segment 2")
	}
	if got := spooledValues(t, s); len(got) != 1 {
		t.Fatalf("after removing segment 1: %q", got)
	}
	s.stopWriter()
}

// Damage between intact entries is skipped at recovery, not cut with
// everything after it; a torn tail after it is still cut.
func TestSpoolRecoveryKeepsEntriesAfterDamage(t *testing.T) {
	mem := vfs.NewMem()
	s := spoolOn(t, mem, 1<<30)
	for i := range 4 {
		if err := s.put("a", testRecords("a", i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	s.stopWriter()
	seg := filepath.Join("/spool", segmentName(1))
	data, err := vfs.ReadFile(mem, seg, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	entry := len(appendEntry(nil, "a", testRecords("a", 0, 1)))
	data[entry+entry/2] ^= 1 // inside the second entry
	torn := appendEntry(nil, "a", testRecords("a", 99, 1))
	data = append(data, torn[:len(torn)-2]...)
	if err := vfs.WriteFileAtomic(mem, "/spool", seg, data); err != nil {
		t.Fatal(err)
	}
	if end, damaged := intactEnd(data); end != 4*entry || damaged != entry {
		t.Fatalf("intact end %d with %d damaged, want %d and %d", end, damaged, 4*entry, entry)
	}
	s = spoolOn(t, mem, 1<<30)
	defer s.stopWriter()
	if st, _ := mem.Stat(seg); st.Size() != int64(4*entry) {
		t.Fatalf("segment %d bytes after recovery, want %d (the torn tail cut, the rest kept)", st.Size(), 4*entry)
	}
}

// The spool refuses a put that does not fit, whole.
func TestSpoolLimit(t *testing.T) {
	s := spoolOn(t, vfs.NewMem(), 1000)
	defer s.stopWriter()
	n := 0
	for ; n < 100; n++ {
		if err := s.put("a", testRecords("a", n, 1)); err != nil {
			if err != errSpoolFull {
				t.Fatal(err)
			}
			break
		}
	}
	if s.bytes > 1000 || n == 0 || n == 100 {
		t.Fatalf("%d puts taken, %d bytes, limit 1000", n, s.bytes)
	}
	if len(spooledValues(t, s)) != n {
		t.Fatalf("spool holds %d, want %d", len(spooledValues(t, s)), n)
	}
}

// FuzzSpoolSegment feeds arbitrary segment bytes to recovery's reader and
// the entry decoder: no panic; recovery keeps exactly up to the end of the
// last intact entry, and what it calls damaged are the bytes it skips
// between intact entries.
func FuzzSpoolSegment(f *testing.F) {
	e := appendEntry(nil, "s", testRecords("s", 1, 2))
	f.Add(e)
	f.Add(append(appendEntry(nil, "", nil), 0, 0, 0, 9, 1, 2))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(append(append(bytes.Clone(e[:len(e)-1]), 7), e...)) // damaged, then intact
	f.Fuzz(func(t *testing.T, seg []byte) {
		valid, damaged := intactEnd(seg)
		if valid > len(seg) || damaged > valid {
			t.Fatalf("intact end %d, %d damaged, of %d bytes", valid, damaged, len(seg))
		}
		skipped := 0
		for off := 0; off < valid; {
			n, err := entryLen(seg[off:valid])
			if err != nil {
				next := nextEntry(seg[:valid], off+1)
				if next < 0 {
					t.Fatalf("no intact entry after %d inside the kept %d bytes", off, valid)
				}
				skipped += next - off
				off = next
				continue
			}
			stream, recs, err := decodeEntry(seg[off+spoolEntryHeaderBytes : off+n])
			if err == nil {
				// What decodes encodes back to the same records.
				again := appendEntry(nil, stream, recs)
				s2, recs2, err := decodeEntry(again[spoolEntryHeaderBytes:])
				if err != nil || s2 != stream || !reflect.DeepEqual(recs, recs2) {
					t.Fatalf("re-encoded entry differs: %v", err)
				}
			}
			off += n
		}
		if skipped != damaged {
			t.Fatalf("%d bytes skipped walking the kept bytes, intactEnd says %d damaged", skipped, damaged)
		}
		if n := nextEntry(seg, valid); n >= 0 && n < len(seg) && valid < len(seg) {
			t.Fatalf("an intact entry at %d after the intact end %d", n, valid)
		}
	})
}

// FuzzSpoolEntry decodes arbitrary payloads (the CRC passed): an error or
// records, never a panic or an allocation beyond the payload's size.
func FuzzSpoolEntry(f *testing.F) {
	e := appendEntry(nil, "s", testRecords("s", 1, 3))
	f.Add(e[spoolEntryHeaderBytes:])
	f.Add([]byte{1, 's', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, recs, err := decodeEntry(payload)
		if err == nil && len(recs) > len(payload) {
			t.Fatalf("%d records from %d bytes", len(recs), len(payload))
		}
	})
}

func TestCheckpointDecode(t *testing.T) {
	c := spoolCheckpoint{seq: 7, off: 12345}
	got, err := decodeCheckpoint(c.encode())
	if err != nil || got != c {
		t.Fatalf("%+v %v", got, err)
	}
	b := c.encode()
	b[3] ^= 1
	if _, err := decodeCheckpoint(b); err == nil {
		t.Fatal("corrupt checkpoint accepted")
	}
	if _, err := decodeCheckpoint(b[:10]); err == nil {
		t.Fatal("short checkpoint accepted")
	}
}

// With a spool, an event waits in memory 10 s by default before it is
// spooled (a kill -9 loses memory, not the spool); without, 2 minutes
// before it is dropped. A delivery_timeout in the file wins.
func TestDeliveryTimeoutDefaults(t *testing.T) {
	for _, c := range []struct {
		config string
		want   time.Duration
	}{
		{"streams: {s: {topic: t}}\n", DefaultDeliveryTimeout},
		{fmt.Sprintf("spool: {dir: %s}\nstreams: {s: {topic: t}}\n", t.TempDir()), DefaultSpoolDeliveryTimeout},
		{fmt.Sprintf("limits: {delivery_timeout: 1m}\nspool: {dir: %s}\nstreams: {s: {topic: t}}\n", t.TempDir()), time.Minute},
	} {
		cfg, err := ParseConfig([]byte(c.config))
		if err != nil {
			t.Fatal(err)
		}
		col, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if got := col.cfg.Limits.DeliveryTimeout; got != c.want {
			t.Errorf("%q: delivery timeout %v, want %v", c.config, got, c.want)
		}
		col.Close(t.Context())
	}
}
