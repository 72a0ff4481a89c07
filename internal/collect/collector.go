package collect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/vfs"
)

// Options configure New.
type Options struct {
	Brokers []string // seed brokers of the Kafka cluster
	Config  *Config  // from ParseConfig or LoadConfig
	Logger  *slog.Logger
	// ClientOpts are added to the producer's kgo options (tests shorten
	// metadata ages).
	ClientOpts []kgo.Opt
	// Now is the clock of receive times and rate limits; nil: time.Now.
	Now func() time.Time
	// FS holds the spool (Config.Spool.Dir); nil: the operating system's.
	FS vfs.FS
	// Audit counts every record the cluster acknowledged (from the buffer
	// or the spool's replay), as the audit stage "collect", with its
	// produced partition and offset; nil: no counting. The caller closes
	// it after Close (which waits for every acknowledgement).
	Audit *audit.Counter
}

// Collector is the state of `sluice collect`: streams with their current
// encoders, sources with their rate limits, and the producer. It keeps no
// state worth saving: run as many as needed behind a load balancer.
// Handler is safe for concurrent use; Refresh may run at the same time.
type Collector struct {
	cfg      *Config
	log      *slog.Logger
	now      func() time.Time
	registry *sr.Client // nil when no stream has a schema
	streams  map[string]*streamState
	tokens   map[string]string // token -> source name
	limiters map[string]*tokenBucket
	producer *kgo.Client
	replayer *kgo.Client // nil without a spool
	buf      *buffer
	spool    *diskSpool // nil without one
	m        *metrics

	refreshMu sync.Mutex  // serializes Refresh; guards schemas
	schemas   schemaCache // see schemaCache
}

// New builds a collector. It does not reach the cluster or the registry:
// Refresh fetches the schemas (until it has, a stream with a schema
// answers 503 and /readyz is not ready), the producer connects on its own.
func New(o Options) (*Collector, error) {
	if o.Config == nil {
		return nil, errors.New("BUG: collect.New without a Config")
	}
	if len(o.Brokers) == 0 {
		return nil, errors.New("collect: no brokers")
	}
	c := &Collector{cfg: o.Config, log: o.Logger, now: o.Now, streams: map[string]*streamState{},
		tokens: map[string]string{}, limiters: map[string]*tokenBucket{}, m: newMetrics(), schemas: schemaCache{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	var err error
	if c.registry, err = newRegistryClient(o.Config.SchemaRegistry); err != nil {
		return nil, err
	}
	for name, st := range o.Config.Streams {
		s := &streamState{name: name, cfg: st, version: -1}
		if st.Schema != nil {
			s.version, _ = st.Schema.version() // checked by ParseConfig
		}
		c.streams[name] = s
	}
	for name, src := range o.Config.Sources {
		c.tokens[src.Token] = name
		if src.RatePerSecond > 0 {
			c.limiters[name] = newTokenBucket(src.RatePerSecond, src.Burst)
		}
	}
	if o.Config.Limits.DeliveryTimeout == 0 {
		o.Config.Limits.DeliveryTimeout = DefaultDeliveryTimeout
		if o.Config.Spool.Dir != "" {
			o.Config.Limits.DeliveryTimeout = DefaultSpoolDeliveryTimeout
		}
	}
	if c.producer, err = newProducer(o.Brokers, o.Config.Limits, false, o.ClientOpts); err != nil {
		return nil, fmt.Errorf("collect: producer: %w", err)
	}
	c.buf = &buffer{cl: c.producer, limit: o.Config.Limits.BufferBytes, m: c.m, log: c.log, audit: o.Audit}
	if dir := o.Config.Spool.Dir; dir != "" {
		fsys := o.FS
		if fsys == nil {
			fsys = vfs.OS()
		}
		if c.spool, err = openSpool(fsys, dir, o.Config.Spool.MaxBytes, c.log, c.m); err != nil {
			c.producer.Close()
			return nil, err
		}
		if c.replayer, err = newProducer(o.Brokers, o.Config.Limits, true, o.ClientOpts); err != nil {
			c.producer.Close()
			c.spool.closeWriter()
			return nil, fmt.Errorf("collect: replay producer: %w", err)
		}
		c.buf.spool = c.spool
		c.spool.start(c.buf, c.replayer)
	}
	return c, nil
}

// Refresh fetches the schema of every stream that has none yet or follows
// "latest", and installs its encoder; it returns the errors joined (a
// stream whose fetch fails keeps the schema it had).
func (c *Collector) Refresh(ctx context.Context) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	var errs []error
	for _, s := range c.streams {
		if err := c.refreshStream(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// refreshRetry is how soon Run tries again after a failed Refresh.
const refreshRetry = 2 * time.Second

// refreshWarnEvery: while the same refresh error repeats (the registry is
// down), it is logged as a warning at most this often.
const refreshWarnEvery = 30 * time.Second

// Run refreshes the schemas now and every RefreshInterval (every
// refreshRetry while some fail) until ctx is done.
func (c *Collector) Run(ctx context.Context) {
	var lastWarn time.Time
	var lastErr string
	for {
		wait := c.cfg.RefreshInterval
		if err := c.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			level := slog.LevelWarn
			if err.Error() == lastErr && time.Since(lastWarn) < refreshWarnEvery {
				level = slog.LevelDebug
			} else {
				lastWarn, lastErr = time.Now(), err.Error()
			}
			c.log.Log(ctx, level, "schema refresh failed; streams keep the schemas they have", "err", err)
			wait = min(wait, refreshRetry)
		} else {
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Ready reports whether every stream has its schema and the buffer (or
// else the spool) has room: a load balancer should send elsewhere until
// it does.
func (c *Collector) Ready() error {
	for _, s := range c.streams {
		if s.encoder() == nil {
			return fmt.Errorf("stream %s: schema not fetched yet", s.name)
		}
	}
	if c.spool != nil {
		if c.spool.full() {
			return errors.New("disk spool full: the cluster has not been taking records")
		}
	} else if c.buf.full() {
		return errors.New("in-memory buffer full: the cluster is not taking records")
	}
	return nil
}

// Close flushes the buffered records until ctx is done, then closes the
// producer. With a spool, replay stops first, and records still buffered
// at the end are spooled, to be sent by the next collector on the spool;
// without one they are lost (counted as dropped).
func (c *Collector) Close(ctx context.Context) error {
	if c.spool != nil {
		c.spool.Close(ctx)
		c.replayer.Close()
	}
	err := c.producer.Flush(ctx)
	c.producer.Close()
	if c.spool != nil {
		if serr := c.spool.closeWriter(); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	if err != nil {
		return fmt.Errorf("collect: flush on close: %w", err)
	}
	return nil
}

// Handler serves the streams, /metrics, /healthz and /readyz.
func (c *Collector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/streams/{stream}", c.servePost)
	mux.HandleFunc("GET /v1/streams/{stream}", c.serveGIF)
	mux.HandleFunc("OPTIONS /v1/streams/{stream}", c.servePreflight)
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := c.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
