package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/txn"
)

// maxProduceWait bounds how long an acks=all produce waits for its fsync
// when its timeout_ms is 0 or less (Kafka's request.timeout.ms default).
const maxProduceWait = 30 * time.Second

// Produce v0-13; v3-13 served.
//
// v0-2 (magic 0 and 1 batches) are advertised but every partition is
// answered UNSUPPORTED_VERSION, as Kafka 4.0 does (KAFKA-18659): librdkafka
// 2.0 compresses gzip and snappy only when the broker lists Produce v0.
//
// Each partition's records must be exactly one magic-2 batch (as Kafka
// requires since v3); it is validated (CRC-32C, sizes, producer sequence)
// and appended on the connection's reader goroutine, so batches of one
// connection keep their order. acks=0 gets no response (a partition that
// fails closes the connection, as in Kafka: see acksZeroFailed); acks=1 is
// answered after the append; acks=-1 (all) after the batch is fsynced when
// log.flush.policy is acks-all (the default), sharing fsyncs with
// concurrent producers (group commit), or REQUEST_TIMED_OUT when that takes
// longer than the request's timeout_ms. v13 names topics by id. Unknown
// topics are created when auto.create.topics.enable allows.
//
// A topic with sluice.mirror.source set is an offset-preserving mirror
// (internal/mirror): it takes produce requests only from client id
// sluice-mirror-offsets, and others get POLICY_VIOLATION. The mirror's partition
// records may be several whole batches with the source's offsets, which
// are kept (partition.AppendMirrored): a batch already in the log is
// answered as a success, one overlapping the log end as INVALID_RECORD.
// No transaction checks apply: the source's transactions are copied with
// their markers, not run on this cluster.
func (h *Handler) produce(ctx context.Context, r *kmsg.ProduceRequest, reply func(server.Reply)) {
	h.produceFrom(ctx, r, nil, reply)
}

// produceFrom is produce from the client named clientID (nil: none).
func (h *Handler) produceFrom(ctx context.Context, r *kmsg.ProduceRequest, clientID *string, reply func(server.Reply)) {
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	if code := int16(0); r.Version < 3 || r.Acks != 0 && r.Acks != 1 && r.Acks != -1 {
		code = kerr.InvalidRequiredAcks.Code
		if r.Version < 3 {
			code = kerr.UnsupportedVersion.Code
		}
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		if r.Acks == 0 {
			if !h.acksZeroFailed(resp, reply) {
				reply(server.Reply{None: true}) // no partitions
			}
			return
		}
		reply(server.Reply{Msg: resp})
		return
	}
	var waits []pending
	img := h.b.Image()
	waitFsync := r.Acks == -1 && h.flushOnAcksAll()
	txnErrs := h.addProducedPartitions(ctx, r, img)
	for _, rt := range r.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *metadata.Topic
		var topicErr error
		if r.Version >= 13 {
			if t = img.TopicsByID[metadata.TopicID(rt.TopicID)]; t == nil {
				topicErr = kerr.UnknownTopicID
			}
		} else if t = img.Topics[rt.Topic]; t == nil {
			t, topicErr = h.autoCreate(ctx, rt.Topic)
		}
		mirrorOf := "" // the source cluster of an offset-preserving mirror topic
		if t != nil {
			mirrorOf = t.Configs[config.MirrorSourceConfig]
		}
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for i, rp := range rt.Partitions {
			sp := &st.Partitions[i]
			sp.Default()
			sp.Partition = rp.Partition
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
			if topicErr != nil {
				sp.ErrorCode = errorCode(topicErr)
				continue
			}
			p, ok := h.b.Partition(t.Name, rp.Partition)
			if !ok {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				if int(rp.Partition) < len(t.Partitions) && rp.Partition >= 0 {
					sp.ErrorCode = kerr.NotLeaderForPartition.Code
				}
				continue
			}
			if mirrorOf != "" {
				if clientID == nil || *clientID != config.MirrorClientID {
					sp.ErrorCode = kerr.PolicyViolation.Code
					msg := fmt.Sprintf("%s is a read-only mirror of a topic of cluster %s (%s); produce to the source cluster",
						t.Name, mirrorOf, config.MirrorSourceConfig)
					sp.ErrorMessage = &msg
					continue
				}
			} else if err := h.checkTxn(ctx, r, t.Name, rp.Partition, rp.Records, txnErrs); err != nil {
				sp.ErrorCode = errorCode(err)
				sp.ErrorMessage = errorMessage(err)
				continue
			}
			lr, replicated := h.b.LeaderReplica(t.Name, rp.Partition)
			if replicated {
				if err := lr.CheckProduce(r.Acks); err != nil {
					sp.ErrorCode = errorCode(err)
					sp.ErrorMessage = errorMessage(err)
					continue
				}
			}
			var res partition.AppendResult
			var err error
			if mirrorOf != "" {
				res, err = p.AppendMirrored(rp.Records, mirrorOf)
			} else {
				res, err = h.appendOne(p, rp.Records)
			}
			if err != nil {
				sp.ErrorCode = errorCode(err)
				sp.ErrorMessage = errorMessage(err)
				if res.LogStartOffset > 0 {
					sp.LogStartOffset = res.LogStartOffset
				}
				continue
			}
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = res.BaseOffset, res.LogAppendTime, res.LogStartOffset
			if !res.Duplicate {
				h.observer.Produced(t.Name, len(rp.Records), int(res.LastOffset-res.BaseOffset+1))
			}
			if replicated {
				lr.Appended()
			}
			if waitFsync || (replicated && r.Acks == -1) {
				w := pending{p: p, last: res.LastOffset, sp: sp, fsync: waitFsync}
				if replicated && r.Acks == -1 {
					w.lr = lr
				}
				waits = append(waits, w)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	addProduceLeaderHints(img, resp)
	switch {
	case r.Acks == 0:
		if !h.acksZeroFailed(resp, reply) {
			reply(server.Reply{None: true})
		}
	case len(waits) == 0:
		reply(server.Reply{Msg: resp})
	default:
		// Wait for the fsyncs off the reader goroutine: the connection
		// reads on, and the next requests' appends join the same fsync.
		h.observer.Purgatory("produce", 1)
		go func() {
			defer h.observer.Purgatory("produce", -1)
			h.awaitDurable(waits, time.Duration(r.TimeoutMillis)*time.Millisecond)
			reply(server.Reply{Msg: resp})
		}()
	}
}

// acksZeroFailed closes the connection, and says so, when a partition of
// an acks=0 produce has an error, as Kafka does (KafkaApis
// handleProduceRequest): the producer gets no response to learn it from,
// but sees the connection go, refreshes its metadata and sends its next
// batches where they belong; kept open, it would go on sending to a broker
// that drops every batch (one not yet leading the partition, say). Earlier
// responses on the connection are written first. It replies only when it
// returns true.
func (h *Handler) acksZeroFailed(resp *kmsg.ProduceResponse, reply func(server.Reply)) bool {
	var failed []string
	for _, st := range resp.Topics {
		for _, sp := range st.Partitions {
			if sp.ErrorCode == 0 {
				continue
			}
			name := st.Topic
			if name == "" { // v13 names topics by id
				name = fmt.Sprintf("topic id %x", st.TopicID)
			}
			failed = append(failed, fmt.Sprintf("%s-%d: %s", name, sp.Partition, kerr.ErrorForCode(sp.ErrorCode)))
		}
	}
	if len(failed) == 0 {
		return false
	}
	h.logger.Info("closing the connection: an acks=0 produce failed", "partitions", failed)
	reply(server.Reply{Close: true})
	return true
}

// pending is an appended batch that an acks=all produce waits for: its
// fsync on this broker (fsync) and, for a replicated partition (lr set),
// its copies in every in-sync replica (the high watermark passing it).
type pending struct {
	p     *partition.Partition
	last  int64
	sp    *kmsg.ProduceResponseTopicPartition
	fsync bool
	lr    *broker.LeaderReplica
}

// wait waits for w, until ctx ends.
func (w pending) wait(ctx context.Context) error {
	if w.fsync {
		if err := w.p.WaitDurable(w.last); err != nil {
			return fmt.Errorf("%w: %w", kerr.KafkaStorageError, err)
		}
	}
	if w.lr != nil {
		return w.lr.WaitAcked(ctx, w.last+1)
	}
	return nil
}

// awaitDurable waits until every batch is fsynced or the request's
// timeout_ms has passed, and fills in each partition's answer. Partitions
// are separate files: they are fsynced in parallel, so a request spanning
// six partitions waits for one fsync's time, not six. A partition whose
// fsync has not finished by the timeout is answered REQUEST_TIMED_OUT, as
// Kafka does; its batch is appended and may still become durable (and
// visible) afterwards, so a producer that retries may write it twice
// unless it is idempotent. A timeout of 0 or less waits without bound only
// up to maxProduceWait.
func (h *Handler) awaitDurable(waits []pending, timeout time.Duration) {
	if timeout <= 0 || timeout > maxProduceWait {
		timeout = maxProduceWait
	}
	type result struct {
		i   int
		err error
	}
	// Buffered for all: a wait that ends after the timeout never blocks.
	done := make(chan result, len(waits))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for i := range waits {
		go func() { done <- result{i, waits[i].wait(ctx)} }()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	answered := make([]bool, len(waits))
	for n := 0; n < len(waits); n++ {
		select {
		case res := <-done:
			answered[res.i] = true
			if res.err != nil {
				sp := waits[res.i].sp
				sp.ErrorCode = errorCode(res.err)
				if errors.Is(res.err, context.DeadlineExceeded) {
					sp.ErrorCode = kerr.RequestTimedOut.Code
				}
				sp.ErrorMessage = errorMessage(res.err)
				sp.BaseOffset = -1
			}
		case <-timer.C:
			for i, ok := range answered {
				if !ok {
					sp := waits[i].sp
					sp.ErrorCode = kerr.RequestTimedOut.Code
					msg := fmt.Sprintf("the batch was appended at offset %d but not fsynced and copied to the in-sync replicas within the request's timeout of %v; it may still become durable", sp.BaseOffset, timeout)
					sp.ErrorMessage = &msg
					sp.BaseOffset = -1
				}
			}
			return
		}
	}
}

// txnBatch returns the producer of a transactional data batch.
func txnBatch(records []byte) (record.Header, bool) {
	hd, err := record.ParseHeader(records)
	if err != nil || !hd.IsTransactional() || hd.IsControl() || !hd.HasProducer() {
		return hd, false // Append reports what is wrong with the batch
	}
	return hd, true
}

// addProducedPartitions, under KIP-890 part 2 (Produce v12+ with
// transaction.version 2), adds the partitions of the request's
// transactional batches to their producers' transactions, durably and
// before any append, one coordinator write per producer. It returns the
// outcome per producer id (nil when there is nothing to add).
func (h *Handler) addProducedPartitions(ctx context.Context, r *kmsg.ProduceRequest, img *metadata.Image) map[int64]error {
	if r.Version < 12 || h.txnVersion < 2 || r.TransactionID == nil {
		// Transactional producers name their transactional id; requests
		// without one (every plain produce) have nothing to add.
		return nil
	}
	type producer struct {
		epoch int16
		tps   []txn.TopicPartition
	}
	byPID := map[int64]*producer{}
	for _, rt := range r.Topics {
		t := img.Topics[rt.Topic]
		if r.Version >= 13 {
			t = img.TopicsByID[metadata.TopicID(rt.TopicID)]
		}
		if t == nil {
			continue
		}
		for _, rp := range rt.Partitions {
			hd, ok := txnBatch(rp.Records)
			if !ok {
				continue
			}
			p := byPID[hd.ProducerID]
			if p == nil {
				p = &producer{epoch: hd.ProducerEpoch}
				byPID[hd.ProducerID] = p
			}
			p.tps = append(p.tps, txn.TopicPartition{Topic: t.Name, Partition: rp.Partition})
		}
	}
	if len(byPID) == 0 {
		return nil
	}
	out := make(map[int64]error, len(byPID))
	ctx, cancel := txnContext(ctx)
	defer cancel()
	if h.b.Clustered() {
		for pid, p := range byPID {
			out[pid] = h.addAtCoordinator(ctx, *r.TransactionID, pid, p.epoch, p.tps, false)
		}
		return out
	}
	c, ok := h.txns()
	for pid, p := range byPID {
		if !ok {
			out[pid] = fmt.Errorf("%w: no transaction coordinator has started", kerr.InvalidTxnState)
			continue
		}
		out[pid] = c.AddImplicitly(ctx, pid, p.epoch, p.tps...)
	}
	return out
}

// checkTxn applies the transaction rules to a transactional batch before
// it is appended: under KIP-890 part 2 the partition was added to the
// producer's transaction by addProducedPartitions (added holds the outcome);
// otherwise, with transaction.partition.verification.enable, it must
// already be in the producer's open transaction (KIP-890 part 1:
// INVALID_TXN_STATE), so that a late or stray write cannot open a
// transaction no one will end.
func (h *Handler) checkTxn(ctx context.Context, r *kmsg.ProduceRequest, topic string, partition int32, records []byte, added map[int64]error) error {
	version := r.Version
	hd, ok := txnBatch(records)
	if !ok {
		return nil
	}
	if err, done := added[hd.ProducerID]; done {
		return err
	}
	if h.b.Clustered() {
		if version >= 12 && h.txnVersion >= 2 || r.TransactionID == nil {
			return fmt.Errorf("%w: %s-%d was not added to a transaction (a transactional produce names its transactional id)",
				kerr.InvalidTxnState, topic, partition)
		}
		if !h.txnVerify {
			return nil
		}
		ctx, cancel := txnContext(ctx)
		defer cancel()
		return h.addAtCoordinator(ctx, *r.TransactionID, hd.ProducerID, hd.ProducerEpoch,
			[]txn.TopicPartition{{Topic: topic, Partition: partition}}, true)
	}
	c, ok := h.txns()
	if !ok {
		return fmt.Errorf("%w: no transaction coordinator has started", kerr.InvalidTxnState)
	}
	if version >= 12 && h.txnVersion >= 2 {
		// Not added above: the request named no transactional id, or the
		// topic was unknown when it came.
		return fmt.Errorf("%w: %s-%d was not added to a transaction (a transactional produce names its transactional id)",
			kerr.InvalidTxnState, topic, partition)
	}
	if !h.txnVerify {
		return nil
	}
	return c.Verify(hd.ProducerID, hd.ProducerEpoch, txn.TopicPartition{Topic: topic, Partition: partition})
}

// addAtCoordinator adds partitions to (or, verifyOnly, checks that they are
// in) the open transaction of txnID at its coordinator: this broker's own,
// or another broker's through AddPartitionsToTxn v5, as Kafka's partition
// leaders ask the coordinator (KIP-890).
func (h *Handler) addAtCoordinator(ctx context.Context, txnID string, pid int64, epoch int16, tps []txn.TopicPartition, verifyOnly bool) error {
	t := h.b.Image().Topics[txn.Topic]
	if t == nil || len(t.Partitions) == 0 {
		return fmt.Errorf("%w: no %s yet", kerr.InvalidTxnState, txn.Topic)
	}
	coordinator := t.Partitions[group.PartitionFor(txnID, len(t.Partitions))].Leader
	if coordinator < 0 {
		return fmt.Errorf("%w: the coordinator of %s has no leader", kerr.NotEnoughReplicas, txnID)
	}
	if coordinator == h.b.NodeID() {
		c, ok := h.txns()
		if !ok {
			return kerr.NotEnoughReplicas
		}
		return c.AddPartitions(ctx, txnID, pid, epoch, tps, verifyOnly)
	}
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	tr := kmsg.NewAddPartitionsToTxnRequestTransaction()
	tr.TransactionalID, tr.ProducerID, tr.ProducerEpoch, tr.VerifyOnly = txnID, pid, epoch, verifyOnly
	byTopic := map[string]int{}
	for _, tp := range tps {
		i, ok := byTopic[tp.Topic]
		if !ok {
			tt := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
			tt.Topic = tp.Topic
			tr.Topics = append(tr.Topics, tt)
			i = len(tr.Topics) - 1
			byTopic[tp.Topic] = i
		}
		tr.Topics[i].Partitions = append(tr.Topics[i].Partitions, tp.Partition)
	}
	req.Transactions = []kmsg.AddPartitionsToTxnRequestTransaction{tr}
	resp, err := h.b.SendToBroker(ctx, coordinator, req)
	if err != nil {
		// Retriable for the producer: the coordinator may be moving.
		return fmt.Errorf("%w: asking the transaction coordinator (broker %d): %v", kerr.NotEnoughReplicas, coordinator, err)
	}
	ar := resp.(*kmsg.AddPartitionsToTxnResponse)
	if err := kerr.ErrorForCode(ar.ErrorCode); err != nil {
		return err
	}
	for _, rt := range ar.Transactions {
		for _, tt := range rt.Topics {
			for _, p := range tt.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					if errors.Is(err, kerr.NotCoordinator) || errors.Is(err, kerr.CoordinatorLoadInProgress) || errors.Is(err, kerr.CoordinatorNotAvailable) {
						// Kafka's partition leaders answer these as
						// NOT_ENOUGH_REPLICAS, which producers retry.
						return fmt.Errorf("%w: transaction coordinator: %v", kerr.NotEnoughReplicas, err)
					}
					return err
				}
			}
		}
	}
	return nil
}

// appendOne appends the single batch of one partition.
func (h *Handler) appendOne(p *partition.Partition, records []byte) (partition.AppendResult, error) {
	if len(records) == 0 {
		return partition.AppendResult{}, fmt.Errorf("%w: no record batch", kerr.InvalidRecord)
	}
	size, ok := record.PeekSize(records)
	if !ok || size != len(records) {
		if ok && size < len(records) {
			return partition.AppendResult{}, fmt.Errorf("%w: more than one record batch for a partition", kerr.InvalidRecord)
		}
		return partition.AppendResult{}, fmt.Errorf("%w: record batch length does not match its %d bytes", kerr.CorruptMessage, len(records))
	}
	return p.Append(records)
}

// flushOnAcksAll says whether acks=all waits for fsync (log.flush.policy).
func (h *Handler) flushOnAcksAll() bool {
	v, _ := h.b.BrokerConfigs().Value("log.flush.policy")
	return v != "none"
}
