package collect

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordOverheadBytes is counted against the buffer for every record on
// top of its key, value and headers, so that a buffer of B bytes holds at
// most B/recordOverheadBytes records (kgo's own record bound is set above
// that, see newProducer).
const recordOverheadBytes = 64

// errBufferFull: the in-memory buffer cannot take a request's events;
// the handler answers 503 with Retry-After.
var errBufferFull = errors.New("collect: in-memory buffer full")

// Spool takes the records of a request that the in-memory buffer cannot,
// all or none, and produces them later. It is the seam for the disk spool
// (not written yet): with none, a full buffer is a 503. Put must not
// block on the cluster; it is called from the HTTP handler.
type Spool interface {
	Put(recs []*kgo.Record) error
}

// buffer hands records to the kgo client without ever blocking the
// handler. It counts the bytes of records produced and not yet
// acknowledged (or failed) against limit, reserving a request's records
// all at once: a request is taken whole or refused whole, so that a
// client retrying after a 503 sends no duplicates. Safe for concurrent
// use.
type buffer struct {
	cl    *kgo.Client
	limit int64
	used  atomic.Int64
	spool Spool // nil: none
	m     *metrics
	log   *slog.Logger
}

// recordBytes is what a record counts against the buffer.
func recordBytes(r *kgo.Record) int64 {
	n := int64(len(r.Key) + len(r.Value) + recordOverheadBytes)
	for _, h := range r.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return n
}

// reserve takes n bytes of the buffer, or returns false if they do not fit.
func (b *buffer) reserve(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			b.m.bufferedBytes.Set(float64(used + n))
			return true
		}
	}
}

func (b *buffer) release(n int64) {
	b.m.bufferedBytes.Set(float64(b.used.Add(-n)))
}

// full reports whether the buffer is at least nearly full (for /readyz).
func (b *buffer) full() bool {
	return b.used.Load() >= b.limit-recordOverheadBytes
}

// produce buffers recs (of one request, all for stream) or returns
// errBufferFull without buffering any. Delivery is asynchronous: a failure
// after the retries kgo makes within the delivery timeout is counted as
// dropped.
func (b *buffer) produce(stream string, recs []*kgo.Record) error {
	var total int64
	for _, r := range recs {
		total += recordBytes(r)
	}
	if !b.reserve(total) {
		if b.spool != nil {
			if err := b.spool.Put(recs); err == nil {
				return nil
			}
		}
		return errBufferFull
	}
	for _, r := range recs {
		size := recordBytes(r)
		received := r.Timestamp
		// TryProduce never blocks: with kgo's bounds set above ours it does
		// not refuse either, but if it does the record is counted dropped.
		b.cl.TryProduce(context.Background(), r, func(r *kgo.Record, err error) {
			b.release(size)
			if err != nil {
				reason := "delivery"
				if errors.Is(err, kgo.ErrMaxBuffered) {
					reason = "buffer_full"
				}
				b.m.dropped.WithLabelValues(stream, reason).Inc()
				b.log.Warn("event dropped", "stream", stream, "topic", r.Topic, "reason", reason, "err", err)
				return
			}
			b.m.produceSeconds.Observe(time.Since(received).Seconds())
		})
	}
	return nil
}

// newProducer returns the kgo client of a collector: idempotent, acks from
// every in-sync replica, and its own buffer bounds set above the
// collector's so that the collector's accounting refuses first.
func newProducer(brokers []string, limits Limits, extra []kgo.Opt) (*kgo.Client, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID("sluice-collect"),
		kgo.SoftwareNameAndVersion("sluice-collect", "1"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedBytes(int(2 * limits.BufferBytes)),
		kgo.MaxBufferedRecords(int(limits.BufferBytes/recordOverheadBytes) + 1),
		kgo.RecordDeliveryTimeout(limits.DeliveryTimeout),
		kgo.ProducerLinger(5 * time.Millisecond),
	}
	return kgo.NewClient(append(opts, extra...)...)
}
