package format

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"strconv"
	"unicode/utf8"
)

// JSONL writes one JSON object per record and line:
// {"topic","partition","offset","timestamp" (unix ms),"key","value",
// "headers":[{"key","value"}]}. A value or key that is valid JSON is
// written as it is, other UTF-8 text as "key_text"/"value_text", other
// bytes as "key_base64"/"value_base64"; null stays null.
type JSONL struct {
	reg *registry
}

// Name is "jsonl".
func (JSONL) Name() string { return "jsonl" }

// Ext is ".jsonl".
func (JSONL) Ext() string { return ".jsonl" }

// NewFile starts a file.
func (JSONL) NewFile(w io.Writer) (File, error) { return &jsonlFile{w: w}, nil }

type jsonlFile struct {
	w   io.Writer
	buf []byte
	n   int
}

func (f *jsonlFile) Append(_ context.Context, r *Record) error {
	b := f.buf
	b = append(b, `{"topic":`...)
	b = appendString(b, r.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(r.Partition), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.Offset, 10)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, r.Timestamp.UnixMilli(), 10)
	b = appendField(b, "key", r.Key)
	b = appendField(b, "value", r.Value)
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
	f.buf = append(b, "]}\n"...)
	f.n++
	return nil
}

func (f *jsonlFile) Size() int64  { return int64(len(f.buf)) }
func (f *jsonlFile) Records() int { return f.n }

func (f *jsonlFile) Close() error {
	_, err := f.w.Write(f.buf)
	f.buf = nil
	return err
}

// appendField appends ,"name":v in the form JSONL's doc says.
func appendField(b []byte, name string, v []byte) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	switch {
	case v == nil:
		return append(b, `":null`...)
	case json.Valid(v):
		b = append(b, `":`...)
		return appendCompact(b, v)
	case utf8.Valid(v):
		b = append(b, `_text":`...)
		return appendString(b, string(v))
	default:
		b = append(b, `_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, v)
		return append(b, '"')
	}
}

// appendCompact appends valid JSON without its insignificant spaces, so
// that a value with newlines stays on its line.
func appendCompact(b, v []byte) []byte {
	var buf bytes.Buffer
	json.Compact(&buf, v) // v is valid
	return append(b, buf.Bytes()...)
}

func appendString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
