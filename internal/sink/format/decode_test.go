package format

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// cachedRegistry is a registry that already holds schemas by id, for the
// fuzz target and benchmarks, which must not depend on a server.
func cachedRegistry(t testing.TB, schemas map[int]string) *registry {
	t.Helper()
	g := &registry{schemas: map[int]*regSchema{}}
	for id, text := range schemas {
		parsed, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := compileAvro(parsed)
		if err != nil {
			t.Fatal(err)
		}
		g.schemas[id] = &regSchema{id: id, kind: schemaAvro, text: text, avro: parsed, plan: plan}
	}
	return g
}

// badPayloads are Avro payloads of orderSchema that do not decode, each
// with what the error says.
func badPayloads(t testing.TB) map[string][]byte {
	good := testOrders()[0].payload(t, orderSchema)
	huge := binary.AppendVarint(nil, 9) // id
	huge = append(huge, 1, 2)           // flag, qty
	huge = append(huge, make([]byte, 12)...)
	huge = binary.AppendVarint(huge, 0)     // name
	huge = binary.AppendVarint(huge, 0)     // blob
	huge = append(huge, 1, 2, 3, 4)         // hash
	huge = binary.AppendVarint(huge, 0)     // status
	huge = binary.AppendVarint(huge, 0)     // customer.name
	huge = binary.AppendVarint(huge, 0)     // customer.email null
	huge = binary.AppendVarint(huge, 1<<60) // tags: 2^60 items
	badEnum := append([]byte{}, huge[:len(huge)-len(binary.AppendVarint(nil, 1<<60))-3]...)
	badEnum = binary.AppendVarint(badEnum, 7) // status 7 of 3
	return map[string][]byte{
		"truncated":                      good[:len(good)-3],
		"bytes left":                     append(append([]byte{}, good...), 0),
		"empty":                          {},
		"array of 2^60 items, truncated": huge,
		"enum symbol":                    badEnum,
		"union branch":                   badUnion(t),
	}
}

// badUnion is an orderSchema payload whose choice union says branch 4 of
// 3: found by encoding choice as null (branch 0) and as "" (branch 1, then
// a zero length) and finding the byte that differs.
func badUnion(t testing.TB) []byte {
	o := testOrders()[1]
	o.choiceL = nil
	null := o.payload(t, orderSchema)
	o.choiceS = strp("")
	str := o.payload(t, orderSchema)
	for i := range null {
		if null[i] != str[i] {
			return append(append(null[:i:i], 8), null[i+1:]...)
		}
	}
	t.Fatal("BUG: no difference")
	return nil
}

// TestItemLimit: an array of items that take no bytes (nulls), claiming
// 2^60 of them, fails at maxValueItems instead of looping.
func TestItemLimit(t *testing.T) {
	a, err := compileAvro(avro.MustParse(`{"type":"array","items":"null"}`))
	if err != nil {
		t.Fatal(err)
	}
	w := avroWalk{r: avro.NewReader(nil, 0).Reset(binary.AppendVarint(nil, 1<<60))}
	if err := w.skip(a); !errors.Is(err, ErrUndecodable) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("skip: %v", err)
	}
}

// TestBadPayloads: a wire-format value that does not decode with its
// schema fails its Append with ErrUndecodable, in both formats, leaving
// the file as it was: the records before and after it read back.
func TestBadPayloads(t *testing.T) {
	good := testOrders()[0].payload(t, orderSchema)
	reg := cachedRegistry(t, map[int]string{1: orderSchema})
	ts := time.UnixMilli(0).UTC()
	for _, f := range []Format{Parquet{reg: reg}, Avro{reg: reg}} {
		for name, bad := range badPayloads(t) {
			var buf bytes.Buffer
			file, err := f.NewFile(&buf)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := file.Append(ctx, &Record{Topic: "t", Offset: 1, Timestamp: ts, Value: frame(1, good)}); err != nil {
				t.Fatal(err)
			}
			err = file.Append(ctx, &Record{Topic: "t", Offset: 2, Timestamp: ts, Value: frame(1, bad)})
			t.Logf("%s %s: %v", f.Name(), name, err)
			if !errors.Is(err, ErrUndecodable) {
				t.Errorf("%s %s: %v, want ErrUndecodable", f.Name(), name, err)
			}
			if err := file.Append(ctx, &Record{Topic: "t", Offset: 3, Timestamp: ts, Value: frame(1, good)}); err != nil {
				t.Fatal(err)
			}
			if err := file.Close(); err != nil {
				t.Fatal(err)
			}
			var offsets []int64
			if f.Name() == "parquet" {
				_, rows := readParquet(t, buf.Bytes())
				for _, r := range rows {
					offsets = append(offsets, r["offset"].(int64))
				}
			} else {
				_, recs := readOCF(t, buf.Bytes())
				for _, r := range recs {
					offsets = append(offsets, r["offset"].(int64))
				}
			}
			if len(offsets) != 2 || offsets[0] != 1 || offsets[1] != 3 {
				t.Errorf("%s %s: offsets %v read back, want [1 3]", f.Name(), name, offsets)
			}
		}
	}
}

// TestRegistryFailures: an id the registry does not have leaves the value
// as bytes (such bytes only look like the wire format); a registry that
// cannot be reached fails the record after its attempts, saying so.
func TestRegistryFailures(t *testing.T) {
	url, _ := startRegistry(t)
	f, err := New("parquet", Options{Registry: url})
	if err != nil {
		t.Fatal(err)
	}
	v := frame(4242, []byte("abc"))
	b, n := writeFile(t, f, []*Record{{Topic: "t", Value: v}}, nil)
	if n != 1 {
		t.Fatal("record not taken")
	}
	cols, rows := readParquet(t, b)
	if cols[len(cols)-1].typ != "BYTE_ARRAY" || rows[0]["value"] != string(v) {
		t.Errorf("unknown id: value column %+v, value %q", cols[len(cols)-1], rows[0]["value"])
	}

	f, err = New("avro", Options{Registry: "http://" + clitest.DeadAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	file, err := f.NewFile(&bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	err = file.Append(clitest.Ctx(t), &Record{Topic: "t", Value: v})
	if !errors.Is(err, ErrRegistryUnavailable) || !strings.Contains(err.Error(), "schema 4242, 3 attempts") {
		t.Fatalf("dead registry: %v", err)
	}
	if file.Records() != 0 {
		t.Errorf("Records = %d after a failed Append", file.Records())
	}
}

// FuzzAvroValue: any bytes as an orderSchema value give an error or a row,
// never a panic or a hang, in all formats; a payload that the Parquet walk
// takes, the Avro check takes too.
func FuzzAvroValue(f *testing.F) {
	for _, o := range testOrders() {
		f.Add(o.payload(f, orderSchema))
	}
	for _, b := range badPayloads(f) {
		f.Add(b)
	}
	reg := cachedRegistry(f, map[int]string{1: orderSchema})
	ts := time.UnixMilli(0).UTC()
	f.Fuzz(func(t *testing.T, payload []byte) {
		r := &Record{Topic: "t", Timestamp: ts, Value: frame(1, payload)}
		pf, _ := Parquet{reg: reg}.NewFile(&bytes.Buffer{})
		pqErr := pf.Append(context.Background(), r)
		if pqErr != nil && !errors.Is(pqErr, ErrUndecodable) {
			t.Fatalf("parquet: %v, want ErrUndecodable", pqErr)
		}
		if err := pf.Close(); err != nil {
			t.Fatal(err)
		}
		af, _ := Avro{reg: reg}.NewFile(&bytes.Buffer{})
		avErr := af.Append(context.Background(), r)
		if avErr != nil && !errors.Is(avErr, ErrUndecodable) {
			t.Fatalf("avro: %v, want ErrUndecodable", avErr)
		}
		if pqErr == nil && avErr != nil {
			t.Fatalf("parquet took the value, avro refused it: %v", avErr)
		}
		if err := af.Close(); err != nil {
			t.Fatal(err)
		}
		var lines bytes.Buffer
		jf, _ := JSONL{reg: reg}.NewFile(&lines)
		if err := jf.Append(context.Background(), r); err != nil && !errors.Is(err, ErrUndecodable) {
			t.Fatalf("jsonl: %v, want ErrUndecodable", err)
		}
		if err := jf.Close(); err != nil {
			t.Fatal(err)
		}
		if lines.Len() > 0 && !json.Valid(lines.Bytes()) {
			t.Fatalf("jsonl wrote invalid JSON: %s", lines.Bytes())
		}
	})
}
