package group

// The next-generation consumer group protocol (KIP-848): members send
// ConsumerGroupHeartbeat, the coordinator computes the target assignment
// with a server-side assignor (uniform or range) whenever the group epoch
// moves (a member joins, leaves, changes its subscription, or a subscribed
// topic changes), and hands each member its partitions as the previous
// owners release them: a partition is revoked from its old owner (the old
// owner heartbeats without it) before it is assigned to its new one.
//
// A consumer group is a group with cg set: its committed offsets are the
// group's offsets (records in Kafka's format, so they survive a restart);
// its members, epochs and assignment are kept in memory only, so after a
// restart members get UNKNOWN_MEMBER_ID, rejoin with epoch 0, and resume
// at the committed offsets.

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The server-side assignors, by the name a member asks for.
const (
	AssignorUniform = "uniform"
	AssignorRange   = "range"
)

// Kafka's defaults for the consumer group configs.
const (
	defaultConsumerSessionTimeout    = 45 * time.Second
	defaultConsumerHeartbeatInterval = 5 * time.Second
)

// ConsumerHeartbeatRequest is a ConsumerGroupHeartbeat, with topics named.
type ConsumerHeartbeatRequest struct {
	Group       string
	MemberID    string
	MemberEpoch int32
	InstanceID  *string
	RackID      *string
	// RebalanceTimeoutMs is -1 when unchanged.
	RebalanceTimeoutMs int32
	// SubscribedTopics, SubscribedRegex and ServerAssignor are nil when
	// unchanged.
	SubscribedTopics []string
	SubscribedRegex  *string
	ServerAssignor   *string
	// Owned is the member's partitions; OwnedKnown is false when the
	// request leaves them unchanged (null).
	Owned      []TopicPartition
	OwnedKnown bool
	ClientID   string
	ClientHost string
	// ClientMemberID (v1+): the client generates its member id, so an
	// empty one is INVALID_REQUEST even when joining.
	ClientMemberID bool
	// Topics is the partition count of every topic, for assignment.
	Topics map[string]int32
}

// ConsumerHeartbeatResult answers a ConsumerGroupHeartbeat.
type ConsumerHeartbeatResult struct {
	Err               error
	ErrMessage        string
	MemberID          string
	MemberEpoch       int32
	HeartbeatInterval int32
	// Assignment is sent when HasAssignment.
	Assignment    []TopicPartition
	HasAssignment bool
}

// ConsumerDescription answers one group of a ConsumerGroupDescribe.
type ConsumerDescription struct {
	Group           string
	Err             error
	State           string
	Epoch           int32
	AssignmentEpoch int32
	Assignor        string
	Members         []ConsumerMemberDescription
}

// ConsumerMemberDescription is one member of a ConsumerDescription.
type ConsumerMemberDescription struct {
	MemberID        string
	InstanceID      *string
	RackID          *string
	MemberEpoch     int32
	ClientID        string
	ClientHost      string
	Subscribed      []string
	SubscribedRegex *string
	Assigned        []TopicPartition
	Target          []TopicPartition
}

type tpSet map[TopicPartition]bool

func (s tpSet) sorted() []TopicPartition {
	out := make([]TopicPartition, 0, len(s))
	for tp := range s {
		out = append(out, tp)
	}
	slices.SortFunc(out, cmpTP)
	return out
}

func cmpTP(a, b TopicPartition) int {
	return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
}

// consumerGroup is the KIP-848 state of a group.
type consumerGroup struct {
	epoch           int32
	assignmentEpoch int32
	members         map[string]*cmember
	static          map[string]string // group.instance.id -> member id
	target          map[string]tpSet  // member id -> target assignment
	assignor        string
	topicsSig       string // subscribed topics and partition counts at the last assignment
}

// cmember is one member of a consumer group.
type cmember struct {
	id               string
	instanceID       *string
	rackID           *string
	clientID         string
	clientHost       string
	epoch            int32
	prevEpoch        int32
	rebalanceTimeout int32
	subscribed       []string
	regex            *string
	assignor         string
	resolved         []string // subscribed topics that exist, with the regex's matches
	assigned         tpSet
	revoking         tpSet
	timer            uint64
	revokeTimer      uint64 // the rebalance timeout of a pending revocation
	left             bool   // a static member that left with epoch -2
	sent             string // the last assignment sent
}

func newConsumerGroup() *consumerGroup {
	return &consumerGroup{members: map[string]*cmember{}, static: map[string]string{}, target: map[string]tpSet{}}
}

func (s *Shard) replyConsumer(reply func(ConsumerHeartbeatResult), res ConsumerHeartbeatResult) {
	s.out.Replies = append(s.out.Replies, func() { reply(res) })
}

// ConsumerHeartbeat handles a ConsumerGroupHeartbeat.
func (s *Shard) ConsumerHeartbeat(now time.Time, r ConsumerHeartbeatRequest, reply func(ConsumerHeartbeatResult)) Output {
	s.begin(now)
	res := s.consumerHeartbeat(r)
	if res.Err != nil {
		res.MemberID, res.MemberEpoch = r.MemberID, r.MemberEpoch
	}
	s.replyConsumer(reply, res)
	return s.end()
}

func consumerFail(err error, msg string) ConsumerHeartbeatResult {
	return ConsumerHeartbeatResult{Err: err, ErrMessage: msg}
}

func (s *Shard) consumerHeartbeat(r ConsumerHeartbeatRequest) ConsumerHeartbeatResult {
	if err := s.ready(); err != nil {
		return consumerFail(err, "")
	}
	// Kafka's request validation.
	switch {
	case r.Group == "":
		return consumerFail(kerr.InvalidRequest, "GroupId can't be empty.")
	case r.InstanceID != nil && *r.InstanceID == "":
		return consumerFail(kerr.InvalidRequest, "InstanceId can't be empty.")
	case r.MemberEpoch == 0 && r.RebalanceTimeoutMs <= 0:
		return consumerFail(kerr.InvalidRequest, "RebalanceTimeoutMs must be provided in first request.")
	case r.MemberEpoch == 0 && r.OwnedKnown && len(r.Owned) > 0:
		return consumerFail(kerr.InvalidRequest, "TopicPartitions must be empty when (re-)joining.")
	case r.MemberEpoch == 0 && r.SubscribedTopics == nil && r.SubscribedRegex == nil:
		return consumerFail(kerr.InvalidRequest, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
	case (r.MemberEpoch != 0 || r.ClientMemberID) && r.MemberID == "":
		return consumerFail(kerr.InvalidRequest, "MemberId can't be empty.")
	case r.MemberEpoch == -2 && r.InstanceID == nil:
		return consumerFail(kerr.InvalidRequest, "InstanceId can't be null when leaving with epoch -2.")
	case r.MemberEpoch < -2:
		return consumerFail(kerr.InvalidRequest, fmt.Sprintf("MemberEpoch is invalid: %d.", r.MemberEpoch))
	}
	if r.ServerAssignor != nil && *r.ServerAssignor != AssignorUniform && *r.ServerAssignor != AssignorRange {
		return consumerFail(kerr.UnsupportedAssignor, fmt.Sprintf("ServerAssignor %s is not supported. Supported assignors: uniform, range.", *r.ServerAssignor))
	}
	if r.SubscribedRegex != nil {
		if _, err := regexp.Compile(*r.SubscribedRegex); err != nil {
			return consumerFail(kerr.InvalidRegularExpression, err.Error())
		}
	}
	g := s.groups[r.Group]
	switch {
	case g == nil:
		if r.MemberEpoch != 0 {
			return consumerFail(kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", r.MemberID, r.Group))
		}
		g = newGroup(r.Group, s.now)
		g.protocolType = ConsumerProtocolType
		g.cg = newConsumerGroup()
		s.groups[r.Group] = g
	case g.cg == nil:
		if len(g.members) > 0 || len(g.pending) > 0 || g.state != Empty {
			return consumerFail(kerr.GroupIDNotFound, fmt.Sprintf("Group %s is not a consumer group.", r.Group))
		}
		if r.MemberEpoch != 0 {
			return consumerFail(kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", r.MemberID, r.Group))
		}
		// An empty classic group (or one with only offsets) becomes a
		// consumer group, keeping its offsets.
		g.protocolType = ConsumerProtocolType
		g.protocol = ""
		g.cg = newConsumerGroup()
	}
	cg := g.cg
	switch r.MemberEpoch {
	case -1, -2:
		m := cg.members[r.MemberID]
		if m == nil {
			return consumerFail(kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", r.MemberID, r.Group))
		}
		if r.InstanceID != nil && (m.instanceID == nil || *m.instanceID != *r.InstanceID) {
			return consumerFail(kerr.FencedInstanceID, "")
		}
		if r.MemberEpoch == -2 {
			// A static member leaving to come back: its assignment stays
			// reserved until its session times out.
			m.left = true
			m.timer = s.scheduleConsumer(g, m.id, s.cfg.ConsumerSessionTimeout)
			return ConsumerHeartbeatResult{MemberID: m.id, MemberEpoch: -2}
		}
		s.removeConsumerMember(g, m)
		return ConsumerHeartbeatResult{MemberID: m.id, MemberEpoch: -1}
	}

	var m *cmember
	joining, replaced := r.MemberEpoch == 0, false
	if joining {
		id := r.MemberID
		if id == "" {
			id = s.cfg.NewMemberID("", nil)[1:] // a bare UUID
		}
		if r.InstanceID != nil {
			if oldID, ok := cg.static[*r.InstanceID]; ok && oldID != id {
				old := cg.members[oldID]
				if old != nil && !old.left {
					return consumerFail(kerr.UnreleasedInstanceID, fmt.Sprintf("Static member %s with instance id %s is still in use.", oldID, *r.InstanceID))
				}
				if old != nil {
					// The new member takes over the static member's
					// place: its epoch and assignment.
					delete(cg.members, oldID)
					old.id, old.left, old.timer = id, false, 0
					old.sent = ""
					cg.members[id] = old
					if t, ok := cg.target[oldID]; ok {
						delete(cg.target, oldID)
						cg.target[id] = t
					}
					m, replaced = old, true
				}
			}
		}
		if m == nil {
			m = cg.members[id]
		}
		if m == nil {
			if len(cg.members) >= s.cfg.MaxSize {
				return consumerFail(kerr.GroupMaxSizeReached, fmt.Sprintf("The consumer group has reached its maximum capacity of %d members.", s.cfg.MaxSize))
			}
			m = &cmember{id: id, assigned: tpSet{}, revoking: tpSet{}, assignor: AssignorUniform}
			cg.members[id] = m
			cg.epoch++
			if len(cg.members) == 1 {
				g.transition(Stable, s.now)
			}
		} else if !replaced {
			// A member rejoining from scratch owns nothing now.
			m.assigned, m.revoking, m.sent = tpSet{}, tpSet{}, ""
			m.epoch, m.prevEpoch = 0, 0
		}
		if r.InstanceID != nil {
			cg.static[*r.InstanceID] = m.id
			m.instanceID = r.InstanceID
		}
	} else {
		m = cg.members[r.MemberID]
		if m == nil {
			return consumerFail(kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", r.MemberID, r.Group))
		}
		if r.MemberEpoch != m.epoch {
			if r.MemberEpoch != m.prevEpoch || !r.OwnedKnown || !ownedWithin(r.Owned, m.assigned) {
				return consumerFail(kerr.FencedMemberEpoch, fmt.Sprintf("The consumer group member has a smaller member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", r.MemberEpoch, m.epoch))
			}
		}
	}

	// Update the member; a change of what it subscribes to or of its
	// assignor moves the group epoch.
	if r.RebalanceTimeoutMs > 0 {
		m.rebalanceTimeout = r.RebalanceTimeoutMs
	}
	if r.RackID != nil {
		m.rackID = r.RackID
	}
	if r.ClientID != "" || joining {
		m.clientID, m.clientHost = r.ClientID, r.ClientHost
	}
	changed := false
	if r.SubscribedTopics != nil {
		subs := slices.Clone(r.SubscribedTopics)
		slices.Sort(subs)
		subs = slices.Compact(subs)
		if !slices.Equal(subs, m.subscribed) {
			m.subscribed, changed = subs, true
		}
	}
	if r.SubscribedRegex != nil {
		if m.regex == nil || *m.regex != *r.SubscribedRegex {
			v := *r.SubscribedRegex
			if v == "" {
				m.regex = nil
			} else {
				m.regex = &v
			}
			changed = true
		}
	}
	if r.ServerAssignor != nil && *r.ServerAssignor != m.assignor {
		m.assignor, changed = *r.ServerAssignor, true
	}
	if resolved := resolveSubscription(m, r.Topics); !slices.Equal(resolved, m.resolved) {
		m.resolved, changed = resolved, true
	}
	if changed && !joining {
		cg.epoch++
	}
	if joining && !replaced && cg.epoch == cg.assignmentEpoch {
		cg.epoch++
	}
	if sig := cg.topicsSignature(r.Topics); sig != cg.topicsSig {
		if cg.topicsSig != "" && cg.epoch == cg.assignmentEpoch {
			cg.epoch++
		}
		cg.topicsSig = sig
	}
	if cg.epoch > cg.assignmentEpoch {
		s.computeTargetAssignment(g, r.Topics)
	}
	if cg.reconcile(m, r.Owned, r.OwnedKnown) {
		// A member that does not revoke within its rebalance timeout
		// is removed, as Kafka fences it.
		m.revokeTimer = s.schedule(timerConsumerRevoke, g, m.id, ms(max(m.rebalanceTimeout, 1)))
	}
	m.timer = s.scheduleConsumer(g, m.id, s.cfg.ConsumerSessionTimeout)

	res := ConsumerHeartbeatResult{MemberID: m.id, MemberEpoch: m.epoch, HeartbeatInterval: int32(s.cfg.ConsumerHeartbeatInterval / time.Millisecond)}
	assigned := m.assigned.sorted()
	sig := fmt.Sprint(assigned)
	if joining || sig != m.sent || r.OwnedKnown && !sameTPs(r.Owned, assigned) {
		res.Assignment, res.HasAssignment = assigned, true
		m.sent = sig
	}
	return res
}

func ownedWithin(owned []TopicPartition, assigned tpSet) bool {
	for _, tp := range owned {
		if !assigned[tp] {
			return false
		}
	}
	return true
}

func sameTPs(owned []TopicPartition, assigned []TopicPartition) bool {
	o := slices.Clone(owned)
	slices.SortFunc(o, cmpTP)
	o = slices.Compact(o)
	return slices.Equal(o, assigned)
}

// resolveSubscription is the member's subscribed topics that exist.
func resolveSubscription(m *cmember, topics map[string]int32) []string {
	set := map[string]bool{}
	for _, t := range m.subscribed {
		if _, ok := topics[t]; ok {
			set[t] = true
		}
	}
	if m.regex != nil {
		// As Kafka (RE2J's matches()): the whole topic name must match,
		// internal topics included.
		if re, err := regexp.Compile("^(?:" + *m.regex + ")$"); err == nil {
			for t := range topics {
				if re.MatchString(t) {
					set[t] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// topicsSignature names the group's subscribed topics with their
// partition counts: when it changes, so must the assignment.
func (cg *consumerGroup) topicsSignature(topics map[string]int32) string {
	set := map[string]bool{}
	for _, m := range cg.members {
		for _, t := range m.subscribed {
			set[t] = true
		}
		for _, t := range m.resolved {
			set[t] = true
		}
	}
	names := make([]string, 0, len(set))
	for t := range set {
		names = append(names, t)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, t := range names {
		fmt.Fprintf(&b, "%s:%d,", t, topics[t])
	}
	return b.String()
}

// groupAssignor is the assignor most members ask for (uniform on a tie).
func (cg *consumerGroup) groupAssignor() string {
	n := map[string]int{}
	for _, m := range cg.members {
		n[m.assignor]++
	}
	if n[AssignorRange] > n[AssignorUniform] {
		return AssignorRange
	}
	return AssignorUniform
}

// computeTargetAssignment assigns the subscribed partitions to the members
// for the current group epoch.
func (s *Shard) computeTargetAssignment(g *group, topics map[string]int32) {
	cg := g.cg
	for _, m := range cg.members {
		m.resolved = resolveSubscription(m, topics)
	}
	cg.topicsSig = cg.topicsSignature(topics)
	ids := make([]string, 0, len(cg.members))
	for id := range cg.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	cg.assignor = cg.groupAssignor()
	if cg.assignor == AssignorRange {
		cg.target = assignRange(ids, cg.members, topics)
	} else {
		cg.target = assignUniform(ids, cg.members, topics, cg.target)
	}
	cg.assignmentEpoch = cg.epoch
	// The group's subscriptions, for offset expiry.
	g.subscribed = map[string]bool{}
	for _, m := range cg.members {
		for _, t := range m.resolved {
			g.subscribed[t] = true
		}
	}
}

// assignRange gives each member, per topic, a contiguous range of
// partitions: the first members (by id) one more when they do not divide.
func assignRange(ids []string, members map[string]*cmember, topics map[string]int32) map[string]tpSet {
	out := map[string]tpSet{}
	for _, id := range ids {
		out[id] = tpSet{}
	}
	byTopic := map[string][]string{}
	for _, id := range ids {
		for _, t := range members[id].resolved {
			byTopic[t] = append(byTopic[t], id)
		}
	}
	for t, subs := range byTopic {
		n := int(topics[t])
		per, extra := n/len(subs), n%len(subs)
		p := 0
		for i, id := range subs {
			k := per
			if i < extra {
				k++
			}
			for j := 0; j < k; j++ {
				out[id][TopicPartition{t, int32(p)}] = true
				p++
			}
		}
	}
	return out
}

// assignUniform spreads the partitions evenly, keeping each where the
// previous target had it as far as balance allows (sticky).
func assignUniform(ids []string, members map[string]*cmember, topics map[string]int32, prev map[string]tpSet) map[string]tpSet {
	out := map[string]tpSet{}
	subscribed := map[string]map[string]bool{} // topic -> members
	active := 0
	for _, id := range ids {
		out[id] = tpSet{}
		if len(members[id].resolved) > 0 {
			active++
		}
		for _, t := range members[id].resolved {
			if subscribed[t] == nil {
				subscribed[t] = map[string]bool{}
			}
			subscribed[t][id] = true
		}
	}
	if active == 0 {
		return out
	}
	var parts []TopicPartition
	for t := range subscribed {
		for p := int32(0); p < topics[t]; p++ {
			parts = append(parts, TopicPartition{t, p})
		}
	}
	slices.SortFunc(parts, cmpTP)
	prevOwner := map[TopicPartition]string{}
	for id, set := range prev {
		for tp := range set {
			prevOwner[tp] = id
		}
	}
	minQ, extra := len(parts)/active, len(parts)%active
	taken := map[TopicPartition]bool{}
	// Keep up to the minimum quota, then one more for as many members as
	// the remainder allows.
	for pass := 0; pass < 2; pass++ {
		for _, tp := range parts {
			id, ok := prevOwner[tp]
			if !ok || taken[tp] || !subscribed[tp.Topic][id] {
				continue
			}
			switch {
			case len(out[id]) < minQ:
			case pass == 1 && len(out[id]) == minQ && extra > 0:
				extra--
			default:
				continue
			}
			out[id][tp] = true
			taken[tp] = true
		}
	}
	// The rest to the least loaded subscribed member.
	for _, tp := range parts {
		if taken[tp] {
			continue
		}
		best := ""
		for _, id := range ids {
			if subscribed[tp.Topic][id] && (best == "" || len(out[id]) < len(out[best])) {
				best = id
			}
		}
		out[best][tp] = true
	}
	return out
}

// reconcile moves the member towards its target assignment, Kafka's
// CurrentAssignmentBuilder: partitions it must give up are revoked first
// (its epoch stays until it reports them gone); partitions still held by
// another member are assigned once released. It says whether a
// revocation began.
func (cg *consumerGroup) reconcile(m *cmember, owned []TopicPartition, ownedKnown bool) bool {
	if len(m.revoking) > 0 {
		if !ownedKnown {
			return false
		}
		for _, tp := range owned {
			if m.revoking[tp] {
				return false
			}
		}
		m.revoking, m.revokeTimer = tpSet{}, 0
	}
	target := cg.target[m.id]
	revoke := tpSet{}
	for tp := range m.assigned {
		if !target[tp] {
			revoke[tp] = true
		}
	}
	if len(revoke) > 0 {
		for tp := range revoke {
			delete(m.assigned, tp)
		}
		m.revoking = revoke
		return true
	}
	held := map[TopicPartition]bool{}
	for id, o := range cg.members {
		if id == m.id {
			continue
		}
		for tp := range o.assigned {
			held[tp] = true
		}
		for tp := range o.revoking {
			held[tp] = true
		}
	}
	for tp := range target {
		if !m.assigned[tp] && !held[tp] {
			m.assigned[tp] = true
		}
	}
	if m.epoch != cg.assignmentEpoch {
		m.prevEpoch, m.epoch = m.epoch, cg.assignmentEpoch
	}
	return false
}

// removeConsumerMember removes a member (left or expired) and computes the
// new target assignment.
func (s *Shard) removeConsumerMember(g *group, m *cmember) {
	cg := g.cg
	delete(cg.members, m.id)
	delete(cg.target, m.id)
	if m.instanceID != nil && cg.static[*m.instanceID] == m.id {
		delete(cg.static, *m.instanceID)
	}
	m.timer, m.revokeTimer = 0, 0
	cg.epoch++
	if len(cg.members) == 0 {
		cg.target = map[string]tpSet{}
		cg.assignmentEpoch = cg.epoch
		g.subscribed = map[string]bool{}
		g.transition(Empty, s.now)
		return
	}
	// The topics are as of the last assignment: recompute with them.
	s.computeTargetAssignment(g, cg.lastTopics())
}

// lastTopics is the partition counts recorded at the last assignment.
func (cg *consumerGroup) lastTopics() map[string]int32 {
	out := map[string]int32{}
	for _, e := range strings.Split(cg.topicsSig, ",") {
		i := strings.LastIndexByte(e, ':')
		if i < 0 {
			continue
		}
		var n int32
		fmt.Sscan(e[i+1:], &n)
		out[e[:i]] = n
	}
	return out
}

func (s *Shard) scheduleConsumer(g *group, memberID string, d time.Duration) uint64 {
	return s.schedule(timerConsumerSession, g, memberID, d)
}

// expireConsumerMember is a consumer member's session timeout.
func (s *Shard) expireConsumerMember(g *group, m *cmember) {
	s.removeConsumerMember(g, m)
}

// consumerState is the group's KIP-848 state name.
func (cg *consumerGroup) state() string {
	if len(cg.members) == 0 {
		return "Empty"
	}
	if cg.epoch > cg.assignmentEpoch {
		return "Assigning"
	}
	for _, m := range cg.members {
		if m.epoch != cg.assignmentEpoch || len(m.revoking) > 0 || len(m.assigned) != len(cg.target[m.id]) {
			return "Reconciling"
		}
	}
	return "Stable"
}

// validateConsumerCommit is Kafka's ConsumerGroup.validateOffsetCommit.
// v9 says whether the request is OffsetCommit v9+ (member epochs).
func (cg *consumerGroup) validateCommit(memberID string, epoch int32, v9 bool) error {
	if epoch < 0 && memberID == "" && len(cg.members) == 0 {
		return nil
	}
	m := cg.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID
	}
	if !v9 {
		return kerr.UnsupportedVersion
	}
	switch {
	case epoch > m.epoch:
		return kerr.FencedMemberEpoch
	case epoch < m.epoch:
		return kerr.StaleMemberEpoch
	}
	return nil
}

// ConsumerDescribe handles one group of a ConsumerGroupDescribe.
func (s *Shard) ConsumerDescribe(now time.Time, id string, reply func(ConsumerDescription)) Output {
	s.begin(now)
	d := s.consumerDescribe(id)
	s.out.Replies = append(s.out.Replies, func() { reply(d) })
	return s.end()
}

func (s *Shard) consumerDescribe(id string) ConsumerDescription {
	if err := s.ready(); err != nil {
		return ConsumerDescription{Group: id, Err: err}
	}
	g := s.groups[id]
	if g == nil || g.cg == nil {
		return ConsumerDescription{Group: id, Err: kerr.GroupIDNotFound}
	}
	cg := g.cg
	d := ConsumerDescription{Group: id, State: cg.state(), Epoch: cg.epoch, AssignmentEpoch: cg.assignmentEpoch,
		Assignor: cg.assignor, Members: []ConsumerMemberDescription{}}
	if d.Assignor == "" {
		d.Assignor = AssignorUniform
	}
	ids := make([]string, 0, len(cg.members))
	for mid := range cg.members {
		ids = append(ids, mid)
	}
	slices.Sort(ids)
	for _, mid := range ids {
		m := cg.members[mid]
		d.Members = append(d.Members, ConsumerMemberDescription{
			MemberID: m.id, InstanceID: m.instanceID, RackID: m.rackID, MemberEpoch: m.epoch,
			ClientID: m.clientID, ClientHost: m.clientHost, Subscribed: slices.Clone(m.subscribed), SubscribedRegex: m.regex,
			Assigned: m.assigned.sorted(), Target: cg.target[mid].sorted(),
		})
	}
	return d
}

func nonNilStrings(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// consumerMembers is the number of members of a consumer group, 0 for a
// classic one.
func (g *group) consumerMembers() int {
	if g.cg == nil {
		return 0
	}
	return len(g.cg.members)
}

// describeClassic is a consumer group as DescribeGroups shows it: protocol
// type "consumer", its KIP-848 state and assignor, and its members with
// their subscriptions and assignments in the consumer protocol's formats,
// so that tools reading classic groups read these too.
func (cg *consumerGroup) describeClassic(id string) Description {
	d := Description{Group: id, State: cg.state(), ProtocolType: ConsumerProtocolType, Protocol: cg.assignor, Members: []MemberDescription{}}
	ids := make([]string, 0, len(cg.members))
	for mid := range cg.members {
		ids = append(ids, mid)
	}
	slices.Sort(ids)
	for _, mid := range ids {
		m := cg.members[mid]
		md := kmsg.ConsumerMemberMetadata{Version: 3, Topics: nonNilStrings(m.resolved), Generation: m.epoch, Rack: m.rackID}
		ma := kmsg.ConsumerMemberAssignment{Version: 3, Topics: []kmsg.ConsumerMemberAssignmentTopic{}}
		for _, tp := range m.assigned.sorted() {
			if n := len(ma.Topics); n == 0 || ma.Topics[n-1].Topic != tp.Topic {
				ma.Topics = append(ma.Topics, kmsg.ConsumerMemberAssignmentTopic{Topic: tp.Topic})
			}
			at := &ma.Topics[len(ma.Topics)-1]
			at.Partitions = append(at.Partitions, tp.Partition)
		}
		d.Members = append(d.Members, MemberDescription{MemberID: mid, InstanceID: m.instanceID, ClientID: m.clientID,
			ClientHost: m.clientHost, Metadata: md.AppendTo(nil), Assignment: ma.AppendTo(nil)})
	}
	return d
}
