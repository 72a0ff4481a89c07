package consume

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FormatJSON is the --format that prints one JSON object per record.
const FormatJSON = "json"

// formatter appends a record's text to a buffer.
type formatter interface {
	append(dst []byte, r *kgo.Record) []byte
}

// newFormatter compiles --format: "json", or text with verbs.
func newFormatter(format string) (formatter, error) {
	if format == FormatJSON {
		return jsonFormat{}, nil
	}
	return parseFormat(format)
}

// piece is a literal (verb 0) or a verb.
type piece struct {
	verb byte
	lit  []byte
}

type textFormat []piece

const verbs = "%t topic, %p partition, %o offset, %k key, %v value, %T timestamp (ms), %h headers, %% a percent sign"

// parseFormat compiles a text format. Verbs: see verbs. Escapes: \n, \r,
// \t, \\; a backslash before anything else is kept. Each record ends with a
// newline unless the format already ends with one.
func parseFormat(s string) (textFormat, error) {
	var out textFormat
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			out = append(out, piece{lit: lit})
			lit = nil
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '%':
			if i+1 == len(s) {
				return nil, fmt.Errorf("--format %q ends with a lone %%; use %%%% for a percent sign", s)
			}
			i++
			switch v := s[i]; v {
			case '%':
				lit = append(lit, '%')
			case 't', 'p', 'o', 'k', 'v', 'T', 'h':
				flush()
				out = append(out, piece{verb: v})
			default:
				return nil, fmt.Errorf("--format %q: unknown verb %%%c; use %s, or json", s, v, verbs)
			}
		case '\\':
			if i+1 == len(s) {
				lit = append(lit, '\\')
				continue
			}
			i++
			switch e := s[i]; e {
			case 'n':
				lit = append(lit, '\n')
			case 'r':
				lit = append(lit, '\r')
			case 't':
				lit = append(lit, '\t')
			case '\\':
				lit = append(lit, '\\')
			default:
				lit = append(lit, '\\', e)
			}
		default:
			lit = append(lit, c)
		}
	}
	if len(lit) == 0 || lit[len(lit)-1] != '\n' {
		lit = append(lit, '\n')
	}
	flush()
	return out, nil
}

func (f textFormat) append(dst []byte, r *kgo.Record) []byte {
	for _, p := range f {
		switch p.verb {
		case 0:
			dst = append(dst, p.lit...)
		case 't':
			dst = append(dst, r.Topic...)
		case 'p':
			dst = strconv.AppendInt(dst, int64(r.Partition), 10)
		case 'o':
			dst = strconv.AppendInt(dst, r.Offset, 10)
		case 'k':
			dst = append(dst, r.Key...)
		case 'v':
			dst = append(dst, r.Value...)
		case 'T':
			dst = strconv.AppendInt(dst, r.Timestamp.UnixMilli(), 10)
		case 'h':
			for i, h := range r.Headers {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, h.Key...)
				dst = append(dst, '=')
				dst = append(dst, h.Value...)
			}
		}
	}
	return dst
}

// jsonFormat prints {"topic","partition","offset","timestamp","key",
// "value","headers":[{"key","value"}]} on one line. A null key or value is
// null; bytes that are not UTF-8 go in key_base64 / value_base64 instead.
type jsonFormat struct{}

func (jsonFormat) append(dst []byte, r *kgo.Record) []byte {
	dst = append(dst, `{"topic":`...)
	dst = appendJSONString(dst, r.Topic)
	dst = append(dst, `,"partition":`...)
	dst = strconv.AppendInt(dst, int64(r.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, r.Offset, 10)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, r.Timestamp.UnixMilli(), 10)
	dst = appendJSONBytes(dst, "key", r.Key)
	dst = appendJSONBytes(dst, "value", r.Value)
	dst = append(dst, `,"headers":[`...)
	for i, h := range r.Headers {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"key":`...)
		dst = appendJSONString(dst, h.Key)
		dst = appendJSONBytes(dst, "value", h.Value)
		dst = append(dst, '}')
	}
	return append(dst, "]}\n"...)
}

// appendJSONBytes appends ,"name":"b" (or null, or ,"name_base64":"...").
// It follows an opening brace's first field or another field: the leading
// comma is dropped right after '{'.
func appendJSONBytes(dst []byte, name string, b []byte) []byte {
	if len(dst) > 0 && dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	switch {
	case b == nil:
		dst = append(dst, '"')
		dst = append(dst, name...)
		return append(dst, `":null`...)
	case utf8.Valid(b):
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `":`...)
		return appendJSONString(dst, string(b))
	default:
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"')
	}
}

func appendJSONString(dst []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
