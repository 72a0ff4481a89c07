package partition

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/sluice-io/sluice/internal/record"
)

// batchesOf splits a log's bytes into its batches.
func batchesOf(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		n, ok := record.PeekSize(b)
		if !ok || n > len(b) {
			t.Fatalf("a partial batch of %d bytes", len(b))
		}
		out = append(out, b[:n:n])
		b = b[n:]
	}
	return out
}

// rebased is a copy of batch at base offset base (not covered by the CRC).
func rebased(batch []byte, base int64) []byte {
	out := bytes.Clone(batch)
	record.SetBaseOffset(out, base)
	return out
}

// TestAppendMirrored: a leader taking a source partition's batches with
// their offsets (several per call) has the source's log but for the
// leader epochs, which are its own, and the producer ids, moved out of the
// ids this cluster hands out; and the source's producer state, open and
// aborted transactions and last stable offset under those ids; batches sent again are
// passed over, one straddling the log end is refused, one past it leaves a
// gap; and a follower of the copy replicates it, gap included.
func TestAppendMirrored(t *testing.T) {
	source := newReplica(t, false, 1)
	defer func() { source.p.Close() }()
	leaderWorkload(t, source)
	src := batchesOf(t, logBytes(t, source.p, 0))

	copy := newReplica(t, false, 7)
	defer func() { copy.p.Close() }()
	for i := 0; i < len(src); i += 3 {
		chunk := bytes.Join(src[i:min(i+3, len(src))], nil)
		res, err := copy.p.AppendMirrored(bytes.Clone(chunk), "source")
		if err != nil || res.Duplicate {
			t.Fatalf("batches %d-%d: %+v %v", i, i+2, res, err)
		}
	}
	got := batchesOf(t, logBytes(t, copy.p, 0))
	if len(got) != len(src) {
		t.Fatalf("%d batches on the copy, %d on the source", len(got), len(src))
	}
	// What the copy must hold: the source's batches with the epoch and
	// the ids moved. A follower of the source given those has the
	// source's state under the copy's ids.
	mapped := newReplica(t, true, 1)
	defer func() { mapped.p.Close() }()
	tag := sourceTag("source")
	var producers int
	for i := range src {
		h, _ := record.ParseHeader(got[i])
		want := bytes.Clone(src[i])
		sh, _ := record.ParseHeader(want)
		if sh.ProducerID >= 0 {
			producers++
			record.SetProducerID(want, MirroredProducerID(tag, sh.ProducerID))
			if h.ProducerID == sh.ProducerID || h.ProducerID&mirroredIDBit == 0 {
				t.Fatalf("batch %d: producer id %d on the copy, %d on the source", i, h.ProducerID, sh.ProducerID)
			}
		}
		if _, err := mapped.p.AppendReplicated(want); err != nil {
			t.Fatalf("batch %d with the copy's ids: %v", i, err)
		}
		record.SetLeaderEpoch(want, 7)
		if h.LeaderEpoch != 7 || !bytes.Equal(got[i], want) {
			t.Fatalf("batch %d: epoch %d, bytes equal to the source's but the epoch and producer id: %v", i, h.LeaderEpoch, bytes.Equal(got[i], want))
		}
	}
	if producers == 0 {
		t.Fatal("the workload has no producer ids to move")
	}
	s, c := stateOf(t, mapped.p), stateOf(t, copy.p)
	if !bytes.Equal(s.producers, c.producers) {
		t.Fatalf("producer state differs:\n%+v\n%+v", mapped.p.Producers(), copy.p.Producers())
	}
	s.producers, c.producers, s.epochs, c.epochs = nil, nil, nil, nil
	if !reflect.DeepEqual(s, c) {
		t.Fatalf("state differs:\n%+v\n%+v", s, c)
	}
	if source.p.LastStableOffset() != copy.p.LastStableOffset() {
		t.Fatalf("last stable offsets: source %d, copy %d", source.p.LastStableOffset(), copy.p.LastStableOffset())
	}

	end := copy.p.Log().EndOffset()
	res, err := copy.p.AppendMirrored(bytes.Join(src, nil), "source")
	if err != nil || !res.Duplicate || copy.p.Log().EndOffset() != end {
		t.Fatalf("everything again: %+v %v, end %d (was %d)", res, err, copy.p.Log().EndOffset(), end)
	}
	multi := src[0] // producer 1's first batch: 3 records
	if _, err := copy.p.AppendMirrored(rebased(multi, end-1), "source"); !errors.Is(err, ErrMirrorOverlap) {
		t.Fatalf("a batch straddling the end %d: %v", end, err)
	}
	if _, err := copy.p.AppendMirrored(multi[:len(multi)-1], "source"); !errors.Is(err, ErrCorruptMessage) {
		t.Fatalf("a partial batch: %v", err)
	}
	plain := src[1] // no producer: 2 records
	res, err = copy.p.AppendMirrored(rebased(plain, end+10), "source")
	if err != nil || res.BaseOffset != end+10 || copy.p.Log().EndOffset() != end+12 {
		t.Fatalf("past a gap: %+v %v, end %d", res, err, copy.p.Log().EndOffset())
	}

	// The source's producer 7 left a transaction open: the source's own
	// ids are not a copy's and are left alone; the copy's is aborted (what
	// the broker does once the topic is no longer a copy).
	if n, err := source.p.AbortMirroredTransactions(); n != 0 || err != nil {
		t.Fatalf("AbortMirroredTransactions on the source: %d %v", n, err)
	}
	if copy.p.LastStableOffset() >= copy.p.Log().EndOffset() {
		t.Fatal("the workload left no transaction open on the copy")
	}
	if n, err := copy.p.AbortMirroredTransactions(); n != 1 || err != nil {
		t.Fatalf("AbortMirroredTransactions on the copy: %d %v, want 1 aborted", n, err)
	}
	if lso, end := copy.p.LastStableOffset(), copy.p.Log().EndOffset(); lso != end {
		t.Fatalf("the copy's last stable offset %d, its end %d", lso, end)
	}

	follower := newReplica(t, true, 7)
	defer func() { follower.p.Close() }()
	replicate(t, copy.p, follower.p, nil)
	sameReplicas(t, copy.p, follower.p, "the copy's follower")
	if err := follower.p.BecomeFollower(8); err != nil {
		t.Fatal(err)
	}
	if _, err := follower.p.AppendMirrored(rebased(plain, end+20), "source"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AppendMirrored on a follower: %v", err)
	}
}

// TestMirroredProducerID: no producer stays none, an id already moved (a
// copy of a copy) is kept, and different sources' ids stay apart from each
// other and from the ids a cluster hands out.
func TestMirroredProducerID(t *testing.T) {
	a, b := sourceTag("cluster-a"), sourceTag("cluster-b")
	if a == b {
		t.Fatalf("tags of two sources equal: %d", a)
	}
	if got := MirroredProducerID(a, -1); got != -1 {
		t.Fatalf("no producer: %d", got)
	}
	seen := map[int64]string{}
	for _, id := range []int64{0, 1, 999, 1000, 1 << 30} {
		for _, tag := range []int64{a, b} {
			m := MirroredProducerID(tag, id)
			if m < 1<<62 || seen[m] != "" {
				t.Fatalf("id %d of tag %d: %d (%s)", id, tag, m, seen[m])
			}
			seen[m] = "taken"
			if again := MirroredProducerID(b, m); again != m {
				t.Fatalf("an id already moved, %d, moved again to %d", m, again)
			}
		}
	}
}
