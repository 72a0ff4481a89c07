package collect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The spool's files. A segment, NNNNNNNNNNNNNNNNNNNN.spool (its sequence
// number, 20 digits), is a run of entries, one per request (or per record
// the cluster failed): a 4-byte big-endian payload length, the payload's
// 4-byte CRC-32C, then the payload:
//
//	uvarint len, stream name
//	uvarint record count
//	per record: uvarint len, topic; varint len (-1: null), key;
//	            varint len (-1: null), value; varint timestamp (Unix ms);
//	            uvarint header count; per header: uvarint len, key;
//	            varint len (-1: null), value
//
// Partitions are not kept: a replayed record is partitioned again by its
// key, as when it was first received.
const (
	spoolEntryHeaderBytes = 8
	// maxSpoolEntryBytes bounds one entry's payload: a longer length read
	// from disk is corruption, not an allocation to make.
	maxSpoolEntryBytes = 256 << 20
	// maxTopicNameBytes is Kafka's limit on a topic name's length.
	maxTopicNameBytes = 249
	spoolSuffix       = ".spool"
)

var (
	crc32c = crc32.MakeTable(crc32.Castagnoli)
	// errSpoolEntry: bytes that are not an entry (torn or corrupt).
	errSpoolEntry = errors.New("collect: spool entry corrupt")
)

func segmentName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, spoolSuffix) }

// appendEntry appends the framed entry of recs (of stream) to dst.
func appendEntry(dst []byte, stream string, recs []*kgo.Record) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, spoolEntryHeaderBytes)...)
	dst = appendString(dst, stream)
	dst = binary.AppendUvarint(dst, uint64(len(recs)))
	for _, r := range recs {
		dst = appendString(dst, r.Topic)
		dst = appendNullable(dst, r.Key)
		dst = appendNullable(dst, r.Value)
		dst = binary.AppendVarint(dst, r.Timestamp.UnixMilli())
		dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			dst = appendString(dst, h.Key)
			dst = appendNullable(dst, h.Value)
		}
	}
	payload := dst[start+spoolEntryHeaderBytes:]
	binary.BigEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, crc32c))
	return dst
}

func appendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

func appendNullable(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	return append(binary.AppendVarint(dst, int64(len(b))), b...)
}

// entryLen reads the header at the start of b: the whole entry's length,
// or errSpoolEntry when b holds no complete, intact entry (a torn tail).
func entryLen(b []byte) (int, error) {
	if len(b) < spoolEntryHeaderBytes {
		return 0, errSpoolEntry
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxSpoolEntryBytes || int(n) > len(b)-spoolEntryHeaderBytes {
		return 0, errSpoolEntry
	}
	payload := b[spoolEntryHeaderBytes : spoolEntryHeaderBytes+int(n)]
	if crc32.Checksum(payload, crc32c) != binary.BigEndian.Uint32(b[4:]) {
		return 0, errSpoolEntry
	}
	return spoolEntryHeaderBytes + int(n), nil
}

// intactEnd returns where the last whole, intact entry of seg ends
// (recovery cuts the segment there: what follows is a torn write) and how
// many bytes before it are damaged. Damage between intact entries is not a
// torn write, which can only be at the end, but bytes that were fsynced
// and do not read back: they are skipped, and the entries after them kept.
func intactEnd(seg []byte) (end, damaged int) {
	off := 0
	for off < len(seg) {
		if n, err := entryLen(seg[off:]); err == nil {
			off += n
			end = off
			continue
		}
		next := nextEntry(seg, off+1)
		if next < 0 {
			break
		}
		damaged += next - off
		off = next
	}
	return end, damaged
}

// nextEntry returns the offset of the first intact entry in b at or after
// from, or -1. It scans byte by byte, so a candidate must look like the
// start of an entry (see looksLikeEntry) before its CRC is computed: that
// keeps a scan over megabytes of damaged or binary bytes cheap.
func nextEntry(b []byte, from int) int {
	for p := max(from, 0); p+spoolEntryHeaderBytes <= len(b); p++ {
		if !looksLikeEntry(b[p:]) {
			continue
		}
		if _, err := entryLen(b[p:]); err == nil {
			return p
		}
	}
	return -1
}

// looksLikeEntry says whether b starts with a length that fits, then a
// payload that starts with a stream name, at least one record and a topic
// name Kafka allows (1-249 of [a-zA-Z0-9._-]). Every entry does; random
// bytes seldom do.
func looksLikeEntry(b []byte) bool {
	if len(b) < spoolEntryHeaderBytes {
		return false
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxSpoolEntryBytes || int(n) > len(b)-spoolEntryHeaderBytes {
		return false
	}
	d := entryDecoder{b: b[spoolEntryHeaderBytes : spoolEntryHeaderBytes+int(n)]}
	d.bytes()
	if d.uvarint() == 0 {
		return false
	}
	topic := d.bytes()
	if d.err != nil || len(topic) == 0 || len(topic) > maxTopicNameBytes {
		return false
	}
	for _, c := range topic {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// decodeEntry decodes the payload of one entry (its CRC checked by
// entryLen). The records' bytes alias payload.
func decodeEntry(payload []byte) (stream string, recs []*kgo.Record, err error) {
	d := entryDecoder{b: payload}
	stream = string(d.bytes())
	n := d.uvarint()
	// Every record takes at least 6 bytes: no count above that is real.
	if n > uint64(len(d.b))/6 {
		d.err = errSpoolEntry
	}
	if d.err == nil {
		recs = make([]*kgo.Record, 0, n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		r := &kgo.Record{Topic: string(d.bytes())}
		r.Key = d.nullable()
		r.Value = d.nullable()
		r.Timestamp = time.UnixMilli(d.varint())
		nh := d.uvarint()
		if nh > uint64(len(d.b))/2 {
			d.err = errSpoolEntry
			break
		}
		for j := uint64(0); j < nh && d.err == nil; j++ {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(d.bytes()), Value: d.nullable()})
		}
		recs = append(recs, r)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errSpoolEntry // bytes after the last record
	}
	if d.err != nil {
		return "", nil, d.err
	}
	return stream, recs, nil
}

// entryDecoder reads the fields of a payload; the first error sticks and
// every later read returns zero values.
type entryDecoder struct {
	b   []byte
	err error
}

func (d *entryDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errSpoolEntry
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *entryDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errSpoolEntry
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *entryDecoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errSpoolEntry
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *entryDecoder) bytes() []byte { return d.take(d.uvarint()) }

func (d *entryDecoder) nullable() []byte {
	n := d.varint()
	if d.err != nil {
		return nil
	}
	if n == -1 {
		return nil
	}
	if n < 0 {
		d.err = errSpoolEntry
		return nil
	}
	b := d.take(uint64(n))
	if b == nil && d.err == nil {
		b = []byte{}
	}
	return b
}

// spoolCheckpoint is where replay stands: the segment and the offset in it
// up to which every record was acknowledged by the cluster. It is kept in
// the file replay.checkpoint, replaced atomically: 8-byte sequence, 8-byte
// offset, CRC-32C of the 16, all big-endian.
type spoolCheckpoint struct {
	seq uint64
	off int64
}

const (
	checkpointName  = "replay.checkpoint"
	checkpointBytes = 20
)

func (c spoolCheckpoint) encode() []byte {
	b := make([]byte, checkpointBytes)
	binary.BigEndian.PutUint64(b, c.seq)
	binary.BigEndian.PutUint64(b[8:], uint64(c.off))
	binary.BigEndian.PutUint32(b[16:], crc32.Checksum(b[:16], crc32c))
	return b
}

func decodeCheckpoint(b []byte) (spoolCheckpoint, error) {
	if len(b) != checkpointBytes || crc32.Checksum(b[:16], crc32c) != binary.BigEndian.Uint32(b[16:]) {
		return spoolCheckpoint{}, fmt.Errorf("collect: %s corrupt (%d bytes)", checkpointName, len(b))
	}
	off := int64(binary.BigEndian.Uint64(b[8:]))
	if off < 0 {
		return spoolCheckpoint{}, fmt.Errorf("collect: %s has a negative offset", checkpointName)
	}
	return spoolCheckpoint{seq: binary.BigEndian.Uint64(b), off: off}, nil
}
