package config

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// MirrorSourceConfig is the topic config that makes a topic an
// offset-preserving mirror of a topic of the source cluster it names.
const MirrorSourceConfig = "sluice.mirror.source"

// MirrorClientID is the client id of sluice mirror's producer in its
// offset-preserving mode: the only one a mirror topic (MirrorSourceConfig)
// takes produce requests from. It keeps other producers off a copy by
// mistake, the translating mirror's ("sluice-mirror") too, whose batches
// carry no offsets to keep; it is not authentication (ACLs are).
const MirrorClientID = "sluice-mirror-offsets"

// Values of cleanup.policy items.
const (
	CleanupPolicyDelete  = "delete"
	CleanupPolicyCompact = "compact"
)

// Values of message.timestamp.type.
const (
	TimestampCreateTime    = "CreateTime"
	TimestampLogAppendTime = "LogAppendTime"
)

// Values of compression.type. CompressionProducer keeps whatever codec the
// producer used; CompressionUncompressed stores batches uncompressed.
const (
	CompressionProducer     = "producer"
	CompressionUncompressed = "uncompressed"
	CompressionGzip         = "gzip"
	CompressionSnappy       = "snappy"
	CompressionLz4          = "lz4"
	CompressionZstd         = "zstd"
)

var compressionTypes = []string{
	CompressionUncompressed, CompressionZstd, CompressionLz4,
	CompressionSnappy, CompressionGzip, CompressionProducer,
}

const (
	maxLong = "9223372036854775807"
	maxInt  = "2147483647"
)

// noRemoteStorage rejects remote.storage.enable=true: Sluice has no tiered
// storage, which Kafka treats like remote.log.storage.system.enable=false.
func noRemoteStorage(v string) error {
	b, err := parseBool(strings.TrimSpace(v))
	if err != nil {
		return err
	}
	if b {
		return errors.New("tiered storage is not supported by this broker; must be false")
	}
	return nil
}

// topicDefs is every topic-level config, sorted by name in init.
var topicDefs = []Def{
	{
		Name: "cleanup.policy", Type: TypeList, Default: CleanupPolicyDelete, BrokerSynonym: "log.cleanup.policy",
		Doc:      `Retention policy for old log segments: "delete" discards segments past the retention time or size, "compact" keeps the latest record per key; a comma-separated list may name both (segments are then compacted and also deleted by retention).`,
		Validate: listOf(CleanupPolicyCompact, CleanupPolicyDelete),
	},
	{
		Name: "compression.gzip.level", Type: TypeInt, Default: "-1", BrokerSynonym: "compression.gzip.level",
		Doc:      "Compression level used when compression.type is gzip (1-9, or -1 for the codec's default).",
		Validate: betweenOr(1, 9, -1),
	},
	{
		Name: "compression.lz4.level", Type: TypeInt, Default: "9", BrokerSynonym: "compression.lz4.level",
		Doc:      "Compression level used when compression.type is lz4.",
		Validate: between(1, 17),
	},
	{
		Name: "compression.type", Type: TypeString, Default: CompressionProducer, BrokerSynonym: "compression.type",
		Doc:      "Final compression codec of the topic's data: gzip, snappy, lz4 or zstd; uncompressed to store batches without compression; producer to keep the producer's codec.",
		Validate: oneOf(compressionTypes...),
	},
	{
		Name: "compression.zstd.level", Type: TypeInt, Default: "3", BrokerSynonym: "compression.zstd.level",
		Doc:      "Compression level used when compression.type is zstd.",
		Validate: between(-131072, 22),
	},
	{
		Name: "delete.retention.ms", Type: TypeLong, Default: "86400000", BrokerSynonym: "log.cleaner.delete.retention.ms",
		Doc:      "How long delete tombstones are kept in compacted topics; also the time a consumer reading from offset 0 has to finish its scan and still see a consistent snapshot.",
		Validate: atLeast(0),
	},
	{
		Name: "file.delete.delay.ms", Type: TypeLong, Default: "60000", BrokerSynonym: "log.segment.delete.delay.ms",
		Doc:      "How long to wait before a deleted segment's files are removed from the filesystem.",
		Validate: atLeast(0),
	},
	{
		Name: "flush.messages", Type: TypeLong, Default: maxLong, BrokerSynonym: "log.flush.interval.messages",
		Doc:      "Force an fsync of the log after this many messages (1 = after every message); normally left alone, relying on replication and the OS for durability.",
		Validate: atLeast(1),
	},
	{
		Name: "flush.ms", Type: TypeLong, Default: maxLong, BrokerSynonym: "log.flush.interval.ms",
		Doc:      "Force an fsync of the log once this many milliseconds have passed since the last one; normally left alone, relying on replication and the OS for durability.",
		Validate: atLeast(0),
	},
	{
		Name: "follower.replication.throttled.replicas", Type: TypeList, Default: "",
		Doc:      "Replicas whose replication is throttled on the follower side, as partitionId:brokerId,... or * for all replicas of the topic.",
		Validate: throttledReplicas,
	},
	{
		Name: "index.interval.bytes", Type: TypeInt, Default: "4096", BrokerSynonym: "log.index.interval.bytes",
		Doc:      "How many bytes of log go between two offset index entries; more entries let reads seek closer to their position at the cost of a bigger index.",
		Validate: atLeast(0),
	},
	{
		Name: "leader.replication.throttled.replicas", Type: TypeList, Default: "",
		Doc:      "Replicas whose replication is throttled on the leader side, as partitionId:brokerId,... or * for all replicas of the topic.",
		Validate: throttledReplicas,
	},
	{
		Name: "local.retention.bytes", Type: TypeLong, Default: "-2", BrokerSynonym: "log.local.retention.bytes",
		Doc:      "With tiered storage, the most bytes of local segments a partition keeps before deleting old ones; -2 means use retention.bytes.",
		Validate: atLeast(-2),
	},
	{
		Name: "local.retention.ms", Type: TypeLong, Default: "-2", BrokerSynonym: "log.local.retention.ms",
		Doc:      "With tiered storage, how long local segments are kept before deletion; -2 means use retention.ms.",
		Validate: atLeast(-2),
	},
	{
		Name: "max.compaction.lag.ms", Type: TypeLong, Default: maxLong, BrokerSynonym: "log.cleaner.max.compaction.lag.ms",
		Doc:      "Longest time a record may stay ineligible for compaction; only for compacted topics.",
		Validate: atLeast(1),
	},
	{
		Name: "max.message.bytes", Type: TypeInt, Default: "1048588", BrokerSynonym: "message.max.bytes",
		Doc:      "Largest record batch the topic accepts, after compression.",
		Validate: atLeast(0),
	},
	{
		Name: "message.downconversion.enable", Type: TypeBoolean, Default: "true", BrokerSynonym: "log.message.downconversion.enable",
		Doc: "Whether fetches from clients expecting an older message format are down-converted (Kafka 3.x); accepted for compatibility, a no-op as in Kafka 4.0.",
	},
	{
		Name: "message.timestamp.after.max.ms", Type: TypeLong, Default: "3600000", BrokerSynonym: "log.message.timestamp.after.max.ms",
		Doc:      "How far a record's timestamp may be ahead of the broker's clock; with CreateTime, batches beyond it are rejected. Ignored with LogAppendTime.",
		Validate: atLeast(0),
	},
	{
		Name: "message.timestamp.before.max.ms", Type: TypeLong, Default: maxLong, BrokerSynonym: "log.message.timestamp.before.max.ms",
		Doc:      "How far a record's timestamp may be behind the broker's clock; with CreateTime, batches beyond it are rejected. Ignored with LogAppendTime.",
		Validate: atLeast(0),
	},
	{
		Name: "message.timestamp.type", Type: TypeString, Default: TimestampCreateTime, BrokerSynonym: "log.message.timestamp.type",
		Doc:      "Whether record timestamps are the producer's create time (CreateTime) or the broker's append time (LogAppendTime).",
		Validate: oneOf(TimestampCreateTime, TimestampLogAppendTime),
	},
	{
		Name: "min.cleanable.dirty.ratio", Type: TypeDouble, Default: "0.5", BrokerSynonym: "log.cleaner.min.cleanable.ratio",
		Doc:      "Share of a compacted log that must be uncompacted (dirty) before the cleaner compacts it; min/max.compaction.lag.ms can make it eligible earlier or later.",
		Validate: ratio(0, 1),
	},
	{
		Name: "min.compaction.lag.ms", Type: TypeLong, Default: "0", BrokerSynonym: "log.cleaner.min.compaction.lag.ms",
		Doc:      "Shortest time a record stays uncompacted; only for compacted topics.",
		Validate: atLeast(0),
	},
	{
		Name: "min.insync.replicas", Type: TypeInt, Default: "1", BrokerSynonym: "min.insync.replicas",
		Doc:      "Fewest in-sync replicas that must have a write for an acks=all produce to succeed; with fewer, the producer gets NOT_ENOUGH_REPLICAS.",
		Validate: atLeast(1),
	},
	{
		Name: "preallocate", Type: TypeBoolean, Default: "false", BrokerSynonym: "log.preallocate",
		Doc: "Whether a new segment's file is preallocated on disk.",
	},
	{
		Name: "remote.log.copy.disable", Type: TypeBoolean, Default: "false",
		Doc: "With tiered storage, stop uploading segments and leave the remote data read-only.",
	},
	{
		Name: "remote.log.delete.on.disable", Type: TypeBoolean, Default: "false",
		Doc: "With tiered storage, delete the remote data when tiered storage is turned off for the topic.",
	},
	{
		Name: "remote.storage.enable", Type: TypeBoolean, Default: "false",
		Doc:      "Whether the topic uses tiered storage; Sluice has none, so only false is accepted.",
		Validate: noRemoteStorage,
	},
	{
		Name: "retention.bytes", Type: TypeLong, Default: "-1", BrokerSynonym: "log.retention.bytes",
		Doc: "Largest size a partition may grow to before old segments are deleted under the delete policy; -1 means no size limit. Applies per partition.",
	},
	{
		Name: "retention.ms", Type: TypeLong, Default: "604800000", BrokerSynonym: "log.retention.ms",
		Doc:      "How long a segment is kept before deletion under the delete policy; -1 means no time limit.",
		Validate: atLeast(-1),
	},
	{
		Name: "segment.bytes", Type: TypeInt, Default: "1073741824", BrokerSynonym: "log.segment.bytes",
		Doc:      "Size at which a segment file is rolled; retention and cleaning work a whole segment at a time.",
		Validate: atLeast(14),
	},
	{
		Name: "segment.index.bytes", Type: TypeInt, Default: "10485760", BrokerSynonym: "log.index.size.max.bytes",
		Doc:      "Size of the preallocated offset index of a segment; it is shrunk when the segment rolls.",
		Validate: atLeast(4),
	},
	{
		Name: "segment.jitter.ms", Type: TypeLong, Default: "0", BrokerSynonym: "log.roll.jitter.ms",
		Doc:      "Largest random jitter subtracted from the time-based segment roll, so segments do not all roll at once.",
		Validate: atLeast(0),
	},
	{
		Name: "segment.ms", Type: TypeLong, Default: "604800000", BrokerSynonym: "log.roll.ms",
		Doc:      "Time after which the active segment is rolled even if not full, so retention can delete or compact it.",
		Validate: atLeast(1),
	},
	{
		// Sluice's own: set by sluice mirror's offset-preserving mode on
		// the topics it creates (internal/mirror).
		Name: MirrorSourceConfig, Type: TypeString, Default: "",
		Doc: "Sluice only. The cluster id of the source cluster this topic is an offset-preserving mirror of (sluice mirror --preserve-offsets sets it when it creates the topic); empty for an ordinary topic. On a mirror topic, produce requests are taken only from the mirror (client id sluice-mirror-offsets) and keep the source's offsets; other producers are refused with POLICY_VIOLATION. It can be set only when the topic is created, and deleted (a failover: the topic takes producers again, and its leaders abort the source's transactions left open).",
	},
	{
		Name: "unclean.leader.election.enable", Type: TypeBoolean, Default: "false", BrokerSynonym: "unclean.leader.election.enable",
		Doc: "Whether a replica outside the ISR may become leader as a last resort, at the risk of losing data.",
	},
}

var topicIndex = indexDefs(topicDefs)

func indexDefs(defs []Def) map[string]int {
	sort.Slice(defs, func(i, j int) bool { return defs[i].Name < defs[j].Name })
	m := make(map[string]int, len(defs))
	for i, d := range defs {
		if _, dup := m[d.Name]; dup {
			panic("config: duplicate def " + d.Name)
		}
		m[d.Name] = i
	}
	return m
}

// TopicDefs returns every topic-level config, sorted by name.
func TopicDefs() []Def { return slices.Clone(topicDefs) }

// TopicDef returns the topic-level config called name.
func TopicDef(name string) (Def, bool) {
	i, ok := topicIndex[name]
	if !ok {
		return Def{}, false
	}
	return topicDefs[i], true
}

// ValidateTopicConfigs checks topic-level configs as given to CreateTopics,
// AlterConfigs or IncrementalAlterConfigs (the topic's complete set of
// overrides after the change): every name must be a topic config
// (ErrUnknownConfig) and every value valid (ErrInvalidValue). It also checks,
// as Kafka does, that min.compaction.lag.ms does not exceed
// max.compaction.lag.ms (taking the defaults for whichever is not given).
// Keys are checked in sorted order and the first error is returned.
func ValidateTopicConfigs(configs map[string]string) error {
	if err := validate(configs, TopicDef, "topic"); err != nil {
		return err
	}
	return checkLagOrder(configs, "min.compaction.lag.ms", "max.compaction.lag.ms", TopicDef)
}

func validate(configs map[string]string, lookup func(string) (Def, bool), kind string) error {
	keys := make([]string, 0, len(configs))
	for k := range configs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d, ok := lookup(k)
		if !ok {
			return unknown(k, kind)
		}
		if err := d.Check(configs[k]); err != nil {
			return err
		}
	}
	return nil
}

// checkLagOrder rejects min > max, with missing values taken from the defs'
// defaults. Values are known to be valid LONGs.
func checkLagOrder(configs map[string]string, minName, maxName string, lookup func(string) (Def, bool)) error {
	get := func(name string) (string, int64) {
		v, ok := configs[name]
		if !ok {
			d, _ := lookup(name)
			v = d.Default
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		return v, n
	}
	minV, minN := get(minName)
	_, maxN := get(maxName)
	if minN > maxN {
		return invalid(minName, minV, fmt.Sprintf("must not exceed %s (%d)", maxName, maxN))
	}
	return nil
}

// Topic is the typed, effective configuration of a topic: its own overrides
// resolved against the broker's dynamic and static configs and the defaults.
type Topic struct {
	// CleanupPolicy is normalised: "delete", "compact", "compact,delete",
	// or "" for an empty policy (nothing is ever deleted or compacted).
	CleanupPolicy string
	Compact       bool
	Delete        bool

	SegmentBytes    int64 // an INT in Kafka
	SegmentMs       int64
	SegmentJitterMs int64
	RetentionMs     int64 // -1: no time limit
	RetentionBytes  int64 // -1: no size limit
	MaxMessageBytes int32

	MessageTimestampType string // CreateTime or LogAppendTime
	LogAppendTime        bool   // MessageTimestampType == LogAppendTime

	IndexIntervalBytes int32
	SegmentIndexBytes  int32

	FileDeleteDelayMs      int64
	MinCompactionLagMs     int64
	MaxCompactionLagMs     int64
	DeleteRetentionMs      int64
	MinCleanableDirtyRatio float64

	MinInsyncReplicas           int32
	UncleanLeaderElectionEnable bool

	CompressionType      string // producer, uncompressed, gzip, snappy, lz4 or zstd
	CompressionGzipLevel int32
	CompressionLz4Level  int32
	CompressionZstdLevel int32

	MessageTimestampBeforeMaxMs int64
	MessageTimestampAfterMaxMs  int64

	FlushMessages int64
	FlushMs       int64

	Preallocate bool
}

// TopicConfig returns the typed effective configuration of a topic with the
// given overrides on broker b. Every effective value, including those coming
// from the broker's configs, is checked; an invalid one is an error wrapping
// ErrInvalidValue, and an unknown name in topic is ErrUnknownConfig.
func TopicConfig(topic map[string]string, b Broker) (Topic, error) {
	for name := range topic {
		if _, ok := TopicDef(name); !ok {
			return Topic{}, unknown(name, "topic")
		}
	}
	vals := make(map[string]string, len(topicDefs))
	for _, d := range topicDefs {
		e := resolveTopicEntry(d, topic, b)
		if err := d.Check(e.Value); err != nil {
			if e.Source != SourceDynamicTopic && len(e.Synonyms) > 0 {
				s := e.Synonyms[0]
				return Topic{}, fmt.Errorf("%w (from %s %s=%q)", err, s.Source, s.Name, s.Value)
			}
			return Topic{}, err
		}
		vals[d.Name] = strings.TrimSpace(e.Value)
	}

	i64 := func(name string) int64 { n, _ := strconv.ParseInt(vals[name], 10, 64); return n }
	i32 := func(name string) int32 { return int32(i64(name)) }
	boolean := func(name string) bool { v, _ := parseBool(vals[name]); return v }

	var t Topic
	for _, p := range splitList(vals["cleanup.policy"]) {
		switch p {
		case CleanupPolicyCompact:
			t.Compact = true
		case CleanupPolicyDelete:
			t.Delete = true
		}
	}
	switch {
	case t.Compact && t.Delete:
		t.CleanupPolicy = CleanupPolicyCompact + "," + CleanupPolicyDelete
	case t.Compact:
		t.CleanupPolicy = CleanupPolicyCompact
	case t.Delete:
		t.CleanupPolicy = CleanupPolicyDelete
	}
	t.SegmentBytes = i64("segment.bytes")
	t.SegmentMs = i64("segment.ms")
	t.SegmentJitterMs = i64("segment.jitter.ms")
	t.RetentionMs = i64("retention.ms")
	t.RetentionBytes = i64("retention.bytes")
	t.MaxMessageBytes = i32("max.message.bytes")
	t.MessageTimestampType = vals["message.timestamp.type"]
	t.LogAppendTime = t.MessageTimestampType == TimestampLogAppendTime
	t.IndexIntervalBytes = i32("index.interval.bytes")
	t.SegmentIndexBytes = i32("segment.index.bytes")
	t.FileDeleteDelayMs = i64("file.delete.delay.ms")
	t.MinCompactionLagMs = i64("min.compaction.lag.ms")
	t.MaxCompactionLagMs = i64("max.compaction.lag.ms")
	t.DeleteRetentionMs = i64("delete.retention.ms")
	t.MinCleanableDirtyRatio, _ = parseDouble(vals["min.cleanable.dirty.ratio"])
	t.MinInsyncReplicas = i32("min.insync.replicas")
	t.UncleanLeaderElectionEnable = boolean("unclean.leader.election.enable")
	t.CompressionType = vals["compression.type"]
	t.CompressionGzipLevel = i32("compression.gzip.level")
	t.CompressionLz4Level = i32("compression.lz4.level")
	t.CompressionZstdLevel = i32("compression.zstd.level")
	t.MessageTimestampBeforeMaxMs = i64("message.timestamp.before.max.ms")
	t.MessageTimestampAfterMaxMs = i64("message.timestamp.after.max.ms")
	t.FlushMessages = i64("flush.messages")
	t.FlushMs = i64("flush.ms")
	t.Preallocate = boolean("preallocate")
	return t, nil
}

// msConverter converts a broker synonym counted in unit milliseconds to
// milliseconds; a negative result means unlimited (-1), as Kafka's
// KafkaConfig.logRetentionTimeMillis does.
func msConverter(unit int64) func(string) (string, error) {
	return func(v string) (string, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return "", err
		}
		if n > math.MaxInt64/unit || n < math.MinInt64/unit {
			return "", errors.New("out of range")
		}
		n *= unit
		if n < 0 {
			n = -1
		}
		return strconv.FormatInt(n, 10), nil
	}
}
