package backup

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// writeLink writes partition 0's records as back-up seq of a chain on
// prev (nil: a full back-up) into tg, covering offsets start to end.
func writeLink(t *testing.T, tg memTarget, prev []*Manifest, start, end int64, records []*Record) *Manifest {
	t.Helper()
	seq := len(prev)
	data, w := encodeFile(t, 0, records)
	name := ChainDataFileName(seq, 0)
	tg[name] = data
	f := fileEntry(0, w)
	f.Name, f.StartOffset, f.EndOffset = name, start, end
	m := &Manifest{Topic: "t", TopicID: "AAAAAAAAAAAAAAAAAAAAAA", CreatedAt: "2024-01-01T00:00:00Z", Partitions: 1, CleanupPolicy: "delete",
		TimestampType: "CreateTime", Records: w.Records, Files: []File{f}, Sequence: seq,
		Groups: []Group{{Group: "g", Offsets: []GroupOffset{{Partition: 0, Offset: end, Metadata: "m"}}}}}
	for _, l := range prev {
		m.Chain = append(m.Chain, LinkTo(l))
	}
	if seq > 0 {
		m.Base = &m.Chain[seq-1]
	}
	if err := WriteManifestAs(tg, ChainManifestName(seq), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// sampleChain is a full back-up (offsets 0 to 5) and two incrementals (5
// to 8, 8 to 12).
func sampleChain(t *testing.T) (memTarget, []*Manifest) {
	tg := memTarget{}
	var chain []*Manifest
	chain = append(chain, writeLink(t, tg, chain, 0, 5, []*Record{{Offset: 0}, {Offset: 4, Value: []byte("a")}}))
	chain = append(chain, writeLink(t, tg, chain, 5, 8, []*Record{{Offset: 5}, {Offset: 7}}))
	chain = append(chain, writeLink(t, tg, chain, 8, 12, []*Record{{Offset: 9, Key: []byte("k")}, {Offset: 11}}))
	return tg, chain
}

func TestChainNames(t *testing.T) {
	if n := ChainManifestName(3); n != "incr-000003-manifest.json" {
		t.Fatal(n)
	}
	if n := ChainDataFileName(12, 7); n != "incr-000012-partition-00007.rec" {
		t.Fatal(n)
	}
	if ChainManifestName(0) != ManifestName || ChainDataFileName(0, 2) != DataFileName(2) {
		t.Fatal("sequence 0 is not the full back-up's names")
	}
	for name, want := range map[string]bool{"manifest.json": true, "partition-00001.rec": true, "incr-000001-manifest.json": true,
		"incr-999999-partition-00000.rec": true, "incr-1-manifest.json": false, "incr-00000x-manifest.json": false, "notes.txt": false,
		"incr-000001-notes.txt": false} {
		if IsChainFile(name) != want {
			t.Errorf("IsChainFile(%q) = %v", name, !want)
		}
	}
}

// TestReadChain: the newest back-up and everything it is built on, in
// order, and each way a chain breaks refused with the file named.
func TestReadChain(t *testing.T) {
	tg, want := sampleChain(t)
	if seq, err := Latest(tg); err != nil || seq != 2 {
		t.Fatalf("latest: %d %v", seq, err)
	}
	chain, err := ReadChain(tg, -1)
	if err != nil || len(chain) != 3 {
		t.Fatalf("chain: %d %v", len(chain), err)
	}
	for i := range want {
		if chain[i].ID != want[i].ID || chain[i].Checksum != want[i].Checksum {
			t.Fatalf("link %d: %+v, want %+v", i, chain[i], want[i])
		}
	}
	var offsets []int64
	if err := VerifyChain(tg, chain, nil); err != nil {
		t.Fatal(err)
	}
	if err := ReadPartition(tg, chain, 0, func(r *Record) error { offsets = append(offsets, r.Offset); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(offsets, []int64{0, 4, 5, 7, 9, 11}) {
		t.Fatalf("offsets %v", offsets)
	}
	if chain, err := ReadChain(tg, 1); err != nil || len(chain) != 2 || chain[1].Sequence != 1 {
		t.Fatalf("up to 1: %d %v", len(chain), err)
	}
	if _, err := Latest(memTarget{}); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("latest of nothing: %v", err)
	}
	if _, err := ReadChain(memTarget{}, -1); !errors.Is(err, ErrNoBackup) || !strings.HasPrefix(err.Error(), "manifest.json: missing") {
		t.Fatalf("chain of nothing: %v", err)
	}

	broken := func(what string, change func(tg memTarget, chain []*Manifest), wantIn string) {
		t.Helper()
		tg, chain := sampleChain(t)
		change(tg, chain)
		_, err := ReadChain(tg, -1)
		if err == nil || !strings.Contains(err.Error(), wantIn) {
			t.Fatalf("%s: %v, want %q", what, err, wantIn)
		}
	}
	broken("base missing", func(tg memTarget, _ []*Manifest) { delete(tg, "incr-000001-manifest.json") },
		"incr-000001-manifest.json: missing (link 1 of the chain); incr-000002-manifest.json (back-up ")
	broken("base damaged", func(tg memTarget, _ []*Manifest) { tg["incr-000001-manifest.json"][20] ^= 1 },
		"incr-000001-manifest.json: damaged: ")
	broken("base replaced", func(tg memTarget, chain []*Manifest) {
		m := *chain[1]
		m.ID = "other"
		WriteManifestAs(tg, ChainManifestName(1), &m)
	}, "incr-000001-manifest.json: replaced or modified since the next back-up was made on it (id other, ")
	broken("full replaced", func(tg memTarget, chain []*Manifest) {
		m := *chain[0]
		m.Records, m.Files = 0, []File{{Name: DataFileName(0), FirstOffset: -1, LastOffset: -1, EndOffset: 5, Bytes: int64(headerSize + trailerSize)}}
		WriteManifestAs(tg, ManifestName, &m)
	}, "manifest.json: replaced or modified")
	broken("overlapping", func(tg memTarget, chain []*Manifest) {
		// Rewrite incremental 2 on a base that ends later than it starts.
		m := *chain[2]
		m.Files = slices.Clone(m.Files)
		m.Files[0].StartOffset = 6
		WriteManifestAs(tg, ChainManifestName(2), &m)
	}, "incr-000002-manifest.json: partition 0 holds offsets 6 to 12, its base ends at 8: not contiguous")
	broken("another topic", func(tg memTarget, chain []*Manifest) {
		m := *chain[2]
		m.Topic = "u"
		WriteManifestAs(tg, ChainManifestName(2), &m)
	}, "incr-000002-manifest.json: of topic u (id AAAAAAAAAAAAAAAAAAAAAA, 1 partitions), its base incr-000001-manifest.json of t")
	tg, chain = sampleChain(t)
	tg["incr-000001-partition-00000.rec"][headerSize+6] ^= 1
	if err := VerifyChain(tg, chain, nil); err == nil || !strings.HasPrefix(err.Error(), "incr-000001-partition-00000.rec: damaged") {
		t.Fatalf("damaged data file of a link: %v", err)
	}
}

// TestManifestV2Checks: version-2 fields that do not fit together are
// refused as damage, and version 1 with them too.
func TestManifestV2Checks(t *testing.T) {
	_, chain := sampleChain(t)
	for what, change := range map[string]func(m *Manifest){
		"sequence without chain": func(m *Manifest) { m.Chain = m.Chain[:1] },
		"base not last link":     func(m *Manifest) { b := m.Chain[0]; m.Base = &b },
		"link sequence":          func(m *Manifest) { m.Chain[1].Sequence = 5 },
		"link manifest name":     func(m *Manifest) { m.Chain[1].Manifest = "x.json" },
		"groups out of order":    func(m *Manifest) { m.Groups = []Group{m.Groups[0], m.Groups[0]} },
		"group partition":        func(m *Manifest) { m.Groups[0].Offsets[0].Partition = 1 },
		"negative offset":        func(m *Manifest) { m.Groups[0].Offsets[0].Offset = -1 },
		"full with base":         func(m *Manifest) { m.Sequence, m.Chain = 0, nil },
		"id with a slash":        func(m *Manifest) { m.ID = "a/b" },
		"version 1 with groups":  func(m *Manifest) { m.Version = 1 },
	} {
		m := *chain[2]
		m.Chain = slices.Clone(m.Chain)
		m.Groups = []Group{{Group: "g", Offsets: slices.Clone(m.Groups[0].Offsets)}}
		change(&m)
		if err := m.checkV2(); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}

// TestManifestSeeds: the fuzz seeds of a full back-up and of an
// incremental are accepted, so that the fuzzer starts from the fields of
// both versions.
func TestManifestSeeds(t *testing.T) {
	s := manifestSeeds(t)
	for _, i := range []int{0, 3} {
		m, err := ReadManifest(memTarget{ManifestName: s[i]})
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if i == 3 && (m.Sequence != 2 || m.Base == nil || len(m.Groups) != 2 || m.Groups[0].Group != "audit") {
			t.Fatalf("incremental seed: %+v", m)
		}
	}
}
