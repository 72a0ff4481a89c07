package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

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
	if b.clustered() {
		// Partitions of both internal topics are elected as this broker
		// leads them, from now on by every reconcile.
		b.recMu.Lock()
		b.electCoordinators()
		b.recMu.Unlock()
		return nil
	}
	if t, ok := b.Image().Topics[txn.Topic]; ok {
		return b.txns.Start(len(t.Partitions))
	}
	return nil
}

// Txns is the transaction coordinator. It serves once started: at Open when
// __transaction_state exists, else by whoever creates that topic.
func (b *Broker) Txns() *txn.Coordinator { return b.txns }

// writeMarker is the transaction coordinator's marker writer: to a
// partition this broker leads, WriteMarkerHere; to one another broker
// leads, a WriteTxnMarkers request to it (as Kafka's coordinator sends
// them). A marker refused because the producer or its coordinator has
// moved on counts as written: whoever moved on ended the transaction. A
// partition without a leader, or led elsewhere by a broker that cannot be
// reached, is an error the coordinator retries.
func (b *Broker) writeMarker(ctx context.Context, tp txn.TopicPartition, pid int64, epoch int16, commit bool, cepoch int32) error {
	err := b.writeMarkerAnywhere(ctx, tp, pid, epoch, commit, cepoch)
	if errors.Is(err, partition.ErrInvalidProducerEpoch) || errors.Is(err, partition.ErrCoordinatorFenced) ||
		errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.TransactionCoordinatorFenced) {
		b.logger.Warn("transaction marker refused: the producer or its coordinator has moved on", "partition", partitionDir(TopicPartition(tp)), "err", err)
		return nil
	}
	return err
}

func (b *Broker) writeMarkerAnywhere(ctx context.Context, tp txn.TopicPartition, pid int64, epoch int16, commit bool, cepoch int32) error {
	if _, ok := b.Partition(tp.Topic, tp.Partition); ok {
		return b.WriteMarkerHere(ctx, tp, pid, epoch, commit, cepoch)
	}
	t, exists := b.Image().Topics[tp.Topic]
	if !exists || tp.Partition < 0 || int(tp.Partition) >= len(t.Partitions) {
		return txn.ErrUnknownPartition
	}
	leader := t.Partitions[tp.Partition].Leader
	if !b.clustered() || leader == b.cfg.NodeID {
		return fmt.Errorf("broker: partition %s-%d is not open here", tp.Topic, tp.Partition)
	}
	if leader < 0 {
		return fmt.Errorf("broker: partition %s-%d has no leader: %w", tp.Topic, tp.Partition, kerr.LeaderNotAvailable)
	}
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	m := kmsg.NewWriteTxnMarkersRequestMarker()
	m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch = pid, epoch, commit, cepoch
	mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
	mt.Topic, mt.Partitions = tp.Topic, []int32{tp.Partition}
	m.Topics = []kmsg.WriteTxnMarkersRequestMarkerTopic{mt}
	req.Markers = []kmsg.WriteTxnMarkersRequestMarker{m}
	resp, err := b.sendToBroker(ctx, leader, req)
	if err != nil {
		return fmt.Errorf("broker: send marker for %s-%d to broker %d: %w", tp.Topic, tp.Partition, leader, err)
	}
	wr := resp.(*kmsg.WriteTxnMarkersResponse)
	for _, rm := range wr.Markers {
		for _, rt := range rm.Topics {
			for _, rp := range rt.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					return fmt.Errorf("broker: marker for %s-%d at broker %d: %w", tp.Topic, tp.Partition, leader, err)
				}
				return nil
			}
		}
	}
	return fmt.Errorf("broker: broker %d answered WriteTxnMarkers without the partition", leader)
}

// WriteMarkerHere appends a transaction marker to a partition this broker
// leads and waits until it is committed (fsynced and, replicated, in every
// in-sync replica) and, in __consumer_offsets, applied to the groups'
// offsets.
func (b *Broker) WriteMarkerHere(ctx context.Context, tp txn.TopicPartition, pid int64, epoch int16, commit bool, cepoch int32) error {
	p, ok := b.Partition(tp.Topic, tp.Partition)
	if !ok {
		return fmt.Errorf("%w: %s-%d", ErrNotLeader, tp.Topic, tp.Partition)
	}
	res, err := p.WriteMarker(pid, epoch, commit, cepoch)
	if err != nil {
		return err
	}
	if lr, ok := b.LeaderReplica(tp.Topic, tp.Partition); ok {
		lr.Appended()
	}
	if err := p.WaitDurable(res.LastOffset); err != nil {
		return err
	}
	if err := p.WaitCommitted(ctx, res.LastOffset+1); err != nil {
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
