package controller

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-io/sluice/internal/metadata"
)

func slots(ids ...int32) []BrokerSlot {
	out := make([]BrokerSlot, len(ids))
	for i, id := range ids {
		out[i] = BrokerSlot{ID: id}
	}
	return out
}

func TestPlaceRackUnaware(t *testing.T) {
	// Kafka's AdminUtils test: 5 brokers, 10 partitions, rf 3, start 0, shift 0.
	got, err := Place(slots(0, 1, 2, 3, 4), 0, 10, 3, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]int32{
		{0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 0}, {4, 0, 1},
		{0, 2, 3}, {1, 3, 4}, {2, 4, 0}, {3, 0, 1}, {4, 1, 2},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

func TestPlaceSpreadsLeadersAndCopies(t *testing.T) {
	got, err := Place(slots(1, 2, 3), 0, 30, 3, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]int{}
	for _, r := range got {
		if len(r) != 3 {
			t.Fatalf("partition %v has %d replicas", r, len(r))
		}
		seen := map[int32]bool{}
		for _, b := range r {
			if seen[b] {
				t.Fatalf("broker %d twice in %v", b, r)
			}
			seen[b] = true
		}
		leaders[r[0]]++
	}
	for id, n := range leaders {
		if n != 10 {
			t.Fatalf("broker %d leads %d of 30 partitions, want 10 (%v)", id, n, leaders)
		}
	}
}

func TestPlaceRackAware(t *testing.T) {
	brokers := []BrokerSlot{{1, "a"}, {2, "a"}, {3, "b"}, {4, "b"}, {5, "c"}, {6, "c"}}
	for start := range 6 {
		for shift := range 6 {
			got, err := Place(brokers, 0, 12, 3, start, shift)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range got {
				racks := map[string]bool{}
				for _, b := range r {
					racks[brokers[b-1].Rack] = true
				}
				if len(racks) != 3 {
					t.Fatalf("start %d shift %d: replicas %v on racks %v, want all three", start, shift, r, racks)
				}
			}
		}
	}
	// Two racks, rf 3: both racks used, three distinct brokers.
	got, err := Place(brokers[:4], 0, 8, 3, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if len(r) != 3 || r[0] == r[1] || r[1] == r[2] || r[0] == r[2] {
			t.Fatalf("replicas %v", r)
		}
	}
}

func TestPlaceRefusesTooFewBrokers(t *testing.T) {
	if _, err := Place(slots(1, 2), 0, 1, 3, 0, 0); !errors.Is(err, ErrInvalidReplicationFactor) {
		t.Fatalf("rf 3 on 2 brokers: %v, want ErrInvalidReplicationFactor", err)
	}
	if _, err := Place(slots(1), 0, 1, 0, 0, 0); !errors.Is(err, ErrInvalidReplicationFactor) {
		t.Fatalf("rf 0: %v", err)
	}
}

func TestPlaceContinuesExistingPartitions(t *testing.T) {
	all, _ := Place(slots(0, 1, 2, 3, 4), 0, 10, 3, 2, 1)
	tail, _ := Place(slots(0, 1, 2, 3, 4), 6, 4, 3, 2, 1)
	if !slices.EqualFunc(all[6:], tail, slices.Equal) {
		t.Fatalf("partitions 6-9 placed alone %v, within the topic %v", tail, all[6:])
	}
}

func TestElectLeader(t *testing.T) {
	up := func(ids ...int32) func(int32) bool { return func(id int32) bool { return slices.Contains(ids, id) } }
	cases := []struct {
		name            string
		replicas, isr   []int32
		usable          func(int32) bool
		unclean         bool
		leader          int32
		wantUncleanFlag bool
	}{
		{"preferred", []int32{1, 2, 3}, []int32{1, 2, 3}, up(1, 2, 3), false, 1, false},
		{"preferred down", []int32{1, 2, 3}, []int32{1, 2, 3}, up(2, 3), false, 2, false},
		{"assignment order, not isr order", []int32{3, 1, 2}, []int32{1, 2, 3}, up(1, 2, 3), false, 3, false},
		{"only out of isr alive", []int32{1, 2, 3}, []int32{1}, up(2, 3), false, -1, false},
		{"unclean", []int32{1, 2, 3}, []int32{1}, up(2, 3), true, 2, true},
		{"unclean but clean possible", []int32{1, 2, 3}, []int32{3}, up(2, 3), true, 3, false},
		{"none", []int32{1, 2}, []int32{1, 2}, up(), true, -1, false},
	}
	for _, c := range cases {
		l, u := ElectLeader(c.replicas, c.isr, c.usable, c.unclean)
		if l != c.leader || u != c.wantUncleanFlag {
			t.Errorf("%s: got %d (unclean %v), want %d (unclean %v)", c.name, l, u, c.leader, c.wantUncleanFlag)
		}
	}
}

// New partitions of an old topic go to the broker that joined since (it
// holds nothing), then spread; never twice on one broker or rack while
// another rack is free; leaders to the brokers leading least.
func TestPlaceLeastLoaded(t *testing.T) {
	load := Load{Replicas: map[int32]int{1: 10, 2: 10, 3: 10}, Leaders: map[int32]int{1: 4, 2: 3, 3: 3}}
	brokers := []BrokerSlot{{1, "a"}, {2, "b"}, {3, "a"}, {4, "b"}}
	got, err := PlaceLeastLoaded(brokers, load, 6, 2)
	if err != nil {
		t.Fatal(err)
	}
	racks := map[int32]string{1: "a", 2: "b", 3: "a", 4: "b"}
	per := map[int32]int{}
	for _, rs := range got {
		if len(rs) != 2 || rs[0] == rs[1] || racks[rs[0]] == racks[rs[1]] {
			t.Fatalf("placement %v: want 2 replicas on 2 racks", got)
		}
		for _, r := range rs {
			per[r]++
		}
	}
	if got[0][0] != 4 && got[0][1] != 4 {
		t.Errorf("first new partition %v skips the empty broker 4", got[0])
	}
	if per[4] != 6 {
		t.Errorf("broker 4 (empty) got %d of 6 new partitions, want all: %v", per[4], got)
	}
	if _, err := PlaceLeastLoaded(brokers, load, 1, 5); !errors.Is(err, ErrInvalidReplicationFactor) {
		t.Errorf("rf 5 on 4 brokers: %v", err)
	}
}

// cordonImage is brokers 1..n, registered and unfenced, with the given
// cluster-wide and per-broker dynamic configs.
func cordonImage(n int32, cluster map[string]string, perBroker map[int32]map[string]string) *metadata.Image {
	img := &metadata.Image{Brokers: map[int32]metadata.Broker{}, BrokerConfigs: cluster, PerBrokerConfigs: perBroker}
	for id := int32(1); id <= n; id++ {
		img.Brokers[id] = metadata.Broker{NodeID: id}
	}
	return img
}

// TestCordoned: a broker with cordoned.log.dirs=* (its own, else the
// cluster-wide value) takes no new replica; its own value beats the
// cluster-wide one either way, and a list of directories cordons nothing
// yet. Too few brokers left is INVALID_REPLICATION_FACTOR naming them.
func TestCordoned(t *testing.T) {
	cordon := map[string]string{"cordoned.log.dirs": "*"}
	img := cordonImage(3, nil, map[int32]map[string]string{3: cordon, 2: {"cordoned.log.dirs": "/data"}})
	if !Cordoned(img, 3) || Cordoned(img, 2) || Cordoned(img, 1) || Cordoned(img, 9) {
		t.Fatalf("cordoned: 1 %v, 2 %v, 3 %v, 9 %v; want 3 alone", Cordoned(img, 1), Cordoned(img, 2), Cordoned(img, 3), Cordoned(img, 9))
	}
	if got := UsableBrokers(img); !slices.Equal(got, slots(1, 2)) {
		t.Fatalf("usable %v, want 1 and 2", got)
	}
	for range 20 { // random starts
		placed, err := PlaceNew(img, 0, 6, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range placed {
			if slices.Contains(rs, 3) {
				t.Fatalf("a replica on cordoned broker 3: %v", placed)
			}
		}
	}
	_, err := PlaceNew(img, 0, 1, 3)
	if !errors.Is(err, ErrInvalidReplicationFactor) || !strings.Contains(err.Error(), "cordoned") || !strings.Contains(err.Error(), "[3]") {
		t.Errorf("rf 3 with broker 3 cordoned: %v, want ErrInvalidReplicationFactor naming it", err)
	}

	// Cluster-wide: every broker, unless its own value says otherwise.
	img = cordonImage(3, cordon, map[int32]map[string]string{2: {"cordoned.log.dirs": ""}})
	if got := CordonedBrokers(img); !slices.Equal(got, []int32{1, 3}) {
		t.Errorf("cordoned cluster-wide, broker 2 not: %v, want 1 and 3", got)
	}
	img = cordonImage(2, cordon, nil)
	if _, err := PlaceNew(img, 0, 1, 1); !errors.Is(err, ErrInvalidReplicationFactor) || !strings.Contains(err.Error(), "cordoned") {
		t.Errorf("every broker cordoned: %v, want ErrInvalidReplicationFactor saying so", err)
	}
}
