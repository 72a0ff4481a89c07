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
	// markerTimeout bounds how long a request (EndTxn, or an
	// InitProducerId that aborts) waits for a transaction's markers; they
	// go on being retried in the background after it, and the request
	// answers CONCURRENT_TRANSACTIONS so that the client retries it.
	markerTimeout = 30 * time.Second
	// markerRetryBackoff is the first wait before a failed marker write is
	// retried; it doubles up to maxMarkerRetryBackoff.
	markerRetryBackoff    = 100 * time.Millisecond
	maxMarkerRetryBackoff = 5 * time.Second
)

// ErrUnknownPartition is what Config.WriteMarker returns for a partition
// that no longer exists (deleted topic): it needs no marker.
var ErrUnknownPartition = errors.New("txn: partition does not exist")

// Config configures a Coordinator.
type Config struct {
	// Partition returns the open replica of partition p of Topic. It is
	// called when p is loaded (Start, Elect); the replica it returns then
	// takes the state writes of p's ids until p is resigned.
	Partition func(p int32) (*partition.Partition, bool)
	// AllocateProducerID hands out a producer id that was never used.
	AllocateProducerID func(ctx context.Context) (int64, error)
	// WriteMarker appends a transaction marker to tp and returns once it
	// is durable and, for __consumer_offsets, applied to the group offsets.
	// In a cluster it sends WriteTxnMarkers to tp's leader. An error other
	// than ErrUnknownPartition is retried with backoff until the write
	// succeeds or ctx ends (the coordinator resigned or closed), as
	// Kafka's TransactionMarkerChannelManager retries a leader that moved
	// or is unknown: a marker that is no longer needed (a newer producer
	// epoch or coordinator epoch wrote there) must answer nil.
	WriteMarker func(ctx context.Context, tp TopicPartition, producerID int64, epoch int16, commit bool, coordinatorEpoch int32) error
	// OffsetsPartitions is the number of __consumer_offsets partitions (0:
	// none yet), to find a group's partition for AddOffsetsToTxn.
	OffsetsPartitions func() int
	// GroupsReady is closed once the group coordinator has loaded; markers
	// of transactions found half-done at a load wait for it.
	GroupsReady func() <-chan struct{}

	MaxTimeout          time.Duration
	AbortCheckInterval  time.Duration
	IDExpiration        time.Duration
	ExpireCheckInterval time.Duration

	Logger *slog.Logger
	Now    func() time.Time
}

// Coordinator is the transaction coordinator of this broker: it serves the
// transactional ids of the partitions of Topic it leads (Start: all of
// them, on one node; Elect and Resign as leaderships move in a cluster).
// Safe for concurrent use.
//
// Each transactional id has a lock held for a whole operation, state write
// and markers included, so operations on one id run one at a time and a
// request never sees a half-made change; different ids run in parallel.
// A state write is answered once it is committed (held by every in-sync
// replica), and the id's state in memory moves on only then.
//
// Lock order: entry.mu, Coordinator.mu, txnPartition.appendMu,
// completion.mu. Elect, Resign and Close stop a partition's appends
// (appendMu) under Coordinator.mu, so that its replacement is atomic with
// the stop; an append holds appendMu only around the local append, and
// takes Coordinator.mu after it. Lookups never hold Coordinator.mu while
// they wait for an entry.
type Coordinator struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	n      int                     // partitions of Topic, 0 before Start or Elect
	parts  map[int32]*txnPartition // led partitions, loading or loaded
	epochs map[int32]int32         // per partition the newest leader epoch of an Elect or Resign
}

// entry is one transactional id of a led partition. mu is held for a
// whole operation; m is read and replaced under it.
type entry struct {
	part *txnPartition // the partition (and epoch) that loaded or created it
	mu   sync.Mutex
	m    meta
	// removed: expired, look the id up again.
	removed bool
	// completing: a goroutine writes the markers of the prepared
	// transaction (see complete); nobody else starts to.
	completing bool
}

// New returns a coordinator that serves once Start or Elect has loaded
// partitions of Topic.
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
	c := &Coordinator{cfg: cfg, parts: map[int32]*txnPartition{}, epochs: map[int32]int32{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Started says whether the partition count of Topic is known (Start or
// Elect has run): requests are then answered by the partitions led here,
// NOT_COORDINATOR for the others.
func (c *Coordinator) Started() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n > 0
}

// Close stops all work (loads, markers, background checks) and waits for
// it. Requests answer NOT_COORDINATOR afterwards.
func (c *Coordinator) Close() {
	c.mu.Lock()
	c.closed = true
	for p, tp := range c.parts {
		delete(c.parts, p)
		tp.stop()
	}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// partitionOfLocked finds the led, loaded partition of id. Called with
// c.mu held.
func (c *Coordinator) partitionOfLocked(id string) (*txnPartition, error) {
	if c.n == 0 {
		return nil, kerr.NotCoordinator
	}
	p := group.PartitionFor(id, c.n)
	tp := c.parts[p]
	switch {
	case tp == nil:
		return nil, fmt.Errorf("%w: %s-%d is not led by this broker", kerr.NotCoordinator, Topic, p)
	case !tp.loaded:
		return nil, fmt.Errorf("%w: %s-%d at leader epoch %d", kerr.CoordinatorLoadInProgress, Topic, p, tp.epoch)
	}
	return tp, nil
}

// ready answers whether requests for id can be served now.
func (c *Coordinator) ready(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.partitionOfLocked(id)
	return err
}

// lock finds the entry of id, locked, creating it if create; nil if none.
// NOT_COORDINATOR when its partition is not led here, and
// COORDINATOR_LOAD_IN_PROGRESS while it loads.
func (c *Coordinator) lock(id string, create bool) (*entry, error) {
	for {
		c.mu.Lock()
		tp, err := c.partitionOfLocked(id)
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		e := tp.txns[id]
		if e == nil {
			if !create {
				c.mu.Unlock()
				return nil, nil
			}
			e = &entry{part: tp, m: meta{id: id, producerID: -1, lastProducer: -1, epoch: -1, lastEpoch: -1, startMs: -1,
				partitions: map[TopicPartition]struct{}{}}}
			tp.txns[id] = e
		}
		c.mu.Unlock()
		e.mu.Lock()
		if !e.removed && tp.ctx.Err() == nil {
			return e, nil
		}
		e.mu.Unlock() // expired, or its partition resigned: look again
	}
}

// dropIfNew forgets an entry that was created by lock but never written.
func (c *Coordinator) dropIfNew(e *entry) {
	if e.m.producerID >= 0 {
		return
	}
	c.mu.Lock()
	if e.part.txns[e.m.id] == e {
		delete(e.part.txns, e.m.id)
	}
	c.mu.Unlock()
	e.removed = true
}

// write makes m the committed state of its id, then the current one. On
// an error nothing changes in memory (the record may still be in the
// log: the next write, or the next coordinator's load, settles it).
func (c *Coordinator) write(ctx context.Context, e *entry, m meta) error {
	m.lastUpdateMs = c.cfg.Now().UnixMilli()
	tp := e.part
	if err := c.append(ctx, tp, m.id, encodeValue(&m)); err != nil {
		return err
	}
	c.mu.Lock()
	if c.parts[tp.id] != tp {
		// Resigned (or re-elected) while the record was written: as
		// Kafka, whose cached coordinator epoch changed, answer
		// NOT_COORDINATOR and leave the state to the new coordinator.
		c.mu.Unlock()
		return fmt.Errorf("%w: %s-%d was resigned at leader epoch %d while %q was written", kerr.NotCoordinator, Topic, tp.id, tp.epoch, m.id)
	}
	if old := e.m.producerID; old != m.producerID && tp.byPID[old] == e {
		delete(tp.byPID, old)
	}
	tp.byPID[m.producerID] = e
	c.mu.Unlock()
	e.m = m
	return nil
}

// append writes one record of id (nil value: a tombstone) to tp's
// partition of Topic and waits until it is committed: durable here and,
// in a cluster, held by every in-sync replica (Kafka appends with
// acks=all), since a state a new leader could lose must not be acted on.
// Failures answer as Kafka's coordinator does: NOT_COORDINATOR when the
// replica no longer leads (or tp was resigned), so that the client looks
// for the coordinator again; COORDINATOR_NOT_AVAILABLE when the commit
// took longer than the request could wait.
func (c *Coordinator) append(ctx context.Context, tp *txnPartition, id string, value []byte) error {
	now := c.cfg.Now().UnixMilli()
	batch, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Key: encodeKey(id), Value: value}})
	if err != nil {
		return fmt.Errorf("%w: build state record: %v", kerr.UnknownServerError, err)
	}
	// The waits end when tp is resigned too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(tp.ctx, cancel)
	defer stop()

	p := tp.part
	tp.appendMu.RLock()
	switch {
	case tp.ctx.Err() != nil:
		err = fmt.Errorf("resigned at leader epoch %d", tp.epoch)
	case !p.IsLeader() || p.LeaderEpoch() != tp.epoch:
		// The replica moved on without (yet) an Elect or Resign here.
		err = fmt.Errorf("%w: the replica is at leader epoch %d (leader %v), the coordinator at %d",
			partition.ErrNotLeader, p.LeaderEpoch(), p.IsLeader(), tp.epoch)
	}
	var res partition.AppendResult
	if err == nil {
		res, err = p.Append(batch)
	}
	tp.appendMu.RUnlock()
	if err == nil {
		err = p.WaitDurable(res.LastOffset)
	}
	if err == nil {
		err = p.WaitCommitted(ctx, res.LastOffset+1)
	}
	if err == nil {
		return nil
	}
	c.cfg.Logger.Warn("writing transaction state failed", "transactional_id", id, "partition", tp.id,
		"leader_epoch", tp.epoch, "err", err)
	if ctx.Err() != nil && tp.ctx.Err() == nil {
		return fmt.Errorf("%w: write %s-%d: %v", kerr.CoordinatorNotAvailable, Topic, tp.id, err)
	}
	return fmt.Errorf("%w: write %s-%d: %v", kerr.NotCoordinator, Topic, tp.id, err)
}

// InitProducerID handles InitProducerId for a transactional id (Kafka's
// TransactionCoordinator.handleInitProducerId): a new id gets a new
// producer id at epoch 0; a known one gets its epoch bumped, which fences
// every older producer of the id, after its open transaction (if any) is
// aborted. producerID and epoch (KIP-360, v3+; -1 otherwise) let a
// producer that lost track of a response retry without being fenced.
func (c *Coordinator) InitProducerID(ctx context.Context, id string, timeoutMs int32, producerID int64, epoch int16) (int64, int16, error) {
	if err := c.ready(id); err != nil {
		return -1, -1, err
	}
	if timeoutMs <= 0 || int64(timeoutMs) > c.cfg.MaxTimeout.Milliseconds() {
		return -1, -1, fmt.Errorf("%w: transaction.timeout.ms %d is not in (0, %d] (transaction.max.timeout.ms)",
			kerr.InvalidTransactionTimeout, timeoutMs, c.cfg.MaxTimeout.Milliseconds())
	}
	e, err := c.lock(id, true)
	if err != nil {
		return -1, -1, err
	}
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
		if err := c.end(ctx, e, false, true, true); err != nil {
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
	e, err := c.lock(id, false)
	if err != nil {
		return err
	}
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
	for {
		c.mu.Lock()
		if c.n == 0 {
			c.mu.Unlock()
			return nil, kerr.NotCoordinator
		}
		var e *entry
		loading := false
		for _, tp := range c.parts {
			if !tp.loaded {
				loading = true
			} else if e = tp.byPID[producerID]; e != nil {
				break
			}
		}
		c.mu.Unlock()
		if e == nil {
			if loading {
				// It may be an id of the partition being loaded.
				return nil, fmt.Errorf("%w: producer %d", kerr.CoordinatorLoadInProgress, producerID)
			}
			return nil, fmt.Errorf("%w: producer %d has no transactional id here", kerr.InvalidTxnState, producerID)
		}
		e.mu.Lock()
		if e.part.ctx.Err() != nil {
			e.mu.Unlock()
			continue // resigned: look again
		}
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
	e, err := c.lock(id, false)
	if err != nil {
		return -1, -1, err
	}
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
		if err := c.end(ctx, e, commit, true, true); err != nil {
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
		return c.end(ctx, e, commit, false, true)
	case Empty, CompleteCommit, CompleteAbort:
		return fmt.Errorf("%w: %q has no open transaction (state %s)", kerr.InvalidTxnState, id, e.m.state)
	}
	return fmt.Errorf("%w: %q is %s", kerr.InvalidTxnState, id, e.m.state)
}

// end takes e's open transaction through Prepare to Complete: the prepare
// state is written first so that a crash or a resignation part way is
// finished by the next coordinator of the id, then the markers, then the
// completion (see complete; wait says whether to wait for it). With fence
// the epoch is bumped first, so that the producer of the transaction is
// fenced (a new producer of the id, or the transaction timed out) and the
// markers carry the new epoch. Called with e locked.
func (c *Coordinator) end(ctx context.Context, e *entry, commit, fence, wait bool) error {
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
	return c.complete(ctx, e, wait)
}

// completion hands the outcome of a transaction's markers from the
// goroutine writing them to the request waiting for it, or, once the
// request stopped waiting (abandoned), leaves the completion write to the
// goroutine.
type completion struct {
	mu        sync.Mutex
	abandoned bool
	done      chan error // buffered: the markers' outcome, unless abandoned
}

// complete writes the markers of e's prepared transaction and then its
// completion. Called with e locked and e in PrepareCommit or PrepareAbort
// (PrepareEpochFence, which we never write but Kafka may have, is turned
// into PrepareAbort first).
//
// The markers are written by a goroutine of e's partition, each retried
// with backoff until it is written or the partition is resigned (Kafka's
// TransactionMarkerChannelManager): the outcome is decided once Prepare is
// committed, so giving up would only leave the transaction open longer.
// With wait the caller (a request) waits for them, up to markerTimeout or
// ctx, and writes the completion itself, so that a read_committed consumer
// reading after the answer sees the outcome; past that it answers
// CONCURRENT_TRANSACTIONS (the client retries) and the goroutine writes
// the completion. Without wait (the background) it returns at once.
func (c *Coordinator) complete(ctx context.Context, e *entry, wait bool) error {
	if e.completing {
		panic("BUG: txn: a second completion of the transaction of " + e.m.id)
	}
	tp := e.part
	id, pid, epoch, commit := e.m.id, e.m.producerID, e.m.epoch, e.m.state == PrepareCommit
	tps := e.m.sortedPartitions()
	x := &completion{abandoned: !wait, done: make(chan error, 1)}
	e.completing = true
	started := c.goRun(func() {
		err := c.writeMarkers(tp, id, pid, epoch, commit, tps)
		x.mu.Lock()
		if !x.abandoned {
			x.done <- err
			x.mu.Unlock()
			return
		}
		x.mu.Unlock()
		c.finishAbandoned(e, err)
	})
	if !started {
		e.completing = false
		return fmt.Errorf("%w: the coordinator is closed", kerr.NotCoordinator)
	}
	if !wait {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, markerTimeout)
	defer cancel()
	var err error
	select {
	case err = <-x.done:
	case <-wctx.Done():
		x.mu.Lock()
		select {
		case err = <-x.done:
		default:
			x.abandoned = true
		}
		x.mu.Unlock()
		if x.abandoned {
			return fmt.Errorf("%w: the markers of %q are not all written yet; they are being retried", kerr.ConcurrentTransactions, id)
		}
	}
	e.completing = false
	if err != nil {
		return fmt.Errorf("%w: %v", kerr.NotCoordinator, err)
	}
	return c.writeComplete(ctx, e)
}

// finishAbandoned writes the completion of e's transaction whose markers
// err reports on, once no request waits for them.
func (c *Coordinator) finishAbandoned(e *entry, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.completing = false
	tp := e.part
	if err != nil || e.removed || tp.ctx.Err() != nil {
		return
	}
	switch e.m.state {
	case PrepareCommit, PrepareAbort:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(tp.ctx, backgroundWriteTimeout)
	defer cancel()
	if err := c.writeComplete(ctx, e); err != nil && tp.ctx.Err() == nil {
		c.cfg.Logger.Warn("completing a transaction failed; retrying at the next check", "transactional_id", e.m.id, "err", err)
	}
}

// writeComplete moves e from Prepare to Complete. Called with e locked,
// its markers written.
func (c *Coordinator) writeComplete(ctx context.Context, e *entry) error {
	m := e.m.clone()
	m.state = CompleteAbort
	if e.m.state == PrepareCommit {
		m.state = CompleteCommit
	}
	clear(m.partitions)
	m.startMs = -1
	return c.write(ctx, e, m)
}

// writeMarkers writes the markers of a transaction of tp's id to tps in
// parallel, each retried until written; an error only when tp.ctx ended
// first.
func (c *Coordinator) writeMarkers(tp *txnPartition, id string, pid int64, epoch int16, commit bool, tps []TopicPartition) error {
	errs := make([]error, len(tps))
	var wg sync.WaitGroup
	for i, dst := range tps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.writeMarker(tp, id, dst, pid, epoch, commit)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writeMarker writes one marker, retrying with backoff until it is written
// or tp.ctx ends.
func (c *Coordinator) writeMarker(tp *txnPartition, id string, dst TopicPartition, pid int64, epoch int16, commit bool) error {
	backoff := markerRetryBackoff
	for attempt := 1; ; attempt++ {
		err := c.cfg.WriteMarker(tp.ctx, dst, pid, epoch, commit, tp.epoch)
		if err == nil || errors.Is(err, ErrUnknownPartition) {
			return nil
		}
		if tp.ctx.Err() != nil {
			return fmt.Errorf("txn: marker of %q in %s-%d not written: %s-%d resigned at leader epoch %d: %w",
				id, dst.Topic, dst.Partition, Topic, tp.id, tp.epoch, err)
		}
		if attempt&(attempt-1) == 0 { // 1, 2, 4, 8, ...: a log line per doubling
			c.cfg.Logger.Warn("writing a transaction marker failed; retrying", "transactional_id", id,
				"partition", fmt.Sprintf("%s-%d", dst.Topic, dst.Partition), "attempt", attempt, "retry_in", backoff, "err", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-tp.ctx.Done():
			t.Stop()
			return fmt.Errorf("txn: marker of %q in %s-%d not written: %s-%d resigned at leader epoch %d: %w",
				id, dst.Topic, dst.Partition, Topic, tp.id, tp.epoch, err)
		case <-t.C:
		}
		backoff = min(2*backoff, maxMarkerRetryBackoff)
	}
}
