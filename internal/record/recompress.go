package record

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Recompress returns the magic-2 batch b (h its header, from Parse) with its
// records compressed with codec at level (Compress's scale), as Kafka's
// broker rebuilds a produced batch whose codec differs from the topic's
// compression.type (LogValidator's buildRecordsAndAssignOffsets). The
// records are decoded and checked first (framing, count). Their offset
// deltas come out as 0..n-1 and the max timestamp is the records' largest
// (unless the batch is LogAppendTime), as Kafka's MemoryRecordsBuilder
// writes them; a well-formed producer batch already has both, and then its
// records section is recompressed byte for byte. Everything else is kept:
// base offset, leader epoch, base timestamp and timestamp deltas, keys,
// values, headers, record attributes, producer id, epoch and base sequence,
// the batch attributes other than the codec. The CRC is recomputed.
//
// Decompression is bounded by maxBytes: a batch that would expand beyond it
// fails with an error wrapping ErrInvalidRecord and ErrTooLarge. Malformed
// records fail with ErrInvalidRecord. b is not modified.
func Recompress(b []byte, h Header, codec, level, maxBytes int) ([]byte, error) {
	if codec < CodecNone || codec > CodecZstd {
		return nil, fmt.Errorf("%w: codec %d", ErrUnsupportedCodec, codec)
	}
	data, err := recordData(b, h, maxBytes)
	if err != nil {
		return nil, err
	}
	logAppend := h.Attributes&AttrLogAppendTime != 0
	maxTS := int64(math.MinInt64)
	inOrder := true
	n := 0
	for rest := data; len(rest) > 0; n++ {
		if n == int(h.RecordCount) {
			return nil, fmt.Errorf("%w: %d bytes after the batch's %d records", ErrInvalidRecord, len(rest), h.RecordCount)
		}
		var r Record
		if rest, err = decodeRecord(rest, &r, false); err != nil {
			return nil, fmt.Errorf("%w: record %d: %w", ErrInvalidRecord, n, err)
		}
		if r.OffsetDelta != int32(n) {
			inOrder = false
		}
		maxTS = max(maxTS, h.BaseTimestamp+r.TimestampDelta)
	}
	if n != int(h.RecordCount) {
		return nil, fmt.Errorf("%w: batch claims %d records, holds %d", ErrInvalidRecord, h.RecordCount, n)
	}
	if logAppend || n == 0 {
		maxTS = h.MaxTimestamp
	}
	if !inOrder {
		recs, err := Records(b, h, maxBytes)
		if err != nil {
			return nil, err
		}
		for i := range recs {
			recs[i].OffsetDelta = int32(i)
		}
		return BuildBatch(BatchSpec{
			BaseOffset: h.BaseOffset, PartitionLeaderEpoch: h.LeaderEpoch, Attributes: h.Attributes,
			FirstTimestamp: h.BaseTimestamp, MaxTimestamp: maxTS,
			ProducerID: h.ProducerID, ProducerEpoch: h.ProducerEpoch, BaseSequence: h.BaseSequence,
			Codec: codec, Level: level,
		}, recs)
	}
	var payload []byte
	if codec == CodecNone {
		payload = data
	} else if payload, err = Compress(codec, data, level); err != nil {
		return nil, err
	}
	if int64(HeaderSize+len(payload))-LogOverhead > math.MaxInt32 {
		return nil, fmt.Errorf("%w: batch of %d bytes", ErrInvalidRecord, HeaderSize+len(payload))
	}
	out := make([]byte, HeaderSize, HeaderSize+len(payload))
	copy(out, b[:HeaderSize])
	out = append(out, payload...)
	attrs := h.Attributes&^AttrCompressionMask | int16(codec)
	binary.BigEndian.PutUint32(out[offBatchLength:], uint32(len(out)-LogOverhead))
	binary.BigEndian.PutUint16(out[offAttributes:], uint16(attrs))
	if n > 0 {
		binary.BigEndian.PutUint32(out[offLastDelta:], uint32(n-1))
	}
	binary.BigEndian.PutUint64(out[offMaxTime:], uint64(maxTS))
	binary.BigEndian.PutUint32(out[offCRC:], Checksum(out))
	return out, nil
}
