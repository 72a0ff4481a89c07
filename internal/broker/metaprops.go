package broker

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-io/sluice/internal/vfs"
)

// metaPropertiesFile identifies a data directory, as Kafka's does: the
// cluster and node it belongs to. It is written when the directory is
// first used (Kafka's "format") and checked at every start, so that a
// data dir whose metadata is lost, or that belongs to another node or
// cluster, is refused instead of being taken for a new cluster (whose
// first reconcile would see every partition as unknown).
const metaPropertiesFile = "meta.properties"

// metaPropertiesVersion is Kafka's version 1 (KRaft) meta.properties.
const metaPropertiesVersion = 1

// maxMetaPropertiesBytes bounds what is read of meta.properties.
const maxMetaPropertiesBytes = 64 << 10

// metaProperties is the content of meta.properties.
type metaProperties struct {
	ClusterID   string
	NodeID      int32
	DirectoryID string
}

// marshal writes Kafka's java.util.Properties form.
func (m metaProperties) marshal() []byte {
	var sb strings.Builder
	sb.WriteString("#\n#Written by sluice; identifies this data directory. Do not edit.\n")
	fmt.Fprintf(&sb, "cluster.id=%s\n", m.ClusterID)
	fmt.Fprintf(&sb, "directory.id=%s\n", m.DirectoryID)
	fmt.Fprintf(&sb, "node.id=%d\n", m.NodeID)
	fmt.Fprintf(&sb, "version=%d\n", metaPropertiesVersion)
	return []byte(sb.String())
}

// parseMetaProperties reads the key=value lines Kafka writes (# comments).
func parseMetaProperties(b []byte) (metaProperties, error) {
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return metaProperties{}, fmt.Errorf("line %q is not key=value", line)
		}
		kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if v := kv["version"]; v != strconv.Itoa(metaPropertiesVersion) {
		return metaProperties{}, fmt.Errorf("version %q, want %d", v, metaPropertiesVersion)
	}
	var m metaProperties
	if m.ClusterID = kv["cluster.id"]; m.ClusterID == "" {
		return m, errors.New("no cluster.id")
	}
	id, err := strconv.ParseInt(kv["node.id"], 10, 32)
	if err != nil || id < 0 {
		return m, fmt.Errorf("node.id %q is not a node id", kv["node.id"])
	}
	m.NodeID, m.DirectoryID = int32(id), kv["directory.id"]
	return m, nil
}

// readMetaProperties returns the data dir's meta.properties; ok is false
// when there is none.
func readMetaProperties(fs vfs.FS, dataDir string) (m metaProperties, ok bool, err error) {
	name := filepath.Join(dataDir, metaPropertiesFile)
	b, err := vfs.ReadFile(fs, name, maxMetaPropertiesBytes)
	if errors.Is(err, iofs.ErrNotExist) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("broker: %w; restore it from a backup, or move the data dir aside to start a new node", err)
	}
	if m, err = parseMetaProperties(b); err != nil {
		return m, false, fmt.Errorf("broker: %s: %w; restore it from a backup, or move the data dir aside to start a new node", name, err)
	}
	return m, true, nil
}

// writeMetaProperties writes meta.properties durably.
func writeMetaProperties(fs vfs.FS, dataDir string, m metaProperties) error {
	if m.DirectoryID == "" {
		var id [16]byte
		rand.Read(id[:])
		m.DirectoryID = base64.RawURLEncoding.EncodeToString(id[:])
	}
	if err := vfs.WriteFileAtomic(fs, dataDir, filepath.Join(dataDir, metaPropertiesFile), m.marshal()); err != nil {
		return fmt.Errorf("broker: write %s: %w", metaPropertiesFile, err)
	}
	return nil
}

// checkDataDir is run before the metadata store opens. With a
// meta.properties, the node id must match and the metadata must be there;
// without one, the directory must hold no partition data (it is new) or
// hold metadata (it was made before meta.properties existed, and gets one
// once the metadata is open). It returns the meta.properties, if any.
func checkDataDir(fs vfs.FS, dataDir string, nodeID int32) (metaProperties, bool, error) {
	m, ok, err := readMetaProperties(fs, dataDir)
	if err != nil {
		return m, false, err
	}
	if ok && m.NodeID != nodeID {
		return m, false, fmt.Errorf("broker: data dir %s belongs to node %d (its %s), not node %d; start with --node-id %d or use another data dir",
			dataDir, m.NodeID, metaPropertiesFile, nodeID, m.NodeID)
	}
	hasMeta, err := dirHasEntries(fs, filepath.Join(dataDir, metaDir))
	if err != nil {
		return m, false, err
	}
	if hasMeta {
		return m, ok, nil
	}
	parts, err := partitionDirs(fs, dataDir)
	if err != nil {
		return m, false, err
	}
	switch {
	case ok:
		return m, false, fmt.Errorf("broker: data dir %s belongs to cluster %s but its metadata (%s) is missing or empty; "+
			"restore %s from a backup: starting without it would begin a new cluster that knows none of the %d partition directories here",
			dataDir, m.ClusterID, filepath.Join(dataDir, metaDir), filepath.Join(dataDir, metaDir), len(parts))
	case len(parts) > 0:
		return m, false, fmt.Errorf("broker: data dir %s holds %d partition directories (%s, ...) but no metadata (%s) and no %s; "+
			"restore the metadata from a backup, or move the partition directories aside to start a new cluster",
			dataDir, len(parts), parts[0], filepath.Join(dataDir, metaDir), metaPropertiesFile)
	}
	return m, false, nil
}

// checkClusterID compares the cluster id of the open metadata with
// meta.properties, or writes meta.properties when there was none.
func checkClusterID(fs vfs.FS, dataDir string, nodeID int32, m metaProperties, found bool, clusterID string) error {
	if !found {
		return writeMetaProperties(fs, dataDir, metaProperties{ClusterID: clusterID, NodeID: nodeID})
	}
	if m.ClusterID != clusterID {
		return fmt.Errorf("broker: data dir %s belongs to cluster %s (its %s) but its metadata is of cluster %s; "+
			"the metadata was replaced: restore %s from a backup of this data dir",
			dataDir, m.ClusterID, metaPropertiesFile, clusterID, filepath.Join(dataDir, metaDir))
	}
	return nil
}

// dirHasEntries says whether dir exists and is not empty.
func dirHasEntries(fs vfs.FS, dir string) (bool, error) {
	names, err := fs.List(dir)
	if errors.Is(err, iofs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("broker: list %s: %w", dir, err)
	}
	return len(names) > 0, nil
}

// partitionDirs lists the data dir's partition directories: those holding
// a partition.metadata file, sorted.
func partitionDirs(fs vfs.FS, dataDir string) ([]string, error) {
	names, err := fs.List(dataDir)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("broker: list %s: %w", dataDir, err)
	}
	var out []string
	for _, n := range names {
		if _, ok := parsePartitionDir(n); !ok {
			continue
		}
		if _, err := fs.Stat(filepath.Join(dataDir, n, partitionMetadataFile)); err == nil {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// parsePartitionDir parses "<topic>-<partition>".
func parsePartitionDir(name string) (TopicPartition, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return TopicPartition{}, false
	}
	p, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || p < 0 || strconv.FormatInt(p, 10) != name[i+1:] {
		return TopicPartition{}, false
	}
	return TopicPartition{Topic: name[:i], Partition: int32(p)}, true
}

// strayName is where a partition directory that the metadata does not
// know goes, as in Kafka 3.7+: "<topic>-<partition>.<unique id>-stray".
// Nothing deletes it; an operator may, once sure it is not needed.
func strayName(dir string) string {
	var id [16]byte
	rand.Read(id[:])
	return fmt.Sprintf("%s.%x-stray", dir, id)
}
