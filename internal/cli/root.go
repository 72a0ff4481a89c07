// Package cli builds the sluice command tree; each noun lives in its own
// package with an Options struct and a run function.
package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-io/sluice/internal/cli/auditcmd"
	"github.com/sluice-io/sluice/internal/cli/backupcmd"
	"github.com/sluice-io/sluice/internal/cli/bench"
	"github.com/sluice-io/sluice/internal/cli/cluster"
	"github.com/sluice-io/sluice/internal/cli/collectcmd"
	"github.com/sluice-io/sluice/internal/cli/configcmd"
	"github.com/sluice-io/sluice/internal/cli/consume"
	"github.com/sluice-io/sluice/internal/cli/dev"
	"github.com/sluice-io/sluice/internal/cli/group"
	"github.com/sluice-io/sluice/internal/cli/kv"
	"github.com/sluice-io/sluice/internal/cli/mirrorcmd"
	"github.com/sluice-io/sluice/internal/cli/produce"
	"github.com/sluice-io/sluice/internal/cli/schema"
	"github.com/sluice-io/sluice/internal/cli/serve"
	"github.com/sluice-io/sluice/internal/cli/sinkcmd"
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

The client commands (topic, config, produce, consume, group, cluster, ...)
reach the brokers in --brokers (-b), or $SLUICE_BROKERS, or 127.0.0.1:9092.`,
		Example: `  sluice serve
  sluice topic create demo --partitions 3
  seq 10 | sluice produce demo
  sluice consume demo --from-beginning --exit-at-end
  sluice config describe topic demo --all
  sluice cluster info`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serve.Command())
	root.AddCommand(bench.Command())
	root.AddCommand(kv.Command(), backupcmd.BackupCommand(), backupcmd.RestoreCommand())
	root.AddCommand(topic.Command(), produce.Command(), consume.Command(), cluster.Command(version), versioncmd.Command(version))
	root.AddCommand(group.Command(), configcmd.Command())
	root.AddCommand(txn.Command())
	root.AddCommand(schema.Command())
	root.AddCommand(collectcmd.Command())
	root.AddCommand(mirrorcmd.Command())
	root.AddCommand(auditcmd.Command())
	root.AddCommand(sinkcmd.Command())
	root.AddCommand(dev.Command())
	root.InitDefaultCompletionCmd() // now rather than at Execute, so that the walk below sees it
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command group under c (c included)
// fail on a subcommand it does not have, with a suggestion, instead of
// cobra's help and exit status 0; a group named alone shows its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = unknownSubcommand
		c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	}
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
}

// unknownSubcommand is the Args of a command group: a group runs nothing of
// its own, so an argument can only be a subcommand it does not have.
func unknownSubcommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's own default for the root
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	var names []string
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	return fmt.Errorf("%s (its commands: %s; see `%s --help`)", msg, strings.Join(names, ", "), c.CommandPath())
}
