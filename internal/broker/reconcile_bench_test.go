package broker

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluice-io/sluice/internal/vfs"
)

// BenchmarkReconcile is the cost of applying one metadata change (here none:
// the reconcile every change triggers) on a broker leading 5,000
// partitions (50 topics of 100).
func BenchmarkReconcile(b *testing.B) {
	br, err := Open(Config{NodeID: 1, DataDir: b.TempDir(), Host: "127.0.0.1", Port: 9092, FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	for i := range 50 {
		if _, err := br.Meta().CreateTopic(context.Background(), fmt.Sprintf("t%02d", i), 100, []int32{1}, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := br.Reconcile(); err != nil {
		b.Fatal(err)
	}
	if n := len(br.Partitions()); n != 5000 {
		b.Fatalf("%d partitions open", n)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := br.Reconcile(); err != nil {
			b.Fatal(err)
		}
	}
}
