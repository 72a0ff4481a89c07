package group

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// DescribeOptions are the flags of `sluice group describe`.
type DescribeOptions struct {
	clientopts.Common
	Group  string
	Output string
}

func describeCommand() *cobra.Command {
	o := DescribeOptions{}
	cmd := &cobra.Command{
		Use:   "describe GROUP",
		Short: "Show a group's members, their assignments, and committed offset and lag per partition",
		Long: `Show a consumer group: its state and protocol, each member (client id, host,
assigned partitions), and for every partition assigned or committed to, the
committed offset, the log end offset and the lag (log end minus committed;
- when the group has committed nothing there).`,
		Example: `  sluice group describe orders-app
  sluice group describe orders-app -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Group = args[0]
			return RunDescribe(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	clientopts.AddOutputFlag(cmd.Flags(), &o.Output)
	return cmd
}

// DescribedGroup is what `group describe -o json` prints.
type DescribedGroup struct {
	Group        string         `json:"group"`
	State        string         `json:"state"`
	ProtocolType string         `json:"protocol_type"`
	Protocol     string         `json:"protocol"`
	Coordinator  int32          `json:"coordinator"`
	Members      []Member       `json:"members"`
	Partitions   []PartitionLag `json:"partitions"`
	TotalLag     int64          `json:"total_lag"` // sum of the known lags
}

// PartitionLag is one partition of a DescribedGroup.
type PartitionLag struct {
	Topic           string `json:"topic"`
	Partition       int32  `json:"partition"`
	CommittedOffset int64  `json:"committed_offset"` // -1: nothing committed
	LogEndOffset    int64  `json:"log_end_offset"`   // -1: unknown
	Lag             int64  `json:"lag"`              // -1: unknown (nothing committed, or no log end offset)
	MemberID        string `json:"member_id,omitempty"`
	ClientID        string `json:"client_id,omitempty"`
	Error           string `json:"error,omitempty"`
}

// RunDescribe prints the group.
func RunDescribe(ctx context.Context, o DescribeOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	if o.Group == "" {
		return errors.New("name the group to describe")
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	d, err := describe(ctx, adm, o.Group)
	if err != nil {
		return err
	}
	if o.Output == clientopts.OutputJSON {
		return clientopts.JSON(o.Stdout(), d)
	}
	return printDescribed(o, d)
}

// fetchCommitted returns the group's committed offsets (At >= 0).
func fetchCommitted(ctx context.Context, adm *kadm.Client, group string) (kadm.Offsets, error) {
	fetched, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return kadm.Offsets{}, nil // KIP-848 coordinators say so for an unknown group
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s: %w", group, explain(err))
	}
	out := kadm.Offsets{}
	var errs []error
	fetched.Each(func(r kadm.OffsetResponse) {
		switch {
		case r.Err != nil:
			errs = append(errs, fmt.Errorf("committed offset of group %s on %s/%d: %w", group, r.Topic, r.Partition, r.Err))
		case r.At >= 0:
			out.Add(r.Offset)
		}
	})
	return out, errors.Join(errs...)
}

func describe(ctx context.Context, adm *kadm.Client, group string) (*DescribedGroup, error) {
	gs, errs, err := describeGroups(ctx, adm, group)
	if err != nil {
		return nil, err
	}
	if err := errs[group]; err != nil && err != errNoGroup {
		return nil, err
	}
	g, known := gs[group]
	committed, err := fetchCommitted(ctx, adm, group)
	if err != nil {
		return nil, err
	}
	if !known || g.State == "Dead" && len(g.Members) == 0 {
		if len(committed) == 0 {
			return nil, missingGroup(group)
		}
		if !known {
			g = info{Group: group, State: "Empty"}
		}
	}

	owner := map[kadm.Partition]*Member{}
	parts := kadm.TopicsSet{}
	for i := range g.Members {
		m := &g.Members[i]
		for _, tp := range m.Assigned {
			parts.Add(tp.Topic, tp.Partitions...)
			for _, p := range tp.Partitions {
				owner[kadm.Partition{Topic: tp.Topic, Partition: p}] = m
			}
		}
	}
	committed.Each(func(o kadm.Offset) { parts.Add(o.Topic, o.Partition) })

	var ends kadm.ListedOffsets
	var endsErr error
	if topics := parts.Topics(); len(topics) > 0 {
		ends, endsErr = adm.ListEndOffsets(ctx, topics...)
		if endsErr != nil && len(ends) == 0 {
			return nil, fmt.Errorf("log end offsets: %w", endsErr)
		}
	}

	d := &DescribedGroup{Group: group, State: g.State, ProtocolType: g.ProtocolType, Protocol: g.Protocol,
		Coordinator: g.Coordinator, Members: g.Members, Partitions: []PartitionLag{}}
	if d.Members == nil {
		d.Members = []Member{}
	}
	for _, tp := range parts.Sorted() {
		for _, p := range tp.Partitions {
			pl := PartitionLag{Topic: tp.Topic, Partition: p, CommittedOffset: -1, LogEndOffset: -1, Lag: -1}
			if c, ok := committed.Lookup(tp.Topic, p); ok {
				pl.CommittedOffset = c.At
			}
			if m := owner[kadm.Partition{Topic: tp.Topic, Partition: p}]; m != nil {
				pl.MemberID, pl.ClientID = m.MemberID, m.ClientID
			}
			switch end, ok := ends.Lookup(tp.Topic, p); {
			case !ok:
				if missing, ok := ends.Lookup(tp.Topic, -1); ok && errors.Is(missing.Err, kerr.UnknownTopicOrPartition) {
					pl.Error = "topic does not exist"
				} else {
					pl.Error = fmt.Sprintf("no log end offset: %v", orNoAnswer(endsErr))
				}
			case end.Err != nil:
				pl.Error = "log end offset: " + end.Err.Error()
			default:
				pl.LogEndOffset = end.Offset
				if pl.CommittedOffset >= 0 {
					pl.Lag = max(0, end.Offset-pl.CommittedOffset)
					d.TotalLag += pl.Lag
				}
			}
			d.Partitions = append(d.Partitions, pl)
		}
	}
	return d, nil
}

func printDescribed(o DescribeOptions, d *DescribedGroup) error {
	w := o.Stdout()
	if err := clientopts.Table(w, nil, [][]string{
		{"GROUP", d.Group},
		{"STATE", dash(d.State)},
		{"PROTOCOL-TYPE", dash(d.ProtocolType)},
		{"PROTOCOL", dash(d.Protocol)},
		{"COORDINATOR", fmt.Sprint(d.Coordinator)},
		{"MEMBERS", fmt.Sprint(len(d.Members))},
		{"TOTAL-LAG", fmt.Sprint(d.TotalLag)},
	}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(d.Members) == 0 {
		fmt.Fprintln(w, "MEMBERS: none")
	} else {
		rows := make([][]string, 0, len(d.Members))
		for _, m := range d.Members {
			inst := "-"
			if m.InstanceID != nil {
				inst = *m.InstanceID
			}
			rows = append(rows, []string{m.MemberID, inst, dash(m.ClientID), dash(m.ClientHost), assignedString(m.Assigned)})
		}
		if err := clientopts.Table(w, []string{"MEMBER-ID", "INSTANCE-ID", "CLIENT-ID", "HOST", "ASSIGNED"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(d.Partitions) == 0 {
		fmt.Fprintln(w, "PARTITIONS: none assigned and no offsets committed")
		return nil
	}
	anyErr := false
	for _, p := range d.Partitions {
		anyErr = anyErr || p.Error != ""
	}
	rows := make([][]string, 0, len(d.Partitions))
	for _, p := range d.Partitions {
		row := []string{p.Topic, fmt.Sprint(p.Partition), num(p.CommittedOffset), num(p.LogEndOffset), num(p.Lag), dash(p.MemberID)}
		if anyErr {
			row = append(row, p.Error)
		}
		rows = append(rows, row)
	}
	header := []string{"TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER-ID"}
	if anyErr {
		header = append(header, "ERROR")
	}
	return clientopts.Table(w, header, rows)
}
