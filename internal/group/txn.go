package group

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Transactional offset commits (TxnOffsetCommit): a transactional
// producer's consumed offsets, written to __consumer_offsets as records of
// its transaction (its producer id and epoch on the batch), pending until
// the transaction coordinator writes the commit marker (they become the
// group's offsets) or the abort marker (they are dropped). Until then an
// OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for them.

// TxnCommitRequest is a TxnOffsetCommit of partitions that exist.
type TxnCommitRequest struct {
	Group         string
	ProducerID    int64
	ProducerEpoch int16
	// MemberID, InstanceID and Generation (v3+; "", nil, -1 before) are
	// checked when given.
	MemberID   string
	InstanceID *string
	Generation int32
	Offsets    []CommitOffset
}

// Producer marks an Append as part of a producer's transaction.
type Producer struct {
	ID    int64
	Epoch int16
}

// txnOffsets are one producer's pending offsets, by group.
type txnOffsets map[string]map[TopicPartition]offset

// TxnCommit handles a TxnOffsetCommit; it is answered once the records are
// durable.
func (s *Shard) TxnCommit(now time.Time, r TxnCommitRequest, reply func(CommitResult)) Output {
	s.begin(now)
	s.txnCommit(r, reply)
	return s.end()
}

func (s *Shard) txnCommit(r TxnCommitRequest, reply func(CommitResult)) {
	errs := make([]error, len(r.Offsets))
	answer := func() { s.out.Replies = append(s.out.Replies, func() { reply(CommitResult{Errs: errs}) }) }
	fail := func(err error) {
		for i := range errs {
			errs[i] = err
		}
		answer()
	}
	if err := s.ready(); err != nil {
		fail(err)
		return
	}
	g := s.groups[r.Group]
	if g == nil {
		// Kafka creates the group: a transactional producer may commit for
		// a group whose consumers use no group membership.
		g = newGroup(r.Group, s.now)
		s.groups[r.Group] = g
	}
	if err := g.validateTxnCommit(r.MemberID, r.InstanceID, r.Generation); err != nil {
		fail(err)
		return
	}
	b := s.newCommitBatch(g, r.Offsets, time.Time{}, errs)
	if len(b.recs) == 0 {
		answer()
		return
	}
	s.appendTxnRecords(b.recs, Producer{r.ProducerID, r.ProducerEpoch}, func(err error) {
		if err != nil {
			b.fail(err)
		} else {
			for k, i := range b.valid {
				s.addPendingTxn(r.ProducerID, g.id, r.Offsets[i].TopicPartition, b.offs[k])
			}
		}
		answer()
	})
}

// validateTxnCommit is Kafka's check of a transactional commit: looser than
// a plain commit's, since producers before TxnOffsetCommit v3 send no
// member details, and a member may commit while its group rebalances.
func (g *group) validateTxnCommit(memberID string, instanceID *string, generation int32) error {
	if g.cg != nil {
		if memberID == "" && generation < 0 {
			return nil
		}
		return g.cg.validateCommit(memberID, generation, true)
	}
	if generation < 0 && g.state == Empty {
		return nil
	}
	if memberID != "" || instanceID != nil {
		if err := g.validateMember(memberID, instanceID); err != nil {
			return err
		}
	}
	if generation >= 0 && generation != g.generation {
		return kerr.IllegalGeneration
	}
	return nil
}

func (s *Shard) addPendingTxn(pid int64, groupID string, tp TopicPartition, o offset) {
	if s.txns == nil {
		s.txns = map[int64]txnOffsets{}
	}
	t := s.txns[pid]
	if t == nil {
		t = txnOffsets{}
		s.txns[pid] = t
	}
	m := t[groupID]
	if m == nil {
		m = map[TopicPartition]offset{}
		t[groupID] = m
	}
	m[tp] = o
}

// CompleteTxn applies a transaction marker written to this shard's
// partition: on commit the producer's pending offsets become its groups'
// offsets, on abort they are dropped.
func (s *Shard) CompleteTxn(now time.Time, producerID int64, commit bool) Output {
	s.begin(now)
	s.completeTxn(producerID, commit)
	return s.end()
}

func (s *Shard) completeTxn(producerID int64, commit bool) {
	t := s.txns[producerID]
	delete(s.txns, producerID)
	if !commit {
		return
	}
	for groupID, offsets := range t {
		g := s.groups[groupID]
		if g == nil {
			g = newGroup(groupID, s.now)
			s.groups[groupID] = g
		}
		for tp, o := range offsets {
			// Only over an older offset: a plain commit appended after
			// the transactional one wins, as in Kafka.
			if cur, ok := g.offsets[tp]; !ok || cur.order < o.order {
				g.offsets[tp] = o
			}
		}
	}
}

// unstable says whether a transaction holds a pending offset of the group's
// partition (any partition when tp is nil).
func (s *Shard) unstable(groupID string, tp *TopicPartition) bool {
	for _, t := range s.txns {
		m := t[groupID]
		if m == nil {
			continue
		}
		if tp == nil {
			return true
		}
		if _, ok := m[*tp]; ok {
			return true
		}
	}
	return false
}

// ReplayTxn applies one record of a transactional batch of producerID read
// back while loading: an offset commit stays pending until its marker.
func (s *Shard) ReplayTxn(producerID int64, key, value []byte) error {
	d, err := decodeRecord(key, value)
	if err != nil {
		return err
	}
	if d.kind == recordOffset && d.offset != nil {
		o := *d.offset
		o.order = s.nextOrder()
		s.addPendingTxn(producerID, d.group, d.tp, o)
	}
	return nil
}

// ReplayMarker applies a transaction marker read back while loading.
func (s *Shard) ReplayMarker(producerID int64, commit bool) { s.completeTxn(producerID, commit) }
