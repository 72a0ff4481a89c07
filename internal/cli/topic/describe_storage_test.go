package topic

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// TestDescribeStorageError: a partition whose leader reports its log dir
// in error (offline or full: KAFKA_STORAGE_ERROR) or its replica offline
// shows it in a STORAGE column; on main describe showed nothing of it.
func TestDescribeStorageError(t *testing.T) {
	pd := kadm.PartitionDetail{Topic: "t", Partition: 0, Leader: 1, Replicas: []int32{1}, ISR: []int32{1}}
	dirs := func(err error, topics kadm.DescribedLogDirTopics) kadm.DescribedAllLogDirs {
		return kadm.DescribedAllLogDirs{1: {"/data": {Broker: 1, Dir: "/data", Err: err, Topics: topics}}}
	}
	withPartition := kadm.DescribedLogDirTopics{"t": {0: {Broker: 1, Dir: "/data", Topic: "t", Partition: 0, Size: 10}}}
	offline := pd
	offline.OfflineReplicas = []int32{1}
	for _, c := range []struct {
		name string
		dirs kadm.DescribedAllLogDirs
		pd   kadm.PartitionDetail
		want string
	}{
		{"healthy", dirs(nil, withPartition), pd, ""},
		{"dir in error, listing it", dirs(kerr.KafkaStorageError, withPartition), pd, "KAFKA_STORAGE_ERROR (log dir /data)"},
		{"dir in error, listing nothing", dirs(kerr.KafkaStorageError, nil), pd, "KAFKA_STORAGE_ERROR (log dir /data)"},
		{"dir in error, listing others", dirs(kerr.KafkaStorageError, kadm.DescribedLogDirTopics{"u": {}}), pd, ""},
		{"replica offline", dirs(nil, withPartition), offline, "leader replica offline"},
	} {
		if got := storageError(c.dirs, "t", c.pd); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}

	c, io := clitest.Common("127.0.0.1:1", nil)
	d := &DescribedTopic{Name: "t", Partitions: []DescribedPartition{
		{Partition: 0, Leader: 1, StorageError: "KAFKA_STORAGE_ERROR (log dir /data)", SizeBytes: -1},
		{Partition: 1, Leader: 1, SizeBytes: 5},
	}}
	if err := printDescribed(DescribeOptions{Common: c}, d); err != nil {
		t.Fatal(err)
	}
	out := io.Out.String()
	if !strings.Contains(out, "STORAGE") || !strings.Contains(out, "KAFKA_STORAGE_ERROR (log dir /data)") {
		t.Fatalf("no storage column in:\n%s", out)
	}
}
