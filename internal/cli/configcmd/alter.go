package configcmd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// AlterOptions are the flags of `sluice config alter`.
type AlterOptions struct {
	clientopts.Common
	Resource Resource
	Set      []string // key=value
	Delete   []string // keys whose value set on the resource to remove
	Output   string
}

func alterCommand() *cobra.Command {
	o := AlterOptions{}
	cmd := &cobra.Command{
		Use:   "alter (topic NAME | broker ID | broker default) [--set key=value]... [--delete key]...",
		Short: "Set configs of a topic or a broker, or delete them back to their defaults",
		Long: `Change a topic's or a broker's configs in one IncrementalAlterConfigs request:
--set key=value sets a value, --delete key removes the value set on the topic
(or, for a broker, set dynamically), so that the broker's value or the default
applies again. Configs not named are left as they are.

As kafka-configs.sh does, a --delete of a config that is not set there fails
the whole command before anything is changed. "broker ID" alters that broker's
own dynamic configs, "broker default" the cluster-wide ones (kafka-configs.sh's
--entity-default), which a broker's own take precedence over; a broker's
start-up configs (sluice serve -c) cannot be altered.`,
		Example: `  sluice config alter topic orders --set retention.ms=86400000
  sluice config alter topic orders --set cleanup.policy=compact --set min.cleanable.dirty.ratio=0.1
  sluice config alter topic orders --delete retention.ms
  sluice config alter broker 1 --set log.retention.ms=3600000 -o json
  sluice config alter broker default --set log.retention.ms=3600000`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := parseResource(args[0], args[1])
			if err != nil {
				return err
			}
			o.SetStreams(cmd)
			o.Resource = r
			return RunAlter(cmd.Context(), o)
		},
		ValidArgs: []string{"topic", "broker"},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	clientopts.AddOutputFlag(f, &o.Output)
	f.StringArrayVar(&o.Set, "set", nil, "config key=value to set, repeatable")
	f.StringArrayVar(&o.Delete, "delete", nil, "config whose value to remove, back to its default; repeatable")
	return cmd
}

// Altered is what `config alter -o json` prints.
type Altered struct {
	ResourceType string   `json:"resource_type"` // topic or broker
	ResourceName string   `json:"resource_name"`
	Set          []KV     `json:"set"`
	Deleted      []string `json:"deleted"`
}

// KV is a config set by alter.
type KV struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// RunAlter applies the changes and prints what changed.
func RunAlter(ctx context.Context, o AlterOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	if o.Resource.Name == "" && o.Resource.Type != kmsg.ConfigResourceTypeBroker {
		return errors.New("name the topic or broker whose configs to alter")
	}
	ch, err := ParseChanges(o.Set, "--set", o.Delete)
	if err != nil {
		return err
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	if err := Alter(ctx, adm, o.Resource, ch); err != nil {
		return err
	}
	if o.Output == clientopts.OutputJSON {
		kind := "topic"
		if o.Resource.Type == kmsg.ConfigResourceTypeBroker {
			kind = "broker"
		}
		return clientopts.JSON(o.Stdout(), Altered{ResourceType: kind, ResourceName: o.Resource.Name,
			Set: append([]KV{}, ch.Set...), Deleted: append([]string{}, ch.Delete...)})
	}
	_, err = fmt.Fprintf(o.Stdout(), "altered %s: %s\n", o.Resource, ch)
	return err
}

// Changes are the configs one alter sets and deletes.
type Changes struct {
	Set    []KV
	Delete []string
}

// ParseChanges reads key=value settings (given with setFlag) and the keys
// to delete; it refuses a key named twice.
func ParseChanges(set []string, setFlag string, del []string) (Changes, error) {
	var ch Changes
	seen := map[string]bool{}
	for _, kv := range set {
		k, v, err := clientopts.ParseKV(setFlag, kv)
		if err != nil {
			return Changes{}, err
		}
		if seen[k] {
			return Changes{}, fmt.Errorf("%s: %s is changed twice; give each config once", setFlag, k)
		}
		seen[k] = true
		ch.Set = append(ch.Set, KV{Key: k, Value: v})
	}
	for _, k := range del {
		if k == "" || strings.Contains(k, "=") {
			return Changes{}, fmt.Errorf("--delete %q: give just the config's name", k)
		}
		if seen[k] {
			return Changes{}, fmt.Errorf("--delete %s: %s is changed twice; give each config once", k, k)
		}
		seen[k] = true
		ch.Delete = append(ch.Delete, k)
	}
	if len(ch.Set) == 0 && len(ch.Delete) == 0 {
		return Changes{}, fmt.Errorf("nothing to change: give %s key=value or --delete key", setFlag)
	}
	return ch, nil
}

// String is "set k=v, deleted k".
func (ch Changes) String() string {
	var done []string
	for _, kv := range ch.Set {
		done = append(done, "set "+kv.Key+"="+kv.Value)
	}
	for _, k := range ch.Delete {
		done = append(done, "deleted "+k)
	}
	return strings.Join(done, ", ")
}

// Alter applies ch to r in one IncrementalAlterConfigs request. A key to
// delete must be set on r: Alter first describes r's configs and fails,
// changing nothing, if one is not (as kafka-configs.sh does), since
// IncrementalAlterConfigs itself takes such a DELETE as done.
func Alter(ctx context.Context, adm *kadm.Client, r Resource, ch Changes) error {
	if len(ch.Delete) > 0 {
		cs, err := describeConfigs(ctx, adm, r)
		if err != nil {
			return err
		}
		for _, k := range ch.Delete {
			if err := deletable(r, cs, k); err != nil {
				return err
			}
		}
	}
	var alters []kadm.AlterConfig
	for _, kv := range ch.Set {
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: kv.Key, Value: kmsg.StringPtr(kv.Value)})
	}
	for _, k := range ch.Delete {
		alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}
	var (
		resps kadm.AlterConfigsResponses
		err   error
	)
	switch {
	case r.Type == kmsg.ConfigResourceTypeBroker && r.Name == "":
		resps, err = adm.AlterBrokerConfigs(ctx, alters) // the cluster-wide default
	case r.Type == kmsg.ConfigResourceTypeBroker:
		id, _ := strconv.ParseInt(r.Name, 10, 32)
		resps, err = adm.AlterBrokerConfigs(ctx, alters, int32(id))
	default:
		resps, err = adm.AlterTopicConfigs(ctx, alters, r.Name)
	}
	if err != nil {
		return fmt.Errorf("alter configs of %s: %w", r, err)
	}
	resp, err := resps.On(r.Name, nil)
	if err != nil {
		return fmt.Errorf("alter configs of %s: no answer from the broker", r)
	}
	if errors.Is(resp.Err, kerr.UnknownTopicOrPartition) && r.Type == kmsg.ConfigResourceTypeTopic {
		return clientopts.MissingTopic(r.Name)
	}
	if resp.Err != nil {
		return fmt.Errorf("alter configs of %s: %w", r, clientopts.KafkaErr(resp.Err, resp.ErrMessage))
	}
	return nil
}

// deletable says why key cannot be deleted from r, whose configs are cs.
func deletable(r Resource, cs []kadm.Config, key string) error {
	i := slices.IndexFunc(cs, func(c kadm.Config) bool { return c.Key == key })
	if i < 0 {
		return fmt.Errorf("--delete %s: %s has no config %s", key, r, key)
	}
	c := cs[i]
	own := r.ownSources()
	if slices.Contains(own, c.Source) || slices.ContainsFunc(c.Synonyms, func(s kadm.ConfigSynonym) bool {
		return s.Key == key && slices.Contains(own, s.Source)
	}) {
		return nil
	}
	return fmt.Errorf("--delete %s: it is not set on %s (its value comes from %s); nothing to delete", key, r, c.Source)
}
