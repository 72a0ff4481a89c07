package txn

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Description is a transactional id's state (DescribeTransactions).
type Description struct {
	ID            string
	State         State
	TimeoutMs     int32
	StartMs       int64 // -1 when no transaction is open
	ProducerID    int64
	ProducerEpoch int16
	Partitions    []TopicPartition
}

// Describe answers DescribeTransactions for one id:
// TRANSACTIONAL_ID_NOT_FOUND when unknown, NOT_COORDINATOR when its
// partition of Topic is not led here (its coordinator answers).
func (c *Coordinator) Describe(id string) (Description, error) {
	e, err := c.lock(id, false)
	if err != nil {
		return Description{}, err
	}
	if e == nil {
		return Description{}, fmt.Errorf("%w: %q", kerr.TransactionalIDNotFound, id)
	}
	defer e.mu.Unlock()
	return describe(&e.m), nil
}

func describe(m *meta) Description {
	return Description{ID: m.id, State: m.state, TimeoutMs: m.timeoutMs, StartMs: m.startMs,
		ProducerID: m.producerID, ProducerEpoch: m.epoch, Partitions: m.sortedPartitions()}
}

// Listing is one transactional id in ListTransactions.
type Listing struct {
	ID         string
	ProducerID int64
	State      State
}

// ListFilter selects ids for ListTransactions: empty filters match all.
type ListFilter struct {
	States      []State
	ProducerIDs []int64
	// MinDurationMs (v1+; -1: none) keeps transactions open at least this long.
	MinDurationMs int64
}

// List answers ListTransactions, sorted by id: the ids of the partitions
// of Topic led here, as each Kafka broker lists its own (the admin client
// asks every broker). COORDINATOR_LOAD_IN_PROGRESS while one of them
// loads, as Kafka's listTransactionStates.
func (c *Coordinator) List(f ListFilter) ([]Listing, error) {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return nil, kerr.NotCoordinator
	}
	var entries []*entry
	for _, tp := range c.parts {
		if !tp.loaded {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: %s-%d at leader epoch %d", kerr.CoordinatorLoadInProgress, Topic, tp.id, tp.epoch)
		}
		entries = append(entries, tp.entriesLocked()...)
	}
	c.mu.Unlock()
	now := c.cfg.Now().UnixMilli()
	var out []Listing
	for _, e := range entries {
		e.mu.Lock()
		m := e.m
		removed := e.removed || e.part.ctx.Err() != nil
		e.mu.Unlock()
		if removed || m.producerID < 0 {
			continue
		}
		if len(f.States) > 0 && !slices.Contains(f.States, m.state) {
			continue
		}
		if len(f.ProducerIDs) > 0 && !slices.Contains(f.ProducerIDs, m.producerID) {
			continue
		}
		if f.MinDurationMs >= 0 && (m.startMs < 0 || now-m.startMs < f.MinDurationMs) {
			continue
		}
		out = append(out, Listing{ID: m.id, ProducerID: m.producerID, State: m.state})
	}
	slices.SortFunc(out, func(a, b Listing) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Verify says whether producerID at epoch has tp in its open transaction
// (KIP-890 part 1: a transactional produce to a partition not added is
// refused, so that a late write cannot open a transaction nobody will end).
func (c *Coordinator) Verify(producerID int64, epoch int16, tp TopicPartition) error {
	e, err := c.lockProducer(producerID, epoch)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	if _, ok := e.m.partitions[tp]; !ok || e.m.state != Ongoing {
		return fmt.Errorf("%w: %s-%d is not in an open transaction of producer %d", kerr.InvalidTxnState, tp.Topic, tp.Partition, producerID)
	}
	return nil
}

// CheckProducer says whether producerID at epoch is the current producer
// of id (TxnOffsetCommit checks it before writing the offsets).
func (c *Coordinator) CheckProducer(id string, producerID int64, epoch int16) error {
	e, err := c.lock(id, false)
	if err != nil {
		return err
	}
	if e == nil {
		return check(nil, id, producerID, epoch)
	}
	defer e.mu.Unlock()
	if e.m.producerID != producerID {
		return check(nil, id, producerID, epoch)
	}
	if epoch != e.m.epoch {
		return fmt.Errorf("%w: producer %d epoch %d, current %d", kerr.ProducerFenced, producerID, epoch, e.m.epoch)
	}
	return nil
}
