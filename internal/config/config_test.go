package config

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestNumberingMatchesKafka(t *testing.T) {
	types := map[Type]kmsg.ConfigType{
		TypeUnknown: kmsg.ConfigTypeUnknown, TypeBoolean: kmsg.ConfigTypeBoolean,
		TypeString: kmsg.ConfigTypeString, TypeInt: kmsg.ConfigTypeInt,
		TypeShort: kmsg.ConfigTypeShort, TypeLong: kmsg.ConfigTypeLong,
		TypeDouble: kmsg.ConfigTypeDouble, TypeList: kmsg.ConfigTypeList,
		TypeClass: kmsg.ConfigTypeClass, TypePassword: kmsg.ConfigTypePassword,
	}
	for ours, theirs := range types {
		if int8(ours) != int8(theirs) {
			t.Errorf("Type %v = %d, kmsg %v = %d", ours, ours, theirs, theirs)
		}
		if ours != TypeUnknown && ours.String() != theirs.String() {
			t.Errorf("Type %d String %q, kmsg %q", ours, ours, theirs)
		}
	}
	sources := map[Source]kmsg.ConfigSource{
		SourceUnknown:              kmsg.ConfigSourceUnknown,
		SourceDynamicTopic:         kmsg.ConfigSourceDynamicTopicConfig,
		SourceDynamicBroker:        kmsg.ConfigSourceDynamicBrokerConfig,
		SourceDynamicDefaultBroker: kmsg.ConfigSourceDynamicDefaultBrokerConfig,
		SourceStaticBroker:         kmsg.ConfigSourceStaticBrokerConfig,
		SourceDefault:              kmsg.ConfigSourceDefaultConfig,
		SourceDynamicBrokerLogger:  kmsg.ConfigSourceDynamicBrokerLoggerConfig,
	}
	for ours, theirs := range sources {
		if int8(ours) != int8(theirs) {
			t.Errorf("Source %v = %d, kmsg %v = %d", ours, ours, theirs, theirs)
		}
		if ours != SourceUnknown && ours.String() != theirs.String() {
			t.Errorf("Source %d String %q, kmsg %q", ours, ours, theirs)
		}
	}
}

func TestTopicDefsCatalogue(t *testing.T) {
	want := []string{
		"cleanup.policy", "compression.gzip.level", "compression.lz4.level",
		"compression.type", "compression.zstd.level", "delete.retention.ms",
		"file.delete.delay.ms", "flush.messages", "flush.ms",
		"follower.replication.throttled.replicas", "index.interval.bytes",
		"leader.replication.throttled.replicas", "local.retention.bytes",
		"local.retention.ms", "max.compaction.lag.ms", "max.message.bytes",
		"message.downconversion.enable", "message.timestamp.after.max.ms",
		"message.timestamp.before.max.ms", "message.timestamp.type",
		"min.cleanable.dirty.ratio", "min.compaction.lag.ms",
		"min.insync.replicas", "preallocate", "remote.log.copy.disable",
		"remote.log.delete.on.disable", "remote.storage.enable",
		"retention.bytes", "retention.ms", "segment.bytes",
		"segment.index.bytes", "segment.jitter.ms", "segment.ms",
		"sluice.mirror.source", // Sluice's own (offset-preserving mirrors)
		"unclean.leader.election.enable",
	}
	defs := TopicDefs()
	var got []string
	for _, d := range defs {
		got = append(got, d.Name)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("topic configs:\n got %v\nwant %v", got, want)
	}
	for _, d := range defs {
		if d.Doc == "" {
			t.Errorf("%s has no Doc", d.Name)
		}
		if d.Type == TypeUnknown {
			t.Errorf("%s has no Type", d.Name)
		}
		if d.ReadOnly {
			t.Errorf("%s: topic configs are all alterable", d.Name)
		}
		if err := d.Check(d.Default); err != nil {
			t.Errorf("%s default %q fails its own check: %v", d.Name, d.Default, err)
		}
		if d.BrokerSynonym != "" {
			if _, ok := BrokerDef(d.BrokerSynonym); !ok {
				t.Errorf("%s: broker synonym %s is not a broker config", d.Name, d.BrokerSynonym)
			}
		}
		if got, ok := TopicDef(d.Name); !ok || got.Name != d.Name {
			t.Errorf("TopicDef(%q) = %v, %v", d.Name, got.Name, ok)
		}
	}
	if _, ok := TopicDef("log.retention.ms"); ok {
		t.Error("log.retention.ms is a broker config, not a topic config")
	}
	// The returned slice is a copy.
	defs[0].Name = "mutated"
	if TopicDefs()[0].Name != "cleanup.policy" {
		t.Error("TopicDefs returned the catalogue itself")
	}
}

func TestBrokerDefsCatalogue(t *testing.T) {
	defs := BrokerDefs()
	if !slices.IsSortedFunc(defs, func(a, b Def) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("BrokerDefs not sorted by name")
	}
	for _, d := range defs {
		if d.Doc == "" {
			t.Errorf("%s has no Doc", d.Name)
		}
		if d.NullDefault {
			if d.Default != "" {
				t.Errorf("%s has a null default and Default %q", d.Name, d.Default)
			}
			continue
		}
		if err := d.Check(d.Default); err != nil {
			t.Errorf("%s default %q fails its own check: %v", d.Name, d.Default, err)
		}
	}
	for _, name := range []string{"broker.id", "node.id", "log.dirs", "num.partitions", "log.retention.hours", "socket.request.max.bytes"} {
		if d, _ := BrokerDef(name); !d.ReadOnly {
			t.Errorf("%s should be read-only", name)
		}
	}
	for _, name := range []string{"log.retention.ms", "log.segment.bytes", "message.max.bytes", "log.cleanup.policy", "min.insync.replicas", "log.flush.policy"} {
		if d, ok := BrokerDef(name); !ok || d.ReadOnly {
			t.Errorf("%s should exist and be dynamically alterable (ok=%v)", name, ok)
		}
	}
}

func TestDefaults(t *testing.T) {
	topic := map[string]string{
		"cleanup.policy":                  "delete",
		"compression.type":                "producer",
		"delete.retention.ms":             "86400000",
		"file.delete.delay.ms":            "60000",
		"flush.messages":                  "9223372036854775807",
		"flush.ms":                        "9223372036854775807",
		"index.interval.bytes":            "4096",
		"local.retention.bytes":           "-2",
		"local.retention.ms":              "-2",
		"max.compaction.lag.ms":           "9223372036854775807",
		"max.message.bytes":               "1048588",
		"message.timestamp.after.max.ms":  "3600000",
		"message.timestamp.before.max.ms": "9223372036854775807",
		"message.timestamp.type":          "CreateTime",
		"min.cleanable.dirty.ratio":       "0.5",
		"min.compaction.lag.ms":           "0",
		"min.insync.replicas":             "1",
		"preallocate":                     "false",
		"remote.storage.enable":           "false",
		"retention.bytes":                 "-1",
		"retention.ms":                    "604800000",
		"segment.bytes":                   "1073741824",
		"segment.index.bytes":             "10485760",
		"segment.jitter.ms":               "0",
		"segment.ms":                      "604800000",
		"unclean.leader.election.enable":  "false",
	}
	for name, want := range topic {
		d, ok := TopicDef(name)
		if !ok || d.Default != want {
			t.Errorf("topic %s default = %q (ok=%v), want %q", name, d.Default, ok, want)
		}
	}
	broker := map[string]string{
		"auto.create.topics.enable":        "true",
		"num.partitions":                   "1",
		"default.replication.factor":       "1",
		"log.retention.hours":              "168",
		"log.retention.bytes":              "-1",
		"log.segment.bytes":                "1073741824",
		"log.roll.hours":                   "168",
		"message.max.bytes":                "1048588",
		"log.cleanup.policy":               "delete",
		"log.message.timestamp.type":       "CreateTime",
		"offsets.topic.num.partitions":     "50",
		"offsets.retention.minutes":        "10080",
		"group.initial.rebalance.delay.ms": "3000",
		"group.min.session.timeout.ms":     "6000",
		"group.max.session.timeout.ms":     "1800000",
		"transaction.max.timeout.ms":       "900000",
		"transactional.id.expiration.ms":   "604800000",
		"socket.request.max.bytes":         "104857600",
		"min.insync.replicas":              "1",
		"compression.type":                 "producer",
		"delete.topic.enable":              "true",
		"log.index.interval.bytes":         "4096",
		"log.flush.interval.messages":      "9223372036854775807",
		"log.flush.policy":                 "acks-all",
		"broker.id":                        "-1",
	}
	for name, want := range broker {
		d, ok := BrokerDef(name)
		if !ok || d.Default != want || d.NullDefault {
			t.Errorf("broker %s default = %q (ok=%v null=%v), want %q", name, d.Default, ok, d.NullDefault, want)
		}
	}
	for _, name := range []string{"node.id", "log.dirs", "log.retention.ms", "log.retention.minutes", "log.roll.ms", "log.flush.interval.ms"} {
		if d, ok := BrokerDef(name); !ok || !d.NullDefault {
			t.Errorf("broker %s should have a null default (ok=%v)", name, ok)
		}
	}
}

// Every topic config's default must be what its broker synonym's default
// works out to, so a bare broker and the topic catalogue agree.
func TestTopicDefaultsAgreeWithBrokerDefaults(t *testing.T) {
	for _, e := range ResolveTopic(nil, Broker{}) {
		d, _ := TopicDef(e.Name)
		if e.Value != d.Default || e.Source != SourceDefault || e.Null {
			t.Errorf("%s resolves to %q from %v (null %v), want default %q", e.Name, e.Value, e.Source, e.Null, d.Default)
		}
		if d.BrokerSynonym == "" {
			if len(e.Synonyms) != 0 {
				t.Errorf("%s has no broker synonym but synonyms %v", e.Name, e.Synonyms)
			}
			continue
		}
		if len(e.Synonyms) == 0 || e.Synonyms[0].Source != SourceDefault {
			t.Errorf("%s: want a DEFAULT_CONFIG synonym, got %v", e.Name, e.Synonyms)
		}
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name, value string
		ok          bool
		hint        string // expected in the error
	}{
		{"segment.bytes", "1048576", true, ""},
		{"segment.bytes", " 1048576 ", true, ""},
		{"segment.bytes", "14", true, ""},
		{"segment.bytes", "13", false, "at least 14"},
		{"segment.bytes", "abc", false, "INT"},
		{"segment.bytes", "2147483648", false, "INT"},
		{"segment.bytes", "", false, "INT"},
		{"retention.ms", "-1", true, ""},
		{"retention.ms", "-2", false, "at least -1"},
		{"retention.ms", "9223372036854775808", false, "LONG"},
		{"retention.ms", "1.5", false, "LONG"},
		{"retention.bytes", "-100", true, ""},
		{"max.message.bytes", "-1", false, "at least 0"},
		{"preallocate", "TRUE", true, ""},
		{"preallocate", "False", true, ""},
		{"preallocate", "yes", false, "BOOLEAN"},
		{"preallocate", "1", false, "BOOLEAN"},
		{"min.cleanable.dirty.ratio", "0", true, ""},
		{"min.cleanable.dirty.ratio", "1", true, ""},
		{"min.cleanable.dirty.ratio", "0.25", true, ""},
		{"min.cleanable.dirty.ratio", "1.01", false, "between 0 and 1"},
		{"min.cleanable.dirty.ratio", "NaN", false, "DOUBLE"},
		{"min.cleanable.dirty.ratio", "half", false, "DOUBLE"},
		{"cleanup.policy", "delete", true, ""},
		{"cleanup.policy", "compact", true, ""},
		{"cleanup.policy", "compact,delete", true, ""},
		{"cleanup.policy", "delete, compact", true, ""},
		{"cleanup.policy", "", true, ""},
		{"cleanup.policy", "Compact", false, "[compact, delete]"},
		{"cleanup.policy", "delete,archive", false, "[compact, delete]"},
		{"compression.type", "producer", true, ""},
		{"compression.type", "uncompressed", true, ""},
		{"compression.type", "zstd", true, ""},
		{"compression.type", "none", false, "[uncompressed, zstd, lz4, snappy, gzip, producer]"},
		{"compression.type", "GZIP", false, "one of"},
		{"compression.gzip.level", "-1", true, ""},
		{"compression.gzip.level", "9", true, ""},
		{"compression.gzip.level", "0", false, "between 1 and 9, or -1"},
		{"compression.lz4.level", "18", false, "between 1 and 17"},
		{"compression.zstd.level", "-131072", true, ""},
		{"compression.zstd.level", "23", false, "between -131072 and 22"},
		{"message.timestamp.type", "LogAppendTime", true, ""},
		{"message.timestamp.type", "logappendtime", false, "[CreateTime, LogAppendTime]"},
		{"leader.replication.throttled.replicas", "", true, ""},
		{"leader.replication.throttled.replicas", "*", true, ""},
		{"leader.replication.throttled.replicas", "0:101, 1:102", true, ""},
		{"leader.replication.throttled.replicas", "0:101,*", false, "partitionId:brokerId"},
		{"follower.replication.throttled.replicas", "0-101", false, "partitionId:brokerId"},
		{"remote.storage.enable", "false", true, ""},
		{"remote.storage.enable", "true", false, "tiered storage"},
		{"local.retention.ms", "-2", true, ""},
		{"local.retention.ms", "-3", false, "at least -2"},
		{"segment.ms", "0", false, "at least 1"},
		{"min.insync.replicas", "0", false, "at least 1"},
	}
	for _, tc := range tests {
		d, ok := TopicDef(tc.name)
		if !ok {
			t.Fatalf("no topic config %s", tc.name)
		}
		err := d.Check(tc.value)
		if tc.ok {
			if err != nil {
				t.Errorf("%s=%q: unexpected error %v", tc.name, tc.value, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s=%q: accepted, want error", tc.name, tc.value)
			continue
		}
		if !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%s=%q: error %v does not wrap ErrInvalidValue", tc.name, tc.value, err)
		}
		if msg := err.Error(); !strings.Contains(msg, tc.name) || !strings.Contains(msg, tc.hint) {
			t.Errorf("%s=%q: error %q should name the key and contain %q", tc.name, tc.value, msg, tc.hint)
		}
	}
}

func TestCheckShort(t *testing.T) {
	d, _ := BrokerDef("offsets.topic.replication.factor")
	if d.Type != TypeShort {
		t.Fatalf("type %v", d.Type)
	}
	if err := d.Check("32767"); err != nil {
		t.Error(err)
	}
	if err := d.Check("32768"); !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "SHORT") {
		t.Errorf("32768: %v", err)
	}
	if err := d.Check("0"); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("0: %v", err)
	}
}

func TestValidateTopicConfigs(t *testing.T) {
	if err := ValidateTopicConfigs(nil); err != nil {
		t.Errorf("nil: %v", err)
	}
	good := map[string]string{
		"cleanup.policy":         "compact,delete",
		"retention.ms":           "-1",
		"segment.bytes":          "1048576",
		"message.timestamp.type": "LogAppendTime",
		"compression.type":       "lz4",
		"min.compaction.lag.ms":  "1000",
		"max.compaction.lag.ms":  "2000",
	}
	if err := ValidateTopicConfigs(good); err != nil {
		t.Errorf("good configs: %v", err)
	}

	err := ValidateTopicConfigs(map[string]string{"retention.ms": "1", "no.such.config": "x"})
	if !errors.Is(err, ErrUnknownConfig) || !strings.Contains(err.Error(), "no.such.config") {
		t.Errorf("unknown key: %v", err)
	}
	// A broker config is not a topic config.
	if err := ValidateTopicConfigs(map[string]string{"log.retention.ms": "1"}); !errors.Is(err, ErrUnknownConfig) {
		t.Errorf("broker key on a topic: %v", err)
	}
	// Removed in Kafka 4.0.
	if err := ValidateTopicConfigs(map[string]string{"message.format.version": "3.0"}); !errors.Is(err, ErrUnknownConfig) {
		t.Errorf("message.format.version: %v", err)
	}
	if err := ValidateTopicConfigs(map[string]string{"segment.bytes": "big"}); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("bad type: %v", err)
	}
	if err := ValidateTopicConfigs(map[string]string{"message.timestamp.type": "Now"}); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("bad enum: %v", err)
	}
	// The first error in key order is reported.
	err = ValidateTopicConfigs(map[string]string{"segment.ms": "0", "retention.ms": "-5"})
	if err == nil || !strings.Contains(err.Error(), "retention.ms") {
		t.Errorf("first error: %v", err)
	}
	// min.compaction.lag.ms > max.compaction.lag.ms, explicitly or against
	// the default.
	err = ValidateTopicConfigs(map[string]string{"min.compaction.lag.ms": "5000", "max.compaction.lag.ms": "1000"})
	if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "max.compaction.lag.ms") {
		t.Errorf("min > max lag: %v", err)
	}
	if err := ValidateTopicConfigs(map[string]string{"min.compaction.lag.ms": "5000"}); err != nil {
		t.Errorf("min lag against default max: %v", err)
	}
}

func TestValidateBrokerConfigs(t *testing.T) {
	good := map[string]string{
		"node.id":                          "1",
		"broker.id":                        "1",
		"log.dirs":                         "/var/lib/sluice",
		"log.retention.hours":              "24",
		"log.segment.bytes":                "1048576",
		"log.flush.policy":                 "none",
		"auto.create.topics.enable":        "false",
		"offsets.topic.replication.factor": "1",
	}
	if err := ValidateBrokerConfigs(good); err != nil {
		t.Errorf("good: %v", err)
	}
	tests := []struct {
		configs map[string]string
		want    error
		hint    string
	}{
		{map[string]string{"log.flush.policy": "always"}, ErrInvalidValue, "[acks-all, none]"},
		{map[string]string{"log.segment.bytes": "14"}, ErrInvalidValue, "at least 1048576"},
		{map[string]string{"node.id": "-1"}, ErrInvalidValue, "at least 0"},
		{map[string]string{"num.partitions": "0"}, ErrInvalidValue, "at least 1"},
		{map[string]string{"auto.create.topics.enable": "maybe"}, ErrInvalidValue, "BOOLEAN"},
		{map[string]string{"retention.ms": "1"}, ErrUnknownConfig, "retention.ms"},
		{map[string]string{"log.cleaner.min.compaction.lag.ms": "10", "log.cleaner.max.compaction.lag.ms": "5"}, ErrInvalidValue, "must not exceed"},
	}
	for _, tc := range tests {
		err := ValidateBrokerConfigs(tc.configs)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.hint) {
			t.Errorf("%v: got %v, want %v containing %q", tc.configs, err, tc.want, tc.hint)
		}
	}
}

func TestBrokerValue(t *testing.T) {
	b := Broker{
		Static:  map[string]string{"num.partitions": "3", "log.retention.hours": "24", "custom.key": "s"},
		Dynamic: map[string]string{"log.retention.hours": "48"},
	}
	tests := []struct {
		name, value string
		src         Source
	}{
		{"log.retention.hours", "48", SourceDynamicDefaultBroker},
		{"num.partitions", "3", SourceStaticBroker},
		{"default.replication.factor", "1", SourceDefault},
		{"log.retention.ms", "", SourceDefault}, // null default
		{"custom.key", "s", SourceStaticBroker},
		{"no.such.key", "", SourceUnknown},
	}
	for _, tc := range tests {
		v, src := b.Value(tc.name)
		if v != tc.value || src != tc.src {
			t.Errorf("Value(%s) = %q, %v; want %q, %v", tc.name, v, src, tc.value, tc.src)
		}
	}
	if v, src := (Broker{}).Value("log.flush.policy"); v != "acks-all" || src != SourceDefault {
		t.Errorf("zero Broker: %q, %v", v, src)
	}
}

func topicEntry(t *testing.T, topic map[string]string, b Broker, name string) Entry {
	t.Helper()
	for _, e := range ResolveTopic(topic, b) {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no entry %s", name)
	return Entry{}
}

func brokerEntry(t *testing.T, b Broker, name string) Entry {
	t.Helper()
	for _, e := range ResolveBroker(b) {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no entry %s", name)
	return Entry{}
}

func TestResolveTopicSourceOrder(t *testing.T) {
	b := Broker{
		Static:  map[string]string{"message.max.bytes": "2000000"},
		Dynamic: map[string]string{"message.max.bytes": "3000000"},
	}
	def := Synonym{"message.max.bytes", "1048588", SourceDefault}
	stat := Synonym{"message.max.bytes", "2000000", SourceStaticBroker}
	dyn := Synonym{"message.max.bytes", "3000000", SourceDynamicDefaultBroker}

	// Topic-level wins over everything.
	e := topicEntry(t, map[string]string{"max.message.bytes": "500"}, b, "max.message.bytes")
	want := Entry{
		Name: "max.message.bytes", Value: "500", Source: SourceDynamicTopic, Type: TypeInt,
		Synonyms: []Synonym{{"max.message.bytes", "500", SourceDynamicTopic}, dyn, stat, def},
	}
	want.Doc = e.Doc
	if !reflect.DeepEqual(e, want) {
		t.Errorf("topic override:\n got %+v\nwant %+v", e, want)
	}

	// Then dynamic broker.
	e = topicEntry(t, nil, b, "max.message.bytes")
	if e.Value != "3000000" || e.Source != SourceDynamicDefaultBroker || !reflect.DeepEqual(e.Synonyms, []Synonym{dyn, stat, def}) {
		t.Errorf("dynamic: %+v", e)
	}

	// Then static broker.
	e = topicEntry(t, nil, Broker{Static: b.Static}, "max.message.bytes")
	if e.Value != "2000000" || e.Source != SourceStaticBroker || !reflect.DeepEqual(e.Synonyms, []Synonym{stat, def}) {
		t.Errorf("static: %+v", e)
	}

	// Then the default.
	e = topicEntry(t, nil, Broker{}, "max.message.bytes")
	if e.Value != "1048588" || e.Source != SourceDefault || !reflect.DeepEqual(e.Synonyms, []Synonym{def}) {
		t.Errorf("default: %+v", e)
	}
}

func TestResolveTopicSynonymChains(t *testing.T) {
	hoursDefault := Synonym{"log.retention.hours", "168", SourceDefault}

	// Only the default: log.retention.hours=168 is converted to ms.
	e := topicEntry(t, nil, Broker{}, "retention.ms")
	if e.Value != "604800000" || e.Source != SourceDefault || !reflect.DeepEqual(e.Synonyms, []Synonym{hoursDefault}) {
		t.Errorf("default retention.ms: %+v", e)
	}

	// A static log.retention.hours beats the default and is converted.
	b := Broker{Static: map[string]string{"log.retention.hours": "24"}}
	e = topicEntry(t, nil, b, "retention.ms")
	if e.Value != "86400000" || e.Source != SourceStaticBroker ||
		!reflect.DeepEqual(e.Synonyms, []Synonym{{"log.retention.hours", "24", SourceStaticBroker}, hoursDefault}) {
		t.Errorf("static hours: %+v", e)
	}

	// log.retention.minutes beats log.retention.hours, log.retention.ms
	// beats both, whatever their sources.
	b = Broker{
		Static:  map[string]string{"log.retention.ms": "1000", "log.retention.minutes": "2"},
		Dynamic: map[string]string{"log.retention.hours": "1"},
	}
	e = topicEntry(t, nil, b, "retention.ms")
	wantSyns := []Synonym{
		{"log.retention.ms", "1000", SourceStaticBroker},
		{"log.retention.minutes", "2", SourceStaticBroker},
		{"log.retention.hours", "1", SourceDynamicDefaultBroker},
		hoursDefault,
	}
	if e.Value != "1000" || e.Source != SourceStaticBroker || !reflect.DeepEqual(e.Synonyms, wantSyns) {
		t.Errorf("ms over minutes over hours: %+v", e)
	}
	delete(b.Static, "log.retention.ms")
	if e = topicEntry(t, nil, b, "retention.ms"); e.Value != "120000" || e.Source != SourceStaticBroker {
		t.Errorf("minutes: %+v", e)
	}

	// Negative retention is unlimited, whatever the unit.
	b = Broker{Static: map[string]string{"log.retention.hours": "-1"}}
	if e = topicEntry(t, nil, b, "retention.ms"); e.Value != "-1" {
		t.Errorf("unlimited: %+v", e)
	}

	// segment.ms from log.roll.hours, flush.ms from the flusher interval.
	b = Broker{Static: map[string]string{"log.roll.hours": "1", "log.flush.scheduler.interval.ms": "500"}}
	if e = topicEntry(t, nil, b, "segment.ms"); e.Value != "3600000" || e.Source != SourceStaticBroker {
		t.Errorf("segment.ms: %+v", e)
	}
	if e = topicEntry(t, nil, b, "flush.ms"); e.Value != "500" || e.Source != SourceStaticBroker {
		t.Errorf("flush.ms: %+v", e)
	}
	b.Dynamic = map[string]string{"log.flush.interval.ms": "100"}
	if e = topicEntry(t, nil, b, "flush.ms"); e.Value != "100" || e.Source != SourceDynamicDefaultBroker {
		t.Errorf("flush.ms dynamic: %+v", e)
	}

	// A topic config without a broker synonym has only its default.
	e = topicEntry(t, nil, b, "leader.replication.throttled.replicas")
	if e.Value != "" || e.Null || e.Source != SourceDefault || e.Synonyms != nil || e.Type != TypeList {
		t.Errorf("no synonym: %+v", e)
	}
	e = topicEntry(t, map[string]string{"remote.storage.enable": "false"}, b, "remote.storage.enable")
	if e.Source != SourceDynamicTopic || len(e.Synonyms) != 1 {
		t.Errorf("no synonym, set on the topic: %+v", e)
	}
}

func TestResolveTopicIgnoresUnknownAndCoversAll(t *testing.T) {
	entries := ResolveTopic(map[string]string{"bogus": "1"}, Broker{})
	if len(entries) != len(TopicDefs()) {
		t.Fatalf("%d entries, want %d", len(entries), len(TopicDefs()))
	}
	for i, e := range entries {
		if e.Name != TopicDefs()[i].Name {
			t.Errorf("entry %d is %s, want %s", i, e.Name, TopicDefs()[i].Name)
		}
	}
}

func TestResolveBroker(t *testing.T) {
	b := Broker{
		Static:  map[string]string{"node.id": "7", "broker.id": "7", "log.retention.hours": "24", "log.dirs": "/data"},
		Dynamic: map[string]string{"log.segment.bytes": "2097152"},
	}
	entries := ResolveBroker(b)
	if len(entries) != len(BrokerDefs()) {
		t.Fatalf("%d entries, want %d", len(entries), len(BrokerDefs()))
	}

	e := brokerEntry(t, b, "node.id")
	if e.Value != "7" || e.Source != SourceStaticBroker || !e.ReadOnly || e.Null ||
		!reflect.DeepEqual(e.Synonyms, []Synonym{{"node.id", "7", SourceStaticBroker}}) {
		t.Errorf("node.id: %+v", e)
	}

	e = brokerEntry(t, b, "log.segment.bytes")
	want := []Synonym{{"log.segment.bytes", "2097152", SourceDynamicDefaultBroker}, {"log.segment.bytes", "1073741824", SourceDefault}}
	if e.Value != "2097152" || e.Source != SourceDynamicDefaultBroker || e.ReadOnly || !reflect.DeepEqual(e.Synonyms, want) {
		t.Errorf("log.segment.bytes: %+v", e)
	}

	// Unset, no default: null, DEFAULT_CONFIG, and (as in Kafka) no
	// synonyms even though its fallback log.retention.hours is set.
	e = brokerEntry(t, b, "log.retention.ms")
	if e.Value != "" || !e.Null || e.Source != SourceDefault || e.Synonyms != nil {
		t.Errorf("log.retention.ms: %+v", e)
	}
	e = brokerEntry(t, b, "log.retention.hours")
	want = []Synonym{{"log.retention.hours", "24", SourceStaticBroker}, {"log.retention.hours", "168", SourceDefault}}
	if e.Value != "24" || e.Source != SourceStaticBroker || !reflect.DeepEqual(e.Synonyms, want) {
		t.Errorf("log.retention.hours: %+v", e)
	}

	// Set: its own synonyms, then its fallbacks'.
	b.Static["log.retention.ms"] = "1000"
	e = brokerEntry(t, b, "log.retention.ms")
	want = []Synonym{
		{"log.retention.ms", "1000", SourceStaticBroker},
		{"log.retention.hours", "24", SourceStaticBroker},
		{"log.retention.hours", "168", SourceDefault},
	}
	if e.Value != "1000" || e.Null || e.Source != SourceStaticBroker || !reflect.DeepEqual(e.Synonyms, want) {
		t.Errorf("log.retention.ms set: %+v", e)
	}

	e = brokerEntry(t, Broker{}, "log.flush.policy")
	if e.Value != "acks-all" || e.Source != SourceDefault || e.Type != TypeString || e.ReadOnly || !strings.Contains(e.Doc, "fsync") {
		t.Errorf("log.flush.policy: %+v", e)
	}
}

func TestRedact(t *testing.T) {
	e := redact(Entry{Name: "p", Value: "secret", Sensitive: true, Synonyms: []Synonym{{"p", "secret", SourceStaticBroker}}})
	if e.Value != "" || !e.Null || e.Synonyms[0].Value != "" {
		t.Errorf("redact: %+v", e)
	}
}

func TestTopicConfigDefaults(t *testing.T) {
	got, err := TopicConfig(nil, Broker{})
	if err != nil {
		t.Fatal(err)
	}
	want := Topic{
		CleanupPolicy: "delete", Delete: true,
		SegmentBytes: 1073741824, SegmentMs: 604800000, SegmentJitterMs: 0,
		RetentionMs: 604800000, RetentionBytes: -1, MaxMessageBytes: 1048588,
		MessageTimestampType: "CreateTime",
		IndexIntervalBytes:   4096, SegmentIndexBytes: 10485760,
		FileDeleteDelayMs: 60000, MinCompactionLagMs: 0, MaxCompactionLagMs: math.MaxInt64,
		DeleteRetentionMs: 86400000, MinCleanableDirtyRatio: 0.5,
		MinInsyncReplicas: 1,
		CompressionType:   "producer", CompressionGzipLevel: -1, CompressionLz4Level: 9, CompressionZstdLevel: 3,
		MessageTimestampBeforeMaxMs: math.MaxInt64, MessageTimestampAfterMaxMs: 3600000,
		FlushMessages: math.MaxInt64, FlushMs: math.MaxInt64,
	}
	if got != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
}

func TestTopicConfigResolved(t *testing.T) {
	b := Broker{
		Static: map[string]string{
			"log.retention.hours":        "24",
			"log.segment.bytes":          "2097152",
			"log.message.timestamp.type": "LogAppendTime",
			"min.insync.replicas":        "2",
		},
		Dynamic: map[string]string{"log.cleanup.policy": "compact", "min.insync.replicas": "3"},
	}
	topic := map[string]string{
		"cleanup.policy":                 "delete, compact",
		"segment.bytes":                  " 4096 ",
		"max.message.bytes":              "100",
		"min.cleanable.dirty.ratio":      "0.1",
		"compression.type":               "uncompressed",
		"unclean.leader.election.enable": "TRUE",
	}
	got, err := TopicConfig(topic, b)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"CleanupPolicy", got.CleanupPolicy, "compact,delete"},
		{"Compact", got.Compact, true},
		{"Delete", got.Delete, true},
		{"SegmentBytes", got.SegmentBytes, int64(4096)},
		{"RetentionMs", got.RetentionMs, int64(86400000)},
		{"MaxMessageBytes", got.MaxMessageBytes, int32(100)},
		{"MessageTimestampType", got.MessageTimestampType, "LogAppendTime"},
		{"LogAppendTime", got.LogAppendTime, true},
		{"MinInsyncReplicas", got.MinInsyncReplicas, int32(3)},
		{"MinCleanableDirtyRatio", got.MinCleanableDirtyRatio, 0.1},
		{"CompressionType", got.CompressionType, "uncompressed"},
		{"UncleanLeaderElectionEnable", got.UncleanLeaderElectionEnable, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// The broker's compact policy applies when the topic sets none.
	got, err = TopicConfig(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.CleanupPolicy != "compact" || !got.Compact || got.Delete || got.SegmentBytes != 2097152 {
		t.Errorf("broker-derived: %+v", got)
	}

	// An empty policy neither deletes nor compacts.
	got, err = TopicConfig(map[string]string{"cleanup.policy": ""}, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.CleanupPolicy != "" || got.Compact || got.Delete {
		t.Errorf("empty policy: %+v", got)
	}
}

func TestTopicConfigErrors(t *testing.T) {
	if _, err := TopicConfig(map[string]string{"nope": "1"}, Broker{}); !errors.Is(err, ErrUnknownConfig) {
		t.Errorf("unknown: %v", err)
	}
	if _, err := TopicConfig(map[string]string{"retention.ms": "soon"}, Broker{}); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("bad topic value: %v", err)
	}
	// A bad broker value surfaces, naming where it came from.
	_, err := TopicConfig(nil, Broker{Static: map[string]string{"log.retention.hours": "a week"}})
	if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "log.retention.hours") || !strings.Contains(err.Error(), "STATIC_BROKER_CONFIG") {
		t.Errorf("bad broker value: %v", err)
	}
	_, err = TopicConfig(nil, Broker{Dynamic: map[string]string{"log.cleanup.policy": "archive"}})
	if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "cleanup.policy") {
		t.Errorf("bad dynamic broker value: %v", err)
	}
}

// TestReplicationThrottledRates: KIP-73's two rates are dynamic LONG broker
// configs, unthrottled (Long.MAX_VALUE) by default and at least 1.
func TestReplicationThrottledRates(t *testing.T) {
	for _, name := range []string{"leader.replication.throttled.rate", "follower.replication.throttled.rate"} {
		d, ok := BrokerDef(name)
		if !ok || d.ReadOnly || d.Type != TypeLong || d.Default != "9223372036854775807" || d.Unsupported != "" {
			t.Errorf("%s: %+v (found %v); want a dynamic LONG defaulting to Long.MAX_VALUE", name, d, ok)
			continue
		}
		if v, src := (Broker{}).Value(name); v != d.Default || src != SourceDefault {
			t.Errorf("%s unset: %q from %v", name, v, src)
		}
		if v, _ := (Broker{Static: map[string]string{name: "5"}, Dynamic: map[string]string{name: "1048576"}}).Value(name); v != "1048576" {
			t.Errorf("%s: the dynamic value does not override the static one: %q", name, v)
		}
		for v, ok := range map[string]bool{"1": true, "1048576": true, d.Default: true, "0": false, "-1": false, "1.5": false, "fast": false} {
			if err := ValidateBrokerConfigs(map[string]string{name: v}); (err == nil) != ok {
				t.Errorf("%s=%q: %v, want accepted %v", name, v, err, ok)
			} else if err != nil && !errors.Is(err, ErrInvalidValue) {
				t.Errorf("%s=%q: %v, want ErrInvalidValue", name, v, err)
			}
		}
	}
}

// TestPerBrokerPrecedence: a broker's own dynamic value
// (DYNAMIC_BROKER_CONFIG) beats the cluster-wide one, which beats the
// static one and the default; synonyms list them in that order, as Kafka's
// DescribeConfigs does, for broker configs and for the topic configs that
// fall back to them.
func TestPerBrokerPrecedence(t *testing.T) {
	b := Broker{
		Static:    map[string]string{"message.max.bytes": "2000000"},
		Dynamic:   map[string]string{"message.max.bytes": "3000000", "log.retention.hours": "48"},
		PerBroker: map[string]string{"message.max.bytes": "4000000", "log.retention.minutes": "30"},
	}
	if v, src := b.Value("message.max.bytes"); v != "4000000" || src != SourceDynamicBroker {
		t.Errorf("Value = %q from %v, want the per-broker 4000000", v, src)
	}
	if v, src := (Broker{Static: b.Static, Dynamic: b.Dynamic}).Value("message.max.bytes"); v != "3000000" || src != SourceDynamicDefaultBroker {
		t.Errorf("without a per-broker value: %q from %v, want the cluster-wide 3000000", v, src)
	}
	per := Synonym{"message.max.bytes", "4000000", SourceDynamicBroker}
	dyn := Synonym{"message.max.bytes", "3000000", SourceDynamicDefaultBroker}
	stat := Synonym{"message.max.bytes", "2000000", SourceStaticBroker}
	def := Synonym{"message.max.bytes", "1048588", SourceDefault}
	e := brokerEntry(t, b, "message.max.bytes")
	if e.Value != "4000000" || e.Source != SourceDynamicBroker || !reflect.DeepEqual(e.Synonyms, []Synonym{per, dyn, stat, def}) {
		t.Errorf("broker entry: %+v", e)
	}
	e = topicEntry(t, nil, b, "max.message.bytes")
	if e.Value != "4000000" || e.Source != SourceDynamicBroker || !reflect.DeepEqual(e.Synonyms, []Synonym{per, dyn, stat, def}) {
		t.Errorf("topic entry: %+v", e)
	}
	// Along a fallback chain, by precedence: the per-broker minutes beat
	// the cluster-wide hours.
	e = topicEntry(t, nil, b, "retention.ms")
	if e.Value != "1800000" || e.Source != SourceDynamicBroker || len(e.Synonyms) != 3 ||
		e.Synonyms[0] != (Synonym{"log.retention.minutes", "30", SourceDynamicBroker}) ||
		e.Synonyms[1] != (Synonym{"log.retention.hours", "48", SourceDynamicDefaultBroker}) {
		t.Errorf("retention.ms: %+v", e)
	}
	tc, err := TopicConfig(nil, b)
	if err != nil || tc.MaxMessageBytes != 4000000 || tc.RetentionMs != 1800000 {
		t.Errorf("TopicConfig: max.message.bytes %d, retention.ms %d, %v", tc.MaxMessageBytes, tc.RetentionMs, err)
	}
}

// TestCordonedLogDirs: KIP-1066's cordoned.log.dirs is a dynamic LIST,
// empty by default; * alone, nothing, or absolute paths of log dirs are
// accepted, and * among the items cordons the whole broker.
func TestCordonedLogDirs(t *testing.T) {
	d, ok := BrokerDef(CordonedLogDirs)
	if !ok || d.ReadOnly || d.Type != TypeList || d.Default != "" || d.NullDefault || d.Unsupported != "" {
		t.Fatalf("%s: %+v (found %v); want a dynamic LIST defaulting to empty", CordonedLogDirs, d, ok)
	}
	for v, ok := range map[string]bool{"": true, "*": true, " * ": true, "/data/sluice": true, "/d1, /d2/": true, "*,/data": false, "a,b": false} {
		err := ValidateBrokerConfigs(map[string]string{CordonedLogDirs: v})
		if (err == nil) != ok {
			t.Errorf("%s=%q: %v, want accepted %v", CordonedLogDirs, v, err, ok)
		} else if err != nil && !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%s=%q: %v, want ErrInvalidValue", CordonedLogDirs, v, err)
		}
	}
	if got := CordonedDirs(" /d1, /d2/ "); !slices.Equal(got, []string{"/d1", "/d2"}) {
		t.Errorf("CordonedDirs = %q", got)
	}
	for v, want := range map[string]bool{"": false, "*": true, " * ": true, "/d1, *": true, "/d1,/d2": false, "**": false} {
		if got := CordonsAll(v); got != want {
			t.Errorf("CordonsAll(%q) = %v, want %v", v, got, want)
		}
	}
}
