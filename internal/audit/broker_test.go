package audit

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// The consumer side of the auditor, against records written by hand to a
// real broker in the heartbeat format of a made-up instance: it reports
// exactly the gap as lost, the duplicate as duplicated, the record that
// comes after a higher one as out of order (and late), and ignores other
// instances' heartbeats.
func TestConsumerThroughBroker(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const topic = "hand-written"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	made := InstanceID{'m', 'a', 'd', 'e', '-', 'u', 'p'}
	tr := NewTracker(made, []int32{0, 1}, time.Hour) // no grace expiry in this test
	write := func(p int32, v []byte) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	beat := func(p int32, seq uint64) []byte {
		return AppendHeartbeat(nil, Heartbeat{Instance: made, Partition: p, Sequence: seq, Produced: time.Now()})
	}
	// What the auditor's producer does: take a sequence, write it, tell the
	// tracker the cluster's answer. Sequence 3 of partition 0 is
	// "acknowledged" and never written: a cluster that lost it.
	for seq := range uint64(7) {
		tr.Sent(0)
		if seq != 3 {
			write(0, beat(0, seq))
		}
		if seq == 5 {
			write(0, beat(0, 5)) // a duplicate
		}
		tr.Acked(0, seq, nil, time.Now())
	}
	// Partition 1: 0, 2, 1 (1 comes after 2), another instance's heartbeat
	// and a value that is not a heartbeat.
	for range 3 {
		tr.Sent(1)
	}
	for _, seq := range []uint64{0, 2, 1} {
		write(1, beat(1, seq))
		tr.Acked(1, seq, nil, time.Now())
	}
	write(1, AppendHeartbeat(nil, Heartbeat{Instance: InstanceID{'o', 't', 'h', 'e', 'r'}, Partition: 1, Sequence: 9, Produced: time.Now()}))
	write(1, []byte(`{"not":"a heartbeat"}`))

	cons, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var mu sync.Mutex
	changed := make(chan struct{}, 1)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var lastErr time.Time
		consume(cctx, cons, &mu, tr, slog.New(slog.DiscardHandler), &lastErr, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	defer func() { stop(); <-done }()
	for {
		mu.Lock()
		s0, s1 := tr.Stats(0), tr.Stats(1)
		mu.Unlock()
		if s0.Seen+s0.Duplicated == 7 && s1.Seen+s1.Undecodable == 4 {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("not every record consumed: partition 0 %+v, partition 1 %+v", s0, s1)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	s0, s1 := tr.Stats(0), tr.Stats(1)
	type counts struct{ seen, lost, late, dup, ooo, unexp, undec uint64 }
	if got, want := (counts{s0.Seen, s0.Lost, s0.Late, s0.Duplicated, s0.OutOfOrder, s0.Unexpected, s0.Undecodable}), (counts{seen: 6, lost: 1, dup: 1}); got != want {
		t.Errorf("partition 0: %+v, want %+v", got, want)
	}
	for seq := range uint64(7) {
		want := seqSeen
		if seq == 3 {
			want = seqLost
		}
		if st := tr.partitions[0].state[seq]; st != want {
			t.Errorf("partition 0 sequence %d: state %d, want %d", seq, st, want)
		}
	}
	if got, want := (counts{s1.Seen, s1.Lost, s1.Late, s1.Duplicated, s1.OutOfOrder, s1.Unexpected, s1.Undecodable}), (counts{seen: 3, lost: 1, late: 1, ooo: 1, undec: 1}); got != want {
		t.Errorf("partition 1: %+v, want %+v", got, want)
	}
	if n := tr.Outstanding(); n != 0 {
		t.Errorf("%d outstanding", n)
	}
	if s0.LastSeen.IsZero() || s0.Latency(0.99) <= 0 {
		t.Errorf("partition 0: last seen %v, p99 %v", s0.LastSeen, s0.Latency(0.99))
	}
}
