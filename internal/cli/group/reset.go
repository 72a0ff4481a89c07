package group

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// ResetOptions are the flags of `sluice group reset-offsets`.
type ResetOptions struct {
	clientopts.Common
	Group      string
	Topics     []string // "": the partitions the group has committed to
	ToEarliest bool
	ToLatest   bool
	ToDatetime string // RFC 3339 or unix milliseconds
	ToOffset   string // an offset; "" when not given
	DryRun     bool
	Output     string
}

func resetCommand() *cobra.Command {
	o := ResetOptions{}
	cmd := &cobra.Command{
		Use:   "reset-offsets GROUP --to-earliest|--to-latest|--to-datetime T|--to-offset N",
		Short: "Move a group's committed offsets (only while the group has no members)",
		Long: `Commit new offsets for a consumer group, so that its consumers resume there:
the log start (--to-earliest), the log end (--to-latest), the first record at or
after a time (--to-datetime), or an offset (--to-offset, clamped to the log).

It resets every partition of the topics named with --topic, or without --topic
every partition the group has committed to. It prints each partition's old and
new offset; with --dry-run it commits nothing.

The group must have no members: running consumers would overwrite the reset
with their next commit, so it is refused until they are stopped.`,
		Example: `  sluice group reset-offsets orders-app --to-earliest --dry-run
  sluice group reset-offsets orders-app --to-latest --topic orders
  sluice group reset-offsets orders-app --to-datetime 2024-05-01T00:00:00Z --topic orders,payments
  sluice group reset-offsets orders-app --to-offset 1000 --topic orders -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Group = args[0]
			return RunReset(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	clientopts.AddOutputFlag(f, &o.Output)
	f.StringSliceVar(&o.Topics, "topic", nil, "topic whose partitions to reset, repeatable or comma-separated (default: the partitions the group has committed to)")
	f.BoolVar(&o.ToEarliest, "to-earliest", false, "reset to the log start offset")
	f.BoolVar(&o.ToLatest, "to-latest", false, "reset to the log end offset")
	f.StringVar(&o.ToDatetime, "to-datetime", "", "reset to the first record at or after this time (RFC 3339 or unix milliseconds)")
	f.StringVar(&o.ToOffset, "to-offset", "", "reset to this offset (clamped to the log start and end)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the new offsets without committing them")
	return cmd
}

// ResetResult is what `group reset-offsets -o json` prints.
type ResetResult struct {
	Group      string           `json:"group"`
	DryRun     bool             `json:"dry_run"`
	Partitions []ResetPartition `json:"partitions"`
}

// ResetPartition is one partition of a ResetResult.
type ResetPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	OldOffset int64  `json:"old_offset"` // -1: nothing was committed
	NewOffset int64  `json:"new_offset"`
}

type target struct {
	kind  byte // 'e' earliest, 'l' latest, 't' time, 'o' offset
	value int64
}

func (o ResetOptions) target() (target, error) {
	n := 0
	for _, set := range []bool{o.ToEarliest, o.ToLatest, o.ToDatetime != "", o.ToOffset != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return target{}, errors.New("say where to reset to: give one of --to-earliest, --to-latest, --to-datetime and --to-offset")
	case n > 1:
		return target{}, errors.New("give only one of --to-earliest, --to-latest, --to-datetime and --to-offset")
	case o.ToEarliest:
		return target{kind: 'e'}, nil
	case o.ToLatest:
		return target{kind: 'l'}, nil
	case o.ToDatetime != "":
		ms, err := parseTime(o.ToDatetime)
		if err != nil {
			return target{}, err
		}
		return target{kind: 't', value: ms}, nil
	}
	off, err := strconv.ParseInt(o.ToOffset, 10, 64)
	if err != nil || off < 0 {
		return target{}, fmt.Errorf("--to-offset %q: want an offset, 0 or more", o.ToOffset)
	}
	return target{kind: 'o', value: off}, nil
}

func parseTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("--to-datetime %q: want RFC 3339 (2024-05-01T12:00:00Z) or unix milliseconds", s)
	}
	if t.UnixMilli() < 0 {
		return 0, fmt.Errorf("--to-datetime %q: before 1970", s)
	}
	return t.UnixMilli(), nil
}

// refuseActive explains why a group with members cannot be reset.
func refuseActive(g info) error {
	if len(g.Members) == 0 {
		return fmt.Errorf("group %s is %s, not Empty: its offsets can only be reset while no consumer is in it; "+
			"stop the group's consumers and wait for it to become Empty (`sluice group describe %s`), then run this again", g.Group, g.State, g.Group)
	}
	return fmt.Errorf("group %s has %d active member(s) (%s; state %s): its offsets can only be reset while it has none, "+
		"since running consumers would overwrite the reset with their next commit; stop the group's consumers "+
		"(or wait for their session timeout), then run this again", g.Group, len(g.Members), memberNames(g.Members), g.State)
}

// RunReset computes the new offsets, commits them unless DryRun, and prints
// each partition's old and new offset.
func RunReset(ctx context.Context, o ResetOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	if o.Group == "" {
		return errors.New("name the group whose offsets to reset")
	}
	tgt, err := o.target()
	if err != nil {
		return err
	}
	var topics []string
	for _, t := range o.Topics {
		for _, t := range clientopts.SplitList(t) {
			if strings.Contains(t, ":") {
				return fmt.Errorf("--topic %q: give just the topic's name; every partition of it is reset", t)
			}
			topics = append(topics, t)
		}
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()

	gs, errs, err := describeGroups(ctx, adm, o.Group)
	if err != nil {
		return err
	}
	if err := errs[o.Group]; err != nil && err != errNoGroup {
		return err
	}
	if g, ok := gs[o.Group]; ok && !g.empty() {
		return refuseActive(g)
	}
	committed, err := fetchCommitted(ctx, adm, o.Group)
	if err != nil {
		return err
	}

	scope := kadm.TopicsSet{}
	if len(topics) > 0 {
		tds, err := adm.ListTopics(ctx, topics...)
		if err != nil {
			return fmt.Errorf("describe topics: %w", err)
		}
		for _, t := range topics {
			td, ok := tds[t]
			switch {
			case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
				return clientopts.MissingTopic(t)
			case td.Err != nil:
				return fmt.Errorf("topic %s: %w", t, td.Err)
			}
			for p := range td.Partitions {
				scope.Add(t, p)
			}
		}
	} else {
		scope = committed.TopicsSet()
		if len(scope) == 0 {
			return fmt.Errorf("group %s has no committed offsets to reset; name the topics to reset with --topic", o.Group)
		}
	}

	newOffsets, rows, err := computeOffsets(ctx, o, adm, tgt, scope, committed)
	if err != nil {
		return err
	}
	if !o.DryRun {
		if err := commit(ctx, adm, o.Group, newOffsets); err != nil {
			return err
		}
	}

	if o.Output == clientopts.OutputJSON {
		if err := clientopts.JSON(o.Stdout(), ResetResult{Group: o.Group, DryRun: o.DryRun, Partitions: rows}); err != nil {
			return err
		}
	} else {
		table := make([][]string, 0, len(rows))
		for _, r := range rows {
			table = append(table, []string{r.Topic, fmt.Sprint(r.Partition), num(r.OldOffset), fmt.Sprint(r.NewOffset)})
		}
		if err := clientopts.Table(o.Stdout(), []string{"TOPIC", "PARTITION", "OLD-OFFSET", "NEW-OFFSET"}, table); err != nil {
			return err
		}
	}
	if o.DryRun {
		fmt.Fprintf(o.Stderr(), "dry run: nothing committed; run again without --dry-run to reset %d partition(s) of group %s\n", len(rows), o.Group)
	} else {
		fmt.Fprintf(o.Stderr(), "reset %d partition(s) of group %s\n", len(rows), o.Group)
	}
	return nil
}

// computeOffsets lists the offsets the target needs and returns the offsets
// to commit and the rows to print, sorted by topic and partition.
func computeOffsets(ctx context.Context, o ResetOptions, adm *kadm.Client, tgt target, scope kadm.TopicsSet,
	committed kadm.Offsets) (kadm.Offsets, []ResetPartition, error) {
	topics := scope.Topics()
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil && len(starts) == 0 {
		return nil, nil, fmt.Errorf("log start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil && len(ends) == 0 {
		return nil, nil, fmt.Errorf("log end offsets: %w", err)
	}
	var at kadm.ListedOffsets
	if tgt.kind == 't' {
		if at, err = adm.ListOffsetsAfterMilli(ctx, tgt.value, topics...); err != nil && len(at) == 0 {
			return nil, nil, fmt.Errorf("offsets at %s: %w", o.ToDatetime, err)
		}
	}
	lookup := func(what string, l kadm.ListedOffsets, t string, p int32) (int64, error) {
		lo, ok := l.Lookup(t, p)
		if missing, isMissing := l.Lookup(t, -1); !ok && isMissing && errors.Is(missing.Err, kerr.UnknownTopicOrPartition) {
			return 0, clientopts.MissingTopic(t)
		}
		switch {
		case !ok:
			return 0, fmt.Errorf("%s/%d: no %s offset from the broker", t, p, what)
		case lo.Err != nil:
			return 0, fmt.Errorf("%s/%d: %s offset: %w", t, p, what, lo.Err)
		}
		return lo.Offset, nil
	}

	out := kadm.Offsets{}
	var rows []ResetPartition
	var errs []error
	for _, tp := range scope.Sorted() {
		for _, p := range tp.Partitions {
			start, err1 := lookup("log start", starts, tp.Topic, p)
			end, err2 := lookup("log end", ends, tp.Topic, p)
			if err := errors.Join(err1, err2); err != nil {
				errs = append(errs, err)
				continue
			}
			var n int64
			switch tgt.kind {
			case 'e':
				n = start
			case 'l':
				n = end
			case 't':
				off, err := lookup("timestamp", at, tp.Topic, p)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				n = off
				if n < 0 { // no record at or after the time
					n = end
				}
			case 'o':
				n = tgt.value
				if n > end {
					fmt.Fprintf(o.Stderr(), "%s/%d: offset %d is past the log end; using the log end %d\n", tp.Topic, p, n, end)
					n = end
				} else if n < start {
					fmt.Fprintf(o.Stderr(), "%s/%d: offset %d is before the log start; using the log start %d\n", tp.Topic, p, n, start)
					n = start
				}
			}
			old := int64(-1)
			if c, ok := committed.Lookup(tp.Topic, p); ok {
				old = c.At
			}
			out.Add(kadm.Offset{Topic: tp.Topic, Partition: p, At: n, LeaderEpoch: -1})
			rows = append(rows, ResetPartition{Topic: tp.Topic, Partition: p, OldOffset: old, NewOffset: n})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return out, rows, nil
}

// commit commits the offsets, explaining the errors a group that gained a
// member meanwhile answers.
func commit(ctx context.Context, adm *kadm.Client, group string, offsets kadm.Offsets) error {
	resps, err := adm.CommitOffsets(ctx, group, offsets)
	if err == nil {
		err = resps.Error()
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.UnknownMemberID), errors.Is(err, kerr.IllegalGeneration),
		errors.Is(err, kerr.RebalanceInProgress), errors.Is(err, kerr.StaleMemberEpoch):
		return fmt.Errorf("commit offsets of group %s: %w: a consumer joined the group while its offsets were being reset; "+
			"stop the group's consumers, then run this again", group, err)
	}
	return fmt.Errorf("commit offsets of group %s: %w", group, err)
}
