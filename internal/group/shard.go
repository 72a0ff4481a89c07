package group

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Kafka's defaults for what Settings leaves zero.
const (
	defaultMinSessionTimeout     = 6 * time.Second
	defaultMaxSessionTimeout     = 30 * time.Minute
	defaultOffsetsRetention      = 7 * 24 * time.Hour
	defaultMaxMetadataBytes      = 4096
	defaultNewMemberJoinTimeout  = 5 * time.Minute
	defaultInitialRebalanceDelay = 3 * time.Second
)

// Settings are the group coordinator's broker configs.
type Settings struct {
	// MinSessionTimeout and MaxSessionTimeout bound a member's session
	// timeout (group.min.session.timeout.ms, group.max.session.timeout.ms).
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// InitialRebalanceDelay (group.initial.rebalance.delay.ms) is how long
	// a new or empty group waits for more members before its first
	// rebalance; zero is Kafka's default (3 s), a negative value none.
	InitialRebalanceDelay time.Duration
	// MaxSize (group.max.size) is the most members of one group; 0 is
	// unlimited.
	MaxSize int
	// OffsetsRetention (offsets.retention.minutes) is how long committed
	// offsets are kept once their group is empty.
	OffsetsRetention time.Duration
	// MaxMetadataBytes (offset.metadata.max.bytes) bounds the metadata of
	// one committed offset.
	MaxMetadataBytes int
	// NewMemberJoinTimeout is how long a new member's first JoinGroup may
	// stay parked (Kafka's 5 minutes).
	NewMemberJoinTimeout time.Duration
	// NewMemberID returns a new member id; nil is Kafka's form,
	// "<group.instance.id or client.id>-<uuid>".
	NewMemberID func(clientID string, instanceID *string) string
	// ConsumerSessionTimeout (group.consumer.session.timeout.ms) and
	// ConsumerHeartbeatInterval (group.consumer.heartbeat.interval.ms) are
	// the consumer group protocol's (KIP-848).
	ConsumerSessionTimeout    time.Duration
	ConsumerHeartbeatInterval time.Duration
}

func (c Settings) withDefaults() Settings {
	if c.MinSessionTimeout == 0 {
		c.MinSessionTimeout = defaultMinSessionTimeout
	}
	if c.MaxSessionTimeout == 0 {
		c.MaxSessionTimeout = defaultMaxSessionTimeout
	}
	if c.InitialRebalanceDelay == 0 {
		c.InitialRebalanceDelay = defaultInitialRebalanceDelay
	}
	if c.MaxSize <= 0 {
		c.MaxSize = int(^uint(0) >> 1)
	}
	if c.OffsetsRetention == 0 {
		c.OffsetsRetention = defaultOffsetsRetention
	}
	if c.MaxMetadataBytes == 0 {
		c.MaxMetadataBytes = defaultMaxMetadataBytes
	}
	if c.NewMemberJoinTimeout == 0 {
		c.NewMemberJoinTimeout = defaultNewMemberJoinTimeout
	}
	if c.ConsumerSessionTimeout <= 0 {
		c.ConsumerSessionTimeout = defaultConsumerSessionTimeout
	}
	if c.ConsumerHeartbeatInterval <= 0 {
		c.ConsumerHeartbeatInterval = defaultConsumerHeartbeatInterval
	}
	if c.NewMemberID == nil {
		c.NewMemberID = kafkaMemberID
	}
	return c
}

// kafkaMemberID is Kafka's member id: the instance id (static members) or
// client id, a dash, and a random UUID.
func kafkaMemberID(clientID string, instanceID *string) string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	prefix := clientID
	if instanceID != nil {
		prefix = *instanceID
	}
	return prefix + "-" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Append asks the runner to append records to the shard's partition as
// one batch. Once the batch is committed (durable and, in a cluster, held
// by every in-sync replica) or failed, the runner reports AppendDone with
// its ID.
type Append struct {
	ID      uint64
	Records []Record
	// Producer, when set, makes the batch part of that producer's
	// transaction (a TxnOffsetCommit).
	Producer *Producer
}

// Output is what one event asks of the runner: the appends, in order, and
// the replies to send (call each once, in order, from any goroutine).
type Output struct {
	Appends []Append
	Replies []func()
}

// pendingAppend is an append whose durability someone waits for.
type pendingAppend struct {
	id   uint64
	done func(err error)
}

// Shard is the classic group coordinator for the groups of one partition of
// __consumer_offsets: Kafka's group state machine, the groups' committed
// offsets, and the records that make them durable.
//
// It is a pure state machine: no goroutines, clocks, locks or IO. Every
// event method takes the time it happens at and returns an Output (appends
// to perform, replies to send); timers are deadlines that the runner turns
// into Tick calls (NextDeadline says when). A Shard is not safe for
// concurrent use: one runner goroutine owns it (see Coordinator).
//
// A new Shard answers COORDINATOR_LOAD_IN_PROGRESS until Loaded; Replay
// feeds it the partition's records before that.
type Shard struct {
	cfg         Settings
	now         time.Time
	loaded      bool
	unavailable error

	groups     map[string]*group
	timers     timerHeap
	lastTimer  uint64
	lastAppend uint64
	appends    []pendingAppend // in id order
	out        Output

	// txns are transactional offset commits awaiting their transaction's
	// marker, by producer id (see txn.go).
	txns map[int64]txnOffsets
	// order counts offset commit records in log order (see offset.order).
	order uint64
}

// nextOrder is the log order of the next offset commit record: appends are
// performed in the order they are asked for, and replay reads in log order.
func (s *Shard) nextOrder() uint64 {
	s.order++
	return s.order
}

// NewShard returns an empty shard, still loading.
func NewShard(cfg Settings) *Shard {
	return &Shard{cfg: cfg.withDefaults(), groups: map[string]*group{}}
}

func (s *Shard) begin(now time.Time) { s.now, s.out = now, Output{} }

func (s *Shard) end() Output {
	out := s.out
	s.out = Output{}
	return out
}

// ready is the error every request gets while the shard cannot serve.
func (s *Shard) ready() error {
	if s.unavailable != nil {
		return s.unavailable
	}
	if !s.loaded {
		return kerr.CoordinatorLoadInProgress
	}
	return nil
}

// SetUnavailable makes every request answer err (NOT_COORDINATOR when the
// partition cannot be read).
func (s *Shard) SetUnavailable(err error) { s.unavailable = err }

func (s *Shard) replyJoin(reply func(JoinResult), res JoinResult) {
	s.out.Replies = append(s.out.Replies, func() { reply(res) })
}

func (s *Shard) replySync(reply func(SyncResult), res SyncResult) {
	s.out.Replies = append(s.out.Replies, func() { reply(res) })
}

func (s *Shard) replyErr(reply func(error), err error) {
	s.out.Replies = append(s.out.Replies, func() { reply(err) })
}

// appendRecords asks for records to be appended; done, if not nil, is
// called once they are committed or failed.
func (s *Shard) appendRecords(recs []Record, done func(err error)) {
	s.appendTxnRecords(recs, Producer{ID: -1}, done)
}

// appendTxnRecords is appendRecords as part of a producer's transaction
// when p.ID >= 0.
func (s *Shard) appendTxnRecords(recs []Record, p Producer, done func(err error)) {
	s.lastAppend++
	a := Append{ID: s.lastAppend, Records: recs}
	if p.ID >= 0 {
		a.Producer = &p
	}
	s.out.Appends = append(s.out.Appends, a)
	if done != nil {
		s.appends = append(s.appends, pendingAppend{s.lastAppend, done})
	}
}

// AppendDone reports the append id committed (err nil) or failed. A
// committed append makes every earlier one committed too: the log is
// fsynced and replicated in order, and the high watermark only rises.
func (s *Shard) AppendDone(now time.Time, id uint64, err error) Output {
	s.begin(now)
	if err != nil {
		for i, p := range s.appends {
			if p.id == id {
				s.appends = slices.Delete(s.appends, i, i+1)
				p.done(err)
				break
			}
		}
		return s.end()
	}
	for len(s.appends) > 0 && s.appends[0].id <= id {
		p := s.appends[0]
		s.appends = s.appends[1:]
		p.done(nil)
	}
	return s.end()
}

func (s *Shard) scheduleHeartbeat(g *group, m *member, d time.Duration) {
	m.timer = s.schedule(timerHeartbeat, g, m.id, d)
}

func ms(v int32) time.Duration { return time.Duration(v) * time.Millisecond }

func strPtr(v string) *string { return &v }

func nonEmptyPtr(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

// ---- JoinGroup --------------------------------------------------------------

// Join handles a JoinGroup. The reply may come in a later Output: a join
// is parked until the rebalance completes.
func (s *Shard) Join(now time.Time, r JoinRequest, reply func(JoinResult)) Output {
	s.begin(now)
	s.join(r, reply)
	return s.end()
}

func (s *Shard) join(r JoinRequest, reply func(JoinResult)) {
	fail := func(err error) {
		s.replyJoin(reply, JoinResult{Err: err, MemberID: r.MemberID, Generation: -1})
	}
	if r.Group == "" {
		fail(kerr.InvalidGroupID)
		return
	}
	if err := s.ready(); err != nil {
		fail(err)
		return
	}
	if ms(r.SessionTimeout) < s.cfg.MinSessionTimeout || ms(r.SessionTimeout) > s.cfg.MaxSessionTimeout {
		fail(kerr.InvalidSessionTimeout)
		return
	}
	g := s.groups[r.Group]
	if g == nil {
		if r.MemberID != "" {
			fail(kerr.UnknownMemberID)
			return
		}
		if r.ProtocolType == "" || len(r.Protocols) == 0 {
			fail(kerr.InconsistentGroupProtocol)
			return
		}
		g = newGroup(r.Group, s.now)
		s.groups[r.Group] = g
	}
	if g.cg != nil {
		if len(g.cg.members) > 0 {
			// A consumer group (KIP-848) with members takes no classic
			// members.
			fail(kerr.InconsistentGroupProtocol)
			return
		}
		// An empty consumer group becomes a classic group again.
		g.cg, g.subscribed = nil, nil
	}
	if !g.supportsProtocols(r.ProtocolType, r.Protocols) {
		fail(kerr.InconsistentGroupProtocol)
		return
	}
	if !s.acceptJoiningMember(g, r.MemberID) {
		// As Kafka: a member over group.max.size (lowered since it
		// joined) is removed.
		g.remove(r.MemberID)
		s.replyJoin(reply, JoinResult{Err: kerr.GroupMaxSizeReached, Generation: -1})
		return
	}
	if r.MemberID == "" {
		s.joinNew(g, r, reply)
	} else {
		s.joinExisting(g, r, reply)
	}
}

// acceptJoiningMember is Kafka's group.max.size check.
func (s *Shard) acceptJoiningMember(g *group, memberID string) bool {
	m := g.members[memberID]
	switch g.state {
	case Empty, Dead:
		return true
	case PreparingRebalance:
		return m != nil && m.awaitingJoin() || g.awaitingJoin < s.cfg.MaxSize
	default:
		return m != nil || len(g.members) < s.cfg.MaxSize
	}
}

// joinNew is a first join (no member id).
func (s *Shard) joinNew(g *group, r JoinRequest, reply func(JoinResult)) {
	id := s.cfg.NewMemberID(r.ClientID, r.InstanceID)
	if r.InstanceID != nil {
		if old, ok := g.static[*r.InstanceID]; ok {
			s.replaceStaticMember(g, r, old, id, reply)
			return
		}
		s.addMemberAndRebalance(g, r, id, reply)
		return
	}
	if r.RequireKnownMemberID {
		// KIP-394: the member comes back with this id; until then it
		// holds up the rebalance for at most its session timeout.
		g.pending[id] = s.schedule(timerPending, g, id, ms(r.SessionTimeout))
		s.replyJoin(reply, JoinResult{Err: kerr.MemberIDRequired, MemberID: id, Generation: -1})
		return
	}
	s.addMemberAndRebalance(g, r, id, reply)
}

// joinExisting is a join with a member id.
func (s *Shard) joinExisting(g *group, r JoinRequest, reply func(JoinResult)) {
	if _, ok := g.pending[r.MemberID]; ok {
		s.addMemberAndRebalance(g, r, r.MemberID, reply)
		return
	}
	if err := g.validateMember(r.MemberID, r.InstanceID); err != nil {
		s.replyJoin(reply, JoinResult{Err: err, MemberID: r.MemberID, Generation: -1})
		return
	}
	m := g.members[r.MemberID]
	switch g.state {
	case PreparingRebalance:
		s.updateMemberAndRebalance(g, m, r, reply)
	case CompletingRebalance:
		if m.matches(r.Protocols) {
			// A retry of a join whose response was lost: the same
			// answer again.
			s.replyJoin(reply, s.joinResult(g, m.id, m.id == g.leader))
			return
		}
		s.updateMemberAndRebalance(g, m, r, reply)
	case Stable:
		if m.id == g.leader || !m.matches(r.Protocols) {
			// The leader rejoins to force a rebalance (its topics'
			// metadata changed); a member with new metadata needs one.
			s.updateMemberAndRebalance(g, m, r, reply)
			return
		}
		s.replyJoin(reply, s.joinResult(g, m.id, false))
	default:
		s.replyJoin(reply, JoinResult{Err: kerr.UnknownMemberID, MemberID: r.MemberID, Generation: -1})
	}
}

// joinResult is the current generation as a JoinGroup answer.
func (s *Shard) joinResult(g *group, memberID string, withMembers bool) JoinResult {
	res := JoinResult{MemberID: memberID, Generation: g.generation, ProtocolType: strPtr(g.protocolType),
		Protocol: nonEmptyPtr(g.protocol), Leader: g.leader}
	if withMembers {
		res.Members = s.joinMembers(g)
	}
	return res
}

func (s *Shard) joinMembers(g *group) []JoinMember {
	out := make([]JoinMember, 0, len(g.order))
	for _, id := range g.order {
		m := g.members[id]
		out = append(out, JoinMember{MemberID: id, InstanceID: m.instanceID, Metadata: m.metadata(g.protocol)})
	}
	return out
}

func (s *Shard) addMemberAndRebalance(g *group, r JoinRequest, id string, reply func(JoinResult)) {
	m := &member{
		id: id, instanceID: r.InstanceID, clientID: r.ClientID, clientHost: r.ClientHost,
		sessionTimeout: r.SessionTimeout, rebalanceTimeout: r.RebalanceTimeout,
		protocolType: r.ProtocolType, protocols: r.Protocols, isNew: true, join: reply,
	}
	if g.state == PreparingRebalance && g.generation == 0 {
		g.newMemberAdded = true // extends the initial delay
	}
	g.add(m)
	// A parked join cannot heartbeat; a new member that never comes back
	// from its JoinGroup is dropped after the new member join timeout.
	s.scheduleHeartbeat(g, m, s.cfg.NewMemberJoinTimeout)
	s.maybePrepareRebalanceOrCompleteJoin(g)
}

func (s *Shard) updateMemberAndRebalance(g *group, m *member, r JoinRequest, reply func(JoinResult)) {
	if m.join != nil {
		// A second join while one is parked: the first one's client
		// gave up on it.
		s.replyJoin(m.join, JoinResult{Err: kerr.RebalanceInProgress, MemberID: m.id, Generation: -1})
	}
	g.update(m, r.Protocols, r.RebalanceTimeout, r.SessionTimeout, reply)
	s.maybePrepareRebalanceOrCompleteJoin(g)
}

// replaceStaticMember handles a static member's first join after a
// restart (KIP-345): it takes over the old member id's place and
// assignment. In a stable group whose protocol does not change that is
// all, with no rebalance: the group metadata is stored and the member gets
// the current generation back.
func (s *Shard) replaceStaticMember(g *group, r JoinRequest, oldID, newID string, reply func(JoinResult)) {
	old := g.members[oldID]
	oldLeader := g.leader
	s.fence(g, old)
	nm := &member{
		id: newID, instanceID: old.instanceID, clientID: old.clientID, clientHost: old.clientHost,
		sessionTimeout: old.sessionTimeout, rebalanceTimeout: old.rebalanceTimeout,
		protocolType: old.protocolType, protocols: old.protocols, assignment: old.assignment,
	}
	g.replace(oldID, nm)
	s.scheduleHeartbeat(g, nm, ms(nm.sessionTimeout))
	oldProtocols, oldRT, oldST := nm.protocols, nm.rebalanceTimeout, nm.sessionTimeout
	g.update(nm, r.Protocols, r.RebalanceTimeout, r.SessionTimeout, reply)

	switch g.state {
	case Stable:
		if g.selectProtocol() != g.protocol {
			s.prepareRebalance(g)
			return
		}
		gen := g.generation
		s.storeGroup(g, nil, func(err error) {
			if s.groups[g.id] != g || g.members[newID] != nm || nm.join == nil || g.state != Stable || g.generation != gen {
				return // a rebalance since answers the join
			}
			join := nm.join
			g.setJoin(nm, nil)
			if err != nil {
				// Not durable: the old member id stays the one on record.
				g.update(nm, oldProtocols, oldRT, oldST, nil)
				back := *nm
				back.id = oldID
				g.replace(newID, &back)
				s.scheduleHeartbeat(g, &back, ms(back.sessionTimeout))
				s.replyJoin(join, JoinResult{Err: groupStoreError(err), Generation: g.generation,
					ProtocolType: strPtr(g.protocolType), Protocol: nonEmptyPtr(g.protocol), Leader: oldLeader})
				return
			}
			if !r.SkipAssignment {
				s.replyJoin(join, JoinResult{MemberID: newID, Generation: g.generation, ProtocolType: strPtr(g.protocolType),
					Protocol: nonEmptyPtr(g.protocol), Leader: oldLeader})
				return
			}
			// KIP-814: a static leader keeps the assignment it made.
			leader := g.leader == newID
			res := s.joinResult(g, newID, leader)
			res.SkipAssignment = leader
			s.replyJoin(join, res)
		})
	case CompletingRebalance:
		// The leader may be assigning to the old member id: start over.
		s.prepareRebalance(g)
	default:
		s.maybeCompleteJoin(g)
	}
}

// fence answers whatever the member has parked with FENCED_INSTANCE_ID:
// its group.instance.id now belongs to a newer member id.
func (s *Shard) fence(g *group, m *member) {
	if m.join != nil {
		join := m.join
		g.setJoin(m, nil)
		s.replyJoin(join, JoinResult{Err: kerr.FencedInstanceID, MemberID: m.id, Generation: -1})
	}
	if m.sync != nil {
		sync := m.sync
		m.sync = nil
		s.replySync(sync, SyncResult{Err: kerr.FencedInstanceID})
	}
}

func (s *Shard) maybePrepareRebalanceOrCompleteJoin(g *group) {
	if g.canRebalance() {
		s.prepareRebalance(g)
		return
	}
	s.maybeCompleteJoin(g)
}

// prepareRebalance moves the group to PreparingRebalance: members must
// rejoin within the rebalance timeout. A group coming from Empty waits
// group.initial.rebalance.delay.ms first, for more members to come.
func (s *Shard) prepareRebalance(g *group) {
	if g.state == CompletingRebalance {
		s.propagateAssignment(g, kerr.RebalanceInProgress)
	}
	g.syncTimer = 0
	clear(g.pendingSync)
	initial := g.state == Empty
	g.transition(PreparingRebalance, s.now)
	if initial {
		g.joinInitial = true
		g.joinDelay = max(s.cfg.InitialRebalanceDelay, 0)
		g.joinRemaining = max(g.rebalanceTimeout()-g.joinDelay, 0)
		g.joinTimer = s.schedule(timerJoin, g, "", g.joinDelay)
		return
	}
	g.joinInitial = false
	g.joinTimer = s.schedule(timerJoin, g, "", g.rebalanceTimeout())
	s.maybeCompleteJoin(g)
}

// initialDelayDone: the initial delay is over; another one follows when a
// member joined meanwhile, up to the rebalance timeout in all.
func (s *Shard) initialDelayDone(g *group) {
	if g.newMemberAdded && g.joinRemaining > 0 {
		g.newMemberAdded = false
		delay := min(max(s.cfg.InitialRebalanceDelay, 0), g.joinRemaining)
		g.joinRemaining = max(g.joinRemaining-g.joinDelay, 0)
		g.joinDelay = delay
		g.joinTimer = s.schedule(timerJoin, g, "", delay)
		return
	}
	s.completeJoin(g)
}

// maybeCompleteJoin ends PreparingRebalance early once every member has
// rejoined (never during the initial delay).
func (s *Shard) maybeCompleteJoin(g *group) {
	if g.state == PreparingRebalance && !g.joinInitial && g.hasAllMembersJoined() {
		s.completeJoin(g)
	}
}

// completeJoin ends PreparingRebalance: dynamic members that did not
// rejoin are dropped, the generation moves on, and the parked joins are
// answered (the leader with every member's metadata).
func (s *Shard) completeJoin(g *group) {
	g.joinTimer, g.joinInitial, g.newMemberAdded = 0, false, false
	for _, id := range slices.Clone(g.order) {
		if m := g.members[id]; !m.awaitingJoin() && m.instanceID == nil {
			s.drop(g, m)
		}
	}
	if !s.electJoinedLeader(g) && len(g.members) > 0 {
		// Only static members that have not rejoined are left: wait
		// another rebalance timeout (their sessions expire meanwhile).
		g.joinTimer = s.schedule(timerJoin, g, "", g.rebalanceTimeout())
		return
	}
	g.generation++
	clear(g.pendingSync)
	if len(g.members) == 0 {
		g.protocol = ""
		g.transition(Empty, s.now)
		g.computeSubscribed()
		s.storeGroup(g, nil, nil)
		return
	}
	g.protocol = g.selectProtocol()
	g.transition(CompletingRebalance, s.now)
	g.computeSubscribed()
	for _, id := range g.order {
		m := g.members[id]
		if m.join != nil {
			join := m.join
			g.setJoin(m, nil)
			s.replyJoin(join, s.joinResult(g, id, id == g.leader))
		}
		s.scheduleHeartbeat(g, m, ms(m.sessionTimeout))
		m.isNew = false
		g.pendingSync[id] = true
	}
	g.syncTimer = s.schedule(timerSync, g, "", g.rebalanceTimeout())
}

// electJoinedLeader keeps the leader if it rejoined, else picks the first
// member that did; false when none did.
func (s *Shard) electJoinedLeader(g *group) bool {
	if g.leader == "" {
		return false
	}
	if l := g.members[g.leader]; l != nil && l.awaitingJoin() {
		return true
	}
	for _, id := range g.order {
		if g.members[id].awaitingJoin() {
			g.leader = id
			return true
		}
	}
	return false
}

// expirePendingSync: members of the new generation that never sent
// SyncGroup within the rebalance timeout are dropped, and the rest
// rebalance without them.
func (s *Shard) expirePendingSync(g *group) {
	if g.state != CompletingRebalance && g.state != Stable || len(g.pendingSync) == 0 {
		return
	}
	ids := make([]string, 0, len(g.pendingSync))
	for id := range g.pendingSync {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if m := g.members[id]; m != nil {
			s.drop(g, m)
		}
	}
	clear(g.pendingSync)
	s.prepareRebalance(g)
}

func (s *Shard) removePendingSync(g *group, id string) {
	delete(g.pendingSync, id)
	if len(g.pendingSync) == 0 {
		g.syncTimer = 0
	}
}

// expireMember: a member's session (or new member join) timeout passed
// with no heartbeat. A member in the middle of a rebalance is kept unless
// it is new.
func (s *Shard) expireMember(g *group, m *member) {
	if !m.isNew && (m.awaitingJoin() || m.awaitingSync()) {
		return
	}
	s.removeMemberAndRebalance(g, m)
}

// drop removes a member, answering what it has parked UNKNOWN_MEMBER_ID.
func (s *Shard) drop(g *group, m *member) {
	if m.join != nil {
		join := m.join
		g.setJoin(m, nil)
		s.replyJoin(join, JoinResult{Err: kerr.UnknownMemberID, Generation: -1})
	}
	if m.sync != nil {
		sync := m.sync
		m.sync = nil
		s.replySync(sync, SyncResult{Err: kerr.UnknownMemberID})
	}
	g.remove(m.id)
}

func (s *Shard) removeMemberAndRebalance(g *group, m *member) {
	s.drop(g, m)
	s.afterRemove(g)
}

// afterRemove moves the group on once members left.
func (s *Shard) afterRemove(g *group) {
	switch g.state {
	case Stable, CompletingRebalance:
		s.prepareRebalance(g)
	case PreparingRebalance:
		s.maybeCompleteJoin(g)
	}
}

// ---- SyncGroup --------------------------------------------------------------

// Sync handles a SyncGroup. A follower's sync during CompletingRebalance is
// parked until the leader's assignment is durable.
func (s *Shard) Sync(now time.Time, r SyncRequest, reply func(SyncResult)) Output {
	s.begin(now)
	s.syncGroup(r, reply)
	return s.end()
}

func (s *Shard) syncGroup(r SyncRequest, reply func(SyncResult)) {
	fail := func(err error) { s.replySync(reply, SyncResult{Err: err}) }
	if r.Group == "" {
		fail(kerr.InvalidGroupID)
		return
	}
	if err := s.ready(); err != nil {
		fail(err)
		return
	}
	g := s.groups[r.Group]
	if g == nil {
		fail(kerr.UnknownMemberID)
		return
	}
	if err := g.validateMember(r.MemberID, r.InstanceID); err != nil {
		fail(err)
		return
	}
	if r.Generation != g.generation {
		fail(kerr.IllegalGeneration)
		return
	}
	if r.ProtocolType != nil && *r.ProtocolType != g.protocolType || r.Protocol != nil && *r.Protocol != g.protocol {
		fail(kerr.InconsistentGroupProtocol)
		return
	}
	m := g.members[r.MemberID]
	switch g.state {
	case PreparingRebalance:
		fail(kerr.RebalanceInProgress)
	case CompletingRebalance:
		if m.sync != nil {
			s.replySync(m.sync, SyncResult{Err: kerr.RebalanceInProgress})
		}
		m.sync = reply
		s.removePendingSync(g, m.id)
		if m.id != g.leader {
			return
		}
		// Members the leader left out get an empty assignment.
		assignment := make(map[string][]byte, len(g.members))
		for _, id := range g.order {
			assignment[id] = nonNil(r.Assignments[id])
		}
		gen := g.generation
		s.storeGroup(g, assignment, func(err error) {
			if s.groups[g.id] != g || g.state != CompletingRebalance || g.generation != gen {
				return // a rebalance since answered the syncs
			}
			if err != nil {
				s.propagateAssignment(g, groupStoreError(err))
				s.prepareRebalance(g)
				return
			}
			for id, a := range assignment {
				g.members[id].assignment = a
			}
			s.propagateAssignment(g, nil)
			g.transition(Stable, s.now)
		})
	case Stable:
		s.removePendingSync(g, m.id)
		s.replySync(reply, SyncResult{ProtocolType: strPtr(g.protocolType), Protocol: strPtr(g.protocol), Assignment: nonNil(m.assignment)})
		s.scheduleHeartbeat(g, m, ms(m.sessionTimeout))
	default:
		fail(kerr.UnknownMemberID)
	}
}

// propagateAssignment answers the parked syncs: with each member's
// assignment, or with err (and the assignments cleared).
func (s *Shard) propagateAssignment(g *group, err error) {
	for _, id := range g.order {
		m := g.members[id]
		if err != nil {
			m.assignment = nil
		}
		if m.sync == nil {
			continue
		}
		res := SyncResult{Err: err}
		if err == nil {
			res = SyncResult{ProtocolType: strPtr(g.protocolType), Protocol: strPtr(g.protocol), Assignment: nonNil(m.assignment)}
		}
		s.replySync(m.sync, res)
		m.sync = nil
		s.scheduleHeartbeat(g, m, ms(m.sessionTimeout))
	}
}

// storeGroup appends the group's metadata record.
func (s *Shard) storeGroup(g *group, assignment map[string][]byte, done func(err error)) {
	s.appendRecords([]Record{{Key: groupKey(g.id), Value: groupValue(g, assignment)}}, done)
}

// groupStoreError is what a failed group metadata write answers (Kafka
// maps a too large record to UNKNOWN_SERVER_ERROR).
func groupStoreError(err error) error {
	if errors.Is(err, kerr.MessageTooLarge) {
		return kerr.UnknownServerError
	}
	return err
}

// ---- Heartbeat and LeaveGroup -----------------------------------------------

// Heartbeat handles a Heartbeat: it restarts the member's session timeout
// and tells it whether a rebalance is under way.
func (s *Shard) Heartbeat(now time.Time, r HeartbeatRequest, reply func(error)) Output {
	s.begin(now)
	s.replyErr(reply, s.heartbeat(r))
	return s.end()
}

func (s *Shard) heartbeat(r HeartbeatRequest) error {
	if r.Group == "" {
		return kerr.InvalidGroupID
	}
	if err := s.ready(); err != nil {
		return err
	}
	g := s.groups[r.Group]
	if g == nil {
		return kerr.UnknownMemberID
	}
	if err := g.validateMember(r.MemberID, r.InstanceID); err != nil {
		return err
	}
	if r.Generation != g.generation {
		return kerr.IllegalGeneration
	}
	m := g.members[r.MemberID]
	switch g.state {
	case PreparingRebalance:
		s.scheduleHeartbeat(g, m, ms(m.sessionTimeout))
		return kerr.RebalanceInProgress
	case CompletingRebalance, Stable:
		s.scheduleHeartbeat(g, m, ms(m.sessionTimeout))
		return nil
	}
	return kerr.UnknownMemberID
}

// Leave handles a LeaveGroup of one or more members; the group rebalances
// once for all of them.
func (s *Shard) Leave(now time.Time, group string, members []LeaveMember, reply func(LeaveResult)) Output {
	s.begin(now)
	res := s.leave(group, members)
	s.out.Replies = append(s.out.Replies, func() { reply(res) })
	return s.end()
}

func (s *Shard) leave(group string, members []LeaveMember) LeaveResult {
	if group == "" {
		return LeaveResult{Err: kerr.InvalidGroupID}
	}
	if err := s.ready(); err != nil {
		return LeaveResult{Err: err}
	}
	errs := make([]error, len(members))
	g := s.groups[group]
	if g == nil {
		for i := range errs {
			errs[i] = kerr.UnknownMemberID
		}
		return LeaveResult{Members: errs}
	}
	left := false
	for i, lm := range members {
		switch _, pending := g.pending[lm.MemberID]; {
		case lm.MemberID == "":
			// An admin removing a static member by its instance id.
			id, ok := "", false
			if lm.InstanceID != nil {
				id, ok = g.static[*lm.InstanceID]
			}
			if !ok {
				errs[i] = kerr.UnknownMemberID
				continue
			}
			s.drop(g, g.members[id])
			left = true
		case pending:
			delete(g.pending, lm.MemberID)
			left = true
		default:
			if err := g.validateMember(lm.MemberID, lm.InstanceID); err != nil {
				errs[i] = err
				continue
			}
			s.drop(g, g.members[lm.MemberID])
			left = true
		}
	}
	if left {
		s.afterRemove(g)
	}
	return LeaveResult{Members: errs}
}

// ---- Offsets ----------------------------------------------------------------

// Commit handles an OffsetCommit; it is answered once the offsets are
// durable.
func (s *Shard) Commit(now time.Time, r CommitRequest, reply func(CommitResult)) Output {
	s.begin(now)
	s.commit(r, reply)
	return s.end()
}

func (s *Shard) commit(r CommitRequest, reply func(CommitResult)) {
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
		switch {
		case r.Generation < 0:
			// Offsets only: a group of a consumer that assigns itself.
			g = newGroup(r.Group, s.now)
			s.groups[r.Group] = g
		case r.GroupNotFound:
			fail(kerr.GroupIDNotFound)
			return
		default:
			fail(kerr.IllegalGeneration)
			return
		}
	}
	if err := g.validateOffsetCommit(r.MemberID, r.InstanceID, r.Generation, r.GroupNotFound); err != nil {
		fail(err)
		return
	}
	var expire time.Time
	if r.RetentionMs >= 0 {
		expire = s.now.Add(time.Duration(r.RetentionMs) * time.Millisecond)
	}
	b := s.newCommitBatch(g, r.Offsets, expire, errs)
	if len(b.recs) == 0 {
		answer()
		return
	}
	g.pendingCommits++
	s.appendRecords(b.recs, func(err error) {
		g.pendingCommits--
		if err != nil {
			b.fail(err)
		} else if s.groups[g.id] == g {
			for k, i := range b.valid {
				g.offsets[r.Offsets[i].TopicPartition] = b.offs[k]
			}
		}
		answer()
	})
}

// commitBatch is an OffsetCommit or TxnOffsetCommit being written: an
// answer per requested offset (errs), and the records of those that pass.
type commitBatch struct {
	errs  []error
	valid []int    // which requested offsets are written
	offs  []offset // their values, with their log order
	recs  []Record
}

// newCommitBatch checks each offset's metadata size (too large:
// OFFSET_METADATA_TOO_LARGE in errs) and makes the records of the others.
func (s *Shard) newCommitBatch(g *group, offsets []CommitOffset, expire time.Time, errs []error) *commitBatch {
	b := &commitBatch{errs: errs}
	for i, o := range offsets {
		if len(o.Metadata) > s.cfg.MaxMetadataBytes {
			errs[i] = kerr.OffsetMetadataTooLarge
			continue
		}
		off := offset{Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTime: s.now,
			ExpireTime: expire, order: s.nextOrder()}
		b.recs = append(b.recs, Record{Key: offsetKey(g.id, o.TopicPartition), Value: offsetValue(off)})
		b.valid = append(b.valid, i)
		b.offs = append(b.offs, off)
	}
	return b
}

// fail answers the written offsets with the append's error, as Kafka does.
func (b *commitBatch) fail(err error) {
	if errors.Is(err, kerr.MessageTooLarge) {
		err = kerr.InvalidCommitOffsetSize
	}
	for _, i := range b.valid {
		b.errs[i] = err
	}
}

// FetchOffsets handles one group of an OffsetFetch. A group never seen, or
// one with nothing committed, answers offset -1 and no error.
func (s *Shard) FetchOffsets(now time.Time, r FetchRequest, reply func(FetchResult)) Output {
	s.begin(now)
	res := s.fetchOffsets(r)
	s.out.Replies = append(s.out.Replies, func() { reply(res) })
	return s.end()
}

func (s *Shard) fetchOffsets(r FetchRequest) FetchResult {
	if err := s.ready(); err != nil {
		return FetchResult{Err: err}
	}
	g := s.groups[r.Group]
	if g != nil && g.cg != nil && r.MemberID != nil && r.MemberEpoch >= 0 {
		// Kafka's ConsumerGroup.validateOffsetFetch.
		m := g.cg.members[*r.MemberID]
		if m == nil {
			return FetchResult{Err: kerr.UnknownMemberID}
		}
		if r.MemberEpoch != m.epoch {
			return FetchResult{Err: kerr.StaleMemberEpoch}
		}
	}
	if r.Partitions == nil {
		if g == nil {
			return FetchResult{}
		}
		if r.RequireStable && s.unstable(r.Group, nil) {
			return FetchResult{Err: kerr.UnstableOffsetCommit}
		}
		out := make([]FetchedOffset, 0, len(g.offsets))
		for tp, o := range g.offsets {
			out = append(out, FetchedOffset{TopicPartition: tp, Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata})
		}
		slices.SortFunc(out, func(a, b FetchedOffset) int {
			return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
		})
		return FetchResult{Offsets: out}
	}
	out := make([]FetchedOffset, len(r.Partitions))
	for i, tp := range r.Partitions {
		out[i] = FetchedOffset{TopicPartition: tp, Offset: -1, LeaderEpoch: -1}
		if r.RequireStable && s.unstable(r.Group, &tp) {
			out[i].Err = kerr.UnstableOffsetCommit
			continue
		}
		if g == nil {
			continue
		}
		if o, ok := g.offsets[tp]; ok {
			out[i] = FetchedOffset{TopicPartition: tp, Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata}
		}
	}
	return FetchResult{Offsets: out}
}

// DeleteOffsets handles an OffsetDelete: the offsets of topics the group
// does not consume are removed.
func (s *Shard) DeleteOffsets(now time.Time, group string, partitions []TopicPartition, reply func(OffsetDeleteResult)) Output {
	s.begin(now)
	s.deleteOffsets(group, partitions, reply)
	return s.end()
}

func (s *Shard) deleteOffsets(group string, partitions []TopicPartition, reply func(OffsetDeleteResult)) {
	res := OffsetDeleteResult{Partitions: make([]error, len(partitions))}
	answer := func() { s.out.Replies = append(s.out.Replies, func() { reply(res) }) }
	if err := s.ready(); err != nil {
		res = OffsetDeleteResult{Err: err}
		answer()
		return
	}
	g := s.groups[group]
	if g == nil {
		res = OffsetDeleteResult{Err: kerr.GroupIDNotFound}
		answer()
		return
	}
	if g.state != Empty && g.protocolType != ConsumerProtocolType {
		res = OffsetDeleteResult{Err: kerr.NonEmptyGroup}
		answer()
		return
	}
	var recs []Record
	var deleted []int
	for i, tp := range partitions {
		if g.subscribed[tp.Topic] {
			res.Partitions[i] = kerr.GroupSubscribedToTopic
			continue
		}
		if _, ok := g.offsets[tp]; ok {
			delete(g.offsets, tp)
			recs = append(recs, Record{Key: offsetKey(g.id, tp)})
			deleted = append(deleted, i)
		}
	}
	if len(recs) == 0 {
		answer()
		return
	}
	s.appendRecords(recs, func(err error) {
		for _, i := range deleted {
			res.Partitions[i] = groupStoreError(err)
		}
		answer()
	})
}

// ExpireOffsets removes expired offsets (offsets.retention.minutes, Kafka's
// KIP-211 rules) and then groups that are empty with no offsets left,
// writing their tombstones. The runner calls it on a timer
// (offsets.retention.check.interval.ms).
func (s *Shard) ExpireOffsets(now time.Time) Output {
	s.begin(now)
	if s.ready() != nil {
		return s.end()
	}
	var recs []Record
	for _, id := range s.sortedGroups() {
		g := s.groups[id]
		if g.pendingCommits > 0 {
			continue
		}
		expired := func(o offset, base time.Time) bool {
			if !o.ExpireTime.IsZero() {
				return !now.Before(o.ExpireTime)
			}
			return now.Sub(base) >= s.cfg.OffsetsRetention
		}
		var gone []TopicPartition
		for tp, o := range g.offsets {
			var exp bool
			switch {
			case g.protocolType == "":
				// Offsets only: each expires a retention after its commit.
				exp = expired(o, o.CommitTime)
			case g.state == Empty:
				// Everything expires a retention after the group emptied.
				base := g.stateTime
				if base.IsZero() {
					base = o.CommitTime
				}
				exp = expired(o, base)
			case g.protocolType == ConsumerProtocolType && g.subscribed != nil && g.state == Stable:
				// Topics no member consumes any more.
				exp = !g.subscribed[tp.Topic] && expired(o, o.CommitTime)
			}
			if exp {
				gone = append(gone, tp)
			}
		}
		slices.SortFunc(gone, func(a, b TopicPartition) int {
			return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
		})
		for _, tp := range gone {
			delete(g.offsets, tp)
			recs = append(recs, Record{Key: offsetKey(g.id, tp)})
		}
		if g.state == Empty && len(g.offsets) == 0 {
			delete(s.groups, id)
			recs = append(recs, Record{Key: groupKey(id)})
		}
	}
	if len(recs) > 0 {
		s.appendRecords(recs, nil)
	}
	return s.end()
}

// ---- DescribeGroups, ListGroups, DeleteGroups -------------------------------

// Describe handles one group of a DescribeGroups.
func (s *Shard) Describe(now time.Time, group string, reply func(Description)) Output {
	s.begin(now)
	d := s.describe(group)
	s.out.Replies = append(s.out.Replies, func() { reply(d) })
	return s.end()
}

func (s *Shard) describe(id string) Description {
	if err := s.ready(); err != nil {
		return Description{Group: id, Err: err}
	}
	g := s.groups[id]
	if g == nil {
		return Description{Group: id, Err: kerr.GroupIDNotFound, State: Dead.String()}
	}
	if g.cg != nil {
		return g.cg.describeClassic(id)
	}
	d := Description{Group: id, State: g.state.String(), ProtocolType: g.protocolType, Members: []MemberDescription{}}
	stable := g.state == Stable
	if stable {
		d.Protocol = g.protocol
	}
	for _, mid := range g.order {
		m := g.members[mid]
		md := MemberDescription{MemberID: mid, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost,
			Metadata: []byte{}, Assignment: []byte{}}
		if stable {
			md.Metadata, md.Assignment = nonNil(m.metadata(g.protocol)), nonNil(m.assignment)
		}
		d.Members = append(d.Members, md)
	}
	return d
}

// List handles ListGroups for this shard's groups.
func (s *Shard) List(now time.Time, r ListRequest, reply func(ListResult)) Output {
	s.begin(now)
	res := s.list(r)
	s.out.Replies = append(s.out.Replies, func() { reply(res) })
	return s.end()
}

func (s *Shard) list(r ListRequest) ListResult {
	if err := s.ready(); err != nil {
		return ListResult{Err: err}
	}
	states := map[string]bool{}
	for _, st := range r.States {
		states[strings.ToLower(strings.TrimSpace(st))] = true
	}
	types := map[string]bool{}
	for _, t := range r.Types {
		types[strings.ToLower(strings.TrimSpace(t))] = true
	}
	out := []Listing{}
	for _, id := range s.sortedGroups() {
		g := s.groups[id]
		if g.cg != nil {
			st := g.cg.state()
			if len(states) > 0 && !states[strings.ToLower(st)] || len(types) > 0 && !types["consumer"] {
				continue
			}
			out = append(out, Listing{Group: id, ProtocolType: ConsumerProtocolType, State: st, Type: "consumer"})
			continue
		}
		if len(states) > 0 && !states[strings.ToLower(g.state.String())] || len(types) > 0 && !types["classic"] {
			continue
		}
		out = append(out, Listing{Group: id, ProtocolType: g.protocolType, State: g.state.String(), Type: "classic"})
	}
	return ListResult{Groups: out}
}

// Delete handles one group of a DeleteGroups: an empty group's offsets and
// metadata are tombstoned, answered once durable.
func (s *Shard) Delete(now time.Time, group string, reply func(error)) Output {
	s.begin(now)
	s.deleteGroup(group, reply)
	return s.end()
}

func (s *Shard) deleteGroup(id string, reply func(error)) {
	if err := s.ready(); err != nil {
		s.replyErr(reply, err)
		return
	}
	g := s.groups[id]
	switch {
	case g == nil:
		s.replyErr(reply, kerr.GroupIDNotFound)
		return
	case g.state != Empty:
		s.replyErr(reply, kerr.NonEmptyGroup)
		return
	}
	tps := make([]TopicPartition, 0, len(g.offsets))
	for tp := range g.offsets {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(a, b TopicPartition) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	recs := make([]Record, 0, len(tps)+1)
	for _, tp := range tps {
		recs = append(recs, Record{Key: offsetKey(id, tp)})
	}
	recs = append(recs, Record{Key: groupKey(id)})
	delete(s.groups, id)
	s.appendRecords(recs, func(err error) { s.replyErr(reply, groupStoreError(err)) })
}

func (s *Shard) sortedGroups() []string {
	ids := make([]string, 0, len(s.groups))
	for id := range s.groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// ---- Loading ----------------------------------------------------------------

// Replay applies one record of the shard's partition, read back in log
// order while loading. Records of kinds not served yet (KIP-848) are
// skipped; an undecodable record is an error (wrapping ErrBadRecord) and
// changes nothing.
func (s *Shard) Replay(key, value []byte) error {
	d, err := decodeRecord(key, value)
	if err != nil {
		return err
	}
	switch d.kind {
	case recordOffset:
		g := s.groups[d.group]
		if d.offset == nil {
			if g != nil {
				delete(g.offsets, d.tp)
				if g.blank() && len(g.offsets) == 0 {
					delete(s.groups, d.group)
				}
			}
			return nil
		}
		if g == nil {
			g = newGroup(d.group, time.Time{})
			s.groups[d.group] = g
		}
		o := *d.offset
		o.order = s.nextOrder()
		g.offsets[d.tp] = o
	case recordGroup:
		g := s.groups[d.group]
		if d.meta == nil {
			if g == nil {
				return nil
			}
			if len(g.offsets) == 0 {
				delete(s.groups, d.group)
				return nil
			}
			// The offsets stay: they have their own tombstones.
			offsets := g.offsets
			g = newGroup(d.group, time.Time{})
			g.offsets = offsets
			s.groups[d.group] = g
			return nil
		}
		ng := newGroup(d.group, time.Time{})
		if g != nil {
			ng.offsets = g.offsets
		}
		s.groups[d.group] = ng
		loadGroupValue(ng, d.meta)
	}
	return nil
}

// Loaded ends loading: members loaded from the log get a session timeout
// from now to show up, and the shard starts serving.
func (s *Shard) Loaded(now time.Time) Output {
	s.begin(now)
	s.loaded = true
	for _, id := range s.sortedGroups() {
		g := s.groups[id]
		g.computeSubscribed()
		for _, mid := range g.order {
			m := g.members[mid]
			s.scheduleHeartbeat(g, m, ms(m.sessionTimeout))
		}
	}
	return s.end()
}

// Abort answers everything parked (joins, syncs, appends awaiting
// durability) with err: the shard is going away.
func (s *Shard) Abort(now time.Time, err error) Output {
	s.begin(now)
	for _, p := range s.appends {
		p.done(err)
	}
	s.appends = nil
	for _, id := range s.sortedGroups() {
		g := s.groups[id]
		for _, mid := range g.order {
			m := g.members[mid]
			if m.join != nil {
				join := m.join
				g.setJoin(m, nil)
				s.replyJoin(join, JoinResult{Err: err, MemberID: mid, Generation: -1})
			}
			if m.sync != nil {
				sync := m.sync
				m.sync = nil
				s.replySync(sync, SyncResult{Err: err})
			}
		}
	}
	s.unavailable = err
	return s.end()
}
