package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/record"
)

// Defaults of the broker configs the coordinator reads.
const (
	DefaultMaxTimeout          = 15 * time.Minute   // transaction.max.timeout.ms
	DefaultAbortCheckInterval  = 10 * time.Second   // transaction.abort.timed.out.transaction.cleanup.interval.ms
	DefaultIDExpiration        = 7 * 24 * time.Hour // transactional.id.expiration.ms
	DefaultExpireCheckInterval = time.Hour          // transaction.remove.expired.transaction.cleanup.interval.ms
)

// Limits.
const (
	// loadReadBytes is how much of a __transaction_state partition is read
	// at a time while loading.
	loadReadBytes = 1 << 20
	// maxRecordBytes bounds one decompressed batch read while loading.
	maxRecordBytes = 16 << 20
	// markerTimeout bounds writing one transaction's markers; what is not
	// written by then is retried by the background check.
	markerTimeout = 30 * time.Second
)

// ErrUnknownPartition is what Config.WriteMarker returns for a partition
// that no longer exists (deleted topic): it needs no marker.
var ErrUnknownPartition = errors.New("txn: partition does not exist")

// Config configures a Coordinator.
type Config struct {
	// Partition returns the open partition p of Topic.
	Partition func(p int32) (*partition.Partition, bool)
	// AllocateProducerID hands out a producer id that was never used.
	AllocateProducerID func(ctx context.Context) (int64, error)
	// WriteMarker appends a transaction marker to tp and returns once it
	// is durable and, for __consumer_offsets, applied to the group offsets.
	WriteMarker func(ctx context.Context, tp TopicPartition, producerID int64, epoch int16, commit bool, coordinatorEpoch int32) error
	// OffsetsPartitions is the number of __consumer_offsets partitions (0:
	// none yet), to find a group's partition for AddOffsetsToTxn.
	OffsetsPartitions func() int
	// GroupsReady is closed once the group coordinator has loaded; markers
	// of transactions found half-done at start wait for it.
	GroupsReady func() <-chan struct{}

	MaxTimeout          time.Duration
	AbortCheckInterval  time.Duration
	IDExpiration        time.Duration
	ExpireCheckInterval time.Duration

	Logger *slog.Logger
	Now    func() time.Time
}

// Coordinator is the transaction coordinator of this broker: on one node it
// leads every partition of Topic. Safe for concurrent use.
//
// Each transactional id has a lock held for a whole operation, state write
// and markers included, so operations on one id run one at a time and a
// request never sees a half-made change; different ids run in parallel.
type Coordinator struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	n      int // partitions of Topic, 0 before Start
	loaded bool
	txns   map[string]*entry
	byPID  map[int64]*entry
}

// entry is one transactional id. mu is held for a whole operation; m is
// read and replaced under it.
type entry struct {
	mu      sync.Mutex
	m       meta
	removed bool // expired: look the id up again
}

// New returns a coordinator that serves once Start has loaded its state.
func New(cfg Config) *Coordinator {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = DefaultMaxTimeout
	}
	if cfg.AbortCheckInterval <= 0 {
		cfg.AbortCheckInterval = DefaultAbortCheckInterval
	}
	if cfg.IDExpiration <= 0 {
		cfg.IDExpiration = DefaultIDExpiration
	}
	if cfg.ExpireCheckInterval <= 0 {
		cfg.ExpireCheckInterval = DefaultExpireCheckInterval
	}
	c := &Coordinator{cfg: cfg, txns: map[string]*entry{}, byPID: map[int64]*entry{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Start loads the state from the n partitions of Topic, which must be
// open, and starts the background checks (timeouts, expiry, markers left
// unwritten). Later calls do nothing.
func (c *Coordinator) Start(n int) error {
	c.mu.Lock()
	if c.n > 0 || n <= 0 {
		c.mu.Unlock()
		return nil
	}
	c.n = n
	c.mu.Unlock()
	started := time.Now()
	txns, records, err := c.load(n)
	if err != nil {
		c.mu.Lock()
		c.n = 0 // not started: the next Start tries again
		c.mu.Unlock()
		return err
	}
	c.mu.Lock()
	var prepared []*entry
	for id, m := range txns {
		e := &entry{m: *m}
		c.txns[id] = e
		c.byPID[m.producerID] = e
		switch m.state {
		case PrepareCommit, PrepareAbort, PrepareEpochFence:
			prepared = append(prepared, e)
		}
	}
	c.loaded = true
	c.mu.Unlock()
	if records > 0 {
		c.cfg.Logger.Info("loaded transactions", "records", records, "transactional_ids", len(txns),
			"took", time.Since(started).Round(time.Millisecond))
	}
	c.wg.Add(1)
	go c.background(prepared)
	return nil
}

// Started says whether Start has run.
func (c *Coordinator) Started() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n > 0
}

// Close stops the background checks and waits for them.
func (c *Coordinator) Close() {
	c.cancel()
	c.wg.Wait()
}

// load reads every partition of Topic: the last record of each id wins.
func (c *Coordinator) load(n int) (map[string]*meta, int, error) {
	out := map[string]*meta{}
	records := 0
	for p := int32(0); p < int32(n); p++ {
		part, ok := c.cfg.Partition(p)
		if !ok {
			return nil, records, fmt.Errorf("txn: partition %s-%d is not open", Topic, p)
		}
		off, end := part.Log().StartOffset(), part.HighWatermark()
		for off < end {
			buf, err := part.Log().ReadBatches(off, loadReadBytes)
			if err != nil {
				return nil, records, fmt.Errorf("txn: read %s-%d at %d: %w", Topic, p, off, err)
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
				if !h.IsControl() {
					recs, err := record.Records(batch, h, maxRecordBytes)
					if err != nil {
						return nil, records, fmt.Errorf("txn: decode %s-%d at %d: %w", Topic, p, h.BaseOffset, err)
					}
					for _, r := range recs {
						if h.BaseOffset+int64(r.OffsetDelta) < off {
							continue
						}
						records++
						id, m, ok, err := decodeRecord(r.Key, r.Value)
						if err != nil {
							c.cfg.Logger.Warn("skipping a record that does not decode", "partition", p,
								"offset", h.BaseOffset+int64(r.OffsetDelta), "err", err)
							continue
						}
						if !ok {
							continue
						}
						if m == nil {
							delete(out, id)
						} else {
							out[id] = m
						}
					}
				}
				off = h.LastOffset() + 1
			}
			if err := it.Err(); err != nil {
				return nil, records, fmt.Errorf("txn: read %s-%d at %d: %w", Topic, p, off, err)
			}
		}
	}
	return out, records, nil
}

// ready answers whether requests can be served now.
func (c *Coordinator) ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.n == 0:
		return kerr.NotCoordinator
	case !c.loaded:
		return kerr.CoordinatorLoadInProgress
	}
	return nil
}

// lock finds the entry of id, locked, creating it if create; nil if none.
func (c *Coordinator) lock(id string, create bool) *entry {
	for {
		c.mu.Lock()
		e := c.txns[id]
		if e == nil {
			if !create {
				c.mu.Unlock()
				return nil
			}
			e = &entry{m: meta{id: id, producerID: -1, lastProducer: -1, epoch: -1, lastEpoch: -1, startMs: -1,
				partitions: map[TopicPartition]struct{}{}}}
			c.txns[id] = e
		}
		c.mu.Unlock()
		e.mu.Lock()
		if !e.removed {
			return e
		}
		e.mu.Unlock()
	}
}

// dropIfNew forgets an entry that was created by lock but never written.
func (c *Coordinator) dropIfNew(e *entry) {
	if e.m.producerID >= 0 {
		return
	}
	c.mu.Lock()
	if c.txns[e.m.id] == e {
		delete(c.txns, e.m.id)
	}
	c.mu.Unlock()
	e.removed = true
}

// write makes m the durable state of its id, then the current one.
func (c *Coordinator) write(ctx context.Context, e *entry, m meta) error {
	m.lastUpdateMs = c.cfg.Now().UnixMilli()
	if err := c.append(ctx, m.id, encodeValue(&m)); err != nil {
		return err
	}
	c.mu.Lock()
	if old := e.m.producerID; old != m.producerID && c.byPID[old] == e {
		delete(c.byPID, old)
	}
	c.byPID[m.producerID] = e
	c.mu.Unlock()
	e.m = m
	return nil
}

// append writes one record to the id's partition of Topic and waits for it
// to be durable. Failures answer as Kafka's coordinator does: the client
// looks for the coordinator again.
func (c *Coordinator) append(ctx context.Context, id string, value []byte) error {
	c.mu.Lock()
	n := c.n
	c.mu.Unlock()
	p, ok := c.cfg.Partition(group.PartitionFor(id, n))
	if !ok {
		return fmt.Errorf("%w: partition of %s for %q is not open", kerr.NotCoordinator, Topic, id)
	}
	now := c.cfg.Now().UnixMilli()
	batch, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Key: encodeKey(id), Value: value}})
	if err != nil {
		return fmt.Errorf("%w: build state record: %v", kerr.UnknownServerError, err)
	}
	res, err := p.Append(batch)
	if err == nil {
		err = p.WaitDurable(res.LastOffset)
	}
	if err != nil {
		c.cfg.Logger.Warn("writing transaction state failed", "transactional_id", id, "err", err)
		return fmt.Errorf("%w: write %s: %v", kerr.NotCoordinator, Topic, err)
	}
	return nil
}

// coordinatorEpoch is the epoch markers carry: the leader epoch of the
// id's partition of Topic.
func (c *Coordinator) coordinatorEpoch(id string) int32 {
	c.mu.Lock()
	n := c.n
	c.mu.Unlock()
	if p, ok := c.cfg.Partition(group.PartitionFor(id, n)); ok {
		return p.LeaderEpoch()
	}
	return 0
}

// InitProducerID handles InitProducerId for a transactional id (Kafka's
// TransactionCoordinator.handleInitProducerId): a new id gets a new
// producer id at epoch 0; a known one gets its epoch bumped, which fences
// every older producer of the id, after its open transaction (if any) is
// aborted. producerID and epoch (KIP-360, v3+; -1 otherwise) let a
// producer that lost track of a response retry without being fenced.
func (c *Coordinator) InitProducerID(ctx context.Context, id string, timeoutMs int32, producerID int64, epoch int16) (int64, int16, error) {
	if err := c.ready(); err != nil {
		return -1, -1, err
	}
	if timeoutMs <= 0 || int64(timeoutMs) > c.cfg.MaxTimeout.Milliseconds() {
		return -1, -1, fmt.Errorf("%w: transaction.timeout.ms %d is not in (0, %d] (transaction.max.timeout.ms)",
			kerr.InvalidTransactionTimeout, timeoutMs, c.cfg.MaxTimeout.Milliseconds())
	}
	e := c.lock(id, true)
	defer e.mu.Unlock()
	if e.m.producerID < 0 {
		pid, err := c.cfg.AllocateProducerID(ctx)
		if err != nil {
			c.dropIfNew(e)
			return -1, -1, fmt.Errorf("%w: allocate a producer id: %v", kerr.CoordinatorNotAvailable, err)
		}
		m := e.m.clone()
		m.producerID, m.epoch, m.timeoutMs, m.state, m.startMs = pid, 0, timeoutMs, Empty, -1
		if err := c.write(ctx, e, m); err != nil {
			c.dropIfNew(e)
			return -1, -1, err
		}
		return pid, 0, nil
	}
	m := e.m
	if producerID >= 0 {
		switch {
		case producerID == m.producerID && epoch == m.epoch:
		case producerID == m.lastProducer && epoch == m.lastEpoch,
			producerID == m.producerID && epoch == m.lastEpoch && m.state == Empty:
			// A retry of the InitProducerId that made the current epoch.
			return m.producerID, m.epoch, nil
		default:
			return -1, -1, fmt.Errorf("%w: producer %d epoch %d is not the current %d/%d of %q",
				kerr.ProducerFenced, producerID, epoch, m.producerID, m.epoch, id)
		}
	}
	switch m.state {
	case PrepareCommit, PrepareAbort, PrepareEpochFence:
		return -1, -1, fmt.Errorf("%w: %q is completing a transaction", kerr.ConcurrentTransactions, id)
	case Dead:
		return -1, -1, kerr.ConcurrentTransactions
	case Ongoing:
		// Fence the producer of the open transaction and abort it.
		if err := c.end(ctx, e, false, true); err != nil {
			return -1, -1, err
		}
	}
	m = e.m.clone()
	m.lastProducer, m.lastEpoch = m.producerID, m.epoch
	if m.epoch >= math.MaxInt16-1 {
		pid, err := c.cfg.AllocateProducerID(ctx)
		if err != nil {
			return -1, -1, fmt.Errorf("%w: allocate a producer id: %v", kerr.CoordinatorNotAvailable, err)
		}
		m.producerID, m.epoch = pid, 0
	} else {
		m.epoch++
	}
	m.timeoutMs, m.state, m.startMs = timeoutMs, Empty, -1
	clear(m.partitions)
	if err := c.write(ctx, e, m); err != nil {
		return -1, -1, err
	}
	return m.producerID, m.epoch, nil
}

// check is the common validation of a request of a producer in a
// transaction: the id must exist with this producer at this epoch.
func check(e *entry, id string, producerID int64, epoch int16) error {
	if e == nil || e.m.producerID != producerID {
		return fmt.Errorf("%w: %q has no producer %d", kerr.InvalidProducerIDMapping, id, producerID)
	}
	if epoch != e.m.epoch {
		return fmt.Errorf("%w: producer %d epoch %d, current %d", kerr.ProducerFenced, producerID, epoch, e.m.epoch)
	}
	switch e.m.state {
	case PrepareCommit, PrepareAbort:
		return fmt.Errorf("%w: %q is completing a transaction", kerr.ConcurrentTransactions, id)
	case PrepareEpochFence, Dead:
		return fmt.Errorf("%w: %q is being fenced", kerr.ProducerFenced, id)
	}
	return nil
}

// AddPartitions handles AddPartitionsToTxn (and, for its group's partition
// of __consumer_offsets, AddOffsetsToTxn): the transaction starts if it
// had not, and each partition will get a marker when it ends. With
// verifyOnly (v4+ from brokers) nothing is added: the answer says whether
// every partition already is in the open transaction.
func (c *Coordinator) AddPartitions(ctx context.Context, id string, producerID int64, epoch int16, tps []TopicPartition, verifyOnly bool) error {
	if err := c.ready(); err != nil {
		return err
	}
	e := c.lock(id, false)
	if e == nil {
		return check(nil, id, producerID, epoch)
	}
	defer e.mu.Unlock()
	if err := check(e, id, producerID, epoch); err != nil {
		return err
	}
	missing := false
	for _, tp := range tps {
		if _, ok := e.m.partitions[tp]; !ok {
			missing = true
		}
	}
	if verifyOnly {
		if missing || e.m.state != Ongoing {
			return fmt.Errorf("%w: not every partition is in the transaction of %q", kerr.InvalidTxnState, id)
		}
		return nil
	}
	return c.addLocked(ctx, e, tps, missing)
}

// addLocked adds tps to e's transaction, starting it if it is not open;
// missing says whether any of them is not in it yet. Called with e locked
// and checked.
func (c *Coordinator) addLocked(ctx context.Context, e *entry, tps []TopicPartition, missing bool) error {
	if !missing && e.m.state == Ongoing {
		return nil
	}
	m := e.m.clone()
	if m.state != Ongoing {
		clear(m.partitions)
		m.startMs = c.cfg.Now().UnixMilli()
		m.state = Ongoing
	}
	for _, tp := range tps {
		m.partitions[tp] = struct{}{}
	}
	return c.write(ctx, e, m)
}

// lockProducer finds the entry of a producer id, locked, for a request
// that names the producer but not its transactional id (a produce): an
// unknown producer is INVALID_TXN_STATE, an older epoch (or a producer id
// the transactional id has moved on from) INVALID_PRODUCER_EPOCH, as a
// produce answers them.
func (c *Coordinator) lockProducer(producerID int64, epoch int16) (*entry, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	e := c.byPID[producerID]
	c.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("%w: producer %d has no transactional id here", kerr.InvalidTxnState, producerID)
	}
	e.mu.Lock()
	if e.removed || e.m.producerID != producerID {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: producer %d was replaced", kerr.InvalidProducerEpoch, producerID)
	}
	if epoch < e.m.epoch {
		cur := e.m.epoch
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: producer %d epoch %d, current %d", kerr.InvalidProducerEpoch, producerID, epoch, cur)
	}
	return e, nil
}

// AddOffsets handles AddOffsetsToTxn: the group's partition of
// __consumer_offsets joins the transaction.
func (c *Coordinator) AddOffsets(ctx context.Context, id string, producerID int64, epoch int16, groupID string) error {
	tp, err := c.offsetsPartition(groupID)
	if err != nil {
		return err
	}
	return c.AddPartitions(ctx, id, producerID, epoch, []TopicPartition{tp}, false)
}

func (c *Coordinator) offsetsPartition(groupID string) (TopicPartition, error) {
	n := c.cfg.OffsetsPartitions()
	if n <= 0 {
		return TopicPartition{}, fmt.Errorf("%w: %s does not exist yet", kerr.CoordinatorNotAvailable, group.Topic)
	}
	return TopicPartition{group.Topic, group.PartitionFor(groupID, n)}, nil
}

// AddImplicitly adds tp to the open transaction of producerID, starting
// one if none is open: under KIP-890 part 2 a transactional produce (v12+)
// or TxnOffsetCommit (v5+) adds its partition itself, without
// AddPartitionsToTxn / AddOffsetsToTxn. The producer is found by id; an
// older epoch is INVALID_PRODUCER_EPOCH (as a produce answers it), an
// unknown producer INVALID_TXN_STATE.
//
// The partitions of one produce request come together, so that they cost
// one state write, not one each.
func (c *Coordinator) AddImplicitly(ctx context.Context, producerID int64, epoch int16, tps ...TopicPartition) error {
	e, err := c.lockProducer(producerID, epoch)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	if err := check(e, e.m.id, producerID, epoch); err != nil {
		return err
	}
	missing := false
	for _, tp := range tps {
		if _, in := e.m.partitions[tp]; !in {
			missing = true
		}
	}
	return c.addLocked(ctx, e, tps, missing)
}

// EndTxn handles EndTxn: commit or abort the open transaction. It answers
// once the markers are written and the transaction is complete, so that a
// read_committed consumer reading after the answer sees the outcome.
//
// With bump (EndTxn v5+ under transaction.version 2, KIP-890 part 2) every
// EndTxn bumps the producer's epoch: the markers carry the new epoch, which
// fences any late write of the transaction, and the answer returns it (a
// new producer id when the epochs run out). An abort with no open
// transaction then succeeds and bumps too, and a retry of an EndTxn that
// completed (sent with the epoch before its bump) gets the same answer.
func (c *Coordinator) EndTxn(ctx context.Context, id string, producerID int64, epoch int16, commit, bump bool) (int64, int16, error) {
	if err := c.ready(); err != nil {
		return -1, -1, err
	}
	e := c.lock(id, false)
	if e == nil {
		return -1, -1, check(nil, id, producerID, epoch)
	}
	defer e.mu.Unlock()
	if bump {
		return c.endBumping(ctx, e, producerID, epoch, commit)
	}
	if err := c.endTxn(ctx, e, producerID, epoch, commit); err != nil {
		return -1, -1, err
	}
	return e.m.producerID, e.m.epoch, nil
}

// endBumping is EndTxn under KIP-890 part 2. Called with e locked.
func (c *Coordinator) endBumping(ctx context.Context, e *entry, producerID int64, epoch int16, commit bool) (int64, int16, error) {
	m := &e.m
	done := m.state == CompleteCommit || m.state == CompleteAbort
	if done && producerID == m.lastProducer && epoch == m.lastEpoch {
		// A retry of the EndTxn that completed the transaction, or an
		// abort of one the coordinator aborted on timeout.
		if (m.state == CompleteCommit) != commit {
			return -1, -1, fmt.Errorf("%w: the transaction of %q already ended with %s", kerr.InvalidTxnState, m.id, m.state)
		}
		return m.producerID, m.epoch, nil
	}
	if err := check(e, m.id, producerID, epoch); err != nil {
		return -1, -1, err
	}
	switch m.state {
	case Ongoing:
		if err := c.end(ctx, e, commit, true); err != nil {
			return -1, -1, err
		}
	case Empty, CompleteCommit, CompleteAbort:
		if commit {
			return -1, -1, fmt.Errorf("%w: %q has no open transaction to commit (state %s)", kerr.InvalidTxnState, m.id, m.state)
		}
		next := m.clone()
		next.lastProducer, next.lastEpoch = next.producerID, next.epoch
		next.epoch++
		next.state = CompleteAbort
		if err := c.write(ctx, e, next); err != nil {
			return -1, -1, err
		}
	default:
		return -1, -1, fmt.Errorf("%w: %q is %s", kerr.InvalidTxnState, m.id, m.state)
	}
	if e.m.epoch >= math.MaxInt16-1 {
		// The epochs are spent: the next transaction gets a new id.
		pid, err := c.cfg.AllocateProducerID(ctx)
		if err != nil {
			return -1, -1, fmt.Errorf("%w: allocate a producer id: %v", kerr.CoordinatorNotAvailable, err)
		}
		// lastProducer and lastEpoch stay those the client sent, so that
		// its retry of this EndTxn gets this answer again.
		next := e.m.clone()
		next.producerID, next.epoch = pid, 0
		if err := c.write(ctx, e, next); err != nil {
			return -1, -1, err
		}
	}
	return e.m.producerID, e.m.epoch, nil
}

// endTxn is EndTxn before KIP-890 part 2. Called with e locked.
func (c *Coordinator) endTxn(ctx context.Context, e *entry, producerID int64, epoch int16, commit bool) error {
	id := e.m.id
	if e.m.producerID != producerID {
		return check(nil, id, producerID, epoch)
	}
	// Kafka answers a retry of the EndTxn that completed the transaction
	// (epoch unchanged) with success.
	switch e.m.state {
	case CompleteCommit, CompleteAbort:
		if epoch == e.m.epoch && (e.m.state == CompleteCommit) == commit {
			return nil
		}
	}
	if err := check(e, id, producerID, epoch); err != nil {
		return err
	}
	switch e.m.state {
	case Ongoing:
		return c.end(ctx, e, commit, false)
	case Empty, CompleteCommit, CompleteAbort:
		return fmt.Errorf("%w: %q has no open transaction (state %s)", kerr.InvalidTxnState, id, e.m.state)
	}
	return fmt.Errorf("%w: %q is %s", kerr.InvalidTxnState, id, e.m.state)
}

// end takes e's open transaction through Prepare to Complete: the prepare
// state is written first so that a crash part way is finished at the next
// start, then the markers, then the completion. With fence the epoch is
// bumped first, so that the producer of the transaction is fenced (a new
// producer of the id, or the transaction timed out) and the markers carry
// the new epoch. Called with e locked.
func (c *Coordinator) end(ctx context.Context, e *entry, commit, fence bool) error {
	m := e.m.clone()
	if fence {
		// Up to MaxInt16, as Kafka's prepareFenceProducerEpoch: the
		// last epoch is never handed out (InitProducerId and EndTxn
		// move to a new producer id before it), so it fences everyone.
		m.lastProducer, m.lastEpoch = m.producerID, m.epoch
		if m.epoch < math.MaxInt16 {
			m.epoch++
		}
	}
	m.state = PrepareAbort
	if commit {
		m.state = PrepareCommit
	}
	if err := c.write(ctx, e, m); err != nil {
		return err
	}
	return c.complete(ctx, e)
}

// complete writes the markers of e's prepared transaction and then its
// completion. Called with e locked and e in PrepareCommit or PrepareAbort
// (PrepareEpochFence, which we never write but Kafka may have, aborts).
func (c *Coordinator) complete(ctx context.Context, e *entry) error {
	commit := e.m.state == PrepareCommit
	ctx, cancel := context.WithTimeout(ctx, markerTimeout)
	defer cancel()
	cepoch := c.coordinatorEpoch(e.m.id)
	tps := e.m.sortedPartitions()
	errs := make([]error, len(tps))
	var wg sync.WaitGroup
	for i, tp := range tps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.cfg.WriteMarker(ctx, tp, e.m.producerID, e.m.epoch, commit, cepoch)
			if errors.Is(err, ErrUnknownPartition) {
				err = nil
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.cfg.Logger.Warn("writing transaction markers failed; retrying later", "transactional_id", e.m.id, "err", err)
		return fmt.Errorf("%w: markers of %q not all written yet: %v", kerr.ConcurrentTransactions, e.m.id, err)
	}
	m := e.m.clone()
	m.state = CompleteAbort
	if commit {
		m.state = CompleteCommit
	}
	clear(m.partitions)
	m.startMs = -1
	return c.write(ctx, e, m)
}

// background aborts timed-out transactions, finishes prepared ones whose
// markers are not all written (after a crash, or a failed write), and
// removes ids unused for transactional.id.expiration.ms.
func (c *Coordinator) background(loaded []*entry) {
	defer c.wg.Done()
	// Prepared transactions found at load wait for the groups' state, so
	// that their offset commits apply. Only those: a transaction prepared
	// since, whose markers failed, is retried at the next check like any
	// other (finishing it here too would depend on when this goroutine
	// happened to run).
	if c.cfg.GroupsReady != nil {
		if ready := c.cfg.GroupsReady(); ready != nil {
			select {
			case <-ready:
			case <-c.ctx.Done():
				return
			}
		}
	}
	c.finishPrepared(loaded)
	abort := time.NewTicker(c.cfg.AbortCheckInterval)
	defer abort.Stop()
	expire := time.NewTicker(c.cfg.ExpireCheckInterval)
	defer expire.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-abort.C:
			c.abortTimedOut()
			c.finishPrepared(c.entries())
		case <-expire.C:
			c.expireIDs()
		}
	}
}

// entries returns every entry (a copy of the list).
func (c *Coordinator) entries() []*entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*entry, 0, len(c.txns))
	for _, e := range c.txns {
		out = append(out, e)
	}
	return out
}

func (c *Coordinator) finishPrepared(entries []*entry) {
	for _, e := range entries {
		if !e.mu.TryLock() {
			continue // busy: its own operation finishes it
		}
		switch e.m.state {
		case PrepareCommit, PrepareAbort:
			_ = c.complete(c.ctx, e)
		case PrepareEpochFence:
			m := e.m.clone()
			m.state = PrepareAbort
			if err := c.write(c.ctx, e, m); err == nil {
				_ = c.complete(c.ctx, e)
			}
		}
		e.mu.Unlock()
	}
}

// abortTimedOut aborts, fencing their producers, the transactions open
// longer than their transaction.timeout.ms.
func (c *Coordinator) abortTimedOut() {
	now := c.cfg.Now().UnixMilli()
	for _, e := range c.entries() {
		if !e.mu.TryLock() {
			continue
		}
		if e.m.state == Ongoing && e.m.startMs >= 0 && now-e.m.startMs > int64(e.m.timeoutMs) {
			c.cfg.Logger.Info("aborting a timed-out transaction", "transactional_id", e.m.id,
				"producer_id", e.m.producerID, "epoch", e.m.epoch, "timeout_ms", e.m.timeoutMs)
			if err := c.end(c.ctx, e, false, true); err != nil {
				c.cfg.Logger.Warn("aborting a timed-out transaction failed", "transactional_id", e.m.id, "err", err)
			}
		}
		e.mu.Unlock()
	}
}

// expireIDs removes ids with no open transaction that were not used for
// transactional.id.expiration.ms: a tombstone in Topic, then out of memory.
func (c *Coordinator) expireIDs() {
	now := c.cfg.Now().UnixMilli()
	for _, e := range c.entries() {
		if !e.mu.TryLock() {
			continue
		}
		switch e.m.state {
		case Empty, CompleteCommit, CompleteAbort:
			if now-e.m.lastUpdateMs > c.cfg.IDExpiration.Milliseconds() {
				if err := c.append(c.ctx, e.m.id, nil); err == nil {
					c.mu.Lock()
					delete(c.txns, e.m.id)
					if c.byPID[e.m.producerID] == e {
						delete(c.byPID, e.m.producerID)
					}
					c.mu.Unlock()
					e.removed = true
				}
			}
		}
		e.mu.Unlock()
	}
}
