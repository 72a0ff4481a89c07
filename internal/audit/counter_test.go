package audit

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

func newClientFunc(addr string) func(...kgo.Opt) (*kgo.Client, error) {
	return func(opts ...kgo.Opt) (*kgo.Client, error) {
		return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	}
}

func newCounter(t *testing.T, addr, stage string) *Counter {
	t.Helper()
	c, err := NewCounter(clitest.Ctx(t), CounterOptions{NewClient: newClientFunc(addr), Stage: stage, FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// produceAcked produces n records to topic over its partitions with the
// given timestamps (round robin), and counts each acknowledged one with
// c, as the collector does; it returns them as acknowledged.
func produceAcked(t *testing.T, cl *kgo.Client, c *Counter, topic string, partitions int32, n int, ts ...time.Time) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: topic, Partition: int32(i/len(ts)) % partitions, Value: []byte(fmt.Sprint(i)), Timestamp: ts[i%len(ts)]}
		res := cl.ProduceSync(clitest.Ctx(t), r)
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		c.Count(r.Topic, r.Partition, r.Offset, r.Timestamp)
		out = append(out, r)
	}
	return out
}

// A sink stage counting through a Counter as the sink does (a batch per
// committed object): a retried sink that counts the same offsets again is
// deduplicated; one that never committed some records shows them missing
// in their window, against the collect stage and the topic itself.
func TestCounterSinkStage(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, topic := range []string{"events", "clicks"} {
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	w1 := time.UnixMilli(windowOf(now.Add(-5 * time.Minute))).Add(10 * time.Second)
	w2 := w1.Add(CountWindow)

	collect := newCounter(t, b.Addr, StageCollect)
	events := produceAcked(t, cl, collect, "events", 2, 40, w1, w2)
	clicks := produceAcked(t, cl, collect, "clicks", 2, 20, w1, w2)
	// Published every FlushInterval, without a Close.
	for deadline := time.Now().Add(10 * time.Second); collect.Stats().Published == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nothing published within 10 s")
		}
	}
	if err := collect.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The sink commits an object of the first half of events, dies, and
	// its next run commits everything from the start again (exactly-once
	// files, at-least-once counting).
	sink1 := newCounter(t, b.Addr, StageSink)
	sink1.CountRecords(events[:20])
	if err := sink1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	sink2 := newCounter(t, b.Addr, StageSink)
	sink2.CountRecords(events)
	// Of clicks, the records of w2 in partition 1 never made it.
	var kept []*kgo.Record
	for _, r := range clicks {
		if !(r.Partition == 1 && r.Timestamp.Equal(w2)) {
			kept = append(kept, r)
		}
	}
	sink2.CountRecords(kept)
	if err := sink2.Close(ctx); err != nil {
		t.Fatal(err)
	}

	r, err := BuildCountReport(ctx, ReportOptions{NewClient: newClientFunc(b.Addr), Since: now.Add(-time.Hour), Settle: -1, CountTopics: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Windows) != 4 || r.Undecodable != 0 {
		t.Fatalf("%+v", r)
	}
	for _, x := range r.Windows {
		n := int64(20)
		if x.Topic == "clicks" {
			n = 10
		}
		c, tp, s := x.Stages[StageCollect], x.Stages[StageTopic], x.Stages[StageSink]
		if c.Count != n || c.Raw != n || tp.Count != n || x.Open || len(x.Extra) != 0 {
			t.Errorf("%s %s: %+v", x.Window, x.Topic, x)
		}
		switch {
		case x.Topic == "events":
			if s.Count != n || s.Instances != 2 || s.Raw != n+10 || len(x.Missing) != 0 {
				t.Errorf("events %s: sink %+v, missing %+v", x.Window, s, x.Missing)
			}
		case x.Window.Equal(time.UnixMilli(windowOf(w1)).UTC()):
			if s.Count != n || len(x.Missing) != 0 {
				t.Errorf("clicks %s: sink %+v, missing %+v", x.Window, s, x.Missing)
			}
		default: // clicks in w2: partition 1's 5 records missing at the sink
			if s.Count != 5 || len(x.Missing) != 1 || x.Missing[0] != (Gap{Stage: StageSink, After: StageTopic, Records: 5}) {
				t.Errorf("clicks %s: sink %+v, missing %+v", x.Window, s, x.Missing)
			}
		}
	}
	if r.Missing != 5 || r.Extra != 0 {
		t.Errorf("missing %d, extra %d", r.Missing, r.Extra)
	}
	// --topic narrows; --since after the windows leaves nothing.
	r, err = BuildCountReport(ctx, ReportOptions{NewClient: newClientFunc(b.Addr), Topics: []string{"events"}, Since: now.Add(-time.Hour), Settle: -1, CountTopics: true})
	if err != nil || len(r.Windows) != 2 || r.Missing != 0 {
		t.Fatalf("events only: %+v, %v", r, err)
	}
	r, err = BuildCountReport(ctx, ReportOptions{NewClient: newClientFunc(b.Addr), Since: now, Settle: -1, CountTopics: true})
	if err != nil || len(r.Windows) != 0 {
		t.Fatalf("since now: %+v, %v", r, err)
	}
}

// A window split over more entries than one record holds (ranges over
// maxRangesPerRecord) still adds up; records without an offset are
// counted, not deduped; a nil Counter counts nothing and closes.
func TestCounterEntriesAndNil(t *testing.T) {
	var nilCounter *Counter
	nilCounter.Count("t", 0, 1, time.Now())
	nilCounter.CountRecords([]*kgo.Record{{Topic: "t"}})
	if err := nilCounter.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	now := time.Now()
	c := newCounter(t, b.Addr, "custom")
	n := maxRangesPerRecord + 100
	for i := 0; i < n; i++ {
		c.Count("t", 0, int64(2*i), now) // every other offset: a range each
	}
	for i := 0; i < n; i++ {
		c.Count("t", 0, int64(2*i), now) // again: deduped
	}
	c.Count("t", 0, -1, now)
	c.Count("t", 0, -1, now)
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Counted != int64(2*n+2) || s.PublishErrors != 0 {
		t.Fatalf("%+v", s)
	}
	r, err := BuildCountReport(ctx, ReportOptions{NewClient: newClientFunc(b.Addr), Since: now.Add(-time.Minute), Settle: -1})
	if err != nil || len(r.Windows) != 1 {
		t.Fatalf("%+v, %v", r, err)
	}
	if got := r.Windows[0].Stages["custom"]; got.Count != int64(n+2) || got.Raw != int64(2*n+2) || got.Instances != 1 {
		t.Fatalf("%+v", got)
	}
}

// BenchmarkCounterCount is the cost of Count on a stage's hot path: a
// record in order in a window already open (the common case), from one
// goroutine and from all.
func BenchmarkCounterCount(b *testing.B) {
	now := time.Now()
	b.Run("serial", func(b *testing.B) {
		c := &Counter{o: CounterOptions{Stage: "bench"}, entries: map[windowKey]*entry{}}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			c.Count("events", int32(i%3), int64(i/3), now)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		c := &Counter{o: CounterOptions{Stage: "bench"}, entries: map[windowKey]*entry{}}
		b.ReportAllocs()
		var p atomicInt32
		b.RunParallel(func(pb *testing.PB) {
			part := p.next()
			var off int64
			for pb.Next() {
				c.Count("events", part, off, now)
				off++
			}
		})
	})
}

type atomicInt32 struct{ v atomic.Int32 }

func (a *atomicInt32) next() int32 { return a.v.Add(1) }

// A sink's tallies: one per object, counted when the object is
// committed, dropped when its upload fails; a tally with more ranges than
// a record holds is split over entries that each decode.
func TestCounterTally(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	now := time.Now()
	c := newCounter(t, b.Addr, StageSink)
	var committed, failed, big Tally
	for off := int64(0); off < 10; off++ {
		committed.Count("t", 0, off, now)
	}
	committed.Count("t", 0, 5, now)  // written twice into one object
	committed.Count("t", 0, -1, now) // no offset known
	for off := int64(10); off < 20; off++ {
		failed.Count("t", 0, off, now)
	}
	n := maxRangesPerRecord + 10
	for i := 0; i < n; i++ {
		big.Count("t", 1, int64(2*i), now)
	}
	if committed.Len() != 12 || failed.Len() != 10 || big.Len() != int64(n) {
		t.Fatalf("lens %d %d %d", committed.Len(), failed.Len(), big.Len())
	}
	c.CountTally(&committed)
	c.CountTally(&big)
	failed.Reset() // the upload failed: never counted
	if failed.Len() != 0 {
		t.Fatal("Reset kept records")
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := BuildCountReport(ctx, ReportOptions{NewClient: newClientFunc(b.Addr), Since: now.Add(-time.Minute), Settle: -1})
	if err != nil || len(r.Windows) != 1 || r.Undecodable != 0 {
		t.Fatalf("%+v, %v", r, err)
	}
	if got := r.Windows[0].Stages[StageSink]; got.Count != int64(11+n) || got.Raw != int64(12+n) {
		t.Fatalf("%+v, want %d distinct of %d", got, 11+n, 12+n)
	}
}
