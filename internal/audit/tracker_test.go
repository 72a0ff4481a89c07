package audit

import (
	"errors"
	"testing"
	"time"
)

var (
	testInstance = InstanceID{1, 2, 3}
	otherInst    = InstanceID{9}
	t0           = time.Unix(1_700_000_000, 0)
)

func hb(p int32, seq uint64) Heartbeat {
	return Heartbeat{Instance: testInstance, Partition: p, Sequence: seq, Produced: t0}
}

// step is one event: s sends, a acks (f fails), v sees a sequence.
type step struct {
	op  byte // 's' send, 'a' ack, 'f' failed ack, 'v' seen, 't' tick at +ms, 'F' finish
	seq uint64
}

func runSteps(steps []step) Stats {
	tr := NewTracker(testInstance, []int32{0}, 5*time.Second)
	for _, st := range steps {
		switch st.op {
		case 's':
			if got := tr.Sent(0); got != st.seq {
				panic("sequences are taken in order")
			}
		case 'a':
			tr.Acked(0, st.seq, nil, t0)
		case 'f':
			tr.Acked(0, st.seq, errors.New("boom"), t0)
		case 'v':
			tr.Seen(0, hb(0, st.seq), t0.Add(10*time.Millisecond))
		case 't':
			tr.Tick(t0.Add(time.Duration(st.seq) * time.Millisecond))
		case 'F':
			tr.Finish()
		}
	}
	return tr.Stats(0)
}

func sendAck(n int) []step {
	var s []step
	for i := range n {
		s = append(s, step{'s', uint64(i)}, step{'a', uint64(i)})
	}
	return s
}

func TestTracker(t *testing.T) {
	type counts struct{ seen, lost, late, dup, ooo, perr, unexp uint64 }
	for _, c := range []struct {
		name  string
		steps []step
		want  counts
	}{
		{"in order", append(sendAck(3), step{'v', 0}, step{'v', 1}, step{'v', 2}), counts{seen: 3}},
		{"gap: passed over and acknowledged is lost", append(sendAck(3), step{'v', 0}, step{'v', 2}), counts{seen: 2, lost: 1}},
		{"duplicate", append(sendAck(2), step{'v', 0}, step{'v', 1}, step{'v', 1}, step{'v', 0}), counts{seen: 2, dup: 2}},
		{"out of order: passed over, then seen", append(sendAck(3), step{'v', 0}, step{'v', 2}, step{'v', 1}), counts{seen: 3, lost: 1, late: 1, ooo: 1}},
		{"seen before the ack, then acknowledged", []step{{'s', 0}, {'s', 1}, {'v', 0}, {'v', 1}, {'a', 0}, {'a', 1}}, counts{seen: 2}},
		{"passed over before its ack, then acknowledged: lost",
			[]step{{'s', 0}, {'s', 1}, {'a', 1}, {'v', 1}, {'a', 0}}, counts{seen: 1, lost: 1}},
		{"passed over before its ack, then failed: a produce error, not lost",
			[]step{{'s', 0}, {'s', 1}, {'a', 1}, {'v', 1}, {'f', 0}}, counts{seen: 1, perr: 1}},
		{"failed and never seen: not lost", append([]step{{'s', 0}, {'f', 0}}, append([]step{{'s', 1}, {'a', 1}}, step{'v', 1}, step{'F', 0})...), counts{seen: 1, perr: 1}},
		{"not seen within the grace period", append(sendAck(1), step{'t', 4999}), counts{}},
		{"not seen within the grace period: lost", append(sendAck(1), step{'t', 5000}), counts{lost: 1}},
		{"lost to the grace period, then seen in order: late, not out of order", append(sendAck(1), step{'t', 5000}, step{'v', 0}), counts{seen: 1, lost: 1, late: 1}},
		{"never sent", append(sendAck(1), step{'v', 1}), counts{unexp: 1}},
		{"finish: acknowledged and unseen are lost, unacknowledged are produce errors",
			[]step{{'s', 0}, {'a', 0}, {'s', 1}, {'F', 0}}, counts{lost: 1, perr: 1}},
	} {
		s := runSteps(c.steps)
		got := counts{s.Seen, s.Lost, s.Late, s.Duplicated, s.OutOfOrder, s.ProduceErrors, s.Unexpected}
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestTrackerIgnoresOthersAndMisrouted(t *testing.T) {
	tr := NewTracker(testInstance, []int32{0, 1}, time.Second)
	tr.Sent(0)
	tr.Acked(0, 0, nil, t0)
	other := hb(0, 0)
	other.Instance = otherInst
	if tr.Seen(0, other, t0) {
		t.Fatal("another instance's heartbeat was taken")
	}
	if !tr.Seen(1, hb(0, 0), t0) { // partition 0's heartbeat read from partition 1
		t.Fatal("own heartbeat not taken")
	}
	if s0, s1 := tr.Stats(0), tr.Stats(1); s0.Seen != 0 || s1.Unexpected != 1 {
		t.Fatalf("partition 0 %+v, partition 1 %+v", s0, s1)
	}
}

// The window forgets old sequences: an acknowledged one that leaves it
// unseen is lost, a record of it afterwards is unexpected.
func TestTrackerWindow(t *testing.T) {
	tr := NewTracker(testInstance, []int32{0}, time.Hour)
	for i := range WindowSeqs + 1 {
		seq := tr.Sent(0)
		tr.Acked(0, seq, nil, t0)
		if i > 0 {
			tr.Seen(0, hb(0, seq), t0)
		}
	}
	// seq 1 was seen while 0 was in the window: 0 was passed over.
	if s := tr.Stats(0); s.Lost != 1 || s.Seen != WindowSeqs {
		t.Fatalf("%+v", s)
	}
	tr.Seen(0, hb(0, 0), t0)
	if s := tr.Stats(0); s.Unexpected != 1 || s.Late != 0 {
		t.Fatalf("%+v", s)
	}
	if n := tr.Outstanding(); n != 0 {
		t.Fatalf("outstanding %d", n)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h latencyHist
	for i := 1; i <= 100; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		got := h.quantile(c.q)
		if got < c.want || got > c.want+c.want/16 {
			t.Errorf("q%v = %v, want %v (+6%%)", c.q, got, c.want)
		}
	}
	h.record(time.Hour) // above histMax: counted as histMax
	if h.quantile(1) != histMax {
		t.Errorf("max %v", h.quantile(1))
	}
}

func TestHistBuckets(t *testing.T) {
	if histBuckets != histBucketing.Len(histMaxBits) {
		t.Fatalf("histBuckets %d, the bucketing has %d below 2^%d", histBuckets, histBucketing.Len(histMaxBits), histMaxBits)
	}
}
