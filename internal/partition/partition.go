// Package partition is one partition replica on this broker: its log plus
// what Kafka keeps beside it — the idempotent producers' state, the leader
// epoch history and the high watermark — and the rules a produced batch
// must pass before it is appended.
package partition

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// Errors of a produce; the api package turns them into Kafka codes.
var (
	ErrUnknownProducerID    = errors.New("partition: unknown producer id")
	ErrInvalidProducerEpoch = errors.New("partition: producer epoch is old")
	ErrOutOfOrderSequence   = errors.New("partition: out of order sequence number")
	ErrUnsupportedMagic     = errors.New("partition: unsupported record batch magic")
	ErrInvalidRecord        = errors.New("partition: invalid record")
	ErrCorruptMessage       = errors.New("partition: corrupt record batch")
	ErrMessageTooLarge      = errors.New("partition: record batch too large")
	ErrInvalidTimestamp     = errors.New("partition: timestamp out of range")
	ErrStorage              = errors.New("partition: storage error")
	// ErrCompactedNoKey: a compacted topic refuses records without a key
	// (Kafka answers INVALID_RECORD).
	ErrCompactedNoKey = errors.New("partition: compacted topic cannot accept a record without a key")
	// ErrCoordinatorFenced: a transaction marker from a coordinator epoch
	// older than the producer's last marker (TRANSACTION_COORDINATOR_FENCED).
	ErrCoordinatorFenced = errors.New("partition: transaction marker from an old coordinator epoch")
	// ErrNotLeader: a client append (Append, AppendFromCoordinator,
	// WriteMarker) to a follower, or an acks=all wait (WaitDurable) on a
	// replica that stopped leading (NOT_LEADER_OR_FOLLOWER).
	ErrNotLeader = errors.New("partition: not the leader")
	// ErrNotFollower: AppendReplicated on the leader (a fetch response
	// from a previous leader that arrived after this replica became
	// leader): nothing is appended.
	ErrNotFollower = errors.New("partition: not a follower")
	// ErrOffsetMismatch: AppendReplicated was given batches whose first
	// starts below the log end offset (Kafka's
	// UnexpectedAppendOffsetException): the fetcher fetches again from the
	// log end, or truncates (a leader whose log start is inside a batch).
	ErrOffsetMismatch = errors.New("partition: replicated batches start below the log end offset")
)

// Config is what the partition enforces on produce, from the topic configs.
type Config struct {
	Log             log.Config
	MaxMessageBytes int32 // max.message.bytes: largest batch accepted
	LogAppendTime   bool  // message.timestamp.type=LogAppendTime
	// TimestampBeforeMaxMs / AfterMaxMs bound CreateTime timestamps
	// relative to now (message.timestamp.before/after.max.ms); MaxInt64 is off.
	TimestampBeforeMaxMs int64
	TimestampAfterMaxMs  int64
	// CompressionType is compression.type: producer (or empty) keeps the
	// producer's codec; uncompressed, gzip, snappy, lz4 or zstd store
	// batches in that codec, recompressing those produced in another, at
	// the compression.<codec>.level below (Kafka's scale).
	CompressionType string
	GzipLevel       int32
	LZ4Level        int32
	ZstdLevel       int32
	// DurableHighWatermark makes the high watermark the last fsynced
	// offset (log.flush.policy=acks-all): no consumer reads, or commits an
	// offset past, a record that a power cut could take back. When false
	// (log.flush.policy=none) it follows the appends.
	DurableHighWatermark bool
}

// DefaultConfig is Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		Log:                  log.DefaultConfig(),
		MaxMessageBytes:      1048588,
		TimestampBeforeMaxMs: math.MaxInt64,
		TimestampAfterMaxMs:  math.MaxInt64,
		CompressionType:      "producer",
		GzipLevel:            DefaultGzipLevel,
		LZ4Level:             DefaultLZ4Level,
		ZstdLevel:            DefaultZstdLevel,
	}
}

// Options configure Open.
type Options struct {
	FS             vfs.FS
	Dir            string
	Config         Config
	RecoveryPoint  int64
	LogStartOffset int64
	Clean          bool
	LeaderEpoch    int32
	Logger         *slog.Logger
	Now            func() time.Time
	OnSync         func(time.Duration) // told each fsync's duration
	// FirstDirtyOffset is the log cleaner's checkpoint for this partition.
	FirstDirtyOffset int64
	// OnUnflushed, if set, is called when an append under
	// Config.DurableHighWatermark leaves data not yet fsynced, at most once until
	// the next Flush: the broker's flusher then calls Flush within
	// log.flush.max.delay.ms, so that acks=0/1 data becomes visible without
	// an fsync per request. It is called with the partition's append lock
	// held, so it must neither block nor call the partition.
	OnUnflushed func(*Partition)
	// Files opens and closes the log's segment files, bounded for every
	// partition of the broker (log.Options.Files); nil is a cache of the
	// partition's own without a limit.
	Files *log.FileCache
	// LogDir is the health of the directory holding the partition, shared
	// by the broker's partitions (log.Options.LogDir); nil is one of the
	// partition's own.
	LogDir *log.LogDir
	// Replicated opens the replica with its high watermark at the log
	// start rather than the log end: the log may hold records its leader
	// never committed (it crashed before its followers had them), and a
	// replica that serves them could show consumers records a new leader
	// does not have. The replication layer raises it (a leader from its
	// ISR's log ends, a follower from its leader's answers).
	Replicated bool
	// Follower opens the replica as a follower in LeaderEpoch
	// (BecomeFollower) rather than as its leader (BecomeLeader): a
	// follower adds no leader epoch entry of its own, which would hide
	// from OffsetForLeaderEpoch a suffix it must truncate.
	Follower bool
}

// Partition is one partition replica. Safe for concurrent use.
//
// Lock order: checkpointMu (producer snapshots, truncations), mu (appends,
// role changes, truncations), hwMu (moves of the high watermark), then
// notifyMu and the log's own locks. A truncation holds checkpointMu and mu
// while the log truncates; nothing the log does calls back into the
// partition.
type Partition struct {
	fs     vfs.FS
	dir    string
	log    *log.Log
	logger *slog.Logger
	now    func() time.Time

	mu        sync.Mutex // serializes appends: checks, offset assignment, producer state
	cfg       Config
	producers map[int64]*producerState
	epochs    epochCache
	// leaderEpoch is written under mu and read without it (fetches).
	leaderEpoch atomic.Int32
	// leader: the replica takes client appends (BecomeLeader); a follower
	// (BecomeFollower) takes AppendReplicated only. Written under mu.
	leader atomic.Bool
	// checkpointMu serializes producer snapshots, whose fsyncs run
	// outside mu so that appends do not wait for them. snapshotAt is the
	// offset of the last durable snapshot (-1: none); read by the cleaner.
	checkpointMu sync.Mutex
	snapshotAt   atomic.Int64
	deleted      atomic.Bool // Delete ran: no more snapshots

	// The high watermark. Visibility order, which read_committed depends
	// on: an append updates the producer state and the first unstable
	// offset, then stores published (the log end offset whose batches are
	// fully noted), and only then may hw move up to it; LastStableOffset
	// loads hw before firstUnstable. So a reader that sees a batch below
	// the high watermark also sees the transaction it opened. published
	// is written under mu; hw under hwMu (a leaf lock: nothing is taken
	// while it is held), so that a move computed from an end that a
	// truncation took back cannot land after the truncation.
	published   atomic.Int64
	hwMu        sync.Mutex
	hw          atomic.Int64
	durableHW   atomic.Bool // cfg.DurableHighWatermark, read without mu
	onUnflushed func(*Partition)
	unflushed   atomic.Bool // onUnflushed was called and Flush has not run since
	// external: the replication layer moves hw (AdvanceHighWatermark);
	// the partition only tells it, through onLocalEnd, that LocalEnd may
	// have moved.
	external   atomic.Bool
	onLocalEnd atomic.Pointer[func()]
	// ongoing holds the first offset of each open transaction by producer
	// id; firstUnstable is the smallest (MaxInt64 when none), read without
	// the lock by fetches for the last stable offset.
	ongoing       map[int64]int64
	firstUnstable atomic.Int64
	// recompress is cfg's compression settings, read without the lock by
	// appends, which recompress a batch before taking it.
	recompress atomic.Pointer[recompression]

	notifyMu sync.Mutex
	watchers map[chan<- struct{}]struct{} // told once when the high watermark moves
}

// Open opens the partition's log, recovering it, and rebuilds the producer
// state from the latest snapshot plus the log after it.
func Open(opts Options) (*Partition, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l, err := log.Open(log.Options{
		FS: opts.FS, Dir: opts.Dir, Config: opts.Config.Log,
		RecoveryPoint: opts.RecoveryPoint, LogStartOffset: opts.LogStartOffset,
		Clean: opts.Clean, Logger: opts.Logger, Now: opts.Now, OnSync: opts.OnSync,
		FirstDirtyOffset: opts.FirstDirtyOffset, Files: opts.Files, LogDir: opts.LogDir,
	})
	if err != nil {
		return nil, err
	}
	p := &Partition{
		fs: opts.FS, dir: opts.Dir, log: l, logger: opts.Logger, now: opts.Now,
		cfg: opts.Config, producers: map[int64]*producerState{},
		watchers: map[chan<- struct{}]struct{}{}, ongoing: map[int64]int64{},
		onUnflushed: opts.OnUnflushed,
	}
	p.durableHW.Store(opts.Config.DurableHighWatermark)
	p.snapshotAt.Store(-1)
	p.firstUnstable.Store(math.MaxInt64)
	p.recompress.Store(recompressionOf(opts.Config))
	if err := p.loadEpochs(); err != nil {
		l.Close()
		return nil, err
	}
	if err := p.loadProducers(); err != nil {
		l.Close()
		return nil, err
	}
	become := p.BecomeLeader
	if opts.Follower {
		become = p.BecomeFollower
	}
	if err := become(opts.LeaderEpoch); err != nil {
		l.Close()
		return nil, err
	}
	// Recovery made the whole log durable.
	p.published.Store(l.EndOffset())
	p.hw.Store(min(l.EndOffset(), l.DurableOffset()))
	if opts.Replicated {
		p.hw.Store(l.StartOffset())
	}
	return p, nil
}

// loadEpochs reads the leader epoch checkpoint. Only a missing file
// starts the history anew (a new partition). A file that cannot be read
// now (too many open files, an I/O error) may be whole: the open fails and
// the file is left as it is. A file whose bytes are not a checkpoint is
// moved aside as leader-epoch-checkpoint-corrupt (kept for inspection)
// and the history is rebuilt from the leader epochs of the log's batches,
// as Kafka's segment recovery assigns them.
func (p *Partition) loadEpochs() error {
	name := filepath.Join(p.dir, epochCheckpointFile)
	b, err := readSmall(p.fs, name)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("partition: read %s (left as it is; fix the cause and restart): %w", name, err)
	}
	c, err := unmarshalEpochCache(b)
	if err != nil {
		return p.rebuildEpochs(name, err)
	}
	// Drop entries past the log end: the log was cut at recovery.
	end := p.log.EndOffset()
	for len(c.entries) > 0 && c.entries[len(c.entries)-1].StartOffset > end {
		c.entries = c.entries[:len(c.entries)-1]
	}
	p.epochs = c
	return nil
}

// rebuildEpochs moves a damaged checkpoint aside, never over an earlier
// one, and writes the history read from the batches' leader epochs.
func (p *Partition) rebuildEpochs(name string, damage error) error {
	aside := name + corruptSuffix
	if _, err := p.fs.Stat(aside); err == nil {
		aside = fmt.Sprintf("%s.%d", aside, p.now().UnixNano())
	}
	p.logger.Warn("leader epoch checkpoint damaged; moving it aside and rebuilding it from the log",
		"dir", p.dir, "to", aside, "err", damage)
	if err := vfs.Rename(p.fs, name, aside); err != nil {
		return fmt.Errorf("partition: move damaged %s aside: %w", name, err)
	}
	var c epochCache
	err := p.log.WalkHeaders(p.log.StartOffset(), func(h record.Header, _ record.ControlType) error {
		if h.LeaderEpoch >= 0 {
			c.assign(h.LeaderEpoch, h.BaseOffset)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("partition: rebuild %s from the log: %w", name, err)
	}
	if err := vfs.WriteFileAtomic(p.fs, p.dir, name, c.marshal()); err != nil {
		return fmt.Errorf("partition: write rebuilt %s: %w", name, err)
	}
	p.epochs = c
	return nil
}

// corruptSuffix names a damaged file moved aside.
const corruptSuffix = "-corrupt"

// loadProducers reads the newest usable snapshot at or below the log end
// and replays the batch headers after it.
func (p *Partition) loadProducers() error {
	names, err := p.fs.List(p.dir)
	if err != nil {
		return fmt.Errorf("partition: list %s: %w", p.dir, err)
	}
	end := p.log.EndOffset()
	var offs []int64
	for _, n := range names {
		if off, ok := parseSnapshotName(n); ok {
			offs = append(offs, off)
		}
	}
	from := p.log.StartOffset()
	for i := len(offs) - 1; i >= 0; i-- {
		if offs[i] > end {
			continue
		}
		b, err := readSmall(p.fs, filepath.Join(p.dir, snapshotName(offs[i])))
		if err == nil {
			var m map[int64]*producerState
			if m, err = unmarshalSnapshot(b); err == nil {
				p.producers, from = m, offs[i]
				p.snapshotAt.Store(offs[i])
				break
			}
		}
		p.logger.Warn("producer snapshot unusable", "dir", p.dir, "offset", offs[i], "err", err)
	}
	for _, off := range offs {
		if off != from {
			_ = p.fs.Remove(filepath.Join(p.dir, snapshotName(off)))
		}
	}
	for id, s := range p.producers {
		if s.txnFirstOffset >= 0 {
			p.ongoing[id] = s.txnFirstOffset
		}
	}
	var aborted []log.AbortedTxn
	err = p.log.WalkHeadersAndControl(from, func(h record.Header, ctl log.Control) error {
		if h.BaseOffset < from || !h.HasProducer() {
			return nil
		}
		if h.IsControl() {
			if ctl.Type != record.ControlAbort && ctl.Type != record.ControlCommit {
				return nil
			}
			coordinatorEpoch, ok := markerCoordinatorEpoch(ctl.Value)
			if !ok {
				coordinatorEpoch = -1
			}
			if a, ok := p.endTxnLocked(h.ProducerID, h.ProducerEpoch, coordinatorEpoch, h.MaxTimestamp, ctl.Type == record.ControlCommit, h.BaseOffset); ok {
				aborted = append(aborted, a)
			}
			return nil
		}
		p.noteBatchLocked(&h, h.BaseOffset)
		return nil
	})
	if err != nil {
		return fmt.Errorf("partition: replay producer state in %s: %w", p.dir, err)
	}
	p.updateFirstUnstableLocked()
	// Aborts after the snapshot the transaction index may lack (it is
	// written after the marker); entries it has are skipped.
	for _, a := range aborted {
		if err := p.log.AppendAborted(a); err != nil {
			return fmt.Errorf("partition: rebuild the transaction index of %s: %w", p.dir, err)
		}
	}
	return nil
}

func snapshotName(off int64) string { return fmt.Sprintf("%020d.snapshot", off) }

func parseSnapshotName(name string) (int64, bool) {
	if !strings.HasSuffix(name, ".snapshot") || len(name) != 29 {
		return 0, false
	}
	off, err := strconv.ParseInt(strings.TrimSuffix(name, ".snapshot"), 10, 64)
	return off, err == nil && off >= 0
}

// BecomeLeader makes the replica the leader in a leader epoch (from the
// metadata): client appends are taken again, batches carry the epoch, and
// an epoch newer than any known starts at the log end offset in the leader
// epoch cache (persisted before it returns), as Kafka's makeLeader does. An
// epoch at or below the latest known adds nothing.
func (p *Partition) BecomeLeader(epoch int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leaderEpoch.Store(epoch)
	p.leader.Store(true)
	if last, ok := p.epochs.latest(); ok && last.Epoch >= epoch {
		return nil
	}
	p.epochs.assign(epoch, p.log.EndOffset())
	return p.writeEpochsLocked()
}

// BecomeFollower makes the replica a follower in a leader epoch (from the
// metadata): the epoch is recorded for the checks of fetches, but no entry
// goes into the leader epoch cache (the leader's batches bring theirs, see
// AppendReplicated). From now on Append, AppendFromCoordinator and
// WriteMarker fail with ErrNotLeader. The high watermark's mode is left as
// it is (see SetExternalHighWatermark).
func (p *Partition) BecomeFollower(epoch int32) error {
	p.mu.Lock()
	p.leaderEpoch.Store(epoch)
	p.leader.Store(false)
	p.mu.Unlock()
	p.wake() // WaitCommitted callers learn that they wait in vain
	return nil
}

// IsLeader says whether the replica takes client appends (BecomeLeader,
// the default) or is a follower (BecomeFollower).
func (p *Partition) IsLeader() bool { return p.leader.Load() }

// writeEpochsLocked persists the leader epoch cache. Called with mu held.
func (p *Partition) writeEpochsLocked() error {
	if err := vfs.WriteFileAtomic(p.fs, p.dir, filepath.Join(p.dir, epochCheckpointFile), p.epochs.marshal()); err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrStorage, epochCheckpointFile, err)
	}
	return nil
}

// SetConfig applies changed topic configs.
func (p *Partition) SetConfig(c Config) {
	p.mu.Lock()
	p.cfg = c
	p.recompress.Store(recompressionOf(c))
	p.durableHW.Store(c.DurableHighWatermark)
	p.mu.Unlock()
	p.log.SetConfig(c.Log)
	// From durable to not: the high watermark catches up with the appends.
	p.localEndMoved()
}

// Dir is the partition's directory.
func (p *Partition) Dir() string { return p.dir }

// Log is the partition's log, for reads.
func (p *Partition) Log() *log.Log { return p.log }

// HighWatermark is the offset below which records are committed:
// consumers read, and ListOffsets reports, up to it. It is kept apart from
// the log end offset: with DurableHighWatermark it is the last fsynced
// offset, else the end of the last append; under an external high
// watermark (a cluster), what the replication layer set with
// AdvanceHighWatermark. It never passes LocalEnd and decreases only with
// a truncation.
func (p *Partition) HighWatermark() int64 { return p.hw.Load() }

// LastStableOffset is the offset below which every transaction is decided:
// the first offset of the oldest open transaction, or the high watermark.
// read_committed consumers read up to it. The high watermark is loaded
// first (see the visibility order at Partition.published).
func (p *Partition) LastStableOffset() int64 {
	hw := p.hw.Load()
	return min(p.firstUnstable.Load(), hw)
}

// LocalEnd is how far this replica's log counts for replication: the end
// of what is published (appended, with its producer and transaction state
// noted) and, with DurableHighWatermark, fsynced. A follower reports it as
// its fetch offset; a leader takes it as its own log end offset when it
// computes the high watermark. The high watermark never passes it.
func (p *Partition) LocalEnd() int64 {
	end := p.published.Load()
	if p.durableHW.Load() {
		end = min(end, p.log.DurableOffset())
	}
	return end
}

// SetExternalHighWatermark hands the high watermark to the replication
// layer (on) or takes it back (off, a single node: it catches up with
// LocalEnd at once). While on, appends and fsyncs no longer move it:
// AdvanceHighWatermark does, and the function set with SetOnLocalEnd is
// told when LocalEnd may have moved. The high watermark stays where it is
// when it is switched on.
func (p *Partition) SetExternalHighWatermark(on bool) {
	p.mu.Lock()
	p.external.Store(on)
	p.mu.Unlock()
	if !on {
		p.advanceHW()
	}
}

// SetOnLocalEnd sets the function told, under an external high
// watermark, that LocalEnd may have moved: after an append (AppendReplicated
// on a follower, a client append on the leader) when DurableHighWatermark
// is off, after an fsync (Flush, WaitDurable, Checkpoint) when it is on. It
// may be told more often than LocalEnd moves, and concurrently from several
// goroutines; it is called without the partition's locks held and may call
// the partition (LocalEnd, AdvanceHighWatermark), but it should not block:
// appends wait for it. nil removes it.
func (p *Partition) SetOnLocalEnd(f func()) {
	if f == nil {
		p.onLocalEnd.Store(nil)
		return
	}
	p.onLocalEnd.Store(&f)
}

// AdvanceHighWatermark moves the high watermark up to hw, or to LocalEnd
// if that is lower; it never moves it down. It reports whether it moved,
// and then wakes the fetches waiting for it (Watch). The leader calls it
// with the high watermark computed from the in-sync replicas' log end
// offsets, a follower with its leader's high watermark from a fetch
// response. It works whether the high watermark is external or not.
func (p *Partition) AdvanceHighWatermark(hw int64) bool { return p.raiseHW(hw) }

// advanceHW moves the high watermark up to LocalEnd (a single node).
func (p *Partition) advanceHW() { p.raiseHW(math.MaxInt64) }

// raiseHW moves the high watermark up to min(limit, LocalEnd()), never
// down, and wakes the fetches waiting for it when it moved.
func (p *Partition) raiseHW(limit int64) bool {
	p.hwMu.Lock()
	target := min(limit, p.LocalEnd())
	moved := target > p.hw.Load()
	if moved {
		p.hw.Store(target)
	}
	p.hwMu.Unlock()
	if moved {
		p.wake()
	}
	return moved
}

// lowerEndLocked makes end the published end and moves the high watermark
// down to it if it is above (a truncation). Called with mu held.
func (p *Partition) lowerEndLocked(end int64) {
	p.hwMu.Lock()
	p.published.Store(end)
	if p.hw.Load() > end {
		p.hw.Store(end)
	}
	p.hwMu.Unlock()
}

// localEndMoved is called when LocalEnd may have moved (an fsync, a
// truncation, a config change): the partition moves its high watermark,
// or, under an external one, tells the replication layer. Called without
// mu held.
func (p *Partition) localEndMoved() {
	if !p.external.Load() {
		p.advanceHW()
		return
	}
	if f := p.onLocalEnd.Load(); f != nil {
		(*f)()
	}
}

// afterPublish is called once an append's lock is released: under an
// external high watermark without DurableHighWatermark the append moved
// LocalEnd, and the replication layer is told.
func (p *Partition) afterPublish() {
	if p.external.Load() && !p.durableHW.Load() {
		p.localEndMoved()
	}
}

// publishLocked makes an appended batch ending before end count: the high
// watermark may now reach it. Called with mu held, after the batch's
// producer and transaction state were noted; the caller calls afterPublish
// once it releases mu.
func (p *Partition) publishLocked(end int64) {
	p.published.Store(end)
	if !p.durableHW.Load() {
		if !p.external.Load() {
			p.advanceHW()
		}
		return
	}
	if p.onUnflushed != nil && !p.unflushed.Swap(true) {
		p.onUnflushed(p)
	}
}

// Flush fsyncs everything appended so far and moves the high watermark
// over it (under an external high watermark: tells the replication layer
// that LocalEnd moved): the broker's flusher calls it within
// log.flush.max.delay.ms of an append that nobody waits to fsync (acks=0
// and acks=1 produces, a follower's AppendReplicated).
func (p *Partition) Flush() error {
	p.unflushed.Store(false)
	if err := p.log.SyncTo(p.published.Load()); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	p.localEndMoved()
	return nil
}

// StorageError says why the partition refuses produce requests
// (KAFKA_STORAGE_ERROR), if it does: see log.Log.StorageError.
func (p *Partition) StorageError() (reason string, err error) { return p.log.StorageError() }

// LeaderEpoch is the current leader epoch.
func (p *Partition) LeaderEpoch() int32 { return p.leaderEpoch.Load() }

// EndOffsetForEpoch answers OffsetForLeaderEpoch as Kafka does: for the
// latest epoch known, that epoch and the log end offset; for an earlier
// one, the largest epoch at or below it and the start offset of the epoch
// after that one; for one below every epoch known, the requested epoch
// and the first known epoch's start offset; -1, -1 (UNDEFINED) for an
// epoch below 0, above the latest, or when no epoch is known.
func (p *Partition) EndOffsetForEpoch(epoch int32) (int32, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epochs.endOffsetFor(epoch, p.log.EndOffset())
}

// LatestEpoch is the latest leader epoch of the leader epoch cache (that
// of the last batch appended, or a newer one this replica leads), -1 when
// the cache is empty (Kafka's latestEpoch): a follower sends it as its
// fetches' LastFetchedEpoch, and asks OffsetForLeaderEpoch about it.
func (p *Partition) LatestEpoch() int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.epochs.latest(); ok {
		return e.Epoch
	}
	return -1
}

// EpochStartOffset is the offset where leader epoch epoch began in this
// log (its leader epoch cache entry), or -1 when the cache does not have
// it. The leader asks it for its own epoch: a follower joins the in-sync
// replicas only once it has reached that offset.
func (p *Partition) EpochStartOffset(epoch int32) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epochs.startOffsetOf(epoch)
}

// Watch registers ch to be sent to, without blocking (give it a buffer of
// one), the next time the high watermark moves; it is then dropped. A
// long-polling fetch registers one channel with every partition it reads,
// before reading them, so that no append is missed, and calls Unwatch on
// each when it answers.
func (p *Partition) Watch(ch chan<- struct{}) {
	p.notifyMu.Lock()
	p.watchers[ch] = struct{}{}
	p.notifyMu.Unlock()
}

// Unwatch drops ch if it is still registered.
func (p *Partition) Unwatch(ch chan<- struct{}) {
	p.notifyMu.Lock()
	delete(p.watchers, ch)
	p.notifyMu.Unlock()
}

func (p *Partition) wake() {
	p.notifyMu.Lock()
	for ch := range p.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	clear(p.watchers)
	p.notifyMu.Unlock()
}

// AppendResult is what a produce response reports for a batch.
type AppendResult struct {
	BaseOffset     int64
	LastOffset     int64
	LogAppendTime  int64 // -1 unless the topic uses LogAppendTime
	LogStartOffset int64
	Duplicate      bool // a retry answered with the original offsets
}

// Append checks a produced batch (CRC, magic, size, timestamps, producer
// sequence) and appends it. Errors wrap the kerr error to answer with; a
// follower answers ErrNotLeader.
// The batch's bytes are rewritten in place (offset, leader epoch, and the
// timestamp under LogAppendTime); the caller must not reuse them. A batch
// in another codec than the topic's compression.type is stored recompressed
// (a new buffer) instead.
func (p *Partition) Append(batch []byte) (AppendResult, error) {
	return p.append(batch, false)
}

// AppendFromCoordinator appends a batch written by a coordinator of this
// broker (the group coordinator's transactional offset commits): it
// carries a producer id and epoch but no sequence, so only the epoch is
// checked, as Kafka does for its coordinators' appends.
func (p *Partition) AppendFromCoordinator(batch []byte) (AppendResult, error) {
	return p.append(batch, true)
}

func (p *Partition) append(batch []byte, coordinator bool) (AppendResult, error) {
	h, err := record.ValidateProduced(batch)
	if err != nil {
		switch {
		case errors.Is(err, record.ErrUnsupportedMagic):
			return AppendResult{}, fmt.Errorf("%w: %v", ErrUnsupportedMagic, err)
		case errors.Is(err, record.ErrInvalidRecord):
			return AppendResult{}, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
		default:
			return AppendResult{}, fmt.Errorf("%w: %v", ErrCorruptMessage, err)
		}
	}
	if h.IsControl() && !coordinator {
		return AppendResult{}, fmt.Errorf("%w: clients may not write control batches", ErrInvalidRecord)
	}
	if !p.leader.Load() {
		return AppendResult{}, fmt.Errorf("%w: leader epoch %d", ErrNotLeader, p.leaderEpoch.Load())
	}
	// compression.type: a batch in another codec than the topic's is
	// rebuilt in it, before the lock (the CPU work of a produce).
	if batch, h, err = recompress(batch, h, p.recompress.Load()); err != nil {
		return AppendResult{}, err
	}
	p.mu.Lock()
	res, err := p.appendLocked(batch, h, coordinator)
	p.mu.Unlock()
	if err == nil && !res.Duplicate {
		p.afterPublish()
	}
	return res, err
}

// appendLocked is append's part under mu.
func (p *Partition) appendLocked(batch []byte, h record.Header, coordinator bool) (AppendResult, error) {
	if !p.leader.Load() {
		return AppendResult{}, fmt.Errorf("%w: leader epoch %d", ErrNotLeader, p.leaderEpoch.Load())
	}
	if len(batch) > int(p.cfg.MaxMessageBytes) {
		return AppendResult{}, fmt.Errorf("%w: batch of %d bytes is above max.message.bytes %d",
			ErrMessageTooLarge, len(batch), p.cfg.MaxMessageBytes)
	}
	if p.cfg.Log.Compact && !h.IsControl() {
		if err := checkKeys(batch, h); err != nil {
			return AppendResult{}, err
		}
	}
	now := p.now().UnixMilli()
	appendTime := int64(-1)
	if p.cfg.LogAppendTime {
		appendTime = now
	} else if err := p.checkTimestamps(&h, now); err != nil {
		return AppendResult{}, err
	}
	var ps *producerState
	if h.HasProducer() {
		ps = p.producers[h.ProducerID]
		if coordinator {
			if ps != nil && h.ProducerEpoch < ps.epoch {
				return AppendResult{}, fmt.Errorf("%w: producer %d epoch %d is older than %d",
					ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, ps.epoch)
			}
		} else {
			verdict, err := ps.check(&h)
			if err != nil {
				return AppendResult{}, err
			}
			if d := verdict.duplicate; d != nil {
				return AppendResult{BaseOffset: d.firstOffset, LastOffset: d.lastOffset, LogAppendTime: appendTime,
					LogStartOffset: p.log.StartOffset(), Duplicate: true}, nil
			}
		}
	} else if h.IsTransactional() {
		return AppendResult{}, fmt.Errorf("%w: transactional batch without a producer id", ErrInvalidRecord)
	}
	record.SetLeaderEpoch(batch, p.leaderEpoch.Load())
	if appendTime >= 0 {
		record.SetLogAppendTime(batch, appendTime)
		// The producer state notes the batch as stored, as a follower
		// and a restart read it.
		h.MaxTimestamp = appendTime
		h.Attributes |= record.AttrLogAppendTime
	}
	res, err := p.log.Append(batch)
	if err != nil {
		if errors.Is(err, log.ErrStorage) {
			return AppendResult{}, fmt.Errorf("%w: %w", ErrStorage, err)
		}
		return AppendResult{}, err
	}
	p.noteDataLocked(&h, res.BaseOffset)
	p.publishLocked(res.LastOffset + 1)
	return AppendResult{BaseOffset: res.BaseOffset, LastOffset: res.LastOffset, LogAppendTime: appendTime,
		LogStartOffset: p.log.StartOffset()}, nil
}

func (p *Partition) checkTimestamps(h *record.Header, now int64) error {
	if p.cfg.TimestampBeforeMaxMs != math.MaxInt64 && now-h.BaseTimestamp > p.cfg.TimestampBeforeMaxMs {
		return fmt.Errorf("%w: timestamp %d is more than message.timestamp.before.max.ms=%d before now",
			ErrInvalidTimestamp, h.BaseTimestamp, p.cfg.TimestampBeforeMaxMs)
	}
	if p.cfg.TimestampAfterMaxMs != math.MaxInt64 && h.MaxTimestamp-now > p.cfg.TimestampAfterMaxMs {
		return fmt.Errorf("%w: timestamp %d is more than message.timestamp.after.max.ms=%d after now",
			ErrInvalidTimestamp, h.MaxTimestamp, p.cfg.TimestampAfterMaxMs)
	}
	return nil
}

// WaitDurable returns once the batch ending at lastOffset is fsynced, and
// the high watermark has moved over it (under an external high watermark:
// once the replication layer was told that LocalEnd moved). A replica that
// stopped leading meanwhile answers ErrNotLeader: its log may have been
// truncated below the batch, which the client must send again to the new
// leader.
func (p *Partition) WaitDurable(lastOffset int64) error {
	err := p.log.SyncTo(lastOffset + 1)
	if !p.leader.Load() {
		return fmt.Errorf("%w: leader epoch %d", ErrNotLeader, p.leaderEpoch.Load())
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	p.localEndMoved()
	return nil
}

// WaitCommitted returns once the high watermark has passed offset (the
// records before it are committed: fsynced under the default flush policy
// and, for a replicated partition, held by every in-sync replica), when
// ctx ends, or with ErrNotLeader when the replica stops leading (its log
// may lose the records). Coordinators wait so for their own appends, as
// Kafka's coordinators append with acks=all. It does not fsync: the
// caller's WaitDurable, or the broker's flusher, does.
func (p *Partition) WaitCommitted(ctx context.Context, offset int64) error {
	wake := make(chan struct{}, 1)
	defer p.Unwatch(wake)
	for {
		p.Watch(wake)
		if p.hw.Load() >= offset {
			return nil
		}
		if !p.leader.Load() {
			return fmt.Errorf("%w: leader epoch %d", ErrNotLeader, p.leaderEpoch.Load())
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Checkpoint writes a producer-state snapshot at the published log end
// offset when it changed since the last one, and removes the older one.
// Called on a timer and at close, so that restarts replay only a short
// tail. The state is copied under the append lock; the fsyncs (the log up
// to the snapshot, the snapshot file, its directory) run outside it.
func (p *Partition) Checkpoint() error {
	// Nothing is written to a failed log or an offline log directory.
	if reason, err := p.log.StorageError(); err != nil && reason != log.ReasonNoSpace {
		return fmt.Errorf("%w: no producer snapshot: %w", ErrStorage, err)
	}
	p.checkpointMu.Lock()
	defer p.checkpointMu.Unlock()
	if p.deleted.Load() {
		return nil // its directory is gone
	}
	p.mu.Lock()
	// published, not the log end: a marker appended whose transaction
	// index entry failed is in the log but not in the producer state, and
	// must be replayed after a restart from this snapshot.
	end := p.published.Load()
	prev := p.snapshotAt.Load()
	if end == prev {
		p.mu.Unlock()
		return nil
	}
	data := marshalSnapshot(p.producers)
	p.mu.Unlock()
	// The snapshot describes offsets below end; they must be durable first
	// or a crash could leave a snapshot ahead of the log.
	if err := p.log.SyncTo(end); err != nil {
		return err
	}
	p.localEndMoved()
	name := filepath.Join(p.dir, snapshotName(end))
	if err := vfs.WriteFileAtomic(p.fs, p.dir, name, data); err != nil {
		return fmt.Errorf("partition: write producer snapshot: %w", err)
	}
	p.snapshotAt.Store(end)
	if prev >= 0 {
		// Not synced: a crash that brings it back leaves an older
		// snapshot, removed at the next start.
		_ = p.fs.Remove(filepath.Join(p.dir, snapshotName(prev)))
	}
	return nil
}

// Close snapshots the producer state and closes the log cleanly.
func (p *Partition) Close() error {
	err := p.Checkpoint()
	if cerr := p.log.Close(); err == nil {
		err = cerr
	}
	return err
}

// Delete removes the partition's directory and everything in it. It
// waits for a producer snapshot in progress, and no snapshot is written
// after it (Checkpoint then does nothing): a snapshot written into the
// directory being removed left it behind, with the snapshot in it.
func (p *Partition) Delete() error {
	p.checkpointMu.Lock()
	defer p.checkpointMu.Unlock()
	p.deleted.Store(true)
	return p.log.Delete()
}

func isNotExist(err error) bool { return errors.Is(err, iofs.ErrNotExist) }

func readSmall(fs vfs.FS, name string) ([]byte, error) {
	return vfs.ReadFile(fs, name, maxSmallFileBytes)
}

// maxSmallFileBytes bounds checkpoint and snapshot reads.
const maxSmallFileBytes = 64 << 20
