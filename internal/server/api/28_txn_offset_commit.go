package api

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/txn"
)

// TxnOffsetCommit v0-6.
//
// A transactional producer commits a group's offsets inside its
// transaction: the group coordinator writes them to __consumer_offsets
// with the producer's id and epoch and keeps them pending until the
// transaction's marker (commit: they become the group's offsets; abort:
// dropped). The producer must be the transactional id's current one
// (PRODUCER_FENCED from v3, INVALID_PRODUCER_EPOCH before;
// INVALID_PRODUCER_ID_MAPPING for another id); from v5 under
// transaction.version 2 (KIP-890 part 2) it adds the group's partition to
// the transaction itself, without AddOffsetsToTxn. v3+ carry the member id and
// generation, checked when given. Unknown topics answer
// UNKNOWN_TOPIC_OR_PARTITION (v6 names topics by id: UNKNOWN_TOPIC_ID).
func (h *Handler) txnOffsetCommit(ctx context.Context, r *kmsg.TxnOffsetCommitRequest, reply func(server.Reply)) {
	resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	img := h.b.Image()
	type slot struct{ t, p int }
	var (
		offsets []group.CommitOffset
		slots   []slot
	)
	for ti, rt := range r.Topics {
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *metadata.Topic
		topicErr := kerr.UnknownTopicOrPartition
		if r.Version >= 6 {
			t, topicErr = img.TopicsByID[metadata.TopicID(rt.TopicID)], kerr.UnknownTopicID
		} else {
			t = img.Topics[rt.Topic]
		}
		for pi, rp := range rt.Partitions {
			sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case t == nil:
				sp.ErrorCode = topicErr.Code
			case rp.Partition < 0 || int(rp.Partition) >= len(t.Partitions):
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				offsets = append(offsets, group.CommitOffset{TopicPartition: group.TopicPartition{Topic: t.Name, Partition: rp.Partition},
					Offset: rp.Offset, LeaderEpoch: rp.LeaderEpoch, Metadata: deref(rp.Metadata)})
				slots = append(slots, slot{ti, pi})
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	answer := func(errs []error) {
		for i, s := range slots {
			resp.Topics[s.t].Partitions[s.p].ErrorCode = errorCode(errs[i])
		}
		reply(server.Reply{Msg: resp})
	}
	fail := func(err error) {
		errs := make([]error, len(offsets))
		for i := range errs {
			errs[i] = err
		}
		answer(errs)
	}
	if len(offsets) == 0 {
		reply(server.Reply{Msg: resp})
		return
	}
	if h.b.Clustered() {
		// The transaction's coordinator may be another broker: ask it
		// as a partition leader does (KIP-890), for the group's partition
		// of __consumer_offsets.
		ot := h.b.Image().Topics[group.Topic]
		if ot == nil || len(ot.Partitions) == 0 {
			fail(kerr.NotCoordinator)
			return
		}
		tp := txn.TopicPartition{Topic: group.Topic, Partition: group.PartitionFor(r.Group, len(ot.Partitions))}
		implicit := r.Version >= 5 && h.txnVersion >= 2
		if implicit || h.txnVerify {
			ctx, cancel := txnContext(ctx)
			err := h.addAtCoordinator(ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch, []txn.TopicPartition{tp}, !implicit)
			cancel()
			if err != nil {
				fail(fenced(err, r.Version, 3))
				return
			}
		}
	} else if tc, ok := h.txns(); !ok {
		fail(kerr.NotCoordinator)
		return
	} else if r.Version >= 5 && h.txnVersion >= 2 {
		// KIP-890 part 2: the commit adds the group's partition itself.
		ctx, cancel := txnContext(ctx)
		err := tc.AddOffsets(ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Group)
		cancel()
		if err != nil {
			fail(err)
			return
		}
	} else if err := tc.CheckProducer(r.TransactionalID, r.ProducerID, r.ProducerEpoch); err != nil {
		fail(fenced(err, r.Version, 3))
		return
	}
	c, ok := h.groups()
	if !ok {
		fail(kerr.NotCoordinator)
		return
	}
	c.TxnCommit(group.TxnCommitRequest{Group: r.Group, ProducerID: r.ProducerID, ProducerEpoch: r.ProducerEpoch,
		MemberID: r.MemberID, InstanceID: r.InstanceID, Generation: r.Generation, Offsets: offsets},
		func(res group.CommitResult) {
			for i, err := range res.Errs {
				res.Errs[i] = fenced(err, r.Version, 3)
			}
			answer(res.Errs)
		})
}
