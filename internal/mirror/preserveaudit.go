package mirror

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/record"
)

// Audit counts in the offset-preserving mode: the copy moves whole batches
// without decoding them, so the records of a produce the target took are
// counted afterwards from the batches' bytes (see the package doc, "Audit
// counts").

// auditMaxBatchBytes bounds a compressed batch's records once decompressed
// for counting, in bytes: a larger one (a compression ratio over 100 on a
// 1 MiB fetch) is not counted, and the count says so in the log.
const auditMaxBatchBytes = 128 << 20

var errAuditRecord = errors.New("malformed record")

// countBatches counts for the audit, under source topic t, the records of
// the data batches of raw (whole batches, as the target took them) at
// offsets from on: the records the topic holds there, aborted ones
// included (as the audit's topic stage, which reads read_uncommitted,
// counts them); control batches (transaction markers) are not records.
// Uncompressed batches are read in place and compressed ones decompressed
// once each; nothing is allocated per record (the tally allocates per
// window of record time). It returns the first batch
// it could not read, after counting every other.
func (m *Mirror) countBatches(t string, p int32, raw []byte, from int64) error {
	// The fetch's records go to a tally first, handed to the counter
	// under one lock: the partitions' copies do not contend on it per
	// record.
	var c audit.Tally
	defer m.opts.Audit.CountTally(&c)
	var errs []error
	for pos := 0; pos < len(raw); {
		size, ok := record.PeekSize(raw[pos:])
		if !ok || size > len(raw)-pos {
			return errors.Join(append(errs, fmt.Errorf("a batch at byte %d of %d is cut short", pos, len(raw)))...)
		}
		b := raw[pos : pos+size]
		pos += size
		h, err := record.ParseHeader(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if h.IsControl() || h.LastOffset() < from {
			continue
		}
		logAppend := h.Attributes&record.AttrLogAppendTime != 0
		if logAppend && int64(h.RecordCount) == int64(h.LastOffsetDelta)+1 {
			// Every offset of the batch holds a record (no gap left by
			// compaction), all with the batch's time: nothing to decode.
			ts := time.UnixMilli(h.MaxTimestamp)
			for o := max(h.BaseOffset, from); o <= h.LastOffset(); o++ {
				c.Count(t, p, o, ts)
			}
			continue
		}
		data := b[record.HeaderSize:]
		if codec := int(h.Codec()); codec != record.CodecNone {
			if data, err = record.Decompress(codec, data, auditMaxBatchBytes); err != nil {
				errs = append(errs, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err))
				continue
			}
		}
		if err := countRecords(data, &h, from, func(offset, ms int64) { c.Count(t, p, offset, time.UnixMilli(ms)) }); err != nil {
			errs = append(errs, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err))
		}
	}
	return errors.Join(errs...)
}

// countRecords calls count with the offset and timestamp (Unix ms) of each
// record of a batch's records section data (h its header) at offsets from
// on, reading only each record's length, timestamp delta and offset delta.
func countRecords(data []byte, h *record.Header, from int64, count func(offset, ms int64)) error {
	logAppend := h.Attributes&record.AttrLogAppendTime != 0
	for n := int32(0); len(data) > 0; n++ {
		if n == h.RecordCount {
			return fmt.Errorf("%w: %d bytes after the batch's %d records", errAuditRecord, len(data), h.RecordCount)
		}
		length, l := binary.Varint(data)
		if l <= 0 || length < 1 || length > int64(len(data)-l) {
			return fmt.Errorf("%w: record %d: length", errAuditRecord, n)
		}
		body := data[l+1 : l+int(length)] // after the attributes byte
		data = data[l+int(length):]
		tsDelta, l1 := binary.Varint(body)
		if l1 <= 0 {
			return fmt.Errorf("%w: record %d: timestamp delta", errAuditRecord, n)
		}
		offDelta, l2 := binary.Varint(body[l1:])
		if l2 <= 0 {
			return fmt.Errorf("%w: record %d: offset delta", errAuditRecord, n)
		}
		offset := h.BaseOffset + offDelta
		if offset < from {
			continue
		}
		ms := h.BaseTimestamp + tsDelta
		if logAppend {
			ms = h.MaxTimestamp
		}
		count(offset, ms)
	}
	return nil
}
