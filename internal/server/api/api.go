// Package api implements the Kafka APIs, one file per API key (NN_name.go),
// each opening with the versions it serves and how it behaves. Our errors
// become Kafka error codes here (errorCode) and nowhere else.
package api

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/log"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/replica"
	"github.com/sluice-io/sluice/internal/server"
)

// versions is every API served, with its version range: exactly what
// ApiVersions advertises. The lower bounds are what Kafka 4.0 still serves
// or lower; the upper bounds are the highest kmsg knows.
var versions = map[int16][2]int16{
	0:  {0, 13}, // Produce: v0-2 answered UNSUPPORTED_VERSION (see 00_produce.go)
	1:  {4, 18}, // Fetch: v4 is the first with magic 2 only and LSO
	2:  {1, 11}, // ListOffsets
	3:  {0, 13}, // Metadata
	8:  {0, 10}, // OffsetCommit
	9:  {0, 10}, // OffsetFetch
	10: {0, 6},  // FindCoordinator
	11: {0, 9},  // JoinGroup
	12: {0, 4},  // Heartbeat
	13: {0, 5},  // LeaveGroup
	14: {0, 5},  // SyncGroup
	15: {0, 6},  // DescribeGroups
	16: {0, 5},  // ListGroups
	18: {0, 5},  // ApiVersions
	19: {0, 7},  // CreateTopics
	20: {0, 6},  // DeleteTopics
	21: {0, 2},  // DeleteRecords
	22: {0, 5},  // InitProducerID
	23: {0, 4},  // OffsetForLeaderEpoch
	24: {0, 5},  // AddPartitionsToTxn
	25: {0, 4},  // AddOffsetsToTxn
	26: {0, 5},  // EndTxn
	27: {0, 2},  // WriteTxnMarkers
	28: {0, 6},  // TxnOffsetCommit
	32: {0, 4},  // DescribeConfigs
	33: {0, 2},  // AlterConfigs
	34: {0, 2},  // AlterReplicaLogDirs
	35: {0, 5},  // DescribeLogDirs
	37: {0, 3},  // CreatePartitions
	42: {0, 3},  // DeleteGroups
	43: {0, 2},  // ElectLeaders
	44: {0, 1},  // IncrementalAlterConfigs
	45: {0, 1},  // AlterPartitionReassignments
	46: {0, 0},  // ListPartitionReassignments
	47: {0, 0},  // OffsetDelete
	55: {0, 2},  // DescribeQuorum
	60: {0, 2},  // DescribeCluster
	61: {0, 0},  // DescribeProducers
	64: {0, 0},  // UnregisterBroker
	65: {0, 0},  // DescribeTransactions
	66: {0, 2},  // ListTransactions
	68: {0, 1},  // ConsumerGroupHeartbeat
	69: {0, 1},  // ConsumerGroupDescribe
}

// Observer is told about data flowing through produce and fetch, for
// metrics. Methods must be cheap and safe for concurrent use.
type Observer interface {
	Produced(topic string, bytes, records int)
	Fetched(topic string, bytes, records int)
	// Purgatory is called with +1 when a request starts waiting (acks=all
	// fsync, long-poll fetch) and -1 when it is answered. api is
	// "produce" or "fetch".
	Purgatory(api string, delta int)
}

type nopObserver struct{}

func (nopObserver) Produced(string, int, int) {}
func (nopObserver) Fetched(string, int, int)  {}
func (nopObserver) Purgatory(string, int)     {}

// Handler serves the Kafka APIs on top of a broker.
type Handler struct {
	b        *broker.Broker
	logger   *slog.Logger
	observer Observer
	sessions *fetchSessionCache // KIP-227 fetch sessions (fetch_session.go)
	// txnVersion is the finalized transaction.version feature and
	// txnVerify transaction.partition.verification.enable: read-only
	// broker configs, read once by New (the produce path consults them).
	txnVersion int16
	txnVerify  bool
}

// SetObserver sets the observer; call before serving.
func (h *Handler) SetObserver(o Observer) { h.observer = o }

var _ server.Handler = (*Handler)(nil)

// New returns the handler for b.
func New(b *broker.Broker, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{b: b, logger: logger, observer: nopObserver{}}
	h.txnVersion = int16(h.brokerInt("transaction.version"))
	h.txnVerify = h.brokerBool("transaction.partition.verification.enable")
	h.sessions = newFetchSessionCache(int(h.brokerInt("max.incremental.fetch.session.cache.slots")),
		time.Duration(h.brokerInt("min.incremental.fetch.session.eviction.ms"))*time.Millisecond)
	return h
}

// Supports implements server.Handler.
func (h *Handler) Supports(key, version int16) bool {
	r, ok := versions[key]
	return ok && version >= r[0] && version <= r[1]
}

// apiKeys lists the served APIs for ApiVersions, sorted by key.
func apiKeys() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, 0, len(versions))
	for k, r := range versions {
		keys = append(keys, kmsg.ApiVersionsResponseApiKey{ApiKey: k, MinVersion: r[0], MaxVersion: r[1]})
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ApiKey < keys[j].ApiKey })
	return keys
}

// Handle implements server.Handler.
func (h *Handler) Handle(ctx context.Context, req *server.Request, reply func(server.Reply)) {
	now := func(resp kmsg.Response) {
		resp.SetVersion(req.Version)
		reply(server.Reply{Msg: resp})
	}
	if h.forward(ctx, req, reply) {
		return
	}
	switch m := req.Msg.(type) {
	case *kmsg.ProduceRequest:
		h.produceFrom(ctx, m, req.ClientID, reply)
	case *kmsg.FetchRequest:
		h.fetch(ctx, m, reply)
	case *kmsg.ListOffsetsRequest:
		now(h.listOffsets(m))
	case *kmsg.MetadataRequest:
		now(h.metadata(ctx, m))
	case *kmsg.OffsetCommitRequest:
		h.offsetCommit(m, reply)
	case *kmsg.OffsetFetchRequest:
		h.offsetFetch(m, reply)
	case *kmsg.FindCoordinatorRequest:
		now(h.findCoordinator(ctx, m))
	case *kmsg.JoinGroupRequest:
		h.joinGroup(req, m, reply)
	case *kmsg.HeartbeatRequest:
		h.heartbeat(m, reply)
	case *kmsg.LeaveGroupRequest:
		h.leaveGroup(m, reply)
	case *kmsg.SyncGroupRequest:
		h.syncGroup(m, reply)
	case *kmsg.DescribeGroupsRequest:
		h.describeGroups(m, reply)
	case *kmsg.ListGroupsRequest:
		h.listGroups(m, reply)
	case *kmsg.ApiVersionsRequest:
		reply(server.Reply{Msg: h.apiVersions(m)})
	case *kmsg.CreateTopicsRequest:
		now(h.createTopics(ctx, m))
	case *kmsg.DeleteTopicsRequest:
		now(h.deleteTopics(ctx, m))
	case *kmsg.DeleteRecordsRequest:
		now(h.deleteRecords(m))
	case *kmsg.InitProducerIDRequest:
		now(h.initProducerID(ctx, m))
	case *kmsg.AddPartitionsToTxnRequest:
		now(h.addPartitionsToTxn(ctx, m))
	case *kmsg.AddOffsetsToTxnRequest:
		now(h.addOffsetsToTxn(ctx, m))
	case *kmsg.EndTxnRequest:
		now(h.endTxn(ctx, m))
	case *kmsg.WriteTxnMarkersRequest:
		now(h.writeTxnMarkers(ctx, m))
	case *kmsg.TxnOffsetCommitRequest:
		h.txnOffsetCommit(ctx, m, reply)
	case *kmsg.DescribeProducersRequest:
		now(h.describeProducers(m))
	case *kmsg.DescribeTransactionsRequest:
		now(h.describeTransactions(m))
	case *kmsg.ListTransactionsRequest:
		now(h.listTransactions(m))
	case *kmsg.OffsetForLeaderEpochRequest:
		now(h.offsetForLeaderEpoch(m))
	case *kmsg.DescribeConfigsRequest:
		now(h.describeConfigs(m))
	case *kmsg.AlterConfigsRequest:
		now(h.alterConfigs(ctx, m))
	case *kmsg.DescribeLogDirsRequest:
		now(h.describeLogDirs(m))
	case *kmsg.AlterReplicaLogDirsRequest:
		now(h.alterReplicaLogDirs(m))
	case *kmsg.CreatePartitionsRequest:
		now(h.createPartitions(ctx, m))
	case *kmsg.IncrementalAlterConfigsRequest:
		now(h.incrementalAlterConfigs(ctx, m))
	case *kmsg.DescribeClusterRequest:
		now(h.describeCluster(m))
	case *kmsg.ElectLeadersRequest:
		now(h.electLeaders(ctx, m))
	case *kmsg.AlterPartitionAssignmentsRequest:
		now(h.alterPartitionReassignments(ctx, m))
	case *kmsg.ListPartitionReassignmentsRequest:
		now(h.listPartitionReassignments(m))
	case *kmsg.UnregisterBrokerRequest:
		now(h.unregisterBroker(ctx, m))
	case *kmsg.DescribeQuorumRequest:
		now(h.describeQuorum(m))
	case *kmsg.DeleteGroupsRequest:
		h.deleteGroups(m, reply)
	case *kmsg.OffsetDeleteRequest:
		h.offsetDelete(m, reply)
	case *kmsg.ConsumerGroupHeartbeatRequest:
		h.consumerGroupHeartbeat(req, m, reply)
	case *kmsg.ConsumerGroupDescribeRequest:
		h.consumerGroupDescribe(m, reply)
	default:
		// Supports let through a key with no case here: a programmer error.
		h.logger.Error("BUG: no handler for a supported api", "key", req.Key)
		reply(server.Reply{Close: true})
	}
}

// errorCode turns an error from the layers below into a Kafka error code.
func errorCode(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	for _, m := range errorCodes {
		if errors.Is(err, m.err) {
			return m.code.Code
		}
	}
	return kerr.UnknownServerError.Code
}

var errorCodes = []struct {
	err  error
	code *kerr.Error
}{
	{replica.ErrNotEnoughReplicasAfterAppend, kerr.NotEnoughReplicasAfterAppend},
	{replica.ErrNotEnoughReplicas, kerr.NotEnoughReplicas},
	{broker.ErrNotLeader, kerr.NotLeaderForPartition},
	{partition.ErrNotLeader, kerr.NotLeaderForPartition},
	{broker.ErrStaleBrokerEpoch, kerr.StaleBrokerEpoch},
	{replica.ErrUnknownReplica, kerr.NotLeaderForPartition},
	{partition.ErrUnknownProducerID, kerr.UnknownProducerID},
	{partition.ErrInvalidProducerEpoch, kerr.InvalidProducerEpoch},
	{partition.ErrCoordinatorFenced, kerr.TransactionCoordinatorFenced},
	{partition.ErrOutOfOrderSequence, kerr.OutOfOrderSequenceNumber},
	{partition.ErrUnsupportedMagic, kerr.UnsupportedForMessageFormat},
	{partition.ErrInvalidRecord, kerr.InvalidRecord},
	{partition.ErrCompactedNoKey, kerr.InvalidRecord},
	{partition.ErrMirrorOverlap, kerr.InvalidRecord},
	{partition.ErrCorruptMessage, kerr.CorruptMessage},
	{partition.ErrMessageTooLarge, kerr.MessageTooLarge},
	{partition.ErrInvalidTimestamp, kerr.InvalidTimestamp},
	{partition.ErrStorage, kerr.KafkaStorageError},
	{log.ErrStorage, kerr.KafkaStorageError},
	{log.ErrOffsetOutOfRange, kerr.OffsetOutOfRange},
	{log.ErrClosed, kerr.NotLeaderForPartition},
	{metadata.ErrTopicExists, kerr.TopicAlreadyExists},
	{metadata.ErrUnknownTopic, kerr.UnknownTopicOrPartition},
	{metadata.ErrInvalidPartitions, kerr.InvalidPartitions},
	{metadata.ErrNotController, kerr.NotController},
	{metadata.ErrInvalidTopic, kerr.InvalidTopicException},
	{metadata.ErrInvalidReplicas, kerr.InvalidReplicaAssignment},
	{config.ErrUnknownConfig, kerr.InvalidConfig},
	{config.ErrInvalidValue, kerr.InvalidConfig},
	{context.DeadlineExceeded, kerr.RequestTimedOut},
}

// errorMessage is the message to send beside a code (nil when no error).
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
