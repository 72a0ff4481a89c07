package mirror

import (
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
