package api

import (
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/controller"
)

// ListPartitionReassignments v0 (KIP-455).
//
// The reassignments under way, as the active controller's metadata has
// them (other brokers forward the request there, as Kafka answers it on the
// controller, so that no broker's older view is shown): for each partition being moved,
// its replicas (the target followed by the ones leaving), the ones being
// added and the ones being removed. A null topic list means every
// reassignment; partitions named that are not being moved are left out,
// unknown ones answer UNKNOWN_TOPIC_OR_PARTITION for the whole request as
// Kafka does.
func (h *Handler) listPartitionReassignments(r *kmsg.ListPartitionReassignmentsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListPartitionReassignmentsResponse)
	img := h.b.Image()
	all := controller.Reassignments(img)
	want := func(topic string, p int32) bool { return true }
	if r.Topics != nil {
		named := map[controller.PartitionRef]bool{}
		for _, t := range r.Topics {
			tt := img.Topics[t.Topic]
			for _, p := range t.Partitions {
				if tt == nil || p < 0 || int(p) >= len(tt.Partitions) {
					resp.ErrorCode = kerr.UnknownTopicOrPartition.Code
					return resp
				}
				named[controller.PartitionRef{Topic: t.Topic, Partition: p}] = true
			}
		}
		want = func(topic string, p int32) bool { return named[controller.PartitionRef{Topic: topic, Partition: p}] }
	}
	byTopic := map[string][]kmsg.ListPartitionReassignmentsResponseTopicPartition{}
	for ref, p := range all {
		if !want(ref.Topic, ref.Partition) {
			continue
		}
		rp := kmsg.NewListPartitionReassignmentsResponseTopicPartition()
		rp.Partition = ref.Partition
		rp.Replicas = slices.Clone(p.Replicas)
		rp.AddingReplicas = nonNilInt32(p.AddingReplicas)
		rp.RemovingReplicas = nonNilInt32(p.RemovingReplicas)
		byTopic[ref.Topic] = append(byTopic[ref.Topic], rp)
	}
	names := make([]string, 0, len(byTopic))
	for name := range byTopic {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rt := kmsg.NewListPartitionReassignmentsResponseTopic()
		rt.Topic = name
		rt.Partitions = byTopic[name]
		sort.Slice(rt.Partitions, func(i, j int) bool { return rt.Partitions[i].Partition < rt.Partitions[j].Partition })
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func nonNilInt32(s []int32) []int32 {
	if s == nil {
		return []int32{}
	}
	return slices.Clone(s)
}
