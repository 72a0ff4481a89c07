// Package collectcmd is `sluice collect`: the HTTP event collector of
// internal/collect as a command.
package collectcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/collect"
)

const (
	// DefaultListen is where the collector serves HTTP with no --listen.
	DefaultListen = "127.0.0.1:8090"
	// DefaultShutdownTimeout bounds a stop: finishing requests, then
	// flushing buffered events to the cluster.
	DefaultShutdownTimeout = 10 * time.Second
	// readHeaderTimeout and readTimeout bound a slow client: it cannot
	// hold a connection open by trickling a request.
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	// idleTimeout closes keep-alive connections nobody uses.
	idleTimeout = 2 * time.Minute
	// auditConnectTimeout bounds reaching the counts cluster at the start
	// (with --audit): creating the counts topic.
	auditConnectTimeout = 10 * time.Second
)

// Options are the flags of `sluice collect`.
type Options struct {
	Brokers         []string
	Listen          string
	ConfigPath      string
	SchemaRegistry  string // overrides the config's schema_registry when set
	CollectorID     string // overrides the config's collector_id when set
	SpoolDir        string // overrides the config's spool.dir when set
	ShutdownTimeout time.Duration
	LogLevel        string
	// Audit turns on audit counting (stage "collect") to AuditTopic on
	// AuditBrokers (none: Brokers).
	Audit        bool
	AuditTopic   string
	AuditBrokers []string
	Err          io.Writer // logs; nil: stderr
}

const exampleConfig = `  # collect.yaml
  collector_id: edge-1                 # header sluice-collector-id; default: host name
  schema_registry: http://127.0.0.1:8081
  refresh_interval: 30s                # how often "latest" schemas are fetched again
  limits:
    max_body_bytes: 1048576            # 413 over it (also once gunzipped)
    max_events: 1000                   # per request; 413 over it
    buffer_bytes: 67108864             # in-memory buffer; 503 + Retry-After when full
    delivery_timeout: 10s              # then an accepted event is spooled (default 10s; 2m, then dropped, without a spool)
  spool:                               # events the cluster cannot take now wait here, on disk
    dir: /var/lib/sluice-collect       # fsynced before the 202; replayed in order; no dir: no spool
    max_bytes: 1073741824              # full: 503 + Retry-After
  cors:
    allowed_origins: ["https://shop.example"]
  sources:
    web:     {token: pk_web_123, rate_per_second: 50, burst: 100}
    backend: {token_env: BACKEND_TOKEN}
  streams:
    pageviews:                         # POST /v1/streams/pageviews
      topic: pageviews
      key_field: user_id               # one user's events in one partition
      sources: [web, backend]          # a token is needed (401 without, 403 wrong)
      schema: {subject: pageviews-value, version: latest}   # Avro or JSON Schema
    debug:
      topic: debug                     # no schema: any JSON object; no sources: no token`

// Command returns `sluice collect`.
func Command() *cobra.Command {
	o := Options{}
	cmd := &cobra.Command{
		Use:   "collect --config collect.yaml",
		Short: "Serve an HTTP endpoint that validates events and produces them to topics",
		Long: `Serve HTTP on --listen: events POSTed to /v1/streams/STREAM are validated
against the stream's schema, encoded and produced to its topic. The collector
is stateless: run as many as needed behind any load balancer. It speaks to the
cluster only through the Kafka protocol, so it works in front of any Kafka
cluster, and fetches schemas from any Confluent-compatible registry (sluice
serve's is on --schema-registry-listen, by default 127.0.0.1:8081).

A request body is one JSON object, a JSON array of them, or NDJSON, optionally
gzipped (Content-Encoding: gzip), as any content type: text/plain is what
navigator.sendBeacon sends and needs no CORS preflight. GET on the same path is
a 1x1 GIF fallback with the event in ?data=JSON (or the other query parameters
as string fields). A token is "Authorization: Bearer TOKEN" or ?token=TOKEN.

Avro streams are sent in Confluent's wire format (byte 0, the 4-byte schema id,
Avro binary); JSON Schema streams as received; streams without a schema take
any JSON object as received. Every record has the receive time (timestamp and
header sluice-received-at), the collector's id (sluice-collector-id), the
source (sluice-source) and the stream's key_field as its key.

Answers: 202 with {"accepted":N,"invalid":M,"errors":[{"index","reason","error"}]}
(the events are buffered; delivery is asynchronous); 400 body not JSON or no
valid event; 401 no token; 403 wrong token; 404 no such stream; 413 over
max_body_bytes or max_events; 429 over the source's rate; 503 + Retry-After
when the in-memory buffer is full (the cluster is slow or down) and there is no
spool or the spool is full, or a schema is not fetched yet. /metrics
(sluice_collect_*), /healthz and /readyz (not ready while a schema is missing
or the buffer, or else the spool, is full) are on the same port.

With a spool (--spool-dir or spool.dir), what the cluster cannot take now is
written to disk and fsynced before the 202, then replayed in order when the
cluster takes records again; requests go to the spool while it replays, so no
event overtakes an earlier one. What survives a kill -9 of the collector (or a
power cut): every event answered 202 from the spool, replayed by the next
collector started on the same --spool-dir; events of the last replay step may
then reach the topic twice (the idempotent producer dedupes retries within one
run only). Events answered 202 from the in-memory buffer and not yet
acknowledged by the cluster are lost on a kill -9; a clean stop (SIGTERM)
spools what it cannot flush.

With --audit, every event the cluster acknowledged is counted, per topic and
minute of its receive time (the record's timestamp), with its partition and
offset, and the counts go every 5 s to --audit-topic on --audit-brokers
(default: --brokers), for ` + "`sluice audit report`" + ` to compare with the topic and the
later stages (mirror, sink). Off by default: it creates and writes a topic.

Example config:
` + exampleConfig,
		Example: `  sluice collect --config collect.yaml --listen 0.0.0.0:8090 -b kafka1:9092,kafka2:9092
  curl -d '{"user_id":"u1","url":"/"}' -H 'Authorization: Bearer pk_web_123' \
    http://127.0.0.1:8090/v1/streams/pageviews
  printf '{"a":1}\n{"a":2}\n' | gzip | curl --data-binary @- -H 'Content-Encoding: gzip' \
    http://127.0.0.1:8090/v1/streams/debug
  # in a page:  navigator.sendBeacon("https://collect.shop.example/v1/streams/pageviews?token=pk_web_123",
  #                                  JSON.stringify({user_id: "u1", url: location.pathname}))`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Err = cmd.ErrOrStderr()
			return Run(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	def := []string{clientopts.DefaultBrokers}
	if env := strings.TrimSpace(os.Getenv(clientopts.BrokersEnv)); env != "" {
		def = clientopts.SplitList(env)
	}
	fs.StringSliceVarP(&o.Brokers, "brokers", "b", def, "comma-separated host:port of brokers to bootstrap from (env "+clientopts.BrokersEnv+")")
	fs.StringVar(&o.Listen, "listen", DefaultListen, "host:port to serve HTTP on")
	fs.StringVarP(&o.ConfigPath, "config", "c", "", "the collector's config file (YAML or JSON; see above)")
	fs.StringVar(&o.SchemaRegistry, "schema-registry", "", "schema registry URL, overriding the config's schema_registry")
	fs.StringVar(&o.CollectorID, "collector-id", "", "this collector's id, overriding the config's collector_id")
	fs.StringVar(&o.SpoolDir, "spool-dir", "", "directory of the disk spool, overriding the config's spool.dir (one collector per dir)")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "on SIGTERM, how long to finish requests and flush buffered events")
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.Audit, "audit", false, "count acknowledged events for `sluice audit report` (stage collect)")
	fs.StringVar(&o.AuditTopic, "audit-topic", audit.DefaultCountsTopic, "with --audit, the counts topic")
	fs.StringSliceVar(&o.AuditBrokers, "audit-brokers", nil, "with --audit, the cluster of the counts topic (default: --brokers)")
	cmd.MarkFlagRequired("config")
	return cmd
}

// Run serves until ctx is done, then stops taking requests and flushes
// the buffered events for at most ShutdownTimeout.
func Run(ctx context.Context, o Options) error {
	errOut := o.Err
	if errOut == nil {
		errOut = os.Stderr
	}
	log, err := clientopts.NewLogger(o.LogLevel, errOut)
	if err != nil {
		return err
	}
	cfg, err := collect.LoadConfig(o.ConfigPath)
	if err != nil {
		return err
	}
	if o.SchemaRegistry != "" {
		cfg.SchemaRegistry = o.SchemaRegistry
	}
	if o.CollectorID != "" {
		cfg.CollectorID = o.CollectorID
	}
	if o.SpoolDir != "" {
		cfg.Spool.Dir = o.SpoolDir
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	var counter *audit.Counter
	if o.Audit {
		brokers := o.AuditBrokers
		if len(brokers) == 0 {
			brokers = o.Brokers
		}
		counter, err = audit.DialCounter(ctx, audit.StageCollect, o.AuditTopic, brokers, "sluice-collect-audit", auditConnectTimeout, log)
		if err != nil {
			return err
		}
		// After the collector's Close: every acknowledgement is counted.
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
			defer cancel()
			if err := counter.Close(cctx); err != nil {
				log.Warn("audit counts", "err", err)
			}
		}()
	}
	c, err := collect.New(collect.Options{Brokers: o.Brokers, Config: cfg, Logger: log, Audit: counter})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		c.Close(context.Background())
		return fmt.Errorf("collect: listen on %s: %w (another process there? pick one with --listen)", o.Listen, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.Run(runCtx)
	hs := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, IdleTimeout: idleTimeout}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("collecting", "listen", ln.Addr().String(), "brokers", strings.Join(o.Brokers, ","), "streams", len(cfg.Streams), "collector_id", cfg.CollectorID)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	stopCtx, stop := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer stop()
	if err := hs.Shutdown(stopCtx); err != nil {
		log.Warn("HTTP shutdown", "err", err)
	}
	if err := c.Close(stopCtx); err != nil {
		log.Warn("buffered events not all delivered before the shutdown timeout (with a spool, they are spooled)", "err", err)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("collect: serve: %w", serveErr)
	}
	return nil
}
