// Package produce is `sluice produce`: lines from stdin become records, as
// kcat -P and rpk topic produce do.
package produce

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// Options are the flags of `sluice produce`.
type Options struct {
	clientopts.Common
	Topic        string
	KeyDelimiter string   // "": no keys
	Headers      []string // k=v added to every record
	Compression  string   // none, gzip, snappy, lz4, zstd
	Acks         string   // all, 1, 0
	Partition    int32    // -1: kgo's partitioner (sticky, or by key hash)
}

// Command returns `sluice produce`.
func Command() *cobra.Command {
	o := Options{}
	cmd := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Produce each line of stdin as a record",
		Long: `Read stdin line by line and produce each line (without its newline) as one
record to TOPIC, as it is read. At the end of input every record is flushed and
a summary goes to stderr. The topic must exist: it is never created.

Records with a key go to the partition of the key's hash, others to a sticky
partition, unless --partition picks one.`,
		Example: `  echo hello | sluice produce demo
  sluice produce orders --key-delimiter : < orders.txt        # "key:value" lines
  printf 'k1=v1\nk2=v2\n' | sluice produce demo --key-delimiter = --headers source=cli,env=dev
  sluice produce demo --compression zstd --acks 1 --partition 0 < data.txt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic = args[0]
			return Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	f.StringVarP(&o.KeyDelimiter, "key-delimiter", "K", "", "split each line into key and value at the first occurrence of this string")
	f.StringSliceVarP(&o.Headers, "headers", "H", nil, "headers k=v,... added to every record")
	f.StringVarP(&o.Compression, "compression", "z", "none", "batch compression: none, gzip, snappy, lz4 or zstd")
	f.StringVar(&o.Acks, "acks", "all", "acknowledgements to wait for: all, 1 or 0 (1 and 0 disable idempotence)")
	f.Int32VarP(&o.Partition, "partition", "p", -1, "produce every record to this partition; -1: by the key's hash, else a sticky partition")
	return cmd
}

var codecs = map[string]kgo.CompressionCodec{
	"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
	"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
}

// Run produces stdin to the topic.
func Run(ctx context.Context, o Options) error {
	opts := []kgo.Opt{kgo.DefaultProduceTopic(o.Topic), kgo.RecordDeliveryTimeout(o.Wait())}
	comp := o.Compression
	if comp == "" {
		comp = "none"
	}
	codec, ok := codecs[comp]
	if !ok {
		return fmt.Errorf("--compression %q: use none, gzip, snappy, lz4 or zstd", o.Compression)
	}
	opts = append(opts, kgo.ProducerBatchCompression(codec))
	switch o.Acks {
	case "all", "-1", "":
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "1":
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	case "0":
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	default:
		return fmt.Errorf("--acks %q: use all, 1 or 0", o.Acks)
	}
	if o.Partition < -1 {
		return fmt.Errorf("--partition %d: partitions are numbered from 0", o.Partition)
	}
	if o.Partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	var headers []kgo.RecordHeader
	for _, h := range o.Headers {
		k, v, err := clientopts.ParseKV("--headers", h)
		if err != nil {
			return err
		}
		headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}

	cl, md, err := o.Connect(ctx, []string{o.Topic}, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	parts, err := clientopts.Partitions(md, o.Topic)
	if err != nil {
		return err
	}
	if o.Partition >= 0 && !slices.Contains(parts, o.Partition) {
		return fmt.Errorf("--partition %d: topic %s has partitions 0 to %d", o.Partition, o.Topic, len(parts)-1)
	}

	p := &producer{cl: cl}
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lines := make(chan []byte, 256)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go readLines(o.Stdin(), lines, readErr, stop)

	delim := []byte(o.KeyDelimiter)
	var runErr error
loop:
	for {
		select {
		case <-pctx.Done():
			runErr = context.Cause(pctx)
			break loop
		case line, ok := <-lines:
			if !ok {
				if err := <-readErr; err != nil {
					runErr = fmt.Errorf("read stdin: %w", err)
				}
				break loop
			}
			r := &kgo.Record{Value: line, Partition: o.Partition}
			if len(delim) > 0 {
				if i := bytes.Index(line, delim); i >= 0 {
					r.Key, r.Value = line[:i], line[i+len(delim):]
				}
			}
			if len(headers) > 0 {
				r.Headers = slices.Clone(headers)
			}
			p.produce(pctx, r, cancel)
		}
	}

	// Flush what was handed to the client; if the run was cut short, the
	// flush is bounded so that a dead broker does not hold us.
	fctx := ctx
	if runErr != nil || ctx.Err() != nil {
		var fcancel context.CancelFunc
		fctx, fcancel = context.WithTimeout(context.WithoutCancel(ctx), o.Wait())
		defer fcancel()
	}
	if err := cl.Flush(fctx); err != nil && runErr == nil {
		runErr = err
	}
	p.wg.Wait()
	if err := p.err(); err != nil {
		runErr = err
	}
	recs, n := p.records.Load(), p.bytes.Load()
	fmt.Fprintf(o.Stderr(), "produced %d records (%d bytes of keys and values) to %s\n", recs, n, o.Topic)
	if runErr != nil {
		if errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
			return errors.New("interrupted")
		}
		return fmt.Errorf("produce to %s: %w", o.Topic, runErr)
	}
	return nil
}

// producer counts delivered records and keeps the first failure.
type producer struct {
	cl      *kgo.Client
	wg      sync.WaitGroup
	records atomic.Int64
	bytes   atomic.Int64
	mu      sync.Mutex
	first   error
}

func (p *producer) produce(ctx context.Context, r *kgo.Record, fail context.CancelCauseFunc) {
	p.wg.Add(1)
	p.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
		defer p.wg.Done()
		if err != nil {
			p.mu.Lock()
			if p.first == nil {
				p.first = err
			}
			p.mu.Unlock()
			fail(err)
			return
		}
		p.records.Add(1)
		p.bytes.Add(int64(len(r.Key) + len(r.Value)))
	})
}

func (p *producer) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first
}

// readLines sends each line of r, without its "\n", until EOF (a last line
// without a newline is sent too), then closes lines and sends the read
// error (nil at EOF) on errc.
func readLines(r io.Reader, lines chan<- []byte, errc chan<- error, stop <-chan struct{}) {
	defer close(lines)
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		} else if len(line) == 0 && err != nil {
			line = nil
		}
		if line != nil {
			select {
			case lines <- line:
			case <-stop:
				errc <- nil
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			errc <- err
			return
		}
	}
}
