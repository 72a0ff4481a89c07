package collect

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
)

// recordOverheadBytes is counted against the buffer for every record on
// top of its key, value and headers, so that a buffer of B bytes holds at
// most B/recordOverheadBytes records (kgo's own record bound is set above
// that, see newProducer).
const recordOverheadBytes = 64

// errBufferFull: the in-memory buffer cannot take a request's events;
// the handler answers 503 with Retry-After.
var errBufferFull = errors.New("collect: in-memory buffer full")

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
	spool *diskSpool // nil: none
	m     *metrics
	log   *slog.Logger
	audit *audit.Counter // nil: no counting
}

// recordBytes is what a record counts against the buffer.
func recordBytes(r *kgo.Record) int64 {
	n := int64(len(r.Key) + len(r.Value) + recordOverheadBytes)
	for _, h := range r.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return n
}

// reserve takes n bytes of the buffer, or returns false if they do not
// fit. With oversize, n more than the whole buffer is taken when it is
// empty (a spooled request may be larger than a buffer it never went
// through).
func (b *buffer) reserve(n int64, oversize bool) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit && !(oversize && used == 0) {
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

// produce buffers recs (of one request, all for stream), or spools them
// when the buffer cannot take them or the spool holds records not yet
// replayed (which they must not overtake); it returns errBufferFull
// (without a spool) or errSpoolFull having taken none. Delivery is
// asynchronous: records the cluster fails after the retries kgo makes
// within the delivery timeout are spooled, or counted dropped without a
// spool.
func (b *buffer) produce(stream string, recs []*kgo.Record) error {
	if b.spool != nil && b.spool.pending() {
		return b.spool.put(stream, recs)
	}
	var total int64
	for _, r := range recs {
		total += recordBytes(r)
	}
	if !b.reserve(total, false) {
		if b.spool != nil {
			return b.spool.put(stream, recs)
		}
		return errBufferFull
	}
	for _, r := range recs {
		size := recordBytes(r)
		received := r.Timestamp
		// TryProduce never blocks: with kgo's bounds set above ours it does
		// not refuse either, but if it does the record is spooled or
		// counted dropped.
		b.cl.TryProduce(context.Background(), r, func(r *kgo.Record, err error) {
			b.release(size)
			if err == nil {
				b.m.produceSeconds.Observe(time.Since(received).Seconds())
				b.audit.Count(r.Topic, r.Partition, r.Offset, r.Timestamp)
				return
			}
			if b.spool != nil {
				if serr := b.spool.put(stream, []*kgo.Record{copyRecord(r)}); serr == nil {
					return
				}
			}
			reason := "delivery"
			if errors.Is(err, kgo.ErrMaxBuffered) {
				reason = "buffer_full"
			}
			b.m.dropped.WithLabelValues(stream, reason).Inc()
			b.log.Warn("event dropped", "stream", stream, "topic", r.Topic, "reason", reason, "err", err)
		})
	}
	return nil
}

// copyRecord is r as a new record to produce (kgo owns a record it was
// given until its promise, and sets its partition and offset).
func copyRecord(r *kgo.Record) *kgo.Record {
	return &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}
}

// produceWait produces spooled records with cl (the replay producer)
// under the buffer's accounting, waiting for room (or for stop) and then
// for every acknowledgement. It returns the records the cluster failed,
// as new records to produce again, and their errors, or false when stop
// closed before there was room.
func (b *buffer) produceWait(cl *kgo.Client, stop <-chan struct{}, recs []spooledRecord) ([]spooledRecord, []error, bool) {
	var total int64
	for _, r := range recs {
		total += recordBytes(r.rec)
	}
	for !b.reserve(total, true) {
		select {
		case <-stop:
			return nil, nil, false
		case <-time.After(replayRoomPoll):
		}
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []spooledRecord
		errs   []error
	)
	wg.Add(len(recs))
	for _, sr := range recs {
		size := recordBytes(sr.rec)
		cl.Produce(context.Background(), sr.rec, func(r *kgo.Record, err error) {
			defer wg.Done()
			b.release(size)
			if err != nil {
				mu.Lock()
				failed = append(failed, spooledRecord{stream: sr.stream, rec: copyRecord(r), attempts: sr.attempts + 1})
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			b.m.replayed.WithLabelValues(sr.stream).Inc()
			b.audit.Count(r.Topic, r.Partition, r.Offset, r.Timestamp)
		})
	}
	wg.Wait()
	return failed, errs, true
}

// replayRoomPoll is how often replay looks for room in a full buffer.
const replayRoomPoll = 10 * time.Millisecond

// newProducer returns a kgo client of a collector: idempotent, acks from
// every in-sync replica, and its own buffer bounds set above the
// collector's so that the collector's accounting refuses first. The
// buffer's client fails a record after the delivery timeout (then it is
// spooled); the replay client (replay true) has none, because kgo times a
// record from its timestamp, which is the receive time: a spooled record
// may be older than any timeout when the cluster takes it again.
func newProducer(brokers []string, limits Limits, replay bool, extra []kgo.Opt) (*kgo.Client, error) {
	name := "sluice-collect"
	if replay {
		name = "sluice-collect-replay"
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(name),
		kgo.SoftwareNameAndVersion("sluice-collect", "1"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedBytes(int(2 * limits.BufferBytes)),
		kgo.MaxBufferedRecords(int(limits.BufferBytes/recordOverheadBytes) + 1),
		kgo.ProducerLinger(5 * time.Millisecond),
		// After a leader dies, the next metadata within 500 ms (kgo's
		// default: 5 s), so that records move to the new leader soon.
		kgo.MetadataMinAge(500 * time.Millisecond),
	}
	if !replay {
		opts = append(opts, kgo.RecordDeliveryTimeout(limits.DeliveryTimeout))
	}
	return kgo.NewClient(append(opts, extra...)...)
}
