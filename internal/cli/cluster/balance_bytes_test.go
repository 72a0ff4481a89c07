package cluster

import (
	"maps"
	"regexp"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
)

// weights returns each broker's weight under plan.
func weights(md kadm.Metadata, plan Plan, loads map[topicPartition]PartitionLoad) map[int32]float64 {
	target := map[topicPartition][]int32{}
	for _, e := range plan.Partitions {
		target[topicPartition{e.Topic, e.Partition}] = e.Replicas
	}
	out := map[int32]float64{}
	for name, td := range md.Topics {
		for p, pd := range td.Partitions {
			tp := topicPartition{name, p}
			rs := pd.Replicas
			if t, ok := target[tp]; ok {
				rs = t
			}
			for _, r := range rs {
				out[r] += loads[tp].weight()
			}
		}
	}
	return out
}

func spread(w map[int32]float64) float64 {
	lo, hi := -1.0, 0.0
	for _, v := range w {
		hi = max(hi, v)
		if lo < 0 || v < lo {
			lo = v
		}
	}
	return hi - lo
}

// TestEvenBytes: with replica counts already even, broker 1 holding the
// big partitions, EvenBytes swaps replicas until the brokers' bytes are
// within the tolerance, without changing any broker's replica or preferred
// leader count, and without putting two replicas of a partition on a rack.
func TestEvenBytes(t *testing.T) {
	md := testMetadata(map[int32]string{1: "a", 2: "b", 3: "c", 4: "a"}, map[string][][]int32{
		"big":   {{1, 2}, {1, 3}, {4, 2}, {1, 3}},
		"small": {{2, 3}, {3, 4}, {2, 4}, {2, 3}, {4, 1}, {3, 2}},
	})
	loads := map[topicPartition]PartitionLoad{}
	for p := range int32(4) {
		loads[topicPartition{"big", p}] = PartitionLoad{Bytes: 1 << 30}
	}
	for p := range int32(6) {
		loads[topicPartition{"small", p}] = PartitionLoad{Bytes: 1 << 20, Rate: float64(p) * 1000}
	}
	all := regexp.MustCompile(".*")
	before := weights(md, Plan{}, loads)
	plan := EvenBytes(md, Plan{}, loads, all, nil)
	after := weights(md, plan, loads)
	if len(plan.Partitions) == 0 || spread(after) >= spread(before) {
		t.Fatalf("spread %.0f MiB before, %.0f after, %d moves: %+v", spread(before)/(1<<20), spread(after)/(1<<20), len(plan.Partitions), plan.Partitions)
	}
	r0, p0 := counts(md, Plan{})
	r1, p1 := counts(md, plan)
	if !maps.Equal(r0, r1) {
		t.Errorf("replica counts changed: %v -> %v", r0, r1)
	}
	lo, hi := 1<<30, 0
	for _, b := range []int32{1, 2, 3, 4} {
		lo, hi = min(lo, p1[b]), max(hi, p1[b])
	}
	if hi-lo > 1 {
		t.Errorf("preferred leaders uneven after the swaps: %v (before %v)", p1, p0)
	}
	racks := map[int32]string{1: "a", 2: "b", 3: "c", 4: "a"}
	for _, e := range plan.Partitions {
		seen := map[string]bool{}
		for _, r := range e.Replicas {
			if seen[racks[r]] {
				t.Errorf("%s-%d on %v: two replicas on rack %s", e.Topic, e.Partition, e.Replicas, racks[r])
			}
			seen[racks[r]] = true
		}
	}
	t.Logf("bytes per broker before %v, after %v (%d partitions move)", before, after, len(plan.Partitions))

	// Skipped (cordoned) brokers get nothing; a topic outside the regexp
	// does not move.
	plan = EvenBytes(md, Plan{}, loads, regexp.MustCompile("small"), func(id int32) bool { return id == 4 })
	for _, e := range plan.Partitions {
		if e.Topic != "small" {
			t.Errorf("%s-%d moved, outside --topics", e.Topic, e.Partition)
		}
		for _, r := range e.Replicas {
			if r == 4 {
				for _, c := range e.Current {
					if c == 4 {
						goto ok
					}
				}
				t.Errorf("%s-%d got a replica on the skipped broker 4: %v", e.Topic, e.Partition, e.Replicas)
			ok:
			}
		}
	}
	// Balanced already: nothing moves.
	even := map[topicPartition]PartitionLoad{}
	for tp := range loads {
		even[tp] = PartitionLoad{Bytes: 100}
	}
	if plan := EvenBytes(testMetadata(map[int32]string{1: "", 2: ""}, map[string][][]int32{"t": {{1, 2}, {2, 1}}}), Plan{}, even, all, nil); len(plan.Partitions) != 0 {
		t.Errorf("moves on a balanced cluster: %+v", plan.Partitions)
	}
}
