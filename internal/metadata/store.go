package metadata

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluice-io/sluice/internal/vfs"
)

// Raft tuning. The timeouts suit a quorum of one, where no message crosses a
// network: a fresh or restarted node elects itself after one randomized
// heartbeat timeout (100-200 ms). When more voters join (with the TCP
// transport), these must grow to raft's defaults (1 s) or elections will
// flap on any network hiccup.
const (
	heartbeatTimeout   = 100 * time.Millisecond
	electionTimeout    = 100 * time.Millisecond
	leaderLeaseTimeout = 100 * time.Millisecond // must be <= heartbeatTimeout

	// snapshotThreshold is how many records since the last snapshot trigger
	// a new one; raft checks every snapshotInterval. Metadata records are
	// small and rare, so this keeps the log short without snapshotting often.
	snapshotThreshold = 4096
	snapshotInterval  = 30 * time.Second
	// trailingLogs are kept after a snapshot so that a follower slightly
	// behind catches up from the log rather than from a whole snapshot.
	trailingLogs = 1024
	// snapshotsRetained is how many snapshots stay on disk (the newest is
	// used; one older one is a fallback if the newest is damaged).
	snapshotsRetained = 2
)

// Config configures Open.
type Config struct {
	Dir    string       // e.g. <data-dir>/meta; created if missing; owned by the Store until Close
	NodeID int32        // this node's id; also its Raft server id
	Logger *slog.Logger // may be nil -> discard
	// FS holds Dir; nil means vfs.OS(). Tests pass a vfs.MemFS to crash it.
	FS vfs.FS
}

// Store is this node's member of the metadata quorum: a Raft node whose FSM
// builds the Image. All methods are safe for concurrent use.
//
// Writes (RegisterBroker, CreateTopic, ...) succeed only on the active
// controller (the Raft leader) and return ErrNotController elsewhere. A write
// returns after its record is committed and applied, so Image() reflects it.
// If ctx ends first, the call returns ctx's error and the change may still be
// applied later: callers that retry must tolerate ErrTopicExists and the like.
type Store struct {
	nodeID int32
	log    *slog.Logger
	fsm    *fsm
	raft   *raft.Raft
	logs   *logStore // closed after raft
	lock   *dirLock  // released last

	closed      chan struct{} // closed by Close; stops watchLeadership and wakes WaitReady
	watcherDone chan struct{} // closed when watchLeadership returns

	leaderMu      sync.Mutex
	isLeader      bool          // last value raft sent on its NotifyCh
	leaderChanged chan struct{} // closed when isLeader changes

	closeOnce sync.Once
	closeErr  error
}

// Open opens (or creates) the metadata store in cfg.Dir and starts Raft. On a
// fresh directory it bootstraps a cluster whose only voter is this node; on
// later starts it resumes from the snapshot and log on disk. Open does not
// wait for leadership: call WaitReady before relying on the Image or writing.
//
// On disk (all through cfg.FS, every new name made durable by an fsync of
// its directory): the Raft log in raft.journal (raftlog.go), raft's term and
// vote in raft.stable (raftstable.go), snapshots in <term>-<index>.snapshot
// (raftsnap.go), and .lock. A directory written by an older version
// (raft-boltdb's raft.db, raft's snapshots/) is imported once and moved aside
// (migrate.go).
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("metadata: Config.Dir is empty; set it to <data-dir>/meta")
	}
	if cfg.NodeID < 0 {
		return nil, fmt.Errorf("metadata: node id %d is negative", cfg.NodeID)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fsys := cfg.FS
	if fsys == nil {
		fsys = vfs.OS()
	}
	if err := vfs.MkdirAll(fsys, cfg.Dir); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	// vfs.MkdirAll syncs the parent only when it creates Dir; a Dir that an
	// older version created (with os.MkdirAll, never synced) is made durable
	// here, before anything in it is relied on.
	if err := fsys.SyncDir(filepath.Dir(filepath.Clean(cfg.Dir))); err != nil {
		return nil, fmt.Errorf("metadata: make %s durable: %w", cfg.Dir, err)
	}
	hcl := newHCLogAdapter(logger)

	lock, err := lockDir(fsys, cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := migrateLegacy(fsys, cfg.Dir, logger); err != nil {
		lock.release()
		return nil, err
	}
	logs, err := openLogStore(fsys, cfg.Dir, logger)
	if err != nil {
		lock.release()
		return nil, err
	}
	stable, err := openStableStore(fsys, cfg.Dir)
	if err != nil {
		logs.Close()
		lock.release()
		return nil, err
	}
	snaps, err := openSnapshotStore(fsys, cfg.Dir, snapshotsRetained, logger)
	if err != nil {
		logs.Close()
		lock.release()
		return nil, err
	}

	id := raft.ServerID(strconv.Itoa(int(cfg.NodeID)))
	// A quorum of one never sends an RPC, so an in-memory transport is enough.
	// A TCP transport (raft.NewTCPTransport or our own) comes with clustering;
	// the address is then a host:port and is changed with a configuration entry.
	addr, trans := raft.NewInmemTransport(raft.ServerAddress("node-" + string(id)))

	notifyCh := make(chan bool, 1)
	rc := raft.DefaultConfig()
	rc.LocalID = id
	rc.Logger = hcl
	rc.NotifyCh = notifyCh
	rc.HeartbeatTimeout = heartbeatTimeout
	rc.ElectionTimeout = electionTimeout
	rc.LeaderLeaseTimeout = leaderLeaseTimeout
	rc.SnapshotThreshold = snapshotThreshold
	rc.SnapshotInterval = snapshotInterval
	rc.TrailingLogs = trailingLogs

	fail := func(err error) (*Store, error) {
		trans.Close()
		logs.Close()
		lock.release()
		return nil, err
	}
	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fail(fmt.Errorf("metadata: read raft state in %s: %w", cfg.Dir, err))
	}
	if !existing {
		boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: id, Address: addr}}}
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, boot); err != nil {
			return fail(fmt.Errorf("metadata: bootstrap in %s: %w", cfg.Dir, err))
		}
	}

	f := newFSM(logger)
	r, err := raft.NewRaft(rc, f, logs, stable, snaps, trans)
	if err != nil {
		return fail(fmt.Errorf("metadata: start raft in %s: %w", cfg.Dir, err))
	}
	s := &Store{
		nodeID:        cfg.NodeID,
		log:           logger,
		fsm:           f,
		raft:          r,
		logs:          logs,
		lock:          lock,
		closed:        make(chan struct{}),
		watcherDone:   make(chan struct{}),
		leaderChanged: make(chan struct{}),
	}
	go s.watchLeadership(notifyCh)

	// A directory bootstrapped by another node id would never elect us:
	// say so now instead of letting WaitReady time out.
	cf := r.GetConfiguration()
	if err := cf.Error(); err != nil {
		s.Close()
		return nil, fmt.Errorf("metadata: read raft configuration: %w", err)
	}
	if !slices.ContainsFunc(cf.Configuration().Servers, func(sv raft.Server) bool { return sv.ID == id && sv.Suffrage == raft.Voter }) {
		s.Close()
		return nil, fmt.Errorf("metadata: %s belongs to a quorum in which node %d is not a voter (%v); check node.id or the data dir",
			cfg.Dir, cfg.NodeID, cf.Configuration().Servers)
	}
	return s, nil
}

// watchLeadership consumes raft's NotifyCh (raft blocks on it) and turns each
// value into a broadcast for WaitReady. It owns nothing but the channel; the
// leader state itself is guarded by leaderMu.
func (s *Store) watchLeadership(notifyCh <-chan bool) {
	defer close(s.watcherDone)
	for {
		select {
		case <-s.closed:
			return
		case leader := <-notifyCh:
			s.leaderMu.Lock()
			if leader != s.isLeader {
				s.isLeader = leader
				close(s.leaderChanged)
				s.leaderChanged = make(chan struct{})
			}
			s.leaderMu.Unlock()
		}
	}
}

// leadership returns whether this node is the Raft leader and a channel
// closed on the next change.
func (s *Store) leadership() (bool, <-chan struct{}) {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	return s.isLeader, s.leaderChanged
}

// WaitReady returns when this node is the active controller: it is the Raft
// leader, it has applied every record committed before its leadership (a
// Raft barrier), and the image names it as ControllerID and has a ClusterID
// (written on the first call in the cluster's life). It returns ctx's error
// if that takes too long and ErrClosed after Close.
func (s *Store) WaitReady(ctx context.Context) error {
	for {
		leader, changed := s.leadership()
		if leader {
			err := s.wait(ctx, s.raft.Barrier(enqueueTimeout(ctx)))
			if err == nil {
				err = s.activate(ctx)
			}
			if !errors.Is(err, ErrNotController) {
				return err // nil: ready
			}
			// Leadership was lost during the barrier or the activation
			// record; the watcher will report it on changed, and the next
			// leadership starts over.
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("metadata: waiting to become the active controller: %w", ctx.Err())
		case <-s.closed:
			return ErrClosed
		}
	}
}

// activate writes an ActivateController record unless the image already names
// this node and has a cluster id (the usual case on restart).
func (s *Store) activate(ctx context.Context) error {
	img := s.Image()
	if img.ControllerID == s.nodeID && img.ClusterID != "" {
		return nil
	}
	clusterID := ""
	if img.ClusterID == "" {
		clusterID = newUUID().String()
	}
	_, err := s.propose(ctx, &record{Type: recActivateController, NodeID: s.nodeID, ClusterID: clusterID})
	return err
}

// Image returns the current image. It is cheap (an atomic load) and never
// nil; the result is immutable and stays valid forever.
func (s *Store) Image() *Image { return s.fsm.image.Load() }

// Changes returns a channel that is closed when the image changes after this
// call. Each change closes the current channel and starts a new one, so
// every waiter is woken; callers re-read Image and call Changes again:
//
//	for {
//		ch := s.Changes()
//		img := s.Image()
//		... use img ...
//		<-ch
//	}
func (s *Store) Changes() <-chan struct{} { return s.fsm.changesCh() }

// RegisterBroker adds b or replaces the registration of b.NodeID.
func (s *Store) RegisterBroker(ctx context.Context, b Broker) error {
	if err := validBroker(b); err != nil {
		return err
	}
	_, err := s.propose(ctx, &record{Type: recRegisterBroker, Broker: &b})
	return err
}

// CreateTopic creates a topic with a random TopicID and the given number of
// partitions, each with the given replicas, led by replicas[0] at leader
// epoch 0 with every replica in sync. configs become the topic's dynamic
// configs. Placement (which brokers) is the caller's (the controller's)
// decision; replicas are not checked against registered brokers here.
// It returns the topic as it is in the image, which must not be mutated,
// or ErrTopicExists, ErrInvalidTopic, ErrInvalidPartitions, ErrInvalidReplicas.
func (s *Store) CreateTopic(ctx context.Context, name string, partitions int32, replicas []int32, configs map[string]string) (*Topic, error) {
	if err := validNewTopic(name, partitions, replicas); err != nil {
		return nil, err
	}
	id := newUUID()
	res, err := s.propose(ctx, &record{
		Type:       recCreateTopic,
		Topic:      name,
		TopicID:    &id,
		Partitions: partitions,
		Replicas:   replicas,
		Configs:    configs,
	})
	if err != nil {
		return nil, err
	}
	return res.topic, nil
}

// DeleteTopic removes a topic from the metadata; brokers delete its
// partitions' data when they see it gone. ErrUnknownTopic if there is none.
func (s *Store) DeleteTopic(ctx context.Context, name string) error {
	_, err := s.propose(ctx, &record{Type: recDeleteTopic, Topic: name})
	return err
}

// CreatePartitions grows the topic to total partitions; each new one gets
// the given replicas like CreateTopic. ErrInvalidPartitions if total is not
// more than the current count, ErrUnknownTopic if there is no such topic.
func (s *Store) CreatePartitions(ctx context.Context, name string, total int32, replicas []int32) error {
	if err := validReplicas(replicas); err != nil {
		return err
	}
	_, err := s.propose(ctx, &record{Type: recCreatePartitions, Topic: name, Partitions: total, Replicas: replicas})
	return err
}

// SetTopicConfigs replaces the topic's dynamic configs with exactly configs
// (nil or empty removes them all). Config names and values are checked by
// the caller. ErrUnknownTopic if there is no such topic.
func (s *Store) SetTopicConfigs(ctx context.Context, name string, configs map[string]string) error {
	_, err := s.propose(ctx, &record{Type: recSetTopicConfigs, Topic: name, Configs: configs})
	return err
}

// SetBrokerConfigs replaces the dynamic cluster-wide broker configs with
// exactly configs.
func (s *Store) SetBrokerConfigs(ctx context.Context, configs map[string]string) error {
	_, err := s.propose(ctx, &record{Type: recSetBrokerConfigs, Configs: configs})
	return err
}

// AllocateProducerIDs reserves the block [first, first+count) for the
// caller. Blocks never overlap and never repeat, across restarts too.
// count must be in 1..maxProducerIDBlock (1<<20).
func (s *Store) AllocateProducerIDs(ctx context.Context, count int64) (first int64, err error) {
	if count <= 0 || count > maxProducerIDBlock {
		return 0, fmt.Errorf("%w: %d, want 1..%d", ErrInvalidProducerIDCount, count, maxProducerIDBlock)
	}
	res, err := s.propose(ctx, &record{Type: recAllocateProducerIDs, Count: count})
	if err != nil {
		return 0, err
	}
	return res.first, nil
}

// Close shuts Raft down, waits for its goroutines, closes the log and
// releases the directory. Safe
// to call more than once and concurrently; later calls return the first
// result. Writes in flight fail with ErrClosed; the image stays readable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		// Raft first: its shutdown also closes the transport, and raft does
		// not block on NotifyCh once it is shutting down.
		err := s.raft.Shutdown().Error()
		close(s.closed)
		<-s.watcherDone
		if cerr := s.logs.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if cerr := s.lock.release(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			s.closeErr = fmt.Errorf("metadata: close: %w", err)
		}
	})
	return s.closeErr
}

// propose appends r to the Raft log and waits until it is applied,
// returning the FSM's verdict.
func (s *Store) propose(ctx context.Context, r *record) (*applyResult, error) {
	data, err := encodeRecord(r)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-s.closed:
		return nil, ErrClosed
	default:
	}
	f := s.raft.Apply(data, enqueueTimeout(ctx))
	if err := s.wait(ctx, f); err != nil {
		return nil, err
	}
	res, ok := f.Response().(*applyResult)
	if !ok {
		panic(fmt.Sprintf("BUG: metadata FSM returned %T, want *applyResult", f.Response()))
	}
	if res.err != nil {
		return nil, res.err
	}
	return res, nil
}

// wait waits for f or ctx. raft futures cannot be cancelled, so on ctx's end
// the operation goes on without us (the goroutine ends when raft answers,
// at the latest on shutdown).
func (s *Store) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return raftError(err)
	case <-ctx.Done():
		return fmt.Errorf("metadata: %w (the change may still be applied)", ctx.Err())
	}
}

// raftError turns raft's errors into ours.
func raftError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNotController
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: leadership lost while committing; the change may or may not be applied", ErrNotController)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("metadata: raft is busy: %w", context.DeadlineExceeded)
	}
	return fmt.Errorf("metadata: raft: %w", err)
}

// enqueueTimeout is how long raft may take to accept an operation: until
// ctx's deadline, or forever (0) if it has none.
func enqueueTimeout(ctx context.Context) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	d := time.Until(dl)
	if d <= 0 {
		d = time.Nanosecond
	}
	return d
}

// newUUID returns a random version-4 UUID as Kafka's Uuid.randomUuid does:
// never all-zero, never Kafka's reserved metadata topic id (0, 1), and never
// one whose base64 form starts with '-' (it would read as a CLI flag).
func newUUID() TopicID {
	for {
		var id TopicID
		rand.Read(id[:]) // never fails (crypto/rand panics instead)
		id[6] = id[6]&0x0f | 0x40
		id[8] = id[8]&0x3f | 0x80
		if id.IsZero() || id == (TopicID{15: 1}) || id.String()[0] == '-' {
			continue
		}
		return id
	}
}
