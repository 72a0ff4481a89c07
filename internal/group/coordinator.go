// Package group is the consumer group coordinator for Kafka's classic
// group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), for the
// next-generation consumer group protocol (KIP-848, ConsumerGroupHeartbeat
// with server-side assignment; see consumer.go) and for committed offsets,
// kept as records in the compacted internal topic __consumer_offsets in
// Kafka's own formats.
//
// A group belongs to the partition of __consumer_offsets that its id hashes
// to (Kafka's hash, PartitionFor), and its coordinator is the broker that
// leads that partition. Each partition this broker leads has a Shard, the
// state machine of its groups (no goroutines or IO, tested with a fake
// clock), and a runner goroutine that owns the Shard: it feeds it requests,
// timer ticks and append completions, appends the records the Shard asks
// for to the partition, and sends the replies.
//
// Lifecycle, as Kafka's GroupCoordinator.onElection and onResignation: the
// broker calls Elect when it becomes the leader of a partition (in a leader
// epoch) and Resign when it stops; Start(n) is Elect of every partition in
// epoch 0, for a single node. An elected runner rebuilds its Shard by
// reading the partition from the start; until then its groups' requests
// are answered COORDINATOR_LOAD_IN_PROGRESS (retriable, same broker). A
// resigned runner answers what it has parked NOT_COORDINATOR and drops its
// Shard; from then on its groups' requests are answered NOT_COORDINATOR, so
// that clients look the coordinator up again. An append counts once it is
// committed (the partition's high watermark passed it: in a cluster, every
// in-sync replica has it), so that a new leader loads every record whose
// request was answered.
//
// The coordinator speaks Kafka's group protocol, whose outcomes are Kafka
// error codes: results carry kerr values, which the api package sends as
// they are.
//
// Ownership and locks: each Shard is touched only by its runner goroutine.
// Coordinator.mu guards the partition count and the runner of each
// partition (replaced by Elect, removed by Resign) and the loading count
// behind Ready; it is never held while sending to a runner or calling out.
// runner.sendMu (taken after Coordinator.mu is released, never with it)
// orders sends to a runner before the close of its queue. Replies are
// called on the runner goroutine and must not block.
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/record"
)

// Topic is the internal topic holding groups and committed offsets.
const Topic = "__consumer_offsets"

// Limits of the runners.
const (
	// maxQueuedEvents is how many requests may wait for one runner; more
	// block the sender (a connection's reader): backpressure.
	maxQueuedEvents = 1024
	// loadReadBytes is how much of the log is read at a time on load.
	loadReadBytes = 1 << 20
	// maxBatchRecordBytes bounds a decompressed batch read on load.
	maxBatchRecordBytes = 64 << 20
	// defaultRetentionCheckInterval is offsets.retention.check.interval.ms.
	defaultRetentionCheckInterval = 10 * time.Minute
	// defaultCommitTimeout is offsets.commit.timeout.ms.
	defaultCommitTimeout = 5 * time.Second
)

// Config configures a Coordinator.
type Config struct {
	Settings
	// Partition returns the open partition p of Topic.
	Partition func(p int32) (*partition.Partition, bool)
	Logger    *slog.Logger
	Now       func() time.Time
	// RetentionCheckInterval (offsets.retention.check.interval.ms) is how
	// often expired offsets and groups are removed.
	RetentionCheckInterval time.Duration
	// CommitTimeout (offsets.commit.timeout.ms) bounds how long an append
	// waits to be committed (the in-sync replicas to have it) once it is
	// durable here; past it the request is answered
	// COORDINATOR_NOT_AVAILABLE (retriable; the records may still be
	// committed later, as in Kafka). 0 is Kafka's default, 5 s.
	CommitTimeout time.Duration
}

// Coordinator routes group requests to the runner of each group's
// partition. Safe for concurrent use; every method answers through its
// reply function, maybe later and from another goroutine.
type Coordinator struct {
	cfg    Config
	ctx    context.Context // cancelled by Close; the runners' contexts derive from it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.RWMutex
	// n is the number of partitions of Topic, fixed by the first Start or
	// Elect; 0 before.
	n int
	// runners holds, by partition (len n), the runner of each partition
	// this broker leads; nil where it does not.
	runners []*runner
	// resigned holds, by partition (len n), the newest leader epoch a
	// Resign named (-1: none): an Elect at or below it is a late notice.
	resigned []int32
	// loading counts the runners (with runner.loading set) still loading.
	loading int
	// ready is closed while loading is 0 (after the first Start or Elect);
	// a new one replaces it when an Elect starts loading again.
	ready       chan struct{}
	readyClosed bool
}

// New returns a coordinator that leads no partition yet (see Start, Elect).
func New(cfg Config) *Coordinator {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetentionCheckInterval <= 0 {
		cfg.RetentionCheckInterval = defaultRetentionCheckInterval
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = defaultCommitTimeout
	}
	cfg.Settings = cfg.Settings.withDefaults()
	c := &Coordinator{cfg: cfg, ready: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Start leads every one of the n partitions of Topic in leader epoch 0, as
// on a single node that leads them all: Elect(p, n, 0) for each. Each must
// be open; one that is not answers NOT_COORDINATOR until a newer Elect.
// Once the partition count is fixed (by an earlier Start or Elect) it does
// nothing, so that a caller that starts the coordinator when it finds
// __consumer_offsets never takes partitions that a cluster's broker does
// not lead.
func (c *Coordinator) Start(n int) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	if c.n != 0 || c.ctx.Err() != nil {
		c.mu.Unlock()
		return
	}
	c.setPartitionsLocked(n)
	for p := range n {
		c.startLocked(int32(p), 0, nil)
	}
	c.mu.Unlock()
	c.cfg.Logger.Info("leading every partition of the offsets topic", "topic", Topic, "partitions", n)
}

// Elect makes this broker the coordinator of the groups of partition p (of
// n) of Topic, whose leader it became in leaderEpoch (Kafka's onElection).
// Call it once the partition is open and leads (partition.BecomeLeader):
// a partition not open, or following, answers NOT_COORDINATOR until a
// newer Elect. A runner starts that loads the partition, reading it to its
// local end and waiting for the high watermark to pass that end (a new
// leader may hold records of the old one that are not committed yet, and
// will be), and then serves the partition's groups; until then they are
// answered COORDINATOR_LOAD_IN_PROGRESS.
//
// An Elect in an epoch at or below that of the partition's runner, or of
// the latest Resign of it, does nothing (a late or repeated notice); a
// newer one resigns the runner and starts another, which loads once the
// old one has stopped appending (a leader that lost and regained the
// partition in between may have had its log truncated; Kafka keeps a
// loaded coordinator and only notes the epoch). The first Start or Elect
// fixes n; an Elect with another n, or with p outside it, is a broker bug
// and is logged and ignored. Nothing happens after Close. It returns at
// once.
func (c *Coordinator) Elect(p int32, n int, leaderEpoch int32) {
	logger := c.cfg.Logger.With("partition", fmt.Sprintf("%s-%d", Topic, p), "leader_epoch", leaderEpoch)
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return
	}
	if n <= 0 || p < 0 || int(p) >= n || (c.n != 0 && n != c.n) {
		have := c.n
		c.mu.Unlock()
		logger.Error("elected for a partition outside the offsets topic's known partition count (a broker bug); ignored",
			"partitions", n, "known_partitions", have)
		return
	}
	if c.n == 0 {
		c.setPartitionsLocked(n)
	}
	old := c.runners[p]
	if (old != nil && leaderEpoch <= old.epoch) || leaderEpoch <= c.resigned[p] {
		current := c.resigned[p]
		if old != nil {
			current = max(current, old.epoch)
		}
		c.mu.Unlock()
		logger.Info("ignored an election in an epoch not newer than the current one", "current_epoch", current)
		return
	}
	c.startLocked(p, leaderEpoch, old)
	c.mu.Unlock()
	logger.Info("became the group coordinator of the partition; loading its groups")
}

// Resign makes this broker stop coordinating the groups of partition p,
// whose leadership it lost in leaderEpoch (Kafka's onResignation): the
// runner stops, answering NOT_COORDINATOR to every request it has parked
// (joins and syncs in a rebalance, commits awaiting their append) and to
// what was queued for it, and its Shard is dropped. Later requests for the
// partition's groups are answered NOT_COORDINATOR; CompleteTxn of it
// answers false. leaderEpoch -1 resigns unconditionally (the topic was
// deleted, or the broker shuts down); an epoch below the runner's is a
// late notice and does nothing, one at or above it resigns (Kafka's unload
// wants a newer one; here the broker may also resign in the epoch it was
// elected in). A later Elect must be in a newer epoch than a Resign's. It
// returns at once: the runner finishes stopping on its own goroutine
// (Close waits for it).
func (c *Coordinator) Resign(p int32, leaderEpoch int32) {
	logger := c.cfg.Logger.With("partition", fmt.Sprintf("%s-%d", Topic, p), "leader_epoch", leaderEpoch)
	c.mu.Lock()
	if p < 0 || int(p) >= c.n {
		c.mu.Unlock()
		return
	}
	c.resigned[p] = max(c.resigned[p], leaderEpoch)
	r := c.runners[p]
	if r == nil {
		c.mu.Unlock()
		return
	}
	if leaderEpoch != -1 && leaderEpoch < r.epoch {
		c.mu.Unlock()
		logger.Info("ignored a resignation in an epoch older than the current one", "current_epoch", r.epoch)
		return
	}
	c.runners[p] = nil
	c.stopLocked(r)
	c.mu.Unlock()
	logger.Info("resigned as the group coordinator of the partition")
}

// setPartitionsLocked fixes the partition count. Called with mu held.
func (c *Coordinator) setPartitionsLocked(n int) {
	c.n, c.runners, c.resigned = n, make([]*runner, n), make([]int32, n)
	for p := range c.resigned {
		c.resigned[p] = -1
	}
}

// startLocked starts the runner of partition p in leaderEpoch, replacing
// prev (stopped here) if not nil: the new runner loads once prev has
// exited. It is counted as loading before prev stops counting, so that
// Ready does not close in between. Called with mu held and n set.
func (c *Coordinator) startLocked(p int32, leaderEpoch int32, prev *runner) {
	r := &runner{c: c, p: p, epoch: leaderEpoch, events: make(chan event, maxQueuedEvents),
		done: make(chan appendDone), exited: make(chan struct{}), loading: true}
	r.ctx, r.cancel = context.WithCancel(c.ctx)
	if prev != nil {
		r.prev = prev.exited
	}
	c.runners[p] = r
	if c.loading == 0 && c.readyClosed {
		c.ready, c.readyClosed = make(chan struct{}), false
	}
	c.loading++
	if prev != nil {
		c.stopLocked(prev)
	}
	c.wg.Add(1)
	go r.run()
}

// stopLocked cancels r and stops counting it as loading. Called with mu
// held.
func (c *Coordinator) stopLocked(r *runner) {
	r.cancel()
	c.doneLoadingLocked(r)
}

// doneLoading notes that r has loaded (or failed to).
func (c *Coordinator) doneLoading(r *runner) {
	c.mu.Lock()
	c.doneLoadingLocked(r)
	c.mu.Unlock()
}

func (c *Coordinator) doneLoadingLocked(r *runner) {
	if !r.loading {
		return
	}
	r.loading = false
	if c.loading--; c.loading == 0 {
		close(c.ready)
		c.readyClosed = true
	}
}

// Partitions is the number of partitions of Topic, fixed by the first
// Start or Elect (whether or not this broker leads them); 0 before.
func (c *Coordinator) Partitions() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.n
}

// Ready is closed once every partition this broker currently leads has
// been loaded (or found unreadable): after Start, once all n have. The
// transaction coordinator waits for it before it applies the markers of
// transactions found half-done. An Elect that starts loading while it is
// closed replaces it with a new channel, so callers that wait again call
// Ready again; a Resign of a partition still loading stops waiting for it.
// Before the first Start or Elect it is open.
func (c *Coordinator) Ready() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ready
}

// Close stops the runners, answering what they have parked and queued
// NOT_COORDINATOR, and waits for them and their appends. Start, Elect and
// Resign do nothing afterwards.
func (c *Coordinator) Close() {
	c.mu.Lock()
	c.cancel() // under mu: no Start or Elect adds to wg once Wait may run
	c.mu.Unlock()
	c.wg.Wait()
}

// runnerOf is the runner of partition p, nil when this broker does not
// lead it (or no partition count is known).
func (c *Coordinator) runnerOf(p int32) *runner {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if p < 0 || int(p) >= c.n {
		return nil
	}
	return c.runners[p]
}

// led is the runners of the partitions this broker leads, in partition
// order.
func (c *Coordinator) led() []*runner {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*runner
	for _, r := range c.runners {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// PartitionFor is the partition of __consumer_offsets that holds group, of
// n: Kafka's Utils.abs(groupId.hashCode()) % n, so that Kafka tools agree.
func PartitionFor(group string, n int) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(u)
	}
	switch {
	case h == math.MinInt32:
		h = 0
	case h < 0:
		h = -h
	}
	return h % int32(n)
}

// event is a request for a runner: it runs on the runner's goroutine.
type event func(s *Shard, now time.Time) Output

// submit hands ev to the runner of group's partition; fail answers when
// there is none (NOT_COORDINATOR: this broker does not lead the partition,
// or is closed).
func (c *Coordinator) submit(group string, ev event, fail func(error)) {
	c.mu.RLock()
	var r *runner
	if c.n > 0 {
		r = c.runners[PartitionFor(group, c.n)]
	}
	c.mu.RUnlock()
	if r == nil || !r.send(context.Background(), ev) {
		fail(kerr.NotCoordinator)
	}
}

// Join handles a JoinGroup.
func (c *Coordinator) Join(r JoinRequest, reply func(JoinResult)) {
	c.submit(r.Group, func(s *Shard, now time.Time) Output { return s.Join(now, r, reply) },
		func(err error) { reply(JoinResult{Err: err, MemberID: r.MemberID, Generation: -1}) })
}

// Sync handles a SyncGroup.
func (c *Coordinator) Sync(r SyncRequest, reply func(SyncResult)) {
	c.submit(r.Group, func(s *Shard, now time.Time) Output { return s.Sync(now, r, reply) },
		func(err error) { reply(SyncResult{Err: err}) })
}

// Heartbeat handles a Heartbeat.
func (c *Coordinator) Heartbeat(r HeartbeatRequest, reply func(error)) {
	c.submit(r.Group, func(s *Shard, now time.Time) Output { return s.Heartbeat(now, r, reply) }, reply)
}

// Leave handles a LeaveGroup.
func (c *Coordinator) Leave(group string, members []LeaveMember, reply func(LeaveResult)) {
	c.submit(group, func(s *Shard, now time.Time) Output { return s.Leave(now, group, members, reply) },
		func(err error) { reply(LeaveResult{Err: err}) })
}

// Commit handles an OffsetCommit.
func (c *Coordinator) Commit(r CommitRequest, reply func(CommitResult)) {
	c.submit(r.Group, func(s *Shard, now time.Time) Output { return s.Commit(now, r, reply) },
		func(err error) {
			errs := make([]error, len(r.Offsets))
			for i := range errs {
				errs[i] = err
			}
			reply(CommitResult{Errs: errs})
		})
}

// FetchOffsets handles one group of an OffsetFetch.
func (c *Coordinator) FetchOffsets(r FetchRequest, reply func(FetchResult)) {
	c.submit(r.Group, func(s *Shard, now time.Time) Output { return s.FetchOffsets(now, r, reply) },
		func(err error) { reply(FetchResult{Err: err}) })
}

// Describe handles one group of a DescribeGroups.
func (c *Coordinator) Describe(group string, reply func(Description)) {
	c.submit(group, func(s *Shard, now time.Time) Output { return s.Describe(now, group, reply) },
		func(err error) { reply(Description{Group: group, Err: err}) })
}

// Delete handles one group of a DeleteGroups.
func (c *Coordinator) Delete(group string, reply func(error)) {
	c.submit(group, func(s *Shard, now time.Time) Output { return s.Delete(now, group, reply) }, reply)
}

// DeleteOffsets handles an OffsetDelete.
func (c *Coordinator) DeleteOffsets(group string, partitions []TopicPartition, reply func(OffsetDeleteResult)) {
	c.submit(group, func(s *Shard, now time.Time) Output { return s.DeleteOffsets(now, group, partitions, reply) },
		func(err error) { reply(OffsetDeleteResult{Err: err}) })
}

// List handles a ListGroups: the groups of every partition this broker
// leads, in partition order (as in Kafka, each broker lists the groups it
// coordinates). The error is the first partition's that could not answer
// (loading); a partition resigned meanwhile, or unreadable, lists nothing.
func (c *Coordinator) List(r ListRequest, reply func([]Listing, error)) {
	runners := c.led()
	if len(runners) == 0 {
		reply([]Listing{}, nil)
		return
	}
	var (
		mu      sync.Mutex
		left    = len(runners)
		results = make([]ListResult, len(runners))
	)
	for i, rn := range runners {
		one := func(res ListResult) {
			mu.Lock()
			results[i] = res
			left--
			last := left == 0
			mu.Unlock()
			if !last {
				return
			}
			out := []Listing{}
			var err error
			for _, res := range results {
				if res.Err != nil && !errors.Is(res.Err, kerr.NotCoordinator) && err == nil {
					err = res.Err
				}
				out = append(out, res.Groups...)
			}
			reply(out, err)
		}
		ev := func(s *Shard, now time.Time) Output { return s.List(now, r, one) }
		if !rn.send(context.Background(), ev) {
			one(ListResult{})
		}
	}
}

// runner owns the Shard of one partition this broker leads, in one leader
// epoch. It stops when its context ends (Resign, a newer Elect, Close):
// it then answers everything parked and queued NOT_COORDINATOR, closes
// its queue and exits; no append of it happens after exited is closed.
type runner struct {
	c      *Coordinator
	p      int32
	epoch  int32 // the leader epoch it was elected in
	ctx    context.Context
	cancel context.CancelFunc
	// prev is closed once the runner this one replaced has exited; the
	// load waits for it, so that it reads every record that one appended.
	prev   <-chan struct{}
	exited chan struct{}
	events chan event
	done   chan appendDone

	// sendMu orders sends (read-locked) before the close of events
	// (write-locked, closed set), so that every event sent is answered.
	sendMu sync.RWMutex
	closed bool

	// loading is guarded by Coordinator.mu: the runner counts in
	// Coordinator.loading.
	loading bool

	s *Shard // touched by the run goroutine only
	// afterLoad are events that wait for the shard to load (run goroutine only).
	afterLoad []event
	// stopping is set once the runner answers what is left (run goroutine only).
	stopping bool
}

type appendDone struct {
	id  uint64
	err error
}

// send queues ev for the runner, blocking while its queue is full
// (backpressure), and reports whether it did: false once the runner has
// stopped, or when ctx ends first. An event queued is always run, by the
// runner serving or by the runner stopping (which answers it
// NOT_COORDINATOR).
func (r *runner) send(ctx context.Context, ev event) bool {
	r.sendMu.RLock()
	defer r.sendMu.RUnlock()
	if r.closed {
		return false
	}
	select {
	case r.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *runner) run() {
	defer r.c.wg.Done()
	defer close(r.exited)
	cfg := &r.c.cfg
	logger := cfg.Logger.With("partition", fmt.Sprintf("%s-%d", Topic, r.p), "leader_epoch", r.epoch)
	r.s = NewShard(cfg.Settings)
	loaded := make(chan *Shard, 1)
	r.c.wg.Add(1)
	go func() {
		defer r.c.wg.Done()
		if r.prev != nil {
			select {
			case <-r.prev:
			case <-r.ctx.Done():
				return
			}
		}
		started := time.Now()
		s, n, err := r.load(logger)
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			logger.Error("loading groups failed; this partition's groups answer NOT_COORDINATOR", "err", err)
			s = NewShard(cfg.Settings)
			s.SetUnavailable(kerr.NotCoordinator)
		} else if n > 0 {
			logger.Info("loaded groups", "records", n, "groups", len(s.groups), "took", time.Since(started).Round(time.Millisecond))
		}
		loaded <- s
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	expiry := time.NewTicker(cfg.RetentionCheckInterval)
	defer expiry.Stop()
	for {
		if at, ok := r.s.NextDeadline(); ok {
			timer.Reset(max(at.Sub(cfg.Now()), 0))
		} else {
			timer.Stop()
		}
		select {
		case <-r.ctx.Done():
			r.stop()
			return
		case s := <-loaded:
			r.s = s
			r.exec(s.Loaded(cfg.Now()))
			for _, ev := range r.afterLoad {
				r.exec(ev(r.s, cfg.Now()))
			}
			r.afterLoad = nil
			r.c.doneLoading(r)
		case ev := <-r.events:
			r.exec(ev(r.s, cfg.Now()))
		case d := <-r.done:
			r.exec(r.s.AppendDone(cfg.Now(), d.id, d.err))
		case <-timer.C:
			r.exec(r.s.Tick(cfg.Now()))
		case <-expiry.C:
			r.exec(r.s.ExpireOffsets(cfg.Now()))
		}
	}
}

// stop answers what the runner has parked NOT_COORDINATOR (the Shard's
// joins, syncs and appends, the events waiting for the load), closes the
// queue once no send is under way, and answers what was queued the same
// way: the aborted Shard refuses every request, and appends are no longer
// made. The Shard is dropped with the runner.
func (r *runner) stop() {
	now := r.c.cfg.Now()
	r.stopping = true
	r.exec(r.s.Abort(now, kerr.NotCoordinator))
	for _, ev := range r.afterLoad {
		r.exec(ev(r.s, now))
	}
	r.afterLoad = nil
	// A sender blocked on a full queue holds sendMu: close from another
	// goroutine while this one drains.
	r.c.wg.Add(1)
	go func() {
		defer r.c.wg.Done()
		r.sendMu.Lock()
		r.closed = true
		close(r.events)
		r.sendMu.Unlock()
	}()
	for ev := range r.events {
		r.exec(ev(r.s, now))
	}
	r.s = nil
}

// exec carries out an Output: appends first, in order, then replies.
func (r *runner) exec(out Output) {
	for _, a := range out.Appends {
		r.append(a)
	}
	for _, reply := range out.Replies {
		reply()
	}
}

// append writes one Append as a batch and waits, off the runner goroutine,
// for it to be durable and then committed (the high watermark past it,
// within CommitTimeout or until the runner stops); the result comes back
// as an appendDone. A partition that no longer leads refuses the append or
// fails the wait with partition.ErrNotLeader: NOT_COORDINATOR, so that the
// client finds the new coordinator.
func (r *runner) append(a Append) {
	fail := func(err error) { r.exec(r.s.AppendDone(r.c.cfg.Now(), a.ID, appendError(err))) }
	if r.stopping {
		fail(kerr.NotCoordinator)
		return
	}
	p, ok := r.c.cfg.Partition(r.p)
	if !ok {
		fail(kerr.NotCoordinator)
		return
	}
	now := r.c.cfg.Now().UnixMilli()
	recs := make([]record.Record, len(a.Records))
	for i, rec := range a.Records {
		recs[i] = record.Record{OffsetDelta: int32(i), Key: rec.Key, Value: rec.Value}
	}
	spec := record.BatchSpec{FirstTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
	if a.Producer != nil {
		spec.Attributes = record.AttrTransactional
		spec.ProducerID, spec.ProducerEpoch = a.Producer.ID, a.Producer.Epoch
	}
	batch, err := record.BuildBatch(spec, recs)
	if err != nil {
		fail(err)
		return
	}
	var res partition.AppendResult
	if a.Producer != nil {
		res, err = p.AppendFromCoordinator(batch)
	} else {
		res, err = p.Append(batch)
	}
	if err != nil {
		fail(err)
		return
	}
	r.c.wg.Add(1)
	go func() {
		defer r.c.wg.Done()
		err := p.WaitDurable(res.LastOffset)
		if err == nil {
			ctx, cancel := context.WithTimeout(r.ctx, r.c.cfg.CommitTimeout)
			err = p.WaitCommitted(ctx, res.LastOffset+1)
			cancel()
		}
		if err != nil {
			err = appendError(err)
		}
		select {
		case r.done <- appendDone{a.ID, err}:
		case <-r.ctx.Done():
		}
	}()
}

// appendError is what a failed append of the coordinator answers, as
// Kafka maps it: a lost or broken log, or a partition this broker no
// longer leads, is NOT_COORDINATOR; an append the in-sync replicas did not
// take in time is COORDINATOR_NOT_AVAILABLE.
func appendError(err error) error {
	var ke *kerr.Error
	switch {
	case errors.As(err, &ke):
		return ke
	case errors.Is(err, partition.ErrMessageTooLarge):
		return kerr.MessageTooLarge
	case errors.Is(err, partition.ErrInvalidProducerEpoch):
		// A transactional commit of a producer a newer epoch fenced.
		return kerr.ProducerFenced
	case errors.Is(err, partition.ErrNotLeader), errors.Is(err, context.Canceled):
		return kerr.NotCoordinator
	case errors.Is(err, context.DeadlineExceeded):
		return kerr.CoordinatorNotAvailable
	case errors.Is(err, partition.ErrStorage), errors.Is(err, log.ErrStorage), errors.Is(err, log.ErrClosed):
		return kerr.NotCoordinator
	}
	return kerr.UnknownServerError
}

// load reads the partition from its start to its local end into a new
// Shard, waits for those records to be committed, and returns the Shard
// with the number of records read. It reads past the high watermark, as
// Kafka's loader reads to the log end: a new leader's log is the one its
// followers converge on, so what it holds becomes committed, and a Shard
// that skipped it would differ from the next load's. It stops with the
// runner (an error then).
func (r *runner) load(logger *slog.Logger) (*Shard, int, error) {
	p, ok := r.c.cfg.Partition(r.p)
	if !ok {
		return nil, 0, fmt.Errorf("group: partition %s-%d is not open here (elect the coordinator once it is)", Topic, r.p)
	}
	s := NewShard(r.c.cfg.Settings)
	n, bad := 0, 0
	off, end := p.Log().StartOffset(), p.LocalEnd()
	for off < end {
		if err := r.ctx.Err(); err != nil {
			return nil, n, err
		}
		buf, err := p.Log().ReadBatches(off, loadReadBytes)
		if err != nil {
			return nil, n, fmt.Errorf("group: read %s-%d at %d: %w", Topic, r.p, off, err)
		}
		if len(buf) == 0 {
			break
		}
		it := record.NewIter(buf)
		for off < end {
			batch, h, ok := it.Next()
			if !ok {
				break
			}
			next := h.LastOffset() + 1
			if h.IsControl() {
				if h.BaseOffset >= off {
					if err := replayMarker(s, batch, h); err != nil {
						return nil, n, fmt.Errorf("group: %s-%d at %d: %w", Topic, r.p, h.BaseOffset, err)
					}
				}
				off = next
				continue
			}
			recs, err := record.Records(batch, h, maxBatchRecordBytes)
			if err != nil {
				return nil, n, fmt.Errorf("group: decode %s-%d at %d: %w", Topic, r.p, h.BaseOffset, err)
			}
			for _, rec := range recs {
				if h.BaseOffset+int64(rec.OffsetDelta) < off {
					continue
				}
				n++
				replay := s.Replay
				if h.IsTransactional() {
					replay = func(k, v []byte) error { return s.ReplayTxn(h.ProducerID, k, v) }
				}
				if err := replay(rec.Key, rec.Value); err != nil {
					if bad++; bad <= 10 {
						logger.Warn("skipping a record that does not decode", "offset", h.BaseOffset+int64(rec.OffsetDelta), "err", err)
					}
				}
			}
			off = next
		}
		if err := it.Err(); err != nil {
			return nil, n, fmt.Errorf("group: read %s-%d at %d: %w", Topic, r.p, off, err)
		}
	}
	// Serve only once what was read is committed: a request answered from
	// records the in-sync replicas lack could be undone by a failover.
	if err := p.WaitCommitted(r.ctx, off); err != nil {
		return nil, n, fmt.Errorf("group: waiting for %s-%d to commit up to %d: %w", Topic, r.p, off, err)
	}
	return s, n, nil
}

// replayMarker applies a transaction marker read while loading.
func replayMarker(s *Shard, batch []byte, h record.Header) error {
	recs, err := record.Records(batch, h, maxBatchRecordBytes)
	if err != nil || len(recs) == 0 {
		return fmt.Errorf("control batch with %d records: %v", len(recs), err)
	}
	typ, err := record.ParseControlKey(recs[0].Key)
	if err != nil {
		return err
	}
	if typ == record.ControlCommit || typ == record.ControlAbort {
		s.ReplayMarker(h.ProducerID, typ == record.ControlCommit)
	}
	return nil
}

// TxnCommit handles a TxnOffsetCommit.
func (c *Coordinator) TxnCommit(r TxnCommitRequest, reply func(CommitResult)) {
	c.submit(r.Group, func(s *Shard, now time.Time) Output { return s.TxnCommit(now, r, reply) },
		func(err error) {
			errs := make([]error, len(r.Offsets))
			for i := range errs {
				errs[i] = err
			}
			reply(CommitResult{Errs: errs})
		})
}

// CompleteTxn tells the runner of partition p of __consumer_offsets that
// the marker of producerID's transaction is durable there. done is called
// once applied: false at once when this broker does not lead p, and false
// when the runner stops first (the marker is in the log: the next leader's
// load applies it).
func (c *Coordinator) CompleteTxn(p int32, producerID int64, commit bool, done func(ok bool)) {
	r := c.runnerOf(p)
	if r == nil {
		done(false)
		return
	}
	var ev event
	ev = func(s *Shard, now time.Time) Output {
		if r.stopping {
			return Output{Replies: []func(){func() { done(false) }}}
		}
		if !s.loaded && s.unavailable == nil {
			// Still loading: apply once loaded (the load may already
			// have read the marker; applying it twice changes nothing).
			r.afterLoad = append(r.afterLoad, ev)
			return Output{}
		}
		out := s.CompleteTxn(now, producerID, commit)
		out.Replies = append(out.Replies, func() { done(true) })
		return out
	}
	if !r.send(context.Background(), ev) {
		done(false)
	}
}

// ConsumerHeartbeat handles a ConsumerGroupHeartbeat (KIP-848).
func (c *Coordinator) ConsumerHeartbeat(r ConsumerHeartbeatRequest, reply func(ConsumerHeartbeatResult)) {
	c.submit(r.Group, func(s *Shard, now time.Time) Output { return s.ConsumerHeartbeat(now, r, reply) },
		func(err error) {
			reply(ConsumerHeartbeatResult{Err: err, MemberID: r.MemberID, MemberEpoch: r.MemberEpoch})
		})
}

// ConsumerDescribe handles one group of a ConsumerGroupDescribe.
func (c *Coordinator) ConsumerDescribe(group string, reply func(ConsumerDescription)) {
	c.submit(group, func(s *Shard, now time.Time) Output { return s.ConsumerDescribe(now, group, reply) },
		func(err error) { reply(ConsumerDescription{Group: group, Err: err}) })
}
