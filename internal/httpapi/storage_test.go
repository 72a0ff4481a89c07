package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/partition"
	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// faultyBroker opens a broker on a MemFS whose partition directories (and
// the data dir's space probe) fail writes with fault while it is set.
func faultyBroker(t *testing.T, fault *atomic.Pointer[error]) (*broker.Broker, *Metrics, string) {
	t.Helper()
	dir := t.TempDir()
	fs := vfs.NewFault(vfs.NewMem(), func(op vfs.Op, path string) error {
		errp := fault.Load()
		if errp == nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		if !strings.HasPrefix(rel, "t-") && !strings.HasSuffix(rel, "probe.tmp") {
			return nil
		}
		switch op {
		case vfs.OpWrite:
			return &vfs.ShortWrite{N: 9, Err: *errp}
		case vfs.OpCreate:
			return *errp
		}
		return nil
	})
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: dir, Host: "127.0.0.1", Port: 9092, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Meta().CreateTopic(context.Background(), "t", 2, []int32{1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	m.SetBroker(b)
	return b, m, dir
}

func produce(t *testing.T, b *broker.Broker, p int32, value string) error {
	t.Helper()
	part, ok := b.Partition("t", p)
	if !ok {
		t.Fatalf("partition %d not open", p)
	}
	bt, err := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Value: []byte(value)}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := part.Append(bt)
	if err != nil {
		return err
	}
	return part.WaitDurable(res.LastOffset) // as acks=all
}

func consumed(t *testing.T, b *broker.Broker, p int32) []string {
	t.Helper()
	part, _ := b.Partition("t", p)
	var out []string
	for off := int64(0); off < part.HighWatermark(); {
		raw, err := part.Log().ReadBatches(off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		it := record.NewIter(raw)
		for {
			batch, h, ok := it.Next()
			if !ok {
				break
			}
			recs, err := record.Records(batch, h, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				out = append(out, string(r.Value))
			}
			off = h.LastOffset() + 1
		}
	}
	return out
}

// TestDiskFullThenFreed: a produce on a full disk fails with a storage
// error (KAFKA_STORAGE_ERROR), /readyz says the broker is degraded and the
// metrics show the full log dir and partition; once space is freed the
// next produce succeeds, without a restart, /readyz is ready again, and
// every acknowledged record is there. The state also clears by the space
// probe when no produce comes. On main the partition refused every produce
// until a restart, /readyz stayed ready and no metric showed it.
func TestDiskFullThenFreed(t *testing.T) {
	var fault atomic.Pointer[error]
	b, m, dir := faultyBroker(t, &fault)
	defer b.Close()
	h := Handler(m, closedReady())
	if err := produce(t, b, 0, "before"); err != nil {
		t.Fatal(err)
	}
	enospc := error(syscall.ENOSPC)
	fault.Store(&enospc)
	err := produce(t, b, 0, "lost")
	if !errors.Is(err, partition.ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("produce on a full disk: %v, want a storage error with ENOSPC", err)
	}
	code, body := get(t, h, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "degraded") || !strings.Contains(body, "full") {
		t.Errorf("/readyz with a full disk: %d %q", code, body)
	}
	_, metrics := get(t, h, "/metrics")
	for _, want := range []string{
		fmt.Sprintf("sluice_log_dir_no_space{dir=%q} 1", dir),
		fmt.Sprintf("sluice_log_dir_offline{dir=%q} 0", dir),
		`sluice_partition_storage_error{partition="0",reason="no_space",topic="t"} 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("no %q in:\n%s", want, grep(metrics, "storage_error\"|log_dir"))
		}
	}
	fault.Store(nil) // space freed
	if err := produce(t, b, 0, "after"); err != nil {
		t.Fatalf("produce once space is freed: %v", err)
	}
	if code, body := get(t, h, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with space again: %d %q", code, body)
	}
	_, metrics = get(t, h, "/metrics")
	if want := fmt.Sprintf("sluice_log_dir_no_space{dir=%q} 0", dir); !strings.Contains(metrics, want+"\n") || strings.Contains(metrics, "sluice_partition_storage_error{") {
		t.Errorf("metrics with space again:\n%s", grep(metrics, "storage_error|log_dir"))
	}
	if got := consumed(t, b, 0); strings.Join(got, ",") != "before,after" {
		t.Fatalf("partition 0 holds %v, want [before after]", got)
	}

	// Full again; space is freed while nobody produces: the probe finds it.
	fault.Store(&enospc)
	if err := produce(t, b, 1, "lost"); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("produce on a full disk: %v", err)
	}
	if err := b.ProbeLogDirs(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("probe of a full disk: %v", err)
	}
	fault.Store(nil)
	if err := b.ProbeLogDirs(); err != nil {
		t.Fatalf("probe with space: %v", err)
	}
	if code, body := get(t, h, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the probe: %d %q", code, body)
	}
}

// TestIOErrorTakesLogDirOffline: an I/O error (EIO) writing a partition
// fails it for good and takes the log dir offline, as Kafka's
// LogDirFailureChannel: every partition refuses produce requests, also
// once the fault is gone; /readyz is degraded and the metrics say so.
func TestIOErrorTakesLogDirOffline(t *testing.T) {
	var fault atomic.Pointer[error]
	b, m, dir := faultyBroker(t, &fault)
	h := Handler(m, closedReady())
	eio := error(syscall.EIO)
	fault.Store(&eio)
	if err := produce(t, b, 0, "x"); !errors.Is(err, partition.ErrStorage) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("produce with EIO: %v", err)
	}
	fault.Store(nil)
	for p := range int32(2) {
		if err := produce(t, b, p, "y"); !errors.Is(err, partition.ErrStorage) {
			t.Fatalf("produce to partition %d of the offline dir: %v, want a storage error", p, err)
		}
	}
	code, body := get(t, h, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "offline") {
		t.Errorf("/readyz with the log dir offline: %d %q", code, body)
	}
	_, metrics := get(t, h, "/metrics")
	for _, want := range []string{
		fmt.Sprintf("sluice_log_dir_offline{dir=%q} 1", dir),
		`sluice_partition_storage_error{partition="0",reason="io_error",topic="t"} 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("no %q in:\n%s", want, grep(metrics, "storage_error\"|log_dir"))
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("close with the log dir offline: %v, want the failure logged, not returned", err)
	}
}
