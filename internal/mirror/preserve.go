package mirror

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/record"
)

// The offset-preserving mode (Options.PreserveOffsets): see the package doc.

const (
	// MirrorSourceConfig is the target topic config that makes a Sluice
	// topic an offset-preserving mirror of the source cluster it names
	// (internal/config.MirrorSourceConfig on the broker).
	MirrorSourceConfig = "sluice.mirror.source"
	// preserveFetchBytes is the most a source fetch returns per
	// partition (a larger first batch still comes whole): what a
	// partition's copy holds in memory, and the most one produce sends.
	preserveFetchBytes = 1 << 20
	// preserveFetchAhead is how many fetches of a partition may wait for
	// the target while the next one is fetched: a partition holds at most
	// preserveFetchAhead+2 fetches in memory (one being produced, these,
	// one being fetched).
	preserveFetchAhead = 1
	// preserveFetchWaitMs is a source fetch's long-poll wait, in ms.
	preserveFetchWaitMs = 500
	// preserveProduceTimeoutMs is the target's acks=all wait, in ms.
	preserveProduceTimeoutMs = 30000
	// preserveDivergedFor is how long the source may end below the copy's
	// end (a new source leader whose high watermark has not caught up yet)
	// before the mirror stops: the source then lost records the copy has.
	preserveDivergedFor = 30 * time.Second
	// preserveRetryBackoff is the pause before a failed fetch or produce
	// is tried again (leader moves, brokers away).
	preserveRetryBackoff = 250 * time.Millisecond
)

// preserver runs one copy goroutine per source partition; its fields are
// guarded by Mirror.topicMu (started) or set once by Run (ctx, wg).
type preserver struct {
	ctx     context.Context
	wg      sync.WaitGroup
	started map[string]int32 // partitions of a source topic with a goroutine
}

// startPartitions starts the copy of every partition of the topics synced
// that has none yet. Called with topicMu held.
func (m *Mirror) startPartitions() {
	pr := m.pres
	if pr == nil || pr.ctx == nil {
		return
	}
	for t, n := range m.topics {
		for p := pr.started[t]; p < n; p++ {
			pr.wg.Add(1)
			go func() {
				defer pr.wg.Done()
				if err := m.copyPartition(pr.ctx, t, p); err != nil && pr.ctx.Err() == nil {
					m.fail(err)
				}
			}()
		}
		pr.started[t] = max(pr.started[t], n)
	}
}

// fail records the first error that stops the mirror and ends Run.
func (m *Mirror) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err == nil {
		m.err = err
		if m.abort != nil {
			m.abort()
		}
	}
}

// runPreserve is Run in the offset-preserving mode.
func (m *Mirror) runPreserve(ctx context.Context) error {
	defer m.close()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.mu.Lock()
	m.abort = cancel
	m.mu.Unlock()
	m.topicMu.Lock()
	m.pres.ctx = runCtx
	m.topicMu.Unlock()
	err := m.syncTopics(runCtx, true)
	if err == nil {
		m.background(runCtx)
	}
	cancel()
	m.pres.wg.Wait()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	return errors.Join(err, m.failed())
}

// checkMirrorTopic makes sure a target topic is an offset-preserving
// mirror of this source, on a target that keeps offsets: one that is not
// (an ordinary topic, a mirror of another cluster) would get the source's
// records at offsets that mean something else there. A broker that stores
// configs it does not know (kfake does) would take the config and assign
// its own offsets: the config must come with the broker's documentation of
// it, which only a broker that knows it has.
func (m *Mirror) checkMirrorTopic(ctx context.Context, tt string) error {
	// A topic just created may not have reached the broker asked yet.
	deadline := time.Now().Add(partitionWait)
	for {
		err := m.checkMirrorTopicOnce(ctx, tt)
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(partitionPoll):
		}
	}
}

func (m *Mirror) checkMirrorTopicOnce(ctx context.Context, tt string) error {
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.IncludeDocumentation = true
	rr := kmsg.NewDescribeConfigsRequestResource()
	rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, tt
	req.Resources = append(req.Resources, rr)
	resp, err := req.RequestWith(ctx, m.dst)
	if err != nil {
		return fmt.Errorf("mirror: describe configs of target topic %s: %w", tt, err)
	}
	for _, r := range resp.Resources {
		if r.ResourceName != tt {
			continue
		}
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return fmt.Errorf("mirror: describe configs of target topic %s: %w", tt, err)
		}
		for _, c := range r.Configs {
			if c.Name != MirrorSourceConfig {
				continue
			}
			v := ""
			if c.Value != nil {
				v = *c.Value
			}
			switch {
			case c.Documentation == nil || *c.Documentation == "":
				// Stored, not known: see above.
			case v == m.sourceID:
				return nil
			case v == "":
				return fmt.Errorf("mirror: target topic %s exists as an ordinary topic (no %s): its offsets are its own; delete it, or mirror without preserving offsets",
					tt, MirrorSourceConfig)
			default:
				return fmt.Errorf("mirror: target topic %s is an offset-preserving mirror of cluster %s, not of this source %s; delete it, or mirror without preserving offsets",
					tt, v, m.sourceID)
			}
		}
	}
	return fmt.Errorf("mirror: the target does not know the topic config %s (of %s): keeping the source's offsets needs a Sluice target; mirror without preserving offsets", MirrorSourceConfig, tt)
}

// leader returns the broker leading partition p of topic, with the
// topic's id, through a metadata request to adm's cluster.
func leader(ctx context.Context, adm *kadm.Client, cl *kgo.Client, topic string, p int32) (*kgo.Broker, [16]byte, error) {
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return nil, [16]byte{}, err
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return nil, [16]byte{}, fmt.Errorf("topic %s: %v", topic, td.Err)
	}
	pd, ok := td.Partitions[p]
	if !ok || pd.Err != nil || pd.Leader < 0 {
		return nil, [16]byte{}, fmt.Errorf("%s[%d] has no leader (%v)", topic, p, pd.Err)
	}
	return cl.Broker(int(pd.Leader)), [16]byte(td.ID), nil
}

// copyPartition copies source partition p of topic t to the target until
// ctx ends: it starts at the target's high watermark (the copy's end: what
// a crash left is the next run's start) or the source's log start when
// that is later. A fetcher goroutine (fetchAhead) reads the source's
// batches as they are, at most preserveFetchAhead fetches ahead; this one
// produces each fetch's batches with their offsets, one request at a time,
// again until the target takes them. It returns an error only for what
// retrying cannot mend, after the fetcher has stopped.
func (m *Mirror) copyPartition(ctx context.Context, t string, p int32) error {
	tt := m.opts.TopicPrefix + t
	next, fromSource, err := m.startOffset(ctx, t, tt, p)
	if err != nil {
		return err
	}
	m.mu.Lock()
	st := m.part(t, p)
	st.next = next
	m.mu.Unlock()
	m.log.Info("copying with the source's offsets", "topic", t, "partition", p, "from", next)
	trimTo := int64(-1)
	if fromSource {
		trimTo = next
	}
	ctx, cancel := context.WithCancel(ctx)
	fetches := make(chan fetched, preserveFetchAhead)
	fetchErr := make(chan error, 1)
	go func() {
		defer close(fetches)
		fetchErr <- m.fetchAhead(ctx, t, p, next, trimTo, fetches)
	}()
	defer func() {
		cancel()
		for range fetches { // until the fetcher has returned
		}
	}()
	var dst *kgo.Broker
	var dstID [16]byte
	for f := range fetches {
		if f.raw == nil {
			// Only records to delete.
			m.trimTarget(ctx, tt, p, f.trimTo)
			continue
		}
		for {
			if dst == nil {
				if dst, dstID, err = leader(ctx, m.dstAdm, m.dst, tt, p); err != nil {
					if m.retry(ctx, "find the target leader", t, p, f.base, err) != nil {
						return nil
					}
					continue
				}
			}
			var base int64
			if base, err = produceBatches(ctx, dst, tt, dstID, p, f.raw); err == nil {
				if base != f.base {
					return fmt.Errorf("mirror: the target put the batch of source offset %d of %s[%d] at %d: it does not keep offsets (is it Sluice?); the mirror stops", f.base, t, p, base)
				}
				break
			}
			var ke *kerr.Error
			if errors.As(err, &ke) && !ke.Retriable && !errors.Is(err, kerr.NotLeaderForPartition) && !errors.Is(err, kerr.UnknownTopicOrPartition) {
				return fmt.Errorf("mirror: produce to %s[%d] at offset %d failed (the mirror stops; the next run starts at the target's end): %w", tt, p, f.base, err)
			}
			dst = nil
			if m.retry(ctx, "produce to the target", t, p, f.base, err) != nil {
				return nil
			}
		}
		if m.opts.Audit != nil {
			if err := m.countBatches(t, p, f.raw, f.from); err != nil {
				m.log.Warn("records copied and not all counted for the audit", "topic", t, "partition", p, "offset", f.base, "err", err)
			}
		}
		if f.trimTo >= 0 {
			m.trimTarget(ctx, tt, p, f.trimTo)
		}
		m.mu.Lock()
		st.next, st.lastTime = f.last+1, f.lastTime
		m.mu.Unlock()
		m.metrics.records.WithLabelValues(t).Add(float64(f.records))
		m.metrics.bytes.WithLabelValues(t).Add(float64(len(f.raw)))
		select {
		case m.acked <- struct{}{}:
		default:
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return <-fetchErr
}

// retry logs a failure and waits preserveRetryBackoff; it returns ctx's
// error, without a log line, when the copy is stopping.
func (m *Mirror) retry(ctx context.Context, what, t string, p int32, offset int64, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	m.log.Warn("retried", "what", what, "topic", t, "partition", p, "offset", offset, "err", err)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(preserveRetryBackoff):
		return nil
	}
}

// fetchAhead fetches source partition p of topic t from offset next on
// and sends each fetch's whole batches to out, until ctx ends (nil) or the
// source is found to end below the copy for preserveDivergedFor (the
// error). trimTo (-1: none) is where the target's log should start once
// the first batch sent is there.
func (m *Mirror) fetchAhead(ctx context.Context, t string, p int32, next, trimTo int64, out chan<- fetched) error {
	// divergedSince is when the source was first seen to end below the
	// copy (zero: it does not).
	var divergedSince time.Time
	// trimmed is the highest log start offset asked of the target (0 at
	// first: a restart asks once more, which changes nothing there). A
	// request that failed is only logged: the next move of the source's
	// log start asks again.
	trimmed := int64(0)
	var src *kgo.Broker
	var srcID [16]byte
	var err error
	for ctx.Err() == nil {
		if src == nil {
			if src, srcID, err = leader(ctx, m.srcAdm, m.src, t, p); err != nil {
				if m.retry(ctx, "find the source leader", t, p, next, err) != nil {
					return nil
				}
				continue
			}
		}
		f, hw, logStart, err := m.fetchBatches(ctx, src, t, srcID, p, next)
		if err != nil {
			if errors.Is(err, kerr.OffsetOutOfRange) {
				moved, diverged := m.outOfRange(ctx, t, p, next)
				if diverged != nil {
					if divergedSince.IsZero() {
						divergedSince = time.Now()
					}
					if time.Since(divergedSince) >= preserveDivergedFor {
						return diverged
					}
					err = diverged
				} else {
					divergedSince = time.Time{}
				}
				if moved != next {
					next, trimTo = moved, moved
					continue
				}
			}
			src = nil
			if m.retry(ctx, "fetch from the source", t, p, next, err) != nil {
				return nil
			}
			continue
		}
		divergedSince = time.Time{}
		m.setHighWater(t, p, hw)
		if f.raw != nil && f.base < next {
			// The copy went on from inside a batch: the source's log
			// start moved into it (a copy's batches otherwise start at
			// or past its end).
			trimTo = max(trimTo, next)
		}
		// Records the source deleted after they were copied (DeleteRecords,
		// retention): the copy deletes them too, up to what it holds.
		if logStart > trimmed {
			trimTo = max(trimTo, min(logStart, next))
		}
		if f.raw == nil && trimTo <= trimmed {
			continue
		}
		if trimTo <= trimmed {
			trimTo = -1
		} else {
			trimmed = trimTo
		}
		f.trimTo, trimTo = trimTo, -1
		select {
		case out <- f:
		case <-ctx.Done():
			return nil
		}
		if f.raw != nil {
			next = f.last + 1
		}
	}
	return nil
}

// startOffset is where the copy of a partition starts: the target's high
// watermark, or the source's log start offset when that is later (records
// deleted on the source before they were copied: a gap on the target too).
func (m *Mirror) startOffset(ctx context.Context, t, tt string, p int32) (offset int64, fromSource bool, err error) {
	for {
		ctx2, cancel := context.WithTimeout(ctx, m.opts.Timeout)
		var ends, starts kadm.ListedOffsets
		ends, err = m.dstAdm.ListEndOffsets(ctx2, tt)
		if err == nil {
			starts, err = m.srcAdm.ListStartOffsets(ctx2, t)
		}
		cancel()
		if err == nil {
			// Only this partition's answers matter: another's leader
			// may be away.
			e, ok1 := ends.Lookup(tt, p)
			s, ok2 := starts.Lookup(t, p)
			switch {
			case !ok1 || !ok2:
				err = fmt.Errorf("%s[%d] or %s[%d] not listed", tt, p, t, p)
			case e.Err != nil:
				err = fmt.Errorf("target %s[%d]: %w", tt, p, e.Err)
			case s.Err != nil:
				err = fmt.Errorf("source %s[%d]: %w", t, p, s.Err)
			default:
				return max(e.Offset, s.Offset), s.Offset > e.Offset, nil
			}
		}
		// Often a target topic just created, not yet in the metadata
		// the client has: a short wait.
		m.log.Info("cannot list the start of a partition's copy yet; retried", "topic", t, "partition", p, "err", err)
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-time.After(partitionPoll):
		}
	}
}

// outOfRange handles the source's OFFSET_OUT_OF_RANGE for next: below the
// source's log start (retention or DeleteRecords went past it), the copy
// goes on from the log start; above the source's end, the target has
// records the source does not: for a moment after a source leader change,
// or for good after an unclean election on the source, which the mirror
// cannot mend (the error; copyPartition retries it for
// preserveDivergedFor).
func (m *Mirror) outOfRange(ctx context.Context, t string, p int32, next int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	starts, err := m.srcAdm.ListStartOffsets(ctx, t)
	if err != nil {
		return next, nil // retried
	}
	ends, err := m.srcAdm.ListEndOffsets(ctx, t)
	if err != nil {
		return next, nil
	}
	s, ok1 := starts.Lookup(t, p)
	e, ok2 := ends.Lookup(t, p)
	switch {
	case !ok1 || !ok2 || s.Err != nil || e.Err != nil:
		return next, nil
	case next < s.Offset:
		m.log.Warn("source records deleted before they were copied: the target has a gap", "topic", t, "partition", p, "from", next, "to", s.Offset)
		return s.Offset, nil
	case next > e.Offset:
		return next, fmt.Errorf("mirror: the target's copy of %s[%d] ends at %d, past the source's end %d: the source lost records (unclean leader election?) or the target topic holds another copy; the mirror cannot keep offsets equal", t, p, next, e.Offset)
	}
	return next, nil
}

// fetched is whole batches from one fetch.
type fetched struct {
	raw        []byte
	from       int64 // the offset fetched: the batches' records before it were copied before
	base, last int64 // first batch's base offset, last batch's last offset
	records    int   // records in data batches
	lastTime   time.Time
	// trimTo, when not -1, is where the target's log should start once
	// these batches (none when raw is nil) are there: records the source
	// deleted, before or after they were copied.
	trimTo int64
}

// fetchBatches fetches source partition p of topic from offset, and
// returns the whole batches ending at or after it, the high watermark and
// the log start offset.
func (m *Mirror) fetchBatches(ctx context.Context, b *kgo.Broker, topic string, id [16]byte, p int32, offset int64) (f fetched, hw, logStart int64, err error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = preserveFetchWaitMs
	req.MinBytes = 1
	req.MaxBytes = preserveFetchBytes
	req.IsolationLevel = 0 // read_uncommitted: aborted records and markers are copied too
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, offset, preserveFetchBytes
	rp.CurrentLeaderEpoch, rp.LogStartOffset = -1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := b.Request(ctx, req)
	if err != nil {
		return fetched{}, -1, -1, err
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return fetched{}, -1, -1, err
	}
	for _, t := range resp.Topics {
		for _, fp := range t.Partitions {
			if fp.Partition != p {
				continue
			}
			if err := kerr.ErrorForCode(fp.ErrorCode); err != nil {
				return fetched{}, -1, -1, err
			}
			f, err := wholeBatches(fp.RecordBatches, offset)
			return f, fp.HighWatermark, fp.LogStartOffset, err
		}
	}
	return fetched{}, -1, -1, fmt.Errorf("the fetch response has no %s[%d]", topic, p)
}

// wholeBatches keeps the whole batches of b that end at or after offset,
// dropping a partial last one (cut by the fetch's size limit).
func wholeBatches(b []byte, offset int64) (fetched, error) {
	f := fetched{from: offset, base: -1, last: -1, trimTo: -1}
	start := -1
	pos := 0
	for pos < len(b) {
		size, ok := record.PeekSize(b[pos:])
		if !ok || size > len(b)-pos {
			break
		}
		h, err := record.ParseHeader(b[pos : pos+size])
		if err != nil {
			return fetched{}, fmt.Errorf("mirror: a source batch at byte %d: %w (only magic 2 batches can be copied with their offsets)", pos, err)
		}
		if h.LastOffset() < offset {
			pos += size
			continue
		}
		if start < 0 {
			start, f.base = pos, h.BaseOffset
		}
		f.last = h.LastOffset()
		if !h.IsControl() {
			f.records += int(h.RecordCount)
			f.lastTime = time.UnixMilli(h.MaxTimestamp)
		}
		pos += size
	}
	if start >= 0 {
		f.raw = b[start:pos]
	}
	return f, nil
}

// produceBatches sends whole batches, with their offsets, to the target
// leader b (acks=all; the client's RequiredAcks is all too), and returns
// the base offset the target answers: the first batch's own on a target
// that keeps offsets.
func produceBatches(ctx context.Context, b *kgo.Broker, topic string, id [16]byte, p int32, batches []byte) (int64, error) {
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = preserveProduceTimeoutMs
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic, id
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = p, batches
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := b.Request(ctx, req)
	if err != nil {
		return -1, err
	}
	resp := kresp.(*kmsg.ProduceResponse)
	for _, t := range resp.Topics {
		for _, sp := range t.Partitions {
			if sp.Partition != p {
				continue
			}
			if err := kerr.ErrorForCode(sp.ErrorCode); err != nil {
				if sp.ErrorMessage != nil {
					return -1, fmt.Errorf("%w: %s", err, *sp.ErrorMessage)
				}
				return -1, err
			}
			return sp.BaseOffset, nil
		}
	}
	return -1, fmt.Errorf("the produce response has no %s[%d]", topic, p)
}

// trimTarget moves the log start offset of the target partition up to
// offset (DeleteRecords). A failure is only logged: the records below are
// ones the source deleted, still readable on the target.
func (m *Mirror) trimTarget(ctx context.Context, tt string, p int32, offset int64) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	o := kadm.Offsets{}
	o.Add(kadm.Offset{Topic: tt, Partition: p, At: offset, LeaderEpoch: -1})
	resp, err := m.dstAdm.DeleteRecords(ctx, o)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		m.log.Warn("cannot delete on the target the records the source deleted before they were copied", "topic", tt, "partition", p, "below", offset, "err", err)
	}
}
