package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// DefaultCountsTopic is the counts topic. Its "__" makes it internal
	// to the mirror (which copies no "__" topic), so counts are not
	// mirrored, nor counted as data.
	DefaultCountsTopic = "__sluice_audit_counts"
	// DefaultCountFlushInterval is how often a Counter publishes the
	// entries that changed.
	DefaultCountFlushInterval = 5 * time.Second
	// countsTopicRetention is the retention.ms of a counts topic a Counter
	// creates (cleanup.policy compact,delete: the newest record of each
	// entry, for a week).
	countsTopicRetention = 7 * 24 * time.Hour
	// countsTopicPartitions of a counts topic a Counter creates: a few
	// records per stage every few seconds need no more than one.
	countsTopicPartitions = 1
	// entryIdle is how long after the last flush that found it changed a
	// published entry is kept in memory: records of its window that come later (a retry, a
	// spool replayed) start a new entry (a new gen), which a report adds.
	entryIdle = 2 * time.Minute
	// maxOpenEntries bounds a Counter's entries in memory (topics times
	// windows being counted); over it, the entry idle longest
	// is published one last time and dropped.
	maxOpenEntries = 10000
	// countsDeliveryTimeout bounds a count record's delivery: a failed one
	// is published again at the next flush (it is cumulative).
	countsDeliveryTimeout = 30 * time.Second
	// maxBufferedCounts bounds the count records waiting in the client.
	maxBufferedCounts = 4 * maxOpenEntries
)

// CounterOptions configure a Counter.
type CounterOptions struct {
	// NewClient builds a client of the cluster that holds the counts topic
	// with the given options added.
	NewClient func(opts ...kgo.Opt) (*kgo.Client, error)
	// Stage names what is counted: StageCollect, StageMirror, StageSink or
	// another name (never StageTopic).
	Stage string
	Topic string // "": DefaultCountsTopic
	// FlushInterval: how often changed entries are published; 0:
	// DefaultCountFlushInterval.
	FlushInterval time.Duration
	Logger        *slog.Logger // nil: discard
}

// Counter counts the records a pipeline stage has delivered, per (topic,
// one-minute window of record time), with the offsets they came from, and
// publishes the counts to the counts topic every FlushInterval. Count is
// safe for concurrent use and cheap (a lock, two map look-ups, no
// allocation once a window's entry exists); a nil *Counter counts nothing,
// so a stage calls it unconditionally.
//
// An entry holds the count and the distinct offsets (as ranges) of one
// topic and window; it is published whole each time it changed, under its
// own key (stage/instance/gen/topic/window), so a lost or repeated publish
// costs nothing: the next one carries everything. An entry not counted
// for entryIdle and published is dropped from memory.
//
// Failure: a publish that fails is retried at the next flush; Count never
// waits for the counts cluster. Close publishes what is left and waits for
// it, for as long as its context allows.
type Counter struct {
	o        CounterOptions
	instance string
	cl       *kgo.Client
	stop     chan struct{}
	done     chan struct{}

	mu      sync.Mutex // guards what follows; never held across a call into the client
	entries map[windowKey]*entry
	last    *entry   // the entry counted last, in entries: records come in runs of one topic and window
	retired []*entry // dropped from entries, to publish one last time
	nextGen uint64
	stats   CounterStats
	lastErr time.Time // last publish error logged
	closed  bool
}

// CounterStats are a Counter's own counts, for tests and logs.
type CounterStats struct {
	Counted       int64 // records counted
	Published     int64 // count records acknowledged
	PublishErrors int64 // count records that failed (published again later)
	Dropped       int64 // entries dropped unpublished (over maxOpenEntries while publishing failed)
}

type windowKey struct {
	topic  string
	window int64 // Unix ms
}

type entry struct {
	key      windowKey
	gen      uint64
	count    int64
	unranged int64
	ranges   map[int32]*[]span // the distinct offsets, per partition
	nranges  int
	dirty    bool // changed since its last publish was handed to the client
	inFlight int  // publishes handed to the client and not settled
	// lastChange is when a flush last found the entry changed (the entry
	// is idle since then): set at flushes, so that Count reads no clock.
	lastChange time.Time
}

// DialCounter is NewCounter for a pipeline tool's `--audit` (collect,
// mirror, sink): the counts go to topic ("" the default) on brokers, as
// client id clientID, and creating or finding the counts topic may take
// timeout.
func DialCounter(ctx context.Context, stage, topic string, brokers []string, clientID string, timeout time.Duration, log *slog.Logger) (*Counter, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return NewCounter(cctx, CounterOptions{Stage: stage, Topic: topic, Logger: log,
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID(clientID), kgo.DialTimeout(timeout)}, opts...)...)
		}})
}

// NewCounter makes sure the counts topic exists (creating it compacted,
// with a replication factor of min(3, brokers) and a week's retention) and
// starts publishing every FlushInterval. The caller calls Close.
func NewCounter(ctx context.Context, o CounterOptions) (*Counter, error) {
	if o.NewClient == nil {
		panic("BUG: audit: CounterOptions.NewClient is nil")
	}
	if o.Stage == "" || o.Stage == StageTopic || len(o.Stage) > maxNameBytes {
		return nil, fmt.Errorf("audit: counter stage %q: give a name of at most %d bytes other than %q", o.Stage, maxNameBytes, StageTopic)
	}
	if o.Topic == "" {
		o.Topic = DefaultCountsTopic
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultCountFlushInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("audit: counter instance id: %w", err)
	}
	cl, err := o.NewClient(
		kgo.DefaultProduceTopic(o.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(countsDeliveryTimeout),
		kgo.MaxBufferedRecords(maxBufferedCounts),
		kgo.MetadataMinAge(metadataMinAge),
	)
	if err != nil {
		return nil, fmt.Errorf("audit: counts client: %w", err)
	}
	if err := ensureCountsTopic(ctx, kadm.NewClient(cl), o.Topic, o.Logger); err != nil {
		cl.Close()
		return nil, err
	}
	c := &Counter{o: o, instance: hex.EncodeToString(id[:]), cl: cl, stop: make(chan struct{}), done: make(chan struct{}),
		entries: map[windowKey]*entry{}}
	go c.loop()
	return c, nil
}

// ensureCountsTopic creates the counts topic when it is missing.
func ensureCountsTopic(ctx context.Context, adm *kadm.Client, topic string, log *slog.Logger) error {
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return fmt.Errorf("audit: metadata: %w", err)
	}
	td, ok := md.Topics[topic]
	if ok && td.Err == nil {
		return nil
	}
	if ok && !errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("audit: counts topic %s: %w", topic, td.Err)
	}
	rf := min(maxReplicationFactor, len(md.Brokers))
	retention := strconv.FormatInt(countsTopicRetention.Milliseconds(), 10)
	policy := "compact,delete"
	_, err = adm.CreateTopic(ctx, countsTopicPartitions, int16(rf), map[string]*string{"retention.ms": &retention, "cleanup.policy": &policy}, topic)
	switch {
	case err == nil:
		log.Info("created the audit counts topic", "topic", topic, "partitions", countsTopicPartitions, "replication_factor", rf)
	case !errors.Is(err, kerr.TopicAlreadyExists):
		return fmt.Errorf("audit: create counts topic %s (replication factor %d): %w; create it yourself with `sluice topic create %s --config cleanup.policy=compact,delete`",
			topic, rf, err, topic)
	}
	return nil
}

// Instance is this counter's random id, in every count record.
func (c *Counter) Instance() string { return c.instance }

// Stats returns the counter's own counts so far.
func (c *Counter) Stats() CounterStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// windowOf is the start of the count window of t, in Unix ms.
func windowOf(t time.Time) int64 {
	w := CountWindow.Milliseconds()
	ms := t.UnixMilli()
	if ms < 0 {
		return ms - (ms%w+w)%w
	}
	return ms - ms%w
}

// Count counts one record of topic delivered by the stage: at offset of
// partition (offset < 0: not known, counted without a range), with the
// record's own timestamp (which picks its window). A nil Counter does
// nothing.
func (c *Counter) Count(topic string, partition int32, offset int64, recordTime time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.countLocked(topic, partition, offset, recordTime)
	c.mu.Unlock()
}

// CountRecords counts records as Count does each (by Topic, Partition,
// Offset, Timestamp), under one lock: for a stage that settles a batch at
// once, as a sink does when an object is committed.
func (c *Counter) CountRecords(recs []*kgo.Record) {
	if c == nil {
		return
	}
	c.mu.Lock()
	for _, r := range recs {
		c.countLocked(r.Topic, r.Partition, r.Offset, r.Timestamp)
	}
	c.mu.Unlock()
}

func (c *Counter) countLocked(topic string, partition int32, offset int64, recordTime time.Time) {
	e := c.entryLocked(topic, windowOf(recordTime), offset >= 0)
	e.count++
	c.stats.Counted++
	if offset < 0 {
		e.unranged++
	} else {
		e.addRange(partition, offset, offset)
	}
}

// entryLocked returns the open entry of (topic, window), making one when
// there is none, or when it is full and ranged offsets are to be added;
// it marks it changed.
func (c *Counter) entryLocked(topic string, w int64, ranged bool) *entry {
	e := c.last
	if e == nil || e.key.window != w || e.key.topic != topic {
		e = c.entries[windowKey{topic, w}]
	}
	if e == nil || (ranged && e.nranges >= maxRangesPerRecord) {
		if e != nil { // full: publish it one last time and go on in a new entry
			c.retired = append(c.retired, e)
		} else if len(c.entries) >= maxOpenEntries {
			c.retireOldestLocked()
		}
		c.nextGen++
		k := windowKey{topic, w}
		e = &entry{key: k, gen: c.nextGen, ranges: map[int32]*[]span{}, lastChange: time.Now()}
		c.entries[k] = e
	}
	c.last = e
	e.dirty = true
	return e
}

// addRange adds the offsets first..last of partition to e's ranges.
func (e *entry) addRange(partition int32, first, last int64) {
	spans := e.ranges[partition]
	if spans == nil {
		spans = new([]span)
		e.ranges[partition] = spans
	}
	before := len(*spans)
	*spans = addSpan(*spans, first, last)
	e.nranges += len(*spans) - before
}

// Tally holds counts not yet to be counted: a stage that delivers records
// in batches that may fail (a sink's object: written record by record,
// then uploaded and committed) adds each record to a Tally as it goes and
// hands the Tally to Counter.CountTally once the batch is committed, or
// drops it when the batch fails. It keeps the distinct offsets as ranges,
// not the records. Not safe for concurrent use; the zero Tally is empty
// and ready.
type Tally struct {
	m    map[windowKey]*tallyEntry
	last *tallyEntry
	n    int64
}

type tallyEntry struct {
	key      windowKey
	count    int64
	unranged int64
	ranges   map[int32][]span
}

// Count adds one record, as Counter.Count does.
func (t *Tally) Count(topic string, partition int32, offset int64, recordTime time.Time) {
	w := windowOf(recordTime)
	e := t.last
	if e == nil || e.key.window != w || e.key.topic != topic {
		if t.m == nil {
			t.m = map[windowKey]*tallyEntry{}
		}
		k := windowKey{topic, w}
		if e = t.m[k]; e == nil {
			e = &tallyEntry{key: k, ranges: map[int32][]span{}}
			t.m[k] = e
		}
		t.last = e
	}
	e.count++
	t.n++
	if offset < 0 {
		e.unranged++
		return
	}
	e.ranges[partition] = addSpan(e.ranges[partition], offset, offset)
}

// Len is the number of records counted into the tally.
func (t *Tally) Len() int64 { return t.n }

// CountTally counts everything in t, as if each record had been given to
// Count now. t may be reused after Reset. A nil Counter does nothing.
func (c *Counter) CountTally(t *Tally) {
	if c == nil || t == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, te := range t.m {
		var distinct int64
		for _, spans := range te.ranges {
			for _, s := range spans {
				distinct += s.last - s.first + 1
			}
		}
		// Each entry's count covers its own ranges (a record's check):
		// the unranged and the tally's own duplicates go to the first.
		e := c.entryLocked(te.key.topic, te.key.window, false)
		e.count += te.count - distinct
		e.unranged += te.unranged
		c.stats.Counted += te.count
		for p, spans := range te.ranges {
			for _, s := range spans {
				if e.nranges >= maxRangesPerRecord {
					e = c.entryLocked(te.key.topic, te.key.window, true)
				}
				e.addRange(p, s.first, s.last)
				e.count += s.last - s.first + 1
			}
		}
	}
}

// Reset empties t.
func (t *Tally) Reset() { *t = Tally{} }

// retireOldestLocked moves the entry idle longest to retired.
func (c *Counter) retireOldestLocked() {
	var old *entry
	for _, e := range c.entries {
		if old == nil || e.lastChange.Before(old.lastChange) {
			old = e
		}
	}
	delete(c.entries, old.key)
	c.retired = append(c.retired, old)
	if c.last == old {
		c.last = nil
	}
}

func (c *Counter) loop() {
	defer close(c.done)
	t := time.NewTicker(c.o.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.Flush()
		}
	}
}

// record is e as a count record; c.mu is held.
func (c *Counter) recordLocked(e *entry, now time.Time) *kgo.Record {
	cr := CountRecord{Version: CountFormatVersion, Stage: c.o.Stage, Instance: c.instance, Gen: e.gen, Topic: e.key.topic,
		Window: e.key.window, Count: e.count, Unranged: e.unranged, Published: now.UnixMilli(), Ranges: make([]OffsetRange, 0, e.nranges)}
	for p, spans := range e.ranges {
		for _, s := range *spans {
			cr.Ranges = append(cr.Ranges, OffsetRange{Partition: p, First: s.first, Last: s.last})
		}
	}
	sortRanges(cr.Ranges)
	v, err := EncodeCount(&cr)
	if err != nil {
		panic("BUG: audit: encoding a count record: " + err.Error())
	}
	return &kgo.Record{Key: []byte(cr.Key()), Value: v, Timestamp: now}
}

// Flush hands every changed entry to the client now (without waiting for
// the cluster), and drops the entries idle for entryIdle whose last
// publish is acknowledged.
func (c *Counter) Flush() {
	if c == nil {
		return
	}
	now := time.Now()
	type pub struct {
		e   *entry
		rec *kgo.Record
	}
	var pubs []pub
	c.mu.Lock()
	for k, e := range c.entries {
		if e.dirty {
			pubs = append(pubs, pub{e, c.recordLocked(e, now)})
			e.dirty, e.inFlight, e.lastChange = false, e.inFlight+1, now
		} else if e.inFlight == 0 && now.Sub(e.lastChange) > entryIdle {
			delete(c.entries, k)
			if c.last == e {
				c.last = nil
			}
		}
	}
	for _, e := range c.retired {
		pubs = append(pubs, pub{nil, c.recordLocked(e, now)})
	}
	c.retired = nil
	c.mu.Unlock()
	for _, p := range pubs {
		e := p.e
		c.cl.Produce(context.Background(), p.rec, func(r *kgo.Record, err error) {
			c.mu.Lock()
			if e != nil {
				e.inFlight--
			}
			logIt := false
			if err != nil {
				c.stats.PublishErrors++
				if e != nil && c.entries[e.key] == e {
					e.dirty = true // published again at the next flush
				} else {
					c.stats.Dropped++
				}
				if logIt = time.Since(c.lastErr) >= errLogEvery; logIt {
					c.lastErr = time.Now()
				}
			} else {
				c.stats.Published++
			}
			c.mu.Unlock()
			if logIt {
				c.o.Logger.Warn("audit counts not published; retried at the next flush", "topic", c.o.Topic, "key", string(r.Key), "err", err)
			}
		})
	}
}

// Close publishes what changed since the last flush, waits for every
// publish to be acknowledged (until ctx ends) and closes the client. It
// returns an error when some counts are not published. A nil Counter's
// Close does nothing.
func (c *Counter) Close(ctx context.Context) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	closed := c.closed
	c.closed = true
	c.mu.Unlock()
	if closed {
		return nil
	}
	close(c.stop)
	<-c.done
	before := c.Stats().PublishErrors
	c.Flush()
	err := c.cl.Flush(ctx)
	c.cl.Close()
	if err == nil && c.Stats().PublishErrors > before {
		err = errors.New("some were refused")
	}
	if err != nil {
		return fmt.Errorf("audit: %s counts not all published to %s at close (the report will show this stage short): %w", c.o.Stage, c.o.Topic, err)
	}
	return nil
}

// sortRanges sorts by partition, then first offset.
func sortRanges(rs []OffsetRange) {
	slices.SortFunc(rs, func(a, b OffsetRange) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		switch {
		case a.First < b.First:
			return -1
		case a.First > b.First:
			return 1
		}
		return 0
	})
}
