package group

import (
	"bytes"
	"encoding/binary"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// State is a classic group's state, named as Kafka names it (DescribeGroups
// and ListGroups show these names).
type State int8

// The states of a classic group (Kafka's ClassicGroupState).
const (
	// Empty: no members; offsets may still be committed (simple consumers)
	// and expire after offsets.retention.minutes.
	Empty State = iota
	// PreparingRebalance: members are (re)joining; JoinGroup requests are
	// parked until everyone rejoined or the rebalance timeout passed.
	PreparingRebalance
	// CompletingRebalance: the new generation is out; waiting for the
	// leader's assignment in SyncGroup.
	CompletingRebalance
	// Stable: the assignment is handed out; members heartbeat.
	Stable
	// Dead: the group is gone (never stored in a Shard's map).
	Dead
)

var stateNames = [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return "Unknown"
	}
	return stateNames[s]
}

// ConsumerProtocolType is the protocol type of Kafka consumers; their
// member metadata names the subscribed topics.
const ConsumerProtocolType = "consumer"

// Protocol is one assignment protocol a member supports, with its metadata
// (for consumers, the subscription).
type Protocol struct {
	Name     string
	Metadata []byte
}

// TopicPartition names a partition whose offset is committed.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// offset is a committed offset.
type offset struct {
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	CommitTime  time.Time
	ExpireTime  time.Time // zero: expires by offsets.retention.minutes
	// order is when the commit's record was appended, in the shard's log
	// order (Shard.nextOrder): a transaction's offset applies at its
	// commit marker only over an older one, as Kafka's does.
	order uint64
}

// member is one member of a classic group.
type member struct {
	id         string
	instanceID *string // static membership (KIP-345)
	clientID   string
	clientHost string
	// sessionTimeout and rebalanceTimeout in milliseconds, as sent.
	sessionTimeout   int32
	rebalanceTimeout int32
	protocolType     string
	protocols        []Protocol // in the member's order of preference
	assignment       []byte
	// isNew: joined in the current rebalance; expires after the new
	// member join timeout even while its JoinGroup is parked.
	isNew bool
	// join and sync are the parked JoinGroup and SyncGroup replies.
	join func(JoinResult)
	sync func(SyncResult)
	// timer is the member's heartbeat deadline (0: none).
	timer uint64
}

func (m *member) awaitingJoin() bool { return m.join != nil }
func (m *member) awaitingSync() bool { return m.sync != nil }

// metadata is the member's metadata for protocol.
func (m *member) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

// matches says whether protocols are exactly what the member joined with.
func (m *member) matches(protocols []Protocol) bool {
	if len(protocols) != len(m.protocols) {
		return false
	}
	for i := range protocols {
		if protocols[i].Name != m.protocols[i].Name || !bytes.Equal(protocols[i].Metadata, m.protocols[i].Metadata) {
			return false
		}
	}
	return true
}

// vote is the member's most preferred protocol among candidates.
func (m *member) vote(candidates map[string]bool) string {
	for _, p := range m.protocols {
		if candidates[p.Name] {
			return p.Name
		}
	}
	return ""
}

// group is one classic group and its committed offsets. It is owned by the
// Shard that holds it.
type group struct {
	id         string
	state      State
	prevState  State
	stateTime  time.Time // when the current state began (zero: unknown)
	generation int32
	// protocolType is set by the first member and kept while Empty;
	// "" for a group that only stores offsets (simple consumers).
	protocolType string
	protocol     string // the selected protocol; "" when Empty
	leader       string

	members map[string]*member
	order   []string          // member ids in join order (Kafka keeps insertion order)
	static  map[string]string // group.instance.id -> member id
	// pending are member ids handed out with MEMBER_ID_REQUIRED that have
	// not joined yet, with their session timer.
	pending map[string]uint64
	// pendingSync are members of the new generation that have not sent
	// SyncGroup yet.
	pendingSync  map[string]bool
	supported    map[string]int // protocol name -> members supporting it
	awaitingJoin int

	// The join timer ends PreparingRebalance. joinInitial marks the
	// initial delay of a new group (group.initial.rebalance.delay.ms),
	// which nothing completes early; joinDelay and joinRemaining are its
	// current delay and what is left of the rebalance timeout.
	joinTimer      uint64
	joinInitial    bool
	joinDelay      time.Duration
	joinRemaining  time.Duration
	newMemberAdded bool
	syncTimer      uint64

	// subscribed is the union of the consumer members' subscriptions
	// when known (consumer protocol, metadata parsed), for offset expiry
	// and OffsetDelete.
	subscribed map[string]bool

	offsets        map[TopicPartition]offset
	pendingCommits int // commits appended but not yet durable

	// cg is set for a consumer group (KIP-848, see consumer.go).
	cg *consumerGroup
}

func newGroup(id string, now time.Time) *group {
	return &group{
		id: id, state: Empty, prevState: Empty, stateTime: now,
		members: map[string]*member{}, static: map[string]string{}, pending: map[string]uint64{},
		pendingSync: map[string]bool{}, supported: map[string]int{}, offsets: map[TopicPartition]offset{},
	}
}

func (g *group) transition(s State, now time.Time) {
	g.prevState, g.state, g.stateTime = g.state, s, now
}

// canRebalance: a join or leave in these states starts a rebalance.
func (g *group) canRebalance() bool {
	return g.state == Stable || g.state == CompletingRebalance || g.state == Empty
}

// hasAllMembersJoined: every member is parked in JoinGroup and no member
// id handed out with MEMBER_ID_REQUIRED is still to come.
func (g *group) hasAllMembersJoined() bool {
	return len(g.members) == g.awaitingJoin && len(g.pending) == 0
}

// rebalanceTimeout is the longest of the members' rebalance timeouts.
func (g *group) rebalanceTimeout() time.Duration {
	var ms int32
	for _, m := range g.members {
		ms = max(ms, m.rebalanceTimeout)
	}
	return time.Duration(ms) * time.Millisecond
}

// supportsProtocols says whether a member joining with protocolType and
// protocols fits the group: any non-empty protocol set fits a group with
// no members; otherwise the type must match and one of the protocols must
// be supported by every member.
func (g *group) supportsProtocols(protocolType string, protocols []Protocol) bool {
	if len(g.members) == 0 {
		return protocolType != "" && len(protocols) > 0
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		if g.supported[p.Name] == len(g.members) {
			return true
		}
	}
	return false
}

// selectProtocol picks the protocol of the next generation as Kafka does:
// the candidates are the protocols every member supports, each member votes
// for the first candidate in its own preference order, and the most votes
// win. Ties go to the leader's (else the first member's) preference, so the
// choice is deterministic.
func (g *group) selectProtocol() string {
	candidates := map[string]bool{}
	for name, n := range g.supported {
		if n == len(g.members) {
			candidates[name] = true
		}
	}
	votes := map[string]int{}
	for _, id := range g.order {
		votes[g.members[id].vote(candidates)]++
	}
	first := g.leader
	if _, ok := g.members[first]; !ok && len(g.order) > 0 {
		first = g.order[0]
	}
	best, bestVotes := "", -1
	if m := g.members[first]; m != nil {
		for _, p := range m.protocols {
			if candidates[p.Name] && votes[p.Name] > bestVotes {
				best, bestVotes = p.Name, votes[p.Name]
			}
		}
	}
	return best
}

// add adds m (its join, if any, parked).
func (g *group) add(m *member) {
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	g.members[m.id] = m
	g.order = append(g.order, m.id)
	for _, p := range m.protocols {
		g.supported[p.Name]++
	}
	if m.awaitingJoin() {
		g.awaitingJoin++
	}
	if m.instanceID != nil {
		g.static[*m.instanceID] = m.id
	}
	if g.leader == "" {
		g.leader = m.id
	}
	delete(g.pending, m.id)
}

// remove drops member id from the group and every set it is in. The
// leader passes to the first remaining member.
func (g *group) remove(id string) {
	m, ok := g.members[id]
	if ok {
		delete(g.members, id)
		if i := slices.Index(g.order, id); i >= 0 {
			g.order = slices.Delete(g.order, i, i+1)
		}
		for _, p := range m.protocols {
			if g.supported[p.Name]--; g.supported[p.Name] <= 0 {
				delete(g.supported, p.Name)
			}
		}
		if m.awaitingJoin() {
			g.awaitingJoin--
		}
		if m.instanceID != nil && g.static[*m.instanceID] == id {
			delete(g.static, *m.instanceID)
		}
		m.timer = 0
	}
	if g.leader == id {
		g.leader = ""
		if len(g.order) > 0 {
			g.leader = g.order[0]
		}
	}
	delete(g.pending, id)
	delete(g.pendingSync, id)
}

// update replaces a member's protocols and timeouts, and its parked join.
func (g *group) update(m *member, protocols []Protocol, rebalanceTimeout, sessionTimeout int32, join func(JoinResult)) {
	for _, p := range m.protocols {
		if g.supported[p.Name]--; g.supported[p.Name] <= 0 {
			delete(g.supported, p.Name)
		}
	}
	m.protocols = protocols
	for _, p := range m.protocols {
		g.supported[p.Name]++
	}
	m.rebalanceTimeout, m.sessionTimeout = rebalanceTimeout, sessionTimeout
	switch {
	case join != nil && !m.awaitingJoin():
		g.awaitingJoin++
	case join == nil && m.awaitingJoin():
		g.awaitingJoin--
	}
	m.join = join
}

// setJoin parks (or, with nil, clears) a member's join reply.
func (g *group) setJoin(m *member, join func(JoinResult)) {
	switch {
	case join != nil && !m.awaitingJoin():
		g.awaitingJoin++
	case join == nil && m.awaitingJoin():
		g.awaitingJoin--
	}
	m.join = join
}

// validateMember checks a request's member id and group.instance.id: a
// static member must be the current holder of its instance id
// (FENCED_INSTANCE_ID otherwise), a dynamic one must be a member.
func (g *group) validateMember(memberID string, instanceID *string) error {
	if instanceID != nil {
		cur, ok := g.static[*instanceID]
		if !ok {
			return kerr.UnknownMemberID
		}
		if cur != memberID {
			return kerr.FencedInstanceID
		}
		return nil
	}
	if _, ok := g.members[memberID]; !ok {
		return kerr.UnknownMemberID
	}
	return nil
}

// validateOffsetCommit is Kafka's ClassicGroup.validateOffsetCommit.
func (g *group) validateOffsetCommit(memberID string, instanceID *string, generation int32, v9 bool) error {
	if g.cg != nil {
		return g.cg.validateCommit(memberID, generation, v9)
	}
	if generation < 0 && g.state == Empty {
		// Admin clients and consumers that assign partitions themselves.
		return nil
	}
	if generation >= 0 || memberID != "" || instanceID != nil {
		if err := g.validateMember(memberID, instanceID); err != nil {
			return err
		}
		if generation != g.generation {
			return kerr.IllegalGeneration
		}
	} else if g.state != Empty {
		// Without member id and generation, only an empty group takes commits.
		return kerr.UnknownMemberID
	}
	if g.state == CompletingRebalance {
		// The member has its new generation from JoinGroup but not its
		// assignment yet: let it finish the rebalance first.
		return kerr.RebalanceInProgress
	}
	return nil
}

// blank: the group holds nothing but, maybe, offsets (no metadata).
func (g *group) blank() bool {
	return g.protocolType == "" && g.generation == 0 && len(g.members) == 0 && len(g.pending) == 0
}

// computeSubscribed sets the subscribed topics from the consumer members'
// metadata, as Kafka's computeSubscribedTopics does: known (possibly
// empty) for a consumer group whose metadata all parses, unknown
// otherwise.
func (g *group) computeSubscribed() {
	g.subscribed = nil
	if g.protocolType != ConsumerProtocolType {
		return
	}
	if len(g.members) == 0 {
		g.subscribed = map[string]bool{}
		return
	}
	if g.protocol == "" {
		return
	}
	subs := map[string]bool{}
	for _, m := range g.members {
		topics, ok := parseSubscription(m.metadata(g.protocol))
		if !ok {
			return
		}
		for _, t := range topics {
			subs[t] = true
		}
	}
	g.subscribed = subs
}

// parseSubscription reads the topics of a ConsumerProtocolSubscription:
// the version and topic list prefix shared by every version.
func parseSubscription(b []byte) ([]string, bool) {
	if len(b) < 6 {
		return nil, false
	}
	n := int32(binary.BigEndian.Uint32(b[2:]))
	b = b[6:]
	if n < 0 || int(n) > len(b)/2 {
		return nil, false
	}
	topics := make([]string, 0, n)
	for range n {
		if len(b) < 2 {
			return nil, false
		}
		l := int(int16(binary.BigEndian.Uint16(b)))
		if l < 0 || len(b) < 2+l {
			return nil, false
		}
		topics = append(topics, string(b[2:2+l]))
		b = b[2+l:]
	}
	return topics, true
}

// replace puts nm in the place of member oldID (a static member's new
// member id): same position, leadership, instance id and pending sync.
func (g *group) replace(oldID string, nm *member) {
	old := g.members[oldID]
	delete(g.members, oldID)
	old.timer = 0
	g.members[nm.id] = nm
	if i := slices.Index(g.order, oldID); i >= 0 {
		g.order[i] = nm.id
	}
	if nm.instanceID != nil {
		g.static[*nm.instanceID] = nm.id
	}
	if g.leader == oldID {
		g.leader = nm.id
	}
	if g.pendingSync[oldID] {
		delete(g.pendingSync, oldID)
		g.pendingSync[nm.id] = true
	}
}
