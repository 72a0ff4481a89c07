package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// payloads hands out record values: slices at random offsets of one
// read-only buffer of random capital letters (kafka-producer-perf-test's
// alphabet), so values differ, compress like text, and cost no allocation.
type payloads struct {
	buf  []byte
	size int
}

func newPayloads(size int) *payloads {
	n := 8 << 20
	if n < 4*size {
		n = 4 * size
	}
	r := rand.New(rand.NewPCG(0x5111ce, uint64(size)))
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = 'A' + byte(r.IntN(26))
	}
	return &payloads{buf: buf, size: size}
}

func (p *payloads) next(r *rand.Rand) []byte {
	off := r.IntN(len(p.buf) - p.size + 1)
	return p.buf[off : off+p.size : off+p.size]
}

// share splits total over n workers: worker i's part.
func share(total int64, n, i int) int64 {
	part := total / int64(n)
	if int64(i) < total%int64(n) {
		part++
	}
	return part
}

func runProduce(ctx context.Context, o Options) (Result, error) {
	if err := ensureTopic(ctx, o); err != nil {
		return Result{}, err
	}
	clients := make([]*kgo.Client, o.Producers)
	defer func() {
		for _, cl := range clients {
			if cl != nil {
				cl.Close()
			}
		}
	}()
	for i := range clients {
		opts := o.producerOpts()
		if o.TransactionalID != "" {
			opts = append(opts, kgo.TransactionalID(fmt.Sprintf("%s-%d", o.TransactionalID, i)))
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return Result{}, err
		}
		clients[i] = cl
	}
	pl := newPayloads(o.RecordSize)
	var m meter
	stop := startProgress(o, &m, "produce", o.Records, true)
	start := time.Now()
	var deadline time.Time
	if o.Duration > 0 {
		deadline = start.Add(o.Duration)
	}
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			limit := int64(-1)
			if o.Records > 0 {
				limit = share(o.Records, o.Producers, i)
			}
			perSec := o.Rate / float64(o.Producers)
			tx := o.TransactionalID != ""
			var (
				txStart time.Time
				inTxn   int64 // records produced in the open transaction
			)
			begin := func() bool {
				if err := cl.BeginTransaction(); err != nil {
					m.fail(fmt.Errorf("begin transaction: %w", err))
					return false
				}
				txStart, inTxn = time.Now(), 0
				return true
			}
			// commit flushes the open transaction's records and commits
			// it; on failure it aborts it (best effort) and reports false.
			commit := func() bool {
				t0 := time.Now()
				if err := cl.Flush(ctx); err != nil {
					m.fail(fmt.Errorf("flush before commit: %w", err))
					return false
				}
				t1 := time.Now()
				err := cl.EndTransaction(ctx, kgo.TryCommit)
				t2 := time.Now()
				if err != nil {
					m.fail(fmt.Errorf("commit transaction: %w", err))
					if aerr := cl.EndTransaction(ctx, kgo.TryAbort); aerr != nil {
						fmt.Fprintf(o.Stderr, "producer %d: abort after failed commit: %v\n", i, aerr)
					}
					return false
				}
				if inTxn > 0 { // an empty transaction sends nothing
					m.txns.Add(1)
					m.flushHist.Record(t1.Sub(t0))
					m.commitHist.Record(t2.Sub(t1))
				}
				return true
			}
			if tx && !begin() {
				return
			}
			for n := int64(0); n != limit; n++ {
				sent := time.Now()
				due := sent // when this record is due: now, or its slot at --rate
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
					sent = time.Now()
				}
				v := pl.next(r)
				cl.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
					if err != nil {
						m.fail(err)
						return
					}
					m.ok(len(v), time.Since(sent))
				})
				if tx {
					inTxn++
					if (o.TxnCommitRecords > 0 && inTxn >= o.TxnCommitRecords) ||
						(o.TxnCommitInterval > 0 && time.Since(txStart) >= o.TxnCommitInterval) {
						if !commit() || !begin() {
							return
						}
					}
				}
			}
			if tx {
				commit()
				return
			}
			if err := cl.Flush(ctx); err != nil {
				m.fail(err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if m.firstErr != nil {
		fmt.Fprintf(o.Stderr, "first error: %v\n", m.firstErr)
	}
	return m.result(ModeProduce, elapsed, true), nil
}
