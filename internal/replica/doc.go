// Package replica is a partition leader's view of its followers: each
// follower's log end offset (LEO), the in-sync replica set (ISR) and the high
// watermark (HW), kept by Kafka's replication rules (kafka.cluster.Partition
// and Replica, Kafka 3.7 to 4.x in KRaft mode) so that a Kafka follower, a
// Kafka controller and a Sluice broker agree on what "in sync" and
// "committed" mean.
//
// It is a pure state machine, like etcd's raft package: no goroutines, no IO,
// no locks and no clock. Every event carries the time it happened, so a test
// (or a replay) drives it deterministically. A Leader is not safe for
// concurrent use: its owner serializes the calls.
//
// # How the broker uses it
//
// The broker's replica manager keeps one Leader for each partition this
// broker leads, created by NewLeader when the metadata makes it leader and
// dropped when the metadata makes it a follower. It calls the Leader under the
// partition's lock:
//
//   - Produce: CheckProduce(acks) before appending, so that an acks=all
//     request is refused with NOT_ENOUGH_REPLICAS while the ISR is below
//     min.insync.replicas; LeaderAppended(leo, now) after the append, with the
//     leader's own LEO (under Sluice's default log.flush.policy=acks-all, the
//     fsynced end of its log, so that the HW never covers records a power cut
//     could take from the leader).
//   - Follower Fetch: once the request's leader epoch and fetch offset are
//     checked against the log, FollowerFetched(replicaID, fetchOffset, now).
//     The fetch offset is the follower's LEO (under acks-all, its fsynced end).
//   - A timer every ReplicaLagTimeMax/2 (Kafka's isr-expiration task): Tick.
//   - After any event: TakeProposal; a proposal is sent as AlterPartition to
//     the active controller. Its answer comes back as Committed or Failed. At
//     most one proposal is in flight at a time.
//   - A metadata change for the partition (new leader epoch, new partition
//     epoch, new assignment or ISR) while this broker stays leader: MakeLeader.
//   - Whenever an event reports that the HW moved: the broker stores the new
//     HighWatermark in the partition's log, answers the fetches waiting on it,
//     and polls Acked(requiredOffset) for each acks=all produce waiting in
//     purgatory, answering those that are done.
//
// The Leader computes; it never decides for the caller what to log, send or
// persist. Errors it returns are sentinels of this package, wrapped with
// context; the broker turns them into Kafka error codes in one place.
//
// # What is not here
//
// Broker epochs (KIP-903): the broker rejects a fetch that carries a stale
// broker epoch before calling FollowerFetched, adds the epochs to the
// AlterPartition it sends, and marks a replica whose fetch epoch does not
// match the metadata's with SetEligible(id, false, now). Reassignment's
// adding/removing replicas are not modelled: the replication factor is the
// size of the assignment.
package replica
