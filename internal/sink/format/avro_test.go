package format

import (
	"bytes"
	"encoding/binary"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"
	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// readOCF reads an object container file with hamba's decoder, and again
// with goavro's (a second, independent reader), which must agree on the
// records' count and metadata.
func readOCF(t *testing.T, b []byte) (avro.Schema, []map[string]any) {
	t.Helper()
	dec, err := ocf.NewDecoder(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("ocf decoder: %v", err)
	}
	var out []map[string]any
	for dec.HasNext() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("ocf decode record %d: %v", len(out), err)
		}
		out = append(out, m)
	}
	if err := dec.Error(); err != nil {
		t.Fatalf("ocf: %v", err)
	}

	gr, err := goavro.NewOCFReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("goavro: %v", err)
	}
	n := 0
	for gr.Scan() {
		rec, err := gr.Read()
		if err != nil {
			t.Fatalf("goavro record %d: %v", n, err)
		}
		g := rec.(map[string]any)
		if n >= len(out) {
			t.Fatalf("goavro reads more records than hamba's %d", len(out))
		}
		h := out[n]
		for _, k := range []string{"topic", "offset"} {
			if !reflect.DeepEqual(g[k], h[k]) {
				t.Errorf("record %d: %s: goavro %#v, hamba %#v", n, k, g[k], h[k])
			}
		}
		if g["partition"] != int32(h["partition"].(int)) {
			t.Errorf("record %d: partition: goavro %#v, hamba %#v", n, g["partition"], h["partition"])
		}
		if !g["timestamp"].(time.Time).Equal(h["timestamp"].(time.Time)) {
			t.Errorf("record %d: timestamp: goavro %v, hamba %v", n, g["timestamp"], h["timestamp"])
		}
		if (g["value"] == nil) != (h["value"] == nil) {
			t.Errorf("record %d: value: goavro %#v, hamba %#v", n, g["value"], h["value"])
		}
		n++
	}
	if err := gr.Err(); err != nil {
		t.Fatalf("goavro: %v", err)
	}
	if n != len(out) {
		t.Fatalf("goavro reads %d records, hamba %d", n, len(out))
	}
	return dec.Schema(), out
}

// wantEnvelope is the envelope hamba's generic decoder makes of r (it
// reads a union's branch as its value, a named type's in a map of its
// name), with value.
func wantEnvelope(r *Record, value any) map[string]any {
	var key any
	if r.Key != nil {
		key = r.Key
	}
	headers := []any{}
	for _, h := range r.Headers {
		var v any
		if h.Value != nil {
			v = h.Value
		}
		headers = append(headers, map[string]any{"key": h.Key, "value": v})
	}
	return map[string]any{"topic": r.Topic, "partition": int(r.Partition), "offset": r.Offset,
		"timestamp": r.Timestamp.UTC(), "key": key, "headers": headers, "value": value}
}

func checkEnvelopes(t *testing.T, got []map[string]any, recs []*Record, values []any) {
	t.Helper()
	if len(got) != len(recs) {
		t.Fatalf("%d records, want %d", len(got), len(recs))
	}
	for i, r := range recs {
		want := wantEnvelope(r, values[i])
		for k, w := range want {
			if g := got[i][k]; !reflect.DeepEqual(g, w) {
				t.Errorf("record %d: %s = %#v, want %#v", i, k, g, w)
			}
		}
	}
}

// TestAvroOCF: wire-format Avro values go into a container file whose
// schema is the envelope around the writer schema, the value bytes copied
// as they are: each record decodes to the value that was encoded, with its
// metadata; a tombstone is null; another schema id needs a new file; JSON
// and other bytes go into files of a bytes value.
func TestAvroOCF(t *testing.T) {
	url, cl := startRegistry(t)
	id := register(t, cl, "orders-value", orderSchema)
	const unionSchema = `["string","long"]`
	uid := register(t, cl, "u-value", unionSchema)
	f, err := New("avro", Options{Registry: url})
	if err != nil {
		t.Fatal(err)
	}
	orders := testOrders()
	ts := time.UnixMilli(1700000000000).UTC()
	p0, p1 := orders[0].payload(t, orderSchema), orders[1].payload(t, orderSchema)
	recs := []*Record{
		{Topic: "orders", Partition: 1, Offset: 5, Timestamp: ts},
		{Topic: "orders", Partition: 1, Offset: 6, Timestamp: ts, Key: []byte("k"), Value: frame(id, p0),
			Headers: []Header{{"h", []byte("1")}, {"h", nil}}},
		{Topic: "orders", Partition: 1, Offset: 7, Timestamp: ts.Add(time.Millisecond), Value: frame(id, p1)},
		{Topic: "orders", Partition: 1, Offset: 8, Timestamp: ts, Value: []byte(`{"json": true}`)},
	}
	b, n := writeFile(t, f, recs, nil)
	if n != 3 {
		t.Fatalf("took %d records, want 3 (then JSON needs a new file)", n)
	}
	schema, got := readOCF(t, b)
	if v := schema.(*avro.RecordSchema).Fields()[6].Type().String(); v != `["null",`+avro.MustParse(orderSchema).String()+`]` {
		t.Errorf("value schema %s", v)
	}
	var d0, d1 any
	if err := avro.Unmarshal(avro.MustParse(orderSchema), p0, &d0); err != nil {
		t.Fatal(err)
	}
	if err := avro.Unmarshal(avro.MustParse(orderSchema), p1, &d1); err != nil {
		t.Fatal(err)
	}
	checkEnvelopes(t, got, recs[:3], []any{nil,
		map[string]any{"com.example.Order": d0}, map[string]any{"com.example.Order": d1}})
	if v := got[1]["value"].(map[string]any)["com.example.Order"].(map[string]any); v["name"] != "första" || v["id"] != int64(1) {
		t.Errorf("order 0 read back as %v", v)
	}

	// A writer schema that is a union without null gets null in front,
	// its branches renumbered.
	uRecs := []*Record{
		{Topic: "u", Offset: 1, Timestamp: ts, Value: frame(uid, mustMarshal(t, unionSchema, map[string]any{"long": int64(-3)}))},
		{Topic: "u", Offset: 2, Timestamp: ts, Value: frame(uid, mustMarshal(t, unionSchema, map[string]any{"string": "s"}))},
		{Topic: "u", Offset: 3, Timestamp: ts},
	}
	b, n = writeFile(t, f, uRecs, nil)
	if n != 3 {
		t.Fatalf("union file took %d records", n)
	}
	_, got = readOCF(t, b)
	checkEnvelopes(t, got, uRecs, []any{int64(-3), "s", nil})

	// JSON and other bytes: one kind of file, value as bytes.
	plain := []*Record{recs[3], {Topic: "orders", Offset: 9, Timestamp: ts, Value: []byte{1, 2, 3}}, recs[0],
		{Topic: "orders", Offset: 10, Timestamp: ts, Value: frame(id, p0)}}
	b, n = writeFile(t, f, plain, nil)
	if n != 3 {
		t.Fatalf("plain file took %d records, want 3", n)
	}
	_, got = readOCF(t, b)
	checkEnvelopes(t, got, plain[:3], []any{recs[3].Value, []byte{1, 2, 3}, nil})
}

// TestReferences: a schema that uses a type from another subject (a
// schema reference) is resolved through the registry: its Parquet columns
// include the referenced record's, and its Avro file's header has the
// referenced type inlined.
func TestReferences(t *testing.T) {
	url, cl := startRegistry(t)
	const address = `{"type":"record","name":"Address","namespace":"com.example","fields":[{"name":"city","type":"string"}]}`
	const customer = `{"type":"record","name":"Customer","namespace":"com.example","fields":[{"name":"id","type":"long"},{"name":"home","type":"com.example.Address"}]}`
	register(t, cl, "address", address)
	s, err := cl.CreateSchema(clitest.Ctx(t), "customer-value", sr.Schema{Schema: customer,
		References: []sr.SchemaReference{{Name: "com.example.Address", Subject: "address", Version: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	whole := `{"type":"record","name":"Customer","namespace":"com.example","fields":[{"name":"id","type":"long"},{"name":"home","type":` + address + `}]}`
	payload := mustMarshal(t, whole, map[string]any{"id": int64(3), "home": map[string]any{"city": "Lund"}})
	recs := []*Record{{Topic: "c", Offset: 1, Timestamp: time.UnixMilli(5).UTC(), Value: frame(s.ID, payload)}}

	pf, err := New("parquet", Options{Registry: url})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := writeFile(t, pf, recs, nil)
	_, rows := readParquet(t, b)
	if want := map[string]any{"id": int64(3), "home": map[string]any{"city": "Lund"}}; !reflect.DeepEqual(rows[0]["value"], want) {
		t.Errorf("parquet value %#v, want %#v", rows[0]["value"], want)
	}

	af, err := New("avro", Options{Registry: url})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = writeFile(t, af, recs, nil)
	_, got := readOCF(t, b)
	want := map[string]any{"com.example.Customer": map[string]any{"id": int64(3), "home": map[string]any{"city": "Lund"}}}
	if !reflect.DeepEqual(got[0]["value"], want) {
		t.Errorf("avro value %#v, want %#v", got[0]["value"], want)
	}
}

// TestSameRecordsSameBytes: a sink that writes the same records again
// after a crash makes the same file, byte for byte, in every format (Avro:
// the same records, schema and blocks; its header's two metadata entries
// come in a Go map's order); and
// files of one Format are written from several goroutines at once, the
// first records of each fetching the same schema concurrently.
func TestSameRecordsSameBytes(t *testing.T) {
	url, cl := startRegistry(t)
	id := register(t, cl, "orders-value", orderSchema)
	orders := testOrders()
	var recs []*Record
	for i := range 200 {
		r := &Record{Topic: "orders", Partition: 2, Offset: int64(i), Timestamp: time.UnixMilli(int64(1e12 + i)),
			Key: []byte{byte(i)}, Headers: []Header{{"n", []byte{byte(i)}}}}
		if i%7 != 3 {
			r.Value = frame(id, orders[i%2].payload(t, orderSchema))
		}
		recs = append(recs, r)
	}
	for _, name := range Names {
		f, err := New(name, Options{Registry: url})
		if err != nil {
			t.Fatal(err)
		}
		const writers = 4
		out := make([][]byte, writers)
		errs := make(chan error, writers)
		for w := range writers {
			go func() {
				var buf bytes.Buffer
				file, err := f.NewFile(&buf)
				if err == nil {
					for _, r := range recs {
						if err = file.Append(clitest.Ctx(t), r); err != nil {
							break
						}
					}
				}
				if err == nil {
					err = file.Close()
				}
				out[w] = buf.Bytes()
				errs <- err
			}()
		}
		for range writers {
			if err := <-errs; err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		for w := 1; w < writers; w++ {
			if name == "avro" {
				s0, r0 := readOCF(t, out[0])
				sw, rw := readOCF(t, out[w])
				h0, hw := ocfHeaderLen(t, out[0]), ocfHeaderLen(t, out[w])
				if s0.String() != sw.String() || !reflect.DeepEqual(r0, rw) || !bytes.Equal(out[0][h0:], out[w][hw:]) {
					t.Errorf("%s: file %d differs from file 0 past the header", name, w)
				}
				continue
			}
			if !bytes.Equal(out[0], out[w]) {
				t.Errorf("%s: file %d differs from file 0 (%d and %d bytes)", name, w, len(out[w]), len(out[0]))
			}
		}
	}
}

// ocfHeaderLen is the length of an Avro container file's header: magic,
// the metadata map (one block here), the 16-byte sync marker.
func ocfHeaderLen(t *testing.T, b []byte) int {
	t.Helper()
	r := bytes.NewReader(b[4:])
	n, err := binary.ReadVarint(r)
	if n < 0 { // a negative count: -count entries, then the block's size
		n = -n
		_, err = binary.ReadVarint(r)
	}
	if err != nil || n == 0 {
		t.Fatalf("OCF header: %d entries, %v", n, err)
	}
	for range 2 * n { // keys and values, each a length and bytes
		l, err := binary.ReadVarint(r)
		if err != nil || l < 0 {
			t.Fatalf("OCF header: %v", err)
		}
		r.Seek(l, io.SeekCurrent)
	}
	if end, err := binary.ReadVarint(r); err != nil || end != 0 {
		t.Fatalf("OCF header: more than one map block (%d, %v)", end, err)
	}
	return len(b) - r.Len() + 16
}
