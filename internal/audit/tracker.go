package audit

import (
	"fmt"
	"slices"
	"time"
)

// WindowSeqs is how many sequence numbers of a partition the tracker
// remembers, the newest sent and those before it: 9 KiB a partition.
// A sequence older than that is settled when it leaves the window (lost if
// it was acknowledged and not seen) and a record of it that arrives later
// is counted as unexpected ("stale"): too old to tell a duplicate from a
// late one. Options.validate keeps Interval*WindowSeqs above the grace
// period and the delivery timeout, so that the window forgets only
// sequences already settled.
const WindowSeqs = 1024

// The state of a sequence number in a partition's window.
const (
	seqFree    uint8 = iota // not sent (yet)
	seqPending              // sent, not acknowledged, not seen
	seqPassed               // sent, not acknowledged, a later sequence seen: lost if the ack is a success
	seqAcked                // acknowledged, not seen
	seqFailed               // the produce failed (or was never acknowledged): not expected
	seqSeen                 // consumed
	seqLost                 // acknowledged and counted lost
)

// Stats are the counts of one partition (or, summed, of a broker).
type Stats struct {
	Sent          uint64 `json:"sent"`           // heartbeats produced (handed to the client)
	Acked         uint64 `json:"acked"`          // acknowledged by the cluster (acks=all)
	ProduceErrors uint64 `json:"produce_errors"` // failed, or not acknowledged in time
	Seen          uint64 `json:"seen"`           // distinct sequences consumed
	Lost          uint64 `json:"lost"`           // acknowledged and not seen: passed over, or not within the grace period
	Late          uint64 `json:"late"`           // seen after having been counted lost (Lost - Late are still missing)
	Duplicated    uint64 `json:"duplicated"`     // a sequence consumed again
	OutOfOrder    uint64 `json:"out_of_order"`   // consumed after a higher sequence of the partition
	Unexpected    uint64 `json:"unexpected"`     // this instance's records with a sequence never sent, of another partition, or older than the window
	Undecodable   uint64 `json:"undecodable"`    // values on the topic that are not heartbeats
	lat           latencyHist
	prom          [len(promBuckets)]uint64 // latencies per Prometheus bucket (not cumulative), for /metrics
	latSum        float64                  // seconds
	LastSeen      time.Time                `json:"last_seen"` // consume time of the last heartbeat seen; zero: none
}

// Missing is how many acknowledged heartbeats are lost and have not
// arrived since.
func (s *Stats) Missing() uint64 { return s.Lost - s.Late }

// add sums o into s.
func (s *Stats) add(o *Stats) {
	s.Sent += o.Sent
	s.Acked += o.Acked
	s.ProduceErrors += o.ProduceErrors
	s.Seen += o.Seen
	s.Lost += o.Lost
	s.Late += o.Late
	s.Duplicated += o.Duplicated
	s.OutOfOrder += o.OutOfOrder
	s.Unexpected += o.Unexpected
	s.Undecodable += o.Undecodable
	s.lat.merge(&o.lat)
	for i, c := range o.prom {
		s.prom[i] += c
	}
	s.latSum += o.latSum
	if o.LastSeen.After(s.LastSeen) {
		s.LastSeen = o.LastSeen
	}
}

// Latency returns the latency at quantile q (0..1) of the heartbeats seen.
func (s *Stats) Latency(q float64) time.Duration { return s.lat.quantile(q) }

// MaxLatency is the largest latency seen.
func (s *Stats) MaxLatency() time.Duration { return s.lat.max }

// promBuckets are the upper bounds, in seconds, of the latency histogram
// on /metrics: 1 ms to about 33 s.
var promBuckets = [...]float64{.001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1.024, 2.048, 4.096, 8.192, 16.384, 32.768}

// partitionTrack is what the tracker knows of one partition.
type partitionTrack struct {
	next        uint64 // the next sequence to send; the window is [next-WindowSeqs, next)
	unsettled   uint64 // every sequence below it is settled (seen, lost or failed)
	highestSeen uint64 // valid when anySeen
	anySeen     bool
	state       [WindowSeqs]uint8
	ackedAt     [WindowSeqs]time.Duration // of seqAcked entries: when the ack came, since the tracker's epoch
	stats       Stats
}

// Tracker is the auditor's bookkeeping, a pure state machine: events come
// in with their time (Sent, Acked, Seen, Tick, Finish) and it holds no
// goroutine, clock or connection. It follows the heartbeats of one
// instance. Not safe for concurrent use: the Auditor guards it with its
// lock. Memory: about 14 KiB a partition, whatever the run's length.
type Tracker struct {
	instance   InstanceID
	grace      time.Duration
	epoch      time.Time // ack times are kept as offsets from it (monotonic when the times given are)
	partitions map[int32]*partitionTrack
}

// NewTracker follows instance's heartbeats on partitions: an acknowledged
// heartbeat not seen within grace of its acknowledgement is lost.
func NewTracker(instance InstanceID, partitions []int32, grace time.Duration) *Tracker {
	t := &Tracker{instance: instance, grace: grace, epoch: time.Now(), partitions: make(map[int32]*partitionTrack, len(partitions))}
	for _, p := range partitions {
		t.partitions[p] = &partitionTrack{}
	}
	return t
}

// Partitions returns the partitions tracked, sorted.
func (t *Tracker) Partitions() []int32 {
	ps := make([]int32, 0, len(t.partitions))
	for p := range t.partitions {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func (t *Tracker) track(p int32) *partitionTrack {
	pt := t.partitions[p]
	if pt == nil {
		panic(fmt.Sprintf("BUG: audit: partition %d is not tracked", p))
	}
	return pt
}

// Sent takes the next sequence number of partition p for a heartbeat
// about to be produced, and returns it. The sequence leaving the window
// is settled: lost if acknowledged and not seen, a produce error if never
// acknowledged.
func (t *Tracker) Sent(p int32) uint64 {
	pt := t.track(p)
	seq := pt.next
	if seq >= WindowSeqs {
		old := seq - WindowSeqs
		t.settle(pt, old, true)
		if pt.unsettled <= old {
			pt.unsettled = old + 1
		}
	}
	pt.state[seq%WindowSeqs] = seqPending
	pt.next++
	pt.stats.Sent++
	return seq
}

// settle ends an unsettled sequence: an acknowledged one is lost; one never
// acknowledged is a produce error when unacked is true (left as it is
// otherwise).
func (t *Tracker) settle(pt *partitionTrack, seq uint64, unacked bool) {
	i := seq % WindowSeqs
	switch pt.state[i] {
	case seqAcked:
		pt.state[i] = seqLost
		pt.stats.Lost++
	case seqPending, seqPassed:
		if unacked {
			pt.state[i] = seqFailed
			pt.stats.ProduceErrors++
		}
	}
}

// inWindow is whether seq was sent and is still remembered.
func (pt *partitionTrack) inWindow(seq uint64) bool {
	return seq < pt.next && pt.next-seq <= WindowSeqs
}

// Acked records the cluster's answer to the produce of seq in p at time
// now: a success (err nil) or a failure. A success for a sequence that a
// later one was already seen past is a loss.
func (t *Tracker) Acked(p int32, seq uint64, err error, now time.Time) {
	pt := t.track(p)
	if !pt.inWindow(seq) {
		return // settled when it left the window
	}
	i := seq % WindowSeqs
	switch pt.state[i] {
	case seqPending:
		if err != nil {
			pt.state[i] = seqFailed
			pt.stats.ProduceErrors++
			return
		}
		pt.state[i] = seqAcked
		pt.ackedAt[i] = now.Sub(t.epoch)
		pt.stats.Acked++
	case seqPassed:
		if err != nil {
			pt.state[i] = seqFailed
			pt.stats.ProduceErrors++
			return
		}
		pt.state[i] = seqLost
		pt.stats.Acked++
		pt.stats.Lost++
	case seqSeen:
		// Consumed before its acknowledgement arrived: it is in the log,
		// whatever the answer says.
		if err == nil {
			pt.stats.Acked++
		}
	}
}

// Undecodable counts a value on partition p that is not a heartbeat.
func (t *Tracker) Undecodable(p int32) {
	if pt := t.partitions[p]; pt != nil {
		pt.stats.Undecodable++
	}
}

// Seen records heartbeat h consumed from partition p at time now (wall
// clock, the same as the producer's). Heartbeats of other instances are
// ignored. It returns whether h was this instance's.
func (t *Tracker) Seen(p int32, h Heartbeat, now time.Time) bool {
	if h.Instance != t.instance {
		return false
	}
	pt := t.partitions[p]
	if pt == nil {
		return true // a partition added after the start: not audited
	}
	if h.Partition != p || !pt.inWindow(h.Sequence) {
		pt.stats.Unexpected++
		return true
	}
	seq, i := h.Sequence, h.Sequence%WindowSeqs
	switch pt.state[i] {
	case seqSeen:
		pt.stats.Duplicated++
		return true
	case seqLost:
		pt.stats.Late++
	}
	if pt.anySeen && seq < pt.highestSeen {
		pt.stats.OutOfOrder++
	} else {
		// Every sequence between the highest seen and this one was passed
		// over: the consumer reads a partition in order and the producer
		// (idempotent, one at a time per partition) writes it in order.
		from := pt.next - min(pt.next, WindowSeqs)
		if pt.anySeen {
			from = max(from, pt.highestSeen+1)
		}
		for q := from; q < seq; q++ {
			switch j := q % WindowSeqs; pt.state[j] {
			case seqAcked:
				pt.state[j] = seqLost
				pt.stats.Lost++
			case seqPending:
				pt.state[j] = seqPassed
			}
		}
		pt.highestSeen, pt.anySeen = seq, true
	}
	pt.state[i] = seqSeen
	pt.stats.Seen++
	lat := now.Sub(h.Produced)
	pt.stats.lat.record(lat)
	sec := max(lat.Seconds(), 0)
	pt.stats.latSum += sec
	for b, bound := range promBuckets {
		if sec <= bound {
			pt.stats.prom[b]++
			break
		}
	}
	pt.stats.LastSeen = now
	t.advance(pt)
	return true
}

// advance moves pt.unsettled past the settled sequences.
func (t *Tracker) advance(pt *partitionTrack) {
	for pt.unsettled < pt.next {
		switch pt.state[pt.unsettled%WindowSeqs] {
		case seqSeen, seqLost, seqFailed:
			pt.unsettled++
			continue
		}
		return
	}
}

// Tick counts as lost every acknowledged heartbeat not seen within the
// grace period of its acknowledgement, as of now.
func (t *Tracker) Tick(now time.Time) {
	for _, pt := range t.partitions {
		t.advance(pt)
		for q := pt.unsettled; q < pt.next; q++ {
			i := q % WindowSeqs
			if pt.state[i] == seqAcked && now.Sub(t.epoch)-pt.ackedAt[i] >= t.grace {
				pt.state[i] = seqLost
				pt.stats.Lost++
			}
		}
		t.advance(pt)
	}
}

// Outstanding is how many heartbeats are neither seen nor settled:
// not acknowledged yet, or acknowledged and not seen yet.
func (t *Tracker) Outstanding() int {
	n := 0
	for _, pt := range t.partitions {
		t.advance(pt)
		for q := pt.unsettled; q < pt.next; q++ {
			switch pt.state[q%WindowSeqs] {
			case seqPending, seqPassed, seqAcked:
				n++
			}
		}
	}
	return n
}

// Finish settles everything at the end of a run: acknowledged heartbeats
// not seen are lost, those never acknowledged are produce errors.
func (t *Tracker) Finish() {
	for _, pt := range t.partitions {
		for q := pt.unsettled; q < pt.next; q++ {
			t.settle(pt, q, true)
		}
		t.advance(pt)
	}
}

// Stats returns a copy of partition p's counts.
func (t *Tracker) Stats(p int32) Stats {
	return t.track(p).stats
}
