// Package mirror copies topics from one Kafka cluster to another, as Kafka's
// MirrorMaker 2 does, speaking to both only through the Kafka protocol
// (franz-go kgo and kadm): either side can be Sluice or any Kafka cluster.
//
// # What is copied
//
// Every source topic whose whole name matches the Topics regexp (Go syntax,
// anchored: "orders|payments" does not match "orders-dlq"), internal
// topics (names starting with "__") excepted, goes to a target topic named
// TopicPrefix + the source name. A missing target topic is created with the
// source's partition count, the replication factor asked for (the target's
// default when none is), and the source's non-default configs: those whose
// DescribeConfigs source is DYNAMIC_TOPIC_CONFIG, except the ones MM2's
// DefaultConfigPropertyFilter leaves out too (replication throttles,
// min.insync.replicas, unclean.leader.election.enable,
// message.timestamp.type and the timestamp difference bounds), which
// describe the target cluster rather than the data, and sluice.mirror.source
// (the offset-preserving mode's mark, which only the mirror of that mode
// sets, to its own source).
//
// Configs are then followed at every topic sync (TopicSyncInterval), as
// MM2's sync.topic.configs does with IncrementalAlterConfigs: a copied
// config whose value on the target topic (its DYNAMIC_TOPIC_CONFIG) is not
// the source's is SET to it, and a config the mirror set (at creation or
// in a sync of this run) that the source no longer sets is DELETEd, when
// the target still holds the value the mirror left. Unlike MM2, which
// replaces the target topic's configs with the source's (deleting every
// other override), the mirror leaves alone what an operator set on the
// target only (a config the source does not set, or an excluded one): the
// source wins only for the configs it sets. What the mirror set is kept in
// memory, so a config removed from the source while no mirror ran stays on
// the target (delete it there by hand). A config the target refuses (one
// it does not know) is logged, counted
// (sluice_mirror_topic_config_refused_total) and tried again only when
// its source value changes; it holds back none of the others. Each change
// is logged and counted (sluice_mirror_topic_config_changes_total{op}).
//
// When a source topic gains partitions the target gets them too (the check runs every
// TopicSyncInterval, and before the first record of a partition the target
// does not have yet). A topic deleted on the source is left on the target.
//
// Each record keeps its key, value, headers and timestamp and goes to the
// SAME partition number on the target, by one idempotent producer with
// acks=all: the order of a source partition is the order of its target
// partition. Target offsets are the target's own: they differ from the
// source's (offset translation below maps them).
//
// # Delivery: at least once
//
// The source is read by a consumer group (Group, default "sluice-mirror").
// A source offset is committed only after the target acknowledged (acks=all)
// the record at it and every record before it in the partition; commits go
// every CommitInterval and at a clean stop, which first waits for every
// produced record to be acknowledged. So:
//
//   - a clean stop (Run's context cancelled, SIGTERM for the CLI) loses
//     nothing and, when the flush finishes within the stop timeout,
//     duplicates nothing: the next run starts where this one stopped;
//   - a crash (kill -9, power cut, a target error that stops the mirror)
//     loses nothing acknowledged by the source cluster, and the next run
//     copies again the records acknowledged by the target after the last
//     commit: at most CommitInterval's worth of records per partition (plus
//     what was in flight) appear twice on the target, in order, each
//     duplicate run a contiguous repeat of a stretch of the source
//     partition. The idempotent producer dedupes its own retries within
//     one run, not across runs.
//
// A produce error the producer does not retry (a record too large for the
// target, an authorization error) stops the mirror with the error; nothing
// after the failed record is committed, so the next run starts at it.
// Nothing is ever dropped to keep up: when the target is slow, the records
// produced and not yet acknowledged grow to MaxInFlightBytes, then fetching
// from the source pauses (kgo PauseFetchTopics) and the copy waits until
// they fall to half. Memory is about MaxInFlightBytes in flight plus one
// fetch buffered by the consumer (at most MaxInFlightBytes, or 50 MiB).
//
// Records aborted by a source transaction are not copied (read_committed);
// committed ones are copied as plain records, not in a transaction.
//
// # Loops, when mirroring both ways
//
// Each copied record carries the header sluice-mirror-source naming the
// cluster id of the cluster it was first written to: a mirror adds it with
// the source's cluster id when the record has none and keeps it when it has
// one. A mirror does not copy a record whose header names its target's
// cluster id (the record came from there), so A -> B and B -> A together
// copy each record once each way, and a ring A -> B -> C -> A stops at the
// record's origin. TopicPrefix (for example "a." on the A -> B mirror, as
// MM2's DefaultReplicationPolicy names remote topics "A.topic") keeps the
// copies in topics of their own; with a prefix, choose a Topics regexp that
// does not match the other direction's prefixed topics, or they are copied
// back as new topics (the header still stops their records).
//
// # Offset translation (checkpoints)
//
// Every CheckpointInterval the mirror translates the committed offsets of
// the source's consumer groups (its own group excepted) on mirrored topics,
// and commits them to the same group on the target (OffsetCommit with
// kadm), as MM2's checkpoints do, so that the group's consumers can move to
// the target and resume. Translation uses offset syncs: per partition, a
// sparse, in-memory list of (source offset -> target offset) pairs taken
// from the producer's acknowledgements (one every offsetSyncEvery records,
// and the newest). A committed source offset c becomes the target offset
// of the latest sync at or below c, with nothing added: when that sync is
// c itself the consumer resumes exactly at the copy of record c; else it
// resumes at an earlier record and replays at most offsetSyncEvery records
// it had already processed. It never skips a record: every source record
// from the sync's offset on was copied after it, in order. A group's offset
// is not written when no sync at or below it is known (before this run
// copied anything of the partition, or when the group is behind the first
// sync kept), when the target's group has members (they commit their own
// offsets), or when the target already has a higher offset for the
// partition. Syncs live in memory: after a restart translation resumes with
// the first records the new run copies.
//
// # Offset-preserving mode (PreserveOffsets; Sluice targets only)
//
// Translation costs consumers a replay of up to offsetSyncEvery records
// and needs the mirror's in-memory syncs. With PreserveOffsets the copy
// has the source's offsets instead, as Confluent's cluster linking and
// Redpanda's shadow topics do, so that a committed offset means the same
// record on both clusters and is copied as it is.
//
// The target topic is created with the topic config sluice.mirror.source
// set to the source's cluster id (MirrorSourceConfig). A target that does
// not know the config (not Sluice) stops the mirror, which says so: it
// refuses the creation (Kafka), or takes the config without knowing it
// (kfake), which the mirror sees because the broker does not document it
// (DescribeConfigs with documentation); and should a produce answer
// still name another base offset than the batch's own, the mirror stops
// there. An existing target topic must carry the config with
// the same cluster id, or the mirror stops: records of another origin
// there would make equal offsets mean different records. For the same
// reason the broker takes the config only at creation: setting it on an
// existing topic, or changing it, is INVALID_CONFIG (deleting it is the
// failover; TestMirrorSourceConfigOnlyAtCreation). On such a
// topic the broker takes produce requests only from client id
// sluice-mirror-offsets (every other producer gets POLICY_VIOLATION, a
// translating mirror's too, whose batches carry no offsets: the copy is
// read-only) and appends the batches at their own base offsets, as a
// follower appends its leader's (partition.AppendMirrored):
//
//   - a batch at or past the log end offset is appended there, the log end
//     jumping over the gap (compaction, deleted records, a first batch
//     past an empty log's start);
//   - a batch wholly below the log end is a copy already there and is
//     answered as a success: the mirror resends freely after a lost answer
//     or a crash;
//   - a batch straddling the log end is refused with INVALID_RECORD (the
//     source's batches changed since they were copied; the mirror stops).
//
// Batches are copied byte for byte (compression, sequences, transactional
// flags, control batches), but for the partition leader epoch, which the
// target's leader sets to its own, and the producer id (moved out of the
// target's own, see the failover below; the CRC recomputed): the target's
// followers replicate the copy with the target's epochs like any other
// batch, and truncate by them after a leader change. Its leader notes the
// copied producers and transaction markers exactly as a follower does, so
// read_committed consumers of the copy see the source's transactions
// decided the same way: aborted records filtered (through the copy's own
// aborted-transaction index), the last stable offset held by a
// transaction open on the source until its marker is copied. The target's
// transaction coordinator takes no part: these are the source's
// transactions, and it never writes markers on a copy.
//
// The copy runs two goroutines per source partition: a fetcher sending
// raw Fetch requests to the source partition's leader (read_uncommitted,
// so aborted records and markers come too; at most preserveFetchBytes per
// fetch, or one larger batch), at most preserveFetchAhead fetches ahead,
// and a producer sending each fetch's whole batches to the target
// partition's leader in one raw Produce (acks=all), again with the same
// batches until the target takes them, one request at a time, in order.
// A partition thus holds at most preserveFetchAhead+2 fetches in memory. There is no source group: the target's high watermark
// is the copy's progress. A run starts each partition there, or at the
// source's log start offset when that is later (records the source
// deleted before they were copied); then it deletes on the target, with
// DeleteRecords, what lies below the source's log start, so both logs
// start at the same offset. So it goes on: each fetch answer names the
// source's log start, and when it moves (DeleteRecords, retention) the copy
// deletes up to it, as far as it holds records
// (TestMirrorPreserveFollowsDeletes). A crash (kill -9) therefore loses and
// duplicates nothing: the next run resends from the target's high
// watermark and the broker passes over what it already had. Two mirrors
// running at once write the same batches and do no harm either.
//
// Consumer groups' committed offsets are copied unchanged every
// CheckpointInterval, under the rules above (no members on the target, not
// below the target's offset), and only once the copy has reached them.
//
// Limits: the source's batches must be magic 2 (Kafka 0.11 on); no
// loop-prevention header is added (the bytes are the source's), and a copy
// takes no other producer, so this mode goes one way. Later changes of the
// source's log start (retention, DeleteRecords) are not followed; the
// copy's own retention applies. To fail over, stop the mirror and delete
// the config from the target topic (sluice config, or kafka-configs
// --delete-config sluice.mirror.source): the topic then takes producers,
// from its end offset on. The copy holds the source's producer ids moved
// out of the ids a cluster hands out (partition.MirroredProducerID), so the
// target's new producers are never taken for the source's (both clusters
// count producer ids from 0: a new producer's first record was answered as
// a resend of the source's and never written, TestMirrorFailoverProducerIDs).
// A transaction still open on the source at that moment would hold the
// copy's last stable offset for good (its marker would have come through
// the mirror): once the config is gone the copy's leaders abort the
// source's open transactions (partition.AbortMirroredTransactions,
// TestMirrorFailoverAbortsOpenTransactions).
//
// # Audit counts
//
// With Options.Audit (sluice mirror --audit), every record whose copy the
// target acknowledged is counted as the audit stage "mirror"
// (internal/audit.Counter) under its source topic, partition, offset and
// timestamp, in the producer's promise before Mirror.mu is taken (the
// counter's lock is never held with it). A record skipped by loop
// prevention is not counted. A run that copies offsets again (after a
// crash, or in a new group) counts them again; the audit report dedupes
// them by offset.
//
// The offset-preserving mode counts too, though it moves whole batches
// undecoded: once the target has taken a produce, its batches are read
// again for each record's offset and timestamp (the record's length, and
// its two deltas; a compressed batch is decompressed once, at most
// auditMaxBatchBytes; nothing is allocated per record) and each record at
// or after the offset fetched is counted, under the source topic. Control
// batches (transaction markers) are not records and are not counted; the
// records of aborted transactions are, as they are copied and the audit's
// topic stage (which reads read_uncommitted) counts them too, so that the
// mirror and topic stages agree. (The translating mode copies and counts
// committed records only: a topic with aborted transactions shows them
// as missing between the topic and mirror stages there.) A batch that
// cannot be read is logged and its records not counted; the copy goes on.
//
// Ownership: Run owns the source consumer and the copy path; the producer's
// promise goroutine updates the per-partition state under Mirror.mu (the
// only lock taken by the mirror; kgo's own locks are taken inside it when
// offsets are marked, never the other way round).
package mirror
