package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/txn"
)

// metadataWriteTimeout bounds one metadata write made for a request.
const metadataWriteTimeout = 30 * time.Second

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
// of -1 take num.partitions and default.replication.factor.
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
	brokers := h.b.Image().Brokers
	if replicationFactor <= 0 || int(replicationFactor) > len(brokers) {
		return nil, fmt.Errorf("%w: replication factor %d, but %d broker(s) are available",
			kerr.InvalidReplicationFactor, replicationFactor, len(brokers))
	}
	if err := config.ValidateTopicConfigs(configs); err != nil {
		return nil, err
	}
	replicas := []int32{h.b.NodeID()}
	ctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
	defer cancel()
	t, err := h.b.Meta().CreateTopic(ctx, name, partitions, replicas, configs)
	if err != nil {
		return nil, err
	}
	if err := h.b.Reconcile(); err != nil {
		return t, fmt.Errorf("%w: opening the new partitions: %v", kerr.KafkaStorageError, err)
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
