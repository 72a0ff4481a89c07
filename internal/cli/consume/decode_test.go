package consume

import (
	"context"
	"encoding/binary"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/schemareg"
)

// TestDecode: --decode prints Avro records in Confluent's wire format as
// JSON (the schema fetched from a real registry by the id in the record),
// JSON Schema ones as produced without the framing, and plain records and
// ones with an unknown schema id as they are (saying so once on stderr).
func TestDecode(t *testing.T) {
	b := clitest.Start(t, nil)
	reg, err := schemareg.Open(schemareg.Config{Brokers: []string{b.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	select {
	case <-reg.Ready():
	case <-time.After(60 * time.Second):
		t.Fatal("registry not ready")
	}
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	ctx := clitest.Ctx(t)
	rc, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	const avroSchema = `{"type":"record","name":"PV","fields":[{"name":"user","type":"string"},{"name":"n","type":"long"}]}`
	as, err := rc.CreateSchema(ctx, "pv-value", sr.Schema{Schema: avroSchema})
	if err != nil {
		t.Fatal(err)
	}
	js, err := rc.CreateSchema(ctx, "ev-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	frame := func(id int, payload []byte) []byte {
		out := make([]byte, 5, 5+len(payload))
		binary.BigEndian.PutUint32(out[1:], uint32(id))
		return append(out, payload...)
	}
	payload, err := avro.Marshal(avro.MustParse(avroSchema), map[string]any{"user": "u1", "n": int64(7)})
	if err != nil {
		t.Fatal(err)
	}
	create(t, b.Addr, "mixed", 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.DefaultProduceTopic("mixed"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, v := range [][]byte{frame(as.ID, payload), frame(js.ID, []byte(`{"a":1}`)), []byte("plain"), frame(9999, []byte("x"))} {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c, io := clitest.Common(b.Addr, nil)
	o := Options{Common: c, Topic: "mixed", FromBeginning: true, ExitAtEnd: true, Decode: true, SchemaRegistry: srv.URL, Format: "%v"}
	if err := Run(ctx, o); err != nil {
		t.Fatalf("consume --decode: %v\n%s", err, io.Err)
	}
	want := "{\"n\":7,\"user\":\"u1\"}\n{\"a\":1}\nplain\n\x00\x00\x00'\x0fx\n"
	if got := io.Out.String(); got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
	if n := strings.Count(io.Err.String(), "printed as it is"); n != 1 || !strings.Contains(io.Err.String(), "schema 9999") {
		t.Errorf("stderr: %q, want one note about schema 9999", io.Err.String())
	}
}
