package topic

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/cli/cluster"
)

// AlterOptions are the flags of `sluice topic alter`.
type AlterOptions struct {
	cluster.ReassignOptions
	Topic             string
	ReplicationFactor int
}

func alterCommand() *cobra.Command {
	o := AlterOptions{}
	cmd := &cobra.Command{
		Use:   "alter NAME --replication-factor N",
		Short: "Change a topic's replication factor (its copies), throttled, with progress",
		Long: `Change how many copies each partition of a topic has, through a partition
reassignment (as 'sluice cluster reassign': --throttle, progress, --dry-run). More
copies go to the least loaded brokers, on racks the partition does not use yet, never to
a cordoned broker ('sluice cluster cordon'); fewer keep the in-sync replicas first, so
the preferred leader stays where it can. New copies join the in-sync replicas before
anything is removed.`,
		Example: `  sluice topic alter orders --replication-factor 3
  sluice topic alter orders --replication-factor 3 --throttle 50 --dry-run
  sluice topic alter clicks --replication-factor 1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic = args[0]
			return RunAlter(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	o.AddFlags(f)
	f.IntVar(&o.ReplicationFactor, "replication-factor", 0, "the new number of copies of each partition (required)")
	return cmd
}

// RunAlter runs `sluice topic alter`.
func RunAlter(ctx context.Context, o AlterOptions) error {
	if o.ReplicationFactor <= 0 {
		return fmt.Errorf("--replication-factor %d: give the new number of copies, at least 1", o.ReplicationFactor)
	}
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	md, err := adm.Metadata(ctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	var ids []int32
	for _, b := range md.Brokers {
		ids = append(ids, b.NodeID)
	}
	cordoned, err := cluster.CordonedBrokers(ctx, adm, ids)
	if err != nil {
		return err
	}
	plan, err := cluster.ReplicationFactorPlan(md, o.Topic, o.ReplicationFactor, cordoned)
	if err != nil {
		return err
	}
	return cluster.ApplyPlan(ctx, o.ReassignOptions, adm, plan)
}
