package mirror

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/benchref"
	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// waitMetric waits until m's series reaches want, for 30 s at most.
func waitMetric(t testing.TB, m *Mirror, name, labels string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := metric(t, m, name, labels)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sum(ends map[int32]int64) int64 {
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

func TestMirrorBothWaysDoesNotLoop(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "events", 2, nil)
	b.create(t, "events", 2, nil)
	produce := func(c *cluster, from string, n, first int) {
		var recs []*kgo.Record
		for i := first; i < first+n; i++ {
			recs = append(recs, &kgo.Record{Topic: "events", Partition: int32(i % 2), Value: []byte(fmt.Sprintf("%s-%d", from, i))})
		}
		c.produce(t, recs...)
	}
	produce(a, "a", 20, 0)
	produce(b, "b", 20, 0)
	ab, _ := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "events"})
	ba, _ := start(t, Options{Source: []string{b.addr}, Target: []string{a.addr}, Topics: "events"})
	check := func(each int) {
		t.Helper()
		// Each mirror copied the other side's records and passed over
		// the copies of its target's: it has read all there is.
		waitMetric(t, ab, "sluice_mirror_records_total", "topic=events", float64(each))
		waitMetric(t, ab, "sluice_mirror_skipped_total", "topic=events", float64(each))
		waitMetric(t, ba, "sluice_mirror_records_total", "topic=events", float64(each))
		waitMetric(t, ba, "sluice_mirror_skipped_total", "topic=events", float64(each))
		for _, c := range []*cluster{a, b} {
			if n := sum(c.ends(t, "events")); n != int64(2*each) {
				t.Fatalf("events on %s: %d records, want %d (each record once on each side)", c.addr, n, 2*each)
			}
			seen := map[string]int{}
			for _, rs := range c.read(t, "events", 2*each) {
				for _, r := range rs {
					seen[string(r.Value)]++
				}
			}
			for v, k := range seen {
				if k != 1 {
					t.Fatalf("%s on %s %d times", v, c.addr, k)
				}
			}
			if len(seen) != 2*each {
				t.Fatalf("%d distinct records on %s, want %d", len(seen), c.addr, 2*each)
			}
		}
	}
	check(20)
	produce(a, "a", 5, 20) // and more while both run
	produce(b, "b", 5, 20)
	check(25)
}

// TestMirrorToKfake mirrors Sluice to franz-go's kfake, with a topic prefix.
func TestMirrorToKfake(t *testing.T) {
	a := connect(t, startBroker(t))
	addr, stopKfake, err := benchref.Start(clitest.Ctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopKfake)
	k := connect(t, addr)
	retention := "7200000"
	a.create(t, "clicks", 3, map[string]*string{"retention.ms": &retention})
	base := time.UnixMilli(1_700_000_000_000)
	var recs []*kgo.Record
	for i := range 50 {
		for p := range int32(3) {
			recs = append(recs, rec("clicks", p, i, base))
		}
	}
	a.produce(t, recs...)
	m, stop := start(t, Options{Source: []string{a.addr}, Target: []string{addr}, Topics: "clicks", TopicPrefix: "sluice."})
	compare(t, a.read(t, "clicks", 150), k.read(t, "sluice.clicks", 150), m.SourceClusterID())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rcs, err := k.adm.DescribeTopicConfigs(clitest.Ctx(t), "sluice.clicks")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("sluice.clicks", nil)
	found := false
	for _, c := range rc.Configs {
		found = found || c.Key == "retention.ms" && c.Value != nil && *c.Value == retention
	}
	if !found {
		t.Fatalf("retention.ms=%s not on kfake's copy: %+v", retention, rc.Configs)
	}
}

// TestMirrorBackpressure: with a small in-flight limit, fetching pauses
// again and again, and every record still arrives, in order.
func TestMirrorBackpressure(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "big", 2, nil)
	base := time.UnixMilli(1_700_000_000_000)
	var recs []*kgo.Record
	for i := range 1000 {
		r := rec("big", int32(i%2), i, base)
		r.Value = append(r.Value, make([]byte, 1000)...)
		recs = append(recs, r)
	}
	a.produce(t, recs...)
	m, _ := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "big", MaxInFlightBytes: 8 << 10})
	compare(t, a.read(t, "big", 1000), b.read(t, "big", 1000), m.SourceClusterID())
	if p := metric(t, m, "sluice_mirror_fetch_pauses_total", ""); p < 1 {
		t.Fatalf("fetch paused %v times with 8 KiB in flight at most and 1 MB to copy", p)
	}
	t.Logf("fetch paused %v times", metric(t, m, "sluice_mirror_fetch_pauses_total", ""))
}

// TestMirrorStopsOnProduceError: a record the target refuses (too large for
// its topic) stops the mirror with an error that names it, and no source
// offset at or past it is committed: the next run starts at it again.
func TestMirrorStopsOnProduceError(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "docs", 1, nil)
	small := "2000"
	b.create(t, "docs", 1, map[string]*string{"max.message.bytes": &small})
	var recs []*kgo.Record
	for i := range 10 {
		v := []byte(fmt.Sprintf("doc-%d", i))
		if i == 5 {
			big := make([]byte, 10_000)
			rand.Read(big) // incompressible: the batch stays above 2000 bytes
			v = append(v, big...)
		}
		recs = append(recs, &kgo.Record{Topic: "docs", Value: v})
	}
	a.produce(t, recs...)
	m, err := New(clitest.Ctx(t), Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "docs", CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Run(clitest.Ctx(t)) // returns by itself, on the error
	if err == nil || !strings.Contains(err.Error(), "source offset") {
		t.Fatalf("Run: %v, want the produce error naming the source offset", err)
	}
	t.Logf("Run: %v", err)
	committed, ferr := a.adm.FetchOffsets(clitest.Ctx(t), DefaultGroup)
	if ferr != nil {
		t.Fatal(ferr)
	}
	if c, ok := committed.Lookup("docs", 0); ok && c.At > 5 {
		t.Fatalf("committed source offset %d, past the record at 5 that was not copied", c.At)
	}
	for _, rs := range b.read(t, "docs", int(sum(b.ends(t, "docs")))) {
		for _, r := range rs {
			if len(r.Value) > 1000 {
				t.Fatal("the refused record is on the target")
			}
		}
	}
}

// TestMirrorFromKfake mirrors franz-go's kfake to Sluice: every record is
// on Sluice in its partition, in order, with its key, value, headers and
// timestamp, and the topic's configs came along. With PreserveOffsets the
// copy has kfake's offsets too.
func TestMirrorFromKfake(t *testing.T) {
	for _, preserve := range []bool{false, true} {
		t.Run(fmt.Sprintf("preserve=%v", preserve), func(t *testing.T) {
			addr, stopKfake, err := benchref.Start(clitest.Ctx(t), 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stopKfake)
			k, b := connect(t, addr), connect(t, startBroker(t))
			retention := "7200000"
			k.create(t, "views", 3, map[string]*string{"retention.ms": &retention})
			base := time.UnixMilli(1_700_000_000_000)
			var before, after []*kgo.Record
			for i := range 60 {
				for p := range int32(3) {
					if i < 30 {
						before = append(before, rec("views", p, i, base))
					} else {
						after = append(after, rec("views", p, i, base))
					}
				}
			}
			k.produce(t, before...)
			m, stop := start(t, Options{Source: []string{addr}, Target: []string{b.addr}, Topics: "views", PreserveOffsets: preserve})
			k.produce(t, after...)
			src, dst := k.read(t, "views", 180), b.read(t, "views", 180)
			if preserve {
				sameAtSameOffsets(t, "views", src, dst)
			} else {
				compare(t, src, dst, m.SourceClusterID())
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if n := sum(b.ends(t, "views")); n != 180 {
				t.Fatalf("Sluice holds %d records, want 180 (none twice)", n)
			}
			rcs, err := b.adm.DescribeTopicConfigs(clitest.Ctx(t), "views")
			if err != nil {
				t.Fatal(err)
			}
			rc, _ := rcs.On("views", nil)
			found := false
			for _, c := range rc.Configs {
				found = found || c.Key == "retention.ms" && c.MaybeValue() == retention
			}
			if !found {
				t.Fatalf("retention.ms=%s not on Sluice's copy: %+v", retention, rc.Configs)
			}
		})
	}
}
