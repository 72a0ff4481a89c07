package cluster

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
)

// testMetadata is a cluster of brokers (with racks, "" for none) and
// topics whose partitions have the given replicas.
func testMetadata(racks map[int32]string, topics map[string][][]int32) kadm.Metadata {
	md := kadm.Metadata{Topics: kadm.TopicDetails{}}
	for id, rack := range racks {
		b := kadm.BrokerDetail{NodeID: id}
		if rack != "" {
			r := rack
			b.Rack = &r
		}
		md.Brokers = append(md.Brokers, b)
	}
	for name, parts := range topics {
		td := kadm.TopicDetail{Topic: name, Partitions: kadm.PartitionDetails{}}
		for i, rs := range parts {
			td.Partitions[int32(i)] = kadm.PartitionDetail{Topic: name, Partition: int32(i), Leader: rs[0], Replicas: rs}
		}
		md.Topics[name] = td
	}
	return md
}

func counts(md kadm.Metadata, plan Plan) (replicas, preferred map[int32]int) {
	target := map[string]map[int32][]int32{}
	for _, e := range plan.Partitions {
		if target[e.Topic] == nil {
			target[e.Topic] = map[int32][]int32{}
		}
		target[e.Topic][e.Partition] = e.Replicas
	}
	replicas, preferred = map[int32]int{}, map[int32]int{}
	for name, td := range md.Topics {
		for p, pd := range td.Partitions {
			rs := pd.Replicas
			if t, ok := target[name][p]; ok {
				rs = t
			}
			for _, r := range rs {
				replicas[r]++
			}
			preferred[rs[0]]++
		}
	}
	return replicas, preferred
}

func TestMinimalMoves(t *testing.T) {
	md := testMetadata(map[int32]string{1: "a", 2: "b", 3: "a", 4: "b"}, map[string][][]int32{
		"t": {{1, 2}, {2, 3}, {3, 1}, {1, 3}},
		"u": {{4, 1}},
	})
	plan, err := MinimalMoves(md, regexp.MustCompile("^t$"), []int32{1, 2, 4})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32][]int32{}
	for _, e := range plan.Partitions {
		got[e.Partition] = e.Replicas
	}
	// Partition 0 has no replica on 3: it does not move. Replicas on
	// allowed brokers stay in place; a replacement takes an unused rack
	// first (3 had rack a; 1 is a, so 2 or 4 of rack b), then the least
	// loaded broker.
	if _, ok := got[0]; ok || len(plan.Partitions) != 3 {
		t.Fatalf("plan %+v: want partitions 1, 2, 3 only", plan.Partitions)
	}
	for p, rs := range got {
		if slices.Contains(rs, 3) || len(rs) != 2 {
			t.Errorf("partition %d: %v", p, rs)
		}
	}
	// Kept replicas come first, in their order (the preferred leader stays
	// when it can).
	if got[1][0] != 2 || got[2][0] != 1 || got[3][0] != 1 {
		t.Errorf("kept replicas moved: %v", got)
	}
	if rs := got[1]; rs[1] != 1 {
		t.Errorf("partition 1 (was 2,3): %v, want 1 (rack a, like 3; 2 is rack b) for 3", rs)
	}
	if rs := got[2]; rs[1] != 4 && rs[1] != 2 {
		t.Errorf("partition 2 (was 3,1): %v, want a rack-b broker for 3", rs)
	}
	if _, err := MinimalMoves(md, regexp.MustCompile("^t$"), []int32{1}); err == nil {
		t.Error("2 replicas onto 1 broker: no error")
	}
	if _, err := MinimalMoves(md, regexp.MustCompile("^t$"), []int32{1, 9}); err == nil {
		t.Error("an unknown broker: no error")
	}
}

// A broker added to a cluster of three gets its share of replicas and of
// preferred leaders.
func TestBalancePlanFillsNewBroker(t *testing.T) {
	var parts [][]int32
	for i := range 12 {
		parts = append(parts, []int32{int32(i%3 + 1), int32((i+1)%3 + 1)})
	}
	md := testMetadata(map[int32]string{1: "", 2: "", 3: "", 4: ""}, map[string][][]int32{"t": parts})
	plan := BalancePlan(md, regexp.MustCompile(".*"), nil)
	replicas, preferred := counts(md, plan)
	for b := int32(1); b <= 4; b++ {
		if replicas[b] != 6 {
			t.Errorf("broker %d: %d replicas, want 6 (%v)", b, replicas[b], replicas)
		}
		if preferred[b] != 3 {
			t.Errorf("broker %d: preferred leader of %d, want 3 (%v)", b, preferred[b], preferred)
		}
	}
	for _, e := range plan.Partitions {
		if e.Replicas[0] == e.Replicas[1] {
			t.Fatalf("duplicate replica in %v", e)
		}
	}
	if again := BalancePlan(testMetadata(map[int32]string{1: "", 2: "", 3: ""}, map[string][][]int32{"t": parts}), regexp.MustCompile(".*"), nil); len(again.Partitions) != 0 {
		t.Errorf("a balanced cluster got moves: %+v", again.Partitions)
	}
}

// Balancing never puts two replicas of a partition on one rack.
func TestBalancePlanKeepsRacks(t *testing.T) {
	md := testMetadata(map[int32]string{1: "a", 2: "b", 3: "a", 4: "b"}, map[string][][]int32{
		"t": {{1, 2}, {1, 2}, {1, 2}, {1, 2}},
	})
	plan := BalancePlan(md, regexp.MustCompile(".*"), nil)
	racks := map[int32]string{1: "a", 2: "b", 3: "a", 4: "b"}
	for _, e := range plan.Partitions {
		if racks[e.Replicas[0]] == racks[e.Replicas[1]] {
			t.Errorf("%v puts both replicas on rack %s", e.Replicas, racks[e.Replicas[0]])
		}
	}
	replicas, _ := counts(md, plan)
	if replicas[3] == 0 || replicas[4] == 0 {
		t.Errorf("replicas %v: the new brokers got none", replicas)
	}
}

// A cordoned broker takes part in no balancing: an empty cordoned broker
// gets nothing (it would get a third of the replicas otherwise), and a
// loaded one keeps its replicas and preferred leaderships.
func TestBalancePlanLeavesCordonedOut(t *testing.T) {
	var parts [][]int32
	for i := range 12 {
		parts = append(parts, []int32{int32(i%2 + 1), int32((i+1)%2 + 1)})
	}
	md := testMetadata(map[int32]string{1: "", 2: "", 3: ""}, map[string][][]int32{"t": parts})
	if plan := BalancePlan(md, regexp.MustCompile(".*"), nil); len(plan.Partitions) == 0 {
		t.Fatal("uncordoned, the empty broker 3 gets nothing: the test shows nothing")
	}
	if plan := BalancePlan(md, regexp.MustCompile(".*"), map[int32]bool{3: true}); len(plan.Partitions) != 0 {
		t.Errorf("moves with the empty broker 3 cordoned: %+v", plan.Partitions)
	}

	// Broker 1 is in every partition and leads them all: uncordoned, it
	// gives replicas and leaderships away; cordoned, it keeps them.
	parts = nil
	for i := range 8 {
		parts = append(parts, []int32{1, int32(i%2 + 2)})
	}
	md = testMetadata(map[int32]string{1: "", 2: "", 3: ""}, map[string][][]int32{"t": parts})
	if replicas, _ := counts(md, BalancePlan(md, regexp.MustCompile(".*"), nil)); replicas[1] == 8 {
		t.Fatal("uncordoned, broker 1 keeps all 8 replicas: the test shows nothing")
	}
	plan := BalancePlan(md, regexp.MustCompile(".*"), map[int32]bool{1: true})
	replicas, preferred := counts(md, plan)
	if replicas[1] != 8 || preferred[1] != 8 || replicas[2] != 4 || replicas[3] != 4 {
		t.Errorf("with broker 1 cordoned: replicas %v, preferred leaders %v; want all as they were (%+v)", replicas, preferred, plan.Partitions)
	}
}

// A higher replication factor puts no new replica on a cordoned broker,
// and says so when nothing else is left.
func TestReplicationFactorPlanCordoned(t *testing.T) {
	md := testMetadata(map[int32]string{1: "", 2: "", 3: "", 4: ""}, map[string][][]int32{"t": {{1}, {2}, {1}, {2}}})
	plan, err := ReplicationFactorPlan(md, "t", 3, map[int32]bool{4: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range plan.Partitions {
		if len(e.Replicas) != 3 || slices.Contains(e.Replicas, 4) {
			t.Errorf("partition %d: %v, want 3 replicas, none on cordoned broker 4", e.Partition, e.Replicas)
		}
	}
	if _, err := ReplicationFactorPlan(md, "t", 4, map[int32]bool{4: true}); err == nil || !strings.Contains(err.Error(), "cordoned") {
		t.Errorf("4 replicas with broker 4 cordoned: %v, want an error naming the cordon", err)
	}
}

// The ETA is in seconds: 100 MiB left at 10 MiB/s is 10 s (it printed 0s,
// a count of nanoseconds, before).
func TestETA(t *testing.T) {
	for _, c := range []struct {
		left int64
		rate float64
		want string
	}{
		{100 << 20, 10 << 20, "10s"},
		{3 << 30, 1 << 20, "51m12s"},
		{1, 0, "-"},
		{0, 5, "-"},
	} {
		if got := etaOf(c.left, c.rate); got != c.want {
			t.Errorf("etaOf(%d, %v) = %s, want %s", c.left, c.rate, got, c.want)
		}
	}
}
