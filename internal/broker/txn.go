package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/txn"
)

// brokerInt reads an integer broker config, falling back to its default.
func (b *Broker) brokerInt(name string) int64 {
	v, _ := b.BrokerConfigs().Value(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		def, _ := config.BrokerDef(name)
		n, _ = strconv.ParseInt(def.Default, 10, 64)
	}
	return n
}

// openTxns creates the transaction coordinator and, when
// __transaction_state exists, loads it.
func (b *Broker) openTxns() error {
	ms := func(name string) time.Duration { return time.Duration(b.brokerInt(name)) * time.Millisecond }
	b.txns = txn.New(txn.Config{
		Partition:          func(p int32) (*partition.Partition, bool) { return b.Partition(txn.Topic, p) },
		AllocateProducerID: b.NewProducerID,
		WriteMarker:        b.writeMarker,
		OffsetsPartitions:  b.groups.Partitions,
		GroupsReady: func() <-chan struct{} {
			if b.groups.Partitions() == 0 {
				return nil // no __consumer_offsets: no offsets to apply
			}
			return b.groups.Ready()
		},
		MaxTimeout:          ms("transaction.max.timeout.ms"),
		AbortCheckInterval:  ms("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
		IDExpiration:        ms("transactional.id.expiration.ms"),
		ExpireCheckInterval: ms("transaction.remove.expired.transaction.cleanup.interval.ms"),
		Logger:              b.logger.With("component", "txn-coordinator"),
		Now:                 b.cfg.Now,
	})
	if t, ok := b.Image().Topics[txn.Topic]; ok {
		return b.txns.Start(len(t.Partitions))
	}
	return nil
}

// Txns is the transaction coordinator. It serves once started: at Open when
// __transaction_state exists, else by whoever creates that topic.
func (b *Broker) Txns() *txn.Coordinator { return b.txns }

// writeMarker appends a transaction marker to a partition and waits until
// it is durable and, in __consumer_offsets, applied to the groups' offsets.
func (b *Broker) writeMarker(ctx context.Context, tp txn.TopicPartition, pid int64, epoch int16, commit bool, cepoch int32) error {
	p, ok := b.Partition(tp.Topic, tp.Partition)
	if !ok {
		if t, exists := b.Image().Topics[tp.Topic]; !exists || int(tp.Partition) >= len(t.Partitions) {
			return txn.ErrUnknownPartition
		}
		return fmt.Errorf("broker: partition %s-%d is not open here", tp.Topic, tp.Partition)
	}
	res, err := p.WriteMarker(pid, epoch, commit, cepoch)
	if errors.Is(err, partition.ErrInvalidProducerEpoch) || errors.Is(err, partition.ErrCoordinatorFenced) {
		// A newer epoch of the producer, or a newer coordinator, has
		// written here: this transaction was ended by whoever did.
		b.logger.Warn("transaction marker refused: the producer or its coordinator has moved on", "partition", partitionDir(TopicPartition(tp)), "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.WaitDurable(res.LastOffset); err != nil {
		return err
	}
	return b.CompleteGroupTxn(ctx, tp, pid, commit)
}

// CompleteGroupTxn applies a durable transaction marker of a partition of
// __consumer_offsets to the group offsets committed in the transaction;
// for other topics it does nothing.
func (b *Broker) CompleteGroupTxn(ctx context.Context, tp txn.TopicPartition, pid int64, commit bool) error {
	if tp.Topic != group.Topic {
		return nil
	}
	done := make(chan bool, 1)
	b.groups.CompleteTxn(tp.Partition, pid, commit, func(ok bool) { done <- ok })
	select {
	case ok := <-done:
		if !ok {
			return fmt.Errorf("broker: group coordinator of %s-%d is not running", tp.Topic, tp.Partition)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ExpireProducers forgets, in every partition, producers idle longer than
// producer.id.expiration.ms.
func (b *Broker) ExpireProducers() {
	exp := b.brokerInt("producer.id.expiration.ms")
	now := b.cfg.Now().UnixMilli()
	for tp, p := range b.Partitions() {
		if n := p.ExpireProducers(now, exp); n > 0 {
			b.logger.Debug("expired producer ids", "partition", partitionDir(tp), "producers", n)
		}
	}
}
