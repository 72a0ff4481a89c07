package api

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// internalTopicsHandler is a broker whose __consumer_offsets (3
// partitions) and __transaction_state (2) exist, made by FindCoordinator.
func internalTopicsHandler(t *testing.T) *Handler {
	t.Helper()
	h := adminHandler(t, map[string]string{
		"offsets.topic.num.partitions":         "3",
		"transaction.state.log.num.partitions": "2",
		"group.initial.rebalance.delay.ms":     "0",
	})
	for keyType, key := range map[int8]string{0: "g", 1: "tx"} {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey, req.CoordinatorType = key, keyType
		resp := send(t, h, req, 3).(*kmsg.FindCoordinatorResponse)
		if resp.ErrorCode != 0 {
			t.Fatalf("FindCoordinator %d %s: %v", keyType, key, kerr.ErrorForCode(resp.ErrorCode))
		}
	}
	for name, n := range map[string]int{"__consumer_offsets": 3, "__transaction_state": 2} {
		if tp := h.b.Image().Topics[name]; tp == nil || len(tp.Partitions) != n {
			t.Fatalf("%s not created with %d partitions", name, n)
		}
	}
	return h
}

// TestDeleteInternalTopicRefused: DeleteTopics of __consumer_offsets or
// __transaction_state, by name or by id, is answered INVALID_REQUEST and
// deletes nothing; another topic in the same request is deleted. On main
// both were deleted, taking every group's offsets and every transaction's
// state with them.
func TestDeleteInternalTopicRefused(t *testing.T) {
	h := internalTopicsHandler(t)
	ctx := context.Background()
	for _, v := range []int16{0, 3, 5, 6} {
		other := fmt.Sprintf("other-v%d", v)
		adminCreate(t, h, other, 1, nil)
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.Version = v
		offsetsID := h.b.Image().Topics["__consumer_offsets"].ID
		if v < 6 {
			req.TopicNames = []string{"__consumer_offsets", other, "__transaction_state"}
		} else {
			req.Topics = []kmsg.DeleteTopicsRequestTopic{
				{TopicID: offsetsID}, {Topic: kmsg.StringPtr(other)}, {Topic: kmsg.StringPtr("__transaction_state")},
			}
		}
		resp := h.deleteTopics(ctx, req)
		if len(resp.Topics) != 3 {
			t.Fatalf("v%d: %d answers, want 3", v, len(resp.Topics))
		}
		for i, want := range []*kerr.Error{kerr.InvalidRequest, nil, kerr.InvalidRequest} {
			st := resp.Topics[i]
			adminCode(t, fmt.Sprintf("v%d topic %d", v, i), st.ErrorCode, want)
			if want != nil && v >= 5 && (st.ErrorMessage == nil || *st.ErrorMessage == "") {
				t.Errorf("v%d topic %d: no error message", v, i)
			}
		}
		if v >= 6 && (resp.Topics[0].Topic == nil || *resp.Topics[0].Topic != "__consumer_offsets") {
			t.Errorf("v%d: the answer by id does not name the topic: %v", v, resp.Topics[0].Topic)
		}
		img := h.b.Image()
		if img.Topics["__consumer_offsets"] == nil || img.Topics["__transaction_state"] == nil {
			t.Fatalf("v%d: an internal topic was deleted", v)
		}
		if img.Topics[other] != nil {
			t.Errorf("v%d: %s was not deleted", v, other)
		}
	}
}

// TestCreatePartitionsOfInternalTopicRefused: CreatePartitions of an
// internal topic is answered INVALID_REQUEST (ValidateOnly too) and
// changes nothing. On main __consumer_offsets grew, which moves groups to
// other partitions (a group's partition is its hash modulo the count) and
// loses their offsets.
func TestCreatePartitionsOfInternalTopicRefused(t *testing.T) {
	h := internalTopicsHandler(t)
	ctx := context.Background()
	adminCreate(t, h, "grow", 1, nil)
	for _, validateOnly := range []bool{true, false} {
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.Version = 3
		req.ValidateOnly = validateOnly
		for _, name := range []string{"__consumer_offsets", "__transaction_state", "grow"} {
			rt := kmsg.NewCreatePartitionsRequestTopic()
			rt.Topic, rt.Count = name, int32(len(h.b.Image().Topics[name].Partitions))+1
			req.Topics = append(req.Topics, rt)
		}
		resp := h.createPartitions(ctx, req)
		if len(resp.Topics) != 3 {
			t.Fatalf("%d answers, want 3", len(resp.Topics))
		}
		for i, want := range []*kerr.Error{kerr.InvalidRequest, kerr.InvalidRequest, nil} {
			adminCode(t, fmt.Sprintf("validateOnly=%v topic %s", validateOnly, resp.Topics[i].Topic), resp.Topics[i].ErrorCode, want)
		}
	}
	img := h.b.Image()
	if n := len(img.Topics["__consumer_offsets"].Partitions); n != 3 {
		t.Errorf("__consumer_offsets has %d partitions, want 3", n)
	}
	if n := len(img.Topics["__transaction_state"].Partitions); n != 2 {
		t.Errorf("__transaction_state has %d partitions, want 2", n)
	}
	if n := len(img.Topics["grow"].Partitions); n != 2 {
		t.Errorf("grow has %d partitions, want 2", n)
	}
}

// TestCreateClusterMetadataTopicRefused: as Kafka, CreateTopics of
// __cluster_metadata is answered INVALID_REQUEST.
func TestCreateClusterMetadataTopicRefused(t *testing.T) {
	h := adminHandler(t, nil)
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = 7
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "__cluster_metadata", 1, 1
	req.Topics = append(req.Topics, rt)
	resp := h.createTopics(context.Background(), req)
	adminCode(t, "__cluster_metadata", resp.Topics[0].ErrorCode, kerr.InvalidRequest)
	if h.b.Image().Topics["__cluster_metadata"] != nil {
		t.Error("__cluster_metadata was created")
	}
}
