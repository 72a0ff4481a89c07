package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Balancing by bytes: after BalancePlan has evened out the replica counts,
// EvenBytes swaps replicas between brokers (a replica of a heavy partition
// on the most loaded broker for one of a light partition on the least
// loaded), which keeps every count as it is and evens out the bytes each
// broker holds and takes in. A partition's weight is its size (the largest
// of its replicas, from DescribeLogDirs) plus what it takes in over
// rateHorizon at the rate measured over --sample (two DescribeLogDirs
// that far apart): disk use now, and where the byte rates take it.

// rateHorizon is how far ahead the measured byte rates count in a
// partition's weight: an hour of writes weighs like an hour's worth of
// bytes already on disk.
const rateHorizon = time.Hour

// Bounds of EvenBytes: the swaps one balance plans, the candidates it
// weighs for each replica of the heaviest broker (those of the lightest
// nearest the best weight), and the gap between the heaviest and the
// lightest broker it leaves alone, as a share of the average broker's
// weight.
const (
	maxByteSwaps   = 10_000
	swapCandidates = 16
	byteTolerance  = 0.05
)

// nearby returns up to n indexes of a sorted slice of length size, nearest
// to i first.
func nearby(i, size, n int) []int {
	out := make([]int, 0, n)
	for d := 0; len(out) < n && (i-d-1 >= 0 || i+d < size); d++ {
		if i+d < size {
			out = append(out, i+d)
		}
		if i-d-1 >= 0 && len(out) < n {
			out = append(out, i-d-1)
		}
	}
	return out
}

// PartitionLoad is what a partition weighs for balancing.
type PartitionLoad struct {
	Bytes int64   // its size on disk (its largest replica)
	Rate  float64 // bytes per second it takes in (0 if not measured)
}

// weight is the bytes a partition is expected to hold rateHorizon from now.
func (l PartitionLoad) weight() float64 {
	return float64(l.Bytes) + l.Rate*rateHorizon.Seconds()
}

// topicPartition names a partition.
type topicPartition struct {
	topic     string
	partition int32
}

// measureLoads reads every partition's size and, with sample > 0, its
// byte rate over sample.
func measureLoads(ctx context.Context, adm *kadm.Client, sample time.Duration) (map[topicPartition]PartitionLoad, error) {
	sizes := func() (map[topicPartition]int64, error) {
		dirs, err := adm.DescribeAllLogDirs(ctx, nil)
		var se *kadm.ShardErrors
		if errors.As(err, &se) && !se.AllFailed {
			err = nil // a broker down: its replicas count as the others say
		}
		if err != nil {
			return nil, fmt.Errorf("log dirs: %w", err)
		}
		out := map[topicPartition]int64{}
		dirs.Each(func(d kadm.DescribedLogDir) {
			d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
				if p.IsFuture {
					return
				}
				tp := topicPartition{p.Topic, p.Partition}
				out[tp] = max(out[tp], p.Size)
			})
		})
		return out, nil
	}
	first, err := sizes()
	if err != nil {
		return nil, err
	}
	loads := make(map[topicPartition]PartitionLoad, len(first))
	for tp, n := range first {
		loads[tp] = PartitionLoad{Bytes: n}
	}
	if sample <= 0 {
		return loads, nil
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(sample):
	}
	second, err := sizes()
	if err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	for tp, n := range second {
		l := loads[tp]
		l.Bytes = n
		// Retention deleting segments makes a partition shrink: no rate.
		l.Rate = max(float64(n-first[tp]), 0) / secs
		loads[tp] = l
	}
	return loads, nil
}

// EvenBytes adds to plan (BalancePlan's, or any) the replica swaps that
// even out the weight each broker holds, among the partitions of the
// topics matching re, keeping racks apart and every broker's replica count
// as it is. Brokers for which skip is true (cordoned) get no new replica.
// A swap is made only when it narrows the gap between the heaviest and the
// lightest broker; each partition moves at most once more than plan had it.
func EvenBytes(md kadm.Metadata, plan Plan, loads map[topicPartition]PartitionLoad, re *regexp.Regexp, skip func(int32) bool) Plan {
	racks := map[int32]string{}
	var brokers []int32
	for _, b := range md.Brokers {
		if skip != nil && skip(b.NodeID) {
			continue
		}
		brokers = append(brokers, b.NodeID)
		if b.Rack != nil {
			racks[b.NodeID] = *b.Rack
		}
	}
	slices.Sort(brokers)
	type part struct {
		tp      topicPartition
		current []int32
		target  []int32
		w       float64
		swapped bool
	}
	planned := map[topicPartition][]int32{}
	for _, e := range plan.Partitions {
		planned[topicPartition{e.Topic, e.Partition}] = e.Replicas
	}
	var parts []*part
	weight := map[int32]float64{}
	fixedLeaders := map[int32]int{} // preferred replicas of the partitions that stay
	var names []string
	for name := range md.Topics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, pd := range md.Topics[name].Partitions.Sorted() {
			tp := topicPartition{name, pd.Partition}
			target := pd.Replicas
			if r, ok := planned[tp]; ok {
				target = r
			}
			p := &part{tp: tp, current: pd.Replicas, target: slices.Clone(target), w: loads[tp].weight()}
			for _, r := range p.target {
				weight[r] += p.w
			}
			switch {
			case re.MatchString(name) && len(p.target) > 0:
				parts = append(parts, p)
			case len(p.target) > 0:
				fixedLeaders[p.target[0]]++
			}
		}
	}
	var total float64
	for _, b := range brokers {
		total += weight[b]
	}
	for range maxByteSwaps {
		hi, lo := extremes(brokers, weight)
		if hi < 0 || hi == lo {
			break
		}
		gap := weight[hi] - weight[lo]
		if gap <= byteTolerance*total/float64(len(brokers)) {
			break // close enough: a swap would copy bytes for little
		}
		// Candidates: p gives hi's replica to lo, q lo's to hi. The q
		// whose weight is nearest p's minus half the gap narrows it the
		// most; one that differs from p by 0 or by the gap or more
		// narrows nothing.
		var ps, qs []*part
		for _, p := range parts {
			switch {
			case p.swapped:
			case slices.Contains(p.target, hi) && !slices.Contains(p.target, lo) && rackFree(racks, p.target, hi, lo):
				ps = append(ps, p)
			case slices.Contains(p.target, lo) && !slices.Contains(p.target, hi) && rackFree(racks, p.target, lo, hi):
				qs = append(qs, p)
			}
		}
		sort.Slice(qs, func(i, j int) bool { return qs[i].w < qs[j].w })
		var bestP, bestQ *part
		best := math.Inf(1)
		for _, p := range ps {
			want := p.w - gap/2
			i := sort.Search(len(qs), func(i int) bool { return qs[i].w >= want })
			for _, j := range nearby(i, len(qs), swapCandidates) {
				q := qs[j]
				d := p.w - q.w
				if d <= 0 || d >= gap {
					continue
				}
				if off := math.Abs(d - gap/2); off < best {
					best, bestP, bestQ = off, p, q
				}
			}
		}
		if bestP == nil {
			break
		}
		bestP.target[slices.Index(bestP.target, hi)] = lo
		bestQ.target[slices.Index(bestQ.target, lo)] = hi
		bestP.swapped, bestQ.swapped = true, true
		d := bestP.w - bestQ.w
		weight[hi] -= d
		weight[lo] += d
	}
	// A swap may have moved preferred leaderships: even them out again by
	// reordering replicas (no data moves).
	targets := make([][]int32, len(parts))
	for i, p := range parts {
		targets[i] = p.target
	}
	evenPreferred(brokers, fixedLeaders, targets)
	out := Plan{Version: 1, Partitions: []PlanEntry{}}
	for _, p := range parts {
		if !slices.Equal(p.target, p.current) {
			out.Partitions = append(out.Partitions, PlanEntry{Topic: p.tp.topic, Partition: p.tp.partition, Replicas: p.target, Current: p.current})
		}
	}
	return out
}

// evenPreferred reorders the replica lists in targets (in place) so that
// the brokers' counts of preferred (first) replicas are within one of each
// other where the lists allow: a list led by the broker with the most gets
// the one with the fewest first, when it holds a replica. leaders counts
// the preferred replicas of the partitions not in targets; it is updated.
func evenPreferred(brokers []int32, leaders map[int32]int, targets [][]int32) {
	for _, t := range targets {
		leaders[t[0]]++
	}
	for range maxBalanceMoves {
		hi, lo := extremes(brokers, leaders)
		if hi < 0 || leaders[hi]-leaders[lo] <= 1 {
			return
		}
		moved := false
		for _, t := range targets {
			if j := slices.Index(t, lo); t[0] == hi && j > 0 {
				t[0], t[j] = t[j], t[0]
				leaders[hi]--
				leaders[lo]++
				moved = true
				break
			}
		}
		if !moved {
			return
		}
	}
}

// extremes returns the brokers with the most and the least of count (the
// lowest id on a tie); -1 and -1 for no brokers.
func extremes[N int | float64](brokers []int32, count map[int32]N) (hi, lo int32) {
	hi, lo = -1, -1
	for _, b := range brokers {
		if hi < 0 || count[b] > count[hi] {
			hi = b
		}
		if lo < 0 || count[b] < count[lo] {
			lo = b
		}
	}
	return hi, lo
}

// rackFree says whether replicas, with from replaced by to, keep to's rack
// (if it has one) free of the partition's other replicas.
func rackFree(racks map[int32]string, replicas []int32, from, to int32) bool {
	if racks[to] == "" {
		return true
	}
	for _, r := range replicas {
		if r != from && racks[r] == racks[to] {
			return false
		}
	}
	return true
}
