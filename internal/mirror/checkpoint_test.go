package mirror

import (
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// TestMirrorTranslatesGroupOffsets: a group consumes part of a topic on
// the source; after a checkpoint, a consumer of the same group on the
// target resumes with no gap, replaying at most offsetSyncEvery records.
func TestMirrorTranslatesGroupOffsets(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "orders", 2, nil)
	var recs []*kgo.Record
	for i := range 300 {
		for p := range int32(2) {
			recs = append(recs, &kgo.Record{Topic: "orders", Partition: p, Value: []byte(strconv.Itoa(i))})
		}
	}
	a.produce(t, recs...)
	m, _ := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "orders", TopicPrefix: "a."})
	b.read(t, "a.orders", 600)
	waitMetric(t, m, "sluice_mirror_records_total", "topic=orders", 600)

	// A consumer group on A consumed 120 records of partition 0 and all
	// of partition 1.
	consumed := map[int32]int64{0: 120, 1: 300}
	offs := kadm.Offsets{}
	for p, at := range consumed {
		offs.Add(kadm.Offset{Topic: "orders", Partition: p, At: at, LeaderEpoch: -1})
	}
	if resp, err := a.adm.CommitOffsets(clitest.Ctx(t), "app", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit on the source: %v %v", err, resp.Error())
	}
	n, err := m.Checkpoint(clitest.Ctx(t))
	if err != nil || n != 2 {
		t.Fatalf("checkpoint: %d offsets, %v; want 2", n, err)
	}
	// Partition 0: the sync at or below 120 is the one kept at 100 (one
	// every offsetSyncEvery): 20 records replayed. Partition 1: the newest
	// sync, 299, is below 300: its last record replayed.
	want := map[int32]int64{0: 100, 1: 299}
	got, err := b.adm.FetchOffsets(clitest.Ctx(t), "app")
	if err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		if o, ok := got.Lookup("a.orders", p); !ok || o.At != w {
			t.Fatalf("translated offset of a.orders[%d]: %+v, want %d", p, o, w)
		}
	}

	// A consumer of group app on B resumes there: nothing it had not
	// processed on A is skipped.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumerGroup("app"), kgo.ConsumeTopics("a.orders"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd())) // were the offset missing, it would skip: the test would fail
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	first := map[int32]int{}
	last := map[int32]int{}
	ctx := clitest.Ctx(t)
	for n := 0; n < (300-100)+(300-299); {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("resumed consumer read %d records (first %v, last %v)", n, first, last)
		}
		fs.EachRecord(func(r *kgo.Record) {
			v, _ := strconv.Atoi(string(r.Value))
			if _, ok := first[r.Partition]; !ok {
				first[r.Partition] = v
			} else if v != last[r.Partition]+1 {
				t.Errorf("partition %d: %d after %d: a gap", r.Partition, v, last[r.Partition])
			}
			last[r.Partition] = v
			n++
		})
	}
	for p, c := range consumed {
		if int64(first[p]) > c {
			t.Fatalf("partition %d: resumed at source record %d, after %d that the group had not processed: skipped", p, first[p], c)
		}
		t.Logf("partition %d: committed %d on the source, resumed on the target at its record %d: %d replayed", p, c, first[p], c-int64(first[p]))
	}

	// A group with members on the target commits its own offsets: not
	// overwritten. Nor is a higher offset already there.
	if n, err := m.Checkpoint(clitest.Ctx(t)); err != nil || n != 0 {
		t.Fatalf("checkpoint with the target group active: %d offsets, %v; want 0", n, err)
	}
}
