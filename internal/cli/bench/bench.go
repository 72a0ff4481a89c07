// Package bench is `sluice bench`: producer, consumer and end-to-end load
// against any Kafka-compatible broker (in the spirit of Kafka's
// kafka-producer-perf-test and the OpenMessaging Benchmark), plus the raw
// sequential write speed of a disk as the reference for durable produce.
//
// Every run shows live progress on stderr when it is a terminal, then a
// human summary on stderr and exactly one JSON line on stdout.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// Modes of Options.Mode.
const (
	ModeProduce = "produce"
	ModeConsume = "consume"
	ModeE2E     = "e2e"
	ModeDisk    = "disk"
)

// Defaults applied by Run when neither --records nor --duration is given.
const (
	defaultProduceRecords = 1_000_000
	defaultE2EDuration    = 20 * time.Second
	defaultE2ERate        = 1000
	// drainTimeout bounds how long e2e waits for the consumer to see the
	// last acknowledged records once producing has stopped.
	drainTimeout = 30 * time.Second
)

// Options are the flags of `sluice bench <mode>`.
type Options struct {
	Mode string // produce, consume, e2e or disk

	Brokers    string // comma-separated seed brokers
	Topic      string
	Partitions int32

	RecordSize  int
	Records     int64         // stop after this many records (0: see Duration)
	Duration    time.Duration // stop after this long (0: see Records)
	Acks        string        // all, 1 or 0
	Compression string        // none, gzip, snappy, lz4 or zstd
	Linger      time.Duration
	BatchBytes  int32
	Producers   int
	Rate        float64 // records per second over all producers; 0 is unlimited

	// Transactional produce (produce mode): with TransactionalID set, each
	// producer i uses the transactional id TransactionalID-i and commits
	// when its open transaction is TxnCommitInterval old or holds
	// TxnCommitRecords records, whichever comes first (0: that trigger is
	// off; both 0: every 100 ms).
	TransactionalID   string
	TxnCommitInterval time.Duration
	TxnCommitRecords  int64

	// disk mode
	Dir       string // directory to write the test file in
	SizeMiB   int64  // total bytes written, in MiB
	BlockSize int    // bytes per write
	SyncEvery int    // fsync after this many writes (0: once at the end)

	Quiet  bool      // no live progress
	Stdout io.Writer // the JSON line (default os.Stdout)
	Stderr io.Writer // progress and summary (default os.Stderr)
}

// Result is the JSON line printed on stdout. Latencies are nil where the
// mode measures none (consume).
type Result struct {
	Mode          string   `json:"mode"`
	Records       int64    `json:"records"`
	Bytes         int64    `json:"bytes"`
	Seconds       float64  `json:"seconds"`
	RecordsPerSec float64  `json:"records_per_sec"`
	MiBPerSec     float64  `json:"mib_per_sec"`
	P50Ms         *float64 `json:"p50_ms"`
	P99Ms         *float64 `json:"p99_ms"`
	P999Ms        *float64 `json:"p999_ms"`
	MaxMs         *float64 `json:"max_ms"`
	Errors        int64    `json:"errors"`

	// Transactional produce only (absent otherwise): transactions
	// committed, and per commit the time of EndTransaction (the EndTxn
	// round trip, after the flush) and of the Flush before it (waiting for
	// the transaction's records to be acknowledged).
	Transactions   int64    `json:"transactions,omitempty"`
	TxnCommitP50Ms *float64 `json:"txn_commit_p50_ms,omitempty"`
	TxnCommitP99Ms *float64 `json:"txn_commit_p99_ms,omitempty"`
	TxnCommitMaxMs *float64 `json:"txn_commit_max_ms,omitempty"`
	TxnFlushP50Ms  *float64 `json:"txn_flush_p50_ms,omitempty"`
	TxnFlushP99Ms  *float64 `json:"txn_flush_p99_ms,omitempty"`
}

// Command returns `sluice bench` and its modes.
func Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure produce, consume and end-to-end throughput and latency",
		Long: `Load any Kafka-compatible broker with franz-go clients and measure it, in the
spirit of kafka-producer-perf-test and the OpenMessaging Benchmark.

Progress is shown live on stderr when it is a terminal (not with --quiet).
At the end a summary goes to stderr and exactly one JSON line to stdout:
  {"mode":..,"records":..,"bytes":..,"seconds":..,"records_per_sec":..,
   "mib_per_sec":..,"p50_ms":..,"p99_ms":..,"p999_ms":..,"max_ms":..,"errors":..}
Transactional produce adds "transactions", "txn_commit_p50_ms",
"txn_commit_p99_ms", "txn_commit_max_ms", "txn_flush_p50_ms", "txn_flush_p99_ms".
A run with errors still prints its JSON line, then exits non-zero.`,
		Example: `  sluice bench produce --records 1000000 --record-size 100
  sluice bench produce --records 200000 --record-size 1024 --transactional-id bench --txn-commit-interval 100ms
  sluice bench consume
  sluice bench e2e --rate 1000 --duration 20s
  sluice bench disk --dir /var/lib/sluice --block-size 65536 --sync-every 1`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(modeCommand(ModeProduce), modeCommand(ModeConsume), modeCommand(ModeE2E), modeCommand(ModeDisk))
	return cmd
}

func modeCommand(mode string) *cobra.Command {
	o := Options{Mode: mode}
	cmd := &cobra.Command{
		Use:  mode,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Stdout, o.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	switch mode {
	case ModeProduce:
		cmd.Short = "Produce as fast as acknowledgements allow; latency is ack time - send time"
		cmd.Long = cmd.Short + `.

Values are --record-size random letters (as kafka-producer-perf-test), keys nil.
With neither --records nor --duration it produces 1,000,000 records; with both
it stops at whichever comes first.

With --transactional-id ID every record is produced in a transaction: producer
i (of --producers) uses the transactional id ID-i, and commits its open
transaction when it is --txn-commit-interval old or holds --txn-commit-records
records, whichever comes first (with neither flag: every 100ms). A commit is
Flush (wait for the transaction's records to be acknowledged) then
EndTransaction; the JSON line adds the transactions committed and the commit
(EndTransaction) and flush latencies. Needs --acks all.`
		cmd.Example = `  # idempotent produce, then the same load committed every 100 ms and every 1,000 records
  sluice bench produce --records 200000 --record-size 1024
  sluice bench produce --records 200000 --record-size 1024 --transactional-id bench --txn-commit-interval 100ms
  sluice bench produce --records 200000 --record-size 1024 --transactional-id bench --txn-commit-records 1000`
		f.StringVar(&o.TransactionalID, "transactional-id", "", "produce in transactions; producer i uses the transactional id ID-i")
		f.DurationVar(&o.TxnCommitInterval, "txn-commit-interval", 0, "commit a producer's transaction once it is this old (with --transactional-id; 0: off)")
		f.Int64Var(&o.TxnCommitRecords, "txn-commit-records", 0, "commit a producer's transaction once it holds this many records (with --transactional-id; 0: off)")
	case ModeConsume:
		cmd.Short = "Read the topic from its start, by partition (no consumer group)"
		cmd.Long = cmd.Short + `.

Reads until --records records, or else until the end offsets seen at the
start. --duration bounds the run.`
	case ModeE2E:
		cmd.Short = "Produce at --rate while tailing the topic; latency is consume time - produce time"
		cmd.Long = cmd.Short + `.

Each value carries its send time. The consumer starts at the end offsets
seen before producing. With neither --records nor --duration it runs 20 s.`
	case ModeDisk:
		cmd.Short = "Write a file sequentially with an fsync every --sync-every writes"
		cmd.Long = cmd.Short + `.

The reference for durable produce: what the disk itself sustains. Latency is
per fsync group (the writes plus their fsync). The file is removed after.`
		f.StringVar(&o.Dir, "dir", os.TempDir(), "directory to write the test file in")
		f.Int64Var(&o.SizeMiB, "size-mib", 1024, "MiB to write")
		f.IntVar(&o.BlockSize, "block-size", 1<<20, "bytes per write")
		f.IntVar(&o.SyncEvery, "sync-every", 1, "fsync after this many writes (0: once at the end)")
		f.BoolVarP(&o.Quiet, "quiet", "q", false, "no live progress")
		return cmd
	}
	brokers := os.Getenv(clientopts.BrokersEnv)
	if brokers == "" {
		brokers = clientopts.DefaultBrokers
	}
	f.StringVarP(&o.Brokers, "brokers", "b", brokers, "comma-separated seed brokers (env "+clientopts.BrokersEnv+")")
	f.StringVar(&o.Topic, "topic", "sluice-bench", "topic")
	f.Int64Var(&o.Records, "records", 0, "stop after this many records")
	f.DurationVar(&o.Duration, "duration", 0, "stop after this long")
	f.BoolVarP(&o.Quiet, "quiet", "q", false, "no live progress")
	if mode == ModeConsume {
		return cmd
	}
	rate := 0.0
	if mode == ModeE2E {
		rate = defaultE2ERate
	}
	f.Int32Var(&o.Partitions, "partitions", 6, "partitions of the topic when it has to be created")
	f.IntVar(&o.RecordSize, "record-size", 100, "bytes per record value")
	f.StringVar(&o.Acks, "acks", "all", "all, 1 or 0")
	f.StringVar(&o.Compression, "compression", "none", "none, gzip, snappy, lz4 or zstd")
	f.DurationVar(&o.Linger, "linger", 0, "how long a partition's batch waits for more records")
	f.Int32Var(&o.BatchBytes, "batch-bytes", 1<<20, "max bytes of one record batch")
	f.IntVar(&o.Producers, "producers", 1, "producers, each its own client")
	f.Float64Var(&o.Rate, "rate", rate, "records per second over all producers (0: unlimited)")
	return cmd
}

// Run runs one benchmark, prints its summary and JSON line, and returns an
// error if it could not run or if any record failed.
func Run(ctx context.Context, o Options) error {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if err := o.validate(); err != nil {
		return err
	}
	var (
		res Result
		err error
	)
	switch o.Mode {
	case ModeProduce:
		res, err = runProduce(ctx, o)
	case ModeConsume:
		res, err = runConsume(ctx, o)
	case ModeE2E:
		res, err = runE2E(ctx, o)
	case ModeDisk:
		res, err = runDisk(ctx, o)
	}
	if err != nil {
		return err
	}
	printSummary(o.Stderr, res)
	line, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(o.Stdout, "%s\n", line); err != nil {
		return err
	}
	if res.Errors > 0 {
		return fmt.Errorf("%s (see above)", clientopts.Count(res.Errors, "error", "errors"))
	}
	return nil
}

func (o *Options) validate() error {
	switch o.Mode {
	case ModeProduce, ModeConsume, ModeE2E:
	case ModeDisk:
		if o.Dir == "" {
			o.Dir = os.TempDir()
		}
		if o.SizeMiB <= 0 || o.BlockSize <= 0 || o.SyncEvery < 0 {
			return errors.New("--size-mib and --block-size must be positive, --sync-every not negative")
		}
		return nil
	default:
		return fmt.Errorf("unknown bench mode %q: use produce, consume, e2e or disk", o.Mode)
	}
	if strings.TrimSpace(o.Brokers) == "" {
		return errors.New("--brokers is empty")
	}
	if o.Topic == "" {
		return errors.New("--topic is empty")
	}
	if o.Records < 0 || o.Duration < 0 {
		return errors.New("--records and --duration must not be negative")
	}
	if o.Mode == ModeConsume {
		return nil
	}
	if o.Records == 0 && o.Duration == 0 {
		if o.Mode == ModeProduce {
			o.Records = defaultProduceRecords
		} else {
			o.Duration = defaultE2EDuration
		}
	}
	if o.Partitions <= 0 {
		o.Partitions = 6
	}
	if o.Producers <= 0 {
		o.Producers = 1
	}
	if o.BatchBytes == 0 {
		o.BatchBytes = 1 << 20
	}
	if o.RecordSize < 0 {
		return errors.New("--record-size must not be negative")
	}
	if o.Mode == ModeE2E && o.RecordSize < 9 {
		return errors.New("e2e needs --record-size of at least 9 (the send time and a marker are embedded in the value)")
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		return errors.New("--rate must be a non-negative number")
	}
	if o.Mode == ModeE2E && o.Rate == 0 && o.Records == 0 {
		// An unthrottled e2e run measures queueing, not latency; keep it
		// bounded by the default rate unless the caller sets a record count.
		o.Rate = defaultE2ERate
	}
	if _, err := acksOpt(o.Acks); err != nil {
		return err
	}
	if err := o.validateTxn(); err != nil {
		return err
	}
	if _, err := codecOpt(o.Compression); err != nil {
		return err
	}
	return nil
}

// defaultTxnCommitInterval is the commit trigger of a transactional run
// given neither --txn-commit-interval nor --txn-commit-records.
const defaultTxnCommitInterval = 100 * time.Millisecond

func (o *Options) validateTxn() error {
	if o.TxnCommitInterval < 0 || o.TxnCommitRecords < 0 {
		return errors.New("--txn-commit-interval and --txn-commit-records must not be negative")
	}
	if o.TransactionalID == "" {
		if o.TxnCommitInterval != 0 || o.TxnCommitRecords != 0 {
			return errors.New("--txn-commit-interval and --txn-commit-records need --transactional-id")
		}
		return nil
	}
	if o.Mode != ModeProduce {
		return errors.New("--transactional-id is for produce only")
	}
	if o.Acks != "all" && o.Acks != "-1" {
		return fmt.Errorf("--transactional-id needs --acks all (transactions are idempotent), not %q", o.Acks)
	}
	if o.TxnCommitInterval == 0 && o.TxnCommitRecords == 0 {
		o.TxnCommitInterval = defaultTxnCommitInterval
	}
	return nil
}

func acksOpt(acks string) (kgo.Acks, error) {
	switch acks {
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	case "1":
		return kgo.LeaderAck(), nil
	case "0":
		return kgo.NoAck(), nil
	}
	return kgo.Acks{}, fmt.Errorf("--acks %q: use all, 1 or 0", acks)
}

func codecOpt(c string) (kgo.CompressionCodec, error) {
	switch c {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("--compression %q: use none, gzip, snappy, lz4 or zstd", c)
}

func (o Options) seeds() []string {
	var out []string
	for _, b := range strings.Split(o.Brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// producerOpts are the kgo options of one producer client.
func (o Options) producerOpts() []kgo.Opt {
	acks, _ := acksOpt(o.Acks)
	codec, _ := codecOpt(o.Compression)
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.seeds()...),
		kgo.DefaultProduceTopic(o.Topic),
		kgo.RequiredAcks(acks),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerLinger(o.Linger),
		kgo.ProducerBatchMaxBytes(o.BatchBytes),
		kgo.RecordDeliveryTimeout(2 * time.Minute),
	}
	if o.Acks != "all" && o.Acks != "-1" {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	return opts
}

// ensureTopic creates the topic with o.Partitions partitions if it is
// missing; an existing topic is used as it is.
func ensureTopic(ctx context.Context, o Options) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.seeds()...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tds, err := adm.ListTopics(ctx, o.Topic)
	if err != nil {
		return fmt.Errorf("metadata from %s: %w", o.Brokers, err)
	}
	if td, ok := tds[o.Topic]; ok && td.Err == nil {
		if n := int32(len(td.Partitions)); n != o.Partitions {
			fmt.Fprintf(o.Stderr, "note: topic %s exists with %s (not %d); using it as it is\n", o.Topic, clientopts.Count(n, "partition", "partitions"), o.Partitions)
		}
		return nil
	}
	resp, err := adm.CreateTopic(ctx, o.Partitions, -1, nil, o.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", o.Topic, err)
	}
	return nil
}

// meter counts what a run has done so far; the progress line and the
// result read it.
type meter struct {
	records atomic.Int64
	bytes   atomic.Int64
	errors  atomic.Int64
	hist    histogram

	// transactional produce
	txns       atomic.Int64
	commitHist histogram // EndTransaction
	flushHist  histogram // Flush before it

	errOnce  sync.Once
	firstErr error
}

func (m *meter) fail(err error) {
	m.errors.Add(1)
	m.errOnce.Do(func() { m.firstErr = err })
}

func (m *meter) ok(n int, lat time.Duration) {
	m.records.Add(1)
	m.bytes.Add(int64(n))
	if lat >= 0 {
		m.hist.Record(lat)
	}
}

// result builds the Result of a run that took elapsed. Seconds is elapsed
// as it is (nanoseconds in float seconds); rates and latencies are
// computed from the nanosecond durations and then rounded by round, which
// never turns a positive figure into 0: a run of 0.4 ms is not 0 s, 500 B
// over 2 s is not 0 MiB/s. A run that took no
// measurable time (elapsed <= 0, which a monotonic clock does not give)
// reports 0 rates rather than an infinite or NaN one, which JSON cannot
// carry.
func (m *meter) result(mode string, elapsed time.Duration, latency bool) Result {
	r := Result{
		Mode:    mode,
		Records: m.records.Load(),
		Bytes:   m.bytes.Load(),
		Seconds: elapsed.Seconds(),
		Errors:  m.errors.Load(),
	}
	if s := elapsed.Seconds(); s > 0 {
		r.RecordsPerSec = round(float64(r.Records)/s, 1)
		r.MiBPerSec = round(float64(r.Bytes)/(1<<20)/s, 3)
	}
	if latency && m.hist.Count() > 0 {
		r.P50Ms, r.P99Ms, r.P999Ms = msFig(m.hist.Quantile(0.5)), msFig(m.hist.Quantile(0.99)), msFig(m.hist.Quantile(0.999))
		r.MaxMs = msFig(m.hist.Max())
	}
	if m.commitHist.Count() > 0 {
		r.Transactions = m.txns.Load()
		r.TxnCommitP50Ms, r.TxnCommitP99Ms, r.TxnCommitMaxMs = msFig(m.commitHist.Quantile(0.5)), msFig(m.commitHist.Quantile(0.99)), msFig(m.commitHist.Max())
		r.TxnFlushP50Ms, r.TxnFlushP99Ms = msFig(m.flushHist.Quantile(0.5)), msFig(m.flushHist.Quantile(0.99))
	}
	return r
}

// msFig is d in milliseconds, rounded for the JSON line.
func msFig(d time.Duration) *float64 {
	v := round(float64(d)/1e6, 3)
	return &v
}

// minSigDigits is how many significant digits round keeps at least.
const minSigDigits = 3

// round rounds v to digits decimals, or to more where v is so small that
// digits decimals would keep fewer than minSigDigits significant digits
// (0.000412 stays 0.000412 with digits 3, not 0). NaN, infinities and 0 are
// returned as they are; so is a v too small for 15 decimals, unrounded.
func round(v float64, digits int) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	if need := minSigDigits - 1 - int(math.Floor(math.Log10(math.Abs(v)))); need > digits {
		digits = need
	}
	if digits > 15 {
		return v
	}
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// fig formats v rounded by round, with no trailing zeros.
func fig(v float64, digits int) string {
	return strconv.FormatFloat(round(v, digits), 'f', -1, 64)
}

func printSummary(w io.Writer, r Result) {
	unit := "records"
	if r.Mode == ModeDisk {
		unit = "writes"
	}
	fmt.Fprintf(w, "%s: %d %s, %s MiB in %s s: %s %s/s, %s MiB/s",
		r.Mode, r.Records, unit, fig(float64(r.Bytes)/(1<<20), 1), fig(r.Seconds, 2), fig(r.RecordsPerSec, 0), unit, fig(r.MiBPerSec, 2))
	if r.P50Ms != nil {
		what := map[string]string{ModeProduce: "ack", ModeE2E: "end-to-end", ModeDisk: "write+fsync"}[r.Mode]
		fmt.Fprintf(w, "; %s latency ms p50 %s p99 %s p99.9 %s max %s", what, fig(*r.P50Ms, 3), fig(*r.P99Ms, 3), fig(*r.P999Ms, 3), fig(*r.MaxMs, 3))
	}
	if r.TxnCommitP50Ms != nil {
		fmt.Fprintf(w, "; %s, commit (EndTransaction) ms p50 %s p99 %s max %s, flush before it ms p50 %s p99 %s",
			clientopts.Count(r.Transactions, "transaction", "transactions"), fig(*r.TxnCommitP50Ms, 3), fig(*r.TxnCommitP99Ms, 3), fig(*r.TxnCommitMaxMs, 3), fig(*r.TxnFlushP50Ms, 3), fig(*r.TxnFlushP99Ms, 3))
	}
	fmt.Fprintf(w, "; %s\n", clientopts.Count(r.Errors, "error", "errors"))
}

// sleepUntil sleeps until t or until ctx ends; it reports whether ctx is
// still alive.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
