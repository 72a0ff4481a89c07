package api

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/vfs"
)

// TestProduceAcksAllTimesOut: an acks=all produce whose fsync does not
// finish within the request's timeout_ms is answered REQUEST_TIMED_OUT
// then, not when (if ever) the fsync returns; the batch stays appended and
// becomes visible once it is fsynced.
func TestProduceAcksAllTimesOut(t *testing.T) {
	var stuck atomic.Bool
	release := make(chan struct{})
	dir := t.TempDir()
	fs := vfs.NewFault(vfs.OS(), func(op vfs.Op, path string) error {
		if op == vfs.OpSync && stuck.Load() && strings.HasPrefix(filepath.Base(filepath.Dir(path)), "slow-") {
			<-release // a disk that stopped answering
		}
		return nil
	})
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: dir, Host: "127.0.0.1", Port: 9092, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	}()
	h := New(b, nil)
	adminCreate(t, h, "slow", 1, nil)

	stuck.Store(true)
	now := time.Now().UnixMilli()
	batch, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 200
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "slow"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	answered := make(chan server.Reply, 1)
	h.produce(context.Background(), req, func(r server.Reply) { answered <- r })
	var rep server.Reply
	select {
	case rep = <-answered:
	case <-time.After(20 * time.Second):
		t.Fatal("no answer 20 s after a produce with timeout_ms=200 whose fsync is stuck")
	}
	resp := rep.Msg.(*kmsg.ProduceResponse)
	sp := resp.Topics[0].Partitions[0]
	if sp.ErrorCode != kerr.RequestTimedOut.Code {
		t.Fatalf("error %v, want REQUEST_TIMED_OUT", kerr.ErrorForCode(sp.ErrorCode))
	}
	p, _ := b.Partition("slow", 0)
	if hw, end := p.HighWatermark(), p.Log().EndOffset(); hw != 0 || end != 1 {
		t.Fatalf("while the fsync is stuck: high watermark %d, log end %d; want 0 and 1", hw, end)
	}
	released = true
	close(release)
	if err := p.WaitDurable(0); err != nil {
		t.Fatal(err)
	}
	if hw := p.HighWatermark(); hw != 1 {
		t.Fatalf("high watermark %d once fsynced, want 1", hw)
	}
}

// TestMetadataAutoCreateAnswersLeaderNotAvailable: the Metadata request
// that auto-creates a topic gets LEADER_NOT_AVAILABLE and no partitions,
// as from Kafka; the next one gets the topic with its partitions.
func TestMetadataAutoCreateAnswersLeaderNotAvailable(t *testing.T) {
	h := adminHandler(t, map[string]string{"num.partitions": "3"})
	ask := func() kmsg.MetadataResponseTopic {
		t.Helper()
		req := kmsg.NewPtrMetadataRequest()
		req.Version, req.AllowAutoTopicCreation = 12, true
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr("auto-made")
		req.Topics = append(req.Topics, rt)
		resp := h.metadata(context.Background(), req).(*kmsg.MetadataResponse)
		if len(resp.Topics) != 1 {
			t.Fatalf("%d topics in the response", len(resp.Topics))
		}
		return resp.Topics[0]
	}
	first := ask()
	if first.ErrorCode != kerr.LeaderNotAvailable.Code || len(first.Partitions) != 0 || *first.Topic != "auto-made" {
		t.Fatalf("creating request: error %v, %d partitions, topic %q; want LEADER_NOT_AVAILABLE and none",
			kerr.ErrorForCode(first.ErrorCode), len(first.Partitions), *first.Topic)
	}
	second := ask()
	if second.ErrorCode != 0 || len(second.Partitions) != 3 {
		t.Fatalf("next request: error %v, %d partitions; want the topic with 3", kerr.ErrorForCode(second.ErrorCode), len(second.Partitions))
	}
}

// TestProduceAcksZeroErrorClosesConnection: an acks=0 produce gets no
// response, so a partition it could not append to (here one the topic does
// not have, and a topic that does not exist) closes the connection, as
// Kafka does (KafkaApis.handleProduceRequest): the producer sees the
// connection go, refreshes its metadata and resends, where otherwise it
// would go on sending to a broker that drops every batch. One that appends
// everything is answered with nothing and keeps the connection.
func TestProduceAcksZeroErrorClosesConnection(t *testing.T) {
	h := adminHandler(t, map[string]string{"auto.create.topics.enable": "false"})
	adminCreate(t, h, "zero", 1, nil)
	now := time.Now().UnixMilli()
	produce := func(topic string, partition int32) server.Reply {
		t.Helper()
		batch, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
			[]record.Record{{Value: []byte("v")}})
		if err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 9, 0, 1000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = partition, batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		answered := make(chan server.Reply, 1)
		h.produce(context.Background(), req, func(r server.Reply) { answered <- r })
		select {
		case r := <-answered:
			return r
		case <-time.After(20 * time.Second):
			t.Fatalf("acks=0 produce to %s-%d: no reply within 20 s", topic, partition)
			return server.Reply{}
		}
	}
	if r := produce("zero", 0); !r.None || r.Close {
		t.Fatalf("acks=0 produce appended: reply None=%v Close=%v, want None (no response, connection kept)", r.None, r.Close)
	}
	if r := produce("zero", 3); !r.Close {
		t.Fatalf("acks=0 produce to partition 3 of a 1-partition topic: reply None=%v Close=%v, want Close (as Kafka: the error closes the connection)", r.None, r.Close)
	}
	if r := produce("no-such-topic", 0); !r.Close {
		t.Fatalf("acks=0 produce to a topic that does not exist: reply None=%v Close=%v, want Close", r.None, r.Close)
	}
	p, _ := h.b.Partition("zero", 0)
	if end := p.Log().EndOffset(); end != 1 {
		t.Fatalf("log end offset %d after one appended acks=0 batch, want 1", end)
	}
}
