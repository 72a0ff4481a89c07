// Package mirrorcmd is `sluice mirror`: internal/mirror as a command, and
// `sluice mirror status`.
package mirrorcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/mirror"
)

// Options are the flags of `sluice mirror`.
type Options struct {
	From, To           []string
	Topics             string
	Group              string
	TopicPrefix        string
	ReplicationFactor  int16
	MaxInFlightBytes   int64
	TopicSyncInterval  time.Duration
	CommitInterval     time.Duration
	CheckpointInterval time.Duration
	SessionTimeout     time.Duration
	StopTimeout        time.Duration
	Timeout            time.Duration
	PreserveOffsets    bool
	Listen             string // "" serves no /metrics
	LogLevel           string
	// Audit turns on audit counting (stage "mirror") to AuditTopic on
	// AuditBrokers (none: the source cluster, --from).
	Audit        bool
	AuditTopic   string
	AuditBrokers []string
	Err          io.Writer // logs; nil: stderr
	// Started, when not nil, is called with the /metrics address once the
	// mirror runs (tests).
	Started func(metricsAddr string)
}

// StatusOptions are the flags of `sluice mirror status`.
type StatusOptions struct {
	From, To    []string
	Topics      string
	Group       string
	TopicPrefix string
	Timeout     time.Duration
	// PreserveOffsets: the copies keep the source's offsets; COMMITTED is
	// the target's end.
	PreserveOffsets bool
	Output          string
	Out             io.Writer
}

// Command returns `sluice mirror` and its status subcommand.
func Command() *cobra.Command {
	o := Options{}
	cmd := &cobra.Command{
		Use:   "mirror --from HOST:PORT --to HOST:PORT --topics REGEX",
		Short: "Copy topics from one Kafka cluster to another, as MirrorMaker 2 does",
		Long: `Copy every topic of the --from cluster whose whole name matches --topics (Go
regexp syntax; "__" internal topics never) to the --to cluster, until SIGTERM
or Ctrl-C. Both sides are reached only through the Kafka protocol: either can
be Sluice or any Kafka cluster.

What it does:
  - creates a missing target topic with the source's partition count, its
    non-default (dynamic) configs, and --replication-factor (by default the
    target's); adds partitions to it when the source topic grows; new
    topics matching --topics are picked up every --topic-sync-interval;
  - every --topic-sync-interval, applies to the target topics the source's
    config changes (IncrementalAlterConfigs: a changed or new config is set,
    one the mirror had set and the source dropped is deleted); configs set
    on the target only are left alone, and these are never copied:
    min.insync.replicas, unclean.leader.election.enable,
    message.timestamp.type and the timestamp bounds, the replication
    throttles (as MirrorMaker 2), and sluice.mirror.source;
  - copies each record with its key, value, headers and timestamp to the SAME
    partition number, in order, with an idempotent acks=all producer; the
    target topic is --topic-prefix + the source name;
  - reads the source with consumer group --group and commits a source offset
    only after the target acknowledged the record at it (every
    --commit-interval, and on stop);
  - every --checkpoint-interval, translates the committed offsets of the
    source's other consumer groups on mirrored topics and commits them to the
    same groups on the target (only where the target group has no members),
    so that consumers can move to the target and resume there.

Delivery is at least once. A stop (SIGTERM) waits for the target to acknowledge
what was sent, commits, and loses or repeats nothing. After a crash (kill -9),
the next run copies again what the target acknowledged after the last commit:
at most --commit-interval's worth per partition appears twice, in order.
Nothing is dropped when the target is slow: past --max-in-flight-bytes
unacknowledged, source fetching pauses.

Translated offsets never skip a record: a consumer resumes on the target at
the copy of its committed source record, or up to 100 records before it
(they are processed again).

Mirroring both ways (A -> B and B -> A) does not loop: every copied record
carries the header sluice-mirror-source = the cluster id of the cluster it was
first written to, and a mirror does not copy records whose header names its
target. --topic-prefix (say "a." on the A -> B mirror, as MirrorMaker 2 names
remote topics "A.topic") keeps copies in topics of their own; then pick a
--topics regexp that does not match the other direction's prefixed topics.

With --preserve-offsets (a Sluice target only), each partition is copied with
its source offsets instead: the source's record batches are fetched as they
are (compression, producer ids, transaction markers, gaps left by compaction
and deleted records included) and appended on the target at the same offsets,
so committed consumer offsets are copied without translation and a consumer
moves from one cluster to the other at exactly its record. The target topics
are created with sluice.mirror.source = the source's cluster id and take no
other producer; the copy's own end is the mirror's progress (no source group),
and a restart after a crash resumes there, with no duplicate and no gap. An
existing target topic must be such a copy of the same source.

With --listen, /metrics serves sluice_mirror_lag_records and
sluice_mirror_seconds_behind per partition, sluice_mirror_records_total and
sluice_mirror_bytes_total per topic, the in-flight bytes, and
sluice_mirror_topic_config_changes_total (configs set and deleted to follow
the source) and sluice_mirror_topic_config_refused_total per topic.

With --audit, every record whose copy the target acknowledged is counted, per
source topic and minute of record time, with its source partition and offset,
and the counts go every 5 s to --audit-topic on --audit-brokers (default: the
source cluster, where the collector's counts are), for ` + "`sluice audit report`" + `
to compare with the other stages. Off by default: it creates and writes a topic.
With --preserve-offsets too, the copied batches are read again after the target
took them (decompressed when compressed: a CPU cost the copy otherwise has not)
and every record in them is counted, those of aborted transactions included, as
the topic stage of the report counts them; transaction markers are not records.`,
		Example: `  # copy orders and every payments.* topic from the primary to the DR cluster
  sluice mirror --from kafka-a:9092 --to kafka-b:9092 --topics 'orders|payments\..*' --listen 127.0.0.1:9646

  # both ways, each cluster's copies in prefixed topics
  sluice mirror --from a:9092 --to b:9092 --topics 'orders' --topic-prefix a. --group mirror-a-to-b
  sluice mirror --from b:9092 --to a:9092 --topics 'orders' --topic-prefix b. --group mirror-b-to-a

  # a disaster-recovery copy with the same offsets, to a Sluice cluster
  sluice mirror --from kafka-a:9092 --to sluice-b:9092 --topics 'orders' --preserve-offsets

  # how far behind is it?
  sluice mirror status --from kafka-a:9092 --to kafka-b:9092 --topics 'orders|payments\..*'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Err = cmd.ErrOrStderr()
			return Run(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	addSides(fs, &o.From, &o.To, &o.Topics, &o.Group, &o.TopicPrefix)
	fs.Int16Var(&o.ReplicationFactor, "replication-factor", -1, "replication factor of the topics created on the target; -1: the target's default")
	fs.Int64Var(&o.MaxInFlightBytes, "max-in-flight-bytes", mirror.DefaultMaxInFlightBytes, "bytes sent to the target and not yet acknowledged before source fetching pauses")
	fs.DurationVar(&o.TopicSyncInterval, "topic-sync-interval", mirror.DefaultTopicSyncInterval, "how often to look for new topics and partitions on the source")
	fs.DurationVar(&o.CommitInterval, "commit-interval", mirror.DefaultCommitInterval, "how often to commit copied source offsets (what a crash can copy twice)")
	fs.DurationVar(&o.CheckpointInterval, "checkpoint-interval", mirror.DefaultCheckpointInterval, "how often to translate consumer groups' offsets to the target; 0: never")
	fs.DurationVar(&o.SessionTimeout, "session-timeout", 45*time.Second, "session timeout in the source group: how long a crashed mirror's partitions wait for another")
	fs.DurationVar(&o.StopTimeout, "stop-timeout", mirror.DefaultStopTimeout, "on SIGTERM, how long to wait for the target to acknowledge what was sent")
	fs.DurationVar(&o.Timeout, "timeout", mirror.DefaultTimeout, "how long to wait for either cluster (connection, admin requests)")
	fs.BoolVar(&o.PreserveOffsets, "preserve-offsets", false, "copy with the source's offsets (Sluice targets only; see above); --group, --commit-interval, --max-in-flight-bytes and --session-timeout then do not apply")
	fs.StringVar(&o.Listen, "listen", "", "host:port to serve /metrics on (none by default)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.Audit, "audit", false, "count copied records for `sluice audit report` (stage mirror)")
	fs.StringVar(&o.AuditTopic, "audit-topic", audit.DefaultCountsTopic, "with --audit, the counts topic")
	fs.StringSliceVar(&o.AuditBrokers, "audit-brokers", nil, "with --audit, the cluster of the counts topic (default: --from)")
	cmd.AddCommand(statusCommand())
	return cmd
}

// addSides registers the flags the mirror and its status share.
func addSides(fs *pflag.FlagSet, from, to *[]string, topics, group, prefix *string) {
	fs.StringSliceVar(from, "from", nil, "comma-separated host:port of the source cluster's brokers")
	fs.StringSliceVar(to, "to", nil, "comma-separated host:port of the target cluster's brokers")
	fs.StringVar(topics, "topics", "", `regexp that a source topic's whole name matches ("orders|payments\..*"; ".*" for all)`)
	fs.StringVar(group, "group", mirror.DefaultGroup, "consumer group of the mirror on the source")
	fs.StringVar(prefix, "topic-prefix", "", `prefix of the target topics' names ("a." copies orders to a.orders)`)
}

func checkSides(from, to []string, topics string) error {
	var missing []string
	if len(from) == 0 {
		missing = append(missing, "--from (the source cluster)")
	}
	if len(to) == 0 {
		missing = append(missing, "--to (the target cluster)")
	}
	if topics == "" {
		missing = append(missing, `--topics (a regexp; ".*" for all topics)`)
	}
	if len(missing) > 0 {
		return fmt.Errorf("mirror: give %s; see `sluice mirror --help`", strings.Join(missing, ", "))
	}
	return nil
}

// newCounter starts the audit counter of o.
func newCounter(ctx context.Context, o Options, log *slog.Logger) (*audit.Counter, error) {
	brokers := o.AuditBrokers
	if len(brokers) == 0 {
		brokers = o.From
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = mirror.DefaultTimeout
	}
	return audit.DialCounter(ctx, audit.StageMirror, o.AuditTopic, brokers, "sluice-mirror-audit", timeout, log)
}

// Run mirrors until ctx is done, then stops cleanly (see mirror.Mirror.Run).
func Run(ctx context.Context, o Options) error {
	if err := checkSides(o.From, o.To, o.Topics); err != nil {
		return err
	}
	errOut := o.Err
	if errOut == nil {
		errOut = os.Stderr
	}
	log, err := clientopts.NewLogger(o.LogLevel, errOut)
	if err != nil {
		return err
	}
	checkpoints := o.CheckpointInterval
	if checkpoints == 0 {
		checkpoints = -1 // the flag's 0 is never; the package's is its default
	}
	var counter *audit.Counter
	if o.Audit {
		if counter, err = newCounter(ctx, o, log); err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), o.StopTimeout)
			defer cancel()
			if err := counter.Close(cctx); err != nil {
				log.Warn("audit counts", "err", err)
			}
		}()
	}
	m, err := mirror.New(ctx, mirror.Options{Source: o.From, Target: o.To, Topics: o.Topics, Group: o.Group,
		TopicPrefix: o.TopicPrefix, ReplicationFactor: o.ReplicationFactor, MaxInFlightBytes: o.MaxInFlightBytes,
		TopicSyncInterval: o.TopicSyncInterval, CommitInterval: o.CommitInterval, CheckpointInterval: checkpoints,
		SessionTimeout: o.SessionTimeout, StopTimeout: o.StopTimeout, Timeout: o.Timeout, Logger: log,
		PreserveOffsets: o.PreserveOffsets, Audit: counter})
	if err != nil {
		return err
	}
	metricsAddr := ""
	if o.Listen != "" {
		addr, stop, err := clientopts.ServeMetrics("mirror", o.Listen, m.Registry())
		if err != nil {
			return err
		}
		defer stop()
		metricsAddr = addr
	}
	log.Info("mirroring", "from", strings.Join(o.From, ","), "source_cluster", m.SourceClusterID(),
		"to", strings.Join(o.To, ","), "target_cluster", m.TargetClusterID(), "topics", o.Topics,
		"group", o.Group, "topic_prefix", o.TopicPrefix, "preserve_offsets", o.PreserveOffsets, "metrics", metricsAddr)
	if o.Started != nil {
		o.Started(metricsAddr)
	}
	err = m.Run(ctx)
	if err == nil && o.PreserveOffsets {
		log.Info("stopped: copied batches acknowledged by the target")
	} else if err == nil {
		log.Info("stopped: copied records acknowledged and their source offsets committed")
	}
	return err
}

func statusCommand() *cobra.Command {
	o := StatusOptions{}
	cmd := &cobra.Command{
		Use:   "status --from HOST:PORT --to HOST:PORT --topics REGEX",
		Short: "Show each mirrored partition's end on both clusters and the mirror's lag",
		Long: `For every source topic matching --topics, print per partition: the source's
end offset (high watermark), the target's end offset, the offset the mirror's
group has committed on the source, and the lag (source end minus committed).
The committed offset trails what is copied by up to --commit-interval.
Target offsets are the target's own: they equal the source's only when the
target topic was empty when mirroring began and nothing else writes to it.
No mirror needs to run. With --preserve-offsets (for a mirror that keeps
offsets) COMMITTED is the target's end: the copy is the mirror's progress.`,
		Example: `  sluice mirror status --from kafka-a:9092 --to kafka-b:9092 --topics 'orders|payments\..*'
  sluice mirror status --from a:9092 --to b:9092 --topics orders --topic-prefix a. -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			return RunStatus(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	addSides(fs, &o.From, &o.To, &o.Topics, &o.Group, &o.TopicPrefix)
	fs.DurationVar(&o.Timeout, "timeout", mirror.DefaultTimeout, "how long to wait for either cluster")
	fs.BoolVar(&o.PreserveOffsets, "preserve-offsets", false, "the mirror keeps offsets (sluice mirror --preserve-offsets): COMMITTED is the target's end, the copy's own progress")
	clientopts.AddOutputFlag(fs, &o.Output)
	return cmd
}

// RunStatus prints the status table (or JSON).
func RunStatus(ctx context.Context, o StatusOptions) error {
	if err := checkSides(o.From, o.To, o.Topics); err != nil {
		return err
	}
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	st, err := mirror.Status(ctx, mirror.StatusOptions{Source: o.From, Target: o.To, Topics: o.Topics,
		Group: o.Group, TopicPrefix: o.TopicPrefix, Timeout: o.Timeout, PreserveOffsets: o.PreserveOffsets})
	if err != nil {
		return err
	}
	if o.Output == clientopts.OutputJSON {
		if st == nil {
			st = []mirror.PartitionStatus{}
		}
		return clientopts.JSON(out, st)
	}
	if len(st) == 0 {
		return errors.New("mirror status: no source topic matches --topics")
	}
	rows := make([][]string, 0, len(st))
	for _, s := range st {
		rows = append(rows, []string{s.Topic, s.TargetTopic, strconv.Itoa(int(s.Partition)), strconv.FormatInt(s.SourceEnd, 10),
			orDash(s.TargetEnd), orDash(s.Committed), strconv.FormatInt(s.Lag, 10)})
	}
	return clientopts.Table(out, []string{"TOPIC", "TARGET TOPIC", "PARTITION", "SOURCE END", "TARGET END", "COMMITTED", "LAG"}, rows)
}

func orDash(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}
