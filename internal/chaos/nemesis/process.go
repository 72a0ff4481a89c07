package nemesis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// exitTimeout bounds the wait for a SIGKILLed process to be reaped.
	exitTimeout = 20 * time.Second
	// waitDelay bounds how long a process's exit waits for its output pipe
	// to close (a child it left behind may hold it open).
	waitDelay = 5 * time.Second
	// maxLineBytes bounds one buffered output line; a longer one is logged
	// in pieces.
	maxLineBytes = 64 << 10
)

// ErrNotRunning is returned for a signal to a process that is not running.
var ErrNotRunning = errors.New("nemesis: process not running")

// ProcessConfig says how to run a process. Every start runs the same
// command again.
type ProcessConfig struct {
	// Name prefixes the process's log lines and names it in the nemesis's.
	Name string
	Path string
	Args []string
	// Env is added to the test's environment.
	Env []string
	Dir string
	// Ready, if set, says whether an output line (stdout or stderr) shows
	// the process ready; Start returns once one does. The line is kept
	// (ReadyLine): a process on a random port says there which one.
	Ready func(line string) bool
	// Logf receives the process's output, a line at a time, prefixed with
	// Name, and its exits. Nil discards them. It must be safe for
	// concurrent use and must not be called after a test ends: kill every
	// process before (Kill and Terminate return after the last line).
	Logf func(format string, args ...any)
}

// Process is a command that can be started again after it exits, and
// SIGKILLed, SIGSTOPped, SIGCONTed and SIGTERMed. Signals go to its PID
// only (never a process group), through os.Process, which on Linux holds a
// pidfd: a PID reused by another process is never signaled. Methods are safe
// for concurrent use.
type Process struct {
	cfg ProcessConfig

	mu  sync.Mutex
	run *run // the last start; nil before the first
}

// run is one start of a Process.
type run struct {
	cmd     *exec.Cmd
	ready   chan struct{} // closed when Ready matched a line
	done    chan struct{} // closed when the process has exited and its output is logged
	line    string        // the ready line; set before ready closes
	err     error         // the exit; set before done closes
	stopped bool          // SIGSTOPped and not SIGCONTed since; guarded by Process.mu
}

// NewProcess returns a Process that is not started.
func NewProcess(cfg ProcessConfig) *Process {
	if cfg.Path == "" {
		panic("BUG: nemesis: process with no path")
	}
	return &Process{cfg: cfg}
}

// Name is the process's name.
func (p *Process) Name() string { return p.cfg.Name }

func (p *Process) logf(format string, args ...any) {
	if p.cfg.Logf != nil {
		p.cfg.Logf(format, args...)
	}
}

// Start runs the command and, if ProcessConfig.Ready is set, waits until it
// prints its ready line. If the process exits first or ctx ends first, Start
// kills it (by PID) and returns the reason. Starting a running process is an
// error.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.run != nil && !p.run.exited() {
		pid := p.run.cmd.Process.Pid
		p.mu.Unlock()
		return fmt.Errorf("nemesis: starting %s: already running as pid %d", p.cfg.Name, pid)
	}
	r := &run{ready: make(chan struct{}), done: make(chan struct{})}
	cmd := exec.Command(p.cfg.Path, p.cfg.Args...)
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	cmd.Dir = p.cfg.Dir
	out := &lineWriter{p: p, r: r}
	cmd.Stdout, cmd.Stderr = out, out // one writer: os/exec then writes from one goroutine
	cmd.WaitDelay = waitDelay
	dieWithParent(cmd)
	r.cmd = cmd
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("nemesis: starting %s: %w", p.cfg.Name, err)
	}
	p.run = r
	p.mu.Unlock()
	p.logf("%s: started, pid %d", p.cfg.Name, cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		out.flush()
		p.logf("%s: pid %d exited: %v", p.cfg.Name, cmd.Process.Pid, exitString(err))
		r.err = err
		close(r.done)
	}()
	if p.cfg.Ready == nil {
		return nil
	}
	select {
	case <-r.ready:
		return nil
	case <-r.done:
		return fmt.Errorf("nemesis: %s exited before it was ready: %v", p.cfg.Name, exitString(r.err))
	case <-ctx.Done():
		_ = p.Kill()
		return fmt.Errorf("nemesis: %s not ready: %w", p.cfg.Name, ctx.Err())
	}
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// current returns the last run if it is still running.
func (p *Process) current() (*run, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == nil || p.run.exited() {
		return nil, fmt.Errorf("%s: %w", p.cfg.Name, ErrNotRunning)
	}
	return p.run, nil
}

// PID is the process's PID, 0 before the first start. After an exit it is
// the PID it had.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == nil {
		return 0
	}
	return p.run.cmd.Process.Pid
}

// Running says whether the process is started and has not exited (a
// stopped process is running).
func (p *Process) Running() bool {
	_, err := p.current()
	return err == nil
}

// Stopped says whether the process is running and SIGSTOPped.
func (p *Process) Stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.run != nil && !p.run.exited() && p.run.stopped
}

// ExitErr is how the last run ended: nil while it runs or if it exited
// with status 0.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == nil || !p.run.exited() {
		return nil
	}
	return p.run.err
}

// ReadyLine is the line in which the current run said it was ready.
func (p *Process) ReadyLine() string {
	p.mu.Lock()
	r := p.run
	p.mu.Unlock()
	if r == nil {
		return ""
	}
	select {
	case <-r.ready:
		return r.line
	default:
		return ""
	}
}

// Kill sends SIGKILL and waits until the process is reaped.
func (p *Process) Kill() error {
	r, err := p.current()
	if err != nil {
		return err
	}
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("nemesis: SIGKILL %s (pid %d): %w", p.cfg.Name, r.cmd.Process.Pid, err)
	}
	select {
	case <-r.done:
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("nemesis: %s (pid %d) not reaped %v after SIGKILL", p.cfg.Name, r.cmd.Process.Pid, exitTimeout)
	}
}

// Stop sends SIGSTOP and waits until every thread of the process has
// stopped: it keeps its sockets, and the kernel keeps accepting connections
// for it, but it answers nothing until Cont.
func (p *Process) Stop() error {
	pid, err := p.signalStop(syscall.SIGSTOP, true)
	if err != nil {
		return err
	}
	return waitStopped(pid)
}

// Cont sends SIGCONT.
func (p *Process) Cont() error {
	_, err := p.signalStop(syscall.SIGCONT, false)
	return err
}

func (p *Process) signalStop(sig syscall.Signal, stopped bool) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == nil || p.run.exited() {
		return 0, fmt.Errorf("%s: %w", p.cfg.Name, ErrNotRunning)
	}
	pid := p.run.cmd.Process.Pid
	if err := p.run.cmd.Process.Signal(sig); err != nil {
		return 0, fmt.Errorf("nemesis: %v %s (pid %d): %w", sig, p.cfg.Name, pid, err)
	}
	p.run.stopped = stopped
	return pid, nil
}

// Terminate sends SIGTERM (and SIGCONT, so that a stopped process can act on
// it) and waits up to timeout for the process to exit, returning how it
// exited (nil for status 0). If it does not exit in time it is SIGKILLed and
// Terminate says so.
func (p *Process) Terminate(timeout time.Duration) error {
	r, err := p.current()
	if err != nil {
		return err
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("nemesis: SIGTERM %s (pid %d): %w", p.cfg.Name, r.cmd.Process.Pid, err)
	}
	p.mu.Lock()
	if r.stopped {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
		r.stopped = false
	}
	p.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("nemesis: %s (pid %d) did not exit within %v of SIGTERM: SIGKILLed", p.cfg.Name, r.cmd.Process.Pid, timeout)
}

// lineWriter logs a process's output a line at a time and watches for its
// ready line. os/exec calls Write from one goroutine (stdout and stderr
// share it), and flush after the last Write.
type lineWriter struct {
	p   *Process
	r   *run
	buf []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			take := min(len(b), maxLineBytes-len(w.buf))
			w.buf = append(w.buf, b[:take]...)
			b = b[take:]
			if len(w.buf) == maxLineBytes {
				w.line(string(w.buf))
				w.buf = w.buf[:0]
			}
			continue
		}
		if len(w.buf) > 0 {
			w.buf = append(w.buf, b[:i]...)
			w.line(string(w.buf))
			w.buf = w.buf[:0]
		} else {
			w.line(string(b[:i]))
		}
		b = b[i+1:]
	}
	return n, nil
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = w.buf[:0]
	}
}

// line handles one line of output, in pieces of maxLineBytes if longer.
func (w *lineWriter) line(s string) {
	s = strings.TrimSuffix(s, "\r")
	for len(s) > maxLineBytes {
		w.piece(s[:maxLineBytes])
		s = s[maxLineBytes:]
	}
	w.piece(s)
}

func (w *lineWriter) piece(s string) {
	w.p.logf("%s: %s", w.p.cfg.Name, s)
	if w.p.cfg.Ready == nil {
		return
	}
	select {
	case <-w.r.ready:
	default:
		if w.p.cfg.Ready(s) {
			w.r.line = s
			close(w.r.ready)
		}
	}
}
