package config

import (
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Values of replica.selector.class (KIP-392) that Sluice knows.
const (
	LeaderSelector    = "org.apache.kafka.common.replica.LeaderSelector"
	RackAwareSelector = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
)

// Values of Sluice's log.flush.policy broker config.
const (
	// FlushPolicyAcksAll answers an acks=all produce only once its batch
	// is fsynced (group commit: one fsync covers every batch appended
	// meanwhile); acks=1 is answered after the append.
	FlushPolicyAcksAll = "acks-all"
	// FlushPolicyNone never fsyncs on produce, relying on the page cache
	// and on replication.
	FlushPolicyNone = "none"
)

// brokerDefs is the broker configs Sluice knows, sorted by name in init.
// ReadOnly follows Kafka's update mode: "read-only" configs are ReadOnly,
// "per-broker" and "cluster-wide" ones are not, except the connection
// limits, which Sluice reads only at start. Every one is acted on, or
// Unsupported (only its default accepted), or checked by sluice serve
// against its flags (node.id, broker.id, log.dirs): internal/cli/serve's
// tests hold the list.
var brokerDefs = []Def{
	{
		Name: "auto.create.topics.enable", Type: TypeBoolean, Default: "true", ReadOnly: true,
		Doc: "Whether a topic is created automatically when a client asks for one that does not exist.",
	},
	{
		Name: "broker.id", Type: TypeInt, Default: "-1", ReadOnly: true,
		Doc: "The broker's id; in KRaft mode it must equal node.id.",
	},
	{
		Name: "auto.leader.rebalance.enable", Type: TypeBoolean, Default: "true", ReadOnly: true,
		Doc: "Whether the controller moves partition leadership back to each partition's preferred (first) replica, every leader.imbalance.check.interval.seconds, for brokers above leader.imbalance.per.broker.percentage.",
	},
	{
		// Kafka's default is 2000 ms with a 9000 ms session: a dead broker's
		// partitions then wait about 9 s for a new leader. Sluice's defaults
		// fence it within 1.5 s; a busy network or host may need more.
		Name: "broker.heartbeat.interval.ms", Type: TypeInt, Default: "250", ReadOnly: true,
		Doc:      "How often a broker heartbeats to the active controller (a cluster only).",
		Validate: atLeast(10),
	},
	{
		Name: "broker.session.timeout.ms", Type: TypeInt, Default: "1500", ReadOnly: true,
		Doc:      "A broker that has not heartbeated for this long is fenced and its partition leaderships move (a cluster only). Kafka's default is 9000.",
		Validate: atLeast(20),
	},
	{
		Name: "compression.gzip.level", Type: TypeInt, Default: "-1",
		Doc:      "Default gzip compression level for topics (1-9, or -1 for the codec's default).",
		Validate: betweenOr(1, 9, -1),
	},
	{
		Name: "compression.lz4.level", Type: TypeInt, Default: "9",
		Doc:      "Default lz4 compression level for topics.",
		Validate: between(1, 17),
	},
	{
		Name: "compression.type", Type: TypeString, Default: CompressionProducer,
		Doc:      "Default final compression codec for topics: gzip, snappy, lz4, zstd, uncompressed, or producer to keep the producer's codec.",
		Validate: oneOf(compressionTypes...),
	},
	{
		Name: "compression.zstd.level", Type: TypeInt, Default: "3",
		Doc:      "Default zstd compression level for topics.",
		Validate: between(-131072, 22),
	},
	{
		// Kafka leaves this unchecked; a replication factor below 1 is
		// never usable, so it is rejected here.
		Name: "default.replication.factor", Type: TypeInt, Default: "1", ReadOnly: true,
		Doc:      "Replication factor of automatically created topics and of topics created with replication factor -1.",
		Validate: atLeast(1),
	},
	{
		Name: "connections.max.idle.ms", Type: TypeLong, Default: "600000", ReadOnly: true,
		Doc:      "A connection that reads and writes nothing, with no request in flight, for this long is closed; -1: never. Static in Sluice.",
		Validate: betweenOr(1, math.MaxInt64/int64(time.Millisecond), -1),
	},
	{
		// KIP-1066. Set per broker (or cluster-wide, which cordons every
		// broker), dynamically: the controller reads it from the metadata,
		// so sluice serve refuses it with -c.
		Name: CordonedLogDirs, Type: TypeList, Default: "",
		Doc: "The log directories of this broker that take no new partition replicas (KIP-1066): absolute paths among its log.dirs, whose new replicas go to its other dirs; * cordons them all, so the controller places no new replica on the broker: not for new topics, new partitions, or sluice cluster balance. Replicas already there stay until moved (sluice cluster drain cordons the broker, then moves them; AlterReplicaLogDirs moves one off a dir). " +
			"Set it dynamically, per broker: kafka-configs --entity-type brokers --entity-name N --alter --add-config cordoned.log.dirs=*, or sluice cluster drain N; sluice cluster undrain N removes it. Naming every dir of a broker cordons its dirs, not the broker: use * for that.",
		Validate: cordonedLogDirs,
	},
	{
		Name: "delete.topic.enable", Type: TypeBoolean, Default: "true", ReadOnly: true,
		Doc: "Whether topics can be deleted; when false, DeleteTopics has no effect.",
	},
	{
		Name: "fetch.max.bytes", Type: TypeInt, Default: "57671680", ReadOnly: true,
		Doc:         "Most bytes returned for one fetch request.",
		Validate:    atLeast(1024),
		Unsupported: "a fetch response holds at most Kafka's default, 57671680 bytes; changing it is not supported yet",
	},
	{
		// KIP-73; per broker or cluster-wide, as in Kafka.
		Name: "follower.replication.throttled.rate", Type: TypeLong, Default: maxLong,
		Doc: "Most bytes per second this broker, as a follower, fetches for the replicas that topics list in follower.replication.throttled.replicas, all of them together (KIP-73); while it is exceeded the follower leaves those partitions out of its fetches. " +
			"The default, 9223372036854775807, is unthrottled; Kafka advises at least 1 MB/s for an accurate throttle.",
		Validate: atLeast(1),
	},
	{
		Name: "group.consumer.heartbeat.interval.ms", Type: TypeInt, Default: "5000", ReadOnly: true,
		Doc:      "Heartbeat interval the coordinator gives members of consumer groups (KIP-848).",
		Validate: atLeast(1),
	},
	{
		Name: "group.consumer.session.timeout.ms", Type: TypeInt, Default: "45000", ReadOnly: true,
		Doc:      "Session timeout of members of consumer groups (KIP-848): a member that does not heartbeat for this long is removed.",
		Validate: atLeast(1),
	},
	{
		Name: "group.initial.rebalance.delay.ms", Type: TypeInt, Default: "3000", ReadOnly: true,
		Doc: "How long the group coordinator waits for more members to join a new group before its first rebalance.",
	},
	{
		Name: "group.max.session.timeout.ms", Type: TypeInt, Default: "1800000", ReadOnly: true,
		Doc: "Longest session timeout a group member may ask for.",
	},
	{
		Name: "group.max.size", Type: TypeInt, Default: maxInt, ReadOnly: true,
		Doc:      "Most members one classic consumer group may have.",
		Validate: atLeast(1),
	},
	{
		Name: "group.min.session.timeout.ms", Type: TypeInt, Default: "6000", ReadOnly: true,
		Doc: "Shortest session timeout a group member may ask for.",
	},
	{
		Name: "leader.imbalance.check.interval.seconds", Type: TypeLong, Default: "300", ReadOnly: true,
		Doc:      "How often the controller checks for partitions not led by their preferred replica (auto.leader.rebalance.enable).",
		Validate: atLeast(1),
	},
	{
		Name: "leader.imbalance.per.broker.percentage", Type: TypeInt, Default: "10", ReadOnly: true,
		Doc:      "The share (percent) of a broker's preferred partitions led elsewhere above which the controller moves them back.",
		Validate: between(0, 100),
	},
	{
		// KIP-73; per broker or cluster-wide, as in Kafka.
		Name: "leader.replication.throttled.rate", Type: TypeLong, Default: maxLong,
		Doc: "Most bytes per second this broker, as a leader, sends to followers for the replicas that topics list in leader.replication.throttled.replicas, all of them together (KIP-73); while it is exceeded those partitions are answered without records. " +
			"The default, 9223372036854775807, is unthrottled; Kafka advises at least 1 MB/s for an accurate throttle.",
		Validate: atLeast(1),
	},
	{
		Name: "log.cleaner.backoff.ms", Type: TypeLong, Default: "15000",
		Doc:      "How long the log cleaner sleeps when no log is due for cleaning.",
		Validate: atLeast(0),
	},
	{
		Name: "log.cleaner.dedupe.buffer.size", Type: TypeLong, Default: "134217728",
		Doc:      "Memory for the log cleaner's offset maps (the keys of the logs being cleaned), shared among its threads; a log with more keys is cleaned over several passes.",
		Validate: atLeast(0),
	},
	{
		Name: "log.cleaner.delete.retention.ms", Type: TypeLong, Default: "86400000",
		Doc:      "Default time delete tombstones are kept in compacted topics.",
		Validate: atLeast(0),
	},
	{
		Name: "log.cleaner.enable", Type: TypeBoolean, Default: "true", ReadOnly: true,
		Doc: "Whether the log cleaner runs; compacted topics (including the offsets topic) grow without bound without it.",
	},
	{
		Name: "log.cleaner.io.buffer.load.factor", Type: TypeDouble, Default: "0.9",
		Doc:      "Share of the log cleaner's offset map slots that may be filled; higher holds more keys per pass, with more hash probing.",
		Validate: ratio(0, 1),
	},
	{
		Name: "log.cleaner.io.buffer.size", Type: TypeInt, Default: "524288",
		Doc:      "Size of the log cleaner's read and write buffers (each grows for a larger batch).",
		Validate: atLeast(0),
	},
	{
		Name: "log.cleaner.io.max.bytes.per.second", Type: TypeDouble, Default: "1.7976931348623157E308",
		Doc: "Most bytes per second the log cleaner reads and writes, all threads together, so that compaction never starves produce and fetch.",
	},
	{
		Name: "log.cleaner.max.compaction.lag.ms", Type: TypeLong, Default: maxLong,
		Doc:      "Default longest time a record may stay ineligible for compaction.",
		Validate: atLeast(1),
	},
	{
		Name: "log.cleaner.min.cleanable.ratio", Type: TypeDouble, Default: "0.5",
		Doc:      "Default share of a compacted log that must be dirty before it is cleaned.",
		Validate: ratio(0, 1),
	},
	{
		Name: "log.cleaner.min.compaction.lag.ms", Type: TypeLong, Default: "0",
		Doc:      "Default shortest time a record stays uncompacted.",
		Validate: atLeast(0),
	},
	{
		Name: "log.cleaner.threads", Type: TypeInt, Default: "1",
		Doc:      "Number of logs the log cleaner compacts at once (0 stops cleaning).",
		Validate: atLeast(0),
	},
	{
		Name: "log.cleanup.policy", Type: TypeList, Default: CleanupPolicyDelete,
		Doc:      "Default cleanup policy of topics: a comma-separated list of delete and/or compact.",
		Validate: listOf(CleanupPolicyCompact, CleanupPolicyDelete),
	},
	{
		// sluice serve checks it lists --data-dir (internal/cli/serve).
		Name: "log.dirs", Type: TypeString, NullDefault: true, ReadOnly: true,
		Doc: "Comma-separated directories where the broker keeps its log data, one per disk: new partitions go to the one holding the fewest, AlterReplicaLogDirs moves them. The --data-dir (which also holds the metadata) must be one of them.",
	},
	{
		Name: "log.flush.interval.messages", Type: TypeLong, Default: maxLong,
		Doc:         "Default number of messages appended to a partition before it is fsynced.",
		Validate:    atLeast(1),
		Unsupported: notByCount,
	},
	{
		Name: "log.flush.interval.ms", Type: TypeLong, NullDefault: true,
		Doc:         "Default longest time a message stays unsynced before the partition is fsynced; when unset, log.flush.scheduler.interval.ms is used.",
		Unsupported: notByCount,
	},
	{
		// Sluice's: under acks-all the high watermark is the last fsynced
		// offset, so data nobody waits to fsync (acks=0 and acks=1
		// produces) needs a flush to become visible to consumers.
		Name: "log.flush.max.delay.ms", Type: TypeLong, Default: "0", ReadOnly: true,
		Doc:      `Sluice: under log.flush.policy=acks-all, how long data appended without an acks=all producer waiting for it may wait for its fsync, and so to be visible to consumers (the high watermark is the last fsynced offset). 0 fsyncs at once; appends made while a partition's fsync runs share the next one, so a busy partition batches itself. A longer delay batches more fsyncs at the cost of latency.`,
		Validate: between(0, 60000),
	},
	{
		Name: "log.flush.policy", Type: TypeString, Default: FlushPolicyAcksAll,
		Doc:      `Sluice: when produced data is fsynced. "acks-all": an acks=all produce is answered after its batch is fsynced (with group commit), acks=1 after the append, and consumers see only fsynced data (the high watermark is the last fsynced offset; see log.flush.max.delay.ms); "none": never fsync on produce, relying on the page cache and replication.`,
		Validate: oneOf(FlushPolicyAcksAll, FlushPolicyNone),
	},
	{
		Name: "log.flush.scheduler.interval.ms", Type: TypeLong, Default: maxLong, ReadOnly: true,
		Doc:         "How often the log flusher checks whether any log needs an fsync.",
		Unsupported: notByCount,
	},
	{
		Name: "log.index.interval.bytes", Type: TypeInt, Default: "4096",
		Doc:      "Default number of log bytes between two offset index entries.",
		Validate: atLeast(0),
	},
	{
		Name: "log.index.size.max.bytes", Type: TypeInt, Default: "10485760",
		Doc:         "Default largest size of a segment's offset index.",
		Validate:    atLeast(4),
		Unsupported: "a segment rolls by log.segment.bytes and log.roll.ms, never because its index is full (indexes are sparse and not preallocated)",
	},
	{
		Name: "log.local.retention.bytes", Type: TypeLong, Default: "-2",
		Doc:         "Default most local bytes kept per partition with tiered storage; -2 means use log.retention.bytes.",
		Validate:    atLeast(-2),
		Unsupported: noTieredStorage,
	},
	{
		Name: "log.local.retention.ms", Type: TypeLong, Default: "-2",
		Doc:         "Default time local segments are kept with tiered storage; -2 means use log.retention.ms.",
		Validate:    atLeast(-2),
		Unsupported: noTieredStorage,
	},
	{
		Name: "log.message.downconversion.enable", Type: TypeBoolean, Default: "true",
		Doc: "Default of message.downconversion.enable (Kafka 3.x); accepted for compatibility, a no-op.",
	},
	{
		Name: "log.message.timestamp.after.max.ms", Type: TypeLong, Default: "3600000",
		Doc:      "Default of how far a record's timestamp may be ahead of the broker's clock under CreateTime.",
		Validate: atLeast(0),
	},
	{
		Name: "log.message.timestamp.before.max.ms", Type: TypeLong, Default: maxLong,
		Doc:      "Default of how far a record's timestamp may be behind the broker's clock under CreateTime.",
		Validate: atLeast(0),
	},
	{
		Name: "log.message.timestamp.type", Type: TypeString, Default: TimestampCreateTime,
		Doc:      "Default timestamp type of topics: CreateTime or LogAppendTime.",
		Validate: oneOf(TimestampCreateTime, TimestampLogAppendTime),
	},
	{
		Name: "log.preallocate", Type: TypeBoolean, Default: "false",
		Doc:         "Default of whether new segment files are preallocated.",
		Unsupported: "segment files are not preallocated yet",
	},
	{
		Name: "log.retention.bytes", Type: TypeLong, Default: "-1",
		Doc: "Default largest size of a partition before old segments are deleted; -1 means no limit.",
	},
	{
		Name: "log.retention.check.interval.ms", Type: TypeLong, Default: "300000", ReadOnly: true,
		Doc:      "How often the broker checks whether any log segment is due for deletion.",
		Validate: atLeast(1),
	},
	{
		Name: "log.retention.hours", Type: TypeInt, Default: "168", ReadOnly: true,
		Doc: "Default time segments are kept, in hours; used when neither log.retention.ms nor log.retention.minutes is set.",
	},
	{
		Name: "log.retention.minutes", Type: TypeInt, NullDefault: true, ReadOnly: true,
		Doc: "Default time segments are kept, in minutes; used when log.retention.ms is not set, and falls back to log.retention.hours.",
	},
	{
		Name: "log.retention.ms", Type: TypeLong, NullDefault: true,
		Doc: "Default time segments are kept, in milliseconds (-1: no limit); falls back to log.retention.minutes, then log.retention.hours.",
	},
	{
		Name: "log.roll.hours", Type: TypeInt, Default: "168", ReadOnly: true,
		Doc:      "Default time before the active segment is rolled, in hours; used when log.roll.ms is not set.",
		Validate: atLeast(1),
	},
	{
		Name: "log.roll.jitter.hours", Type: TypeInt, Default: "0", ReadOnly: true,
		Doc:         "Default largest jitter subtracted from the segment roll time, in hours; used when log.roll.jitter.ms is not set.",
		Validate:    atLeast(0),
		Unsupported: noJitter,
	},
	{
		Name: "log.roll.jitter.ms", Type: TypeLong, NullDefault: true,
		Doc:         "Default largest jitter subtracted from the segment roll time, in milliseconds; falls back to log.roll.jitter.hours.",
		Unsupported: noJitter,
	},
	{
		Name: "log.roll.ms", Type: TypeLong, NullDefault: true,
		Doc: "Default time before the active segment is rolled, in milliseconds; falls back to log.roll.hours.",
	},
	{
		Name: "log.segment.bytes", Type: TypeInt, Default: "1073741824",
		Doc:      "Default size at which a segment file is rolled.",
		Validate: atLeast(1048576),
	},
	{
		Name: "log.segment.delete.delay.ms", Type: TypeLong, Default: "60000",
		Doc:      "Default wait before a deleted segment's files are removed from the filesystem.",
		Validate: atLeast(0),
	},
	{
		// KIP-578's name (accepted, never implemented in Kafka); Kafka's
		// only bound is its controller's 10,000 records per request.
		Name: "max.broker.partitions", Type: TypeInt, Default: "100000",
		Doc: "Sluice (KIP-578): most partitions this broker may host, internal topics included; a CreateTopics, CreatePartitions or auto-creation beyond it is refused with POLICY_VIOLATION before anything is written. " +
			"Sluice's default is 100000 (Kafka has no such bound).",
		Validate: atLeast(1),
	},
	{
		// Kafka's default is 2147483647, no bound.
		Name: "max.connections", Type: TypeInt, Default: "4096", ReadOnly: true,
		Doc: "Most client connections served at once; at the limit new connections wait (in the listen backlog) until one closes. " +
			"Sluice's default is 4096 (Kafka's 2147483647 is no bound): a connection holds 128 KiB of buffers. Static in Sluice.",
		Validate: atLeast(1),
	},
	{
		// Kafka's default is 2147483647, no bound.
		Name: "max.connections.per.ip", Type: TypeInt, Default: "1000", ReadOnly: true,
		Doc: "Most connections from one IP address; one more is closed at once. 0 refuses every address without an override " +
			"(max.connections.per.ip.overrides must then be set). Sluice's default is 1000 (Kafka's 2147483647 is no bound), so that one host cannot take every connection. Static in Sluice.",
		Validate: atLeast(0),
	},
	{
		Name: "max.connections.per.ip.overrides", Type: TypeString, Default: "", ReadOnly: true,
		Doc:      `Limits of particular addresses in place of max.connections.per.ip: a comma-separated list of host:count, the host an IP address or a name resolved at start, e.g. "hostName:100,127.0.0.1:200". Static in Sluice.`,
		Validate: func(v string) error { _, err := ParseConnectionOverrides(v); return err },
	},
	{
		Name: "max.incremental.fetch.session.cache.slots", Type: TypeInt, Default: "1000", ReadOnly: true,
		Doc:      "Most incremental fetch sessions (KIP-227) the broker keeps; 0 disables them (every fetch is answered with session id 0).",
		Validate: atLeast(0),
	},
	{
		// Sluice's (Redpanda calls it aggregate_metrics, inverted).
		Name: "metrics.partition.level", Type: TypeBoolean, Default: "false", ReadOnly: true,
		Doc: "Sluice: report the partition gauges (log size, offsets, segments, cleaner state) and consumer group lag per partition on /metrics; by default they are summed per topic, which keeps a scrape small at many partitions (10,000 partitions: 42 KB instead of 3.5 MB).",
	},
	{
		Name: "message.max.bytes", Type: TypeInt, Default: "1048588",
		Doc:      "Default largest record batch a topic accepts, after compression (max.message.bytes per topic).",
		Validate: atLeast(0),
	},
	{
		Name: "min.insync.replicas", Type: TypeInt, Default: "1",
		Doc:      "Default fewest in-sync replicas that must have a write for an acks=all produce to succeed (NOT_ENOUGH_REPLICAS otherwise); above the replication factor it counts as the replication factor.",
		Validate: atLeast(1),
	},
	{
		Name: "min.incremental.fetch.session.eviction.ms", Type: TypeInt, Default: "120000", ReadOnly: true,
		Doc:      "How long a fetch session must go unused before a new session may evict it when the cache is full (a newer session is evicted only for a larger one).",
		Validate: atLeast(0),
	},
	{
		Name: "node.id", Type: TypeInt, NullDefault: true, ReadOnly: true,
		Doc:      "The node's id in the cluster; required.",
		Validate: atLeast(0),
	},
	{
		// Kafka's default is -1, no bound: one client's frames could take
		// all memory, so Sluice bounds it.
		Name: "queued.max.request.bytes", Type: TypeLong, Default: "536870912", ReadOnly: true,
		Doc:      "Request bytes all connections together may hold, from a frame's size until its answer; a connection whose next frame does not fit is not read until room is freed. Sluice's default is 512 MiB (Kafka's -1 is no bound, which Sluice refuses).",
		Validate: between(1, math.MaxInt32*4),
	},
	{
		Name: "num.partitions", Type: TypeInt, Default: "1", ReadOnly: true,
		Doc:      "Default number of partitions of a new topic.",
		Validate: atLeast(1),
	},
	{
		Name: "offset.metadata.max.bytes", Type: TypeInt, Default: "4096", ReadOnly: true,
		Doc:      "Largest metadata string a committed offset may carry.",
		Validate: atLeast(0),
	},
	{
		Name: "offsets.retention.check.interval.ms", Type: TypeLong, Default: "600000", ReadOnly: true,
		Doc:      "How often the group coordinator removes expired offsets and empty groups.",
		Validate: atLeast(1),
	},
	{
		Name: "offsets.retention.minutes", Type: TypeInt, Default: "10080", ReadOnly: true,
		Doc:      "How long committed offsets are kept after a group becomes empty (or, for standalone consumers, after the last commit).",
		Validate: atLeast(1),
	},
	{
		Name: "offsets.topic.num.partitions", Type: TypeInt, Default: "50", ReadOnly: true,
		Doc:      "Number of partitions of the offsets topic; should not change after deployment.",
		Validate: atLeast(1),
	},
	{
		Name: "offsets.topic.replication.factor", Type: TypeShort, Default: "3", ReadOnly: true,
		Doc:      "Replication factor of the offsets topic.",
		Validate: atLeast(1),
	},
	{
		Name: "offsets.topic.segment.bytes", Type: TypeInt, Default: "104857600", ReadOnly: true,
		Doc:      "Segment size of the offsets topic, kept small for fast compaction and loading.",
		Validate: atLeast(1),
	},
	{
		Name: "replica.alter.log.dirs.io.max.bytes.per.second", Type: TypeLong, Default: maxLong,
		Doc:      "Most bytes per second a move of a partition between this broker's log dirs (AlterReplicaLogDirs) copies while the partition serves; the last changes, copied with the partition closed, are not throttled.",
		Validate: atLeast(1),
	},
	{
		Name: "replica.fetch.max.bytes", Type: TypeInt, Default: "1048576", ReadOnly: true,
		Doc:      "Bytes a follower asks for per partition in one fetch (the first batch is sent whole even if larger).",
		Validate: atLeast(0),
	},
	{
		Name: "replica.fetch.min.bytes", Type: TypeInt, Default: "1", ReadOnly: true,
		Doc:      "Bytes a follower's fetch waits for, up to replica.fetch.wait.max.ms.",
		Validate: atLeast(1),
	},
	{
		Name: "replica.fetch.response.max.bytes", Type: TypeInt, Default: "10485760", ReadOnly: true,
		Doc:      "Bytes a follower asks for in one fetch, all partitions together.",
		Validate: between(0, 100<<20),
	},
	{
		Name: "replica.fetch.wait.max.ms", Type: TypeInt, Default: "500", ReadOnly: true,
		Doc:      "How long a follower's fetch waits at the leader for new data; keep it below replica.lag.time.max.ms.",
		Validate: atLeast(0),
	},
	{
		Name: "replica.lag.time.max.ms", Type: TypeLong, Default: "30000", ReadOnly: true,
		Doc:      "A follower that has not fetched, or not caught up to the leader's log end, for this long is removed from the ISR.",
		Validate: atLeast(1),
	},
	{
		Name: "process.roles", Type: TypeList, Default: "broker,controller", ReadOnly: true,
		Doc:      "What a node is: broker (serves clients and hosts partitions, follows the metadata quorum without voting), controller (a voter of the metadata quorum, no client listener), or broker,controller (both; the default). A node is a voter exactly when --controller-quorum-voters lists it.",
		Validate: validRoles,
	},
	{
		Name: "producer.id.expiration.check.interval.ms", Type: TypeInt, Default: "600000", ReadOnly: true,
		Doc:      "How often partitions forget producer ids past producer.id.expiration.ms.",
		Validate: atLeast(1),
	},
	{
		Name: "producer.id.expiration.ms", Type: TypeInt, Default: "86400000", ReadOnly: true,
		Doc:      "How long a partition keeps the state of a producer id that wrote nothing and has no open transaction; its next write after that needs a new sequence.",
		Validate: atLeast(1),
	},
	{
		// KIP-392. Kafka takes any class; Sluice knows these two.
		Name: "replica.selector.class", Type: TypeClass, NullDefault: true, ReadOnly: true,
		Doc: "Which replica a consumer reads from: unset or " + LeaderSelector + " the leader; " + RackAwareSelector +
			" an in-sync replica in the consumer's rack (client.rack), if there is one (KIP-392).",
		Validate: oneOf(LeaderSelector, RackAwareSelector),
	},
	{
		Name: "socket.request.max.bytes", Type: TypeInt, Default: "104857600", ReadOnly: true,
		Doc:      "Largest request the broker accepts on a connection.",
		Validate: atLeast(1),
	},
	{
		Name: "transaction.abort.timed.out.transaction.cleanup.interval.ms", Type: TypeInt, Default: "10000", ReadOnly: true,
		Doc:      "How often the transaction coordinator aborts transactions open longer than their transaction.timeout.ms.",
		Validate: atLeast(1),
	},
	{
		Name: "transaction.remove.expired.transaction.cleanup.interval.ms", Type: TypeInt, Default: "3600000", ReadOnly: true,
		Doc:      "How often the transaction coordinator removes transactional ids past transactional.id.expiration.ms.",
		Validate: atLeast(1),
	},
	{
		Name: "transaction.state.log.segment.bytes", Type: TypeInt, Default: "104857600", ReadOnly: true,
		Doc:      "Segment size of the transaction state topic.",
		Validate: atLeast(14),
	},
	{
		Name: "transaction.max.timeout.ms", Type: TypeInt, Default: "900000", ReadOnly: true,
		Doc:      "Largest transaction timeout a producer may ask for in InitProducerId.",
		Validate: atLeast(1),
	},
	{
		Name: "transaction.partition.verification.enable", Type: TypeBoolean, Default: "true", ReadOnly: true,
		Doc: "Refuse (INVALID_TXN_STATE) a transactional produce to a partition its transaction has not added (KIP-890 part 1).",
	},
	{
		Name: "transaction.version", Type: TypeInt, Default: "2", ReadOnly: true,
		Doc: "Sluice's setting of Kafka's transaction.version feature, advertised in ApiVersions: 2 lets clients use " +
			"KIP-890 part 2 (partitions added by the produce itself, the epoch bumped by every EndTxn); 0 or 1 keeps the KIP-98 protocol.",
		Validate: between(0, 2),
	},
	{
		Name: "transaction.state.log.min.isr", Type: TypeInt, Default: "2", ReadOnly: true,
		Doc:         "min.insync.replicas of the transaction state topic (one node: the leader is the ISR).",
		Validate:    atLeast(1),
		Unsupported: "Sluice runs one node, whose in-sync replicas are the leader alone",
	},
	{
		Name: "transaction.state.log.num.partitions", Type: TypeInt, Default: "50", ReadOnly: true,
		Doc:      "Number of partitions of the transaction state topic; should not change after deployment.",
		Validate: atLeast(1),
	},
	{
		Name: "transaction.state.log.replication.factor", Type: TypeShort, Default: "3", ReadOnly: true,
		Doc:      "Replication factor of the transaction state topic.",
		Validate: atLeast(1),
	},
	{
		Name: "transactional.id.expiration.ms", Type: TypeInt, Default: "604800000", ReadOnly: true,
		Doc:      "How long a transactional id may go without a transaction status update before it expires.",
		Validate: atLeast(1),
	},
	{
		Name: "unclean.leader.election.enable", Type: TypeBoolean, Default: "false",
		Doc: "Default of whether a replica outside the ISR may become leader as a last resort (losing what only the ISR had).",
	},
}

// KIP-1066's cordoned.log.dirs and its value that cordons every log
// directory of a broker.
const (
	CordonedLogDirs = "cordoned.log.dirs"
	CordonAll       = "*"
)

// CordonsAll reports whether a cordoned.log.dirs value cordons every log
// directory of its broker: * among its items, as Kafka reads it.
func CordonsAll(v string) bool {
	return slices.Contains(splitList(v), CordonAll)
}

// cordonedLogDirs accepts *, nothing, or absolute paths (the broker's
// log.dirs; a path that is none of them cordons nothing, as in Kafka).
func cordonedLogDirs(v string) error {
	items := splitList(v)
	if len(items) == 1 && items[0] == CordonAll {
		return nil
	}
	for _, it := range items {
		if it == CordonAll {
			return errors.New("* cordons every log directory of the broker: give it alone, not in a list")
		}
		if !strings.HasPrefix(it, "/") {
			return fmt.Errorf("%q: want * or absolute paths of the broker's log.dirs", it)
		}
	}
	return nil
}

// CordonedDirs returns the log dirs a cordoned.log.dirs value names (not
// *), cleaned.
func CordonedDirs(v string) []string {
	var out []string
	for _, it := range splitList(v) {
		if it != CordonAll {
			out = append(out, path.Clean(it))
		}
	}
	return out
}

// Reasons of Unsupported broker configs shared by several.
const (
	notByCount      = "Sluice fsyncs as log.flush.policy and log.flush.max.delay.ms say, not after a number of messages or an interval"
	noTieredStorage = "tiered storage is not supported"
	noJitter        = "segments roll at log.roll.ms (segment.ms) without jitter"
)

var brokerIndex = indexDefs(brokerDefs)

// BrokerDefs returns every broker config, sorted by name.
func BrokerDefs() []Def { return slices.Clone(brokerDefs) }

// BrokerDef returns the broker config called name.
func BrokerDef(name string) (Def, bool) {
	i, ok := brokerIndex[name]
	if !ok {
		return Def{}, false
	}
	return brokerDefs[i], true
}

// ValidateBrokerConfigs checks broker configs (static, or dynamic ones as
// given to AlterConfigs/IncrementalAlterConfigs): every name must be a broker
// config (ErrUnknownConfig) and every value valid (ErrInvalidValue); and
// log.cleaner.min.compaction.lag.ms must not exceed
// log.cleaner.max.compaction.lag.ms. It does not refuse ReadOnly configs:
// they are valid statically, and a handler altering dynamic configs must
// reject them itself. Keys are checked in sorted order and the first error
// is returned.
func ValidateBrokerConfigs(configs map[string]string) error {
	if err := validate(configs, BrokerDef, "broker"); err != nil {
		return err
	}
	return checkLagOrder(configs, "log.cleaner.min.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", BrokerDef)
}

// validHost is Kafka's Utils.validHostPattern: the characters a host in
// max.connections.per.ip.overrides may have.
var validHost = regexp.MustCompile(`^[0-9a-zA-Z\-%._:]*$`)

// ParseConnectionOverrides parses max.connections.per.ip.overrides as
// Kafka does: comma-separated host:count items, split at the last ':' (so
// an IPv6 address needs no brackets); a later item for the same host wins.
// Each host must be non-empty and of Kafka's host characters, each count
// an INT of at least 0. An empty value is no overrides.
func ParseConnectionOverrides(v string) (map[string]int, error) {
	out := map[string]int{}
	if strings.TrimSpace(v) == "" {
		return out, nil
	}
	for _, it := range strings.Split(v, ",") {
		it = strings.TrimSpace(it)
		i := strings.LastIndexByte(it, ':')
		if i < 0 {
			return nil, fmt.Errorf("item %q is not host:count", it)
		}
		host, count := strings.TrimSpace(it[:i]), strings.TrimSpace(it[i+1:])
		if host == "" || !validHost.MatchString(host) {
			return nil, fmt.Errorf("item %q: %q is not a host name or IP address", it, host)
		}
		n, err := strconv.ParseInt(count, 10, 32)
		if err != nil || n < 0 {
			return nil, errors.New("item " + strconv.Quote(it) + ": the count must be an INT of at least 0")
		}
		out[host] = int(n)
	}
	return out, nil
}

// validRoles checks a process.roles value: broker, controller, or both,
// each once.
func validRoles(v string) error {
	elems := ListElems(v)
	if len(elems) == 0 {
		return errors.New("must name broker, controller, or both")
	}
	for i, e := range elems {
		if e != "broker" && e != "controller" {
			return fmt.Errorf("unknown role %q: the roles are broker and controller", e)
		}
		if i > 0 && elems[i-1] == e {
			return fmt.Errorf("names %s twice", e)
		}
	}
	return nil
}
