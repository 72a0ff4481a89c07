package collect

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

const everyType = `{"type":"record","name":"E","fields":[
 {"name":"b","type":"boolean"},
 {"name":"i","type":"int"},
 {"name":"f","type":"float"},
 {"name":"d","type":"double"},
 {"name":"by","type":"bytes"},
 {"name":"fx","type":{"type":"fixed","name":"F2","size":2}},
 {"name":"en","type":{"type":"enum","name":"Color","symbols":["RED","BLUE"]}},
 {"name":"arr","type":{"type":"array","items":"long"}},
 {"name":"m","type":{"type":"map","values":"string"}},
 {"name":"sub","type":{"type":"record","name":"Sub","fields":[{"name":"x","type":"int"}]}},
 {"name":"u","type":["null","int","string"]},
 {"name":"def","type":"string","default":"dflt"}]}`

func avroEnc(t *testing.T, schema string) encoder {
	t.Helper()
	e, err := newEncoder(sr.SubjectSchema{Subject: "s", Version: 1, ID: 7, Schema: sr.Schema{Schema: schema, Type: sr.TypeAvro}}, false)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// encodeRaw decodes and encodes an event as the handler does.
func encodeRaw(e encoder, raw json.RawMessage) ([]byte, error) {
	fields, err := decodeEvent(raw)
	if err != nil {
		return nil, err
	}
	return e.encode(raw, fields)
}

// Every Avro type the collector converts from JSON round-trips.
func TestAvroEveryType(t *testing.T) {
	e := avroEnc(t, everyType)
	event := `{"b":true,"i":-5,"f":1.5,"d":2.25,"by":"\u0000\u00ff","fx":"a\u00ff","en":"BLUE","arr":[1,9007199254740993],
		"m":{"k":"v"},"sub":{"x":3},"u":"str"}`
	v, err := encodeRaw(e, json.RawMessage(event))
	if err != nil {
		t.Fatal(err)
	}
	if v[0] != 0 || v[4] != 7 {
		t.Fatalf("prefix %x, want 0 and id 7", v[:5])
	}
	var got map[string]any
	if err := avro.Unmarshal(avro.MustParse(everyType), v[5:], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"b": true, "i": 5 * -1, "f": float32(1.5), "d": 2.25, "by": []byte{0, 0xff}, "fx": [2]byte{'a', 0xff},
		"en": "BLUE", "arr": []any{int64(1), int64(9007199254740993)}, "m": map[string]any{"k": "v"},
		"sub": map[string]any{"x": 3}, "u": "str", "def": "dflt"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %#v\nwant    %#v", got, want)
	}
}

// Each wrong value is refused with the field it is in.
func TestAvroRefusals(t *testing.T) {
	e := avroEnc(t, everyType)
	base := map[string]any{"b": true, "i": 1, "f": 1, "d": 1, "by": "", "fx": "ab", "en": "RED", "arr": []any{},
		"m": map[string]any{}, "sub": map[string]any{"x": 1}, "u": nil}
	for _, c := range []struct {
		field string
		value any
		want  string
	}{
		{"i", 1 << 40, "i: want a 32-bit integer"},
		{"i", 1.5, "i: want an integer"},
		{"b", "yes", "b: want a boolean"},
		{"en", "GREEN", `"GREEN" is not a symbol`},
		{"fx", "abc", "fx: want a string of 2 code points"},
		{"by", "€", "by: want a string of code points up to U+00FF"},
		{"arr", []any{"x"}, "arr[0]: want an integer"},
		{"sub", map[string]any{}, "sub.x: missing"},
		{"u", true, "u: want one of null, int, string"},
		{"extra", 1, "extra: not a field"},
	} {
		ev := map[string]any{}
		for k, v := range base {
			ev[k] = v
		}
		ev[c.field] = c.value
		raw, _ := json.Marshal(ev)
		if _, err := encodeRaw(e, raw); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s=%v: %v, want %q", c.field, c.value, err, c.want)
		}
	}
}

// FuzzParseEvents: any body either is refused or splits into events that
// are each JSON or marked bad_json; none is lost or invented.
func FuzzParseEvents(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[{"a":1},2]`, "{\"a\":1}\n{\"b\":\nx\n{}\n", "{\n \"a\": 1\n}", ``, `[`, `"s"`, "\x1f\x8b"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := parseEvents(body)
		if err != nil {
			if events != nil {
				t.Fatal("events with an error")
			}
			return
		}
		if len(events) == 0 {
			t.Fatal("no events and no error")
		}
		for _, e := range events {
			if e.reason == "" && !json.Valid(e.raw) {
				t.Fatalf("event %q is not JSON", e.raw)
			}
			if e.reason != "" && e.reason != reasonBadJSON {
				t.Fatalf("reason %q", e.reason)
			}
		}
	})
}

// FuzzDecodeEvent holds decodeEvent (segmentio/encoding's parser) to the
// standard library's: the same events refused, the same values decoded.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[1.5e3,"x",null,true],"c":{"d":"\u00e9\ud83d\ude00"}}`, `{"n":9007199254740993}`,
		`{"a":1} x`, `[1]`, `{"a":"\xff"}`, `{"a":1,"a":2}`, ` {"s":"\n"} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := decodeEvent(raw)
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var want any
		werr := dec.Decode(&want)
		if werr == nil {
			if _, terr := dec.Token(); terr != io.EOF {
				werr = errors.New("data after the value")
			}
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: decodeEvent %v, encoding/json %v", raw, err, werr)
		}
		if err != nil {
			return
		}
		wantFields, _ := want.(map[string]any)
		if !reflect.DeepEqual(got, wantFields) {
			t.Fatalf("%q: decodeEvent %#v, encoding/json %#v", raw, got, wantFields)
		}
	})
}
