package backup

import (
	"errors"
	"io"
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
	for _, pair := range [][2]string{{`"topic": "t"`, `"topic": "u"`}, {`"records": 4`, `"records": 5`}, {`"version": 1`, `"version": 2`}} {
		os.WriteFile(man, []byte(strings.Replace(string(morig), pair[0], pair[1], 1)), 0o644)
		check(pair[1], ManifestName)
	}
	os.Remove(man)
	check("missing manifest", ManifestName+": missing")
}

func TestDirAtomic(t *testing.T) {
	dir := t.TempDir()
	tg := NewDir(filepath.Join(dir, "sub"))
	if names, err := tg.List(); err != nil || len(names) != 0 {
		t.Fatalf("list of a missing dir: %v %v", names, err)
	}
	w, err := tg.Create("a")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hello"))
	if names, _ := tg.List(); len(names) != 0 {
		t.Fatalf("unfinished file listed: %v", names)
	}
	if _, err := tg.Open("a"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unfinished file opened: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, _ = tg.Create("a")
	w.Write([]byte("other"))
	if err := Abort(w); err != nil {
		t.Fatal(err)
	}
	rc, err := tg.Open("a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "hello" {
		t.Fatalf("after an aborted rewrite: %q", b)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "sub"))
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	for _, bad := range []string{"", "..", "a/b", ".hidden"} {
		if _, err := tg.Create(bad); err == nil {
			t.Fatalf("Create(%q) accepted", bad)
		}
	}
	if err := tg.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if err := tg.Remove("a"); err != nil {
		t.Fatalf("removing a missing file: %v", err)
	}
}
