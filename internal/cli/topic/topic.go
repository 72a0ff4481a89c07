// Package topic is `sluice topic`: create, list, describe, alter and delete
// topics through the Kafka admin APIs (franz-go kadm).
package topic

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/cli/configcmd"
)

// Command returns `sluice topic` and its subcommands.
func Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Create, list, describe, alter and delete topics",
		Example: `  sluice topic create orders --partitions 6 -c retention.ms=86400000
  sluice topic list
  sluice topic describe orders -o json
  sluice topic alter-config orders -c retention.ms=3600000 --delete cleanup.policy
  sluice topic add-partitions orders --num 2
  sluice topic alter orders --replication-factor 3
  sluice topic delete orders`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(createCommand(), listCommand(), describeCommand(), deleteCommand(),
		alterConfigCommand(), addPartitionsCommand(), alterCommand())
	return cmd
}

// CreateOptions are the flags of `sluice topic create`.
type CreateOptions struct {
	clientopts.Common
	Topics     []string
	Partitions int32    // -1: the broker's num.partitions
	Replicas   int16    // -1: the broker's default.replication.factor
	Configs    []string // key=value topic configs
}

func createCommand() *cobra.Command {
	o := CreateOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME...",
		Short: "Create topics",
		Long: `Create one or more topics. Without --partitions and --replicas the broker's
num.partitions and default.replication.factor apply; -c sets any topic config
by its Kafka name.`,
		Example: `  sluice topic create orders
  sluice topic create orders --partitions 6 --replicas 1
  sluice topic create events -p 3 -c retention.ms=86400000 -c cleanup.policy=compact`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topics = args
			return RunCreate(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	f.Int32VarP(&o.Partitions, "partitions", "p", -1, "number of partitions; -1: the broker's num.partitions")
	f.Int16VarP(&o.Replicas, "replicas", "r", -1, "replication factor; -1: the broker's default.replication.factor")
	f.StringArrayVarP(&o.Configs, "config", "c", nil, "topic config key=value, repeatable")
	return cmd
}

// RunCreate creates the topics and prints one line for each.
func RunCreate(ctx context.Context, o CreateOptions) error {
	if len(o.Topics) == 0 {
		return errors.New("name the topic to create")
	}
	if o.Partitions == 0 || o.Partitions < -1 {
		return fmt.Errorf("--partitions %d: must be at least 1", o.Partitions)
	}
	if o.Replicas == 0 || o.Replicas < -1 {
		return fmt.Errorf("--replicas %d: must be at least 1", o.Replicas)
	}
	configs := map[string]*string{}
	for _, kv := range o.Configs {
		k, v, err := clientopts.ParseKV("-c", kv)
		if err != nil {
			return err
		}
		configs[k] = kmsg.StringPtr(v)
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	resps, err := adm.CreateTopics(ctx, o.Partitions, o.Replicas, configs, o.Topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var errs []error
	for _, name := range o.Topics {
		r, ok := resps[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("create topic %s: no answer from the broker", name))
		case r.Err != nil:
			errs = append(errs, fmt.Errorf("create topic %s: %w", name, clientopts.KafkaErr(r.Err, r.ErrMessage)))
		default:
			fmt.Fprintf(o.Stdout(), "created topic %s (%s, replication factor %d)\n", name,
				clientopts.Count(r.NumPartitions, "partition", "partitions"), r.ReplicationFactor)
		}
	}
	return errors.Join(errs...)
}

// ListOptions are the flags of `sluice topic list`.
type ListOptions struct {
	clientopts.Common
	Output string
}

func listCommand() *cobra.Command {
	o := ListOptions{}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List topics with their partition counts and replication factors",
		Example: `  sluice topic list
  sluice topic list -o json
  SLUICE_BROKERS=kafka1:9092 sluice topic list`,
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

type listedTopic struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	Partitions int    `json:"partitions"`
	Replicas   int    `json:"replicas"`
}

// RunList prints every topic, sorted by name.
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
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	out := []listedTopic{}
	for _, td := range tds.Sorted() {
		if td.Err != nil {
			return fmt.Errorf("topic %s: %w", td.Topic, td.Err)
		}
		out = append(out, listedTopic{Name: td.Topic, ID: clientopts.TopicID(td.ID), Partitions: len(td.Partitions), Replicas: td.Partitions.NumReplicas()})
	}
	if o.Output == clientopts.OutputJSON {
		return clientopts.JSON(o.Stdout(), out)
	}
	rows := make([][]string, 0, len(out))
	for _, t := range out {
		rows = append(rows, []string{t.Name, fmt.Sprint(t.Partitions), fmt.Sprint(t.Replicas)})
	}
	return clientopts.Table(o.Stdout(), []string{"NAME", "PARTITIONS", "REPLICAS"}, rows)
}

// DeleteOptions are the flags of `sluice topic delete`.
type DeleteOptions struct {
	clientopts.Common
	Topics []string
}

func deleteCommand() *cobra.Command {
	o := DeleteOptions{}
	cmd := &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete topics and all their records",
		Example: `  sluice topic delete orders
  sluice topic delete orders payments`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topics = args
			return RunDelete(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	return cmd
}

// RunDelete deletes the topics, printing one line for each deleted; it
// fails if any could not be deleted.
func RunDelete(ctx context.Context, o DeleteOptions) error {
	if len(o.Topics) == 0 {
		return errors.New("name the topics to delete")
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	resps, err := adm.DeleteTopics(ctx, o.Topics...)
	if err != nil {
		return fmt.Errorf("delete topics: %w", err)
	}
	var errs []error
	for _, name := range o.Topics {
		r, ok := resps[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("delete topic %s: no answer from the broker", name))
		case errors.Is(r.Err, kerr.UnknownTopicOrPartition):
			errs = append(errs, fmt.Errorf("topic %s does not exist", name))
		case r.Err != nil:
			errs = append(errs, fmt.Errorf("delete topic %s: %w", name, clientopts.KafkaErr(r.Err, r.ErrMessage)))
		default:
			fmt.Fprintf(o.Stdout(), "deleted topic %s\n", name)
		}
	}
	return errors.Join(errs...)
}

// AlterConfigOptions are the flags of `sluice topic alter-config`.
type AlterConfigOptions struct {
	clientopts.Common
	Topic  string
	Set    []string // key=value
	Delete []string // keys to return to their default
}

func alterConfigCommand() *cobra.Command {
	o := AlterConfigOptions{}
	cmd := &cobra.Command{
		Use:   "alter-config NAME",
		Short: "Set or delete a topic's configs (IncrementalAlterConfigs)",
		Long: `Set topic configs with -c key=value and return them to their defaults with
--delete key. Configs not named are left as they are. A --delete of a config
that is not set on the topic fails the command, changing nothing (as
kafka-configs.sh does). sluice config alter does the same for brokers too.`,
		Example: `  sluice topic alter-config orders -c retention.ms=3600000
  sluice topic alter-config orders -c cleanup.policy=compact -c min.cleanable.dirty.ratio=0.1
  sluice topic alter-config orders --delete retention.ms`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic = args[0]
			return RunAlterConfig(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	f.StringArrayVarP(&o.Set, "config", "c", nil, "topic config key=value to set, repeatable")
	f.StringArrayVar(&o.Delete, "delete", nil, "topic config to return to its default, repeatable")
	return cmd
}

// RunAlterConfig applies the changes in one IncrementalAlterConfigs
// request; a --delete of a config not set on the topic fails it before
// anything changes (see configcmd.Alter).
func RunAlterConfig(ctx context.Context, o AlterConfigOptions) error {
	ch, err := configcmd.ParseChanges(o.Set, "-c", o.Delete)
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
	if err := configcmd.Alter(ctx, adm, configcmd.Topic(o.Topic), ch); err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout(), "altered topic %s: %s\n", o.Topic, ch)
	return nil
}

// AddPartitionsOptions are the flags of `sluice topic add-partitions`.
type AddPartitionsOptions struct {
	clientopts.Common
	Topic string
	Num   int // partitions to add
}

func addPartitionsCommand() *cobra.Command {
	o := AddPartitionsOptions{}
	cmd := &cobra.Command{
		Use:   "add-partitions NAME --num N",
		Short: "Add N partitions to a topic",
		Long: `Add --num partitions to a topic (CreatePartitions). Partitions can only be
added: keys hash to different partitions afterwards.`,
		Example: `  sluice topic add-partitions orders --num 3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic = args[0]
			return RunAddPartitions(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	f.IntVar(&o.Num, "num", 0, "number of partitions to add (required)")
	return cmd
}

// RunAddPartitions adds o.Num partitions to the topic.
func RunAddPartitions(ctx context.Context, o AddPartitionsOptions) error {
	if o.Num <= 0 {
		return fmt.Errorf("--num %d: give the number of partitions to add, at least 1", o.Num)
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	tds, err := adm.ListTopics(ctx, o.Topic)
	if err != nil {
		return fmt.Errorf("describe %s: %w", o.Topic, err)
	}
	if !tds.Has(o.Topic) {
		return clientopts.MissingTopic(o.Topic)
	}
	before := len(tds[o.Topic].Partitions)
	resps, err := adm.CreatePartitions(ctx, o.Num, o.Topic)
	if err != nil {
		return fmt.Errorf("add partitions to %s: %w", o.Topic, err)
	}
	r, ok := resps[o.Topic]
	if !ok {
		return fmt.Errorf("add partitions to %s: no answer from the broker", o.Topic)
	}
	if errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
		return clientopts.MissingTopic(o.Topic)
	}
	if r.Err != nil {
		return fmt.Errorf("add partitions to %s: %w", o.Topic, clientopts.KafkaErr(r.Err, r.ErrMessage))
	}
	fmt.Fprintf(o.Stdout(), "added %s to topic %s: %d -> %d\n", clientopts.Count(o.Num, "partition", "partitions"), o.Topic, before, before+o.Num)
	return nil
}

// sortedConfigs sorts configs by key.
func sortedConfigs(cs []kadm.Config) []kadm.Config {
	out := append([]kadm.Config(nil), cs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
