package broker

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

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
	// allocate, if set, reserves a block at the active controller (a
	// cluster: AllocateProducerIds, as Kafka's brokers); else the local
	// quorum of one is written directly.
	allocate func(ctx context.Context, n int64) (first int64, err error)

	mu   sync.Mutex
	next int64 // next id to hand out
	end  int64 // end of the current block (next == end: none left)
}

// next returns a producer id no one else has had.
func (p *producerIDs) nextID(ctx context.Context) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next == p.end {
		alloc := p.meta.AllocateProducerIDs
		if p.allocate != nil {
			alloc = p.allocate
		}
		first, err := alloc(ctx, producerIDBlockSize)
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

// allocateAtController reserves a block of producer ids at the active
// controller (AllocateProducerIds, KIP-730).
func (b *Broker) allocateAtController(ctx context.Context, n int64) (int64, error) {
	req := kmsg.NewPtrAllocateProducerIDsRequest()
	req.BrokerID, req.BrokerEpoch = b.cfg.NodeID, b.brokerEpoch.Load()
	resp, err := b.link.send(ctx, req, func(r kmsg.Response) int16 { return r.(*kmsg.AllocateProducerIDsResponse).ErrorCode })
	if err != nil {
		return 0, fmt.Errorf("broker: allocate producer ids: %w", err)
	}
	ar := resp.(*kmsg.AllocateProducerIDsResponse)
	if err := kerr.ErrorForCode(ar.ErrorCode); err != nil {
		return 0, fmt.Errorf("broker: allocate producer ids: %w", err)
	}
	if int64(ar.ProducerIDLen) != n {
		return 0, fmt.Errorf("broker: the controller allocated %d producer ids, want %d", ar.ProducerIDLen, n)
	}
	return ar.ProducerIDStart, nil
}
