package format

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// orderJSON is testOrders()[0] as JSON lines write it (map keys sorted
// here; the test sorts them by reading the map into Go and back).
const orderJSON = `{"id":1,"flag":true,"qty":3,"ratio":0.5,"price":19.99,"name":"första","blob":"AAEC",` +
	`"hash":"3q2+7w==","status":"PAID","customer":{"name":"Ada","email":"ada@example.com"},"tags":["a","b"],` +
	`"lines":[{"sku":"sku-1","n":2},{"sku":"sku-2","n":1}],"attrs":{"k1":7,"k2":null},"note":"hi","choice":"str",` +
	`"day":"2024-02-29","at":46800005,"created":"2023-11-14T22:13:20.123Z","updated":"2023-11-14T22:13:20.123456Z",` +
	`"amount":"123.45","big":"-9876.543","uid":"123e4567-e89b-12d3-a456-426614174000"}`

// TestJSONLRegistry: with a registry, a wire-format Avro value is written
// as the JSON of its datum and a JSON Schema one as its JSON; plain values
// are written exactly as without a registry.
func TestJSONLRegistry(t *testing.T) {
	url, cl := startRegistry(t)
	const pv = `{"type":"record","name":"PV","fields":[{"name":"user","type":"string"},{"name":"n","type":["null","long"]}]}`
	id := register(t, cl, "pv-value", pv)
	oid := register(t, cl, "orders-value", orderSchema)
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
		{Topic: "t", Offset: 8, Timestamp: ts, Value: frame(oid, testOrders()[0].payload(t, orderSchema))},
	}
	out, n := writeFile(t, withReg, framed, nil)
	if n != 3 {
		t.Fatalf("took %d records", n)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{`{"user":"u1","n":7}`, `{"ok":true}`, orderJSON}
	for i, l := range lines {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		got := string(m["value"])
		if i == 2 { // the map's order is the encoder's: compare as objects
			if !sameJSON(t, got, want[i]) {
				t.Errorf("line %d: value %s, want %s", i, got, want[i])
			}
			continue
		}
		if got != want[i] {
			t.Errorf("line %d: value %s, want %s", i, m["value"], want[i])
		}
	}
}

func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// FuzzValidJSON: validJSON, with its look at the first byte, says what
// encoding/json.Valid says.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{``, ` `, `{}`, ` {"a":[1,2.5e3,true,false,null,"x"]}`, "\n[]", `"s"`, `-1`, `01`, `nul`,
		`null`, `true `, `fals`, `key-1`, `user-42`, `{"a":1}x`, "\t\"\xff\"", `+1`, `.5`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if got, want := validJSON(v), json.Valid(v); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json.Valid says %v", v, got, want)
		}
	})
}
