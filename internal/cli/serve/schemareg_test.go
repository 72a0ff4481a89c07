package serve

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/freeport"
	"github.com/twmb/franz-go/pkg/sr"
)

// sluice serve --schema-registry-listen serves the registry, a client of
// its own broker; its state survives a restart of the node.
func TestRunServesSchemaRegistry(t *testing.T) {
	dataDir := t.TempDir()
	regAddr := freeport.ForTest(t, "127.0.0.1")
	run := func() (stop func()) {
		o := Options{Listen: freeport.ForTest(t, "127.0.0.1"), HTTPListen: freeport.ForTest(t, "127.0.0.1"), DataDir: dataDir, NodeID: 1, LogLevel: "error",
			SchemaRegistryListen: regAddr}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, o) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}
	cl, err := sr.NewClient(sr.URLs("http://" + regAddr))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// register retries while the node starts (connection refused, then
	// 50003 until the registry has read _schemas).
	register := func(schema string) int {
		for {
			id, err := cl.RegisterSchema(ctx, "s", sr.Schema{Schema: schema}, -1, -1)
			var re *sr.ResponseError
			if err == nil {
				return id
			}
			if (errors.As(err, &re) && re.ErrorCode != 50003) || ctx.Err() != nil {
				t.Fatalf("register: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stop := run()
	id := register(`"string"`)
	stop()
	stop = run()
	defer stop()
	if again := register(`"string"`); again != id {
		t.Fatalf("after a restart the schema has id %d, want %d", again, id)
	}
	if vs, err := cl.SubjectVersions(ctx, "s"); err != nil || len(vs) != 1 {
		t.Fatalf("versions after a restart: %v %v", vs, err)
	}
}

// An address taken: refused when asked for, a warning at the default.
func TestRunSchemaRegistryAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = Run(ctx, Options{Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", DataDir: t.TempDir(), NodeID: 1, LogLevel: "error",
		SchemaRegistryListen: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "schema registry") {
		t.Fatalf("Run with a taken registry address: %v, want an error naming the schema registry", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	err = Run(ctx2, Options{Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", DataDir: t.TempDir(), NodeID: 1, LogLevel: "error",
		SchemaRegistryListen: ln.Addr().String(), SchemaRegistryOptional: true})
	if err != nil {
		t.Fatalf("Run with the default address taken: %v, want it to serve without the registry until stopped", err)
	}
}
