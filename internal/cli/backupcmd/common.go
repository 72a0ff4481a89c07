// Package backupcmd is `sluice backup` and `sluice restore`: a topic's
// records to a back-up (internal/backup) and back, into a topic of any name
// on any cluster.
package backupcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/term"

	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// topicConfigs are a topic's configs as DescribeConfigs reports them.
type topicConfigs struct {
	effective  map[string]string // every config with a value
	nonDefault map[string]string // those not at their default
	sources    map[string]string // where each non-default one comes from
}

func describeConfigs(ctx context.Context, adm *kadm.Client, topic string) (*topicConfigs, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("configs of %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return nil, fmt.Errorf("configs of %s: %w", topic, clientopts.KafkaErr(err, rc.ErrMessage))
	}
	tc := &topicConfigs{effective: map[string]string{}, nonDefault: map[string]string{}, sources: map[string]string{}}
	for _, c := range rc.Configs {
		if c.Value == nil || c.Sensitive {
			continue
		}
		tc.effective[c.Key] = *c.Value
		if c.Source != kmsg.ConfigSourceDefaultConfig {
			tc.nonDefault[c.Key] = *c.Value
			tc.sources[c.Key] = c.Source.String()
		}
	}
	return tc, nil
}

// topicState says whether topic exists and, if so, its partition count.
func topicState(md *kmsg.MetadataResponse, topic string) (exists bool, partitions int, err error) {
	for _, t := range md.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return false, 0, nil
			}
			return false, 0, fmt.Errorf("topic %s: %w", topic, err)
		}
		return true, len(t.Partitions), nil
	}
	return false, 0, nil
}

// toBackup converts a fetched record.
func toBackup(r *kgo.Record) *backup.Record {
	br := &backup.Record{Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), LogAppendTime: r.Attrs.TimestampType() == 1,
		Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		br.Headers = append(br.Headers, backup.Header{Key: h.Key, Value: h.Value})
	}
	return br
}

// toProduce converts a back-up record into one to produce to partition.
func toProduce(r *backup.Record, topic string, partition int32) *kgo.Record {
	kr := &kgo.Record{Topic: topic, Partition: partition, Key: r.Key, Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)}
	for _, h := range r.Headers {
		kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return kr
}

// progress is a bar on stderr when stderr is a terminal; otherwise it
// does nothing.
type progress struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func newProgress(w io.Writer, total int64, desc string) *progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || total <= 0 {
		return &progress{}
	}
	return &progress{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rec"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)}
}

func (p *progress) add(n int) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Add(n)
}

func (p *progress) done() {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Finish()
	p.bar.Exit()
}

// hasCompact says whether a cleanup.policy contains compact.
func hasCompact(policy string) bool {
	for _, p := range strings.Split(policy, ",") {
		if strings.TrimSpace(p) == "compact" {
			return true
		}
	}
	return false
}

// interrupted turns a context error into a short message.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("interrupted: %w", err)
	}
	return err
}

// s3Help is the part of both commands' help about object storage.
const s3Help = `
Object storage: LOCATION s3://bucket/prefix keeps the back-up's files as
objects prefix/manifest.json and prefix/partition-NNNNN.rec (and
prefix/incr-SSSSSS-... for incremental back-ups) in an existing bucket of
AWS S3 or any S3-compatible store (MinIO, Ceph RGW, versitygw, ...).
--endpoint names a store other than AWS (http://host:port, or a host for
https), addressed path-style; --region is the bucket's region. Credentials
come, in this order, from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
AWS_SESSION_TOKEN) in the environment, the shared credentials file
(~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE, profile AWS_PROFILE or
default), then the instance's IAM role. Each file is a multipart upload that
becomes visible only when complete, so an interrupted back-up has no
manifest and restore refuses it; a file being written holds 16 MiB of memory,
and a partition's file can be up to 156 GiB. Configure the bucket to abort
incomplete multipart uploads after a day, so that interrupted ones do not
keep their parts.`

// S3Flags are --endpoint and --region.
type S3Flags struct {
	Endpoint string
	Region   string
}

// addS3Flags registers --endpoint (env AWS_ENDPOINT_URL_S3, then
// AWS_ENDPOINT_URL) and --region (env AWS_REGION, then AWS_DEFAULT_REGION).
func addS3Flags(fs *pflag.FlagSet, f *S3Flags) {
	fs.StringVar(&f.Endpoint, "endpoint", firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
		"S3-compatible store for s3:// locations, http://host:port or host (https); empty is AWS S3 (env AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)")
	fs.StringVar(&f.Region, "region", firstEnv("AWS_REGION", "AWS_DEFAULT_REGION"),
		"region of the bucket of an s3:// location; empty asks AWS, or us-east-1 with --endpoint (env AWS_REGION, AWS_DEFAULT_REGION)")
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// s3Target opens an s3:// location with the flags.
func s3Target(ctx context.Context, loc string, f S3Flags) (backup.Target, error) {
	return backup.NewS3(ctx, loc, backup.S3Config{Endpoint: f.Endpoint, Region: f.Region})
}
