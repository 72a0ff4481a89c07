package broker

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/record"
)

// TestReconcileSeesEveryChange: the broker applies the last of a burst of
// metadata changes. Before, the watcher took the change channel after its
// reconcile had read the image, so a change published in between was
// never applied until the next one (a node restarted with the whole
// cluster stayed a follower of a partition it led).
func TestReconcileSeesEveryChange(t *testing.T) {
	b, err := Open(Config{NodeID: 1, DataDir: t.TempDir(), Host: "127.0.0.1", Port: 9092})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := b.meta.CreateTopicAssigned(ctx, "w", [][]int32{{1}}, nil); err != nil {
		t.Fatal(err)
	}
	reconciled := func() uint64 {
		b.recMu.Lock()
		defer b.recMu.Unlock()
		if b.reconciled == nil {
			return 0
		}
		return b.reconciled.Index
	}
	for i := range 300 {
		if err := b.meta.SetTopicConfigs(ctx, "w", map[string]string{"retention.ms": strconv.Itoa(1000 + i)}); err != nil {
			t.Fatal(err)
		}
		want := b.meta.Image().Index
		deadline := time.Now().Add(5 * time.Second)
		for reconciled() < want {
			if time.Now().After(deadline) {
				t.Fatalf("change %d (metadata index %d) never applied: the broker is at %d", i, want, reconciled())
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestReconcileAppliesPerBrokerConfigs: a change of this broker's own
// dynamic configs reaches its open partitions (a change set on another
// broker's resource does not), as a cluster-wide one does.
func TestReconcileAppliesPerBrokerConfigs(t *testing.T) {
	b, err := Open(Config{NodeID: 1, DataDir: t.TempDir(), Host: "127.0.0.1", Port: 9092})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := b.meta.CreateTopicAssigned(ctx, "w", [][]int32{{1}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.meta.RegisterBroker(ctx, metadata.Broker{NodeID: 2, Host: "127.0.0.2", Port: 9092}); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	p, ok := b.Partition("w", 0)
	if !ok {
		t.Fatal("partition not open")
	}
	big, err := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Value: make([]byte, 4000)}})
	if err != nil {
		t.Fatal(err)
	}
	small := map[string]string{"message.max.bytes": "1000"}
	if err := b.meta.SetPerBrokerConfigs(ctx, 2, small); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(big); err != nil {
		t.Fatalf("a 4 kB batch with message.max.bytes=1000 on broker 2 only: %v", err)
	}
	if err := b.meta.SetPerBrokerConfigs(ctx, 1, small); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(big); !errors.Is(err, partition.ErrMessageTooLarge) {
		t.Fatalf("a 4 kB batch with this broker's message.max.bytes=1000: %v, want ErrMessageTooLarge", err)
	}
}
