package broker

import (
	"bytes"
	"context"
	"errors"
	iofs "io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// syncBuffer is a bytes.Buffer safe for the broker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCloseWithStorageFailure: a broker whose log dir went offline (EIO)
// or full (ENOSPC) shuts down without an error, saying so in one log line,
// writes no clean-shutdown marker, and starts again with every record it
// acknowledged. On main its Close failed with one error per partition.
// writeOne appends one record to a partition this broker leads and waits
// until it is durable, as an acks=all produce.
func writeOne(t *testing.T, b *Broker, topic string, p int32) error {
	t.Helper()
	part, ok := b.Partition(topic, p)
	if !ok {
		t.Fatalf("%s-%d is not led here", topic, p)
	}
	bt, err := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := part.Append(bt)
	if err == nil {
		err = part.WaitDurable(res.LastOffset)
	}
	return err
}

func TestCloseWithStorageFailure(t *testing.T) {
	for _, errno := range []error{syscall.EIO, syscall.ENOSPC} {
		t.Run(errno.Error(), func(t *testing.T) {
			mem := vfs.NewMem()
			dir := t.TempDir()
			var on atomic.Bool
			fs := vfs.NewFault(mem, func(op vfs.Op, path string) error {
				rel, _ := filepath.Rel(dir, path)
				if on.Load() && strings.HasPrefix(rel, "t-") && (op == vfs.OpWrite || op == vfs.OpCreate) {
					return errno
				}
				return nil
			})
			var logs syncBuffer
			cfg := Config{NodeID: 1, DataDir: dir, Host: "127.0.0.1", Port: 9092, FS: fs,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			b, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Meta().CreateTopic(context.Background(), "t", 20, []int32{1}, nil); err != nil {
				t.Fatal(err)
			}
			if err := b.Reconcile(); err != nil {
				t.Fatal(err)
			}
			write := func(p int32) error { return writeOne(t, b, "t", p) }
			for p := range int32(20) {
				if err := write(p); err != nil {
					t.Fatal(err)
				}
			}
			on.Store(true)
			if err := write(0); err == nil {
				t.Fatalf("write with %v succeeded", errno)
			}
			if err := b.Close(); err != nil {
				t.Fatalf("close: %v, want the storage failure logged, not returned", err)
			}
			if n := strings.Count(logs.String(), "shut down with the log directory failed or full"); n != 1 {
				t.Errorf("the shutdown said so %d times, want once:\n%s", n, logs.String())
			}
			if _, err := mem.Stat(filepath.Join(dir, cleanShutdownFile)); !errors.Is(err, iofs.ErrNotExist) {
				t.Errorf("clean-shutdown marker after a storage failure: %v", err)
			}
			on.Store(false)
			b, err = Open(cfg)
			if err != nil {
				t.Fatalf("start again: %v", err)
			}
			defer b.Close()
			for p := range int32(20) {
				part, _ := b.Partition("t", p)
				if hw := part.HighWatermark(); hw != 1 {
					t.Errorf("partition %d: high watermark %d after restart, want 1", p, hw)
				}
			}
			if err := write(0); err != nil {
				t.Errorf("write after restart: %v", err)
			}
		})
	}
}
