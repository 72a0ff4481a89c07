package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sort"

	"github.com/sluice-io/sluice/internal/record"
)

// maxCachedBatches is how many recent batches per producer are remembered
// to answer retries (Kafka's 5, the most in-flight requests an idempotent
// producer may have).
const maxCachedBatches = 5

// batchMeta is what idempotence remembers of one appended batch.
type batchMeta struct {
	firstSeq, lastSeq       int32
	firstOffset, lastOffset int64
	timestamp               int64
}

// producerState is one producer id's state on a partition.
type producerState struct {
	epoch   int16
	batches []batchMeta // oldest first, at most maxCachedBatches
	// txnFirstOffset is the first offset of the ongoing transaction, -1 if none.
	txnFirstOffset int64
	// coordinatorEpoch is from the last transaction marker (-1: none).
	coordinatorEpoch int32
	// lastTimestamp is the newest batch or marker timestamp, for expiry.
	lastTimestamp int64
}

func newProducerState(epoch int16) *producerState {
	return &producerState{epoch: epoch, txnFirstOffset: -1, coordinatorEpoch: -1}
}

func (s *producerState) last() *batchMeta {
	if len(s.batches) == 0 {
		return nil
	}
	return &s.batches[len(s.batches)-1]
}

func (s *producerState) remember(m batchMeta) {
	if len(s.batches) == maxCachedBatches {
		copy(s.batches, s.batches[1:])
		s.batches = s.batches[:maxCachedBatches-1]
	}
	s.batches = append(s.batches, m)
}

// nextSeq is the sequence after seq, wrapping at MaxInt32 as Kafka does.
func nextSeq(seq int32) int32 {
	if seq == math.MaxInt32 {
		return 0
	}
	return seq + 1
}

// checkResult is the idempotence verdict on a batch.
type checkResult struct {
	duplicate *batchMeta // the original, when the batch is a retry
}

// check applies Kafka's sequence rules (ProducerAppendInfo) to a batch from
// an idempotent producer. It does not change the state.
func (s *producerState) check(h *record.Header) (checkResult, error) {
	if s == nil {
		if h.BaseSequence != 0 {
			return checkResult{}, fmt.Errorf("%w: producer %d unknown and its first sequence is %d, not 0",
				ErrUnknownProducerID, h.ProducerID, h.BaseSequence)
		}
		return checkResult{}, nil
	}
	if h.ProducerEpoch < s.epoch {
		return checkResult{}, fmt.Errorf("%w: producer %d epoch %d is older than %d",
			ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, s.epoch)
	}
	if h.ProducerEpoch > s.epoch {
		if h.BaseSequence != 0 {
			return checkResult{}, fmt.Errorf("%w: producer %d new epoch %d starts at sequence %d, not 0",
				ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence)
		}
		return checkResult{}, nil
	}
	last := h.LastSequence()
	for i := range s.batches {
		if b := &s.batches[i]; b.firstSeq == h.BaseSequence && b.lastSeq == last {
			return checkResult{duplicate: b}, nil
		}
	}
	prev := s.last()
	if prev != nil && h.BaseSequence != nextSeq(prev.lastSeq) {
		return checkResult{}, fmt.Errorf("%w: producer %d sent sequence %d, expected %d",
			ErrOutOfOrderSequence, h.ProducerID, h.BaseSequence, nextSeq(prev.lastSeq))
	}
	if prev == nil && h.BaseSequence != 0 {
		// The epoch was set by a transaction marker (a bump): sequences
		// start again at 0.
		return checkResult{}, fmt.Errorf("%w: producer %d epoch %d starts at sequence %d, not 0",
			ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence)
	}
	return checkResult{}, nil
}

// update records an appended batch. A batch without a sequence (a
// coordinator's transactional offset commit) moves only the epoch.
func (s *producerState) update(h *record.Header, firstOffset int64) {
	if h.ProducerEpoch != s.epoch {
		s.epoch = h.ProducerEpoch
		s.batches = s.batches[:0]
	}
	s.lastTimestamp = max(s.lastTimestamp, h.MaxTimestamp)
	if h.BaseSequence < 0 {
		return
	}
	s.remember(batchMeta{
		firstSeq: h.BaseSequence, lastSeq: h.LastSequence(),
		firstOffset: firstOffset, lastOffset: firstOffset + int64(h.LastOffsetDelta),
		timestamp: h.MaxTimestamp,
	})
}

// Snapshot file format (ours; Kafka's is similar in spirit): a header of
// magic "SLPS", version uint16, crc32c uint32 of the rest, count uint32, then
// per producer: id int64, epoch int16, txnFirstOffset int64, (version 2+:
// coordinatorEpoch int32, lastTimestamp int64,) n uint8, and n batches of
// firstSeq int32, lastSeq int32, firstOffset int64, lastOffset int64,
// timestamp int64. Version 1 files are read too.
const (
	snapshotMagic       = "SLPS"
	snapshotVersion     = 2
	snapshotHeaderBytes = 4 + 2 + 4 + 4
	snapshotBatchBytes  = 4 + 4 + 8 + 8 + 8
	snapshotProdBytesV1 = 8 + 2 + 8 + 1
	snapshotProdBytes   = snapshotProdBytesV1 + 4 + 8
)

var errBadSnapshot = errors.New("partition: bad producer snapshot")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func marshalSnapshot(producers map[int64]*producerState) []byte {
	ids := make([]int64, 0, len(producers))
	for id := range producers {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	b := make([]byte, snapshotHeaderBytes, snapshotHeaderBytes+len(ids)*(snapshotProdBytes+maxCachedBatches*snapshotBatchBytes))
	copy(b, snapshotMagic)
	binary.BigEndian.PutUint16(b[4:], snapshotVersion)
	binary.BigEndian.PutUint32(b[10:], uint32(len(ids)))
	for _, id := range ids {
		s := producers[id]
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.BigEndian.AppendUint16(b, uint16(s.epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(s.txnFirstOffset))
		b = binary.BigEndian.AppendUint32(b, uint32(s.coordinatorEpoch))
		b = binary.BigEndian.AppendUint64(b, uint64(s.lastTimestamp))
		b = append(b, byte(len(s.batches)))
		for _, m := range s.batches {
			b = binary.BigEndian.AppendUint32(b, uint32(m.firstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(m.lastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(m.firstOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.lastOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.timestamp))
		}
	}
	binary.BigEndian.PutUint32(b[6:], crc32.Checksum(b[10:], castagnoli))
	return b
}

func unmarshalSnapshot(b []byte) (map[int64]*producerState, error) {
	if len(b) < snapshotHeaderBytes || string(b[:4]) != snapshotMagic {
		return nil, fmt.Errorf("%w: no header", errBadSnapshot)
	}
	v := binary.BigEndian.Uint16(b[4:])
	if v != 1 && v != snapshotVersion {
		return nil, fmt.Errorf("%w: version %d", errBadSnapshot, v)
	}
	prodBytes := snapshotProdBytes
	if v == 1 {
		prodBytes = snapshotProdBytesV1
	}
	if crc32.Checksum(b[10:], castagnoli) != binary.BigEndian.Uint32(b[6:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", errBadSnapshot)
	}
	n := binary.BigEndian.Uint32(b[10:])
	rest := b[snapshotHeaderBytes:]
	if uint64(n)*uint64(prodBytes) > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: %d producers do not fit", errBadSnapshot, n)
	}
	out := make(map[int64]*producerState, n)
	for i := uint32(0); i < n; i++ {
		if len(rest) < prodBytes {
			return nil, fmt.Errorf("%w: truncated", errBadSnapshot)
		}
		id := int64(binary.BigEndian.Uint64(rest))
		s := newProducerState(int16(binary.BigEndian.Uint16(rest[8:])))
		s.txnFirstOffset = int64(binary.BigEndian.Uint64(rest[10:]))
		if v >= 2 {
			s.coordinatorEpoch = int32(binary.BigEndian.Uint32(rest[18:]))
			s.lastTimestamp = int64(binary.BigEndian.Uint64(rest[22:]))
		}
		nb := int(rest[prodBytes-1])
		rest = rest[prodBytes:]
		if nb > maxCachedBatches || len(rest) < nb*snapshotBatchBytes {
			return nil, fmt.Errorf("%w: producer %d batches", errBadSnapshot, id)
		}
		for j := 0; j < nb; j++ {
			s.batches = append(s.batches, batchMeta{
				firstSeq:    int32(binary.BigEndian.Uint32(rest)),
				lastSeq:     int32(binary.BigEndian.Uint32(rest[4:])),
				firstOffset: int64(binary.BigEndian.Uint64(rest[8:])),
				lastOffset:  int64(binary.BigEndian.Uint64(rest[16:])),
				timestamp:   int64(binary.BigEndian.Uint64(rest[24:])),
			})
			s.lastTimestamp = max(s.lastTimestamp, s.batches[len(s.batches)-1].timestamp)
			rest = rest[snapshotBatchBytes:]
		}
		out[id] = s
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBadSnapshot, len(rest))
	}
	return out, nil
}
