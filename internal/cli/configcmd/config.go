// Package configcmd is `sluice config`: the configs of a topic or a broker,
// every one with its value, where the value comes from and its default (as
// kafka-configs.sh --describe --all), and changing them with
// IncrementalAlterConfigs.
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

// Command returns `sluice config` and its subcommands.
func Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Describe and alter the configs of a topic or a broker",
		Long: `Show a topic's or a broker's configs, each with its value, its source (where
the value comes from: the topic, the broker's dynamic or static configs, or the
default) and its default, as kafka-configs.sh --describe --all does; change them
with IncrementalAlterConfigs (kafka-configs.sh --alter).`,
		Example: `  sluice config describe topic orders
  sluice config describe topic orders --all -o json
  sluice config describe broker 1 --all
  sluice config alter topic orders --set retention.ms=86400000 --delete cleanup.policy
  sluice config alter broker 1 --set log.retention.ms=3600000`,
	}
	cmd.AddCommand(describeCommand(), alterCommand())
	return cmd
}

// Resource is a topic or a broker, the things configs belong to.
type Resource struct {
	Type kmsg.ConfigResourceType // topic or broker
	Name string                  // the topic's name, the broker's id
}

// Topic is the resource of a topic's configs.
func Topic(name string) Resource { return Resource{Type: kmsg.ConfigResourceTypeTopic, Name: name} }

// parseResource reads the command line's "topic NAME" or "broker ID".
func parseResource(kind, name string) (Resource, error) {
	switch kind {
	case "topic", "topics":
		if name == "" {
			return Resource{}, errors.New("name the topic")
		}
		return Topic(name), nil
	case "broker", "brokers":
		if name == "default" {
			// Kafka's --entity-default: the cluster-wide dynamic configs.
			return Resource{Type: kmsg.ConfigResourceTypeBroker, Name: ""}, nil
		}
		if _, err := strconv.ParseInt(name, 10, 32); err != nil {
			return Resource{}, fmt.Errorf("broker %q: give the broker's id (a number, see `sluice cluster info`), or default for every broker", name)
		}
		return Resource{Type: kmsg.ConfigResourceTypeBroker, Name: name}, nil
	}
	return Resource{}, fmt.Errorf("%q: configs belong to a topic or a broker: give `topic NAME` or `broker ID`", kind)
}

func (r Resource) String() string {
	if r.Type == kmsg.ConfigResourceTypeBroker {
		if r.Name == "" {
			return "every broker (the cluster-wide default)"
		}
		return "broker " + r.Name
	}
	return "topic " + r.Name
}

// ownSources are the sources of a value set on the resource itself, the
// ones a DELETE removes. Against Kafka a broker's own are the per-broker
// dynamic configs; Sluice keeps dynamic broker configs cluster-wide, as
// DYNAMIC_DEFAULT_BROKER_CONFIG, and alters them through any broker's id.
func (r Resource) ownSources() []kmsg.ConfigSource {
	if r.Type == kmsg.ConfigResourceTypeBroker {
		return []kmsg.ConfigSource{kmsg.ConfigSourceDynamicBrokerConfig, kmsg.ConfigSourceDynamicDefaultBrokerConfig}
	}
	return []kmsg.ConfigSource{kmsg.ConfigSourceDynamicTopicConfig}
}

// describeConfigs returns every config of r, sorted by key.
func describeConfigs(ctx context.Context, adm *kadm.Client, r Resource) ([]kadm.Config, error) {
	var (
		rcs kadm.ResourceConfigs
		err error
	)
	switch {
	case r.Type == kmsg.ConfigResourceTypeBroker && r.Name == "":
		rcs, err = adm.DescribeBrokerConfigs(ctx) // the cluster-wide default
	case r.Type == kmsg.ConfigResourceTypeBroker:
		id, _ := strconv.ParseInt(r.Name, 10, 32) // checked by parseResource
		rcs, err = adm.DescribeBrokerConfigs(ctx, int32(id))
	default:
		rcs, err = adm.DescribeTopicConfigs(ctx, r.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("configs of %s: %w", r, err)
	}
	rc, err := rcs.On(r.Name, nil)
	if err != nil {
		return nil, fmt.Errorf("configs of %s: no answer from the broker", r)
	}
	if errors.Is(rc.Err, kerr.UnknownTopicOrPartition) && r.Type == kmsg.ConfigResourceTypeTopic {
		return nil, clientopts.MissingTopic(r.Name)
	}
	if rc.Err != nil {
		return nil, fmt.Errorf("configs of %s: %w", r, clientopts.KafkaErr(rc.Err, rc.ErrMessage))
	}
	cs := slices.Clone(rc.Configs)
	slices.SortFunc(cs, func(a, b kadm.Config) int { return strings.Compare(a.Key, b.Key) })
	return cs, nil
}

// DescribeOptions are the flags of `sluice config describe`.
type DescribeOptions struct {
	clientopts.Common
	Resource Resource
	All      bool // every config, not only those set somewhere
	Output   string
}

func describeCommand() *cobra.Command {
	o := DescribeOptions{}
	cmd := &cobra.Command{
		Use:   "describe (topic NAME | broker ID)",
		Short: "Show a topic's or a broker's configs with their sources and defaults",
		Long: `Show the configs of a topic or a broker: each one's value, its source and its
default. Without --all only the configs set somewhere (on the topic, or on the
brokers, dynamically or in their static configs) are shown; with --all every
one, the defaults included.

SOURCE is where the value comes from: DYNAMIC_TOPIC_CONFIG (set on the topic),
DYNAMIC_BROKER_CONFIG or DYNAMIC_DEFAULT_BROKER_CONFIG (set on the brokers
with alter), STATIC_BROKER_CONFIG (the broker's start-up configs, e.g.
sluice serve -c) or DEFAULT_CONFIG. DEFAULT is the built-in default; when it
comes from a broker config counted in another unit, it is shown as that
config's name=value (log.retention.hours=168 for retention.ms); "-" when
there is none. -o json adds every synonym (where else the value is set, in
order of precedence), as DescribeConfigs reports them.`,
		Example: `  sluice config describe topic orders
  sluice config describe topic orders --all
  sluice config describe broker 1 --all -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := parseResource(args[0], args[1])
			if err != nil {
				return err
			}
			o.SetStreams(cmd)
			o.Resource = r
			return RunDescribe(cmd.Context(), o)
		},
		ValidArgs: []string{"topic", "broker"},
	}
	f := cmd.Flags()
	clientopts.AddFlags(f, &o.Common)
	clientopts.AddOutputFlag(f, &o.Output)
	f.BoolVar(&o.All, "all", false, "every config, the ones with their default value too")
	return cmd
}

// Described is one config as `config describe -o json` prints it.
type Described struct {
	Key       string    `json:"key"`
	Value     *string   `json:"value"` // null if sensitive or without a value
	Source    string    `json:"source"`
	Default   *string   `json:"default"` // null if unknown
	Sensitive bool      `json:"sensitive"`
	Synonyms  []Synonym `json:"synonyms"`
}

// Synonym is one place a config's value is set, highest precedence first.
type Synonym struct {
	Key    string  `json:"key"`
	Value  *string `json:"value"`
	Source string  `json:"source"`
}

// RunDescribe prints the resource's configs.
func RunDescribe(ctx context.Context, o DescribeOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	if o.Resource.Name == "" && o.Resource.Type != kmsg.ConfigResourceTypeBroker {
		return errors.New("name the topic or broker whose configs to describe")
	}
	adm, _, err := o.Admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	cs, err := describeConfigs(ctx, adm, o.Resource)
	if err != nil {
		return err
	}
	out := []Described{}
	for _, c := range cs {
		if !o.All && c.Source == kmsg.ConfigSourceDefaultConfig {
			continue
		}
		d := Described{Key: c.Key, Value: c.Value, Source: c.Source.String(), Default: defaultOf(c), Sensitive: c.Sensitive, Synonyms: []Synonym{}}
		for _, s := range c.Synonyms {
			d.Synonyms = append(d.Synonyms, Synonym{Key: s.Key, Value: s.Value, Source: s.Source.String()})
		}
		out = append(out, d)
	}
	if o.Output == clientopts.OutputJSON {
		return clientopts.JSON(o.Stdout(), out)
	}
	if len(out) == 0 {
		_, err := fmt.Fprintf(o.Stdout(), "every config of %s has its default value (--all shows them)\n", o.Resource)
		return err
	}
	rows := make([][]string, 0, len(out))
	for _, d := range out {
		rows = append(rows, []string{d.Key, shown(d.Value, d.Sensitive, "(null)"), d.Source, shown(d.Default, d.Sensitive, "-")})
	}
	return clientopts.Table(o.Stdout(), []string{"KEY", "VALUE", "SOURCE", "DEFAULT"}, rows)
}

// defaultOf is c's built-in default: its value when that is where it comes
// from, else that of its DEFAULT_CONFIG synonym, written name=value when the
// synonym is counted in another unit (log.retention.hours for
// retention.ms); nil if unknown.
func defaultOf(c kadm.Config) *string {
	if c.Source == kmsg.ConfigSourceDefaultConfig {
		return c.Value
	}
	for _, s := range c.Synonyms {
		if s.Source != kmsg.ConfigSourceDefaultConfig || s.Value == nil {
			continue
		}
		if sameUnit(s.Key, c.Key) {
			return s.Value
		}
		v := s.Key + "=" + *s.Value
		return &v
	}
	return nil
}

// sameUnit is whether two config names end in the same word, which for
// Kafka's configs is the unit when there is one (segment.bytes and
// log.segment.bytes; not retention.ms and log.retention.hours).
func sameUnit(a, b string) bool {
	return a[strings.LastIndexByte(a, '.')+1:] == b[strings.LastIndexByte(b, '.')+1:]
}

// shown is a value in a table; null is nilText.
func shown(v *string, sensitive bool, nilText string) string {
	switch {
	case sensitive:
		return "(sensitive)"
	case v == nil:
		return nilText
	case *v == "":
		return `""`
	}
	return *v
}
