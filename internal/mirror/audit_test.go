package mirror

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// With Audit, a mirror counts each record whose copy the target
// acknowledged, under the source topic and offsets, and not the records
// it passes over (loop prevention): two mirrors both ways count the
// other side's records once each, and the report sees exactly them.
func TestMirrorAuditCounts(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "events", 2, nil)
	b.create(t, "events", 2, nil)
	const each = 30
	ts := time.Now().Add(-3 * time.Minute)
	for _, c := range []*cluster{a, b} {
		var recs []*kgo.Record
		for i := 0; i < each; i++ {
			recs = append(recs, &kgo.Record{Topic: "events", Partition: int32(i % 2), Value: []byte(fmt.Sprint(i)), Timestamp: ts})
		}
		c.produce(t, recs...)
	}
	counter := func(stage string) *audit.Counter {
		c, err := audit.NewCounter(clitest.Ctx(t), audit.CounterOptions{Stage: stage, FlushInterval: 100 * time.Millisecond,
			NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
				return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(a.addr)}, opts...)...)
			}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cab, cba := counter("mirror-ab"), counter("mirror-ba")
	ab, stopAB := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "events", Audit: cab})
	ba, stopBA := start(t, Options{Source: []string{b.addr}, Target: []string{a.addr}, Topics: "events", Audit: cba})
	for _, m := range []*Mirror{ab, ba} {
		waitMetric(t, m, "sluice_mirror_records_total", "topic=events", each)
		waitMetric(t, m, "sluice_mirror_skipped_total", "topic=events", each)
	}
	for _, stop := range []func() error{stopAB, stopBA} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*audit.Counter{cab, cba} {
		if err := c.Close(clitest.Ctx(t)); err != nil {
			t.Fatal(err)
		}
		if s := c.Stats(); s.Counted != each {
			t.Errorf("counted %d, want %d (the skipped ones not counted)", s.Counted, each)
		}
	}
	r, err := audit.BuildCountReport(clitest.Ctx(t), audit.ReportOptions{Since: ts.Add(-time.Minute), Settle: -1,
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(a.addr)}, opts...)...)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Windows) != 1 {
		t.Fatalf("%+v", r)
	}
	for _, s := range []string{"mirror-ab", "mirror-ba"} {
		if got := r.Windows[0].Stages[s]; got.Count != each || got.Raw != each {
			t.Errorf("%s: %+v", s, got)
		}
	}
}
