package mirror

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// serveProcess runs `sluice serve` (bin) on a free loopback port with its
// data in a temporary directory until the test ends, and returns its
// address once it accepts connections. It is stopped by its PID.
func serveProcess(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	addr := clitest.FreeAddr(t)
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--http-listen", clitest.FreeAddr(t), "--schema-registry-listen", "", "--log-level", "warn")
	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	deadline := time.Now().Add(time.Minute)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("sluice serve on %s not accepting after a minute:\n%s", addr, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Between two `sluice serve` processes: every record of a 3-partition
// topic, written before and while the mirror runs, is on the other
// cluster once, in its partition, with its key, headers and timestamp.
func TestMirrorBetweenServeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs two brokers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sluice-io/sluice/cmd/sluice").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	a, b := connect(t, serveProcess(t, bin)), connect(t, serveProcess(t, bin))
	a.create(t, "orders", 3, nil)
	base := time.UnixMilli(1_700_000_000_000)
	var before, after []*kgo.Record
	for i := range 300 {
		for p := range int32(3) {
			if i < 150 {
				before = append(before, rec("orders", p, i, base))
			} else {
				after = append(after, rec("orders", p, i, base))
			}
		}
	}
	a.produce(t, before...)
	m, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "orders"})
	a.produce(t, after...)
	compare(t, a.read(t, "orders", 900), b.read(t, "orders", 900), m.SourceClusterID())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := sum(b.ends(t, "orders")); n != 900 {
		t.Fatalf("the target holds %d records, want 900 (none twice)", n)
	}
	if m.SourceClusterID() == "" || m.SourceClusterID() == m.TargetClusterID() {
		t.Fatalf("cluster ids %q and %q: two clusters should differ", m.SourceClusterID(), m.TargetClusterID())
	}
}
