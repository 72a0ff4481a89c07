package clientopts

import (
	"fmt"
	"io"
	"log/slog"
)

// NewLogger is the text logger of a long-running command (serve, collect,
// mirror, audit) at --log-level level ("" is info), writing to w.
func NewLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if level != "" {
		if err := l.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
		}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
