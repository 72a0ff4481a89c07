package mirror

import (
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// TestMirrorFailoverProducerIDs: both clusters hand out producer id 0
// first. The copy holds the source's producer 0 and its last batches; the
// first producer on the copy after a failover must not have its record
// taken for a resend of the source's (answered as a success, never
// written).
func TestMirrorFailoverProducerIDs(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "orders", 1, nil)
	// One idempotent record: producer 0, epoch 0, sequence 0.
	a.produce(t, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("on the source")})
	_, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "orders", PreserveOffsets: true})
	end := waitEnds(t, a, b, "orders")[0]
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	resp, err := b.adm.AlterTopicConfigs(clitest.Ctx(t), []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: MirrorSourceConfig}}, "orders")
	if err == nil {
		_, err = resp.On("orders", nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	var got *kgo.Record
	for got == nil {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		r, err := cl.ProduceSync(clitest.Ctx(t), &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("after the failover")}).First()
		cl.Close()
		if err == nil {
			got = r
		} else if clitest.Ctx(t).Err() != nil {
			t.Fatalf("produce after the failover: %v", err)
		}
	}
	if got.Offset != end {
		t.Errorf("the first record after the failover acknowledged at offset %d, want %d (the copy's end)", got.Offset, end)
	}
	recs := b.read(t, "orders", int(end)+1)[0]
	if last := recs[len(recs)-1]; string(last.Value) != "after the failover" {
		t.Errorf("the copy ends with %q at %d, want the record produced after the failover", last.Value, last.Offset)
	}
}

// TestMirrorFailoverAbortsOpenTransactions: a transaction open on the source
// when the mirror stopped is open in the copy too, and nothing will ever
// decide it there: after the failover the copy's leader aborts it, so that
// read_committed consumers of the copy go past it (before, they stopped at
// its first record for good).
func TestMirrorFailoverAbortsOpenTransactions(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "orders", 1, nil)
	a.produce(t, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("before")})
	tx, err := kgo.NewClient(kgo.SeedBrokers(a.addr), kgo.TransactionalID("left-open"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := tx.ProduceSync(clitest.Ctx(t), &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("open")}).FirstErr(); err != nil {
			t.Fatalf("transactional record %d: %v", i, err)
		}
	}
	_, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "orders", PreserveOffsets: true})
	waitEnds(t, a, b, "orders")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	resp, err := b.adm.AlterTopicConfigs(clitest.Ctx(t), []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: MirrorSourceConfig}}, "orders")
	if err == nil {
		_, err = resp.On("orders", nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	for {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		err = cl.ProduceSync(clitest.Ctx(t), &kgo.Record{Topic: "orders", Partition: 0, Value: []byte(endValue)}).FirstErr()
		cl.Close()
		if err == nil {
			break
		}
		if clitest.Ctx(t).Err() != nil {
			t.Fatalf("produce after the failover: %v", err)
		}
	}
	var values []string
	for _, r := range readToEnd(t, b.addr, "orders", 1, true)[0] {
		values = append(values, string(r.Value))
	}
	if want := []string{"before", endValue}; !slices.Equal(values, want) {
		t.Fatalf("read_committed on the copy after the failover: %q, want %q", values, want)
	}
}
