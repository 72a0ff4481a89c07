package partition

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/sluice-io/sluice/internal/record"
)

// FuzzProducerSnapshot: the producer snapshot reader never panics on
// arbitrary bytes, and what it accepts writes back as a snapshot that
// reads the same.
func FuzzProducerSnapshot(f *testing.F) {
	s := newProducerState(3)
	s.txnFirstOffset, s.coordinatorEpoch, s.lastTimestamp = 40, 2, 1_700_000_000_000
	s.batches = []batchMeta{{firstSeq: 0, lastSeq: 4, firstOffset: 40, lastOffset: 44, timestamp: 1_700_000_000_000}}
	f.Add(marshalSnapshot(map[int64]*producerState{7: s, 9: newProducerState(0)}))
	f.Add(marshalSnapshot(map[int64]*producerState{}))
	f.Add([]byte("SLPS\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := unmarshalSnapshot(b)
		if err != nil {
			return
		}
		again := marshalSnapshot(m)
		m2, err := unmarshalSnapshot(again)
		if err != nil {
			t.Fatalf("re-read of an accepted snapshot: %v", err)
		}
		if !bytes.Equal(marshalSnapshot(m2), again) {
			t.Fatal("snapshot does not round-trip")
		}
	})
}

// FuzzEpochCheckpoint: the leader-epoch checkpoint reader never panics,
// and what it accepts writes back and reads the same.
func FuzzEpochCheckpoint(f *testing.F) {
	f.Add([]byte("0\n2\n0 0\n3 120\n"))
	f.Add([]byte("0\n0\n"))
	f.Add([]byte("0\n1\n-1 5\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := unmarshalEpochCache(b)
		if err != nil {
			return
		}
		again := c.marshal()
		c2, err := unmarshalEpochCache(again)
		if err != nil {
			t.Fatalf("re-read of an accepted checkpoint: %v", err)
		}
		if !bytes.Equal(c2.marshal(), again) {
			t.Fatal("checkpoint does not round-trip")
		}
	})
}

// fuzzLeaderLog is the log of a leader that ran leaderWorkload, split
// where a follower's log ends (prefix: the batches up to and including the
// second transaction of producer 3, still open) and what it would fetch
// next (rest).
func fuzzLeaderLog(t testing.TB) (prefix, rest []byte) {
	leader := newReplica(t, false, 1)
	defer leader.p.Close()
	leaderWorkload(t, leader)
	all := logBytes(t, leader.p, 0)
	it := record.NewIter(all)
	for {
		_, h, ok := it.Next()
		if !ok {
			t.Fatal("no open transaction of producer 3")
		}
		if h.ProducerID == 3 && h.BaseSequence == 2 {
			break
		}
	}
	return all[:it.Pos()], all[it.Pos():]
}

// FuzzAppendReplicated: a follower handed arbitrary bytes as a fetch
// response never panics; when it refuses them its log, producer,
// transaction and epoch state are as they were; when it takes them it
// appended whole batches from their start, byte for byte, and a restart
// reads back the same log and state. With fixCRC the batches' CRCs are
// made right first, so that changed offsets, epochs, attributes and
// producer fields reach the producer state, the epoch cache and recovery.
func FuzzAppendReplicated(f *testing.F) {
	prefix, rest := fuzzLeaderLog(f)
	h, _ := record.ParseHeader(rest)
	one := rest[:h.Size()]
	f.Add(rest, false)
	f.Add(rest[:len(rest)-10], false) // a partial last batch
	f.Add(one, false)
	f.Add([]byte{}, false)
	f.Add(prefix, false) // below the log end
	flipped := bytes.Clone(rest)
	flipped[len(one)+30] ^= 1
	f.Add(flipped, false)
	f.Add(flipped, true)
	gap := bytes.Clone(one)
	record.SetBaseOffset(gap, h.BaseOffset+1000)
	f.Add(gap, false)
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		b = bytes.Clone(b)
		if fixCRC {
			fixChecksums(b)
		}
		r := newReplica(t, true, 2)
		defer func() { r.p.Close() }()
		if _, err := r.p.AppendReplicated(prefix); err != nil {
			t.Fatal(err)
		}
		before, st := logBytes(t, r.p, 0), stateOf(t, r.p)
		last, err := r.p.AppendReplicated(bytes.Clone(b))
		after := logBytes(t, r.p, 0)
		if err != nil {
			if last != -1 || !bytes.Equal(after, before) || !reflect.DeepEqual(stateOf(t, r.p), st) {
				t.Fatalf("refused (%v) but changed: last %d, %d bytes of log, were %d", err, last, len(after), len(before))
			}
			return
		}
		added := after[len(before):]
		switch {
		case !bytes.HasPrefix(after, before) || !bytes.HasPrefix(b, added):
			t.Fatalf("appended %d bytes that are not the start of the %d given", len(added), len(b))
		case last == -1 && len(added) != 0, last >= 0 && last+1 != r.p.Log().EndOffset():
			t.Fatalf("returned %d, the log ends at %d after %d bytes appended", last, r.p.Log().EndOffset(), len(added))
		}
		want := stateOf(t, r.p)
		if err := r.p.Close(); err != nil {
			t.Fatal(err)
		}
		r.open(r.fs)
		if !bytes.Equal(logBytes(t, r.p, 0), after) {
			t.Fatal("the log reads back differently after a restart")
		}
		if got := stateOf(t, r.p); !reflect.DeepEqual(got, want) {
			t.Fatalf("the state differs after a restart:\n%+v\n%+v", got, want)
		}
	})
}

// fixChecksums sets the CRC of every whole batch in b to the right one.
func fixChecksums(b []byte) {
	for pos := 0; ; {
		size, ok := record.PeekSize(b[pos:])
		if !ok || size < record.HeaderSize || size > len(b)-pos {
			return
		}
		binary.BigEndian.PutUint32(b[pos+17:], record.Checksum(b[pos:pos+size]))
		pos += size
	}
}
