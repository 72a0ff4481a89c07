package broker

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// openFilesFS counts the files open through it, as a process's descriptor
// table would, and fails opens with EMFILE at its limit (RLIMIT_NOFILE).
type openFilesFS struct {
	vfs.FS
	mu            sync.Mutex
	open, maxOpen int
}

type openFile struct {
	vfs.File
	fs     *openFilesFS
	closed bool
}

func (c *openFilesFS) opened(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open++
	c.maxOpen = max(c.maxOpen, c.open)
	return &openFile{File: f, fs: c}, nil
}

func (c *openFilesFS) Create(name string) (vfs.File, error) { return c.opened(c.FS.Create(name)) }
func (c *openFilesFS) OpenAppend(name string) (vfs.File, error) {
	return c.opened(c.FS.OpenAppend(name))
}
func (c *openFilesFS) Open(name string) (vfs.File, error) { return c.opened(c.FS.Open(name)) }

func (f *openFile) Close() error {
	f.fs.mu.Lock()
	if !f.closed {
		f.closed = true
		f.fs.open--
	}
	f.fs.mu.Unlock()
	return f.File.Close()
}

func (c *openFilesFS) counts() (open, maxOpen int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open, c.maxOpen
}

// rlimited is fs failing opens with EMFILE while n files are open.
func rlimited(c *openFilesFS, n int) vfs.FS {
	return vfs.NewFault(c, func(op vfs.Op, _ string) error {
		if op == vfs.OpOpen || op == vfs.OpCreate {
			if open, _ := c.counts(); open >= n {
				return syscall.EMFILE
			}
		}
		return nil
	})
}

// TestMorePartitionsThanDescriptors: a broker whose process may hold 96
// files open leads 300 partitions: it creates them, takes a durable write
// on each and reads it back, shuts down and starts again, and serves every
// record. On main every partition kept its segment open: the topic could
// not be created (EMFILE at the 96th file) and, had it been, the broker
// could not have started again.
func TestMorePartitionsThanDescriptors(t *testing.T) {
	const (
		partitions = 300
		rlimit     = 96
	)
	counting := &openFilesFS{FS: vfs.NewMem()}
	fs := rlimited(counting, rlimit)
	dir := t.TempDir()
	cfg := Config{NodeID: 1, DataDir: dir, Host: "127.0.0.1", Port: 9092, FS: fs, MaxOpenFiles: rlimit / 3}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Meta().CreateTopic(context.Background(), "t", partitions, []int32{1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatalf("open %d partitions with %d descriptors: %v", partitions, rlimit, err)
	}
	value := func(p int) string { return fmt.Sprintf("record of partition %d", p) }
	for i := range partitions {
		p, ok := b.Partition("t", int32(i))
		if !ok {
			t.Fatalf("partition %d not open", i)
		}
		bt, err := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
			[]record.Record{{Value: []byte(value(i))}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Append(bt)
		if err != nil {
			t.Fatalf("append to partition %d: %v", i, err)
		}
		if err := p.WaitDurable(res.LastOffset); err != nil {
			t.Fatalf("fsync partition %d: %v", i, err)
		}
	}
	check := func(b *Broker, when string) {
		t.Helper()
		for i := range partitions {
			p, ok := b.Partition("t", int32(i))
			if !ok {
				t.Fatalf("%s: partition %d not open", when, i)
			}
			raw, err := p.Log().ReadBatches(0, 1<<20)
			if err != nil {
				t.Fatalf("%s: read partition %d: %v", when, i, err)
			}
			h, err := record.Parse(raw)
			if err != nil {
				t.Fatalf("%s: partition %d: %v", when, i, err)
			}
			recs, err := record.Records(raw, h, 1<<20)
			if err != nil || len(recs) != 1 || string(recs[0].Value) != value(i) || p.HighWatermark() != 1 {
				t.Fatalf("%s: partition %d holds %v (%v), high watermark %d", when, i, recs, err, p.HighWatermark())
			}
		}
	}
	check(b, "written")
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	b, err = Open(cfg)
	if err != nil {
		t.Fatalf("start again with %d partitions and %d descriptors: %v", partitions, rlimit, err)
	}
	defer b.Close()
	check(b, "restarted")
	_, maxOpen := counting.counts()
	st := b.FileStats()
	t.Logf("%d partitions: at most %d files open at once (segment file limit %d); %d opens, %d evictions, %d over the limit",
		partitions, maxOpen, st.Limit, st.Opens, st.Evictions, st.OverLimit)
}

// TestMeasureOpenFiles (SLUICE_BROKER_MEASURE=1) reports the files open at
// once while a broker creates 10,000 partitions, writes and reads one
// record on each, and starts again, with a segment file limit of 1,000.
func TestMeasureOpenFiles(t *testing.T) {
	if os.Getenv("SLUICE_BROKER_MEASURE") == "" {
		t.Skip("set SLUICE_BROKER_MEASURE=1 to measure")
	}
	const partitions = 10000
	counting := &openFilesFS{FS: vfs.NewMem()}
	cfg := Config{NodeID: 1, DataDir: t.TempDir(), Host: "127.0.0.1", Port: 9092, FS: counting, MaxOpenFiles: 1000}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Meta().CreateTopic(context.Background(), "t", partitions, []int32{1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	for i := range partitions {
		p, _ := b.Partition("t", int32(i))
		bt, _ := record.BuildBatch(record.BatchSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
			[]record.Record{{Value: []byte("v")}})
		res, err := p.Append(bt)
		if err == nil {
			err = p.WaitDurable(res.LastOffset)
		}
		if err == nil {
			_, err = p.Log().ReadBatches(0, 1<<20)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	open, maxOpen := counting.counts()
	t.Logf("%d partitions written and read: %d files open, at most %d at once", partitions, open, maxOpen)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	counting.mu.Lock()
	counting.maxOpen = 0
	counting.mu.Unlock()
	b, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	open, maxOpen = counting.counts()
	t.Logf("started again: %d files open, at most %d at once", open, maxOpen)
}
