package config

// Broker is a broker's configuration as it stands: Static is its startup
// configuration, Dynamic the cluster-wide dynamic configs set with
// AlterConfigs/IncrementalAlterConfigs on the BROKER resource "" (reported
// as DYNAMIC_DEFAULT_BROKER_CONFIG), PerBroker the dynamic configs set on
// this broker's own resource, its id (DYNAMIC_BROKER_CONFIG). Kafka's
// precedence, highest first: PerBroker, Dynamic, Static, the default. Any
// may be nil.
type Broker struct {
	Static    map[string]string
	Dynamic   map[string]string
	PerBroker map[string]string
}

// Value returns the value of the broker config called name and where it comes
// from: this broker's dynamic value, else a cluster-wide dynamic one, else a
// static one, else the default (SourceDefault; "" for a config with a null
// default). A name that is neither set nor a known broker config gives ("",
// SourceUnknown). Value looks at name alone: it does not follow fallbacks
// such as log.retention.ms -> log.retention.hours (TopicConfig and
// ResolveTopic do).
func (b Broker) Value(name string) (string, Source) {
	if v, ok := b.PerBroker[name]; ok {
		return v, SourceDynamicBroker
	}
	if v, ok := b.Dynamic[name]; ok {
		return v, SourceDynamicDefaultBroker
	}
	if v, ok := b.Static[name]; ok {
		return v, SourceStaticBroker
	}
	if d, ok := BrokerDef(name); ok {
		if d.NullDefault {
			return "", SourceDefault
		}
		return d.Default, SourceDefault
	}
	return "", SourceUnknown
}

// Entry is one config as DescribeConfigs reports it.
type Entry struct {
	Name  string
	Value string
	// Null means the value is null: a config with no default that is not
	// set, or a sensitive one.
	Null      bool
	Source    Source
	ReadOnly  bool
	Sensitive bool
	Type      Type
	Doc       string
	// Synonyms are the places the value could come from, highest
	// precedence first; the first is the one in effect. A handler drops
	// them unless the request asked for synonyms.
	Synonyms []Synonym
}

// Synonym is one place a config's value is set (DescribeConfigs synonym). For
// a broker synonym its Value is the broker config's own value, before any
// unit conversion (log.retention.hours=168, not 604800000).
type Synonym struct {
	Name   string
	Value  string
	Source Source
}

// synonymDef is one broker config in a fallback chain, with conv converting
// its value to the unit of the chain's first config (nil: no conversion).
type synonymDef struct {
	name string
	conv func(string) (string, error)
}

// brokerChains are Kafka's broker configs that fall back to others when unset
// (DynamicBrokerConfig.brokerConfigSynonyms), in precedence order.
var brokerChains = [][]synonymDef{
	{
		// Negative means unlimited (-1), as KafkaConfig.logRetentionTimeMillis.
		{"log.retention.ms", msConverter(1)},
		{"log.retention.minutes", msConverter(60 * 1000)},
		{"log.retention.hours", msConverter(60 * 60 * 1000)},
	},
	{{"log.roll.ms", nil}, {"log.roll.hours", msConverter(60 * 60 * 1000)}},
	{{"log.roll.jitter.ms", nil}, {"log.roll.jitter.hours", msConverter(60 * 60 * 1000)}},
	{{"log.flush.interval.ms", nil}, {"log.flush.scheduler.interval.ms", nil}},
}

// brokerChain returns the fallback chain name belongs to and name's position
// in it; a config without fallbacks is a chain of its own.
func brokerChain(name string) ([]synonymDef, int) {
	for _, c := range brokerChains {
		for i, s := range c {
			if s.name == name {
				return c, i
			}
		}
	}
	return []synonymDef{{name, nil}}, 0
}

// chainSynonyms lists where each config of chain is set on b, in precedence
// order: per config, its per-broker dynamic value, its cluster-wide dynamic
// value, its static value, then its default (configs with a null default
// have none). convs[i] converts syns[i].
func chainSynonyms(chain []synonymDef, b Broker) (syns []Synonym, convs []func(string) (string, error)) {
	for _, s := range chain {
		if v, ok := b.PerBroker[s.name]; ok {
			syns = append(syns, Synonym{s.name, v, SourceDynamicBroker})
			convs = append(convs, s.conv)
		}
		if v, ok := b.Dynamic[s.name]; ok {
			syns = append(syns, Synonym{s.name, v, SourceDynamicDefaultBroker})
			convs = append(convs, s.conv)
		}
		if v, ok := b.Static[s.name]; ok {
			syns = append(syns, Synonym{s.name, v, SourceStaticBroker})
			convs = append(convs, s.conv)
		}
		if d, ok := BrokerDef(s.name); ok && !d.NullDefault {
			syns = append(syns, Synonym{s.name, d.Default, SourceDefault})
			convs = append(convs, s.conv)
		}
	}
	return syns, convs
}

// resolveTopicEntry resolves topic config d: the topic's own value, else the
// first broker synonym set (dynamic, static, or default, following fallback
// chains), else d's default. Values are not redacted.
func resolveTopicEntry(d Def, topic map[string]string, b Broker) Entry {
	e := Entry{Name: d.Name, ReadOnly: d.ReadOnly, Sensitive: d.Sensitive, Type: d.Type, Doc: d.Doc}
	var syns []Synonym
	var convs []func(string) (string, error)
	if v, ok := topic[d.Name]; ok {
		syns = append(syns, Synonym{d.Name, v, SourceDynamicTopic})
		convs = append(convs, nil)
	}
	if d.BrokerSynonym != "" {
		chain, i := brokerChain(d.BrokerSynonym)
		s, c := chainSynonyms(chain[i:], b)
		syns = append(syns, s...)
		convs = append(convs, c...)
	}
	if len(syns) == 0 {
		e.Value, e.Null, e.Source = d.Default, d.NullDefault, SourceDefault
		return e
	}
	e.Value, e.Source, e.Synonyms = syns[0].Value, syns[0].Source, syns
	if convs[0] != nil {
		// An unconvertible broker value is passed on as it is, so that
		// checking the entry reports it.
		if v, err := convs[0](syns[0].Value); err == nil {
			e.Value = v
		}
	}
	return e
}

// resolveBrokerEntry resolves broker config d on b. Its synonyms are, as in
// Kafka, d's own settings followed by those of the configs d falls back to,
// and none at all when d itself is not set anywhere and has no default.
func resolveBrokerEntry(d Def, b Broker) Entry {
	e := Entry{Name: d.Name, ReadOnly: d.ReadOnly, Sensitive: d.Sensitive, Type: d.Type, Doc: d.Doc}
	e.Value, e.Source = b.Value(d.Name)
	e.Null = e.Source == SourceDefault && d.NullDefault
	chain, i := brokerChain(d.Name)
	syns, _ := chainSynonyms(chain[i:], b)
	if len(syns) > 0 && syns[0].Name == d.Name {
		e.Synonyms = syns
	}
	return e
}

// redact hides a sensitive entry's values, as DescribeConfigs must.
func redact(e Entry) Entry {
	if !e.Sensitive {
		return e
	}
	e.Value, e.Null = "", true
	for i := range e.Synonyms {
		e.Synonyms[i].Value = ""
	}
	return e
}

// ResolveTopic returns every topic config, sorted by name, as DescribeConfigs
// reports it for a topic whose own configs are topicConfigs on broker b: the
// effective value, its source, and its synonyms in precedence order (the
// topic's own value, then the broker synonym's dynamic and static values, then
// the broker default). A broker synonym counted in another unit is converted:
// with log.retention.hours=168 as the default, retention.ms is 604800000
// while its synonym reads log.retention.hours=168. A topic config without a
// broker synonym and not set on the topic has its default and no synonyms.
// Names in topicConfigs that are not topic configs are ignored.
//
// For the few broker synonyms with fallbacks (log.retention.ms, log.roll.ms,
// log.roll.jitter.ms, log.flush.interval.ms) Kafka lists the synonyms by
// source first (every dynamic value, then every static one, then defaults)
// and drops all those listed before the first one of the primary broker
// config, so that, say, retention.ms shows no synonyms and DEFAULT_CONFIG
// even when log.retention.hours is set statically. Sluice lists them by
// precedence instead, so the first synonym is always the one in effect and
// the source matches the value. For every other config the two agree.
func ResolveTopic(topicConfigs map[string]string, b Broker) []Entry {
	out := make([]Entry, 0, len(topicDefs))
	for _, d := range topicDefs {
		out = append(out, redact(resolveTopicEntry(d, topicConfigs, b)))
	}
	return out
}

// ResolveBroker returns every broker config, sorted by name, as
// DescribeConfigs reports it for broker b: each config's own value
// (per-broker dynamic, else cluster-wide dynamic, else static, else default;
// Null for an unset config without default), its source, whether it is
// read-only, and its synonyms.
func ResolveBroker(b Broker) []Entry {
	out := make([]Entry, 0, len(brokerDefs))
	for _, d := range brokerDefs {
		out = append(out, redact(resolveBrokerEntry(d, b)))
	}
	return out
}
