package collectcmd

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/collect"
)

// The config in --help is a working config.
func TestHelpExampleConfigParses(t *testing.T) {
	t.Setenv("BACKEND_TOKEN", "b-secret")
	var lines []string
	for _, l := range strings.Split(exampleConfig, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "  "))
	}
	cfg, err := collect.ParseConfig([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("the example config of --help: %v", err)
	}
	if cfg.Sources["backend"].Token != "b-secret" || cfg.Streams["pageviews"].Schema.Subject != "pageviews-value" ||
		cfg.Limits.BufferBytes != 64<<20 || cfg.CORS.AllowedOrigins[0] != "https://shop.example" {
		t.Fatalf("the example config parsed as %+v", cfg)
	}
	var out bytes.Buffer
	cmd := Command()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil || !strings.Contains(out.String(), "key_field: user_id") || !strings.Contains(out.String(), "sendBeacon") {
		t.Fatalf("--help: %v\n%s", err, out.String())
	}
}

// Run serves a config file's streams until its context ends, and flushes
// what it took before returning.
func TestRunServesAndFlushes(t *testing.T) {
	b := clitest.Start(t, nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := clitest.Ctx(t)
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "collect.yaml")
	os.WriteFile(path, []byte("streams:\n  events: {topic: events}\n"), 0o600)
	addr := clitest.FreeAddr(t)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(runCtx, Options{Brokers: []string{b.Addr}, Listen: addr, ConfigPath: path, CollectorID: "cli-1", LogLevel: "error"})
	}()
	// Wait for the listener (Run returns early on an error).
	clitest.WaitReady(t, ctx, "http://"+addr+"/readyz", done)
	res, err := http.Post("http://"+addr+"/v1/streams/events", "application/json", strings.NewReader(`[{"a":1},{"a":2}]`))
	if err != nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("post: %v %v", res, err)
	}
	res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var recs []*kgo.Record
	for len(recs) < 2 && ctx.Err() == nil {
		recs = append(recs, consumer.PollFetches(ctx).Records()...)
	}
	if len(recs) != 2 || string(recs[1].Value) != `{"a":2}` {
		t.Fatalf("records %v", recs)
	}
	for _, h := range recs[0].Headers {
		if h.Key == collect.HeaderCollectorID && string(h.Value) != "cli-1" {
			t.Fatalf("collector id %q, want --collector-id's", h.Value)
		}
	}
}

// A bad config is refused with what is wrong.
func TestRunRefusesBadConfig(t *testing.T) {
	for _, c := range []struct{ config, want string }{
		{"streams:\n  e: {topik: e}\n", "topik"},
		{"streams:\n  e: {topic: e, sources: [web]}\n", `source "web"`},
		{"streams:\n  e: {topic: e, schema: {subject: s}}\n", "schema_registry"},
		{"streams:\n  e: {topic: e, schema: {subject: s, version: two}}\nschema_registry: http://x\n", "version"},
		{"sources: {a: {token: t}, b: {token: t}}\nstreams:\n  e: {topic: e}\n", "share a token"},
		{"{}", "no streams"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(path, []byte(c.config), 0o600)
		err := Run(context.Background(), Options{Brokers: []string{"127.0.0.1:1"}, Listen: "127.0.0.1:0", ConfigPath: path, LogLevel: "error"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: %v, want an error naming %s", c.config, err, c.want)
		}
	}
}
