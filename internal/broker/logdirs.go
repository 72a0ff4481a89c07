package broker

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/vfs"
)

// A broker keeps its partitions in one or more log directories (Kafka's
// log.dirs, one per disk). The data dir (--data-dir) is always the first:
// it also holds the metadata quorum's log, the clean-shutdown marker and
// the cleaner's checkpoint. Each directory has its own meta.properties
// (node id, cluster id, directory id), its own recovery-point and
// log-start-offset checkpoints for the partitions it holds, and its own
// health: a failed disk takes only its own partitions offline.
//
// A new partition goes to the online directory holding the fewest
// partitions (as Kafka's LogManager), unless AlterReplicaLogDirs named one
// for it before it existed here. AlterReplicaLogDirs moves a partition
// between directories (replicamove.go).

// dataDir is one log directory.
type dataDir struct {
	path  string
	state *log.LogDir
	// recovery and logStart are the checkpoints read from this directory
	// at start.
	recovery, logStart map[TopicPartition]int64
}

// ErrLogDirNotFound: the path is not one of the broker's log directories
// (Kafka's LOG_DIR_NOT_FOUND).
var ErrLogDirNotFound = errors.New("log directory not found")

// Names of a partition directory while it moves between log directories,
// as Kafka names them: "<topic>-<partition>.<id>-future" is the copy being
// made in the destination, complete once the source has been renamed
// "<topic>-<partition>.<id>-delete" (see moveReplica for the order).
const (
	futureSuffix = "-future"
	deleteSuffix = "-delete"
)

// logDirPaths is every log directory of cfg, the data dir first, each once.
func logDirPaths(cfg Config) []string {
	out := []string{filepath.Clean(cfg.DataDir)}
	for _, d := range cfg.LogDirs {
		if d = filepath.Clean(d); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// openLogDirs creates the log directories and reads their checkpoints.
// The data dir's meta.properties is checked by checkDataDir; the others'
// here: a directory of another node refuses to start.
func (b *Broker) openLogDirs() error {
	for i, path := range logDirPaths(b.cfg) {
		d := &dataDir{path: path, state: log.NewLogDir(path, b.logger)}
		if i > 0 {
			if err := vfs.MkdirAll(b.fs, path); err != nil {
				return fmt.Errorf("broker: create log dir %s: %w (check the path and its permissions)", path, err)
			}
			m, ok, err := readMetaProperties(b.fs, path)
			if err != nil {
				return err
			}
			if ok && m.NodeID != b.cfg.NodeID {
				return fmt.Errorf("broker: log dir %s belongs to node %d (its %s), not node %d; remove it from log.dirs or start with --node-id %d",
					path, m.NodeID, metaPropertiesFile, b.cfg.NodeID, m.NodeID)
			}
		}
		var err error
		if d.recovery, err = readCheckpoint(b.fs, filepath.Join(path, recoveryCheckpointFile)); err != nil {
			b.logger.Warn("recovery checkpoint unreadable; every segment will be scanned", "dir", path, "err", err)
			d.recovery, b.clean = map[TopicPartition]int64{}, false
		}
		if d.logStart, err = readCheckpoint(b.fs, filepath.Join(path, logStartCheckpointFile)); err != nil {
			b.logger.Warn("log start checkpoint unreadable", "dir", path, "err", err)
			d.logStart = map[TopicPartition]int64{}
		}
		b.dirs = append(b.dirs, d)
	}
	return nil
}

// checkLogDirClusters writes or checks the cluster id in every log dir but
// the data dir (checkClusterID does that one), once the metadata is open.
func (b *Broker) checkLogDirClusters(clusterID string) error {
	for _, d := range b.dirs[1:] {
		m, ok, err := readMetaProperties(b.fs, d.path)
		if err != nil {
			return err
		}
		if !ok {
			if err := writeMetaProperties(b.fs, d.path, metaProperties{ClusterID: clusterID, NodeID: b.cfg.NodeID}); err != nil {
				return fmt.Errorf("log dir %s: %w", d.path, err)
			}
			continue
		}
		if m.ClusterID != clusterID {
			return fmt.Errorf("broker: log dir %s belongs to cluster %s (its %s), this node to cluster %s; remove it from log.dirs",
				d.path, m.ClusterID, metaPropertiesFile, clusterID)
		}
	}
	return nil
}

// locatePartitions finds which log dir holds each partition directory,
// first finishing or undoing moves a crash interrupted. Two directories
// holding the same partition stop the start: which is the right copy is
// for the operator to say.
func (b *Broker) locatePartitions() error {
	b.where = map[TopicPartition]*dataDir{}
	for _, d := range b.dirs {
		names, err := partitionDirs(b.fs, d.path)
		if err != nil {
			return err
		}
		for _, n := range names {
			tp, _ := parsePartitionDir(n)
			if other, ok := b.where[tp]; ok {
				return fmt.Errorf("broker: partition %s is in two log dirs, %s and %s; move one copy aside (the other is used)",
					n, other.path, d.path)
			}
			b.where[tp] = d
		}
	}
	return b.recoverMoves()
}

// recoverMoves settles the partition moves a crash interrupted. A move
// renames the source "-delete" only after its "-future" copy is complete
// and synced, and renames the copy into place after that, so:
//   - a "-future" copy whose partition is in place (in either dir) was not
//     finished, or its source's deletion was: the copy is removed;
//   - a "-future" copy whose partition is nowhere is complete: it is
//     renamed into place;
//   - a "-delete" source whose partition is in place is removed; one whose
//     partition is nowhere (which a move never leaves) is put back.
func (b *Broker) recoverMoves() error {
	type leftover struct {
		d    *dataDir
		name string
		tp   TopicPartition
	}
	var futures, deletes []leftover
	for _, d := range b.dirs {
		names, err := b.fs.List(d.path)
		if err != nil {
			return fmt.Errorf("broker: list %s: %w", d.path, err)
		}
		for _, n := range names {
			for _, suffix := range []string{futureSuffix, deleteSuffix} {
				if tp, ok := parseMovingDir(n, suffix); ok {
					l := leftover{d, n, tp}
					if suffix == futureSuffix {
						futures = append(futures, l)
					} else {
						deletes = append(deletes, l)
					}
				}
			}
		}
	}
	settle := func(l leftover, keep bool) error {
		from := filepath.Join(l.d.path, l.name)
		if !keep {
			b.logger.Info("removing what an interrupted partition move left", "dir", from)
			if err := vfs.RemoveAll(b.fs, from); err != nil {
				return fmt.Errorf("broker: remove %s: %w", from, err)
			}
			return b.fs.SyncDir(l.d.path)
		}
		to := filepath.Join(l.d.path, partitionDir(l.tp))
		b.logger.Warn("completing an interrupted partition move", "from", from, "to", to)
		if err := vfs.Rename(b.fs, from, to); err != nil {
			return fmt.Errorf("broker: rename %s: %w", from, err)
		}
		if err := b.fs.SyncDir(l.d.path); err != nil {
			return fmt.Errorf("broker: sync %s: %w", l.d.path, err)
		}
		b.where[l.tp] = l.d
		return nil
	}
	for _, f := range futures {
		_, placed := b.where[f.tp]
		if err := settle(f, !placed); err != nil {
			return err
		}
	}
	for _, l := range deletes {
		_, placed := b.where[l.tp]
		if err := settle(l, !placed); err != nil {
			return err
		}
	}
	return nil
}

// parseMovingDir parses "<topic>-<partition>.<id><suffix>".
func parseMovingDir(name, suffix string) (TopicPartition, bool) {
	rest, ok := strings.CutSuffix(name, suffix)
	if !ok {
		return TopicPartition{}, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return TopicPartition{}, false
	}
	return parsePartitionDir(rest[:i])
}

// movingName is a partition directory's name while it moves.
func movingName(tp TopicPartition, id, suffix string) string {
	return partitionDir(tp) + "." + id + suffix
}

// dirFor returns the log dir a partition is in or, for a new one, the dir
// it goes to: the one AlterReplicaLogDirs named for it, else the online
// dir holding the fewest partitions (the data dir on a tie), among those
// not cordoned (KIP-1066's cordoned.log.dirs) if any is not.
func (b *Broker) dirFor(tp TopicPartition) *dataDir {
	cordoned := b.cordonedDirs()
	b.dirMu.Lock()
	defer b.dirMu.Unlock()
	if d, ok := b.where[tp]; ok {
		return d
	}
	if d, ok := b.preferred[tp]; ok && d.state.Offline() == nil {
		delete(b.preferred, tp)
		b.where[tp] = d
		return d
	}
	count := map[*dataDir]int{}
	for _, d := range b.where {
		count[d]++
	}
	var best *dataDir
	for _, d := range b.dirs {
		if d.state.Offline() != nil {
			continue
		}
		if best == nil || (cordoned[best] && !cordoned[d]) || (cordoned[best] == cordoned[d] && count[d] < count[best]) {
			best = d
		}
	}
	if best == nil {
		best = b.dirs[0] // all offline: the open fails with their error
	}
	b.where[tp] = best
	return best
}

// cordonedDirs returns the log dirs cordoned.log.dirs names (all of them
// for *): they take no new partition while another dir can.
func (b *Broker) cordonedDirs() map[*dataDir]bool {
	v, _ := b.BrokerConfigs().Value(config.CordonedLogDirs)
	out := map[*dataDir]bool{}
	if config.CordonsAll(v) {
		for _, d := range b.dirs {
			out[d] = true
		}
		return out
	}
	for _, p := range config.CordonedDirs(v) {
		if d, ok := b.logDirByPath(p); ok {
			out[d] = true
		}
	}
	return out
}

// forget drops a deleted partition's location.
func (b *Broker) forget(tp TopicPartition) {
	b.dirMu.Lock()
	delete(b.where, tp)
	b.dirMu.Unlock()
}

// logDirOf returns the log dir holding an open or known partition.
func (b *Broker) logDirOf(tp TopicPartition) (*dataDir, bool) {
	b.dirMu.Lock()
	defer b.dirMu.Unlock()
	d, ok := b.where[tp]
	return d, ok
}

// logDirByPath finds a log dir by its path (absolute or as configured).
func (b *Broker) logDirByPath(path string) (*dataDir, bool) {
	clean := filepath.Clean(path)
	for _, d := range b.dirs {
		if d.path == clean {
			return d, true
		}
		if abs, err := filepath.Abs(d.path); err == nil && abs == clean {
			return d, true
		}
	}
	return nil, false
}

// LogDirState is the health of a log directory, for metrics, /readyz and
// DescribeLogDirs.
type LogDirState struct {
	Path string
	// Offline: a write or fsync failed (not for a full disk); every
	// partition in the directory refuses produce requests
	// (KAFKA_STORAGE_ERROR) until the broker restarts.
	Offline *log.DirError
	// NoSpace: a write found the disk full; produce requests to the
	// partitions it hit fail until a write succeeds again (space freed).
	NoSpace *log.DirError
	// Cordoned: cordoned.log.dirs names it (KIP-1066).
	Cordoned bool
}

// LogDirs reports the health of the broker's log directories, the data
// dir first.
func (b *Broker) LogDirs() []LogDirState {
	out := make([]LogDirState, 0, len(b.dirs))
	cordoned := b.cordonedDirs()
	for _, d := range b.dirs {
		out = append(out, LogDirState{Path: d.path, Offline: d.state.Offline(), NoSpace: d.state.NoSpace(), Cordoned: cordoned[d]})
	}
	return out
}

// PartitionLogDir is the path of the log dir holding a partition this
// broker has, and the path of the dir it is moving to ("" if none).
func (b *Broker) PartitionLogDir(tp TopicPartition) (dir, future string, ok bool) {
	d, ok := b.logDirOf(tp)
	if !ok {
		return "", "", false
	}
	b.moveMu.Lock()
	if m, moving := b.moves[tp]; moving {
		future = m.dest.path
	}
	b.moveMu.Unlock()
	return d.path, future, true
}

// ProbeLogDirs checks whether full log directories have space again (a
// write of a scratch file), so that their state clears though no producer
// retries. The background loop calls it every noSpaceProbeInterval while a
// directory is full.
func (b *Broker) ProbeLogDirs() error {
	var errs []error
	for _, d := range b.dirs {
		if d.state.NoSpace() != nil {
			if err := d.state.ProbeSpace(b.fs); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// anyNoSpace says whether a log dir is full.
func (b *Broker) anyNoSpace() bool {
	for _, d := range b.dirs {
		if d.state.NoSpace() != nil {
			return true
		}
	}
	return false
}

// writeCheckpoints writes the recovery-point and log-start checkpoints of
// every online log dir, each listing the partitions it holds. Nothing is
// written to an offline dir (as Kafka): its next start recovers from its
// last checkpoint.
func (b *Broker) writeCheckpoints(rec, start map[TopicPartition]int64) []error {
	type pair struct{ rec, start map[TopicPartition]int64 }
	byDir := map[*dataDir]*pair{}
	for _, d := range b.dirs {
		byDir[d] = &pair{map[TopicPartition]int64{}, map[TopicPartition]int64{}}
	}
	b.dirMu.Lock()
	for tp, off := range rec {
		if d, ok := b.where[tp]; ok {
			byDir[d].rec[tp] = off
			if s, ok := start[tp]; ok {
				byDir[d].start[tp] = s
			}
		}
	}
	b.dirMu.Unlock()
	var errs []error
	for _, d := range b.dirs {
		if d.state.Offline() != nil {
			continue
		}
		if err := writeCheckpoint(b.fs, d.path, recoveryCheckpointFile, byDir[d].rec); err != nil {
			errs = append(errs, err)
		}
		if err := writeCheckpoint(b.fs, d.path, logStartCheckpointFile, byDir[d].start); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// offlineDirs returns the offline log dirs' states.
func (b *Broker) offlineDirs() []LogDirState {
	var out []LogDirState
	for _, st := range b.LogDirs() {
		if st.Offline != nil {
			out = append(out, st)
		}
	}
	return out
}
