package format

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// TestJSONLRegistry: with a registry, a wire-format Avro value is written
// as the JSON of its datum and a JSON Schema one as its JSON; plain values
// are written exactly as without a registry.
func TestJSONLRegistry(t *testing.T) {
	url, cl := startRegistry(t)
	const pv = `{"type":"record","name":"PV","fields":[{"name":"user","type":"string"},{"name":"n","type":["null","long"]}]}`
	id := register(t, cl, "pv-value", pv)
	js, err := cl.CreateSchema(clitest.Ctx(t), "ev-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.UnixMilli(1700000000000)
	plain := []*Record{
		{Topic: "t", Offset: 1, Timestamp: ts, Value: []byte(`{"a": [1, 2]}`), Key: []byte("k")},
		{Topic: "t", Offset: 2, Timestamp: ts, Value: []byte("text"), Headers: []Header{{"h", nil}}},
		{Topic: "t", Offset: 3, Timestamp: ts, Value: []byte{0xff, 0}},
		{Topic: "t", Offset: 4, Timestamp: ts},
		{Topic: "t", Offset: 5, Timestamp: ts, Value: frame(999, []byte("x"))}, // unknown id
	}
	withReg, err := New("jsonl", Options{Registry: url})
	if err != nil {
		t.Fatal(err)
	}
	without, _ := New("jsonl", Options{})
	a, _ := writeFile(t, withReg, plain, nil)
	b, _ := writeFile(t, without, plain, nil)
	if !bytes.Equal(a, b) {
		t.Fatalf("plain values with a registry:\n%s\nwithout:\n%s", a, b)
	}

	framed := []*Record{
		{Topic: "t", Offset: 6, Timestamp: ts, Value: frame(id, mustMarshal(t, pv, map[string]any{"user": "u1", "n": map[string]any{"long": int64(7)}}))},
		{Topic: "t", Offset: 7, Timestamp: ts, Value: frame(js.ID, []byte(`{"ok": true}`))},
	}
	out, n := writeFile(t, withReg, framed, nil)
	if n != 2 {
		t.Fatalf("took %d records", n)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{`{"n":7,"user":"u1"}`, `{"ok":true}`}
	for i, l := range lines {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if string(m["value"]) != want[i] {
			t.Errorf("line %d: value %s, want %s", i, m["value"], want[i])
		}
	}
}
