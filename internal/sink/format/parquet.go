package format

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/hamba/avro/v2"
	"github.com/parquet-go/parquet-go"
)

// Parquet writes Parquet files: one row per record, with the columns
//
//	topic      BYTE_ARRAY (STRING)
//	partition  INT32
//	offset     INT64
//	timestamp  INT64 (TIMESTAMP(MILLIS, UTC))
//	key        OPTIONAL BYTE_ARRAY, null for a null key
//	headers    LIST of {key STRING, value OPTIONAL BYTE_ARRAY}, in the
//	           record's order (Kafka allows a key twice)
//	value      OPTIONAL, null for a tombstone; its type is the file's:
//	  - a value in the registry's wire format with an Avro schema: the
//	    schema mapped to Parquet (see pqschema.go), a record's fields
//	    a group under value;
//	  - JSON (or the wire format with a JSON Schema): BYTE_ARRAY (JSON);
//	  - anything else: BYTE_ARRAY.
//
// A file holds one kind of value, and one schema id: a record of another
// returns ErrNewFile. Tombstones fit any file; a file of only tombstones
// has a BYTE_ARRAY value. Row groups are written to w as they fill
// (rowGroupRows rows or rowGroupBytes of values), so a file's memory is
// bounded by one row group; Close writes the last one and the footer.
// Columns are Snappy-compressed.
type Parquet struct {
	reg *registry
}

// rowGroupRows is the most rows in a row group.
const rowGroupRows = 128 << 10

// rowGroupBytes is the most value bytes (before encoding) buffered in a
// row group: the bound on a file's memory.
const rowGroupBytes = 64 << 20

// pendingMax is how many leading tombstones a file holds before deciding
// that its value column is bytes: a file's schema is known only at its
// first value.
const pendingMax = 1024

// writeBufferBytes is the buffer between parquet-go, which writes pages
// in small pieces, and the file's writer.
const writeBufferBytes = 64 << 10

// heldRowsMax is how many shredded rows a file holds before it hands
// them to parquet-go in one WriteRows: parquet-go walks its columns once
// per call, and with a call per row that loop and its slice were a sixth
// of the Parquet sink's CPU. Held rows count in Size as their value bytes.
const heldRowsMax = 256

// footerBytesEstimate is what Size adds for the footer before it is
// written.
const footerBytesEstimate = 4 << 10

// Name is "parquet".
func (Parquet) Name() string { return "parquet" }

// Ext is ".parquet".
func (Parquet) Ext() string { return ".parquet" }

// NewFile starts a file.
func (p Parquet) NewFile(w io.Writer) (File, error) {
	bw := bufio.NewWriterSize(w, writeBufferBytes)
	return &pqFile{reg: p.reg, bw: bw, out: &countWriter{w: bw}, groupRowsMax: rowGroupRows}, nil
}

type pqFile struct {
	reg *registry
	bw  *bufio.Writer // to w
	out *countWriter  // to bw: what parquet-go has written

	class  valueClass // of the file; classNull until the first value
	schema *regSchema // classAvro
	plan   *pqPlan
	w      *parquet.Writer

	pending []Record // leading tombstones, before the plan is known
	sh      shredder
	reader  *avro.Reader

	// Rows shredded but not yet given to w (heldRowsMax at most): their
	// values one after the other, where each row ends, and their value
	// bytes. The values point to bytes that are never reused (the
	// records', or new ones).
	heldVals  []parquet.Value
	heldEnds  []int
	heldBytes int64
	rows      []parquet.Row // scratch for WriteRows

	records      int
	groupRowsMax int // rowGroupRows; tests make row groups small
	groupRows    int
	groupBytes   int64
	closed       bool
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (f *pqFile) Append(ctx context.Context, r *Record) error {
	if f.closed {
		return fmt.Errorf("BUG: sink/format: Append after Close")
	}
	v, err := f.reg.classify(ctx, r.Value)
	if err != nil {
		return err
	}
	if v.class == classNull && f.plan == nil {
		if len(f.pending) < pendingMax {
			f.pending = append(f.pending, copyMetadata(r))
			f.records++
			return nil
		}
		if err := f.start(value{class: classBinary}); err != nil {
			return err
		}
	}
	if v.class != classNull {
		if f.plan == nil {
			if err := f.start(v); err != nil {
				return err
			}
		} else if v.class != f.class || (v.class == classAvro && v.schema.id != f.schema.id) {
			return ErrNewFile
		}
	}
	if err := f.write(r, v); err != nil {
		return fmt.Errorf("sink/format: %s/%d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	f.records++
	return nil
}

// copyMetadata keeps a tombstone's fields past Append (the caller may
// reuse its buffers).
func copyMetadata(r *Record) Record {
	c := Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
	if r.Key != nil {
		c.Key = append([]byte{}, r.Key...)
	}
	for _, h := range r.Headers {
		hc := Header{Key: h.Key}
		if h.Value != nil {
			hc.Value = append([]byte{}, h.Value...)
		}
		c.Headers = append(c.Headers, hc)
	}
	return c
}

// start fixes the file's schema from its first value and writes the
// tombstones before it.
func (f *pqFile) start(v value) error {
	switch v.class {
	case classAvro:
		s := v.schema
		s.pqOnce.Do(func() { s.pq, s.pqErr = avroPlan(s.plan) })
		if s.pqErr != nil {
			return fmt.Errorf("sink/format: schema %d in Parquet: %w", s.id, s.pqErr)
		}
		f.plan, f.schema = s.pq, s
		f.reader = avro.NewReader(nil, 0, avro.WithReaderConfig(avroConfig))
	case classJSON:
		f.plan = jsonPlan
	default:
		f.plan = binaryPlan
	}
	f.class = v.class
	f.w = parquet.NewWriter(f.out, f.plan.schema, parquet.Compression(&parquet.Snappy), parquet.WriteBufferSize(0),
		parquet.CreatedBy("sluice sink", "", ""))
	for i := range f.pending {
		if err := f.write(&f.pending[i], value{class: classNull}); err != nil {
			return err
		}
	}
	f.pending = nil
	return nil
}

// jsonPlan and binaryPlan are the schemas of files without Avro; a
// parquet.Schema is immutable and safe to share.
var (
	jsonPlan   = plainPlan(true)
	binaryPlan = plainPlan(false)
)

// write shreds r into a row and holds it, writing the held rows when
// there are heldRowsMax of them or the row group is full; on an error
// the row is not written.
func (f *pqFile) write(r *Record, v value) error {
	s := &f.sh
	s.reset(f.plan.cols)
	s.metadata(r)
	switch v.class {
	case classNull:
		s.nulls(f.plan.value, 0, 0)
	case classAvro:
		s.w.r = f.reader.Reset(v.payload)
		s.w.r.Error = nil
		if err := s.avro(f.plan.value, 0, 0); err != nil {
			return fmt.Errorf("schema %d: %w", f.schema.id, err)
		}
		if err := s.w.end(); err != nil {
			return fmt.Errorf("schema %d: %w", f.schema.id, err)
		}
	default:
		s.emitBytes(colValue, v.payload, 0, 1)
	}
	f.heldVals = append(f.heldVals, s.finish()...)
	f.heldEnds = append(f.heldEnds, len(f.heldVals))
	f.heldBytes += s.size
	f.groupRows++
	f.groupBytes += s.size
	full := f.groupRows >= f.groupRowsMax || f.groupBytes >= rowGroupBytes
	if full || len(f.heldEnds) >= heldRowsMax {
		if err := f.writeHeld(); err != nil {
			return err
		}
	}
	if full {
		if err := f.w.Flush(); err != nil {
			return fmt.Errorf("parquet row group: %w", err)
		}
		f.groupRows, f.groupBytes = 0, 0
	}
	return nil
}

// writeHeld gives the held rows to parquet-go.
func (f *pqFile) writeHeld() error {
	if len(f.heldEnds) == 0 {
		return nil
	}
	f.rows = f.rows[:0]
	start := 0
	for _, end := range f.heldEnds {
		f.rows = append(f.rows, f.heldVals[start:end:end])
		start = end
	}
	_, err := f.w.WriteRows(f.rows)
	clear(f.rows) // nothing kept alive through the scratch
	clear(f.heldVals)
	f.heldVals, f.heldEnds, f.heldBytes = f.heldVals[:0], f.heldEnds[:0], 0
	if err != nil {
		return fmt.Errorf("parquet rows: %w", err)
	}
	return nil
}

// Size is parquet-go's estimate (the bytes written, plus the row group
// being filled: its encoded pages, and its last page before compression),
// plus the held rows' value bytes and a footer.
func (f *pqFile) Size() int64 {
	n := int64(footerBytesEstimate) + f.heldBytes
	if f.w != nil {
		n += f.w.Size()
	}
	for _, r := range f.pending {
		n += int64(len(r.Topic) + len(r.Key) + 24)
	}
	return n
}

func (f *pqFile) Records() int { return f.records }

func (f *pqFile) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	if f.plan == nil {
		if err := f.start(value{class: classBinary}); err != nil {
			return err
		}
	}
	if err := f.writeHeld(); err != nil {
		return fmt.Errorf("sink/format: parquet close: %w", err)
	}
	if err := f.w.Close(); err != nil {
		return fmt.Errorf("sink/format: parquet close: %w", err)
	}
	if err := f.bw.Flush(); err != nil {
		return fmt.Errorf("sink/format: parquet close: %w", err)
	}
	return nil
}
