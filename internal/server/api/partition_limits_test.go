package api

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/vfs"
)

// createRequest is a CreateTopics v7 request for the topics given as
// name, partitions, name, partitions, ...
func createRequest(validateOnly bool, topics ...any) *kmsg.CreateTopicsRequest {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = 7
	req.ValidateOnly = validateOnly
	for i := 0; i < len(topics); i += 2 {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topics[i].(string), int32(topics[i+1].(int)), 1
		req.Topics = append(req.Topics, rt)
	}
	return req
}

// noPartitionDirs fails the test if a directory of topic exists.
func noPartitionDirs(t *testing.T, h *Handler, topic string) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(h.b.DataDir(), topic+"-*"))
	if len(dirs) > 0 {
		t.Errorf("%s: %d partition directories exist, e.g. %s", topic, len(dirs), dirs[0])
	}
}

// TestCreateTopicsPartitionsPerRequest: a CreateTopics request that would
// create more than maxPartitionsPerRequest partitions (its topics
// together) is answered POLICY_VIOLATION for every topic, ValidateOnly or
// not, and nothing is written, as Kafka's controller answers a request of
// more than 10,000 records. On main `sluice topic create p -p 100000` was
// accepted (ValidateOnly answered no error, and a real request began
// creating 100,000 partition directories).
func TestCreateTopicsPartitionsPerRequest(t *testing.T) {
	h := adminHandler(t, nil)
	ctx := context.Background()
	for _, validateOnly := range []bool{true, false} {
		resp := h.createTopics(ctx, createRequest(validateOnly, "p", 100000))
		adminCode(t, fmt.Sprintf("validateOnly=%v p 100000", validateOnly), resp.Topics[0].ErrorCode, kerr.PolicyViolation)
		if m := resp.Topics[0].ErrorMessage; m == nil || !strings.Contains(*m, "10000") {
			t.Errorf("message %v does not say the limit", m)
		}
		resp = h.createTopics(ctx, createRequest(validateOnly, "a", 6000, "bad name", 1, "b", 6000))
		for i, want := range []*kerr.Error{kerr.PolicyViolation, kerr.InvalidTopicException, kerr.PolicyViolation} {
			adminCode(t, fmt.Sprintf("validateOnly=%v two of 6000: %s", validateOnly, resp.Topics[i].Topic), resp.Topics[i].ErrorCode, want)
		}
	}
	img := h.b.Image()
	for _, name := range []string{"p", "a", "b"} {
		if img.Topics[name] != nil {
			t.Errorf("%s was created", name)
		}
		noPartitionDirs(t, h, name)
	}
	// At the limit is fine.
	resp := h.createTopics(ctx, createRequest(true, "a", 4000, "b", maxPartitionsPerRequest-4000))
	adminCode(t, "a", resp.Topics[0].ErrorCode, nil)
	adminCode(t, "b", resp.Topics[1].ErrorCode, nil)
}

// TestMaxBrokerPartitions: max.broker.partitions bounds the partitions the
// broker hosts, internal topics included, for CreateTopics,
// CreatePartitions and auto-creation; a refusal writes nothing.
func TestMaxBrokerPartitions(t *testing.T) {
	h := adminHandler(t, map[string]string{"max.broker.partitions": "10", "num.partitions": "2"})
	ctx := context.Background()
	resp := h.createTopics(ctx, createRequest(false, "t6", 6, "t5", 5, "t4", 4))
	for i, want := range []*kerr.Error{nil, kerr.PolicyViolation, nil} {
		adminCode(t, resp.Topics[i].Topic, resp.Topics[i].ErrorCode, want)
	}
	if m := resp.Topics[1].ErrorMessage; m == nil || !strings.Contains(*m, "max.broker.partitions") {
		t.Errorf("message %v does not name max.broker.partitions", m)
	}
	noPartitionDirs(t, h, "t5")
	// Full: ten partitions.
	if _, err := h.autoCreate(ctx, "auto"); !errors.Is(err, kerr.PolicyViolation) {
		t.Errorf("auto-creation on a full broker: %v, want POLICY_VIOLATION", err)
	}
	cp := kmsg.NewPtrCreatePartitionsRequest()
	cp.Version = 3
	grow := kmsg.NewCreatePartitionsRequestTopic()
	grow.Topic, grow.Count = "t4", 5
	cp.Topics = append(cp.Topics, grow)
	cpResp := h.createPartitions(ctx, cp)
	adminCode(t, "grow t4 to 5", cpResp.Topics[0].ErrorCode, kerr.PolicyViolation)
	if n := len(h.b.Image().Topics["t4"].Partitions); n != 4 {
		t.Errorf("t4 has %d partitions, want 4", n)
	}
	// Room again after a deletion.
	del := kmsg.NewPtrDeleteTopicsRequest()
	del.Version = 6
	del.Topics = []kmsg.DeleteTopicsRequestTopic{{Topic: kmsg.StringPtr("t6")}}
	adminCode(t, "delete t6", h.deleteTopics(ctx, del).Topics[0].ErrorCode, nil)
	if _, err := h.autoCreate(ctx, "auto"); err != nil {
		t.Errorf("auto-creation with room: %v", err)
	}
	cpResp = h.createPartitions(ctx, cp)
	adminCode(t, "grow t4 to 5 with room", cpResp.Topics[0].ErrorCode, nil)
}

// TestCreatePartitionsPerRequest: CreatePartitions that would add more
// than maxPartitionsPerRequest partitions (all topics together) is
// answered POLICY_VIOLATION for every topic and changes nothing.
func TestCreatePartitionsPerRequest(t *testing.T) {
	h := adminHandler(t, nil)
	ctx := context.Background()
	adminCreate(t, h, "x", 1, nil)
	adminCreate(t, h, "y", 1, nil)
	for _, counts := range [][2]int32{{100001, 2}, {6001, 6001}, {1 << 30, 2}} {
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.Version = 3
		for i, name := range []string{"x", "y"} {
			rt := kmsg.NewCreatePartitionsRequestTopic()
			rt.Topic, rt.Count = name, counts[i]
			req.Topics = append(req.Topics, rt)
		}
		resp := h.createPartitions(ctx, req)
		for _, st := range resp.Topics {
			adminCode(t, fmt.Sprintf("%v %s", counts, st.Topic), st.ErrorCode, kerr.PolicyViolation)
		}
	}
	for _, name := range []string{"x", "y"} {
		if n := len(h.b.Image().Topics[name].Partitions); n != 1 {
			t.Errorf("%s has %d partitions, want 1", name, n)
		}
	}
}

// TestCreateTopicsAtomic: when a partition of a new topic cannot be
// opened (here its directory cannot be made), the topic is removed from
// the metadata again and the request answered KAFKA_STORAGE_ERROR; no
// partition of it stays open, and it can be created once the disk is
// fine. On main the topic stayed, half made (partitions 0 and 2 open, 1
// missing), and its name could not be used again.
func TestCreateTopicsAtomic(t *testing.T) {
	var fail atomic.Bool
	fs := vfs.NewFault(vfs.OS(), func(op vfs.Op, path string) error {
		if fail.Load() && op == vfs.OpMkdir && filepath.Base(path) == "half-1" {
			return vfs.ErrInjected
		}
		return nil
	})
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: t.TempDir(), Host: "127.0.0.1", Port: 9092, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	h := New(b, nil)
	ctx := context.Background()
	fail.Store(true)
	resp := h.createTopics(ctx, createRequest(false, "half", 3, "whole", 2))
	adminCode(t, "half", resp.Topics[0].ErrorCode, kerr.KafkaStorageError)
	adminCode(t, "whole", resp.Topics[1].ErrorCode, nil)
	if st := resp.Topics[0]; st.TopicID != [16]byte{} || st.NumPartitions != -1 || len(st.Configs) != 0 {
		t.Errorf("the failed topic's answer carries its details: id %x, %d partitions, %d configs", st.TopicID, st.NumPartitions, len(st.Configs))
	}
	img := h.b.Image()
	if img.Topics["half"] != nil {
		t.Fatal("the half-created topic stayed in the metadata")
	}
	if img.Topics["whole"] == nil {
		t.Fatal("the other topic of the request was not created")
	}
	for p := int32(0); p < 3; p++ {
		if _, ok := h.b.Partition("half", p); ok {
			t.Errorf("partition half-%d is still open", p)
		}
		if _, err := os.Stat(filepath.Join(h.b.DataDir(), fmt.Sprintf("half-%d", p))); err == nil {
			t.Errorf("directory half-%d is still there", p)
		}
	}
	// Auto-creation and the internal topics go through the same path.
	if _, err := h.createTopic(ctx, "half", 3, 1, nil); !errors.Is(err, kerr.KafkaStorageError) {
		t.Errorf("createTopic with the disk failing: %v, want KAFKA_STORAGE_ERROR", err)
	}
	if h.b.Image().Topics["half"] != nil {
		t.Fatal("createTopic left the half-created topic in the metadata")
	}
	fail.Store(false)
	resp = h.createTopics(ctx, createRequest(false, "half", 3))
	adminCode(t, "half once the disk is fine", resp.Topics[0].ErrorCode, nil)
	for p := int32(0); p < 3; p++ {
		if _, ok := h.b.Partition("half", p); !ok {
			t.Errorf("partition half-%d is not open", p)
		}
	}
}
