// Package group is `sluice group`: list, describe, reset the offsets of and
// delete consumer groups through the Kafka admin APIs (franz-go kadm).
package group

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// Command returns `sluice group` and its subcommands.
func Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "group",
		Aliases: []string{"groups"},
		Short:   "List, describe, reset the offsets of and delete consumer groups",
		Example: `  sluice group list
  sluice group describe orders-app
  sluice group reset-offsets orders-app --to-earliest --topic orders --dry-run
  sluice group delete orders-app`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(listCommand(), describeCommand(), resetCommand(), deleteCommand())
	return cmd
}

// Member is a member of a group and what it was assigned.
type Member struct {
	MemberID   string            `json:"member_id"`
	InstanceID *string           `json:"instance_id"` // static membership (group.instance.id), else null
	ClientID   string            `json:"client_id"`
	ClientHost string            `json:"client_host"`
	Assigned   []TopicPartitions `json:"assigned"`
}

// TopicPartitions are partitions of one topic.
type TopicPartitions struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// info is a group as DescribeGroups (classic) or ConsumerGroupDescribe
// (KIP-848) answered it.
type info struct {
	Group        string
	State        string
	ProtocolType string
	Protocol     string
	Coordinator  int32
	Members      []Member
}

func (g info) empty() bool {
	return len(g.Members) == 0 && (g.State == "Empty" || g.State == "Dead" || g.State == "")
}

// errNoGroup marks a group the coordinator does not know.
var errNoGroup = errors.New("group does not exist")

func missingGroup(group string) error {
	return fmt.Errorf("group %s does not exist; `sluice group list` shows the groups", group)
}

// describeGroups describes the groups: classic groups with DescribeGroups,
// and those that DescribeGroups refuses (KIP-848 consumer groups) with
// ConsumerGroupDescribe. A group that does not exist gets errNoGroup in
// errs; an error that stops every group is returned.
func describeGroups(ctx context.Context, adm *kadm.Client, groups ...string) (map[string]info, map[string]error, error) {
	out, errs := map[string]info{}, map[string]error{}
	if len(groups) == 0 {
		return out, errs, nil
	}
	described, err := adm.DescribeGroups(ctx, groups...)
	if err != nil && len(described) == 0 {
		return nil, nil, fmt.Errorf("describe groups: %w", explain(err))
	}
	var retry []string
	for _, name := range groups {
		d, ok := described[name]
		switch {
		case !ok:
			errs[name] = fmt.Errorf("describe group %s: %w", name, orNoAnswer(err))
		case errors.Is(d.Err, kerr.GroupIDNotFound):
			// Kafka 4 answers GROUP_ID_NOT_FOUND both for a group it does not
			// know and for a consumer (KIP-848) group described as classic.
			retry = append(retry, name)
		case d.Err != nil:
			errs[name] = fmt.Errorf("describe group %s: %w", name, clientopts.KafkaErr(d.Err, d.ErrMessage))
		default:
			g := info{Group: name, State: d.State, ProtocolType: d.ProtocolType, Protocol: d.Protocol, Coordinator: d.Coordinator.NodeID, Members: []Member{}}
			for _, m := range d.Members {
				mm := Member{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, ClientHost: m.ClientHost, Assigned: []TopicPartitions{}}
				if a, ok := m.Assigned.AsConsumer(); ok {
					set := kadm.TopicsSet{}
					for _, t := range a.Topics {
						set.Add(t.Topic, t.Partitions...)
					}
					mm.Assigned = topicPartitions(set)
				}
				g.Members = append(g.Members, mm)
			}
			out[name] = g
		}
	}
	if len(retry) == 0 {
		return out, errs, nil
	}
	cds, _ := adm.DescribeConsumerGroups(ctx, retry...)
	for _, name := range retry {
		d, ok := cds[name]
		if !ok || d.Err != nil {
			// Not a consumer group either (or ConsumerGroupDescribe is not
			// served): the group does not exist.
			errs[name] = errNoGroup
			continue
		}
		g := info{Group: name, State: d.State, ProtocolType: "consumer", Protocol: d.AssignorName, Coordinator: d.Coordinator.NodeID, Members: []Member{}}
		for _, m := range d.Members {
			g.Members = append(g.Members, Member{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID,
				ClientHost: m.ClientHost, Assigned: topicPartitions(m.Assignment)})
		}
		out[name] = g
	}
	return out, errs, nil
}

// explain adds what a "broker is too old" error means here.
func explain(err error) error {
	if err != nil && strings.Contains(err.Error(), "broker is too old") {
		return fmt.Errorf("%w (the broker does not serve this consumer group API)", err)
	}
	return err
}

func orNoAnswer(err error) error {
	if err == nil {
		return errors.New("no answer from the broker")
	}
	return err
}

// topicPartitions sorts a set by topic and partition.
func topicPartitions(s kadm.TopicsSet) []TopicPartitions {
	out := []TopicPartitions{}
	for _, tp := range s.Sorted() {
		out = append(out, TopicPartitions{Topic: tp.Topic, Partitions: tp.Partitions}) // sorted
	}
	return out
}

// ListOptions are the flags of `sluice group list`.
type ListOptions struct {
	clientopts.Common
	Output string
}

func listCommand() *cobra.Command {
	o := ListOptions{}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List consumer groups with their states, protocol types and member counts",
		Example: `  sluice group list
  sluice group list -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			return RunList(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	clientopts.AddOutputFlag(cmd.Flags(), &o.Output)
	return cmd
}

// ListedGroup is one group of `group list -o json`.
type ListedGroup struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Members      int    `json:"members"` // -1 if the group could not be described
}

// RunList prints every group, sorted by name.
func RunList(ctx context.Context, o ListOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("list groups: %w", explain(err))
	}
	described, _, err := describeGroups(ctx, adm, listed.Groups()...)
	if err != nil {
		return err
	}
	out := []ListedGroup{}
	for _, l := range listed.Sorted() {
		g := ListedGroup{Group: l.Group, State: l.State, ProtocolType: l.ProtocolType, Members: -1}
		if d, ok := described[l.Group]; ok {
			g.Members = len(d.Members)
			if g.State == "" {
				g.State = d.State // ListGroups before v4 has no state
			}
		}
		out = append(out, g)
	}
	if o.Output == clientopts.OutputJSON {
		return clientopts.JSON(o.Stdout(), out)
	}
	rows := make([][]string, 0, len(out))
	for _, g := range out {
		rows = append(rows, []string{g.Group, dash(g.State), dash(g.ProtocolType), num(int64(g.Members))})
	}
	return clientopts.Table(o.Stdout(), []string{"GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"}, rows)
}

// DeleteOptions are the flags of `sluice group delete`.
type DeleteOptions struct {
	clientopts.Common
	Groups []string
}

func deleteCommand() *cobra.Command {
	o := DeleteOptions{}
	cmd := &cobra.Command{
		Use:     "delete GROUP...",
		Aliases: []string{"rm"},
		Short:   "Delete consumer groups and their committed offsets",
		Long: `Delete consumer groups and every offset they committed. A group can only be
deleted while it has no members: stop its consumers first.`,
		Example: `  sluice group delete orders-app
  sluice group delete orders-app billing-app`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Groups = args
			return RunDelete(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	return cmd
}

// RunDelete deletes the groups, printing one line for each deleted; it
// fails if any could not be deleted.
func RunDelete(ctx context.Context, o DeleteOptions) error {
	if len(o.Groups) == 0 {
		return errors.New("name the groups to delete")
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	resps, err := adm.DeleteGroups(ctx, o.Groups...)
	if err != nil && len(resps) == 0 {
		return fmt.Errorf("delete groups: %w", explain(err))
	}
	var errs []error
	for _, name := range o.Groups {
		r, ok := resps[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("delete group %s: %w", name, orNoAnswer(err)))
		case errors.Is(r.Err, kerr.GroupIDNotFound):
			errs = append(errs, fmt.Errorf("group %s does not exist (GROUP_ID_NOT_FOUND); `sluice group list` shows the groups", name))
		case errors.Is(r.Err, kerr.NonEmptyGroup):
			errs = append(errs, fmt.Errorf("group %s still has members (NON_EMPTY_GROUP): a group can only be deleted once it is empty; "+
				"stop its consumers (`sluice group describe %s` lists them) or wait for their session timeout, then delete it again", name, name))
		case r.Err != nil:
			errs = append(errs, fmt.Errorf("delete group %s: %w", name, clientopts.KafkaErr(r.Err, r.ErrMessage)))
		default:
			fmt.Fprintf(o.Stdout(), "deleted group %s\n", name)
		}
	}
	return errors.Join(errs...)
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

// assignedString prints assignments as orders:0,1 events:2.
func assignedString(tps []TopicPartitions) string {
	if len(tps) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(tps))
	for _, tp := range tps {
		parts = append(parts, tp.Topic+":"+clientopts.Int32s(tp.Partitions))
	}
	return strings.Join(parts, " ")
}

// memberNames lists members as client-id@host, for messages.
func memberNames(ms []Member) string {
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		names = append(names, m.ClientID+"@"+strings.TrimPrefix(m.ClientHost, "/"))
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
