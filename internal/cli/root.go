// Package cli builds the sluice command tree; each noun lives in its own
// package with an Options struct and a run function.
package cli

import (
	"github.com/spf13/cobra"

	"github.com/sluice-io/sluice/internal/cli/serve"
)

// Root returns the root command.
func Root() *cobra.Command {
	root := &cobra.Command{
		Use:   "sluice",
		Short: "A Kafka-compatible streaming platform in one binary",
		Long: `Sluice speaks the Kafka protocol: any Kafka client works against it unchanged.

Start a broker with data in ./sluice-data:
  sluice serve`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serve.Command())
	return root
}
