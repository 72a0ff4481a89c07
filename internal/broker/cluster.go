package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/controller"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/server"
)

// Cluster timing.
const (
	// controlledShutdownTimeout bounds how long Close waits for the
	// controller to move this broker's leaderships away before it stops
	// anyway (Kafka retries controlled shutdown for a similar time).
	controlledShutdownTimeout = 30 * time.Second
)

// clustered reports whether this node is one of several.
func (b *Broker) clustered() bool { return len(b.cfg.Voters) > 0 }

// roles are what process.roles makes a node.
type roles struct {
	broker     bool // serves clients, hosts partitions, registers with the controller
	controller bool // a voter of the metadata quorum; runs the controller while it leads
}

// nodeRoles reads process.roles from cfg.Static and checks it against the
// voters list and listeners: Kafka's rule that a node is a voter exactly
// when it has the controller role.
func nodeRoles(cfg Config) (roles, error) {
	v, ok := cfg.Static["process.roles"]
	if !ok {
		return roles{broker: true, controller: true}, nil
	}
	elems := config.ListElems(v) // validated: broker, controller or both
	r := roles{broker: slices.Contains(elems, "broker"), controller: slices.Contains(elems, "controller")}
	if !r.broker && !r.controller {
		return r, fmt.Errorf("broker: process.roles=%q names no role: use broker, controller, or broker,controller", v)
	}
	if r.broker && r.controller {
		return r, nil
	}
	if len(cfg.Voters) == 0 {
		return r, fmt.Errorf("broker: process.roles=%s needs --controller-quorum-voters: a node with one role is part of a cluster with the other role elsewhere", v)
	}
	voter := slices.ContainsFunc(cfg.Voters, func(vt metadata.Voter) bool { return vt.ID == cfg.NodeID })
	switch {
	case r.controller && !voter:
		return r, fmt.Errorf("broker: node %d has process.roles=controller but is not in --controller-quorum-voters (%v): list it there", cfg.NodeID, cfg.Voters)
	case r.controller && cfg.ControllerMux == nil:
		return r, fmt.Errorf("broker: process.roles=controller needs --controller-listen")
	case r.broker && voter:
		return r, fmt.Errorf("broker: node %d has process.roles=broker but is in --controller-quorum-voters (%v): a voter needs the controller role (process.roles=broker,controller), or drop it from the voters", cfg.NodeID, cfg.Voters)
	case r.broker && cfg.BrokerMux == nil:
		return r, fmt.Errorf("broker: BUG: a broker-only node needs Config.BrokerMux, its Kafka listener demultiplexed for the quorum's raft connections")
	case r.broker && cfg.ControllerMux != nil:
		return r, fmt.Errorf("broker: process.roles=broker takes no --controller-listen: a broker-only node has no controller listener (the controllers send it the metadata log on its Kafka listener)")
	}
	return r, nil
}

// IsBroker reports whether this node has the broker role (serves clients).
func (b *Broker) IsBroker() bool { return b.roles.broker }

// startController starts this node's controller (acting while it is the
// quorum's leader) and serves the controller listener's Kafka protocol.
func (b *Broker) startController() {
	b.ctrl = controller.New(controller.Config{
		Meta:              b.meta,
		SessionTimeout:    time.Duration(b.brokerInt("broker.session.timeout.ms")) * time.Millisecond,
		HeartbeatInterval: time.Duration(b.brokerInt("broker.heartbeat.interval.ms")) * time.Millisecond,
		Unclean: func(t *metadata.Topic) bool {
			tc, err := b.TopicConfig(t)
			return err == nil && tc.UncleanLeaderElectionEnable
		},
		Logger:           b.logger.With("component", "controller"),
		Now:              b.cfg.Now,
		ImbalancePercent: int(b.brokerInt("leader.imbalance.per.broker.percentage")),
	})
	if v, _ := b.BrokerConfigs().Value("auto.leader.rebalance.enable"); v == "true" {
		b.ctrl.SetRebalance(time.Duration(b.brokerInt("leader.imbalance.check.interval.seconds")) * time.Second)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.ctrl.Run(b.ctx)
	}()
	b.ctrlHandler = controller.NewHandler(b.ctrl, b.logger.With("component", "controller-listener"))
	b.ctrlSrv = server.New(b.ctrlHandler, b.logger)
	go b.ctrlSrv.Serve(b.cfg.ControllerMux.Kafka())
}

// ServeAdmin makes h (the node's Kafka API handler) answer, on the
// controller listener, the admin requests that brokers forward to the
// active controller (keys; see controller.Handler.SetAdmin). A node without
// the controller role ignores it.
func (b *Broker) ServeAdmin(h server.Handler, keys map[int16]bool) {
	if b.ctrlHandler != nil {
		b.ctrlHandler.SetAdmin(h, keys)
	}
}

// Controller is this node's controller (nil on a single node).
func (b *Broker) Controller() *controller.Controller { return b.ctrl }

// waitForQuorum waits until the metadata quorum has a leader that has
// announced itself (the image has a cluster id) and this node has applied
// what it had committed.
func (b *Broker) waitForQuorum(ctx context.Context) error {
	for {
		if img := b.meta.Image(); img.ClusterID != "" && img.ControllerID >= 0 && b.meta.CaughtUp() {
			return nil
		}
		select {
		case <-ctx.Done():
			st := b.meta.Status()
			return fmt.Errorf("no metadata quorum: %w (raft state %s, leader %d, term %d; are a majority of --controller-quorum-voters running and reachable?)",
				ctx.Err(), st.State, st.LeaderID, st.Term)
		case <-b.meta.Changes():
		case <-time.After(controllerRetryDelay):
		}
	}
}

// register registers this broker with the active controller and keeps its
// epoch.
func (b *Broker) register(ctx context.Context, clusterID string) error {
	req := kmsg.NewPtrBrokerRegistrationRequest()
	req.BrokerID = b.cfg.NodeID
	req.ClusterID = clusterID
	req.IncarnationID = b.incarnation
	l := kmsg.NewBrokerRegistrationRequestListener()
	l.Name, l.Host, l.Port = "PLAINTEXT", b.cfg.Host, uint16(b.cfg.Port)
	req.Listeners = []kmsg.BrokerRegistrationRequestListener{l}
	if b.cfg.Rack != "" {
		req.Rack = &b.cfg.Rack
	}
	req.PreviousBrokerEpoch = b.brokerEpoch.Load()
	resp, err := b.link.send(ctx, req, func(r kmsg.Response) int16 { return r.(*kmsg.BrokerRegistrationResponse).ErrorCode })
	if err != nil {
		return fmt.Errorf("register with the controller: %w", err)
	}
	rr := resp.(*kmsg.BrokerRegistrationResponse)
	if err := kerr.ErrorForCode(rr.ErrorCode); err != nil {
		return fmt.Errorf("register with the controller: %w", err)
	}
	b.brokerEpoch.Store(rr.BrokerEpoch)
	b.logger.Info("registered with the controller", "broker_epoch", rr.BrokerEpoch)
	return nil
}

// BrokerEpoch is this broker's epoch from its registration (-1 before).
func (b *Broker) BrokerEpoch() int64 { return b.brokerEpoch.Load() }

// Fenced reports whether the controller has this broker fenced.
func (b *Broker) Fenced() bool { return b.fenced.Load() }

// heartbeat sends one heartbeat and returns the answer.
func (b *Broker) heartbeat(ctx context.Context, wantShutdown bool) (*kmsg.BrokerHeartbeatResponse, error) {
	req := kmsg.NewPtrBrokerHeartbeatRequest()
	req.BrokerID = b.cfg.NodeID
	req.BrokerEpoch = b.brokerEpoch.Load()
	req.CurrentMetadataOffset = int64(b.meta.Image().Index)
	req.WantShutdown = wantShutdown
	resp, err := b.link.send(ctx, req, func(r kmsg.Response) int16 { return r.(*kmsg.BrokerHeartbeatResponse).ErrorCode })
	if err != nil {
		return nil, err
	}
	hr := resp.(*kmsg.BrokerHeartbeatResponse)
	if hr.ErrorCode == kerr.StaleBrokerEpoch.Code {
		// The controller no longer knows this incarnation (it was
		// fenced and re-registered, or the registration was lost):
		// register again.
		if err := b.register(ctx, b.meta.Image().ClusterID); err != nil {
			return nil, err
		}
		return hr, kerr.StaleBrokerEpoch
	}
	if err := kerr.ErrorForCode(hr.ErrorCode); err != nil {
		return nil, err
	}
	if was := b.fenced.Swap(hr.IsFenced); was != hr.IsFenced {
		b.logger.Info("broker fencing changed", "fenced", hr.IsFenced)
	}
	return hr, nil
}

// heartbeatLoop keeps this broker's session with the controller until ctx
// ends.
func (b *Broker) heartbeatLoop(ctx context.Context) {
	every := time.Duration(b.brokerInt("broker.heartbeat.interval.ms")) * time.Millisecond
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		hctx, cancel := context.WithTimeout(ctx, every*4)
		_, err := b.heartbeat(hctx, false)
		cancel()
		if err != nil && ctx.Err() == nil && !errors.Is(err, kerr.StaleBrokerEpoch) {
			b.logger.Warn("heartbeat to the controller failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// controlledShutdown asks the controller to move this broker's
// leaderships and ISR places away and waits until it says the broker may
// stop. It is skipped when this broker holds no replica that another
// could take over, and given up when the quorum has had no leader for
// noQuorumGiveUp (the last nodes of a cluster stopping: nobody is left to
// move anything to).
func (b *Broker) controlledShutdown() {
	if !b.holdsSharedReplicas() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlledShutdownTimeout)
	defer cancel()
	every := time.Duration(b.brokerInt("broker.heartbeat.interval.ms")) * time.Millisecond
	var leaderless time.Time
	for {
		if _, ok := b.meta.Leader(); !ok {
			if leaderless.IsZero() {
				leaderless = time.Now()
			} else if time.Since(leaderless) > noQuorumGiveUp {
				b.logger.Warn("controlled shutdown given up: the metadata quorum has no leader")
				return
			}
		} else {
			leaderless = time.Time{}
			hctx, hcancel := context.WithTimeout(ctx, every*4)
			resp, err := b.heartbeat(hctx, true)
			hcancel()
			if err == nil && resp.ShouldShutdown {
				b.logger.Info("controlled shutdown: leaderships moved away")
				return
			}
		}
		select {
		case <-ctx.Done():
			b.logger.Warn("controlled shutdown timed out; stopping with leaderships still here")
			return
		case <-time.After(every):
		}
	}
}

// noQuorumGiveUp is how long a controlled shutdown waits for a metadata
// quorum leader before it stops without one.
const noQuorumGiveUp = 3 * time.Second

// holdsSharedReplicas reports whether this broker leads, or is in the ISR
// of, a partition with other replicas.
func (b *Broker) holdsSharedReplicas() bool {
	for _, t := range b.meta.Image().Topics {
		for _, p := range t.Partitions {
			if len(p.Replicas) > 1 && (p.Leader == b.cfg.NodeID || slices.Contains(p.ISR, b.cfg.NodeID)) {
				return true
			}
		}
	}
	return false
}

// clusterStartTimeout bounds how long a node waits at start for a
// metadata quorum (a majority of the voters up and reachable).
const clusterStartTimeout = 2 * time.Minute

// unfenceWait bounds how long Open waits for the controller to unfence
// this broker before it serves anyway (fenced: it leads nothing yet).
const unfenceWait = 30 * time.Second

// waitUnfenced waits until a heartbeat finds this broker unfenced, so that
// it opens its partitions as the controller has assigned them once it
// serves.
func (b *Broker) waitUnfenced(ctx context.Context) {
	deadline := time.Now().Add(unfenceWait)
	for b.fenced.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(controllerRetryDelay)
	}
	if b.fenced.Load() {
		b.logger.Warn("still fenced by the controller; serving anyway", "waited", unfenceWait)
	}
}

// Clustered reports whether this node is one of a cluster (started with
// controller quorum voters).
func (b *Broker) Clustered() bool { return b.clustered() }

// Halt stops the broker's background work (heartbeats, replica fetchers,
// the controller's timers, metadata reconciles) without a controlled
// shutdown, as if the process had died, but leaves its files open: tests
// use it to make a node go silent. Close still has to be called.
func (b *Broker) Halt() {
	b.cancel()
	b.wg.Wait()
	b.stopFetchers()
	if b.link != nil {
		b.link.close() // a dead process's connections close
	}
}
