package mirror

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/benchref"
	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/config"
)

// endValue is the value of the last record produced to each partition in
// these tests: a reader is done with a partition once it has read it.
const endValue = "end"

// readToEnd reads topic from the start with the isolation level asked for
// until every partition of parts has given its endValue record.
func readToEnd(t testing.TB, addr, topic string, parts int32, committed bool) map[int32][]*kgo.Record {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMaxAge(200 * time.Millisecond), kgo.MetadataMinAge(100 * time.Millisecond)}
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := clitest.Ctx(t)
	out := map[int32][]*kgo.Record{}
	done := map[int32]bool{}
	for int32(len(done)) < parts {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s on %s: partitions %v read to their end, want %d", topic, addr, done, parts)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], r)
			if string(r.Value) == endValue {
				done[r.Partition] = true
			}
		})
	}
	return out
}

// sameAtSameOffsets fails unless dst holds src's records at their
// offsets, with their keys, values, headers and timestamps.
func sameAtSameOffsets(t testing.TB, what string, src, dst map[int32][]*kgo.Record) {
	t.Helper()
	if len(src) != len(dst) {
		t.Fatalf("%s: %d partitions on the source, %d on the target", what, len(src), len(dst))
	}
	for p, want := range src {
		got := dst[p]
		if len(got) != len(want) {
			t.Fatalf("%s[%d]: %d records on the target, %d on the source", what, p, len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			if g.Offset != w.Offset || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) ||
				(g.Value == nil) != (w.Value == nil) || !g.Timestamp.Equal(w.Timestamp) ||
				!slices.EqualFunc(g.Headers, w.Headers, func(a, b kgo.RecordHeader) bool {
					return a.Key == b.Key && bytes.Equal(a.Value, b.Value)
				}) {
				t.Fatalf("%s[%d] record %d: target @%d key %q value %q ts %v headers %v; source @%d key %q value %q ts %v headers %v",
					what, p, i, g.Offset, g.Key, g.Value, g.Timestamp, g.Headers, w.Offset, w.Key, w.Value, w.Timestamp, w.Headers)
			}
		}
	}
}

// waitEnds waits until the target's high watermarks of topic are the
// source's.
func waitEnds(t testing.TB, a, b *cluster, topic string) map[int32]int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The target's errors are retried: its leaders may be moving.
		want := a.ends(t, topic)
		l, err := b.adm.ListEndOffsets(clitest.Ctx(t), topic)
		got := map[int32]int64{}
		if err == nil {
			l.Each(func(o kadm.ListedOffset) { got[o.Partition] = o.Offset })
			if fmt.Sprint(want) == fmt.Sprint(got) {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: target ends %v (%v), source ends %v", topic, got, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// compactedWithGaps fills a compacted topic of one partition until its
// cleaner has removed records (the broker needs a short
// log.cleaner.backoff.ms): its offsets have gaps.
func compactedWithGaps(t testing.TB, c *cluster, topic string) {
	t.Helper()
	s := func(v string) *string { return &v }
	c.create(t, topic, 1, map[string]*string{"cleanup.policy": s("compact"), "segment.bytes": s("1024"),
		"min.cleanable.dirty.ratio": s("0.01"), "delete.retention.ms": s("0")})
	base := time.UnixMilli(1_700_000_000_000)
	for i := range 300 {
		c.produce(t, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i%10)), Value: []byte(fmt.Sprintf("v%d", i)),
			Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}}, Timestamp: base.Add(time.Duration(i) * time.Millisecond)})
	}
	c.produce(t, &kgo.Record{Topic: topic, Key: []byte(endValue), Value: []byte(endValue), Timestamp: base.Add(time.Hour)})
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := len(readToEnd(t, c.addr, topic, 1, false)[0])
		if int64(n) < c.ends(t, topic)[0]-50 {
			return // compacted
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d records of %d after 30 s: not compacted", topic, n, c.ends(t, topic)[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// transactions writes to topic's partitions: plain records, a committed
// transaction, an aborted one, another committed one, and the end record
// (plain) of each partition when end is set.
func transactions(t testing.TB, c *cluster, topic string, parts int32, id string, end bool) {
	t.Helper()
	ctx := clitest.Ctx(t)
	tx, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	base := time.UnixMilli(1_700_000_000_000)
	batch := func(tag string) []*kgo.Record {
		var recs []*kgo.Record
		for p := range parts {
			for i := range 5 {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("%s-%d", tag, i)),
					Value: []byte(fmt.Sprintf("%s-%d-%d", tag, p, i)), Headers: []kgo.RecordHeader{{Key: "tag", Value: []byte(tag)}},
					Timestamp: base.Add(time.Duration(i) * time.Second)})
			}
		}
		return recs
	}
	c.produce(t, batch("plain")...)
	for _, step := range []struct {
		tag    string
		commit kgo.TransactionEndTry
	}{{"committed", kgo.TryCommit}, {"aborted", kgo.TryAbort}, {"again", kgo.TryCommit}} {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := tx.ProduceSync(ctx, batch(step.tag)...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := tx.EndTransaction(ctx, step.commit); err != nil {
			t.Fatal(err)
		}
	}
	if end {
		var recs []*kgo.Record
		for p := range parts {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(endValue), Value: []byte(endValue)})
		}
		c.produce(t, recs...)
	}
}

// TestMirrorPreservesOffsets mirrors, keeping offsets, a compacted topic
// after cleaning, and a topic with deleted records and committed and
// aborted transactions, written before and while the mirror runs: every
// record is at its source offset on the target, read_committed and
// read_uncommitted readers see the same, consumer group offsets are copied
// as they are and a consumer moving over resumes exactly; the copies take
// no other producer.
func TestMirrorPreservesOffsets(t *testing.T) {
	a := connect(t, clitest.Start(t, map[string]string{"group.initial.rebalance.delay.ms": "0", "log.cleaner.backoff.ms": "50"}).Addr)
	b := connect(t, startBroker(t))
	compactedWithGaps(t, a, "ledger")
	a.create(t, "payments", 2, nil)
	transactions(t, a, "payments", 2, "tx1", false)
	// A log-start gap: the first records of partition 0 are deleted.
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: "payments", Partition: 0, At: 3})
	if resp, err := a.adm.DeleteRecords(clitest.Ctx(t), del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}

	m, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "ledger|payments",
		PreserveOffsets: true, CheckpointInterval: 100 * time.Millisecond})
	transactions(t, a, "payments", 2, "tx2", true) // while the mirror runs

	for _, topic := range []struct {
		name  string
		parts int32
	}{{"ledger", 1}, {"payments", 2}} {
		ends := waitEnds(t, a, b, topic.name)
		for _, committed := range []bool{false, true} {
			what := fmt.Sprintf("%s (read_committed %v)", topic.name, committed)
			sameAtSameOffsets(t, what, readToEnd(t, a.addr, topic.name, topic.parts, committed), readToEnd(t, b.addr, topic.name, topic.parts, committed))
		}
		t.Logf("%s: same records at the same offsets, ends %v", topic.name, ends)
	}
	starts := func(c *cluster) string {
		l, err := c.adm.ListStartOffsets(clitest.Ctx(t), "payments")
		if err != nil {
			t.Fatal(err)
		}
		out := map[int32]int64{}
		l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		return fmt.Sprint(out)
	}
	if s, d := starts(a), starts(b); s != d {
		t.Fatalf("payments log start offsets: source %s, target %s", s, d)
	}
	src := readToEnd(t, a.addr, "payments", 2, true)
	if src[0][0].Offset != 3 {
		t.Fatalf("payments[0] starts at %d on the source, want 3 (after DeleteRecords)", src[0][0].Offset)
	}

	// A group's offsets, at a record after the aborted transaction and at
	// one inside the first committed transaction, are copied as they are.
	group := "readers"
	at := map[int32]int64{0: src[0][len(src[0])/2].Offset, 1: src[1][7].Offset}
	offs := kadm.Offsets{}
	for p, o := range at {
		offs.Add(kadm.Offset{Topic: "payments", Partition: p, At: o, LeaderEpoch: -1})
	}
	if resp, err := a.adm.CommitOffsets(clitest.Ctx(t), group, offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := b.adm.FetchOffsets(clitest.Ctx(t), group)
		ok := err == nil
		for p, o := range at {
			c, found := got.Lookup("payments", p)
			ok = ok && found && c.At == o
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s on the target: %v (%v), want %v", group, got, err, at)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The group's consumer moves to the target and resumes exactly there.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics("payments"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	first := map[int32]*kgo.Record{}
	for len(first) < 2 {
		fs := cl.PollFetches(clitest.Ctx(t))
		if err := clitest.Ctx(t).Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if first[r.Partition] == nil {
				first[r.Partition] = r
			}
		})
	}
	for p, r := range first {
		var want *kgo.Record
		for _, s := range src[p] {
			if s.Offset == at[p] {
				want = s
			}
		}
		if r.Offset != at[p] || want == nil || !bytes.Equal(r.Value, want.Value) {
			t.Fatalf("payments[%d]: the moved consumer resumed at %d (%q), want %d (%v)", p, r.Offset, r.Value, at[p], want)
		}
	}

	// Nothing but the mirror writes to a copy; other topics take anyone.
	err = b.cl.ProduceSync(clitest.Ctx(t), &kgo.Record{Topic: "payments", Partition: 0, Value: []byte("stray")}).FirstErr()
	if !errors.Is(err, kerr.PolicyViolation) {
		t.Fatalf("a producer to the copy: %v, want POLICY_VIOLATION", err)
	}
	b.create(t, "plain", 1, nil)
	b.produce(t, &kgo.Record{Topic: "plain", Value: []byte("x")})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := metric(t, m, "sluice_mirror_records_total", "topic=payments"); n == 0 {
		t.Fatal("sluice_mirror_records_total{topic=payments} is 0")
	}
}

// rawProduce sends batches to partition 0 of topic on c's broker as
// client id, and returns the partition's answer.
func rawProduce(t testing.TB, addr, id, topic string, batches []byte) (int64, error) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ClientID(id), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	b, topicID, err := leader(clitest.Ctx(t), adm, cl, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic, topicID
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = 0, batches
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := b.Request(clitest.Ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	sp := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0]
	return sp.BaseOffset, kerr.ErrorForCode(sp.ErrorCode)
}

// withBase returns a copy of batch with its base offset set (not covered
// by the CRC).
func withBase(batch []byte, base int64) []byte {
	out := slices.Clone(batch)
	for i := range 8 {
		out[i] = byte(base >> (56 - 8*i))
	}
	return out
}

// TestMirrorTopicProduce is the broker's side of a copy, by raw produce
// requests: batches keep their offsets, gaps included; a batch already
// there is answered as a success; one overlapping the log end is refused,
// and so is any producer but the mirror.
func TestMirrorTopicProduce(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	if preserveClientID != config.MirrorClientID {
		t.Fatalf("the mirror's client id %q is not the one the broker takes on copies, %q", preserveClientID, config.MirrorClientID)
	}
	a.create(t, "src", 1, nil)
	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, &kgo.Record{Topic: "src", Value: []byte(fmt.Sprint(i))})
	}
	a.produce(t, recs...) // one batch, offsets 0-4
	srcBroker, srcID, err := leader(clitest.Ctx(t), a.adm, a.cl, "src", 0)
	if err != nil {
		t.Fatal(err)
	}
	m := &Mirror{}
	f, _, _, err := m.fetchBatches(clitest.Ctx(t), srcBroker, "src", srcID, 0, 0)
	if err != nil || f.base != 0 || f.last != 4 {
		t.Fatalf("fetch: %+v %v", f, err)
	}
	batch := f.raw
	src := "source-cluster"
	b.create(t, "copy", 1, map[string]*string{MirrorSourceConfig: &src})

	for _, step := range []struct {
		name  string
		id    string
		base  int64
		want  error
		at    int64
		check bool
	}{
		{"first", preserveClientID, 0, nil, 0, true},
		{"the same again", preserveClientID, 0, nil, 0, false},
		{"next", preserveClientID, 5, nil, 5, true},
		{"past a gap", preserveClientID, 100, nil, 100, true},
		{"below the end", preserveClientID, 7, nil, 7, false},
		{"overlapping the end", preserveClientID, 102, kerr.InvalidRecord, -1, false},
		{"not the mirror", "someone", 105, kerr.PolicyViolation, -1, false},
		{"the translating mirror", clientID, 105, kerr.PolicyViolation, -1, false},
		{"no client id", "", 105, kerr.PolicyViolation, -1, false},
	} {
		got, err := rawProduce(t, b.addr, step.id, "copy", withBase(batch, step.base))
		if !errors.Is(err, step.want) || (step.want == nil && got != step.at) {
			t.Fatalf("%s: base offset %d, %v; want %d, %v", step.name, got, err, step.at, step.want)
		}
	}
	var offsets []int64
	for _, r := range readToEndCount(t, b.addr, "copy", 15) {
		offsets = append(offsets, r.Offset)
	}
	want := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 101, 102, 103, 104}
	if !slices.Equal(offsets, want) {
		t.Fatalf("offsets on the copy %v, want %v", offsets, want)
	}
	if e := b.ends(t, "copy")[0]; e != 105 {
		t.Fatalf("the copy ends at %d, want 105", e)
	}
}

// readToEndCount reads n records of partition 0 of topic.
func readToEndCount(t testing.TB, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	c := &cluster{addr: addr}
	return c.read(t, topic, n)[0]
}

// childPreserveEnv makes TestMirrorProcess keep offsets.
const childPreserveEnv = "SLUICE_MIRROR_TEST_PRESERVE"

// TestMirrorPreserveCrashRestart SIGKILLs an offset-preserving mirror
// process mid-stream and runs another: the copy ends as the source does,
// every record at its offset, none twice (the broker passes over the
// batches the dead mirror had sent and the new one sends again).
func TestMirrorPreserveCrashRestart(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "stream", 3, nil)
	more := make(chan struct{}) // records go on until after the restart
	wait := streamRecords(t, a, "stream", 3, 3000, 5*time.Millisecond, more)

	child := startMirrorChild(t, a, b, childPreserveEnv+"=1")
	deadline := time.Now().Add(30 * time.Second)
	for sum(b.ends(t, "stream")) < 1500 {
		if time.Now().After(deadline) {
			t.Fatalf("the mirror process did not copy 1500 records within 30 s:\n%s", child.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	child.kill()
	atKill := b.ends(t, "stream")

	m, _ := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "stream", PreserveOffsets: true})
	for metric(t, m, "sluice_mirror_records_total", "topic=stream") < 100 && time.Now().Before(deadline.Add(30*time.Second)) {
		time.Sleep(5 * time.Millisecond)
	}
	close(more)
	produced := wait()
	total := 0
	for _, rs := range produced {
		total += len(rs)
	}
	ends := waitEnds(t, a, b, "stream")
	if n := sum(ends); n != int64(total) {
		t.Fatalf("the target ends at %v (%d records), %d produced: duplicates or gaps", ends, n, total)
	}
	sameAtSameOffsets(t, "stream", a.read(t, "stream", total), b.read(t, "stream", total))
	t.Logf("SIGKILL mid-stream of %d records (target ends at the kill %v): the copy is the source, offset for offset", total, atKill)
}

// TestMirrorPreserveFailover: once the mirror is stopped and the config
// deleted from the copy (the documented failover), the topic takes
// producers again, from the copy's end.
// (The producer ids both clusters hand out: TestMirrorFailoverProducerIDs.)
func TestMirrorPreserveFailover(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "orders", 1, nil)
	transactions(t, a, "orders", 1, "tx", true)
	_, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "orders", PreserveOffsets: true})
	end := waitEnds(t, a, b, "orders")[0]
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	failover(t, b, "orders")
	deadline := time.Now().Add(30 * time.Second)
	for {
		// A fresh producer each try: kgo gives up on a record after a
		// non-retriable error.
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr))
		if err != nil {
			t.Fatal(err)
		}
		r, err := cl.ProduceSync(clitest.Ctx(t), &kgo.Record{Topic: "orders", Key: []byte("after"), Value: []byte("failover")}).First()
		cl.Close()
		if err == nil {
			if r.Offset != end {
				t.Fatalf("the first record after the failover is at %d, want %d (the copy's end)", r.Offset, end)
			}
			break
		}
		if !errors.Is(err, kerr.PolicyViolation) || time.Now().After(deadline) {
			t.Fatalf("produce after the failover: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the config change reaching the broker
	}
}

// TestMirrorPreserveRefuses: the offset-preserving mirror stops, saying
// why, rather than write into a target topic that is not this source's
// copy (an ordinary topic, another cluster's copy) or into a target that
// cannot keep offsets (kfake, standing for any non-Sluice Kafka).
func TestMirrorPreserveRefuses(t *testing.T) {
	a := connect(t, startBroker(t))
	a.create(t, "orders", 1, nil)
	a.produce(t, &kgo.Record{Topic: "orders", Value: []byte("x")})
	run := func(target string) error {
		m, err := New(clitest.Ctx(t), Options{Source: []string{a.addr}, Target: []string{target}, Topics: "orders",
			PreserveOffsets: true, CheckpointInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return m.Run(clitest.Ctx(t))
	}
	b := connect(t, startBroker(t))
	b.create(t, "orders", 1, nil)
	if err := run(b.addr); err == nil || !strings.Contains(err.Error(), "exists as an ordinary topic") {
		t.Fatalf("into an ordinary topic: %v", err)
	}
	c := connect(t, startBroker(t))
	other := "another-cluster"
	c.create(t, "orders", 1, map[string]*string{MirrorSourceConfig: &other})
	if err := run(c.addr); err == nil || !strings.Contains(err.Error(), "is an offset-preserving mirror of cluster another-cluster, not of this source") {
		t.Fatalf("into another cluster's copy: %v", err)
	}
	addr, stopKfake, err := benchref.Start(clitest.Ctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopKfake)
	if err := run(addr); err == nil || !strings.Contains(err.Error(), "does not know the topic config") {
		t.Fatalf("into kfake: %v", err)
	}
	for _, c := range []*cluster{b, c} {
		if n := sum(c.ends(t, "orders")); n != 0 {
			t.Fatalf("%d records written on %s", n, c.addr)
		}
	}
}

// TestMirrorChainFromACopy: A -> B keeping offsets, then B -> C
// translating: C's topic is an ordinary one (B's mirror mark is not
// copied), and it holds every record once. Copied, the mark made C's
// broker take the translating mirror's batches at their own base offset,
// the producer's 0, passing over all but the first as copies already
// there: acknowledged, and lost.
func TestMirrorChainFromACopy(t *testing.T) {
	a, b, c := connect(t, startBroker(t)), connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "orders", 1, nil)
	base := time.UnixMilli(1_700_000_000_000)
	for i := range 20 { // 20 batches
		a.produce(t, rec("orders", 0, i, base))
	}
	start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "orders", PreserveOffsets: true})
	waitEnds(t, a, b, "orders")
	m, _ := start(t, Options{Source: []string{b.addr}, Target: []string{c.addr}, Topics: "orders"})
	waitMetric(t, m, "sluice_mirror_records_total", "topic=orders", 20)
	for i := 20; i < 40; i++ { // while both mirrors run: batches one by one
		a.produce(t, rec("orders", 0, i, base))
		waitMetric(t, m, "sluice_mirror_records_total", "topic=orders", float64(i+1))
	}
	if n := sum(c.ends(t, "orders")); n != 40 {
		t.Fatalf("C ends at %d, want 40", n)
	}
	compare(t, b.read(t, "orders", 40), c.read(t, "orders", 40), m.SourceClusterID())

	// A translating mirror into the copy itself is refused, loudly.
	tm, err := New(clitest.Ctx(t), Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "orders", CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := tm.Run(clitest.Ctx(t)); !errors.Is(err, kerr.PolicyViolation) {
		t.Fatalf("a translating mirror into a copy: %v", err)
	}
	rcs, err := c.adm.DescribeTopicConfigs(clitest.Ctx(t), "orders")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("orders", nil)
	for _, cfg := range rc.Configs {
		if cfg.Key == MirrorSourceConfig && cfg.MaybeValue() != "" {
			t.Fatalf("C's topic is marked a copy of %s", cfg.MaybeValue())
		}
	}
}
