package nemesis

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcessKillStopContRestartTerminate(t *testing.T) {
	l := &logs{t: t}
	p := echoProcess(t, "echo", "127.0.0.1", l.logf)
	if p.PID() != 0 || p.Running() {
		t.Fatalf("before Start: pid %d, running %v", p.PID(), p.Running())
	}
	start(t, p)
	pid := p.PID()
	if pid <= 0 || !p.Running() {
		t.Fatalf("after Start: pid %d, running %v", pid, p.Running())
	}
	if !l.has("echo: listening 127.0.0.1:") {
		t.Errorf("the process's output was not logged with its name as prefix")
	}
	c := dialFrom(t, echoAddr(p), "127.0.0.1")
	expectEcho(t, c, "hello")

	// Stopped: the kernel still holds the socket, nothing answers.
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	send(t, c, "while stopped")
	expectSilence(t, c)
	if s := procState(t, pid); s != 'T' || !p.Stopped() {
		t.Fatalf("after Stop: state %c, Stopped() %v; want T, true", s, p.Stopped())
	}
	if err := p.Cont(); err != nil {
		t.Fatal(err)
	}
	expectRead(t, c, "while stopped")
	if s := procState(t, pid); s == 'T' || p.Stopped() {
		t.Fatalf("after Cont: state %c, Stopped() %v; want running", s, p.Stopped())
	}

	// Killed: gone at once, its port refuses.
	addr := echoAddr(p)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if p.Running() {
		t.Fatal("running after Kill")
	}
	if err := p.ExitErr(); err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("ExitErr after Kill: %v; want signal: killed", err)
	}
	expectClosed(t, c)
	if nc, err := net.DialTimeout("tcp", addr, arriveTimeout); err == nil {
		nc.Close()
		t.Fatalf("dial %s of the killed process succeeded", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s of the killed process: %v; want connection refused", addr, err)
	}
	for name, f := range map[string]func() error{"Kill": p.Kill, "Stop": p.Stop, "Cont": p.Cont} {
		if err := f(); !errors.Is(err, ErrNotRunning) {
			t.Errorf("%s of an exited process: %v; want ErrNotRunning", name, err)
		}
	}

	// Restarted: a new process, answering.
	start(t, p)
	if p.PID() == pid {
		t.Fatalf("restarted with the same pid %d", pid)
	}
	expectEcho(t, dialFrom(t, echoAddr(p), "127.0.0.1"), "again")
	if err := p.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("Start of a running process: %v; want already running", err)
	}

	// Terminated: a clean exit.
	if err := p.Terminate(arriveTimeout); err != nil {
		t.Fatalf("Terminate: %v; want a clean exit", err)
	}
	if p.Running() || p.ExitErr() != nil {
		t.Fatalf("after Terminate: running %v, exit %v", p.Running(), p.ExitErr())
	}
	if !l.has("echo: SIGTERM: exiting") {
		t.Errorf("the process's last line was not logged")
	}
}

func TestTerminateStopped(t *testing.T) {
	p := echoProcess(t, "echo", "127.0.0.1", t.Logf)
	start(t, p)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(arriveTimeout); err != nil {
		t.Fatalf("Terminate of a stopped process: %v; want a clean exit", err)
	}
}

func TestStartFails(t *testing.T) {
	t.Run("exits before ready", func(t *testing.T) {
		p := echoProcess(t, "echo", "127.0.0.1:notaport", t.Logf)
		err := p.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "exited before it was ready: exit status 1") {
			t.Fatalf("Start: %v; want exited before ready", err)
		}
	})
	t.Run("not ready in time", func(t *testing.T) {
		p := echoProcess(t, "echo", "127.0.0.1", t.Logf)
		p.cfg.Ready = func(string) bool { return false }
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := p.Start(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Start: %v; want deadline exceeded", err)
		}
		if p.Running() {
			t.Fatal("a process that never got ready was left running")
		}
	})
}

func TestLongLinesAreSplit(t *testing.T) {
	var got []string
	p := &Process{cfg: ProcessConfig{Name: "x", Logf: func(format string, args ...any) {
		got = append(got, args[1].(string))
	}}}
	w := &lineWriter{p: p, r: &run{ready: make(chan struct{})}}
	long := strings.Repeat("a", maxLineBytes+10)
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\r\n" + long + "\nlast"))
	w.flush()
	want := []string{"one", "two", long[:maxLineBytes], long[maxLineBytes:], "last"}
	if len(got) != len(want) {
		t.Fatalf("%d lines; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %.20q (%d bytes); want %.20q (%d bytes)", i, got[i], len(got[i]), want[i], len(want[i]))
		}
	}
}
