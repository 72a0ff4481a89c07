package api

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/server"
)

// adminHandler opens a real one-node broker (node 1) in a temporary
// directory and returns a handler on it.
func adminHandler(t *testing.T, static map[string]string) *Handler {
	t.Helper()
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: t.TempDir(), Host: "127.0.0.1", Port: 9092, Static: static})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return New(b, nil)
}

// adminCreate creates a topic directly, failing the test on error.
func adminCreate(t *testing.T, h *Handler, name string, partitions int32, configs map[string]string) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = 7
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 1
	for k, v := range configs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	resp := h.createTopics(context.Background(), req)
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create %s: %+v", name, resp.Topics)
	}
}

// adminProduce appends a batch of n records to an open partition.
func adminProduce(t *testing.T, h *Handler, topic string, p int32, n int) {
	t.Helper()
	part, ok := h.b.Partition(topic, p)
	if !ok {
		t.Fatalf("partition %s-%d is not open", topic, p)
	}
	now := time.Now().UnixMilli()
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{OffsetDelta: int32(i), Value: []byte(fmt.Sprintf("v%d", i))}
	}
	b, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs)
	if err != nil {
		t.Fatal(err)
	}
	res, err := part.Append(b)
	if err != nil {
		t.Fatal(err)
	}
	// As an acks=all produce: the high watermark is the last fsynced offset.
	if err := part.WaitDurable(res.LastOffset); err != nil {
		t.Fatal(err)
	}
}

func adminCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	wantCode := int16(0)
	if want != nil {
		wantCode = want.Code
	}
	if got != wantCode {
		t.Errorf("%s: error code %v, want %v", what, kerr.ErrorForCode(got), kerr.ErrorForCode(wantCode))
	}
}

func TestCreateTopics(t *testing.T) {
	h := adminHandler(t, map[string]string{"num.partitions": "2"})
	adminCreate(t, h, "exists", 1, nil)
	adminCreate(t, h, "dot.ted", 1, nil)

	type check func(t *testing.T, st kmsg.CreateTopicsResponseTopic)
	topic := func(name string, parts int32, rf int16) kmsg.CreateTopicsRequestTopic {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, parts, rf
		return rt
	}
	withConfig := func(rt kmsg.CreateTopicsRequestTopic, k string, v *string) kmsg.CreateTopicsRequestTopic {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, v
		rt.Configs = append(rt.Configs, c)
		return rt
	}
	withAssignment := func(rt kmsg.CreateTopicsRequestTopic, lists ...[]int32) kmsg.CreateTopicsRequestTopic {
		for i, l := range lists {
			a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
			a.Partition, a.Replicas = int32(i), l
			rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
		}
		return rt
	}
	created := func(parts int32) check {
		return func(t *testing.T, st kmsg.CreateTopicsResponseTopic) {
			tp, ok := h.b.Image().Topics[st.Topic]
			if !ok {
				t.Fatalf("%s not in the image", st.Topic)
			}
			if int32(len(tp.Partitions)) != parts {
				t.Errorf("%s has %d partitions, want %d", st.Topic, len(tp.Partitions), parts)
			}
			for p := range parts {
				if _, ok := h.b.Partition(st.Topic, p); !ok {
					t.Errorf("%s-%d not open", st.Topic, p)
				}
			}
		}
	}
	notCreated := func(t *testing.T, st kmsg.CreateTopicsResponseTopic) {
		if tp, ok := h.b.Image().Topics[st.Topic]; ok && st.Topic != "exists" {
			t.Errorf("%s was created: %+v", st.Topic, tp)
		}
	}

	for _, v := range []int16{0, 1, 4, 5, 7} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			n := func(s string) string { return fmt.Sprintf("%s-v%d", s, v) }
			cases := []struct {
				name         string
				topics       []kmsg.CreateTopicsRequestTopic
				validateOnly bool
				want         *kerr.Error
				check        check
			}{
				{name: "plain", topics: []kmsg.CreateTopicsRequestTopic{topic(n("plain"), 3, 1)}, check: created(3)},
				{name: "defaults", topics: []kmsg.CreateTopicsRequestTopic{topic(n("defaults"), -1, -1)}, check: created(2)},
				{name: "configs", topics: []kmsg.CreateTopicsRequestTopic{withConfig(topic(n("configs"), 1, 1), "retention.ms", kmsg.StringPtr("1000"))},
					check: func(t *testing.T, st kmsg.CreateTopicsResponseTopic) {
						created(1)(t, st)
						if got := h.b.Image().Topics[st.Topic].Configs["retention.ms"]; got != "1000" {
							t.Errorf("retention.ms = %q", got)
						}
						if v < 5 {
							return
						}
						i := slices.IndexFunc(st.Configs, func(c kmsg.CreateTopicsResponseTopicConfig) bool { return c.Name == "retention.ms" })
						if i < 0 {
							t.Fatalf("no retention.ms in %+v", st.Configs)
						}
						c := st.Configs[i]
						if c.Value == nil || *c.Value != "1000" || c.Source != int8(config.SourceDynamicTopic) || c.ReadOnly {
							t.Errorf("retention.ms config %+v", c)
						}
						if j := slices.IndexFunc(st.Configs, func(c kmsg.CreateTopicsResponseTopicConfig) bool { return c.Name == "segment.bytes" }); j < 0 || st.Configs[j].Source != int8(config.SourceDefault) {
							t.Errorf("segment.bytes missing or not a default")
						}
					}},
				{name: "assignment", topics: []kmsg.CreateTopicsRequestTopic{withAssignment(topic(n("assigned"), -1, -1), []int32{1}, []int32{1})}, check: created(2)},
				{name: "exists", topics: []kmsg.CreateTopicsRequestTopic{topic("exists", 1, 1)}, want: kerr.TopicAlreadyExists},
				{name: "bad name", topics: []kmsg.CreateTopicsRequestTopic{topic(n("bad name"), 1, 1)}, want: kerr.InvalidTopicException, check: notCreated},
				{name: "dot name", topics: []kmsg.CreateTopicsRequestTopic{topic("..", 1, 1)}, want: kerr.InvalidTopicException, check: notCreated},
				{name: "collision", topics: []kmsg.CreateTopicsRequestTopic{topic("dot_ted", 1, 1)}, want: kerr.InvalidTopicException, check: notCreated},
				{name: "zero partitions", topics: []kmsg.CreateTopicsRequestTopic{topic(n("zero"), 0, 1)}, want: kerr.InvalidPartitions, check: notCreated},
				{name: "zero replicas", topics: []kmsg.CreateTopicsRequestTopic{topic(n("zerorf"), 1, 0)}, want: kerr.InvalidReplicationFactor, check: notCreated},
				{name: "too many replicas", topics: []kmsg.CreateTopicsRequestTopic{topic(n("rf2"), 1, 2)}, want: kerr.InvalidReplicationFactor, check: notCreated},
				{name: "assignment with counts", topics: []kmsg.CreateTopicsRequestTopic{withAssignment(topic(n("ac"), 1, -1), []int32{1})}, want: kerr.InvalidRequest, check: notCreated},
				{name: "assignment unknown broker", topics: []kmsg.CreateTopicsRequestTopic{withAssignment(topic(n("au"), -1, -1), []int32{2})}, want: kerr.InvalidReplicaAssignment, check: notCreated},
				{name: "assignment duplicate broker", topics: []kmsg.CreateTopicsRequestTopic{withAssignment(topic(n("ad"), -1, -1), []int32{1, 1})}, want: kerr.InvalidReplicaAssignment, check: notCreated},
				{name: "assignment empty list", topics: []kmsg.CreateTopicsRequestTopic{withAssignment(topic(n("ae"), -1, -1), []int32{})}, want: kerr.InvalidReplicaAssignment, check: notCreated},
				{name: "assignment gap", topics: func() []kmsg.CreateTopicsRequestTopic {
					rt := withAssignment(topic(n("ag"), -1, -1), []int32{1}, []int32{1})
					rt.ReplicaAssignment[1].Partition = 2
					return []kmsg.CreateTopicsRequestTopic{rt}
				}(), want: kerr.InvalidReplicaAssignment, check: notCreated},
				{name: "bad config value", topics: []kmsg.CreateTopicsRequestTopic{withConfig(topic(n("bcv"), 1, 1), "retention.ms", kmsg.StringPtr("soon"))}, want: kerr.InvalidConfig, check: notCreated},
				{name: "unknown config", topics: []kmsg.CreateTopicsRequestTopic{withConfig(topic(n("uc"), 1, 1), "no.such.config", kmsg.StringPtr("1"))}, want: kerr.InvalidConfig, check: notCreated},
				{name: "null config", topics: []kmsg.CreateTopicsRequestTopic{withConfig(topic(n("nc"), 1, 1), "retention.ms", nil)}, want: kerr.InvalidConfig, check: notCreated},
				{name: "validate only", topics: []kmsg.CreateTopicsRequestTopic{topic(n("vo"), 4, 1)}, validateOnly: true,
					check: func(t *testing.T, st kmsg.CreateTopicsResponseTopic) {
						if v == 0 { // no ValidateOnly in v0: created
							created(4)(t, st)
							return
						}
						notCreated(t, st)
						if st.TopicID != [16]byte{} {
							t.Errorf("validate-only answer has a topic id")
						}
					}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					req := kmsg.NewPtrCreateTopicsRequest()
					req.Version = v
					req.Topics = c.topics
					req.ValidateOnly = c.validateOnly
					resp := h.createTopics(context.Background(), req)
					if resp.Version != v {
						t.Errorf("response version %d", resp.Version)
					}
					if len(resp.Topics) != 1 {
						t.Fatalf("%d answers", len(resp.Topics))
					}
					st := resp.Topics[0]
					if st.Topic != c.topics[0].Topic {
						t.Errorf("answer for %q", st.Topic)
					}
					adminCode(t, c.name, st.ErrorCode, c.want)
					if c.want != nil && st.ErrorMessage == nil {
						t.Errorf("no error message")
					}
					if c.want == nil {
						if v >= 5 {
							wantParts := c.topics[0].NumPartitions
							if wantParts == -1 {
								wantParts = 2
							}
							if st.NumPartitions != wantParts || st.ReplicationFactor != 1 || len(st.Configs) == 0 {
								t.Errorf("v5 fields: partitions %d rf %d configs %d", st.NumPartitions, st.ReplicationFactor, len(st.Configs))
							}
						}
						if tp, ok := h.b.Image().Topics[st.Topic]; ok && st.TopicID != tp.ID && !(c.validateOnly && v >= 1) {
							t.Errorf("topic id %x, image has %x", st.TopicID, tp.ID)
						}
					}
					if c.check != nil {
						c.check(t, st)
					}
				})
			}
		})
	}

	t.Run("duplicates", func(t *testing.T) {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 5
		req.Topics = []kmsg.CreateTopicsRequestTopic{topic("dup", 1, 1), topic("single", 1, 1), topic("dup", 2, 1)}
		resp := h.createTopics(context.Background(), req)
		if len(resp.Topics) != 2 {
			t.Fatalf("answers %+v", resp.Topics)
		}
		adminCode(t, "dup", resp.Topics[0].ErrorCode, kerr.InvalidRequest)
		adminCode(t, "single", resp.Topics[1].ErrorCode, nil)
		if _, ok := h.b.Image().Topics["dup"]; ok {
			t.Errorf("dup was created")
		}
	})
	t.Run("collision within request", func(t *testing.T) {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 5
		req.Topics = []kmsg.CreateTopicsRequestTopic{topic("x.y", 1, 1), topic("x_y", 1, 1)}
		resp := h.createTopics(context.Background(), req)
		adminCode(t, "x.y", resp.Topics[0].ErrorCode, nil)
		adminCode(t, "x_y", resp.Topics[1].ErrorCode, kerr.InvalidTopicException)
	})
}

func TestDeleteTopics(t *testing.T) {
	h := adminHandler(t, nil)
	ctx := context.Background()
	for _, v := range []int16{0, 1, 3, 5, 6} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			a, b := fmt.Sprintf("a-v%d", v), fmt.Sprintf("b-v%d", v)
			adminCreate(t, h, a, 2, nil)
			adminCreate(t, h, b, 1, nil)
			adminProduce(t, h, a, 0, 3)
			idB := h.b.Image().Topics[b].ID
			dirA := filepath.Join(h.b.DataDir(), a+"-0")
			if _, err := os.Stat(dirA); err != nil {
				t.Fatal(err)
			}

			req := kmsg.NewPtrDeleteTopicsRequest()
			req.Version = v
			if v < 6 {
				req.TopicNames = []string{a, b, "unknown"}
			} else {
				ref := func(name *string, id [16]byte) kmsg.DeleteTopicsRequestTopic {
					return kmsg.DeleteTopicsRequestTopic{Topic: name, TopicID: id}
				}
				req.Topics = []kmsg.DeleteTopicsRequestTopic{
					ref(kmsg.StringPtr(a), [16]byte{}),
					ref(nil, idB),
					ref(kmsg.StringPtr("unknown"), [16]byte{}),
					ref(nil, [16]byte{9, 9}),
					ref(nil, [16]byte{}),
					ref(kmsg.StringPtr(a), idB),
				}
			}
			resp := h.deleteTopics(ctx, req)
			if resp.Version != v {
				t.Errorf("response version %d", resp.Version)
			}
			want := []*kerr.Error{nil, nil, kerr.UnknownTopicOrPartition}
			if v >= 6 {
				want = append(want, kerr.UnknownTopicID, kerr.InvalidRequest, kerr.InvalidRequest)
			}
			if len(resp.Topics) != len(want) {
				t.Fatalf("answers %+v", resp.Topics)
			}
			for i, w := range want {
				adminCode(t, fmt.Sprintf("answer %d", i), resp.Topics[i].ErrorCode, w)
			}
			if got := resp.Topics[1]; got.Topic == nil || *got.Topic != b || (v >= 6 && got.TopicID != idB) {
				t.Errorf("answer for b: %+v", got)
			}
			for _, name := range []string{a, b} {
				if _, ok := h.b.Image().Topics[name]; ok {
					t.Errorf("%s still in the image", name)
				}
				if _, ok := h.b.Partition(name, 0); ok {
					t.Errorf("%s-0 still open", name)
				}
			}
			if _, err := os.Stat(dirA); !os.IsNotExist(err) {
				t.Errorf("%s still there: %v", dirA, err)
			}
		})
	}

	t.Run("duplicates", func(t *testing.T) {
		adminCreate(t, h, "d1", 1, nil)
		adminCreate(t, h, "d2", 1, nil)
		id2 := h.b.Image().Topics["d2"].ID
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.Version = 6
		req.Topics = []kmsg.DeleteTopicsRequestTopic{
			{Topic: kmsg.StringPtr("d1")}, {Topic: kmsg.StringPtr("d1")},
			{Topic: kmsg.StringPtr("d2")}, {TopicID: id2},
		}
		resp := h.deleteTopics(ctx, req)
		if len(resp.Topics) != 3 {
			t.Fatalf("answers %+v", resp.Topics)
		}
		for i, st := range resp.Topics {
			adminCode(t, fmt.Sprintf("answer %d", i), st.ErrorCode, kerr.InvalidRequest)
		}
		if len(h.b.Image().Topics) != 2 {
			t.Errorf("topics were deleted: %v", h.b.Image().Topics)
		}
	})
}

func TestDeleteTopicsDisabled(t *testing.T) {
	h := adminHandler(t, map[string]string{"delete.topic.enable": "false"})
	adminCreate(t, h, "keep", 1, nil)
	for _, c := range []struct {
		v    int16
		want *kerr.Error
	}{{0, kerr.InvalidRequest}, {2, kerr.InvalidRequest}, {3, kerr.TopicDeletionDisabled}, {6, kerr.TopicDeletionDisabled}} {
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.Version = c.v
		req.TopicNames = []string{"keep"}
		req.Topics = []kmsg.DeleteTopicsRequestTopic{{Topic: kmsg.StringPtr("keep")}}
		if c.v < 6 {
			req.Topics = nil
		} else {
			req.TopicNames = nil
		}
		resp := h.deleteTopics(context.Background(), req)
		if len(resp.Topics) != 1 {
			t.Fatalf("v%d answers %+v", c.v, resp.Topics)
		}
		adminCode(t, fmt.Sprintf("v%d", c.v), resp.Topics[0].ErrorCode, c.want)
	}
	if _, ok := h.b.Image().Topics["keep"]; !ok {
		t.Errorf("topic deleted")
	}
}

func TestDeleteRecords(t *testing.T) {
	h := adminHandler(t, nil)
	adminCreate(t, h, "compacted", 1, map[string]string{"cleanup.policy": "compact"})
	for _, v := range []int16{0, 1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			name := fmt.Sprintf("dr-v%d", v)
			adminCreate(t, h, name, 2, nil)
			adminProduce(t, h, name, 0, 5)
			adminProduce(t, h, name, 0, 5) // offsets 0..9
			adminProduce(t, h, name, 1, 4)
			cases := []struct {
				topic     string
				partition int32
				offset    int64
				want      *kerr.Error
				low       int64
			}{
				{name, 0, 3, nil, 3},
				{name, 0, 2, nil, 3}, // below the log start: no change
				{name, 0, 11, kerr.OffsetOutOfRange, -1},
				{name, 0, -5, kerr.OffsetOutOfRange, -1},
				{name, 0, 10, nil, 10},
				{name, 1, -1, nil, 4},
				{name, 7, 0, kerr.UnknownTopicOrPartition, -1},
				{"nope", 0, 0, kerr.UnknownTopicOrPartition, -1},
				{"compacted", 0, 0, kerr.PolicyViolation, -1},
			}
			for i, c := range cases {
				req := kmsg.NewPtrDeleteRecordsRequest()
				req.Version = v
				rt := kmsg.NewDeleteRecordsRequestTopic()
				rt.Topic = c.topic
				rp := kmsg.NewDeleteRecordsRequestTopicPartition()
				rp.Partition, rp.Offset = c.partition, c.offset
				rt.Partitions = append(rt.Partitions, rp)
				req.Topics = append(req.Topics, rt)
				resp := h.deleteRecords(req)
				if resp.Version != v || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
					t.Fatalf("case %d: response %+v", i, resp)
				}
				sp := resp.Topics[0].Partitions[0]
				adminCode(t, fmt.Sprintf("case %d", i), sp.ErrorCode, c.want)
				if sp.Partition != c.partition || sp.LowWatermark != c.low {
					t.Errorf("case %d: partition %d low watermark %d, want %d", i, sp.Partition, sp.LowWatermark, c.low)
				}
			}
			p0, _ := h.b.Partition(name, 0)
			if got := p0.Log().StartOffset(); got != 10 {
				t.Errorf("log start offset %d, want 10", got)
			}
		})
	}
}

func TestOffsetForLeaderEpoch(t *testing.T) {
	h := adminHandler(t, nil)
	adminCreate(t, h, "epochs", 1, nil)
	adminProduce(t, h, "epochs", 0, 3) // epoch 0: offsets 0..2
	part, _ := h.b.Partition("epochs", 0)
	// Let the broker's own reaction to the topic creation pass: it sets
	// the partition's epoch from the metadata (0).
	time.Sleep(200 * time.Millisecond)
	if err := part.BecomeLeader(2); err != nil {
		t.Fatal(err)
	}
	adminProduce(t, h, "epochs", 0, 4) // epoch 2: offsets 3..6

	type want struct {
		err   *kerr.Error
		epoch int32
		end   int64
	}
	cases := []struct {
		topic      string
		partition  int32
		current    int32
		epoch      int32
		want       want
		minVersion int16 // the check needs CurrentLeaderEpoch
	}{
		{"epochs", 0, -1, 0, want{nil, 0, 3}, 0},
		{"epochs", 0, -1, 1, want{nil, 0, 3}, 0},
		{"epochs", 0, -1, 2, want{nil, 2, 7}, 0},
		{"epochs", 0, -1, 5, want{nil, -1, -1}, 0},
		{"epochs", 0, 2, 2, want{nil, 2, 7}, 0},
		{"epochs", 0, 1, 2, want{kerr.FencedLeaderEpoch, -1, -1}, 2},
		{"epochs", 0, 3, 2, want{kerr.UnknownLeaderEpoch, -1, -1}, 2},
		{"epochs", 1, -1, 0, want{kerr.UnknownTopicOrPartition, -1, -1}, 0},
		{"nope", 0, -1, 0, want{kerr.UnknownTopicOrPartition, -1, -1}, 0},
	}
	for _, v := range []int16{0, 1, 2, 3, 4} {
		for i, c := range cases {
			req := kmsg.NewPtrOffsetForLeaderEpochRequest()
			req.Version = v
			req.ReplicaID = -1
			rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
			rt.Topic = c.topic
			rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
			rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = c.partition, c.current, c.epoch
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp := h.offsetForLeaderEpoch(req)
			if resp.Version != v || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
				t.Fatalf("v%d case %d: response %+v", v, i, resp)
			}
			sp := resp.Topics[0].Partitions[0]
			w := c.want
			if v < c.minVersion {
				w = want{nil, 2, 7} // CurrentLeaderEpoch is not in the request
			}
			adminCode(t, fmt.Sprintf("v%d case %d", v, i), sp.ErrorCode, w.err)
			if sp.LeaderEpoch != w.epoch || sp.EndOffset != w.end {
				t.Errorf("v%d case %d: epoch %d end %d, want %d %d", v, i, sp.LeaderEpoch, sp.EndOffset, w.epoch, w.end)
			}
		}
	}
	if got := part.LeaderEpoch(); got != 2 {
		t.Fatalf("the partition's epoch went back to %d during the test", got)
	}
}

func TestDescribeConfigs(t *testing.T) {
	h := adminHandler(t, map[string]string{"num.partitions": "3", "log.retention.hours": "24"})
	adminCreate(t, h, "cfg", 1, map[string]string{"retention.ms": "1000"})
	if err := h.b.Meta().SetBrokerConfigs(context.Background(), map[string]string{"log.segment.bytes": "2097152", "message.max.bytes": "2000000"}); err != nil {
		t.Fatal(err)
	}
	// This broker's own value beats the cluster default.
	if err := h.b.Meta().SetPerBrokerConfigs(context.Background(), 1, map[string]string{"log.segment.bytes": "3145728"}); err != nil {
		t.Fatal(err)
	}

	describe := func(v int16, typ kmsg.ConfigResourceType, name string, names []string, synonyms, docs bool) kmsg.DescribeConfigsResponseResource {
		t.Helper()
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.Version = v
		req.IncludeSynonyms, req.IncludeDocumentation = synonyms, docs
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName, rr.ConfigNames = typ, name, names
		req.Resources = append(req.Resources, rr)
		resp := h.describeConfigs(req)
		if resp.Version != v || len(resp.Resources) != 1 {
			t.Fatalf("response %+v", resp)
		}
		sr := resp.Resources[0]
		if sr.ResourceType != typ || sr.ResourceName != name {
			t.Errorf("answer for %v %q", sr.ResourceType, sr.ResourceName)
		}
		return sr
	}
	find := func(sr kmsg.DescribeConfigsResponseResource, name string) kmsg.DescribeConfigsResponseResourceConfig {
		t.Helper()
		i := slices.IndexFunc(sr.Configs, func(c kmsg.DescribeConfigsResponseResourceConfig) bool { return c.Name == name })
		if i < 0 {
			t.Fatalf("no %s among %d configs", name, len(sr.Configs))
		}
		return sr.Configs[i]
	}

	for _, v := range []int16{0, 1, 2, 3, 4} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			sr := describe(v, kmsg.ConfigResourceTypeTopic, "cfg", nil, true, true)
			adminCode(t, "topic", sr.ErrorCode, nil)
			if len(sr.Configs) != len(config.TopicDefs()) {
				t.Errorf("%d topic configs, want %d", len(sr.Configs), len(config.TopicDefs()))
			}
			ret := find(sr, "retention.ms")
			if ret.Value == nil || *ret.Value != "1000" || ret.IsDefault || ret.ReadOnly || ret.Source != kmsg.ConfigSourceDynamicTopicConfig {
				t.Errorf("retention.ms %+v", ret)
			}
			seg := find(sr, "segment.bytes")
			if seg.Value == nil || *seg.Value != "3145728" || seg.Source != kmsg.ConfigSourceDynamicBrokerConfig {
				t.Errorf("segment.bytes %+v, want broker 1's own 3145728 (DYNAMIC_BROKER_CONFIG)", seg)
			}
			if mm := find(sr, "max.message.bytes"); mm.Value == nil || *mm.Value != "2000000" || mm.Source != kmsg.ConfigSourceDynamicDefaultBrokerConfig {
				t.Errorf("max.message.bytes %+v, want the cluster default 2000000", mm)
			}
			if idx := find(sr, "index.interval.bytes"); !idx.IsDefault || idx.Source != kmsg.ConfigSourceDefaultConfig {
				t.Errorf("index.interval.bytes %+v", idx)
			}
			if v >= 1 {
				var syn []string
				for _, s := range ret.ConfigSynonyms {
					syn = append(syn, fmt.Sprintf("%s=%s/%d", s.Name, *s.Value, s.Source))
				}
				wantSyn := []string{"retention.ms=1000/1", "log.retention.hours=24/4", "log.retention.hours=168/5"}
				if !slices.Equal(syn, wantSyn) {
					t.Errorf("retention.ms synonyms %v, want %v", syn, wantSyn)
				}
			}
			if v >= 3 {
				if ret.ConfigType != kmsg.ConfigTypeLong || ret.Documentation == nil || *ret.Documentation == "" {
					t.Errorf("v3 fields of retention.ms: type %v doc %v", ret.ConfigType, ret.Documentation)
				}
			}

			// Without synonyms or documentation asked for.
			sr = describe(v, kmsg.ConfigResourceTypeTopic, "cfg", []string{"retention.ms", "no.such"}, false, false)
			if len(sr.Configs) != 1 || len(sr.Configs[0].ConfigSynonyms) != 0 || sr.Configs[0].Documentation != nil {
				t.Errorf("filtered: %+v", sr.Configs)
			}

			// This broker, by id: every broker config.
			sr = describe(v, kmsg.ConfigResourceTypeBroker, "1", nil, false, false)
			adminCode(t, "broker 1", sr.ErrorCode, nil)
			if len(sr.Configs) != len(config.BrokerDefs()) {
				t.Errorf("%d broker configs, want %d", len(sr.Configs), len(config.BrokerDefs()))
			}
			np := find(sr, "num.partitions")
			if np.Value == nil || *np.Value != "3" || !np.ReadOnly || np.Source != kmsg.ConfigSourceStaticBrokerConfig || np.IsDefault {
				t.Errorf("num.partitions %+v", np)
			}
			if lr := find(sr, "log.retention.ms"); lr.Value != nil {
				t.Errorf("log.retention.ms has no default but is %q", *lr.Value)
			}
			// Its own value, with the cluster default and the default as
			// synonyms, in Kafka's order.
			sr = describe(v, kmsg.ConfigResourceTypeBroker, "1", []string{"log.segment.bytes"}, true, false)
			ls := find(sr, "log.segment.bytes")
			if ls.Value == nil || *ls.Value != "3145728" || ls.Source != kmsg.ConfigSourceDynamicBrokerConfig || ls.IsDefault {
				t.Errorf("log.segment.bytes of broker 1 %+v, want 3145728 from DYNAMIC_BROKER_CONFIG", ls)
			}
			if v >= 1 {
				var syn []string
				for _, s := range ls.ConfigSynonyms {
					syn = append(syn, fmt.Sprintf("%s=%s/%s", s.Name, *s.Value, s.Source))
				}
				wantSyn := []string{"log.segment.bytes=3145728/DYNAMIC_BROKER_CONFIG", "log.segment.bytes=2097152/DYNAMIC_DEFAULT_BROKER_CONFIG", "log.segment.bytes=1073741824/DEFAULT_CONFIG"}
				if !slices.Equal(syn, wantSyn) {
					t.Errorf("log.segment.bytes synonyms %v, want %v", syn, wantSyn)
				}
			}

			// The cluster default: only the cluster-wide dynamic configs,
			// without this broker's own values.
			sr = describe(v, kmsg.ConfigResourceTypeBroker, "", nil, false, false)
			adminCode(t, "broker default", sr.ErrorCode, nil)
			got := map[string]string{}
			for _, c := range sr.Configs {
				if c.Source != kmsg.ConfigSourceDynamicDefaultBrokerConfig || c.Value == nil {
					t.Errorf("cluster default config %+v", c)
					continue
				}
				got[c.Name] = *c.Value
			}
			if want := map[string]string{"log.segment.bytes": "2097152", "message.max.bytes": "2000000"}; !mapsEqual(got, want) {
				t.Errorf("cluster default configs %v, want %v", got, want)
			}

			for _, c := range []struct {
				typ  kmsg.ConfigResourceType
				name string
				want *kerr.Error
			}{
				{kmsg.ConfigResourceTypeTopic, "nope", kerr.UnknownTopicOrPartition},
				{kmsg.ConfigResourceTypeTopic, "bad/name", kerr.InvalidTopicException},
				{kmsg.ConfigResourceTypeBroker, "2", kerr.InvalidRequest},
				{kmsg.ConfigResourceTypeBroker, "one", kerr.InvalidRequest},
				{kmsg.ConfigResourceTypeBrokerLogger, "1", nil},
				{kmsg.ConfigResourceTypeBrokerLogger, "", kerr.InvalidRequest},
				{kmsg.ConfigResourceTypeBrokerLogger, "2", kerr.InvalidRequest},
				{kmsg.ConfigResourceTypeClientMetrics, "m", kerr.InvalidRequest},
			} {
				sr := describe(v, c.typ, c.name, nil, false, false)
				adminCode(t, fmt.Sprintf("%v %q", c.typ, c.name), sr.ErrorCode, c.want)
				if len(sr.Configs) != 0 {
					t.Errorf("%v %q: configs %+v", c.typ, c.name, sr.Configs)
				}
				if c.want != nil && sr.ErrorMessage == nil {
					t.Errorf("%v %q: no error message", c.typ, c.name)
				}
			}
		})
	}
}

func TestAlterConfigs(t *testing.T) {
	h := adminHandler(t, nil)
	ctx := context.Background()
	adminCreate(t, h, "alter", 1, map[string]string{"retention.ms": "1000", "cleanup.policy": "compact"})

	type res struct {
		typ     kmsg.ConfigResourceType
		name    string
		configs map[string]*string
	}
	alter := func(v int16, validateOnly bool, rs ...res) []kmsg.AlterConfigsResponseResource {
		t.Helper()
		req := kmsg.NewPtrAlterConfigsRequest()
		req.Version, req.ValidateOnly = v, validateOnly
		for _, r := range rs {
			rr := kmsg.NewAlterConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = r.typ, r.name
			for k, val := range r.configs {
				c := kmsg.NewAlterConfigsRequestResourceConfig()
				c.Name, c.Value = k, val
				rr.Configs = append(rr.Configs, c)
			}
			req.Resources = append(req.Resources, rr)
		}
		resp := h.alterConfigs(ctx, req)
		if resp.Version != v || len(resp.Resources) != len(rs) {
			t.Fatalf("response %+v", resp)
		}
		for i, r := range rs {
			if resp.Resources[i].ResourceType != r.typ || resp.Resources[i].ResourceName != r.name {
				t.Errorf("answer %d is for %v %q", i, resp.Resources[i].ResourceType, resp.Resources[i].ResourceName)
			}
		}
		return resp.Resources
	}
	s := kmsg.StringPtr
	topicConfigs := func() map[string]string { return h.b.Image().Topics["alter"].Configs }

	for _, v := range []int16{0, 1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			adminAlterTopicReset(t, h, "alter", map[string]string{"retention.ms": "1000", "cleanup.policy": "compact"})
			// Validate only: nothing changes.
			r := alter(v, true, res{kmsg.ConfigResourceTypeTopic, "alter", map[string]*string{"segment.bytes": s("1048576")}})
			adminCode(t, "validate only", r[0].ErrorCode, nil)
			if got := topicConfigs(); len(got) != 2 || got["retention.ms"] != "1000" {
				t.Errorf("validate-only changed configs: %v", topicConfigs())
			}

			// The given set replaces the old one.
			r = alter(v, false, res{kmsg.ConfigResourceTypeTopic, "alter", map[string]*string{"segment.bytes": s("1048576")}})
			adminCode(t, "replace", r[0].ErrorCode, nil)
			if got := topicConfigs(); len(got) != 1 || got["segment.bytes"] != "1048576" {
				t.Errorf("configs after replace: %v", got)
			}

			for _, c := range []struct {
				name string
				r    res
				want *kerr.Error
			}{
				{"bad value", res{kmsg.ConfigResourceTypeTopic, "alter", map[string]*string{"retention.ms": s("x")}}, kerr.InvalidConfig},
				{"unknown config", res{kmsg.ConfigResourceTypeTopic, "alter", map[string]*string{"nope": s("1")}}, kerr.InvalidConfig},
				{"broker config on topic", res{kmsg.ConfigResourceTypeTopic, "alter", map[string]*string{"log.retention.ms": s("1")}}, kerr.InvalidConfig},
				{"null value", res{kmsg.ConfigResourceTypeTopic, "alter", map[string]*string{"retention.ms": nil}}, kerr.InvalidRequest},
				{"unknown topic", res{kmsg.ConfigResourceTypeTopic, "nope", nil}, kerr.UnknownTopicOrPartition},
				{"bad topic name", res{kmsg.ConfigResourceTypeTopic, "bad name", nil}, kerr.InvalidTopicException},
				{"read-only broker config", res{kmsg.ConfigResourceTypeBroker, "1", map[string]*string{"num.partitions": s("4")}}, kerr.InvalidConfig},
				{"bad broker value", res{kmsg.ConfigResourceTypeBroker, "", map[string]*string{"log.retention.ms": s("soon")}}, kerr.InvalidConfig},
				{"unregistered broker", res{kmsg.ConfigResourceTypeBroker, "3", nil}, kerr.InvalidRequest},
				{"negative broker", res{kmsg.ConfigResourceTypeBroker, "-1", nil}, kerr.InvalidRequest},
				{"broker not a number", res{kmsg.ConfigResourceTypeBroker, "one", nil}, kerr.InvalidRequest},
				{"broker logger", res{kmsg.ConfigResourceTypeBrokerLogger, "1", nil}, kerr.InvalidRequest},
				{"unknown type", res{kmsg.ConfigResourceType(3), "x", nil}, kerr.InvalidRequest},
			} {
				r := alter(v, false, c.r)
				adminCode(t, c.name, r[0].ErrorCode, c.want)
				if r[0].ErrorMessage == nil {
					t.Errorf("%s: no error message", c.name)
				}
			}
			if got := topicConfigs(); len(got) != 1 || got["segment.bytes"] != "1048576" {
				t.Errorf("configs changed by failed requests: %v", got)
			}

			// Duplicate resources: both refused.
			r = alter(v, false,
				res{kmsg.ConfigResourceTypeTopic, "alter", nil},
				res{kmsg.ConfigResourceTypeBroker, "", map[string]*string{"log.retention.ms": s("5000")}},
				res{kmsg.ConfigResourceTypeTopic, "alter", nil})
			adminCode(t, "dup 0", r[0].ErrorCode, kerr.InvalidRequest)
			adminCode(t, "broker", r[1].ErrorCode, nil)
			adminCode(t, "dup 2", r[2].ErrorCode, kerr.InvalidRequest)
			if got := h.b.Image().BrokerConfigs; len(got) != 1 || got["log.retention.ms"] != "5000" {
				t.Errorf("broker configs %v", got)
			}
			// The topic without its own retention now has the broker's.
			tc, err := h.b.TopicConfig(h.b.Image().Topics["alter"])
			if err != nil || tc.RetentionMs != 5000 {
				t.Errorf("effective retention %d, %v", tc.RetentionMs, err)
			}

			// A broker's id sets that broker's own configs, over the
			// cluster default, and replaces them.
			r = alter(v, false, res{kmsg.ConfigResourceTypeBroker, "1", map[string]*string{"log.retention.ms": s("7000"), "log.retention.bytes": s("100")}})
			adminCode(t, "broker by id", r[0].ErrorCode, nil)
			r = alter(v, false, res{kmsg.ConfigResourceTypeBroker, "1", map[string]*string{"log.retention.ms": s("6000")}})
			adminCode(t, "broker by id again", r[0].ErrorCode, nil)
			if got := h.b.Image().PerBrokerConfigs[1]; len(got) != 1 || got["log.retention.ms"] != "6000" {
				t.Errorf("broker 1's configs %v, want log.retention.ms=6000 alone", got)
			}
			if got := h.b.Image().BrokerConfigs; len(got) != 1 || got["log.retention.ms"] != "5000" {
				t.Errorf("cluster default changed by broker 1's: %v", got)
			}
			if tc, err := h.b.TopicConfig(h.b.Image().Topics["alter"]); err != nil || tc.RetentionMs != 6000 {
				t.Errorf("effective retention %d, %v; want broker 1's 6000", tc.RetentionMs, err)
			}
			r = alter(v, false, res{kmsg.ConfigResourceTypeBroker, "", nil}, res{kmsg.ConfigResourceTypeBroker, "1", nil})
			adminCode(t, "clear broker", r[0].ErrorCode, nil)
			adminCode(t, "clear broker 1", r[1].ErrorCode, nil)
			if img := h.b.Image(); len(img.BrokerConfigs) != 0 || len(img.PerBrokerConfigs) != 0 {
				t.Errorf("broker configs %v, per broker %v", img.BrokerConfigs, img.PerBrokerConfigs)
			}
		})
	}

	t.Run("duplicate keys", func(t *testing.T) {
		req := kmsg.NewPtrAlterConfigsRequest()
		rr := kmsg.NewAlterConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, "alter"
		rr.Configs = []kmsg.AlterConfigsRequestResourceConfig{{Name: "retention.ms", Value: s("1")}, {Name: "retention.ms", Value: s("2")}}
		req.Resources = append(req.Resources, rr)
		adminCode(t, "duplicate keys", h.alterConfigs(ctx, req).Resources[0].ErrorCode, kerr.InvalidRequest)
	})
}

func TestIncrementalAlterConfigs(t *testing.T) {
	h := adminHandler(t, nil)
	ctx := context.Background()
	adminCreate(t, h, "inc", 1, map[string]string{"retention.ms": "1000"})

	op := func(name string, o kmsg.IncrementalAlterConfigOp, v *string) kmsg.IncrementalAlterConfigsRequestResourceConfig {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Op, c.Value = name, o, v
		return c
	}
	type res struct {
		typ  kmsg.ConfigResourceType
		name string
		ops  []kmsg.IncrementalAlterConfigsRequestResourceConfig
	}
	alter := func(v int16, validateOnly bool, rs ...res) []kmsg.IncrementalAlterConfigsResponseResource {
		t.Helper()
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		req.Version, req.ValidateOnly = v, validateOnly
		for _, r := range rs {
			rr := kmsg.NewIncrementalAlterConfigsRequestResource()
			rr.ResourceType, rr.ResourceName, rr.Configs = r.typ, r.name, r.ops
			req.Resources = append(req.Resources, rr)
		}
		resp := h.incrementalAlterConfigs(ctx, req)
		if resp.Version != v || len(resp.Resources) != len(rs) {
			t.Fatalf("response %+v", resp)
		}
		return resp.Resources
	}
	s := kmsg.StringPtr
	set, del, app, sub := kmsg.IncrementalAlterConfigOpSet, kmsg.IncrementalAlterConfigOpDelete, kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract
	topic := func(ops ...kmsg.IncrementalAlterConfigsRequestResourceConfig) res {
		return res{kmsg.ConfigResourceTypeTopic, "inc", ops}
	}
	configs := func() map[string]string { return h.b.Image().Topics["inc"].Configs }

	for _, v := range []int16{0, 1} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			steps := []struct {
				name         string
				r            res
				validateOnly bool
				want         *kerr.Error
				after        map[string]string
			}{
				{"set", topic(op("segment.bytes", set, s("1048576"))), false, nil, map[string]string{"retention.ms": "1000", "segment.bytes": "1048576"}},
				{"validate only", topic(op("retention.ms", del, nil)), true, nil, map[string]string{"retention.ms": "1000", "segment.bytes": "1048576"}},
				{"delete", topic(op("retention.ms", del, nil), op("not.set", del, nil)), false, nil, map[string]string{"segment.bytes": "1048576"}},
				{"append from default", topic(op("cleanup.policy", app, s("compact"))), false, nil, map[string]string{"segment.bytes": "1048576", "cleanup.policy": "delete,compact"}},
				{"append present", topic(op("cleanup.policy", app, s("delete"))), false, nil, map[string]string{"segment.bytes": "1048576", "cleanup.policy": "delete,compact"}},
				{"subtract", topic(op("cleanup.policy", sub, s("delete"))), false, nil, map[string]string{"segment.bytes": "1048576", "cleanup.policy": "compact"}},
				{"append to non-list", topic(op("retention.ms", app, s("1"))), false, kerr.InvalidConfig, nil},
				{"subtract from unknown", topic(op("no.such", sub, s("1"))), false, kerr.InvalidConfig, nil},
				{"append bad item", topic(op("cleanup.policy", app, s("shred"))), false, kerr.InvalidConfig, nil},
				{"set bad value", topic(op("segment.bytes", set, s("big"))), false, kerr.InvalidConfig, nil},
				{"set unknown", topic(op("no.such", set, s("1"))), false, kerr.InvalidConfig, nil},
				{"set null", topic(op("segment.bytes", set, nil)), false, kerr.InvalidRequest, nil},
				{"unknown op", topic(op("segment.bytes", kmsg.IncrementalAlterConfigOp(9), s("1"))), false, kerr.InvalidRequest, nil},
				{"duplicate keys", topic(op("segment.bytes", set, s("1048576")), op("segment.bytes", del, nil)), false, kerr.InvalidRequest, nil},
				{"unknown topic", res{kmsg.ConfigResourceTypeTopic, "nope", nil}, false, kerr.UnknownTopicOrPartition, nil},
				{"logger set", res{kmsg.ConfigResourceTypeBrokerLogger, "1", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op("root", set, s("DEBUG"))}}, false, kerr.InvalidConfig, nil},
				{"logger append", res{kmsg.ConfigResourceTypeBrokerLogger, "1", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op("root", app, s("DEBUG"))}}, false, kerr.InvalidRequest, nil},
				{"logger nothing", res{kmsg.ConfigResourceTypeBrokerLogger, "1", nil}, false, nil, nil},
				{"logger other broker", res{kmsg.ConfigResourceTypeBrokerLogger, "2", nil}, false, kerr.InvalidRequest, nil},
				{"read-only broker config", res{kmsg.ConfigResourceTypeBroker, "", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op("num.partitions", set, s("5"))}}, false, kerr.InvalidConfig, nil},
				{"unregistered broker", res{kmsg.ConfigResourceTypeBroker, "7", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op("log.retention.ms", set, s("1"))}}, false, kerr.InvalidRequest, nil},
				{"negative broker", res{kmsg.ConfigResourceTypeBroker, "-1", nil}, false, kerr.InvalidRequest, nil},
				{"broker not a number", res{kmsg.ConfigResourceTypeBroker, "b1", nil}, false, kerr.InvalidRequest, nil},
				{"bad cordon", res{kmsg.ConfigResourceTypeBroker, "1", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op("cordoned.log.dirs", set, s("data"))}}, false, kerr.InvalidConfig, nil},
			}
			adminAlterTopicReset(t, h, "inc", map[string]string{"retention.ms": "1000"})
			for _, st := range steps {
				before := configs()
				r := alter(v, st.validateOnly, st.r)
				adminCode(t, st.name, r[0].ErrorCode, st.want)
				if st.want != nil && r[0].ErrorMessage == nil {
					t.Errorf("%s: no error message", st.name)
				}
				want := st.after
				if want == nil {
					want = before
				}
				if got := configs(); !mapsEqual(got, want) {
					t.Errorf("%s: configs %v, want %v", st.name, got, want)
				}
			}

			// Broker configs: set, append (log.cleanup.policy is a list), delete.
			b := func(ops ...kmsg.IncrementalAlterConfigsRequestResourceConfig) res {
				return res{kmsg.ConfigResourceTypeBroker, "1", ops}
			}
			r := alter(v, false, b(op("log.retention.ms", set, s("60000")), op("log.cleanup.policy", app, s("compact"))))
			adminCode(t, "broker set", r[0].ErrorCode, nil)
			if got := h.b.Image().PerBrokerConfigs[1]; !mapsEqual(got, map[string]string{"log.retention.ms": "60000", "log.cleanup.policy": "delete,compact"}) {
				t.Errorf("broker 1's configs %v", got)
			}
			tc, err := h.b.TopicConfig(h.b.Image().Topics["inc"])
			if err != nil || tc.RetentionMs != 60000 {
				t.Errorf("topic inherits retention %d, %v", tc.RetentionMs, err)
			}
			// The cluster default is another set: broker 1's stays above it.
			r = alter(v, false, res{kmsg.ConfigResourceTypeBroker, "", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op("log.retention.ms", set, s("30000"))}})
			adminCode(t, "cluster default set", r[0].ErrorCode, nil)
			if tc, err := h.b.TopicConfig(h.b.Image().Topics["inc"]); err != nil || tc.RetentionMs != 60000 {
				t.Errorf("retention %d, %v; want broker 1's 60000 over the cluster default", tc.RetentionMs, err)
			}
			r = alter(v, false, b(op("log.retention.ms", del, nil), op("log.cleanup.policy", del, nil)))
			adminCode(t, "broker delete", r[0].ErrorCode, nil)
			if got, ok := h.b.Image().PerBrokerConfigs[1]; ok {
				t.Errorf("broker 1's configs %v after deleting them all", got)
			}
			if tc, err := h.b.TopicConfig(h.b.Image().Topics["inc"]); err != nil || tc.RetentionMs != 30000 {
				t.Errorf("retention %d, %v; want the cluster default 30000", tc.RetentionMs, err)
			}
			r = alter(v, false, res{kmsg.ConfigResourceTypeBroker, "", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op("log.retention.ms", del, nil)}})
			adminCode(t, "cluster default delete", r[0].ErrorCode, nil)
			if got := h.b.Image().BrokerConfigs; len(got) != 0 {
				t.Errorf("broker configs %v", got)
			}
			// KIP-1066's cordon, the way kafka-configs sets it and
			// sluice cluster undrain removes it.
			r = alter(v, false, b(op("cordoned.log.dirs", app, s("*"))))
			adminCode(t, "cordon", r[0].ErrorCode, nil)
			if got := h.b.Image().PerBrokerConfigs[1]; !mapsEqual(got, map[string]string{"cordoned.log.dirs": "*"}) {
				t.Errorf("broker 1's configs after cordoning %v", got)
			}
			r = alter(v, false, b(op("cordoned.log.dirs", del, nil)))
			adminCode(t, "uncordon", r[0].ErrorCode, nil)
			if got, ok := h.b.Image().PerBrokerConfigs[1]; ok {
				t.Errorf("broker 1's configs after uncordoning %v", got)
			}
		})
	}
}

// adminAlterTopicReset sets a topic's dynamic configs directly.
func adminAlterTopicReset(t *testing.T, h *Handler, topic string, configs map[string]string) {
	t.Helper()
	if err := h.b.Meta().SetTopicConfigs(context.Background(), topic, configs); err != nil {
		t.Fatal(err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestDescribeLogDirs(t *testing.T) {
	h := adminHandler(t, nil)
	adminCreate(t, h, "ld", 2, nil)
	adminCreate(t, h, "other", 1, nil)
	adminProduce(t, h, "ld", 1, 5)
	p1, _ := h.b.Partition("ld", 1)
	size := p1.Log().Size()
	if size == 0 {
		t.Fatal("log is empty")
	}

	summary := func(d kmsg.DescribeLogDirsResponseDir) []string {
		var out []string
		for _, rt := range d.Topics {
			for _, p := range rt.Partitions {
				out = append(out, rt.Topic+"-"+strconv.Itoa(int(p.Partition)))
				if p.OffsetLag != 0 || p.IsFuture {
					t.Errorf("%s-%d: lag %d future %v", rt.Topic, p.Partition, p.OffsetLag, p.IsFuture)
				}
				if rt.Topic == "ld" && p.Partition == 1 && p.Size != size {
					t.Errorf("ld-1 size %d, want %d", p.Size, size)
				}
			}
		}
		return out
	}
	for _, v := range []int16{0, 1, 2, 3, 4, 5} {
		for _, c := range []struct {
			name   string
			topics []kmsg.DescribeLogDirsRequestTopic
			want   []string
		}{
			{"all", nil, []string{"ld-0", "ld-1", "other-0"}},
			{"some", []kmsg.DescribeLogDirsRequestTopic{{Topic: "ld", Partitions: []int32{1, 9}}, {Topic: "nope", Partitions: []int32{0}}}, []string{"ld-1"}},
			{"none", []kmsg.DescribeLogDirsRequestTopic{}, nil},
		} {
			req := kmsg.NewPtrDescribeLogDirsRequest()
			req.Version = v
			req.Topics = c.topics
			resp := h.describeLogDirs(req)
			if resp.Version != v || resp.ErrorCode != 0 || len(resp.Dirs) != 1 {
				t.Fatalf("v%d %s: response %+v", v, c.name, resp)
			}
			d := resp.Dirs[0]
			if d.ErrorCode != 0 || !filepath.IsAbs(d.Dir) || d.Dir != h.b.DataDir() {
				t.Errorf("v%d %s: dir %q error %d", v, c.name, d.Dir, d.ErrorCode)
			}
			if got := summary(d); !slices.Equal(got, c.want) {
				t.Errorf("v%d %s: partitions %v, want %v", v, c.name, got, c.want)
			}
			if d.TotalBytes <= 0 || d.UsableBytes < 0 || d.UsableBytes > d.TotalBytes {
				t.Errorf("v%d: total %d usable %d", v, d.TotalBytes, d.UsableBytes)
			}
		}
	}
}

func TestCreatePartitions(t *testing.T) {
	h := adminHandler(t, nil)
	ctx := context.Background()
	assign := func(lists ...[]int32) []kmsg.CreatePartitionsRequestTopicAssignment {
		out := []kmsg.CreatePartitionsRequestTopicAssignment{}
		for _, l := range lists {
			out = append(out, kmsg.CreatePartitionsRequestTopicAssignment{Replicas: l})
		}
		return out
	}
	for _, v := range []int16{0, 1, 2, 3} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			name := fmt.Sprintf("cp-v%d", v)
			adminCreate(t, h, name, 1, nil)
			steps := []struct {
				desc         string
				count        int32
				assignment   []kmsg.CreatePartitionsRequestTopicAssignment
				validateOnly bool
				topic        string
				want         *kerr.Error
				after        int
			}{
				{"validate only", 5, nil, true, name, nil, 1},
				{"grow", 3, nil, false, name, nil, 3},
				{"same", 3, nil, false, name, kerr.InvalidPartitions, 3},
				{"shrink", 2, nil, false, name, kerr.InvalidPartitions, 3},
				{"assignment", 5, assign([]int32{1}, []int32{1}), false, name, nil, 5},
				{"assignment too short", 7, assign([]int32{1}), false, name, kerr.InvalidReplicaAssignment, 5},
				{"assignment empty", 6, assign([]int32{}), false, name, kerr.InvalidReplicaAssignment, 5},
				{"assignment unknown broker", 6, assign([]int32{4}), false, name, kerr.InvalidReplicaAssignment, 5},
				{"assignment wrong factor", 6, assign([]int32{1, 4}), false, name, kerr.InvalidReplicaAssignment, 5},
				{"unknown topic", 2, nil, false, "nope", kerr.UnknownTopicOrPartition, 5},
			}
			for _, st := range steps {
				req := kmsg.NewPtrCreatePartitionsRequest()
				req.Version, req.ValidateOnly = v, st.validateOnly
				rt := kmsg.NewCreatePartitionsRequestTopic()
				rt.Topic, rt.Count, rt.Assignment = st.topic, st.count, st.assignment
				req.Topics = append(req.Topics, rt)
				resp := h.createPartitions(ctx, req)
				if resp.Version != v || len(resp.Topics) != 1 || resp.Topics[0].Topic != st.topic {
					t.Fatalf("%s: response %+v", st.desc, resp)
				}
				adminCode(t, st.desc, resp.Topics[0].ErrorCode, st.want)
				if st.want != nil && resp.Topics[0].ErrorMessage == nil {
					t.Errorf("%s: no error message", st.desc)
				}
				if got := len(h.b.Image().Topics[name].Partitions); got != st.after {
					t.Errorf("%s: %d partitions, want %d", st.desc, got, st.after)
				}
				for p := range int32(st.after) {
					if _, ok := h.b.Partition(name, p); !ok {
						t.Errorf("%s: partition %d not open", st.desc, p)
					}
				}
			}
		})
	}
	t.Run("duplicates", func(t *testing.T) {
		adminCreate(t, h, "cpdup", 1, nil)
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.Version = 3
		req.Topics = []kmsg.CreatePartitionsRequestTopic{{Topic: "cpdup", Count: 2}, {Topic: "cpdup", Count: 3}}
		resp := h.createPartitions(ctx, req)
		if len(resp.Topics) != 1 {
			t.Fatalf("answers %+v", resp.Topics)
		}
		adminCode(t, "dup", resp.Topics[0].ErrorCode, kerr.InvalidRequest)
		if got := len(h.b.Image().Topics["cpdup"].Partitions); got != 1 {
			t.Errorf("%d partitions", got)
		}
	})
}

func TestDescribeCluster(t *testing.T) {
	h := adminHandler(t, nil)
	img := h.b.Image()
	for _, v := range []int16{0, 1, 2} {
		for _, c := range []struct {
			endpoint int8
			authOps  bool
			want     *kerr.Error
		}{
			{1, false, nil},
			{1, true, nil},
			{2, false, kerr.MismatchedEndpointType},
			{5, false, kerr.UnsupportedEndpointType},
		} {
			req := kmsg.NewPtrDescribeClusterRequest()
			req.Version = v
			req.EndpointType = c.endpoint
			req.IncludeClusterAuthorizedOperations = c.authOps
			req.IncludeFencedBrokers = v >= 2
			resp := h.describeCluster(req)
			what := fmt.Sprintf("v%d endpoint %d", v, c.endpoint)
			if resp.Version != v {
				t.Errorf("%s: response version %d", what, resp.Version)
			}
			want := c.want
			if v == 0 {
				want = nil // v0 has no endpoint type
			}
			adminCode(t, what, resp.ErrorCode, want)
			if want != nil {
				if resp.ErrorMessage == nil || len(resp.Brokers) != 0 {
					t.Errorf("%s: %+v", what, resp)
				}
				continue
			}
			if resp.ClusterID == "" || resp.ClusterID != img.ClusterID || resp.ControllerID != 1 {
				t.Errorf("%s: cluster %q controller %d", what, resp.ClusterID, resp.ControllerID)
			}
			if resp.EndpointType != 1 {
				t.Errorf("%s: endpoint type %d", what, resp.EndpointType)
			}
			if len(resp.Brokers) != 1 {
				t.Fatalf("%s: brokers %+v", what, resp.Brokers)
			}
			if b := resp.Brokers[0]; b.NodeID != 1 || b.Host != "127.0.0.1" || b.Port != 9092 || b.Rack != nil || b.IsFenced {
				t.Errorf("%s: broker %+v", what, b)
			}
			wantOps := int32(math.MinInt32)
			if c.authOps {
				wantOps = 1<<5 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12
			}
			if resp.ClusterAuthorizedOperations != wantOps {
				t.Errorf("%s: authorized operations %b, want %b", what, resp.ClusterAuthorizedOperations, wantOps)
			}
		}
	}
}

// TestAdminDispatch sends empty admin requests at every served version
// through Handle and checks that each is answered once, with a response of
// its own key and version that encodes and decodes at that version.
func TestAdminDispatch(t *testing.T) {
	h := adminHandler(t, nil)
	for _, key := range []int16{19, 20, 21, 23, 32, 33, 35, 37, 44, 60} {
		for v := versions[key][0]; v <= versions[key][1]; v++ {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			var replies []server.Reply
			h.Handle(context.Background(), &server.Request{Key: key, Version: v, Msg: req}, func(r server.Reply) { replies = append(replies, r) })
			if len(replies) != 1 || replies[0].Msg == nil || replies[0].Close {
				t.Fatalf("key %d v%d: replies %+v", key, v, replies)
			}
			resp := replies[0].Msg
			if resp.Key() != key || resp.GetVersion() != v {
				t.Errorf("key %d v%d: response key %d v%d", key, v, resp.Key(), resp.GetVersion())
			}
			back := req.ResponseKind()
			if err := back.ReadFrom(resp.AppendTo(nil)); err != nil {
				t.Errorf("key %d v%d: response does not decode: %v", key, v, err)
			}
		}
	}
}

// TestCordonedBrokerTakesNoReplicas: with its only broker cordoned
// (cordoned.log.dirs=*, KIP-1066), a node places no new replica: a new
// topic or new partitions are INVALID_REPLICATION_FACTOR saying why, while
// a manual assignment naming it is obeyed, as in Kafka. Uncordoned, it
// takes them again.
func TestCordonedBrokerTakesNoReplicas(t *testing.T) {
	h := adminHandler(t, nil)
	ctx := context.Background()
	adminCreate(t, h, "before", 1, nil)
	cordon := func(op kmsg.IncrementalAlterConfigOp, v *string) {
		t.Helper()
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		rr := kmsg.NewIncrementalAlterConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeBroker, "1"
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Op, c.Value = "cordoned.log.dirs", op, v
		rr.Configs = append(rr.Configs, c)
		req.Resources = append(req.Resources, rr)
		adminCode(t, "cordon", h.incrementalAlterConfigs(ctx, req).Resources[0].ErrorCode, nil)
	}
	create := func(name string, assignment []int32) kmsg.CreateTopicsResponseTopic {
		t.Helper()
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 7
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 2, 1
		if assignment != nil {
			rt.NumPartitions, rt.ReplicationFactor = -1, -1
			rt.ReplicaAssignment = []kmsg.CreateTopicsRequestTopicReplicaAssignment{{Partition: 0, Replicas: assignment}}
		}
		req.Topics = append(req.Topics, rt)
		return h.createTopics(ctx, req).Topics[0]
	}
	grow := func(name string, count int32, assignment []int32) kmsg.CreatePartitionsResponseTopic {
		t.Helper()
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.Version = 3
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = name, count
		if assignment != nil {
			rt.Assignment = []kmsg.CreatePartitionsRequestTopicAssignment{{Replicas: assignment}}
		}
		req.Topics = append(req.Topics, rt)
		return h.createPartitions(ctx, req).Topics[0]
	}
	cordoned := func(what string, code int16, msg *string) {
		t.Helper()
		adminCode(t, what, code, kerr.InvalidReplicationFactor)
		if msg == nil || !strings.Contains(*msg, "cordoned") {
			t.Errorf("%s: message %v does not say the brokers are cordoned", what, msg)
		}
	}

	cordon(kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("*"))
	r := create("new", nil)
	cordoned("create on a cordoned broker", r.ErrorCode, r.ErrorMessage)
	if _, ok := h.b.Image().Topics["new"]; ok {
		t.Error("the topic was created")
	}
	g := grow("before", 2, nil)
	cordoned("grow on a cordoned broker", g.ErrorCode, g.ErrorMessage)
	// Explicit assignments are obeyed.
	adminCode(t, "create assigned", create("assigned", []int32{1}).ErrorCode, nil)
	adminCode(t, "grow assigned", grow("before", 2, []int32{1}).ErrorCode, nil)
	// The partitions already there keep working.
	adminProduce(t, h, "before", 0, 3)

	cordon(kmsg.IncrementalAlterConfigOpDelete, nil)
	adminCode(t, "create uncordoned", create("new", nil).ErrorCode, nil)
	adminCode(t, "grow uncordoned", grow("before", 3, nil).ErrorCode, nil)
}
