// Package produce is `sluice produce`: lines, delimited parts or
// format-described records of stdin (or of files) become records, as kcat -P
// and rpk topic produce do.
package produce

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// Options are the flags of `sluice produce`.
type Options struct {
	clientopts.Common
	Topic           string
	Files           []string // FILE arguments: each one record, or with LineFiles the one file read as stdin
	LineFiles       bool     // -l
	Delimiter       string   // between records, with escapes; "": a newline
	KeyDelimiter    string   // "": no keys
	Format          string   // rpk's -f; "": Delimiter and KeyDelimiter
	Headers         []string // k=v added to every record
	Compression     string   // none, gzip, snappy, lz4, zstd
	Acks            string   // all, 1, 0
	Partition       int32    // -1: kgo's partitioner (sticky, or by key hash)
	MaxMessageBytes int32    // the largest record batch; 0: the topic's max.message.bytes
}

// Command returns `sluice produce`.
func Command() *cobra.Command {
	o := Options{}
	cmd := &cobra.Command{
		Use:   "produce TOPIC [FILE...]",
		Short: "Produce each line of stdin (or delimited part, or formatted record) as a record",
		Long: `Read stdin and produce each line (without its newline) as one record to TOPIC,
as it is read. At the end of input every record is flushed and a summary goes
to stderr. The topic must exist: it is never created.

--delimiter (-D) splits the input at another string than a newline, and
--key-delimiter (-K) splits each record into key and value at the first
occurrence of its string (a record without it has no key), as kcat's -D and
-K do; both understand \n, \r, \t, \\ and \xNN.

FILE arguments are read instead of stdin, as kcat -P does: each file is one
record, its whole content the value; with -l the one file given is read as
stdin would be, split by the delimiter (or --format).

` + formatHelp + `

Records with a key go to the partition of the key's hash, others to a sticky
partition, unless --partition (or %p) picks one.

A record batch is at most the topic's max.message.bytes (read from the broker)
or --max-message-bytes: records up to it are sent whatever the client's own
default (1 MB), and a record larger is refused before anything is sent.`,
		Example: `  echo hello | sluice produce demo
  sluice produce orders --key-delimiter : < orders.txt        # "key:value" lines
  printf 'k1=v1\nk2=v2\n' | sluice produce demo --key-delimiter = --headers source=cli,env=dev
  sluice produce demo --compression zstd --acks 1 --partition 0 < data.txt
  printf 'a\x00b\x00' | sluice produce demo -D '\x00'                  # NUL-separated records
  sluice produce images photo1.jpg photo2.jpg                         # each file one record
  sluice produce demo -l events.txt                                   # each line of the file
  sluice produce demo -f '%k %v\n' < pairs.txt                        # rpk's format
  sluice produce demo -f '%K{big32}%k%V{big32}%v' < framed.bin        # length-prefixed binary
  sluice produce demo -f '%k %H%h{ %k=%v;}|%v\n' <<< 'key 2 a=1; b=2;|value'
  sluice produce big --max-message-bytes 10485760 < big.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic, o.Files = args[0], args[1:]
			return Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	f.StringVarP(&o.Delimiter, "delimiter", "D", "", "split the input into records at this string instead of a newline (escapes: \\n \\t \\xNN ...)")
	f.StringVarP(&o.KeyDelimiter, "key-delimiter", "K", "", "split each record into key and value at the first occurrence of this string")
	f.StringVarP(&o.Format, "format", "f", "", "read records by this format (rpk's: %k %v %t %p %h{...}, see above) instead of lines")
	f.BoolVarP(&o.LineFiles, "line-files", "l", false, "read the one FILE given as stdin would be, into many records (kcat -l)")
	f.StringSliceVarP(&o.Headers, "headers", "H", nil, "headers k=v,... added to every record")
	f.StringVarP(&o.Compression, "compression", "z", "none", "batch compression: none, gzip, snappy, lz4 or zstd")
	f.StringVar(&o.Acks, "acks", "all", "acknowledgements to wait for: all, 1 or 0 (1 and 0 disable idempotence)")
	f.Int32VarP(&o.Partition, "partition", "p", -1, "produce every record to this partition; -1: by the key's hash, else a sticky partition")
	f.Int32Var(&o.MaxMessageBytes, "max-message-bytes", 0, "the largest record batch to send; 0: the topic's max.message.bytes")
	return cmd
}

var codecs = map[string]kgo.CompressionCodec{
	"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
	"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
}

const (
	// defaultBatchBytes is the limit when the topic's max.message.bytes
	// cannot be read: kgo's default, Kafka's max.message.bytes before 4.0.
	defaultBatchBytes = 1000012
	// minBatchBytes and maxBatchBytes are the bounds kgo accepts for a
	// record batch.
	minBatchBytes = 512
	maxBatchBytes = 1 << 30
	// requestOverheadBytes is room for a produce request's headers beyond
	// its largest batch, when that batch needs a write larger than kgo's
	// default bound (100 MiB, Kafka's socket.request.max.bytes).
	requestOverheadBytes = 1 << 20
	defaultWriteBytes    = 100 << 20
)

// Run produces the input to the topic.
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
	if o.MaxMessageBytes != 0 && (o.MaxMessageBytes < minBatchBytes || o.MaxMessageBytes > maxBatchBytes) {
		return fmt.Errorf("--max-message-bytes %d: give %d to %d (0: the topic's max.message.bytes)", o.MaxMessageBytes, minBatchBytes, maxBatchBytes)
	}
	in, err := o.input()
	if err != nil {
		return err
	}
	if o.Partition >= 0 || in.format != nil && in.format.partition {
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

	probe, md, err := o.Connect(ctx, []string{o.Topic})
	if err != nil {
		return err
	}
	parts, err := clientopts.Partitions(md, o.Topic)
	if err != nil {
		probe.Close()
		return err
	}
	if o.Partition >= 0 && !slices.Contains(parts, o.Partition) {
		probe.Close()
		return fmt.Errorf("--partition %d: topic %s has partitions 0 to %d", o.Partition, o.Topic, len(parts)-1)
	}
	tt := &topicTable{o: o, known: map[string]topicInfo{}}
	def := tt.describe(ctx, kadm.NewClient(probe), o.Topic, len(parts))
	probe.Close()
	limit := int(def.batchBytes)
	opts = append(opts, kgo.ProducerBatchMaxBytesFn(tt.batchBytes),
		kgo.BrokerMaxWriteBytes(int32(max(defaultWriteBytes, min(limit+requestOverheadBytes, maxBatchBytes)))))
	cl, err := o.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	src, closeInput, err := in.open(o, limit)
	if err != nil {
		return err
	}
	defer closeInput()

	p := &producer{cl: cl}
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	recs := make(chan *kgo.Record, 256)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go readRecords(src, recs, readErr, stop)

	n := 0
	var runErr error
loop:
	for {
		select {
		case <-pctx.Done():
			runErr = context.Cause(pctx)
			break loop
		case r, ok := <-recs:
			if !ok {
				if err := <-readErr; err != nil {
					runErr = fmt.Errorf("input record %d: %w", n+1, tt.explain(err, o.Topic))
				}
				break loop
			}
			n++
			if err := tt.check(pctx, adm, r); err != nil {
				runErr = fmt.Errorf("input record %d: %w", n, err)
				break loop
			}
			if r.Partition < 0 {
				r.Partition = o.Partition
			}
			if len(headers) > 0 {
				r.Headers = append(r.Headers, headers...)
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
		runErr = tt.explain(err, p.failedTopic())
	}
	recs2, bytes := p.records.Load(), p.bytes.Load()
	fmt.Fprintf(o.Stderr(), "produced %s (%s of keys and values) to %s\n", clientopts.Count(recs2, "record", "records"),
		clientopts.Count(bytes, "byte", "bytes"), strings.Join(tt.used(), ", "))
	if runErr != nil {
		if errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
			return errors.New("interrupted")
		}
		return fmt.Errorf("produce to %s: %w", o.Topic, runErr)
	}
	return nil
}

// input is where the records come from, checked before connecting.
type input struct {
	format          *format
	delim, keyDelim []byte
}

func (o Options) input() (input, error) {
	var in input
	switch {
	case o.LineFiles && len(o.Files) != 1:
		return input{}, fmt.Errorf("-l reads one FILE (as kcat's), %d given", len(o.Files))
	case len(o.Files) > 0 && !o.LineFiles && (o.Format != "" || o.Delimiter != "" || o.KeyDelimiter != ""):
		return input{}, errors.New("each FILE is one record, whole: --format, --delimiter and --key-delimiter do not apply (-l reads a file by them)")
	case o.Format != "" && (o.Delimiter != "" || o.KeyDelimiter != ""):
		return input{}, errors.New("--format holds the delimiters: give either --format or --delimiter/--key-delimiter")
	}
	if o.Format != "" {
		f, err := parseFormat(o.Format)
		if err != nil {
			return input{}, err
		}
		in.format = f
		return in, nil
	}
	in.delim = []byte{'\n'}
	if o.Delimiter != "" {
		d, err := Unescape(o.Delimiter)
		if err != nil {
			return input{}, fmt.Errorf("--delimiter %q: %w", o.Delimiter, err)
		}
		in.delim = d
	}
	if o.KeyDelimiter != "" {
		d, err := Unescape(o.KeyDelimiter)
		if err != nil {
			return input{}, fmt.Errorf("--key-delimiter %q: %w", o.KeyDelimiter, err)
		}
		in.keyDelim = d
	}
	return in, nil
}

// open starts reading: stdin, the -l file, or the whole files. limit bounds
// a record.
func (in input) open(o Options, limit int) (source, func(), error) {
	if len(o.Files) > 0 && !o.LineFiles {
		return &wholeFiles{paths: o.Files, limit: limit}, func() {}, nil
	}
	r, closeIt := o.Stdin(), func() {}
	if o.LineFiles {
		f, err := os.Open(o.Files[0])
		if err != nil {
			return nil, nil, fmt.Errorf("-l: %w", err)
		}
		r, closeIt = f, func() { f.Close() }
	}
	br := bufio.NewReaderSize(r, inputBufferBytes)
	if in.format != nil {
		return byFormat{&formatReader{f: in.format, br: br, limit: limit}}, closeIt, nil
	}
	return &delimited{br: br, delim: in.delim, keyDelim: in.keyDelim, limit: limit}, closeIt, nil
}

// readRecords sends each record of src until its end, then closes recs
// and sends the read error (nil at the end) on errc.
func readRecords(src source, recs chan<- *kgo.Record, errc chan<- error, stop <-chan struct{}) {
	defer close(recs)
	for {
		r, err := src.next()
		if err == io.EOF {
			errc <- nil
			return
		}
		if err != nil {
			errc <- err
			return
		}
		select {
		case recs <- r:
		case <-stop:
			errc <- nil
			return
		}
	}
}

// topicInfo is what produce knows of a topic.
type topicInfo struct {
	partitions int
	batchBytes int32  // the largest batch to build
	limitFrom  string // where batchBytes comes from, for errors
}

// topicTable holds the topics records go to (TOPIC, and those a --format
// reads with %t), looked up once each. kgo asks it for batch sizes from its
// own goroutines.
type topicTable struct {
	o     Options
	mu    sync.Mutex
	known map[string]topicInfo
	order []string
}

// describe records topic, with its partitions, and reads its
// max.message.bytes unless --max-message-bytes is given (on failure it
// falls back to kgo's default, 1000012).
func (t *topicTable) describe(ctx context.Context, adm *kadm.Client, topic string, partitions int) topicInfo {
	ti := topicInfo{partitions: partitions, batchBytes: t.o.MaxMessageBytes, limitFrom: "--max-message-bytes"}
	if ti.batchBytes == 0 {
		ti.batchBytes, ti.limitFrom = defaultBatchBytes, "the client's default"
		ctx, cancel := context.WithTimeout(ctx, t.o.Wait())
		defer cancel()
		if rcs, err := adm.DescribeTopicConfigs(ctx, topic); err == nil {
			if rc, err := rcs.On(topic, nil); err == nil && rc.Err == nil {
				for _, c := range rc.Configs {
					if c.Key != "max.message.bytes" || c.Value == nil {
						continue
					}
					if v, err := strconv.ParseInt(*c.Value, 10, 32); err == nil {
						ti.batchBytes = int32(min(max(v, minBatchBytes), maxBatchBytes))
						ti.limitFrom = "max.message.bytes"
					}
				}
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.known[topic] = ti
	t.order = append(t.order, topic)
	return ti
}

// batchBytes is kgo's ProducerBatchMaxBytesFn: a topic's limit ("" is the
// default topic).
func (t *topicTable) batchBytes(topic string) int32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ti, ok := t.known[topic]; ok {
		return ti.batchBytes
	}
	return t.known[t.o.Topic].batchBytes
}

// check looks up a record's topic the first time it is named, and checks
// its partition.
func (t *topicTable) check(ctx context.Context, adm *kadm.Client, r *kgo.Record) error {
	topic := r.Topic
	if topic == "" {
		topic = t.o.Topic
	}
	t.mu.Lock()
	ti, ok := t.known[topic]
	t.mu.Unlock()
	if !ok {
		lctx, cancel := context.WithTimeout(ctx, t.o.Wait())
		tds, err := adm.ListTopics(lctx, topic)
		cancel()
		if err != nil {
			return fmt.Errorf("topic %s: %w", topic, err)
		}
		td, ok := tds[topic]
		if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			return clientopts.MissingTopic(topic)
		}
		if td.Err != nil {
			return fmt.Errorf("topic %s: %w", topic, td.Err)
		}
		ti = t.describe(ctx, adm, topic, len(td.Partitions))
	}
	p := r.Partition
	if p < 0 {
		p = t.o.Partition
	}
	if p >= int32(ti.partitions) {
		return fmt.Errorf("partition %d: topic %s has partitions 0 to %d", p, topic, ti.partitions-1)
	}
	return nil
}

// used lists the topics records went to, TOPIC first.
func (t *topicTable) used() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.order)
}

// explain adds to a record too large what its limit is and how to raise
// it.
func (t *topicTable) explain(err error, topic string) error {
	if !errors.Is(err, errRecordTooLarge) && !errors.Is(err, kerr.MessageTooLarge) {
		return err
	}
	if topic == "" {
		topic = t.o.Topic
	}
	t.mu.Lock()
	ti, ok := t.known[topic]
	t.mu.Unlock()
	if !ok {
		return err
	}
	raise := fmt.Sprintf("`sluice config alter topic %s --set max.message.bytes=N`", topic)
	switch {
	case ti.limitFrom == "--max-message-bytes" && errors.Is(err, kerr.MessageTooLarge):
		return fmt.Errorf("%w; the broker refused it under topic %s's max.message.bytes: raise that with %s", err, topic, raise)
	case ti.limitFrom == "--max-message-bytes":
		return fmt.Errorf("%w: over --max-message-bytes (%d)", err, ti.batchBytes)
	case ti.limitFrom == "the client's default":
		return fmt.Errorf("%w: over %d bytes (the topic's max.message.bytes could not be read): give --max-message-bytes", err, ti.batchBytes)
	}
	return fmt.Errorf("%w: over topic %s's max.message.bytes (%d): raise it with %s", err, topic, ti.batchBytes, raise)
}

// producer counts delivered records and keeps the first failure.
type producer struct {
	cl         *kgo.Client
	wg         sync.WaitGroup
	records    atomic.Int64
	bytes      atomic.Int64
	mu         sync.Mutex
	first      error
	firstTopic string
}

func (p *producer) produce(ctx context.Context, r *kgo.Record, fail context.CancelCauseFunc) {
	p.wg.Add(1)
	p.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
		defer p.wg.Done()
		if err != nil {
			p.mu.Lock()
			if p.first == nil {
				p.first, p.firstTopic = err, r.Topic
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

// failedTopic is the topic of the first record that failed.
func (p *producer) failedTopic() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstTopic
}
