package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/txn"
)

// The transaction APIs (InitProducerId with a transactional id,
// AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit,
// DescribeTransactions, ListTransactions) go to the broker's transaction
// coordinator (internal/txn); WriteTxnMarkers and DescribeProducers read
// and write the partitions directly. Errors come back as kerr values.

// txnTimeout bounds how long a transaction request waits on the
// coordinator (a state write, or an EndTxn's markers).
const txnTimeout = 60 * time.Second

// txns returns the transaction coordinator if it serves: loaded at broker
// start when __transaction_state exists, or here when someone created the
// topic since.
func (h *Handler) txns() (*txn.Coordinator, bool) {
	c := h.b.Txns()
	if c.Started() {
		return c, true
	}
	t, ok := h.b.Image().Topics[txn.Topic]
	if !ok {
		return nil, false
	}
	if h.b.Clustered() {
		return c, true // partitions elected as their leadership moves
	}
	for p := range t.Partitions {
		if _, ok := h.b.Partition(txn.Topic, int32(p)); !ok {
			return nil, false
		}
	}
	if err := c.Start(len(t.Partitions)); err != nil {
		h.logger.Error("loading transactions failed", "err", err)
		return nil, false
	}
	return c, true
}

// ensureTxns is txns for FindCoordinator: it creates __transaction_state
// on first use, as Kafka does (transaction.state.log.num.partitions
// partitions, compacted, transaction.state.log.replication.factor replicas
// or as many brokers as there are), and loads it.
func (h *Handler) ensureTxns(ctx context.Context) (*txn.Coordinator, error) {
	if c, ok := h.txns(); ok {
		return c, nil
	}
	rf := min(h.brokerInt("transaction.state.log.replication.factor"), int64(len(h.b.Image().Brokers)))
	configs := map[string]string{
		"cleanup.policy":   "compact",
		"compression.type": "producer",
		"segment.bytes":    strconv.FormatInt(h.brokerInt("transaction.state.log.segment.bytes"), 10),
	}
	_, err := h.createTopic(ctx, txn.Topic, int32(h.brokerInt("transaction.state.log.num.partitions")), int16(max(rf, 1)), configs)
	switch {
	case errors.Is(err, metadata.ErrTopicExists):
		if err := h.b.Reconcile(); err != nil {
			return nil, fmt.Errorf("%w: opening %s: %v", kerr.CoordinatorNotAvailable, txn.Topic, err)
		}
	case err != nil:
		h.logger.Error("creating the transaction state topic failed", "topic", txn.Topic, "err", err)
		return nil, fmt.Errorf("%w: creating %s: %v", kerr.CoordinatorNotAvailable, txn.Topic, err)
	default:
		h.logger.Info("created the transaction state topic", "topic", txn.Topic)
	}
	c, ok := h.txns()
	if !ok {
		return nil, kerr.CoordinatorNotAvailable
	}
	return c, nil
}

// fenced maps PRODUCER_FENCED to INVALID_PRODUCER_EPOCH for request
// versions older than the one that knows it (KIP-588).
func fenced(err error, version, since int16) error {
	if version < since && errors.Is(err, kerr.ProducerFenced) {
		return kerr.InvalidProducerEpoch
	}
	return err
}

// txnContext bounds a transaction request.
func txnContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, txnTimeout)
}
