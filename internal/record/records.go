package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A record inside a magic-2 batch (Kafka's DefaultRecord), all integers
// zigzag varints:
//
//	length          varint   bytes after this field
//	attributes      int8     unused, 0
//	timestampDelta  varlong  from the batch's base timestamp
//	offsetDelta     varint   from the batch's base offset
//	keyLength       varint   -1 for a null key
//	key             bytes
//	valueLength     varint   -1 for a null value
//	value           bytes
//	headerCount     varint
//	headers         headerKeyLength varint, headerKey string,
//	                headerValueLength varint (-1 null), headerValue bytes

// minRecordSize is the smallest encoded record: the length and six one-byte
// fields (attributes, deltas, key and value lengths, header count).
const minRecordSize = 7

// RecordHeader is one record header. A nil Value is a null value.
type RecordHeader struct {
	Key   string
	Value []byte
}

// Record is one decoded record. Key and Value are nil for null, non-nil
// (possibly empty) otherwise. The record's offset is the batch's BaseOffset
// plus OffsetDelta; its timestamp is the batch's BaseTimestamp plus
// TimestampDelta, or the batch's MaxTimestamp for LogAppendTime batches.
type Record struct {
	Attributes     int8
	TimestampDelta int64
	OffsetDelta    int32
	Key            []byte
	Value          []byte
	Headers        []RecordHeader
}

// ControlType is the type of a control record (a transaction marker), read
// from the record's key.
type ControlType int16

// Control record types.
const (
	ControlAbort  ControlType = 0
	ControlCommit ControlType = 1
)

func (t ControlType) String() string {
	switch t {
	case ControlAbort:
		return "ABORT"
	case ControlCommit:
		return "COMMIT"
	}
	return fmt.Sprintf("CONTROL(%d)", int16(t))
}

// ParseControlKey reads the type from a control record's key: a big endian
// int16 version (0; higher versions are read the same way, as Kafka does)
// and an int16 type. Types other than abort and commit (such as KRaft's) are
// returned as they are; a key shorter than 4 bytes or with a negative version
// is an error wrapping ErrInvalidRecord.
func ParseControlKey(key []byte) (ControlType, error) {
	if len(key) < 4 {
		return 0, fmt.Errorf("%w: control record key of %d bytes, need 4", ErrInvalidRecord, len(key))
	}
	if v := int16(binary.BigEndian.Uint16(key)); v < 0 {
		return 0, fmt.Errorf("%w: control record key version %d", ErrInvalidRecord, v)
	}
	return ControlType(int16(binary.BigEndian.Uint16(key[2:]))), nil
}

// recordData returns the batch's records section, decompressed. b must hold
// the batch h was parsed from; it is not checksummed again. For uncompressed
// batches the result aliases b and maxBytes does not apply.
func recordData(b []byte, h Header, maxBytes int) ([]byte, error) {
	if h.Magic != 2 {
		return nil, fmt.Errorf("%w: %w: magic %d", ErrInvalidRecord, ErrUnsupportedMagic, h.Magic)
	}
	size := int64(h.BatchLength) + LogOverhead
	if size < HeaderSize || size > int64(len(b)) {
		return nil, fmt.Errorf("%w: %w: batch of %d bytes in %d", ErrInvalidRecord, ErrTruncated, size, len(b))
	}
	if h.RecordCount < 0 {
		return nil, fmt.Errorf("%w: negative record count %d", ErrInvalidRecord, h.RecordCount)
	}
	raw := b[HeaderSize:int(size):int(size)]
	codec := int(h.Codec())
	if codec == CodecNone {
		return raw, nil
	}
	data, err := Decompress(codec, raw, maxBytes)
	if err != nil {
		if errors.Is(err, ErrInvalidRecord) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	return data, nil
}

// Records decodes every record of the magic-2 batch b (as returned by Parse,
// with h its header; the CRC is not checked again). Compressed batches are
// decompressed per h.Codec() into at most maxBytes bytes. The number of
// records must match h.RecordCount and they must use the records section
// exactly.
//
// Keys, values and header values alias b (uncompressed batches) or the
// decompressed buffer; copy them to keep them past b. Malformed input gives
// an error wrapping ErrInvalidRecord.
func Records(b []byte, h Header, maxBytes int) ([]Record, error) {
	data, err := recordData(b, h, maxBytes)
	if err != nil {
		return nil, err
	}
	n := min(int(h.RecordCount), len(data)/minRecordSize)
	recs := make([]Record, 0, n)
	for len(data) > 0 {
		if len(recs) == int(h.RecordCount) {
			return nil, fmt.Errorf("%w: %d bytes after the batch's %d records", ErrInvalidRecord, len(data), h.RecordCount)
		}
		var r Record
		if data, err = decodeRecord(data, &r, true); err != nil {
			return nil, fmt.Errorf("%w: record %d: %w", ErrInvalidRecord, len(recs), err)
		}
		recs = append(recs, r)
	}
	if len(recs) != int(h.RecordCount) {
		return nil, fmt.Errorf("%w: batch claims %d records, holds %d", ErrInvalidRecord, h.RecordCount, len(recs))
	}
	return recs, nil
}

// FirstAtOrAfter returns the offset of the batch's first record whose
// timestamp is at least ts, and whether there is one. Records of a
// LogAppendTime batch all carry the batch's MaxTimestamp. Decompression is
// bounded by maxBytes as in Records; a malformed record before the match is
// an error wrapping ErrInvalidRecord.
func FirstAtOrAfter(b []byte, h Header, ts int64, maxBytes int) (offset int64, found bool, err error) {
	logAppend := h.Attributes&AttrLogAppendTime != 0
	if logAppend && h.MaxTimestamp < ts {
		return 0, false, nil
	}
	data, err := recordData(b, h, maxBytes)
	if err != nil {
		return 0, false, err
	}
	for i := 0; len(data) > 0; i++ {
		var r Record
		if data, err = decodeRecord(data, &r, false); err != nil {
			return 0, false, fmt.Errorf("%w: record %d: %w", ErrInvalidRecord, i, err)
		}
		if logAppend || h.BaseTimestamp+r.TimestampDelta >= ts {
			return h.BaseOffset + int64(r.OffsetDelta), true, nil
		}
	}
	return 0, false, nil
}

var (
	errVarint      = errors.New("malformed varint")
	errRecordShort = errors.New("record overruns its length")
)

// varint32 reads a zigzag varint that must fit an int32 (at most 5 bytes).
func varint32(b []byte) (int32, []byte, error) {
	v, n := binary.Varint(b)
	if n <= 0 || n > 5 || v < math.MinInt32 || v > math.MaxInt32 {
		return 0, nil, errVarint
	}
	return int32(v), b[n:], nil
}

// varint64 reads a zigzag varlong (at most 10 bytes).
func varint64(b []byte) (int64, []byte, error) {
	v, n := binary.Varint(b)
	if n <= 0 {
		return 0, nil, errVarint
	}
	return v, b[n:], nil
}

// nullableBytes reads a varint length and that many bytes; a negative
// length is null (Kafka reads any negative length as null).
func nullableBytes(b []byte) ([]byte, []byte, error) {
	l, b, err := varint32(b)
	if err != nil {
		return nil, nil, err
	}
	if l < 0 {
		return nil, b, nil
	}
	if int(l) > len(b) {
		return nil, nil, errRecordShort
	}
	return b[:l:l], b[l:], nil
}

// decodeRecord decodes the record at the start of data into r and returns
// the bytes after it. Headers are skipped (but checked) unless withHeaders.
func decodeRecord(data []byte, r *Record, withHeaders bool) ([]byte, error) {
	length, data, err := varint32(data)
	if err != nil {
		return nil, fmt.Errorf("length: %w", err)
	}
	if length < 0 || int(length) > len(data) {
		return nil, fmt.Errorf("length %d with %d bytes left", length, len(data))
	}
	body, rest := data[:length], data[length:]
	if len(body) == 0 {
		return nil, errRecordShort
	}
	r.Attributes = int8(body[0])
	body = body[1:]
	if r.TimestampDelta, body, err = varint64(body); err != nil {
		return nil, fmt.Errorf("timestamp delta: %w", err)
	}
	if r.OffsetDelta, body, err = varint32(body); err != nil {
		return nil, fmt.Errorf("offset delta: %w", err)
	}
	if r.Key, body, err = nullableBytes(body); err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if r.Value, body, err = nullableBytes(body); err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	count, body, err := varint32(body)
	if err != nil {
		return nil, fmt.Errorf("header count: %w", err)
	}
	// Each header takes at least two bytes (two lengths).
	if count < 0 || int(count) > len(body)/2 {
		return nil, fmt.Errorf("header count %d with %d bytes left", count, len(body))
	}
	if withHeaders && count > 0 {
		r.Headers = make([]RecordHeader, count)
	}
	for i := range int(count) {
		var key, value []byte
		var kl int32
		if kl, body, err = varint32(body); err != nil {
			return nil, fmt.Errorf("header %d key: %w", i, err)
		}
		if kl < 0 || int(kl) > len(body) {
			return nil, fmt.Errorf("header %d key length %d with %d bytes left", i, kl, len(body))
		}
		key, body = body[:kl], body[kl:]
		if value, body, err = nullableBytes(body); err != nil {
			return nil, fmt.Errorf("header %d value: %w", i, err)
		}
		if withHeaders {
			r.Headers[i] = RecordHeader{Key: string(key), Value: value}
		}
	}
	if len(body) != 0 {
		return nil, fmt.Errorf("%d bytes left at the end of the record", len(body))
	}
	return rest, nil
}

func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

func nullableLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendNullable(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

// recordBodySize is the size of r's encoding after its length field.
func recordBodySize(r *Record) int {
	n := 1 + varintLen(r.TimestampDelta) + varintLen(int64(r.OffsetDelta)) +
		nullableLen(r.Key) + nullableLen(r.Value) + varintLen(int64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		n += varintLen(int64(len(h.Key))) + len(h.Key) + nullableLen(h.Value)
	}
	return n
}

// AppendRecord appends the encoding of r to dst. A nil Key, Value or header
// Value is encoded as null.
func AppendRecord(dst []byte, r Record) []byte {
	return appendRecord(dst, &r)
}

func appendRecord(dst []byte, r *Record) []byte {
	dst = binary.AppendVarint(dst, int64(recordBodySize(r)))
	dst = append(dst, byte(r.Attributes))
	dst = binary.AppendVarint(dst, r.TimestampDelta)
	dst = binary.AppendVarint(dst, int64(r.OffsetDelta))
	dst = appendNullable(dst, r.Key)
	dst = appendNullable(dst, r.Value)
	dst = binary.AppendVarint(dst, int64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendNullable(dst, h.Value)
	}
	return dst
}

// BatchSpec describes the header of a batch to build. Codec replaces the
// compression bits of Attributes; Level is the compression level as in
// Compress (0 for the codec's default). Use ProducerID -1, ProducerEpoch -1
// and BaseSequence -1 for a batch without an idempotent producer.
type BatchSpec struct {
	BaseOffset           int64
	PartitionLeaderEpoch int32
	Attributes           int16
	FirstTimestamp       int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	Codec                int
	Level                int
	// LastOffsetDelta, when above the last record's offset delta (or when
	// recs is empty), is written as the batch's lastOffsetDelta: the log
	// cleaner keeps a compacted batch's original last offset so that the
	// producer's last sequence survives, as Kafka does.
	LastOffsetDelta int32
}

// BuildBatch encodes recs into a whole magic-2 batch: records compressed per
// spec.Codec, lastOffsetDelta from the last record, the record count and the
// CRC-32C filled in. The records' OffsetDelta must be non-negative and
// strictly increasing (0, 1, 2... for a fresh batch); timestamps are taken
// from spec and the records' deltas as given. An empty recs builds a batch
// with no records and lastOffsetDelta spec.LastOffsetDelta (0 by default).
func BuildBatch(spec BatchSpec, recs []Record) ([]byte, error) {
	if spec.Codec < CodecNone || spec.Codec > CodecZstd {
		return nil, fmt.Errorf("%w: codec %d", ErrUnsupportedCodec, spec.Codec)
	}
	if len(recs) > math.MaxInt32 {
		return nil, fmt.Errorf("%w: %d records", ErrInvalidRecord, len(recs))
	}
	size := 0
	for i := range recs {
		r := &recs[i]
		if r.OffsetDelta < 0 || (i > 0 && r.OffsetDelta <= recs[i-1].OffsetDelta) {
			return nil, fmt.Errorf("%w: record %d has offset delta %d, deltas must increase from 0 up", ErrInvalidRecord, i, r.OffsetDelta)
		}
		body := recordBodySize(r)
		size += varintLen(int64(body)) + body
	}
	var lastDelta int32
	if len(recs) > 0 {
		lastDelta = recs[len(recs)-1].OffsetDelta
	}
	if spec.LastOffsetDelta > lastDelta {
		lastDelta = spec.LastOffsetDelta
	}

	var b []byte
	if spec.Codec == CodecNone {
		b = make([]byte, HeaderSize, HeaderSize+size)
		for i := range recs {
			b = appendRecord(b, &recs[i])
		}
	} else {
		raw := make([]byte, 0, size)
		for i := range recs {
			raw = appendRecord(raw, &recs[i])
		}
		payload, err := Compress(spec.Codec, raw, spec.Level)
		if err != nil {
			return nil, err
		}
		b = make([]byte, HeaderSize, HeaderSize+len(payload))
		b = append(b, payload...)
	}
	if int64(len(b))-LogOverhead > math.MaxInt32 {
		return nil, fmt.Errorf("%w: batch of %d bytes", ErrInvalidRecord, len(b))
	}

	attrs := spec.Attributes&^AttrCompressionMask | int16(spec.Codec)
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(spec.BaseOffset))
	binary.BigEndian.PutUint32(b[offBatchLength:], uint32(len(b)-LogOverhead))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(spec.PartitionLeaderEpoch))
	b[offMagic] = 2
	binary.BigEndian.PutUint16(b[offAttributes:], uint16(attrs))
	binary.BigEndian.PutUint32(b[offLastDelta:], uint32(lastDelta))
	binary.BigEndian.PutUint64(b[offBaseTime:], uint64(spec.FirstTimestamp))
	binary.BigEndian.PutUint64(b[offMaxTime:], uint64(spec.MaxTimestamp))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(spec.ProducerID))
	binary.BigEndian.PutUint16(b[offProducerEpoc:], uint16(spec.ProducerEpoch))
	binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(spec.BaseSequence))
	binary.BigEndian.PutUint32(b[offRecordCount:], uint32(len(recs)))
	binary.BigEndian.PutUint32(b[offCRC:], Checksum(b))
	return b, nil
}
