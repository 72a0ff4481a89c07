package format

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"
)

// benchFileRecords is how many records a benchmark puts in one file
// before it starts the next, as a sink rolling by count would.
const benchFileRecords = 50000

// BenchmarkFormats measures encoding throughput per format and kind of
// value: MB/s are of the records' key and value bytes going in; out-B/rec
// is the encoded file's bytes per record (the data is synthetic and
// repetitive, so compression flatters it).
func BenchmarkFormats(b *testing.B) {
	reg := cachedRegistry(b, map[int]string{1: orderSchema})
	orders := testOrders()
	avroValues := [][]byte{frame(1, orders[0].payload(b, orderSchema)), frame(1, orders[1].payload(b, orderSchema))}
	jsonValues := [][]byte{
		[]byte(`{"id":1,"user":"u-123","page":"/checkout","ms":231,"tags":["a","b"],"ok":true}`),
		[]byte(`{"id":2,"user":"u-456","page":"/","ms":12,"tags":[],"ok":false}`),
	}
	formats := []Format{JSONL{reg: reg}, Parquet{reg: reg}, Avro{reg: reg}}
	for _, f := range formats {
		for _, kind := range []struct {
			name   string
			values [][]byte
		}{{"avro-values", avroValues}, {"json-values", jsonValues}} {
			b.Run(f.Name()+"/"+kind.name, func(b *testing.B) {
				benchFormat(b, f, kind.values)
			})
		}
	}
}

func benchFormat(b *testing.B, f Format, values [][]byte) {
	ctx := context.Background()
	ts := time.UnixMilli(1700000000000)
	recs := make([]Record, 64)
	var in int64
	for i := range recs {
		recs[i] = Record{Topic: "bench", Partition: 1, Timestamp: ts, Key: []byte(fmt.Sprint("user-", i)),
			Value: values[i%len(values)], Headers: []Header{{"trace", []byte("0af7651916cd43dd")}}}
		in += int64(len(recs[i].Key) + len(recs[i].Value))
	}
	b.SetBytes(in / int64(len(recs)))
	out := &countWriter{w: io.Discard}
	var file File
	var estimated int64 // the files' Size just before Close
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if file == nil || file.Records() == benchFileRecords {
			if file != nil {
				estimated += file.Size()
				if err := file.Close(); err != nil {
					b.Fatal(err)
				}
			}
			var err error
			if file, err = f.NewFile(out); err != nil {
				b.Fatal(err)
			}
		}
		r := &recs[i%len(recs)]
		r.Offset = int64(i)
		if err := file.Append(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	estimated += file.Size()
	if err := file.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(out.n)/float64(b.N), "out-B/rec")
	// size-est is Size just before Close over the bytes the files have.
	b.ReportMetric(float64(estimated)/float64(out.n), "size-est")
}
