package dev

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// syncBuffer is an io.Writer safe for the relaying goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// `sluice dev cluster --controllers 1 --nodes 2`: real `sluice serve`
// processes, one dedicated controller and two broker-only nodes; a client
// given the printed bootstrap list creates a replicated topic, produces and
// consumes; the layout is kept, and a rerun with other counts is refused.
func TestDevClusterDedicatedControllers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sluice and runs three processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "sluice")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sluice-io/sluice/cmd/sluice").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "cluster")
	o := ClusterOptions{Nodes: 2, Controllers: 1, Dir: dir, Host: "127.0.0.1", Binary: bin, LogLevel: "warn",
		Configs: []string{"offsets.topic.replication.factor=2"}}
	var stdout, stderr syncBuffer
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- RunCluster(runCtx, o, &stdout, &stderr) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("RunCluster: %v\n%s", err, stderr.String())
		}
	}()

	// The layout is planned and written by RunCluster: read it once it has
	// printed it.
	for !strings.Contains(stdout.String(), "Bootstrap:") {
		if ctx.Err() != nil {
			t.Fatalf("no layout printed: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	layout, err := loadOrPlan(dir, 2, 1, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if layout.Nodes[0].Role != roleController || layout.Nodes[1].Role != roleBroker || layout.Nodes[2].Role != roleBroker {
		t.Fatalf("layout %+v: want node 1 a controller, 2 and 3 brokers", layout.Nodes)
	}
	if v := layout.Voters(); !strings.HasPrefix(v, "1@") || strings.Contains(v, ",") {
		t.Fatalf("voters %q: want node 1 alone", v)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(layout.Bootstrap(), ",")...), kgo.DefaultProduceTopic("dev"),
		kgo.ConsumeTopics("dev"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for {
		resp, err := adm.CreateTopic(ctx, 2, 2, nil, "dev")
		if err == nil && resp.Err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("create a topic through the brokers: %v %v\n%s", err, resp.Err, stdout.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if fs := cl.PollFetches(ctx); fs.NumRecords() != 1 {
		t.Fatalf("consumed %d records: %v", fs.NumRecords(), fs.Errors())
	}
	// The first broker serves the schema registry, printed with the layout.
	reg := layout.Nodes[1].Registry
	if reg == "" || layout.Nodes[0].Registry != "" || layout.Nodes[2].Registry != "" || !strings.Contains(stdout.String(), "http://"+reg) {
		t.Fatalf("schema registry: %+v\n%s", layout.Nodes, stdout.String())
	}
	for {
		resp, err := http.Get("http://" + reg + "/subjects")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the schema registry at %s does not answer: %v", reg, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(stdout.String(), "controller only") || !strings.Contains(stdout.String(), "broker only") {
		t.Errorf("the printed layout does not show the roles:\n%s", stdout.String())
	}
	if _, err := loadOrPlan(dir, 3, 0, "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "--nodes 2 --controllers 1") {
		t.Errorf("a rerun with other counts: %v", err)
	}
}
