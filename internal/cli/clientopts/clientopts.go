// Package clientopts holds what every client command of the sluice CLI
// shares: the --brokers, --timeout and -o flags, building a franz-go client
// that fails fast when no broker answers, topic lookups, and the table and
// JSON printers.
package clientopts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	// DefaultBrokers is where `sluice serve` listens with no flags.
	DefaultBrokers = "127.0.0.1:9092"
	// BrokersEnv overrides DefaultBrokers.
	BrokersEnv = "SLUICE_BROKERS"
	// DefaultTimeout bounds the connection check and admin requests.
	DefaultTimeout = 10 * time.Second
	// clientID names the CLI to the broker.
	clientID = "sluice-cli"
)

// Common are the options every client command shares, and its streams.
type Common struct {
	Brokers []string      // seed brokers, host:port
	Timeout time.Duration // connection check, admin requests, record delivery; 0 means DefaultTimeout
	In      io.Reader     // stdin (produce); nil reads nothing
	Out     io.Writer     // stdout; nil discards
	Err     io.Writer     // stderr; nil discards
}

// AddFlags registers --brokers (-b) and --timeout on fs. The brokers default
// to $SLUICE_BROKERS, else 127.0.0.1:9092.
func AddFlags(fs *pflag.FlagSet, c *Common) {
	def := []string{DefaultBrokers}
	if env := strings.TrimSpace(os.Getenv(BrokersEnv)); env != "" {
		def = SplitList(env)
	}
	fs.StringSliceVarP(&c.Brokers, "brokers", "b", def, "comma-separated host:port of brokers to bootstrap from (env "+BrokersEnv+")")
	fs.DurationVar(&c.Timeout, "timeout", DefaultTimeout, "how long to wait for the broker (connection check, admin requests, record delivery)")
}

// AddOutputFlag registers -o/--output (table or json) on fs.
func AddOutputFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVarP(p, "output", "o", "table", "output format: table or json")
}

// SetStreams points c's streams at the command's (stdin, stdout, stderr
// unless redirected by cobra).
func (c *Common) SetStreams(cmd *cobra.Command) {
	c.In, c.Out, c.Err = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
}

// Stdin returns In, or an empty reader.
func (c Common) Stdin() io.Reader {
	if c.In == nil {
		return strings.NewReader("")
	}
	return c.In
}

// Stdout returns Out, or io.Discard.
func (c Common) Stdout() io.Writer {
	if c.Out == nil {
		return io.Discard
	}
	return c.Out
}

// Stderr returns Err, or io.Discard.
func (c Common) Stderr() io.Writer {
	if c.Err == nil {
		return io.Discard
	}
	return c.Err
}

// Wait is the effective timeout.
func (c Common) Wait() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func (c Common) seeds() []string {
	var out []string
	for _, b := range c.Brokers {
		out = append(out, SplitList(b)...)
	}
	if len(out) == 0 {
		out = []string{DefaultBrokers}
	}
	return out
}

// Connect builds a client for the brokers, with opts added, and checks
// within the timeout that a broker answers a metadata request for topics
// (none when topics is empty). The client never creates topics. The caller
// closes the client.
func (c Common) Connect(ctx context.Context, topics []string, opts ...kgo.Opt) (*kgo.Client, *kmsg.MetadataResponse, error) {
	cl, err := c.NewClient(opts...)
	if err != nil {
		return nil, nil, err
	}
	md, err := c.probe(ctx, cl, topics)
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	return cl, md, nil
}

// NewClient builds a client for the brokers with opts added, without
// checking that they answer (Connect does). The client never creates
// topics and gives up on requests after the timeout.
func (c Common) NewClient(opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{
		kgo.SeedBrokers(c.seeds()...),
		kgo.ClientID(clientID),
		kgo.DialTimeout(c.Wait()),
		kgo.RetryTimeout(c.Wait()),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("--brokers %s: %w", strings.Join(c.seeds(), ","), err)
	}
	return cl, nil
}

// Admin is Connect for admin commands.
func (c Common) Admin(ctx context.Context) (*kadm.Client, *kmsg.MetadataResponse, error) {
	cl, md, err := c.Connect(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(c.Wait().Milliseconds()))
	return adm, md, nil
}

// probe asks each seed broker in turn, without retries, for metadata.
func (c Common) probe(ctx context.Context, cl *kgo.Client, topics []string) (*kmsg.MetadataResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Wait())
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{} // empty, not null: no topics
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	req.AllowAutoTopicCreation = false
	var last error
	for _, b := range cl.SeedBrokers() {
		resp, err := b.Request(ctx, req)
		if err == nil {
			return resp.(*kmsg.MetadataResponse), nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	if errors.Is(last, context.DeadlineExceeded) {
		last = fmt.Errorf("no answer within %s", c.Wait())
	} else if errors.Is(last, context.Canceled) {
		return nil, last
	}
	return nil, fmt.Errorf("cannot reach broker at %s: %v; is `sluice serve` running?", strings.Join(c.seeds(), ","), last)
}

// SplitList splits a comma-separated list, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// MissingTopic is the error for a topic that does not exist.
func MissingTopic(topic string) error {
	return fmt.Errorf("topic %s does not exist; create it with `sluice topic create %s`", topic, topic)
}

// Partitions returns the sorted partition numbers of topic in md, or
// MissingTopic.
func Partitions(md *kmsg.MetadataResponse, topic string) ([]int32, error) {
	for _, t := range md.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return nil, MissingTopic(topic)
			}
			return nil, fmt.Errorf("topic %s: %w", topic, err)
		}
		ps := make([]int32, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			ps = append(ps, p.Partition)
		}
		slices.Sort(ps)
		return ps, nil
	}
	return nil, MissingTopic(topic)
}

// KafkaErr joins a Kafka error with the broker's message, if any; nil if
// err is nil.
func KafkaErr(err error, msg string) error {
	if err == nil {
		return nil
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

// ParseKV parses key=value.
func ParseKV(flag, kv string) (string, string, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("%s %q: write it as key=value", flag, kv)
	}
	return k, v, nil
}
