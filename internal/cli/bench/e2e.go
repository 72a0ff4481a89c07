package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// e2eMagic marks values written by e2e, so records of other writers in the
// topic are not mistaken for timestamps.
const e2eMagic = 0x51

func runE2E(ctx context.Context, o Options) (Result, error) {
	if err := ensureTopic(ctx, o); err != nil {
		return Result{}, err
	}
	// Tail from the end offsets seen before producing: every record
	// produced from here on is seen, none from before.
	ends, err := partitionOffsets(ctx, o, true)
	if err != nil {
		return Result{}, err
	}
	from := map[int32]kgo.Offset{}
	for p, e := range ends {
		from[p] = kgo.NewOffset().At(e)
	}
	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(o.seeds()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: from}),
		kgo.FetchMaxWait(time.Second),
	)
	if err != nil {
		return Result{}, err
	}
	defer consumer.Close()
	producers := make([]*kgo.Client, o.Producers)
	defer func() {
		for _, cl := range producers {
			if cl != nil {
				cl.Close()
			}
		}
	}()
	for i := range producers {
		cl, err := kgo.NewClient(o.producerOpts()...)
		if err != nil {
			return Result{}, err
		}
		if err := cl.Ping(ctx); err != nil {
			return Result{}, fmt.Errorf("connect to %s: %w", o.Brokers, err)
		}
		producers[i] = cl
	}
	// Warm the consumer up (metadata, connection, first fetch in flight)
	// so the first records do not pay for it.
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	consumer.PollFetches(wctx)
	wcancel()

	var (
		m     meter // consumed records and their end-to-end latency
		acked atomic.Int64
		last  atomic.Pointer[time.Time] // when the last record was consumed
	)
	stop := startProgress(o, &m, "e2e", o.Records, true)
	consCtx, consCancel := context.WithCancel(ctx)
	defer consCancel()
	consDone := make(chan struct{})
	go func() {
		defer close(consDone)
		for consCtx.Err() == nil {
			fs := consumer.PollFetches(consCtx)
			now := time.Now()
			fs.EachError(func(_ string, _ int32, err error) {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					m.fail(err)
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				if len(r.Value) < 9 || r.Value[8] != e2eMagic {
					return
				}
				sent := int64(binary.BigEndian.Uint64(r.Value))
				m.ok(len(r.Key)+len(r.Value), time.Duration(now.UnixNano()-sent))
				last.Store(&now)
			})
		}
	}()

	start := time.Now()
	var deadline time.Time
	if o.Duration > 0 {
		deadline = start.Add(o.Duration)
	}
	size := o.RecordSize
	var wg sync.WaitGroup
	for i, cl := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			limit := int64(-1)
			if o.Records > 0 {
				limit = share(o.Records, o.Producers, i)
			}
			perSec := o.Rate / float64(o.Producers)
			for n := int64(0); n != limit; n++ {
				now := time.Now()
				due := now // when this record is due: now, or its slot at --rate
				if perSec > 0 {
					due = start.Add(time.Duration(float64(n) * 1e9 / perSec))
				}
				if ctx.Err() != nil || (!deadline.IsZero() && !due.Before(deadline)) {
					break
				}
				if perSec > 0 {
					if !sleepUntil(ctx, due) {
						break
					}
					now = time.Now()
				}
				v := make([]byte, size)
				binary.BigEndian.PutUint64(v, uint64(now.UnixNano()))
				v[8] = e2eMagic
				cl.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
					if err != nil {
						m.fail(err)
						return
					}
					acked.Add(1)
				})
			}
			if err := cl.Flush(ctx); err != nil {
				m.fail(err)
			}
		}()
	}
	wg.Wait()
	// Producing is over and acked is final: wait for the consumer to see
	// every acknowledged record.
	drainBy := time.Now().Add(drainTimeout)
	for m.records.Load() < acked.Load() && time.Now().Before(drainBy) {
		if !sleepUntil(ctx, time.Now().Add(10*time.Millisecond)) {
			break
		}
	}
	consCancel()
	<-consDone
	stop()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	// The run ends when the last record was consumed: a time.Now reading,
	// so that end.Sub(start) is on the monotonic clock (a wall-clock step
	// cannot make it negative).
	end := time.Now()
	if l := last.Load(); l != nil {
		end = *l
	}
	res := m.result(ModeE2E, end.Sub(start), true)
	if missing := acked.Load() - res.Records; missing > 0 {
		fmt.Fprintf(o.Stderr, "%d acknowledged records were not consumed within %s\n", missing, drainTimeout)
		res.Errors += missing
	}
	if m.firstErr != nil {
		fmt.Fprintf(o.Stderr, "first error: %v\n", m.firstErr)
	}
	return res, nil
}
