package metadata

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes hashicorp/raft's hclog output to our slog.Logger, only
// at warn and error level: raft's info lines (elections, snapshots) are
// routine for a quorum of one and would flood the broker's log. Nothing goes
// to stderr directly.
type hclogAdapter struct {
	log  *slog.Logger
	name string
	args []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLogAdapter(l *slog.Logger) *hclogAdapter {
	return &hclogAdapter{log: l, name: "raft"}
}

// expectedElectionWarning is what raft warns at every start before the
// first election.
const expectedElectionWarning = "heartbeat timeout reached, starting election"

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	var lvl slog.Level
	switch {
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
	all := make([]any, 0, 2+len(a.args)+len(args))
	all = append(all, "component", a.name)
	all = append(all, a.args...)
	all = append(all, args...)
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
