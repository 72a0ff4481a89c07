package group

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/vfs"
)

// offsetsLog is n partitions of __consumer_offsets on an in-memory FS.
type offsetsLog struct {
	t     *testing.T
	fs    vfs.FS
	mu    sync.Mutex
	parts []*partition.Partition
}

func openOffsetsLog(t *testing.T, fs vfs.FS, n int) *offsetsLog {
	t.Helper()
	l := &offsetsLog{t: t, fs: fs}
	for i := range n {
		p, err := partition.Open(partition.Options{FS: fs, Dir: fmt.Sprintf("%s-%d", Topic, i), Config: partition.DefaultConfig()})
		if err != nil {
			t.Fatal(err)
		}
		l.parts = append(l.parts, p)
	}
	return l
}

func (l *offsetsLog) partition(p int32) (*partition.Partition, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if int(p) >= len(l.parts) {
		return nil, false
	}
	return l.parts[p], true
}

func (l *offsetsLog) close() {
	for _, p := range l.parts {
		if err := p.Close(); err != nil {
			l.t.Error(err)
		}
	}
}

func startCoordinator(t *testing.T, l *offsetsLog) *Coordinator {
	t.Helper()
	c := New(Config{Settings: Settings{MinSessionTimeout: time.Millisecond, InitialRebalanceDelay: -1}, Partition: l.partition})
	c.Start(len(l.parts))
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("coordinator did not load")
	}
	return c
}

// call waits for a reply.
func call[T any](t *testing.T, f func(reply func(T))) T {
	t.Helper()
	ch := make(chan T, 1)
	f(func(v T) { ch <- v })
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no reply")
		panic("unreachable")
	}
}

// TestCoordinatorRestart runs a group and commits through the runners on
// real partitions, then reopens the log and finds both again.
func TestCoordinatorRestart(t *testing.T) {
	fs := vfs.NewMem()
	l := openOffsetsLog(t, fs, 3)
	c := startCoordinator(t, l)

	req := joinReq("g", "")
	first := call(t, func(f func(JoinResult)) { c.Join(req, f) })
	if first.Err != kerr.MemberIDRequired {
		t.Fatalf("first join: %+v", first)
	}
	req.MemberID = first.MemberID
	j := call(t, func(f func(JoinResult)) { c.Join(req, f) })
	if j.Err != nil || j.Generation != 1 || j.Leader != j.MemberID {
		t.Fatalf("join: %+v", j)
	}
	s := call(t, func(f func(SyncResult)) {
		c.Sync(SyncRequest{Group: "g", MemberID: j.MemberID, Generation: 1, Assignments: map[string][]byte{j.MemberID: []byte("all")}}, f)
	})
	if s.Err != nil || string(s.Assignment) != "all" {
		t.Fatalf("sync: %+v", s)
	}
	tp := TopicPartition{"t", 3}
	cr := call(t, func(f func(CommitResult)) {
		c.Commit(CommitRequest{Group: "g", MemberID: j.MemberID, Generation: 1, RetentionMs: -1,
			Offsets: []CommitOffset{{TopicPartition: tp, Offset: 99, LeaderEpoch: 0, Metadata: "m"}}}, f)
	})
	if cr.Errs[0] != nil {
		t.Fatalf("commit: %+v", cr)
	}
	// The group's partition holds the records, durable.
	p, _ := l.partition(PartitionFor("g", 3))
	if p.HighWatermark() != 2 || p.Log().DurableOffset() != 2 {
		t.Fatalf("group partition end %d durable %d, want 2 and 2", p.HighWatermark(), p.Log().DurableOffset())
	}
	lr := call(t, func(f func(LeaveResult)) { c.Leave("g", []LeaveMember{{MemberID: j.MemberID}}, f) })
	if lr.Err != nil || lr.Members[0] != nil {
		t.Fatalf("leave: %+v", lr)
	}
	c.Close()
	l.close()

	l2 := openOffsetsLog(t, fs, 3)
	defer l2.close()
	c2 := startCoordinator(t, l2)
	defer c2.Close()
	f := call(t, func(f func(FetchResult)) {
		c2.FetchOffsets(FetchRequest{Group: "g", Partitions: []TopicPartition{tp}}, f)
	})
	if f.Err != nil || f.Offsets[0].Offset != 99 || f.Offsets[0].Metadata != "m" {
		t.Fatalf("fetch after restart: %+v", f)
	}
	d := call(t, func(f func(Description)) { c2.Describe("g", f) })
	if d.State != "Empty" || d.ProtocolType != "consumer" {
		t.Fatalf("describe after restart: %+v", d)
	}
	groups, err := call2(t, func(f func([]Listing, error)) { c2.List(ListRequest{}, f) })
	if err != nil || len(groups) != 1 || groups[0].Group != "g" {
		t.Fatalf("list: %+v %v", groups, err)
	}
	if err := call(t, func(f func(error)) { c2.Delete("g", f) }); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if d := call(t, func(f func(Description)) { c2.Describe("g", f) }); d.State != "Dead" {
		t.Fatalf("describe after delete: %+v", d)
	}
}

func call2[A, B any](t *testing.T, f func(reply func(A, B))) (A, B) {
	t.Helper()
	type ab struct {
		a A
		b B
	}
	v := call(t, func(reply func(ab)) { f(func(a A, b B) { reply(ab{a, b}) }) })
	return v.a, v.b
}

func TestCoordinatorNotStarted(t *testing.T) {
	c := New(Config{Partition: func(int32) (*partition.Partition, bool) { return nil, false }})
	defer c.Close()
	if d := call(t, func(f func(Description)) { c.Describe("g", f) }); d.Err != kerr.NotCoordinator {
		t.Fatalf("describe: %+v", d)
	}
	groups, err := call2(t, func(f func([]Listing, error)) { c.List(ListRequest{}, f) })
	if err != nil || len(groups) != 0 {
		t.Fatalf("list: %v %v", groups, err)
	}
	// Partitions that are not open answer NOT_COORDINATOR once "loaded".
	c.Start(2)
	<-c.Ready()
	if j := call(t, func(f func(JoinResult)) { c.Join(joinReq("g", ""), f) }); j.Err != kerr.NotCoordinator {
		t.Fatalf("join: %+v", j)
	}
}

// TestCoordinatorExpiresOffsets: the runner's retention timer removes
// offsets past offsets.retention.minutes and then their empty group,
// writing tombstones.
func TestCoordinatorExpiresOffsets(t *testing.T) {
	l := openOffsetsLog(t, vfs.NewMem(), 1)
	defer l.close()
	c := New(Config{Settings: Settings{OffsetsRetention: time.Millisecond}, RetentionCheckInterval: 10 * time.Millisecond, Partition: l.partition})
	defer c.Close()
	c.Start(1)
	<-c.Ready()
	p, _ := l.partition(0)
	grew := make(chan struct{}, 1)
	p.Watch(grew)
	cr := call(t, func(f func(CommitResult)) {
		c.Commit(CommitRequest{Group: "simple", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 0}, Offset: 5}}}, f)
	})
	if cr.Errs[0] != nil {
		t.Fatalf("commit: %+v", cr)
	}
	// One commit record, then the offset's and the group's tombstones.
	for p.HighWatermark() < 3 {
		select {
		case <-grew:
			p.Watch(grew)
		case <-time.After(10 * time.Second):
			t.Fatalf("no tombstones; log end %d", p.HighWatermark())
		}
	}
	if d := call(t, func(f func(Description)) { c.Describe("simple", f) }); d.State != "Dead" {
		t.Fatalf("expired group: %+v", d)
	}
	f := call(t, func(f func(FetchResult)) {
		c.FetchOffsets(FetchRequest{Group: "simple", Partitions: []TopicPartition{{"t", 0}}}, f)
	})
	if f.Offsets[0].Offset != -1 {
		t.Fatalf("expired offset: %+v", f)
	}
}
