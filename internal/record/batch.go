// Package record reads and rewrites Kafka record batches (magic 2, the only
// format Sluice stores). Everything here is pure: byte slices in, values or
// errors out, no IO. Batches are stored byte-identical to the wire format, so
// the produce path only rewrites header fields in place; it never decompresses
// (except to recompress a batch in the topic's compression.type: Recompress).
//
// Layout of a batch header (Kafka's DefaultRecordBatch):
//
//	0  baseOffset            int64
//	8  batchLength           int32   bytes after this field
//	12 partitionLeaderEpoch  int32
//	16 magic                 int8    always 2
//	17 crc                   uint32  CRC-32C of everything from attributes on
//	21 attributes            int16
//	23 lastOffsetDelta       int32
//	27 baseTimestamp         int64
//	35 maxTimestamp          int64
//	43 producerId            int64
//	51 producerEpoch         int16
//	53 baseSequence          int32
//	57 recordCount           int32
//	61 records...
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// HeaderSize is the size of a batch header in bytes.
const HeaderSize = 61

// LogOverhead is the part of the header not counted by batchLength.
const LogOverhead = 12

const (
	offBaseOffset   = 0
	offBatchLength  = 8
	offLeaderEpoch  = 12
	offMagic        = 16
	offCRC          = 17
	offAttributes   = 21
	offLastDelta    = 23
	offBaseTime     = 27
	offMaxTime      = 35
	offProducerID   = 43
	offProducerEpoc = 51
	offBaseSequence = 53
	offRecordCount  = 57
)

// Attribute bits.
const (
	AttrCompressionMask = 0x07
	AttrLogAppendTime   = 0x08
	AttrTransactional   = 0x10
	AttrControl         = 0x20
	AttrDeleteHorizon   = 0x40
)

// Compression codecs as numbered in the attributes.
const (
	CodecNone   = 0
	CodecGzip   = 1
	CodecSnappy = 2
	CodecLZ4    = 3
	CodecZstd   = 4
)

// Errors a batch can fail with. The server turns them into Kafka codes.
var (
	ErrTruncated        = errors.New("record: batch truncated")
	ErrCorrupt          = errors.New("record: corrupt batch")
	ErrUnsupportedMagic = errors.New("record: unsupported magic (only 2 is served)")
	ErrInvalidRecord    = errors.New("record: invalid record batch")
	ErrUnsupportedCodec = errors.New("record: unsupported compression codec")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the decoded batch header.
type Header struct {
	BaseOffset      int64
	BatchLength     int32
	LeaderEpoch     int32
	Magic           int8
	CRC             uint32
	Attributes      int16
	LastOffsetDelta int32
	BaseTimestamp   int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	RecordCount     int32
}

// Size is the whole batch's size in bytes.
func (h *Header) Size() int { return int(h.BatchLength) + LogOverhead }

// LastOffset is the offset of the batch's last record.
func (h *Header) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// Codec is the compression codec.
func (h *Header) Codec() int8 { return int8(h.Attributes & AttrCompressionMask) }

// IsTransactional reports the transactional bit.
func (h *Header) IsTransactional() bool { return h.Attributes&AttrTransactional != 0 }

// IsControl reports whether this is a control batch (transaction marker).
func (h *Header) IsControl() bool { return h.Attributes&AttrControl != 0 }

// HasProducer reports whether the batch was written by an idempotent producer.
func (h *Header) HasProducer() bool { return h.ProducerID >= 0 }

// LastSequence is the sequence number of the batch's last record, wrapping
// at int32 as Kafka does.
func (h *Header) LastSequence() int32 {
	if h.BaseSequence < 0 {
		return -1
	}
	return int32((int64(h.BaseSequence) + int64(h.LastOffsetDelta)) % (1 << 31))
}

// PeekSize returns the size of the batch starting at b, reading only the
// first 12 bytes. ok is false when fewer than 12 bytes are available.
func PeekSize(b []byte) (size int, ok bool) {
	if len(b) < LogOverhead {
		return 0, false
	}
	return int(int32(binary.BigEndian.Uint32(b[offBatchLength:]))) + LogOverhead, true
}

// ParseHeader decodes the header at the start of b without checking the CRC.
// It checks that the header is complete and that batchLength is sane.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < offMagic+1 {
		return h, ErrTruncated
	}
	h.BaseOffset = int64(binary.BigEndian.Uint64(b[offBaseOffset:]))
	h.BatchLength = int32(binary.BigEndian.Uint32(b[offBatchLength:]))
	h.LeaderEpoch = int32(binary.BigEndian.Uint32(b[offLeaderEpoch:]))
	h.Magic = int8(b[offMagic])
	if h.Magic != 2 {
		return h, fmt.Errorf("%w: magic %d", ErrUnsupportedMagic, h.Magic)
	}
	if h.BatchLength < HeaderSize-LogOverhead {
		return h, fmt.Errorf("%w: batch length %d below the header size", ErrCorrupt, h.BatchLength)
	}
	if len(b) < HeaderSize {
		return h, ErrTruncated
	}
	h.CRC = binary.BigEndian.Uint32(b[offCRC:])
	h.Attributes = int16(binary.BigEndian.Uint16(b[offAttributes:]))
	h.LastOffsetDelta = int32(binary.BigEndian.Uint32(b[offLastDelta:]))
	h.BaseTimestamp = int64(binary.BigEndian.Uint64(b[offBaseTime:]))
	h.MaxTimestamp = int64(binary.BigEndian.Uint64(b[offMaxTime:]))
	h.ProducerID = int64(binary.BigEndian.Uint64(b[offProducerID:]))
	h.ProducerEpoch = int16(binary.BigEndian.Uint16(b[offProducerEpoc:]))
	h.BaseSequence = int32(binary.BigEndian.Uint32(b[offBaseSequence:]))
	h.RecordCount = int32(binary.BigEndian.Uint32(b[offRecordCount:]))
	return h, nil
}

// Checksum computes the CRC-32C that the batch's crc field should hold.
// b must hold the whole batch.
func Checksum(b []byte) uint32 {
	return crc32.Checksum(b[offAttributes:], castagnoli)
}

// Parse decodes and checks one whole batch at the start of b: complete,
// magic 2, CRC-32C matching, counts consistent. It returns the header; the
// batch occupies b[:h.Size()].
func Parse(b []byte) (Header, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, err
	}
	if h.Size() > len(b) {
		return h, ErrTruncated
	}
	if got := Checksum(b[:h.Size()]); got != h.CRC {
		return h, fmt.Errorf("%w: crc 0x%08x, computed 0x%08x", ErrCorrupt, h.CRC, got)
	}
	if h.RecordCount < 0 || h.LastOffsetDelta < 0 {
		return h, fmt.Errorf("%w: negative record count or offset delta", ErrInvalidRecord)
	}
	if h.Codec() > CodecZstd {
		return h, fmt.Errorf("%w: codec %d", ErrUnsupportedCodec, h.Codec())
	}
	return h, nil
}

// ValidateProduced checks a batch a client sent, beyond Parse: the things
// Kafka refuses on produce without decompressing.
func ValidateProduced(b []byte) (Header, error) {
	h, err := Parse(b)
	if err != nil {
		return h, err
	}
	if h.Size() != len(b) {
		return h, fmt.Errorf("%w: %d trailing bytes after the batch", ErrInvalidRecord, len(b)-h.Size())
	}
	if h.RecordCount == 0 {
		return h, fmt.Errorf("%w: batch has no records", ErrInvalidRecord)
	}
	if !h.IsControl() && h.LastOffsetDelta != h.RecordCount-1 {
		return h, fmt.Errorf("%w: lastOffsetDelta %d does not match %d records", ErrInvalidRecord, h.LastOffsetDelta, h.RecordCount)
	}
	if h.Codec() == CodecNone && int(h.RecordCount) > len(b)-HeaderSize {
		// Each uncompressed record takes at least 7 bytes; fewer bytes than
		// records is a lie about the count.
		return h, fmt.Errorf("%w: %d records in %d bytes", ErrInvalidRecord, h.RecordCount, len(b)-HeaderSize)
	}
	return h, nil
}

// SetBaseOffset rewrites the batch's base offset. The field is outside the
// CRC, so the batch stays valid.
func SetBaseOffset(b []byte, off int64) { binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(off)) }

// SetLeaderEpoch rewrites the partition leader epoch (outside the CRC).
func SetLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(epoch))
}

// SetLogAppendTime marks the batch as LogAppendTime with the broker's time
// as its max timestamp, and recomputes the CRC, as Kafka does for topics with
// message.timestamp.type=LogAppendTime.
func SetLogAppendTime(b []byte, ts int64) {
	attrs := binary.BigEndian.Uint16(b[offAttributes:])
	binary.BigEndian.PutUint16(b[offAttributes:], attrs|AttrLogAppendTime)
	binary.BigEndian.PutUint64(b[offMaxTime:], uint64(ts))
	binary.BigEndian.PutUint32(b[offCRC:], Checksum(b))
}

// SetProducerID rewrites the batch's producer id and recomputes the CRC
// (the field is inside it).
func SetProducerID(b []byte, id int64) {
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(id))
	binary.BigEndian.PutUint32(b[offCRC:], Checksum(b))
}

// Iter walks the batches of a buffer that holds whole batches back to back
// (a produce request's records, a segment read). It stops at the first
// incomplete or invalid batch and reports why in Err.
type Iter struct {
	b   []byte
	pos int
	err error
}

// NewIter iterates over b.
func NewIter(b []byte) *Iter { return &Iter{b: b} }

// Next returns the next batch and its header, or ok=false at the end or on error.
func (it *Iter) Next() (batch []byte, h Header, ok bool) {
	if it.err != nil || it.pos >= len(it.b) {
		return nil, h, false
	}
	h, err := Parse(it.b[it.pos:])
	if err != nil {
		it.err = err
		return nil, h, false
	}
	batch = it.b[it.pos : it.pos+h.Size()]
	it.pos += h.Size()
	return batch, h, true
}

// Err is the reason the iteration stopped early, nil at a clean end.
func (it *Iter) Err() error { return it.err }

// Pos is the byte position of the next batch.
func (it *Iter) Pos() int { return it.pos }
