package nemesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// echoEnv, set to a listen address, makes the test binary a TCP echo server
// instead of running the tests: the stand-in for a node that the tests
// start, kill, stop and continue as a real process.
const echoEnv = "SLUICE_CHAOS_NEMESIS_ECHO"

func TestMain(m *testing.M) {
	if addr := os.Getenv(echoEnv); addr != "" {
		os.Exit(runEcho(addr))
	}
	os.Exit(m.Run())
}

// runEcho echoes every connection to addr. It says "listening <addr>" once
// it listens, and exits 0 on SIGTERM.
func runEcho(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "echo: %v\n", err)
		return 1
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		fmt.Println("SIGTERM: exiting")
		os.Exit(0)
	}()
	fmt.Printf("listening %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

const (
	// arriveTimeout is how long a test waits for what must happen.
	arriveTimeout = 10 * time.Second
	// silence is how long a test watches for bytes that must not come.
	silence = 300 * time.Millisecond
	// startTimeout bounds a stand-in's start (a race-built binary).
	startTimeout = 30 * time.Second
)

// logs collects log lines and passes them on to the test's log.
type logs struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
	l.t.Log(s)
}

func (l *logs) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// echoProcess returns a stand-in node listening on ip:0, not started.
func echoProcess(t *testing.T, name, ip string, logf func(string, ...any)) *Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := NewProcess(ProcessConfig{
		Name:  name,
		Path:  exe,
		Env:   []string{echoEnv + "=" + ip + ":0"},
		Ready: func(line string) bool { return strings.HasPrefix(line, "listening ") },
		Logf:  logf,
	})
	t.Cleanup(func() {
		if p.Running() {
			if err := p.Kill(); err != nil {
				t.Errorf("killing %s at the end: %v", name, err)
			}
		}
	})
	return p
}

func start(t *testing.T, p *Process) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// echoAddr is the address a started stand-in listens on.
func echoAddr(p *Process) string { return strings.TrimPrefix(p.ReadyLine(), "listening ") }

// procState is the state letter of pid in /proc (R, S, T, ...).
func procState(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Skipf("no /proc to read the process state from: %v", err)
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return b[i+2]
}

func dialFrom(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: arriveTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(arriveTimeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
}

func expectRead(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(arriveTimeout))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

func expectEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	send(t, c, msg)
	expectRead(t, c, msg)
}

func expectSilence(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(silence))
	buf := make([]byte, 1)
	n, err := c.Read(buf)
	if n > 0 {
		t.Fatalf("read %q; want nothing within %v", buf[:n], silence)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v; want no data and the connection still open", err)
	}
}

func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(arriveTimeout))
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if err == nil {
			if n > 0 {
				t.Fatalf("read %q; want the connection closed", buf[:n])
			}
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection still open after %v; want it closed", arriveTimeout)
		}
		return
	}
}
