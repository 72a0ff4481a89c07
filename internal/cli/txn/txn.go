// Package txn is `sluice txn`: list and describe transactions, show the
// producers a partition tracks, find hanging transactions and abort them,
// through the Kafka admin APIs (franz-go kadm) — the operations of Kafka's
// kafka-transactions.sh.
package txn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// now is the clock for how long transactions have been open (tests replace it).
var now = time.Now

// Command returns `sluice txn` and its subcommands.
func Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "txn",
		Aliases: []string{"transactions"},
		Short:   "List, describe, find hanging and abort transactions",
		Long: `Inspect the transactions of transactional producers and end the ones that hang.

A transaction is opened by a producer with a transactional id; the
transaction coordinator tracks it by that id (list, describe), and every
partition it wrote to tracks it by producer id (producers). While it is open
a partition's last stable offset stays at its first record, so read_committed
consumers stop there. A transaction the coordinator no longer knows can stay
open on a partition forever ("hanging"): find-hanging finds those and abort
ends one.`,
		Example: `  sluice txn list --state Ongoing
  sluice txn describe payments-tx
  sluice txn producers orders --partition 0
  sluice txn find-hanging --max-transaction-timeout 15m
  sluice txn abort --topic orders --partition 0 --start-offset 1042`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(listCommand(), describeCommand(), producersCommand(), findHangingCommand(), abortCommand())
	return cmd
}

// states are the transaction states a coordinator reports.
var states = []string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

// openState reports whether a transaction in state s has partitions that
// are (or may still be) open.
func openState(s string) bool {
	return s == "Ongoing" || s == "PrepareCommit" || s == "PrepareAbort" || s == "PrepareEpochFence"
}

// normalizeStates checks --state values and spells them as the broker does.
func normalizeStates(in []string) ([]string, error) {
	var out []string
	for _, s := range in {
		for _, s := range clientopts.SplitList(s) {
			i := slices.IndexFunc(states, func(k string) bool { return strings.EqualFold(k, s) })
			if i < 0 {
				return nil, fmt.Errorf("--state %q: want one of %s", s, strings.Join(states, ", "))
			}
			out = append(out, states[i])
		}
	}
	return out, nil
}

// ListOptions are the flags of `sluice txn list`.
type ListOptions struct {
	clientopts.Common
	States      []string // only these states (any spelling case)
	ProducerIDs []int64  // only these producer ids
	Output      string
}

func listCommand() *cobra.Command {
	o := ListOptions{}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List transactional ids with their producer ids and transaction states",
		Long: `List every transactional id the transaction coordinators know, with its
current producer id and the state of its latest transaction: Ongoing (open),
PrepareCommit or PrepareAbort (ending: markers being written), CompleteCommit
or CompleteAbort (ended), Empty (no transaction yet), Dead, PrepareEpochFence.

--state and --producer-id keep only the matching ones.`,
		Example: `  sluice txn list
  sluice txn list --state Ongoing
  sluice txn list --state PrepareCommit,PrepareAbort -o json
  sluice txn list --producer-id 1001`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			return RunList(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	clientopts.AddOutputFlag(f, &o.Output)
	f.StringSliceVar(&o.States, "state", nil, "only transactions in this state, repeatable or comma-separated ("+strings.Join(states, ", ")+")")
	f.Int64SliceVar(&o.ProducerIDs, "producer-id", nil, "only transactional ids with this producer id, repeatable or comma-separated")
	return cmd
}

// ListedTxn is one transactional id of `txn list -o json`.
type ListedTxn struct {
	TransactionalID string `json:"transactional_id"`
	ProducerID      int64  `json:"producer_id"`
	State           string `json:"state"`
	Coordinator     int32  `json:"coordinator"`
}

// RunList prints the transactional ids, sorted.
func RunList(ctx context.Context, o ListOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	filter, err := normalizeStates(o.States)
	if err != nil {
		return err
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	listed, err := adm.ListTransactions(ctx, o.ProducerIDs, filter)
	if err != nil && len(listed) == 0 {
		return fmt.Errorf("list transactions: %w", explain(err))
	}
	if err != nil {
		fmt.Fprintf(o.Stderr(), "warning: some coordinators did not answer, the list may be incomplete: %v\n", err)
	}
	out := []ListedTxn{}
	for _, l := range listed.Sorted() {
		// Filter here too: a broker serving ListTransactions v0 ignores the
		// state filter.
		if len(filter) > 0 && !slices.Contains(filter, l.State) || len(o.ProducerIDs) > 0 && !slices.Contains(o.ProducerIDs, l.ProducerID) {
			continue
		}
		out = append(out, ListedTxn{TransactionalID: l.TxnID, ProducerID: l.ProducerID, State: l.State, Coordinator: l.Coordinator})
	}
	if o.Output == clientopts.OutputJSON {
		return clientopts.JSON(o.Stdout(), out)
	}
	if len(out) == 0 {
		if len(filter) > 0 || len(o.ProducerIDs) > 0 {
			fmt.Fprintln(o.Stderr(), "no transactional ids match; `sluice txn list` without filters shows them all")
		} else {
			fmt.Fprintln(o.Stderr(), "no transactional ids: no transactional producer has used this cluster yet")
		}
	}
	rows := make([][]string, 0, len(out))
	for _, t := range out {
		rows = append(rows, []string{t.TransactionalID, fmt.Sprint(t.ProducerID), dash(t.State), fmt.Sprint(t.Coordinator)})
	}
	return clientopts.Table(o.Stdout(), []string{"TRANSACTIONAL-ID", "PRODUCER-ID", "STATE", "COORDINATOR"}, rows)
}

// explain adds what a "broker is too old" error means here.
func explain(err error) error {
	if err != nil && strings.Contains(err.Error(), "broker is too old") {
		return fmt.Errorf("%w (the broker does not serve this transaction API)", err)
	}
	return err
}

func orNoAnswer(err error) error {
	if err == nil {
		return errors.New("no answer from the broker")
	}
	return err
}

// topicPartitions looks up a topic's partitions, checking that the ones
// asked for exist; none asked for means all of them.
func topicPartitions(ctx context.Context, adm *kadm.Client, topic string, want []int32) ([]int32, error) {
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	td, ok := tds[topic]
	switch {
	case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
		return nil, clientopts.MissingTopic(topic)
	case td.Err != nil:
		return nil, fmt.Errorf("topic %s: %w", topic, td.Err)
	}
	all := td.Partitions.Numbers()
	slices.Sort(all)
	if len(want) == 0 {
		return all, nil
	}
	var out []int32
	for _, p := range want {
		if !slices.Contains(all, p) {
			return nil, fmt.Errorf("--partition %d: topic %s has partitions 0 to %d", p, topic, len(all)-1)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out, nil
}

// lastStable returns each partition's last stable offset (ListOffsets
// read_committed, latest) and high watermark (read_uncommitted, latest);
// -1 where unknown.
func lastStable(ctx context.Context, adm *kadm.Client, topic string) (lso, hw map[int32]int64) {
	lso, hw = map[int32]int64{}, map[int32]int64{}
	get := func(l kadm.ListedOffsets, into map[int32]int64) {
		l.Each(func(o kadm.ListedOffset) {
			if o.Topic == topic && o.Err == nil {
				into[o.Partition] = o.Offset
			}
		})
	}
	if l, _ := adm.ListCommittedOffsets(ctx, topic); l != nil {
		get(l, lso)
	}
	if l, _ := adm.ListEndOffsets(ctx, topic); l != nil {
		get(l, hw)
	}
	return lso, hw
}

func lookup(m map[int32]int64, p int32) int64 {
	if v, ok := m[p]; ok {
		return v
	}
	return -1
}

// dash prints s, or - when empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// num prints n, or - when unknown (negative).
func num(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// millis prints unix milliseconds as RFC 3339 UTC, or - when unknown.
func millis(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

// ago prints how long ago ms was, rounded, or - when unknown.
func ago(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return age(ms).Round(time.Second).String()
}

func age(ms int64) time.Duration {
	return max(0, now().Sub(time.UnixMilli(ms)))
}
