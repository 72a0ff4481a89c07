package mirror

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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
	failover(t, b, "orders")
	got := produceAfterFailover(t, b.addr, "after the failover")
	if got.Offset != end {
		t.Errorf("the first record after the failover acknowledged at offset %d, want %d (the copy's end)", got.Offset, end)
	}
	recs := b.read(t, "orders", int(end)+1)[0]
	if last := recs[len(recs)-1]; string(last.Value) != "after the failover" {
		t.Errorf("the copy ends with %q at %d, want the record produced after the failover", last.Value, last.Offset)
	}
}

// failover deletes sluice.mirror.source from topic on c: the copy takes
// producers again.
func failover(t *testing.T, c *cluster, topic string) {
	t.Helper()
	resp, err := c.adm.AlterTopicConfigs(clitest.Ctx(t), []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: MirrorSourceConfig}}, topic)
	if err == nil {
		var r kadm.AlterConfigsResponse
		if r, err = resp.On(topic, nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		t.Fatalf("delete %s of %s: %v", MirrorSourceConfig, topic, err)
	}
}

// produceAfterFailover produces value to orders[0] on the failed-over copy
// at addr, with a new idempotent producer each try: the config deletion
// reaches the broker a moment after it was made (POLICY_VIOLATION until
// then), and kgo gives up on a record after that error.
func produceAfterFailover(t *testing.T, addr, value string) *kgo.Record {
	t.Helper()
	ctx := clitest.Ctx(t)
	for {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte(value)}).First()
		cl.Close()
		if err == nil {
			return r
		}
		if ctx.Err() != nil {
			t.Fatalf("produce after the failover: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
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
	failover(t, b, "orders")
	produceAfterFailover(t, b.addr, endValue)
	var values []string
	for _, r := range readToEnd(t, b.addr, "orders", 1, true)[0] {
		values = append(values, string(r.Value))
	}
	if want := []string{"before", endValue}; !slices.Equal(values, want) {
		t.Fatalf("read_committed on the copy after the failover: %q, want %q", values, want)
	}
}

// TestMirrorPreserveFollowsDeletes: records the source deletes after they
// were copied (DeleteRecords, retention) are deleted from the copy too, up
// to what it holds, while the copy goes on: an idle partition included.
// Before, only records deleted before they were copied left the copy.
func TestMirrorPreserveFollowsDeletes(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "orders", 2, nil)
	for p := range int32(2) {
		for i := range 10 {
			a.produce(t, rec("orders", p, i, time.Now()))
		}
	}
	start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "orders", PreserveOffsets: true})
	waitEnds(t, a, b, "orders")
	del := func(p int32, at int64) {
		o := kadm.Offsets{}
		o.Add(kadm.Offset{Topic: "orders", Partition: p, At: at, LeaderEpoch: -1})
		resp, err := a.adm.DeleteRecords(clitest.Ctx(t), o)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("delete records of orders[%d] below %d on the source: %v", p, at, err)
		}
	}
	waitStart := func(p int32, want int64) {
		t.Helper()
		ctx := clitest.Ctx(t)
		for {
			l, err := b.adm.ListStartOffsets(ctx, "orders")
			o, _ := l.Lookup("orders", p)
			if err == nil && o.Err == nil && o.Offset == want {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("the copy's orders[%d] starts at %d (%v %v), want %d", p, o.Offset, err, o.Err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	del(0, 6) // partition 0 idle afterwards
	waitStart(0, 6)
	del(1, 4)
	for i := 10; i < 15; i++ {
		a.produce(t, rec("orders", 1, i, time.Now()))
	}
	waitStart(1, 4)
	if ends := waitEnds(t, a, b, "orders"); ends[1] != 15 {
		t.Fatalf("the copy's orders[1] ends at %d, want 15", ends[1])
	}
	waitStart(0, 6)
}

// TestMirrorSourceConfigOnlyAtCreation: sluice.mirror.source cannot be set
// on an existing topic (its own records would sit at offsets the mirror
// takes for the source's, and it would pass over the source's records
// there as copied) nor changed on a copy; deleting it (the failover) is
// allowed. Before, a hand-set config made an ordinary topic with 10 records
// a "copy" missing the source's first 10.
func TestMirrorSourceConfigOnlyAtCreation(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "orders", 1, nil)
	b.create(t, "orders", 1, nil)
	for i := range 10 {
		a.produce(t, rec("orders", 0, i, time.Now()))
		b.produce(t, rec("orders", 0, 100+i, time.Now()))
	}
	alter := func(c *cluster, topic string, op kadm.IncrementalOp, value string) error {
		resp, err := c.adm.AlterTopicConfigs(clitest.Ctx(t), []kadm.AlterConfig{{Op: op, Name: MirrorSourceConfig, Value: &value}}, topic)
		if err != nil {
			return err
		}
		r, err := resp.On(topic, nil)
		if err != nil {
			return err
		}
		return r.Err
	}
	id := describeClusterID(t, a)
	if err := alter(b, "orders", kadm.SetConfig, id); !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("set %s on a topic with records of its own: %v, want INVALID_CONFIG", MirrorSourceConfig, err)
	}
	// A copy made by the mirror: its source cannot be changed.
	a.create(t, "payments", 1, nil)
	a.produce(t, rec("payments", 0, 0, time.Now()))
	_, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "payments", PreserveOffsets: true})
	waitEnds(t, a, b, "payments")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := alter(b, "payments", kadm.SetConfig, "another-cluster"); !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("change %s of a copy: %v, want INVALID_CONFIG", MirrorSourceConfig, err)
	}
	if err := alter(b, "payments", kadm.SetConfig, id); err != nil {
		t.Fatalf("set %s of a copy to its own value: %v", MirrorSourceConfig, err)
	}
	if err := alter(b, "payments", kadm.DeleteConfig, ""); err != nil {
		t.Fatalf("delete %s (the failover): %v", MirrorSourceConfig, err)
	}
}

// describeClusterID is c's cluster id.
func describeClusterID(t *testing.T, c *cluster) string {
	t.Helper()
	m, err := c.adm.BrokerMetadata(clitest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return m.Cluster
}
