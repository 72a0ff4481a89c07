// Package group is the consumer group coordinator for Kafka's classic
// group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), for the
// next-generation consumer group protocol (KIP-848, ConsumerGroupHeartbeat
// with server-side assignment; see consumer.go) and for committed offsets,
// kept as records in the compacted internal topic __consumer_offsets in
// Kafka's own formats.
//
// A group belongs to the partition of __consumer_offsets that its id hashes
// to (Kafka's hash, PartitionFor). Each partition has a Shard, the state
// machine of its groups (no goroutines or IO, tested with a fake clock), and
// a runner goroutine that owns the Shard: it feeds it requests, timer ticks
// and append completions, appends the records the Shard asks for to the
// partition, and sends the replies. On start a runner rebuilds its Shard by
// reading the partition from the start; until then requests are answered
// COORDINATOR_LOAD_IN_PROGRESS.
//
// The coordinator speaks Kafka's group protocol, whose outcomes are Kafka
// error codes: results carry kerr values, which the api package sends as
// they are.
//
// Ownership and locks: each Shard is touched only by its runner goroutine.
// Coordinator.mu guards the list of runners (set once by Start) and is never
// held while sending to a runner or calling out. Replies are called on the
// runner goroutine and must not block.
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
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
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.RWMutex
	shards  []*runner
	loading atomic.Int32  // runners still loading
	ready   chan struct{} // closed once every started runner has loaded
}

// New returns a coordinator with no partitions yet (see Start).
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

// Start starts a runner for each of the n partitions of Topic, each loading
// its partition, which must be open: a partition that is not answers
// NOT_COORDINATOR for good. Later calls do nothing.
func (c *Coordinator) Start(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.shards) > 0 || c.ctx.Err() != nil || n <= 0 {
		return
	}
	c.shards = make([]*runner, n)
	c.loading.Store(int32(n))
	for p := range c.shards {
		r := &runner{c: c, p: int32(p), events: make(chan event, maxQueuedEvents), done: make(chan appendDone)}
		c.shards[p] = r
		c.wg.Add(1)
		go r.run()
	}
}

// Partitions is the number of partitions started, 0 before Start.
func (c *Coordinator) Partitions() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.shards)
}

// Ready is closed once every partition started has been loaded (or found
// unreadable).
func (c *Coordinator) Ready() <-chan struct{} { return c.ready }

// Close stops the runners, answering what they have parked
// NOT_COORDINATOR, and waits for them and their appends.
func (c *Coordinator) Close() {
	c.cancel()
	c.wg.Wait()
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
// there is none (NOT_COORDINATOR: not started, or closed).
func (c *Coordinator) submit(group string, ev event, fail func(error)) {
	c.mu.RLock()
	n := len(c.shards)
	var r *runner
	if n > 0 {
		r = c.shards[PartitionFor(group, n)]
	}
	c.mu.RUnlock()
	if r == nil || c.ctx.Err() != nil {
		fail(kerr.NotCoordinator)
		return
	}
	select {
	case r.events <- ev:
	case <-c.ctx.Done():
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

// List handles a ListGroups: every partition's groups, in partition order.
// The error is the first partition's that could not answer (loading).
func (c *Coordinator) List(r ListRequest, reply func([]Listing, error)) {
	c.mu.RLock()
	shards := c.shards
	c.mu.RUnlock()
	if len(shards) == 0 {
		reply([]Listing{}, nil)
		return
	}
	var (
		mu      sync.Mutex
		left    = len(shards)
		results = make([]ListResult, len(shards))
	)
	for i, sh := range shards {
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
				if res.Err != nil && err == nil {
					err = res.Err
				}
				out = append(out, res.Groups...)
			}
			reply(out, err)
		}
		ev := func(s *Shard, now time.Time) Output { return s.List(now, r, one) }
		if c.ctx.Err() != nil {
			one(ListResult{Err: kerr.NotCoordinator})
			continue
		}
		select {
		case sh.events <- ev:
		case <-c.ctx.Done():
			one(ListResult{Err: kerr.NotCoordinator})
		}
	}
}

// runner owns one partition's Shard.
type runner struct {
	c      *Coordinator
	p      int32
	events chan event
	done   chan appendDone
	s      *Shard // touched by the run goroutine only
	// afterLoad are events that wait for the shard to load (run goroutine only).
	afterLoad []event
}

type appendDone struct {
	id  uint64
	err error
}

func (r *runner) run() {
	defer r.c.wg.Done()
	cfg := &r.c.cfg
	logger := cfg.Logger.With("partition", fmt.Sprintf("%s-%d", Topic, r.p))
	r.s = NewShard(cfg.Settings)
	loaded := make(chan *Shard, 1)
	r.c.wg.Add(1)
	go func() {
		defer r.c.wg.Done()
		started := time.Now()
		s, n, err := r.load(logger)
		if err != nil {
			if r.c.ctx.Err() == nil {
				logger.Error("loading groups failed; this partition's groups answer NOT_COORDINATOR", "err", err)
			}
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
		case <-r.c.ctx.Done():
			r.exec(r.s.Abort(cfg.Now(), kerr.NotCoordinator))
			return
		case s := <-loaded:
			r.s = s
			r.exec(s.Loaded(cfg.Now()))
			for _, ev := range r.afterLoad {
				r.exec(ev(r.s, cfg.Now()))
			}
			r.afterLoad = nil
			if r.c.loading.Add(-1) == 0 {
				close(r.c.ready)
			}
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
// within CommitTimeout or until the coordinator closes); the result comes
// back as an appendDone. A partition that no longer leads refuses the
// append or fails the wait with partition.ErrNotLeader: NOT_COORDINATOR,
// so that the client finds the new coordinator.
func (r *runner) append(a Append) {
	fail := func(err error) { r.exec(r.s.AppendDone(r.c.cfg.Now(), a.ID, appendError(err))) }
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
			ctx, cancel := context.WithTimeout(r.c.ctx, r.c.cfg.CommitTimeout)
			err = p.WaitCommitted(ctx, res.LastOffset+1)
			cancel()
		}
		if err != nil {
			err = appendError(err)
		}
		select {
		case r.done <- appendDone{a.ID, err}:
		case <-r.c.ctx.Done():
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

// load reads the partition from its start into a new Shard and returns it
// with the number of records read.
func (r *runner) load(logger *slog.Logger) (*Shard, int, error) {
	p, ok := r.c.cfg.Partition(r.p)
	if !ok {
		return nil, 0, fmt.Errorf("group: partition %s-%d is not open here (start the coordinator once it is)", Topic, r.p)
	}
	s := NewShard(r.c.cfg.Settings)
	n, bad := 0, 0
	off, end := p.Log().StartOffset(), p.HighWatermark()
	for off < end {
		if err := r.c.ctx.Err(); err != nil {
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
		for {
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
// once applied (false: no such runner, or closing).
func (c *Coordinator) CompleteTxn(p int32, producerID int64, commit bool, done func(ok bool)) {
	c.mu.RLock()
	var r *runner
	if int(p) < len(c.shards) && p >= 0 {
		r = c.shards[p]
	}
	c.mu.RUnlock()
	if r == nil || c.ctx.Err() != nil {
		done(false)
		return
	}
	var ev event
	ev = func(s *Shard, now time.Time) Output {
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
	select {
	case r.events <- ev:
	case <-c.ctx.Done():
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
