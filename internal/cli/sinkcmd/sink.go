// Package sinkcmd is `sluice sink`: internal/sink as a command.
package sinkcmd

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/sink"
	"github.com/sluice-io/sluice/internal/sink/format"
)

// Options are the flags of `sluice sink`.
type Options struct {
	clientopts.Common
	Topics           string
	Group            string
	InstanceID       string
	To               string
	Format           string
	PartitionBy      string
	RollSize         string // bytes, with an optional KiB/MiB/GiB (or KB/MB/GB) suffix
	RollTime         time.Duration
	MaxBufferedBytes string
	Endpoint         string
	Region           string
	Registry         string
	SessionTimeout   time.Duration
	StopTimeout      time.Duration
	// Audit turns on audit counting (stage "sink") to AuditTopic on
	// AuditBrokers (none: the sink's own cluster, --brokers).
	Audit        bool
	AuditTopic   string
	AuditBrokers []string
	Listen       string // "" serves no /metrics
	LogLevel     string
	// Started, when not nil, is called with the /metrics address once the
	// sink runs (tests).
	Started func(metricsAddr string)
}

// Command returns `sluice sink`.
func Command() *cobra.Command {
	o := Options{}
	cmd := &cobra.Command{
		Use:   "sink --topics REGEX --to s3://bucket/prefix|file://DIR",
		Short: "Write topics to object storage (S3 or a directory) as JSON lines, Parquet or Avro, exactly once",
		Long: `Read every topic whose whole name matches --topics (Go regexp syntax; "__"
internal topics never, nor topics whose name starts with ".", whose objects
would be hidden files) with consumer group --group, and write its records to
--to as files of --format, until SIGTERM or Ctrl-C. Several sinks with the
same --group share the partitions.

Where records go: the object (or file) of a record is

  <topic>/<--partition-by path>/<topic>+<partition>+<first offset>+<last offset><ext>

with 20-digit offsets. --partition-by is a template of directories:
  {{year}} {{month}} {{day}} {{hour}} {{minute}}  the record's timestamp, UTC
  {{date}}                                        YYYY-MM-DD
  {{topic}} {{partition}}
  {{field:NAME}}  the top-level field NAME of a JSON object value (a string
                  without its quotes); __missing__ when there is none
Characters other than letters, digits and ._=- become _, so a field's value
can never name a path outside --to.

When a file is cut: a partition's files are closed together, when one of
them reaches --roll-size, when its oldest record was read --roll-time ago,
or early, largest partition first, when the files held in memory pass
--max-buffered-bytes.

Exactly once: a record is in exactly one object, even across kill -9, a
store that fails, and group rebalances. Before uploading a cut, the sink
commits its group offset where it was, with metadata naming where the cut
ends; it commits past the records only once every object of the cut is
stored. A restarted sink finds that metadata and cuts the same records at
the same offsets again, which rewrites the same objects under the same names.
Uploads are atomic: a directory gets a temporary file, fsynced and renamed;
S3 one PUT (a multipart upload above 16 MiB), visible once complete. A failing store is retried
with backoff while consumption waits: nothing is dropped. Roll settings may
change between runs; --format and --partition-by may not while a cut is
pending (after a crash), or its objects are written again under other names.

Formats: jsonl (one {"topic","partition","offset","timestamp","key","value",
"headers"} object per line; JSON values as they are, Avro values decoded);
parquet (columns topic, partition, offset, timestamp, key, headers, value:
Avro values as typed columns, JSON values a JSON column, other bytes binary);
avro (container files of an envelope record holding the metadata and the
value with its writer schema). --registry is the schema registry whose wire
format (magic byte, schema id) the values are in. A file holds one schema: a
record of another starts the next file. A registry that does not answer is
waited for (consumption waits too); a value that never decodes with its
schema stops the sink with an error naming its offset, as Kafka Connect does
by default: nothing is skipped.

Object storage: s3://bucket/prefix of AWS S3 or an S3-compatible store
(--endpoint http://host:port, path-style; --region), with credentials from
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the shared credentials file, or
the instance's role. file://DIR is a local directory.

With --listen, /metrics serves sluice_sink_records_total and
sluice_sink_bytes_total per topic, sluice_sink_objects_total,
sluice_sink_upload_errors_total, sluice_sink_lag_records per partition (high
watermark minus the committed offset), sluice_sink_buffered_bytes and
sluice_sink_last_flush_timestamp_seconds.

With --audit, every record is counted, per topic and minute of its timestamp,
once the object holding it is stored and its offset committed (stage sink),
and the counts go every 5 s to --audit-topic on --audit-brokers (default: the
cluster read), for ` + "`sluice audit report`" + ` to compare with the collector's and
the mirror's.`,
		Example: `  # hourly directories of JSON lines in a bucket of a local MinIO
  sluice sink --brokers kafka:9092 --topics 'orders|payments\..*' \
    --to s3://lake/raw --endpoint http://127.0.0.1:9000 \
    --format jsonl --partition-by 'dt={{date}}/hour={{hour}}' --listen 127.0.0.1:9647

  # Parquet files per country, at most 128 MiB or 10 minutes each, in a directory
  sluice sink --topics events --to file:///data/events --format parquet \
    --partition-by 'country={{field:country}}/dt={{date}}' --roll-size 128MiB --roll-time 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			return Run(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	clientopts.AddFlags(fs, &o.Common)
	fs.StringVar(&o.Topics, "topics", "", `regexp that a topic's whole name matches ("orders|payments\..*"; ".*" for all)`)
	fs.StringVar(&o.Group, "group", sink.DefaultGroup, "consumer group of the sink; its committed offsets say what is stored")
	fs.StringVar(&o.InstanceID, "instance-id", "", "static group membership: a restarted sink with the same id takes its partitions back at once")
	fs.StringVar(&o.To, "to", "", "where objects go: s3://bucket/prefix or file://DIR")
	fs.StringVar(&o.Format, "format", "jsonl", "file format: "+strings.Join(format.Names, ", "))
	fs.StringVar(&o.PartitionBy, "partition-by", "", `directory template below each topic's, e.g. 'dt={{date}}/hour={{hour}}' (see above)`)
	fs.StringVar(&o.RollSize, "roll-size", "64MiB", "cut a partition's files when one reaches this size")
	fs.DurationVar(&o.RollTime, "roll-time", sink.DefaultRollTime, "cut a partition's files when their oldest record was read this long ago")
	fs.StringVar(&o.MaxBufferedBytes, "max-buffered-bytes", "256MiB", "encoded bytes held in memory before the largest partition is cut early")
	fs.StringVar(&o.Endpoint, "endpoint", firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
		"S3-compatible store for s3:// locations, http://host:port or host (https); empty is AWS S3 (env AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)")
	fs.StringVar(&o.Region, "region", firstEnv("AWS_REGION", "AWS_DEFAULT_REGION"),
		"region of the bucket; empty asks AWS, or us-east-1 with --endpoint (env AWS_REGION, AWS_DEFAULT_REGION)")
	fs.StringVar(&o.Registry, "registry", "", "schema registry URL, for values in its wire format")
	fs.BoolVar(&o.Audit, "audit", false, "count stored records for `sluice audit report` (stage sink)")
	fs.StringVar(&o.AuditTopic, "audit-topic", audit.DefaultCountsTopic, "with --audit, the counts topic")
	fs.StringSliceVar(&o.AuditBrokers, "audit-brokers", nil, "with --audit, the cluster of the counts topic (default: --brokers)")
	fs.DurationVar(&o.SessionTimeout, "session-timeout", 45*time.Second, "session timeout in the group: how long a crashed sink's partitions wait for another")
	fs.DurationVar(&o.StopTimeout, "stop-timeout", sink.DefaultStopTimeout, "on SIGTERM, how long to spend uploading what is buffered (what is left is read again by the next run)")
	fs.StringVar(&o.Listen, "listen", "", "host:port to serve /metrics on (none by default)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// ParseBytes reads a size: a number with an optional unit KiB, MiB, GiB
// (powers of 1024), KB, MB, GB (powers of 1000) or B.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number with an optional unit (64MiB, 500KB, 1GiB)", s)
	}
	return n * mult, nil
}

// Run runs the sink until ctx is done.
func Run(ctx context.Context, o Options) error {
	var missing []string
	if o.Topics == "" {
		missing = append(missing, `--topics (a regexp; ".*" for all topics)`)
	}
	if o.To == "" {
		missing = append(missing, "--to (s3://bucket/prefix or file://DIR)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("sink: give %s; see `sluice sink --help`", strings.Join(missing, ", "))
	}
	rollBytes, err := ParseBytes(o.RollSize)
	if err != nil {
		return fmt.Errorf("--roll-size: %w", err)
	}
	maxBuffered, err := ParseBytes(o.MaxBufferedBytes)
	if err != nil {
		return fmt.Errorf("--max-buffered-bytes: %w", err)
	}
	if o.RollTime <= 0 {
		return fmt.Errorf("--roll-time %s: want a positive duration", o.RollTime)
	}
	tmpl, err := sink.ParseTemplate(o.PartitionBy)
	if err != nil {
		return err
	}
	f, err := format.New(o.Format, format.Options{Registry: o.Registry})
	if err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	log, err := clientopts.NewLogger(o.LogLevel, o.Stderr())
	if err != nil {
		return err
	}
	store, err := sink.OpenStore(ctx, o.To, backup.S3Config{Endpoint: o.Endpoint, Region: o.Region})
	if err != nil {
		return err
	}
	brokers := seeds(o.Brokers)
	var counter *audit.Counter
	if o.Audit {
		ab := o.AuditBrokers
		if len(ab) == 0 {
			ab = brokers
		}
		counter, err = audit.DialCounter(ctx, audit.StageSink, o.AuditTopic, ab, "sluice-sink-audit", o.Wait(), log)
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), o.Wait())
			defer cancel()
			if err := counter.Close(cctx); err != nil {
				log.Warn("audit counts", "err", err)
			}
		}()
	}
	s, err := sink.New(sink.Options{Brokers: brokers, Topics: o.Topics, Group: o.Group, InstanceID: o.InstanceID,
		Store: store, Format: f, PartitionBy: tmpl, RollBytes: rollBytes, RollTime: o.RollTime, MaxBufferedBytes: maxBuffered,
		SessionTimeout: o.SessionTimeout, Timeout: o.Wait(), StopTimeout: o.StopTimeout, Logger: log, Audit: counter})
	if err != nil {
		return err
	}
	metricsAddr := ""
	if o.Listen != "" {
		addr, stop, err := clientopts.ServeMetrics("sink", o.Listen, s.Registry())
		if err != nil {
			return err
		}
		defer stop()
		metricsAddr = addr
	}
	log.Info("sinking", "brokers", strings.Join(brokers, ","), "topics", o.Topics, "group", o.Group, "to", store.String(),
		"format", f.Name(), "partition_by", o.PartitionBy, "roll_size", rollBytes, "roll_time", o.RollTime, "metrics", metricsAddr)
	if o.Started != nil {
		o.Started(metricsAddr)
	}
	err = s.Run(ctx)
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// seeds splits comma-separated --brokers values.
func seeds(brokers []string) []string {
	var out []string
	for _, b := range brokers {
		out = append(out, clientopts.SplitList(b)...)
	}
	if len(out) == 0 {
		out = []string{clientopts.DefaultBrokers}
	}
	return out
}
