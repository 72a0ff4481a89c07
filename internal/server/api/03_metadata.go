package api

import (
	"context"
	"errors"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/metadata"
)

// noAuthorizedOperations is Kafka's value for "not requested".
const noAuthorizedOperations = -2147483648

// Metadata v0-13.
//
// Brokers, cluster id, controller, and the topics asked for: all of them
// for a null list (v1+) or an empty one (v0). A topic asked for by name
// that does not exist is created when auto.create.topics.enable is true and
// the request allows it (always before v4), with num.partitions partitions,
// and answered LEADER_NOT_AVAILABLE with no partitions, as Kafka does: the
// client asks again (clients and tools such as kafka-go's depend on it);
// topics asked for by id (v10+) are never created. Invalid names get
// INVALID_TOPIC_EXCEPTION.
func (h *Handler) metadata(ctx context.Context, r *kmsg.MetadataRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.MetadataResponse)
	img := h.b.Image()
	ids := make([]int32, 0, len(img.Brokers))
	for id := range img.Brokers {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		b := img.Brokers[id]
		if b.Fenced {
			// As Kafka's KRaft brokers: a fenced broker (down, or not
			// caught up yet) is not offered to clients.
			continue
		}
		rb := kmsg.NewMetadataResponseBroker()
		rb.NodeID, rb.Host, rb.Port = b.NodeID, b.Host, b.Port
		if b.Rack != "" {
			rack := b.Rack
			rb.Rack = &rack
		}
		resp.Brokers = append(resp.Brokers, rb)
	}
	cluster := img.ClusterID
	resp.ClusterID = &cluster
	resp.ControllerID = h.controllerForClients(img)
	resp.AuthorizedOperations = noAuthorizedOperations

	all := r.Topics == nil || r.Version == 0 && len(r.Topics) == 0
	if all {
		names := make([]string, 0, len(img.Topics))
		for name := range img.Topics {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			resp.Topics = append(resp.Topics, topicMetadata(img.Topics[name], r.Version, h.offlineReplicas))
		}
		return resp
	}
	allowCreate := r.Version < 4 || r.AllowAutoTopicCreation
	for _, rt := range r.Topics {
		var t *metadata.Topic
		if rt.Topic == nil {
			t = img.TopicsByID[metadata.TopicID(rt.TopicID)]
			if t == nil {
				mt := kmsg.NewMetadataResponseTopic()
				mt.TopicID = rt.TopicID
				mt.ErrorCode = kerr.UnknownTopicID.Code
				mt.AuthorizedOperations = noAuthorizedOperations
				resp.Topics = append(resp.Topics, mt)
				continue
			}
		} else if t = img.Topics[*rt.Topic]; t == nil {
			var err error = kerr.UnknownTopicOrPartition
			if allowCreate {
				t, err = h.autoCreate(ctx, *rt.Topic)
			}
			if err == nil {
				// As Kafka: the request that creates a topic is answered
				// LEADER_NOT_AVAILABLE with no partitions; the client
				// asks again and then gets them.
				err = kerr.LeaderNotAvailable
			}
			mt := kmsg.NewMetadataResponseTopic()
			name := *rt.Topic
			mt.Topic = &name
			mt.ErrorCode = errorCode(err)
			if errors.Is(err, kerr.InvalidReplicationFactor) || errors.Is(err, kerr.InvalidPartitions) {
				mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			}
			mt.AuthorizedOperations = noAuthorizedOperations
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, topicMetadata(t, r.Version, h.offlineReplicas))
	}
	return resp
}

// offlineReplicas lists the replicas of a partition that are offline: on
// a fenced or unregistered broker (down, as Kafka's KRaft metadata cache
// counts them), or this broker's own when its log failed with an I/O error
// (its log dir is offline, as Kafka's LogDirFailureChannel); a full disk
// is not offline.
func (h *Handler) offlineReplicas(topic string, partition int32) []int32 {
	out := []int32{}
	img := h.b.Image()
	if t := img.Topics[topic]; t != nil && partition >= 0 && int(partition) < len(t.Partitions) {
		for _, r := range t.Partitions[partition].Replicas {
			if b, ok := img.Brokers[r]; !ok || b.Fenced {
				out = append(out, r)
			}
		}
	}
	p, ok := h.b.Partition(topic, partition)
	if !ok {
		return out
	}
	if reason, err := p.StorageError(); err != nil && reason == "io_error" {
		out = append(out, h.b.NodeID())
	}
	return out
}

func topicMetadata(t *metadata.Topic, version int16, offline func(topic string, partition int32) []int32) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.Name
	mt.Topic = &name
	mt.TopicID = t.ID
	mt.IsInternal = t.Name == "__consumer_offsets" || t.Name == "__transaction_state"
	mt.AuthorizedOperations = noAuthorizedOperations
	for _, p := range t.Partitions {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = p.ID
		mp.Leader = p.Leader
		mp.LeaderEpoch = p.LeaderEpoch
		mp.Replicas = append([]int32(nil), p.Replicas...)
		mp.ISR = append([]int32(nil), p.ISR...)
		mp.OfflineReplicas = offline(t.Name, p.ID)
		if p.Leader < 0 {
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		mt.Partitions = append(mt.Partitions, mp)
	}
	return mt
}

// controllerForClients is the controller id told to clients: the active
// controller when it is a broker they can reach, else this broker, which
// forwards the admin requests clients send "the controller" (Kafka's KRaft
// brokers name a live broker too, since clients cannot reach a dedicated
// controller).
func (h *Handler) controllerForClients(img *metadata.Image) int32 {
	if b, ok := img.Brokers[img.ControllerID]; ok && !b.Fenced {
		return img.ControllerID
	}
	if img.ControllerID < 0 {
		return -1
	}
	return h.b.NodeID()
}
