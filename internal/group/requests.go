package group

// The requests a Shard serves and their results: the Kafka group APIs in
// the coordinator's terms. The api package turns kmsg requests into these
// and the results back into responses. Errors are kerr values, the codes
// Kafka answers with; the api package sends them as they are.

// JoinRequest is a JoinGroup.
type JoinRequest struct {
	Group      string
	MemberID   string // "" on a first join
	InstanceID *string
	ClientID   string
	ClientHost string
	// SessionTimeout and RebalanceTimeout in milliseconds (JoinGroup v0
	// has no rebalance timeout: pass the session timeout).
	SessionTimeout   int32
	RebalanceTimeout int32
	ProtocolType     string
	Protocols        []Protocol
	// RequireKnownMemberID (JoinGroup v4+, KIP-394): a dynamic member's
	// first join is answered MEMBER_ID_REQUIRED with its new member id.
	RequireKnownMemberID bool
	// SkipAssignment (JoinGroup v9+, KIP-814): a static leader that
	// rejoins a stable group may be told it is the leader but must not
	// assign. Older versions are told the old leader id instead.
	SkipAssignment bool
	Reason         string
}

// JoinMember is a member as the leader sees it in its JoinGroup response.
type JoinMember struct {
	MemberID   string
	InstanceID *string
	Metadata   []byte
}

// JoinResult answers a JoinGroup.
type JoinResult struct {
	Err          error
	MemberID     string
	Generation   int32 // -1 with an error
	ProtocolType *string
	Protocol     *string
	Leader       string
	// SkipAssignment (KIP-814): a static leader rejoined a stable group;
	// it must not compute a new assignment.
	SkipAssignment bool
	Members        []JoinMember // the leader's only
}

// SyncRequest is a SyncGroup.
type SyncRequest struct {
	Group        string
	MemberID     string
	InstanceID   *string
	Generation   int32
	ProtocolType *string // v5+: checked against the group's when set
	Protocol     *string // v5+
	Assignments  map[string][]byte
}

// SyncResult answers a SyncGroup.
type SyncResult struct {
	Err          error
	ProtocolType *string
	Protocol     *string
	Assignment   []byte
}

// HeartbeatRequest is a Heartbeat.
type HeartbeatRequest struct {
	Group      string
	MemberID   string
	InstanceID *string
	Generation int32
}

// LeaveMember is one member leaving (LeaveGroup v3+ batches them). An
// empty MemberID with an InstanceID removes that static member.
type LeaveMember struct {
	MemberID   string
	InstanceID *string
	Reason     string
}

// LeaveResult answers a LeaveGroup: a group-level error, else one per
// member in request order.
type LeaveResult struct {
	Err     error
	Members []error
}

// CommitOffset is one partition's offset to commit.
type CommitOffset struct {
	TopicPartition
	Offset      int64
	LeaderEpoch int32
	Metadata    string
}

// CommitRequest is an OffsetCommit of partitions that exist.
type CommitRequest struct {
	Group      string
	MemberID   string
	InstanceID *string
	Generation int32 // -1: not a group member (admin clients, simple consumers)
	Offsets    []CommitOffset
	// RetentionMs (OffsetCommit v2-v4; -1: none) sets an explicit expiry.
	RetentionMs int64
	// GroupNotFound (OffsetCommit v9+): answer GROUP_ID_NOT_FOUND, not
	// ILLEGAL_GENERATION, when a member commits to an unknown group.
	GroupNotFound bool
}

// CommitResult answers an OffsetCommit: an error per offset, in order.
type CommitResult struct {
	Errs []error
}

// FetchRequest is one group of an OffsetFetch.
type FetchRequest struct {
	Group string
	// Partitions to fetch; nil fetches every committed offset.
	Partitions []TopicPartition
	// MemberID and MemberEpoch (OffsetFetch v9+; epoch -1 and no member
	// id: not a member) are checked against a consumer group's member.
	MemberID    *string
	MemberEpoch int32
	// RequireStable (OffsetFetch v7+): a partition with a transactional
	// commit awaiting its marker answers UNSTABLE_OFFSET_COMMIT.
	RequireStable bool
}

// FetchedOffset is a committed offset; Offset -1 when none is.
type FetchedOffset struct {
	TopicPartition
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	Err         error // UNSTABLE_OFFSET_COMMIT (require_stable)
}

// FetchResult answers one group of an OffsetFetch.
type FetchResult struct {
	Err     error
	Offsets []FetchedOffset
}

// MemberDescription is a member in DescribeGroups.
type MemberDescription struct {
	MemberID   string
	InstanceID *string
	ClientID   string
	ClientHost string
	Metadata   []byte // only while Stable
	Assignment []byte // only while Stable
}

// Description answers DescribeGroups for one group. An unknown group is
// State "Dead" with Err GROUP_ID_NOT_FOUND (which DescribeGroups sends
// from v6 only).
type Description struct {
	Group        string
	Err          error
	State        string
	ProtocolType string
	Protocol     string
	Members      []MemberDescription
}

// Listing is a group in ListGroups.
type Listing struct {
	Group        string
	ProtocolType string
	State        string
	Type         string // "classic"
}

// ListRequest filters ListGroups; empty filters match every group. States
// and types compare case-insensitively.
type ListRequest struct {
	States []string
	Types  []string
}

// ListResult answers ListGroups for the groups of one shard.
type ListResult struct {
	Err    error
	Groups []Listing
}

// OffsetDeleteResult answers an OffsetDelete: a group-level error, else one
// per partition, in order.
type OffsetDeleteResult struct {
	Err        error
	Partitions []error
}
