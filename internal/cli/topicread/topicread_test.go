package topicread

import (
	"fmt"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/cli/topic"
)

func TestRead(t *testing.T) {
	b := clitest.Start(t, nil)
	c, _ := clitest.Common(b.Addr, nil)
	ctx := clitest.Ctx(t)
	if err := topic.RunCreate(ctx, topic.CreateOptions{Common: c, Topics: []string{"t"}, Partitions: 3, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(p int32, n int) {
		t.Helper()
		var rs []*kgo.Record
		for i := range n {
			rs = append(rs, &kgo.Record{Topic: "t", Partition: p, Value: fmt.Append(nil, i)})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 10)
	produce(1, 2000)
	ranges, err := Ranges(ctx, cl, "t", []int32{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if ranges[0] != (Range{0, 10}) || ranges[1] != (Range{0, 2000}) || !ranges[2].Empty() {
		t.Fatalf("ranges: %v", ranges)
	}
	produce(0, 5) // after the ends were listed: not read

	read := func(rs map[int32]Range) map[int32][]int64 {
		t.Helper()
		got := map[int32][]int64{}
		if err := Read(ctx, cl, "t", rs, func(r *kgo.Record) error {
			got[r.Partition] = append(got[r.Partition], r.Offset)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := read(ranges)
	if len(got[0]) != 10 || len(got[1]) != 2000 || len(got[2]) != 0 || !slices.IsSorted(got[1]) || got[1][1999] != 1999 {
		t.Fatalf("read %d, %d and %d records", len(got[0]), len(got[1]), len(got[2]))
	}
	got = read(map[int32]Range{0: {3, 7}, 1: {1990, 1995}})
	if !slices.Equal(got[0], []int64{3, 4, 5, 6}) || !slices.Equal(got[1], []int64{1990, 1991, 1992, 1993, 1994}) {
		t.Fatalf("read sub-ranges: %v", got)
	}
	stop := fmt.Errorf("stop")
	if err := Read(ctx, cl, "t", ranges, func(*kgo.Record) error { return stop }); err != stop {
		t.Fatalf("callback error: %v", err)
	}
}
