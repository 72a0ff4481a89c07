package clustertest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/chaos/availability"
	"github.com/sluice-io/sluice/internal/chaos/checker"
)

// The workload.
const (
	// producers is how many idempotent acks=all producers write; each is a
	// client of its own (its own producer id).
	producers = 3
	// produceInterval is the pause between two records of one producer:
	// a bounded rate (about 100 records/s each), so that a long run's
	// history stays small and the 2-core machine is not saturated.
	produceInterval = 10 * time.Millisecond
	// maxBufferedRecords bounds the records one producer holds unacked
	// (kgo.MaxBufferedRecords); past it a record fails at once
	// (kgo.ErrMaxBuffered), never sent, and counts as unknown.
	maxBufferedRecords = 2000
	// deliveryTimeout is kgo.RecordDeliveryTimeout: a record not acked
	// by then fails (an unknown outcome), once kgo may fail it without
	// breaking idempotence (after a response, or before it was sent).
	deliveryTimeout = 20 * time.Second
	// produceRequestTimeout is how long a leader may wait for its ISR on
	// one acks=all produce (kgo.ProduceRequestTimeout).
	produceRequestTimeout = 5 * time.Second
	// flushTimeout bounds the wait for the records still buffered when
	// the producers stop; what is left is failed by Close.
	flushTimeout = 45 * time.Second
	// closeTimeout bounds the wait for every promise after Close.
	closeTimeout = 30 * time.Second
	// firstAckTimeout bounds the wait for the first acknowledged record on
	// the healthy cluster before the faults start.
	firstAckTimeout = 60 * time.Second
	// readBackTimeout bounds each final read of every partition.
	readBackTimeout = 2 * time.Minute
	// maxFailureKinds bounds the distinct produce errors counted for the
	// report.
	maxFailureKinds = 50
	// progressInterval is how often the event log gets a progress line.
	progressInterval = time.Second
)

// history gathers what producers and consumers saw, for the checker.
// Safe for concurrent use: every promise and consumer reports into it.
type history struct {
	avail *availability.Recorder

	mu       sync.Mutex
	sent     int             // records handed to kgo
	ackedBy  [partitions]int // acks per partition
	ackedOf  [producers]int  // acks per producer
	acked    []checker.Ack
	unknown  []string
	observed []checker.Observation
	failures map[string]int // produce errors by text, at most maxFailureKinds
	firstAck chan struct{}  // closed at the first ack
}

func newHistory(start time.Time) *history {
	return &history{avail: availability.New(start, time.Second), failures: map[string]int{}, firstAck: make(chan struct{})}
}

// produced records the outcome of one record: acknowledged at r's
// partition and offset, or failed (unknown: it may be in the log, once).
func (h *history) produced(producer int, seq int64, value string, start, end time.Time, r *kgo.Record, err error) {
	h.avail.Record(start, end, err)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.unknown = append(h.unknown, value)
		msg := err.Error()
		if _, ok := h.failures[msg]; ok || len(h.failures) < maxFailureKinds {
			h.failures[msg]++
		}
		return
	}
	if len(h.acked) == 0 {
		close(h.firstAck)
	}
	h.ackedBy[r.Partition]++
	h.ackedOf[producer]++
	h.acked = append(h.acked, checker.Ack{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: value,
		ProducerID: int64(producer), Sequence: seq})
}

func (h *history) observe(r *kgo.Record, committed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.observed = append(h.observed, checker.Observation{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Value: string(r.Value), ReadCommitted: committed})
}

// progress is a snapshot of the counts the progress log shows.
type progress struct {
	sent, failed int
	ackedBy      [partitions]int
	ackedOf      [producers]int
}

func (h *history) progress() progress {
	h.mu.Lock()
	defer h.mu.Unlock()
	return progress{sent: h.sent, failed: len(h.unknown), ackedBy: h.ackedBy, ackedOf: h.ackedOf}
}

func (h *history) sending() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent++
}

// counts are the acked, unknown and observed records so far.
func (h *history) counts() (acked, unknown, observed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.acked), len(h.unknown), len(h.observed)
}

// failureSummary lists the produce errors, most frequent first.
func (h *history) failureSummary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	msgs := slices.Collect(maps.Keys(h.failures))
	slices.SortFunc(msgs, func(a, b string) int { return cmp.Or(cmp.Compare(h.failures[b], h.failures[a]), strings.Compare(a, b)) })
	var parts []string
	for _, m := range msgs {
		parts = append(parts, fmt.Sprintf("%d× %s", h.failures[m], m))
	}
	return strings.Join(parts, "; ")
}

// checkerHistory is the history for checker.Check, with the final reads.
// Call it once the producers and consumers have stopped.
func (h *history) checkerHistory(committed, uncommitted []checker.Record) checker.History {
	h.mu.Lock()
	defer h.mu.Unlock()
	return checker.History{
		Acked:       slices.Clone(h.acked),
		Unknown:     slices.Clone(h.unknown),
		Observed:    slices.Clone(h.observed),
		Committed:   committed,
		Uncommitted: uncommitted,
	}
}

// workload is the producers and live consumers of a run.
type workload struct {
	c    *cluster
	h    *history
	stop context.CancelFunc // stops the producers' loops and the consumers

	producing sync.WaitGroup // the producers' loops
	consuming sync.WaitGroup // the consumers' loops and the progress log
	pending   sync.WaitGroup // records produced whose promise has not run
	producers []*kgo.Client
	consumers []*kgo.Client
	closeOnce sync.Once
}

// startWorkload starts the producers and the live consumers. Producers
// write "p<producer>-<seq>" to partition seq%partitions, idempotent and
// acks=all; one consumer reads every partition from offset 0 with
// read_uncommitted, one with read_committed.
//
// Transactional producers go here once the transaction coordinator is
// cluster-aware: a producer with a kgo.TransactionalID writing a few
// records per transaction to several partitions, each transaction's values
// recorded as Acked once EndTransaction(TryCommit) succeeded, as
// checker.Txn{InDoubt: true} when the commit's outcome is unknown, and as
// checker.Txn{} when it aborted; the read_committed consumer then checks
// that no aborted record is ever seen.
func startWorkload(ctx context.Context, c *cluster, h *history) (*workload, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &workload{c: c, h: h, stop: cancel}
	for i := range producers {
		opts := append(c.clientOpts(fmt.Sprintf("producer %d", i)),
			kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence stays on (the default)
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.RecordDeliveryTimeout(deliveryTimeout),
			kgo.ProduceRequestTimeout(produceRequestTimeout),
			kgo.MaxBufferedRecords(maxBufferedRecords),
		)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			w.close()
			return nil, err
		}
		w.producers = append(w.producers, cl)
		w.producing.Add(1)
		go w.produce(ctx, i, cl)
	}
	offsets := map[int32]kgo.Offset{}
	for p := range int32(partitions) {
		offsets[p] = kgo.NewOffset().At(0)
	}
	for _, committed := range []bool{false, true} {
		level := kgo.ReadUncommitted()
		if committed {
			level = kgo.ReadCommitted()
		}
		opts := append(c.clientOpts("consumer "+levelName(committed)),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
			kgo.FetchIsolationLevel(level),
			kgo.FetchMaxWait(time.Second),
		)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			w.close()
			return nil, err
		}
		w.consumers = append(w.consumers, cl)
		w.consuming.Add(1)
		go w.consume(ctx, cl, committed)
	}
	w.consuming.Add(1)
	go w.logProgress(ctx)
	return w, nil
}

// logProgress writes to the event log, every progressInterval, the acks
// per partition, the failures and the records in flight since the last
// line: where a fault stalled which partition.
func (w *workload) logProgress(ctx context.Context) {
	defer w.consuming.Done()
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	var last progress
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p := w.h.progress()
		acked := 0
		var per []string
		for i := range p.ackedBy {
			acked += p.ackedBy[i]
			per = append(per, fmt.Sprintf("p%d +%d", i, p.ackedBy[i]-last.ackedBy[i]))
		}
		var of []string
		for i := range p.ackedOf {
			of = append(of, fmt.Sprintf("producer %d +%d", i, p.ackedOf[i]-last.ackedOf[i]))
		}
		w.c.log.printf("progress: acked %s (%s); failed +%d; in flight %d",
			strings.Join(per, " "), strings.Join(of, " "), p.failed-last.failed, p.sent-acked-p.failed)
		last = p
	}
}

// produce writes a record every produceInterval until ctx ends, each value
// once: a failed record is not produced again.
func (w *workload) produce(ctx context.Context, id int, cl *kgo.Client) {
	defer w.producing.Done()
	tick := time.NewTicker(produceInterval)
	defer tick.Stop()
	for seq := int64(0); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		value := fmt.Sprintf("p%d-%d", id, seq)
		r := &kgo.Record{Topic: topic, Partition: int32(seq % partitions), Value: []byte(value)}
		start := time.Now()
		w.pending.Add(1)
		w.h.sending()
		// Not ctx: the record's fate is kgo's to settle (acked, or
		// failed once that is safe), not this loop's.
		cl.TryProduce(context.Background(), r, func(r *kgo.Record, err error) {
			defer w.pending.Done()
			w.h.produced(id, seq, value, start, time.Now(), r, err)
		})
	}
}

// consume records every record cl reads until ctx ends. kgo retries fetch
// errors (a leader gone, a node stopped) by itself.
func (w *workload) consume(ctx context.Context, cl *kgo.Client, committed bool) {
	defer w.consuming.Done()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachRecord(func(r *kgo.Record) { w.h.observe(r, committed) })
	}
}

// finish stops producing and consuming: the loops end, what is buffered
// gets flushTimeout to be acked, then every client is closed (failing
// what is left) and every promise has run. It returns an error if a
// promise never ran.
func (w *workload) finish() error {
	w.stop()
	w.producing.Wait()
	w.consuming.Wait()
	var wg sync.WaitGroup
	for _, cl := range w.producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
			defer cancel()
			if err := cl.Flush(ctx); err != nil {
				w.c.log.printf("test: flushing a producer: %v (what is left fails as unknown)", err)
			}
		}()
	}
	wg.Wait()
	w.close()
	done := make(chan struct{})
	go func() { w.pending.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(closeTimeout):
		return fmt.Errorf("producer promises still pending %v after closing the clients", closeTimeout)
	}
}

// close stops the loops and closes every client, once (finish, and the
// test's cleanup after a failure).
func (w *workload) close() {
	w.closeOnce.Do(func() {
		w.stop()
		for _, cl := range append(slices.Clone(w.producers), w.consumers...) {
			cl.Close()
		}
	})
}

// readBack reads every partition from offset 0 to its end as it is now
// (the high watermark, or for read_committed the last stable offset), with
// a fresh client.
func readBack(ctx context.Context, c *cluster, committed bool) ([]checker.Record, error) {
	return readBackPartitions(ctx, c, committed, nil)
}

// readBackPartitions is readBack of the partitions ps only (nil: all).
func readBackPartitions(ctx context.Context, c *cluster, committed bool, ps []int32) ([]checker.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, readBackTimeout)
	defer cancel()
	ends, err := endOffsets(ctx, c, committed)
	if err != nil {
		return nil, err
	}
	if ps != nil {
		maps.DeleteFunc(ends, func(p int32, _ int64) bool { return !slices.Contains(ps, p) })
	}
	level := kgo.ReadUncommitted()
	if committed {
		level = kgo.ReadCommitted()
	}
	offsets := map[int32]kgo.Offset{}
	for p := range ends {
		offsets[p] = kgo.NewOffset().At(0)
	}
	cl, err := kgo.NewClient(append(c.clientOpts("read back "+levelName(committed)),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(level),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	// next is the offset after the last record read. Without transactions
	// every offset holds a record, so a partition is read once next
	// reaches its end; with transactional producers the last offsets may
	// be markers, and this must compare with the fetch's position instead.
	next := map[int32]int64{}
	var recs []checker.Record
	var fetchErrs []string
	for {
		done := true
		for p, end := range ends {
			if next[p] < end {
				done = false
			}
		}
		if done {
			return recs, nil
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return recs, fmt.Errorf("reading back (read_committed %v): %w after reaching %v of ends %v; fetch errors: %s",
				committed, ctx.Err(), next, ends, strings.Join(fetchErrs, "; "))
		}
		fs.EachError(func(t string, p int32, err error) {
			if len(fetchErrs) < 10 {
				fetchErrs = append(fetchErrs, fmt.Sprintf("%s/%d: %v", t, p, err))
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			recs = append(recs, checker.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: string(r.Value)})
			next[r.Partition] = max(next[r.Partition], r.Offset+1)
		})
	}
}

func levelName(committed bool) string {
	if committed {
		return "read_committed"
	}
	return "read_uncommitted"
}

// endOffsets lists every partition's end, retried until each answers
// without an error.
func endOffsets(ctx context.Context, c *cluster, committed bool) (map[int32]int64, error) {
	for {
		lctx, cancel := context.WithTimeout(ctx, metadataTimeout)
		var listed kadm.ListedOffsets
		var err error
		if committed {
			listed, err = c.adm.ListCommittedOffsets(lctx, topic)
		} else {
			listed, err = c.adm.ListEndOffsets(lctx, topic)
		}
		cancel()
		if err == nil {
			err = listed.Error()
		}
		if err == nil && len(listed[topic]) != partitions {
			err = fmt.Errorf("%d partitions listed", len(listed[topic]))
		}
		if err == nil {
			ends := map[int32]int64{}
			for p, o := range listed[topic] {
				ends[p] = o.Offset
			}
			return ends, nil
		}
		c.log.printf("test: listing end offsets (read_committed %v): %v (retrying)", committed, err)
		if !sleep(ctx, pollInterval) {
			return nil, errors.Join(fmt.Errorf("listing end offsets (read_committed %v)", committed), ctx.Err(), err)
		}
	}
}
