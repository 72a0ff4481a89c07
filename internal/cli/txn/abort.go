package txn

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// AbortOptions are the flags of `sluice txn abort`.
type AbortOptions struct {
	clientopts.Common
	Topic            string
	Partition        int32 // -1: not given
	ProducerID       int64 // -1: not given
	ProducerEpoch    int32 // -1: not given
	CoordinatorEpoch int32 // -1: the producer's, from DescribeProducers
	StartOffset      int64 // -1: not given; else find the producer by its transaction's start offset
	Output           string
}

func abortCommand() *cobra.Command {
	o := AbortOptions{}
	cmd := &cobra.Command{
		Use:   "abort --topic T --partition P (--start-offset O | --producer-id N --producer-epoch E)",
		Short: "Abort a hanging transaction on one partition by writing an abort marker",
		Long: `Abort the transaction a producer has open on one partition, by writing a
transaction abort marker there (WriteTxnMarkers), as kafka-transactions.sh abort
does. Name the transaction by the offset it starts at (--start-offset, from
` + "`sluice txn producers`" + ` or ` + "`sluice txn find-hanging`" + `), or by its producer id and epoch.

WARNING: this is for hanging transactions only — ones whose producer is gone
and that the coordinator will not end (see ` + "`sluice txn find-hanging`" + `). The
marker is written without asking the transaction coordinator or the producer:
read_committed consumers skip every record of the transaction on this
partition from then on, even if the producer is still alive and later
commits. Other partitions of the same transaction are not touched. Check with
` + "`sluice txn describe`" + ` (or ` + "`sluice txn list --producer-id N`" + `) that the coordinator
does not still have the transaction Ongoing first.

It refuses when the producer has no transaction open on the partition. After
the marker, the partition's last stable offset moves past the transaction (up
to the next open one), and read_committed consumers go on.`,
		Example: `  sluice txn abort --topic orders --partition 0 --start-offset 1042
  sluice txn abort --topic orders --partition 0 --producer-id 1001 --producer-epoch 3
  sluice txn abort --topic orders --partition 0 --producer-id 1001 --producer-epoch 3 --coordinator-epoch 0 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			return RunAbort(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	clientopts.AddOutputFlag(f, &o.Output)
	f.StringVar(&o.Topic, "topic", "", "topic of the partition (required)")
	f.Int32VarP(&o.Partition, "partition", "p", -1, "partition whose transaction to abort (required)")
	f.Int64Var(&o.StartOffset, "start-offset", -1, "abort the transaction that starts at this offset (its producer is looked up)")
	f.Int64Var(&o.ProducerID, "producer-id", -1, "producer id of the transaction (with --producer-epoch, instead of --start-offset)")
	f.Int32Var(&o.ProducerEpoch, "producer-epoch", -1, "producer epoch of the transaction")
	f.Int32Var(&o.CoordinatorEpoch, "coordinator-epoch", -1, "coordinator epoch to write in the marker; -1: the producer's latest, from DescribeProducers")
	return cmd
}

// AbortResult is what `txn abort -o json` prints.
type AbortResult struct {
	Topic                  string `json:"topic"`
	Partition              int32  `json:"partition"`
	ProducerID             int64  `json:"producer_id"`
	ProducerEpoch          int16  `json:"producer_epoch"`
	CoordinatorEpoch       int32  `json:"coordinator_epoch"`
	TxnStartOffset         int64  `json:"txn_start_offset"`
	LastStableOffsetBefore int64  `json:"last_stable_offset_before"` // -1: unknown
	LastStableOffsetAfter  int64  `json:"last_stable_offset_after"`  // -1: unknown
	HighWatermark          int64  `json:"high_watermark"`            // -1: unknown
}

func (o AbortOptions) check() error {
	switch {
	case o.Topic == "":
		return errors.New("--topic is required: the topic of the partition whose transaction to abort")
	case o.Partition < 0:
		return errors.New("--partition is required: the partition whose transaction to abort")
	case o.StartOffset >= 0 && (o.ProducerID >= 0 || o.ProducerEpoch >= 0):
		return errors.New("give either --start-offset or --producer-id with --producer-epoch, not both")
	case o.StartOffset >= 0:
		return nil
	case o.ProducerID < 0 && o.ProducerEpoch < 0:
		return fmt.Errorf("say which transaction to abort: --start-offset O (see `sluice txn producers %s --partition %d`), "+
			"or --producer-id N --producer-epoch E", o.Topic, o.Partition)
	case o.ProducerID < 0:
		return errors.New("--producer-epoch needs --producer-id")
	case o.ProducerEpoch < 0:
		return fmt.Errorf("--producer-id needs --producer-epoch (see `sluice txn producers %s --partition %d`)", o.Topic, o.Partition)
	case o.ProducerEpoch > 32767:
		return fmt.Errorf("--producer-epoch %d: a producer epoch is at most 32767", o.ProducerEpoch)
	}
	return nil
}

// RunAbort writes an abort marker for the transaction and prints what it
// did.
func RunAbort(ctx context.Context, o AbortOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	if _, err := topicPartitions(ctx, adm, o.Topic, []int32{o.Partition}); err != nil {
		return err
	}
	pps, err := describeProducers(ctx, adm, o.Topic, []int32{o.Partition})
	if err != nil {
		return err
	}
	pp := pps[0]
	if pp.Error != "" {
		return fmt.Errorf("describe producers of %s/%d: %s", o.Topic, o.Partition, pp.Error)
	}
	where := fmt.Sprintf("%s/%d", o.Topic, o.Partition)
	see := fmt.Sprintf("`sluice txn producers %s --partition %d` shows the open ones", o.Topic, o.Partition)
	var target *Producer
	for i, p := range pp.Producers {
		if o.StartOffset >= 0 && p.CurrentTxnStartOffset == o.StartOffset || o.StartOffset < 0 && p.ProducerID == o.ProducerID {
			target = &pp.Producers[i]
			break
		}
	}
	switch {
	case target == nil && o.StartOffset >= 0:
		return fmt.Errorf("no transaction open on %s starts at offset %d; %s", where, o.StartOffset, see)
	case target == nil:
		return fmt.Errorf("partition %s does not know producer %d; %s", where, o.ProducerID, see)
	case target.CurrentTxnStartOffset < 0:
		return fmt.Errorf("producer %d has no transaction open on %s: nothing to abort; %s", target.ProducerID, where, see)
	}
	r := AbortResult{Topic: o.Topic, Partition: o.Partition, ProducerID: target.ProducerID, ProducerEpoch: target.ProducerEpoch,
		CoordinatorEpoch: target.CoordinatorEpoch, TxnStartOffset: target.CurrentTxnStartOffset,
		LastStableOffsetBefore: pp.LastStableOffset, LastStableOffsetAfter: -1, HighWatermark: -1}
	if o.StartOffset < 0 {
		r.ProducerEpoch = int16(o.ProducerEpoch)
		if r.ProducerEpoch != target.ProducerEpoch {
			fmt.Fprintf(o.Stderr(), "warning: %s has producer %d at epoch %d, not %d\n", where, target.ProducerID, target.ProducerEpoch, r.ProducerEpoch)
		}
	}
	if o.CoordinatorEpoch >= 0 {
		r.CoordinatorEpoch = o.CoordinatorEpoch
	}
	if r.CoordinatorEpoch < 0 {
		r.CoordinatorEpoch = 0 // no marker yet: the first coordinator epoch
	}

	resps, err := adm.WriteTxnMarkers(ctx, kadm.TxnMarkers{ProducerID: r.ProducerID, ProducerEpoch: r.ProducerEpoch, Commit: false,
		CoordinatorEpoch: r.CoordinatorEpoch, Topics: kadm.TopicsSet{o.Topic: {o.Partition: {}}}})
	if err != nil && len(resps) == 0 {
		return fmt.Errorf("write abort marker on %s: %w", where, explain(err))
	}
	pr, ok := resps[r.ProducerID].Topics[o.Topic].Partitions[o.Partition]
	switch {
	case !ok:
		return fmt.Errorf("write abort marker on %s: %w", where, orNoAnswer(err))
	case errors.Is(pr.Err, kerr.InvalidProducerEpoch), errors.Is(pr.Err, kerr.ProducerFenced):
		return fmt.Errorf("write abort marker on %s: %w: the partition has producer %d at a newer epoch than %d; %s",
			where, pr.Err, r.ProducerID, r.ProducerEpoch, see)
	case errors.Is(pr.Err, kerr.TransactionCoordinatorFenced):
		return fmt.Errorf("write abort marker on %s: %w: coordinator epoch %d is older than the partition's; "+
			"leave out --coordinator-epoch to use the producer's", where, pr.Err, r.CoordinatorEpoch)
	case pr.Err != nil:
		return fmt.Errorf("write abort marker on %s: %w", where, pr.Err)
	}

	lso, hw := lastStable(ctx, adm, o.Topic)
	r.LastStableOffsetAfter, r.HighWatermark = lookup(lso, o.Partition), lookup(hw, o.Partition)
	if o.Output == clientopts.OutputJSON {
		return clientopts.JSON(o.Stdout(), r)
	}
	fmt.Fprintf(o.Stdout(), "aborted the transaction of producer %d (epoch %d) on %s that started at offset %d\n",
		r.ProducerID, r.ProducerEpoch, where, r.TxnStartOffset)
	fmt.Fprintf(o.Stdout(), "last stable offset %s -> %s (high watermark %s)\n",
		num(r.LastStableOffsetBefore), num(r.LastStableOffsetAfter), num(r.HighWatermark))
	return nil
}
