package group

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/vfs"
)

// Tests of the runners' appends against the partition's commit.

func newTestCoordinator(t *testing.T, l *offsetsLog, cfg Config) *Coordinator {
	t.Helper()
	if cfg.Settings.MinSessionTimeout == 0 {
		cfg.Settings.MinSessionTimeout = time.Millisecond
	}
	if cfg.Settings.InitialRebalanceDelay == 0 {
		cfg.Settings.InitialRebalanceDelay = -1
	}
	cfg.Partition = l.partition
	c := New(cfg)
	t.Cleanup(c.Close)
	return c
}

func waitReady(t *testing.T, c *Coordinator) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("coordinator did not load")
	}
}

// waitFor waits for one value on ch.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

// waitLocalEnd waits, woken by the partition's SetOnLocalEnd hook through
// ch, until p's local end reaches end (an append of the coordinator).
func waitLocalEnd(t *testing.T, p *partition.Partition, ch <-chan struct{}, end int64) {
	t.Helper()
	for p.LocalEnd() < end {
		waitFor(t, ch, "append")
	}
}

func commitOffset(t *testing.T, c *Coordinator, group string, tp TopicPartition, off int64) error {
	t.Helper()
	cr := call(t, func(f func(CommitResult)) {
		c.Commit(CommitRequest{Group: group, Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp, Offset: off}}}, f)
	})
	return cr.Errs[0]
}

func fetchOffset(t *testing.T, c *Coordinator, group string, tp TopicPartition) FetchResult {
	t.Helper()
	return call(t, func(f func(FetchResult)) {
		c.FetchOffsets(FetchRequest{Group: group, Partitions: []TopicPartition{tp}}, f)
	})
}

// TestCommitNotCommitted: a commit whose append the partition cannot
// commit any more (it turned follower after the append) is answered
// NOT_COORDINATOR, as is one it refuses (a follower takes no append); one
// the in-sync replicas do not take within CommitTimeout is answered
// COORDINATOR_NOT_AVAILABLE.
func TestCommitNotCommitted(t *testing.T) {
	l := openOffsetsLog(t, vfs.NewMem(), 1)
	defer l.close()
	p, _ := l.partition(0)
	c := newTestCoordinator(t, l, Config{CommitTimeout: time.Hour})
	c.Start(1)
	waitReady(t, c)
	p.SetExternalHighWatermark(true)
	appended := make(chan struct{}, 16)
	p.SetOnLocalEnd(func() {
		select {
		case appended <- struct{}{}:
		default:
		}
	})
	tp := TopicPartition{"t", 0}
	res := make(chan CommitResult, 1)
	c.Commit(CommitRequest{Group: "g", Generation: -1, RetentionMs: -1, Offsets: []CommitOffset{{TopicPartition: tp, Offset: 7}}},
		func(r CommitResult) { res <- r })
	waitLocalEnd(t, p, appended, 1)
	if err := p.BecomeFollower(1); err != nil {
		t.Fatal(err)
	}
	if r := waitFor(t, res, "commit answer"); r.Errs[0] != kerr.NotCoordinator {
		t.Fatalf("commit whose append was not committed: %+v", r)
	}
	if f := fetchOffset(t, c, "g", tp); f.Err != nil || f.Offsets[0].Offset != -1 {
		t.Fatalf("fetch after a failed commit: %+v", f)
	}
	if err := commitOffset(t, c, "g", tp, 8); err != kerr.NotCoordinator {
		t.Fatalf("commit on a follower: %v", err)
	}

	l2 := openOffsetsLog(t, vfs.NewMem(), 1)
	defer l2.close()
	p2, _ := l2.partition(0)
	c2 := newTestCoordinator(t, l2, Config{CommitTimeout: 10 * time.Millisecond})
	c2.Start(1)
	waitReady(t, c2)
	p2.SetExternalHighWatermark(true)
	if err := commitOffset(t, c2, "g", tp, 9); err != kerr.CoordinatorNotAvailable {
		t.Fatalf("commit not committed in time: %v", err)
	}
}
