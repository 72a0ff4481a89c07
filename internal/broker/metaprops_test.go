package broker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// openTestBroker opens a broker on the OS filesystem in dir.
func openTestBroker(t *testing.T, dir string, nodeID int32) (*Broker, error) {
	t.Helper()
	return Open(Config{NodeID: nodeID, DataDir: dir, Host: "127.0.0.1", Port: 9092})
}

// withTopic starts a broker in a new dir, creates topic t with one record
// in partition 0, and closes it cleanly.
func withTopic(t *testing.T, topic string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := openTestBroker(t, dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Meta().CreateTopic(context.Background(), topic, 1, []int32{1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	p, ok := b.Partition(topic, 0)
	if !ok {
		t.Fatal("partition not open")
	}
	batch, err := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, []record.Record{{Value: []byte("keep me")}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Append(batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitDurable(res.LastOffset); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// segmentBytes is the size of partition dir's first segment, -1 if gone.
func segmentBytes(dir string) int64 {
	fi, err := os.Stat(filepath.Join(dir, "00000000000000000000.log"))
	if err != nil {
		return -1
	}
	return fi.Size()
}

// TestLostMetadataRefusedNotWiped: with meta/ lost (or emptied), the broker
// refuses to start, saying what to do, and deletes nothing; on main it
// started a new cluster and its first reconcile removed every partition
// directory.
func TestLostMetadataRefusedNotWiped(t *testing.T) {
	dir := withTopic(t, "precious")
	before := segmentBytes(filepath.Join(dir, "precious-0"))
	if before <= 0 {
		t.Fatalf("segment of precious-0: %d bytes", before)
	}
	if err := os.RemoveAll(filepath.Join(dir, metaDir)); err != nil {
		t.Fatal(err)
	}
	b, err := openTestBroker(t, dir, 1)
	if err == nil {
		b.Close()
		t.Fatal("a data dir without its metadata was opened")
	}
	if !strings.Contains(err.Error(), "restore") || !strings.Contains(err.Error(), "meta") {
		t.Errorf("error does not say what to do: %v", err)
	}
	if after := segmentBytes(filepath.Join(dir, "precious-0")); after != before {
		t.Fatalf("precious-0's segment is %d bytes after the refused start, was %d", after, before)
	}
	// The same without meta.properties (a data dir of before it existed,
	// or both lost): partition data and no metadata is refused too.
	if err := os.Remove(filepath.Join(dir, metaPropertiesFile)); err != nil {
		t.Fatal(err)
	}
	if b, err = openTestBroker(t, dir, 1); err == nil {
		b.Close()
		t.Fatal("partition data without metadata or meta.properties was opened")
	}
	if after := segmentBytes(filepath.Join(dir, "precious-0")); after != before {
		t.Fatalf("precious-0's segment is %d bytes after the second refused start, was %d", after, before)
	}
}

// TestMetaPropertiesChecked: meta.properties is written at the first start
// and a later start with another node id, or over metadata of another
// cluster, is refused.
func TestMetaPropertiesChecked(t *testing.T) {
	dir := withTopic(t, "t")
	m, ok, err := readMetaProperties(vfs.OS(), dir)
	if err != nil || !ok || m.NodeID != 1 || m.ClusterID == "" || m.DirectoryID == "" {
		t.Fatalf("meta.properties after the first start: %+v %v %v", m, ok, err)
	}
	if b, err := openTestBroker(t, dir, 2); err == nil {
		b.Close()
		t.Fatal("node 2 opened node 1's data dir")
	} else if !strings.Contains(err.Error(), "node 1") {
		t.Errorf("error does not name the owner: %v", err)
	}
	// Metadata of another cluster in place of ours.
	other := withTopic(t, "t")
	if err := os.RemoveAll(filepath.Join(dir, metaDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(other, metaDir), filepath.Join(dir, metaDir)); err != nil {
		t.Fatal(err)
	}
	if b, err := openTestBroker(t, dir, 1); err == nil {
		b.Close()
		t.Fatal("a data dir with another cluster's metadata was opened")
	} else if !strings.Contains(err.Error(), m.ClusterID) {
		t.Errorf("error does not name the cluster: %v", err)
	}
	// An old data dir (metadata, no meta.properties) gets one.
	upgraded := withTopic(t, "u")
	if err := os.Remove(filepath.Join(upgraded, metaPropertiesFile)); err != nil {
		t.Fatal(err)
	}
	b, err := openTestBroker(t, upgraded, 1)
	if err != nil {
		t.Fatalf("a data dir from before meta.properties: %v", err)
	}
	defer b.Close()
	if _, ok, err := readMetaProperties(vfs.OS(), upgraded); !ok || err != nil {
		t.Fatalf("no meta.properties written for an old data dir: %v", err)
	}
}

// TestUnknownPartitionDirMovedAside: a partition directory the metadata
// does not know is renamed "<dir>.<id>-stray" with its data, not removed.
func TestUnknownPartitionDirMovedAside(t *testing.T) {
	dir := withTopic(t, "known")
	// A directory of a topic deleted while this node was down: copy
	// known-0 as gone-0.
	src, dst := filepath.Join(dir, "known-0"), filepath.Join(dir, "gone-0")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"00000000000000000000.log", partitionMetadataFile} {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := openTestBroker(t, dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("gone-0 still there: %v", err)
	}
	strays, _ := filepath.Glob(filepath.Join(dir, "gone-0.*-stray"))
	if len(strays) != 1 || segmentBytes(strays[0]) <= 0 {
		t.Fatalf("stray directories %v; want gone-0 moved aside with its segment", strays)
	}
	if segmentBytes(src) <= 0 {
		t.Fatal("known-0 lost its segment")
	}
}
