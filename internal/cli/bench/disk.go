package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

// runDisk writes SizeMiB MiB to a new file in Dir in BlockSize writes with
// an fsync after every SyncEvery writes (and one at the end), the pattern
// of a log that fsyncs each acknowledged batch. Latency is per fsync group.
func runDisk(ctx context.Context, o Options) (Result, error) {
	f, err := os.CreateTemp(o.Dir, "sluice-bench-disk-*")
	if err != nil {
		return Result{}, fmt.Errorf("create test file in %s: %w", o.Dir, err)
	}
	name := f.Name()
	defer os.Remove(name)
	defer f.Close()
	block := make([]byte, o.BlockSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	total := o.SizeMiB << 20
	writes := (total + int64(o.BlockSize) - 1) / int64(o.BlockSize)
	var m meter
	stop := startProgress(o, &m, "disk", writes, true)
	defer stop()
	start := time.Now()
	groupStart := start
	pending := 0
	for n := int64(0); n < writes; n++ {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		b := block
		if rem := total - n*int64(o.BlockSize); rem < int64(len(b)) {
			b = b[:rem]
		}
		if _, err := f.Write(b); err != nil {
			return Result{}, fmt.Errorf("write %s: %w", name, err)
		}
		pending++
		m.records.Add(1)
		m.bytes.Add(int64(len(b)))
		if (o.SyncEvery > 0 && pending == o.SyncEvery) || n == writes-1 {
			if err := f.Sync(); err != nil {
				return Result{}, fmt.Errorf("fsync %s: %w", name, err)
			}
			now := time.Now()
			m.hist.Record(now.Sub(groupStart))
			groupStart, pending = now, 0
		}
	}
	return m.result(ModeDisk, time.Since(start), true), nil
}
