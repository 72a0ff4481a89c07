package partition

import (
	"errors"
	"fmt"

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
//     this partition's epochs), bytes otherwise unchanged: no offset
//     assignment, recompression, timestamp, key or idempotence checks.
//     Producer and transaction state are noted as a follower notes them,
//     control batches included, so read_committed fetches of the copy see
//     the source's transactions decided the same way.
//
// The result's BaseOffset and LastOffset are the first and last batch's;
// Duplicate says that every batch was already here. A storage failure
// stops at its batch: the ones before it stay appended, and a retry passes
// over them.
func (p *Partition) AppendMirrored(batches []byte) (AppendResult, error) {
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
	res, published, err := p.appendMirroredLocked(bs)
	p.mu.Unlock()
	if published {
		p.afterPublish()
	}
	return res, err
}

func (p *Partition) appendMirroredLocked(bs []replicatedBatch) (res AppendResult, published bool, err error) {
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
