package api

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
)

// AlterReplicaLogDirs v0-2 (KIP-113).
//
// Sent to the broker whose replicas move: each partition's replica here
// moves to the named log dir in the background (broker/replicamove.go), and
// DescribeLogDirs lists it as a future replica in its destination until it
// is there. As Kafka: a dir that is not one of log.dirs is
// LOG_DIR_NOT_FOUND; an offline one, or a partition in an offline one,
// KAFKA_STORAGE_ERROR; a partition with no replica here is remembered (its
// replica is created in that dir when it arrives) and answered
// REPLICA_NOT_AVAILABLE. No authorization, so never
// CLUSTER_AUTHORIZATION_FAILED.
func (h *Handler) alterReplicaLogDirs(r *kmsg.AlterReplicaLogDirsRequest) *kmsg.AlterReplicaLogDirsResponse {
	resp := r.ResponseKind().(*kmsg.AlterReplicaLogDirsResponse)
	byTopic := map[string]int{}
	for _, d := range r.Dirs {
		for _, t := range d.Topics {
			i, ok := byTopic[t.Topic]
			if !ok {
				i = len(resp.Topics)
				byTopic[t.Topic] = i
				rt := kmsg.NewAlterReplicaLogDirsResponseTopic()
				rt.Topic = t.Topic
				resp.Topics = append(resp.Topics, rt)
			}
			for _, p := range t.Partitions {
				rp := kmsg.NewAlterReplicaLogDirsResponseTopicPartition()
				rp.Partition = p
				rp.ErrorCode = alterReplicaLogDirCode(h.b.AlterReplicaLogDir(broker.TopicPartition{Topic: t.Topic, Partition: p}, d.Dir))
				resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, rp)
			}
		}
	}
	return resp
}

func alterReplicaLogDirCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, broker.ErrLogDirNotFound):
		return kerr.LogDirNotFound.Code
	case errors.Is(err, broker.ErrLogDirOffline):
		return kerr.KafkaStorageError.Code
	case errors.Is(err, broker.ErrReplicaNotHere):
		return kerr.ReplicaNotAvailable.Code
	}
	return kerr.UnknownServerError.Code
}
