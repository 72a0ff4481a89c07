package consume

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// runGroup consumes in a consumer group, which needs the broker to serve
// FindCoordinator and the group APIs. The records printed are marked for
// kgo's autocommit (every 5 s), committed before a rebalance revokes their
// partitions, and committed once more on the way out, whatever the way.
func runGroup(ctx context.Context, o Options, st start, fm formatter) (err error) {
	if len(o.Partitions) > 0 {
		return errors.New("--partition cannot be used with --group: the group assigns partitions")
	}
	probe, md, err := o.Connect(ctx, []string{o.Topic})
	if err != nil {
		return err
	}
	closeProbe := sync.OnceFunc(probe.Close)
	defer closeProbe()
	parts, err := clientopts.Partitions(md, o.Topic)
	if err != nil {
		return err
	}
	adm := kadm.NewClient(probe)
	if err := checkGroups(ctx, o, adm); err != nil {
		return err
	}
	var ends *groupEnds
	if o.ExitAtEnd {
		resets, his, starts, err := o.resolve(ctx, adm, parts, st)
		if err != nil {
			return err
		}
		ends = &groupEnds{topic: o.Topic, resets: resets, ends: his, starts: starts,
			assigned: map[int32]bool{}, position: map[int32]int64{}, wake: func() {}}
	}
	closeProbe()

	reset := kgo.NewOffset().AtEnd()
	switch st.kind {
	case 'b':
		reset = kgo.NewOffset().AtStart()
	case 'o':
		if st.offset < 0 {
			reset = kgo.NewOffset().AtEnd().Relative(st.offset)
		} else {
			reset = kgo.NewOffset().At(st.offset)
		}
	case 't':
		reset = kgo.NewOffset().AfterMilli(st.milli)
	}
	g := &groupCommits{o: o}
	opts := []kgo.Opt{kgo.ConsumerGroup(o.Group), kgo.ConsumeTopics(o.Topic), kgo.ConsumeResetOffset(reset),
		kgo.FetchMaxWait(time.Second),
		// Only what was printed is committed; rebalances wait for a poll's
		// records to be printed (AllowRebalance), so that no record is
		// marked for a partition the member no longer owns.
		kgo.AutoCommitMarks(), kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			g.commit(cl, "before the rebalance")
			ends.drop(m[o.Topic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { ends.drop(m[o.Topic]) }),
	}
	if ends != nil {
		opts = append(opts,
			kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, m map[string][]int32) { ends.assign(cl, m[o.Topic]) }),
			kgo.AdjustFetchOffsetsFn(func(_ context.Context, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
				ends.starting(offs[o.Topic])
				return offs, nil
			}))
	}
	cl, err := o.NewClient(opts...)
	if err != nil {
		return err
	}
	defer func() {
		// Whatever ended the run: commit what was printed, then leave.
		err = errors.Join(err, g.commit(cl, "on exit"))
		cl.CloseAllowingRebalance()
	}()

	p, err := o.newPrinterFor(fm, func(r *kgo.Record) { cl.MarkCommitRecords(r) })
	if err != nil {
		return err
	}
	accept := func(*kgo.Record) (bool, bool) { return true, false }
	if ends != nil {
		accept = func(r *kgo.Record) (bool, bool) { return ends.accept(cl, r) }
	}
	for {
		if ends != nil && ends.reached() {
			return nil
		}
		pctx, wake := context.WithCancel(ctx)
		ends.setWake(wake)
		fs := cl.PollFetches(pctx)
		wake()
		if ctx.Err() != nil || fs.IsClientClosed() {
			return p.flush()
		}
		stop, err := p.printFetches(ctx, o, fs, accept)
		cl.AllowRebalance()
		if err != nil || stop {
			return err
		}
	}
}

// groupCommits commits the records marked printed.
type groupCommits struct {
	o Options
}

// commit commits the marked offsets, waiting at most the command's timeout
// (even once the command's context has ended). Called by the poll loop and
// by kgo's rebalance callbacks, never at once (BlockRebalanceOnPoll). A
// failure before a rebalance is only reported: those records may be
// printed again by the next owner.
func (g *groupCommits) commit(cl *kgo.Client, when string) error {
	ctx, cancel := context.WithTimeout(context.Background(), g.o.Wait())
	defer cancel()
	err := cl.CommitMarkedOffsets(ctx)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("consume %s: commit the offsets of group %s %s: %w", g.o.Topic, g.o.Group, when, err)
	if when != "on exit" {
		fmt.Fprintf(g.o.Stderr(), "warning: %v\n", err)
	}
	return err
}

// groupEnds is --exit-at-end in a group: the high watermarks at start, and
// where each assigned partition stands. kgo's callbacks (assign, starting,
// drop) and the poll loop (accept, reached) share it; methods of a nil
// groupEnds do nothing.
type groupEnds struct {
	topic                string
	resets, ends, starts map[int32]int64 // at start: where the reset offset points, high watermarks, log starts

	mu       sync.Mutex
	known    bool            // an assignment arrived
	assigned map[int32]bool  // assigned partitions: true once done
	position map[int32]int64 // next offset of an assigned partition, once known
	wake     func()          // ends the current poll, to look again
}

func (e *groupEnds) setWake(wake func()) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.wake = wake
}

// assign notes newly assigned partitions (OnPartitionsAssigned, called
// even when nothing new is assigned) and resumes them, should one have been
// paused when this member had it before.
func (e *groupEnds) assign(cl *kgo.Client, ps []int32) {
	if len(ps) > 0 {
		cl.ResumeFetchPartitions(map[string][]int32{e.topic: ps})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.known = true
	for _, p := range ps {
		e.assigned[p] = false
		delete(e.position, p)
	}
	e.wake()
}

// starting notes where newly assigned partitions start: the committed
// offset, or the reset offset when there is none (a negative offset: the
// end, the start, relative or by time) or it is out of range, as kgo will.
func (e *groupEnds) starting(offs map[int32]kgo.Offset) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for p, off := range offs {
		at := off.EpochOffset().Offset
		if at < e.starts[p] {
			at = e.resets[p]
		}
		e.position[p] = at
		e.assigned[p] = at >= e.ends[p]
	}
	e.wake()
}

// drop forgets revoked or lost partitions.
func (e *groupEnds) drop(ps []int32) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range ps {
		delete(e.assigned, p)
		delete(e.position, p)
	}
	e.wake()
}

// accept says whether to print r (not past the high watermark its
// partition had at start) and whether every assigned partition is done
// after it; a partition done is paused.
func (e *groupEnds) accept(cl *kgo.Client, r *kgo.Record) (print, stop bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	end := e.ends[r.Partition]
	if e.assigned[r.Partition] || r.Offset >= end {
		return false, false
	}
	e.position[r.Partition] = r.Offset + 1
	if r.Offset+1 >= end {
		e.assigned[r.Partition] = true
		cl.PauseFetchPartitions(map[string][]int32{e.topic: {r.Partition}})
	}
	return true, e.reachedLocked()
}

// reached is whether the group assigned this member its partitions and
// each is at the high watermark it had at start.
func (e *groupEnds) reached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reachedLocked()
}

func (e *groupEnds) reachedLocked() bool {
	if !e.known {
		return false
	}
	for p, done := range e.assigned {
		if _, ok := e.position[p]; !ok || !done {
			return false
		}
	}
	return true
}

// checkGroups fails clearly when the brokers do not serve consumer groups.
func checkGroups(ctx context.Context, o Options, adm *kadm.Client) error {
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	const findCoordinator = 10
	vs, err := adm.ApiVersions(ctx)
	if err != nil {
		return fmt.Errorf("api versions: %w", err)
	}
	for _, v := range vs.Sorted() {
		if v.Err != nil {
			return fmt.Errorf("api versions of broker %d: %w", v.NodeID, v.Err)
		}
		if _, _, ok := v.KeyVersions(findCoordinator); !ok {
			return fmt.Errorf("consumer groups are not supported yet by this broker (broker %d does not serve FindCoordinator); "+
				"consume without --group to read the partitions directly", v.NodeID)
		}
	}
	resps := adm.FindGroupCoordinators(ctx, o.Group)
	for _, r := range resps {
		if r.Err != nil {
			return fmt.Errorf("consumer group %s: cannot find its coordinator: %w", o.Group, clientopts.KafkaErr(r.Err, r.ErrMessage))
		}
	}
	return nil
}
