// Package backup is the format of a topic's back-up and where it is kept.
//
// A back-up is a set of flat files in a Target (a local directory, or a
// prefix of an S3 bucket): one data file per partition and a manifest, written
// last, that lists them. A back-up without its manifest is incomplete.
//
// # Data file, format version 1
//
// partition-NNNNN.rec (NNNNN: the partition, at least 5 digits). Integers
// are big-endian; a length of -1 means null.
//
//	header   "SLUICEBK" (8 bytes) | version uint32 (1) | partition int32
//	record*  length uint32 (of the body that follows, < 0xFFFFFFFF) | body
//	         body: offset int64 | timestamp int64 (unix ms) |
//	               timestamp type uint8 (0 create time, 1 log append time) |
//	               key length int32 | key | value length int32 | value |
//	               header count uint32 | per header: key length int32 (>= 0) |
//	               key | value length int32 | value
//	trailer  0xFFFFFFFF (uint32) | record count uint64 |
//	         SHA-256 (32 bytes) of every byte of the file before it
//
// Records are in offset order, as they were in the partition, with their
// original offsets (a compacted log has gaps). The trailer makes a file
// self-checking: a truncated file has no trailer, a damaged one a wrong
// digest.
//
// # Manifest, format version 2
//
// manifest.json: the topic, its partition count, its configs that do not
// have their default value, and per partition the file's name, the
// partition's log start and end offsets when it was read, the first and
// last record offsets, the record count, and the file's size and SHA-256.
// Its "checksum" is the SHA-256 of the manifest encoded as compact JSON
// with "checksum" empty. "format" is "sluice-backup"; "version" is the
// manifest's format version (2; the data files stay at version 1); a
// reader refuses a version it does not know, and reads version 1.
//
// Version 2 adds, all absent from a version-1 manifest (which is read as a
// full back-up without group offsets):
//
//	id        a back-up's unique name (UTC time and random hex)
//	sequence  0 for a full back-up, n for the nth incremental on top of it
//	base      the back-up this one continues: {id, sequence, manifest (its
//	          file name), checksum (its manifest's checksum)}; absent for a
//	          full back-up
//	chain     every back-up from the full one to base, oldest first, each
//	          as base is; chain[sequence-1] is base
//	groups    the consumer groups with offsets committed on the topic when
//	          the back-up started: [{group, offsets: [{partition, offset,
//	          metadata}]}], sorted by group and partition; offset is the
//	          committed offset (the next record the group reads)
//
// Empty ones are left out: "sequence" 0, "base", "chain" and "groups" of a
// full back-up without groups. A version-2 manifest must have an id; a
// chain's links must be numbered 0 to sequence-1 and named
// ChainManifestName(i); group offsets are on partitions of the topic, >= 0,
// each partition once. Restore commits the groups' offsets translated to
// the restored topic's offsets: a committed offset c goes to the restored
// offset of the first backed-up record with original offset >= c, or to the
// restored end when there is none (internal/cli/backupcmd, translator).
//
// An incremental back-up (chain.go) is files beside the full one in the
// same Target, named incr-SSSSSS-manifest.json and
// incr-SSSSSS-partition-NNNNN.rec (SSSSSS: its sequence, 6 digits); each
// of its data files holds a partition's records from the base's end offset
// (or the log start, if that moved past it) to the end offset it read. A
// chain is sound (ReadChain) when every link's manifest is there with the
// id, sequence and checksum its successors record, all are of the same
// topic (id) and partition count, and each link's file of a partition
// starts at or after its base's end offset.
package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"strings"
	"time"
)

const (
	// FormatName is the manifest's "format".
	FormatName = "sluice-backup"
	// Version is the manifest format version written and the newest one
	// read; version 1 is read too.
	Version = 2
	// DataVersion is the data files' format version, written and read.
	DataVersion = 1
	// ManifestName is the manifest's file name.
	ManifestName = "manifest.json"

	magic      = "SLUICEBK"
	headerSize = len(magic) + 4 + 4
	endMarker  = 0xFFFFFFFF
	// trailerSize is the end marker, the count and the digest.
	trailerSize = 4 + 8 + sha256.Size
	// fixedBody is a record body without its key, value and headers.
	fixedBody = 8 + 8 + 1 + 4 + 4 + 4
	// readStepBytes is the most of a record body allocated ahead of its
	// bytes: a longer body grows as it is read, so a length that the
	// manifest's size allows but the file does not hold costs at most this
	// more than the bytes the file has.
	readStepBytes = 1 << 20
)

// DataFileName is the data file of a partition.
func DataFileName(partition int32) string {
	return fmt.Sprintf("partition-%05d.rec", partition)
}

// Header is a record header; a nil Value is null.
type Header struct {
	Key   string
	Value []byte
}

// Record is one record of a partition. A nil Key or Value is null.
type Record struct {
	Offset        int64
	Timestamp     int64 // unix milliseconds
	LogAppendTime bool  // the timestamp was set by the broker
	Key, Value    []byte
	Headers       []Header
}

// Manifest describes a back-up.
type Manifest struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	Topic     string `json:"topic"`
	TopicID   string `json:"topic_id,omitempty"`
	CreatedAt string `json:"created_at"` // RFC 3339, UTC
	// Partitions is the topic's partition count; Files has one entry per
	// partition, in partition order.
	Partitions int32 `json:"partitions"`
	// CleanupPolicy and TimestampType are the topic's effective
	// cleanup.policy and message.timestamp.type, whatever their source.
	CleanupPolicy string `json:"cleanup_policy"`
	TimestampType string `json:"timestamp_type"`
	// Configs are the topic's configs that do not have their default
	// value (set on the topic, or on the broker), and ConfigSources where
	// each came from (DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, ...).
	Configs       map[string]string `json:"configs"`
	ConfigSources map[string]string `json:"config_sources"`
	Records       int64             `json:"records"`
	Files         []File            `json:"files"`

	// Version 2: see the package doc. ID is empty in a version-1
	// manifest, which is a full back-up.
	ID       string  `json:"id,omitempty"`
	Sequence int     `json:"sequence,omitempty"`
	Base     *Link   `json:"base,omitempty"`
	Chain    []Link  `json:"chain,omitempty"`
	Groups   []Group `json:"groups,omitempty"`

	Checksum string `json:"checksum"`
}

// Link names another back-up of a chain: its id, sequence, manifest file
// and that manifest's checksum, which changes if anything in it does.
type Link struct {
	ID       string `json:"id"`
	Sequence int    `json:"sequence"`
	Manifest string `json:"manifest"`
	Checksum string `json:"checksum"`
}

// Group is a consumer group's committed offsets on the topic.
type Group struct {
	Group   string        `json:"group"`
	Offsets []GroupOffset `json:"offsets"` // by partition, each once
}

// GroupOffset is a committed offset: the next record the group reads in
// the partition, and the metadata committed with it.
type GroupOffset struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Metadata  string `json:"metadata,omitempty"`
}

// File is a partition's data file in the manifest.
type File struct {
	Partition int32  `json:"partition"`
	Name      string `json:"name"`
	// StartOffset and EndOffset are the partition's log start and end
	// offsets when it was read: the file holds the records in between.
	StartOffset int64 `json:"start_offset"`
	EndOffset   int64 `json:"end_offset"`
	// FirstOffset and LastOffset are the first and last records' offsets,
	// -1 when there are none.
	FirstOffset int64  `json:"first_offset"`
	LastOffset  int64  `json:"last_offset"`
	Records     int64  `json:"records"`
	Bytes       int64  `json:"bytes"`
	SHA256      string `json:"sha256"`
}

// Compacted says whether the back-up's topic was compacted (its
// cleanup.policy contains compact).
func (m *Manifest) Compacted() bool {
	for _, p := range strings.Split(m.CleanupPolicy, ",") {
		if strings.TrimSpace(p) == "compact" {
			return true
		}
	}
	return false
}

func (m *Manifest) checksum() (string, error) {
	c := *m
	c.Checksum = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// WriteManifest sets m's format, version and checksum and writes it to t
// as the full back-up's manifest.json.
func WriteManifest(t Target, m *Manifest) error {
	return WriteManifestAs(t, ManifestName, m)
}

// WriteManifestAs is WriteManifest under the file name name. A manifest
// without an id is given a new one (NewID): it was read from version 1, or
// made by hand.
func WriteManifestAs(t Target, name string, m *Manifest) error {
	m.Format, m.Version = FormatName, Version
	if m.ID == "" {
		id, err := NewID(time.Now())
		if err != nil {
			return err
		}
		m.ID = id
	}
	if err := m.checkV2(); err != nil {
		return fmt.Errorf("BUG: writing an inconsistent manifest: %v", err)
	}
	sum, err := m.checksum()
	if err != nil {
		return err
	}
	m.Checksum = sum
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	w, err := t.Create(name)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		Abort(w)
		return err
	}
	return w.Close()
}

// ReadManifest reads t's full back-up manifest (manifest.json); see
// ReadManifestNamed.
func ReadManifest(t Target) (*Manifest, error) {
	return ReadManifestNamed(t, ManifestName)
}

// missingError is a manifest that does not exist; it wraps
// fs.ErrNotExist.
type missingError struct{ msg string }

func (e missingError) Error() string { return e.msg }
func (e missingError) Unwrap() error { return fs.ErrNotExist }

// maxManifestBytes is the most of a manifest read; a longer one is
// damaged.
const maxManifestBytes = 256 << 20

// ReadManifestNamed reads the manifest name from t and checks it: known
// format and version, checksum, one file per partition, and (version 2)
// a consistent chain and group offsets. Errors name the file.
func ReadManifestNamed(t Target, name string) (*Manifest, error) {
	rc, err := t.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, missingError{fmt.Sprintf("%s: missing; the back-up is incomplete (interrupted?) or %s holds no back-up", name, t)}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: damaged: %s", name, fmt.Sprintf(format, args...))
	}
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, bad("not valid JSON (%v)", err)
	}
	if head.Format != FormatName {
		return nil, bad("format %q, want %q", head.Format, FormatName)
	}
	if head.Version > Version || head.Version < 1 {
		return nil, fmt.Errorf("%s: format version %d; this sluice reads versions 1 to %d (written by a newer sluice?)", name, head.Version, Version)
	}
	m := &Manifest{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, bad("%v", err)
	}
	sum, err := m.checksum()
	if err != nil {
		return nil, bad("%v", err)
	}
	if sum != m.Checksum {
		return nil, bad("checksum mismatch (computed %s, recorded %s)", sum, m.Checksum)
	}
	if m.Topic == "" || m.Partitions < 1 || int(m.Partitions) != len(m.Files) {
		return nil, bad("topic %q with %d partitions and %d files", m.Topic, m.Partitions, len(m.Files))
	}
	var total int64
	for i, f := range m.Files {
		if f.Partition != int32(i) || checkName(f.Name) != nil || f.Records < 0 || f.Bytes < int64(headerSize+trailerSize) {
			return nil, bad("file entry %d (%+v)", i, f)
		}
		total += f.Records
	}
	if total != m.Records {
		return nil, bad("%d records in total, the files hold %d", m.Records, total)
	}
	if err := m.checkV2(); err != nil {
		return nil, bad("%v", err)
	}
	return m, nil
}

// checkV2 checks the version-2 fields: none in version 1; in version 2 an
// id, a chain as long as the sequence ending at base, and group offsets on
// the topic's partitions, sorted, each partition once.
func (m *Manifest) checkV2() error {
	if m.Version == 1 {
		if m.ID != "" || m.Sequence != 0 || m.Base != nil || m.Chain != nil || m.Groups != nil {
			return errors.New("version 1 with fields of version 2")
		}
		return nil
	}
	if checkName(m.ID) != nil {
		return fmt.Errorf("id %q", m.ID)
	}
	if m.Sequence < 0 || m.Sequence > MaxSequence || len(m.Chain) != m.Sequence || (m.Sequence == 0) != (m.Base == nil) {
		return fmt.Errorf("sequence %d with %d links in its chain (base %v)", m.Sequence, len(m.Chain), m.Base != nil)
	}
	for i, l := range m.Chain {
		if l.Sequence != i || checkName(l.ID) != nil || l.ID == m.ID || l.Manifest != ChainManifestName(i) || len(l.Checksum) != 2*sha256.Size {
			return fmt.Errorf("chain link %d (%+v)", i, l)
		}
	}
	if m.Base != nil && *m.Base != m.Chain[len(m.Chain)-1] {
		return fmt.Errorf("base %+v is not the chain's last link", *m.Base)
	}
	for i, g := range m.Groups {
		if g.Group == "" || i > 0 && m.Groups[i-1].Group >= g.Group || len(g.Offsets) == 0 {
			return fmt.Errorf("group entry %d (%q): empty, or not in order", i, g.Group)
		}
		for j, o := range g.Offsets {
			if o.Partition < 0 || o.Partition >= m.Partitions || o.Offset < 0 || j > 0 && g.Offsets[j-1].Partition >= o.Partition {
				return fmt.Errorf("group %q offset entry %d (%+v)", g.Group, j, o)
			}
		}
	}
	return nil
}

// FileWriter writes a partition's data file.
type FileWriter struct {
	w       *bufio.Writer
	h       hash.Hash
	n       int64
	records int64
	first   int64
	last    int64
	buf     []byte
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	*c.n += int64(n)
	return n, err
}

// NewFileWriter starts partition's data file on w.
func NewFileWriter(w io.Writer, partition int32) (*FileWriter, error) {
	fw := &FileWriter{h: sha256.New(), first: -1, last: -1}
	fw.w = bufio.NewWriterSize(countingWriter{w: io.MultiWriter(w, fw.h), n: &fw.n}, 256<<10)
	hdr := append([]byte(magic), 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(hdr[len(magic):], DataVersion)
	binary.BigEndian.PutUint32(hdr[len(magic)+4:], uint32(partition))
	if _, err := fw.w.Write(hdr); err != nil {
		return nil, err
	}
	return fw, nil
}

func appendBytes(b, v []byte) []byte {
	if v == nil {
		return binary.BigEndian.AppendUint32(b, endMarker) // -1
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// Write appends r; offsets must increase.
func (fw *FileWriter) Write(r *Record) error {
	if fw.last >= 0 && r.Offset <= fw.last {
		return fmt.Errorf("record offset %d after %d: offsets must increase", r.Offset, fw.last)
	}
	b := append(fw.buf[:0], 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Offset))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Timestamp))
	tt := byte(0)
	if r.LogAppendTime {
		tt = 1
	}
	b = append(b, tt)
	b = appendBytes(b, r.Key)
	b = appendBytes(b, r.Value)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Headers)))
	for _, h := range r.Headers {
		b = binary.BigEndian.AppendUint32(b, uint32(len(h.Key))) // never null
		b = append(b, h.Key...)
		b = appendBytes(b, h.Value)
	}
	if uint64(len(b)-4) >= endMarker {
		return fmt.Errorf("record at offset %d is too large", r.Offset)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	fw.buf = b
	if _, err := fw.w.Write(b); err != nil {
		return err
	}
	if fw.first < 0 {
		fw.first = r.Offset
	}
	fw.last = r.Offset
	fw.records++
	return nil
}

// Written is what Finish reports about a data file.
type Written struct {
	Records     int64
	FirstOffset int64 // -1 when empty
	LastOffset  int64
	Bytes       int64
	SHA256      string // of the whole file
}

// Finish writes the trailer and flushes; the caller then closes the
// underlying writer.
func (fw *FileWriter) Finish() (Written, error) {
	t := binary.BigEndian.AppendUint32(nil, endMarker)
	t = binary.BigEndian.AppendUint64(t, uint64(fw.records))
	if _, err := fw.w.Write(t); err != nil {
		return Written{}, err
	}
	if err := fw.w.Flush(); err != nil {
		return Written{}, err
	}
	inner := fw.h.Sum(nil)
	if _, err := fw.w.Write(inner); err != nil {
		return Written{}, err
	}
	if err := fw.w.Flush(); err != nil {
		return Written{}, err
	}
	return Written{Records: fw.records, FirstOffset: fw.first, LastOffset: fw.last, Bytes: fw.n,
		SHA256: hex.EncodeToString(fw.h.Sum(nil))}, nil
}

// ReadFile reads f's data file from t, checking everything the manifest
// and the file say about it (size, SHA-256, header, offsets in range and
// increasing, record count, trailer), and calls fn, if not nil, with each
// record in order. fn sees records before the file's digests are checked
// at its end: to act only on a sound back-up, read every file once without
// acting first (Verify). Errors name the file.
func ReadFile(t Target, f File, fn func(*Record) error) error {
	err := readFile(t, f, fn)
	if err != nil && !errors.Is(err, errCallback) {
		return fmt.Errorf("%s: %w", f.Name, err)
	}
	var cb callbackErr
	if errors.As(err, &cb) {
		return cb.err
	}
	return err
}

var errCallback = errors.New("callback")

type callbackErr struct{ err error }

func (c callbackErr) Error() string { return c.err.Error() }
func (c callbackErr) Unwrap() []error {
	return []error{errCallback, c.err}
}

func readFile(t Target, f File, fn func(*Record) error) error {
	rc, err := t.Open(f.Name)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("missing (the manifest lists it for partition %d)", f.Partition)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	whole := sha256.New()
	// pulled counts the bytes taken from the file, n those parsed. Never
	// read past the size the manifest records, so that a damaged length
	// cannot make us allocate more than the file holds.
	var pulled, n int64
	lr := &io.LimitedReader{R: rc, N: f.Bytes}
	br := bufio.NewReaderSize(countingReader{r: io.TeeReader(lr, whole), n: &pulled}, 256<<10)
	inner := sha256.New()
	read := func(p []byte) error {
		got, err := io.ReadFull(br, p)
		n += int64(got)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				if pulled < f.Bytes {
					return fmt.Errorf("truncated: %d bytes, the manifest records %d", pulled, f.Bytes)
				}
				return fmt.Errorf("damaged: a record runs past the end of the file (%d bytes)", f.Bytes)
			}
			return err
		}
		inner.Write(p)
		return nil
	}
	hdr := make([]byte, headerSize)
	if err := read(hdr); err != nil {
		return err
	}
	if string(hdr[:len(magic)]) != magic {
		return errors.New("damaged: not a sluice back-up data file (bad magic)")
	}
	if v := binary.BigEndian.Uint32(hdr[len(magic):]); v != DataVersion {
		return fmt.Errorf("format version %d; this sluice reads version %d", v, DataVersion)
	}
	if p := int32(binary.BigEndian.Uint32(hdr[len(magic)+4:])); p != f.Partition {
		return fmt.Errorf("damaged: holds partition %d, the manifest says %d", p, f.Partition)
	}
	var (
		records int64
		first   int64 = -1
		last    int64 = -1
		lenBuf  [4]byte
		body    []byte
	)
	for {
		if err := read(lenBuf[:]); err != nil {
			return err
		}
		l := binary.BigEndian.Uint32(lenBuf[:])
		if l == endMarker {
			break
		}
		if int64(l) > f.Bytes-n || l < fixedBody {
			return fmt.Errorf("damaged: record %d has length %d at byte %d", records, l, n-4)
		}
		body = body[:0]
		for len(body) < int(l) {
			step := min(int(l)-len(body), readStepBytes)
			if cap(body) < len(body)+step {
				grown := make([]byte, len(body), min(int(l), 2*len(body)+step))
				copy(grown, body)
				body = grown
			}
			if err := read(body[len(body) : len(body)+step]); err != nil {
				return err
			}
			body = body[:len(body)+step]
		}
		r, err := decodeRecord(body)
		if err != nil {
			return fmt.Errorf("damaged: record %d at byte %d: %v", records, n-int64(l)-4, err)
		}
		if r.Offset <= last || r.Offset < f.StartOffset || r.Offset >= f.EndOffset {
			return fmt.Errorf("damaged: record %d has offset %d (previous %d, partition range %d to %d)", records, r.Offset, last, f.StartOffset, f.EndOffset)
		}
		if first < 0 {
			first = r.Offset
		}
		last = r.Offset
		records++
		if fn != nil {
			if err := fn(r); err != nil {
				return callbackErr{err}
			}
		}
	}
	var cnt [8]byte
	if err := read(cnt[:]); err != nil {
		return err
	}
	innerSum := inner.Sum(nil)
	digest := make([]byte, sha256.Size)
	if err := read(digest); err != nil {
		return err
	}
	if n < f.Bytes {
		return fmt.Errorf("damaged: %d bytes after the trailer", f.Bytes-n)
	}
	if extra, _ := rc.Read(make([]byte, 1)); extra > 0 {
		return fmt.Errorf("damaged: longer than the %d bytes the manifest records", f.Bytes)
	}
	if got := hex.EncodeToString(whole.Sum(nil)); got != f.SHA256 {
		return fmt.Errorf("damaged: checksum mismatch (SHA-256 %s, the manifest records %s)", got, f.SHA256)
	}
	if !bytes.Equal(digest, innerSum) {
		return errors.New("damaged: the trailer's digest does not match the contents")
	}
	if c := int64(binary.BigEndian.Uint64(cnt[:])); c != records || records != f.Records {
		return fmt.Errorf("damaged: %d records read, the trailer says %d, the manifest %d", records, c, f.Records)
	}
	if first != f.FirstOffset || last != f.LastOffset {
		return fmt.Errorf("damaged: offsets %d to %d, the manifest says %d to %d", first, last, f.FirstOffset, f.LastOffset)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n *int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// decodeRecord parses a record body; the record's slices are copies.
func decodeRecord(b []byte) (*Record, error) {
	b = bytes.Clone(b)
	r := &Record{}
	r.Offset = int64(binary.BigEndian.Uint64(b))
	r.Timestamp = int64(binary.BigEndian.Uint64(b[8:]))
	switch b[16] {
	case 0:
	case 1:
		r.LogAppendTime = true
	default:
		return nil, fmt.Errorf("timestamp type %d", b[16])
	}
	b = b[17:]
	var err error
	if r.Key, b, err = takeBytes(b); err != nil {
		return nil, fmt.Errorf("key: %v", err)
	}
	if r.Value, b, err = takeBytes(b); err != nil {
		return nil, fmt.Errorf("value: %v", err)
	}
	if len(b) < 4 {
		return nil, errors.New("no header count")
	}
	nh := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(nh)*8 > uint64(len(b)) {
		return nil, fmt.Errorf("%d headers in %d bytes", nh, len(b))
	}
	if nh > 0 {
		r.Headers = make([]Header, nh)
	}
	for i := range r.Headers {
		var k []byte
		if k, b, err = takeBytes(b); err != nil || k == nil {
			return nil, fmt.Errorf("header %d key: %v", i, err)
		}
		r.Headers[i].Key = string(k)
		if r.Headers[i].Value, b, err = takeBytes(b); err != nil {
			return nil, fmt.Errorf("header %d value: %v", i, err)
		}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d bytes left over", len(b))
	}
	return r, nil
}

func takeBytes(b []byte) (v, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, errors.New("short")
	}
	l := binary.BigEndian.Uint32(b)
	b = b[4:]
	if l == endMarker {
		return nil, b, nil
	}
	if uint64(l) > uint64(len(b)) {
		return nil, nil, fmt.Errorf("length %d in %d bytes", l, len(b))
	}
	return b[:l:l], b[l:], nil
}

// Verify reads every data file of m in t and checks it (see ReadFile),
// calling fn, if not nil, with each record; the first problem is returned,
// naming the file.
func Verify(t Target, m *Manifest, fn func(partition int32, r *Record) error) error {
	for _, f := range m.Files {
		var cb func(*Record) error
		if fn != nil {
			p := f.Partition
			cb = func(r *Record) error { return fn(p, r) }
		}
		if err := ReadFile(t, f, cb); err != nil {
			return err
		}
	}
	return nil
}
