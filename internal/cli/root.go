// Package cli builds the sluice command tree; each noun lives in its own
// package with an Options struct and a run function.
package cli

import (
	"github.com/spf13/cobra"

	"github.com/sluice-io/sluice/internal/cli/backupcmd"
	"github.com/sluice-io/sluice/internal/cli/bench"
	"github.com/sluice-io/sluice/internal/cli/cluster"
	"github.com/sluice-io/sluice/internal/cli/consume"
	"github.com/sluice-io/sluice/internal/cli/group"
	"github.com/sluice-io/sluice/internal/cli/kv"
	"github.com/sluice-io/sluice/internal/cli/produce"
	"github.com/sluice-io/sluice/internal/cli/serve"
	"github.com/sluice-io/sluice/internal/cli/topic"
	"github.com/sluice-io/sluice/internal/cli/txn"
	versioncmd "github.com/sluice-io/sluice/internal/cli/version"
)

// Root returns the root command.
func Root() *cobra.Command {
	root := &cobra.Command{
		Use:   "sluice",
		Short: "A Kafka-compatible streaming platform in one binary",
		Long: `Sluice speaks the Kafka protocol: any Kafka client works against it unchanged.

Start a broker with data in ./sluice-data:
  sluice serve

The client commands (topic, produce, consume, cluster) reach the brokers in
--brokers, or $SLUICE_BROKERS, or 127.0.0.1:9092.`,
		Example: `  sluice serve
  sluice topic create demo --partitions 3
  seq 10 | sluice produce demo
  sluice consume demo --from-beginning --exit-at-end
  sluice cluster info`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serve.Command())
	root.AddCommand(bench.Command())
	root.AddCommand(kv.Command(), backupcmd.BackupCommand(), backupcmd.RestoreCommand())
	root.AddCommand(topic.Command(), produce.Command(), consume.Command(), cluster.Command(version), versioncmd.Command(version))
	root.AddCommand(group.Command())
	root.AddCommand(txn.Command())
	return root
}
