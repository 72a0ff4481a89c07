package topic

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// DescribeOptions are the flags of `sluice topic describe`.
type DescribeOptions struct {
	clientopts.Common
	Topic  string
	Output string
}

func describeCommand() *cobra.Command {
	o := DescribeOptions{}
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a topic's partitions, offsets, size on disk and non-default configs",
		Long: `Show a topic: each partition's leader, replicas, in-sync replicas, log start
and end offsets and size on disk, and the configs whose value does not come
from the default (set on the topic, or on the broker).`,
		Example: `  sluice topic describe orders
  sluice topic describe orders -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic = args[0]
			return RunDescribe(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	clientopts.AddOutputFlag(cmd.Flags(), &o.Output)
	return cmd
}

// DescribedTopic is what `topic describe -o json` prints.
type DescribedTopic struct {
	Name       string               `json:"name"`
	ID         string               `json:"id"`
	Replicas   int                  `json:"replication_factor"`
	SizeBytes  int64                `json:"size_bytes"`
	Partitions []DescribedPartition `json:"partitions"`
	Configs    []DescribedConfig    `json:"configs"`
}

// DescribedPartition is one partition of a DescribedTopic.
type DescribedPartition struct {
	Partition      int32   `json:"partition"`
	Leader         int32   `json:"leader"`
	LeaderEpoch    int32   `json:"leader_epoch"`
	Replicas       []int32 `json:"replicas"`
	ISR            []int32 `json:"isr"`
	LogStartOffset int64   `json:"log_start_offset"`
	LogEndOffset   int64   `json:"log_end_offset"`
	SizeBytes      int64   `json:"size_bytes"` // -1 if no broker reported it
	// StorageError: the leader cannot store the partition (its log dir is
	// offline or full, or the replica is offline); produce requests get
	// KAFKA_STORAGE_ERROR.
	StorageError string `json:"storage_error,omitempty"`
	Error        string `json:"error,omitempty"`
}

// DescribedConfig is a config that does not have its default value.
type DescribedConfig struct {
	Key       string  `json:"key"`
	Value     *string `json:"value"` // null if sensitive
	Source    string  `json:"source"`
	Sensitive bool    `json:"sensitive,omitempty"`
}

// RunDescribe prints the topic.
func RunDescribe(ctx context.Context, o DescribeOptions) error {
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
	d, err := describe(ctx, adm, o.Topic)
	if err != nil {
		return err
	}
	if o.Output == clientopts.OutputJSON {
		return clientopts.JSON(o.Stdout(), d)
	}
	return printDescribed(o, d)
}

func describe(ctx context.Context, adm *kadm.Client, topic string) (*DescribedTopic, error) {
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", topic, err)
	}
	if !tds.Has(topic) {
		return nil, clientopts.MissingTopic(topic)
	}
	td := tds[topic]
	if td.Err != nil {
		return nil, fmt.Errorf("describe %s: %w", topic, td.Err)
	}
	// A broker that is down (not yet fenced) or just gone does not
	// answer: the offsets of what it leads and the sizes of its replicas
	// are unknown (each such partition says so), the rest is shown.
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err = partialOK(err); err != nil {
		return nil, fmt.Errorf("log start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err = partialOK(err); err != nil {
		return nil, fmt.Errorf("log end offsets of %s: %w", topic, err)
	}
	dirs, err := adm.DescribeAllLogDirs(ctx, tds.TopicsSet())
	if err = partialOK(err); err != nil {
		return nil, fmt.Errorf("log dirs of %s: %w", topic, err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("configs of %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, clientopts.MissingTopic(topic)
	}
	if err != nil {
		return nil, fmt.Errorf("configs of %s: %w", topic, clientopts.KafkaErr(err, rc.ErrMessage))
	}

	d := &DescribedTopic{Name: topic, ID: clientopts.TopicID(td.ID), Replicas: td.Partitions.NumReplicas(),
		Partitions: []DescribedPartition{}, Configs: []DescribedConfig{}}
	for _, pd := range td.Partitions.Sorted() {
		p := DescribedPartition{Partition: pd.Partition, Leader: pd.Leader, LeaderEpoch: pd.LeaderEpoch,
			Replicas: nonNil(pd.Replicas), ISR: nonNil(pd.ISR), LogStartOffset: -1, LogEndOffset: -1, SizeBytes: -1}
		var perrs []error
		if pd.Err != nil {
			perrs = append(perrs, pd.Err)
		}
		if lo, ok := starts.Lookup(topic, pd.Partition); ok {
			if lo.Err != nil {
				perrs = append(perrs, fmt.Errorf("log start offset: %w", lo.Err))
			} else {
				p.LogStartOffset = lo.Offset
			}
		}
		if lo, ok := ends.Lookup(topic, pd.Partition); ok {
			if lo.Err != nil {
				perrs = append(perrs, fmt.Errorf("log end offset: %w", lo.Err))
			} else {
				p.LogEndOffset = lo.Offset
			}
		} else if pd.Err == nil {
			perrs = append(perrs, fmt.Errorf("its leader, broker %d, did not answer", pd.Leader))
		}
		p.SizeBytes = partitionSize(dirs, topic, pd)
		p.StorageError = storageError(dirs, topic, pd)
		if p.SizeBytes > 0 {
			d.SizeBytes += p.SizeBytes
		}
		if err := errors.Join(perrs...); err != nil {
			p.Error = err.Error()
		}
		d.Partitions = append(d.Partitions, p)
	}
	for _, c := range sortedConfigs(rc.Configs) {
		if c.Source == kmsg.ConfigSourceDefaultConfig {
			continue
		}
		d.Configs = append(d.Configs, DescribedConfig{Key: c.Key, Value: c.Value, Source: c.Source.String(), Sensitive: c.Sensitive})
	}
	return d, nil
}

// partialOK drops a sharded request's error when only some brokers
// failed (their part of the answer is missing); other errors stay.
func partialOK(err error) error {
	var se *kadm.ShardErrors
	if errors.As(err, &se) && !se.AllFailed {
		return nil
	}
	return err
}

// partitionSize is the size of the leader's replica, else the largest
// replica reported; -1 if none is.
func partitionSize(dirs kadm.DescribedAllLogDirs, topic string, pd kadm.PartitionDetail) int64 {
	size := int64(-1)
	for broker, bd := range dirs {
		for _, dir := range bd {
			if dir.Err != nil {
				continue
			}
			dp, ok := dir.Topics.Lookup(topic, pd.Partition)
			if !ok {
				continue
			}
			if broker == pd.Leader {
				return dp.Size
			}
			size = max(size, dp.Size)
		}
	}
	return size
}

// storageError says why the leader cannot store the partition, if it
// says so: the log dir holding it (or, when a dir in error lists no
// partitions, as Kafka's offline dirs, any of the leader's) reports an
// error (KAFKA_STORAGE_ERROR: offline or full), or the metadata lists the
// leader's replica as offline.
func storageError(dirs kadm.DescribedAllLogDirs, topic string, pd kadm.PartitionDetail) string {
	for _, dir := range dirs[pd.Leader].Sorted() {
		if dir.Err == nil {
			continue
		}
		if _, ok := dir.Topics.Lookup(topic, pd.Partition); ok || len(dir.Topics) == 0 {
			name := dir.Err.Error()
			var ke *kerr.Error
			if errors.As(dir.Err, &ke) {
				name = ke.Message
			}
			return fmt.Sprintf("%s (log dir %s)", name, dir.Dir)
		}
	}
	if slices.Contains(pd.OfflineReplicas, pd.Leader) {
		return "leader replica offline"
	}
	return ""
}

func nonNil(s []int32) []int32 {
	if s == nil {
		return []int32{}
	}
	return s
}

func printDescribed(o DescribeOptions, d *DescribedTopic) error {
	w := o.Stdout()
	if err := clientopts.Table(w, nil, [][]string{
		{"NAME", d.Name},
		{"ID", d.ID},
		{"PARTITIONS", fmt.Sprint(len(d.Partitions))},
		{"REPLICATION-FACTOR", fmt.Sprint(d.Replicas)},
		{"SIZE", clientopts.Count(d.SizeBytes, "byte", "bytes")},
	}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(d.Configs) == 0 {
		fmt.Fprintln(w, "CONFIGS: every config has its default value")
	} else {
		rows := make([][]string, 0, len(d.Configs))
		for _, c := range d.Configs {
			v := "(sensitive)"
			if c.Value != nil {
				v = *c.Value
			} else if !c.Sensitive {
				v = "(null)"
			}
			rows = append(rows, []string{c.Key, v, c.Source})
		}
		if err := clientopts.Table(w, []string{"CONFIG", "VALUE", "SOURCE"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(d.Partitions))
	anyErr, anyStorage := false, false
	for _, p := range d.Partitions {
		anyErr = anyErr || p.Error != ""
		anyStorage = anyStorage || p.StorageError != ""
	}
	for _, p := range d.Partitions {
		row := []string{fmt.Sprint(p.Partition), fmt.Sprint(p.Leader), fmt.Sprint(p.LeaderEpoch),
			clientopts.Int32s(p.Replicas), clientopts.Int32s(p.ISR),
			offset(p.LogStartOffset), offset(p.LogEndOffset), offset(p.SizeBytes)}
		if anyStorage {
			storage := "ok"
			if p.StorageError != "" {
				storage = p.StorageError
			}
			row = append(row, storage)
		}
		if anyErr {
			row = append(row, p.Error)
		}
		rows = append(rows, row)
	}
	header := []string{"PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START", "LOG-END", "SIZE"}
	if anyStorage {
		header = append(header, "STORAGE")
	}
	if anyErr {
		header = append(header, "ERROR")
	}
	return clientopts.Table(w, header, rows)
}

// offset prints n, or - when unknown (-1).
func offset(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}
