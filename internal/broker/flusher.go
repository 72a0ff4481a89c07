package broker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/partition"
)

// flusher fsyncs partitions that hold appended data nobody waits to fsync
// (acks=0 and acks=1 produces, under log.flush.policy=acks-all, where the
// high watermark is the last fsynced offset): log.flush.max.delay.ms after
// the first such append (0 by default: at once), one Flush per partition
// covers every append made meanwhile. Appends made while a flush runs queue
// the partition again, so a busy partition's fsyncs batch themselves with
// no added delay (measured: end-to-end p50 of acks=1 at 1000 records/s
// 0.8-1.3 ms with 0, 3.3-3.6 ms with 2, 7.2-7.8 ms with 10; produce
// throughput within noise).
//
// A partition queues itself (partition.Options.OnUnflushed) at most once
// per Flush, so the queue holds at most one entry per open partition.
type flusher struct {
	delay  time.Duration
	logger *slog.Logger

	mu    sync.Mutex
	queue []*partition.Partition
	kick  chan struct{} // buffered 1: the queue became non-empty
}

func newFlusher(delay time.Duration, logger *slog.Logger) *flusher {
	return &flusher{delay: delay, logger: logger, kick: make(chan struct{}, 1)}
}

// add queues p. Called with p's append lock held: it never blocks.
func (f *flusher) add(p *partition.Partition) {
	f.mu.Lock()
	f.queue = append(f.queue, p)
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// run flushes the queued partitions until ctx ends.
func (f *flusher) run(ctx context.Context) {
	timer := time.NewTimer(0)
	<-timer.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
		}
		// Let appends gather for the delay: one fsync then covers them.
		timer.Reset(f.delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		f.mu.Lock()
		q := f.queue
		f.queue = nil
		f.mu.Unlock()
		f.flush(q)
	}
}

// flush fsyncs the partitions, several at once: they are separate files.
func (f *flusher) flush(q []*partition.Partition) {
	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, maxParallelPartitionOps)
	)
	for _, p := range q {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// A deleted partition's log is closed: nothing to do. A
			// storage failure is reported by the produce that hits it,
			// and by the log when it happens.
			if err := p.Flush(); err != nil && !errors.Is(err, log.ErrClosed) && !errors.Is(err, log.ErrStorage) {
				f.logger.Warn("flush", "dir", p.Dir(), "err", err)
			}
		}()
	}
	wg.Wait()
}
