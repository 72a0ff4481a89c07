// Package clientopts holds what every client command of the sluice CLI
// shares: the --brokers, --timeout and -o flags, building a franz-go client
// that fails fast when no broker answers, topic lookups, and the table and
// JSON printers.
package clientopts

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
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
	var (
		last     error
		lastAddr string
	)
	seeds := c.seeds()
	for i, b := range cl.SeedBrokers() { // in the order of the seeds
		resp, err := b.Request(ctx, req)
		if err == nil {
			return resp.(*kmsg.MetadataResponse), nil
		}
		last = err
		if i < len(seeds) {
			lastAddr = seeds[i]
			if _, _, err := net.SplitHostPort(lastAddr); err != nil {
				lastAddr = net.JoinHostPort(lastAddr, "9092") // kgo's default port
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	if errors.Is(last, context.DeadlineExceeded) {
		last = fmt.Errorf("no answer within %s", c.Wait())
	} else if errors.Is(last, context.Canceled) {
		return nil, last
	} else if closedEarly(last) && lastAddr != "" {
		// kgo guesses "is TLS missing?" for any connection closed before
		// its first answer; look at what the broker does instead.
		switch diagnose(ctx, lastAddr) {
		case closedAtAccept:
			return nil, fmt.Errorf("cannot reach broker at %s: the broker refused the connection (connection limit?): "+
				"it closed the connection right after accepting it, before any answer; retry later, or raise its limit", lastAddr)
		case speaksTLS:
			return nil, fmt.Errorf("cannot reach broker at %s: the broker expects TLS, and the sluice CLI speaks only plaintext; "+
				"give the address of a plaintext listener", lastAddr)
		}
	}
	return nil, fmt.Errorf("cannot reach broker at %s: %v; is `sluice serve` running?", strings.Join(c.seeds(), ","), last)
}

// closedEarly is whether err is a connection closed by the broker before it
// answered the client's first request.
func closedEarly(err error) bool {
	if _, ok := errors.AsType[*kgo.ErrFirstReadEOF](err); ok {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// What diagnose found at a broker's address.
const (
	unknownBehaviour = iota
	closedAtAccept   // the connection was closed before anything was sent on it
	speaksTLS        // the listener completed (or refused with an alert) a TLS handshake
)

const (
	// acceptCloseWait is how long diagnose waits, saying nothing, for the
	// broker to close a new connection. A broker at its connection limit
	// closes it at once; any other waits for the client's first bytes.
	acceptCloseWait = 500 * time.Millisecond
	// tlsProbeWait bounds the TLS handshake diagnose tries.
	tlsProbeWait = 2 * time.Second
)

// diagnose opens two connections to addr to tell why the broker closed the
// client's: on the first it sends nothing and waits acceptCloseWait for the
// broker to close it; if the broker waits instead, it tries a TLS handshake
// on the second. Each connection is closed before it returns.
func diagnose(ctx context.Context, addr string) int {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return unknownBehaviour
	}
	conn.SetReadDeadline(time.Now().Add(acceptCloseWait))
	var one [1]byte
	_, err = conn.Read(one[:])
	conn.Close()
	if err == nil {
		return unknownBehaviour // it talks first: not a Kafka listener
	}
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		return closedAtAccept // EOF or a reset, with nothing sent
	}
	hctx, cancel := context.WithTimeout(ctx, tlsProbeWait)
	defer cancel()
	conn, err = d.DialContext(hctx, "tcp", addr)
	if err != nil {
		return unknownBehaviour
	}
	host, _, _ := net.SplitHostPort(addr)
	tc := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true}) // only to see whether it speaks TLS
	err = tc.HandshakeContext(hctx)
	tc.Close()
	if _, alert := errors.AsType[tls.AlertError](err); err == nil || alert {
		return speaksTLS
	}
	return unknownBehaviour
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

// KafkaErr says a Kafka error once: its code's name with the broker's
// message when the broker sent one (kerr's generic description otherwise);
// errors.Is still finds the kerr error. Nil if err is nil.
func KafkaErr(err error, msg string) error {
	if err == nil || msg == "" {
		return err
	}
	if ke, ok := err.(*kerr.Error); ok {
		return &kafkaError{err: ke, msg: msg}
	}
	if strings.Contains(err.Error(), msg) {
		return err
	}
	return fmt.Errorf("%w: %s", err, msg)
}

// kafkaError is a Kafka error code with the broker's message.
type kafkaError struct {
	err *kerr.Error
	msg string
}

func (e *kafkaError) Error() string { return e.err.Message + ": " + e.msg }
func (e *kafkaError) Unwrap() error { return e.err }

// ParseKV parses key=value.
func ParseKV(flag, kv string) (string, string, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("%s %q: write it as key=value", flag, kv)
	}
	return k, v, nil
}

// Count says n things: "1 partition", "2 partitions".
func Count[N ~int | ~int32 | ~int64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// TopicID prints a topic id as Kafka's tools do (Uuid.toString): URL-safe
// base64 without padding, 22 characters.
func TopicID(id [16]byte) string {
	return base64.RawURLEncoding.EncodeToString(id[:])
}
