// Package audit is the heartbeat auditor (Netflix's "auditor" of talk 002):
// it tells whether a Kafka cluster loses, duplicates, reorders or delays
// records, partition by partition and broker by broker, speaking to it only
// through the Kafka protocol (franz-go kgo and kadm), so that it audits any
// Kafka cluster, not only Sluice.
//
// An Auditor produces, every Options.Interval, one heartbeat (Heartbeat, 39
// bytes) to every partition of the audit topic (DefaultTopic, created when
// missing with one partition per broker so that every broker leads one,
// replication factor min(3, brokers), retention.ms one hour) with kgo's
// ManualPartitioner and an idempotent acks=all producer. Its value carries
// the run's random InstanceID, a sequence number per partition (0, 1, 2,
// ...) and the produce wall time. It consumes every partition by direct
// assignment (no consumer group) from the end offsets read before the first
// heartbeat, so that it reads every heartbeat it produced.
//
// The Tracker keeps, per partition, the state of the last WindowSeqs
// sequence numbers and counts, for this instance's heartbeats only (other
// auditors' are ignored):
//
//   - seen: a sequence consumed for the first time; its latency is the
//     consume time minus the produce time (one host's wall clock).
//   - lost: a sequence the cluster acknowledged (acks=all) and that was not
//     consumed although a higher sequence of the partition was (the
//     producer writes a partition in sequence order and the consumer reads
//     it in offset order, so it was passed over), or that was not consumed
//     within the grace period of its acknowledgement. A sequence passed
//     over before its acknowledgement arrives is lost when the
//     acknowledgement is a success.
//   - late: a sequence counted lost that was consumed afterwards. Counters
//     only grow, so it stays in lost: lost minus late (Stats.Missing) is what
//     is still missing.
//   - duplicated: a sequence consumed when it had already been consumed.
//     A duplicate is never also out of order.
//   - out of order: a sequence consumed for the first time while a higher
//     sequence of the same partition had already been consumed (it is then
//     also counted seen, and late if it had been passed over as lost).
//   - produce errors: a heartbeat the cluster refused, or did not
//     acknowledge within the delivery timeout (the grace period): not
//     expected in the log, never counted lost, seen if it shows up anyway.
//   - unexpected: a record of this instance whose sequence was never sent,
//     whose value names another partition than the one it was read from,
//     or whose sequence is older than the window (too old to tell a
//     duplicate from a late one).
//   - undecodable: a value on the audit topic that is not a heartbeat.
//
// The broker of a partition is its leader now, from metadata read every
// 10 s. Partitions added to the topic after the start are not audited until
// the next start. Memory is bounded: about 14 KiB per partition (the
// window and a latency histogram) and at most maxBufferedHeartbeats
// heartbeats waiting in the producer.
//
// # Pipeline counts: how many events were lost between the app and S3
//
// Heartbeats audit a cluster; counts audit a pipeline. Each stage counts
// the records it has delivered with a Counter, per (topic, window of
// record time): the window is [floor(timestamp to CountWindow, one
// minute), +1 min), and the timestamp is the record's own (the collector's
// receive time, kept by the mirror and read by the sink), so one event
// falls in the same window at every stage. The stages and when they count:
//
//   - collect: an event, when the cluster acknowledged it (acks=all) to the
//     collector, from its buffer or its spool's replay; with the partition
//     and offset it was written at. An event the spool replays after a
//     kill -9 is a second record with its own offset: counted again, and
//     also in the topic, so it is not a difference between stages.
//   - topic: computed by the report, not published: the records of the
//     topic from the first offset whose timestamp is at or after --since
//     to the end offsets read when the report starts, by timestamp
//     (transaction markers not counted).
//   - mirror: a record, when the target acknowledged its copy; under its
//     SOURCE topic name, with its source partition and offset.
//   - sink: a record, when the object holding it is uploaded and committed;
//     with the partition and offset it was read at. The sink adds each
//     record to a Tally as it writes it into an object (ranges, not the
//     records), then calls Counter.CountTally once the object is committed,
//     or drops the Tally when the upload fails (Counter.CountRecords does
//     the same for records it still holds).
//
// A Counter publishes every DefaultCountFlushInterval (5 s), and at Close,
// one CountRecord per changed entry to the counts topic
// (DefaultCountsTopic, "__" so that a mirror does not copy it; created
// when missing with one partition, replication factor min(3, brokers),
// cleanup.policy compact,delete and a week's retention). An entry is one
// (topic, window) of one run of one stage (its random instance id) and a
// generation number; its record is cumulative (the count so far and the
// distinct offsets as sorted ranges per partition) and keyed
// stage/instance/gen/topic/window, so a newer record of a key replaces the
// older (compaction keeps only it; a publish lost or repeated costs
// nothing). The format is JSON with "v": 1 (DecodeCount refuses other
// versions and checks every field; fuzzed). An entry not changed for
// entryIdle after it was published leaves memory; a record of its window
// that comes later starts a new generation. An entry past
// maxRangesPerRecord ranges also goes on in a new generation, and over
// maxOpenEntries entries the one idle longest is published and dropped.
// Count takes the counter's lock and reads no clock: about 100 ns, no
// allocation in an open window.
//
// Dedupe: the report keeps the newest record of each key, then, per
// (stage, topic, window), takes the UNION of the offset ranges of every
// instance and generation: an offset counted twice (a mirror that ran
// again from an older commit or in a new group, a sink that retried an
// upload, a restarted stage) counts once. Raw, the sum of the counts,
// shows what the union removed. Records counted without an offset
// (Count with offset < 0) are added as they are. The offsets are those of
// the cluster the stage read (or, for collect, wrote): one stage reading
// the same topic name on two clusters must not share a stage name.
//
// Comparison (BuildCountReport): per topic, the stages that counted some
// of it since --since and those expected (ReportOptions.Expect, --expect:
// without it a stage stopped for the whole period is left out, not
// missing), in the order collect, topic, mirror, sink, then other names;
// the topic stage counts 0 where it has no records. In every window that ended Settle ago (DefaultSettle, 2
// minutes; every window with Settle < 0), each stage is compared with the
// one before it: lower is missing at that stage (lost, or not yet there),
// higher is extra (records no earlier stage counted, or counted without an
// offset). A stage silent in a window of a topic it counts counts 0 there.
// Counts compare numbers, not records: a loss and an equal surplus in the
// same window and stage cancel out. Records deleted by retention (or
// DeleteRecords) are missing at the topic stage: report within retention.
package audit
