package txn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/record"
)

// The leadership of the partitions of Topic: Start (one node), Elect and
// Resign (a cluster), the load of a partition's transactional ids and the
// work done for them while this broker leads it (Kafka's
// TransactionCoordinator.onElection / onResignation and
// TransactionStateManager.loadTransactionsForTxnTopicPartition /
// removeTransactionsForTxnTopicPartition).

// Limits of the retries of a load that failed, and of the background's
// state writes.
const (
	loadRetryBackoff    = 100 * time.Millisecond
	maxLoadRetryBackoff = 10 * time.Second
	// backgroundWriteTimeout bounds a state write of the background
	// checks (a commit waits for the in-sync replicas); one that fails is
	// tried again at the next check.
	backgroundWriteTimeout = 30 * time.Second
)

// errClosed is what Start and Elect answer after Close.
var errClosed = errors.New("txn: the coordinator is closed")

// txnPartition is a partition of Topic this broker leads in one leader
// epoch: its transactional ids and the work done for them. A newer Elect
// or a Resign replaces it; whoever holds it then sees ctx done.
type txnPartition struct {
	id    int32
	epoch int32 // the leader epoch: the coordinator epoch of its markers
	// ctx ends with Resign, a newer Elect or Close; it bounds the load,
	// the markers and the state writes done for the partition's ids.
	ctx    context.Context
	cancel context.CancelFunc
	// appendMu is read-held around each local append to the partition
	// (not the waits after it), write-held while ctx is cancelled: once
	// the partition is replaced no append of this epoch starts, so the
	// next load, which starts after, reads every record this epoch wrote.
	appendMu sync.RWMutex

	// Under Coordinator.mu; part is set once, with loaded.
	part   *partition.Partition
	loaded bool
	txns   map[string]*entry
	byPID  map[int64]*entry
}

// stop ends the partition's work: its appends first (see appendMu).
func (tp *txnPartition) stop() {
	tp.appendMu.Lock()
	tp.cancel()
	tp.appendMu.Unlock()
}

// entriesLocked returns the partition's entries (a copy of the list). Called
// with Coordinator.mu held.
func (tp *txnPartition) entriesLocked() []*entry {
	out := make([]*entry, 0, len(tp.txns))
	for _, e := range tp.txns {
		out = append(out, e)
	}
	return out
}

// Start makes this broker the coordinator of all n partitions of Topic, as
// on a single node: each is elected at its replica's leader epoch (what
// its markers carried so far) and loaded before Start returns, and the
// background work starts (timeouts, expiry, markers left unwritten). A
// load that fails undoes the others, and the next Start tries again. Once
// n is known (Start, or an Elect) later calls do nothing.
func (c *Coordinator) Start(n int) error {
	c.mu.Lock()
	if c.n > 0 || n <= 0 {
		c.mu.Unlock()
		return nil
	}
	if c.closed {
		c.mu.Unlock()
		return errClosed
	}
	c.n = n
	c.mu.Unlock()
	type loaded struct {
		tp       *txnPartition
		prepared []*entry
		end      int64
	}
	var done []loaded
	var elected []*txnPartition
	fail := func(err error) error {
		c.mu.Lock()
		for _, tp := range elected {
			if c.parts[tp.id] == tp {
				delete(c.parts, tp.id)
				tp.stop()
			}
			delete(c.epochs, tp.id)
		}
		c.n = 0 // not started: the next Start tries again
		c.mu.Unlock()
		return err
	}
	for p := int32(0); p < int32(n); p++ {
		part, ok := c.cfg.Partition(p)
		if !ok {
			return fail(fmt.Errorf("txn: partition %s-%d is not open", Topic, p))
		}
		tp, err := c.beginLoad(p, n, part.LeaderEpoch())
		if err != nil {
			return fail(err)
		}
		if tp == nil {
			continue // elected since at a newer epoch
		}
		elected = append(elected, tp)
		prepared, end, err := c.load(tp)
		if err != nil {
			return fail(err)
		}
		done = append(done, loaded{tp, prepared, end})
	}
	for _, l := range done {
		if !c.goRun(func() { c.serve(l.tp, l.prepared, l.end) }) {
			return errClosed
		}
	}
	return nil
}

// Elect makes this broker the coordinator of the transactional ids of
// partition p of Topic (of n partitions), whose leader it became in
// leaderEpoch (Kafka's TransactionCoordinator.onElection): the replica of
// p must lead in leaderEpoch (state writes are refused otherwise). The
// load runs in the background, so that a leadership change does not wait
// for it: until it is done requests for p's ids answer
// COORDINATOR_LOAD_IN_PROGRESS, and a load that fails is retried. Then the
// transactions found in PrepareCommit or PrepareAbort are completed
// (markers with coordinator epoch leaderEpoch, so that markers of an older
// coordinator of the partition are fenced, then the completion), once the
// loaded records are committed and the group coordinator has loaded, and
// the timeouts and expiry of p's ids run here.
//
// A newer leaderEpoch replaces what an older one loaded or is loading (its
// work in flight is stopped first); one at or below the newest seen for p
// (Elect or Resign) is stale and ignored. The error is for arguments a
// caller got wrong: p not in [0, n), n not the partition count known
// already (Kafka refuses a change of it too), or a closed coordinator.
func (c *Coordinator) Elect(p int32, n int, leaderEpoch int32) error {
	tp, err := c.beginLoad(p, n, leaderEpoch)
	if err != nil || tp == nil {
		return err
	}
	if !c.goRun(func() { c.loadAndServe(tp) }) {
		return errClosed
	}
	return nil
}

// Resign drops what this broker knows of the transactional ids of
// partition p of Topic, whose leadership it lost (Kafka's
// TransactionCoordinator.onResignation): their state leaves memory, their
// work in flight stops (a load, markers being retried, state writes
// waiting to be committed answer NOT_COORDINATOR), and requests for them
// answer NOT_COORDINATOR, so that clients look for the new coordinator,
// which loads the partition from its replica. A transaction left prepared
// is completed by that coordinator.
//
// leaderEpoch is the partition's leader epoch at which this broker stopped
// leading it (the new leader's, as Kafka passes it, or the one it led); a
// Resign older than the last Elect of p is stale and ignored, and an Elect
// at or below leaderEpoch afterwards too.
func (c *Coordinator) Resign(p int32, leaderEpoch int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.epochs[p]; ok && leaderEpoch < last {
		return
	}
	c.epochs[p] = leaderEpoch
	tp := c.parts[p]
	if tp == nil {
		return
	}
	delete(c.parts, p)
	tp.stop()
	c.cfg.Logger.Info("resigned as transaction coordinator", "partition", p, "leader_epoch", tp.epoch,
		"new_leader_epoch", leaderEpoch)
}

// beginLoad installs a loading partition p in leaderEpoch, replacing (and
// stopping) an older one; nil if leaderEpoch is stale.
func (c *Coordinator) beginLoad(p int32, n int, leaderEpoch int32) (*txnPartition, error) {
	if n <= 0 || p < 0 || int(p) >= n {
		return nil, fmt.Errorf("txn: no partition %d in %d partitions of %s", p, n, Topic)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, errClosed
	case c.n == 0:
		c.n = n
	case c.n != n:
		return nil, fmt.Errorf("txn: %s has %d partitions, not %d: a change of its partition count moves transactional ids between partitions and is not supported",
			Topic, c.n, n)
	}
	if last, ok := c.epochs[p]; ok && leaderEpoch <= last {
		c.cfg.Logger.Debug("ignoring a stale election", "partition", p, "leader_epoch", leaderEpoch, "newest", last)
		return nil, nil
	}
	c.epochs[p] = leaderEpoch
	if old := c.parts[p]; old != nil {
		old.stop()
	}
	ctx, cancel := context.WithCancel(c.ctx)
	tp := &txnPartition{id: p, epoch: leaderEpoch, ctx: ctx, cancel: cancel,
		txns: map[string]*entry{}, byPID: map[int64]*entry{}}
	c.parts[p] = tp
	return tp, nil
}

// goRun runs f in a goroutine Close waits for; false once closed.
func (c *Coordinator) goRun(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// loadAndServe loads tp, retrying with backoff until it is loaded or
// replaced, then serves it.
func (c *Coordinator) loadAndServe(tp *txnPartition) {
	backoff := loadRetryBackoff
	for {
		prepared, end, err := c.load(tp)
		if err == nil {
			c.serve(tp, prepared, end)
			return
		}
		if tp.ctx.Err() != nil {
			return
		}
		c.cfg.Logger.Error("loading transactions failed; retrying", "partition", tp.id, "leader_epoch", tp.epoch,
			"retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-tp.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxLoadRetryBackoff)
	}
}

// load reads tp's partition of Topic up to its log end (a new leader's log
// is the partition's, committed or not yet: Kafka reads to the log end
// too), the last record of each id winning, and makes tp serve them. It
// returns the entries found prepared, and the offset the records read end
// at.
func (c *Coordinator) load(tp *txnPartition) ([]*entry, int64, error) {
	started := time.Now()
	part, ok := c.cfg.Partition(tp.id)
	if !ok {
		return nil, 0, fmt.Errorf("txn: partition %s-%d is not open", Topic, tp.id)
	}
	if !part.IsLeader() || part.LeaderEpoch() != tp.epoch {
		// Elected before the replica was told (or after it moved on):
		// its log is not yet (or no longer) the partition's.
		return nil, 0, fmt.Errorf("txn: the replica of %s-%d is at leader epoch %d (leader %v), not leading at %d",
			Topic, tp.id, part.LeaderEpoch(), part.IsLeader(), tp.epoch)
	}
	txns, records, end, err := c.read(tp, part)
	if err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	if c.parts[tp.id] != tp {
		c.mu.Unlock()
		return nil, 0, fmt.Errorf("txn: load of %s-%d at leader epoch %d: %w", Topic, tp.id, tp.epoch, context.Canceled)
	}
	tp.part = part
	var prepared []*entry
	for id, m := range txns {
		e := &entry{part: tp, m: *m}
		tp.txns[id] = e
		tp.byPID[m.producerID] = e
		switch m.state {
		case PrepareCommit, PrepareAbort, PrepareEpochFence:
			prepared = append(prepared, e)
		}
	}
	tp.loaded = true
	c.mu.Unlock()
	c.cfg.Logger.Info("loaded transactions", "partition", tp.id, "leader_epoch", tp.epoch, "records", records,
		"transactional_ids", len(txns), "took", time.Since(started).Round(time.Millisecond))
	return prepared, end, nil
}

// read reads part from its log start to its log end offset.
func (c *Coordinator) read(tp *txnPartition, part *partition.Partition) (map[string]*meta, int, int64, error) {
	out := map[string]*meta{}
	records := 0
	off, end := part.Log().StartOffset(), part.Log().EndOffset()
	for off < end {
		if err := tp.ctx.Err(); err != nil {
			return nil, records, 0, fmt.Errorf("txn: load of %s-%d at leader epoch %d: %w", Topic, tp.id, tp.epoch, err)
		}
		buf, err := part.Log().ReadBatches(off, loadReadBytes)
		if err != nil {
			return nil, records, 0, fmt.Errorf("txn: read %s-%d at %d: %w", Topic, tp.id, off, err)
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
					return nil, records, 0, fmt.Errorf("txn: decode %s-%d at %d: %w", Topic, tp.id, h.BaseOffset, err)
				}
				for _, r := range recs {
					if h.BaseOffset+int64(r.OffsetDelta) < off {
						continue
					}
					records++
					id, m, ok, err := decodeRecord(r.Key, r.Value)
					if err != nil {
						c.cfg.Logger.Warn("skipping a record that does not decode", "partition", tp.id,
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
			return nil, records, 0, fmt.Errorf("txn: read %s-%d at %d: %w", Topic, tp.id, off, err)
		}
	}
	return out, records, off, nil
}

// serve does tp's background work until it is replaced: first the
// transactions found prepared at load, once what was loaded is committed
// (markers are side effects elsewhere: they must not follow a state a new
// leader could still lose) and the groups' state is loaded (so that their
// offset commits apply); then, on timers, the timeouts, the prepared
// transactions whose completion failed, and the expiry of ids.
func (c *Coordinator) serve(tp *txnPartition, prepared []*entry, end int64) {
	if c.cfg.GroupsReady != nil {
		if ready := c.cfg.GroupsReady(); ready != nil {
			select {
			case <-ready:
			case <-tp.ctx.Done():
				return
			}
		}
	}
	if err := tp.part.WaitCommitted(tp.ctx, end); err != nil {
		if tp.ctx.Err() == nil {
			c.cfg.Logger.Warn("the loaded transaction state is not committed; waiting for a resignation",
				"partition", tp.id, "leader_epoch", tp.epoch, "err", err)
		}
		return
	}
	c.finishPrepared(tp, prepared, true)
	abort := time.NewTicker(c.cfg.AbortCheckInterval)
	defer abort.Stop()
	expire := time.NewTicker(c.cfg.ExpireCheckInterval)
	defer expire.Stop()
	for {
		select {
		case <-tp.ctx.Done():
			return
		case <-abort.C:
			c.abortTimedOut(tp)
			c.finishPrepared(tp, c.entries(tp), false)
		case <-expire.C:
			c.expireIDs(tp)
		}
	}
}

// entries returns tp's entries (a copy of the list).
func (c *Coordinator) entries(tp *txnPartition) []*entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return tp.entriesLocked()
}

// finishPrepared completes the prepared transactions among entries whose
// markers nobody is writing. With block it waits for each entry's lock (at
// load: requests for a prepared id answer at once); else busy entries are
// left to the next check.
func (c *Coordinator) finishPrepared(tp *txnPartition, entries []*entry, block bool) {
	for _, e := range entries {
		if block {
			e.mu.Lock()
		} else if !e.mu.TryLock() {
			continue
		}
		if !e.removed && !e.completing && tp.ctx.Err() == nil {
			switch e.m.state {
			case PrepareCommit, PrepareAbort:
				_ = c.complete(tp.ctx, e, false)
			case PrepareEpochFence:
				m := e.m.clone()
				m.state = PrepareAbort
				ctx, cancel := context.WithTimeout(tp.ctx, backgroundWriteTimeout)
				if err := c.write(ctx, e, m); err == nil {
					_ = c.complete(tp.ctx, e, false)
				}
				cancel()
			}
		}
		e.mu.Unlock()
	}
}

// abortTimedOut aborts, fencing their producers, tp's transactions open
// longer than their transaction.timeout.ms; the markers are written in the
// background.
func (c *Coordinator) abortTimedOut(tp *txnPartition) {
	now := c.cfg.Now().UnixMilli()
	for _, e := range c.entries(tp) {
		if !e.mu.TryLock() {
			continue
		}
		if !e.removed && e.m.state == Ongoing && e.m.startMs >= 0 && now-e.m.startMs > int64(e.m.timeoutMs) {
			c.cfg.Logger.Info("aborting a timed-out transaction", "transactional_id", e.m.id,
				"producer_id", e.m.producerID, "epoch", e.m.epoch, "timeout_ms", e.m.timeoutMs)
			ctx, cancel := context.WithTimeout(tp.ctx, backgroundWriteTimeout)
			if err := c.end(ctx, e, false, true, false); err != nil {
				c.cfg.Logger.Warn("aborting a timed-out transaction failed", "transactional_id", e.m.id, "err", err)
			}
			cancel()
		}
		e.mu.Unlock()
	}
}

// expireIDs removes tp's ids with no open transaction that were not used
// for transactional.id.expiration.ms: a tombstone in Topic, then out of
// memory.
func (c *Coordinator) expireIDs(tp *txnPartition) {
	now := c.cfg.Now().UnixMilli()
	for _, e := range c.entries(tp) {
		if !e.mu.TryLock() {
			continue
		}
		switch e.m.state {
		case Empty, CompleteCommit, CompleteAbort:
			if !e.removed && now-e.m.lastUpdateMs > c.cfg.IDExpiration.Milliseconds() {
				ctx, cancel := context.WithTimeout(tp.ctx, backgroundWriteTimeout)
				err := c.append(ctx, tp, e.m.id, nil)
				cancel()
				if err == nil {
					c.mu.Lock()
					if tp.txns[e.m.id] == e {
						delete(tp.txns, e.m.id)
					}
					if tp.byPID[e.m.producerID] == e {
						delete(tp.byPID, e.m.producerID)
					}
					c.mu.Unlock()
					e.removed = true
				}
			}
		}
		e.mu.Unlock()
	}
}
