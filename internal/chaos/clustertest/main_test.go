package clustertest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// buildTimeout bounds `go build ./cmd/sluice` (a cold build on a loaded
// 2-core machine takes a minute or two).
const buildTimeout = 5 * time.Minute

// sluiceBin is the sluice binary TestMain built; empty when the build was
// skipped (-short) and buildErr says why when it failed.
var (
	sluiceBin string
	buildErr  error
)

// TestMain builds cmd/sluice once for the package's tests, into a
// temporary directory removed afterwards. A failed build does not stop
// the run: TestChaos fails with it.
func TestMain(m *testing.M) {
	flag.Parse()
	var dir string
	if !testing.Short() {
		var err error
		if dir, err = os.MkdirTemp("", "sluice-chaos-bin-"); err != nil {
			buildErr = err
		} else {
			sluiceBin, buildErr = build(dir)
		}
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func build(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bin := filepath.Join(dir, "sluice")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sluice-io/sluice/cmd/sluice").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/sluice: %w\n%s", err, out)
	}
	return bin, nil
}
