package e2e

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/broker"
)

// TestFetchReleasesSegmentFiles: a consumer of more partitions than the
// broker's file cache holds gets every record (with leases broken past a
// margin, fetches across 24 partitions with a cache of 8 found their files
// closed before the response was written, and were retried for ever), and
// a fetch hands its files back once its response is written, so the cache
// can close them at once (unreleased, each stayed open for
// file.delete.delay.ms after the fetch).
func TestFetchReleasesSegmentFiles(t *testing.T) {
	tb := startWith(t, t.TempDir(), "", nil, func(c *broker.Config) { c.MaxOpenFiles = 8 })
	adm := tb.admin()
	createTopic(t, adm, "wide", 24, nil)
	cl := tb.client(kgo.DefaultProduceTopic("wide"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	produce := func(round int) {
		t.Helper()
		for i := range 240 {
			if err := cl.ProduceSync(ctxT(t), kgo.StringRecord(fmt.Sprintf("r%d-%d", round, i))).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for round := range 3 {
		produce(round)
		consumeAll(t, tb, "wide", 240*(round+1))
	}
	// The consumers' files were handed back: appends to every partition
	// now close them to make room, so the cache is back at its limit.
	produce(3)
	if st := tb.b.FileStats(); st.Open > st.Limit+1 {
		t.Fatalf("file cache of %d holds %d files after the fetches were answered: %+v", st.Limit, st.Open, st)
	}
}
