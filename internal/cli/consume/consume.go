// Package consume is `sluice consume`: print a topic's records, as kcat -C
// and rpk topic consume do.
package consume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// Options are the flags of `sluice consume`.
type Options struct {
	clientopts.Common
	Topic         string
	FromBeginning bool
	Offset        string // "": unset; N >= 0 absolute; -N: N before the end
	FromTime      string // RFC 3339 or unix milliseconds
	ExitAtEnd     bool
	Count         int // 0: no limit
	Group         string
	Format        string // text with verbs, or "json"; "": %v
	Partitions    []int32
	// Decode prints keys and values in Confluent's wire format as JSON,
	// their schemas from the registry at SchemaRegistry (decode.go).
	Decode         bool
	SchemaRegistry string
}

// defaultSchemaRegistry is where --decode finds the registry when neither
// --schema-registry nor $SLUICE_SCHEMA_REGISTRY says: sluice serve's.
const defaultSchemaRegistry = "http://127.0.0.1:8081"

// newPrinterFor is newPrinter with the decoder --decode asks for.
func (o Options) newPrinterFor(fm formatter, onPrinted func(*kgo.Record)) (*printer, error) {
	p := newPrinter(o.Stdout(), fm, onPrinted)
	if !o.Decode {
		return p, nil
	}
	url := o.SchemaRegistry
	if url == "" {
		url = os.Getenv("SLUICE_SCHEMA_REGISTRY")
	}
	if url == "" {
		url = defaultSchemaRegistry
	}
	d, err := newDecoder(url, o.Stderr())
	if err != nil {
		return nil, err
	}
	p.dec = d
	return p, nil
}

// Command returns `sluice consume`.
func Command() *cobra.Command {
	o := Options{}
	cmd := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Print a topic's records as they arrive",
		Long: `Print TOPIC's records, one per line, from every partition (or those given with
--partition), starting at the end (new records only) unless --from-beginning,
--offset or --from-time says otherwise. It runs until interrupted, --count
records were printed, or, with --exit-at-end, every partition reached the end
offset it had when the command started.

--format verbs: ` + verbs + `.
Escapes \n, \t, \r and \\ are understood; each record ends with a newline
unless the format already ends with one. --format json prints one JSON object
per record (key and value as strings, null when null, or key_base64 and
value_base64 when they are not UTF-8).

Without --group partitions are read directly and no offsets are committed.
With --group the topic is consumed in a consumer group, which the broker must
support, from the group's committed offsets (where there are none, from where
--from-beginning, --offset or --from-time say, else the end). The offsets of
the records printed (written to stdout) are committed every 5 seconds, before
a rebalance takes partitions away, and when the command exits, whatever ends
it: --count, --exit-at-end, Ctrl-C, or an error after printing (stdout closed,
a failed fetch). A rerun goes on after the last record printed; a record may
be printed twice if a commit fails, never skipped. With --exit-at-end, each
partition the group assigns ends at the high watermark it had when the command
started; a member assigned nothing exits at once.`,
		Example: `  sluice consume demo --from-beginning --exit-at-end
  sluice consume orders --format '%k:%v' --from-beginning
  sluice consume orders --format '%p/%o %T %k=%v [%h]' --offset -10 --exit-at-end
  sluice consume orders --from-time 2024-05-01T00:00:00Z --count 100 --format json
  sluice consume orders --partition 0 --partition 2
  sluice consume orders --group billing
  sluice consume orders -g billing -n 10           # the next 10 of the group, committed
  sluice consume orders -g billing --exit-at-end   # the group's records up to now
  sluice consume pageviews --decode --from-beginning  # Avro/JSON Schema records as JSON`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic = args[0]
			return Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	f.BoolVar(&o.FromBeginning, "from-beginning", false, "start at each partition's first record")
	f.StringVar(&o.Offset, "offset", "", "start at this offset in each partition; negative: that many records before the end")
	f.StringVar(&o.FromTime, "from-time", "", "start at the first record at or after this time (RFC 3339 or unix milliseconds)")
	f.BoolVarP(&o.ExitAtEnd, "exit-at-end", "e", false, "exit once every partition reaches the end offset it had at start")
	f.IntVarP(&o.Count, "count", "n", 0, "exit after this many records (0: no limit)")
	f.StringVarP(&o.Group, "group", "g", "", "consume in this consumer group, committing offsets")
	f.StringVarP(&o.Format, "format", "f", "%v", "record format: text with verbs (see above), or json")
	f.Int32SliceVarP(&o.Partitions, "partition", "p", nil, "consume only these partitions (repeatable, or comma-separated)")
	f.BoolVar(&o.Decode, "decode", false, "print keys and values in Confluent's wire format (schema id framing) as JSON: Avro decoded with its schema from the registry, JSON Schema as produced")
	f.StringVar(&o.SchemaRegistry, "schema-registry", "", "the schema registry --decode asks (default $SLUICE_SCHEMA_REGISTRY, else "+defaultSchemaRegistry+")")
	return cmd
}

// start is where consumption starts.
type start struct {
	kind   byte  // 'e' end, 'b' beginning, 'o' offset, 't' time
	offset int64 // for 'o'
	milli  int64 // for 't'
}

func (o Options) start() (start, error) {
	n := 0
	for _, set := range []bool{o.FromBeginning, o.Offset != "", o.FromTime != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return start{}, errors.New("give at most one of --from-beginning, --offset and --from-time")
	}
	switch {
	case o.FromBeginning:
		return start{kind: 'b'}, nil
	case o.Offset != "":
		off, err := strconv.ParseInt(o.Offset, 10, 64)
		if err != nil {
			return start{}, fmt.Errorf("--offset %q: want a number (negative: that many before the end)", o.Offset)
		}
		return start{kind: 'o', offset: off}, nil
	case o.FromTime != "":
		ms, err := parseTime(o.FromTime)
		if err != nil {
			return start{}, err
		}
		return start{kind: 't', milli: ms}, nil
	}
	return start{kind: 'e'}, nil
}

func parseTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("--from-time %q: want RFC 3339 (2024-05-01T12:00:00Z) or unix milliseconds", s)
	}
	return t.UnixMilli(), nil
}

// Run consumes until ctx ends or an exit condition is met.
func Run(ctx context.Context, o Options) error {
	format := o.Format
	if format == "" {
		format = "%v"
	}
	fm, err := newFormatter(format)
	if err != nil {
		return err
	}
	st, err := o.start()
	if err != nil {
		return err
	}
	if o.Count < 0 {
		return fmt.Errorf("--count %d: must be 0 (no limit) or more", o.Count)
	}
	if o.Group != "" {
		return runGroup(ctx, o, st, fm)
	}

	probe, md, err := o.Connect(ctx, []string{o.Topic})
	if err != nil {
		return err
	}
	closeProbe := sync.OnceFunc(probe.Close)
	defer closeProbe()
	parts, err := clientopts.Partitions(md, o.Topic)
	if err != nil {
		return err
	}
	if len(o.Partitions) > 0 {
		for _, p := range o.Partitions {
			if !slices.Contains(parts, p) {
				return fmt.Errorf("--partition %d: topic %s has partitions 0 to %d", p, o.Topic, len(parts)-1)
			}
		}
		parts = slices.Compact(slices.Sorted(slices.Values(o.Partitions)))
	}
	offsets, ends, _, err := o.resolve(ctx, kadm.NewClient(probe), parts, st)
	if err != nil {
		return err
	}
	closeProbe()

	// With --exit-at-end, a partition is done once it reaches the end it
	// had at start; records past it are not printed.
	var done map[int32]bool
	if o.ExitAtEnd {
		done = map[int32]bool{}
		for _, p := range parts {
			if offsets[p] >= ends[p] {
				done[p] = true
			}
		}
		if len(done) == len(parts) {
			return nil
		}
	}
	kos := map[int32]kgo.Offset{}
	for _, p := range parts {
		if done[p] {
			continue
		}
		kos[p] = kgo.NewOffset().At(offsets[p])
	}
	cl, err := o.NewClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: kos}),
		kgo.FetchMaxWait(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()

	accept := func(r *kgo.Record) (print, stop bool) {
		if done == nil {
			return true, false
		}
		end := ends[r.Partition]
		if done[r.Partition] || r.Offset >= end {
			return false, false
		}
		if r.Offset+1 >= end {
			done[r.Partition] = true
			cl.PauseFetchPartitions(map[string][]int32{o.Topic: {r.Partition}})
		}
		return true, len(done) == len(parts)
	}
	p, err := o.newPrinterFor(fm, nil)
	if err != nil {
		return err
	}
	return loop(ctx, o, cl, p, accept)
}

// resolve turns the start into an offset per partition, and lists the end
// offsets (high watermarks) and log start offsets.
func (o Options) resolve(ctx context.Context, adm *kadm.Client, parts []int32, st start) (offsets, ends, starts map[int32]int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	list := func(what string, fn func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
		l, err := fn(ctx, o.Topic)
		if err != nil {
			return nil, fmt.Errorf("%s offsets of %s: %w", what, o.Topic, err)
		}
		m := map[int32]int64{}
		for _, p := range parts {
			lo, ok := l.Lookup(o.Topic, p)
			if !ok {
				return nil, fmt.Errorf("%s offset of %s/%d: not in the broker's answer", what, o.Topic, p)
			}
			if lo.Err != nil {
				return nil, fmt.Errorf("%s offset of %s/%d: %w", what, o.Topic, p, lo.Err)
			}
			m[p] = lo.Offset
		}
		return m, nil
	}
	if starts, err = list("start", adm.ListStartOffsets); err != nil {
		return nil, nil, nil, err
	}
	if ends, err = list("end", adm.ListEndOffsets); err != nil {
		return nil, nil, nil, err
	}
	offsets = map[int32]int64{}
	switch st.kind {
	case 'b':
		offsets = starts
	case 'e':
		offsets = ends
	case 'o':
		for _, p := range parts {
			want := st.offset
			if want < 0 {
				want = ends[p] + want
			}
			offsets[p] = min(max(want, starts[p]), ends[p])
		}
	case 't':
		at, err := list("time", func(ctx context.Context, topics ...string) (kadm.ListedOffsets, error) {
			return adm.ListOffsetsAfterMilli(ctx, st.milli, topics...)
		})
		if err != nil {
			return nil, nil, nil, err
		}
		for _, p := range parts {
			if at[p] < 0 {
				at[p] = ends[p]
			}
			offsets[p] = min(max(at[p], starts[p]), ends[p])
		}
	}
	return offsets, ends, starts, nil
}

// loop polls and prints until ctx ends, a fetch fails, --count records are
// printed, or accept says to stop. accept says whether to print a record
// and whether to stop after it.
func loop(ctx context.Context, o Options, cl *kgo.Client, p *printer, accept func(*kgo.Record) (print, stop bool)) error {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return p.flush()
		}
		stop, err := p.printFetches(ctx, o, fs, accept)
		if err != nil || stop {
			return err
		}
	}
}
