package controller

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/server"
)

// handlerVersions are the APIs the controller listener serves, with the
// versions: what brokers send the controller (KIP-631, KIP-497, KIP-903).
var handlerVersions = map[int16][2]int16{
	18: {0, 4}, // ApiVersions
	56: {0, 3}, // AlterPartition
	62: {0, 4}, // BrokerRegistration
	63: {0, 1}, // BrokerHeartbeat
	67: {0, 0}, // AllocateProducerIds
}

// Handler serves the controller listener's Kafka protocol: the requests
// brokers send the active controller, and the admin requests they forward
// to it (answered by the node's own Kafka API handler, see SetAdmin).
type Handler struct {
	c      *Controller
	logger *slog.Logger
	admin  atomic.Pointer[adminHandler]
	// conns are the connections brokers heartbeat on (their contexts),
	// watched for closing (Controller.ConnectionClosed).
	conns sync.Map // context.Context -> struct{}
}

// adminHandler answers the forwarded admin requests.
type adminHandler struct {
	h    server.Handler
	keys map[int16]bool
}

// adminVersionProbe is the highest request version probed when the
// admin handler's version ranges are listed in ApiVersions.
const adminVersionProbe = 32

// SetAdmin makes h answer the admin requests with the given keys that
// brokers forward here (CreateTopics, DeleteTopics, ...): Kafka's brokers
// forward them to their controller's listener too, which is the only
// listener a dedicated controller (process.roles=controller) has. Until it
// is set, such requests close the connection (the broker retries).
func (h *Handler) SetAdmin(admin server.Handler, keys map[int16]bool) {
	h.admin.Store(&adminHandler{h: admin, keys: keys})
}

var _ server.Handler = (*Handler)(nil)

// NewHandler returns the controller listener's handler for c.
func NewHandler(c *Controller, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{c: c, logger: logger}
}

// Supports implements server.Handler.
func (h *Handler) Supports(key, version int16) bool {
	if r, ok := handlerVersions[key]; ok {
		return version >= r[0] && version <= r[1]
	}
	a := h.admin.Load()
	return a != nil && a.keys[key] && a.h.Supports(key, version)
}

// Handle implements server.Handler. Each request is answered on its own
// goroutine: a metadata write waits for the quorum, and a broker's
// heartbeat must not queue behind another broker's registration.
func (h *Handler) Handle(ctx context.Context, req *server.Request, reply func(server.Reply)) {
	answer := func(resp kmsg.Response) {
		resp.SetVersion(req.Version)
		reply(server.Reply{Msg: resp})
	}
	switch m := req.Msg.(type) {
	case *kmsg.ApiVersionsRequest:
		resp := m.ResponseKind().(*kmsg.ApiVersionsResponse)
		if !h.Supports(18, req.Version) {
			resp.ErrorCode = kerr.UnsupportedVersion.Code
		}
		for k, r := range handlerVersions {
			resp.ApiKeys = append(resp.ApiKeys, kmsg.ApiVersionsResponseApiKey{ApiKey: k, MinVersion: r[0], MaxVersion: r[1]})
		}
		if a := h.admin.Load(); a != nil {
			for k := range a.keys {
				if _, own := handlerVersions[k]; own {
					continue
				}
				lo, hi := int16(-1), int16(-1)
				for v := int16(0); v <= adminVersionProbe; v++ {
					if a.h.Supports(k, v) {
						if lo < 0 {
							lo = v
						}
						hi = v
					}
				}
				if lo >= 0 {
					resp.ApiKeys = append(resp.ApiKeys, kmsg.ApiVersionsResponseApiKey{ApiKey: k, MinVersion: lo, MaxVersion: hi})
				}
			}
		}
		sort.Slice(resp.ApiKeys, func(i, j int) bool { return resp.ApiKeys[i].ApiKey < resp.ApiKeys[j].ApiKey })
		answer(resp)
	case *kmsg.BrokerRegistrationRequest:
		go func() { answer(h.register(ctx, m)) }()
	case *kmsg.BrokerHeartbeatRequest:
		h.watchConn(ctx, m.BrokerID)
		go func() { answer(h.heartbeat(ctx, m)) }()
	case *kmsg.AlterPartitionRequest:
		go func() { answer(h.alterPartition(ctx, m)) }()
	case *kmsg.AllocateProducerIDsRequest:
		go func() { answer(h.allocateProducerIDs(ctx, m)) }()
	default:
		if a := h.admin.Load(); a != nil && a.keys[req.Key] {
			a.h.Handle(ctx, req, reply)
			return
		}
		reply(server.Reply{Close: true})
	}
}

// watchConn tells the controller when the connection that ctx belongs to
// (one a broker heartbeats on) closes.
func (h *Handler) watchConn(ctx context.Context, broker int32) {
	if _, loaded := h.conns.LoadOrStore(ctx, struct{}{}); loaded {
		return
	}
	context.AfterFunc(ctx, func() {
		h.conns.Delete(ctx)
		h.c.ConnectionClosed(broker)
	})
}

// IncarnationString is how a broker's incarnation id is kept in the
// metadata: the UUID in Kafka's text form.
func IncarnationString(id [16]byte) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

func (h *Handler) register(ctx context.Context, r *kmsg.BrokerRegistrationRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.BrokerRegistrationResponse)
	reg := Registration{NodeID: r.BrokerID, ClusterID: r.ClusterID, IncarnationID: IncarnationString(r.IncarnationID)}
	if r.Rack != nil {
		reg.Rack = *r.Rack
	}
	if len(r.Listeners) == 0 {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	reg.Host, reg.Port = r.Listeners[0].Host, int32(r.Listeners[0].Port)
	epoch, err := h.c.Register(ctx, reg)
	if err != nil {
		h.logger.Info("broker registration refused", "broker", r.BrokerID, "err", err)
		resp.ErrorCode = ErrorCode(err)
		return resp
	}
	resp.BrokerEpoch = epoch
	return resp
}

func (h *Handler) heartbeat(ctx context.Context, r *kmsg.BrokerHeartbeatRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.BrokerHeartbeatResponse)
	res, err := h.c.Heartbeat(ctx, Heartbeat{NodeID: r.BrokerID, Epoch: r.BrokerEpoch,
		MetadataIndex: uint64(max(r.CurrentMetadataOffset, 0)), WantFence: r.WantFence, WantShutDown: r.WantShutdown})
	if err != nil {
		resp.ErrorCode = ErrorCode(err)
		resp.IsFenced = true
		return resp
	}
	resp.IsCaughtUp, resp.IsFenced, resp.ShouldShutdown = res.CaughtUp, res.Fenced, res.ShouldShutDown
	return resp
}

func (h *Handler) alterPartition(ctx context.Context, r *kmsg.AlterPartitionRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.AlterPartitionResponse)
	var reqs []ISRChange
	img := h.c.meta.Image()
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			ch := ISRChange{TopicID: metadata.TopicID(t.TopicID), Topic: t.Topic, Partition: p.Partition,
				LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, ISR: p.NewISR}
			if r.Version >= 3 {
				ch.ISR = nil
				for _, e := range p.NewEpochISR {
					// KIP-903: a member named with an epoch that is not
					// its current one is a replica that restarted and
					// lost data since: it must not join.
					if b, ok := img.Brokers[e.BrokerID]; ok && e.BrokerEpoch != -1 && b.Epoch != e.BrokerEpoch {
						ch.ISR = nil
						ch.Partition = -2 // marked ineligible below
						break
					}
					ch.ISR = append(ch.ISR, e.BrokerID)
				}
			}
			reqs = append(reqs, ch)
		}
	}
	var results []ISRResult
	var topErr error
	eligible := make([]ISRChange, 0, len(reqs))
	for _, ch := range reqs {
		if ch.Partition != -2 {
			eligible = append(eligible, ch)
		}
	}
	results, topErr = h.c.AlterPartition(ctx, r.BrokerID, r.BrokerEpoch, eligible)
	if topErr != nil {
		resp.ErrorCode = ErrorCode(topErr)
		return resp
	}
	k := 0
	i := 0
	for _, t := range r.Topics {
		rt := kmsg.NewAlterPartitionResponseTopic()
		rt.Topic, rt.TopidID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewAlterPartitionResponseTopicPartition()
			rp.Partition = p.Partition
			if reqs[i].Partition == -2 {
				rp.ErrorCode = kerr.IneligibleReplica.Code
			} else {
				res := results[k]
				k++
				rp.ErrorCode = ErrorCode(res.Err)
				rp.LeaderID, rp.LeaderEpoch, rp.PartitionEpoch, rp.ISR = res.Leader, res.LeaderEpoch, res.PartitionEpoch, res.ISR
			}
			i++
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// producerIDBlock is how many producer ids one AllocateProducerIds hands a
// broker (Kafka's ProducerIdManager block size).
const producerIDBlock = 1000

func (h *Handler) allocateProducerIDs(ctx context.Context, r *kmsg.AllocateProducerIDsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.AllocateProducerIDsResponse)
	first, err := h.c.AllocateProducerIDs(ctx, r.BrokerID, r.BrokerEpoch, producerIDBlock)
	if err != nil {
		resp.ErrorCode = ErrorCode(err)
		return resp
	}
	resp.ProducerIDStart, resp.ProducerIDLen = first, producerIDBlock
	return resp
}

// ErrorCode is the Kafka error code of a controller error (0 for nil).
func ErrorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, metadata.ErrNotController):
		return kerr.NotController.Code
	case errors.Is(err, ErrStaleBrokerEpoch):
		return kerr.StaleBrokerEpoch.Code
	case errors.Is(err, ErrInconsistentClusterID):
		return kerr.InconsistentClusterID.Code
	case errors.Is(err, ErrNotLeader):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, ErrIneligibleReplica):
		return kerr.IneligibleReplica.Code
	case errors.Is(err, ErrInvalidISR):
		return kerr.InvalidRequest.Code
	case errors.Is(err, metadata.ErrStaleLeaderEpoch):
		return kerr.FencedLeaderEpoch.Code
	case errors.Is(err, metadata.ErrStalePartitionEpoch):
		return kerr.InvalidUpdateVersion.Code
	case errors.Is(err, metadata.ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, ErrInvalidReplicationFactor):
		return kerr.InvalidReplicationFactor.Code
	case errors.Is(err, ErrNoReassignmentInProgress):
		return kerr.NoReassignmentInProgress.Code
	case errors.Is(err, ErrInvalidReplicaAssignment):
		return kerr.InvalidReplicaAssignment.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kerr.RequestTimedOut.Code
	}
	return kerr.UnknownServerError.Code
}
