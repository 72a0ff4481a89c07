package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/record"
)

// noteBatchLocked records an appended (or replayed) batch of a producer:
// its sequence state and, for a transactional batch, the start of its open
// transaction here. It reports whether the batch opened a transaction (the
// last stable offset may then move back).
func (p *Partition) noteBatchLocked(h *record.Header, firstOffset int64) bool {
	s := p.producers[h.ProducerID]
	if s == nil {
		s = newProducerState(h.ProducerEpoch)
		p.producers[h.ProducerID] = s
	}
	s.update(h, firstOffset)
	if h.IsTransactional() && s.txnFirstOffset < 0 {
		s.txnFirstOffset = firstOffset
		p.ongoing[h.ProducerID] = firstOffset
		return true
	}
	return false
}

// noteDataLocked records an appended data batch (not a marker) in the
// producer and transaction state: what a leader's append and a follower's
// AppendReplicated both do once the batch is in the log.
func (p *Partition) noteDataLocked(h *record.Header, firstOffset int64) {
	if h.HasProducer() && p.noteBatchLocked(h, firstOffset) {
		p.updateFirstUnstableLocked()
	}
}

// noteMarkerLocked applies a transaction marker appended at offset, as a
// leader's WriteMarker and a follower's AppendReplicated both do: an abort
// of a transaction with records here gets its transaction index entry
// (durable) before the transaction ends and the last stable offset moves
// past its records, so that no read_committed fetch misses the entry. On
// failure the transaction stays open (on the leader the coordinator
// retries the marker; a second marker is harmless).
func (p *Partition) noteMarkerLocked(pid int64, epoch int16, coordinatorEpoch int32, ts int64, commit bool, offset int64) error {
	if a, ok := p.abortEntryLocked(pid, commit, offset); ok {
		if err := p.log.AppendAborted(a); err != nil {
			return fmt.Errorf("%w: %v", ErrStorage, err)
		}
	}
	p.endTxnLocked(pid, epoch, coordinatorEpoch, ts, commit, offset)
	p.updateFirstUnstableLocked()
	return nil
}

// markerCoordinatorEpoch reads the coordinator epoch from a transaction
// marker's value (version int16, coordinator epoch int32).
func markerCoordinatorEpoch(value []byte) (int32, bool) {
	if len(value) < 6 || int16(binary.BigEndian.Uint16(value)) < 0 {
		return 0, false
	}
	return int32(binary.BigEndian.Uint32(value[2:])), true
}

func (p *Partition) updateFirstUnstableLocked() {
	first := int64(math.MaxInt64)
	for _, off := range p.ongoing {
		first = min(first, off)
	}
	p.firstUnstable.Store(first)
}

// endTxnLocked applies a transaction marker at offset: the producer's open
// transaction here ends. For an abort of a transaction with records here it
// returns the entry for the transaction index, which the caller appends.
func (p *Partition) endTxnLocked(pid int64, epoch int16, coordinatorEpoch int32, ts int64, commit bool, offset int64) (log.AbortedTxn, bool) {
	s := p.producers[pid]
	if s == nil {
		s = newProducerState(epoch)
		p.producers[pid] = s
	}
	if epoch != s.epoch {
		// A marker of a bumped epoch (a fenced or timed-out producer's
		// abort) restarts the sequences.
		s.epoch = epoch
		s.batches = s.batches[:0]
	}
	s.lastTimestamp = max(s.lastTimestamp, ts)
	if coordinatorEpoch >= 0 {
		s.coordinatorEpoch = coordinatorEpoch
	}
	a, ok := p.abortEntryLocked(pid, commit, offset)
	s.txnFirstOffset = -1
	delete(p.ongoing, pid)
	return a, ok
}

// abortEntryLocked is the transaction index entry of a marker at offset
// for producer pid, when it aborts a transaction with records here.
func (p *Partition) abortEntryLocked(pid int64, commit bool, offset int64) (log.AbortedTxn, bool) {
	s := p.producers[pid]
	if commit || s == nil || s.txnFirstOffset < 0 {
		return log.AbortedTxn{}, false
	}
	// The entry's last stable offset is the one once this transaction is
	// decided: the oldest other open transaction's start, or past the marker.
	lso := offset + 1
	for id, off := range p.ongoing {
		if id != pid {
			lso = min(lso, off)
		}
	}
	return log.AbortedTxn{ProducerID: pid, FirstOffset: s.txnFirstOffset, LastOffset: offset, LastStableOffset: lso}, true
}

// WriteMarker appends a transaction marker (a control batch) for producer
// pid at epoch, committing or aborting its open transaction in this
// partition, and returns where it went; WaitDurable makes it durable. An
// epoch older than the producer's is refused (ErrInvalidProducerEpoch), as
// is a coordinator epoch older than the producer's last marker's
// (ErrCoordinatorFenced): a newer producer or coordinator has moved on. A
// follower answers ErrNotLeader.
func (p *Partition) WriteMarker(pid int64, epoch int16, commit bool, coordinatorEpoch int32) (AppendResult, error) {
	p.mu.Lock()
	res, err := p.writeMarkerLocked(pid, epoch, commit, coordinatorEpoch, controlKey(commit), markerValue(coordinatorEpoch))
	p.mu.Unlock()
	if err == nil {
		p.afterPublish()
	}
	return res, err
}

// controlKey is a transaction marker's key: version int16 (0) and the
// control type int16.
func controlKey(commit bool) []byte {
	typ := record.ControlAbort
	if commit {
		typ = record.ControlCommit
	}
	key := binary.BigEndian.AppendUint16(nil, 0)
	return binary.BigEndian.AppendUint16(key, uint16(typ))
}

// markerValue is a transaction marker's value: version int16 (0) and the
// coordinator epoch int32.
func markerValue(coordinatorEpoch int32) []byte {
	value := binary.BigEndian.AppendUint16(nil, 0)
	return binary.BigEndian.AppendUint32(value, uint32(coordinatorEpoch))
}

// writeMarkerLocked is WriteMarker's part under mu.
func (p *Partition) writeMarkerLocked(pid int64, epoch int16, commit bool, coordinatorEpoch int32, key, value []byte) (AppendResult, error) {
	if !p.leader.Load() {
		return AppendResult{}, fmt.Errorf("%w: leader epoch %d", ErrNotLeader, p.leaderEpoch.Load())
	}
	if s := p.producers[pid]; s != nil && epoch < s.epoch {
		return AppendResult{}, fmt.Errorf("%w: marker for producer %d at epoch %d, the producer is at %d",
			ErrInvalidProducerEpoch, pid, epoch, s.epoch)
	} else if s != nil && coordinatorEpoch < s.coordinatorEpoch {
		return AppendResult{}, fmt.Errorf("%w: marker for producer %d from coordinator epoch %d, the last was %d",
			ErrCoordinatorFenced, pid, coordinatorEpoch, s.coordinatorEpoch)
	}
	now := p.now().UnixMilli()
	batch, err := record.BuildBatch(record.BatchSpec{
		PartitionLeaderEpoch: p.leaderEpoch.Load(),
		Attributes:           record.AttrTransactional | record.AttrControl,
		FirstTimestamp:       now, MaxTimestamp: now,
		ProducerID: pid, ProducerEpoch: epoch, BaseSequence: -1,
	}, []record.Record{{Key: key, Value: value}})
	if err != nil {
		return AppendResult{}, fmt.Errorf("partition: build marker: %w", err)
	}
	res, err := p.log.Append(batch)
	if err != nil {
		if errors.Is(err, log.ErrStorage) {
			return AppendResult{}, fmt.Errorf("%w: %v", ErrStorage, err)
		}
		return AppendResult{}, err
	}
	if err := p.noteMarkerLocked(pid, epoch, coordinatorEpoch, now, commit, res.BaseOffset); err != nil {
		return AppendResult{}, err
	}
	p.publishLocked(res.LastOffset + 1)
	return AppendResult{BaseOffset: res.BaseOffset, LastOffset: res.LastOffset, LogAppendTime: -1,
		LogStartOffset: p.log.StartOffset()}, nil
}

// AbortedTxns lists the aborted transactions with records in [from, to),
// for a read_committed fetch.
func (p *Partition) AbortedTxns(from, to int64) []log.AbortedTxn { return p.log.AbortedTxns(from, to) }

// ProducerInfo is one producer's state here (DescribeProducers).
type ProducerInfo struct {
	ID               int64
	Epoch            int16
	LastSequence     int32 // -1 when none
	LastTimestamp    int64 // -1 when none
	CoordinatorEpoch int32
	TxnStartOffset   int64 // -1 when no transaction is open
}

// Producers lists the producers with state here, by id.
func (p *Partition) Producers() []ProducerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ProducerInfo, 0, len(p.producers))
	for id, s := range p.producers {
		pi := ProducerInfo{ID: id, Epoch: s.epoch, LastSequence: -1, LastTimestamp: -1,
			CoordinatorEpoch: s.coordinatorEpoch, TxnStartOffset: s.txnFirstOffset}
		if b := s.last(); b != nil {
			pi.LastSequence = b.lastSeq
		}
		if s.lastTimestamp > 0 {
			pi.LastTimestamp = s.lastTimestamp
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ExpireProducers forgets producers that have no open transaction here and
// wrote nothing for expiration (producer.id.expiration.ms), as Kafka does:
// their next batch is then refused with UNKNOWN_PRODUCER_ID unless it
// starts a new sequence. It returns how many it removed.
func (p *Partition) ExpireProducers(nowMs, expirationMs int64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for id, s := range p.producers {
		if s.txnFirstOffset < 0 && nowMs-s.lastTimestamp > expirationMs {
			delete(p.producers, id)
			n++
		}
	}
	return n
}
