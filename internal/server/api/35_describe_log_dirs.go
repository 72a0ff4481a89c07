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
// Every log directory of this broker (log.dirs: the data dir and any more),
// by its absolute path, with the partitions stored there: all of them when
// Topics is null, else those requested that exist here (others are left
// out, as in Kafka; an empty list gives the directories with no topics).
// Each partition's Size is the bytes of its log segments and OffsetLag its
// log end past its high watermark. A partition moving to another directory
// (AlterReplicaLogDirs) is also listed in its destination with IsFuture
// set, Size the bytes copied so far and OffsetLag an estimate of the
// records still to copy (its records times the share of bytes not copied):
// the copy is of files, not of records. v4+ carry TotalBytes and
// UsableBytes of the directory's file system (statfs; -1 if that fails),
// and v5 IsCordoned (cordoned.log.dirs names the dir, or is *). The
// top-level ErrorCode (v3+) is 0: there is no authorization. A directory
// offline after an I/O error is answered KAFKA_STORAGE_ERROR with no
// topics, as Kafka does; a full one (writes refused until space returns, a
// Sluice state) KAFKA_STORAGE_ERROR with its topics.
func (h *Handler) describeLogDirs(r *kmsg.DescribeLogDirsRequest) *kmsg.DescribeLogDirsResponse {
	resp := r.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	resp.ThrottleMillis = 0

	var want map[broker.TopicPartition]bool
	if r.Topics != nil {
		want = map[broker.TopicPartition]bool{}
		for _, rt := range r.Topics {
			for _, p := range rt.Partitions {
				want[broker.TopicPartition{Topic: rt.Topic, Partition: p}] = true
			}
		}
	}
	byDir := map[string]map[string][]kmsg.DescribeLogDirsResponseDirTopicPartition{}
	add := func(dir, topic string, sp kmsg.DescribeLogDirsResponseDirTopicPartition) {
		if byDir[dir] == nil {
			byDir[dir] = map[string][]kmsg.DescribeLogDirsResponseDirTopicPartition{}
		}
		byDir[dir][topic] = append(byDir[dir][topic], sp)
	}
	parts := h.b.Partitions()
	for tp, p := range parts {
		if want != nil && !want[tp] {
			continue
		}
		dir, _, ok := h.b.PartitionLogDir(tp)
		if !ok {
			continue
		}
		add(dir, tp.Topic, logDirPartition(tp.Partition, p))
	}
	for tp, mv := range h.b.Moves() {
		p, ok := parts[tp]
		if !ok || (want != nil && !want[tp]) {
			continue
		}
		sp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
		sp.Partition, sp.IsFuture, sp.Size = tp.Partition, true, mv.Copied
		if mv.Total > 0 && mv.Copied < mv.Total {
			records := p.Log().EndOffset() - p.Log().StartOffset()
			sp.OffsetLag = int64(float64(records) * float64(mv.Total-mv.Copied) / float64(mv.Total))
		}
		add(mv.Dest, tp.Topic, sp)
	}
	for _, st := range h.b.LogDirs() {
		rd := kmsg.NewDescribeLogDirsResponseDir()
		rd.Dir = st.Path
		if abs, err := filepath.Abs(st.Path); err == nil {
			rd.Dir = abs
		}
		if total, usable, ok := diskSpace(st.Path); ok {
			rd.TotalBytes, rd.UsableBytes = total, usable
		}
		rd.IsCordoned = st.Cordoned
		if st.Offline != nil || st.NoSpace != nil {
			rd.ErrorCode = kerr.KafkaStorageError.Code
		}
		if st.Offline != nil {
			// As Kafka: an offline dir is listed with its error and no topics.
			resp.Dirs = append(resp.Dirs, rd)
			continue
		}
		topics := make([]string, 0, len(byDir[st.Path]))
		for t := range byDir[st.Path] {
			topics = append(topics, t)
		}
		sort.Strings(topics)
		for _, t := range topics {
			ps := byDir[st.Path][t]
			sort.Slice(ps, func(i, j int) bool { return ps[i].Partition < ps[j].Partition })
			rt := kmsg.NewDescribeLogDirsResponseDirTopic()
			rt.Topic, rt.Partitions = t, ps
			rd.Topics = append(rd.Topics, rt)
		}
		resp.Dirs = append(resp.Dirs, rd)
	}
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
