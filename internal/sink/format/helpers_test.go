package format

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/big"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/schemareg"
)

// startRegistry runs our schema registry on an in-process broker and
// serves it over HTTP; it returns its URL and a client.
func startRegistry(t *testing.T) (string, *sr.Client) {
	t.Helper()
	b := clitest.Start(t, nil)
	reg, err := schemareg.Open(schemareg.Config{Brokers: []string{b.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-reg.Ready():
	case <-time.After(60 * time.Second):
		reg.Close()
		t.Fatal("registry not ready after 60s")
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(func() {
		srv.Close()
		reg.Close()
	})
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, cl
}

func register(t *testing.T, cl *sr.Client, subject, schema string) int {
	t.Helper()
	s, err := cl.CreateSchema(clitest.Ctx(t), subject, sr.Schema{Schema: schema})
	if err != nil {
		t.Fatalf("register %s: %v", subject, err)
	}
	return s.ID
}

// frame puts payload in the registry's wire format.
func frame(id int, payload []byte) []byte {
	out := make([]byte, 5, 5+len(payload))
	binary.BigEndian.PutUint32(out[1:], uint32(id))
	return append(out, payload...)
}

// orderSchema has every Avro type the Parquet mapping knows.
const orderSchema = `{"type":"record","name":"Order","namespace":"com.example","fields":[
 {"name":"id","type":"long"},
 {"name":"flag","type":"boolean"},
 {"name":"qty","type":"int"},
 {"name":"ratio","type":"float"},
 {"name":"price","type":"double"},
 {"name":"name","type":"string"},
 {"name":"blob","type":"bytes"},
 {"name":"hash","type":{"type":"fixed","name":"Hash","size":4}},
 {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","SHIPPED"]}},
 {"name":"customer","type":{"type":"record","name":"Customer","fields":[
   {"name":"name","type":"string"},{"name":"email","type":["null","string"],"default":null}]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
   {"name":"sku","type":"string"},{"name":"n","type":"int"}]}}},
 {"name":"attrs","type":{"type":"map","values":["null","long"]}},
 {"name":"note","type":["string","null"],"default":"x"},
 {"name":"choice","type":["null","string","long"],"default":null},
 {"name":"day","type":{"type":"int","logicalType":"date"}},
 {"name":"at","type":{"type":"int","logicalType":"time-millis"}},
 {"name":"created","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"updated","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
 {"name":"big","type":{"type":"fixed","name":"Big","size":8,"logicalType":"decimal","precision":18,"scale":3}},
 {"name":"uid","type":{"type":"string","logicalType":"uuid"}}
]}`

// orderV2 is orderSchema with one more field (another id).
const orderV2 = `{"type":"record","name":"Order","namespace":"com.example","fields":[
 {"name":"id","type":"long"},{"name":"extra","type":"string","default":""}]}`

// order is one test value; the Avro datum and what Arrow should read back.
type order struct {
	id               int64
	flag             bool
	qty              int32
	ratio            float32
	price            float64
	name             string
	blob             []byte
	hash             [4]byte
	status           string
	custName         string
	email            *string
	tags             []string
	lines            []line
	attrs            map[string]*int64
	note             *string
	choiceS          *string
	choiceL          *int64
	day              time.Time
	at               time.Duration
	created, updated time.Time
	amount           string // decimal text, scale 2
	bigv             string // scale 3
	uid              string
}

type line struct {
	sku string
	n   int32
}

func strp(s string) *string { return &s }
func i64p(v int64) *int64   { return &v }

func testOrders() []order {
	return []order{{
		id: 1, flag: true, qty: 3, ratio: 0.5, price: 19.99, name: "första", blob: []byte{0, 1, 2},
		hash: [4]byte{0xde, 0xad, 0xbe, 0xef}, status: "PAID", custName: "Ada", email: strp("ada@example.com"),
		tags: []string{"a", "b"}, lines: []line{{"sku-1", 2}, {"sku-2", 1}},
		attrs: map[string]*int64{"k1": i64p(7), "k2": nil}, note: strp("hi"), choiceS: strp("str"),
		day: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), at: 13*time.Hour + 5*time.Millisecond,
		created: time.UnixMilli(1700000000123).UTC(), updated: time.UnixMicro(1700000000123456).UTC(),
		amount: "123.45", bigv: "-9876.543", uid: "123e4567-e89b-12d3-a456-426614174000",
	}, {
		id: -2, status: "NEW", custName: "Bob", tags: []string{}, lines: nil, attrs: map[string]*int64{},
		choiceL: i64p(-42), day: time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC),
		created: time.UnixMilli(-5).UTC(), updated: time.UnixMicro(0).UTC(), amount: "-0.01", bigv: "0.000",
		uid: "00000000-0000-0000-0000-000000000000", blob: []byte{},
	}}
}

func ratOf(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic("BUG: bad decimal " + s)
	}
	return r
}

// datum is o as hamba's generic encoder takes it.
func (o order) datum() map[string]any {
	opt := func(p *string) any {
		if p == nil {
			return nil
		}
		return map[string]any{"string": *p}
	}
	tags := make([]any, len(o.tags))
	for i, s := range o.tags {
		tags[i] = s
	}
	lines := make([]any, len(o.lines))
	for i, l := range o.lines {
		lines[i] = map[string]any{"sku": l.sku, "n": int(l.n)}
	}
	attrs := map[string]any{}
	for k, v := range o.attrs {
		if v == nil {
			attrs[k] = nil
		} else {
			attrs[k] = map[string]any{"long": *v}
		}
	}
	var choice any
	switch {
	case o.choiceS != nil:
		choice = map[string]any{"string": *o.choiceS}
	case o.choiceL != nil:
		choice = map[string]any{"long": *o.choiceL}
	}
	return map[string]any{
		"id": o.id, "flag": o.flag, "qty": int(o.qty), "ratio": o.ratio, "price": o.price, "name": o.name,
		"blob": o.blob, "hash": o.hash, "status": o.status,
		"customer": map[string]any{"name": o.custName, "email": opt(o.email)},
		"tags":     tags, "lines": lines, "attrs": attrs, "note": opt(o.note), "choice": choice,
		"day": o.day, "at": o.at, "created": o.created, "updated": o.updated,
		"amount": ratOf(o.amount), "big": ratOf(o.bigv), "uid": o.uid,
	}
}

func (o order) payload(t testing.TB, schema string) []byte {
	t.Helper()
	b, err := avro.Marshal(avro.MustParse(schema), o.datum())
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// arrowRow is what Arrow reads for o under value: Go values as toGo makes
// them.
func (o order) arrowRow() map[string]any {
	var email, note any
	if o.email != nil {
		email = *o.email
	}
	if o.note != nil {
		note = *o.note
	}
	tags := []any{}
	for _, s := range o.tags {
		tags = append(tags, s)
	}
	lines := []any{}
	for _, l := range o.lines {
		lines = append(lines, map[string]any{"sku": l.sku, "n": l.n})
	}
	attrs := []any{}
	for _, k := range sortedKeys(o.attrs) {
		var v any
		if o.attrs[k] != nil {
			v = *o.attrs[k]
		}
		attrs = append(attrs, [2]any{k, v})
	}
	choice := map[string]any{"string": nil, "long": nil}
	switch {
	case o.choiceS != nil:
		choice["string"] = *o.choiceS
	case o.choiceL != nil:
		choice["long"] = *o.choiceL
	}
	uid := make([]byte, 0, 16)
	for i := 0; i < len(o.uid); i++ {
		if o.uid[i] == '-' {
			continue
		}
		var b byte
		fmt.Sscanf(o.uid[i:i+2], "%02x", &b)
		uid = append(uid, b)
		i++
	}
	return map[string]any{
		"id": o.id, "flag": o.flag, "qty": o.qty, "ratio": o.ratio, "price": o.price, "name": o.name,
		"blob": string(o.blob), "hash": string(o.hash[:]), "status": o.status,
		"customer": map[string]any{"name": o.custName, "email": email},
		"tags":     tags, "lines": lines, "attrs": attrs, "note": note, "choice": choice,
		"day":     int32(o.day.Unix() / 86400),
		"at":      int32(o.at / time.Millisecond),
		"created": o.created.UnixMilli(), "updated": o.updated.UnixMicro(),
		"amount": o.amount, "big": o.bigv, "uid": string(uid),
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// pqColumn is a leaf column as the Parquet footer has it.
type pqColumn struct {
	path    string
	typ     string // physical type, with its logical type
	def, rp int16
}

// readParquet reads a file with Apache Arrow's Parquet reader: its leaf
// columns and its rows, each a map of the top-level columns as toGo makes
// them.
func readParquet(t *testing.T, b []byte) ([]pqColumn, []map[string]any) {
	t.Helper()
	pf, err := file.NewParquetReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("arrow parquet reader: %v", err)
	}
	defer pf.Close()
	sc := pf.MetaData().Schema
	var cols []pqColumn
	for i := range sc.NumColumns() {
		c := sc.Column(i)
		typ := c.PhysicalType().String()
		if lt := c.LogicalType(); lt != nil && !lt.IsNone() {
			typ += " " + lt.String()
		}
		cols = append(cols, pqColumn{path: c.Path(), typ: typ, def: c.MaxDefinitionLevel(), rp: c.MaxRepetitionLevel()})
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatalf("pqarrow: %v", err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatalf("arrow read table: %v", err)
	}
	defer tbl.Release()
	rows := make([]map[string]any, tbl.NumRows())
	for i := range rows {
		rows[i] = map[string]any{}
	}
	for c := range int(tbl.NumCols()) {
		col := tbl.Column(c)
		n := 0
		for _, chunk := range col.Data().Chunks() {
			for i := range chunk.Len() {
				rows[n][col.Name()] = toGo(chunk, i)
				n++
			}
		}
	}
	return cols, rows
}

// toGo is element i of arr as a plain Go value: strings and binaries as
// string, structs as maps, lists as []any, maps as []any of [key, value],
// timestamps, dates and times as their integer, decimals as text.
func toGo(arr arrow.Array, i int) any {
	if arr.IsNull(i) {
		return nil
	}
	switch a := arr.(type) {
	case *array.String:
		return a.Value(i)
	case *array.Binary:
		return string(a.Value(i))
	case *array.FixedSizeBinary:
		return string(a.Value(i))
	case *extensions.UUIDArray:
		return string(a.Storage().(*array.FixedSizeBinary).Value(i))
	case *array.Boolean:
		return a.Value(i)
	case *array.Int32:
		return a.Value(i)
	case *array.Int64:
		return a.Value(i)
	case *array.Float32:
		return a.Value(i)
	case *array.Float64:
		return a.Value(i)
	case *array.Date32:
		return int32(a.Value(i))
	case *array.Time32:
		return int32(a.Value(i))
	case *array.Time64:
		return int64(a.Value(i))
	case *array.Timestamp:
		return int64(a.Value(i))
	case *array.Decimal128:
		return a.Value(i).ToString(a.DataType().(*arrow.Decimal128Type).Scale)
	case *array.Struct:
		st := a.DataType().(*arrow.StructType)
		m := map[string]any{}
		for f := range st.NumFields() {
			m[st.Field(f).Name] = toGo(a.Field(f), i)
		}
		return m
	case *array.Map:
		start, end := a.ValueOffsets(i)
		out := []any{}
		for j := start; j < end; j++ {
			out = append(out, [2]any{toGo(a.Keys(), int(j)), toGo(a.Items(), int(j))})
		}
		return out
	case *array.List:
		start, end := a.ValueOffsets(i)
		out := []any{}
		for j := start; j < end; j++ {
			out = append(out, toGo(a.ListValues(), int(j)))
		}
		return out
	}
	return fmt.Sprintf("<unhandled %T>", arr)
}

func mustMarshal(t testing.TB, schema string, v any) []byte {
	t.Helper()
	b, err := avro.Marshal(avro.MustParse(schema), v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}
