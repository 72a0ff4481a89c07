package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// churnLedger is what the churn test's clients did: the records produced,
// the records consumed by any member, and every offset a member asked the
// broker to commit, each by partition.
type churnLedger struct {
	mu        sync.Mutex
	produced  map[int32]map[int64]bool
	consumed  map[int32]map[int64]bool
	committed map[int32]map[int64]bool
}

func addTo(m map[int32]map[int64]bool, p int32, o int64) {
	if m[p] == nil {
		m[p] = map[int64]bool{}
	}
	m[p][o] = true
}

// commitRequested records the offsets of a commit request (before it is
// sent for explicit commits, from the callback for autocommits).
func (l *churnLedger) commitRequested(topic string, offs map[string]map[int32]kgo.EpochOffset) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, eo := range offs[topic] {
		addTo(l.committed, p, eo.Offset)
	}
}

// churnMember is one group member of the churn test.
type churnMember struct {
	cl     *kgo.Client
	d      *killableDialer
	cancel context.CancelFunc
	done   chan struct{}
}

func (tb *testBroker) churnMember(t *testing.T, l *churnLedger, group, topic string, explicit bool) *churnMember {
	t.Helper()
	m := &churnMember{d: &killableDialer{}, done: make(chan struct{})}
	// Explicit committers record what they commit before sending it.
	commit := func(ctx context.Context, cl *kgo.Client) {
		offs := cl.UncommittedOffsets()
		if len(offs) == 0 {
			return
		}
		l.commitRequested(topic, offs)
		cl.CommitOffsetsSync(ctx, offs, nil)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(tb.addr), kgo.MetadataMinAge(50 * time.Millisecond), kgo.Dialer(m.d.dial),
		kgo.RetryTimeout(2 * time.Second),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.FetchMaxWait(100 * time.Millisecond), kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.SessionTimeout(1500 * time.Millisecond), kgo.RebalanceTimeout(3 * time.Second),
	}
	if explicit {
		opts = append(opts, kgo.DisableAutoCommit(),
			kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) { commit(ctx, cl) }))
	} else {
		opts = append(opts, kgo.AutoCommitInterval(200*time.Millisecond),
			kgo.AutoCommitCallback(func(_ *kgo.Client, req *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, _ error) {
				l.mu.Lock()
				defer l.mu.Unlock()
				for _, rt := range req.Topics {
					if rt.Topic != topic {
						continue
					}
					for _, rp := range rt.Partitions {
						addTo(l.committed, rp.Partition, rp.Offset)
					}
				}
			}))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if fs.IsClientClosed() {
				return
			}
			if recs := fs.Records(); len(recs) > 0 {
				l.mu.Lock()
				for _, r := range recs {
					addTo(l.consumed, r.Partition, r.Offset)
				}
				l.mu.Unlock()
			}
			if explicit {
				commit(ctx, cl)
			}
		}
	}()
	return m
}

// leave closes the member cleanly: it commits (autocommit on revoke, or the
// explicit revoke callback) and sends LeaveGroup.
func (m *churnMember) leave() {
	m.cancel()
	m.cl.Close()
	<-m.done
}

// vanish cuts the member's connections first, so it stops heartbeating and
// its LeaveGroup never arrives: the broker must expire it.
func (m *churnMember) vanish() {
	m.d.kill()
	m.cancel()
	m.cl.Close()
	<-m.done
}

// TestGroupChurn: cooperative-sticky classic members join, leave cleanly
// and vanish at random while a producer writes to a 6-partition topic.
// Every produced record is consumed by some member at least once, and
// every offset the group ends with committed, and each sampled with
// OffsetFetch during the churn, is one a member committed.
func TestGroupChurn(t *testing.T) {
	const (
		topic, group = "churn", "churn-g"
		partitions   = 6
		churnFor     = 6 * time.Second
	)
	tb := start(t, t.TempDir(), "", map[string]string{"group.initial.rebalance.delay.ms": "0", "group.min.session.timeout.ms": "500"})
	createTopic(t, tb.admin(), topic, partitions, nil)
	l := &churnLedger{produced: map[int32]map[int64]bool{}, consumed: map[int32]map[int64]bool{}, committed: map[int32]map[int64]bool{}}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))

	// The producer writes numbered records until the churn ends.
	prod := tb.client(kgo.DefaultProduceTopic(topic))
	stopProducing := make(chan struct{})
	produceDone := make(chan error, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stopProducing:
				produceDone <- nil
				return
			default:
			}
			recs := make([]*kgo.Record, 20)
			for i := range recs {
				recs[i] = &kgo.Record{Key: []byte(fmt.Sprintf("k%d", n)), Value: []byte(fmt.Sprintf("v%d", n))}
				n++
			}
			if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				produceDone <- err
				return
			}
			l.mu.Lock()
			for _, r := range recs {
				addTo(l.produced, r.Partition, r.Offset)
			}
			l.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()

	// A sampler fetches the group's committed offsets while the churn runs;
	// each one seen is checked at the end, once every commit request a
	// member made is in the ledger (autocommits are recorded from their
	// callback, after the broker has the commit).
	type sample struct {
		p  int32
		at int64
	}
	var samples []sample
	stopSampling := make(chan struct{})
	samplingDone := make(chan struct{})
	sampler := tb.admin()
	go func() {
		defer close(samplingDone)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := sampler.FetchOffsets(ctx, group)
			cancel()
			if err != nil {
				continue // e.g. the group is mid-rebalance or the request timed out
			}
			resp.Each(func(o kadm.OffsetResponse) {
				if o.Err == nil && o.Topic == topic {
					samples = append(samples, sample{o.Partition, o.At})
				}
			})
		}
	}()

	var live []*churnMember
	joins, leaves, vanishes := 0, 0, 0
	explicit := false
	join := func() {
		live = append(live, tb.churnMember(t, l, group, topic, explicit))
		explicit = !explicit
		joins++
	}
	join()
	end := time.Now().Add(churnFor)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(100+rng.Intn(400)) * time.Millisecond)
		switch {
		case len(live) < 2 || (len(live) < 5 && rng.Intn(2) == 0):
			join()
		default:
			i := rng.Intn(len(live))
			m := live[i]
			live = append(live[:i], live[i+1:]...)
			if rng.Intn(2) == 0 {
				m.leave()
				leaves++
			} else {
				m.vanish()
				vanishes++
			}
		}
	}
	close(stopProducing)
	close(stopSampling)
	<-samplingDone
	if err := <-produceDone; err != nil {
		t.Fatalf("produce: %v", err)
	}
	t.Logf("%d joins, %d clean leaves, %d vanished", joins, leaves, vanishes)

	// The members still in the group consume the rest.
	covered := func() (missing int) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for p, offs := range l.produced {
			for o := range offs {
				if !l.consumed[p][o] {
					missing++
				}
			}
		}
		return missing
	}
	deadline := time.Now().Add(45 * time.Second)
	for missing := covered(); missing > 0; missing = covered() {
		if time.Now().After(deadline) {
			t.Fatalf("%d produced records never consumed", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range live {
		m.leave()
	}

	// Every offset committed for the group is one some member committed.
	resp, err := tb.admin().FetchOffsets(ctxT(t), group)
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := 0
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil {
			t.Errorf("partition %d: %v", o.Partition, o.Err)
			return
		}
		seen++
		if o.Topic != topic || !l.committed[o.Partition][o.At] {
			t.Errorf("committed offset %s/%d at %d was never committed by a member", o.Topic, o.Partition, o.At)
		}
		if high := int64(len(l.produced[o.Partition])); o.At > high {
			t.Errorf("partition %d committed at %d past its %d records", o.Partition, o.At, high)
		}
	})
	if seen == 0 {
		t.Errorf("no committed offsets")
	}
	for _, s := range samples {
		if !l.committed[s.p][s.at] {
			t.Errorf("offset %d of partition %d, fetched during the churn, was never committed by a member", s.at, s.p)
		}
	}
	n := 0
	for _, offs := range l.produced {
		n += len(offs)
	}
	t.Logf("%d records produced, %d offsets fetched at the end, %d sampled during the churn", n, seen, len(samples))
}
