package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// Reassignment progress.
const (
	// progressInterval is how often a waiting reassign reports progress.
	progressInterval = time.Second
	// metadataPoll is how often a finished reassign re-reads Metadata until
	// it shows the new placement.
	metadataPoll = 50 * time.Millisecond
	// bytesPerMB is the unit of --throttle (as Kafka's tool, decimal).
	bytesPerMB = 1_000_000
)

// ReassignOptions are the flags of `sluice cluster reassign` (and of
// drain, which fills BrokerList itself).
type ReassignOptions struct {
	clientopts.Common
	Output     string
	Plan       string  // a plan file in Kafka's reassignment JSON
	Topics     string  // regexp of the topics to move
	BrokerList []int32 // the brokers they may use
	Throttle   float64 // MB/s; 0: none
	DryRun     bool
	NoWait     bool
	Cancel     bool
	Status     bool
	// Sample is how long balance measures byte rates (0: disk use only).
	Sample time.Duration
}

func reassignCommand() *cobra.Command {
	o := ReassignOptions{}
	var brokers string
	cmd := &cobra.Command{
		Use:   "reassign",
		Short: "Move partition replicas between brokers, throttled, with progress",
		Long: `Move the replicas of partitions to other brokers (Kafka's AlterPartitionReassignments):

  --topics REGEX --broker-list 1,2,4   moves the matching topics' replicas onto those
                                       brokers, moving as few replicas as it can (replicas
                                       already on an allowed broker stay), spreading the new
                                       ones over the least loaded brokers and over racks
  --plan FILE                          applies a plan in the JSON of Kafka's
                                       kafka-reassign-partitions tool (--dry-run -o json
                                       writes one to start from)

It prints the plan, applies it and shows progress (bytes copied to the new replicas,
rate, ETA) until every partition has moved; the new replicas copy the log from their
leader, join the in-sync replicas, and only then does the old replica go and, where the
first replica changed, the leadership move. Ctrl-C stops watching, not the move:
--status shows it again, --cancel takes the partitions back to their old replicas.

--throttle MB/s limits the copying (leader.replication.throttled.rate and
follower.replication.throttled.rate, with the moving replicas listed in the topics'
*.replication.throttled.replicas); the throttle is removed when the move is done, or by
--status once nothing is moving.

--broker-list is obeyed as given, even where it names a cordoned broker (see 'sluice
cluster cordon'), as Kafka obeys an explicit assignment; drain and balance leave
cordoned brokers out by themselves.`,
		Example: `  sluice cluster reassign --topics 'orders|payments' --broker-list 1,2,4 --dry-run
  sluice cluster reassign --topics '.*' --broker-list 1,2,3,4 --throttle 50
  sluice cluster reassign --dry-run -o json --topics orders --broker-list 2,3,4 > plan.json
  sluice cluster reassign --plan plan.json
  sluice cluster reassign --status
  sluice cluster reassign --cancel --topics orders`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			if brokers != "" {
				ids, err := parseIDs(brokers)
				if err != nil {
					return fmt.Errorf("--broker-list %q: %w", brokers, err)
				}
				o.BrokerList = ids
			}
			return RunReassign(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	o.AddFlags(f)
	f.StringVar(&o.Plan, "plan", "", "a plan file (Kafka's reassignment JSON) to apply")
	f.StringVar(&o.Topics, "topics", "", "regular expression of the topics to move (whole name)")
	f.StringVar(&brokers, "broker-list", "", "comma-separated ids of the brokers the topics may use")
	f.BoolVar(&o.Cancel, "cancel", false, "cancel the reassignments under way (of --topics, else all)")
	f.BoolVar(&o.Status, "status", false, "show the reassignments under way and remove a throttle once none is")
	return cmd
}

// AddFlags registers the flags every command that moves replicas shares:
// --brokers and --timeout, -o, --throttle, --dry-run and --no-wait.
func (o *ReassignOptions) AddFlags(f *pflag.FlagSet) {
	clientopts.AddFlags(f, &o.Common)
	clientopts.AddOutputFlag(f, &o.Output)
	f.Float64Var(&o.Throttle, "throttle", 0, "limit the copying to this many MB/s per broker (0: no limit)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan and stop")
	f.BoolVar(&o.NoWait, "no-wait", false, "apply the plan and return without showing progress")
}

// parseIDs parses a comma-separated list of broker ids.
func parseIDs(s string) ([]int32, error) {
	var ids []int32
	for _, part := range clientopts.SplitList(s) {
		id, err := strconv.ParseInt(part, 10, 32)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("%q is not a broker id", part)
		}
		if !slices.Contains(ids, int32(id)) {
			ids = append(ids, int32(id))
		}
	}
	if len(ids) == 0 {
		return nil, errors.New("no broker ids")
	}
	return ids, nil
}

// Plan is a reassignment plan in the JSON of Kafka's
// kafka-reassign-partitions tool.
type Plan struct {
	Version    int         `json:"version"`
	Partitions []PlanEntry `json:"partitions"`
}

// PlanEntry is one partition's target replicas.
type PlanEntry struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Replicas  []int32 `json:"replicas"`
	// LogDirs is the log dir of each replica on its broker, or "any"
	// (logdirs.go); optional.
	LogDirs []string `json:"log_dirs,omitempty"`
	// Current is the replicas the partition had when the plan was made
	// (printed, not read back).
	Current []int32 `json:"current,omitempty"`
}

// RunReassign runs `sluice cluster reassign`.
func RunReassign(ctx context.Context, o ReassignOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	modes := 0
	for _, on := range []bool{o.Plan != "", o.Topics != "" && !o.Cancel && !o.Status, o.Cancel, o.Status} {
		if on {
			modes++
		}
	}
	if modes != 1 {
		return errors.New("say what to do: --topics REGEX --broker-list IDS, --plan FILE, --status, or --cancel")
	}
	if o.Throttle < 0 {
		return fmt.Errorf("--throttle %v: want MB/s, at least 0", o.Throttle)
	}
	var only *regexp.Regexp
	if o.Topics != "" {
		re, err := regexp.Compile("^(?:" + o.Topics + ")$")
		if err != nil {
			return fmt.Errorf("--topics %q: %w", o.Topics, err)
		}
		only = re
	}
	cl, _, err := o.Connect(ctx, nil)
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(o.Wait().Milliseconds()))
	defer adm.Close()
	switch {
	case o.Status:
		return reassignStatus(ctx, o, adm, cl, only)
	case o.Cancel:
		return reassignCancel(ctx, o, adm, cl, only)
	}
	md, err := adm.Metadata(ctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	var plan Plan
	if o.Plan != "" {
		if plan, err = readPlan(o.Plan, md); err != nil {
			return err
		}
	} else {
		if len(o.BrokerList) == 0 {
			return errors.New("--topics needs --broker-list: the ids of the brokers the topics may use")
		}
		if plan, err = MinimalMoves(md, only, o.BrokerList); err != nil {
			return err
		}
	}
	return applyPlan(ctx, o, adm, plan)
}

// applyPlan prints plan and, unless it is a dry run, applies it (with the
// throttle) and watches it to the end.
func applyPlan(ctx context.Context, o ReassignOptions, adm *kadm.Client, plan Plan) error {
	w := o.Stdout()
	if o.Output == clientopts.OutputJSON && o.DryRun {
		return clientopts.JSON(w, plan)
	}
	if len(plan.Partitions) == 0 {
		fmt.Fprintln(w, "Nothing to move: every replica is already where the plan puts it.")
		return nil
	}
	printPlan(w, plan)
	if o.DryRun {
		return nil
	}
	if o.Throttle > 0 {
		if err := setThrottle(ctx, adm, plan, int64(o.Throttle*bytesPerMB)); err != nil {
			return err
		}
	}
	if n, err := sendLogDirs(ctx, adm, plan); err != nil {
		return err
	} else if n > 0 {
		fmt.Fprintf(w, "Log dirs sent for %s.\n", clientopts.Count(n, "replica", "replicas"))
	}
	var req kadm.AlterPartitionAssignmentsReq
	for _, e := range plan.Partitions {
		req.Assign(e.Topic, e.Partition, e.Replicas)
	}
	res, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		return fmt.Errorf("reassign: %w", err)
	}
	var failed []string
	for _, r := range res.Sorted() {
		if r.Err != nil {
			failed = append(failed, fmt.Sprintf("%s-%d: %v", r.Topic, r.Partition, clientopts.KafkaErr(r.Err, r.ErrMessage)))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d partitions refused: %s", len(failed), len(plan.Partitions), strings.Join(failed, "; "))
	}
	fmt.Fprintf(w, "Reassignment of %s started.\n", clientopts.Count(len(plan.Partitions), "partition", "partitions"))
	if o.NoWait {
		fmt.Fprintln(w, "Follow it with: sluice cluster reassign --status")
		return nil
	}
	if err := watch(ctx, o, adm, plan); err != nil {
		return err
	}
	return finishLogDirs(ctx, w, adm, plan)
}

// readPlan reads a plan file and checks it against the metadata.
func readPlan(name string, md kadm.Metadata) (Plan, error) {
	var plan Plan
	b, err := os.ReadFile(name)
	if err != nil {
		return plan, fmt.Errorf("--plan: %w", err)
	}
	if err := json.Unmarshal(b, &plan); err != nil {
		return plan, fmt.Errorf("--plan %s: not a reassignment plan: %w (want {\"version\":1,\"partitions\":[{\"topic\":...,\"partition\":...,\"replicas\":[...]}]})", name, err)
	}
	for i, e := range plan.Partitions {
		td, ok := md.Topics[e.Topic]
		if !ok || td.Err != nil {
			return plan, fmt.Errorf("--plan %s: entry %d: no topic %q", name, i, e.Topic)
		}
		pd, ok := td.Partitions[e.Partition]
		if !ok {
			return plan, fmt.Errorf("--plan %s: entry %d: %s has no partition %d", name, i, e.Topic, e.Partition)
		}
		if len(e.Replicas) == 0 {
			return plan, fmt.Errorf("--plan %s: entry %d (%s-%d): no replicas", name, i, e.Topic, e.Partition)
		}
		if err := checkLogDirs(e); err != nil {
			return plan, fmt.Errorf("--plan %s: entry %d (%s-%d): %w", name, i, e.Topic, e.Partition, err)
		}
		plan.Partitions[i].Current = pd.Replicas
	}
	return plan, nil
}

// MinimalMoves plans moving the replicas of the topics matching re onto
// the brokers in allowed, changing as few replicas as it can: a replica on
// an allowed broker stays (the kept ones first, in their order, so the
// preferred leader stays where it can); each one that must go is replaced by an allowed
// broker not yet holding the partition, preferring a rack the partition
// does not use yet, then the broker with the fewest replicas (counting the
// plan's moves so far), then the lowest id. Partitions that need no move
// are left out of the plan.
func MinimalMoves(md kadm.Metadata, re *regexp.Regexp, allowed []int32) (Plan, error) {
	plan := Plan{Version: 1, Partitions: []PlanEntry{}}
	racks := map[int32]string{}
	for _, b := range md.Brokers {
		if b.Rack != nil {
			racks[b.NodeID] = *b.Rack
		}
	}
	for _, id := range allowed {
		if !slices.ContainsFunc(md.Brokers, func(b kadm.BrokerDetail) bool { return b.NodeID == id }) {
			return plan, fmt.Errorf("--broker-list: broker %d is not in the cluster (its brokers: %s)", id, brokerIDs(md))
		}
	}
	load := map[int32]int{}
	var names []string
	for name, td := range md.Topics {
		for _, pd := range td.Partitions {
			for _, r := range pd.Replicas {
				load[r]++
			}
		}
		if re.MatchString(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return plan, fmt.Errorf("--topics %q matches no topic", re.String())
	}
	sort.Strings(names)
	for _, name := range names {
		for _, pd := range md.Topics[name].Partitions.Sorted() {
			target := make([]int32, 0, len(pd.Replicas))
			used := map[string]bool{}
			for _, r := range pd.Replicas {
				if slices.Contains(allowed, r) {
					target = append(target, r)
					used[racks[r]] = true
				}
			}
			need := len(pd.Replicas) - len(target)
			if need == 0 {
				continue
			}
			for range need {
				best := int32(-1)
				for _, b := range allowed {
					if slices.Contains(target, b) || slices.Contains(pd.Replicas, b) {
						continue
					}
					if best < 0 || better(b, best, used, racks, load) {
						best = b
					}
				}
				if best < 0 {
					return plan, fmt.Errorf("%s-%d has %d replicas, but --broker-list names only %d brokers", name, pd.Partition, len(pd.Replicas), len(allowed))
				}
				target = append(target, best)
				used[racks[best]] = true
				load[best]++
			}
			for _, r := range pd.Replicas {
				if !slices.Contains(target, r) {
					load[r]--
				}
			}
			plan.Partitions = append(plan.Partitions, PlanEntry{Topic: name, Partition: pd.Partition, Replicas: target, Current: pd.Replicas})
		}
	}
	return plan, nil
}

// better reports whether broker a is a better new replica than b: a rack
// the partition does not use yet, then fewer replicas, then a lower id.
func better(a, b int32, used map[string]bool, racks map[int32]string, load map[int32]int) bool {
	if ua, ub := used[racks[a]] && racks[a] != "", used[racks[b]] && racks[b] != ""; ua != ub {
		return !ua
	}
	if load[a] != load[b] {
		return load[a] < load[b]
	}
	return a < b
}

func brokerIDs(md kadm.Metadata) string {
	var ids []int32
	for _, b := range md.Brokers {
		ids = append(ids, b.NodeID)
	}
	slices.Sort(ids)
	return clientopts.Int32s(ids)
}

func printPlan(w io.Writer, plan Plan) {
	rows := [][]string{}
	for _, e := range plan.Partitions {
		var add, drop []int32
		for _, r := range e.Replicas {
			if !slices.Contains(e.Current, r) {
				add = append(add, r)
			}
		}
		for _, r := range e.Current {
			if !slices.Contains(e.Replicas, r) {
				drop = append(drop, r)
			}
		}
		rows = append(rows, []string{e.Topic, fmt.Sprint(e.Partition), clientopts.Int32s(e.Current), clientopts.Int32s(e.Replicas),
			dashIfEmpty(clientopts.Int32s(add)), dashIfEmpty(clientopts.Int32s(drop)), dashIfEmpty(strings.Join(e.LogDirs, ","))})
	}
	head := []string{"TOPIC", "PARTITION", "CURRENT", "TARGET", "ADD", "REMOVE", "LOG DIRS"}
	if !slices.ContainsFunc(plan.Partitions, func(e PlanEntry) bool { return len(e.LogDirs) > 0 }) {
		head = head[:len(head)-1]
		for i := range rows {
			rows[i] = rows[i][:len(head)]
		}
	}
	clientopts.Table(w, head, rows)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Throttle configs (KIP-73).
const (
	leaderRate       = "leader.replication.throttled.rate"
	followerRate     = "follower.replication.throttled.rate"
	leaderReplicas   = "leader.replication.throttled.replicas"
	followerReplicas = "follower.replication.throttled.replicas"
)

// setThrottle limits the copying the plan causes: the brokers' throttled
// rates (cluster-wide) and, per topic, the current replicas of moving
// partitions on the leader side and the new ones on the follower side, as
// Kafka's tool does.
func setThrottle(ctx context.Context, adm *kadm.Client, plan Plan, bytesPerSec int64) error {
	rate := strconv.FormatInt(max(bytesPerSec, 1), 10)
	if err := alterConfigs(ctx, adm, "", []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: leaderRate, Value: &rate},
		{Op: kadm.SetConfig, Name: followerRate, Value: &rate},
	}); err != nil {
		return fmt.Errorf("set the replication throttle: %w", err)
	}
	leaders, followers := map[string][]string{}, map[string][]string{}
	for _, e := range plan.Partitions {
		for _, r := range e.Current {
			leaders[e.Topic] = append(leaders[e.Topic], fmt.Sprintf("%d:%d", e.Partition, r))
		}
		for _, r := range e.Replicas {
			if !slices.Contains(e.Current, r) {
				followers[e.Topic] = append(followers[e.Topic], fmt.Sprintf("%d:%d", e.Partition, r))
			}
		}
	}
	for topic := range leaders {
		l, f := strings.Join(leaders[topic], ","), strings.Join(followers[topic], ",")
		if err := alterConfigs(ctx, adm, topic, []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: leaderReplicas, Value: &l},
			{Op: kadm.SetConfig, Name: followerReplicas, Value: &f},
		}); err != nil {
			return fmt.Errorf("throttle the replicas of %s: %w", topic, err)
		}
	}
	return nil
}

// clearThrottle removes the throttle configs from the brokers and from
// topics.
func clearThrottle(ctx context.Context, adm *kadm.Client, topics []string) error {
	if err := alterConfigs(ctx, adm, "", []kadm.AlterConfig{
		{Op: kadm.DeleteConfig, Name: leaderRate},
		{Op: kadm.DeleteConfig, Name: followerRate},
	}); err != nil {
		return fmt.Errorf("remove the replication throttle: %w", err)
	}
	for _, topic := range topics {
		if err := alterConfigs(ctx, adm, topic, []kadm.AlterConfig{
			{Op: kadm.DeleteConfig, Name: leaderReplicas},
			{Op: kadm.DeleteConfig, Name: followerReplicas},
		}); err != nil {
			return fmt.Errorf("remove the replica throttle of %s: %w", topic, err)
		}
	}
	return nil
}

// alterConfigs applies ops (IncrementalAlterConfigs) to a topic, or to the
// cluster-wide broker configs when topic is "".
func alterConfigs(ctx context.Context, adm *kadm.Client, topic string, ops []kadm.AlterConfig) error {
	var res kadm.AlterConfigsResponses
	var err error
	if topic == "" {
		res, err = adm.AlterBrokerConfigs(ctx, ops)
	} else {
		res, err = adm.AlterTopicConfigs(ctx, ops, topic)
	}
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil {
			return clientopts.KafkaErr(r.Err, r.ErrMessage)
		}
	}
	return nil
}

// throttledTopics lists the topics with a replica throttle set.
func throttledTopics(ctx context.Context, adm *kadm.Client) ([]string, error) {
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, tds.Names()...)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if (c.Key == leaderReplicas || c.Key == followerReplicas) && c.Source == kmsg.ConfigSourceDynamicTopicConfig && c.MaybeValue() != "" {
				out = append(out, rc.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// progress is the copying of one moving partition.
type progress struct {
	topic     string
	partition int32
	leader    int64 // size of the leader's replica
	copied    int64 // summed over the adding replicas
	need      int64 // leader size times the adding replicas
}

// measure reads the moving partitions' copy progress from the brokers'
// log dirs: a new replica's size against its leader's.
func measure(ctx context.Context, adm *kadm.Client, moving kadm.ListPartitionReassignmentsResponses) ([]progress, error) {
	md, err := adm.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	set := kadm.TopicsSet{}
	moving.Each(func(r kadm.ListPartitionReassignmentsResponse) { set.Add(r.Topic, r.Partition) })
	dirs, err := adm.DescribeAllLogDirs(ctx, set)
	var se *kadm.ShardErrors
	if errors.As(err, &se) && !se.AllFailed {
		err = nil // a broker down: its replicas count as nothing copied
	}
	if err != nil {
		return nil, err
	}
	size := func(broker int32, topic string, p int32) int64 {
		var n int64
		for _, d := range dirs[broker] {
			if dp, ok := d.Topics.Lookup(topic, p); ok {
				n = max(n, dp.Size)
			}
		}
		return n
	}
	var out []progress
	for _, r := range moving.Sorted() {
		pr := progress{topic: r.Topic, partition: r.Partition}
		if pd, ok := md.Topics[r.Topic].Partitions[r.Partition]; ok && pd.Leader >= 0 {
			pr.leader = size(pd.Leader, r.Topic, r.Partition)
		}
		for _, a := range r.AddingReplicas {
			pr.copied += min(size(a, r.Topic, r.Partition), pr.leader)
			pr.need += pr.leader
		}
		out = append(out, pr)
	}
	return out, nil
}

// watch shows progress until the plan's partitions have moved, then moves
// leadership to the preferred replicas and removes the throttle.
func watch(ctx context.Context, o ReassignOptions, adm *kadm.Client, plan Plan) error {
	w := o.Stdout()
	set := kadm.TopicsSet{}
	for _, e := range plan.Partitions {
		set.Add(e.Topic, e.Partition)
	}
	start := time.Now()
	var lastCopied int64
	lastAt := start
	rate := 0.0
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		moving, err := adm.ListPartitionReassignments(ctx, set)
		if err != nil {
			return fmt.Errorf("list reassignments: %w", err)
		}
		if len(moving) == 0 {
			break
		}
		prs, err := measure(ctx, adm, moving)
		if err != nil {
			return fmt.Errorf("measure the copying: %w", err)
		}
		var copied, need int64
		for _, pr := range prs {
			copied += pr.copied
			need += pr.need
		}
		now := time.Now()
		if dt := now.Sub(lastAt).Seconds(); dt > 0 && copied >= lastCopied && lastCopied > 0 {
			inst := float64(copied-lastCopied) / dt
			rate = 0.5*rate + 0.5*inst // smoothed
		}
		lastCopied, lastAt = copied, now
		eta := etaOf(need-copied, rate)
		pct := 100.0
		if need > 0 {
			pct = 100 * float64(copied) / float64(need)
		}
		fmt.Fprintf(w, "%s moving: %s of %s copied (%.0f%%), %s/s, ETA %s\n",
			clientopts.Count(len(prs), "partition", "partitions"), mib(copied), mib(need), pct, mib(int64(rate)), eta)
		select {
		case <-ctx.Done():
			fmt.Fprintln(w, "Stopped watching; the reassignment goes on. See it with: sluice cluster reassign --status")
			return nil
		case <-t.C:
		}
	}
	// The controller has completed the moves; the broker answering this
	// client's Metadata may apply that a moment later. Wait for it, so that
	// what this command prints, and the next command plans from, is the
	// new placement.
	if err := awaitPlacement(ctx, adm, plan, o.Wait()); err != nil {
		return err
	}
	fmt.Fprintf(w, "Every partition has moved (%s).\n", time.Since(start).Round(time.Second))
	// Leadership to the new preferred replicas (the first of each target).
	elect := kadm.TopicsSet{}
	for _, e := range plan.Partitions {
		if len(e.Current) == 0 || e.Replicas[0] != e.Current[0] {
			elect.Add(e.Topic, e.Partition)
		}
	}
	if len(elect) > 0 {
		if _, err := adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, elect); err != nil {
			fmt.Fprintf(w, "Preferred leader election: %v (auto.leader.rebalance.enable does it later)\n", err)
		}
	}
	if o.Throttle > 0 {
		if err := clearThrottle(ctx, adm, set.Topics()); err != nil {
			return err
		}
		fmt.Fprintln(w, "Throttle removed.")
	}
	return nil
}

// awaitPlacement waits, up to wait, until Metadata shows every partition
// of plan on its target replicas.
func awaitPlacement(ctx context.Context, adm *kadm.Client, plan Plan, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		md, err := adm.Metadata(ctx)
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		pending := ""
		for _, e := range plan.Partitions {
			if pd, ok := md.Topics[e.Topic].Partitions[e.Partition]; !ok || !slices.Equal(pd.Replicas, e.Replicas) {
				pending = fmt.Sprintf("%s-%d", e.Topic, e.Partition)
				break
			}
		}
		if pending == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the controller completed the moves, but after %s the brokers' metadata still shows %s elsewhere; see sluice topic describe", wait, pending)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(metadataPoll):
		}
	}
}

// etaOf is how long left bytes take at rate bytes per second ("-" when
// unknown).
func etaOf(left int64, rate float64) string {
	if rate <= 0 || left <= 0 {
		return "-"
	}
	return time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second).String()
}

// mib formats bytes as MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// reassignStatus prints the reassignments under way, and removes the
// throttle once there are none.
func reassignStatus(ctx context.Context, o ReassignOptions, adm *kadm.Client, cl *kgo.Client, only *regexp.Regexp) error {
	moving, err := listReassignments(ctx, cl, only)
	if err != nil {
		return err
	}
	w := o.Stdout()
	if len(moving) == 0 {
		topics, err := throttledTopics(ctx, adm)
		if err != nil {
			return err
		}
		if len(topics) > 0 {
			if err := clearThrottle(ctx, adm, topics); err != nil {
				return err
			}
			fmt.Fprintf(w, "No reassignment under way; removed the replication throttle (topics %s).\n", strings.Join(topics, ", "))
			return nil
		}
		fmt.Fprintln(w, "No reassignment under way.")
		return nil
	}
	prs, err := measure(ctx, adm, moving)
	if err != nil {
		return err
	}
	if o.Output == clientopts.OutputJSON {
		type row struct {
			Topic     string `json:"topic"`
			Partition int32  `json:"partition"`
			Copied    int64  `json:"copied_bytes"`
			Need      int64  `json:"need_bytes"`
		}
		var rows []row
		for _, pr := range prs {
			rows = append(rows, row{pr.topic, pr.partition, pr.copied, pr.need})
		}
		return clientopts.JSON(w, rows)
	}
	rows := [][]string{}
	for i, r := range moving.Sorted() {
		rows = append(rows, []string{r.Topic, fmt.Sprint(r.Partition), clientopts.Int32s(r.Replicas),
			dashIfEmpty(clientopts.Int32s(r.AddingReplicas)), dashIfEmpty(clientopts.Int32s(r.RemovingReplicas)),
			mib(prs[i].copied) + " / " + mib(prs[i].need)})
	}
	return clientopts.Table(w, []string{"TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING", "COPIED"}, rows)
}

// reassignCancel cancels the reassignments under way (of --topics).
func reassignCancel(ctx context.Context, o ReassignOptions, adm *kadm.Client, cl *kgo.Client, only *regexp.Regexp) error {
	moving, err := listReassignments(ctx, cl, only)
	if err != nil {
		return err
	}
	w := o.Stdout()
	if len(moving) == 0 {
		fmt.Fprintln(w, "No reassignment under way.")
		return nil
	}
	var req kadm.AlterPartitionAssignmentsReq
	moving.Each(func(r kadm.ListPartitionReassignmentsResponse) { req.CancelAssign(r.Topic, r.Partition) })
	res, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	n := 0
	for _, r := range res.Sorted() {
		if r.Err != nil {
			fmt.Fprintf(w, "%s-%d: %v\n", r.Topic, r.Partition, clientopts.KafkaErr(r.Err, r.ErrMessage))
			continue
		}
		n++
	}
	fmt.Fprintf(w, "Cancelled %s: back to their old replicas.\n", clientopts.Count(n, "reassignment", "reassignments"))
	return nil
}

// listReassignments lists every reassignment under way (of the topics
// matching only, if set). kadm asks only for named partitions; a null topic
// list asks for all.
func listReassignments(ctx context.Context, cl *kgo.Client, only *regexp.Regexp) (kadm.ListPartitionReassignmentsResponses, error) {
	req := kmsg.NewPtrListPartitionReassignmentsRequest()
	req.Topics = nil
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		return nil, fmt.Errorf("list reassignments: %w", err)
	}
	out := kadm.ListPartitionReassignmentsResponses{}
	for _, t := range resp.Topics {
		if only != nil && !only.MatchString(t.Topic) {
			continue
		}
		for _, p := range t.Partitions {
			if out[t.Topic] == nil {
				out[t.Topic] = map[int32]kadm.ListPartitionReassignmentsResponse{}
			}
			out[t.Topic][p.Partition] = kadm.ListPartitionReassignmentsResponse{Topic: t.Topic, Partition: p.Partition,
				Replicas: p.Replicas, AddingReplicas: p.AddingReplicas, RemovingReplicas: p.RemovingReplicas}
		}
	}
	return out, nil
}

func drainCommand() *cobra.Command {
	o := ReassignOptions{}
	cmd := &cobra.Command{
		Use:   "drain BROKER",
		Short: "Cordon a broker and move every replica and leadership off it, to remove it",
		Long: `First cordon broker BROKER (as 'sluice cluster cordon': cordoned.log.dirs=* on it,
KIP-1066), so that no new topic, new partition or balance puts a replica on it while it
empties or afterwards. Then move every replica (and with it every leadership) off it onto
the other brokers that are not cordoned: a reassignment of every topic, internal ones
included, planned and shown as by 'sluice cluster reassign' (fewest moves, least loaded
brokers, racks kept apart), with --throttle and progress. The new replicas join the
in-sync replicas before the drained one leaves, so min.insync.replicas holds throughout.
--dry-run shows the plan and cordons nothing.

Then stop the broker and remove it from the cluster with 'sluice cluster unregister
BROKER' (which drops its cordon too). To use a drained broker again instead, run
'sluice cluster undrain BROKER', then 'sluice cluster balance' to move replicas back.`,
		Example: `  sluice cluster drain 3 --dry-run
  sluice cluster drain 3 --throttle 50
  sluice cluster unregister 3
  sluice cluster undrain 3 && sluice cluster balance`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			id, err := strconv.ParseInt(args[0], 10, 32)
			if err != nil || id < 0 {
				return fmt.Errorf("broker %q: want a broker id", args[0])
			}
			return RunDrain(cmd.Context(), o, int32(id))
		},
	}
	f := cmd.Flags()
	o.AddFlags(f)
	return cmd
}

// RunDrain runs `sluice cluster drain`: it cordons id (unless it is a dry
// run), then reassigns every topic onto every broker but id and the
// cordoned ones.
func RunDrain(ctx context.Context, o ReassignOptions, id int32) error {
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	var others []int32
	found := false
	for _, b := range md.Brokers {
		if b.NodeID == id {
			found = true
			continue
		}
		others = append(others, b.NodeID)
	}
	if !found {
		return fmt.Errorf("broker %d is not in the cluster (its brokers: %s)", id, brokerIDs(md))
	}
	if len(others) == 0 {
		return fmt.Errorf("broker %d is the only broker: there is nowhere to move its replicas", id)
	}
	// Cordoned first, so that nothing created while it empties lands on
	// it; the plan is made after, from the metadata as it is then.
	if !o.DryRun {
		if err := cordon(ctx, o.Common, adm, []int32{id}); err != nil {
			return err
		}
		fmt.Fprintf(o.Stdout(), "Broker %d cordoned: no new partition replica goes to it (undo with: sluice cluster undrain %d).\n", id, id)
	} else if o.Output != clientopts.OutputJSON {
		fmt.Fprintf(o.Stdout(), "Dry run: broker %d is not cordoned; without --dry-run it is cordoned first.\n", id)
	}
	cordoned, err := CordonedBrokers(ctx, adm, others)
	if err != nil {
		return err
	}
	o.BrokerList = slices.DeleteFunc(others, func(b int32) bool { return cordoned[b] })
	if len(o.BrokerList) == 0 {
		return fmt.Errorf("drain %d: %w", id, errAllCordoned)
	}
	if len(cordoned) > 0 && o.Output != clientopts.OutputJSON {
		fmt.Fprintf(o.Stdout(), "Leaving out the cordoned broker(s) %s.\n", clientopts.Int32s(sortedIDs(cordoned)))
	}
	o.Topics = ".*"
	err = RunReassign(ctx, o)
	if err == nil && !o.DryRun && !o.NoWait {
		fmt.Fprintf(o.Stdout(), "Broker %d holds no replica now. Stop it, then: sluice cluster unregister %d\n", id, id)
	}
	return err
}

func unregisterCommand() *cobra.Command {
	o := clientopts.Common{}
	cmd := &cobra.Command{
		Use:   "unregister BROKER",
		Short: "Remove a stopped broker from the cluster (after a drain)",
		Long: `Remove broker BROKER's registration (Kafka's UnregisterBroker): for a broker that is gone
for good, after 'sluice cluster drain' moved its replicas away and it was stopped. A
broker that is still running registers again with its next heartbeat.`,
		Example: `  sluice cluster drain 3
  sluice cluster unregister 3`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			id, err := strconv.ParseInt(args[0], 10, 32)
			if err != nil || id < 0 {
				return fmt.Errorf("broker %q: want a broker id", args[0])
			}
			return RunUnregister(cmd.Context(), o, int32(id))
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o)
	return cmd
}

// RunUnregister runs `sluice cluster unregister`.
func RunUnregister(ctx context.Context, o clientopts.Common, id int32) error {
	cl, _, err := o.Connect(ctx, nil)
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrUnregisterBrokerRequest()
	req.BrokerID = id
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("unregister broker %d: %w", id, err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		msg := ""
		if resp.ErrorMessage != nil {
			msg = *resp.ErrorMessage
		}
		return fmt.Errorf("unregister broker %d: %w", id, clientopts.KafkaErr(err, msg))
	}
	fmt.Fprintf(o.Stdout(), "Broker %d unregistered.\n", id)
	return nil
}

func balanceCommand() *cobra.Command {
	o := ReassignOptions{}
	cmd := &cobra.Command{
		Use:   "balance",
		Short: "Even out replicas and preferred leaders over the brokers (a new one included)",
		Long: `Propose and apply moves that even out, over every broker, how many replicas each holds
and how many partitions each is the preferred (first) replica of, as 'sluice cluster
reassign' applies them (--throttle, progress, --dry-run). Replicas move from the most
loaded broker to the least loaded one, one at a time, never onto a rack the partition
already uses; then replicas are reordered (no data moves) so that preferred leaders
spread out too, and a preferred leader election moves the leaderships. Then, counts
kept, replicas are swapped between the heaviest and the lightest broker until their bytes
are within 5% of the average: a partition weighs its size (DescribeLogDirs) plus an
hour of the bytes it takes in, measured over --sample. Run it after adding a broker, or
after 'sluice cluster undrain'.

Cordoned brokers ('sluice cluster cordon', 'drain') are left out: nothing moves onto
them, and the replicas they hold stay where they are.`,
		Example: `  sluice cluster balance --dry-run
  sluice cluster balance --throttle 50
  sluice cluster balance --topics 'orders.*'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			return RunBalance(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	o.AddFlags(f)
	f.StringVar(&o.Topics, "topics", "", "regular expression of the topics that may move (default: all)")
	f.DurationVar(&o.Sample, "sample", 5*time.Second, "how long to measure the partitions' byte rates (0: weigh disk use only)")
	return cmd
}

// RunBalance runs `sluice cluster balance`.
func RunBalance(ctx context.Context, o ReassignOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	expr := o.Topics
	if expr == "" {
		expr = ".*"
	}
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		return fmt.Errorf("--topics %q: %w", o.Topics, err)
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
	cordoned, err := CordonedBrokers(ctx, adm, brokerIDsOf(md))
	if err != nil {
		return err
	}
	if len(cordoned) > 0 && o.Output != clientopts.OutputJSON {
		fmt.Fprintf(o.Stdout(), "Leaving out the cordoned broker(s) %s: nothing moves onto or off them.\n", clientopts.Int32s(sortedIDs(cordoned)))
	}
	if o.Sample > 0 && o.Output != clientopts.OutputJSON {
		fmt.Fprintf(o.Stdout(), "Measuring the partitions' byte rates for %s (--sample 0 to weigh disk use only)...\n", o.Sample)
	}
	loads, err := measureLoads(ctx, adm, o.Sample)
	if err != nil {
		return err
	}
	skip := func(id int32) bool { return cordoned[id] }
	return applyPlan(ctx, o, adm, EvenBytes(md, BalancePlan(md, re, cordoned), loads, re, skip))
}

// sortedIDs lists the brokers of a set, by id.
func sortedIDs(set map[int32]bool) []int32 {
	ids := make([]int32, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// maxBalanceMoves bounds the replica moves one balance plans.
const maxBalanceMoves = 100_000

// BalancePlan plans moves that even out the replicas per broker (within
// one of each other, where racks allow) and then the preferred leaders
// per broker, among the partitions of the topics matching re; the other
// topics' replicas count for the load but do not move. The cordoned
// brokers take part in neither: no replica or preferred leadership moves
// onto them, and theirs stay.
func BalancePlan(md kadm.Metadata, re *regexp.Regexp, cordoned map[int32]bool) Plan {
	racks := map[int32]string{}
	var brokers []int32
	for _, b := range md.Brokers {
		if !cordoned[b.NodeID] {
			brokers = append(brokers, b.NodeID)
		}
		if b.Rack != nil {
			racks[b.NodeID] = *b.Rack
		}
	}
	slices.Sort(brokers)
	type part struct {
		topic     string
		partition int32
		current   []int32
		target    []int32
	}
	var parts []*part
	load := map[int32]int{}
	fixedLeaders := map[int32]int{} // preferred replicas of the partitions that stay
	var names []string
	for name := range md.Topics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, pd := range md.Topics[name].Partitions.Sorted() {
			for _, r := range pd.Replicas {
				load[r]++
			}
			switch {
			case re.MatchString(name) && len(pd.Replicas) > 0:
				parts = append(parts, &part{topic: name, partition: pd.Partition, current: pd.Replicas, target: slices.Clone(pd.Replicas)})
			case len(pd.Replicas) > 0:
				fixedLeaders[pd.Replicas[0]]++
			}
		}
	}
	// Replicas: the most loaded broker gives one to the least loaded.
	for range maxBalanceMoves {
		hi, lo := extremes(brokers, load)
		if hi < 0 || load[hi]-load[lo] <= 1 {
			break
		}
		moved := false
		for _, p := range parts {
			i := slices.Index(p.target, hi)
			if i < 0 || slices.Contains(p.target, lo) || !rackFree(racks, p.target, hi, lo) {
				continue
			}
			p.target[i] = lo
			load[hi]--
			load[lo]++
			moved = true
			break
		}
		if !moved {
			break // racks or placement leave no move between these two
		}
	}
	// Preferred leaders: reorder partitions so that brokers with fewer
	// preferred leaderships come first.
	targets := make([][]int32, len(parts))
	for i, p := range parts {
		targets[i] = p.target
	}
	evenPreferred(brokers, fixedLeaders, targets)
	plan := Plan{Version: 1, Partitions: []PlanEntry{}}
	for _, p := range parts {
		if !slices.Equal(p.target, p.current) {
			plan.Partitions = append(plan.Partitions, PlanEntry{Topic: p.topic, Partition: p.partition, Replicas: p.target, Current: p.current})
		}
	}
	return plan
}

// ApplyPlan prints plan and, unless o.DryRun, applies it with o's
// throttle and watches it to the end (for other commands that plan moves,
// such as `sluice topic alter --replication-factor`).
func ApplyPlan(ctx context.Context, o ReassignOptions, adm *kadm.Client, plan Plan) error {
	return applyPlan(ctx, o, adm, plan)
}

// ReplicationFactorPlan plans changing topic's replication factor to rf:
// a partition with too few replicas gets new ones (a rack it does not use
// yet first, then the broker with the fewest replicas), never on a
// cordoned broker; one with too many keeps its first rf replicas, those in
// sync first (the preferred leader stays when it is in sync).
func ReplicationFactorPlan(md kadm.Metadata, topic string, rf int, cordoned map[int32]bool) (Plan, error) {
	plan := Plan{Version: 1, Partitions: []PlanEntry{}}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return plan, clientopts.MissingTopic(topic)
	}
	if rf < 1 || rf > len(md.Brokers) {
		return plan, fmt.Errorf("--replication-factor %d: want 1 to %d (the brokers in the cluster)", rf, len(md.Brokers))
	}
	racks := map[int32]string{}
	var all []int32 // the brokers that may take new replicas
	for _, b := range md.Brokers {
		if !cordoned[b.NodeID] {
			all = append(all, b.NodeID)
		}
		if b.Rack != nil {
			racks[b.NodeID] = *b.Rack
		}
	}
	slices.Sort(all)
	load := map[int32]int{}
	for _, t := range md.Topics {
		for _, pd := range t.Partitions {
			for _, r := range pd.Replicas {
				load[r]++
			}
		}
	}
	for _, pd := range td.Partitions.Sorted() {
		target := slices.Clone(pd.Replicas)
		switch {
		case len(target) < rf:
			used := map[string]bool{}
			for _, r := range target {
				used[racks[r]] = true
			}
			for len(target) < rf {
				best := int32(-1)
				for _, b := range all {
					if !slices.Contains(target, b) && (best < 0 || better(b, best, used, racks, load)) {
						best = b
					}
				}
				if best < 0 {
					return plan, fmt.Errorf("--replication-factor %d: %s-%d would need a replica on a cordoned broker (cordoned: %s); lift a cordon with sluice cluster undrain ID",
						rf, topic, pd.Partition, clientopts.Int32s(sortedIDs(cordoned)))
				}
				target = append(target, best)
				used[racks[best]] = true
				load[best]++
			}
		case len(target) > rf:
			inSync := func(r int32) bool { return slices.Contains(pd.ISR, r) }
			sorted := slices.Clone(target)
			slices.SortStableFunc(sorted, func(a, b int32) int {
				switch ia, ib := inSync(a), inSync(b); {
				case ia && !ib:
					return -1
				case ib && !ia:
					return 1
				}
				return 0
			})
			keep := sorted[:rf]
			target = slices.DeleteFunc(target, func(r int32) bool { return !slices.Contains(keep, r) })
		default:
			continue
		}
		plan.Partitions = append(plan.Partitions, PlanEntry{Topic: topic, Partition: pd.Partition, Replicas: target, Current: pd.Replicas})
	}
	return plan, nil
}
