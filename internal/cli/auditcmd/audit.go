// Package auditcmd is `sluice audit`: the heartbeat auditor of internal/audit
// as commands, `run` (a long-running canary with /metrics) and `check` (a
// bounded run with a verdict, for cron or CI).
package auditcmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

const (
	// DefaultListen is where `sluice audit run` serves /metrics: next to
	// `sluice serve`'s 9644.
	DefaultListen = "127.0.0.1:9645"
	// DefaultDuration is how long `sluice audit check` sends heartbeats.
	DefaultDuration = 30 * time.Second
	// shutdownTimeout bounds the HTTP server's stop.
	shutdownTimeout = 5 * time.Second
	// readHeaderTimeout bounds a slow scraper.
	readHeaderTimeout = 10 * time.Second
	// finalMetadataWait bounds the leaders' refresh before check's report.
	finalMetadataWait = 2 * time.Second
	// clientID names the auditor's clients to the brokers.
	clientID = "sluice-audit"
)

const measures = `Every --interval the auditor produces one small heartbeat record to every
partition of the audit topic (--topic, created when missing with one
partition per broker, replication factor min(3, brokers), retention 1 h),
with acks=all from an idempotent producer, and consumes every partition back
from its end at the start (no consumer group). A heartbeat carries this run's
random instance id, a sequence number per partition and its produce time;
heartbeats of other auditors on the same topic are ignored. It speaks only the
Kafka protocol, so it audits any Kafka cluster.

Per partition, and per broker (the partition's current leader), it measures:
  latency        produce to consume, wall clock of this host (p50, p99)
  lost           a heartbeat the cluster acknowledged that was not consumed
                 although a later heartbeat of its partition was (a partition
                 is written and read in order), or that was not consumed
                 within --grace of its acknowledgement
  late           a heartbeat counted lost that was consumed after all
  duplicated     a heartbeat consumed a second time
  out of order   a heartbeat consumed for the first time after a higher
                 sequence number of its partition
  produce errors heartbeats the cluster refused or did not acknowledge within
                 --grace: not expected, never counted lost
  last seen      time since the partition's last heartbeat was consumed
A partition's last 1024 sequence numbers are remembered (bounded memory):
--interval times 1024 must exceed twice --grace.`

// Options are the flags both subcommands share.
type Options struct {
	clientopts.Common
	Topic      string
	Interval   time.Duration
	Grace      time.Duration
	Partitions int
	LogLevel   string
}

func addFlags(fs *pflag.FlagSet, o *Options) {
	clientopts.AddFlags(fs, &o.Common)
	fs.StringVar(&o.Topic, "topic", audit.DefaultTopic, "the audit topic")
	fs.DurationVar(&o.Interval, "interval", audit.DefaultInterval, "how often a heartbeat goes to every partition")
	fs.DurationVar(&o.Grace, "grace", audit.DefaultGrace, "how long an acknowledged heartbeat may take to be consumed before it counts as lost")
	fs.IntVar(&o.Partitions, "partitions", 0, "partitions of the audit topic when it is created (0: one per broker)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
}

// Command returns `sluice audit` and its subcommands.
func Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Tell whether a Kafka cluster or a pipeline loses, duplicates or delays records",
		Long: "A canary (run, check): heartbeats produced to every partition and consumed back.\n\n" + measures +
			"\n\nA pipeline audit (report): the counts the stages publish with --audit (collect,\n" +
			"mirror, sink) and the topics themselves, compared minute by minute; see\n`sluice audit report --help`.",
		Example: `  sluice audit check --duration 30s -b kafka1:9092
  sluice audit run --listen 0.0.0.0:9645 -b kafka1:9092,kafka2:9092
  sluice audit report --since 3h -b kafka1:9092`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(runCommand(), checkCommand(), reportCommand())
	return cmd
}

// RunOptions are the flags of `sluice audit run`.
type RunOptions struct {
	Options
	Listen string
}

func runCommand() *cobra.Command {
	o := RunOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Audit until stopped, with Prometheus metrics on --listen",
		Long: `Audit until SIGTERM or SIGINT, serving /metrics (sluice_audit_*, by partition
and broker) and /healthz on --listen.

` + measures + `

Metrics: sluice_audit_latency_seconds (histogram), sluice_audit_records_lost_total,
_late_total, _duplicated_total, _out_of_order_total, _unexpected_total,
_undecodable_total, sluice_audit_heartbeats_sent_total, _acked_total,
_seen_total, sluice_audit_produce_errors_total, sluice_audit_last_seen_seconds.
Alert on increase(sluice_audit_records_lost_total[5m]) > 0 and on
sluice_audit_last_seen_seconds > 60.`,
		Example: `  sluice audit run
  sluice audit run -b kafka1:9092 --listen 0.0.0.0:9645 --interval 5s
  curl -s 127.0.0.1:9645/metrics | grep sluice_audit_records_lost_total`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			return Run(cmd.Context(), o)
		},
	}
	addFlags(cmd.Flags(), &o.Options)
	cmd.Flags().StringVar(&o.Listen, "listen", DefaultListen, "host:port to serve /metrics and /healthz on")
	return cmd
}

// CheckOptions are the flags of `sluice audit check`.
type CheckOptions struct {
	Options
	Duration time.Duration
	Output   string
}

func checkCommand() *cobra.Command {
	o := CheckOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Audit for --duration, print a table per broker and partition, fail on any loss",
		Long: `Send heartbeats for --duration, then wait at most --grace for the last ones,
and print per broker and per partition: heartbeats sent, seen, lost,
duplicated, out of order, produce errors, latency p50/p99, time since the
last one was seen. A broker's line sums the partitions it leads at the end.

` + measures + `

In the table, lost is what is still missing at the end (a heartbeat counted
lost that arrived later shows as out of order, or only in the latency when it
came in order after --grace); -o json has both counts.

It exits non-zero when a partition saw nothing, or when any heartbeat was
lost, duplicated, out of order, or not seen at all (a produce error included:
the cluster did not take it), so that a cron job or a CI step fails. It ends
within --duration plus --grace plus a few seconds (a last read of the
partitions' leaders, at most 2 s, and closing its connections).`,
		Example: `  sluice audit check
  sluice audit check --duration 10s --interval 200ms --grace 5s -b kafka1:9092
  sluice audit check -o json | jq '.brokers[] | {broker, lost, p99_ms}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			return Check(cmd.Context(), o)
		},
	}
	addFlags(cmd.Flags(), &o.Options)
	cmd.Flags().DurationVar(&o.Duration, "duration", DefaultDuration, "how long to send heartbeats")
	clientopts.AddOutputFlag(cmd.Flags(), &o.Output)
	return cmd
}

func (o Options) logger() (*slog.Logger, error) {
	return clientopts.NewLogger(o.LogLevel, o.Stderr())
}

// start checks that a broker answers, then builds the auditor.
func (o Options) start(ctx context.Context, log *slog.Logger) (*audit.Auditor, error) {
	cl, _, err := o.Connect(ctx, nil) // the friendly "cannot reach broker" error
	if err != nil {
		return nil, err
	}
	cl.Close()
	sctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	return audit.New(sctx, audit.Options{
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return o.NewClient(append(opts, kgo.ClientID(clientID))...)
		},
		Topic:      o.Topic,
		Interval:   o.Interval,
		Grace:      o.Grace,
		Partitions: o.Partitions,
		Logger:     log,
	})
}

// Run audits until ctx ends, serving /metrics on o.Listen.
func Run(ctx context.Context, o RunOptions) error {
	log, err := o.logger()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("audit: listen on %s: %w (another process there? pick one with --listen)", o.Listen, err)
	}
	defer ln.Close()
	a, err := o.start(ctx, log)
	if err != nil {
		return err
	}
	defer a.Close()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.Registry(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	a.Start(ctx)
	log.Info("auditing", "topic", o.Topic, "instance", a.Instance().String(), "listen", ln.Addr().String(),
		"brokers", strings.Join(o.Brokers, ","))
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	hs.Shutdown(sctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("audit: serve: %w", serveErr)
	}
	return nil
}

// ErrCheckFailed is what Check's error is (errors.Is) when the audit found
// a problem; the table says which.
var ErrCheckFailed = errors.New("audit check failed")

// Check audits for o.Duration plus at most the grace period, prints the
// report and returns an error wrapping ErrCheckFailed when a partition saw
// nothing or a heartbeat was lost, duplicated, out of order or not seen.
func Check(ctx context.Context, o CheckOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	if o.Duration <= 0 {
		return fmt.Errorf("--duration %s: give a positive duration", o.Duration)
	}
	log, err := o.logger()
	if err != nil {
		return err
	}
	a, err := o.start(ctx, log)
	if err != nil {
		return err
	}
	defer a.Close()
	a.Start(ctx)
	timer := time.NewTimer(o.Duration)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
		return ctx.Err()
	}
	a.StopProducing()
	a.Drain(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	mctx, cancel := context.WithTimeout(ctx, finalMetadataWait)
	a.RefreshLeaders(mctx)
	cancel()
	r := a.Report()
	a.Close()
	problems := verdict(r)
	if o.Output == clientopts.OutputJSON {
		if err := clientopts.JSON(o.Stdout(), jsonReport(r, problems)); err != nil {
			return err
		}
	} else if err := printTable(o.Stdout(), r); err != nil {
		return err
	}
	if len(problems) > 0 {
		const show = 5
		more := ""
		if len(problems) > show {
			more = fmt.Sprintf("; and %d more", len(problems)-show)
			problems = problems[:show]
		}
		return fmt.Errorf("%w: %s%s", ErrCheckFailed, strings.Join(problems, "; "), more)
	}
	return nil
}

// verdict lists what is wrong, a partition at a time.
func verdict(r audit.Report) []string {
	var out []string
	for _, p := range r.Partitions {
		where := fmt.Sprintf("partition %d (leader %s)", p.Partition, leaderName(p.Leader))
		var what []string
		if p.Seen == 0 {
			what = append(what, fmt.Sprintf("nothing seen (last %s ago)", round(p.SinceLastSeen)))
		} else if p.Seen < p.Sent {
			what = append(what, fmt.Sprintf("%d of %d heartbeats not seen", p.Sent-p.Seen, p.Sent))
		}
		if m := p.Missing(); m > 0 {
			what = append(what, fmt.Sprintf("%d lost", m))
		}
		if p.ProduceErrors > 0 {
			what = append(what, clientopts.Count(int64(p.ProduceErrors), "produce error", "produce errors"))
		}
		if p.Duplicated > 0 {
			what = append(what, fmt.Sprintf("%d duplicated", p.Duplicated))
		}
		if p.OutOfOrder > 0 {
			what = append(what, fmt.Sprintf("%d out of order", p.OutOfOrder))
		}
		if p.Unexpected > 0 {
			what = append(what, fmt.Sprintf("%d unexpected", p.Unexpected))
		}
		if len(what) > 0 {
			out = append(out, where+": "+strings.Join(what, ", "))
		}
	}
	return out
}

func leaderName(l int32) string {
	if l < 0 {
		return "none"
	}
	return fmt.Sprint(l)
}

func round(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
