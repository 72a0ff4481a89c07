package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/controller"
	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/txn"
)

// metadataWriteTimeout bounds one metadata write made for a request.
const metadataWriteTimeout = 30 * time.Second

// maxPartitionsPerRequest bounds the partitions one CreateTopics or
// CreatePartitions request creates, all its topics together; more are
// refused with POLICY_VIOLATION before anything is written. Kafka's
// controller refuses a request of more than 10,000 metadata records
// (QuorumController.MAX_RECORDS_PER_USER_OP: a record per topic, per
// partition and per config) the same way; Sluice counts partitions only.
const maxPartitionsPerRequest = 10000

// checkRequestPartitions refuses a request that creates n partitions.
func checkRequestPartitions(n int64) error {
	if n > maxPartitionsPerRequest {
		return codeErr(kerr.PolicyViolation,
			"Unable to perform excessively large batch operation: the request would create %d partitions, more than %d in one request.", n, maxPartitionsPerRequest)
	}
	return nil
}

// checkBrokerPartitions refuses adding n partitions to a broker that hosts
// hosted of at most max (max.broker.partitions).
func checkBrokerPartitions(hosted, n, max int64) error {
	if hosted+n > max {
		return codeErr(kerr.PolicyViolation,
			"Creating %d partition(s) would make this broker host %d, more than max.broker.partitions (%d).", n, hosted+n, max)
	}
	return nil
}

// hostedPartitions is the partitions of img with a replica on this broker,
// counted against max.broker.partitions. Concurrent requests are checked
// against the same image, so together they may pass the bound by what
// they create.
func (h *Handler) hostedPartitions(img *metadata.Image) int64 {
	self := h.b.NodeID()
	var n int64
	for _, t := range img.Topics {
		for _, p := range t.Partitions {
			if slices.Contains(p.Replicas, self) {
				n++
			}
		}
	}
	return n
}

// clusterMetadataTopic is Kafka's KRaft metadata topic, which CreateTopics
// refuses (INVALID_REQUEST) as Kafka's controller does.
const clusterMetadataTopic = "__cluster_metadata"

// isInternalTopic reports whether name is a topic the coordinators keep
// their state in (Kafka's Topic.isInternal). Their partition count decides
// which partition holds a group or a transactional id, so DeleteTopics and
// CreatePartitions refuse them with INVALID_REQUEST. Kafka's broker lets
// an admin do both and lose that state; Sluice refuses, as Kafka's answer
// to creating __cluster_metadata does.
func isInternalTopic(name string) bool { return name == group.Topic || name == txn.Topic }

// brokerInt reads an integer broker config (dynamic, static or default).
func (h *Handler) brokerInt(name string) int64 {
	v, _ := h.b.BrokerConfigs().Value(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		def, _ := config.BrokerDef(name)
		n, _ = strconv.ParseInt(def.Default, 10, 64)
	}
	return n
}

// brokerBool reads a boolean broker config.
func (h *Handler) brokerBool(name string) bool {
	v, _ := h.b.BrokerConfigs().Value(name)
	return v == "true"
}

// createTopic creates a topic through the metadata quorum and waits until
// this broker has opened its partitions. partitions and replicationFactor
// of -1 take num.partitions and default.replication.factor. The bounds of
// CreateTopics apply (maxPartitionsPerRequest, max.broker.partitions), and
// creation is all or nothing as there: a topic whose partitions do not all
// open is deleted again and the error is KAFKA_STORAGE_ERROR.
func (h *Handler) createTopic(ctx context.Context, name string, partitions int32, replicationFactor int16, configs map[string]string) (*metadata.Topic, error) {
	if partitions == -1 {
		partitions = int32(h.brokerInt("num.partitions"))
	}
	if replicationFactor == -1 {
		replicationFactor = int16(h.brokerInt("default.replication.factor"))
	}
	if partitions <= 0 {
		return nil, fmt.Errorf("%w: %d partitions; a topic needs at least 1", kerr.InvalidPartitions, partitions)
	}
	if h.b.Clustered() && !h.b.Meta().IsController() {
		return h.createTopicAtController(ctx, name, partitions, replicationFactor, configs)
	}
	img := h.b.Image()
	if replicationFactor <= 0 || int(replicationFactor) > len(img.Brokers) {
		return nil, fmt.Errorf("%w: replication factor %d, but %d broker(s) are available",
			kerr.InvalidReplicationFactor, replicationFactor, len(img.Brokers))
	}
	if err := config.ValidateTopicConfigs(configs); err != nil {
		return nil, err
	}
	if err := checkRequestPartitions(int64(partitions)); err != nil {
		return nil, err
	}
	if err := checkBrokerPartitions(h.hostedPartitions(img), int64(partitions), h.brokerInt("max.broker.partitions")); err != nil {
		return nil, err
	}
	assignments, err := controller.PlaceNew(img, 0, partitions, int(replicationFactor))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", kerr.InvalidReplicationFactor, err)
	}
	wctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
	defer cancel()
	t, err := h.b.Meta().CreateTopicAssigned(wctx, name, assignments, configs)
	if err != nil {
		return nil, err
	}
	if err := h.checkOpened(t, 0, h.b.Reconcile()); err != nil {
		err = h.undoTopic(ctx, t, err)
		if rerr := h.b.Reconcile(); rerr != nil {
			h.logger.Error("closing the partitions of a topic whose creation failed", "topic", name, "err", rerr)
		}
		return nil, err
	}
	return t, nil
}

// createTopicAtController asks the active controller to create a topic
// (this node is not it) and waits until this node's metadata has it.
func (h *Handler) createTopicAtController(ctx context.Context, name string, partitions int32, rf int16, configs map[string]string) (*metadata.Topic, error) {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.SetVersion(7)
	req.TimeoutMillis = int32(metadataWriteTimeout / time.Millisecond)
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, rf
	for k, v := range configs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = []kmsg.CreateTopicsRequestTopic{rt}
	fctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
	defer cancel()
	resp, err := h.b.Forward(fctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w: creating %s at the controller: %v", kerr.RequestTimedOut, name, err)
	}
	ct := resp.(*kmsg.CreateTopicsResponse)
	if len(ct.Topics) != 1 {
		return nil, fmt.Errorf("controller answered CreateTopics with %d topics", len(ct.Topics))
	}
	if err := kerr.ErrorForCode(ct.Topics[0].ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return nil, err
	}
	h.awaitTopics(fctx, &kmsg.CreateTopicsResponse{Topics: []kmsg.CreateTopicsResponseTopic{{Topic: name}}})
	t, ok := h.b.Image().Topics[name]
	if !ok {
		return nil, fmt.Errorf("%w: topic %s created at the controller is not in this broker's metadata yet", kerr.RequestTimedOut, name)
	}
	return t, nil
}

// autoCreate creates a topic a client asked for by name when
// auto.create.topics.enable allows, with the broker's defaults. A topic
// created meanwhile by someone else is fine.
func (h *Handler) autoCreate(ctx context.Context, name string) (*metadata.Topic, error) {
	if !h.brokerBool("auto.create.topics.enable") {
		return nil, kerr.UnknownTopicOrPartition
	}
	t, err := h.createTopic(ctx, name, -1, -1, nil)
	if errors.Is(err, metadata.ErrTopicExists) {
		if t, ok := h.b.Image().Topics[name]; ok {
			return t, nil
		}
	}
	if err != nil {
		h.logger.Info("auto-creating topic failed", "topic", name, "err", err)
		return nil, err
	}
	h.logger.Info("auto-created topic", "topic", name, "partitions", len(t.Partitions))
	return t, nil
}
