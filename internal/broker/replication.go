package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/replica"
	"github.com/sluice-io/sluice/internal/txn"
)

// Errors of replication, turned into Kafka codes by the api package.
var (
	// ErrNotLeader: this broker does not lead the partition (any more).
	ErrNotLeader = errors.New("broker: not the partition's leader")
	// ErrStaleBrokerEpoch: a follower fetch from an older incarnation of a
	// broker (KIP-903).
	ErrStaleBrokerEpoch = errors.New("broker: stale broker epoch")
)

// LeaderReplica is this broker's leadership of a replicated partition
// (replication factor above one): the followers' progress (a
// replica.Leader) and the high watermark it makes. Safe for concurrent
// use.
type LeaderReplica struct {
	b       *Broker
	tp      TopicPartition
	topicID metadata.TopicID
	p       *partition.Partition

	mu     sync.Mutex
	st     *replica.Leader
	closed bool // no longer the leader: waiters give up
	epoch  int32

	// watchers are follower fetches waiting for data past their offset:
	// told (without blocking) on every append.
	watchMu  sync.Mutex
	watchers map[chan<- struct{}]struct{}
}

// Epoch is the leader epoch this leadership is in.
func (lr *LeaderReplica) Epoch() int32 { return lr.epoch }

// Partition is the leader's partition.
func (lr *LeaderReplica) Partition() *partition.Partition { return lr.p }

// LeaderReplica returns this broker's leadership of a replicated
// partition, if it has one.
func (b *Broker) LeaderReplica(topic string, p int32) (*LeaderReplica, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	r, ok := b.parts[TopicPartition{topic, p}]
	if !ok {
		return nil, false
	}
	lr := r.lead.Load()
	return lr, lr != nil
}

// Follower returns a replica this broker holds but does not lead, for a
// consumer fetching from its closest replica (KIP-392).
func (b *Broker) Follower(topic string, p int32) (*partition.Partition, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	r, ok := b.parts[TopicPartition{topic, p}]
	if !ok || r.leader.Load() || r.p.IsLeader() {
		return nil, false
	}
	return r.p, true
}

// PreferredReadReplica is where a consumer in rack should read a partition
// this broker leads (KIP-392, replica.selector.class): under the
// rack-aware selector, an in-sync, unfenced replica in the consumer's rack
// when the leader is in another; else -1 (the leader itself).
func (b *Broker) PreferredReadReplica(topic string, partition int32, rack string) int32 {
	if rack == "" {
		return -1
	}
	if v, _ := b.BrokerConfigs().Value("replica.selector.class"); v != config.RackAwareSelector {
		return -1
	}
	img := b.meta.Image()
	if self, ok := img.Brokers[b.cfg.NodeID]; !ok || self.Rack == rack {
		return -1
	}
	t := img.Topics[topic]
	if t == nil || partition < 0 || int(partition) >= len(t.Partitions) {
		return -1
	}
	for _, id := range sortedIDs(t.Partitions[partition].ISR) {
		if br, ok := img.Brokers[id]; ok && id != b.cfg.NodeID && br.Rack == rack && !br.Fenced && !br.InControlledShutdown {
			return id
		}
	}
	return -1
}

// flushPolicy is log.flush.policy.
func (b *Broker) flushPolicy() string {
	v, _ := b.BrokerConfigs().Value("log.flush.policy")
	return v
}

func (b *Broker) replicaConfig(t *metadata.Topic) replica.Config {
	cfg := replica.Config{ReplicaLagTimeMax: time.Duration(b.brokerInt("replica.lag.time.max.ms")) * time.Millisecond}
	tc, err := b.TopicConfig(t)
	if err != nil {
		tc, _ = config.TopicConfig(nil, b.BrokerConfigs())
	}
	cfg.MinInsyncReplicas = int(tc.MinInsyncReplicas)
	return cfg
}

// applyRole makes an open replica what the metadata says it is: the
// leader of a replicated partition (a LeaderReplica), the leader of an
// unreplicated one (the partition keeps its own high watermark), or a
// follower (fetching from the leader). Called by Reconcile under recMu.
func (b *Broker) applyRole(r *hosted, tp TopicPartition, t *metadata.Topic, part metadata.Partition) error {
	if err := b.applyReplicaRole(r, tp, t, part); err != nil {
		return err
	}
	b.applyCoordinatorRole(tp, len(t.Partitions), part, r.leader.Load())
	return nil
}

// applyCoordinatorRole moves a partition of __consumer_offsets or
// __transaction_state between this broker's coordinators: loaded when it
// leads the partition, dropped when it does not (Kafka's onElection and
// onResignation). On a single node the coordinators start with every
// partition instead (openGroups, openTxns).
func (b *Broker) applyCoordinatorRole(tp TopicPartition, n int, part metadata.Partition, leads bool) {
	if !b.clustered() {
		return
	}
	switch tp.Topic {
	case group.Topic:
		if b.groups == nil {
			return // openGroups elects what this broker leads
		}
		if leads {
			b.groups.Elect(tp.Partition, n, part.LeaderEpoch)
		} else {
			b.groups.Resign(tp.Partition, part.LeaderEpoch)
		}
	case txn.Topic:
		if b.txns == nil {
			return
		}
		if leads {
			if err := b.txns.Elect(tp.Partition, n, part.LeaderEpoch); err != nil {
				b.logger.Error("loading transactions", "partition", partitionDir(tp), "err", err)
			}
		} else {
			b.txns.Resign(tp.Partition, part.LeaderEpoch)
		}
	}
}

// electCoordinators runs applyCoordinatorRole for every internal partition
// this broker holds: once the coordinators exist (Open).
func (b *Broker) electCoordinators() {
	img := b.meta.Image()
	b.mu.RLock()
	type role struct {
		tp    TopicPartition
		leads bool
	}
	var roles []role
	for tp, r := range b.parts {
		if tp.Topic == group.Topic || tp.Topic == txn.Topic {
			roles = append(roles, role{tp, r.leader.Load()})
		}
	}
	b.mu.RUnlock()
	for _, r := range roles {
		t := img.Topics[r.tp.Topic]
		if t == nil || int(r.tp.Partition) >= len(t.Partitions) {
			continue
		}
		b.applyCoordinatorRole(r.tp, len(t.Partitions), t.Partitions[r.tp.Partition], r.leads)
	}
}

func (b *Broker) applyReplicaRole(r *hosted, tp TopicPartition, t *metadata.Topic, part metadata.Partition) error {
	self := b.cfg.NodeID
	if part.Leader == self {
		b.stopFollowing(tp)
		if len(part.Replicas) == 1 {
			if old := r.lead.Swap(nil); old != nil {
				old.close()
			}
			r.p.SetOnLocalEnd(nil)
			r.p.SetExternalHighWatermark(false)
			if err := r.p.BecomeLeader(part.LeaderEpoch); err != nil {
				return err
			}
			r.leader.Store(true)
			return nil
		}
		lr := r.lead.Load()
		if lr != nil && lr.epoch == part.LeaderEpoch {
			lr.update(t, part)
			r.leader.Store(true)
			return nil
		}
		if lr != nil {
			lr.close()
		}
		r.p.SetExternalHighWatermark(true)
		if err := r.p.BecomeLeader(part.LeaderEpoch); err != nil {
			return err
		}
		now := b.cfg.Now()
		st, err := replica.NewLeader(b.replicaConfig(t), self,
			replica.PartitionState{LeaderEpoch: part.LeaderEpoch, PartitionEpoch: part.PartitionEpoch, Replicas: part.Replicas, ISR: part.ISR},
			replica.LogOffsets{LogEndOffset: r.p.LocalEnd(), HighWatermark: r.p.HighWatermark(), EpochStartOffset: r.p.EpochStartOffset(part.LeaderEpoch)},
			now)
		if err != nil {
			return fmt.Errorf("broker: lead %s: %w", partitionDir(tp), err)
		}
		lr = &LeaderReplica{b: b, tp: tp, topicID: t.ID, p: r.p, st: st, epoch: part.LeaderEpoch, watchers: map[chan<- struct{}]struct{}{}}
		r.lead.Store(lr)
		r.p.SetOnLocalEnd(lr.localEndMoved)
		lr.RefreshEligibility(b.meta.Image())
		lr.localEndMoved() // the HW may move at once (e.g. a lone ISR)
		r.leader.Store(true)
		b.logger.Info("leading partition", "partition", partitionDir(tp), "leader_epoch", part.LeaderEpoch, "isr", part.ISR)
		return nil
	}
	// A follower, or a replica of a partition without a leader.
	r.leader.Store(false)
	if old := r.lead.Swap(nil); old != nil {
		old.close()
	}
	r.p.SetOnLocalEnd(nil)
	r.p.SetExternalHighWatermark(true)
	if r.p.IsLeader() || r.p.LeaderEpoch() != part.LeaderEpoch {
		if err := r.p.BecomeFollower(part.LeaderEpoch); err != nil {
			return err
		}
	}
	if part.Leader < 0 {
		b.stopFollowing(tp)
		return nil
	}
	b.follow(tp, r.p, r.topicID, part.Leader, part.LeaderEpoch)
	return nil
}

// close ends the leadership: acks=all waiters and follower fetches give up.
func (lr *LeaderReplica) close() {
	lr.mu.Lock()
	lr.closed = true
	lr.mu.Unlock()
	lr.notifyData()
}

// update applies a metadata change to the partition while this broker
// stays its leader in the same epoch (an ISR change committed, replicas
// changed).
func (lr *LeaderReplica) update(t *metadata.Topic, part metadata.Partition) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.refreshEligibilityLocked(lr.b.meta.Image())
	if lr.st.PartitionEpoch() == part.PartitionEpoch && slices.Equal(lr.st.ISR(), sortedIDs(part.ISR)) {
		return
	}
	hw, err := lr.st.MakeLeader(replica.PartitionState{LeaderEpoch: part.LeaderEpoch, PartitionEpoch: part.PartitionEpoch,
		Replicas: part.Replicas, ISR: part.ISR}, lr.b.cfg.Now())
	if errors.Is(err, replica.ErrStaleMetadata) {
		// An older image than the leader has seen (its own AlterPartition
		// answer came first): nothing to apply.
		lr.b.logger.Debug("stale partition change ignored", "partition", partitionDir(lr.tp), "err", err)
		return
	}
	if err != nil {
		lr.b.logger.Error("applying a partition change", "partition", partitionDir(lr.tp), "err", err)
		return
	}
	lr.afterLocked(hw)
}

// RefreshEligibility tells the leadership which followers' brokers may be
// in the ISR now (registered, unfenced, not shutting down; KIP-841): a
// fenced broker's follower no longer holds the high watermark back while
// it waits to rejoin. The broker calls it when brokers' states change.
func (lr *LeaderReplica) RefreshEligibility(img *metadata.Image) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.closed {
		return
	}
	lr.refreshEligibilityLocked(img)
}

func (lr *LeaderReplica) refreshEligibilityLocked(img *metadata.Image) {
	now := lr.b.cfg.Now()
	moved := false
	for _, id := range lr.st.Replicas() {
		if id == lr.b.cfg.NodeID {
			continue
		}
		br, ok := img.Brokers[id]
		if lr.st.SetEligible(id, ok && !br.Fenced && !br.InControlledShutdown, now) {
			moved = true
		}
	}
	lr.afterLocked(moved)
}

func sortedIDs(ids []int32) []int32 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// localEndMoved is the partition's SetOnLocalEnd: the leader's own log end
// (under acks-all, its fsynced end) may have moved.
func (lr *LeaderReplica) localEndMoved() {
	lr.notifyData()
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.closed {
		return
	}
	leo := lr.p.LocalEnd()
	if leo < lr.st.LogEndOffset() {
		return // a late report of an older end
	}
	lr.afterLocked(lr.st.LeaderAppended(leo, lr.b.cfg.Now()))
}

// Appended wakes the follower fetches waiting for data: the leader's
// produce path calls it after an append (followers may read past the
// leader's fsynced end; what counts for the HW is what they report).
func (lr *LeaderReplica) Appended() { lr.notifyData() }

// afterLocked publishes a moved high watermark and sends a proposal the
// last event made. Called with mu held.
func (lr *LeaderReplica) afterLocked(hwChanged bool) {
	if hwChanged {
		lr.p.AdvanceHighWatermark(lr.st.HighWatermark())
	}
	if prop, ok := lr.st.TakeProposal(); ok {
		go lr.b.sendAlterPartition(lr, prop)
	}
}

// CheckProduce refuses an acks=all produce while the ISR is below
// min.insync.replicas (NOT_ENOUGH_REPLICAS).
func (lr *LeaderReplica) CheckProduce(acks int16) error {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.closed {
		return ErrNotLeader
	}
	return lr.st.CheckProduce(acks)
}

// WaitAcked waits until every in-sync replica has the records before
// required (the high watermark reached it) and answers as Kafka does:
// nil, NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below
// min.insync.replicas meanwhile, ErrNotLeader if the leadership moved, or
// ctx's error.
func (lr *LeaderReplica) WaitAcked(ctx context.Context, required int64) error {
	wake := make(chan struct{}, 1)
	defer lr.p.Unwatch(wake)
	lr.Watch(wake) // told when the leadership ends
	defer lr.Unwatch(wake)
	for {
		lr.p.Watch(wake)
		lr.mu.Lock()
		closed := lr.closed
		done, err := lr.st.Acked(required)
		lr.mu.Unlock()
		if closed {
			return ErrNotLeader
		}
		if done {
			return err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// FollowerFetch records a follower's fetch (its log end offset) before the
// leader reads for it. lastFetchedEpoch (-1: unknown) is checked against
// the leader's epochs first: a follower whose log diverged is told where
// (diverging is set, Kafka's DivergingEpoch) and its fetch does not count.
func (lr *LeaderReplica) FollowerFetch(id int32, brokerEpoch int64, fetchOffset int64, lastFetchedEpoch int32) (diverging *kmsg.FetchResponseTopicPartitionDivergingEpoch, err error) {
	if lastFetchedEpoch >= 0 {
		epoch, end := lr.p.EndOffsetForEpoch(lastFetchedEpoch)
		if epoch < lastFetchedEpoch || end < fetchOffset {
			d := kmsg.NewFetchResponseTopicPartitionDivergingEpoch()
			d.Epoch, d.EndOffset = epoch, end
			return &d, nil
		}
	}
	img := lr.b.meta.Image()
	br, ok := img.Brokers[id]
	if brokerEpoch >= 0 && ok && br.Epoch != brokerEpoch {
		return nil, fmt.Errorf("%w: broker %d fetched with epoch %d, registered %d", ErrStaleBrokerEpoch, id, brokerEpoch, br.Epoch)
	}
	now := lr.b.cfg.Now()
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.closed {
		return nil, ErrNotLeader
	}
	eligible := ok && !br.Fenced && !br.InControlledShutdown
	hw := lr.st.SetEligible(id, eligible, now)
	moved, err := lr.st.FollowerFetched(id, fetchOffset, now)
	if err != nil {
		return nil, err
	}
	lr.afterLocked(hw || moved)
	return nil, nil
}

// Watch registers ch to be told (without blocking) of the next append.
func (lr *LeaderReplica) Watch(ch chan<- struct{}) {
	lr.watchMu.Lock()
	lr.watchers[ch] = struct{}{}
	lr.watchMu.Unlock()
}

// Unwatch drops ch.
func (lr *LeaderReplica) Unwatch(ch chan<- struct{}) {
	lr.watchMu.Lock()
	delete(lr.watchers, ch)
	lr.watchMu.Unlock()
}

func (lr *LeaderReplica) notifyData() {
	lr.watchMu.Lock()
	defer lr.watchMu.Unlock()
	for ch := range lr.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// leaderships returns this broker's leaderships of replicated partitions.
func (b *Broker) leaderships() []*LeaderReplica {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var leads []*LeaderReplica
	for _, r := range b.parts {
		if lr := r.lead.Load(); lr != nil {
			leads = append(leads, lr)
		}
	}
	return leads
}

// refreshEligibility runs RefreshEligibility on every leadership.
func (b *Broker) refreshEligibility(img *metadata.Image) {
	leads := b.leaderships()
	for _, lr := range leads {
		lr.RefreshEligibility(img)
	}
}

// tick runs the ISR shrink check.
func (lr *LeaderReplica) tick(now time.Time) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.closed {
		return
	}
	lr.afterLocked(lr.st.Tick(now))
}

// Status reports the leader's view for metrics: whether the partition is
// under-replicated and under min.insync.replicas, and each follower.
func (lr *LeaderReplica) Status() (underReplicated, underMinISR bool, followers []replica.FollowerStatus) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.st.UnderReplicated(), lr.st.UnderMinISR(), lr.st.Followers()
}

// ISR is the committed in-sync replica set as the leader knows it.
func (lr *LeaderReplica) ISR() []int32 {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.st.ISR()
}

// sendAlterPartition sends an ISR proposal to the active controller and
// settles it with the answer.
func (b *Broker) sendAlterPartition(lr *LeaderReplica, prop replica.AlterPartition) {
	img := b.meta.Image()
	req := kmsg.NewPtrAlterPartitionRequest()
	req.BrokerID, req.BrokerEpoch = b.cfg.NodeID, b.brokerEpoch.Load()
	rt := kmsg.NewAlterPartitionRequestTopic()
	rt.Topic, rt.TopicID = lr.tp.Topic, lr.topicID
	rp := kmsg.NewAlterPartitionRequestTopicPartition()
	rp.Partition, rp.LeaderEpoch, rp.PartitionEpoch, rp.NewISR = lr.tp.Partition, prop.LeaderEpoch, prop.PartitionEpoch, prop.ISR
	for _, id := range prop.ISR {
		e := kmsg.NewAlterPartitionRequestTopicPartitionNewEpochISR()
		e.BrokerID, e.BrokerEpoch = id, -1
		if br, ok := img.Brokers[id]; ok {
			e.BrokerEpoch = br.Epoch
		}
		rp.NewEpochISR = append(rp.NewEpochISR, e)
	}
	rt.Partitions = []kmsg.AlterPartitionRequestTopicPartition{rp}
	req.Topics = []kmsg.AlterPartitionRequestTopic{rt}
	ctx, cancel := context.WithTimeout(b.ctx, controllerRequestTimeout)
	defer cancel()
	resp, err := b.link.send(ctx, req, func(r kmsg.Response) int16 { return r.(*kmsg.AlterPartitionResponse).ErrorCode })
	var code int16
	var answer *kmsg.AlterPartitionResponseTopicPartition
	if err == nil {
		ar := resp.(*kmsg.AlterPartitionResponse)
		code = ar.ErrorCode
		if code == 0 && len(ar.Topics) == 1 && len(ar.Topics[0].Partitions) == 1 {
			answer = &ar.Topics[0].Partitions[0]
			code = answer.ErrorCode
		} else if code == 0 {
			code = kerr.UnknownServerError.Code
		}
	}
	now := b.cfg.Now()
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.closed {
		return
	}
	switch {
	case err == nil && code == 0:
		if prop.Expand {
			b.isrExpands.Add(1)
		} else {
			b.isrShrinks.Add(1)
		}
		hw, cerr := lr.st.Committed(prop, replica.LeaderAndISR{LeaderEpoch: answer.LeaderEpoch, PartitionEpoch: answer.PartitionEpoch, ISR: answer.ISR}, now)
		if cerr != nil && !errors.Is(cerr, replica.ErrStaleAlterPartition) {
			b.logger.Warn("AlterPartition answer not applied", "partition", partitionDir(lr.tp), "err", cerr)
		}
		lr.afterLocked(hw)
	case code == kerr.OperationNotAttempted.Code || code == kerr.IneligibleReplica.Code:
		hw, _ := lr.st.Failed(prop, now)
		lr.afterLocked(hw)
	case code == kerr.FencedLeaderEpoch.Code || code == kerr.InvalidUpdateVersion.Code ||
		code == kerr.UnknownTopicOrPartition.Code || code == kerr.UnknownTopicID.Code ||
		code == kerr.InvalidRequest.Code || code == kerr.NewLeaderElected.Code:
		// The metadata will say what happened (MakeLeader on update).
	default:
		// Not settled (network, timeout, a stale broker epoch being
		// re-registered): give it up and propose again later.
		b.logger.Debug("AlterPartition not answered; proposing again later", "partition", partitionDir(lr.tp), "err", err, "code", code)
		hw, _ := lr.st.Failed(prop, now)
		lr.afterLocked(hw)
	}
}

// isrLoop runs every leadership's ISR shrink check every
// replica.lag.time.max.ms/2 (Kafka's isr-expiration task).
func (b *Broker) isrLoop(ctx context.Context) {
	every := max(time.Duration(b.brokerInt("replica.lag.time.max.ms"))*time.Millisecond/2, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := b.cfg.Now()
		for _, lr := range b.leaderships() {
			lr.tick(now)
		}
	}
}

// ReplicationStats is what metrics report of replication on this broker.
type ReplicationStats struct {
	Clustered bool
	Fenced    bool // the controller has this broker fenced
	// Of the replicated partitions this broker leads: how many have fewer
	// in-sync replicas than replicas, and fewer than min.insync.replicas.
	UnderReplicated, UnderMinISR int
	// Offline is the partitions of the cluster without a leader (from the
	// metadata image; every broker reports the same).
	Offline int
	// The furthest any follower of a partition this broker leads is
	// behind: in records (leader log end minus its log end) and in time
	// since it was last caught up.
	MaxLagRecords int64
	MaxLagTime    time.Duration
	// ISR changes this broker's leaderships made (committed AlterPartitions).
	ISRShrinks, ISRExpands uint64
	Metadata               metadata.Status
	// Leaders is how many partitions this broker leads.
	Leaders int
	// Reassigning is the partitions of the cluster being reassigned (from
	// the metadata image); Adding the replicas this broker is adding for
	// them, and AddingLagRecords how far those are behind their leader's
	// high watermark, in records.
	Reassigning, Adding int
	AddingLagRecords    int64
	// Throttled replication bytes since the start: sent to followers of
	// leader-throttled partitions, and fetched for follower-throttled ones.
	ThrottledLeaderBytes, ThrottledFollowerBytes int64
}

// ReplicationStats collects ReplicationStats now.
func (b *Broker) ReplicationStats() ReplicationStats {
	st := ReplicationStats{Clustered: b.clustered(), Fenced: b.clustered() && b.fenced.Load(),
		ISRShrinks: b.isrShrinks.Load(), ISRExpands: b.isrExpands.Load(), Metadata: b.meta.Status()}
	now := b.cfg.Now()
	leads := b.leaderships()
	for _, lr := range leads {
		under, underMin, followers := lr.Status()
		if under {
			st.UnderReplicated++
		}
		if underMin {
			st.UnderMinISR++
		}
		for _, f := range followers {
			st.MaxLagRecords = max(st.MaxLagRecords, f.Lag)
			if !f.LastCaughtUpTime.IsZero() {
				st.MaxLagTime = max(st.MaxLagTime, now.Sub(f.LastCaughtUpTime))
			}
		}
	}
	self := b.cfg.NodeID
	var adding []TopicPartition
	for _, t := range b.meta.Image().Topics {
		for _, p := range t.Partitions {
			if p.Leader < 0 {
				st.Offline++
			}
			if p.Reassigning() {
				st.Reassigning++
				if slices.Contains(p.AddingReplicas, self) {
					adding = append(adding, TopicPartition{t.Name, p.ID})
				}
			}
		}
	}
	b.mu.RLock()
	for _, h := range b.parts {
		if h.leader.Load() {
			st.Leaders++
		}
	}
	for _, tp := range adding {
		if h, ok := b.parts[tp]; ok {
			st.Adding++
			st.AddingLagRecords += max(h.p.HighWatermark()-h.p.LocalEnd(), 0)
		}
	}
	b.mu.RUnlock()
	st.ThrottledLeaderBytes, st.ThrottledFollowerBytes = b.leaderQuota.total.Load(), b.followerQuota.total.Load()
	return st
}
