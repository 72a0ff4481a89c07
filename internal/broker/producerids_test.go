package broker

import (
	"context"
	"sync"
	"testing"
)

// TestProducerIDsInBlocks: producer ids are unique across concurrent
// callers and a restart, and cost one metadata write per block.
func TestProducerIDsInBlocks(t *testing.T) {
	dir := t.TempDir()
	b, err := openTestBroker(t, dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := b.Image().NextProducerID
	var (
		mu   sync.Mutex
		seen = map[int64]bool{}
		wg   sync.WaitGroup
	)
	const callers, each = 8, 300
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				id, err := b.NewProducerID(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[id] {
					t.Errorf("producer id %d handed out twice", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got, want := b.Image().NextProducerID-before, int64(3*producerIDBlockSize); got != want {
		t.Errorf("%d ids took %d ids of the metadata, want %d (3 blocks)", callers*each, got, want)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = openTestBroker(t, dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	id, err := b.NewProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if seen[id] {
		t.Fatalf("after a restart producer id %d was handed out again", id)
	}
}

// BenchmarkNewProducerID compares an InitProducerId's id from a block with
// one metadata (Raft) write per id, in the same run.
func BenchmarkNewProducerID(b *testing.B) {
	br, err := Open(Config{NodeID: 1, DataDir: b.TempDir(), Host: "127.0.0.1", Port: 9092})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	ctx := context.Background()
	b.Run("metadata-write-per-id", func(b *testing.B) {
		for b.Loop() {
			if _, err := br.Meta().AllocateProducerIDs(ctx, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("block", func(b *testing.B) {
		for b.Loop() {
			if _, err := br.NewProducerID(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
