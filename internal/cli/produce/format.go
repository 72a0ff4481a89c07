package produce

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// formatHelp is the --format part of the help.
const formatHelp = `--format (-f) reads records as rpk topic produce -f does, with this subset of
its syntax. Every time the format is matched whole, a record is produced and
matching starts over:

    %t %k %v    the record's topic (one that exists; the default is TOPIC),
                key and value
    %T %K %V    the length of the %t, %k or %v after it
    %H %h{...}  the number of headers, then how each header is written, with
                %k and %v (and %K, %V) inside the braces: %H%h{%k=%v;}
    %p          the partition (the partitioner is then manual)
    %% %{ %}    a percent sign, an opening or a closing brace
    \n \r \t \\ \xNN    escapes; any other text is matched exactly

%t, %k and %v without a length before them end at the text that follows
them, which is consumed (%k=%v\n), or, last in the format, at the end of the
input. A number (%T %K %V %H %p) is ASCII digits by default; {N} after %T,
%K, %V or %H gives it in the format instead of reading it (%K{4}%k: a 4-byte
key), and {big8}, {big16}, {big32}, {big64}, {little16}, {little32},
{little64} or {byte} reads it in binary. {hex} or {base64} after %t, %k or %v
decodes the text read. Not supported from rpk: {re...}, {json}, {bool} and
the hexNN number forms.`

// A format is a compiled --format: its steps, and whether it reads a
// topic or a partition.
type format struct {
	steps     []step
	topic     bool // %t
	partition bool // %p
}

// stepKind is what one step of a format reads.
type stepKind uint8

const (
	stepLiteral stepKind = iota // lit, exactly
	stepText                    // a topic, key or value: sized, up to delim, or to the end
	stepNumber                  // a length, the header count or the partition
	stepHeaders                 // the headers, each by inner
)

// numForm is how a number is written in the input.
type numForm uint8

const (
	numASCII  numForm = iota // digits, up to a non-digit
	numFixed                 // given in the format ({N}): nothing read
	numBig                   // width bytes, big endian
	numLittle                // width bytes, little endian
)

type step struct {
	kind   stepKind
	lit    []byte // stepLiteral
	field  byte   // t, k, v (stepText); T, K, V, H, p (stepNumber)
	decode string // stepText: "", hex or base64
	sized  bool   // stepText: its length was read by the %T, %K or %V before it
	delim  []byte // stepText, unsized: the text that ends it; nil: the end of the input
	form   numForm
	width  int   // numBig, numLittle: bytes
	fixed  int64 // numFixed
	inner  *format
}

// parseFormat compiles a --format.
func parseFormat(s string) (*format, error) {
	f, _, err := parseSteps(s, false)
	if err != nil {
		return nil, fmt.Errorf("--format %q: %w", s, err)
	}
	if len(f.steps) == 0 {
		return nil, fmt.Errorf("--format %q: empty", s)
	}
	return f, nil
}

// parseSteps compiles s up to its end, or, inside %h{...}, up to the
// closing brace; it returns what follows that brace.
func parseSteps(s string, inHeader bool) (*format, string, error) {
	f := &format{}
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			f.steps = append(f.steps, step{kind: stepLiteral, lit: lit})
			lit = nil
		}
	}
	sized := map[byte]bool{} // t, k, v whose length was given
	seen := map[byte]bool{}
	headersCounted := false
	for len(s) > 0 {
		c := s[0]
		s = s[1:]
		switch c {
		case '\\':
			b, rest, err := unescape(s)
			if err != nil {
				return nil, "", err
			}
			lit, s = append(lit, b), rest
		case '}':
			if !inHeader {
				return nil, "", errors.New("a } closes nothing (write %} for a brace)")
			}
			flush()
			return f, s, link(f, true)
		case '{':
			return nil, "", errors.New("a brace opens only after a verb (write %{ for a brace)")
		case '%':
			if s == "" {
				return nil, "", errors.New("it ends with a lone % (write %% for a percent sign)")
			}
			v := s[0]
			s = s[1:]
			var mod string
			hasMod := len(s) > 0 && s[0] == '{' && v != 'h'
			if hasMod {
				end := bytes.IndexByte([]byte(s), '}')
				if end < 0 {
					return nil, "", fmt.Errorf("%%%c{ has no closing brace", v)
				}
				mod, s = s[1:end], s[end+1:]
			}
			switch v {
			case '%', '{', '}':
				if hasMod {
					return nil, "", fmt.Errorf("%%%c takes no {...}", v)
				}
				lit = append(lit, v)
				continue
			}
			flush()
			if seen[v] {
				return nil, "", fmt.Errorf("%%%c is given twice", v)
			}
			seen[v] = true
			switch v {
			case 't', 'k', 'v':
				if inHeader && v == 't' {
					return nil, "", errors.New("%t cannot be inside %h{...}")
				}
				if mod != "" && mod != "hex" && mod != "base64" {
					return nil, "", fmt.Errorf("%%%c{%s}: use {hex} or {base64} (sluice reads no other text form of rpk's)", v, mod)
				}
				f.steps = append(f.steps, step{kind: stepText, field: v, decode: mod, sized: sized[v]})
				if v == 't' {
					f.topic = true
				}
			case 'T', 'K', 'V', 'H', 'p':
				if inHeader && (v == 'T' || v == 'H' || v == 'p') {
					return nil, "", fmt.Errorf("%%%c cannot be inside %%h{...}", v)
				}
				lower := v + 'a' - 'A'
				if v == 'p' {
					lower = 0
				} else if seen[lower] {
					return nil, "", fmt.Errorf("%%%c must come before the %%%c it gives the length of", v, lower)
				}
				st := step{kind: stepNumber, field: v}
				if err := parseNumForm(&st, mod, v != 'p'); err != nil {
					return nil, "", fmt.Errorf("%%%c{%s}: %w", v, mod, err)
				}
				f.steps = append(f.steps, st)
				switch v {
				case 'H':
					headersCounted = true
				case 'p':
					f.partition = true
				default:
					sized[lower] = true
				}
			case 'h':
				if inHeader {
					return nil, "", errors.New("%h cannot be inside %h{...}")
				}
				if !headersCounted {
					return nil, "", errors.New("%h needs the number of headers before it: %H (read) or %H{N}")
				}
				if len(s) == 0 || s[0] != '{' {
					return nil, "", errors.New("%h needs the header's format in braces: %h{%k=%v;}")
				}
				inner, rest, err := parseSteps(s[1:], true)
				if err != nil {
					return nil, "", fmt.Errorf("%%h{...}: %w", err)
				}
				if len(inner.steps) == 0 {
					return nil, "", errors.New("%h{}: give the header's format in the braces")
				}
				s = rest
				f.steps = append(f.steps, step{kind: stepHeaders, inner: inner})
			case 'o', 'e', 'd', 'x', 'y', 'a', 'i', '[', '|', ']':
				return nil, "", fmt.Errorf("%%%c is not read by sluice produce (rpk reads only %%t %%T %%k %%K %%v %%V %%h %%H %%p)", v)
			default:
				return nil, "", fmt.Errorf("unknown verb %%%c", v)
			}
		default:
			lit = append(lit, c)
		}
	}
	if inHeader {
		return nil, "", errors.New("%h{ has no closing brace")
	}
	flush()
	return f, "", link(f, false)
}

// link gives each unsized text the literal after it as its delimiter; the
// last step of the format (not of a header's) may read to the end.
func link(f *format, inHeader bool) error {
	var out []step
	for i := 0; i < len(f.steps); i++ {
		st := f.steps[i]
		if st.kind == stepText && !st.sized {
			if i+1 < len(f.steps) || inHeader {
				if i+1 == len(f.steps) {
					return fmt.Errorf("%%%c must be followed by the text that ends it, or have its length before it (%%%c)", st.field, st.field-'a'+'A')
				}
				next := f.steps[i+1]
				if next.kind != stepLiteral {
					return fmt.Errorf("%%%c must be followed by the text that ends it, or have its length before it (%%%c)", st.field, st.field-'a'+'A')
				}
				st.delim = next.lit
				i++
			}
		}
		out = append(out, st)
	}
	f.steps = out
	return nil
}

// parseNumForm reads a number's modifier; fixed allows {N}.
func parseNumForm(st *step, mod string, fixed bool) error {
	switch mod {
	case "", "ascii", "number":
		st.form = numASCII
	case "byte", "big8", "little8":
		st.form, st.width = numBig, 1
	case "big16", "big32", "big64":
		st.form = numBig
		st.width, _ = strconv.Atoi(mod[3:])
		st.width /= 8
	case "little16", "little32", "little64":
		st.form = numLittle
		st.width, _ = strconv.Atoi(mod[6:])
		st.width /= 8
	default:
		n, err := strconv.ParseInt(mod, 10, 64)
		if err != nil || !fixed || n < 0 {
			return errors.New("use a count (for lengths and %H), ascii, byte, big16, big32, big64, little16, little32 or little64")
		}
		st.form, st.fixed = numFixed, n
	}
	return nil
}

// unescape reads the escape after a backslash: n r t \ or xNN.
func unescape(s string) (byte, string, error) {
	if s == "" {
		return 0, "", errors.New(`it ends with a lone \ (write \\ for a backslash)`)
	}
	switch s[0] {
	case 'n':
		return '\n', s[1:], nil
	case 'r':
		return '\r', s[1:], nil
	case 't':
		return '\t', s[1:], nil
	case '\\':
		return '\\', s[1:], nil
	case 'x':
		if len(s) < 3 {
			return 0, "", errors.New(`\x needs two hex digits`)
		}
		b, err := hex.DecodeString(s[1:3])
		if err != nil {
			return 0, "", fmt.Errorf(`\x%s: not two hex digits`, s[1:3])
		}
		return b[0], s[3:], nil
	}
	return 0, "", fmt.Errorf(`unknown escape \%c: use \n, \r, \t, \\ or \xNN`, s[0])
}

// Unescape turns the escapes of a -D or -K delimiter into bytes.
func Unescape(s string) ([]byte, error) {
	var out []byte
	for len(s) > 0 {
		c := s[0]
		s = s[1:]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		b, rest, err := unescape(s)
		if err != nil {
			return nil, err
		}
		out, s = append(out, b), rest
	}
	return out, nil
}

// formatReader reads records by a format. limit bounds any one text read
// and a record's key, value and headers together.
type formatReader struct {
	f     *format
	br    *bufio.Reader
	limit int
	n     int64 // bytes read from the input
}

// readState is what a record's earlier steps read for its later ones.
type readState struct {
	sizes   map[byte]int64 // t, k, v
	headers int64
	rec     *kgo.Record
}

// next reads a record; io.EOF when the input ends before its first byte.
func (r *formatReader) next() (*kgo.Record, error) {
	start := r.n
	if _, err := r.br.Peek(1); err == io.EOF {
		return nil, io.EOF
	}
	rec := &kgo.Record{Partition: -1}
	st := &readState{sizes: map[byte]int64{}, rec: rec}
	if err := r.run(r.f, st, true); err != nil {
		return nil, err
	}
	if r.n == start {
		return nil, errors.New("the format read nothing")
	}
	size := len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		size += len(h.Key) + len(h.Value)
	}
	if size > r.limit {
		return nil, errRecordTooLarge
	}
	return rec, nil
}

func (r *formatReader) run(f *format, st *readState, top bool) error {
	for i, s := range f.steps {
		last := top && i == len(f.steps)-1
		switch s.kind {
		case stepLiteral:
			got := make([]byte, len(s.lit))
			n, err := io.ReadFull(r.br, got)
			r.n += int64(n)
			if err != nil {
				return fmt.Errorf("input ended where %q was expected", s.lit)
			}
			if !bytes.Equal(got, s.lit) {
				return fmt.Errorf("expected %q, found %q", s.lit, got)
			}
		case stepText:
			b, err := r.text(s, st, last)
			if err != nil {
				return err
			}
			switch s.field {
			case 't':
				st.rec.Topic = string(b)
			case 'k':
				st.rec.Key = b
			case 'v':
				st.rec.Value = b
			}
		case stepNumber:
			n, err := r.number(s)
			if err != nil {
				return fmt.Errorf("%%%c: %w", s.field, err)
			}
			switch s.field {
			case 'H':
				st.headers = n
			case 'p':
				if n > 1<<31-1 {
					return fmt.Errorf("%%p: partition %d", n)
				}
				st.rec.Partition = int32(n)
			default:
				st.sizes[s.field+'a'-'A'] = n
			}
		case stepHeaders:
			if st.headers > int64(r.limit) {
				return fmt.Errorf("%%H: %d headers, more than --max-message-bytes allows", st.headers)
			}
			for range st.headers {
				h := &readState{sizes: map[byte]int64{}, rec: &kgo.Record{}}
				before := r.n
				if err := r.run(s.inner, h, false); err != nil {
					return fmt.Errorf("header: %w", err)
				}
				if r.n == before {
					return errors.New("%h{...} read nothing for a header")
				}
				st.rec.Headers = append(st.rec.Headers, kgo.RecordHeader{Key: string(h.rec.Key), Value: h.rec.Value})
			}
		}
	}
	return nil
}

// text reads a topic, key or value. last: it is the format's last step,
// where a delimiter missing at the end of the input is forgiven.
func (r *formatReader) text(s step, st *readState, last bool) ([]byte, error) {
	var b []byte
	switch {
	case s.sized:
		n := st.sizes[s.field]
		if n > int64(r.limit) {
			return nil, fmt.Errorf("%%%c: length %d: %w", s.field, n, errRecordTooLarge)
		}
		b = make([]byte, n)
		got, err := io.ReadFull(r.br, b)
		r.n += int64(got)
		if err != nil {
			return nil, fmt.Errorf("%%%c: input ended after %d of its %d bytes", s.field, got, n)
		}
	case s.delim != nil:
		var err error
		b, err = readUntil(r.br, s.delim, r.limit, &r.n)
		if err == io.EOF && last {
			err = nil // the last record without its final delimiter
		}
		if err == io.EOF {
			return nil, fmt.Errorf("%%%c: input ended before %q", s.field, s.delim)
		}
		if err != nil {
			return nil, fmt.Errorf("%%%c: %w", s.field, err)
		}
	default: // to the end of the input
		var err error
		b, err = io.ReadAll(io.LimitReader(r.br, int64(r.limit)+1))
		r.n += int64(len(b))
		if err != nil {
			return nil, err
		}
		if len(b) > r.limit {
			return nil, fmt.Errorf("%%%c: %w", s.field, errRecordTooLarge)
		}
	}
	switch s.decode {
	case "hex":
		d, err := hex.DecodeString(string(b))
		if err != nil {
			return nil, fmt.Errorf("%%%c{hex}: %w", s.field, err)
		}
		b = d
	case "base64":
		d, err := base64.StdEncoding.DecodeString(string(b))
		if err != nil {
			return nil, fmt.Errorf("%%%c{base64}: %w", s.field, err)
		}
		b = d
	}
	return b, nil
}

// maxASCIIDigits bounds an ASCII number (int64 has 19 digits).
const maxASCIIDigits = 19

func (r *formatReader) number(s step) (int64, error) {
	switch s.form {
	case numFixed:
		return s.fixed, nil
	case numBig, numLittle:
		b := make([]byte, 8)
		got, err := io.ReadFull(r.br, b[8-s.width:])
		r.n += int64(got)
		if err != nil {
			return 0, fmt.Errorf("input ended in a %d-byte number", s.width)
		}
		if s.form == numLittle {
			for i, j := 8-s.width, 7; i < j; i, j = i+1, j-1 {
				b[i], b[j] = b[j], b[i]
			}
		}
		n := binary.BigEndian.Uint64(b)
		if n > 1<<63-1 {
			return 0, fmt.Errorf("%d is too large", n)
		}
		return int64(n), nil
	}
	var digits []byte
	for len(digits) <= maxASCIIDigits {
		c, err := r.br.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		if c < '0' || c > '9' {
			r.br.UnreadByte()
			break
		}
		r.n++
		digits = append(digits, c)
	}
	if len(digits) == 0 {
		return 0, errors.New("expected digits")
	}
	return strconv.ParseInt(string(digits), 10, 64)
}

// errRecordTooLarge is a record, or a part of one, over the limit.
var errRecordTooLarge = errors.New("record too large")

// readUntil reads up to delim, which it consumes and leaves out; it fails
// once more than limit bytes precede it (having read at most limit plus a
// buffer's worth). At the end of the input it returns what was read and
// io.EOF. It adds the bytes it read to *n.
func readUntil(br *bufio.Reader, delim []byte, limit int, n *int64) ([]byte, error) {
	var buf []byte
	last := delim[len(delim)-1]
	for {
		chunk, err := br.ReadSlice(last)
		*n += int64(len(chunk))
		buf = append(buf, chunk...)
		if err == nil && bytes.HasSuffix(buf, delim) {
			return buf[:len(buf)-len(delim)], nil
		}
		if len(buf) > limit+len(delim) {
			return nil, errRecordTooLarge
		}
		if err != nil && err != bufio.ErrBufferFull {
			return buf, err
		}
	}
}
