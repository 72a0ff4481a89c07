package backup

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func sampleRecords() []*Record {
	return []*Record{
		{Offset: 3, Timestamp: 1700000000000, Key: []byte("k1"), Value: []byte("v1"),
			Headers: []Header{{Key: "h", Value: []byte("x")}, {Key: "", Value: nil}, {Key: "e", Value: []byte{}}}},
		{Offset: 4, Timestamp: -1, Key: nil, Value: []byte{}},
		{Offset: 9, Timestamp: 5, LogAppendTime: true, Key: []byte{}, Value: nil},
		{Offset: 10, Timestamp: 6, Key: []byte{0xff, 0}, Value: []byte(strings.Repeat("z", 1000))},
	}
}

// writeSample writes one partition and the manifest into dir.
func writeSample(t *testing.T, dir string) *Manifest {
	t.Helper()
	tg := NewDir(dir)
	w, err := tg.Create(DataFileName(0))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := NewFileWriter(w, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sampleRecords() {
		if err := fw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Write(&Record{Offset: 10}); err == nil {
		t.Fatal("a repeated offset was accepted")
	}
	wr, err := fw.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m := &Manifest{Topic: "t", CreatedAt: "2024-01-01T00:00:00Z", Partitions: 1, CleanupPolicy: "compact,delete",
		Configs: map[string]string{"cleanup.policy": "compact,delete"}, ConfigSources: map[string]string{"cleanup.policy": "DYNAMIC_TOPIC_CONFIG"},
		Records: wr.Records, Files: []File{{Partition: 0, Name: DataFileName(0), StartOffset: 2, EndOffset: 12,
			FirstOffset: wr.FirstOffset, LastOffset: wr.LastOffset, Records: wr.Records, Bytes: wr.Bytes, SHA256: wr.SHA256}}}
	if err := WriteManifest(tg, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	writeSample(t, dir)
	tg := NewDir(dir)
	names, err := tg.List()
	if err != nil || !slices.Equal(names, []string{ManifestName, "partition-00000.rec"}) {
		t.Fatalf("list: %v %v", names, err)
	}
	m, err := ReadManifest(tg)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Compacted() || m.Records != 4 || m.Files[0].FirstOffset != 3 || m.Files[0].LastOffset != 10 {
		t.Fatalf("manifest: %+v", m)
	}
	var got []*Record
	if err := Verify(tg, m, func(p int32, r *Record) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := sampleRecords()
	for i := range want {
		// nil and empty differ, and both survive.
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("record %d:\n got %#v\nwant %#v", i, got[i], want[i])
		}
	}
	stop := errors.New("stop")
	if err := Verify(tg, m, func(int32, *Record) error { return stop }); err != stop {
		t.Fatalf("callback error: %v", err)
	}
}

func TestDamage(t *testing.T) {
	dir := t.TempDir()
	writeSample(t, dir)
	data := filepath.Join(dir, DataFileName(0))
	orig, _ := os.ReadFile(data)
	check := func(what, wantIn string) {
		t.Helper()
		tg := NewDir(dir)
		m, err := ReadManifest(tg)
		if err == nil {
			err = Verify(tg, m, nil)
		}
		if err == nil || !strings.Contains(err.Error(), wantIn) {
			t.Fatalf("%s: %v, want an error naming %s", what, err, wantIn)
		}
	}
	for i := range orig {
		b := slices.Clone(orig)
		b[i] ^= 0x20
		os.WriteFile(data, b, 0o644)
		check("flipped byte", DataFileName(0))
	}
	for n := range len(orig) {
		os.WriteFile(data, orig[:n], 0o644)
		check("truncated", DataFileName(0))
	}
	os.WriteFile(data, append(slices.Clone(orig), 0), 0o644)
	check("appended byte", DataFileName(0))
	os.Remove(data)
	check("missing data file", DataFileName(0)+": missing")
	os.WriteFile(data, orig, 0o644)

	man := filepath.Join(dir, ManifestName)
	morig, _ := os.ReadFile(man)
	for _, pair := range [][2]string{{`"topic": "t"`, `"topic": "u"`}, {`"records": 4`, `"records": 5`}, {`"version": 2`, `"version": 3`}, {`"version": 2`, `"version": 1`}} {
		os.WriteFile(man, []byte(strings.Replace(string(morig), pair[0], pair[1], 1)), 0o644)
		check(pair[1], ManifestName)
	}
	os.Remove(man)
	check("missing manifest", ManifestName+": missing")
}

func TestDirAtomic(t *testing.T) {
	dir := t.TempDir()
	tg := NewDir(filepath.Join(dir, "sub"))
	testTargetContract(t, tg)
	ents, _ := os.ReadDir(filepath.Join(dir, "sub"))
	if len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// testTargetContract checks what target.go promises of a Target, on tg,
// which must be empty (or not exist yet): a file appears whole only on
// Close, Abort leaves the previous file, Open of a missing file wraps
// fs.ErrNotExist, List is sorted, Remove of a missing file is no error.
// It leaves tg empty.
func testTargetContract(t *testing.T, tg Target) {
	t.Helper()
	if names, err := tg.List(); err != nil || len(names) != 0 {
		t.Fatalf("list of a new target: %v %v", names, err)
	}
	if _, err := tg.Open("a"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open of a missing file: %v, want fs.ErrNotExist", err)
	}
	w, err := tg.Create("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if names, _ := tg.List(); len(names) != 0 {
		t.Fatalf("unfinished file listed: %v", names)
	}
	if _, err := tg.Open("a"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unfinished file opened: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("a second Close succeeded")
	}
	if err := Abort(w); err != nil {
		t.Fatalf("abort after close: %v", err)
	}
	read := func(name string) string {
		t.Helper()
		rc, err := tg.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read("a"); got != "hello" {
		t.Fatalf("read back %q", got)
	}

	// An aborted rewrite, small and of several upload parts (for S3).
	big := bytes.Repeat([]byte("0123456789abcdef"), (s3PartBytes+s3PartBytes/2)/16)
	for _, data := range [][]byte{[]byte("other"), big} {
		w, _ = tg.Create("a")
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := Abort(w); err != nil {
			t.Fatal(err)
		}
		if got := read("a"); got != "hello" {
			t.Fatalf("after an aborted rewrite of %d bytes: %.20q", len(data), got)
		}
		if names, _ := tg.List(); !slices.Equal(names, []string{"a"}) {
			t.Fatalf("after an aborted rewrite: %v", names)
		}
	}
	// A rewrite replaces the file whole; a large one too; and an empty one.
	prev := "hello"
	for _, data := range [][]byte{big, {}} {
		w, _ = tg.Create("a")
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if got := read("a"); got != prev {
			t.Fatalf("during a rewrite: %.20q", got)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := read("a"); got != string(data) {
			t.Fatalf("after a rewrite of %d bytes: %d bytes", len(data), len(got))
		}
		prev = string(data)
	}
	// An aborted file that never existed leaves nothing.
	w, _ = tg.Create("never")
	w.Write([]byte("x"))
	if err := Abort(w); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Open("never"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("aborted file opened: %v", err)
	}

	for _, bad := range []string{"", ".", "..", "a/b", `a\b`, ".hidden"} {
		if _, err := tg.Create(bad); err == nil {
			t.Fatalf("Create(%q) accepted", bad)
		}
		if _, err := tg.Open(bad); err == nil {
			t.Fatalf("Open(%q) accepted", bad)
		}
		if err := tg.Remove(bad); err == nil {
			t.Fatalf("Remove(%q) accepted", bad)
		}
	}
	for _, name := range []string{"partition-00002.rec", ManifestName, "partition-00000.rec", "b"} {
		w, _ := tg.Create(name)
		w.Write([]byte(name))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"a", "b", ManifestName, "partition-00000.rec", "partition-00002.rec"}
	if names, err := tg.List(); err != nil || !slices.Equal(names, want) {
		t.Fatalf("list: %v %v, want %v", names, err, want)
	}
	for _, name := range want {
		if err := tg.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
	if err := tg.Remove("a"); err != nil {
		t.Fatalf("removing a missing file: %v", err)
	}
	if _, err := tg.Open("a"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("removed file opened: %v", err)
	}
	if names, err := tg.List(); err != nil || len(names) != 0 {
		t.Fatalf("list after removing all: %v %v", names, err)
	}
}
