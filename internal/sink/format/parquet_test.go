package format

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// i32 and i64 are the plain integers as Arrow names them.
const (
	i32 = "INT32 Int(bitWidth=32, isSigned=true)"
	i64 = "INT64 Int(bitWidth=64, isSigned=true)"
)

// metadataColumns are the leaf columns every Parquet file starts with.
var metadataColumns = []pqColumn{
	{"topic", "BYTE_ARRAY String", 0, 0},
	{"partition", i32, 0, 0},
	{"offset", i64, 0, 0},
	{"timestamp", "INT64 Timestamp(isAdjustedToUTC=true, timeUnit=milliseconds, is_from_converted_type=false, force_set_converted_type=false)", 0, 0},
	{"key", "BYTE_ARRAY", 1, 0},
	{"headers.list.element.key", "BYTE_ARRAY String", 1, 1},
	{"headers.list.element.value", "BYTE_ARRAY", 2, 1},
}

// wantMetadata is what Arrow reads of r's metadata columns.
func wantMetadata(r *Record) map[string]any {
	var key any
	if r.Key != nil {
		key = string(r.Key)
	}
	headers := []any{}
	for _, h := range r.Headers {
		var v any
		if h.Value != nil {
			v = string(h.Value)
		}
		headers = append(headers, map[string]any{"key": h.Key, "value": v})
	}
	return map[string]any{"topic": r.Topic, "partition": r.Partition, "offset": r.Offset,
		"timestamp": r.Timestamp.UnixMilli(), "key": key, "headers": headers}
}

// checkRow compares one row with want, naming the columns that differ.
func checkRow(t *testing.T, i int, got, want map[string]any) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	for k, w := range want {
		if g := got[k]; !reflect.DeepEqual(g, w) {
			t.Errorf("row %d: %s = %#v, want %#v", i, k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("row %d: unexpected column %s", i, k)
		}
	}
}

// TestParquetAvro: values in the registry's wire format with a rich Avro
// schema become typed columns that Apache Arrow reads back as they went
// in; a tombstone is a null value; a record with another schema id needs
// a new file, which the next schema's records fill.
func TestParquetAvro(t *testing.T) {
	url, cl := startRegistry(t)
	id := register(t, cl, "orders-value", orderSchema)
	id2 := register(t, cl, "orders-value", orderV2)
	f, err := New("parquet", Options{Registry: url})
	if err != nil {
		t.Fatal(err)
	}
	ctx := clitest.Ctx(t)
	orders := testOrders()
	ts := time.UnixMilli(1700000000000).UTC()
	recs := []*Record{
		{Topic: "orders", Partition: 3, Offset: 10, Timestamp: ts, Key: []byte("k1"),
			Value:   frame(id, orders[0].payload(t, orderSchema)),
			Headers: []Header{{"h", []byte("1")}, {"h", nil}, {"trace", []byte{0xff}}}},
		{Topic: "orders", Partition: 3, Offset: 11, Timestamp: ts.Add(time.Second), Key: []byte("k1")},
		{Topic: "orders", Partition: 3, Offset: 12, Timestamp: ts.Add(2 * time.Second),
			Value: frame(id, orders[1].payload(t, orderSchema))},
	}
	v2 := &Record{Topic: "orders", Partition: 3, Offset: 13, Timestamp: ts.Add(3 * time.Second),
		Value: frame(id2, mustMarshal(t, orderV2, map[string]any{"id": int64(5), "extra": "e"}))}

	var buf bytes.Buffer
	file, err := f.NewFile(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := file.Append(ctx, r); err != nil {
			t.Fatalf("append offset %d: %v", r.Offset, err)
		}
	}
	if err := file.Append(ctx, v2); !errors.Is(err, ErrNewFile) {
		t.Fatalf("append with another schema: %v, want ErrNewFile", err)
	}
	if file.Records() != 3 {
		t.Fatalf("Records = %d, want 3", file.Records())
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	if s := file.Size(); s < int64(buf.Len()) {
		t.Errorf("Size after Close = %d, below the file's %d bytes", s, buf.Len())
	}

	cols, rows := readParquet(t, buf.Bytes())
	wantCols := append(append([]pqColumn{}, metadataColumns...), []pqColumn{
		{"value.id", i64, 1, 0},
		{"value.flag", "BOOLEAN", 1, 0},
		{"value.qty", i32, 1, 0},
		{"value.ratio", "FLOAT", 1, 0},
		{"value.price", "DOUBLE", 1, 0},
		{"value.name", "BYTE_ARRAY String", 1, 0},
		{"value.blob", "BYTE_ARRAY", 1, 0},
		{"value.hash", "FIXED_LEN_BYTE_ARRAY", 1, 0},
		{"value.status", "BYTE_ARRAY String", 1, 0},
		{"value.customer.name", "BYTE_ARRAY String", 1, 0},
		{"value.customer.email", "BYTE_ARRAY String", 2, 0},
		{"value.tags.list.element", "BYTE_ARRAY String", 2, 1},
		{"value.lines.list.element.sku", "BYTE_ARRAY String", 2, 1},
		{"value.lines.list.element.n", i32, 2, 1},
		{"value.attrs.key_value.key", "BYTE_ARRAY String", 2, 1},
		{"value.attrs.key_value.value", i64, 3, 1},
		{"value.note", "BYTE_ARRAY String", 2, 0},
		{"value.choice.string", "BYTE_ARRAY String", 3, 0},
		{"value.choice.long", i64, 3, 0},
		{"value.day", "INT32 Date", 1, 0},
		{"value.at", "INT32 Time(isAdjustedToUTC=true, timeUnit=milliseconds)", 1, 0},
		{"value.created", "INT64 Timestamp(isAdjustedToUTC=true, timeUnit=milliseconds, is_from_converted_type=false, force_set_converted_type=false)", 1, 0},
		{"value.updated", "INT64 Timestamp(isAdjustedToUTC=true, timeUnit=microseconds, is_from_converted_type=false, force_set_converted_type=false)", 1, 0},
		{"value.amount", "BYTE_ARRAY Decimal(precision=10, scale=2)", 1, 0},
		{"value.big", "FIXED_LEN_BYTE_ARRAY Decimal(precision=18, scale=3)", 1, 0},
		{"value.uid", "FIXED_LEN_BYTE_ARRAY UUID", 1, 0},
	}...)
	if !reflect.DeepEqual(cols, wantCols) {
		for i := range max(len(cols), len(wantCols)) {
			var g, w pqColumn
			if i < len(cols) {
				g = cols[i]
			}
			if i < len(wantCols) {
				w = wantCols[i]
			}
			if g != w {
				t.Errorf("column %d: %+v, want %+v", i, g, w)
			}
		}
		t.FailNow()
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	wantValues := []any{orders[0].arrowRow(), nil, orders[1].arrowRow()}
	for i, row := range rows {
		want := wantMetadata(recs[i])
		want["value"] = wantValues[i]
		sortMapColumn(row, "attrs")
		checkRow(t, i, row, want)
	}

	// The next file takes the record that needed it.
	buf.Reset()
	file, err = f.NewFile(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := file.Append(ctx, v2); err != nil {
		t.Fatal(err)
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	_, rows = readParquet(t, buf.Bytes())
	want := wantMetadata(v2)
	want["value"] = map[string]any{"id": int64(5), "extra": "e"}
	if len(rows) != 1 {
		t.Fatalf("second file: %d rows, want 1", len(rows))
	}
	checkRow(t, 0, rows[0], want)
}

// sortMapColumn sorts value.<name>, a map read as [key, value] pairs: Avro
// maps have no order, hamba's encoder writes them in Go's map order.
func sortMapColumn(row map[string]any, name string) {
	v, ok := row["value"].(map[string]any)
	if !ok {
		return
	}
	pairs, ok := v[name].([]any)
	if !ok {
		return
	}
	sort.Slice(pairs, func(i, j int) bool {
		return fmt.Sprint(pairs[i].([2]any)[0]) < fmt.Sprint(pairs[j].([2]any)[0])
	})
}

// writeFile appends recs to a new file of f until one needs a new file,
// and returns the closed file's bytes and how many records it took.
func writeFile(t *testing.T, f Format, recs []*Record, setup func(File)) ([]byte, int) {
	t.Helper()
	var buf bytes.Buffer
	file, err := f.NewFile(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(file)
	}
	n := 0
	for _, r := range recs {
		err := file.Append(clitest.Ctx(t), r)
		if errors.Is(err, ErrNewFile) {
			break
		}
		if err != nil {
			t.Fatalf("append offset %d: %v", r.Offset, err)
		}
		n++
	}
	if file.Records() != n {
		t.Errorf("Records = %d, want %d", file.Records(), n)
	}
	before := file.Size()
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	if before < int64(buf.Len())/2 {
		t.Errorf("Size before Close = %d, the file has %d bytes", before, buf.Len())
	}
	return buf.Bytes(), n
}

// TestParquetPlain: JSON values go into a JSON column, other bytes into a
// binary one, tombstones are null in either; keys, null keys and headers
// (a key twice, a null value) read back as they went in; a file of JSON
// ends at the first value that is not JSON. Small row groups: a file of
// several reads back whole.
func TestParquetPlain(t *testing.T) {
	f, err := New("parquet", Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	var recs []*Record
	for i := range 25 {
		r := &Record{Topic: "events", Partition: int32(i % 3), Offset: int64(100 + i), Timestamp: ts.Add(time.Duration(i) * time.Minute)}
		switch i % 5 {
		case 0:
			r.Value = []byte(fmt.Sprintf(`{"n": %d, "s": "x\ny"}`, i))
			r.Key = []byte(fmt.Sprint("key-", i))
		case 1:
			r.Value = nil // tombstone
			r.Key = []byte{0, 0xff}
		case 2:
			r.Value = []byte(`[1,2,3]`)
			r.Headers = []Header{{"a", []byte("1")}, {"a", []byte("2")}, {"empty", []byte{}}, {"null", nil}}
		case 3:
			r.Value = []byte(`"just a string"`)
		case 4:
			r.Value = []byte(fmt.Sprint(i))
		}
		recs = append(recs, r)
	}
	binaries := []*Record{
		{Topic: "events", Offset: 200, Timestamp: ts, Value: []byte("not json")},
		{Topic: "events", Offset: 204, Timestamp: ts, Value: []byte("\"\xff\"")}, // JSON, not UTF-8
		{Topic: "events", Offset: 201, Timestamp: ts, Value: []byte{0, 0, 0, 0, 1, 2}},
		{Topic: "events", Offset: 202, Timestamp: ts, Value: nil},
		{Topic: "events", Offset: 203, Timestamp: ts, Value: []byte("{}")},
	}
	small := func(fl File) { fl.(*pqFile).groupRowsMax = 4 }
	b, n := writeFile(t, f, append(recs, binaries...), small)
	if n != len(recs) {
		t.Fatalf("JSON file took %d records, want %d", n, len(recs))
	}
	cols, rows := readParquet(t, b)
	want := append(append([]pqColumn{}, metadataColumns...), pqColumn{"value", "BYTE_ARRAY JSON", 1, 0})
	if !reflect.DeepEqual(cols, want) {
		t.Fatalf("columns %+v, want %+v", cols, want)
	}
	if groups := rowGroups(t, b); groups < 6 {
		t.Errorf("%d row groups, want 7 of at most 4 rows", groups)
	}
	checkRows(t, rows, recs)

	b, n = writeFile(t, f, binaries, nil)
	if n != 4 {
		t.Fatalf("binary file took %d records, want 4 (then JSON needs a new file)", n)
	}
	cols, rows = readParquet(t, b)
	want[len(want)-1] = pqColumn{"value", "BYTE_ARRAY", 1, 0}
	if !reflect.DeepEqual(cols, want) {
		t.Fatalf("columns %+v, want %+v", cols, want)
	}
	checkRows(t, rows, binaries[:4])

	// Only tombstones: a binary value column, all null.
	b, n = writeFile(t, f, []*Record{binaries[3], binaries[3]}, nil)
	cols, rows = readParquet(t, b)
	if n != 2 || !reflect.DeepEqual(cols, want) {
		t.Fatalf("tombstones: %d records, columns %+v", n, cols)
	}
	checkRows(t, rows, []*Record{binaries[3], binaries[3]})
}

// checkRows compares rows read back with the records: metadata, and the
// value as its bytes (JSON and binary columns read as binary in Arrow).
func checkRows(t *testing.T, rows []map[string]any, recs []*Record) {
	t.Helper()
	if len(rows) != len(recs) {
		t.Fatalf("%d rows, want %d", len(rows), len(recs))
	}
	for i, r := range recs {
		want := wantMetadata(r)
		want["value"] = nil
		if r.Value != nil {
			want["value"] = string(r.Value)
		}
		checkRow(t, i, rows[i], want)
	}
}

func rowGroups(t *testing.T, b []byte) int {
	t.Helper()
	pf, err := file.NewParquetReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	return pf.NumRowGroups()
}

// TestParquetTopLevelSchemas: a value schema that is not a record maps to
// a value column of its own: a primitive, null-or-T (null and tombstones
// alike read back null), another union (a group with a field per branch).
// Schemas Parquet cannot hold fail the record with an error naming why.
func TestParquetTopLevelSchemas(t *testing.T) {
	reg := cachedRegistry(t, map[int]string{
		1: `"string"`,
		2: `["null","long"]`,
		3: `["string",{"type":"record","name":"P","namespace":"x","fields":[{"name":"a","type":"int"}]},"null"]`,
		4: `{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}`,
		5: `{"type":"record","name":"E","fields":[]}`,
	})
	f := Parquet{reg: reg}
	ts := time.UnixMilli(1).UTC()
	rec := func(id int, schema string, v any) *Record {
		return &Record{Topic: "t", Timestamp: ts, Value: frame(id, mustMarshal(t, schema, v))}
	}
	cases := []struct {
		recs   []*Record
		cols   []pqColumn
		values []any
	}{{
		recs:   []*Record{rec(1, `"string"`, "s"), {Topic: "t", Timestamp: ts}},
		cols:   []pqColumn{{"value", "BYTE_ARRAY String", 1, 0}},
		values: []any{"s", nil},
	}, {
		recs:   []*Record{rec(2, `["null","long"]`, map[string]any{"long": int64(9)}), rec(2, `["null","long"]`, nil), {Topic: "t", Timestamp: ts}},
		cols:   []pqColumn{{"value", i64, 1, 0}},
		values: []any{int64(9), nil, nil},
	}, {
		recs: []*Record{
			rec(3, reg.schemas[3].text, map[string]any{"string": "s"}),
			rec(3, reg.schemas[3].text, map[string]any{"x.P": map[string]any{"a": 4}}),
			rec(3, reg.schemas[3].text, nil),
		},
		cols: []pqColumn{{"value.string", "BYTE_ARRAY String", 2, 0}, {"value.P.a", i32, 2, 0}},
		values: []any{
			map[string]any{"string": "s", "P": nil},
			map[string]any{"string": nil, "P": map[string]any{"a": int32(4)}},
			nil,
		},
	}}
	for i, c := range cases {
		b, n := writeFile(t, f, c.recs, nil)
		if n != len(c.recs) {
			t.Fatalf("case %d: took %d records", i, n)
		}
		cols, rows := readParquet(t, b)
		if want := append(append([]pqColumn{}, metadataColumns...), c.cols...); !reflect.DeepEqual(cols, want) {
			t.Errorf("case %d: columns %+v, want %+v", i, cols[len(metadataColumns):], c.cols)
			continue
		}
		for j, row := range rows {
			if !reflect.DeepEqual(row["value"], c.values[j]) {
				t.Errorf("case %d row %d: value %#v, want %#v", i, j, row["value"], c.values[j])
			}
		}
	}

	for id, want := range map[int]string{4: "recursive record Node", 5: "record E has no fields"} {
		file, _ := f.NewFile(&bytes.Buffer{})
		err := file.Append(clitest.Ctx(t), &Record{Topic: "t", Value: frame(id, []byte{0})})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("schema %d: %v, want an error saying %q", id, err, want)
		}
	}
}
