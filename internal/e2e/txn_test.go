package e2e

// Kafka transactions with real franz-go clients: commit and abort visibility
// at both isolation levels, the last stable offset, transactional offset
// commits, fencing by a second producer with the same transactional id, and
// the broker aborting a transaction left open past its timeout.
//
// SLUICE_TXN_KFAKE=1 runs the same tests against franz-go's kfake instead of
// Sluice: a check of the tests themselves against a reference broker.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
)

// txnCleanupIntervalConfig is Kafka's broker config for how often the
// transaction coordinator looks for timed-out transactions (default 10 s).
const txnCleanupIntervalConfig = "transaction.abort.timed.out.transaction.cleanup.interval.ms"

// txnEnv is a broker for the transaction tests: Sluice in-process, or
// kfake with SLUICE_TXN_KFAKE=1.
type txnEnv struct {
	t    *testing.T
	addr string
	// cleanupInterval is how often the broker aborts timed-out
	// transactions, as configured (or its default).
	cleanupInterval time.Duration
	// kfake: the reference broker, not Sluice.
	kfake bool
	// tb and static: the Sluice broker and its configs (nil with kfake).
	tb     *testBroker
	static map[string]string
}

func newTxnEnv(t *testing.T) *txnEnv {
	t.Helper()
	if os.Getenv("SLUICE_TXN_KFAKE") != "" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return &txnEnv{t: t, addr: c.ListenAddrs()[0], cleanupInterval: 100 * time.Millisecond, kfake: true}
	}
	static := map[string]string{"group.initial.rebalance.delay.ms": "0"}
	interval := 10 * time.Second // Kafka's default
	if _, ok := config.BrokerDef(txnCleanupIntervalConfig); ok {
		static[txnCleanupIntervalConfig] = "200"
		interval = 200 * time.Millisecond
	}
	tb := start(t, t.TempDir(), "", static)
	return &txnEnv{t: t, addr: tb.addr, cleanupInterval: interval, tb: tb, static: static}
}

// restart stops the Sluice broker cleanly and opens it again on the same
// directory and address; with kfake it does nothing and reports false.
func (e *txnEnv) restart() bool {
	e.t.Helper()
	if e.tb == nil {
		return false
	}
	e.tb.stop()
	e.tb = start(e.t, e.tb.dir, e.tb.addr, e.static)
	return true
}

func (e *txnEnv) client(opts ...kgo.Opt) *kgo.Client {
	e.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.addr), kgo.MetadataMinAge(50 * time.Millisecond),
		kgo.DisableClientMetrics(), kgo.RetryTimeout(20 * time.Second)}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cl.Close)
	return cl
}

// txnProducer is a transactional producer writing to topic with records
// placed on the partition they name.
func (e *txnEnv) txnProducer(txnID, topic string, opts ...kgo.Opt) *kgo.Client {
	e.t.Helper()
	return e.client(append([]kgo.Opt{kgo.TransactionalID(txnID), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
}

func (e *txnEnv) admin() *kadm.Client { return kadm.NewClient(e.client()) }

func (e *txnEnv) createTopic(name string, partitions int32) {
	e.t.Helper()
	e.createTopicWith(name, partitions, nil)
}

func (e *txnEnv) createTopicWith(name string, partitions int32, configs map[string]*string) {
	e.t.Helper()
	adm := e.admin()
	ctx := ctxT(e.t)
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		e.t.Fatalf("create topic %s: %v", name, err)
	}
	for {
		md, err := adm.Metadata(ctx, name)
		if err == nil {
			if td, ok := md.Topics[name]; ok && td.Err == nil && len(td.Partitions) == int(partitions) {
				return
			}
		}
		if ctx.Err() != nil {
			e.t.Fatalf("topic %s not in metadata with %d partitions (last error %v)", name, partitions, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// produceTxn produces values to partition p of the producer's topic inside
// the current transaction and fails the test on any error.
func produceTxn(t *testing.T, cl *kgo.Client, p int32, values ...string) {
	t.Helper()
	var rs []*kgo.Record
	for _, v := range values {
		rs = append(rs, &kgo.Record{Partition: p, Value: []byte(v)})
	}
	if err := cl.ProduceSync(ctxT(t), rs...).FirstErr(); err != nil {
		t.Fatalf("transactional produce of %v to partition %d: %v", values, p, err)
	}
}

// plainProduce writes values to topic/p with an idempotent, non-transactional
// producer.
func (e *txnEnv) plainProduce(topic string, p int32, values ...string) {
	e.t.Helper()
	cl := e.client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var rs []*kgo.Record
	for _, v := range values {
		rs = append(rs, &kgo.Record{Partition: p, Value: []byte(v)})
	}
	if err := cl.ProduceSync(ctxT(e.t), rs...).FirstErr(); err != nil {
		e.t.Fatalf("produce of %v to %s/%d: %v", values, topic, p, err)
	}
	cl.Close()
}

// seal appends a unique marker record to every partition of topic with a
// non-transactional producer and returns it. A reader that has reached the
// marker on every partition has read everything before it.
func (e *txnEnv) seal(topic string, partitions int32) string {
	e.t.Helper()
	marker := fmt.Sprintf("seal-%d", time.Now().UnixNano())
	for p := int32(0); p < partitions; p++ {
		e.plainProduce(topic, p, marker)
	}
	return marker
}

// readSealed reads every partition of topic from the start at the given
// isolation level until it meets marker on each, and returns the values
// before the marker per partition (other seal markers left out). The
// offsets of the values are returned too.
func (e *txnEnv) readSealed(topic string, partitions int32, marker string, iso kgo.IsolationLevel) (map[int32][]string, map[int32][]int64) {
	e.t.Helper()
	from := map[int32]kgo.Offset{}
	for p := int32(0); p < partitions; p++ {
		from[p] = kgo.NewOffset().AtStart()
	}
	cl := e.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vals := map[int32][]string{}
	offs := map[int32][]int64{}
	sealed := map[int32]bool{}
	for len(sealed) < int(partitions) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			e.t.Fatalf("%s: reading %s (%s) did not reach marker %s on every partition within 30s: reached it on %v; read so far %v",
				e.t.Name(), topic, txnIsoName(iso), marker, sealed, vals)
		}
		fs.EachError(func(tp string, p int32, err error) { e.t.Fatalf("fetch %s/%d (%s): %v", tp, p, txnIsoName(iso), err) })
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			switch {
			case sealed[r.Partition]:
			case v == marker:
				sealed[r.Partition] = true
			case strings.HasPrefix(v, "seal-"):
			default:
				vals[r.Partition] = append(vals[r.Partition], v)
				offs[r.Partition] = append(offs[r.Partition], r.Offset)
			}
		})
	}
	return vals, offs
}

func txnIsoName(iso kgo.IsolationLevel) string {
	if iso == kgo.ReadCommitted() {
		return "read_committed"
	}
	return "read_uncommitted"
}

// txnSeq returns tag-0 .. tag-(n-1).
func txnSeq(tag string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", tag, i)
	}
	return out
}

func endTxn(t *testing.T, cl *kgo.Client, commit kgo.TransactionEndTry) {
	t.Helper()
	if err := cl.EndTransaction(ctxT(t), commit); err != nil {
		t.Fatalf("EndTransaction(commit=%v): %v", bool(commit), err)
	}
}

func beginTxn(t *testing.T, cl *kgo.Client) {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("BeginTransaction: %v", err)
	}
}

// TestTxnCommitAbortVisibility: a committed transaction is seen by both
// isolation levels, an aborted one only by read_uncommitted, and neither
// level sees the control records; the aborted records sit between committed
// ones in the same partitions, so a read_committed fetch must skip them by
// the aborted-transaction list.
func TestTxnCommitAbortVisibility(t *testing.T) {
	e := newTxnEnv(t)
	const topic, parts = "txn-vis", int32(3)
	e.createTopic(topic, parts)
	cl := e.txnProducer("txn-vis-producer", topic)

	want := map[string]map[int32][]string{"committed": {}, "uncommitted": {}}
	txn := func(tag string, commit kgo.TransactionEndTry) {
		beginTxn(t, cl)
		for p := int32(0); p < parts; p++ {
			vs := txnSeq(fmt.Sprintf("%s-p%d", tag, p), 4+int(p))
			produceTxn(t, cl, p, vs...)
			want["uncommitted"][p] = append(want["uncommitted"][p], vs...)
			if commit {
				want["committed"][p] = append(want["committed"][p], vs...)
			}
		}
		endTxn(t, cl, commit)
	}
	txn("c1", kgo.TryCommit)
	txn("a1", kgo.TryAbort)
	e.plainProduce(topic, 1, "plain-1") // a non-transactional record between them
	want["committed"][1] = append(want["committed"][1], "plain-1")
	want["uncommitted"][1] = append(want["uncommitted"][1], "plain-1")
	txn("c2", kgo.TryCommit)
	txn("a2", kgo.TryAbort)
	txn("a3", kgo.TryAbort)
	txn("c3", kgo.TryCommit)

	marker := e.seal(topic, parts)
	for _, iso := range []kgo.IsolationLevel{kgo.ReadCommitted(), kgo.ReadUncommitted()} {
		got, offs := e.readSealed(topic, parts, marker, iso)
		w := want["uncommitted"]
		if iso == kgo.ReadCommitted() {
			w = want["committed"]
		}
		for p := int32(0); p < parts; p++ {
			if !slices.Equal(got[p], w[p]) {
				t.Errorf("%s partition %d: got %v\nwant %v (offsets %v)", txnIsoName(iso), p, got[p], w[p], offs[p])
			}
		}
	}

	// The end offset counts the control records: every transaction left
	// one marker per partition.
	ends, err := e.admin().ListEndOffsets(ctxT(t), topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < parts; p++ {
		o, _ := ends.Lookup(topic, p)
		records := int64(len(want["uncommitted"][p])) + 1 // + the seal marker
		if o.Offset != records+6 {
			t.Errorf("partition %d: end offset %d, want %d (%d records + 6 transaction markers)", p, o.Offset, records+6, records)
		}
	}
}

// listOffsets returns partition p's end offset at read_uncommitted (the high
// watermark) and read_committed (the last stable offset), through kadm.
func (e *txnEnv) listOffsets(topic string, p int32) (hwm, lso int64) {
	e.t.Helper()
	adm := e.admin()
	ctx := ctxT(e.t)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		e.t.Fatalf("ListOffsets read_uncommitted %s: %v", topic, err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = stable.Error()
	}
	if err != nil {
		e.t.Fatalf("ListOffsets read_committed %s: %v", topic, err)
	}
	h, ok1 := ends.Lookup(topic, p)
	l, ok2 := stable.Lookup(topic, p)
	if !ok1 || !ok2 {
		e.t.Fatalf("ListOffsets: no answer for %s/%d", topic, p)
	}
	return h.Offset, l.Offset
}

// txnPollFor reads from cl for d and returns the values it got.
func txnPollFor(t *testing.T, cl *kgo.Client, d time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []string
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("fetch %s/%d: %v", tp, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
	}
	return out
}

// TestTxnLastStableOffset: while a transaction is open, ListOffsets with
// read_committed answers the transaction's first offset and a
// read_committed consumer stops there (also before non-transactional
// records written after it); the commit moves the LSO to the high
// watermark, past the commit marker.
func TestTxnLastStableOffset(t *testing.T) {
	e := newTxnEnv(t)
	const topic = "txn-lso"
	e.createTopic(topic, 1)
	e.plainProduce(topic, 0, txnSeq("before", 5)...) // offsets 0-4

	hwm, lso := e.listOffsets(topic, 0)
	if hwm != 5 || lso != 5 {
		t.Fatalf("no transaction yet: high watermark %d, last stable offset %d; want 5 and 5", hwm, lso)
	}

	cl := e.txnProducer("txn-lso-producer", topic)
	beginTxn(t, cl)
	produceTxn(t, cl, 0, txnSeq("open", 3)...)      // offsets 5-7
	e.plainProduce(topic, 0, txnSeq("after", 2)...) // offsets 8-9
	hwm, lso = e.listOffsets(topic, 0)
	if hwm != 10 || lso != 5 {
		t.Errorf("transaction open from offset 5: high watermark %d, last stable offset %d; want 10 and 5", hwm, lso)
	}

	rc := e.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	got := txnPollFor(t, rc, 1500*time.Millisecond)
	if !slices.Equal(got, txnSeq("before", 5)) {
		t.Errorf("read_committed with a transaction open at offset 5 read %v, want only %v", got, txnSeq("before", 5))
	}

	endTxn(t, cl, kgo.TryCommit) // marker at offset 10
	e.waitOffsets(topic, 0, 11, 11, "after the commit (5+3+2 records and the commit marker)")
	// The same consumer goes on from where it stopped.
	want := append(txnSeq("open", 3), txnSeq("after", 2)...)
	got = nil
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for len(got) < len(want) && ctx.Err() == nil {
		fs := rc.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if !slices.Equal(got, want) {
		t.Errorf("read_committed after the commit read %v, want %v", got, want)
	}

	// An aborted transaction also releases the LSO.
	beginTxn(t, cl)
	produceTxn(t, cl, 0, txnSeq("aborted", 2)...) // offsets 11-12
	if hwm, lso = e.listOffsets(topic, 0); hwm != 13 || lso != 11 {
		t.Errorf("second transaction open from offset 11: high watermark %d, last stable offset %d; want 13 and 11", hwm, lso)
	}
	endTxn(t, cl, kgo.TryAbort) // marker at 13
	e.waitOffsets(topic, 0, 14, 14, "after the abort")
}

// waitOffsets waits until topic/p's high watermark and last stable offset
// are wantHWM and wantLSO. Kafka answers EndTxn once the outcome is decided
// and writes the markers after, so the LSO may lag the answer a little.
func (e *txnEnv) waitOffsets(topic string, p int32, wantHWM, wantLSO int64, when string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hwm, lso := e.listOffsets(topic, p)
		if hwm == wantHWM && lso == wantLSO {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: 10s on, %s/%d has high watermark %d, last stable offset %d; want %d and %d", when, topic, p, hwm, lso, wantHWM, wantLSO)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// topicID returns topic's id from the metadata.
func (e *txnEnv) topicID(topic string) [16]byte {
	e.t.Helper()
	md, err := e.admin().Metadata(ctxT(e.t), topic)
	if err != nil {
		e.t.Fatalf("metadata %s: %v", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		e.t.Fatalf("metadata %s: not found (%v)", topic, td.Err)
	}
	return td.ID
}

// fetchOffset asks the group coordinator for group's committed offset of
// topic/p with a raw OffsetFetch (either request layout, whichever version
// the broker picks); requireStable is KIP-447's flag. It returns the offset
// (-1 for none) and the error of the group or partition.
func (e *txnEnv) fetchOffset(group, topic string, p int32, requireStable bool) (int64, error) {
	e.t.Helper()
	id := e.topicID(topic)
	cl := e.client()
	defer cl.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group // v0-v7
	req.RequireStable = requireStable
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	rt.Partitions = []int32{p}
	req.Topics = append(req.Topics, rt)
	rg := kmsg.NewOffsetFetchRequestGroup() // v8+
	rg.Group = group
	gt := kmsg.NewOffsetFetchRequestGroupTopic()
	gt.Topic, gt.TopicID, gt.Partitions = topic, id, []int32{p}
	rg.Topics = append(rg.Topics, gt)
	req.Groups = append(req.Groups, rg)
	resp, err := req.RequestWith(ctxT(e.t), cl)
	if err != nil {
		e.t.Fatalf("OffsetFetch %s: %v", group, err)
	}
	if resp.Version < 8 {
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return 0, err
		}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if rt.Topic == topic && rp.Partition == p {
					return rp.Offset, kerr.ErrorForCode(rp.ErrorCode)
				}
			}
		}
	}
	for _, g := range resp.Groups {
		if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
			return 0, err
		}
		for _, rt := range g.Topics {
			for _, rp := range rt.Partitions {
				if (rt.Topic == topic || rt.TopicID == id) && rp.Partition == p {
					return rp.Offset, kerr.ErrorForCode(rp.ErrorCode)
				}
			}
		}
	}
	e.t.Fatalf("OffsetFetch v%d %s: no answer for %s/%d: %+v", resp.Version, group, topic, p, resp)
	return 0, nil
}

// txnCommitOffset adds group to cl's open transaction (AddOffsetsToTxn) and
// commits offset for topic/p in it (TxnOffsetCommit), as raw requests with
// the producer's id and epoch.
func txnCommitOffset(t *testing.T, cl *kgo.Client, txnID, group, topic string, topicID [16]byte, p int32, offset int64) {
	t.Helper()
	ctx := ctxT(t)
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		t.Fatalf("ProducerID: %v", err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, id, epoch, group
	for {
		resp, err := add.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("AddOffsetsToTxn: %v", err)
		}
		err = kerr.ErrorForCode(resp.ErrorCode)
		if errors.Is(err, kerr.ConcurrentTransactions) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("AddOffsetsToTxn(%s, producer %d epoch %d, group %s): %v", txnID, id, epoch, group, err)
		}
		break
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = txnID, group, id, epoch
	req.Generation = -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = topic, topicID // v0-v5, v6+
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = p, offset, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("TxnOffsetCommit: %v", err)
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("TxnOffsetCommit %s/%d offset %d: %v", rt.Topic, rp.Partition, offset, err)
			}
		}
	}
}

// TestTxnOffsetCommit: offsets committed in a transaction are invisible to
// OffsetFetch until the commit (with require_stable, OffsetFetch answers
// UNSTABLE_OFFSET_COMMIT meanwhile), visible after it, and discarded by an
// abort.
func TestTxnOffsetCommit(t *testing.T) {
	e := newTxnEnv(t)
	const in, out, group, txnID = "txn-oc-in", "txn-oc-out", "txn-oc-group", "txn-oc-producer"
	e.createTopic(in, 1)
	e.createTopic(out, 1)
	cl := e.txnProducer(txnID, out)
	inID := e.topicID(in)

	check := func(when string, wantOffset int64, wantUnstable bool) {
		t.Helper()
		off, err := e.fetchOffset(group, in, 0, false)
		if wantOffset == -1 && errors.Is(err, kerr.GroupIDNotFound) {
			// Kafka answers offset -1 for a group it does not know;
			// GROUP_ID_NOT_FOUND (kfake, KIP-848 era) says the same.
			off, err = -1, nil
		}
		if err != nil || off != wantOffset {
			t.Errorf("%s: OffsetFetch (require_stable=false) answered offset %d, error %v; want offset %d, no error", when, off, err, wantOffset)
		}
		off, err = e.fetchOffset(group, in, 0, true)
		switch {
		case wantUnstable && wantOffset == -1 && e.kfake && errors.Is(err, kerr.GroupIDNotFound):
			// kfake's answer while the group has only pending
			// offsets; Kafka creates the group on TxnOffsetCommit.
		case wantUnstable && !errors.Is(err, kerr.UnstableOffsetCommit):
			t.Errorf("%s: OffsetFetch (require_stable=true) answered offset %d, error %v; want UNSTABLE_OFFSET_COMMIT", when, off, err)
		case !wantUnstable && wantOffset == -1 && errors.Is(err, kerr.GroupIDNotFound):
		case !wantUnstable && (err != nil || off != wantOffset):
			t.Errorf("%s: OffsetFetch (require_stable=true) answered offset %d, error %v; want offset %d, no error", when, off, err, wantOffset)
		}
	}

	// settled waits until OffsetFetch with require_stable stops answering
	// UNSTABLE_OFFSET_COMMIT: the coordinator applies a transaction's
	// offsets when its marker is written, just after EndTxn is answered.
	settled := func(when string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := e.fetchOffset(group, in, 0, true)
			if !errors.Is(err, kerr.UnstableOffsetCommit) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: OffsetFetch (require_stable=true) still answers UNSTABLE_OFFSET_COMMIT 10s after the transaction ended", when)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	check("before any commit", -1, false)

	beginTxn(t, cl)
	produceTxn(t, cl, 0, "out-1")
	txnCommitOffset(t, cl, txnID, group, in, inID, 0, 42)
	check("transaction with offset 42 open", -1, true)
	endTxn(t, cl, kgo.TryCommit)
	settled("after the commit")
	check("after the commit", 42, false)

	beginTxn(t, cl)
	produceTxn(t, cl, 0, "out-2")
	txnCommitOffset(t, cl, txnID, group, in, inID, 0, 99)
	check("second transaction with offset 99 open", 42, true)
	endTxn(t, cl, kgo.TryAbort)
	settled("after the abort")
	check("after the abort", 42, false)

	// kadm (OffsetFetch as kgo sends it) agrees.
	resps, err := e.admin().FetchOffsets(ctxT(t), group)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatalf("kadm FetchOffsets: %v", err)
	}
	if o, ok := resps.Lookup(in, 0); !ok || o.At != 42 {
		t.Errorf("kadm FetchOffsets %s: %s/0 at %+v (found %v), want 42", group, in, o, ok)
	}
}

// txnIsFenced reports whether err is how a broker tells a producer that a newer
// one with its transactional id took over (or its epoch was bumped).
func txnIsFenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch)
}

// TestTxnFencing: a second producer with the same transactional id fences
// the first: its open transaction is aborted, its next produce fails with
// PRODUCER_FENCED or INVALID_PRODUCER_EPOCH, and so does an EndTxn of a
// fenced producer; only the newer producers' committed transactions are
// visible to read_committed.
func TestTxnFencing(t *testing.T) {
	e := newTxnEnv(t)
	const topic, txnID = "txn-fence", "txn-fence-id"
	e.createTopic(topic, 2)
	p1 := e.txnProducer(txnID, topic)
	beginTxn(t, p1)
	produceTxn(t, p1, 0, "p1-a")
	produceTxn(t, p1, 1, "p1-b")
	id1, ep1, _ := p1.ProducerID(ctxT(t))

	p2 := e.txnProducer(txnID, topic)
	id2, ep2, err := p2.ProducerID(ctxT(t)) // InitProducerId: fences p1
	if err != nil {
		t.Fatalf("second producer's InitProducerId: %v", err)
	}
	if id2 == id1 && ep2 <= ep1 {
		t.Errorf("second producer got producer id %d epoch %d, the first had %d epoch %d: the epoch must grow", id2, ep2, id1, ep1)
	}
	t.Logf("first producer id %d epoch %d; second id %d epoch %d", id1, ep1, id2, ep2)

	// p1 produces again to a partition already in its transaction: the
	// partition's leader must refuse the old epoch.
	err = p1.ProduceSync(ctxT(t), &kgo.Record{Partition: 0, Value: []byte("p1-c")}).FirstErr()
	if !txnIsFenced(err) {
		t.Errorf("fenced producer's produce: got error %v, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", err)
	}
	err = p1.EndTransaction(ctxT(t), kgo.TryCommit)
	if err == nil {
		t.Errorf("fenced producer's commit succeeded, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH")
	} else if !txnIsFenced(err) {
		// kgo may report the fencing it saw on the produce.
		t.Logf("fenced producer's commit failed with %v", err)
	}

	beginTxn(t, p2)
	produceTxn(t, p2, 0, "p2-a")
	produceTxn(t, p2, 1, "p2-b")
	endTxn(t, p2, kgo.TryCommit)

	// Fenced with nothing produced since: the EndTxn itself must be
	// refused (kgo sends it, having seen no error).
	beginTxn(t, p2)
	produceTxn(t, p2, 0, "p2-open")
	p3 := e.txnProducer(txnID, topic)
	if _, _, err := p3.ProducerID(ctxT(t)); err != nil {
		t.Fatalf("third producer's InitProducerId: %v", err)
	}
	// (kfake answers INVALID_TXN_STATE; Kafka PRODUCER_FENCED.)
	if err := p2.EndTransaction(ctxT(t), kgo.TryCommit); !txnIsFenced(err) && !(e.kfake && errors.Is(err, kerr.InvalidTxnState)) {
		t.Errorf("fenced producer's EndTxn(commit): got error %v, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", err)
	}
	beginTxn(t, p3)
	produceTxn(t, p3, 0, "p3-a")
	endTxn(t, p3, kgo.TryCommit)

	marker := e.seal(topic, 2)
	rc, _ := e.readSealed(topic, 2, marker, kgo.ReadCommitted())
	if !slices.Equal(rc[0], []string{"p2-a", "p3-a"}) || !slices.Equal(rc[1], []string{"p2-b"}) {
		t.Errorf("read_committed: got %v, want only the committed transactions' records [p2-a p3-a] [p2-b]", rc)
	}
	ru, _ := e.readSealed(topic, 2, marker, kgo.ReadUncommitted())
	if !slices.Contains(ru[0], "p2-open") {
		t.Errorf("read_uncommitted partition 0: %v lacks p2-open, which the fenced producer wrote before it was fenced", ru[0])
	}
	for p, v := range map[int32]string{0: "p1-a", 1: "p1-b"} {
		if !slices.Contains(ru[p], v) {
			t.Errorf("read_uncommitted partition %d: %v lacks %s, which the fenced producer wrote before it was fenced", p, ru[p], v)
		}
	}
	if slices.Contains(ru[0], "p1-c") {
		t.Errorf("read_uncommitted partition 0 holds p1-c, produced with the fenced epoch: %v", ru[0])
	}
}

// TestTxnTimeout: a transaction left open past its transaction.timeout.ms
// is aborted by the broker: the LSO moves past it, read_committed never
// sees its records (read_uncommitted does), and the producer's late commit
// fails.
func TestTxnTimeout(t *testing.T) {
	e := newTxnEnv(t)
	const topic, txnID = "txn-timeout", "txn-timeout-id"
	const timeout = 2 * time.Second
	e.createTopic(topic, 1)
	p1 := e.txnProducer(txnID, topic, kgo.TransactionTimeout(timeout))
	beginTxn(t, p1)
	produceTxn(t, p1, 0, "late-1", "late-2")
	opened := time.Now()
	if hwm, lso := e.listOffsets(topic, 0); hwm != 2 || lso != 0 {
		t.Fatalf("transaction open: high watermark %d, last stable offset %d; want 2 and 0", hwm, lso)
	}

	// The broker checks every cleanupInterval: give it the timeout, an
	// interval and a generous margin for a loaded machine.
	limit := timeout + e.cleanupInterval + 15*time.Second
	var hwm, lso int64
	for {
		hwm, lso = e.listOffsets(topic, 0)
		if hwm == 3 && lso == 3 {
			break
		}
		if time.Since(opened) > limit {
			t.Fatalf("%v after a transaction with transaction.timeout.ms=%d opened (cleanup interval %v): high watermark %d, last stable offset %d; want 3 and 3 (2 records and an abort marker)",
				time.Since(opened).Round(time.Millisecond), timeout.Milliseconds(), e.cleanupInterval, hwm, lso)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(opened)
	if took < timeout {
		t.Errorf("the transaction ended %v after it opened, before its timeout of %v", took, timeout)
	}
	t.Logf("broker ended the transaction %v after it opened (timeout %v)", took.Round(time.Millisecond), timeout)

	if err := p1.EndTransaction(ctxT(t), kgo.TryCommit); err == nil {
		t.Errorf("commit of a transaction the broker aborted on timeout succeeded")
	} else {
		t.Logf("late commit failed as it should: %v", err)
	}

	e.plainProduce(topic, 0, "plain")
	marker := e.seal(topic, 1)
	rc, _ := e.readSealed(topic, 1, marker, kgo.ReadCommitted())
	if !slices.Equal(rc[0], []string{"plain"}) {
		t.Errorf("read_committed: got %v, want [plain] (the timed-out transaction's records are aborted)", rc[0])
	}
	ru, _ := e.readSealed(topic, 1, marker, kgo.ReadUncommitted())
	if !slices.Equal(ru[0], []string{"late-1", "late-2", "plain"}) {
		t.Errorf("read_uncommitted: got %v, want [late-1 late-2 plain]", ru[0])
	}

	// The transactional id is usable again: a new producer commits.
	p2 := e.txnProducer(txnID, topic, kgo.TransactionTimeout(timeout))
	beginTxn(t, p2)
	produceTxn(t, p2, 0, "again")
	endTxn(t, p2, kgo.TryCommit)
	marker = e.seal(topic, 1)
	rc, _ = e.readSealed(topic, 1, marker, kgo.ReadCommitted())
	if !slices.Equal(rc[0], []string{"plain", "again"}) {
		t.Errorf("read_committed after a new producer's commit: got %v, want [plain again]", rc[0])
	}
}

// TestTxnInterleaved: two producers' transactions interleave on one
// partition. The LSO is the first offset of the earliest open transaction,
// whoever committed meanwhile, and read_committed drops exactly the aborted
// producer's records (the aborted-transaction list is per producer id, not
// an offset range).
func TestTxnInterleaved(t *testing.T) {
	e := newTxnEnv(t)
	const topic = "txn-il"
	e.createTopic(topic, 1)
	a := e.txnProducer("txn-il-a", topic)
	b := e.txnProducer("txn-il-b", topic)

	beginTxn(t, a)
	beginTxn(t, b)
	produceTxn(t, a, 0, "a1") // 0
	produceTxn(t, b, 0, "b1") // 1
	produceTxn(t, a, 0, "a2") // 2
	produceTxn(t, b, 0, "b2") // 3
	e.waitOffsets(topic, 0, 4, 0, "two transactions open from offsets 0 and 1")
	endTxn(t, a, kgo.TryCommit) // marker at 4
	e.waitOffsets(topic, 0, 5, 1, "the first transaction committed, the second open from offset 1")

	rc := e.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	if got := txnPollFor(t, rc, 1500*time.Millisecond); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("read_committed below the last stable offset 1 read %v, want [a1]", got)
	}
	rc.Close()

	endTxn(t, b, kgo.TryAbort) // marker at 5
	e.waitOffsets(topic, 0, 6, 6, "both transactions ended")

	// The other way round: the aborted one opens first.
	beginTxn(t, b)
	beginTxn(t, a)
	produceTxn(t, b, 0, "b3")   // 6
	produceTxn(t, a, 0, "a3")   // 7
	produceTxn(t, b, 0, "b4")   // 8
	endTxn(t, b, kgo.TryCommit) // marker at 9
	e.waitOffsets(topic, 0, 10, 7, "b's transaction committed, a's open from offset 7")
	endTxn(t, a, kgo.TryAbort) // marker at 10
	e.waitOffsets(topic, 0, 11, 11, "both transactions ended")

	marker := e.seal(topic, 1)
	got, _ := e.readSealed(topic, 1, marker, kgo.ReadCommitted())
	if want := []string{"a1", "a2", "b3", "b4"}; !slices.Equal(got[0], want) {
		t.Errorf("read_committed read %v, want %v", got[0], want)
	}
	got, _ = e.readSealed(topic, 1, marker, kgo.ReadUncommitted())
	if want := []string{"a1", "b1", "a2", "b2", "b3", "a3", "b4"}; !slices.Equal(got[0], want) {
		t.Errorf("read_uncommitted read %v, want %v", got[0], want)
	}
}

// TestTxnAbortAcrossSegments: an aborted transaction whose records span
// several segments (segment.bytes=4096), with a non-transactional record in
// the middle of it, between two committed ones. read_committed must drop the
// aborted records in every segment, not only in the one holding the abort
// marker; and the same after a clean restart, when the aborted transactions
// come from the saved indexes.
func TestTxnAbortAcrossSegments(t *testing.T) {
	e := newTxnEnv(t)
	const topic = "txn-seg"
	segBytes := "4096"
	e.createTopicWith(topic, 1, map[string]*string{"segment.bytes": &segBytes})
	cl := e.txnProducer("txn-seg-producer", topic, kgo.ProducerBatchCompression(kgo.NoCompression()))
	pad := strings.Repeat("x", 400) // uncompressed: some 500 bytes a batch
	vals := func(tag string, from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprintf("%s-%02d|%s", tag, i, pad))
		}
		return out
	}
	// One record per produce request: one batch each, so that segments
	// roll inside the transactions.
	each := func(vs []string) {
		for _, v := range vs {
			produceTxn(t, cl, 0, v)
		}
	}
	beginTxn(t, cl)
	each(vals("c1", 0, 15))
	endTxn(t, cl, kgo.TryCommit)
	beginTxn(t, cl)
	each(vals("ab", 0, 20))
	e.plainProduce(topic, 0, "plain-mid")
	each(vals("ab", 20, 40))
	endTxn(t, cl, kgo.TryAbort)
	beginTxn(t, cl)
	each(vals("c2", 0, 15))
	endTxn(t, cl, kgo.TryCommit)

	wantRC := append(append(vals("c1", 0, 15), "plain-mid"), vals("c2", 0, 15)...)
	wantRU := append(append(append(append(vals("c1", 0, 15), vals("ab", 0, 20)...), "plain-mid"), vals("ab", 20, 40)...), vals("c2", 0, 15)...)
	short := func(vs []string) []string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i], _, _ = strings.Cut(v, "|")
		}
		return out
	}
	check := func(when string) {
		t.Helper()
		marker := e.seal(topic, 1)
		rc, _ := e.readSealed(topic, 1, marker, kgo.ReadCommitted())
		if !slices.Equal(rc[0], wantRC) {
			t.Errorf("%s: read_committed read %v\nwant %v", when, short(rc[0]), short(wantRC))
		}
		ru, _ := e.readSealed(topic, 1, marker, kgo.ReadUncommitted())
		if !slices.Equal(ru[0], wantRU) {
			t.Errorf("%s: read_uncommitted read %v\nwant %v", when, short(ru[0]), short(wantRU))
		}
		// A read_committed consumer starting inside the aborted
		// transaction, a few segments past its first record.
		from := int64(15 + 1 + 25) // c1, its marker, 25 records into the aborted transaction
		mid := e.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
		defer mid.Close()
		want := vals("c2", 0, 15)
		var got []string
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		for !slices.Contains(got, marker) && ctx.Err() == nil {
			mid.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		}
		if i := slices.Index(got, marker); i < 0 || !slices.Equal(slices.DeleteFunc(got[:i], func(v string) bool { return strings.HasPrefix(v, "seal-") }), want) {
			t.Errorf("%s: read_committed from offset %d (inside the aborted transaction) read %v, want %v then the seal marker", when, from, short(got), short(want))
		}
	}
	if e.tb != nil { // the test's premise: the transactions span segments
		segs, _ := filepath.Glob(filepath.Join(e.tb.dir, "*", topic+"-0", "*.log"))
		if more, _ := filepath.Glob(filepath.Join(e.tb.dir, topic+"-0", "*.log")); len(more) > len(segs) {
			segs = more
		}
		if len(segs) < 5 {
			t.Fatalf("partition %s-0 has %d segment files (%v), want several: the test needs transactions spanning segments", topic, len(segs), segs)
		}
		t.Logf("%d segments", len(segs))
	}
	check("before a restart")
	if e.restart() {
		check("after a clean restart")
	}
}

// TestTxnCompaction: the log cleaner and transactions (Sluice only: it
// runs the cleaner with CleanNow). An aborted record is not the latest
// value of its key, so a committed value it follows must survive cleaning;
// a transaction still open holds the cleaner at the last stable offset, so
// its records cannot shadow committed values before they are decided.
func TestTxnCompaction(t *testing.T) {
	if os.Getenv("SLUICE_TXN_KFAKE") != "" {
		t.Skip("kfake has no log cleaner to drive")
	}
	e := newTxnEnv(t)
	const topic = "txn-compact"
	compact, segBytes := "compact", "2048"
	e.createTopicWith(topic, 1, map[string]*string{"cleanup.policy": &compact, "segment.bytes": &segBytes})
	txn := e.txnProducer("txn-compact-producer", topic, kgo.ProducerBatchCompression(kgo.NoCompression()))
	plain := e.client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	pad := strings.Repeat("p", 300)
	put := func(cl *kgo.Client, k, v string) {
		t.Helper()
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Partition: 0, Key: []byte(k), Value: []byte(v + "|" + pad)}).FirstErr(); err != nil {
			t.Fatalf("produce %s=%s: %v", k, v, err)
		}
	}
	filler := func(tag string, n int) { // other keys, rolling segments
		for i := 0; i < n; i++ {
			put(plain, fmt.Sprintf("f%d", i%3), tag)
		}
	}
	txnDo := func(commit kgo.TransactionEndTry, kvs ...string) {
		t.Helper()
		beginTxn(t, txn)
		for i := 0; i < len(kvs); i += 2 {
			put(txn, kvs[i], kvs[i+1])
		}
		endTxn(t, txn, commit)
	}
	txnDo(kgo.TryCommit, "k1", "v1", "k2", "v1")
	txnDo(kgo.TryAbort, "k1", "ABORTED", "k3", "ABORTED")
	put(plain, "k2", "v2")
	// Open while the cleaner runs: k1 and k2 written, not decided.
	beginTxn(t, txn)
	put(txn, "k1", "OPEN")
	put(txn, "k2", "OPEN")
	filler("a", 30)
	if err := e.tb.b.CleanNow(ctxT(t)); err != nil {
		t.Fatalf("cleaning with a transaction open: %v", err)
	}
	endTxn(t, txn, kgo.TryAbort)
	filler("b", 30)
	if err := e.tb.b.CleanNow(ctxT(t)); err != nil {
		t.Fatalf("cleaning: %v", err)
	}

	// The latest committed value of each key, read_committed.
	marker := fmt.Sprintf("seal-%d", time.Now().UnixNano())
	put(plain, "seal", marker)
	cl := e.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	ctx := ctxT(t)
	latest := map[string]string{}
	var all []string
	for latest["seal"] != marker {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed did not reach the seal marker: latest %v", latest)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			v, _, _ := strings.Cut(string(r.Value), "|")
			latest[string(r.Key)] = v
			all = append(all, fmt.Sprintf("%d:%s=%s", r.Offset, r.Key, v))
		})
	}
	want := map[string]string{"k1": "v1", "k2": "v2", "f0": "b", "f1": "b", "f2": "b", "seal": marker}
	for k, v := range want {
		if latest[k] != v {
			t.Errorf("after cleaning, read_committed's latest %s is %q, want %q", k, latest[k], v)
		}
	}
	for k, v := range latest {
		if _, ok := want[k]; !ok {
			t.Errorf("after cleaning, read_committed reads key %s=%q, which only aborted transactions wrote", k, v)
		}
	}
	if t.Failed() {
		t.Logf("read_committed read %d records: %v", len(all), all)
	}
	// The premise: the cleaner did remove records (68 were written).
	if len(all) > 50 {
		t.Errorf("read_committed read %d of the 68 records written: the cleaner removed (almost) nothing, so the test checked nothing", len(all))
	}
	t.Logf("read_committed read %d of the 68 records written after cleaning", len(all))
}
