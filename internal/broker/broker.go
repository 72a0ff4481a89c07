// Package broker ties one node together: the metadata store (a Raft quorum,
// of one for now), the partitions this node leads, their directories and
// checkpoints, and the background work (checkpoints, retention). Protocol
// handlers (internal/server/api) read the metadata image and the partitions
// through it.
package broker

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/controller"
	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/kclient"
	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/netmux"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/txn"
	"github.com/sluice-io/sluice/internal/vfs"
)

// File names in the data directory, as Kafka names them.
const (
	recoveryCheckpointFile = "recovery-point-offset-checkpoint"
	logStartCheckpointFile = "log-start-offset-checkpoint"
	cleanShutdownFile      = ".kafka_cleanshutdown"
	partitionMetadataFile  = "partition.metadata"
	metaDir                = "meta"
)

// Background intervals (Kafka's defaults).
const (
	// checkpointInterval is log.flush.offset.checkpoint.interval.ms.
	checkpointInterval = time.Minute
	// defaultRetentionCheckInterval is log.retention.check.interval.ms.
	defaultRetentionCheckInterval = 5 * time.Minute
	// metadataTimeout bounds one metadata write.
	metadataTimeout = 30 * time.Second
	// maxParallelPartitionOps bounds partitions opened or closed at once.
	maxParallelPartitionOps = 16
	// noSpaceProbeInterval is how often a full log dir is probed for
	// space (LogDir.ProbeSpace), when no append finds out first.
	noSpaceProbeInterval = 5 * time.Second
	// maxReportedErrors bounds the partitions' errors one message quotes
	// (a checkpoint or a shutdown on a full or failed disk fails them all).
	maxReportedErrors = 3
)

// Config configures a broker.
type Config struct {
	NodeID  int32
	DataDir string
	// LogDirs are more log directories (log.dirs beyond the data dir, one
	// per disk): partitions are spread over them and the data dir
	// (logdirs.go).
	LogDirs []string
	// Host and Port are what clients are told to connect to.
	Host string
	Port int32
	// Static are broker configs from the command line (server.properties).
	Static map[string]string
	FS     vfs.FS // nil: the OS
	Logger *slog.Logger
	Now    func() time.Time
	// RetentionCheckInterval overrides log.retention.check.interval.ms.
	RetentionCheckInterval time.Duration
	// OnFsync, if set, is told each log fsync's duration (metrics).
	OnFsync func(time.Duration)
	// Rack is broker.rack (--rack): placement spreads a partition's
	// replicas over racks.
	Rack string
	// Voters, ControllerMux and LocalAddr make the node one of a cluster:
	// the metadata quorum's voters (this node among them), the controller
	// listener (Raft between voters, and brokers' requests to the active
	// controller; the broker owns it from Open on) and the address to dial
	// peers from (nil: any). Without Voters the node is a single-node
	// cluster, a quorum of one.
	//
	// process.roles (in Static) says what the node is: a voter has the
	// controller role and is listed in Voters; a broker-only node
	// (process.roles=broker) is not listed, has no ControllerMux and
	// follows the quorum as an observer through BrokerMux; a
	// controller-only node (process.roles=controller) hosts no partitions
	// and does not register as a broker.
	Voters        []metadata.Voter
	ControllerMux *netmux.Mux
	LocalAddr     net.Addr
	// BrokerMux is a broker-only node's Kafka listener, demultiplexed: the
	// active controller sends the metadata log to the address the broker
	// registered, so its raft connections arrive there. The broker owns
	// it from Open on and takes BrokerMux.Raft(); the caller serves
	// BrokerMux.Kafka().
	BrokerMux *netmux.Mux
	// MaxOpenFiles bounds the segment files all partitions hold open at
	// once (log.FileCache): idle ones are closed and reopened on demand,
	// so a broker with more partitions than file descriptors still starts.
	// 0 is half of RLIMIT_NOFILE (see defaultMaxOpenFiles); the other half
	// is left to client connections, the metadata quorum and checkpoints.
	MaxOpenFiles int
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Broker is one node. Safe for concurrent use.
type Broker struct {
	cfg    Config
	fs     vfs.FS
	logger *slog.Logger
	meta   *metadata.Store

	// recMu serializes reconciles and guards strayDirsMoved and
	// reconciled (the image the last successful reconcile applied); mu
	// guards parts.
	recMu          sync.Mutex
	strayDirsMoved bool
	reconciled     *metadata.Image
	mu             sync.RWMutex
	parts          map[TopicPartition]*hosted

	// fetchers fetch the partitions this node follows, one per leader
	// (fetcher.go); fetchMu guards the map.
	fetchMu  sync.Mutex
	fetchers map[int32]*fetcher
	// isrShrinks and isrExpands count the ISR changes this broker's
	// leaderships made (metrics).
	isrShrinks, isrExpands atomic.Uint64
	// leaderQuota and followerQuota measure the throttled replication
	// this broker sends as a leader and fetches as a follower (KIP-73,
	// throttle.go); their zero values are ready, so Open sets nothing.
	leaderQuota, followerQuota replicationQuota

	clean bool
	// cleaner is the log cleaner (cleaner.go).
	cleaner *cleaner
	// flusher fsyncs data appended without an acks=all waiter (flusher.go).
	flusher *flusher
	// producerIDs hands out producer ids in blocks (producerids.go).
	producerIDs *producerIDs
	// files opens and closes every partition's segment files, at most
	// cfg.MaxOpenFiles at once.
	files *log.FileCache
	// dirs are the log directories, the data dir first (logdirs.go);
	// each one's health is shared by the partitions' logs in it (Kafka's
	// LogDirFailureChannel): offline after a write or fsync failed, full
	// while a write finds no space. where says which dir holds each
	// partition (open or found at start) and preferred where a partition
	// not here yet goes (AlterReplicaLogDirs); dirMu guards both.
	dirs      []*dataDir
	dirMu     sync.Mutex
	where     map[TopicPartition]*dataDir
	preferred map[TopicPartition]*dataDir
	// moves are the partitions moving between log dirs (replicamove.go),
	// guarded by moveMu; moveWake starts the mover.
	moveMu   sync.Mutex
	moves    map[TopicPartition]*replicaMove
	moveWake chan struct{}

	// groups is the group coordinator; it reads and appends to the
	// __consumer_offsets partitions and is closed before them.
	groups *group.Coordinator
	// txns is the transaction coordinator (txn.go); closed before groups.
	txns *txn.Coordinator

	// A cluster's node (cluster.go): its roles, its controller, the
	// controller listener's server, the link to the active controller, and
	// this broker's registration.
	roles       roles
	ctrl        *controller.Controller
	ctrlHandler *controller.Handler
	ctrlSrv     *server.Server
	link        *controllerLink
	fwd         *forwarder
	incarnation [16]byte
	brokerEpoch atomic.Int64
	fenced      atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  chan struct{}
}

// hosted is an open partition, the topic id it belongs to, and whether
// this node leads it (as of the last reconcile).
type hosted struct {
	p       *partition.Partition
	topicID metadata.TopicID
	leader  atomic.Bool
	// lead is this node's leadership of the partition when it is
	// replicated (replication.go); nil otherwise.
	lead atomic.Pointer[LeaderReplica]
}

// Open starts the broker: metadata quorum, broker registration, and every
// partition it leads, recovered.
func Open(cfg Config) (*Broker, error) { return OpenContext(context.Background(), cfg) }

// OpenContext is Open that gives up waiting for the metadata quorum, the
// registration and the unfencing when start ends: a node stopped while the
// other voters are not up yet stops at once instead of after
// clusterStartTimeout. start only bounds the start; the broker runs on
// after it ends, until Close.
func OpenContext(start context.Context, cfg Config) (*Broker, error) {
	if cfg.FS == nil {
		cfg.FS = vfs.OS()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetentionCheckInterval <= 0 {
		cfg.RetentionCheckInterval = defaultRetentionCheckInterval
	}
	if cfg.Static == nil {
		cfg.Static = map[string]string{}
	}
	if cfg.MaxOpenFiles <= 0 {
		cfg.MaxOpenFiles = defaultMaxOpenFiles()
	}
	if err := config.ValidateBrokerConfigs(cfg.Static); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b := &Broker{cfg: cfg, fs: cfg.FS, logger: cfg.Logger, parts: map[TopicPartition]*hosted{}, ready: make(chan struct{}),
		fetchers:  map[int32]*fetcher{},
		files:     log.NewFileCache(cfg.MaxOpenFiles),
		preferred: map[TopicPartition]*dataDir{}, moves: map[TopicPartition]*replicaMove{}, moveWake: make(chan struct{}, 1)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if err := vfs.MkdirAll(b.fs, cfg.DataDir); err != nil {
		return nil, fmt.Errorf("broker: create data dir %s: %w (check the path and its permissions)", cfg.DataDir, err)
	}
	if _, err := b.fs.Stat(filepath.Join(cfg.DataDir, cleanShutdownFile)); err == nil {
		b.clean = true
		if err := b.fs.Remove(filepath.Join(cfg.DataDir, cleanShutdownFile)); err != nil {
			return nil, fmt.Errorf("broker: remove clean-shutdown marker: %w", err)
		}
		if err := b.fs.SyncDir(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("broker: sync data dir: %w", err)
		}
	}
	props, hasProps, err := checkDataDir(b.fs, cfg.DataDir, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	if err := b.openLogDirs(); err != nil {
		return nil, err
	}
	if err := b.locatePartitions(); err != nil {
		return nil, err
	}
	closeMuxes := func() {
		if cfg.ControllerMux != nil {
			cfg.ControllerMux.Close()
		}
		if cfg.BrokerMux != nil {
			cfg.BrokerMux.Close()
		}
	}
	if b.roles, err = nodeRoles(cfg); err != nil {
		closeMuxes()
		return nil, err
	}
	mcfg := metadata.Config{Dir: filepath.Join(cfg.DataDir, metaDir), NodeID: cfg.NodeID, Logger: cfg.Logger, FS: b.fs}
	if b.clustered() {
		mcfg.Voters = cfg.Voters
		if b.roles.controller {
			mcfg.Listener = cfg.ControllerMux.Raft()
		} else {
			mcfg.Listener, mcfg.Observer = cfg.BrokerMux.Raft(), true
		}
		mcfg.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			return netmux.DialRaft(addr, timeout, cfg.LocalAddr)
		}
	}
	b.meta, err = metadata.Open(mcfg)
	if err != nil {
		closeMuxes()
		return nil, fmt.Errorf("broker: open metadata: %w", err)
	}
	startCtx, startCancel := context.WithCancel(b.ctx)
	defer startCancel()
	defer context.AfterFunc(start, startCancel)()
	ctx, cancel := context.WithTimeout(startCtx, metadataTimeout)
	defer cancel()
	fail := func(err error) (*Broker, error) {
		b.cancel()
		if b.ctrlSrv != nil {
			b.ctrlSrv.Close()
		}
		if b.link != nil {
			b.link.close()
		}
		b.wg.Wait()
		b.meta.Close()
		closeMuxes()
		return nil, err
	}
	if !b.clustered() {
		if err := b.meta.WaitReady(ctx); err != nil {
			return fail(fmt.Errorf("broker: metadata quorum not ready: %w", err))
		}
	} else {
		if b.roles.controller {
			b.startController()
		}
		b.link = newControllerLink(b.meta, cfg.Voters, cfg.NodeID, cfg.LocalAddr)
		b.fwd = &forwarder{opts: kclient.Options{ClientID: fmt.Sprintf("sluice-broker-%d", cfg.NodeID), LocalAddr: cfg.LocalAddr},
			conns: map[string]*kclient.Conn{}}
		b.incarnation = newIncarnation()
		qctx, qcancel := context.WithTimeout(startCtx, clusterStartTimeout)
		if !b.roles.controller {
			// An observer is sent the metadata log only once it has
			// registered: register first, with the cluster id its data
			// dir names (none yet on a fresh one).
			err = b.register(qctx, props.ClusterID)
		}
		if err == nil {
			err = b.waitForQuorum(qctx)
		}
		qcancel()
		if err != nil {
			return fail(fmt.Errorf("broker: %w", err))
		}
	}
	if err := checkClusterID(b.fs, cfg.DataDir, cfg.NodeID, props, hasProps, b.meta.Image().ClusterID); err != nil {
		return fail(err)
	}
	if err := b.checkLogDirClusters(b.meta.Image().ClusterID); err != nil {
		return fail(err)
	}
	if !b.clustered() {
		if err := b.meta.RegisterBroker(ctx, metadata.Broker{NodeID: cfg.NodeID, Host: cfg.Host, Port: cfg.Port, Rack: cfg.Rack}); err != nil {
			return fail(fmt.Errorf("broker: register: %w", err))
		}
	} else if b.roles.broker {
		if b.roles.controller {
			if err := b.register(ctx, b.meta.Image().ClusterID); err != nil {
				return fail(fmt.Errorf("broker: %w", err))
			}
		}
		b.fenced.Store(true)
		b.wg.Add(2)
		go func() {
			defer b.wg.Done()
			b.heartbeatLoop(b.ctx)
		}()
		go func() {
			defer b.wg.Done()
			b.isrLoop(b.ctx)
		}()
		b.waitUnfenced(ctx)
	}
	if err := start.Err(); err != nil {
		return fail(fmt.Errorf("broker: stopped while starting: %w", err))
	}
	b.cleaner = newCleaner(b)
	b.producerIDs = &producerIDs{meta: b.meta}
	if b.clustered() {
		b.producerIDs.allocate = b.allocateAtController
	}
	b.flusher = newFlusher(time.Duration(b.brokerInt("log.flush.max.delay.ms"))*time.Millisecond, b.logger)
	if err := b.Reconcile(); err != nil {
		b.closePartitions()
		b.meta.Close()
		return nil, err
	}
	b.openGroups()
	if err := b.openTxns(); err != nil {
		b.groups.Close()
		b.closePartitions()
		b.meta.Close()
		return nil, fmt.Errorf("broker: load transactions: %w", err)
	}
	close(b.ready)
	b.wg.Add(3)
	go b.watchMetadata()
	go b.background()
	go b.mover()
	b.wg.Add(2)
	go b.cleaner.run(b.ctx)
	go func() {
		defer b.wg.Done()
		b.flusher.run(b.ctx)
	}()
	return b, nil
}

// openGroups creates the group coordinator from the broker configs and,
// when __consumer_offsets exists, starts it loading the groups.
func (b *Broker) openGroups() {
	num := b.brokerInt
	ms := func(name string) time.Duration { return time.Duration(num(name)) * time.Millisecond }
	delay := ms("group.initial.rebalance.delay.ms")
	if delay <= 0 {
		delay = -1 // none
	}
	b.groups = group.New(group.Config{
		Settings: group.Settings{
			MinSessionTimeout:     ms("group.min.session.timeout.ms"),
			MaxSessionTimeout:     ms("group.max.session.timeout.ms"),
			InitialRebalanceDelay: delay,
			MaxSize:               int(num("group.max.size")),
			OffsetsRetention:      time.Duration(num("offsets.retention.minutes")) * time.Minute,
			MaxMetadataBytes:      int(num("offset.metadata.max.bytes")),

			ConsumerSessionTimeout:    ms("group.consumer.session.timeout.ms"),
			ConsumerHeartbeatInterval: ms("group.consumer.heartbeat.interval.ms"),
		},
		RetentionCheckInterval: ms("offsets.retention.check.interval.ms"),
		Partition:              func(p int32) (*partition.Partition, bool) { return b.Partition(group.Topic, p) },
		Logger:                 b.logger.With("component", "group-coordinator"),
		Now:                    b.cfg.Now,
	})
	if b.clustered() {
		return // partitions are elected as this broker leads them (electCoordinators)
	}
	if t, ok := b.Image().Topics[group.Topic]; ok {
		b.groups.Start(len(t.Partitions))
	}
}

// Groups is the group coordinator. It serves once started: at Open when
// __consumer_offsets exists, else by whoever creates that topic.
func (b *Broker) Groups() *group.Coordinator { return b.groups }

// Meta is the metadata store.
func (b *Broker) Meta() *metadata.Store { return b.meta }

// Image is the current metadata image.
func (b *Broker) Image() *metadata.Image { return b.meta.Image() }

// NodeID is this broker's id.
func (b *Broker) NodeID() int32 { return b.cfg.NodeID }

// DataDir is where the data lives.
func (b *Broker) DataDir() string { return b.cfg.DataDir }

// Ready is closed once recovery has finished and metadata is loaded.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// FileStats reports the segment files the partitions hold open.
func (b *Broker) FileStats() log.FileCacheStats { return b.files.Stats() }

// Partition returns the open partition, if this broker leads it. A
// replica it holds but does not lead is not returned: clients are served
// only by leaders (NOT_LEADER_OR_FOLLOWER otherwise).
func (b *Broker) Partition(topic string, p int32) (*partition.Partition, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	r, ok := b.parts[TopicPartition{topic, p}]
	if !ok || !r.leader.Load() {
		return nil, false
	}
	return r.p, true
}

// Partitions returns every open partition.
func (b *Broker) Partitions() map[TopicPartition]*partition.Partition {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make(map[TopicPartition]*partition.Partition, len(b.parts))
	for tp, r := range b.parts {
		out[tp] = r.p
	}
	return out
}

// BrokerConfigs is this broker's configs: static, cluster-wide dynamic, and
// its own dynamic ones (which take precedence), from the current image.
func (b *Broker) BrokerConfigs() config.Broker {
	img := b.meta.Image()
	return config.Broker{Static: b.cfg.Static, Dynamic: img.BrokerConfigs, PerBroker: img.PerBrokerConfigs[b.cfg.NodeID]}
}

// TopicConfig resolves a topic's configs.
func (b *Broker) TopicConfig(t *metadata.Topic) (config.Topic, error) {
	return config.TopicConfig(t.Configs, b.BrokerConfigs())
}

// partitionConfig turns topic configs, and the broker's flush policy, into
// what a partition enforces.
func (b *Broker) partitionConfig(tc config.Topic) partition.Config {
	policy, _ := b.BrokerConfigs().Value("log.flush.policy")
	return partition.Config{
		DurableHighWatermark: policy != config.FlushPolicyNone,
		Log: log.Config{
			SegmentBytes:       tc.SegmentBytes,
			SegmentMs:          segmentMs(tc),
			IndexIntervalBytes: int(tc.IndexIntervalBytes),
			RetentionMs:        tc.RetentionMs,
			RetentionBytes:     tc.RetentionBytes,
			FileDeleteDelay:    time.Duration(tc.FileDeleteDelayMs) * time.Millisecond,

			Compact:                tc.Compact,
			NoDelete:               !tc.Delete,
			MinCompactionLagMs:     tc.MinCompactionLagMs,
			MaxCompactionLagMs:     tc.MaxCompactionLagMs,
			DeleteRetentionMs:      tc.DeleteRetentionMs,
			MinCleanableDirtyRatio: tc.MinCleanableDirtyRatio,
		},
		MaxMessageBytes:      tc.MaxMessageBytes,
		LogAppendTime:        tc.LogAppendTime,
		TimestampBeforeMaxMs: tc.MessageTimestampBeforeMaxMs,
		TimestampAfterMaxMs:  tc.MessageTimestampAfterMaxMs,
		CompressionType:      tc.CompressionType,
		GzipLevel:            tc.CompressionGzipLevel,
		LZ4Level:             tc.CompressionLz4Level,
		ZstdLevel:            tc.CompressionZstdLevel,
	}
}

func partitionDir(tp TopicPartition) string {
	return tp.Topic + "-" + strconv.Itoa(int(tp.Partition))
}

// Reconcile makes the open partitions match the metadata image: opens those
// this node leads, closes and deletes those of deleted topics, applies
// config changes. Handlers call it after a metadata write so that a topic
// they created is ready when they answer.
func (b *Broker) Reconcile() error {
	b.recMu.Lock()
	defer b.recMu.Unlock()
	img := b.meta.Image()
	// Only topics whose metadata changed since the last reconcile that
	// succeeded need work: the image shares unchanged topics, so a changed
	// one is a new pointer. A change of broker configs, cluster-wide or
	// this broker's own (defaults of every topic config), or a failed
	// reconcile makes the next one whole.
	prev := b.reconciled
	self := b.cfg.NodeID
	whole := prev == nil || !maps.Equal(prev.BrokerConfigs, img.BrokerConfigs) ||
		!maps.Equal(prev.PerBrokerConfigs[self], img.PerBrokerConfigs[self])
	if prev == nil || !maps.Equal(prev.Brokers, img.Brokers) {
		// A broker fenced, unfenced or shutting down: the leaderships
		// here learn which followers may be in sync.
		b.refreshEligibility(img)
	}
	changed := func(t *metadata.Topic) bool { return whole || prev.Topics[t.Name] != t }
	hosts := func(t *metadata.Topic, p int32) bool {
		return t != nil && p >= 0 && int(p) < len(t.Partitions) && slices.Contains(t.Partitions[p].Replicas, b.cfg.NodeID)
	}
	// Close and delete what is gone: a deleted (or deleted and recreated)
	// topic, or a partition this node is no longer a replica of. A
	// partition it merely stopped leading stays: its data is a replica.
	b.mu.RLock()
	var gone []TopicPartition
	for tp, r := range b.parts {
		if t := img.Topics[tp.Topic]; !hosts(t, tp.Partition) || t.ID != r.topicID {
			gone = append(gone, tp)
		}
	}
	b.mu.RUnlock()
	for _, tp := range gone {
		b.stopFollowing(tp)
		b.mu.Lock()
		r := b.parts[tp]
		delete(b.parts, tp)
		b.mu.Unlock()
		if lr := r.lead.Swap(nil); lr != nil {
			lr.close()
		}
		b.cancelMove(tp)
		if err := r.p.Delete(); err != nil {
			b.logger.Error("delete partition", "partition", partitionDir(tp), "err", err)
		}
		if d, ok := b.logDirOf(tp); ok {
			_ = b.fs.SyncDir(d.path)
		}
		b.forget(tp)
		b.logger.Info("deleted partition", "partition", partitionDir(tp))
	}
	// Move aside directories of topics deleted while we were down: once,
	// at the first reconcile; later deletions go through gone above.
	if !b.strayDirsMoved {
		want := map[TopicPartition]bool{}
		for _, t := range img.Topics {
			for _, p := range t.Partitions {
				want[TopicPartition{t.Name, p.ID}] = true
			}
		}
		if err := b.moveStrayDirs(want); err != nil {
			return err
		}
		b.strayDirsMoved = true
	}
	// Open in parallel: each open is a few small file operations and
	// fsyncs, which overlap well; one by one, 10,000 partitions take long.
	var (
		errMu sync.Mutex
		errs  []error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, maxParallelPartitionOps)
	)
	addErr := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	for _, t := range img.Topics {
		if !changed(t) {
			continue
		}
		tc, err := b.TopicConfig(t)
		if err != nil {
			b.logger.Warn("topic configs invalid; using defaults", "topic", t.Name, "err", err)
			tc, _ = config.TopicConfig(nil, b.BrokerConfigs())
		}
		pc := b.partitionConfig(tc)
		for _, part := range t.Partitions {
			if !slices.Contains(part.Replicas, b.cfg.NodeID) {
				continue
			}
			lead := part.Leader == b.cfg.NodeID
			tp := TopicPartition{t.Name, part.ID}
			b.mu.RLock()
			r, ok := b.parts[tp]
			b.mu.RUnlock()
			if ok {
				r.p.SetConfig(pc)
				if err := b.applyRole(r, tp, t, part); err != nil {
					addErr(err)
				}
				b.abortCopiedTxns(r, t)
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				p, err := b.openPartition(tp, t, pc, !lead)
				if err != nil {
					addErr(err)
					return
				}
				r := &hosted{p: p, topicID: t.ID}
				if err := b.applyReplicaRole(r, tp, t, part); err != nil {
					p.Close()
					addErr(err)
					return
				}
				b.mu.Lock()
				b.parts[tp] = r
				b.mu.Unlock()
				// Once the partition is findable: a coordinator loads it
				// through Broker.Partition.
				b.applyCoordinatorRole(tp, len(t.Partitions), part, r.leader.Load())
				b.abortCopiedTxns(r, t)
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		b.reconciled = nil
		return errors.Join(errs...)
	}
	b.reconciled = img
	return nil
}

// abortCopiedTxns aborts, on a leader of a topic that is not an
// offset-preserving copy (or no longer: a failover deleted
// sluice.mirror.source), the source's transactions the copy left open
// (partition.AbortMirroredTransactions). A failure is logged; the next
// reconcile of the topic, or the next leader, tries again.
func (b *Broker) abortCopiedTxns(r *hosted, t *metadata.Topic) {
	if t.Configs[config.MirrorSourceConfig] != "" {
		return
	}
	n, err := r.p.AbortMirroredTransactions()
	if n > 0 {
		b.logger.Info("aborted the transactions a copy's source left open", "topic", t.Name, "transactions", n)
	}
	if err != nil {
		b.logger.Warn("abort the transactions a copy's source left open", "topic", t.Name, "err", err)
	}
}

func (b *Broker) openPartition(tp TopicPartition, t *metadata.Topic, pc partition.Config, follower bool) (*partition.Partition, error) {
	d := b.dirFor(tp)
	dir := filepath.Join(d.path, partitionDir(tp))
	if err := vfs.MkdirAll(b.fs, dir); err != nil {
		return nil, fmt.Errorf("broker: create %s: %w", dir, err)
	}
	if err := b.checkPartitionMetadata(dir, t.ID); err != nil {
		return nil, err
	}
	p, err := partition.Open(partition.Options{
		FS: b.fs, Dir: dir, Config: pc,
		RecoveryPoint:  d.recovery[tp],
		LogStartOffset: d.logStart[tp],
		Clean:          b.clean,
		LeaderEpoch:    t.Partitions[tp.Partition].LeaderEpoch,
		Follower:       follower,
		Replicated:     len(t.Partitions[tp.Partition].Replicas) > 1,
		Logger:         b.logger.With("partition", partitionDir(tp)),
		Now:            b.cfg.Now,
		OnSync:         b.cfg.OnFsync,
		OnUnflushed:    b.flusher.add,
		Files:          b.files,
		LogDir:         d.state,

		FirstDirtyOffset: b.cleaner.checkpointed(tp),
	})
	if err != nil {
		return nil, fmt.Errorf("broker: open partition %s: %w", partitionDir(tp), err)
	}
	return p, nil
}

// checkPartitionMetadata writes partition.metadata (topic id) for a new
// directory; an old one that belongs to another topic of the same name (a
// deleted one, or one the metadata no longer knows) is moved aside as a
// stray directory, never deleted, and a new one is made in its place.
func (b *Broker) checkPartitionMetadata(dir string, id metadata.TopicID) error {
	name := filepath.Join(dir, partitionMetadataFile)
	want := fmt.Sprintf("version: 0\ntopic_id: %s\n", id)
	f, err := b.fs.Open(name)
	if err == nil {
		buf := make([]byte, 256)
		n, _ := f.ReadAt(buf, 0)
		f.Close()
		if string(buf[:n]) == want {
			return nil
		}
		stray := strayName(dir)
		b.logger.Warn("partition directory belongs to another topic of the same name; moving it aside",
			"dir", dir, "to", stray, "found", strings.TrimSpace(string(buf[:n])), "topic_id", id.String())
		if err := vfs.Rename(b.fs, dir, stray); err != nil {
			return fmt.Errorf("broker: move %s aside: %w", dir, err)
		}
		if err := vfs.MkdirAll(b.fs, dir); err != nil {
			return fmt.Errorf("broker: create %s: %w", dir, err)
		}
	} else if !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("broker: read %s: %w", name, err)
	}
	if err := vfs.WriteFileAtomic(b.fs, dir, name, []byte(want)); err != nil {
		return fmt.Errorf("broker: write %s: %w", name, err)
	}
	return b.fs.SyncDir(filepath.Dir(dir))
}

// moveStrayDirs moves aside the partition directories that no partition
// of the metadata owns (a topic deleted while this node was down), as Kafka
// 3.7+ does: renamed "<dir>.<id>-stray", never deleted, since a directory
// the metadata does not know may be the only copy of its data.
func (b *Broker) moveStrayDirs(want map[TopicPartition]bool) error {
	for _, d := range b.dirs {
		dirs, err := partitionDirs(b.fs, d.path)
		if err != nil {
			return err
		}
		for _, n := range dirs {
			tp, _ := parsePartitionDir(n)
			if want[tp] {
				continue
			}
			stray := strayName(n)
			b.logger.Warn("partition directory unknown to the metadata; moving it aside", "dir", filepath.Join(d.path, n), "to", stray)
			if err := vfs.Rename(b.fs, filepath.Join(d.path, n), filepath.Join(d.path, stray)); err != nil {
				return fmt.Errorf("broker: move %s aside: %w", n, err)
			}
			b.forget(tp)
		}
	}
	return nil
}

// watchMetadata reconciles on every metadata change. It takes the change
// channel before it reconciles (metadata.Store.Changes' pattern), so a
// change published while a reconcile reads the image is never missed, and
// it reconciles once at its start for what changed since Open's.
func (b *Broker) watchMetadata() {
	defer b.wg.Done()
	for {
		ch := b.meta.Changes()
		if err := b.Reconcile(); err != nil {
			b.logger.Error("applying metadata", "err", err)
		}
		select {
		case <-b.ctx.Done():
			return
		case <-ch:
		}
	}
}

// background writes checkpoints and enforces retention.
func (b *Broker) background() {
	defer b.wg.Done()
	cp := time.NewTicker(checkpointInterval)
	defer cp.Stop()
	ret := time.NewTicker(b.cfg.RetentionCheckInterval)
	defer ret.Stop()
	pexp := time.NewTicker(time.Duration(b.brokerInt("producer.id.expiration.check.interval.ms")) * time.Millisecond)
	defer pexp.Stop()
	probe := time.NewTicker(noSpaceProbeInterval)
	defer probe.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-probe.C:
			if b.anyNoSpace() {
				if err := b.ProbeLogDirs(); err != nil {
					b.logger.Debug("log dir still full", "err", err)
				}
			}
		case <-pexp.C:
			b.ExpireProducers()
		case <-cp.C:
			if err := b.Checkpoint(); err != nil {
				b.logger.Error("checkpoint", "err", err)
			}
		case <-ret.C:
			b.EnforceRetention()
		}
	}
}

// EnforceRetention deletes segments past retention in every partition.
func (b *Broker) EnforceRetention() {
	for tp, p := range b.Partitions() {
		if n := p.Log().Retain(); n > 0 {
			b.logger.Info("retention deleted segments", "partition", partitionDir(tp), "segments", n)
		}
	}
}

// Checkpoint writes producer snapshots and the recovery-point and
// log-start-offset checkpoints. Nothing is written to an offline log
// directory (as Kafka): the next start recovers from the last checkpoint.
func (b *Broker) Checkpoint() error {
	parts := b.Partitions()
	rec := make(map[TopicPartition]int64, len(parts))
	start := make(map[TopicPartition]int64, len(parts))
	var errs []error
	for tp, p := range parts {
		if d, ok := b.logDirOf(tp); ok && d.state.Offline() != nil {
			continue
		}
		if err := p.Checkpoint(); err != nil {
			errs = append(errs, err)
		}
		rec[tp] = p.Log().DurableOffset()
		start[tp] = p.Log().StartOffset()
	}
	errs = append(errs, b.writeCheckpoints(rec, start)...)
	if b.dirs[0].state.Offline() == nil {
		if err := b.cleaner.writeCheckpoint(); err != nil {
			errs = append(errs, err)
		}
	}
	return summarize(errs)
}

// summarize joins errors, quoting at most maxReportedErrors of them.
func summarize(errs []error) error {
	if len(errs) <= maxReportedErrors {
		return errors.Join(errs...)
	}
	return fmt.Errorf("%w\n(and %d more)", errors.Join(errs[:maxReportedErrors]...), len(errs)-maxReportedErrors)
}

// isStorageError says whether err comes from the disk (a failed or full
// log directory) rather than from the broker: Close reports those once.
func isStorageError(err error) bool {
	return errors.Is(err, log.ErrStorage) || errors.Is(err, partition.ErrStorage) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// Close stops the group coordinator and background work, closes every
// partition cleanly, writes the checkpoints and the clean-shutdown marker,
// and closes the metadata store.
//
// Partitions that cannot close cleanly for their storage (a failed or full
// log directory) are closed as they are and reported once, in one log
// line, not as an error: the rest shut down cleanly and the next start
// recovers those from their recovery points. The clean-shutdown marker is
// then not written, and with the directory offline no checkpoint either
// (as Kafka). Other failures are returned.
func (b *Broker) Close() error {
	if b.clustered() {
		b.controlledShutdown()
		// Stop applying metadata before the coordinators close: the
		// leaderships the controlled shutdown moved must not be loaded
		// (or fail to load) on the way out.
		b.cancel()
		b.wg.Wait()
		b.stopFetchers()
	}
	b.txns.Close()
	b.groups.Close()
	b.cancel()
	b.wg.Wait()
	b.stopFetchers()
	b.recMu.Lock()
	defer b.recMu.Unlock()
	var errs, storageErrs []error
	parts := b.Partitions()
	rec := make(map[TopicPartition]int64, len(parts))
	start := make(map[TopicPartition]int64, len(parts))
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, maxParallelPartitionOps)
	)
	noteErr := func(err error) {
		if isStorageError(err) || len(b.offlineDirs()) > 0 {
			storageErrs = append(storageErrs, err)
		} else {
			errs = append(errs, err)
		}
	}
	for tp, p := range parts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			logStart := p.Log().StartOffset()
			err := p.Close()
			mu.Lock()
			defer mu.Unlock()
			start[tp] = logStart
			rec[tp] = p.Log().DurableOffset()
			if err != nil {
				noteErr(fmt.Errorf("close %s: %w", partitionDir(tp), err))
			}
		}()
	}
	wg.Wait()
	b.mu.Lock()
	b.parts = map[TopicPartition]*hosted{}
	b.mu.Unlock()
	offline := b.offlineDirs()
	for _, err := range b.writeCheckpoints(rec, start) {
		noteErr(err)
	}
	if b.dirs[0].state.Offline() == nil {
		if err := b.cleaner.writeCheckpointOf(parts); err != nil {
			noteErr(err)
		}
	}
	if b.ctrlSrv != nil {
		b.ctrlSrv.Close()
	}
	if b.link != nil {
		b.link.close()
	}
	if b.fwd != nil {
		b.fwd.close()
	}
	if err := b.meta.Close(); err != nil {
		errs = append(errs, err)
	}
	if b.cfg.ControllerMux != nil {
		b.cfg.ControllerMux.Close()
	}
	if b.cfg.BrokerMux != nil {
		b.cfg.BrokerMux.Close()
	}
	if len(storageErrs) > 0 || len(offline) > 0 {
		attrs := []any{"failures", len(storageErrs), "err", summarize(storageErrs)}
		for _, st := range offline {
			attrs = append(attrs, "offline_dir", st.Path, "offline_since", st.Offline.Since, "offline_cause", st.Offline.Err)
		}
		b.logger.Error("shut down with the log directory failed or full: the partitions that could not be "+
			"flushed or checkpointed were closed as they are, the rest cleanly; the next start recovers them "+
			"from their recovery points", attrs...)
	}
	if len(errs) == 0 && len(storageErrs) == 0 && len(offline) == 0 {
		if err := vfs.WriteFileAtomic(b.fs, b.cfg.DataDir, filepath.Join(b.cfg.DataDir, cleanShutdownFile), nil); err != nil {
			errs = append(errs, err)
		}
	}
	return summarize(errs)
}

func (b *Broker) closePartitions() {
	for _, p := range b.Partitions() {
		p.Close()
	}
}

// writeCheckpoint writes Kafka's offset checkpoint format: a version line,
// a count line, then "topic partition offset" lines.
func writeCheckpoint(fs vfs.FS, dir, name string, offs map[TopicPartition]int64) error {
	tps := make([]TopicPartition, 0, len(offs))
	for tp := range offs {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
	var sb strings.Builder
	fmt.Fprintf(&sb, "0\n%d\n", len(tps))
	for _, tp := range tps {
		fmt.Fprintf(&sb, "%s %d %d\n", tp.Topic, tp.Partition, offs[tp])
	}
	if err := vfs.WriteFileAtomic(fs, dir, filepath.Join(dir, name), []byte(sb.String())); err != nil {
		return fmt.Errorf("broker: write %s: %w", name, err)
	}
	return nil
}

// maxCheckpointBytes bounds what is read of a checkpoint file.
const maxCheckpointBytes = 64 << 20

func readCheckpoint(fs vfs.FS, name string) (map[TopicPartition]int64, error) {
	out := map[TopicPartition]int64{}
	buf, err := vfs.ReadFile(fs, name, maxCheckpointBytes)
	if errors.Is(err, iofs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if len(lines) < 2 || lines[0] != "0" {
		return nil, fmt.Errorf("%s: bad header", name)
	}
	n, err := strconv.Atoi(lines[1])
	if err != nil || n != len(lines)-2 {
		return nil, fmt.Errorf("%s: count %q does not match %d lines", name, lines[1], len(lines)-2)
	}
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%s: bad line %q", name, line)
		}
		p, err1 := strconv.ParseInt(f[1], 10, 32)
		off, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: bad line %q", name, line)
		}
		out[TopicPartition{f[0], int32(p)}] = off
	}
	return out, nil
}
