package sink_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/schemareg"
	"github.com/sluice-io/sluice/internal/sink"
	"github.com/sluice-io/sluice/internal/sink/format"
)

const orderSchema = `{"type":"record","name":"Order","fields":[
	{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":["null","int"]}]}`

type order struct {
	ID   int64  `avro:"id"`
	Item string `avro:"item"`
	Qty  *int32 `avro:"qty"`
}

func orderOf(i int) order {
	o := order{ID: int64(i), Item: fmt.Sprintf("item-%d", i)}
	if i%3 != 0 {
		q := int32(i % 17)
		o.Qty = &q
	}
	return o
}

// Avro records in the registry's wire format, sunk as Parquet while the
// registry is away at first: the sink waits for it (it neither stops nor
// skips), then every record is in exactly one file, read back by Apache
// Arrow's Parquet reader as typed columns equal to what was produced.
func TestParquetWithRegistry(t *testing.T) {
	c := startCluster(t)
	const topic, partitions, n = "orders", 2, 400
	c.create(t, topic, partitions)
	reg, err := schemareg.Open(schemareg.Config{Brokers: []string{c.addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	select {
	case <-reg.Ready():
	case <-time.After(60 * time.Second):
		t.Fatal("registry not ready after 60s")
	}
	// Registered through a server of its own; the sink's address serves
	// only later.
	tmp := httptest.NewServer(reg.Handler())
	rc, err := sr.NewClient(sr.URLs(tmp.URL))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := rc.CreateSchema(clitest.Ctx(t), topic+"-value", sr.Schema{Schema: orderSchema})
	tmp.Close()
	if err != nil {
		t.Fatal(err)
	}
	schema := avro.MustParse(orderSchema)
	var recs []*kgo.Record
	for i := range n {
		b, err := avro.Marshal(schema, orderOf(i))
		if err != nil {
			t.Fatal(err)
		}
		v := binary.BigEndian.AppendUint32([]byte{0}, uint32(ss.ID))
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % partitions), Value: append(v, b...),
			Timestamp: baseTime.Add(time.Duration(i) * time.Second)})
	}
	if err := c.cl.ProduceSync(clitest.Ctx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	regAddr := clitest.FreeAddr(t)
	root, store := dirStore(t)
	f, err := format.New("parquet", format.Options{Registry: "http://" + regAddr})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := sink.ParseTemplate("dt={{date}}")
	if err != nil {
		t.Fatal(err)
	}
	r := runSink(t, sink.Options{Brokers: []string{c.addr}, Topics: topic, Group: "g", Store: store, Format: f,
		PartitionBy: tm, RollBytes: 16 << 10, RollTime: 200 * time.Millisecond, SessionTimeout: 6 * time.Second})
	time.Sleep(3 * time.Second)
	if st := r.status(); st != " (the sink runs)" {
		t.Fatalf("with the registry away%s", st)
	}
	if com := c.committed(t, "g", topic); len(com) != 0 && (com[0].At > 0 || com[1].At > 0) {
		t.Fatalf("offsets committed with the registry away: %v", com)
	}
	ln, err := net.Listen("tcp", regAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: reg.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c.waitCommitted(t, "g", topic, 60*time.Second, r.status)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	seen := map[[2]int64]bool{}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		if !strings.HasSuffix(path, ".parquet") {
			t.Fatalf("object %s is not Parquet", path)
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, row := range readOrders(t, b) {
			k := [2]int64{int64(row.partition), row.offset}
			if seen[k] {
				t.Fatalf("partition %d offset %d in two files", row.partition, row.offset)
			}
			seen[k] = true
			i := int(row.offset)*partitions + int(row.partition) // produced round robin
			want := orderOf(i)
			if row.id != want.ID || row.item != want.Item || (row.qty == nil) != (want.Qty == nil) ||
				row.qty != nil && *row.qty != *want.Qty {
				t.Fatalf("partition %d offset %d: %+v, want %+v", row.partition, row.offset, row, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("%d records in %d files, want %d", len(seen), files, n)
	}
	t.Logf("%d records in %d Parquet files", n, files)
}

type orderRow struct {
	partition int32
	offset    int64
	id        int64
	item      string
	qty       *int32
}

// readOrders reads a sink's Parquet file of orders with Apache Arrow.
func readOrders(t *testing.T, b []byte) []orderRow {
	t.Helper()
	pf, err := file.NewParquetReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("arrow parquet reader: %v", err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	rows := make([]orderRow, tbl.NumRows())
	for c := range int(tbl.NumCols()) {
		col := tbl.Column(c)
		n := 0
		for _, chunk := range col.Data().Chunks() {
			for i := range chunk.Len() {
				row := &rows[n]
				n++
				switch col.Name() {
				case "partition":
					row.partition = chunk.(*array.Int32).Value(i)
				case "offset":
					row.offset = chunk.(*array.Int64).Value(i)
				case "value":
					st := chunk.(*array.Struct)
					typ := st.DataType().(interface{ FieldIndices(string) []int })
					row.id = st.Field(typ.FieldIndices("id")[0]).(*array.Int64).Value(i)
					row.item = st.Field(typ.FieldIndices("item")[0]).(*array.String).Value(i)
					if q := st.Field(typ.FieldIndices("qty")[0]).(*array.Int32); !q.IsNull(i) {
						v := q.Value(i)
						row.qty = &v
					}
				}
			}
		}
	}
	return rows
}
