package partition

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/record"
)

// What a follower replica does to its partition, as Kafka's
// UnifiedLog.appendAsFollower, truncateTo and truncateFullyAndStartAt: it
// appends its leader's batches as they are, and cuts a suffix that
// diverges from its leader's log (found with OffsetForLeaderEpoch).

// maxReplicatedBatchBytes bounds one batch a follower stores: the most
// the log's recovery reads back (a larger one would be cut as corrupt at
// the next start).
const maxReplicatedBatchBytes = 100 << 20

// maxMarkerBatchBytes bounds a control batch decoded for its type and
// coordinator epoch (a marker is about 80 bytes).
const maxMarkerBatchBytes = 64 << 10

// replicatedBatch is one whole batch of a fetch response, checked.
type replicatedBatch struct {
	raw []byte
	h   record.Header
	// marker: a commit or abort marker of a producer, with its
	// coordinator epoch.
	marker           bool
	commit           bool
	coordinatorEpoch int32
}

// AppendReplicated appends batches from the leader's fetch response: zero
// or more whole record batches, possibly followed by a partial one (cut by
// the fetch's size limit), which is ignored as Kafka's follower does. The
// batches keep the leader's offsets and leader epochs, bytes unchanged: no
// offset assignment, timestamp checks, recompression or idempotence
// checks. It returns the offset of the last record appended, -1 when
// there was no whole batch.
//
// Every batch is checked first (CRC, magic, lengths, offsets increasing,
// a marker's key and value): one that fails (ErrCorruptMessage,
// ErrUnsupportedMagic) appends nothing, nor does a first batch below the
// log end offset (ErrOffsetMismatch), nor a replica that is the leader
// (ErrNotFollower). A first batch past the log end offset is taken, and a
// gap between batches: the leader's log cleaner leaves them (Kafka takes
// them too).
//
// Then, batch by batch, as the leader did when it appended it: a leader
// epoch newer than the cache's latest (or that starts earlier) goes into
// the leader epoch cache, persisted before the batch is written (Kafka's
// assign on a follower append); the batch is appended; its producer's
// state is noted, a transaction it opens becomes the first unstable offset,
// and a commit or abort marker ends its producer's transaction (an abort
// gets its transaction index entry, durable) exactly as WriteMarker does,
// so that this replica, once leader, deduplicates the same retries and
// answers read_committed fetches with the same aborted transactions. The
// end is published once all are noted (the visibility order at
// Partition.published). A storage failure stops there: the batches before
// it stay appended and published.
func (p *Partition) AppendReplicated(batches []byte) (lastOffset int64, err error) {
	bs, err := parseReplicated(batches)
	if err != nil {
		return -1, err
	}
	p.mu.Lock()
	lastOffset, published, err := p.appendReplicatedLocked(bs)
	p.mu.Unlock()
	if published {
		p.afterPublish()
	}
	return lastOffset, err
}

func (p *Partition) appendReplicatedLocked(bs []replicatedBatch) (lastOffset int64, published bool, err error) {
	if p.leader.Load() {
		return -1, false, fmt.Errorf("%w: the leader in epoch %d takes no replicated batches", ErrNotFollower, p.leaderEpoch.Load())
	}
	if len(bs) == 0 {
		return -1, false, nil
	}
	if end := p.log.EndOffset(); bs[0].h.BaseOffset < end {
		return -1, false, fmt.Errorf("%w: the first batch is at %d, the log ends at %d", ErrOffsetMismatch, bs[0].h.BaseOffset, end)
	}
	lastOffset = -1
	defer func() {
		if lastOffset >= 0 {
			p.publishLocked(lastOffset + 1)
			published = true
		}
	}()
	for i := range bs {
		b := &bs[i]
		if err := p.assignEpochLocked(b.h.LeaderEpoch, b.h.BaseOffset); err != nil {
			return lastOffset, false, err
		}
		res, err := p.log.AppendAsFollower(b.raw)
		if err != nil {
			if errors.Is(err, log.ErrStorage) {
				err = fmt.Errorf("%w: %w", ErrStorage, err)
			}
			return lastOffset, false, err
		}
		switch {
		case b.marker:
			h := &b.h
			if err := p.noteMarkerLocked(h.ProducerID, h.ProducerEpoch, b.coordinatorEpoch, h.MaxTimestamp, b.commit, res.BaseOffset); err != nil {
				// The marker is in the log, its transaction still open
				// here: not published (a restart replays it).
				return lastOffset, false, err
			}
		case !b.h.IsControl():
			p.noteDataLocked(&b.h, res.BaseOffset)
		}
		lastOffset = res.LastOffset
	}
	return lastOffset, false, nil
}

// assignEpochLocked records that leader epoch epoch wrote a batch at
// offset, persisting the cache when it changed; on a failure to persist
// the cache is left as it was. Called with mu held.
func (p *Partition) assignEpochLocked(epoch int32, offset int64) error {
	if epoch < 0 {
		return nil // a batch written without a leader epoch
	}
	prev := epochCache{entries: append([]epochEntry(nil), p.epochs.entries...)}
	if !p.epochs.assign(epoch, offset) {
		return nil
	}
	if err := p.writeEpochsLocked(); err != nil {
		p.epochs = prev
		return err
	}
	return nil
}

// parseReplicated splits a fetch response's records into whole checked
// batches, dropping a partial last one.
func parseReplicated(b []byte) ([]replicatedBatch, error) {
	var out []replicatedBatch
	for pos := 0; pos < len(b); {
		rest := b[pos:]
		size, ok := record.PeekSize(rest)
		if !ok {
			break // a partial header
		}
		if size < record.HeaderSize || size > maxReplicatedBatchBytes {
			return nil, fmt.Errorf("%w: batch length %d at byte %d", ErrCorruptMessage, size, pos)
		}
		if size > len(rest) {
			break // a partial batch: the fetch's size limit cut it
		}
		h, err := record.Parse(rest[:size])
		if err != nil {
			if errors.Is(err, record.ErrUnsupportedMagic) {
				return nil, fmt.Errorf("%w: batch at byte %d: %v", ErrUnsupportedMagic, pos, err)
			}
			return nil, fmt.Errorf("%w: batch at byte %d: %v", ErrCorruptMessage, pos, err)
		}
		if h.BaseOffset < 0 || h.BaseOffset > math.MaxInt64-int64(h.LastOffsetDelta)-1 {
			return nil, fmt.Errorf("%w: batch at byte %d has offsets %d+%d", ErrCorruptMessage, pos, h.BaseOffset, h.LastOffsetDelta)
		}
		if n := len(out); n > 0 && h.BaseOffset <= out[n-1].h.LastOffset() {
			return nil, fmt.Errorf("%w: batch at %d after the batch ending at %d", ErrCorruptMessage, h.BaseOffset, out[n-1].h.LastOffset())
		}
		rb := replicatedBatch{raw: rest[:size:size], h: h}
		if h.IsControl() {
			if err := rb.parseMarker(); err != nil {
				return nil, fmt.Errorf("%w: control batch at %d: %v", ErrCorruptMessage, h.BaseOffset, err)
			}
		}
		out = append(out, rb)
		pos += size
	}
	return out, nil
}

// parseMarker reads a control batch's type and, for a transaction marker
// of a producer, its coordinator epoch. Other control types are kept
// without effect on the state, as the leader's replay leaves them.
func (b *replicatedBatch) parseMarker() error {
	if b.h.Size() > maxMarkerBatchBytes {
		return fmt.Errorf("%d bytes, above %d", b.h.Size(), maxMarkerBatchBytes)
	}
	recs, err := record.Records(b.raw, b.h, maxMarkerBatchBytes)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return errors.New("no record")
	}
	typ, err := record.ParseControlKey(recs[0].Key)
	if err != nil {
		return err
	}
	if (typ != record.ControlAbort && typ != record.ControlCommit) || !b.h.HasProducer() {
		return nil
	}
	epoch, ok := markerCoordinatorEpoch(recs[0].Value)
	if !ok {
		return fmt.Errorf("%s marker value of %d bytes", typ, len(recs[0].Value))
	}
	b.marker, b.commit, b.coordinatorEpoch = true, typ == record.ControlCommit, epoch
	return nil
}

// TruncateTo removes every batch at or after offset (a batch boundary: an
// epoch's end offset from the leader's OffsetForLeaderEpoch, a high
// watermark, a log end offset) and makes that durable before it returns
// (log.Log.TruncateTo): a power cut brings none of the suffix back. What
// the partition keeps of the suffix goes with it, as Kafka's truncateTo:
//
//   - the leader epoch cache drops the entries starting at or after the new
//     end (truncateFromEnd), persisted;
//   - producer snapshots above the new end are deleted (durably) and the
//     producer state is rebuilt from the newest one left plus the log
//     after it, with the open transactions, the first unstable offset and
//     the transaction index entries of the markers replayed;
//   - the published end and the high watermark move down to offset if they
//     are above it.
//
// An offset at or past the log end offset cuts nothing but still drops
// the leader epoch entries starting at the log end (an epoch this replica
// led without writing, Kafka's rule). One at or below the log start
// offset is TruncateFullyAndStartAt(offset): nothing readable is left.
// An offset inside a batch is refused (log.ErrNotBatchBoundary) and
// nothing changes.
//
// It waits for a producer snapshot in progress and holds the append lock
// throughout. A storage failure takes the log's directory offline
// (ErrStorage); the next start recovers a prefix of the log as it was.
func (p *Partition) TruncateTo(offset int64) error {
	p.checkpointMu.Lock()
	defer p.checkpointMu.Unlock()
	p.mu.Lock()
	err := p.truncateToLocked(offset)
	p.mu.Unlock()
	p.localEndMoved()
	return err
}

func (p *Partition) truncateToLocked(offset int64) error {
	if offset < 0 {
		return fmt.Errorf("%w: truncate to %d", log.ErrOffsetOutOfRange, offset)
	}
	if end := p.log.EndOffset(); offset >= end {
		if p.epochs.truncateFromEnd(end) {
			return p.writeEpochsLocked()
		}
		return nil
	}
	if offset <= p.log.StartOffset() {
		// Nothing readable is left: the log is emptied (log.TruncateTo
		// would too), and with it what described it.
		return p.truncateFullyLocked(offset)
	}
	// An offset the log refuses changes nothing.
	if err := p.log.CheckTruncation(offset); err != nil {
		return err
	}
	// Snapshots describing the suffix go first: a crash after this point
	// finds the log whole and rebuilds its producers from an older one.
	if err := p.removeSnapshotsLocked(func(off int64) bool { return off > offset }); err != nil {
		return err
	}
	if p.snapshotAt.Load() > offset {
		p.snapshotAt.Store(-1) // the next Checkpoint writes one
	}
	p.lowerEndLocked(offset)
	if err := p.log.TruncateTo(offset); err != nil {
		// Nothing was cut (a refused offset, a file that could not be
		// opened) or the log failed: what is there stays published.
		p.published.Store(p.log.EndOffset())
		if errors.Is(err, log.ErrStorage) {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
		return err
	}
	end := p.log.EndOffset()
	if p.epochs.truncateFromEnd(end) {
		if err := p.writeEpochsLocked(); err != nil {
			return err
		}
	}
	return p.rebuildProducersLocked()
}

// TruncateFullyAndStartAt deletes the whole log and starts it again, empty,
// at offset (Kafka's truncateFullyAndStartAt: a follower whose fetch
// offset is below its leader's log start offset). The leader epoch cache
// is emptied, every producer snapshot deleted and the producer and
// transaction state cleared; the published end and the high watermark
// become offset. It is durable when it returns (snapshots first, then the
// log, then the epoch cache), with the same locking and failures as
// TruncateTo.
func (p *Partition) TruncateFullyAndStartAt(offset int64) error {
	p.checkpointMu.Lock()
	defer p.checkpointMu.Unlock()
	p.mu.Lock()
	err := p.truncateFullyLocked(offset)
	p.mu.Unlock()
	p.localEndMoved()
	return err
}

func (p *Partition) truncateFullyLocked(offset int64) error {
	if offset < 0 {
		return fmt.Errorf("%w: start at %d", log.ErrOffsetOutOfRange, offset)
	}
	if err := p.removeSnapshotsLocked(func(int64) bool { return true }); err != nil {
		return err
	}
	p.snapshotAt.Store(-1)
	p.lowerEndLocked(min(offset, p.published.Load()))
	if err := p.log.TruncateFullyAndStartAt(offset); err != nil {
		p.published.Store(p.log.EndOffset())
		if errors.Is(err, log.ErrStorage) {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
		return err
	}
	p.producers = map[int64]*producerState{}
	clear(p.ongoing)
	p.updateFirstUnstableLocked()
	p.published.Store(offset)
	// The high watermark is the new end, up or down (nothing below it is
	// left to read).
	p.hwMu.Lock()
	moved := p.hw.Load() != offset
	p.hw.Store(offset)
	p.hwMu.Unlock()
	if moved {
		p.wake()
	}
	p.epochs = epochCache{}
	return p.writeEpochsLocked()
}

// removeSnapshotsLocked deletes the producer snapshots whose offset del
// says, durably (one directory fsync). Called with mu and checkpointMu
// held.
func (p *Partition) removeSnapshotsLocked(del func(off int64) bool) error {
	names, err := p.fs.List(p.dir)
	if err != nil {
		return fmt.Errorf("%w: list %s: %w", ErrStorage, p.dir, err)
	}
	removed := false
	for _, n := range names {
		if off, ok := parseSnapshotName(n); ok && del(off) {
			if err := p.fs.Remove(filepath.Join(p.dir, n)); err != nil && !isNotExist(err) {
				return fmt.Errorf("%w: remove %s: %w", ErrStorage, n, err)
			}
			removed = true
		}
	}
	if removed {
		if err := p.fs.SyncDir(p.dir); err != nil {
			return fmt.Errorf("%w: fsync %s: %w", ErrStorage, p.dir, err)
		}
	}
	return nil
}

// rebuildProducersLocked forgets the producer and transaction state and
// reads it again from the newest snapshot at or below the log end and the
// log after it (loadProducers). Called with mu and checkpointMu held.
func (p *Partition) rebuildProducersLocked() error {
	p.producers = map[int64]*producerState{}
	clear(p.ongoing)
	p.updateFirstUnstableLocked()
	p.snapshotAt.Store(-1)
	if err := p.loadProducers(); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}
