package sink

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-io/sluice/internal/sink/format"
)

const (
	// Missing is the path element of a {{field:name}} whose record has no
	// such top-level field (or whose value is not a JSON object).
	Missing = "__missing__"
	// Empty is the path element that renders as nothing (an empty field,
	// or one made only of characters sanitized away).
	Empty = "__empty__"
	// maxElementBytes caps a rendered path element; longer ones are cut.
	maxElementBytes = 128
)

// Template is a parsed --partition-by: directories under the topic's,
// rendered per record. Placeholders: {{year}} {{month}} {{day}} {{hour}}
// {{minute}} (zero padded) and {{date}} (YYYY-MM-DD) of the record's
// timestamp in UTC, {{topic}}, {{partition}}, and {{field:name}}, the
// top-level field name of a JSON object value (strings without quotes,
// other JSON as written; Missing when absent). Every rendered element is
// sanitized to [A-Za-z0-9._=-] (others become '_'), so records can never
// name a path outside the sink's prefix.
type Template struct {
	elems  [][]piece // "/"-separated elements
	fields bool      // whether any piece reads the value
}

type piece struct {
	lit   string // literal text when kind is 0
	kind  int
	field string
}

const (
	pLit = iota
	pYear
	pMonth
	pDay
	pHour
	pMinute
	pDate
	pTopic
	pPartition
	pField
)

var placeholders = map[string]int{"year": pYear, "month": pMonth, "day": pDay, "hour": pHour, "minute": pMinute,
	"date": pDate, "topic": pTopic, "partition": pPartition}

// ParseTemplate parses a --partition-by template; "" is no directories.
func ParseTemplate(s string) (*Template, error) {
	t := &Template{}
	if s == "" {
		return t, nil
	}
	for _, el := range strings.Split(s, "/") {
		var ps []piece
		rest := el
		for rest != "" {
			i := strings.Index(rest, "{{")
			if i < 0 {
				ps = append(ps, piece{lit: rest})
				break
			}
			if i > 0 {
				ps = append(ps, piece{lit: rest[:i]})
			}
			j := strings.Index(rest[i:], "}}")
			if j < 0 {
				return nil, fmt.Errorf("--partition-by %q: %q has no closing }}", s, rest[i:])
			}
			name := strings.TrimSpace(rest[i+2 : i+j])
			rest = rest[i+j+2:]
			if f, ok := strings.CutPrefix(name, "field:"); ok {
				if f == "" {
					return nil, fmt.Errorf("--partition-by %q: {{field:}} needs a field name", s)
				}
				ps = append(ps, piece{kind: pField, field: f})
				t.fields = true
				continue
			}
			k, ok := placeholders[name]
			if !ok {
				return nil, fmt.Errorf("--partition-by %q: unknown {{%s}}; want year, month, day, hour, minute, date, topic, partition or field:NAME", s, name)
			}
			ps = append(ps, piece{kind: k})
		}
		if len(ps) == 0 {
			return nil, fmt.Errorf("--partition-by %q: empty path element", s)
		}
		for _, p := range ps {
			if p.kind == pLit && sanitize(p.lit) != p.lit {
				return nil, fmt.Errorf("--partition-by %q: literal %q: use only letters, digits and ._=-", s, p.lit)
			}
		}
		if len(ps) == 1 && ps[0].kind == pLit && (ps[0].lit == "." || ps[0].lit == "..") {
			return nil, fmt.Errorf("--partition-by %q: %q is not a directory name", s, ps[0].lit)
		}
		t.elems = append(t.elems, ps)
	}
	return t, nil
}

// byMinute says that Render depends only on a record's topic, partition
// and the minute of its timestamp (no {{field:}}), so that a partition's
// directory can be kept while the minute stays the same.
func (t *Template) byMinute() bool { return !t.fields }

// Render returns r's directory below its topic's ("" when the template
// is empty): elements joined by "/", each safe as a path element.
func (t *Template) Render(r *format.Record) string {
	if len(t.elems) == 0 {
		return ""
	}
	var fields map[string]json.RawMessage
	if t.fields {
		if json.Unmarshal(r.Value, &fields) != nil {
			fields = nil
		}
	}
	ts := r.Timestamp.UTC()
	var b strings.Builder
	var el []byte
	for i, ps := range t.elems {
		if i > 0 {
			b.WriteByte('/')
		}
		el = el[:0]
		for _, p := range ps {
			switch p.kind {
			case pLit:
				el = append(el, p.lit...)
			case pYear:
				el = appendPad(el, ts.Year(), 4)
			case pMonth:
				el = appendPad(el, int(ts.Month()), 2)
			case pDay:
				el = appendPad(el, ts.Day(), 2)
			case pHour:
				el = appendPad(el, ts.Hour(), 2)
			case pMinute:
				el = appendPad(el, ts.Minute(), 2)
			case pDate:
				el = ts.AppendFormat(el, time.DateOnly)
			case pTopic:
				el = append(el, r.Topic...)
			case pPartition:
				el = strconv.AppendInt(el, int64(r.Partition), 10)
			case pField:
				el = append(el, fieldText(fields, p.field)...)
			}
		}
		b.WriteString(element(string(el)))
	}
	return b.String()
}

func appendPad(b []byte, v, width int) []byte {
	s := strconv.Itoa(v)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// fieldText is a field's value as text: a JSON string unquoted, other JSON
// as it is, Missing when there is no such field.
func fieldText(fields map[string]json.RawMessage, name string) string {
	raw, ok := fields[name]
	if !ok {
		return Missing
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// element makes s a safe path element.
func element(s string) string {
	s = sanitize(s)
	if len(s) > maxElementBytes {
		s = s[:maxElementBytes]
	}
	if strings.Trim(s, ".") == "" { // "", ".", "..": not a name
		return Empty
	}
	return s
}

// sanitize replaces every byte outside [A-Za-z0-9._=-] with '_'.
func sanitize(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if !safe(s[i]) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i := range b {
		if !safe(b[i]) {
			b[i] = '_'
		}
	}
	return string(b)
}

func safe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '=' || c == '-'
}
