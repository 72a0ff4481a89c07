// Package clitest starts an in-process broker for the CLI commands' tests
// (the pattern of internal/e2e's start helper): a real broker on a random
// loopback port with its data in the test's temporary directory.
package clitest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/freeport"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/server/api"
)

// Broker is a broker serving on a random loopback port until the test ends.
type Broker struct {
	Addr string
	t    testing.TB
	b    *broker.Broker
	srv  *server.Server
	done chan struct{}
}

func logger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// Start opens a broker in t.TempDir() with the given static broker configs
// and stops it when the test ends.
func Start(t testing.TB, static map[string]string) *Broker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: t.TempDir(), Host: host, Port: int32(port), Static: static,
		Logger: logger(), RetentionCheckInterval: time.Hour})
	if err != nil {
		ln.Close()
		t.Fatalf("open broker: %v", err)
	}
	tb := &Broker{Addr: ln.Addr().String(), t: t, b: b, done: make(chan struct{})}
	tb.srv = server.New(api.New(b, logger()), logger())
	go func() {
		defer close(tb.done)
		tb.srv.Serve(ln)
	}()
	t.Cleanup(tb.Stop)
	return tb
}

// Stop stops the broker (also done when the test ends).
func (tb *Broker) Stop() {
	if tb.srv == nil {
		return
	}
	tb.srv.Close()
	<-tb.done
	if err := tb.b.Close(); err != nil {
		tb.t.Errorf("close broker: %v", err)
	}
	tb.srv = nil
}

// IO is a command's streams as buffers.
type IO struct {
	Out, Err *bytes.Buffer
}

// Common returns options for addr with stdin reading in (nil: empty) and
// stdout and stderr into the returned buffers.
func Common(addr string, in io.Reader) (clientopts.Common, IO) {
	if in == nil {
		in = strings.NewReader("")
	}
	bufs := IO{Out: new(bytes.Buffer), Err: new(bytes.Buffer)}
	return clientopts.Common{Brokers: []string{addr}, Timeout: 10 * time.Second, In: in, Out: bufs.Out, Err: bufs.Err}, bufs
}

// DeadAddr returns a loopback address where nothing listens, to dial and
// fail.
func DeadAddr(t testing.TB) string {
	t.Helper()
	return FreeAddr(t)
}

// FreeAddr returns a loopback address with a port nothing listens on, for
// a server under test to listen on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return freeport.ForTest(t, "127.0.0.1")
}

// Ctx is a context that ends with the test or after 30 seconds.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// WaitReady waits until GET url answers 200 (a /readyz), failing the test
// when done delivers first (the server's Run returned) or ctx ends.
func WaitReady(t testing.TB, ctx context.Context, url string, done <-chan error) {
	t.Helper()
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("returned before serving %s: %v", url, err)
		case <-ctx.Done():
			t.Fatalf("%s not ready in time", url)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
