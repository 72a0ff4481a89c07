package txn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// DescribeOptions are the flags of `sluice txn describe`.
type DescribeOptions struct {
	clientopts.Common
	IDs    []string // transactional ids
	Output string
}

func describeCommand() *cobra.Command {
	o := DescribeOptions{}
	cmd := &cobra.Command{
		Use:   "describe TRANSACTIONAL-ID...",
		Short: "Show a transactional id's state, producer id and epoch, timeout, and open partitions",
		Long: `Show what the transaction coordinator knows of transactional ids: the state of
the latest transaction, the producer id and epoch, the transaction timeout, when
the transaction started and how long it has been open, and the partitions in
it (those that still need a commit or abort marker).

A transaction open longer than its timeout is aborted by the coordinator; one
open on a partition but unknown to the coordinator is found by
` + "`sluice txn find-hanging`" + `.`,
		Example: `  sluice txn describe payments-tx
  sluice txn describe payments-tx billing-tx -o json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.IDs = args
			return RunDescribe(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	clientopts.AddOutputFlag(cmd.Flags(), &o.Output)
	return cmd
}

// TopicPartitions are partitions of one topic.
type TopicPartitions struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// DescribedTxn is one transactional id of `txn describe -o json`.
type DescribedTxn struct {
	TransactionalID string            `json:"transactional_id"`
	Coordinator     int32             `json:"coordinator"`
	State           string            `json:"state"`
	ProducerID      int64             `json:"producer_id"`
	ProducerEpoch   int16             `json:"producer_epoch"`
	TimeoutMs       int32             `json:"timeout_ms"`
	StartTimeMs     int64             `json:"start_time_ms"` // -1: no transaction open
	OpenForMs       int64             `json:"open_for_ms"`   // -1: no transaction open
	Partitions      []TopicPartitions `json:"partitions"`
}

// RunDescribe prints the transactional ids; it fails if any could not be
// described, after printing the others.
func RunDescribe(ctx context.Context, o DescribeOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	if len(o.IDs) == 0 {
		return errors.New("name the transactional ids to describe; `sluice txn list` shows them")
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	described, err := adm.DescribeTransactions(ctx, o.IDs...)
	if err != nil && len(described) == 0 {
		return fmt.Errorf("describe transactions: %w", explain(err))
	}
	out := []DescribedTxn{}
	var errs []error
	for _, id := range o.IDs {
		d, ok := described[id]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("describe transactional id %s: %w", id, orNoAnswer(err)))
		case errors.Is(d.Err, kerr.TransactionalIDNotFound):
			errs = append(errs, fmt.Errorf("transactional id %s does not exist (TRANSACTIONAL_ID_NOT_FOUND); `sluice txn list` shows them", id))
		case d.Err != nil:
			errs = append(errs, fmt.Errorf("describe transactional id %s: %w", id, d.Err))
		default:
			out = append(out, describedTxn(d))
		}
	}
	if o.Output == clientopts.OutputJSON {
		if err := clientopts.JSON(o.Stdout(), out); err != nil {
			return err
		}
	} else {
		for i, d := range out {
			if i > 0 {
				fmt.Fprintln(o.Stdout())
			}
			if err := printDescribed(o, d); err != nil {
				return err
			}
		}
	}
	return errors.Join(errs...)
}

func describedTxn(d kadm.DescribedTransaction) DescribedTxn {
	t := DescribedTxn{TransactionalID: d.TxnID, Coordinator: d.Coordinator, State: d.State, ProducerID: d.ProducerID,
		ProducerEpoch: d.ProducerEpoch, TimeoutMs: d.TimeoutMillis, StartTimeMs: -1, OpenForMs: -1, Partitions: []TopicPartitions{}}
	if d.StartTimestamp >= 0 && openState(d.State) {
		t.StartTimeMs = d.StartTimestamp
		t.OpenForMs = age(d.StartTimestamp).Milliseconds()
	}
	for _, tp := range d.Topics.Sorted() {
		t.Partitions = append(t.Partitions, TopicPartitions{Topic: tp.Topic, Partitions: tp.Partitions})
	}
	return t
}

func printDescribed(o DescribeOptions, d DescribedTxn) error {
	open := "-"
	if d.OpenForMs >= 0 {
		open = ago(d.StartTimeMs)
		if d.TimeoutMs > 0 && d.OpenForMs > int64(d.TimeoutMs) {
			open += " (past the timeout: the coordinator should abort it)"
		}
	}
	parts := make([]string, 0, len(d.Partitions))
	for _, tp := range d.Partitions {
		parts = append(parts, tp.Topic+":"+clientopts.Int32s(tp.Partitions))
	}
	return clientopts.Table(o.Stdout(), nil, [][]string{
		{"TRANSACTIONAL-ID", d.TransactionalID},
		{"STATE", dash(d.State)},
		{"PRODUCER-ID", fmt.Sprint(d.ProducerID)},
		{"PRODUCER-EPOCH", fmt.Sprint(d.ProducerEpoch)},
		{"COORDINATOR", fmt.Sprint(d.Coordinator)},
		{"TIMEOUT", fmt.Sprintf("%dms", d.TimeoutMs)},
		{"STARTED", millis(d.StartTimeMs)},
		{"OPEN-FOR", open},
		{"PARTITIONS", dash(strings.Join(parts, " "))},
	})
}
