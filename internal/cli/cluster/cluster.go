// Package cluster is `sluice cluster`: what the brokers say about the
// cluster (brokers, controller, cluster id, the APIs they serve).
package cluster

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// Command returns `sluice cluster`; version is this binary's version.
func Command(version string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect the cluster",
		Example: `  sluice cluster info
  sluice cluster info -o json --brokers kafka1:9092`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(infoCommand(version))
	return cmd
}

// InfoOptions are the flags of `sluice cluster info`.
type InfoOptions struct {
	clientopts.Common
	Output  string
	Version string // this binary's version
}

func infoCommand(version string) *cobra.Command {
	o := InfoOptions{Version: version}
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show the brokers, controller, cluster id, log dirs and the APIs each broker serves",
		Long: `Show the cluster id, the controller, every broker, this sluice binary's version,
each broker's log directories with their state (KAFKA_STORAGE_ERROR when one is
offline or full) and sizes (DescribeLogDirs), and for each broker the Kafka APIs
it serves with their version ranges and the features it reports (ApiVersions).`,
		Example: `  sluice cluster info
  sluice cluster info -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			return RunInfo(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	clientopts.AddOutputFlag(cmd.Flags(), &o.Output)
	return cmd
}

// Info is what `cluster info -o json` prints.
type Info struct {
	ClusterID  string   `json:"cluster_id"`
	Controller int32    `json:"controller"`
	Version    string   `json:"sluice_version"` // of this binary
	Brokers    []Broker `json:"brokers"`
}

// Broker is one broker of Info.
type Broker struct {
	ID                int32     `json:"id"`
	Host              string    `json:"host"`
	Port              int32     `json:"port"`
	Rack              *string   `json:"rack"`
	APIs              []API     `json:"apis"`
	SupportedFeatures []Feature `json:"supported_features"`
	FinalizedFeatures []Feature `json:"finalized_features"`
	Error             string    `json:"error,omitempty"` // if its ApiVersions failed
	LogDirs           []LogDir  `json:"log_dirs"`
	LogDirsError      string    `json:"log_dirs_error,omitempty"` // if its DescribeLogDirs failed
}

// LogDir is a broker's log directory and its state (DescribeLogDirs).
type LogDir struct {
	Dir         string `json:"dir"`
	Error       string `json:"error,omitempty"` // KAFKA_STORAGE_ERROR: offline or full (see the broker's /readyz)
	TotalBytes  int64  `json:"total_bytes"`     // -1 if not reported
	UsableBytes int64  `json:"usable_bytes"`    // -1 if not reported
}

// API is an API key a broker serves and its version range.
type API struct {
	Key  int16  `json:"key"`
	Name string `json:"name"`
	Min  int16  `json:"min"`
	Max  int16  `json:"max"`
}

// Feature is a feature and its version range.
type Feature struct {
	Name string `json:"name"`
	Min  int16  `json:"min"`
	Max  int16  `json:"max"`
}

// RunInfo prints the cluster's description.
func RunInfo(ctx context.Context, o InfoOptions) error {
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
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	vs, err := adm.ApiVersions(ctx)
	if err != nil {
		return fmt.Errorf("api versions: %w", err)
	}
	// The directories alone: a topic that names no partition lists none.
	dirs, dirsErr := adm.DescribeAllLogDirs(ctx, kadm.TopicsSet{"": nil})
	info := Info{ClusterID: md.Cluster, Controller: md.Controller, Version: o.Version, Brokers: []Broker{}}
	for _, b := range md.Brokers {
		ib := Broker{ID: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack,
			APIs: []API{}, SupportedFeatures: []Feature{}, FinalizedFeatures: []Feature{}, LogDirs: []LogDir{}}
		ib.LogDirs, ib.LogDirsError = logDirsOf(dirs, dirsErr, b.NodeID)
		v, ok := vs[b.NodeID]
		switch {
		case !ok:
			ib.Error = "no ApiVersions answer"
		case v.Err != nil:
			ib.Error = v.Err.Error()
		default:
			v.EachKeySorted(func(key, lo, hi int16) {
				ib.APIs = append(ib.APIs, API{Key: key, Name: kmsg.NameForKey(key), Min: lo, Max: hi})
			})
			if raw := v.Raw(); raw != nil {
				for _, f := range raw.SupportedFeatures {
					ib.SupportedFeatures = append(ib.SupportedFeatures, Feature{Name: f.Name, Min: f.MinVersion, Max: f.MaxVersion})
				}
				for _, f := range raw.FinalizedFeatures {
					ib.FinalizedFeatures = append(ib.FinalizedFeatures, Feature{Name: f.Name, Min: f.MinVersionLevel, Max: f.MaxVersionLevel})
				}
			}
		}
		info.Brokers = append(info.Brokers, ib)
	}
	sort.Slice(info.Brokers, func(i, j int) bool { return info.Brokers[i].ID < info.Brokers[j].ID })
	if o.Output == clientopts.OutputJSON {
		return clientopts.JSON(o.Stdout(), info)
	}
	return printInfo(o, info)
}

// logDirsOf returns a broker's log directories, sorted, or why not.
func logDirsOf(all kadm.DescribedAllLogDirs, err error, broker int32) ([]LogDir, string) {
	out := []LogDir{}
	if err != nil && len(all) == 0 {
		return out, err.Error()
	}
	bd, ok := all[broker]
	if !ok {
		return out, "no DescribeLogDirs answer"
	}
	for _, d := range bd.Sorted() {
		ld := LogDir{Dir: d.Dir, TotalBytes: d.TotalBytes, UsableBytes: d.UsableBytes}
		if d.Err != nil {
			ld.Error = d.Err.Error()
		}
		out = append(out, ld)
	}
	return out, ""
}

func printInfo(o InfoOptions, info Info) error {
	w := o.Stdout()
	controller := "none"
	if info.Controller >= 0 {
		controller = fmt.Sprint(info.Controller)
	}
	if err := clientopts.Table(w, nil, [][]string{
		{"CLUSTER", info.ClusterID},
		{"CONTROLLER", controller},
		{"SLUICE-VERSION", info.Version + " (this binary)"},
	}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	rows := [][]string{}
	for _, b := range info.Brokers {
		id := fmt.Sprint(b.ID)
		if b.ID == info.Controller {
			id += "*"
		}
		rack := "-"
		if b.Rack != nil {
			rack = *b.Rack
		}
		rows = append(rows, []string{id, b.Host, fmt.Sprint(b.Port), rack})
	}
	if err := clientopts.Table(w, []string{"BROKER", "HOST", "PORT", "RACK"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "(* controller)")
	if err := printLogDirs(w, info.Brokers); err != nil {
		return err
	}
	for _, b := range info.Brokers {
		fmt.Fprintf(w, "\nAPIS OF BROKER %d\n", b.ID)
		if b.Error != "" {
			fmt.Fprintf(w, "error: %s\n", b.Error)
			continue
		}
		rows := [][]string{}
		for _, a := range b.APIs {
			rows = append(rows, []string{fmt.Sprint(a.Key), a.Name, fmt.Sprint(a.Min), fmt.Sprint(a.Max)})
		}
		if err := clientopts.Table(w, []string{"KEY", "NAME", "MIN", "MAX"}, rows); err != nil {
			return err
		}
		for _, fs := range []struct {
			what string
			fs   []Feature
		}{{"SUPPORTED FEATURES", b.SupportedFeatures}, {"FINALIZED FEATURES", b.FinalizedFeatures}} {
			if len(fs.fs) == 0 {
				fmt.Fprintf(w, "\n%s OF BROKER %d: none\n", fs.what, b.ID)
				continue
			}
			fmt.Fprintf(w, "\n%s OF BROKER %d\n", fs.what, b.ID)
			rows := [][]string{}
			for _, f := range fs.fs {
				rows = append(rows, []string{f.Name, fmt.Sprint(f.Min), fmt.Sprint(f.Max)})
			}
			if err := clientopts.Table(w, []string{"NAME", "MIN", "MAX"}, rows); err != nil {
				return err
			}
		}
	}
	return nil
}

// printLogDirs prints every broker's log directories and their state.
func printLogDirs(w io.Writer, brokers []Broker) error {
	rows := [][]string{}
	for _, b := range brokers {
		if b.LogDirsError != "" {
			rows = append(rows, []string{fmt.Sprint(b.ID), "-", "unknown: " + b.LogDirsError, "-", "-"})
		}
		for _, d := range b.LogDirs {
			state := "online"
			if d.Error != "" {
				state = d.Error
			}
			rows = append(rows, []string{fmt.Sprint(b.ID), d.Dir, state, bytesOrDash(d.TotalBytes), bytesOrDash(d.UsableBytes)})
		}
	}
	fmt.Fprintln(w, "\nLOG DIRS")
	return clientopts.Table(w, []string{"BROKER", "DIR", "STATE", "TOTAL-BYTES", "USABLE-BYTES"}, rows)
}

func bytesOrDash(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}
