package txn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// ProducersOptions are the flags of `sluice txn producers`.
type ProducersOptions struct {
	clientopts.Common
	Topic      string
	Partitions []int32 // none: every partition
	Output     string
}

func producersCommand() *cobra.Command {
	o := ProducersOptions{}
	cmd := &cobra.Command{
		Use:   "producers TOPIC",
		Short: "Show the producers each partition tracks, their open transactions, and the last stable offset",
		Long: `Show, for each partition of a topic, the idempotent and transactional producers
its leader tracks (DescribeProducers): producer id and epoch, the last sequence
number and timestamp written, the coordinator epoch of the last transaction
marker, and the first offset of the transaction the producer has open there
(TXN-START-OFFSET, - when none).

It also shows the partition's last stable offset (how far read_committed
consumers can read) next to its high watermark: they differ while a
transaction is open, and the last stable offset is the start offset of the
oldest open one. A transaction that stays open holds read_committed consumers
back; ` + "`sluice txn abort --topic T --partition P --start-offset O`" + ` ends it.`,
		Example: `  sluice txn producers orders
  sluice txn producers orders --partition 0 --partition 2
  sluice txn producers orders -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic = args[0]
			return RunProducers(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	clientopts.AddOutputFlag(f, &o.Output)
	f.Int32SliceVarP(&o.Partitions, "partition", "p", nil, "only these partitions, repeatable or comma-separated; none given: all")
	return cmd
}

// ProducersResult is what `txn producers -o json` prints.
type ProducersResult struct {
	Topic      string               `json:"topic"`
	Partitions []PartitionProducers `json:"partitions"`
}

// PartitionProducers is one partition of a ProducersResult.
type PartitionProducers struct {
	Partition        int32      `json:"partition"`
	Leader           int32      `json:"leader"`
	LastStableOffset int64      `json:"last_stable_offset"` // -1: unknown
	HighWatermark    int64      `json:"high_watermark"`     // -1: unknown
	Producers        []Producer `json:"producers"`
	Error            string     `json:"error,omitempty"`
}

// Producer is a producer a partition tracks.
type Producer struct {
	ProducerID            int64 `json:"producer_id"`
	ProducerEpoch         int16 `json:"producer_epoch"`
	LastSequence          int32 `json:"last_sequence"`     // -1: none
	LastTimestampMs       int64 `json:"last_timestamp_ms"` // -1: none
	CoordinatorEpoch      int32 `json:"coordinator_epoch"` // -1: no marker yet
	CurrentTxnStartOffset int64 `json:"txn_start_offset"`  // -1: no open transaction
}

// describeProducers describes the producers of the partitions of topic,
// with the last stable offsets and high watermarks.
func describeProducers(ctx context.Context, adm *kadm.Client, topic string, partitions []int32) ([]PartitionProducers, error) {
	set := kadm.TopicsSet{}
	set.Add(topic, partitions...)
	described, err := adm.DescribeProducers(ctx, set)
	if err != nil && len(described) == 0 {
		return nil, fmt.Errorf("describe producers of %s: %w", topic, explain(err))
	}
	lso, hw := lastStable(ctx, adm, topic)
	var out []PartitionProducers
	for _, p := range partitions {
		pp := PartitionProducers{Partition: p, Leader: -1, LastStableOffset: lookup(lso, p), HighWatermark: lookup(hw, p), Producers: []Producer{}}
		d, ok := described[topic].Partitions[p]
		switch {
		case !ok:
			pp.Error = fmt.Sprintf("no answer: %v", orNoAnswer(err))
		case d.Err != nil:
			pp.Leader, pp.Error = d.Leader, clientopts.KafkaErr(d.Err, d.ErrMessage).Error()
		default:
			pp.Leader = d.Leader
			for _, dp := range d.ActiveProducers.Sorted() {
				pp.Producers = append(pp.Producers, Producer{ProducerID: dp.ProducerID, ProducerEpoch: dp.ProducerEpoch,
					LastSequence: dp.LastSequence, LastTimestampMs: dp.LastTimestamp, CoordinatorEpoch: dp.CoordinatorEpoch,
					CurrentTxnStartOffset: dp.CurrentTxnStartOffset})
			}
		}
		out = append(out, pp)
	}
	return out, nil
}

// RunProducers prints the partitions' producers.
func RunProducers(ctx context.Context, o ProducersOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	if o.Topic == "" {
		return errors.New("name the topic whose producers to show")
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	parts, err := topicPartitions(ctx, adm, o.Topic, o.Partitions)
	if err != nil {
		return err
	}
	pps, err := describeProducers(ctx, adm, o.Topic, parts)
	if err != nil {
		return err
	}
	var errs []error
	for _, pp := range pps {
		if pp.Error != "" {
			errs = append(errs, fmt.Errorf("%s/%d: %s", o.Topic, pp.Partition, pp.Error))
		}
	}
	if o.Output == clientopts.OutputJSON {
		if err := clientopts.JSON(o.Stdout(), ProducersResult{Topic: o.Topic, Partitions: pps}); err != nil {
			return err
		}
		return errors.Join(errs...)
	}
	w := o.Stdout()
	rows := make([][]string, 0, len(pps))
	var prows [][]string
	for _, pp := range pps {
		open := 0
		for _, p := range pp.Producers {
			if p.CurrentTxnStartOffset >= 0 {
				open++
			}
			prows = append(prows, []string{fmt.Sprint(pp.Partition), fmt.Sprint(p.ProducerID), fmt.Sprint(p.ProducerEpoch),
				num(int64(p.LastSequence)), millis(p.LastTimestampMs), num(int64(p.CoordinatorEpoch)), num(p.CurrentTxnStartOffset)})
		}
		row := []string{fmt.Sprint(pp.Partition), num(pp.LastStableOffset), num(pp.HighWatermark), fmt.Sprint(len(pp.Producers)), fmt.Sprint(open)}
		if pp.Error != "" {
			row[3], row[4] = "-", "-"
		}
		if len(errs) > 0 {
			row = append(row, dash(pp.Error))
		}
		rows = append(rows, row)
	}
	header := []string{"PARTITION", "LAST-STABLE-OFFSET", "HIGH-WATERMARK", "PRODUCERS", "OPEN-TXNS"}
	if len(errs) > 0 {
		header = append(header, "ERROR")
	}
	if err := clientopts.Table(w, header, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(prows) == 0 {
		fmt.Fprintln(w, "PRODUCERS: none")
	} else if err := clientopts.Table(w, []string{"PARTITION", "PRODUCER-ID", "EPOCH", "LAST-SEQUENCE", "LAST-TIMESTAMP",
		"COORDINATOR-EPOCH", "TXN-START-OFFSET"}, prows); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// FindHangingOptions are the flags of `sluice txn find-hanging`.
type FindHangingOptions struct {
	clientopts.Common
	Topics     []string      // none: every topic
	MaxTimeout time.Duration // the brokers' transaction.max.timeout.ms
	Output     string
}

func findHangingCommand() *cobra.Command {
	o := FindHangingOptions{}
	cmd := &cobra.Command{
		Use:   "find-hanging",
		Short: "Find transactions open on partitions for too long, or unknown to their coordinator",
		Long: `Find hanging transactions: transactions a partition still has open (a producer
with a TXN-START-OFFSET in ` + "`sluice txn producers`" + `) that nothing will end.

A transaction is reported when
  - it has written nothing for longer than --max-transaction-timeout (set it to
    the brokers' transaction.max.timeout.ms, 15m by default): the coordinator
    aborts any transaction older than its timeout, so one still open is stuck; or
  - the coordinator has no open transaction of that producer id that includes
    the partition (ListTransactions and DescribeTransactions), so no marker
    will ever come.
Each one holds the partition's last stable offset, and so read_committed
consumers, at its start offset. End it with the abort command printed.`,
		Example: `  sluice txn find-hanging
  sluice txn find-hanging --topic orders --max-transaction-timeout 5m -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			return RunFindHanging(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	clientopts.AddOutputFlag(f, &o.Output)
	f.StringSliceVar(&o.Topics, "topic", nil, "only this topic, repeatable or comma-separated (default: every topic)")
	f.DurationVar(&o.MaxTimeout, "max-transaction-timeout", 15*time.Minute, "the brokers' transaction.max.timeout.ms: an open transaction silent for longer is hanging")
	return cmd
}

// Hanging is one hanging transaction of `txn find-hanging -o json`.
type Hanging struct {
	Topic                 string `json:"topic"`
	Partition             int32  `json:"partition"`
	ProducerID            int64  `json:"producer_id"`
	ProducerEpoch         int16  `json:"producer_epoch"`
	CoordinatorEpoch      int32  `json:"coordinator_epoch"`
	CurrentTxnStartOffset int64  `json:"txn_start_offset"`
	LastTimestampMs       int64  `json:"last_timestamp_ms"`
	TransactionalID       string `json:"transactional_id"` // "": the coordinator knows no transactional id with this producer id
	Reason                string `json:"reason"`
}

// RunFindHanging prints the hanging transactions.
func RunFindHanging(ctx context.Context, o FindHangingOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	if o.MaxTimeout <= 0 {
		return fmt.Errorf("--max-transaction-timeout %s: want a positive duration such as 15m", o.MaxTimeout)
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()

	var topics []string
	for _, t := range o.Topics {
		topics = append(topics, clientopts.SplitList(t)...)
	}
	if len(topics) == 0 {
		tds, err := adm.ListTopics(ctx) // without internal topics
		if err != nil {
			return fmt.Errorf("list topics: %w", err)
		}
		topics = tds.Names()
	}

	type open struct {
		topic string
		p     Producer
		part  int32
	}
	var opens []open
	var errs []error
	for _, t := range topics {
		parts, err := topicPartitions(ctx, adm, t, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pps, err := describeProducers(ctx, adm, t, parts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, pp := range pps {
			if pp.Error != "" {
				errs = append(errs, fmt.Errorf("%s/%d: %s", t, pp.Partition, pp.Error))
			}
			for _, p := range pp.Producers {
				if p.CurrentTxnStartOffset >= 0 {
					opens = append(opens, open{topic: t, p: p, part: pp.Partition})
				}
			}
		}
	}

	// What the coordinators know of these producers.
	byPID := map[int64]kadm.DescribedTransaction{}
	if len(opens) > 0 {
		var pids []int64
		for _, op := range opens {
			pids = append(pids, op.p.ProducerID)
		}
		listed, err := adm.ListTransactions(ctx, pids, nil)
		if err != nil && len(listed) == 0 {
			return fmt.Errorf("list transactions: %w", explain(err))
		}
		var ids []string
		listed.Each(func(l kadm.ListedTransaction) {
			if containsPID(pids, l.ProducerID) {
				ids = append(ids, l.TxnID)
			}
		})
		if len(ids) > 0 {
			described, err := adm.DescribeTransactions(ctx, ids...)
			if err != nil && len(described) == 0 {
				return fmt.Errorf("describe transactions: %w", explain(err))
			}
			described.Each(func(d kadm.DescribedTransaction) {
				if d.Err == nil {
					byPID[d.ProducerID] = d
				}
			})
		}
	}

	out := []Hanging{}
	for _, op := range opens {
		h := Hanging{Topic: op.topic, Partition: op.part, ProducerID: op.p.ProducerID, ProducerEpoch: op.p.ProducerEpoch,
			CoordinatorEpoch: op.p.CoordinatorEpoch, CurrentTxnStartOffset: op.p.CurrentTxnStartOffset, LastTimestampMs: op.p.LastTimestampMs}
		d, known := byPID[op.p.ProducerID]
		h.TransactionalID = d.TxnID
		switch {
		case !known:
			h.Reason = "no transactional id has this producer id"
		case !openState(d.State) || !d.Topics.Lookup(op.topic, op.part):
			h.Reason = fmt.Sprintf("the coordinator's transaction of %s (%s) does not include this partition", d.TxnID, d.State)
		case op.p.LastTimestampMs >= 0 && age(op.p.LastTimestampMs) > o.MaxTimeout:
			h.Reason = fmt.Sprintf("silent for %s, longer than --max-transaction-timeout %s", ago(op.p.LastTimestampMs), o.MaxTimeout)
		default:
			continue
		}
		out = append(out, h)
	}

	if o.Output == clientopts.OutputJSON {
		if err := clientopts.JSON(o.Stdout(), out); err != nil {
			return err
		}
		return errors.Join(errs...)
	}
	if len(out) == 0 {
		fmt.Fprintf(o.Stderr(), "no hanging transactions in %d topic(s)\n", len(topics))
		return errors.Join(errs...)
	}
	rows := make([][]string, 0, len(out))
	for _, h := range out {
		rows = append(rows, []string{h.Topic, fmt.Sprint(h.Partition), fmt.Sprint(h.ProducerID), fmt.Sprint(h.ProducerEpoch),
			num(h.CurrentTxnStartOffset), millis(h.LastTimestampMs), dash(h.TransactionalID), h.Reason})
	}
	if err := clientopts.Table(o.Stdout(), []string{"TOPIC", "PARTITION", "PRODUCER-ID", "EPOCH", "TXN-START-OFFSET",
		"LAST-TIMESTAMP", "TRANSACTIONAL-ID", "REASON"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(o.Stderr(), "\nabort one with:")
	for _, h := range out {
		fmt.Fprintf(o.Stderr(), "  sluice txn abort --topic %s --partition %d --start-offset %d\n", h.Topic, h.Partition, h.CurrentTxnStartOffset)
	}
	return errors.Join(errs...)
}

func containsPID(pids []int64, pid int64) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}
