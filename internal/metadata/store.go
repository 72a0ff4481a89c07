package metadata

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluice-io/sluice/internal/vfs"
)

// Raft tuning for a quorum of one (a single voter), where no message crosses
// a network: a fresh or restarted node elects itself after one randomized
// heartbeat timeout (100-200 ms). A quorum of several voters uses the
// network values in quorum.go instead.
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

	// activateRetryDelay is how long a new leader waits before it tries
	// again to announce itself after a failure other than losing leadership
	// (e.g. a full disk).
	activateRetryDelay = 500 * time.Millisecond
	// appliedPollInterval is how often WaitApplied re-checks raft's applied
	// index: raft tells nobody when it applies its own no-op and barrier
	// entries, which never reach the FSM. Records wake waiters at once.
	appliedPollInterval = 20 * time.Millisecond
)

// raftTimeouts are the raft timings of one Store.
type raftTimeouts struct {
	heartbeat, election, leaderLease, commit time.Duration
}

// timeoutsFor returns the production timings for a quorum of n voters.
func timeoutsFor(n int) raftTimeouts {
	if n <= 1 {
		return raftTimeouts{heartbeatTimeout, electionTimeout, leaderLeaseTimeout, raft.DefaultConfig().CommitTimeout}
	}
	return raftTimeouts{networkHeartbeatTimeout, networkElectionTimeout, networkLeaderLeaseTimeout, networkCommitTimeout}
}

// Config configures Open.
type Config struct {
	Dir    string       // e.g. <data-dir>/meta; created if missing; owned by the Store until Close
	NodeID int32        // this node's id; also its Raft server id
	Logger *slog.Logger // may be nil -> discard
	// FS holds Dir; nil means vfs.OS(). Tests pass a vfs.MemFS to crash it.
	FS vfs.FS

	// Voters is the controller quorum as this node's
	// --controller-quorum-voters names it (ParseVoters): each voter's id and
	// the address at which THIS node reaches it. It must include NodeID
	// unless Observer is set, and must not if it is. Empty means a
	// quorum of this node alone on an in-memory transport, as before
	// clustering; so does exactly one voter (this node) without a Listener.
	// Every voter must be started with the same set of ids; on a fresh Dir
	// they bootstrap the quorum together, and an existing Dir must hold
	// exactly this set (changing it is not supported yet).
	Voters []Voter
	// Listener accepts the raft connections of the other voters. The
	// caller demultiplexes them from other traffic on the port. Open takes
	// ownership: Close (or a failed Open) closes it, and Open closes it at
	// once if there are no Voters. Required for more than one voter.
	Listener net.Listener
	// Dial opens a raft connection to another voter at addr (a host:port
	// from Voters); nil means net.DialTimeout("tcp", addr, timeout).
	Dial func(addr string, timeout time.Duration) (net.Conn, error)
	// Observer makes this node a non-voting member: a broker-only node
	// (process.roles=broker). It never bootstraps or votes; it waits until
	// the active controller adds it to the raft configuration as a
	// non-voter (AddObserver, when it registers as a broker) and from then
	// on receives and applies the metadata log like a voter. The leader
	// dials it at the address it registered (Image.Brokers), so Listener
	// must take raft connections at that address (its Kafka listener's
	// raft side). Kafka's brokers are observers of the metadata log the
	// same way, fetching it instead of being sent it.
	Observer bool
}

// openOptions are Open's knobs that only tests turn.
type openOptions struct {
	timeouts *raftTimeouts // nil: timeoutsFor(number of voters)
}

// Store is this node's member of the metadata quorum: a Raft node whose FSM
// builds the Image. All methods are safe for concurrent use.
//
// Writes (RegisterBroker, CreateTopic, ...) succeed only on the active
// controller (the Raft leader) and return ErrNotController elsewhere. A write
// returns after its record is committed and applied, so Image() reflects it.
// If ctx ends first, the call returns ctx's error and the change may still be
// applied later: callers that retry must tolerate ErrTopicExists and the like.
//
// Every voter applies every committed record, so Image() on a follower shows
// the committed state as of its last apply (see CaughtUp and WaitApplied).
type Store struct {
	nodeID int32
	log    *slog.Logger
	fsm    *fsm
	raft   *raft.Raft
	logs   *logStore           // closed after raft
	lock   *vfs.DirLock        // released last
	net    *observingTransport // nil for the in-memory transport
	peers  map[int32]string    // voter id -> address as this node dials it; empty for a quorum of one

	ctx         context.Context // canceled by Close; parent of activation contexts
	cancel      context.CancelFunc
	closed      chan struct{}  // closed by Close; stops watchLeadership and wakes waiters
	watcherDone chan struct{}  // closed when watchLeadership returns
	activations sync.WaitGroup // activateLoop goroutines

	// leaderMu guards the leadership state below. Lock order: leaderMu is
	// never held while calling raft or taking another lock.
	leaderMu       sync.Mutex
	isLeader       bool               // last value raft sent on its NotifyCh
	ready          bool               // isLeader and this leadership's activation is applied
	leaderGen      uint64             // counts leaderships; an activation of an older one does nothing
	stopActivation context.CancelFunc // ends the current leadership's activateLoop
	leaderChanged  chan struct{}      // closed when isLeader or ready changes

	closeOnce sync.Once
	closeErr  error
}

// Open opens (or creates) the metadata store in cfg.Dir and starts Raft. On a
// fresh directory it bootstraps a quorum of cfg.Voters (or of this node
// alone); on later starts it checks that the stored voter set is the same
// and resumes from the snapshot and log on disk. Open does not wait for an
// election: call WaitReady (controller) or CaughtUp/WaitApplied (any voter)
// before relying on the Image or writing.
//
// On disk (all through cfg.FS, every new name made durable by an fsync of
// its directory): the Raft log in raft.journal (raftlog.go), raft's term and
// vote in raft.stable (raftstable.go), snapshots in <term>-<index>.snapshot
// (raftsnap.go), and .lock. A directory written by an older version
// (raft-boltdb's raft.db, raft's snapshots/) is imported once and moved aside
// (migrate.go).
func Open(cfg Config) (*Store, error) { return open(cfg, openOptions{}) }

func open(cfg Config, opts openOptions) (_ *Store, err error) {
	// The listener is ours from here on: close it unless a transport (which
	// closes it on shutdown) has taken it.
	listenerTaken := false
	defer func() {
		if err != nil && !listenerTaken && cfg.Listener != nil {
			cfg.Listener.Close()
		}
	}()
	if cfg.Dir == "" {
		return nil, errors.New("metadata: Config.Dir is empty; set it to <data-dir>/meta")
	}
	if cfg.NodeID < 0 {
		return nil, fmt.Errorf("metadata: node id %d is negative", cfg.NodeID)
	}
	if err := validVoters(cfg.Voters); err != nil {
		return nil, err
	}
	isVoter := slices.ContainsFunc(cfg.Voters, func(v Voter) bool { return v.ID == cfg.NodeID })
	switch {
	case cfg.Observer && isVoter:
		return nil, fmt.Errorf("metadata: node %d is in --controller-quorum-voters (%v) but runs as a broker only (process.roles=broker); a voter must have the controller role",
			cfg.NodeID, cfg.Voters)
	case cfg.Observer && len(cfg.Voters) == 0:
		return nil, errors.New("metadata: a broker-only node (process.roles=broker) needs --controller-quorum-voters: the controllers whose metadata it follows")
	case cfg.Observer && cfg.Listener == nil:
		return nil, errNoListener
	case !cfg.Observer && len(cfg.Voters) > 0 && !isVoter:
		return nil, fmt.Errorf("metadata: node %d is not in --controller-quorum-voters (%v): add it, run it as a broker only (-c process.roles=broker), or check node.id",
			cfg.NodeID, cfg.Voters)
	case len(cfg.Voters) > 1 && cfg.Listener == nil:
		return nil, errNoListener
	}
	useNet := cfg.Listener != nil && len(cfg.Voters) > 0
	if cfg.Listener != nil && !useNet {
		cfg.Listener.Close() // unused without Voters; ours to close
		listenerTaken = true
	}
	want := []int32{cfg.NodeID}
	if len(cfg.Voters) > 0 {
		want = voterIDs(cfg.Voters)
	}
	timeouts := timeoutsFor(len(want))
	if cfg.Observer {
		timeouts = timeoutsFor(maxVoters) // always across a network
	}
	if opts.timeouts != nil {
		timeouts = *opts.timeouts
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(want)%2 == 0 {
		logger.Warn("metadata: an even number of controller voters tolerates no more failures than one fewer", "voters", want)
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
		lock.Release()
		return nil, err
	}
	logs, err := openLogStore(fsys, cfg.Dir, logger)
	if err != nil {
		lock.Release()
		return nil, err
	}
	stable, err := openStableStore(fsys, cfg.Dir)
	if err != nil {
		logs.Close()
		lock.Release()
		return nil, err
	}
	snaps, err := openSnapshotStore(fsys, cfg.Dir, snapshotsRetained, logger)
	if err != nil {
		logs.Close()
		lock.Release()
		return nil, err
	}

	id := raft.ServerID(serverAddr(cfg.NodeID))
	f := newFSM(logger)
	var (
		trans   raft.Transport
		netTr   *observingTransport
		closeTr func()
	)
	if useNet {
		stream := newStreamLayer(cfg.Listener, cfg.NodeID, cfg.Voters, cfg.Dial)
		stream.resolve = func(a raft.ServerAddress) (string, bool) {
			n, err := strconv.ParseInt(string(a), 10, 32)
			if err != nil {
				return "", false
			}
			b, ok := f.image.Load().Brokers[int32(n)]
			if !ok {
				return "", false
			}
			return net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))), true
		}
		netTr = newObservingTransport(raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Logger:          hcl.Named("net"),
			Stream:          stream,
			MaxPool:         transportMaxPool,
			MaxRPCsInFlight: transportMaxRPCsInFlight,
			Timeout:         transportTimeout,
		}))
		listenerTaken = true
		trans, closeTr = netTr, func() { netTr.Close() }
	} else {
		// A quorum of one never sends an RPC, so an in-memory transport is
		// enough.
		_, inmem := raft.NewInmemTransport(serverAddr(cfg.NodeID))
		trans, closeTr = inmem, func() { inmem.Close() }
	}

	notifyCh := make(chan bool, 1)
	rc := raft.DefaultConfig()
	rc.LocalID = id
	rc.Logger = hcl
	rc.NotifyCh = notifyCh
	rc.HeartbeatTimeout = timeouts.heartbeat
	rc.ElectionTimeout = timeouts.election
	rc.LeaderLeaseTimeout = timeouts.leaderLease
	rc.CommitTimeout = timeouts.commit
	rc.SnapshotThreshold = snapshotThreshold
	rc.SnapshotInterval = snapshotInterval
	rc.TrailingLogs = trailingLogs

	fail := func(err error) (*Store, error) {
		closeTr()
		logs.Close()
		lock.Release()
		return nil, err
	}
	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fail(fmt.Errorf("metadata: read raft state in %s: %w", cfg.Dir, err))
	}
	if cfg.Observer {
		if existing {
			stored, err := storedConfiguration(rc, logs, stable, snaps)
			if err != nil {
				return fail(fmt.Errorf("metadata: read raft configuration in %s: %w", cfg.Dir, err))
			}
			if err := checkStoredObserver(cfg.Dir, cfg.NodeID, stored, want); err != nil {
				return fail(err)
			}
		}
		// Nothing to bootstrap: the leader adds this node when it registers.
	} else if !existing {
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, bootstrapConfiguration(want)); err != nil {
			return fail(fmt.Errorf("metadata: bootstrap in %s: %w", cfg.Dir, err))
		}
	} else {
		// Check the stored voters before raft runs: a node started with
		// the wrong list could otherwise win an election in the old quorum
		// (a quorum of one elects itself at once) and write to the dir.
		stored, err := storedConfiguration(rc, logs, stable, snaps)
		if err != nil {
			return fail(fmt.Errorf("metadata: read raft configuration in %s: %w", cfg.Dir, err))
		}
		if err := checkStoredVoters(cfg.Dir, cfg.NodeID, stored, want, len(cfg.Voters) > 0); err != nil {
			return fail(err)
		}
	}

	r, err := raft.NewRaft(rc, f, logs, stable, snaps, trans)
	if err != nil {
		return fail(fmt.Errorf("metadata: start raft in %s: %w", cfg.Dir, err))
	}
	peers := map[int32]string{}
	for _, v := range cfg.Voters {
		peers[v.ID] = v.Addr
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		nodeID:        cfg.NodeID,
		log:           logger,
		fsm:           f,
		raft:          r,
		logs:          logs,
		lock:          lock,
		net:           netTr,
		peers:         peers,
		ctx:           ctx,
		cancel:        cancel,
		closed:        make(chan struct{}),
		watcherDone:   make(chan struct{}),
		leaderChanged: make(chan struct{}),
	}
	go s.watchLeadership(notifyCh)
	return s, nil
}

// storedConfiguration returns the raft configuration in the stores without
// starting raft (raft.GetConfiguration restores the snapshot into a
// throwaway FSM and scans the log, as NewRaft will again).
func storedConfiguration(rc *raft.Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore) (raft.Configuration, error) {
	conf := *rc // GetConfiguration modifies its config
	conf.NotifyCh = nil
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	return raft.GetConfiguration(&conf, newFSM(slog.New(slog.DiscardHandler)), logs, stable, snaps, trans)
}

// watchLeadership consumes raft's NotifyCh (raft blocks on it) and turns each
// value into leadership state: on gaining leadership it starts an
// activateLoop, on losing it it stops that loop. It owns no state itself;
// the state is guarded by leaderMu.
func (s *Store) watchLeadership(notifyCh <-chan bool) {
	defer close(s.watcherDone)
	for {
		select {
		case <-s.closed:
			s.setLeader(false)
			return
		case leader := <-notifyCh:
			s.setLeader(leader)
		}
	}
}

// setLeader records a leadership change and starts or stops activation.
func (s *Store) setLeader(leader bool) {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if leader == s.isLeader {
		return
	}
	s.isLeader = leader
	s.ready = false
	if s.stopActivation != nil {
		s.stopActivation()
		s.stopActivation = nil
	}
	if leader {
		s.leaderGen++
		ctx, cancel := context.WithCancel(s.ctx)
		s.stopActivation = cancel
		s.activations.Add(1)
		go s.activateLoop(ctx, s.leaderGen)
	}
	close(s.leaderChanged)
	s.leaderChanged = make(chan struct{})
}

// activateLoop makes a new leader the active controller: a Raft barrier
// (everything committed before this leadership is applied), then an
// ActivateController record unless the image already names this node. It
// retries other failures until leadership ends (ctx is canceled) and marks
// the leadership gen ready on success.
func (s *Store) activateLoop(ctx context.Context, gen uint64) {
	defer s.activations.Done()
	for {
		err := s.wait(ctx, s.raft.Barrier(0))
		if err == nil {
			err = s.activate(ctx)
		}
		if err == nil {
			s.leaderMu.Lock()
			if s.leaderGen == gen && s.isLeader && !s.ready {
				s.ready = true
				close(s.leaderChanged)
				s.leaderChanged = make(chan struct{})
			}
			s.leaderMu.Unlock()
			return
		}
		if ctx.Err() != nil || errors.Is(err, ErrClosed) || errors.Is(err, ErrNotController) {
			// Leadership ended (the watcher hears of it from raft and
			// starts over on the next one) or the store is closing.
			return
		}
		s.log.Warn("metadata: could not announce this node as the active controller; retrying", "err", err, "retry_in", activateRetryDelay)
		t := time.NewTimer(activateRetryDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// readiness returns whether this node is the active controller and a
// channel closed on the next change.
func (s *Store) readiness() (bool, <-chan struct{}) {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	return s.ready, s.leaderChanged
}

// WaitReady returns when this node is the active controller: it is the Raft
// leader, it has applied every record committed before its leadership (a
// Raft barrier), and the image names it as ControllerID and has a ClusterID
// (written on the first leadership in the cluster's life). Every new leader
// does this on its own as soon as it is elected; WaitReady only waits for it.
// On a follower it waits until this node is elected, if ever. It returns
// ctx's error if that takes too long and ErrClosed after Close.
func (s *Store) WaitReady(ctx context.Context) error {
	for {
		select {
		case <-s.closed:
			return ErrClosed
		default:
		}
		ready, changed := s.readiness()
		if ready {
			return nil
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

// IsController reports whether this node is the active controller right now,
// as WaitReady defines it (leader, caught up, announced). Between an
// election and its announcement, Leader may name this node while
// IsController is still false.
func (s *Store) IsController() bool {
	ready, _ := s.readiness()
	return ready
}

// Leader returns the node id of the current Raft leader as this node knows
// it, for routing controller requests; ok is false while no leader is known
// (an election is under way, or this node is cut off from the quorum). The
// leader may not have announced itself yet (see IsController).
func (s *Store) Leader() (nodeID int32, ok bool) {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return -1, false
	}
	n, err := strconv.ParseInt(string(id), 10, 32)
	if err != nil {
		return -1, false
	}
	return int32(n), true
}

// Status is a point-in-time view of this node's member of the metadata
// quorum, for `sluice cluster info` and metrics. The fields are read one by
// one from raft, not atomically together.
type Status struct {
	NodeID       int32
	State        string // raft's state: "Leader", "Follower", "Candidate" or "Shutdown"
	IsController bool   // see Store.IsController
	LeaderID     int32  // the current leader as this node knows it, -1 if none
	Term         uint64 // raft's current term
	LastLogIndex uint64 // last entry in this node's log (committed or not)
	CommitIndex  uint64 // last entry this node knows to be committed
	AppliedIndex uint64 // last entry raft has handed to the FSM
	// LastLeaderContact is when this node last heard from a leader; zero on
	// the leader itself and before any contact. raft exposes no per-voter
	// contact times, so Voters carries none.
	LastLeaderContact time.Time
	Voters            []VoterStatus // sorted by ID
	// Observers are the non-voting members (broker-only nodes) in the
	// raft configuration, sorted.
	Observers []int32
}

// VoterStatus is one voter of the stored raft configuration.
type VoterStatus struct {
	ID   int32
	Addr string // where this node dials it (from Config.Voters); "" for a quorum of one
}

// Status returns this node's view of the metadata quorum.
func (s *Store) Status() Status {
	st := Status{
		NodeID:       s.nodeID,
		State:        s.raft.State().String(),
		IsController: s.IsController(),
		LeaderID:     -1,
		Term:         s.raft.CurrentTerm(),
		LastLogIndex: s.raft.LastIndex(),
		CommitIndex:  s.raft.CommitIndex(),
		AppliedIndex: s.raft.AppliedIndex(),
	}
	if id, ok := s.Leader(); ok {
		st.LeaderID = id
	}
	if s.raft.State() != raft.Leader {
		st.LastLeaderContact = s.raft.LastContact()
	}
	if cf := s.raft.GetConfiguration(); cf.Error() == nil {
		ids, _ := storedVoterIDs(cf.Configuration())
		for _, id := range ids {
			st.Voters = append(st.Voters, VoterStatus{ID: id, Addr: s.peers[id]})
		}
		st.Observers = observerIDs(cf.Configuration())
	}
	return st
}

// observerIDs returns the sorted ids of a configuration's non-voters.
func observerIDs(c raft.Configuration) []int32 {
	var ids []int32
	for _, sv := range c.Servers {
		if sv.Suffrage == raft.Voter {
			continue
		}
		if id, err := strconv.ParseInt(string(sv.ID), 10, 32); err == nil {
			ids = append(ids, int32(id))
		}
	}
	slices.Sort(ids)
	return ids
}

// AddObserver adds broker nodeID to the raft configuration as a non-voter
// (an observer, see Config.Observer), so that the leader replicates the
// metadata log to it; the controller does this when a broker-only node
// registers. Nothing is done for a node that is already a member (voter or
// not). Only on the active controller (ErrNotController elsewhere). The
// leader reaches the observer at the address it registered as a broker.
func (s *Store) AddObserver(ctx context.Context, nodeID int32) error {
	if !s.IsController() {
		return ErrNotController
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("metadata: read raft configuration: %w", err)
	}
	for _, sv := range cf.Configuration().Servers {
		if sv.ID == raft.ServerID(serverAddr(nodeID)) {
			return nil
		}
	}
	if s.net == nil {
		return fmt.Errorf("metadata: node %d cannot follow a quorum of one; start the controllers with --controller-quorum-voters", nodeID)
	}
	if err := s.wait(ctx, s.raft.AddNonvoter(raft.ServerID(serverAddr(nodeID)), serverAddr(nodeID), 0, 0)); err != nil {
		return fmt.Errorf("metadata: add observer %d: %w", nodeID, err)
	}
	s.log.Info("metadata: observer added to the quorum's configuration", "node", nodeID)
	return nil
}

// RemoveObserver removes non-voter nodeID from the raft configuration (its
// broker was unregistered). Nothing is done if it is not a non-voter.
func (s *Store) RemoveObserver(ctx context.Context, nodeID int32) error {
	if !s.IsController() {
		return ErrNotController
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("metadata: read raft configuration: %w", err)
	}
	if !slices.Contains(observerIDs(cf.Configuration()), nodeID) {
		return nil
	}
	if err := s.wait(ctx, s.raft.RemoveServer(raft.ServerID(serverAddr(nodeID)), 0, 0)); err != nil {
		return fmt.Errorf("metadata: remove observer %d: %w", nodeID, err)
	}
	return nil
}

// CaughtUp reports whether this node has applied the metadata log as far as
// the quorum has committed it, as far as this node can tell: on the active
// controller, once it is ready; on any other voter, once it has applied
// every entry up to the highest commit index a leader has announced to it
// since Open (false until it has heard from a leader). It does not notice a
// leader it cannot reach, and under a steady stream of writes a follower
// may read false for the moment between learning of a commit and applying
// it, so a readiness check should stay ready once this has been true.
func (s *Store) CaughtUp() bool {
	if s.IsController() {
		return true
	}
	if s.net == nil {
		return false // a quorum of one: only its leader applies anything
	}
	target := s.net.leaderCommit.Load()
	return target > 0 && s.appliedThrough(target)
}

// WaitApplied returns when this node's Image reflects every log entry up to
// index (a follower reads its own or another node's write: the raft index
// of a record is its Image.Index once applied, and a broker's Epoch). It
// returns ctx's error if that takes too long and ErrClosed after Close.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	progress := s.fsm.progressCh()
	if s.appliedThrough(index) {
		return nil
	}
	tick := time.NewTicker(appliedPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-progress:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("metadata: waiting to apply index %d (applied %d): %w", index, s.fsm.applied.Load(), ctx.Err())
		case <-s.closed:
			return ErrClosed
		}
		progress = s.fsm.progressCh()
		if s.appliedThrough(index) {
			return nil
		}
	}
}

// appliedThrough reports whether the FSM has processed every entry up to
// index. The FSM counts what it sees (commands, configuration entries, a
// restored snapshot); raft's no-op and barrier entries never reach it, so
// entries above its count are looked up: once raft has handed everything up
// to index to the FSM, any that are not commands or configurations change
// nothing. Usually at most a few entries are read.
func (s *Store) appliedThrough(index uint64) bool {
	fa := s.fsm.applied.Load()
	if fa >= index {
		return true
	}
	if s.raft.AppliedIndex() < index {
		return false
	}
	for i := index; i > fa; i-- {
		var l raft.Log
		if err := s.logs.GetLog(i, &l); err != nil {
			// Compacted into a snapshot, which the FSM took after
			// processing everything up to it: i and below are done.
			return errors.Is(err, raft.ErrLogNotFound)
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false // still queued for the FSM
		}
	}
	return true
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

// RegisterBroker adds b or replaces the registration of b.NodeID; see
// RegisterBrokerEpoch, which also returns the new epoch.
func (s *Store) RegisterBroker(ctx context.Context, b Broker) error {
	_, err := s.RegisterBrokerEpoch(ctx, b)
	return err
}

// RegisterBrokerEpoch adds b or replaces the registration of b.NodeID and
// returns the broker's new epoch (the raft index of the registration, also
// the index to WaitApplied for). b.Epoch, b.Fenced and
// b.InControlledShutdown are ignored: a registration with an IncarnationID
// starts fenced (UnfenceBroker lets it lead), one without is never fenced
// (the form used before brokers had incarnations). Every registration gets
// a new epoch, so requests made for the previous one fail with
// ErrStaleBrokerEpoch. ErrInvalidBroker for a bad id, port or incarnation.
func (s *Store) RegisterBrokerEpoch(ctx context.Context, b Broker) (epoch int64, err error) {
	b.Epoch, b.Fenced, b.InControlledShutdown = 0, false, false
	if err := validBroker(b); err != nil {
		return 0, err
	}
	res, err := s.propose(ctx, &record{Type: recRegisterBroker, Broker: &b})
	if err != nil {
		return 0, err
	}
	return res.epoch, nil
}

// FenceBroker fences broker nodeID at epoch: it may no longer lead or be in
// an ISR (the controller moves those away with ChangePartitions). Fencing a
// fenced broker is allowed. ErrUnknownBroker, or ErrStaleBrokerEpoch if
// the broker has registered again since epoch.
func (s *Store) FenceBroker(ctx context.Context, nodeID int32, epoch int64) error {
	_, err := s.propose(ctx, &record{Type: recFenceBroker, NodeID: nodeID, Epoch: epoch})
	return err
}

// UnfenceBroker unfences broker nodeID at epoch (the controller does this
// once the broker has caught up). ErrUnknownBroker, ErrStaleBrokerEpoch, or
// ErrInvalidBroker while it is in controlled shutdown.
func (s *Store) UnfenceBroker(ctx context.Context, nodeID int32, epoch int64) error {
	_, err := s.propose(ctx, &record{Type: recUnfenceBroker, NodeID: nodeID, Epoch: epoch})
	return err
}

// BeginControlledShutdown marks broker nodeID at epoch as shutting down:
// the controller moves its leaderships away and it stays out of new ones
// until it registers again. ErrUnknownBroker or ErrStaleBrokerEpoch.
func (s *Store) BeginControlledShutdown(ctx context.Context, nodeID int32, epoch int64) error {
	_, err := s.propose(ctx, &record{Type: recBeginControlledShutdown, NodeID: nodeID, Epoch: epoch})
	return err
}

// UnregisterBroker removes broker nodeID's registration, and its own
// dynamic configs, whatever its epoch (Kafka's UnregisterBroker, for a
// broker that is gone for good); partitions that list it as a replica keep
// doing so. ErrUnknownBroker if there is none.
func (s *Store) UnregisterBroker(ctx context.Context, nodeID int32) error {
	_, err := s.propose(ctx, &record{Type: recUnregisterBroker, NodeID: nodeID})
	return err
}

// ChangePartitions applies changes (leader elections, ISR changes,
// reassignments) all or nothing, in one record: if any change is refused,
// none is made. Each bumps the partition's epochs as PartitionChange says.
// Errors: ErrUnknownTopic, ErrUnknownPartition, ErrStaleLeaderEpoch,
// ErrStalePartitionEpoch, ErrInvalidReplicas, ErrInvalidPartitionChange, or
// ErrRecordTooLarge if the changes do not fit one record (split them).
func (s *Store) ChangePartitions(ctx context.Context, changes []PartitionChange) error {
	if len(changes) == 0 || len(changes) > maxPartitionChanges {
		return fmt.Errorf("%w: %d changes, want 1..%d", ErrInvalidPartitionChange, len(changes), maxPartitionChanges)
	}
	_, err := s.propose(ctx, &record{Type: recChangePartitions, Changes: changes})
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

// CreateTopicAssigned creates a topic like CreateTopic, with one replica
// list per partition (len(assignments) partitions): partition i is led by
// assignments[i][0] at leader and partition epoch 0 with every replica in
// sync. The controller computes the placement (e.g. spreading leaders and
// racks); replicas are not checked against registered brokers here. Errors
// as CreateTopic.
func (s *Store) CreateTopicAssigned(ctx context.Context, name string, assignments [][]int32, configs map[string]string) (*Topic, error) {
	if !validTopicName(name) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	if err := validAssignments(assignments, nil); err != nil {
		return nil, err
	}
	id := newUUID()
	res, err := s.propose(ctx, &record{
		Type:        recCreateTopic,
		Topic:       name,
		TopicID:     &id,
		Partitions:  int32(len(assignments)),
		Assignments: assignments,
		Configs:     configs,
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

// CreatePartitionsAssigned adds len(assignments) partitions to the topic,
// one replica list each, numbered after the existing ones and set up like
// CreateTopicAssigned's. The new total is computed from this node's image
// and checked when the record applies: if the topic grew or shrank
// meanwhile, it fails with ErrInvalidPartitions (re-read and retry) rather
// than adding partitions placed for another count. ErrUnknownTopic if there
// is no such topic; ErrInvalidPartitions or ErrInvalidReplicas for bad
// assignments.
func (s *Store) CreatePartitionsAssigned(ctx context.Context, name string, assignments [][]int32) error {
	if err := validAssignments(assignments, nil); err != nil {
		return err
	}
	cur := 0
	if t := s.Image().Topics[name]; t != nil {
		cur = len(t.Partitions)
	}
	total := int64(cur) + int64(len(assignments))
	if total > maxPartitionsPerTopic {
		return fmt.Errorf("%w: topic %q has %d partitions, %d more would exceed %d", ErrInvalidPartitions, name, cur, len(assignments), maxPartitionsPerTopic)
	}
	_, err := s.propose(ctx, &record{Type: recCreatePartitions, Topic: name, Partitions: int32(total), Assignments: assignments})
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

// SetPerBrokerConfigs replaces broker nodeID's own dynamic configs with
// exactly configs; an empty (or nil) configs removes them. Setting configs
// of a broker that is not registered fails with ErrUnknownBroker.
func (s *Store) SetPerBrokerConfigs(ctx context.Context, nodeID int32, configs map[string]string) error {
	_, err := s.propose(ctx, &record{Type: recSetPerBrokerConfigs, NodeID: nodeID, Configs: configs})
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
		s.cancel()
		<-s.watcherDone
		s.activations.Wait()
		if cerr := s.logs.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if cerr := s.lock.Release(); err == nil && cerr != nil {
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
