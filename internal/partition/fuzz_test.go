package partition

import (
	"bytes"
	"testing"
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
