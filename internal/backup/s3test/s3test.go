// Package s3test starts a real S3-compatible server, versitygw with its
// posix backend, for the tests of the S3 back-up target.
//
// The binary is found on PATH or in $(go env GOPATH)/bin (install it with
// go install github.com/versity/versitygw/cmd/versitygw@v1.8.0). Without
// it the tests that need it are skipped, unless SLUICE_REQUIRE_VERSITYGW
// is set, as CI does: then they fail.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// RequireEnv makes a missing versitygw a test failure instead of a skip.
const RequireEnv = "SLUICE_REQUIRE_VERSITYGW"

// startTimeout bounds the wait for the server to answer after start.
const startTimeout = 30 * time.Second

// Server is a running versitygw. Its methods are for the test's goroutine.
type Server struct {
	t         testing.TB
	bin       string
	Dir       string // the posix backend's root: one directory per bucket
	Addr      string // 127.0.0.1:port
	Endpoint  string // http://Addr
	AccessKey string
	SecretKey string
	Bucket    string // created by Start
	cmd       *exec.Cmd
	exited    chan struct{}
	out       *syncBuffer
}

// Binary returns versitygw's path, skipping (or, with RequireEnv set,
// failing) the test when it is not installed.
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopaths := filepath.SplitList(build.Default.GOPATH)
	// go env -w GOPATH=... is seen by go env only.
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		gopaths = append(gopaths, filepath.SplitList(strings.TrimSpace(string(out)))...)
	}
	for _, gp := range gopaths {
		p := filepath.Join(gp, "bin", "versitygw")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	msg := "versitygw is not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)"
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("%s and %s is set", msg, RequireEnv)
	}
	t.Skip(msg)
	return ""
}

// Start starts versitygw on a free port of 127.0.0.1 with a posix root in
// a temporary directory, waits until it answers, and creates a bucket.
// It is stopped, by its pid, when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), Dir: t.TempDir(), AccessKey: "sluice-test-key", SecretKey: "sluice-test-secret", Bucket: "backups"}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	l.Close()
	s.Endpoint = "http://" + s.Addr
	s.out = &syncBuffer{}
	t.Cleanup(s.stop)
	s.start()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.Client().MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("versitygw: make bucket: %v", err)
	}
	return s
}

// Creds are the server's root credentials.
func (s *Server) Creds() *credentials.Credentials {
	return credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")
}

// Client is a minio client of the server, path-style.
func (s *Server) Client() *minio.Client {
	c, err := minio.New(s.Addr, &minio.Options{Creds: s.Creds(), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// start runs the server and waits until it answers a request.
func (s *Server) start() {
	s.t.Helper()
	cmd := exec.Command(s.bin, "--port", s.Addr, "--access", s.AccessKey, "--secret", s.SecretKey, "--quiet", "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start versitygw: %v", err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	s.exited = exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	// Readiness is an answer to a request: poll it, bounded.
	c := s.Client()
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.ListBuckets(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			s.t.Fatalf("versitygw exited at start (%v):\n%s", cmd.ProcessState, s.out.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("versitygw did not answer on %s within %s (last error %v):\n%s", s.Addr, startTimeout, err, s.out.String())
		}
	}
}

// Kill stops the server with SIGKILL, by its pid, as a crash would.
func (s *Server) Kill() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Fatalf("kill versitygw (pid %d): %v", s.cmd.Process.Pid, err)
	}
	<-s.exited
	s.cmd = nil
}

// Restart starts the server again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("BUG: Restart of a running versitygw")
	}
	s.start()
}

// stop ends the server with SIGTERM, then SIGKILL, by its pid.
func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
	if s.t.Failed() {
		s.t.Logf("versitygw output:\n%s", s.out.String())
	}
}

// String says where the server is.
func (s *Server) String() string { return fmt.Sprintf("versitygw at %s (root %s)", s.Endpoint, s.Dir) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
