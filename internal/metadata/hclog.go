package metadata

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes hashicorp/raft's hclog output to our slog.Logger, only
// at warn and error level: raft's info lines (elections, snapshots) are
// routine for a quorum of one and would flood the broker's log. Nothing goes
// to stderr directly.
//
// A peer that is down makes raft log a failure at every retry (several a
// second per peer); the adapter logs the first one and then the same
// message about the same peer at most once per repeatWindow, with how many
// were left out.
type hclogAdapter struct {
	log     *slog.Logger
	name    string
	args    []any
	repeats *repeats // shared by every Named and With copy
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLogAdapter(l *slog.Logger) *hclogAdapter {
	return &hclogAdapter{log: l, name: "raft", repeats: &repeats{now: time.Now, seen: map[string]*repeat{}}}
}

// Repeated raft messages.
const (
	// repeatWindow is how often the same message about the same peer is
	// logged at most.
	repeatWindow = 30 * time.Second
	// maxRepeatKeys bounds the messages remembered; past it they are
	// forgotten at once (a few more lines, never unbounded memory).
	maxRepeatKeys = 256
)

// repeats counts the messages left out per message and peer.
type repeats struct {
	now  func() time.Time
	mu   sync.Mutex
	seen map[string]*repeat
}

type repeat struct {
	logged  time.Time // when it was last logged
	skipped int       // left out since
}

// admit reports whether a message with key may be logged now, and how
// many like it were left out before.
func (r *repeats) admit(key string) (ok bool, skipped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if e, found := r.seen[key]; found {
		if now.Sub(e.logged) < repeatWindow {
			e.skipped++
			return false, 0
		}
		skipped = e.skipped
		e.logged, e.skipped = now, 0
		return true, skipped
	}
	if len(r.seen) >= maxRepeatKeys {
		clear(r.seen)
	}
	r.seen[key] = &repeat{logged: now}
	return true, 0
}

// peerOf is the "peer" argument of a raft message, if it has one.
func peerOf(args []any) (string, bool) {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == "peer" {
			return fmt.Sprint(args[i+1]), true
		}
	}
	return "", false
}

// shutdownNoise says whether an error line is what raft's transport logs
// while it is being closed.
func shutdownNoise(args []any) bool {
	for i := 0; i+1 < len(args); i += 2 {
		if err, ok := args[i+1].(error); ok {
			if errors.Is(err, net.ErrClosed) || err.Error() == "transport shutdown" {
				return true
			}
		}
	}
	return false
}

// expectedElectionWarning is what raft warns at every start before the
// first election.
const expectedElectionWarning = "heartbeat timeout reached, starting election"

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	var lvl slog.Level
	switch {
	case level == hclog.Error && shutdownNoise(args):
		lvl = slog.LevelDebug
	case level == hclog.Error: // not >=: hclog.Off means "do not log"
		lvl = slog.LevelError
	case level == hclog.Warn && msg == expectedElectionWarning:
		// Every start of a quorum of one begins with an election:
		// expected, not worth a warning.
		lvl = slog.LevelDebug
	case level == hclog.Warn:
		lvl = slog.LevelWarn
	default:
		return
	}
	if !a.log.Enabled(context.Background(), lvl) {
		return
	}
	all := make([]any, 0, 4+len(a.args)+len(args))
	all = append(all, "component", a.name)
	all = append(all, a.args...)
	all = append(all, args...)
	if peer, ok := peerOf(all); ok && a.repeats != nil {
		ok, skipped := a.repeats.admit(msg + "\x00" + peer)
		if !ok {
			return
		}
		if skipped > 0 {
			all = append(all, "repeated", skipped)
		}
	}
	a.log.Log(context.Background(), lvl, msg, all...)
}

func (a *hclogAdapter) Trace(string, ...any)          {}
func (a *hclogAdapter) Debug(string, ...any)          {}
func (a *hclogAdapter) Info(string, ...any)           {}
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) IsTrace() bool                 { return false }
func (a *hclogAdapter) IsDebug() bool                 { return false }
func (a *hclogAdapter) IsInfo() bool                  { return false }
func (a *hclogAdapter) IsWarn() bool                  { return true }
func (a *hclogAdapter) IsError() bool                 { return true }
func (a *hclogAdapter) ImpliedArgs() []any            { return a.args }
func (a *hclogAdapter) Name() string                  { return a.name }
func (a *hclogAdapter) SetLevel(hclog.Level)          {}
func (a *hclogAdapter) GetLevel() hclog.Level         { return hclog.Warn }
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	out := *a
	out.name = name
	return &out
}

func (a *hclogAdapter) Named(name string) hclog.Logger {
	out := *a
	if out.name != "" {
		name = out.name + "." + name
	}
	out.name = name
	return &out
}

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	out := *a
	out.args = append(append([]any(nil), a.args...), args...)
	return &out
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter is used by libraries that want an io.Writer; their lines
// are plain text without a level, so they are logged at warn.
func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		msg := string(p)
		if n := len(msg); n > 0 && msg[n-1] == '\n' {
			msg = msg[:n-1]
		}
		a.Log(hclog.Warn, msg)
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
