package collect

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/sr"
)

// streamState is one configured stream at run time. enc is swapped by
// Refresh; the rest is fixed at New.
type streamState struct {
	name    string
	cfg     Stream
	version int // registry version asked for; -1 latest; unused without a schema
	enc     atomic.Pointer[encoder]
}

// encoder returns the stream's current encoder, nil until its schema has
// been fetched.
func (s *streamState) encoder() encoder {
	if p := s.enc.Load(); p != nil {
		return *p
	}
	return nil
}

// schemaCache keeps the encoders built, by schema id, so that a refresh
// that finds the same latest version builds nothing. Owned by the
// goroutine calling Refresh (Refresh holds Collector.refreshMu).
type schemaCache map[int]encoder

// refreshStream fetches the stream's schema (the fixed version once, or
// latest every time) and installs its encoder.
func (c *Collector) refreshStream(ctx context.Context, s *streamState) error {
	if s.cfg.Schema == nil {
		if s.encoder() == nil {
			var e encoder = rawEncoder{}
			s.enc.Store(&e)
		}
		return nil
	}
	if s.version > 0 && s.encoder() != nil {
		return nil // a fixed version never changes
	}
	ss, err := c.registry.SchemaByVersion(ctx, s.cfg.Schema.Subject, s.version)
	if err != nil {
		return fmt.Errorf("stream %s: fetch schema %s version %s: %w", s.name, s.cfg.Schema.Subject, versionName(s.version), err)
	}
	key := ss.ID
	if s.cfg.Schema.JSONWirePrefix {
		key = -ss.ID // the same id, another encoder
	}
	e, ok := c.schemas[key]
	if !ok {
		if e, err = newEncoder(ss, s.cfg.Schema.JSONWirePrefix); err != nil {
			return fmt.Errorf("stream %s: %w", s.name, err)
		}
		c.schemas[key] = e
	}
	if cur := s.encoder(); cur == nil || cur.schemaID() != e.schemaID() {
		c.log.Info("stream schema", "stream", s.name, "subject", ss.Subject, "version", ss.Version, "id", ss.ID)
	}
	s.enc.Store(&e)
	return nil
}

func versionName(v int) string {
	if v < 0 {
		return "latest"
	}
	return fmt.Sprint(v)
}

// newRegistryClient returns a client of the registry at url, nil for "".
func newRegistryClient(url string) (*sr.Client, error) {
	if url == "" {
		return nil, nil
	}
	cl, err := sr.NewClient(sr.URLs(url), sr.UserAgent("sluice-collect"))
	if err != nil {
		return nil, fmt.Errorf("collect: schema registry client for %s: %w", url, err)
	}
	return cl, nil
}
