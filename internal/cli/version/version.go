// Package version is `sluice version`.
package version

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"
)

// Options are the inputs of `sluice version`.
type Options struct {
	Version string // this binary's version
	Out     io.Writer
}

// Command returns `sluice version`; version is this binary's version.
func Command(version string) *cobra.Command {
	o := Options{Version: version}
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this sluice binary",
		Long: `Print the version of this sluice binary, the Go version it was built with and
its platform. Release builds set the version with
-ldflags "-X github.com/sluice-io/sluice/internal/cli.version=v1.2.3"; others say dev.`,
		Example: `  sluice version`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			return Run(cmd.Context(), o)
		},
	}
}

// Run prints the version line.
func Run(_ context.Context, o Options) error {
	_, err := fmt.Fprintf(o.Out, "sluice %s (%s, %s/%s)\n", o.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
