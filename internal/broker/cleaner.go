package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/record"
)

// cleanerCheckpointFile holds, per compacted partition, the offset below
// which the log cleaner has compacted it (Kafka's name and format).
const cleanerCheckpointFile = "cleaner-offset-checkpoint"

// cleaner is the broker's log cleaner: one scheduler goroutine (run) that
// starts passes (partition.Clean) on the dirtiest due compacted logs, at
// most log.cleaner.threads at once, each with its own offset map of
// log.cleaner.dedupe.buffer.size / threads bytes, all sharing one IO
// throttle (log.cleaner.io.max.bytes.per.second). When no log is due it
// sleeps log.cleaner.backoff.ms. Broker configs are read at every round, so
// dynamic changes apply to the next pass.
//
// mu guards inProgress, retryAt and uncleanable; cpMu serializes checkpoint
// writes. Lock order: mu and cpMu are never held together, nor across a pass.
type cleaner struct {
	b        *Broker
	throttle *log.Throttler
	loaded   map[TopicPartition]int64 // the checkpoint read at Open; read-only

	mu          sync.Mutex
	inProgress  map[TopicPartition]bool
	retryAt     map[TopicPartition]time.Time // after an aborted or failed pass
	uncleanable map[TopicPartition]string    // corrupt data: skipped until restart

	cpMu sync.Mutex

	bytesCleaned atomic.Int64 // segment bytes passes went through
	bytesWritten atomic.Int64 // segment bytes passes wrote
	passes       atomic.Int64
}

// CleanerStats are the log cleaner's counters since the broker started.
type CleanerStats struct {
	BytesCleaned int64 // bytes of the segments passes read and compacted
	BytesWritten int64 // bytes of the segments that replaced them
	Passes       int64
}

func newCleaner(b *Broker) *cleaner {
	c := &cleaner{b: b, inProgress: map[TopicPartition]bool{}, retryAt: map[TopicPartition]time.Time{},
		uncleanable: map[TopicPartition]string{}, throttle: log.NewThrottler(0, nil, nil)}
	cp, err := readCheckpoint(b.fs, filepath.Join(b.cfg.DataDir, cleanerCheckpointFile))
	if err != nil {
		b.logger.Warn("cleaner checkpoint unreadable; compacted logs will be cleaned from their start", "err", err)
		cp = map[TopicPartition]int64{}
	}
	c.loaded = cp
	return c
}

// checkpointed is the first dirty offset read at Open for tp.
func (c *cleaner) checkpointed(tp TopicPartition) int64 { return c.loaded[tp] }

// cleanerSettings are the broker configs a round uses.
type cleanerSettings struct {
	enabled    bool
	threads    int
	backoff    time.Duration
	dedupe     int64
	loadFactor float64
	ioBuffer   int
	rate       float64
}

func (c *cleaner) settings() cleanerSettings {
	cfgs := c.b.BrokerConfigs()
	value := func(name string) string {
		v, _ := cfgs.Value(name)
		return v
	}
	num := func(name string) int64 {
		n, err := strconv.ParseInt(value(name), 10, 64)
		if err != nil {
			d, _ := config.BrokerDef(name)
			n, _ = strconv.ParseInt(d.Default, 10, 64)
		}
		return n
	}
	float := func(name string) float64 {
		f, err := strconv.ParseFloat(value(name), 64)
		if err != nil {
			d, _ := config.BrokerDef(name)
			f, _ = strconv.ParseFloat(d.Default, 64)
		}
		return f
	}
	s := cleanerSettings{
		enabled:    !strings.EqualFold(strings.TrimSpace(value("log.cleaner.enable")), "false"),
		threads:    int(max(num("log.cleaner.threads"), 0)),
		backoff:    time.Duration(max(num("log.cleaner.backoff.ms"), 1)) * time.Millisecond,
		dedupe:     num("log.cleaner.dedupe.buffer.size"),
		loadFactor: float("log.cleaner.io.buffer.load.factor"),
		ioBuffer:   int(num("log.cleaner.io.buffer.size")),
		rate:       float("log.cleaner.io.max.bytes.per.second"),
	}
	if !s.enabled {
		s.threads = 0
	}
	return s
}

// mapBytes is one pass's share of the dedupe buffer.
func (s cleanerSettings) mapBytes() int64 { return s.dedupe / int64(max(s.threads, 1)) }

// run schedules passes until ctx ends, then waits for those running.
func (c *cleaner) run(ctx context.Context) {
	defer c.b.wg.Done()
	done := make(chan struct{})
	running := 0
	for {
		s := c.settings()
		for running < s.threads {
			tp, p, ok := c.grab()
			if !ok {
				break
			}
			running++
			go func() {
				defer func() {
					c.mu.Lock()
					delete(c.inProgress, tp)
					c.mu.Unlock()
					done <- struct{}{}
				}()
				c.clean(ctx, tp, p, s, false)
			}()
		}
		timer := time.NewTimer(s.backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			for ; running > 0; running-- {
				<-done
			}
			return
		case <-done:
			running--
		case <-timer.C:
		}
		timer.Stop()
	}
}

// grab picks the due log with the highest dirty ratio that no pass is
// working on, and marks it in progress.
func (c *cleaner) grab() (TopicPartition, *partition.Partition, bool) {
	now := time.Now()
	var (
		best   TopicPartition
		bestP  *partition.Partition
		bestSt log.CleanerState
	)
	for tp, p := range c.b.Partitions() {
		c.mu.Lock()
		skip := c.inProgress[tp] || c.uncleanable[tp] != "" || now.Before(c.retryAt[tp])
		c.mu.Unlock()
		if skip {
			continue
		}
		l := p.Log()
		st := p.CleanerState()
		if !st.Compact {
			continue
		}
		if st.HorizonUnknown {
			if err := l.LoadDeleteHorizon(); err != nil && !errors.Is(err, log.ErrClosed) {
				c.b.logger.Warn("log cleaner: read delete horizons", "partition", partitionDir(tp), "err", err)
			}
			st = p.CleanerState()
		}
		if st.Due && (bestP == nil || st.DirtyRatio > bestSt.DirtyRatio) {
			best, bestP, bestSt = tp, p, st
		}
	}
	if bestP == nil {
		return TopicPartition{}, nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inProgress[best] {
		return TopicPartition{}, nil, false
	}
	c.inProgress[best] = true
	return best, bestP, true
}

// clean runs one pass on p (passes on one log are serialized by the log)
// and records its outcome.
func (c *cleaner) clean(ctx context.Context, tp TopicPartition, p *partition.Partition, s cleanerSettings, force bool) error {
	c.throttle.SetRate(s.rate)
	res, err := p.Clean(ctx, log.CleanOptions{
		Map:           log.NewOffsetMap(s.mapBytes(), s.loadFactor),
		Throttle:      c.throttle,
		IOBufferBytes: s.ioBuffer,
		Force:         force,
	})
	if res.Cleaned {
		c.bytesCleaned.Add(res.BytesIn)
		c.bytesWritten.Add(res.BytesOut)
		c.passes.Add(1)
	}
	switch {
	case err == nil:
		if res.Cleaned {
			if err := c.writeCheckpoint(); err != nil {
				c.b.logger.Error("log cleaner: checkpoint", "err", err)
			}
		}
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, log.ErrClosed):
		return err
	case errors.Is(err, record.ErrCorrupt), errors.Is(err, record.ErrInvalidRecord), errors.Is(err, record.ErrTruncated),
		errors.Is(err, record.ErrUnsupportedCodec), errors.Is(err, record.ErrUnsupportedMagic):
		c.b.logger.Error("log cleaner: partition marked uncleanable until restart", "partition", partitionDir(tp), "err", err)
		c.mu.Lock()
		c.uncleanable[tp] = err.Error()
		c.mu.Unlock()
	default:
		lvl := slog.LevelError
		if errors.Is(err, log.ErrCleanAborted) {
			lvl = slog.LevelInfo
		}
		c.b.logger.Log(ctx, lvl, "log cleaner: pass failed; retrying after log.cleaner.backoff.ms", "partition", partitionDir(tp), "err", err)
		c.mu.Lock()
		c.retryAt[tp] = time.Now().Add(s.backoff)
		c.mu.Unlock()
	}
	return err
}

// writeCheckpoint writes every compacted partition's first dirty offset.
func (c *cleaner) writeCheckpoint() error { return c.writeCheckpointOf(c.b.Partitions()) }

// writeCheckpointOf writes the first dirty offsets of parts (at Close, the
// partitions just closed).
func (c *cleaner) writeCheckpointOf(parts map[TopicPartition]*partition.Partition) error {
	c.cpMu.Lock()
	defer c.cpMu.Unlock()
	offs := map[TopicPartition]int64{}
	for tp, p := range parts {
		if l := p.Log(); l.CleanerState().Compact {
			offs[tp] = l.FirstDirtyOffset()
		}
	}
	return writeCheckpoint(c.b.fs, c.b.cfg.DataDir, cleanerCheckpointFile, offs)
}

// CleanerStats reports the log cleaner's counters.
func (b *Broker) CleanerStats() CleanerStats {
	c := b.cleaner
	return CleanerStats{BytesCleaned: c.bytesCleaned.Load(), BytesWritten: c.bytesWritten.Load(), Passes: c.passes.Load()}
}

// CleanNow runs a cleaning pass on every compacted partition now, whether
// due or not (still never the active segment, nor records younger than
// min.compaction.lag.ms), one after another; a background pass on the same
// log finishes first. For tests and operators.
func (b *Broker) CleanNow(ctx context.Context) error {
	c := b.cleaner
	s := c.settings()
	s.threads = max(s.threads, 1)
	var errs []error
	for tp, p := range b.Partitions() {
		if !p.Log().CleanerState().Compact {
			continue
		}
		if err := c.clean(ctx, tp, p, s, true); err != nil {
			errs = append(errs, fmt.Errorf("clean %s: %w", partitionDir(tp), err))
		}
	}
	return errors.Join(errs...)
}

// segmentMs is how old the active segment may get: for a compacted topic at
// most max.compaction.lag.ms too, so that its records become cleanable in
// time (Kafka's LogConfig.maxSegmentMs).
func segmentMs(tc config.Topic) int64 {
	if tc.Compact && tc.MaxCompactionLagMs > 0 {
		return min(tc.SegmentMs, tc.MaxCompactionLagMs)
	}
	return tc.SegmentMs
}
