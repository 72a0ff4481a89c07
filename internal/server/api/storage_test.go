package api

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/vfs"
)

// TestOfflineLogDirReported: after an I/O error takes the log dir offline,
// DescribeLogDirs answers the dir KAFKA_STORAGE_ERROR with no topics and
// Metadata lists this broker as an offline replica of its partitions, as
// Kafka does; before, both looked healthy.
func TestOfflineLogDirReported(t *testing.T) {
	var broken atomic.Bool
	fs := vfs.NewFault(vfs.OS(), func(op vfs.Op, path string) error {
		if op == vfs.OpWrite && broken.Load() && strings.HasPrefix(filepath.Base(filepath.Dir(path)), "bad-") {
			return syscall.EIO
		}
		return nil
	})
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: t.TempDir(), Host: "127.0.0.1", Port: 9092, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h := New(b, nil)
	adminCreate(t, h, "bad", 1, nil)
	broken.Store(true)
	now := time.Now().UnixMilli()
	batch, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, 1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "bad"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	got := make(chan server.Reply, 1)
	h.produce(context.Background(), req, func(r server.Reply) { got <- r })
	if code := (<-got).Msg.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce on a failing disk: %v", kerr.ErrorForCode(code))
	}

	dreq := kmsg.NewPtrDescribeLogDirsRequest()
	dreq.Version = 4
	dresp := h.describeLogDirs(dreq)
	if len(dresp.Dirs) != 1 || dresp.Dirs[0].ErrorCode != kerr.KafkaStorageError.Code || len(dresp.Dirs[0].Topics) != 0 {
		t.Fatalf("DescribeLogDirs of an offline dir: %+v", dresp.Dirs)
	}
	mreq := kmsg.NewPtrMetadataRequest()
	mreq.Version = 12
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("bad")
	mreq.Topics = append(mreq.Topics, mt)
	mresp := h.metadata(context.Background(), mreq).(*kmsg.MetadataResponse)
	if p := mresp.Topics[0].Partitions[0]; len(p.OfflineReplicas) != 1 || p.OfflineReplicas[0] != 1 {
		t.Fatalf("Metadata of a partition on an offline dir: offline replicas %v, want [1]", p.OfflineReplicas)
	}
}
