package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/vfs"
)

// Moving a partition between this broker's log directories
// (AlterReplicaLogDirs, KIP-113). Kafka copies through a "future" replica
// that fetches from the current one and takes its place once caught up;
// Sluice copies the files instead, in two passes:
//
//  1. While the partition serves, every file of its directory is copied to
//     "<partition>.<id>-future" in the destination (each synced).
//  2. Then, with reconciles held off, the partition is closed (the
//     requests on it are answered NOT_LEADER_OR_FOLLOWER, which clients
//     retry) and the copy brought up to date: a segment gets the bytes
//     appended to it since its copy (when the log had no truncation and no
//     cleaner swap meanwhile, log.Log.Rewrites; else a segment whose size
//     or modification time changed is copied again), every other file
//     (indexes, checkpoints, snapshots: small) is copied again. Then the
//     copy's directory is synced, the source is renamed "-delete" (its dir
//     synced), the copy renamed into place (its dir synced), and the
//     partition reopened from there; the source is then removed.
//
// So the partition is unavailable for the second pass only: the bytes
// written since the first (plus small files), not its whole log. A crash at
// any point leaves one complete copy that the next start uses
// (recoverMoves). One partition moves at a time.

// moveBufferBytes is the copy buffer of a move.
const moveBufferBytes = 1 << 20

// replicaMove is a partition moving to dest.
type replicaMove struct {
	dest *dataDir
	// copied and total are the bytes copied so far and the partition's
	// size when the move started (DescribeLogDirs shows the future
	// replica's progress from them).
	copied, total atomic.Int64
	// canceled: the partition was deleted, or sent elsewhere, meanwhile.
	canceled atomic.Bool
}

// MoveProgress is a partition's move between log dirs.
type MoveProgress struct {
	Dest          string
	Copied, Total int64
}

// Moves reports the partitions moving between log dirs.
func (b *Broker) Moves() map[TopicPartition]MoveProgress {
	b.moveMu.Lock()
	defer b.moveMu.Unlock()
	out := make(map[TopicPartition]MoveProgress, len(b.moves))
	for tp, m := range b.moves {
		out[tp] = MoveProgress{Dest: m.dest.path, Copied: m.copied.Load(), Total: m.total.Load()}
	}
	return out
}

// Errors of AlterReplicaLogDir, besides ErrLogDirNotFound.
var (
	// ErrReplicaNotHere: this broker has no replica of the partition (yet);
	// the directory is remembered for when it gets one (Kafka answers
	// REPLICA_NOT_AVAILABLE).
	ErrReplicaNotHere = errors.New("no replica of the partition on this broker")
	// ErrLogDirOffline: the directory, or the partition's, failed
	// (KAFKA_STORAGE_ERROR).
	ErrLogDirOffline = errors.New("log directory offline")
)

// AlterReplicaLogDir moves the partition's replica on this broker to the
// log dir at path, in the background (Kafka's AlterReplicaLogDirs). A
// partition already there, or already moving there, is left alone; one
// moving elsewhere is redirected.
func (b *Broker) AlterReplicaLogDir(tp TopicPartition, path string) error {
	dest, ok := b.logDirByPath(path)
	if !ok {
		return fmt.Errorf("%w: %s is not one of this broker's log.dirs", ErrLogDirNotFound, path)
	}
	if dest.state.Offline() != nil {
		return fmt.Errorf("%w: %s", ErrLogDirOffline, path)
	}
	b.mu.RLock()
	_, hosted := b.parts[tp]
	b.mu.RUnlock()
	if !hosted {
		b.dirMu.Lock()
		b.preferred[tp] = dest
		b.dirMu.Unlock()
		return fmt.Errorf("%w: %s will be created in %s", ErrReplicaNotHere, partitionDir(tp), dest.path)
	}
	cur, _ := b.logDirOf(tp)
	if cur != nil && cur.state.Offline() != nil {
		return fmt.Errorf("%w: %s is in %s", ErrLogDirOffline, partitionDir(tp), cur.path)
	}
	b.moveMu.Lock()
	defer b.moveMu.Unlock()
	if m, ok := b.moves[tp]; ok {
		if m.dest == dest {
			return nil
		}
		m.canceled.Store(true)
		delete(b.moves, tp)
	}
	if cur == dest {
		return nil
	}
	b.moves[tp] = &replicaMove{dest: dest}
	select {
	case b.moveWake <- struct{}{}:
	default:
	}
	return nil
}

// cancelMove stops a partition's move (it is being deleted).
func (b *Broker) cancelMove(tp TopicPartition) {
	b.moveMu.Lock()
	if m, ok := b.moves[tp]; ok {
		m.canceled.Store(true)
		delete(b.moves, tp)
	}
	b.moveMu.Unlock()
}

// mover runs the queued moves, one at a time, until the broker closes.
func (b *Broker) mover() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.moveWake:
		}
		for b.ctx.Err() == nil {
			tp, m, ok := b.nextMove()
			if !ok {
				break
			}
			if err := b.moveReplica(tp, m); err != nil {
				b.logger.Error("moving a partition between log dirs failed; it stays where it was", "partition", partitionDir(tp),
					"to", m.dest.path, "err", err)
			}
			b.moveMu.Lock()
			if b.moves[tp] == m {
				delete(b.moves, tp)
			}
			b.moveMu.Unlock()
		}
	}
}

func (b *Broker) nextMove() (TopicPartition, *replicaMove, bool) {
	b.moveMu.Lock()
	defer b.moveMu.Unlock()
	for tp, m := range b.moves {
		return tp, m, true
	}
	return TopicPartition{}, nil, false
}

// errMoveCanceled: the partition was deleted or redirected during its move.
var errMoveCanceled = errors.New("move canceled")

// errCutMeanwhile: a file was truncated while it was copied.
var errCutMeanwhile = errors.New("file cut while copied")

// moveReplica moves one partition (see the top of this file).
func (b *Broker) moveReplica(tp TopicPartition, m *replicaMove) error {
	src, ok := b.logDirOf(tp)
	if !ok {
		return nil // deleted meanwhile
	}
	var idb [8]byte
	rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	from := filepath.Join(src.path, partitionDir(tp))
	future := filepath.Join(m.dest.path, movingName(tp, id, futureSuffix))
	b.logger.Info("moving partition between log dirs", "partition", partitionDir(tp), "from", src.path, "to", m.dest.path)
	if err := vfs.MkdirAll(b.fs, future); err != nil {
		return fmt.Errorf("create %s: %w", future, err)
	}
	abandon := func(err error) error {
		_ = vfs.RemoveAll(b.fs, future)
		_ = b.fs.SyncDir(m.dest.path)
		return err
	}
	// Pass 1, live.
	b.mu.RLock()
	live, ok := b.parts[tp]
	b.mu.RUnlock()
	if !ok {
		return nil // deleted meanwhile
	}
	rewrites := live.p.Log().Rewrites()
	total, err := dirSize(b.fs, from)
	if err != nil {
		return abandon(err)
	}
	m.total.Store(total)
	copied, err := b.copyChanged(from, future, nil, false, m, log.NewThrottler(b.moveRate(), nil, nil))
	if err != nil {
		return abandon(err)
	}
	// Pass 2, the partition closed. The source's removal waits until it
	// is open again (removing a large log takes a while) and reconciles
	// may run.
	var leftover string
	defer func() {
		if leftover == "" {
			return
		}
		if err := vfs.RemoveAll(b.fs, leftover); err != nil {
			b.logger.Warn("removing a moved partition's old directory", "dir", leftover, "err", err)
		}
		_ = b.fs.SyncDir(src.path)
	}()
	b.recMu.Lock()
	closedAt := time.Now()
	defer b.recMu.Unlock()
	if m.canceled.Load() {
		return abandon(errMoveCanceled)
	}
	b.mu.Lock()
	r, ok := b.parts[tp]
	if ok {
		delete(b.parts, tp)
	}
	b.mu.Unlock()
	if !ok {
		return abandon(errMoveCanceled)
	}
	b.stopFollowing(tp)
	if lr := r.lead.Swap(nil); lr != nil {
		lr.close()
	}
	// Whatever happens next, the next reconcile reopens the partition
	// from wherever b.where says it is.
	b.reconciled = nil
	defer func() {
		b.recMu.Unlock()
		if err := b.Reconcile(); err != nil {
			b.logger.Error("reopening a moved partition", "partition", partitionDir(tp), "err", err)
		}
		b.recMu.Lock()
	}()
	if err := r.p.Close(); err != nil {
		return abandon(fmt.Errorf("close before the move: %w", err))
	}
	// The reopen in the destination starts from where the close left the
	// log, not from that dir's checkpoint (read at start, without it).
	m.dest.recovery[tp], m.dest.logStart[tp] = r.p.Log().DurableOffset(), r.p.Log().StartOffset()
	appendOnly := r == live && r.p.Log().Rewrites() == rewrites
	if _, err := b.copyChanged(from, future, copied, appendOnly, m, nil); err != nil {
		return abandon(err)
	}
	if err := b.fs.SyncDir(future); err != nil {
		return abandon(fmt.Errorf("sync %s: %w", future, err))
	}
	if err := b.fs.SyncDir(m.dest.path); err != nil {
		return abandon(fmt.Errorf("sync %s: %w", m.dest.path, err))
	}
	gone := filepath.Join(src.path, movingName(tp, id, deleteSuffix))
	if err := vfs.Rename(b.fs, from, gone); err != nil {
		return abandon(fmt.Errorf("rename %s: %w", from, err))
	}
	if err := b.fs.SyncDir(src.path); err != nil {
		// The rename may or may not survive a crash: either way one
		// complete copy does (recoverMoves), but go on only from a known
		// state.
		_ = vfs.Rename(b.fs, gone, from)
		return abandon(fmt.Errorf("sync %s: %w", src.path, err))
	}
	to := filepath.Join(m.dest.path, partitionDir(tp))
	if err := vfs.Rename(b.fs, future, to); err != nil {
		return fmt.Errorf("rename %s into place: %w (the next start completes the move)", future, err)
	}
	if err := b.fs.SyncDir(m.dest.path); err != nil {
		return fmt.Errorf("sync %s: %w (the next start completes the move)", m.dest.path, err)
	}
	b.dirMu.Lock()
	b.where[tp] = m.dest
	b.dirMu.Unlock()
	leftover = gone
	m.copied.Store(m.total.Load())
	b.logger.Info("moved partition between log dirs", "partition", partitionDir(tp), "from", src.path, "to", m.dest.path,
		"bytes", m.total.Load(), "closed_for", time.Since(closedAt))
	return nil
}

// copyChanged copies the files of from into to, each synced, and returns
// the size and modification time each had when copied (a file is copied up
// to the size it had then, so the copy is exactly that long). With prev
// (the first pass's), a segment (.log) file is brought up to date without
// copying it again: when appendOnly (the log had no truncation or cleaner
// swap since prev was taken) by copying the bytes past its size then, else
// only if its size and modification time are unchanged. Every other file
// is copied again (indexes and checkpoints are small, and an index is
// rewritten in place). Files of to that from no longer has are removed.
//
// thr, if not nil, throttles the copy (its rate is read again at each
// file, so that a config change applies to a move under way).
func (b *Broker) copyChanged(from, to string, prev map[string]iofs.FileInfo, appendOnly bool, m *replicaMove, thr *log.Throttler) (map[string]iofs.FileInfo, error) {
	names, err := b.fs.List(from)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", from, err)
	}
	copied := map[string]iofs.FileInfo{}
	buf := make([]byte, moveBufferBytes)
	sealedBelow := activeBase(prev) // segments below it were sealed before prev was taken
	for _, n := range names {
		if m.canceled.Load() || b.ctx.Err() != nil {
			return nil, errMoveCanceled
		}
		fi, err := b.fs.Stat(filepath.Join(from, n))
		if errors.Is(err, iofs.ErrNotExist) {
			continue // deleted by retention or the cleaner meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", n, err)
		}
		if fi.IsDir() {
			continue
		}
		offset := int64(0) // where the copy starts: past what the copy has
		if p, ok := prev[n]; ok {
			base, isSegmentFile := segmentBase(n)
			switch {
			case !isSegmentFile:
			case strings.HasSuffix(n, ".log") && appendOnly && fi.Size() >= p.Size():
				offset = p.Size()
			case strings.HasSuffix(n, ".log") && p.Size() == fi.Size() && p.ModTime().Equal(fi.ModTime()) && !fi.ModTime().IsZero():
				offset = fi.Size()
			case appendOnly && base < sealedBelow && p.Size() == fi.Size():
				// The indexes of a segment sealed before the first pass
				// are final until a truncation or a cleaner swap.
				offset = fi.Size()
			}
		}
		if thr != nil {
			thr.SetRate(b.moveRate())
		}
		if err := b.copyFile(filepath.Join(from, n), filepath.Join(to, n), offset, fi.Size(), buf, m, thr); err != nil {
			if errors.Is(err, iofs.ErrNotExist) || (prev == nil && errors.Is(err, errCutMeanwhile)) {
				// Gone or cut while copied live: the second pass copies
				// it (again) whole.
				continue
			}
			return nil, err
		}
		copied[n] = fi
	}
	have, err := b.fs.List(to)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", to, err)
	}
	for _, n := range have {
		if _, ok := copied[n]; !ok {
			if err := b.fs.Remove(filepath.Join(to, n)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
				return nil, fmt.Errorf("remove %s: %w", n, err)
			}
		}
	}
	return copied, nil
}

// segmentBase parses a segment file's name, "<20-digit base offset>.<ext>".
func segmentBase(name string) (int64, bool) {
	digits, _, ok := strings.Cut(name, ".")
	if !ok || len(digits) != 20 {
		return 0, false
	}
	base, err := strconv.ParseInt(digits, 10, 64)
	return base, err == nil
}

// activeBase is the base offset of the last segment among files: the
// active one when they were listed.
func activeBase(files map[string]iofs.FileInfo) int64 {
	last := int64(-1)
	for n := range files {
		if base, ok := segmentBase(n); ok && strings.HasSuffix(n, ".log") {
			last = max(last, base)
		}
	}
	return last
}

// moveRate is replica.alter.log.dirs.io.max.bytes.per.second.
func (b *Broker) moveRate() float64 {
	return float64(b.brokerInt("replica.alter.log.dirs.io.max.bytes.per.second"))
}

// copyFile makes to a copy of the first size bytes of from, and syncs it.
// With offset > 0, to already holds the first offset bytes (a previous
// copy; checked by its size) and only the rest is copied.
func (b *Broker) copyFile(from, to string, offset, size int64, buf []byte, m *replicaMove, thr *log.Throttler) error {
	src, err := b.fs.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	var dst vfs.File
	if offset > 0 {
		if dst, err = b.fs.OpenAppend(to); err != nil {
			return fmt.Errorf("open %s: %w", to, err)
		}
		if n, err := dst.Size(); err != nil || n != offset {
			dst.Close()
			return fmt.Errorf("copy %s holds %d bytes, want %d (%v)", to, n, offset, err)
		}
	} else if dst, err = b.fs.Create(to); err != nil {
		return fmt.Errorf("create %s: %w", to, err)
	}
	for pos := offset; pos < size; {
		n, rerr := src.ReadAt(buf[:min(int64(len(buf)), size-pos)], pos)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				dst.Close()
				return fmt.Errorf("write %s: %w", to, err)
			}
			pos += int64(n)
			m.copied.Add(int64(n))
			if err := thr.Wait(b.ctx, n); err != nil {
				dst.Close()
				return errMoveCanceled
			}
		}
		if rerr == io.EOF && pos < size {
			dst.Close()
			return fmt.Errorf("%w: read %s: %d bytes, it had %d", errCutMeanwhile, from, pos, size)
		}
		if rerr != nil && rerr != io.EOF {
			dst.Close()
			return fmt.Errorf("read %s: %w", from, rerr)
		}
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return fmt.Errorf("sync %s: %w", to, err)
	}
	return dst.Close()
}

// dirSize is the bytes of the files in dir.
func dirSize(fs vfs.FS, dir string) (int64, error) {
	names, err := fs.List(dir)
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", dir, err)
	}
	var n int64
	for _, name := range names {
		if fi, err := fs.Stat(filepath.Join(dir, name)); err == nil && !fi.IsDir() {
			n += fi.Size()
		}
	}
	return n, nil
}
