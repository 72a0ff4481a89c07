package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"io/fs"
	"math"
	"reflect"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
)

// memTarget is a Target in memory.
type memTarget map[string][]byte

type memFile struct {
	bytes.Buffer
	t    memTarget
	name string
}

func (f *memFile) Close() error {
	f.t[f.name] = slices.Clone(f.Bytes())
	return nil
}

func (t memTarget) Create(name string) (io.WriteCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return &memFile{t: t, name: name}, nil
}

func (t memTarget) Open(name string) (io.ReadCloser, error) {
	b, ok := t[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (t memTarget) List() ([]string, error) {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

func (t memTarget) Remove(name string) error {
	delete(t, name)
	return nil
}

func (t memTarget) String() string { return "memory" }

// heapAllocBytes is the bytes allocated on the heap so far by the whole
// process. Allocations larger than 32 KiB count at once, smaller ones when
// their span fills, so a difference is exact for the large allocations a
// length field could cause and within a few KiB otherwise.
func heapAllocBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// maxReadAllocBytes is what reading n bytes of a back-up may allocate: the
// reader's 256 KiB buffer, the first step of a record body, and per byte a
// few copies (body, record) or, for the manifest, JSON's structures and
// their growth.
func maxReadAllocBytes(n int) uint64 { return 1<<20 + readStepBytes + 256*uint64(n) }

// encodeFile writes records as partition's data file.
func encodeFile(t testing.TB, partition int32, records []*Record) ([]byte, Written) {
	t.Helper()
	var buf bytes.Buffer
	fw, err := NewFileWriter(&buf, partition)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if err := fw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	w, err := fw.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w
}

// fileEntry is the manifest's entry of a data file, as the writer makes it.
func fileEntry(partition int32, w Written) File {
	return File{Partition: partition, Name: DataFileName(partition), StartOffset: 0, EndOffset: math.MaxInt64,
		FirstOffset: w.FirstOffset, LastOffset: w.LastOffset, Records: w.Records, Bytes: w.Bytes, SHA256: w.SHA256}
}

// readAll reads f's data file from t, returning the records delivered
// before any error.
func readAll(t memTarget, f File) ([]*Record, error) {
	var got []*Record
	err := ReadFile(t, f, func(r *Record) error {
		got = append(got, r)
		return nil
	})
	return got, err
}

// dataSeeds are data files as the writer makes them and damaged.
func dataSeeds(t testing.TB) [][]byte {
	full, _ := encodeFile(t, 0, sampleRecords())
	empty, _ := encodeFile(t, 0, nil)
	one, _ := encodeFile(t, 0, sampleRecords()[:1])
	// A record length the file does not hold (1 GiB).
	long := slices.Clone(empty[:headerSize])
	long = binary.BigEndian.AppendUint32(long, 1<<30)
	long = append(long, make([]byte, fixedBody)...)
	// A header count larger than the body.
	headers := slices.Clone(one)
	at := headerSize + 4 + 8 + 8 + 1 + 4 + 2 + 4 + 2
	binary.BigEndian.PutUint32(headers[at:], 1<<31)
	return [][]byte{full, empty, one, full[:len(full)/2], long, headers, []byte(magic), {}}
}

// FuzzBackupDataFile: ReadFile never panics, names the file in its errors,
// allocates no more than a small multiple of the file's bytes even when
// the manifest says the file is longer, delivers records in increasing
// offsets, and the records it delivers write back to a file that reads
// the same; a file it accepts whole is exactly what the writer makes of
// its records.
func FuzzBackupDataFile(f *testing.F) {
	for _, b := range dataSeeds(f) {
		f.Add(b, uint32(0))
	}
	f.Add(dataSeeds(f)[4], uint32(1<<31))
	f.Fuzz(func(t *testing.T, data []byte, missing uint32) {
		sum := sha256.Sum256(data)
		file := File{Partition: 0, Name: DataFileName(0), StartOffset: 0, EndOffset: math.MaxInt64,
			FirstOffset: -1, LastOffset: -1, Bytes: int64(len(data)) + int64(missing), SHA256: hex.EncodeToString(sum[:])}
		tg := memTarget{file.Name: data}
		before := heapAllocBytes()
		got, err := readAll(tg, file)
		if n := heapAllocBytes() - before; n > maxReadAllocBytes(len(data)) {
			t.Fatalf("reading %d bytes (the manifest says %d) allocated %d", len(data), file.Bytes, n)
		}
		if err != nil && !strings.HasPrefix(err.Error(), file.Name+": ") {
			t.Fatalf("error does not name the file: %v", err)
		}
		for i, r := range got {
			if r.Offset < 0 || i > 0 && r.Offset <= got[i-1].Offset {
				t.Fatalf("record %d has offset %d after %d", i, r.Offset, got[max(i-1, 0)].Offset)
			}
		}
		// Again with the manifest entry the records call for: a sound
		// file now reads whole.
		file.Records = int64(len(got))
		if len(got) > 0 {
			file.FirstOffset, file.LastOffset = got[0].Offset, got[len(got)-1].Offset
		}
		whole := missing == 0 && ReadFile(tg, file, nil) == nil

		again, w := encodeFile(t, 0, got)
		if whole && !bytes.Equal(again, data) {
			t.Fatalf("accepted file\n%x\nwrites back as\n%x", data, again)
		}
		tg2 := memTarget{file.Name: again}
		got2, err := readAll(tg2, fileEntry(0, w))
		if err != nil {
			t.Fatalf("re-read of the records delivered: %v", err)
		}
		if !reflect.DeepEqual(got2, got) {
			t.Fatalf("re-read\n%#v\nwant\n%#v", got2, got)
		}
	})
}

// FuzzBackupRecord: decodeRecord never panics on a body of at least the
// fixed fields (readFile checks that), allocates no more than a small
// multiple of it, and what it accepts is exactly what the writer makes of
// the record.
func FuzzBackupRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(encodeBody(f, r))
	}
	f.Add(make([]byte, fixedBody))
	b := encodeBody(f, sampleRecords()[0])
	f.Add(b[:len(b)-1])
	binary.BigEndian.PutUint32(b[17:], 0xFFFFFFF0) // key length
	f.Add(b)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) < fixedBody {
			return
		}
		before := heapAllocBytes()
		r, err := decodeRecord(body)
		if n := heapAllocBytes() - before; n > maxReadAllocBytes(len(body)) {
			t.Fatalf("decoding %d bytes allocated %d", len(body), n)
		}
		if err != nil {
			return
		}
		if again := encodeBody(t, r); !bytes.Equal(again, body) {
			t.Fatalf("accepted body\n%x\nencodes as\n%x", body, again)
		}
	})
}

// encodeBody is r's body as the writer makes it.
func encodeBody(t testing.TB, r *Record) []byte {
	t.Helper()
	data, _ := encodeFile(t, 0, []*Record{r})
	l := binary.BigEndian.Uint32(data[headerSize:])
	return data[headerSize+4 : headerSize+4+int(l)]
}

// manifestSeeds are manifests as WriteManifest makes them and damaged.
func manifestSeeds(t testing.TB) [][]byte {
	_, w := encodeFile(t, 0, sampleRecords())
	m := &Manifest{Topic: "t", TopicID: "AAAAAAAAAAAAAAAAAAAAAA", CreatedAt: "2024-01-01T00:00:00Z", Partitions: 2,
		CleanupPolicy: "compact,delete", TimestampType: "CreateTime",
		Configs: map[string]string{"cleanup.policy": "compact,delete"}, ConfigSources: map[string]string{"cleanup.policy": "DYNAMIC_TOPIC_CONFIG"},
		Records: 2 * w.Records, Files: []File{fileEntry(0, w), fileEntry(1, w)}}
	m.Files[1].Name = DataFileName(1)
	tg := memTarget{}
	if err := WriteManifest(tg, m); err != nil {
		t.Fatal(err)
	}
	full := tg[ManifestName]
	empty := &Manifest{Topic: "e", CreatedAt: "2024-01-01T00:00:00Z", Partitions: 1,
		Files: []File{{Name: DataFileName(0), FirstOffset: -1, LastOffset: -1, Bytes: int64(headerSize + trailerSize)}}}
	if err := WriteManifest(tg, empty); err != nil {
		t.Fatal(err)
	}
	// An incremental: id, sequence, base, chain and groups.
	inc := *m
	inc.ID, inc.Sequence = "20240101T000000Z-00000002", 2
	inc.Chain = []Link{{ID: "20240101T000000Z-00000000", Sequence: 0, Manifest: ManifestName, Checksum: strings.Repeat("a", 64)},
		{ID: "20240101T000000Z-00000001", Sequence: 1, Manifest: ChainManifestName(1), Checksum: strings.Repeat("b", 64)}}
	inc.Base = &inc.Chain[1]
	inc.Groups = []Group{{Group: "billing", Offsets: []GroupOffset{{Partition: 0, Offset: 3, Metadata: "m"}, {Partition: 1, Offset: 11}}},
		{Group: "audit", Offsets: []GroupOffset{{Partition: 1, Offset: 0}}}}
	inc.Groups[0], inc.Groups[1] = inc.Groups[1], inc.Groups[0]
	if err := WriteManifestAs(tg, ChainManifestName(2), &inc); err != nil {
		t.Fatal(err)
	}
	incremental := tg[ChainManifestName(2)]
	return [][]byte{full, tg[ManifestName], full[:len(full)/2], incremental,
		[]byte(strings.Replace(string(incremental), `"sequence": 2`, `"sequence": 3`, 1)),
		[]byte(`{"format":"sluice-backup","version":3}`),
		[]byte(`{"format":"sluice-backup","version":1,"partitions":2147483647,"files":[{},{}]}`), {}}
}

// FuzzBackupManifest: ReadManifest never panics, names the manifest in its
// errors, allocates no more than a small multiple of its bytes, and a
// manifest it accepts writes back as one that reads the same.
func FuzzBackupManifest(f *testing.F) {
	for _, b := range manifestSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		before := heapAllocBytes()
		m, err := ReadManifest(memTarget{ManifestName: b})
		if n := heapAllocBytes() - before; n > maxReadAllocBytes(len(b)) {
			t.Fatalf("reading %d bytes allocated %d", len(b), n)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), ManifestName+": ") {
				t.Fatalf("error does not name the manifest: %v", err)
			}
			return
		}
		tg := memTarget{}
		c := *m
		if err := WriteManifest(tg, &c); err != nil {
			t.Fatal(err)
		}
		if m.Version == 1 {
			// Written as version 2 with an id: the rest is the same.
			if c.Version != Version || c.ID == "" {
				t.Fatalf("a version-1 manifest was written as version %d, id %q", c.Version, c.ID)
			}
			v1 := c
			v1.Version, v1.ID, v1.Checksum = m.Version, m.ID, m.Checksum
			if !reflect.DeepEqual(&v1, m) {
				t.Fatalf("writing changed the version-1 manifest:\n%+v\n%+v", v1, *m)
			}
			m = &c
		} else if !reflect.DeepEqual(&c, m) {
			t.Fatalf("writing changed the manifest:\n%+v\n%+v", c, *m)
		}
		m2, err := ReadManifest(tg)
		if err != nil {
			t.Fatalf("re-read of an accepted manifest: %v", err)
		}
		if !reflect.DeepEqual(m2, m) {
			t.Fatalf("re-read\n%+v\nwant\n%+v", *m2, *m)
		}
	})
}

// TestReadFileLongRecord: a record body longer than a read step reads
// back whole, and a record length that the manifest's size allows but the
// file does not hold is refused without allocating it (it allocated the
// whole length, 1 GiB here, before).
func TestReadFileLongRecord(t *testing.T) {
	r := &Record{Offset: 5, Value: bytes.Repeat([]byte("v"), 3*readStepBytes+1)}
	data, w := encodeFile(t, 0, []*Record{r})
	got, err := readAll(memTarget{DataFileName(0): data}, fileEntry(0, w))
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], r) {
		t.Fatalf("long record read back as %d records: %v", len(got), err)
	}

	long := dataSeeds(t)[4]
	sum := sha256.Sum256(long)
	f := File{Name: DataFileName(0), EndOffset: math.MaxInt64, Bytes: int64(len(long)) + 2<<30, SHA256: hex.EncodeToString(sum[:])}
	before := heapAllocBytes()
	_, err = readAll(memTarget{f.Name: long}, f)
	if n := heapAllocBytes() - before; n > maxReadAllocBytes(len(long)) {
		t.Fatalf("reading %d bytes allocated %d", len(long), n)
	}
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("record length past the end of the file: %v", err)
	}
}
