package e2e

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGroupMetrics: /metrics has each group's members and, for the
// partitions it committed, its lag (log end offset minus committed offset).
func TestGroupMetrics(t *testing.T) {
	tb := start(t, t.TempDir(), "", groupConfigs)
	adm := tb.admin()
	createTopic(t, adm, "lagt", 2, nil)
	cl := tb.client(kgo.DefaultProduceTopic("lagt"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, &kgo.Record{Partition: 0, Value: []byte("x")})
	}
	for i := 0; i < 4; i++ {
		recs = append(recs, &kgo.Record{Partition: 1, Value: []byte("y")})
	}
	if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	offs := kadm.Offsets{}
	offs.AddOffset("lagt", 0, 3, -1)
	resp, err := adm.CommitOffsets(ctxT(t), "idle", offs)
	if err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	text := scrape(t, tb)
	if v := metricValue(t, text, `sluice_group_lag{group="idle",partition="0",topic="lagt"}`); v != 7 {
		t.Errorf("lag of idle on partition 0 = %v, want 7", v)
	}
	if v := metricValue(t, text, `sluice_group_members{group="idle"}`); v != 0 {
		t.Errorf("members of idle = %v, want 0", v)
	}
	if metricExists(text, `sluice_group_lag{group="idle",partition="1",topic="lagt"}`) {
		t.Errorf("lag reported for a partition the group never committed")
	}

	// A consuming member that commits everything: members 1, lag 0.
	w := newWatch()
	m := tb.member(t, w, "live", "lagt")
	w.until(t, "all records consumed", func() bool { return m.consumed() == len(recs) })
	if err := m.cl.CommitUncommittedOffsets(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	text = scrape(t, tb)
	if v := metricValue(t, text, `sluice_group_members{group="live"}`); v != 1 {
		t.Errorf("members of live = %v, want 1", v)
	}
	for _, p := range []string{"0", "1"} {
		if v := metricValue(t, text, `sluice_group_lag{group="live",partition="`+p+`",topic="lagt"}`); v != 0 {
			t.Errorf("lag of live on partition %s = %v, want 0", p, v)
		}
	}
}

func metricExists(text, series string) bool {
	for _, line := range strings.Split(text, "\n") {
		if len(line) > len(series) && line[:len(series)] == series && line[len(series)] == ' ' {
			return true
		}
	}
	return false
}
