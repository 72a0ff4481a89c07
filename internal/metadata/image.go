// Package metadata holds the cluster metadata (brokers, topics, partitions,
// leaders, ISR, dynamic configs, producer id blocks) as records in a Raft log,
// and the immutable in-memory Image that the records build.
//
// Who owns what:
//   - The Store owns the Raft node, its log, stable and snapshot stores (files
//     in <Dir>, written through a vfs.FS: raftlog.go, raftstable.go,
//     raftsnap.go) and the FSM. With several controller voters it also owns
//     the raft transport over the caller's listener (quorum.go); a quorum of
//     one uses an in-memory transport.
//   - Every voter applies every committed record to its own Image; only the
//     Raft leader proposes. A new leader announces itself (barrier, then an
//     ActivateController record) on a goroutine of its own, activateLoop,
//     which lives as long as that leadership.
//   - Only the FSM goroutine of hashicorp/raft builds images: it applies one
//     record to the current Image, producing a new Image (copy on write), and
//     publishes it through an atomic pointer. Readers (request handlers, the
//     controller, replication) call Store.Image and use the result without
//     locks; an Image and everything it points to is never mutated after it is
//     published, so callers must not mutate it either.
//   - Writers call the Store's mutation methods, which propose a record; every
//     check that depends on the current state (topic exists, unknown topic,
//     partition count) runs inside the FSM, so it is decided once, in log order,
//     identically on every voter.
package metadata

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Sentinel errors. The Kafka API layer turns them into Kafka error codes.
var (
	ErrTopicExists       = errors.New("metadata: topic already exists")
	ErrUnknownTopic      = errors.New("metadata: unknown topic")
	ErrInvalidPartitions = errors.New("metadata: invalid partition count")
	ErrNotController     = errors.New("metadata: not the active controller")

	// ErrInvalidTopic: a topic name Kafka would refuse (empty, ".", "..", longer
	// than 249 characters, or characters outside [a-zA-Z0-9._-]). Names become
	// directory names on disk, so this is enforced here, not only in the API.
	ErrInvalidTopic = errors.New("metadata: invalid topic name")
	// ErrInvalidReplicas: an empty replica list, a duplicate or negative
	// broker id, or more than maxReplicationFactor replicas.
	ErrInvalidReplicas = errors.New("metadata: invalid replica assignment")
	// ErrInvalidBroker: a broker registration with a negative node id or an
	// out-of-range port.
	ErrInvalidBroker = errors.New("metadata: invalid broker registration")
	// ErrInvalidProducerIDCount: AllocateProducerIDs with count <= 0 or more
	// than maxProducerIDBlock.
	ErrInvalidProducerIDCount = errors.New("metadata: invalid producer id count")
	// ErrProducerIDsExhausted: the int64 producer id space is used up.
	ErrProducerIDsExhausted = errors.New("metadata: producer ids exhausted")
	// ErrRecordTooLarge: the change does not fit in one metadata record
	// (maxRecordBytes); split it into smaller changes.
	ErrRecordTooLarge = errors.New("metadata: record too large")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("metadata: store closed")

	// ErrUnknownBroker: no broker with that node id is registered.
	ErrUnknownBroker = errors.New("metadata: unknown broker")
	// ErrStaleBrokerEpoch: the request carries an epoch other than the
	// broker's current one, so it comes from an older incarnation (or the
	// broker re-registered meanwhile): Kafka's STALE_BROKER_EPOCH.
	ErrStaleBrokerEpoch = errors.New("metadata: stale broker epoch")
	// ErrUnknownPartition: the topic exists but has no such partition, or
	// the topic id does not match the name (it was deleted and re-created).
	ErrUnknownPartition = errors.New("metadata: unknown partition")
	// ErrStaleLeaderEpoch: a partition change expected another leader
	// epoch; the sender is behind a leader change (FENCED_LEADER_EPOCH).
	ErrStaleLeaderEpoch = errors.New("metadata: stale leader epoch")
	// ErrStalePartitionEpoch: a partition change expected another partition
	// epoch; the partition changed since the sender read it
	// (INVALID_UPDATE_VERSION). Re-read the image and retry.
	ErrStalePartitionEpoch = errors.New("metadata: stale partition epoch")
	// ErrInvalidPartitionChange: a partition change that would leave an
	// invalid state: a leader outside the replicas, an ISR that is not a set
	// of replicas or lacks the leader, a partition listed twice in one
	// change, or an epoch that would overflow.
	ErrInvalidPartitionChange = errors.New("metadata: invalid partition change")
)

// Limits. Each is checked before anything of that size is allocated, both
// when a record is proposed and when it is applied.
const (
	maxTopicNameLen       = 249     // Kafka's limit on topic name length
	maxPartitionsPerTopic = 100_000 // partitions in one topic; Kafka has no hard cap, this is far above any real use
	maxReplicationFactor  = 64      // replicas per partition
	maxProducerIDBlock    = 1 << 20 // producer ids reserved by one AllocateProducerIDs call
	maxRecordBytes        = 1 << 20 // one encoded metadata record (Raft log entry)
	maxSnapshotBytes      = 1 << 30 // one encoded snapshot; Restore refuses bigger ones
	maxIncarnationIDLen   = 64      // Broker.IncarnationID; a UUID takes 22-36 characters
	// maxPartitionChanges bounds the changes in one ChangePartitions record
	// (and the assignments of one CreateTopic/CreatePartitions) by the
	// partitions of one topic; maxRecordBytes usually binds first.
	maxPartitionChanges = maxPartitionsPerTopic
)

// TopicID is Kafka's topic id (a UUID). It is never all-zero for a real topic.
type TopicID [16]byte

// String returns the id as Kafka prints it: URL-safe base64 without padding
// (22 characters).
func (id TopicID) String() string {
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// IsZero reports whether id is the all-zero id, which Kafka uses for "none".
func (id TopicID) IsZero() bool { return id == TopicID{} }

// MarshalText encodes the id like String, so JSON shows what Kafka shows.
func (id TopicID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses the form that MarshalText writes.
func (id *TopicID) UnmarshalText(b []byte) error {
	if base64.RawURLEncoding.DecodedLen(len(b)) != len(id) {
		return fmt.Errorf("metadata: topic id %q: want %d base64 characters", b, base64.RawURLEncoding.EncodedLen(len(id)))
	}
	var out TopicID
	// Strict: the 4 unused bits of the last character must be zero, so each
	// id has exactly one text form and UnmarshalText inverts String.
	n, err := base64.RawURLEncoding.Strict().Decode(out[:], b)
	if err != nil || n != len(out) {
		return fmt.Errorf("metadata: topic id %q is not URL-safe base64", b)
	}
	*id = out
	return nil
}

// Partition is one partition of a topic as the metadata sees it.
// Invariants (checked on every change and snapshot): Replicas is a valid
// replica list, Leader is -1 or one of Replicas, ISR is a set of Replicas
// that holds Leader unless Leader is -1, and the epochs are not negative.
type Partition struct {
	ID          int32
	Leader      int32 // node id of the leader, -1 if none
	LeaderEpoch int32 // starts at 0; bumps on each leader change (or when asked)
	Replicas    []int32
	ISR         []int32
	// PartitionEpoch is Kafka's partition epoch: it starts at 0 and bumps
	// on every change of leader, leader epoch, ISR or replicas, so that an
	// AlterPartition based on an older state is refused
	// (ErrStalePartitionEpoch) instead of undoing a newer one.
	PartitionEpoch int32 `json:",omitempty"`
	// AddingReplicas and RemovingReplicas are an ongoing reassignment
	// (KIP-455): Replicas holds the target replicas followed by the ones
	// being removed; the adding ones copy the log and join the ISR, then
	// the controller makes the target the replicas and drops the rest.
	// Both empty when no reassignment is under way.
	AddingReplicas   []int32 `json:",omitempty"`
	RemovingReplicas []int32 `json:",omitempty"`
}

// Reassigning reports whether a reassignment of p is under way.
func (p Partition) Reassigning() bool {
	return len(p.AddingReplicas) > 0 || len(p.RemovingReplicas) > 0
}

// TargetReplicas are the replicas p will have once its reassignment is
// done: Replicas without the removing ones (Replicas when none is under way).
func (p Partition) TargetReplicas() []int32 {
	if len(p.RemovingReplicas) == 0 {
		return p.Replicas
	}
	out := make([]int32, 0, len(p.Replicas))
	for _, r := range p.Replicas {
		if !slices.Contains(p.RemovingReplicas, r) {
			out = append(out, r)
		}
	}
	return out
}

// OriginalReplicas are the replicas p had before its reassignment:
// Replicas without the adding ones.
func (p Partition) OriginalReplicas() []int32 {
	if len(p.AddingReplicas) == 0 {
		return p.Replicas
	}
	out := make([]int32, 0, len(p.Replicas))
	for _, r := range p.Replicas {
		if !slices.Contains(p.AddingReplicas, r) {
			out = append(out, r)
		}
	}
	return out
}

// Topic is one topic. Partitions[i].ID == i.
type Topic struct {
	Name       string
	ID         TopicID
	Partitions []Partition       // index == partition id
	Configs    map[string]string // dynamic topic configs (only what was set explicitly); never nil in an Image
}

// Broker is a registered broker and where clients reach it.
//
// Lifecycle (Kafka's KRaft broker registration): each process start
// registers with a new IncarnationID and gets a new Epoch; a registration
// with an IncarnationID starts Fenced (no leaderships, not offered to
// clients) until the controller unfences it, typically once the broker has
// caught up with the metadata log. Fence, unfence and controlled shutdown
// name the epoch they apply to, so a request from an older incarnation is
// refused (ErrStaleBrokerEpoch) instead of changing the new one.
type Broker struct {
	NodeID int32
	Host   string
	Port   int32
	Rack   string
	// Epoch is the raft index of the broker's latest registration record
	// (Kafka's broker epoch), set by the FSM: it grows with every
	// registration and is unique in the cluster's life. Brokers restored
	// from a snapshot written before epochs existed have 0.
	Epoch int64 `json:",omitempty"`
	// IncarnationID is chosen at random by each broker process start, so
	// a restarted broker's registration is told apart from a retried one.
	// Empty for registrations that predate fencing (RegisterBroker without
	// one): those are never fenced, as before.
	IncarnationID string `json:",omitempty"`
	// Fenced: the broker must not lead partitions or be in an ISR, and is
	// not offered to clients. Set by registration (with an IncarnationID)
	// and FenceBroker, cleared by UnfenceBroker.
	Fenced bool `json:",omitempty"`
	// InControlledShutdown: the broker asked to shut down and the
	// controller is moving its leaderships away; cleared by registering
	// again.
	InControlledShutdown bool `json:",omitempty"`
}

// Image is an immutable snapshot of the metadata. Never mutate one after it is
// published: it is shared by every reader without locks. Maps are never nil.
type Image struct {
	ClusterID      string // generated once, by the first active controller (22-char base64 UUID like Kafka)
	ControllerID   int32  // node id of the active controller, -1 before one has announced itself
	Brokers        map[int32]Broker
	Topics         map[string]*Topic
	TopicsByID     map[TopicID]*Topic
	BrokerConfigs  map[string]string // dynamic cluster-wide broker configs (Kafka's cluster default, resource name "")
	NextProducerID int64             // next unallocated producer id; starts at 0
	Index          uint64            // raft index of the last applied record

	// PerBrokerConfigs are the dynamic configs of one broker each (Kafka's
	// BROKER resource named by its id, DYNAMIC_BROKER_CONFIG), which take
	// precedence over BrokerConfigs on that broker. Only registered
	// brokers have an entry, never an empty one: setting an empty set
	// removes the entry, and unregistering a broker removes its configs.
	// The inner maps are replaced whole, never changed, so clones share
	// them.
	PerBrokerConfigs map[int32]map[string]string
}

// emptyImage is the image before any record: what a fresh FSM starts from.
func emptyImage() *Image {
	return &Image{
		ControllerID:  -1,
		Brokers:       map[int32]Broker{},
		Topics:        map[string]*Topic{},
		TopicsByID:    map[TopicID]*Topic{},
		BrokerConfigs: map[string]string{},

		PerBrokerConfigs: map[int32]map[string]string{},
	}
}

// shallowClone copies the top-level maps so that a record can replace entries
// without touching img. Topics themselves are shared until one is changed;
// then the changed one is replaced by a copy (cloneTopic); so are the maps of
// PerBrokerConfigs, each replaced whole. The cost is
// O(topics + brokers) per applied record, fine for metadata change rates.
func (img *Image) shallowClone() *Image {
	out := *img
	out.Brokers = maps.Clone(img.Brokers)
	out.Topics = maps.Clone(img.Topics)
	out.TopicsByID = maps.Clone(img.TopicsByID)
	out.BrokerConfigs = maps.Clone(img.BrokerConfigs)
	out.PerBrokerConfigs = maps.Clone(img.PerBrokerConfigs)
	return &out
}

// cloneTopic deep-copies t so that the copy can be changed.
func cloneTopic(t *Topic) *Topic {
	out := *t
	out.Partitions = make([]Partition, len(t.Partitions))
	for i, p := range t.Partitions {
		p.Replicas = slices.Clone(p.Replicas)
		p.ISR = slices.Clone(p.ISR)
		out.Partitions[i] = p
	}
	out.Configs = maps.Clone(t.Configs)
	return &out
}

// validTopicName reports whether Kafka would accept name as a topic name.
func validTopicName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > maxTopicNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// validReplicas checks a replica list for a partition.
func validReplicas(replicas []int32) error {
	if len(replicas) == 0 || len(replicas) > maxReplicationFactor {
		return fmt.Errorf("%w: %d replicas, want 1..%d", ErrInvalidReplicas, len(replicas), maxReplicationFactor)
	}
	for i, r := range replicas {
		if r < 0 {
			return fmt.Errorf("%w: negative broker id %d", ErrInvalidReplicas, r)
		}
		if slices.Contains(replicas[:i], r) {
			return fmt.Errorf("%w: broker %d listed twice", ErrInvalidReplicas, r)
		}
	}
	return nil
}
