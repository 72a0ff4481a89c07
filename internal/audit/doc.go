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
package audit
