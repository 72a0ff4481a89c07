package schema_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/cli"
	"github.com/sluice-io/sluice/internal/cli/serve"
	"github.com/sluice-io/sluice/internal/freeport"
)

// startServe runs sluice serve with its registry and returns the
// registry's URL once it answers.
func startServe(t *testing.T) string {
	reg := freeport.ForTest(t, "127.0.0.1")
	// Options before the cleanup below, so that the data dir outlives
	// the broker.
	o := serve.Options{Listen: freeport.ForTest(t, "127.0.0.1"), HTTPListen: freeport.ForTest(t, "127.0.0.1"), DataDir: t.TempDir(), NodeID: 1,
		LogLevel: "error", SchemaRegistryListen: reg}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve.Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	url := "http://" + reg
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(url + "/subjects")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry at %s not ready: %v", url, err)
		}
	}
}

func run(t *testing.T, stdin string, args ...string) (string, error) {
	root := cli.Root()
	var out bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestSchemaCommands(t *testing.T) {
	url := startServe(t)
	v1 := `{"type":"record","name":"U","fields":[{"name":"id","type":"int"}]}`
	v2 := `{"type":"record","name":"U","fields":[{"name":"id","type":"long"}]}`
	bad := `{"type":"record","name":"U","fields":[{"name":"id","type":"string"}]}`
	steps := []struct {
		stdin   string
		args    []string
		want    string
		wantErr bool
	}{
		{v1, []string{"schema", "register", "u", "--registry", url}, "registered u version 1, id 1", false},
		{v1, []string{"schema", "register", "u", "-", "--registry", url, "-o", "json"}, `"id": 1`, false},
		{v2, []string{"schema", "check", "u", "--registry", url}, "compatible", false},
		{bad, []string{"schema", "check", "u", "--registry", url}, "incompatible", true},
		{bad, []string{"schema", "register", "u", "--registry", url}, "error code 409", true},
		{v2, []string{"schema", "register", "u", "--registry", url}, "version 2, id 2", false},
		{"", []string{"schema", "list", "--registry", url}, "u\n", false},
		{"", []string{"schema", "list", "u", "--registry", url}, "1\n2\n", false},
		{"", []string{"schema", "get", "u", "--version", "1", "--registry", url}, `"type":"int"`, false},
		{"", []string{"schema", "get", "--id", "2", "--registry", url}, `"type":"long"`, false},
		{"", []string{"schema", "delete", "u", "--version", "1", "--permanent", "--registry", url}, "error code 40407", true},
		{"", []string{"schema", "delete", "u", "--version", "1", "--registry", url}, "soft-deleted u versions [1]", false},
		{"", []string{"schema", "list", "u", "--registry", url}, "2\n", false},
		{"", []string{"schema", "list", "u", "--deleted", "--registry", url}, "1\n2\n", false},
		{"{}", []string{"schema", "register", "u", "--type", "XML", "--registry", url}, "--type", true},
		{"", []string{"schema", "get", "u", "--registry", "http://" + freeport.ForTest(t, "127.0.0.1")}, "is it running?", true},
	}
	for _, s := range steps {
		out, err := run(t, s.stdin, s.args...)
		got := out
		if err != nil {
			got += err.Error()
		}
		if (err != nil) != s.wantErr || !strings.Contains(got, s.want) {
			t.Errorf("%v: %q (err %v), want %q (error: %v)", s.args, out, err, s.want, s.wantErr)
		}
	}
}
