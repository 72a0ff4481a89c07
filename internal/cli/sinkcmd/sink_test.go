package sinkcmd

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

func TestParseBytes(t *testing.T) {
	for s, want := range map[string]int64{"64MiB": 64 << 20, "1GiB": 1 << 30, "500KB": 500e3, "4096": 4096, "10 MB": 10e6, "3B": 3} {
		if got, err := ParseBytes(s); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "MiB", "-1MiB", "0", "1.5GiB", "12XB"} {
		if _, err := ParseBytes(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

func TestRefusesBadFlags(t *testing.T) {
	ctx := clitest.Ctx(t)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "--topics"},
		{Options{Topics: "x"}, "--to"},
		{Options{Topics: "x", To: "ftp://x", RollSize: "1MiB", MaxBufferedBytes: "1MiB", RollTime: time.Second}, "s3://bucket/prefix or file://DIR"},
		{Options{Topics: "x", To: "file:///tmp/x", RollSize: "big", MaxBufferedBytes: "1MiB", RollTime: time.Second}, "--roll-size"},
		{Options{Topics: "x", To: "file:///tmp/x", RollSize: "1MiB", MaxBufferedBytes: "1MiB", RollTime: time.Second, PartitionBy: "{{nope}}"}, "unknown {{nope}}"},
		{Options{Topics: "x", To: "file:///tmp/x", RollSize: "1MiB", MaxBufferedBytes: "1MiB", RollTime: time.Second, Format: "csv"}, "--format"},
	} {
		if c.o.Format == "" {
			c.o.Format = "jsonl"
		}
		err := Run(ctx, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.o, err, c.want)
		}
	}
}

func TestHelpTeaches(t *testing.T) {
	cmd := Command()
	for _, want := range []string{"{{field:NAME}}", "__missing__", "--partition-by", "Exactly once", "sluice sink --brokers"} {
		if !strings.Contains(cmd.Long+cmd.Example, want) {
			t.Errorf("help does not mention %s", want)
		}
	}
}

// TestCommandRuns runs the command on a broker to a directory, with
// /metrics, until every record is committed.
func TestCommandRuns(t *testing.T) {
	b := clitest.Start(t, map[string]string{"group.initial.rebalance.delay.ms": "0"})
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := clitest.Ctx(t)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "clicks"); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Topic: "clicks", Value: []byte(`{"page":"home"}`), Partition: int32(i % 2),
			Timestamp: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	started := make(chan string, 1)
	o := Options{Topics: "click.*", To: "file://" + root, PartitionBy: "{{date}}/page={{field:page}}", Format: "jsonl",
		RollSize: "64MiB", MaxBufferedBytes: "1MiB", RollTime: 100 * time.Millisecond, Listen: "127.0.0.1:0", Group: "cli",
		LogLevel: "warn", StopTimeout: time.Second, Started: func(addr string) { started <- addr }}
	o.Brokers = []string{b.Addr}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(rctx, o) }()
	addr := <-started
	deadline := time.Now().Add(20 * time.Second)
	for {
		offs, err := adm.FetchOffsetsForTopics(ctx, "cli", "clicks")
		n := int64(0)
		if err == nil {
			offs.Each(func(o kadm.OffsetResponse) { n += max(o.At, 0) })
		}
		if n == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of 100 in 20 s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wants := []string{`sluice_sink_records_total{topic="clicks"} 100`, "sluice_sink_objects_total", "sluice_sink_last_flush_timestamp_seconds",
		"sluice_sink_upload_errors_total 0", `sluice_sink_lag_records{partition="1",topic="clicks"} 0`}
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing := ""
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				missing = want
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics has no %s:\n%s", missing, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, _ error) error {
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	for _, f := range files {
		if !strings.HasPrefix(f, "clicks/2026-05-06/page=home/clicks+") || !strings.HasSuffix(f, ".jsonl") {
			t.Fatalf("file %s: want clicks/2026-05-06/page=home/clicks+...jsonl", f)
		}
	}
	if len(files) < 2 {
		t.Fatalf("files %v: want at least one per partition", files)
	}
}
