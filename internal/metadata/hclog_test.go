package metadata

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// recordingHandler keeps the records logged through it.
type recordingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) levels() (out []slog.Level) {
	for _, r := range h.recs {
		out = append(out, r.Level)
	}
	return out
}

// A peer that stays down is logged once per window per message, with the
// count left out; other peers and messages on their own; the transport's
// own closing is not an error.
func TestHCLogRepeats(t *testing.T) {
	h := &recordingHandler{}
	a := newHCLogAdapter(slog.New(h))
	now := time.Unix(1000, 0)
	a.repeats.now = func() time.Time { return now }
	net := a.Named("net")
	for range 50 {
		a.Error("failed to heartbeat to", "peer", 2, "error", errors.New("connection refused"))
		net.Error("failed to appendEntries to", "peer", 2, "error", errors.New("connection refused"))
		a.Error("failed to heartbeat to", "peer", 3, "error", errors.New("connection refused"))
	}
	if len(h.recs) != 3 {
		t.Fatalf("logged %d lines for 150 failures about 2 peers and 2 messages, want 3", len(h.recs))
	}
	now = now.Add(repeatWindow)
	a.Error("failed to heartbeat to", "peer", 2, "error", errors.New("connection refused"))
	if len(h.recs) != 4 {
		t.Fatalf("the window passed and nothing was logged (%d lines)", len(h.recs))
	}
	var repeated int64
	h.recs[3].Attrs(func(at slog.Attr) bool {
		if at.Key == "repeated" {
			repeated = at.Value.Int64()
		}
		return true
	})
	if repeated != 49 {
		t.Errorf("repeated = %d, want 49", repeated)
	}
	net.Error("failed to accept connection", "error", net2Closed())
	if lv := h.levels(); len(lv) != 5 || lv[4] != slog.LevelDebug {
		t.Errorf("levels %v: the closed transport's line should be debug", lv)
	}
	a.Error("something else went wrong")
	if lv := h.levels(); len(lv) != 6 || lv[5] != slog.LevelError {
		t.Errorf("levels %v: a line without a peer is logged as an error", lv)
	}
}

func net2Closed() error { return &net.OpError{Op: "accept", Err: net.ErrClosed} }
