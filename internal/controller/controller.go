package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/sluice-io/sluice/internal/metadata"
)

// Errors the api layer turns into Kafka codes.
var (
	// ErrStaleBrokerEpoch: a request from an older incarnation of a broker
	// (STALE_BROKER_EPOCH).
	ErrStaleBrokerEpoch = errors.New("controller: stale broker epoch")
	// ErrInconsistentClusterID: a broker of another cluster asked to
	// register (INCONSISTENT_CLUSTER_ID).
	ErrInconsistentClusterID = errors.New("controller: broker belongs to another cluster")
	// ErrNotLeader: AlterPartition from a broker that does not lead the
	// partition (NOT_LEADER_OR_FOLLOWER).
	ErrNotLeader = errors.New("controller: not the partition's leader")
	// ErrIneligibleReplica: AlterPartition would add a fenced or
	// shutting-down broker to the ISR (INELIGIBLE_REPLICA, KIP-841).
	ErrIneligibleReplica = errors.New("controller: replica not eligible for the ISR")
	// ErrInvalidISR: the proposed ISR lacks the leader or names a broker
	// outside the assignment (INVALID_REQUEST).
	ErrInvalidISR = errors.New("controller: invalid ISR")
)

// Timing.
const (
	// livenessCheckDivisor: brokers' sessions are checked this many times
	// per broker.session.timeout.ms, so a dead broker is fenced at most a
	// quarter session late.
	livenessCheckDivisor = 4
	// maxChangesPerRecord bounds the partition changes written in one
	// metadata record (a fenced broker may lead thousands of partitions;
	// each record stays far below the record size limit).
	maxChangesPerRecord = 2000
	// writeTimeout bounds one metadata write of the controller's own.
	writeTimeout = 10 * time.Second
)

// Config configures a Controller.
type Config struct {
	Meta *metadata.Store
	// SessionTimeout is broker.session.timeout.ms: a broker that has not
	// heartbeated for this long is fenced and its leaderships move.
	SessionTimeout time.Duration
	// HeartbeatInterval is broker.heartbeat.interval.ms, how often live
	// brokers heartbeat: a broker whose connection closed is fenced after
	// a few of them without one (0: half a session).
	HeartbeatInterval time.Duration
	// Unclean says whether unclean.leader.election.enable holds for a
	// topic (its own config, else the broker default). nil: never.
	Unclean func(t *metadata.Topic) bool
	Logger  *slog.Logger
	Now     func() time.Time
	// Rebalance, if set, is how often leadership goes back to preferred
	// replicas (auto.leader.rebalance.enable with
	// leader.imbalance.check.interval.seconds), for brokers whose share of
	// partitions led by another than their preferred replica is above
	// ImbalancePercent (leader.imbalance.per.broker.percentage).
	Rebalance        time.Duration
	ImbalancePercent int
}

// Controller is the cluster's decision maker. Every controller node has
// one; it acts only while its node is the active controller (the metadata
// quorum's leader). Safe for concurrent use.
type Controller struct {
	cfg  Config
	meta *metadata.Store
	log  *slog.Logger

	mu sync.Mutex
	// lastSeen is when each broker last heartbeated to this controller.
	// It lives in memory, as in Kafka: a new active controller gives
	// every broker a whole session from its start.
	lastSeen map[int32]time.Time
	// reported is the last metadata offset each broker's heartbeat
	// reported (DescribeQuorum shows a voter's lag with it).
	reported map[int32]uint64
	// lost is when a broker's connection to this controller closed, or,
	// for the previous active controller, when this one took over: a
	// process that died closes its connections at once (the kernel does),
	// while a live broker redials and heartbeats within an interval. A
	// broker silent for lostGrace after that is fenced without waiting
	// for its whole session (see fenceExpired). Cleared by a heartbeat.
	lost map[int32]time.Time
	// prevController is the active controller as this node last saw it
	// while it was not active itself (-1: none).
	prevController int32
	wasActive      bool
	lastCheck      time.Time // the last liveness check (fenceExpired)
}

// A broker whose connection closed (or that was the previous active
// controller) is fenced once it has been silent for lostGraceHeartbeats
// heartbeat intervals (broker.heartbeat.interval.ms), at most half a
// session, unless it heartbeats again: time to redial and heartbeat.
const lostGraceHeartbeats = 4

// lostGrace is how long a broker whose connection closed may stay silent.
func (c *Controller) lostGrace() time.Duration {
	g := c.cfg.SessionTimeout / 2
	if c.cfg.HeartbeatInterval > 0 {
		g = min(g, lostGraceHeartbeats*c.cfg.HeartbeatInterval)
	}
	return g
}

// ConnectionClosed tells the controller that broker id's connection to it
// closed (the controller listener's handler sees it).
func (c *Controller) ConnectionClosed(id int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wasActive {
		c.lost[id] = c.cfg.Now()
	}
}

// New returns a controller over cfg.Meta; Run drives its timers.
func New(cfg Config) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Unclean == nil {
		cfg.Unclean = func(*metadata.Topic) bool { return false }
	}
	return &Controller{cfg: cfg, meta: cfg.Meta, log: cfg.Logger, lastSeen: map[int32]time.Time{}, reported: map[int32]uint64{},
		lost: map[int32]time.Time{}, prevController: -1}
}

// SetRebalance sets Config.Rebalance; call before Run.
func (c *Controller) SetRebalance(every time.Duration) { c.cfg.Rebalance = every }

// Run checks brokers' sessions and elects leaders for leaderless
// partitions until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	every := max(min(c.cfg.SessionTimeout/livenessCheckDivisor, c.lostGrace()/2), 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var rebalance <-chan time.Time
	if c.cfg.Rebalance > 0 {
		rt := time.NewTicker(c.cfg.Rebalance)
		defer rt.Stop()
		rebalance = rt.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-rebalance:
			if c.active() {
				if err := c.rebalance(ctx); err != nil && !errors.Is(err, metadata.ErrNotController) {
					c.log.Warn("preferred leader election", "err", err)
				}
			}
			continue
		case <-t.C:
		}
		if !c.active() {
			continue
		}
		if err := c.fenceExpired(ctx); err != nil && !errors.Is(err, metadata.ErrNotController) {
			c.log.Warn("fencing brokers that stopped heartbeating", "err", err)
		}
		if err := c.electLeaderless(ctx); err != nil && !errors.Is(err, metadata.ErrNotController) {
			c.log.Warn("electing leaders", "err", err)
		}
		if err := c.completeReassignments(ctx); err != nil && !errors.Is(err, metadata.ErrNotController) {
			c.log.Warn("completing partition reassignments", "err", err)
		}
	}
}

// active reports whether this node is the active controller, resetting
// the brokers' sessions when it just became so.
func (c *Controller) active() bool {
	now := c.meta.IsController()
	img := c.meta.Image()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now && !c.wasActive {
		start := c.cfg.Now()
		clear(c.lastSeen)
		clear(c.lost)
		for id := range img.Brokers {
			c.lastSeen[id] = start
		}
		// The previous controller most likely died (or was cut off):
		// that is why this node was elected. Alive, it heartbeats here
		// as soon as it learns of the new leader.
		if prev := c.prevController; prev >= 0 && prev != img.ControllerID {
			c.lost[prev] = start
		}
	}
	if !now {
		c.prevController = img.ControllerID
	}
	c.wasActive = now
	return now
}

// usable reports whether broker id may lead or join an ISR in img.
func usable(img *metadata.Image, id int32) bool {
	b, ok := img.Brokers[id]
	return ok && !b.Fenced && !b.InControlledShutdown
}

// Registration is a BrokerRegistration request.
type Registration struct {
	NodeID        int32
	ClusterID     string
	IncarnationID string
	Host          string
	Port          int32
	Rack          string
}

// Register records a broker (fenced until its first heartbeat that finds
// it caught up) and returns its broker epoch. A retry of the same
// incarnation gets the same epoch.
func (c *Controller) Register(ctx context.Context, r Registration) (int64, error) {
	if !c.active() {
		return 0, metadata.ErrNotController
	}
	img := c.meta.Image()
	if r.ClusterID != "" && img.ClusterID != "" && r.ClusterID != img.ClusterID {
		return 0, fmt.Errorf("%w: broker %d has cluster id %s, this cluster is %s", ErrInconsistentClusterID, r.NodeID, r.ClusterID, img.ClusterID)
	}
	if b, ok := img.Brokers[r.NodeID]; ok && b.IncarnationID == r.IncarnationID && r.IncarnationID != "" &&
		b.Host == r.Host && b.Port == r.Port && b.Rack == r.Rack {
		c.seen(r.NodeID)
		return b.Epoch, c.meta.AddObserver(ctx, r.NodeID)
	}
	epoch, err := c.meta.RegisterBrokerEpoch(ctx, metadata.Broker{NodeID: r.NodeID, Host: r.Host, Port: r.Port, Rack: r.Rack,
		IncarnationID: r.IncarnationID, Fenced: true})
	if err != nil {
		return 0, err
	}
	// A broker-only node follows the metadata log as a non-voting raft
	// member, sent the log at the address it just registered (nothing to
	// do for a voter).
	if err := c.meta.AddObserver(ctx, r.NodeID); err != nil {
		return 0, err
	}
	c.seen(r.NodeID)
	c.log.Info("broker registered", "broker", r.NodeID, "epoch", epoch, "address", fmt.Sprintf("%s:%d", r.Host, r.Port), "rack", r.Rack)
	return epoch, nil
}

func (c *Controller) seen(id int32) {
	c.mu.Lock()
	c.lastSeen[id] = c.cfg.Now()
	c.mu.Unlock()
}

// Heartbeat is a BrokerHeartbeat request.
type Heartbeat struct {
	NodeID        int32
	Epoch         int64
	MetadataIndex uint64 // the last metadata record the broker applied
	WantFence     bool
	WantShutDown  bool
}

// HeartbeatResult is the BrokerHeartbeat response.
type HeartbeatResult struct {
	CaughtUp       bool
	Fenced         bool
	ShouldShutDown bool
}

// Heartbeat keeps a broker's session, unfences it once it has caught up
// with the metadata it registered in, and runs its controlled shutdown.
func (c *Controller) Heartbeat(ctx context.Context, hb Heartbeat) (HeartbeatResult, error) {
	if !c.active() {
		return HeartbeatResult{}, metadata.ErrNotController
	}
	img := c.meta.Image()
	b, ok := img.Brokers[hb.NodeID]
	if !ok || b.Epoch != hb.Epoch {
		return HeartbeatResult{}, fmt.Errorf("%w: broker %d epoch %d, registered epoch %d", ErrStaleBrokerEpoch, hb.NodeID, hb.Epoch, b.Epoch)
	}
	c.seen(hb.NodeID)
	c.mu.Lock()
	c.reported[hb.NodeID] = hb.MetadataIndex
	c.mu.Unlock()
	// Caught up: it has applied its own registration, so it knows its
	// epoch's partitions as the controller does (Kafka compares with the
	// registration record's offset too).
	caughtUp := hb.MetadataIndex >= uint64(b.Epoch)
	res := HeartbeatResult{CaughtUp: caughtUp, Fenced: b.Fenced}
	switch {
	case hb.WantShutDown:
		if !b.InControlledShutdown {
			if err := c.meta.BeginControlledShutdown(ctx, hb.NodeID, hb.Epoch); err != nil {
				return res, err
			}
			c.log.Info("broker shutting down: moving its leaderships", "broker", hb.NodeID)
		}
		left, err := c.moveAway(ctx, hb.NodeID)
		if err != nil {
			return res, err
		}
		res.ShouldShutDown = left == 0
	case hb.WantFence:
		if !b.Fenced {
			if err := c.fence(ctx, hb.NodeID, hb.Epoch); err != nil {
				return res, err
			}
		}
		res.Fenced = true
	case b.Fenced && !caughtUp:
		// A broker-only node registered while another controller was
		// active may not have been added to the raft configuration.
		if err := c.meta.AddObserver(ctx, hb.NodeID); err != nil {
			return res, err
		}
	case b.Fenced && caughtUp:
		if err := c.meta.UnfenceBroker(ctx, hb.NodeID, hb.Epoch); err != nil {
			return res, err
		}
		c.log.Info("broker unfenced", "broker", hb.NodeID, "epoch", hb.Epoch)
		res.Fenced = false
		if err := c.electLeaderless(ctx); err != nil {
			c.log.Warn("electing leaders after unfencing", "broker", hb.NodeID, "err", err)
		}
	}
	return res, nil
}

// fenceExpired fences every unfenced broker whose session ran out.
func (c *Controller) fenceExpired(ctx context.Context) error {
	img := c.meta.Image()
	now := c.cfg.Now()
	var expired []metadata.Broker
	c.mu.Lock()
	if !c.lastCheck.IsZero() && now.Sub(c.lastCheck) > c.cfg.SessionTimeout/2 {
		// This process did not run for a while (paused, or starved): the
		// brokers' silence may be our own. Give them a new session.
		for id := range c.lastSeen {
			c.lastSeen[id] = now
		}
	}
	c.lastCheck = now
	grace := c.lostGrace()
	for id, b := range img.Brokers {
		if b.Fenced {
			delete(c.lost, id)
			continue
		}
		last, ok := c.lastSeen[id]
		if !ok {
			c.lastSeen[id] = now
			continue
		}
		lostAt, lost := c.lost[id]
		if lost && last.After(lostAt) {
			delete(c.lost, id) // it heartbeated since
			lost = false
		}
		if now.Sub(last) > c.cfg.SessionTimeout || lost && now.Sub(lostAt) > grace {
			expired = append(expired, b)
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, b := range expired {
		c.log.Warn("broker missed its heartbeats (or its connection closed and it did not come back): fencing it and moving its leaderships", "broker", b.NodeID,
			"session_timeout", c.cfg.SessionTimeout)
		if err := c.fence(ctx, b.NodeID, b.Epoch); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// fence fences a broker and moves its leaderships and ISR places away.
func (c *Controller) fence(ctx context.Context, id int32, epoch int64) error {
	if err := c.meta.FenceBroker(ctx, id, epoch); err != nil {
		return err
	}
	_, err := c.moveAway(ctx, id)
	return err
}

// moveAway elects new leaders for the partitions broker id leads and takes
// it out of every ISR it is in (unless it is the last member: Kafka keeps
// the last one, leaderless, so that it can lead again when it returns with
// the data nobody else has). It returns how many partitions it still
// leads.
func (c *Controller) moveAway(ctx context.Context, id int32) (int, error) {
	img := c.meta.Image()
	ok := func(r int32) bool { return r != id && usable(img, r) }
	var changes []metadata.PartitionChange
	for _, name := range sortedTopics(img) {
		t := img.Topics[name]
		for _, p := range t.Partitions {
			inISR := slices.Contains(p.ISR, id)
			if p.Leader != id && !inISR {
				continue
			}
			isr := slices.DeleteFunc(slices.Clone(p.ISR), func(r int32) bool { return r == id })
			ch := metadata.PartitionChange{Topic: t.Name, TopicID: t.ID, Partition: p.ID}
			if p.Leader == id {
				leader, unclean := ElectLeader(p.Replicas, isr, ok, c.cfg.Unclean(t))
				switch {
				case leader == -1:
					// No one else can lead: keep the ISR, leaderless.
					isr = slices.Clone(p.ISR)
				case unclean:
					isr = []int32{leader}
					c.log.Warn("unclean leader election: records only the old ISR had are lost", "topic", t.Name, "partition", p.ID, "leader", leader)
				}
				ch.Leader = &leader
			} else if len(isr) == 0 {
				continue
			}
			ch.ISR = isr
			changes = append(changes, ch)
		}
	}
	if err := c.write(ctx, changes); err != nil {
		return -1, err
	}
	left := 0
	for _, t := range c.meta.Image().Topics {
		for _, p := range t.Partitions {
			if p.Leader == id && len(p.Replicas) > 1 {
				left++
			}
		}
	}
	return left, nil
}

// electLeaderless gives every partition without a leader one, if an ISR
// member (or, with unclean election enabled, any replica) is usable.
func (c *Controller) electLeaderless(ctx context.Context) error {
	img := c.meta.Image()
	var changes []metadata.PartitionChange
	for _, name := range sortedTopics(img) {
		t := img.Topics[name]
		for _, p := range t.Partitions {
			if p.Leader != -1 && usable(img, p.Leader) {
				continue
			}
			leader, unclean := ElectLeader(p.Replicas, p.ISR, func(r int32) bool { return usable(img, r) }, c.cfg.Unclean(t))
			if leader == -1 || leader == p.Leader {
				continue
			}
			ch := metadata.PartitionChange{Topic: t.Name, TopicID: t.ID, Partition: p.ID, Leader: &leader}
			if unclean {
				ch.ISR = []int32{leader}
				c.log.Warn("unclean leader election: records only the old ISR had are lost", "topic", t.Name, "partition", p.ID, "leader", leader)
			}
			changes = append(changes, ch)
		}
	}
	return c.write(ctx, changes)
}

// write writes changes in records of at most maxChangesPerRecord.
func (c *Controller) write(ctx context.Context, changes []metadata.PartitionChange) error {
	for len(changes) > 0 {
		n := min(len(changes), maxChangesPerRecord)
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		err := c.meta.ChangePartitions(wctx, changes[:n])
		cancel()
		if err != nil {
			return err
		}
		changes = changes[n:]
	}
	return nil
}

// ISRChange is one partition of an AlterPartition request.
type ISRChange struct {
	TopicID        metadata.TopicID
	Topic          string // when the request names topics (v0-1)
	Partition      int32
	LeaderEpoch    int32
	PartitionEpoch int32
	ISR            []int32
}

// ISRResult is one partition of the AlterPartition response.
type ISRResult struct {
	Err            error
	Leader         int32
	LeaderEpoch    int32
	PartitionEpoch int32
	ISR            []int32
}

// AlterPartition applies a leader's ISR changes (Kafka's AlterPartition,
// KIP-497): each is refused if the sender is not the current leader at
// the epochs it names, or adds a broker that is fenced or shutting down.
func (c *Controller) AlterPartition(ctx context.Context, brokerID int32, brokerEpoch int64, reqs []ISRChange) ([]ISRResult, error) {
	if !c.active() {
		return nil, metadata.ErrNotController
	}
	img := c.meta.Image()
	if b, ok := img.Brokers[brokerID]; !ok || (brokerEpoch != -1 && b.Epoch != brokerEpoch) {
		return nil, fmt.Errorf("%w: broker %d epoch %d", ErrStaleBrokerEpoch, brokerID, brokerEpoch)
	}
	out := make([]ISRResult, len(reqs))
	var changes []metadata.PartitionChange
	var at []int
	for i, r := range reqs {
		t := img.TopicsByID[r.TopicID]
		if t == nil {
			t = img.Topics[r.Topic]
		}
		if t == nil || r.Partition < 0 || int(r.Partition) >= len(t.Partitions) {
			out[i].Err = metadata.ErrUnknownTopic
			continue
		}
		p := t.Partitions[r.Partition]
		res := ISRResult{Leader: p.Leader, LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, ISR: p.ISR}
		switch {
		case p.Leader != brokerID:
			res.Err = ErrNotLeader
		case r.LeaderEpoch != p.LeaderEpoch:
			res.Err = metadata.ErrStaleLeaderEpoch
		case r.PartitionEpoch != p.PartitionEpoch:
			res.Err = metadata.ErrStalePartitionEpoch
		case !slices.Contains(r.ISR, brokerID):
			res.Err = fmt.Errorf("%w: %v lacks the leader %d", ErrInvalidISR, r.ISR, brokerID)
		}
		if res.Err == nil {
			for _, m := range r.ISR {
				if !slices.Contains(p.Replicas, m) {
					res.Err = fmt.Errorf("%w: %d is not a replica of %s-%d", ErrInvalidISR, m, t.Name, p.ID)
					break
				}
				if !slices.Contains(p.ISR, m) && !usable(img, m) {
					res.Err = fmt.Errorf("%w: broker %d is fenced or shutting down", ErrIneligibleReplica, m)
					break
				}
			}
		}
		out[i] = res
		if res.Err != nil {
			continue
		}
		le, pe := p.LeaderEpoch, p.PartitionEpoch
		changes = append(changes, metadata.PartitionChange{Topic: t.Name, TopicID: t.ID, Partition: p.ID,
			ISR: slices.Clone(r.ISR), ExpectLeaderEpoch: &le, ExpectPartitionEpoch: &pe})
		at = append(at, i)
	}
	if len(changes) > 0 {
		if err := c.write(ctx, changes); err != nil {
			return nil, err
		}
	}
	now := c.meta.Image()
	for k, ch := range changes {
		i := at[k]
		t := now.Topics[ch.Topic]
		if t == nil || int(ch.Partition) >= len(t.Partitions) {
			out[i].Err = metadata.ErrUnknownTopic
			continue
		}
		p := t.Partitions[ch.Partition]
		out[i] = ISRResult{Leader: p.Leader, LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, ISR: p.ISR}
		c.log.Info("ISR changed", "topic", ch.Topic, "partition", ch.Partition, "isr", p.ISR, "partition_epoch", p.PartitionEpoch)
	}
	if len(changes) > 0 {
		// A replica being added may just have joined the ISR. The
		// answer above is what the leader asked for; the completion is
		// a change of its own that the leader learns from the metadata.
		if err := c.completeReassignments(ctx); err != nil && !errors.Is(err, metadata.ErrNotController) {
			c.log.Warn("completing partition reassignments", "err", err)
		}
	}
	return out, nil
}

// AllocateProducerIDs reserves n producer ids for a registered broker
// (AllocateProducerIds): blocks never overlap and never repeat.
func (c *Controller) AllocateProducerIDs(ctx context.Context, brokerID int32, brokerEpoch int64, n int64) (int64, error) {
	if !c.active() {
		return 0, metadata.ErrNotController
	}
	if b, ok := c.meta.Image().Brokers[brokerID]; !ok || b.Epoch != brokerEpoch {
		return 0, fmt.Errorf("%w: broker %d epoch %d", ErrStaleBrokerEpoch, brokerID, brokerEpoch)
	}
	return c.meta.AllocateProducerIDs(ctx, n)
}

// Election types of ElectLeaders.
const (
	ElectPreferred int8 = 0
	ElectUnclean   int8 = 1
)

// Errors of ElectLeaders, per partition, as Kafka answers them.
var (
	// ErrElectionNotNeeded: the partition already has the leader asked for
	// (ELECTION_NOT_NEEDED).
	ErrElectionNotNeeded = errors.New("controller: election not needed")
	// ErrPreferredLeaderNotAvailable: the preferred replica cannot lead
	// now: out of the ISR, fenced or shutting down
	// (PREFERRED_LEADER_NOT_AVAILABLE).
	ErrPreferredLeaderNotAvailable = errors.New("controller: preferred leader not available")
	// ErrEligibleLeadersNotAvailable: no replica can lead
	// (ELIGIBLE_LEADERS_NOT_AVAILABLE).
	ErrEligibleLeadersNotAvailable = errors.New("controller: no eligible leader")
)

// PartitionRef names a partition for ElectLeaders.
type PartitionRef struct {
	Topic     string
	Partition int32
}

// ElectLeaders runs an election (ElectLeaders API): preferred makes the
// first replica the leader where it is in the ISR and usable; unclean gives
// a leaderless partition any usable replica, in or out of the ISR. parts
// nil means every partition. It returns the outcome of each partition
// asked for (nil: elected).
func (c *Controller) ElectLeaders(ctx context.Context, typ int8, parts []PartitionRef) (map[PartitionRef]error, error) {
	if !c.active() {
		return nil, metadata.ErrNotController
	}
	img := c.meta.Image()
	if parts == nil {
		for _, name := range sortedTopics(img) {
			for _, p := range img.Topics[name].Partitions {
				parts = append(parts, PartitionRef{name, p.ID})
			}
		}
	}
	out := make(map[PartitionRef]error, len(parts))
	var changes []metadata.PartitionChange
	var changed []PartitionRef
	for _, ref := range parts {
		t := img.Topics[ref.Topic]
		if t == nil || ref.Partition < 0 || int(ref.Partition) >= len(t.Partitions) {
			out[ref] = metadata.ErrUnknownTopic
			continue
		}
		p := t.Partitions[ref.Partition]
		leader := int32(-1)
		switch typ {
		case ElectPreferred:
			pref := p.Replicas[0]
			switch {
			case p.Leader == pref:
				out[ref] = ErrElectionNotNeeded
				continue
			case !slices.Contains(p.ISR, pref) || !usable(img, pref):
				out[ref] = ErrPreferredLeaderNotAvailable
				continue
			}
			leader = pref
		case ElectUnclean:
			if p.Leader >= 0 && usable(img, p.Leader) {
				out[ref] = ErrElectionNotNeeded
				continue
			}
			l, _ := ElectLeader(p.Replicas, p.ISR, func(r int32) bool { return usable(img, r) }, true)
			if l < 0 {
				out[ref] = ErrEligibleLeadersNotAvailable
				continue
			}
			leader = l
		default:
			return nil, fmt.Errorf("%w: election type %d", ErrInvalidISR, typ)
		}
		ch := metadata.PartitionChange{Topic: t.Name, TopicID: t.ID, Partition: p.ID, Leader: &leader}
		if !slices.Contains(p.ISR, leader) {
			ch.ISR = []int32{leader}
		}
		changes = append(changes, ch)
		changed = append(changed, ref)
	}
	if err := c.write(ctx, changes); err != nil {
		return nil, err
	}
	for _, ref := range changed {
		out[ref] = nil
	}
	if len(changed) > 0 {
		c.log.Info("leaders elected", "type", typ, "partitions", len(changed))
	}
	return out, nil
}

// rebalance moves leadership back to preferred replicas for the brokers
// whose imbalance is above ImbalancePercent (Kafka's
// checkAndTriggerAutoLeaderRebalance).
func (c *Controller) rebalance(ctx context.Context) error {
	img := c.meta.Image()
	preferred := map[int32]int{}
	notLeading := map[int32][]PartitionRef{}
	for name, t := range img.Topics {
		for _, p := range t.Partitions {
			pref := p.Replicas[0]
			preferred[pref]++
			if p.Leader != pref && slices.Contains(p.ISR, pref) && usable(img, pref) {
				notLeading[pref] = append(notLeading[pref], PartitionRef{name, p.ID})
			}
		}
	}
	var parts []PartitionRef
	for b, refs := range notLeading {
		if len(refs)*100 > c.cfg.ImbalancePercent*preferred[b] {
			parts = append(parts, refs...)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	_, err := c.ElectLeaders(ctx, ElectPreferred, parts)
	return err
}

// VoterState is one voter of the metadata quorum as the active controller
// sees it: the last metadata offset its broker reported and when.
type VoterState struct {
	ID            int32
	AppliedIndex  int64 // -1: not reported (yet)
	LastHeartbeat time.Time
}

// Voters reports the quorum's voters with what their brokers last told
// this controller (DescribeQuorum). The leader's own entry is its applied
// index now.
func (c *Controller) Voters() []VoterState {
	st := c.meta.Status()
	ids := make([]int32, len(st.Voters))
	for i, v := range st.Voters {
		ids[i] = v.ID
	}
	return c.members(st, ids)
}

// Observers is like Voters for the quorum's non-voting members, the
// broker-only nodes (process.roles=broker).
func (c *Controller) Observers() []VoterState {
	st := c.meta.Status()
	return c.members(st, st.Observers)
}

func (c *Controller) members(st metadata.Status, ids []int32) []VoterState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]VoterState, 0, len(ids))
	for _, id := range ids {
		vs := VoterState{ID: id, AppliedIndex: -1, LastHeartbeat: c.lastSeen[id]}
		if idx, ok := c.reported[id]; ok {
			vs.AppliedIndex = int64(idx)
		}
		if id == st.NodeID {
			vs.AppliedIndex, vs.LastHeartbeat = int64(st.AppliedIndex), c.cfg.Now()
		}
		out = append(out, vs)
	}
	return out
}

// UsableBrokers lists the brokers that may take new replicas, for
// placement: registered, unfenced, not shutting down and not cordoned.
func UsableBrokers(img *metadata.Image) []BrokerSlot {
	var out []BrokerSlot
	for id, b := range img.Brokers {
		if usable(img, id) && !Cordoned(img, id) {
			out = append(out, BrokerSlot{ID: id, Rack: b.Rack})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// PlaceNew assigns count new partitions of a topic (numbered from first)
// with rf replicas over the usable brokers of img, from a random start as
// Kafka does, so that topics created one after another do not all lead on
// the same broker.
func PlaceNew(img *metadata.Image, first, count int32, rf int) ([][]int32, error) {
	brokers := UsableBrokers(img)
	if len(brokers) == 0 && len(CordonedBrokers(img)) == 0 {
		return nil, fmt.Errorf("%w: no broker is registered and unfenced yet", ErrInvalidReplicationFactor)
	}
	if rf > len(brokers) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidReplicationFactor, TooFewBrokers(img, rf, len(brokers)))
	}
	return Place(brokers, first, count, rf, rand.IntN(len(brokers)), rand.IntN(len(brokers)))
}

func sortedTopics(img *metadata.Image) []string {
	names := make([]string, 0, len(img.Topics))
	for n := range img.Topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
