// Package cluster is `sluice cluster`: what the brokers say about the
// cluster (brokers, controller, cluster id, the APIs they serve).
package cluster

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
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
	cmd.AddCommand(infoCommand(version), reassignCommand(), drainCommand(), unregisterCommand(), balanceCommand(),
		cordonCommand(), undrainCommand())
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
		Long: `Show the cluster id, the controller, every broker (and whether it is cordoned: it
takes no new partition replicas, see 'sluice cluster cordon'), this sluice binary's
version, each broker's log directories with their state (KAFKA_STORAGE_ERROR when one
is offline or full) and sizes (DescribeLogDirs), and for each broker the Kafka APIs
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
	Quorum     *Quorum  `json:"quorum"`
}

// Quorum is the metadata quorum (DescribeQuorum): its leader (the active
// controller), term, commit index, and each voter's applied offset and lag.
type Quorum struct {
	Leader      int32   `json:"leader"`
	Term        int32   `json:"term"`
	CommitIndex int64   `json:"commit_index"`
	Voters      []Voter `json:"voters"`
	// Observers are the broker-only nodes (process.roles=broker), which
	// follow the log without voting.
	Observers []Voter `json:"observers"`
	Error     string  `json:"error,omitempty"`
}

// Voter is one voter of Quorum.
type Voter struct {
	ID int32 `json:"id"`
	// Applied is the last metadata offset its broker reported applying
	// (-1: not reported); Lag is CommitIndex minus it.
	Applied int64 `json:"applied"`
	Lag     int64 `json:"lag"`
	// SinceMs is how long ago it last reported (-1: never).
	SinceMs int64 `json:"since_ms"`
}

// describeQuorum asks for the metadata quorum's state.
func describeQuorum(ctx context.Context, cl *kgo.Client) *Quorum {
	req := kmsg.NewPtrDescribeQuorumRequest()
	rt := kmsg.NewDescribeQuorumRequestTopic()
	rt.Topic = "__cluster_metadata"
	rt.Partitions = []kmsg.DescribeQuorumRequestTopicPartition{{Partition: 0}}
	req.Topics = []kmsg.DescribeQuorumRequestTopic{rt}
	q := &Quorum{Voters: []Voter{}, Observers: []Voter{}}
	resp, err := req.RequestWith(ctx, cl)
	switch {
	case err != nil:
		q.Error = err.Error()
		return q
	case resp.ErrorCode != 0:
		q.Error = kerr.ErrorForCode(resp.ErrorCode).Error()
		return q
	case len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1:
		q.Error = "no quorum in the answer"
		return q
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		q.Error = kerr.ErrorForCode(p.ErrorCode).Error()
		return q
	}
	q.Leader, q.Term, q.CommitIndex = p.LeaderID, p.LeaderEpoch, p.HighWatermark
	now := time.Now().UnixMilli()
	member := func(v kmsg.DescribeQuorumResponseTopicPartitionReplicaState) Voter {
		vv := Voter{ID: v.ReplicaID, Applied: v.LogEndOffset, Lag: -1, SinceMs: -1}
		if v.LogEndOffset >= 0 {
			vv.Lag = max(p.HighWatermark-v.LogEndOffset, 0)
		}
		if v.LastFetchTimestamp >= 0 {
			vv.SinceMs = max(now-v.LastFetchTimestamp, 0)
		}
		return vv
	}
	for _, v := range p.CurrentVoters {
		q.Voters = append(q.Voters, member(v))
	}
	for _, v := range p.Observers {
		q.Observers = append(q.Observers, member(v))
	}
	sort.Slice(q.Voters, func(i, j int) bool { return q.Voters[i].ID < q.Voters[j].ID })
	sort.Slice(q.Observers, func(i, j int) bool { return q.Observers[i].ID < q.Observers[j].ID })
	return q
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
	// Cordoned: the broker takes no new partition replicas (KIP-1066's
	// cordoned.log.dirs=*, as it reports it).
	Cordoned      bool   `json:"cordoned"`
	CordonedError string `json:"cordoned_error,omitempty"` // if its DescribeConfigs failed
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
	cl, _, err := o.Connect(ctx, nil)
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(o.Wait().Milliseconds()))
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
	// Asked of each broker by id: kgo sends a request naming no partition
	// to one broker only.
	dirs := kadm.DescribedAllLogDirs{}
	var dirsErr error
	for _, b := range md.Brokers {
		d, err := adm.DescribeBrokerLogDirs(ctx, b.NodeID, kadm.TopicsSet{"": nil})
		if err != nil {
			dirsErr = err
			continue
		}
		dirs[b.NodeID] = d
	}
	info := Info{ClusterID: md.Cluster, Controller: md.Controller, Version: o.Version, Brokers: []Broker{}}
	for _, b := range md.Brokers {
		ib := Broker{ID: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack,
			APIs: []API{}, SupportedFeatures: []Feature{}, FinalizedFeatures: []Feature{}, LogDirs: []LogDir{}}
		ib.LogDirs, ib.LogDirsError = logDirsOf(dirs, dirsErr, b.NodeID)
		if c, err := brokerCordon(ctx, adm, b.NodeID); err != nil {
			ib.CordonedError = err.Error()
		} else {
			ib.Cordoned = c.cordoned
		}
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
	info.Quorum = describeQuorum(ctx, cl)
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
		cordoned := "-"
		switch {
		case b.CordonedError != "":
			cordoned = "unknown: " + b.CordonedError
		case b.Cordoned:
			cordoned = "yes"
		}
		rows = append(rows, []string{id, b.Host, fmt.Sprint(b.Port), rack, cordoned})
	}
	if err := clientopts.Table(w, []string{"BROKER", "HOST", "PORT", "RACK", "CORDONED"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "(* controller; cordoned: takes no new partition replicas, see sluice cluster undrain)")
	if q := info.Quorum; q != nil {
		fmt.Fprintln(w, "\nMETADATA QUORUM")
		if q.Error != "" {
			fmt.Fprintf(w, "unknown: %s\n", q.Error)
		} else {
			fmt.Fprintf(w, "leader %d, term %d, commit index %d\n", q.Leader, q.Term, q.CommitIndex)
			rowsOf := func(vs []Voter) [][]string {
				rows := [][]string{}
				for _, v := range vs {
					applied, lag, since := "-", "-", "-"
					if v.Applied >= 0 {
						applied, lag = fmt.Sprint(v.Applied), fmt.Sprint(v.Lag)
					}
					if v.SinceMs >= 0 {
						since = fmt.Sprintf("%dms ago", v.SinceMs)
					}
					rows = append(rows, []string{fmt.Sprint(v.ID), applied, lag, since})
				}
				return rows
			}
			if err := clientopts.Table(w, []string{"VOTER", "APPLIED", "LAG", "LAST-HEARTBEAT"}, rowsOf(q.Voters)); err != nil {
				return err
			}
			if len(q.Observers) > 0 {
				fmt.Fprintln(w)
				if err := clientopts.Table(w, []string{"OBSERVER", "APPLIED", "LAG", "LAST-HEARTBEAT"}, rowsOf(q.Observers)); err != nil {
					return err
				}
			}
		}
	}
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
