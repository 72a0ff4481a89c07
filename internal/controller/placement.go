package controller

import (
	"errors"
	"fmt"
	"slices"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/metadata"
)

// ErrInvalidReplicationFactor: more replicas asked for than there are
// brokers to hold them (Kafka's INVALID_REPLICATION_FACTOR).
var ErrInvalidReplicationFactor = errors.New("controller: invalid replication factor")

// Cordoned reports whether broker id is cordoned (KIP-1066): its own
// dynamic cordoned.log.dirs, else the cluster-wide one, cordons every log
// directory ("*"). A cordoned broker gets no new replica from placement
// (UsableBrokers leaves it out); the replicas it has stay, and it may
// still lead. A list naming particular directories does not cordon the
// broker: placement does not choose a broker's log directory yet; when it
// does, per-directory cordons belong here.
func Cordoned(img *metadata.Image, id int32) bool {
	v, _ := config.Broker{Dynamic: img.BrokerConfigs, PerBroker: img.PerBrokerConfigs[id]}.Value(config.CordonedLogDirs)
	return config.CordonsAll(v)
}

// CordonedBrokers lists the registered brokers that are cordoned, by id.
func CordonedBrokers(img *metadata.Image) []int32 {
	var out []int32
	for id := range img.Brokers {
		if Cordoned(img, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// TooFewBrokers is Kafka's INVALID_REPLICATION_FACTOR message for rf
// replicas when only usable brokers may take them, naming the cordoned
// brokers, if any, and how to let them take replicas again.
func TooFewBrokers(img *metadata.Image, rf, usable int) string {
	msg := fmt.Sprintf("Unable to replicate the partition %d time(s): The target replication factor of %d cannot be reached because only %d broker(s) are registered", rf, rf, usable)
	if c := CordonedBrokers(img); len(c) > 0 {
		msg += fmt.Sprintf(" and not cordoned (cordoned.log.dirs=* on broker(s) %v; sluice cluster undrain ID uncordons one)", c)
	}
	return msg + "."
}

// BrokerSlot is a broker that may hold new replicas.
type BrokerSlot struct {
	ID   int32
	Rack string // "" when the broker has none
}

// Place assigns replicas to count new partitions, numbered from
// firstPartition, over brokers, with rf replicas each; the first replica
// of each is its preferred leader.
//
// It is Kafka's assignment (AdminUtils.assignReplicasToBrokers, still what
// kafka-topics computes): leaders go round-robin over the brokers from
// start, and the followers of each partition are shifted by a per-round
// offset so that the copies of one broker's partitions spread over all the
// others rather than all landing on its neighbour. When any broker has a
// rack, the brokers are first ordered to alternate racks and each
// partition's replicas go to as many different racks as there are, so
// that losing a rack loses no partition with rf > 1.
//
// start and shift make the result deterministic for tests; the controller
// passes random values (as Kafka does) so that topics created one after
// another do not all lead on the same broker. Place never mutates brokers.
func Place(brokers []BrokerSlot, firstPartition, count int32, rf int, start, shift int) ([][]int32, error) {
	n := len(brokers)
	if rf <= 0 {
		return nil, fmt.Errorf("%w: %d, want at least 1", ErrInvalidReplicationFactor, rf)
	}
	if rf > n {
		return nil, fmt.Errorf("%w: %d replicas but only %d usable broker(s)", ErrInvalidReplicationFactor, rf, n)
	}
	if count < 0 || firstPartition < 0 {
		return nil, fmt.Errorf("controller: place %d partitions from %d", count, firstPartition)
	}
	ordered, racks := rackAlternated(brokers)
	start = mod(start, n)
	shift = mod(shift, n)
	if firstPartition > 0 {
		// The shifts the first firstPartition partitions made, so that
		// partitions added later continue the topic's own pattern.
		shift += int(firstPartition-1) / n
	}
	out := make([][]int32, 0, count)
	for i := int32(0); i < count; i++ {
		p := int(firstPartition + i)
		if p > 0 && p%n == 0 {
			shift++
		}
		first := (p + start) % n
		replicas := []int32{ordered[first].ID}
		if racks <= 1 {
			for j := 0; j < rf-1; j++ {
				replicas = append(replicas, ordered[replicaIndex(first, shift, j, n)].ID)
			}
			out = append(out, replicas)
			continue
		}
		// Kafka's rack-aware rule: a follower goes to a rack without a
		// replica yet (until every rack has one) and to a broker without
		// one (always, as rf <= n).
		usedRacks := map[string]bool{ordered[first].Rack: true}
		for k := 0; len(replicas) < rf; k++ {
			b := ordered[replicaIndex(first, shift*racks, k, n)]
			if (!usedRacks[b.Rack] || len(usedRacks) == racks) && !slices.Contains(replicas, b.ID) {
				replicas = append(replicas, b.ID)
				usedRacks[b.Rack] = true
			}
		}
		out = append(out, replicas)
	}
	return out, nil
}

// replicaIndex is the j-th follower of the partition led by first.
func replicaIndex(first, shift, j, n int) int {
	if n == 1 {
		return first
	}
	return (first + 1 + (shift+j)%(n-1)) % n
}

func mod(a, n int) int {
	a %= n
	if a < 0 {
		a += n
	}
	return a
}

// rackAlternated orders brokers so that consecutive ones are on different
// racks where possible (Kafka's getRackAlternatedBrokerList): racks sorted
// by name, brokers in each by id, then one from each rack in turn. It
// returns the order and the number of racks (0 or 1: no rack-awareness).
func rackAlternated(brokers []BrokerSlot) ([]BrokerSlot, int) {
	sorted := slices.Clone(brokers)
	slices.SortFunc(sorted, func(a, b BrokerSlot) int { return int(a.ID) - int(b.ID) })
	byRack := map[string][]BrokerSlot{}
	var rackNames []string
	anyRack := false
	for _, b := range sorted {
		if b.Rack != "" {
			anyRack = true
		}
		if _, ok := byRack[b.Rack]; !ok {
			rackNames = append(rackNames, b.Rack)
		}
		byRack[b.Rack] = append(byRack[b.Rack], b)
	}
	if !anyRack {
		return sorted, 1
	}
	slices.Sort(rackNames)
	out := make([]BrokerSlot, 0, len(sorted))
	for i := 0; len(out) < len(sorted); i++ {
		for _, r := range rackNames {
			if i < len(byRack[r]) {
				out = append(out, byRack[r][i])
			}
		}
	}
	return out, len(rackNames)
}

// Load is how many replicas, and how many first (preferred-leader)
// replicas, each broker holds.
type Load struct {
	Replicas, Leaders map[int32]int
}

// LoadOf counts the replicas and preferred leaders of every broker in img.
func LoadOf(img *metadata.Image) Load {
	l := Load{Replicas: map[int32]int{}, Leaders: map[int32]int{}}
	for _, t := range img.Topics {
		for _, p := range t.Partitions {
			for _, r := range p.Replicas {
				l.Replicas[r]++
			}
			if len(p.Replicas) > 0 {
				l.Leaders[p.Replicas[0]]++
			}
		}
	}
	return l
}

// PlaceLeastLoaded assigns replicas to count new partitions of an existing
// topic, each on the least loaded brokers (fewest replicas, then fewest
// preferred leaderships, then the lowest id), never two on one rack while
// a rack the partition does not use is left, and counts each placement
// before the next: new partitions go to brokers that joined after the
// topic was made, or to those with little on them, first. The first
// replica, the preferred leader, is the one with the fewest leaderships
// among those chosen.
func PlaceLeastLoaded(brokers []BrokerSlot, load Load, count int32, rf int) ([][]int32, error) {
	if rf < 1 || rf > len(brokers) {
		return nil, fmt.Errorf("%w: %d, with %d brokers", ErrInvalidReplicationFactor, rf, len(brokers))
	}
	racks := map[string]bool{}
	for _, b := range brokers {
		racks[b.Rack] = true
	}
	out := make([][]int32, 0, count)
	for range count {
		var chosen []int32
		used := map[string]bool{}
		for len(chosen) < rf {
			best := -1
			for i, b := range brokers {
				if slices.Contains(chosen, b.ID) {
					continue
				}
				if best < 0 || lessLoaded(b, brokers[best], used, len(used) < len(racks), load) {
					best = i
				}
			}
			b := brokers[best]
			chosen = append(chosen, b.ID)
			used[b.Rack] = true
			load.Replicas[b.ID]++
		}
		lead := 0
		for i, id := range chosen {
			if load.Leaders[id] < load.Leaders[chosen[lead]] {
				lead = i
			}
		}
		chosen[0], chosen[lead] = chosen[lead], chosen[0]
		load.Leaders[chosen[0]]++
		out = append(out, chosen)
	}
	return out, nil
}

// lessLoaded reports whether broker a is a better next replica than b: a
// rack not used yet (while one is left), fewer replicas, fewer
// leaderships, a lower id.
func lessLoaded(a, b BrokerSlot, used map[string]bool, racksLeft bool, load Load) bool {
	if racksLeft {
		if ua, ub := used[a.Rack], used[b.Rack]; ua != ub {
			return !ua
		}
	}
	if load.Replicas[a.ID] != load.Replicas[b.ID] {
		return load.Replicas[a.ID] < load.Replicas[b.ID]
	}
	if load.Leaders[a.ID] != load.Leaders[b.ID] {
		return load.Leaders[a.ID] < load.Leaders[b.ID]
	}
	return a.ID < b.ID
}
