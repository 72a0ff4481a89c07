package txn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/group"
)

// The tests of the leadership of __transaction_state's partitions: a
// coordinator that resigns a partition and another that is elected over
// the same replica files, as when leadership moves between brokers (each
// broker's replica has the same records).

// idIn returns the i-th transactional id (of the form prefix-k) that
// hashes to partition p of Topic.
func idIn(p int32, prefix string, i int) string {
	for k := 0; ; k++ {
		id := fmt.Sprint(prefix, "-", k)
		if group.PartitionFor(id, stateParts) == p {
			if i == 0 {
				return id
			}
			i--
		}
	}
}

// lead makes the env's replica of partition p of Topic the leader at
// epoch, as the broker does before it elects the coordinator.
func (e *env) lead(p int32, epoch int32) {
	e.t.Helper()
	e.mu.Lock()
	part := e.state[p]
	e.mu.Unlock()
	if err := part.BecomeLeader(epoch); err != nil {
		e.t.Fatal(err)
	}
}

// takeOver resigns partition p in the env's coordinator (at epoch) and
// elects a new coordinator over the same replica, which becomes e.c (the
// old one is closed at the end of the test); the new one leads only p.
// It waits until the load is done (synctest).
func (e *env) takeOver(p int32, epoch int32) *Coordinator {
	e.t.Helper()
	old := e.c
	e.t.Cleanup(old.Close)
	old.Resign(p, epoch)
	e.lead(p, epoch)
	e.c = e.newCoordinator()
	if err := e.c.Elect(p, stateParts, epoch); err != nil {
		e.t.Fatal(err)
	}
	synctest.Wait()
	return old
}

func (e *env) epochsOfMarkers() []int32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int32(nil), e.markerEpochs...)
}

// TestElectLoadsAnotherCoordinatorsPartition: ids written by one
// coordinator are served by the next one elected over the partition: their
// producer ids, epochs and open transactions are back, and go on from
// there.
func TestElectLoadsAnotherCoordinatorsPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		ctx := context.Background()
		a, b, other := idIn(0, "x", 0), idIn(0, "x", 1), idIn(1, "x", 0)
		pa, ea := e.init(a, 60_000)
		e.add(a, pa, ea, tp0)
		if err := e.endTxn(a, pa, ea, true); err != nil {
			t.Fatal(err)
		}
		pb, eb := e.init(b, 60_000)
		e.add(b, pb, eb, tp1) // open at the takeover
		e.produce(tp1, pb, eb, 0, 1)
		po, _ := e.init(other, 60_000)
		before := map[string]Description{a: e.describe(a), b: e.describe(b)}

		old := e.takeOver(0, 1)

		// The old coordinator answers NOT_COORDINATOR for the ids of the
		// partition it resigned, and still serves the other.
		if _, _, err := old.InitProducerID(ctx, a, 60_000, -1, -1); !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("old coordinator, InitProducerId after Resign: %v", err)
		}
		if _, err := old.Describe(b); !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("old coordinator, Describe after Resign: %v", err)
		}
		if d, err := old.Describe(other); err != nil || d.ProducerID != po {
			t.Fatalf("old coordinator, Describe of its other partition: %+v %v", d, err)
		}
		if l, err := old.List(ListFilter{MinDurationMs: -1}); err != nil || len(l) != 1 || l[0].ID != other {
			t.Fatalf("old coordinator, List: %+v %v", l, err)
		}

		// The new one has partition 0's ids as they were, and only them.
		for id, want := range before {
			if got := e.describe(id); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s loaded: %+v, want %+v", id, got, want)
			}
		}
		if _, err := e.c.Describe(other); !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("new coordinator, Describe of an id of a partition it does not lead: %v", err)
		}
		if l, err := e.c.List(ListFilter{MinDurationMs: -1}); err != nil || len(l) != 2 || l[0].ID > l[1].ID {
			t.Fatalf("new coordinator, List: %+v %v", l, err)
		}
		// a's epoch is bumped from where it was.
		if p, ep := e.init(a, 60_000); p != pa || ep != ea+1 {
			t.Fatalf("InitProducerId of %s: %d/%d, want %d/%d", a, p, ep, pa, ea+1)
		}
		// b's open transaction is aborted (fenced) by the next init, with
		// a marker of the new coordinator epoch.
		if p, ep := e.init(b, 60_000); p != pb || ep != eb+2 {
			t.Fatalf("InitProducerId of %s: %d/%d, want %d/%d", b, p, ep, pb, eb+2)
		}
		if m := e.markers(tp1); !reflect.DeepEqual(m, []mark{{pb, eb + 1, false}}) {
			t.Fatalf("markers of %v: %+v", tp1, m)
		}
		if got := e.epochsOfMarkers(); !reflect.DeepEqual(got, []int32{0, 1}) {
			t.Fatalf("coordinator epochs of the markers: %v, want a's at 0, b's at 1", got)
		}
		// The epoch of the old coordinator's time is fenced.
		if err := e.c.CheckProducer(a, pa, ea); !errors.Is(err, kerr.ProducerFenced) {
			t.Fatalf("the epoch before the takeover: %v", err)
		}
	})
}

// TestElectCompletesPreparedTransaction: a transaction left in
// PrepareCommit by a coordinator that resigned is completed by the next
// one: its markers carry the new coordinator epoch, then CompleteCommit.
func TestElectCompletesPreparedTransaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		ctx := context.Background()
		id := idIn(0, "p", 0)
		pid, epoch := e.init(id, 60_000)
		e.add(id, pid, epoch, tp0, tp1)
		first := e.produce(tp0, pid, epoch, 0, 1)
		e.failMarkers.Store(math.MaxInt32) // every marker fails until the takeover
		endCtx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, _, err := e.c.EndTxn(endCtx, id, pid, epoch, true, false); !errors.Is(err, kerr.ConcurrentTransactions) {
			t.Fatalf("EndTxn with failing markers: %v", err)
		}
		if d := e.describe(id); d.State != PrepareCommit {
			t.Fatalf("after failing markers: %+v", d)
		}
		// The Resign stops the retries.
		e.c.Resign(0, 1)
		synctest.Wait()
		e.failMarkers.Store(0)
		failed := e.markerCalls.Load()
		time.Sleep(time.Minute)
		if n := e.markerCalls.Load(); n != failed {
			t.Fatalf("%d marker writes a minute after the Resign, %d at it", n, failed)
		}

		e.takeOver(0, 1)
		if d := e.describe(id); d.State != CompleteCommit || len(d.Partitions) != 0 || d.ProducerEpoch != epoch {
			t.Fatalf("after the new coordinator's load: %+v, want CompleteCommit", d)
		}
		if n := e.markerCalls.Load(); n != failed+2 {
			t.Fatalf("%d marker writes by the new coordinator, want 2", n-failed)
		}
		for _, tp := range []TopicPartition{tp0, tp1} {
			if m := e.markers(tp); !reflect.DeepEqual(m, []mark{{pid, epoch, true}}) {
				t.Fatalf("markers of %v: %+v", tp, m)
			}
		}
		if got := e.epochsOfMarkers(); !reflect.DeepEqual(got, []int32{1, 1}) {
			t.Fatalf("coordinator epochs of the markers: %v, want the new coordinator's 1", got)
		}
		if p := e.dataPart(tp0); p.LastStableOffset() != p.HighWatermark() || p.LastStableOffset() <= first {
			t.Fatalf("LSO %d HW %d", p.LastStableOffset(), p.HighWatermark())
		}
		// The EndTxn retried with the new coordinator succeeds.
		if err := e.endTxn(id, pid, epoch, true); err != nil {
			t.Fatalf("EndTxn retried after the takeover: %v", err)
		}
	})
}

// TestLoadInProgress: while a partition loads, requests for its ids answer
// COORDINATOR_LOAD_IN_PROGRESS; for a partition not led, NOT_COORDINATOR.
func TestLoadInProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		ctx := context.Background()
		id, other := idIn(0, "l", 0), idIn(1, "l", 0)
		pid, epoch := e.init(id, 60_000)
		e.add(id, pid, epoch, tp0)

		e.c.Close()
		gate := make(chan struct{})
		e.mu.Lock()
		e.loadGate = gate
		e.mu.Unlock()
		e.lead(0, 1)
		e.c = e.newCoordinator()
		if err := e.c.Elect(0, stateParts, 1); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the load waits at the gate
		if !e.c.Started() {
			t.Fatal("not started after an Elect")
		}
		loading := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, kerr.CoordinatorLoadInProgress) {
				t.Fatalf("%s while loading: %v, want COORDINATOR_LOAD_IN_PROGRESS", what, err)
			}
		}
		_, _, err := e.c.InitProducerID(ctx, id, 60_000, -1, -1)
		loading("InitProducerId", err)
		loading("AddPartitionsToTxn", e.c.AddPartitions(ctx, id, pid, epoch, []TopicPartition{tp1}, false))
		_, _, err = e.c.EndTxn(ctx, id, pid, epoch, true, false)
		loading("EndTxn", err)
		_, err = e.c.Describe(id)
		loading("Describe", err)
		_, err = e.c.List(ListFilter{MinDurationMs: -1})
		loading("List", err)
		loading("CheckProducer", e.c.CheckProducer(id, pid, epoch))
		loading("Verify", e.c.Verify(pid, epoch, tp0))
		if _, _, err := e.c.InitProducerID(ctx, other, 60_000, -1, -1); !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("InitProducerId of an id of a partition not led: %v", err)
		}

		e.mu.Lock()
		e.loadGate = nil
		e.mu.Unlock()
		close(gate)
		synctest.Wait()
		if d := e.describe(id); d.State != Ongoing || d.ProducerID != pid {
			t.Fatalf("loaded: %+v", d)
		}
		if err := e.c.Verify(pid, epoch, tp0); err != nil {
			t.Fatalf("Verify once loaded: %v", err)
		}
		if err := e.endTxn(id, pid, epoch, false); err != nil {
			t.Fatalf("EndTxn once loaded: %v", err)
		}
	})
}

// TestLeaderEpochs: an Elect at or below the newest epoch seen is ignored,
// a newer one reloads; a Resign older than the last Elect is ignored, and
// an Elect at or below a Resign's epoch too. The markers carry the epoch
// of the last Elect; Start elects at the replica's epoch.
func TestLeaderEpochs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		ctx := context.Background()
		id := idIn(0, "e", 0)
		pid, epoch := e.init(id, 60_000)
		// Arms the gate: a reload would wait at it, and its ids answer
		// COORDINATOR_LOAD_IN_PROGRESS meanwhile.
		arm := func() chan struct{} {
			gate := make(chan struct{})
			e.mu.Lock()
			e.loadGate = gate
			e.mu.Unlock()
			return gate
		}
		open := func(gate chan struct{}) {
			e.mu.Lock()
			e.loadGate = nil
			e.mu.Unlock()
			close(gate)
			synctest.Wait()
		}
		served := func(what string, want error) {
			t.Helper()
			synctest.Wait()
			if err := e.c.CheckProducer(id, pid, epoch); !isErr(err, want) {
				t.Fatalf("%s: %v, want %v", what, err, want)
			}
		}
		commit := func(cepoch int32) {
			t.Helper()
			e.add(id, pid, epoch, tp0)
			n := len(e.epochsOfMarkers())
			if err := e.endTxn(id, pid, epoch, true); err != nil {
				t.Fatal(err)
			}
			if got := e.epochsOfMarkers()[n:]; !reflect.DeepEqual(got, []int32{cepoch}) {
				t.Fatalf("coordinator epoch of the marker: %v, want %d", got, cepoch)
			}
		}
		commit(0)

		gate := arm()
		if err := e.c.Elect(0, stateParts, 0); err != nil {
			t.Fatal(err)
		}
		served("after an Elect at the same epoch", nil)
		if err := e.c.Elect(0, stateParts+1, 5); err == nil {
			t.Fatal("an Elect with another partition count: no error")
		}
		if err := e.c.Elect(stateParts, stateParts, 5); err == nil {
			t.Fatal("an Elect of a partition out of range: no error")
		}
		served("after refused Elects", nil)

		e.lead(0, 2)
		if err := e.c.Elect(0, stateParts, 2); err != nil {
			t.Fatal(err)
		}
		served("while a newer epoch loads", kerr.CoordinatorLoadInProgress)
		open(gate)
		served("once loaded at epoch 2", nil)
		commit(2)

		gate = arm()
		if err := e.c.Elect(0, stateParts, 1); err != nil {
			t.Fatal(err)
		}
		served("after an Elect at an older epoch", nil)
		e.c.Resign(0, 1)
		served("after a Resign older than the Elect", nil)
		e.c.Resign(0, 3)
		served("after a Resign", kerr.NotCoordinator)
		if err := e.c.Elect(0, stateParts, 3); err != nil {
			t.Fatal(err)
		}
		served("after an Elect at the Resign's epoch", kerr.NotCoordinator)
		e.lead(0, 4)
		if err := e.c.Elect(0, stateParts, 4); err != nil {
			t.Fatal(err)
		}
		served("while epoch 4 loads", kerr.CoordinatorLoadInProgress)
		open(gate)
		served("once loaded at epoch 4", nil)
		commit(4)

		// Start elects each partition at its replica's leader epoch.
		e.c.Close()
		e.lead(0, 7)
		e.start()
		commit(7)
		if _, _, err := e.c.InitProducerID(ctx, id, 60_000, pid, epoch); err != nil {
			t.Fatal(err)
		}
	})
}

// TestStateWriteNotCommitted: a state write is answered once the high
// watermark passed it; one on a replica that stopped leading (before the
// append, or while it waited for the followers) answers NOT_COORDINATOR,
// and the state in memory stays as it was. Before, a write answered once
// fsynced, whatever the followers had.
func TestStateWriteNotCommitted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		ctx := context.Background()
		id, fresh := idIn(0, "w", 0), idIn(0, "w", 1)
		pid, epoch := e.init(id, 60_000)
		e.add(id, pid, epoch, tp0)
		before := e.describe(id)
		e.mu.Lock()
		part := e.state[0]
		e.mu.Unlock()

		// In a cluster the high watermark moves with the followers.
		part.SetExternalHighWatermark(true)
		done := make(chan error, 1)
		go func() { done <- e.c.AddPartitions(ctx, id, pid, epoch, []TopicPartition{tp1}, false) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("AddPartitions answered before its record was committed: %v", err)
		default:
		}
		part.AdvanceHighWatermark(part.LocalEnd())
		if err := <-done; err != nil {
			t.Fatalf("AddPartitions once committed: %v", err)
		}
		if d := e.describe(id); !reflect.DeepEqual(d.Partitions, []TopicPartition{tp0, tp1}) {
			t.Fatalf("after AddPartitions: %+v", d)
		}
		before = e.describe(id)

		// The replica turns follower while the write waits.
		go func() {
			_, _, err := e.c.InitProducerID(ctx, id, 60_000, -1, -1)
			done <- err
		}()
		synctest.Wait()
		if err := part.BecomeFollower(1); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("InitProducerId whose replica turned follower: %v, want NOT_COORDINATOR", err)
		}
		if d := e.describe(id); !reflect.DeepEqual(d, before) {
			t.Fatalf("state after the failed write: %+v, want %+v", d, before)
		}

		// A follower takes no write at all.
		if err := e.c.AddPartitions(ctx, id, pid, epoch, []TopicPartition{{"t", 9}}, false); !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("AddPartitions on a follower: %v", err)
		}
		if _, _, err := e.c.EndTxn(ctx, id, pid, epoch, true, false); !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("EndTxn on a follower: %v", err)
		}
		if _, _, err := e.c.InitProducerID(ctx, fresh, 60_000, -1, -1); !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("InitProducerId of a new id on a follower: %v", err)
		}
		if d := e.describe(id); !reflect.DeepEqual(d, before) {
			t.Fatalf("state after the refused writes: %+v, want %+v", d, before)
		}
		if _, err := e.c.Describe(fresh); !errors.Is(err, kerr.TransactionalIDNotFound) {
			t.Fatalf("the refused new id: %v", err)
		}
		if m := e.markers(tp0); len(m) != 0 {
			t.Fatalf("markers written for a refused EndTxn: %+v", m)
		}
	})
}

// TestMarkerRetries: marker writes that fail with a retriable error (the
// partition's leader moved) are retried with backoff until written; the
// EndTxn waits for them. A Resign stops the retries, and the EndTxn
// waiting for them answers NOT_COORDINATOR.
func TestMarkerRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		id := idIn(0, "m", 0)
		pid, epoch := e.init(id, 60_000)
		e.add(id, pid, epoch, tp0)
		e.failMarkers.Store(5)
		start := time.Now()
		if err := e.endTxn(id, pid, epoch, true); err != nil {
			t.Fatalf("EndTxn with 5 failed marker writes: %v", err)
		}
		// 100+200+400+800+1600 ms of backoff.
		if took := time.Since(start); took != 3100*time.Millisecond {
			t.Fatalf("the retries took %v, want 3.1s of backoff", took)
		}
		if n := e.markerCalls.Load(); n != 6 {
			t.Fatalf("%d marker writes, want 6", n)
		}
		if d := e.describe(id); d.State != CompleteCommit {
			t.Fatalf("%+v", d)
		}

		// Failing for good: the EndTxn waits until the Resign.
		e.add(id, pid, epoch, tp0)
		e.failMarkers.Store(math.MaxInt32)
		done := make(chan error, 1)
		go func() { done <- e.endTxn(id, pid, epoch, false) }()
		time.Sleep(20 * time.Second)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("EndTxn answered while the markers fail: %v", err)
		default:
		}
		if n := e.markerCalls.Load(); n < 10 {
			t.Fatalf("%d marker writes in 20s", n)
		}
		e.c.Resign(0, 1)
		if err := <-done; !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("EndTxn whose coordinator resigned: %v, want NOT_COORDINATOR", err)
		}
		synctest.Wait()
		n := e.markerCalls.Load()
		time.Sleep(time.Minute)
		if m := e.markerCalls.Load(); m != n {
			t.Fatalf("%d marker writes after the Resign", m-n)
		}
	})
}
