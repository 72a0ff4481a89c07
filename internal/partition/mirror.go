package partition

import (
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/record"
)

// What a leader does with the batches of an offset-preserving mirror
// (the topic config sluice.mirror.source, see internal/mirror): it keeps
// the source cluster's offsets, as a follower keeps its leader's, so that
// the topic is a copy of the source partition offset for offset, gaps from
// compaction, deleted records and transaction markers included.

// ErrMirrorOverlap: a mirrored batch starts below the log end offset and
// ends at or past it, so it is neither a re-sent copy nor the next one:
// the source's batches are not the ones this log copied (INVALID_RECORD).
var ErrMirrorOverlap = errors.New("partition: mirrored batch overlaps the log end offset")

// AppendMirrored appends the batches of an offset-preserving mirror's
// produce on the leader: one or more whole record batches, fetched from the
// source partition as they are, with the source's offsets. Each batch is
// checked as a follower checks its leader's (CRC, magic, lengths, offsets
// increasing, a marker's key and value) and none is appended when one
// fails. Then, in order:
//
//   - a batch that ends below the log end offset is a copy already here
//     (the mirror sent it again after a lost answer or a restart) and is
//     passed over;
//   - a batch that starts below the log end offset and ends at or past it
//     is refused with ErrMirrorOverlap, and so is the rest;
//   - a batch at or past the log end is appended at its own offset (the log
//     end jumps over the gap), its leader epoch rewritten to this leader's
//     (the source's epochs mean nothing here, and followers truncate by
//     this partition's epochs), and its producer id moved out of the ids
//     this cluster hands out (MirroredProducerID; the CRC recomputed),
//     bytes otherwise unchanged: no offset assignment, recompression,
//     timestamp, key or idempotence checks. Producer and transaction state
//     are noted as a follower notes them, control batches included, so
//     read_committed fetches of the copy see the source's transactions
//     decided the same way.
//
// source names the source cluster (the topic's sluice.mirror.source).
//
// The result's BaseOffset and LastOffset are the first and last batch's;
// Duplicate says that every batch was already here. A storage failure
// stops at its batch: the ones before it stay appended, and a retry passes
// over them.
func (p *Partition) AppendMirrored(batches []byte, source string) (AppendResult, error) {
	bs, err := parseReplicated(batches)
	if err != nil {
		return AppendResult{}, err
	}
	n := 0
	for _, b := range bs {
		n += len(b.raw)
	}
	if len(bs) == 0 || n != len(batches) {
		return AppendResult{}, fmt.Errorf("%w: %d of %d bytes are whole record batches", ErrCorruptMessage, n, len(batches))
	}
	p.mu.Lock()
	res, published, err := p.appendMirroredLocked(bs, sourceTag(source))
	p.mu.Unlock()
	if published {
		p.afterPublish()
	}
	return res, err
}

func (p *Partition) appendMirroredLocked(bs []replicatedBatch, tag int64) (res AppendResult, published bool, err error) {
	if !p.leader.Load() {
		return AppendResult{}, false, fmt.Errorf("%w: leader epoch %d", ErrNotLeader, p.leaderEpoch.Load())
	}
	res = AppendResult{BaseOffset: bs[0].h.BaseOffset, LastOffset: bs[len(bs)-1].h.LastOffset(), LogAppendTime: -1}
	end := p.log.EndOffset()
	i := 0
	for i < len(bs) && bs[i].h.LastOffset() < end {
		i++
	}
	if i == len(bs) {
		res.Duplicate, res.LogStartOffset = true, p.log.StartOffset()
		return res, false, nil
	}
	if b := bs[i].h; b.BaseOffset < end {
		return AppendResult{}, false, fmt.Errorf("%w: batch %d-%d, log end offset %d (were the source's batches rewritten since they were copied?)",
			ErrMirrorOverlap, b.BaseOffset, b.LastOffset(), end)
	}
	epoch := p.leaderEpoch.Load()
	lastOffset := int64(-1)
	defer func() {
		if lastOffset >= 0 {
			p.publishLocked(lastOffset + 1)
			published = true
		}
	}()
	for j := i; j < len(bs); j++ {
		b := &bs[j]
		record.SetLeaderEpoch(b.raw, epoch)
		b.h.LeaderEpoch = epoch
		if id := MirroredProducerID(tag, b.h.ProducerID); id != b.h.ProducerID {
			record.SetProducerID(b.raw, id)
			b.h.ProducerID = id
		}
		r, err := p.log.AppendAsFollower(b.raw)
		if err != nil {
			if errors.Is(err, log.ErrStorage) {
				err = fmt.Errorf("%w: %w", ErrStorage, err)
			}
			return AppendResult{}, false, err
		}
		switch {
		case b.marker:
			h := &b.h
			if err := p.noteMarkerLocked(h.ProducerID, h.ProducerEpoch, b.coordinatorEpoch, h.MaxTimestamp, b.commit, r.BaseOffset); err != nil {
				return AppendResult{}, false, err // not published: a restart replays it
			}
		case !b.h.IsControl():
			p.noteDataLocked(&b.h, r.BaseOffset)
		}
		lastOffset = r.LastOffset
	}
	res.LogStartOffset = p.log.StartOffset()
	return res, false, nil
}

// Producer ids in a copy. Every cluster hands out producer ids counting up
// from 0, so the source's producers in a copy have the ids the target
// gives its own producers. After a failover (the topic takes producers),
// the first producer on the copy would be taken for the source's producer
// of the same id: its first batch refused as out of order, or, when the
// source's producer had written a batch with the same sequences, answered
// as a resend of it and never written. So a copy holds the source's ids
// moved into a space no cluster hands out: bit 62 set, a 16-bit tag of the
// source cluster in bits 40-55 (so that a copy of a copy that failed over,
// whose own producers came after the first source's, keeps the two apart),
// and the source's id in the low 40 bits (a cluster would need to hand out
// 2^40 producer ids, 1,000 at a time, to reach them). An id already in that
// space (the source is itself a copy) is kept.
const (
	mirroredIDBit   = int64(1) << 62
	mirroredTagBits = 16
	mirroredIDBits  = 40
)

// sourceTag is the source cluster's tag for MirroredProducerID.
func sourceTag(source string) int64 {
	h := fnv.New32a()
	h.Write([]byte(source))
	return int64(h.Sum32() & (1<<mirroredTagBits - 1))
}

// MirroredProducerID is the producer id a copy holds for the source's
// producer id (tag: sourceTag of the source cluster). No producer (-1)
// stays none.
func MirroredProducerID(tag, id int64) int64 {
	if id < 0 || id&mirroredIDBit != 0 {
		return id
	}
	return mirroredIDBit | tag<<mirroredIDBits | id&(1<<mirroredIDBits-1)
}

// AbortMirroredTransactions writes an abort marker, on the leader, for each
// transaction open here of a producer of a copy's source (an id in
// MirroredProducerID's space), and returns how many. The broker calls it
// for a topic that is not, or no longer, a copy: after a failover nothing
// will ever decide the source's transactions here (their markers would
// have come from the source through the mirror), and an open one would
// hold the last stable offset, and every read_committed consumer, for ever.
// Aborting is what the source's coordinator does with a transaction whose
// producer went away. A follower does nothing.
func (p *Partition) AbortMirroredTransactions() (int, error) {
	if !p.leader.Load() {
		return 0, nil
	}
	p.mu.Lock()
	var n int
	var err error
	for pid := range p.ongoing {
		if pid < 0 || pid&mirroredIDBit == 0 {
			continue
		}
		s := p.producers[pid]
		if s == nil {
			continue
		}
		if _, err = p.writeMarkerLocked(pid, s.epoch, false, s.coordinatorEpoch, controlKey(false), markerValue(s.coordinatorEpoch)); err != nil {
			err = fmt.Errorf("partition: abort the copied transaction of producer %d: %w", pid, err)
			break
		}
		n++
	}
	p.mu.Unlock()
	if n > 0 {
		p.afterPublish()
	}
	return n, err
}
