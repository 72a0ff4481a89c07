package format

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"
)

// Avro writes Avro object container files (Snappy blocks) of envelope
// records, one per Kafka record:
//
//	{"type": "record", "name": "SluiceSinkRecord", "fields": [
//	  {"name": "topic", "type": "string"},
//	  {"name": "partition", "type": "int"},
//	  {"name": "offset", "type": "long"},
//	  {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
//	  {"name": "key", "type": ["null", "bytes"]},
//	  {"name": "headers", "type": {"type": "array", "items": {"type": "record",
//	    "name": "SluiceSinkHeader", "fields": [
//	      {"name": "key", "type": "string"},
//	      {"name": "value", "type": ["null", "bytes"]}]}}},
//	  {"name": "value", "type": VALUE}]}
//
// Headers are an array, not a map: Kafka keeps their order and allows a
// key twice. VALUE is, for values in the registry's wire format with an
// Avro schema, ["null", <the writer schema>] (a writer schema that is a
// union gets null added to it, or stays as it is if it has null), and the
// value's Avro bytes are copied in as they are after a check that they
// decode; for other values (JSON, bytes) it is ["null", "bytes"]. A
// tombstone is the null branch. The envelope is in the null namespace, so
// that the writer schema's names keep theirs; a writer schema that itself
// names a type SluiceSinkRecord or SluiceSinkHeader cannot be enveloped.
//
// A file holds one VALUE: a record of another schema id, or an Avro
// record after plain ones, returns ErrNewFile. Blocks are written to w as
// they fill (ocfBlockRecords or ocfBlockBytes); the sync marker is derived
// from the first record's topic, partition and offset, so that the same
// records make the same blocks. (The header's metadata map, avro.schema
// and avro.codec, comes in the order hamba's encoder iterates a Go map:
// the same records may make headers of the same bytes in either order.)
type Avro struct {
	reg *registry
}

// ocfBlockRecords is the most records in an OCF block.
const ocfBlockRecords = 10000

// ocfBlockBytes is the most bytes an OCF block buffers before it is
// compressed and written: the bound on a file's memory.
const ocfBlockBytes = 1 << 20

// Name is "avro".
func (Avro) Name() string { return "avro" }

// Ext is ".avro".
func (Avro) Ext() string { return ".avro" }

// NewFile starts a file.
func (a Avro) NewFile(w io.Writer) (File, error) {
	return &avroFile{reg: a.reg, out: &countWriter{w: w}}, nil
}

type avroFile struct {
	reg *registry
	out *countWriter

	started  bool
	schema   *regSchema // nil for a plain file
	plainVal bool       // started with ["null","bytes"]
	valUnion []int      // Avro file: the VALUE branch of each writer union branch; nil if not a union
	valNull  int        // the VALUE branch of null
	enc      *ocf.Encoder
	reader   *avro.Reader

	pending  []Record
	buf      []byte
	records  int
	lastN    int64
	buffered int64
	closed   bool
}

func (f *avroFile) Append(ctx context.Context, r *Record) error {
	if f.closed {
		return fmt.Errorf("BUG: sink/format: Append after Close")
	}
	v, err := f.reg.classify(ctx, r.Value)
	if err != nil {
		return err
	}
	if !f.started {
		if v.class == classNull && len(f.pending) < pendingMax {
			f.pending = append(f.pending, copyMetadata(r))
			f.records++
			return nil
		}
		if err := f.start(r, v); err != nil {
			return err
		}
	}
	switch {
	case v.class == classNull:
	case v.class == classAvro && (f.schema == nil || v.schema.id != f.schema.id):
		return ErrNewFile
	case v.class != classAvro && f.schema != nil:
		return ErrNewFile
	}
	if err := f.write(r, v); err != nil {
		return fmt.Errorf("sink/format: %s/%d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	f.records++
	return nil
}

// envelopeSchema is the envelope around VALUE.
const envelopeSchema = `{"type":"record","name":"SluiceSinkRecord","fields":[` +
	`{"name":"topic","type":"string"},` +
	`{"name":"partition","type":"int"},` +
	`{"name":"offset","type":"long"},` +
	`{"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}},` +
	`{"name":"key","type":["null","bytes"]},` +
	`{"name":"headers","type":{"type":"array","items":{"type":"record","name":"SluiceSinkHeader","fields":[` +
	`{"name":"key","type":"string"},{"name":"value","type":["null","bytes"]}]}}},` +
	`{"name":"value","type":%s}]}`

// start begins the file with the schema of v; first is the file's first
// record, for the sync marker.
func (f *avroFile) start(first *Record, v value) error {
	valueSchema := `["null","bytes"]`
	f.valNull = 0
	if v.class == classAvro {
		s := v.schema
		if u, ok := s.avro.(*avro.UnionSchema); ok {
			f.valUnion = make([]int, len(u.Types()))
			f.valNull = -1
			for i, t := range u.Types() {
				f.valUnion[i] = i
				if t.Type() == avro.Null {
					f.valNull = i
				}
			}
			if f.valNull < 0 { // add null in front
				for i := range f.valUnion {
					f.valUnion[i]++
				}
				f.valNull = 0
				valueSchema = `["null",` + s.text[1+indexByte(s.text, '['):]
			} else {
				valueSchema = s.text
			}
		} else {
			valueSchema = `["null",` + s.text + `]`
		}
		f.schema = s
		f.reader = avro.NewReader(nil, 0, avro.WithReaderConfig(avroConfig))
	}
	schema, err := avro.ParseWithCache(fmt.Sprintf(envelopeSchema, valueSchema), "", &avro.SchemaCache{})
	if err != nil {
		return fmt.Errorf("sink/format: envelope of schema %s: %w", valueSchema, err)
	}
	if len(f.pending) > 0 {
		first = &f.pending[0]
	}
	sync := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", first.Topic, first.Partition, first.Offset))
	enc, err := ocf.NewEncoderWithSchema(schema, f.out, ocf.WithCodec(ocf.Snappy),
		ocf.WithBlockLength(ocfBlockRecords), ocf.WithBlockSize(ocfBlockBytes),
		ocf.WithSyncBlock([16]byte(sync[:16])))
	if err != nil {
		return fmt.Errorf("sink/format: avro file: %w", err)
	}
	f.enc, f.started = enc, true
	f.lastN = f.out.n
	for i := range f.pending {
		if err := f.write(&f.pending[i], value{class: classNull}); err != nil {
			return err
		}
	}
	f.pending = nil
	return nil
}

func indexByte(s string, c byte) int {
	for i := range len(s) {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// write encodes r's envelope and adds it to the file.
func (f *avroFile) write(r *Record, v value) error {
	b := f.buf[:0]
	b = appendAvroBytes(b, []byte(r.Topic))
	b = appendAvroLong(b, int64(r.Partition))
	b = appendAvroLong(b, r.Offset)
	b = appendAvroLong(b, r.Timestamp.UnixMilli())
	b = appendAvroNullableBytes(b, r.Key)
	if len(r.Headers) > 0 {
		b = appendAvroLong(b, int64(len(r.Headers)))
		for _, h := range r.Headers {
			b = appendAvroBytes(b, []byte(h.Key))
			b = appendAvroNullableBytes(b, h.Value)
		}
	}
	b = appendAvroLong(b, 0) // end of the headers array
	switch {
	case v.class == classNull:
		b = appendAvroLong(b, int64(f.valNull))
	case f.schema == nil:
		b = appendAvroLong(b, 1)
		b = appendAvroBytes(b, v.payload)
	default:
		w := avroWalk{r: f.reader.Reset(v.payload)}
		w.r.Error = nil
		if err := w.skip(f.schema.plan); err != nil {
			return fmt.Errorf("schema %d: %w", f.schema.id, err)
		}
		if err := w.end(); err != nil {
			return fmt.Errorf("schema %d: %w", f.schema.id, err)
		}
		payload := v.payload
		if f.valUnion == nil {
			b = appendAvroLong(b, 1)
		} else {
			// Re-number the writer's branch: its index is a varint at the
			// payload's start, which the check above has read.
			i, n := binary.Varint(payload)
			if n <= 0 || i < 0 || i >= int64(len(f.valUnion)) {
				return fmt.Errorf("BUG: schema %d: union index not read back", f.schema.id)
			}
			b = appendAvroLong(b, int64(f.valUnion[i]))
			payload = payload[n:]
		}
		b = append(b, payload...)
	}
	f.buf = b
	if _, err := f.enc.Write(b); err != nil {
		return fmt.Errorf("avro block: %w", err)
	}
	if f.out.n != f.lastN {
		f.lastN, f.buffered = f.out.n, 0
	} else {
		f.buffered += int64(len(b))
	}
	return nil
}

func appendAvroLong(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

func appendAvroBytes(b, v []byte) []byte {
	b = appendAvroLong(b, int64(len(v)))
	return append(b, v...)
}

func appendAvroNullableBytes(b, v []byte) []byte {
	if v == nil {
		return appendAvroLong(b, 0)
	}
	return appendAvroBytes(appendAvroLong(b, 1), v)
}

// Size is the bytes written plus the block being filled, before
// compression.
func (f *avroFile) Size() int64 {
	n := f.out.n + f.buffered
	for _, r := range f.pending {
		n += int64(len(r.Topic) + len(r.Key) + 24)
	}
	return n
}

func (f *avroFile) Records() int { return f.records }

func (f *avroFile) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	if !f.started {
		if err := f.start(&Record{}, value{class: classBinary}); err != nil {
			return err
		}
	}
	if err := f.enc.Close(); err != nil {
		return fmt.Errorf("sink/format: avro close: %w", err)
	}
	return nil
}
