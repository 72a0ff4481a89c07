package broker

import (
	"context"
	"sync"

	"github.com/sluice-io/sluice/internal/metadata"
)

// producerIDBlockSize is how many producer ids the broker reserves with one
// metadata write (Kafka's ProducerIdManager reserves blocks of 1000): an
// InitProducerId then costs a metadata write once per block, not once per
// call. Ids of a block not handed out before a restart are skipped, as in
// Kafka.
const producerIDBlockSize = 1000

// producerIDs hands out producer ids from blocks reserved in the metadata.
// Safe for concurrent use; callers queue behind the one reserving a block.
type producerIDs struct {
	meta *metadata.Store

	mu   sync.Mutex
	next int64 // next id to hand out
	end  int64 // end of the current block (next == end: none left)
}

// next returns a producer id no one else has had.
func (p *producerIDs) nextID(ctx context.Context) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next == p.end {
		first, err := p.meta.AllocateProducerIDs(ctx, producerIDBlockSize)
		if err != nil {
			return 0, err
		}
		p.next, p.end = first, first+producerIDBlockSize
	}
	id := p.next
	p.next++
	return id, nil
}

// NewProducerID returns a new producer id (InitProducerId).
func (b *Broker) NewProducerID(ctx context.Context) (int64, error) {
	return b.producerIDs.nextID(ctx)
}
