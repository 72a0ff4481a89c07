// Package serve is `sluice serve`: a single-node broker.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/httpapi"
	"github.com/sluice-io/sluice/internal/metadata"
	"github.com/sluice-io/sluice/internal/netmux"
	"github.com/sluice-io/sluice/internal/schemareg"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/server/api"
)

// shutdownTimeout bounds a clean shutdown's HTTP drain.
const shutdownTimeout = 10 * time.Second

// DefaultSchemaRegistryListen is where the schema registry listens by
// default: Confluent's and Redpanda's port.
const DefaultSchemaRegistryListen = "127.0.0.1:8081"

// Options are the flags of `sluice serve`.
type Options struct {
	Listen            string
	DataDir           string
	HTTPListen        string
	AdvertisedAddress string
	NodeID            int32
	Configs           []string // key=value broker configs
	LogLevel          string
	Pprof             bool // serve /debug/pprof/ on the HTTP listener

	// SchemaRegistryListen is where the schema registry serves
	// Confluent's REST API; empty turns it off. SchemaRegistryOptional
	// (the flag left at its default) makes a failed listen a warning, so
	// that several nodes on one host (sluice dev cluster, test harnesses)
	// start without each naming a port: the first one serves it.
	SchemaRegistryListen   string
	SchemaRegistryOptional bool

	// A cluster: this node's controller listener (Raft between voters and
	// the requests brokers send the active controller) and the quorum's
	// voters as id@host:port, the addresses this node dials them at.
	ControllerListen string
	Voters           string
	Rack             string
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

A cluster: every node runs sluice serve with its own --node-id, --listen and
--controller-listen, and the same --controller-quorum-voters (the metadata quorum:
id@host:port of each voter's controller listener). Nodes dial each other exactly at
the addresses given there and at the brokers' advertised addresses.

By default acks=all produce requests are answered after the data is fsynced
(log.flush.policy=acks-all); -c log.flush.policy=none trades that for speed.

-c takes Kafka's broker configs by name. One that Sluice does not act on (yet)
stops the start with the reason, unless set to its default; node.id and broker.id
must agree with --node-id, and log.dirs (one dir per disk) must list --data-dir.`,
		Example: `  sluice serve
  sluice serve --data-dir /var/lib/sluice --listen 0.0.0.0:9092 --advertised-address kafka1.example.com:9092
  sluice serve -c num.partitions=6 -c log.retention.hours=24
  sluice serve --data-dir /disk1/sluice -c log.dirs=/disk1/sluice,/disk2/sluice,/disk3/sluice
  # node 1 of a three-node cluster (run nodes 2 and 3 alike; or try: sluice dev cluster)
  sluice serve --node-id 1 --listen 10.0.0.1:9092 --controller-listen 10.0.0.1:9093 \
    --controller-quorum-voters 1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093 --rack a --data-dir /var/lib/sluice`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SchemaRegistryOptional = !cmd.Flags().Changed("schema-registry-listen")
			return Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:9092", "host:port for the Kafka protocol")
	f.StringVar(&o.DataDir, "data-dir", "./sluice-data", "directory for logs and metadata")
	f.StringVar(&o.HTTPListen, "http-listen", "127.0.0.1:9644", "host:port for HTTP (/metrics, /healthz, /readyz)")
	f.StringVar(&o.AdvertisedAddress, "advertised-address", "", "host:port clients are told to connect to (default: the --listen address)")
	f.Int32Var(&o.NodeID, "node-id", 1, "this broker's node id")
	f.StringArrayVarP(&o.Configs, "config", "c", nil, "broker config key=value (Kafka's names), repeatable")
	f.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.ControllerListen, "controller-listen", "", "host:port for the controller listener (the metadata quorum's Raft and brokers' controller requests); required with --controller-quorum-voters")
	f.StringVar(&o.Voters, "controller-quorum-voters", "", "the metadata quorum, id@host:port,... (Kafka's controller.quorum.voters), the same ids on every node; each address is where this node reaches that voter's --controller-listen. Empty: a single-node cluster")
	f.StringVar(&o.Rack, "rack", "", "this broker's rack (Kafka's broker.rack): replicas of a partition go to different racks, and consumers may fetch from their own rack")
	f.StringVar(&o.SchemaRegistryListen, "schema-registry-listen", DefaultSchemaRegistryListen, "host:port for the schema registry (Confluent's REST API, state in the topic _schemas); empty turns it off")
	f.BoolVar(&o.Pprof, "pprof", false, "serve Go's profiles on /debug/pprof/ of --http-listen (they show the command line and let anyone who reaches the port profile the broker: use only where just operators reach it)")
	return cmd
}

// Run runs a broker until ctx ends, then shuts down cleanly.
func Run(ctx context.Context, o Options) error {
	logger, err := clientopts.NewLogger(o.LogLevel, os.Stderr)
	if err != nil {
		return err
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %q: %w", o.DataDir, err)
	}
	set, err := resolve(ctx, o, dataDir)
	if err != nil {
		return err
	}
	roles, _ := config.Broker{Static: set.static}.Value("process.roles") // validated by resolve
	roleList := config.ListElems(roles)
	isBroker, isController := slices.Contains(roleList, "broker"), slices.Contains(roleList, "controller")
	if !isBroker && (o.AdvertisedAddress != "") {
		return fmt.Errorf("--advertised-address: a controller-only node (process.roles=controller) has no client listener to advertise")
	}
	// The Kafka listener (a controller-only node has none: clients and
	// brokers reach it on --controller-listen only).
	var (
		ln   net.Listener
		host string
		port int
		adv  string
	)
	if isBroker {
		if ln, err = net.Listen("tcp", o.Listen); err != nil {
			return fmt.Errorf("listen on %s: %w (is another broker running there? pick another with --listen)", o.Listen, err)
		}
		defer ln.Close()
		adv = o.AdvertisedAddress
		if adv == "" {
			adv = ln.Addr().String()
		}
		var portStr string
		if host, portStr, err = net.SplitHostPort(adv); err != nil {
			return fmt.Errorf("--advertised-address %q: want host:port", adv)
		}
		port, err = strconv.Atoi(portStr)
		if err != nil || port <= 0 || port > 65535 {
			return fmt.Errorf("--advertised-address %q: bad port", adv)
		}
	}
	httpLn, err := net.Listen("tcp", o.HTTPListen)
	if err != nil {
		return fmt.Errorf("listen on %s for HTTP: %w (pick another with --http-listen)", o.HTTPListen, err)
	}
	// Health answers while the broker recovers; readiness once it is done.
	var b *broker.Broker
	ready := make(chan struct{})
	metrics := httpapi.NewMetricsWithOptions(httpapi.MetricsOptions{PartitionLevel: set.partitionMetrics})
	mux := httpapi.NewHandler(metrics, ready, httpapi.HandlerOptions{Pprof: o.Pprof})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(httpLn)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		hs.Shutdown(sctx)
	}()

	bcfg := broker.Config{
		NodeID: o.NodeID, DataDir: dataDir, LogDirs: set.logDirs, Host: host, Port: int32(port), Rack: o.Rack,
		Static: set.static, Logger: logger, OnFsync: metrics.Fsync,
		RetentionCheckInterval: set.retentionCheck,
	}
	kafkaLn := ln // what the Kafka protocol server accepts on
	if o.Voters != "" {
		if bcfg.Voters, err = metadata.ParseVoters(o.Voters); err != nil {
			return fmt.Errorf("--controller-quorum-voters: %w", err)
		}
		if isController {
			if o.ControllerListen == "" {
				return fmt.Errorf("--controller-quorum-voters needs --controller-listen: the host:port where this node's controller listener takes the other voters' connections")
			}
			cln, err := net.Listen("tcp", o.ControllerListen)
			if err != nil {
				return fmt.Errorf("listen on %s for the controller: %w (pick another with --controller-listen)", o.ControllerListen, err)
			}
			bcfg.ControllerMux = netmux.New(cln, logger)
			bcfg.LocalAddr = localAddr(cln.Addr())
		} else if o.ControllerListen != "" {
			return fmt.Errorf("--controller-listen: a broker-only node (process.roles=broker) has no controller listener; the controllers send it the metadata log on --listen")
		}
		if isBroker {
			bcfg.LocalAddr = localAddr(ln.Addr())
		}
		if !isController {
			// The quorum's leader sends this observer the metadata log
			// on its Kafka listener.
			bcfg.BrokerMux = netmux.New(ln, logger)
			kafkaLn = bcfg.BrokerMux.Kafka()
		}
	} else if o.ControllerListen != "" {
		return fmt.Errorf("--controller-listen needs --controller-quorum-voters (without both, the node is a single-node cluster)")
	}
	b, err = broker.OpenContext(ctx, bcfg)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			// Stopped while starting (waiting for the other voters,
			// say): what was asked for, not a failure.
			logger.Info("stopped while starting", "reason", err)
			return nil
		}
		return err
	}
	metrics.SetBroker(b)
	close(ready)
	handler := api.New(b, logger)
	handler.SetObserver(metrics)
	b.ServeAdmin(handler, api.ForwardedKeys())
	errc := make(chan error, 1)
	var srv *server.Server
	stopRegistry := func() {}
	if isBroker {
		srv = server.New(handler, logger)
		srv.SetObserver(metrics)
		srv.SetQueuedMaxRequestBytes(set.queued)
		srv.SetLimits(set.limits)
		logger.Info("sluice serving", "kafka", ln.Addr().String(), "advertised", adv, "http", httpLn.Addr().String(),
			"data_dir", dataDir, "node_id", o.NodeID, "roles", roles)
		go func() { errc <- srv.Serve(kafkaLn) }()
		if stopRegistry, err = startSchemaRegistry(o, ln.Addr().String(), logger); err != nil {
			srv.Close()
			b.Close()
			return err
		}
	} else {
		logger.Info("sluice serving as a controller only", "controller", o.ControllerListen, "http", httpLn.Addr().String(),
			"data_dir", dataDir, "node_id", o.NodeID)
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	logger.Info("shutting down")
	if srv != nil {
		// The schema registry is a client of this broker: it stops first.
		stopRegistry()
		srv.Close()
	}
	if cerr := b.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("clean shutdown: %w", cerr))
	}
	if err == nil {
		logger.Info("stopped cleanly")
	}
	return err
}

// localAddr is the address a node dials its peers from: its own loopback
// address when it listens on one (a local test cluster on 127.0.0.x, where
// a fault-injecting proxy tells nodes apart by source address), else nil,
// the kernel's choice by route.
func localAddr(listen net.Addr) net.Addr {
	ta, ok := listen.(*net.TCPAddr)
	if !ok || !ta.IP.IsLoopback() {
		return nil
	}
	return &net.TCPAddr{IP: ta.IP}
}

// settings are what Run makes of its flags and broker configs before it
// opens anything.
type settings struct {
	static           map[string]string // the -c configs
	limits           server.Limits
	queued           int           // queued.max.request.bytes
	retentionCheck   time.Duration // log.retention.check.interval.ms
	partitionMetrics bool          // metrics.partition.level
	logDirs          []string      // log.dirs but the data dir
}

// resolve checks the -c broker configs and turns the ones sluice serve
// acts on itself into settings. Every broker config is either acted on
// (here, by the broker or by the protocol handlers) or refused, by
// config.ValidateBrokerConfigs (an Unsupported config set to anything but
// its default) or here (one that a flag sets); never silently ignored.
// Host names in max.connections.per.ip.overrides are resolved with ctx.
func resolve(ctx context.Context, o Options, dataDir string) (settings, error) {
	set := settings{static: map[string]string{}}
	for _, kv := range o.Configs {
		k, v, ok := cutConfig(kv)
		if !ok {
			return set, fmt.Errorf("-c %q: write configs as key=value, e.g. -c num.partitions=3", kv)
		}
		set.static[k] = v
	}
	if err := config.ValidateBrokerConfigs(set.static); err != nil {
		return set, fmt.Errorf("-c: %w", err)
	}
	b := config.Broker{Static: set.static}
	value := func(name string) string { v, _ := b.Value(name); return strings.TrimSpace(v) }
	// Validated above: every value parses as its type.
	integer := func(name string) int64 { n, _ := strconv.ParseInt(value(name), 10, 64); return n }

	if v, ok := set.static["node.id"]; ok && integer("node.id") != int64(o.NodeID) {
		return set, fmt.Errorf("-c node.id=%s: the node id is set with --node-id (it is %d); drop -c node.id or make it equal", v, o.NodeID)
	}
	if id := integer("broker.id"); id != -1 && id != int64(o.NodeID) {
		return set, fmt.Errorf("-c broker.id=%d: broker.id must be -1 or equal node.id, %d (--node-id)", id, o.NodeID)
	}
	if roles := config.ListElems(value("process.roles")); !slices.Equal(roles, []string{"broker", "controller"}) && o.Voters == "" {
		return set, fmt.Errorf("-c process.roles=%s needs --controller-quorum-voters: a node with one role is part of a cluster whose other nodes have the other role (without voters, a node is a single-node cluster with both)", value("process.roles"))
	}
	if v, ok := set.static["log.dirs"]; ok {
		extra, err := checkLogDirs(v, dataDir)
		if err != nil {
			return set, err
		}
		set.logDirs = extra
	}
	if v := value(config.CordonedLogDirs); v != "" {
		// The controller places replicas by the metadata, which holds the
		// dynamic configs only: a static cordon would be ignored.
		return set, fmt.Errorf("-c %s=%s: cordon a broker dynamically, so the controller sees it: sluice cluster drain %d (or kafka-configs --entity-type brokers --entity-name %d --alter --add-config %s=*)",
			config.CordonedLogDirs, v, o.NodeID, o.NodeID, config.CordonedLogDirs)
	}

	set.limits = server.Limits{
		MaxConnections:      int(integer("max.connections")),
		MaxConnectionsPerIP: int(integer("max.connections.per.ip")),
		IdleTimeout:         time.Duration(integer("connections.max.idle.ms")) * time.Millisecond,
		MaxFrameBytes:       int(integer("socket.request.max.bytes")),
	}
	if set.limits.IdleTimeout < 0 {
		set.limits.IdleTimeout = -1
	}
	overrides, err := resolveOverrides(ctx, value("max.connections.per.ip.overrides"))
	if err != nil {
		return set, err
	}
	set.limits.MaxConnectionsPerIPOverrides = overrides
	if set.limits.MaxConnectionsPerIP == 0 && len(overrides) == 0 {
		return set, fmt.Errorf("-c max.connections.per.ip=0 refuses every client: it can be 0 only with max.connections.per.ip.overrides set (Kafka's rule)")
	}
	set.queued = int(integer("queued.max.request.bytes"))
	if set.queued < set.limits.MaxFrameBytes {
		return set, fmt.Errorf("queued.max.request.bytes (%d) must be at least socket.request.max.bytes (%d), as Kafka requires", set.queued, set.limits.MaxFrameBytes)
	}
	ms := integer("log.retention.check.interval.ms")
	set.retentionCheck = time.Duration(min(ms, int64(math.MaxInt64/time.Millisecond))) * time.Millisecond
	pl, _ := config.Broker{Static: set.static}.Value("metrics.partition.level")
	set.partitionMetrics = pl == "true"
	return set, nil
}

// checkLogDirs parses log.dirs: the data directory (which also holds the
// metadata) and any more, one per disk, where partitions are spread. It
// returns the absolute paths of the others.
func checkLogDirs(v, dataDir string) ([]string, error) {
	var extra []string
	found := false
	for _, d := range strings.Split(v, ",") {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("-c log.dirs=%s: %w", v, err)
		}
		switch {
		case abs == dataDir:
			found = true
		case slices.Contains(extra, abs):
			return nil, fmt.Errorf("-c log.dirs=%s names %s twice", v, abs)
		case strings.HasPrefix(abs, dataDir+string(filepath.Separator)) || strings.HasPrefix(dataDir, abs+string(filepath.Separator)):
			return nil, fmt.Errorf("-c log.dirs=%s: %s and the data dir %s are nested; give each log dir its own directory (one per disk)", v, abs, dataDir)
		default:
			extra = append(extra, abs)
		}
	}
	if !found {
		return nil, fmt.Errorf("-c log.dirs=%s does not list --data-dir %s: the data dir (which also holds the metadata) is always a log dir; list it too, or set it with --data-dir", v, dataDir)
	}
	return extra, nil
}

// resolveOverrides turns max.connections.per.ip.overrides (validated) into
// limits by address: an IP address stands for itself, a host name for
// every address it resolves to now (Kafka resolves it at start too).
func resolveOverrides(ctx context.Context, v string) (map[netip.Addr]int, error) {
	hosts, err := config.ParseConnectionOverrides(v)
	if err != nil {
		return nil, fmt.Errorf("-c max.connections.per.ip.overrides: %w", err)
	}
	out := make(map[netip.Addr]int, len(hosts))
	for host, n := range hosts {
		if ip, err := netip.ParseAddr(host); err == nil {
			out[ip.Unmap()] = n
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("-c max.connections.per.ip.overrides: resolve %s: %w", host, err)
		}
		for _, ip := range ips {
			out[ip.Unmap()] = n
		}
	}
	return out, nil
}

func cutConfig(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], i > 0
		}
	}
	return "", "", false
}

// startSchemaRegistry serves the schema registry on o.SchemaRegistryListen
// (nothing when empty), a client of the broker at kafkaAddr. It returns
// the function that stops it.
func startSchemaRegistry(o Options, kafkaAddr string, logger *slog.Logger) (func(), error) {
	if o.SchemaRegistryListen == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", o.SchemaRegistryListen)
	if err != nil {
		if o.SchemaRegistryOptional {
			logger.Warn("schema registry not started: its default address is taken (another node on this host serves it?); set --schema-registry-listen to serve it here, or to \"\" to silence this",
				"addr", o.SchemaRegistryListen, "err", err)
			return func() {}, nil
		}
		return nil, fmt.Errorf("listen on %s for the schema registry: %w (pick another with --schema-registry-listen, or \"\" for none)", o.SchemaRegistryListen, err)
	}
	reg, err := schemareg.Open(schemareg.Config{Brokers: []string{kafkaAddr}, Logger: logger.With("component", "schema-registry")})
	if err != nil {
		ln.Close()
		return nil, err
	}
	hs := &http.Server{Handler: reg.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	logger.Info("schema registry listening", "addr", ln.Addr().String(), "topic", schemareg.DefaultTopic)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		hs.Shutdown(sctx)
		reg.Close()
	}, nil
}
