package api

import (
	"path/filepath"
	"sort"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/partition"
)

// DescribeLogDirs v0-5.
//
// This broker has one log directory, its data directory, reported by its
// absolute path. It lists the partitions stored there: all of them when
// Topics is null, else those requested that exist here (others are left
// out, as in Kafka; an empty list gives the directory with no topics). Each
// partition's Size is the bytes of its log segments; OffsetLag is 0 (the
// high watermark is the log end on one node) and IsFuture false (there is
// no AlterReplicaLogDirs). v4+ carry TotalBytes and UsableBytes of the
// directory's file system (statfs; -1 if that fails), and v5 IsCordoned
// false. The top-level ErrorCode (v3+) is 0: there is no authorization.
// A directory offline after an I/O error is answered KAFKA_STORAGE_ERROR
// with no topics, as Kafka does; a full one (writes refused until space
// returns, a Sluice state) KAFKA_STORAGE_ERROR with its topics.
func (h *Handler) describeLogDirs(r *kmsg.DescribeLogDirsRequest) *kmsg.DescribeLogDirsResponse {
	resp := r.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	resp.ThrottleMillis = 0

	dir := h.b.DataDir()
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	rd := kmsg.NewDescribeLogDirsResponseDir()
	rd.Dir = dir
	if total, usable, ok := diskSpace(dir); ok {
		rd.TotalBytes, rd.UsableBytes = total, usable
	}
	offline := false
	for _, st := range h.b.LogDirs() {
		if st.Offline != nil || st.NoSpace != nil {
			rd.ErrorCode = kerr.KafkaStorageError.Code
		}
		offline = offline || st.Offline != nil
	}
	if offline {
		// As Kafka: an offline dir is listed with its error and no topics.
		resp.Dirs = append(resp.Dirs, rd)
		return resp
	}

	parts := h.b.Partitions()
	var want map[broker.TopicPartition]bool
	if r.Topics != nil {
		want = map[broker.TopicPartition]bool{}
		for _, rt := range r.Topics {
			for _, p := range rt.Partitions {
				want[broker.TopicPartition{Topic: rt.Topic, Partition: p}] = true
			}
		}
	}
	byTopic := map[string][]kmsg.DescribeLogDirsResponseDirTopicPartition{}
	for tp, p := range parts {
		if want != nil && !want[tp] {
			continue
		}
		byTopic[tp.Topic] = append(byTopic[tp.Topic], logDirPartition(tp.Partition, p))
	}
	topics := make([]string, 0, len(byTopic))
	for t := range byTopic {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, t := range topics {
		ps := byTopic[t]
		sort.Slice(ps, func(i, j int) bool { return ps[i].Partition < ps[j].Partition })
		rt := kmsg.NewDescribeLogDirsResponseDirTopic()
		rt.Topic, rt.Partitions = t, ps
		rd.Topics = append(rd.Topics, rt)
	}
	resp.Dirs = append(resp.Dirs, rd)
	return resp
}

func logDirPartition(id int32, p *partition.Partition) kmsg.DescribeLogDirsResponseDirTopicPartition {
	sp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
	sp.Partition = id
	sp.Size = p.Log().Size()
	sp.OffsetLag = max(p.HighWatermark()-p.Log().EndOffset(), 0)
	return sp
}

// diskSpace returns the size and the space available to us of the file
// system holding dir, as Java's FileStore getTotalSpace and getUsableSpace.
func diskSpace(dir string) (total, usable int64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	bs := int64(st.Bsize)
	return int64(st.Blocks) * bs, int64(st.Bavail) * bs, true
}
