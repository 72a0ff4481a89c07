package replica

import "time"

// unknownOffset is a follower's LEO (and last fetch leader LEO) before it has
// fetched from this leader: Kafka's UnifiedLog.UnknownOffset. An unknown LEO
// is below every real offset, so an in-sync follower that has not fetched yet
// holds the high watermark where it is.
const unknownOffset int64 = -1

// follower is the leader's record of one follower, Kafka's ReplicaState
// (Replica.scala) without the log start offset and broker epoch, which this
// package does not use.
//
// A zero time.Time stands for Kafka's 0 ms: "never", further in the past than
// any lag limit.
type follower struct {
	id int32
	// logEndOffset is the offset of the follower's last fetch: its LEO.
	logEndOffset int64
	// lastFetchLeaderLogEndOffset is the leader's LEO when the follower's
	// previous fetch arrived. A fetch that reaches it proves the follower was
	// caught up at lastFetchTime, even if the leader has appended since.
	lastFetchLeaderLogEndOffset int64
	lastFetchTime               time.Time
	// lastCaughtUpTime is the latest time t at which the follower's most
	// recent fetch offset was at least the leader's LEO at t. The ISR
	// shrinks on it, not on an offset lag, so a follower that trails a
	// steady stream of small produces by a few records stays in sync.
	lastCaughtUpTime time.Time
}

// newFollower is a replica the leader has never heard from: Kafka's
// ReplicaState.Empty.
func newFollower(id int32) follower {
	return follower{id: id, logEndOffset: unknownOffset}
}

// fetched records a fetch at fetchOffset that arrived at now, when the
// leader's LEO was leaderLEO (Replica.updateFetchStateOrThrow).
func (f *follower) fetched(fetchOffset, leaderLEO int64, now time.Time) {
	switch {
	case fetchOffset >= leaderLEO:
		f.lastCaughtUpTime = later(f.lastCaughtUpTime, now)
	case fetchOffset >= f.lastFetchLeaderLogEndOffset:
		// It has everything the leader had at its previous fetch: it was
		// caught up then.
		f.lastCaughtUpTime = later(f.lastCaughtUpTime, f.lastFetchTime)
	}
	f.logEndOffset = fetchOffset
	// Kafka keeps the larger of the two: the leader's LEO only grows while it
	// leads, so this is the LEO at this fetch.
	f.lastFetchLeaderLogEndOffset = max(leaderLEO, f.lastFetchLeaderLogEndOffset)
	f.lastFetchTime = now
}

// reset reinitializes the follower when this node starts a leader epoch
// (Replica.resetReplicaState). A follower in the ISR gets a full lag period
// from now before it can be found out of sync; one outside it is "never"
// caught up, so it does not hold the high watermark back until it fetches.
// A new leader forgets what it knew of the follower's log; a leader that
// starts another epoch keeps it.
func (f *follower) reset(now time.Time, epochStartOffset int64, newLeader, inSync bool) {
	var caughtUp time.Time
	if inSync {
		caughtUp = now
	}
	f.lastCaughtUpTime = caughtUp
	if newLeader {
		f.logEndOffset = unknownOffset
		f.lastFetchLeaderLogEndOffset = unknownOffset
		f.lastFetchTime = time.Time{}
		return
	}
	f.lastFetchLeaderLogEndOffset = epochStartOffset
	// Not in sync: its last fetch time is "never", so that one fetch cannot
	// vouch for it having been caught up before this epoch.
	f.lastFetchTime = caughtUp
}

// caughtUp says whether the follower has the leader's whole log or was
// caught up within maxLag of now (ReplicaState.isCaughtUp). Kafka tests
// LEO == leader LEO; a Sluice follower may be ahead of the LEO the leader
// reports (it fsynced records the leader has not yet), and has the leader's
// whole log then too.
func (f *follower) caughtUp(leaderLEO int64, now time.Time, maxLag time.Duration) bool {
	return f.logEndOffset >= leaderLEO || now.Sub(f.lastCaughtUpTime) <= maxLag
}

// later is the later of two times, as Kafka's max on milliseconds.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
