package produce

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// readAll reads every record of input by format.
func readAll(t *testing.T, layout, input string, limit int) ([]*kgo.Record, error) {
	t.Helper()
	f, err := parseFormat(layout)
	if err != nil {
		t.Fatalf("parse %q: %v", layout, err)
	}
	r := &formatReader{f: f, br: bufio.NewReader(strings.NewReader(input)), limit: limit}
	var out []*kgo.Record
	for {
		rec, err := r.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

type rec struct {
	topic, key, value string
	partition         int32
	headers           string
}

func flat(rs []*kgo.Record) []rec {
	var out []rec
	for _, r := range rs {
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		out = append(out, rec{r.Topic, string(r.Key), string(r.Value), r.Partition, strings.Join(hs, ",")})
	}
	return out
}

func TestFormatReads(t *testing.T) {
	for _, tc := range []struct {
		layout, input string
		want          []rec
	}{
		// rpk's examples.
		{`%k %v\n`, "a 1\nb 2\n", []rec{{"", "a", "1", -1, ""}, {"", "b", "2", -1, ""}}},
		{`%T{4}%K{4}%V{4}%t%k%v`, "abcdkey1val1wxyzkey2val2", []rec{{"abcd", "key1", "val1", -1, ""}, {"wxyz", "key2", "val2", -1, ""}}},
		{`%p %v\n`, "2 x\n0 y\n", []rec{{"", "", "x", 2, ""}, {"", "", "y", 0, ""}}},
		{`%K{big16} foo %k`, "\x00\x03 foo abc\x00\x01 foo z", []rec{{"", "abc", "", -1, ""}, {"", "z", "", -1, ""}}},
		{`%H{3}%h{ %k=%v }`, " a=1  b=2  c=3 ", []rec{{"", "", "", -1, "a=1,b=2,c=3"}}},
		// Lengths read from the input, in ASCII and binary.
		{`%K%k%V%v`, "3abc2de1x0", []rec{{"", "abc", "de", -1, ""}, {"", "x", "", -1, ""}}},
		{`%V{big32}%v`, "\x00\x00\x00\x02hi\x00\x00\x00\x00", []rec{{"", "", "hi", -1, ""}, {"", "", "", -1, ""}}},
		{`%V{little16}%v`, "\x03\x00abc", []rec{{"", "", "abc", -1, ""}}},
		// Headers counted in the input, then a value.
		{`%k %H%h{ %k=%v;}|%v\n`, "key 2 a=1; b=2;|value\nk 0|v\n", []rec{{"", "key", "value", -1, "a=1,b=2"}, {"", "k", "v", -1, ""}}},
		// Decoding, escapes, literal percent and braces.
		{`%k{hex} %v{base64}\n`, "6869 aGVsbG8=\n", []rec{{"", "hi", "hello", -1, ""}}},
		{`%%%{%k%}\t%v\x00`, "%{a}\tb\x00%{c}\td\x00", []rec{{"", "a", "b", -1, ""}, {"", "c", "d", -1, ""}}},
		// The last record may miss its final delimiter; the last field
		// may run to the end of the input.
		{`%v\n`, "a\nb", []rec{{"", "", "a", -1, ""}, {"", "", "b", -1, ""}}},
		{`%k:%v`, "key:all\nthe rest\n", []rec{{"", "key", "all\nthe rest\n", -1, ""}}},
		{`%v\n`, "", nil},
	} {
		got, err := readAll(t, tc.layout, tc.input, 1<<20)
		if err != nil || !reflect.DeepEqual(flat(got), tc.want) {
			t.Errorf("%q on %q: %v\n got %+v\nwant %+v", tc.layout, tc.input, err, flat(got), tc.want)
		}
	}
}

func TestFormatReadErrors(t *testing.T) {
	for _, tc := range []struct{ layout, input, want string }{
		{`%k=%v\n`, "a-b\n", `%k: input ended before "="`},
		{`%k %v\n`, "a b\nc", `%k: input ended before " "`},
		{`%k;%v\n`, "a b", `%k: input ended before ";"`},
		{`%K{4}%k`, "ab", "%k: input ended after 2 of its 4 bytes"},
		{`%K%k`, "x", "%K: expected digits"},
		{`%v{hex}\n`, "zz\n", "%v{hex}: encoding/hex"},
		{`[%v]`, "(x)", `expected "[", found "("`},
	} {
		_, err := readAll(t, tc.layout, tc.input, 1<<20)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q on %q: %v, want %q", tc.layout, tc.input, err, tc.want)
		}
	}
	// The limit holds before anything larger is allocated or buffered.
	for _, tc := range []struct{ layout, input string }{
		{`%v\n`, strings.Repeat("x", 100) + "\n"},
		{`%V%v`, "100" + strings.Repeat("x", 100)},
		{`%V{big32}%v`, "\xff\xff\xff\xff"},
		{`%v`, strings.Repeat("x", 100)},
		{`%K{5}%V{5}%k%v`, "aaaaabbbbb"},
	} {
		if _, err := readAll(t, tc.layout, tc.input, 8); !errors.Is(err, errRecordTooLarge) {
			t.Errorf("%q with a limit of 8: %v", tc.layout, err)
		}
	}
}

func TestFormatParseErrors(t *testing.T) {
	for _, layout := range []string{
		"", "%", "%q", "%o %v", `%v\q`, `%v\x4`, "%k%v", "%v{re#.#}", "%v{json}", "%H{bool}%h{%k=%v;}",
		"%h{%k=%v;}", "%H{1}%h{%k=%v}", "%H{1}%h{}", "%H{1}%h{%k=%v;", "%v %V", "%k %k", "}", "{", "%%{x}",
	} {
		if _, err := parseFormat(layout); err == nil {
			t.Errorf("%q: no error", layout)
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`\n`: "\n", `a\tb`: "a\tb", `\x00\xff`: "\x00\xff", `\\`: `\`, "|": "|"} {
		if got, err := Unescape(in); err != nil || string(got) != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{`\`, `\q`, `\x1`} {
		if _, err := Unescape(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
