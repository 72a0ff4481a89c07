package broker

import (
	"context"
	"strconv"
	"testing"
	"time"
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
