package txn

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/cli/topic"
)

// static are the broker configs of these tests: a small transaction state
// topic.
var static = map[string]string{
	"transaction.state.log.num.partitions":     "1",
	"transaction.state.log.replication.factor": "1",
	"offsets.topic.num.partitions":             "1",
	"group.initial.rebalance.delay.ms":         "0",
}

const topicName = "orders"

func createTopic(t *testing.T, addr string) {
	t.Helper()
	c, _ := clitest.Common(addr, nil)
	if err := topic.RunCreate(clitest.Ctx(t), topic.CreateOptions{Common: c, Topics: []string{topicName}, Partitions: 2, Replicas: 1}); err != nil {
		t.Fatalf("create %s: %v", topicName, err)
	}
}

// txnProducer is a transactional producer writing to partition 0 that has
// begun a transaction and written n records in it.
func txnProducer(t *testing.T, addr, id string, n int) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID(id), kgo.TransactionTimeout(60*time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(topicName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("%s: begin: %v", id, err)
	}
	for i := range n {
		r := &kgo.Record{Partition: 0, Value: []byte(id + "-" + string(rune('a'+i)))}
		if err := cl.ProduceSync(clitest.Ctx(t), r).FirstErr(); err != nil {
			t.Fatalf("%s: produce: %v", id, err)
		}
	}
	return cl
}

// readCommitted reads partition 0 from the start with read_committed until
// it has seen an offset at or past upTo, and returns the values.
func readCommitted(t *testing.T, addr string, upTo int64) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topicName: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(clitest.Ctx(t), 10*time.Second)
	defer cancel()
	var vals []string
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed did not reach offset %d; read %q", upTo, vals)
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			vals = append(vals, string(r.Value))
			done = done || r.Offset >= upTo
		})
		if done {
			return vals
		}
	}
}

func listJSON(t *testing.T, addr string, o ListOptions) []ListedTxn {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	o.Common, o.Output = c, "json"
	if err := RunList(clitest.Ctx(t), o); err != nil {
		t.Fatalf("list %+v: %v", o, err)
	}
	var out []ListedTxn
	if err := json.Unmarshal(io.Out.Bytes(), &out); err != nil {
		t.Fatalf("list json: %v\n%s", err, io.Out)
	}
	return out
}

func producersJSON(t *testing.T, addr string) ProducersResult {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	if err := RunProducers(clitest.Ctx(t), ProducersOptions{Common: c, Topic: topicName, Partitions: []int32{0}, Output: "json"}); err != nil {
		t.Fatalf("producers: %v", err)
	}
	var out ProducersResult
	if err := json.Unmarshal(io.Out.Bytes(), &out); err != nil {
		t.Fatalf("producers json: %v\n%s", err, io.Out)
	}
	return out
}

func hangingJSON(t *testing.T, addr string, max time.Duration) []Hanging {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	if err := RunFindHanging(clitest.Ctx(t), FindHangingOptions{Common: c, MaxTimeout: max, Output: "json"}); err != nil {
		t.Fatalf("find-hanging: %v", err)
	}
	var out []Hanging
	if err := json.Unmarshal(io.Out.Bytes(), &out); err != nil {
		t.Fatalf("find-hanging json: %v\n%s", err, io.Out)
	}
	return out
}

func TestTransactions(t *testing.T) {
	addr := clitest.Start(t, static).Addr
	createTopic(t, addr)
	ctx := clitest.Ctx(t)

	// committed-tx writes offsets 0-2 and commits (marker at 3); open-tx
	// writes 4-5 and leaves its transaction open.
	committed := txnProducer(t, addr, "committed-tx", 3)
	if err := committed.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	open := txnProducer(t, addr, "open-tx", 2)

	// list
	all := listJSON(t, addr, ListOptions{})
	if len(all) != 2 || all[0].TransactionalID != "committed-tx" || all[0].State != "CompleteCommit" ||
		all[1].TransactionalID != "open-tx" || all[1].State != "Ongoing" || all[0].ProducerID == all[1].ProducerID {
		t.Fatalf("list: %+v", all)
	}
	openPID := all[1].ProducerID
	if got := listJSON(t, addr, ListOptions{States: []string{"ongoing"}}); len(got) != 1 || got[0].TransactionalID != "open-tx" {
		t.Fatalf("list --state ongoing: %+v", got)
	}
	if got := listJSON(t, addr, ListOptions{ProducerIDs: []int64{all[0].ProducerID}}); len(got) != 1 || got[0].TransactionalID != "committed-tx" {
		t.Fatalf("list --producer-id: %+v", got)
	}
	c, io := clitest.Common(addr, nil)
	if err := RunList(ctx, ListOptions{Common: c}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(io.Out.String(), "TRANSACTIONAL-ID  PRODUCER-ID  STATE") || !strings.Contains(io.Out.String(), "Ongoing") {
		t.Fatalf("list table:\n%s", io.Out)
	}

	// describe
	c, io = clitest.Common(addr, nil)
	if err := RunDescribe(ctx, DescribeOptions{Common: c, IDs: []string{"open-tx", "committed-tx"}, Output: "json"}); err != nil {
		t.Fatalf("describe: %v", err)
	}
	var ds []DescribedTxn
	if err := json.Unmarshal(io.Out.Bytes(), &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 {
		t.Fatalf("describe: %s", io.Out)
	}
	d := ds[0]
	if d.State != "Ongoing" || d.ProducerID != openPID || d.TimeoutMs != 60000 || d.StartTimeMs <= 0 || d.OpenForMs < 0 ||
		len(d.Partitions) != 1 || d.Partitions[0].Topic != topicName || len(d.Partitions[0].Partitions) != 1 || d.Partitions[0].Partitions[0] != 0 {
		t.Fatalf("describe open-tx: %+v", d)
	}
	if ds[1].State != "CompleteCommit" || ds[1].StartTimeMs != -1 || len(ds[1].Partitions) != 0 {
		t.Fatalf("describe committed-tx: %+v", ds[1])
	}
	c, io = clitest.Common(addr, nil)
	if err := RunDescribe(ctx, DescribeOptions{Common: c, IDs: []string{"open-tx"}}); err != nil {
		t.Fatal(err)
	}
	if s := io.Out.String(); !strings.Contains(s, "STATE             Ongoing") || !strings.Contains(s, "PARTITIONS        orders:0") {
		t.Fatalf("describe table:\n%s", s)
	}
	t.Logf("describe table:\n%s", io.Out)
	c, _ = clitest.Common(addr, nil)
	err := RunDescribe(ctx, DescribeOptions{Common: c, IDs: []string{"nope"}})
	if err == nil || !strings.Contains(err.Error(), "`sluice txn list` shows them") {
		t.Fatalf("describe unknown id: %v", err)
	}
	t.Logf("describe of an unknown transactional id: %v", err)

	// producers: the open transaction holds the last stable offset at 4.
	pr := producersJSON(t, addr)
	p0 := pr.Partitions[0]
	if p0.LastStableOffset != 4 || p0.HighWatermark != 6 || len(p0.Producers) != 2 || p0.Error != "" {
		t.Fatalf("producers: %+v", p0)
	}
	var openProd Producer
	for _, p := range p0.Producers {
		if p.ProducerID == openPID {
			openProd = p
		} else if p.CurrentTxnStartOffset != -1 {
			t.Fatalf("committed producer has an open transaction: %+v", p)
		}
	}
	if openProd.CurrentTxnStartOffset != 4 || openProd.LastSequence != 1 || openProd.LastTimestampMs <= 0 {
		t.Fatalf("open producer: %+v (all %+v)", openProd, p0.Producers)
	}
	t.Logf("producers of %s/0: %+v", topicName, p0)
	c, io = clitest.Common(addr, nil)
	if err := RunProducers(ctx, ProducersOptions{Common: c, Topic: topicName}); err != nil {
		t.Fatal(err)
	}
	if s := io.Out.String(); !strings.Contains(s, "TXN-START-OFFSET") || !strings.Contains(s, "LAST-STABLE-OFFSET") {
		t.Fatalf("producers table:\n%s", s)
	}
	t.Logf("producers table:\n%s", io.Out)

	// find-hanging: the coordinator has it Ongoing, so only a tiny timeout
	// reports it.
	if h := hangingJSON(t, addr, 15*time.Minute); len(h) != 0 {
		t.Fatalf("find-hanging 15m: %+v", h)
	}
	time.Sleep(10 * time.Millisecond)
	if h := hangingJSON(t, addr, time.Millisecond); len(h) != 1 || h[0].ProducerID != openPID || h[0].CurrentTxnStartOffset != 4 ||
		h[0].TransactionalID != "open-tx" || !strings.Contains(h[0].Reason, "longer than --max-transaction-timeout") {
		t.Fatalf("find-hanging 1ms: %+v", h)
	}

	// read_committed stops at the last stable offset.
	if got := readCommitted(t, addr, 2); strings.Join(got, ",") != "committed-tx-a,committed-tx-b,committed-tx-c" {
		t.Fatalf("read_committed before the abort: %q", got)
	}

	// abort by start offset.
	c, io = clitest.Common(addr, nil)
	if err := RunAbort(ctx, AbortOptions{Common: c, Topic: topicName, Partition: 0, StartOffset: 4, ProducerID: -1, ProducerEpoch: -1,
		CoordinatorEpoch: -1, Output: "json"}); err != nil {
		t.Fatalf("abort: %v\n%s", err, io.Err)
	}
	var ar AbortResult
	if err := json.Unmarshal(io.Out.Bytes(), &ar); err != nil {
		t.Fatal(err)
	}
	if ar.ProducerID != openPID || ar.TxnStartOffset != 4 || ar.LastStableOffsetBefore != 4 || ar.LastStableOffsetAfter != 7 || ar.HighWatermark != 7 {
		t.Fatalf("abort: %+v", ar)
	}
	if pr := producersJSON(t, addr); pr.Partitions[0].LastStableOffset != 7 {
		t.Fatalf("after the abort: %+v", pr.Partitions[0])
	}
	if h := hangingJSON(t, addr, time.Millisecond); len(h) != 0 {
		t.Fatalf("find-hanging after the abort: %+v", h)
	}

	// A read_committed consumer now goes past the aborted records to a new one.
	plain, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.ProduceSync(ctx, &kgo.Record{Topic: topicName, Partition: 0, Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := readCommitted(t, addr, 7); strings.Join(got, ",") != "committed-tx-a,committed-tx-b,committed-tx-c,after" {
		t.Fatalf("read_committed after the abort: %q", got)
	}

	// Aborting again finds nothing open.
	c, _ = clitest.Common(addr, nil)
	err = RunAbort(ctx, AbortOptions{Common: c, Topic: topicName, Partition: 0, StartOffset: 4, ProducerID: -1, ProducerEpoch: -1, CoordinatorEpoch: -1})
	if err == nil || !strings.Contains(err.Error(), "no transaction open on orders/0 starts at offset 4") {
		t.Fatalf("abort again: %v", err)
	}
	err = RunAbort(ctx, AbortOptions{Common: c, Topic: topicName, Partition: 0, StartOffset: -1, ProducerID: openPID, ProducerEpoch: int32(openProd.ProducerEpoch), CoordinatorEpoch: -1})
	if err == nil || !strings.Contains(err.Error(), "has no transaction open on orders/0") {
		t.Fatalf("abort by producer id again: %v", err)
	}

	// What the coordinator and the producer make of it: the coordinator
	// still has open-tx Ongoing; its producer then ends the transaction.
	adm := kadm.NewClient(plain)
	dt, err := adm.DescribeTransactions(ctx, "open-tx")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("coordinator after the admin abort: state %s, partitions %v", dt["open-tx"].State, dt["open-tx"].Topics)
	commitErr := open.EndTransaction(ctx, kgo.TryCommit)
	t.Logf("the open producer's commit after the admin abort: %v", commitErr)
	if got := readCommitted(t, addr, 7); strings.Contains(strings.Join(got, ","), "open-tx") {
		t.Fatalf("aborted records came back after the producer's commit: %q", got)
	}
}

func TestErrors(t *testing.T) {
	addr := clitest.Start(t, static).Addr
	createTopic(t, addr)
	ctx := clitest.Ctx(t)
	c, _ := clitest.Common(addr, nil)
	for _, tc := range []struct {
		o    AbortOptions
		want string
	}{
		{AbortOptions{Partition: 0, StartOffset: 1, ProducerID: -1, ProducerEpoch: -1}, "--topic is required"},
		{AbortOptions{Topic: "orders", Partition: -1, StartOffset: 1, ProducerID: -1, ProducerEpoch: -1}, "--partition is required"},
		{AbortOptions{Topic: "orders", Partition: 0, StartOffset: -1, ProducerID: -1, ProducerEpoch: -1}, "say which transaction to abort"},
		{AbortOptions{Topic: "orders", Partition: 0, StartOffset: 3, ProducerID: 5, ProducerEpoch: -1}, "not both"},
		{AbortOptions{Topic: "orders", Partition: 0, StartOffset: -1, ProducerID: 5, ProducerEpoch: -1}, "--producer-id needs --producer-epoch"},
		{AbortOptions{Topic: "nope", Partition: 0, StartOffset: 3, ProducerID: -1, ProducerEpoch: -1}, "topic nope does not exist; create it with"},
		{AbortOptions{Topic: "orders", Partition: 5, StartOffset: 3, ProducerID: -1, ProducerEpoch: -1}, "--partition 5: topic orders has partitions 0 to 1"},
		{AbortOptions{Topic: "orders", Partition: 0, StartOffset: 3, ProducerID: -1, ProducerEpoch: -1}, "no transaction open on orders/0 starts at offset 3"},
		{AbortOptions{Topic: "orders", Partition: 0, StartOffset: -1, ProducerID: 5, ProducerEpoch: 0}, "partition orders/0 does not know producer 5"},
	} {
		tc.o.Common = c
		if err := RunAbort(ctx, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("abort %+v: got %v, want %q", tc.o, err, tc.want)
		}
	}
	if err := RunList(ctx, ListOptions{Common: c, States: []string{"Open"}}); err == nil || !strings.Contains(err.Error(), `--state "Open": want one of Empty, Ongoing`) {
		t.Errorf("list --state Open: %v", err)
	}
	if err := RunProducers(ctx, ProducersOptions{Common: c, Topic: "nope"}); err == nil || !strings.Contains(err.Error(), "topic nope does not exist") {
		t.Errorf("producers nope: %v", err)
	}
	// No transactional producer yet: nothing listed, nothing hanging.
	if got := listJSON(t, addr, ListOptions{}); len(got) != 0 {
		t.Errorf("list on a fresh broker: %+v", got)
	}
	if h := hangingJSON(t, addr, time.Minute); len(h) != 0 {
		t.Errorf("find-hanging on a fresh broker: %+v", h)
	}
}

func TestUnreachable(t *testing.T) {
	addr := clitest.DeadAddr(t)
	c, _ := clitest.Common(addr, nil)
	err := RunList(clitest.Ctx(t), ListOptions{Common: c})
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach broker at "+addr+": ") {
		t.Fatalf("got %v", err)
	}
}

func TestCommandTree(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Example == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(Command())
	run := func(args ...string) (string, error) {
		cmd := Command()
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		var out bytes.Buffer
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.ExecuteContext(clitest.Ctx(t))
		return out.String(), err
	}
	for _, sub := range []string{"list", "describe", "producers", "find-hanging", "abort"} {
		out, err := run(sub, "--help")
		if err != nil || !strings.Contains(out, "Examples:") || !strings.Contains(out, "--brokers") {
			t.Errorf("%s --help: %v\n%s", sub, err, out)
		}
	}
	if out, _ := run("abort", "--help"); !strings.Contains(out, "WARNING") {
		t.Errorf("abort --help has no warning:\n%s", out)
	}
	addr := clitest.Start(t, static).Addr
	if out, err := run("list", "-b", addr, "-o", "json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("list -o json: %v\n%s", err, out)
	}
	if _, err := run("abort", "-b", addr, "--topic", "orders"); err == nil || !strings.Contains(err.Error(), "--partition is required") {
		t.Errorf("abort without --partition: %v", err)
	}
}
