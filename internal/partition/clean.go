package partition

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/record"
)

// maxKeyCheckBytes bounds one batch decompressed to check its keys on
// produce to a compacted topic (socket.request.max.bytes).
const maxKeyCheckBytes = 100 << 20

// checkKeys refuses a batch for a compacted topic that holds a record
// without a key, as Kafka's LogValidator does. It decompresses the batch.
func checkKeys(batch []byte, h record.Header) error {
	recs, err := record.Records(batch, h, maxKeyCheckBytes)
	if err != nil {
		if errors.Is(err, record.ErrInvalidRecord) {
			return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
		}
		return fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	}
	for i := range recs {
		if recs[i].Key == nil {
			return fmt.Errorf("%w (record %d of the batch)", ErrCompactedNoKey, i)
		}
	}
	return nil
}

// CleanerState reports how dirty the partition's log is, counting only
// what a pass may clean: nothing at or past the last stable offset.
func (p *Partition) CleanerState() log.CleanerState {
	return p.log.CleanerStateBelow(p.LastStableOffset())
}

// Clean runs one log cleaner pass over the partition's log (log.Log.Clean).
// The last batch of every producer the partition tracks stays, emptied if
// need be, so that idempotent producers' sequence numbers survive a restart
// (Kafka's rule); opts.KeepEmpty is set here. The pass stops at the last
// stable offset (records of open transactions stay as they are) and keeps
// the transaction markers past the producer snapshot, which a restart
// replays (opts.LastStableOffset and opts.MarkerBound are set here).
func (p *Partition) Clean(ctx context.Context, opts log.CleanOptions) (log.CleanResult, error) {
	p.mu.Lock()
	// Read under p.mu, before the pass reads the transaction index: a
	// marker being written has its entry indexed before the last stable
	// offset passes its transaction.
	opts.LastStableOffset = p.LastStableOffset()
	opts.MarkerBound = max(p.snapshotAt.Load(), 0)
	last := make(map[int64]int64, len(p.producers))
	for id, s := range p.producers {
		if b := s.last(); b != nil {
			last[id] = b.lastOffset
		}
	}
	p.mu.Unlock()
	opts.KeepEmpty = func(h *record.Header) bool {
		off, ok := last[h.ProducerID]
		return ok && off == h.LastOffset()
	}
	return p.log.Clean(ctx, opts)
}
