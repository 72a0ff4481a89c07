package sink_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// With Options.Audit, the sink counts every record it stored once its
// object is uploaded and its offset committed: the audit report finds the
// sink stage equal to the topic's own records in every window.
func TestSinkAuditCounts(t *testing.T) {
	c := startCluster(t)
	const topic, partitions, n = "audited", 3, 3000
	c.create(t, topic, partitions)
	c.produce(t, topic, partitions, 0, n)
	newClient := func(opts ...kgo.Opt) (*kgo.Client, error) {
		return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.addr)}, opts...)...)
	}
	counter, err := audit.NewCounter(clitest.Ctx(t), audit.CounterOptions{Stage: audit.StageSink, NewClient: newClient,
		FlushInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, store := dirStore(t)
	o := options(t, c, topic, store)
	o.Audit = counter
	r := runSink(t, o)
	c.waitCommitted(t, o.Group, topic, 30*time.Second, r.status)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if err := counter.Close(clitest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.BuildCountReport(clitest.Ctx(t), audit.ReportOptions{NewClient: newClient, Topics: []string{topic},
		Since: baseTime.Add(-time.Hour), Settle: -1, CountTopics: true, Expect: []string{audit.StageSink}})
	if err != nil {
		t.Fatal(err)
	}
	var sunk, inTopic int64
	for _, w := range rep.Windows {
		sunk += w.Stages[audit.StageSink].Count
		inTopic += w.Stages[audit.StageTopic].Count
	}
	if rep.Missing != 0 || rep.Extra != 0 || sunk != n || inTopic != n {
		t.Fatalf("report: %d missing, %d extra; sink %d, topic %d of %d records", rep.Missing, rep.Extra, sunk, inTopic, n)
	}
	t.Logf("%d records in %d windows, sink = topic", n, len(rep.Windows))
}
