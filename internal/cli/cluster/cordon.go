package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/config"
)

// cordonPoll is how often cordon, undrain and drain re-read a broker's
// cordoned.log.dirs until the broker's own metadata shows the change.
const cordonPoll = 50 * time.Millisecond

func cordonCommand() *cobra.Command {
	o := clientopts.Common{}
	cmd := &cobra.Command{
		Use:   "cordon BROKER [BROKER...]",
		Short: "Keep new partition replicas off brokers, leaving the replicas they have",
		Long: `Cordon brokers (KIP-1066): set cordoned.log.dirs=* on each, a dynamic config of that
broker alone. The controller then places no new replica on them: not for a new topic,
not for new partitions, and 'sluice cluster balance' and 'drain' move none onto them.
The replicas they hold stay, and they keep serving and leading them. An explicit
'sluice cluster reassign --broker-list' naming one still places there, as in Kafka.

'sluice cluster drain' cordons its broker first, then moves its replicas away; cordon
alone is for a broker to empty later, or to keep new work off one for a while.
'sluice cluster undrain' lifts the cordon. 'sluice cluster info' shows which brokers
are cordoned.

The same with Kafka's tools:
  kafka-configs --entity-type brokers --entity-name 3 --alter --add-config 'cordoned.log.dirs=*'`,
		Example: `  sluice cluster cordon 3
  sluice cluster cordon 4 5
  sluice cluster undrain 3`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			ids, err := brokerArgs(args)
			if err != nil {
				return err
			}
			return RunCordon(cmd.Context(), o, ids)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o)
	return cmd
}

func undrainCommand() *cobra.Command {
	o := clientopts.Common{}
	cmd := &cobra.Command{
		Use:     "undrain BROKER [BROKER...]",
		Aliases: []string{"uncordon"},
		Short:   "Let new partition replicas go to drained or cordoned brokers again",
		Long: `Lift the cordon that 'sluice cluster drain' or 'sluice cluster cordon' set on each broker:
delete its own cordoned.log.dirs, so that new topics, new partitions and 'sluice cluster
balance' place replicas on it again. Nothing moves by itself: run 'sluice cluster
balance' to move replicas back onto it.

A cordon set cluster-wide (kafka-configs --entity-type brokers --entity-default) applies
to every broker and stays; undrain says so when it still holds a broker.

The same with Kafka's tools:
  kafka-configs --entity-type brokers --entity-name 3 --alter --delete-config cordoned.log.dirs`,
		Example: `  sluice cluster undrain 3
  sluice cluster balance --dry-run
  sluice cluster balance --throttle 50`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			ids, err := brokerArgs(args)
			if err != nil {
				return err
			}
			return RunUndrain(cmd.Context(), o, ids)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o)
	return cmd
}

// brokerArgs parses broker ids given as arguments.
func brokerArgs(args []string) ([]int32, error) {
	var ids []int32
	for _, a := range args {
		id, err := strconv.ParseInt(a, 10, 32)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("broker %q: want a broker id", a)
		}
		if !slices.Contains(ids, int32(id)) {
			ids = append(ids, int32(id))
		}
	}
	return ids, nil
}

// RunCordon runs `sluice cluster cordon`.
func RunCordon(ctx context.Context, o clientopts.Common, ids []int32) error {
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	if err := cordon(ctx, o, adm, ids); err != nil {
		return err
	}
	for _, id := range ids {
		fmt.Fprintf(o.Stdout(), "Broker %d cordoned: no new partition replica goes to it; the ones it has stay (move them with: sluice cluster drain %d; undo with: sluice cluster undrain %d).\n", id, id, id)
	}
	return nil
}

// cordon sets cordoned.log.dirs=* on each of ids and waits until each
// broker's own metadata has it, so that what runs next (a drain's plan,
// a balance) sees those brokers cordoned.
func cordon(ctx context.Context, o clientopts.Common, adm *kadm.Client, ids []int32) error {
	if err := checkBrokers(ctx, adm, ids); err != nil {
		return err
	}
	all := config.CordonAll
	if err := alterBrokers(ctx, adm, ids, kadm.AlterConfig{Op: kadm.SetConfig, Name: config.CordonedLogDirs, Value: &all}); err != nil {
		return fmt.Errorf("cordon: %w", err)
	}
	return awaitCordon(ctx, adm, ids, true, o.Wait())
}

// RunUndrain runs `sluice cluster undrain`.
func RunUndrain(ctx context.Context, o clientopts.Common, ids []int32) error {
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	if err := checkBrokers(ctx, adm, ids); err != nil {
		return err
	}
	if err := alterBrokers(ctx, adm, ids, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: config.CordonedLogDirs}); err != nil {
		return fmt.Errorf("undrain: %w", err)
	}
	if err := awaitCordon(ctx, adm, ids, false, o.Wait()); err != nil {
		return err
	}
	w := o.Stdout()
	still := 0
	for _, id := range ids {
		c, err := brokerCordon(ctx, adm, id)
		switch {
		case err != nil:
			return err
		case c.cordoned:
			still++
			fmt.Fprintf(w, "Broker %d: its own cordon is removed, but %s=%s still holds it (%s); remove that with kafka-configs --entity-type brokers --entity-default --alter --delete-config %s.\n",
				id, config.CordonedLogDirs, c.value, c.source, config.CordonedLogDirs)
		default:
			fmt.Fprintf(w, "Broker %d uncordoned: new topics, new partitions and sluice cluster balance may place replicas on it again.\n", id)
		}
	}
	if still < len(ids) {
		fmt.Fprintln(w, "Nothing has moved. Move replicas back onto it with: sluice cluster balance (try --dry-run first)")
	}
	return nil
}

// checkBrokers refuses ids that are not brokers of the cluster.
func checkBrokers(ctx context.Context, adm *kadm.Client, ids []int32) error {
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	for _, id := range ids {
		if !slices.ContainsFunc(md.Brokers, func(b kadm.BrokerDetail) bool { return b.NodeID == id }) {
			return fmt.Errorf("broker %d is not in the cluster (its brokers: %s); a stopped broker must be started first", id, brokerIDs(md))
		}
	}
	return nil
}

// alterBrokers applies op to the BROKER resource of each of ids
// (IncrementalAlterConfigs, which kadm sends to that broker, as Kafka's
// tools do; it forwards the change to the controller).
func alterBrokers(ctx context.Context, adm *kadm.Client, ids []int32, op kadm.AlterConfig) error {
	res, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{op}, ids...)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil {
			return fmt.Errorf("broker %s: %w", r.Name, clientopts.KafkaErr(r.Err, r.ErrMessage))
		}
	}
	return nil
}

// cordonState is a broker's cordoned.log.dirs as that broker reports it.
type cordonState struct {
	cordoned bool
	value    string
	source   kmsg.ConfigSource
}

// brokerCordon asks broker id for its cordoned.log.dirs (DescribeConfigs
// of its BROKER resource, which Kafka answers on that broker only). A
// broker that does not know the config (an older one) is not cordoned.
func brokerCordon(ctx context.Context, adm *kadm.Client, id int32) (cordonState, error) {
	rcs, err := adm.DescribeBrokerConfigs(ctx, id)
	if err == nil && len(rcs) != 1 {
		err = fmt.Errorf("%d answers", len(rcs))
	}
	if err == nil && rcs[0].Err != nil {
		err = clientopts.KafkaErr(rcs[0].Err, rcs[0].ErrMessage)
	}
	if err != nil {
		return cordonState{}, fmt.Errorf("read %s of broker %d: %w", config.CordonedLogDirs, id, err)
	}
	for _, c := range rcs[0].Configs {
		if c.Key == config.CordonedLogDirs {
			return cordonState{cordoned: config.CordonsAll(c.MaybeValue()), value: c.MaybeValue(), source: c.Source}, nil
		}
	}
	return cordonState{}, nil
}

// CordonedBrokers asks each of ids whether it is cordoned and returns
// those that are, for planners that must place no new replica on them.
func CordonedBrokers(ctx context.Context, adm *kadm.Client, ids []int32) (map[int32]bool, error) {
	out := map[int32]bool{}
	for _, id := range ids {
		c, err := brokerCordon(ctx, adm, id)
		if err != nil {
			return nil, err
		}
		if c.cordoned {
			out[id] = true
		}
	}
	return out, nil
}

// awaitCordon waits, up to wait, until each of ids reports its own
// cordoned.log.dirs set (set) or not (!set): the alter is answered once the
// controller applied it, and a broker applies it a moment later.
func awaitCordon(ctx context.Context, adm *kadm.Client, ids []int32, set bool, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for _, id := range ids {
		for {
			c, err := brokerCordon(ctx, adm, id)
			if err != nil {
				return err
			}
			own := c.source == kmsg.ConfigSourceDynamicBrokerConfig
			if own == set && (!set || c.cordoned) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the controller took the change, but after %s broker %d still reports %s=%q (%s); see sluice cluster info", wait, id, config.CordonedLogDirs, c.value, c.source)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(cordonPoll):
			}
		}
	}
	return nil
}

// brokerIDsOf lists the ids of md's brokers.
func brokerIDsOf(md kadm.Metadata) []int32 {
	ids := make([]int32, 0, len(md.Brokers))
	for _, b := range md.Brokers {
		ids = append(ids, b.NodeID)
	}
	slices.Sort(ids)
	return ids
}

// errAllCordoned: every broker a plan could use is cordoned.
var errAllCordoned = errors.New("every other broker is cordoned: lift a cordon with sluice cluster undrain ID")
