package format

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/hamba/avro/v2"
	fastjson "github.com/segmentio/encoding/json"
)

// JSONL writes one JSON object per record and line:
// {"topic","partition","offset","timestamp" (unix ms),"key","value",
// "headers":[{"key","value"}]}. A value or key that is valid JSON is
// written as it is, other UTF-8 text as "key_text"/"value_text", other
// bytes as "key_base64"/"value_base64"; null stays null. With a registry
// (Options.Registry), a value in its wire format is written as the JSON of
// what it encodes: an Avro value decoded with its schema (unions as their
// branch's value, bytes as base64, timestamps as RFC 3339 text, decimals
// as exact decimal strings: appendJSON has the table), a JSON Schema one as
// its JSON; a value its schema does not decode fails its Append with
// ErrUndecodable. A file takes any mix of values.
type JSONL struct {
	reg *registry
}

// Name is "jsonl".
func (JSONL) Name() string { return "jsonl" }

// Ext is ".jsonl".
func (JSONL) Ext() string { return ".jsonl" }

// NewFile starts a file.
func (j JSONL) NewFile(w io.Writer) (File, error) {
	f := &jsonlFile{reg: j.reg, w: w}
	if a, ok := w.(availableBuffer); ok {
		f.avail = a
	}
	return f, nil
}

// availableBuffer is a writer that lends the free end of its buffer to be
// appended to (bufio.Writer's AvailableBuffer): a line appended there and
// then written is not copied again, when the writer takes it in place
// (the sink's in-memory file does).
type availableBuffer interface {
	AvailableBuffer() []byte
}

type jsonlFile struct {
	reg     *registry
	w       io.Writer
	avail   availableBuffer // w's, if it has one: lines go straight to w
	buf     []byte          // lines not yet written (without avail)
	written int64
	n       int
}

func (f *jsonlFile) Append(ctx context.Context, r *Record) error {
	value, decoded := r.Value, false // decoded: compact JSON we made
	if _, ok := wireID(value); ok && f.reg != nil {
		v, err := f.reg.classify(ctx, value)
		if err != nil {
			return err
		}
		switch v.class {
		case classAvro:
			if value, err = avroJSON(v); err != nil {
				return fmt.Errorf("sink/format: %s/%d offset %d: schema %d: %w", r.Topic, r.Partition, r.Offset, v.schema.id, err)
			}
			decoded = true
		case classJSON:
			value = v.payload
		}
	}
	if f.avail != nil {
		n, err := f.w.Write(appendLine(f.avail.AvailableBuffer(), r, value, decoded))
		f.written += int64(n)
		f.n++
		if err != nil {
			return fmt.Errorf("sink/format: jsonl write: %w", err)
		}
		return nil
	}
	f.buf = appendLine(f.buf, r, value, decoded)
	f.n++
	if len(f.buf) >= jsonlWriteBytes {
		n, err := f.w.Write(f.buf)
		f.written += int64(n)
		f.buf = f.buf[:0]
		if err != nil {
			return fmt.Errorf("sink/format: jsonl write: %w", err)
		}
	}
	return nil
}

// appendLine appends r's line, with value in place of r.Value (written
// as it is when decoded, compact JSON we made).
func appendLine(b []byte, r *Record, value []byte, decoded bool) []byte {
	b = append(b, `{"topic":`...)
	b = appendString(b, r.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(r.Partition), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.Offset, 10)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, r.Timestamp.UnixMilli(), 10)
	b = appendField(b, "key", r.Key)
	if decoded {
		b = append(b, `,"value":`...)
		b = append(b, value...)
	} else {
		b = appendField(b, "value", value)
	}
	b = append(b, `,"headers":[`...)
	for i, h := range r.Headers {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendString(b, h.Key)
		b = appendField(b, "value", h.Value)
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// jsonlWriteBytes is how many bytes of lines a file buffers before writing
// them: its memory. Small enough to stay in the CPU's cache and to grow
// cheaply once per file (with 1 MiB, BenchmarkFormats jsonl/json-values
// took 1.7 times as long), large enough that the writes are few.
const jsonlWriteBytes = 64 << 10

func (f *jsonlFile) Size() int64  { return f.written + int64(len(f.buf)) }
func (f *jsonlFile) Records() int { return f.n }

func (f *jsonlFile) Close() error {
	n, err := f.w.Write(f.buf)
	f.written += int64(n)
	f.buf = nil
	return err
}

// avroJSON is the JSON of an Avro value (see appendJSON).
func avroJSON(v value) ([]byte, error) {
	w := avroWalk{r: avro.NewReader(nil, 0, avro.WithReaderConfig(avroConfig)).Reset(v.payload)}
	b, err := w.appendJSON(nil, v.schema.plan)
	if err != nil {
		return nil, err
	}
	if err := w.end(); err != nil {
		return nil, err
	}
	return b, nil
}

// appendField appends ,"name":v in the form JSONL's doc says.
func appendField(b []byte, name string, v []byte) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	switch {
	case v == nil:
		return append(b, `":null`...)
	case validJSON(v):
		b = append(b, `":`...)
		return appendCompact(b, v)
	case validUTF8(v):
		b = append(b, `_text":`...)
		return appendString(b, v)
	default:
		b = append(b, `_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, v)
		return append(b, '"')
	}
}

// appendCompact appends valid JSON without its insignificant spaces, so
// that a value with newlines stays on its line. JSON with no space, tab or
// line break anywhere (what programs usually write) is compact already.
func appendCompact(b, v []byte) []byte {
	// Four IndexByte scans (vectorized) take a fraction of one IndexAny.
	if bytes.IndexByte(v, ' ') < 0 && bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, '\t') < 0 && bytes.IndexByte(v, '\r') < 0 {
		return append(b, v...)
	}
	buf := bytes.NewBuffer(b)
	fastjson.Compact(buf, v) // v is valid
	return buf.Bytes()
}

// appendString appends s as a JSON string; it takes bytes too, so that a
// key or value is not copied into a string first.
func appendString[T string | []byte](b []byte, s T) []byte {
	plain := true // printable ASCII without quotes or backslashes: as it is
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\'
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(string(s)) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
