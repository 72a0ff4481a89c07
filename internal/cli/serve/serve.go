// Package serve is `sluice serve`: a single-node broker.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/httpapi"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/server/api"
)

// shutdownTimeout bounds a clean shutdown's HTTP drain.
const shutdownTimeout = 10 * time.Second

// Options are the flags of `sluice serve`.
type Options struct {
	Listen            string
	DataDir           string
	HTTPListen        string
	AdvertisedAddress string
	NodeID            int32
	Configs           []string // key=value broker configs
	LogLevel          string
}

// Command returns `sluice serve`.
func Command() *cobra.Command {
	o := Options{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a broker (a single-node cluster with no flags)",
		Long: `Run a Sluice broker: the Kafka protocol on --listen, data in --data-dir,
metrics and health on --http-listen. With no flags it is a single-node cluster that any
Kafka client can use at 127.0.0.1:9092.

By default acks=all produce requests are answered after the data is fsynced
(log.flush.policy=acks-all); -c log.flush.policy=none trades that for speed.`,
		Example: `  sluice serve
  sluice serve --data-dir /var/lib/sluice --listen 0.0.0.0:9092 --advertised-address kafka1.example.com:9092
  sluice serve -c num.partitions=6 -c log.retention.hours=24`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return Run(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:9092", "host:port for the Kafka protocol")
	f.StringVar(&o.DataDir, "data-dir", "./sluice-data", "directory for logs and metadata")
	f.StringVar(&o.HTTPListen, "http-listen", "127.0.0.1:9644", "host:port for HTTP (/metrics, /healthz, /readyz)")
	f.StringVar(&o.AdvertisedAddress, "advertised-address", "", "host:port clients are told to connect to (default: the --listen address)")
	f.Int32Var(&o.NodeID, "node-id", 1, "this broker's node id")
	f.StringArrayVarP(&o.Configs, "config", "c", nil, "broker config key=value (Kafka's names), repeatable")
	f.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// Run runs a broker until ctx ends, then shuts down cleanly.
func Run(ctx context.Context, o Options) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", o.LogLevel)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	static := map[string]string{}
	for _, kv := range o.Configs {
		k, v, ok := cutConfig(kv)
		if !ok {
			return fmt.Errorf("-c %q: write configs as key=value, e.g. -c num.partitions=3", kv)
		}
		static[k] = v
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another broker running there? pick another with --listen)", o.Listen, err)
	}
	defer ln.Close()
	adv := o.AdvertisedAddress
	if adv == "" {
		adv = ln.Addr().String()
	}
	host, portStr, err := net.SplitHostPort(adv)
	if err != nil {
		return fmt.Errorf("--advertised-address %q: want host:port", adv)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("--advertised-address %q: bad port", adv)
	}
	httpLn, err := net.Listen("tcp", o.HTTPListen)
	if err != nil {
		return fmt.Errorf("listen on %s for HTTP: %w (pick another with --http-listen)", o.HTTPListen, err)
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %q: %w", o.DataDir, err)
	}

	// Health answers while the broker recovers; readiness once it is done.
	var b *broker.Broker
	ready := make(chan struct{})
	metrics := httpapi.NewMetrics()
	mux := httpapi.Handler(metrics, ready)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(httpLn)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		hs.Shutdown(sctx)
	}()

	b, err = broker.Open(broker.Config{
		NodeID: o.NodeID, DataDir: dataDir, Host: host, Port: int32(port),
		Static: static, Logger: logger, OnFsync: metrics.Fsync,
	})
	if err != nil {
		return err
	}
	metrics.SetBroker(b)
	close(ready)
	handler := api.New(b, logger)
	handler.SetObserver(metrics)
	srv := server.New(handler, logger)
	srv.SetObserver(metrics)
	queued, _ := b.BrokerConfigs().Value("queued.max.request.bytes")
	if n, err := strconv.ParseInt(queued, 10, 64); err == nil && n > 0 {
		srv.SetQueuedMaxRequestBytes(int(n))
	}
	logger.Info("sluice serving", "kafka", ln.Addr().String(), "advertised", adv, "http", httpLn.Addr().String(),
		"data_dir", dataDir, "node_id", o.NodeID)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	logger.Info("shutting down")
	srv.Close()
	if cerr := b.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("clean shutdown: %w", cerr))
	}
	if err == nil {
		logger.Info("stopped cleanly")
	}
	return err
}

func cutConfig(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], i > 0
		}
	}
	return "", "", false
}
