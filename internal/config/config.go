// Package config is the catalogue of the Kafka topic and broker configs Sluice
// understands: their Kafka names, DescribeConfigs types, defaults, broker
// synonyms and validation, plus the resolution of an effective value and its
// source (topic override, dynamic broker config, static broker config,
// default) the way Kafka reports it in DescribeConfigs.
//
// The catalogue follows Apache Kafka 4.0 (with message.downconversion.enable
// kept from 3.x, where it is a no-op in 4.0). It is used by the
// DescribeConfigs, AlterConfigs, IncrementalAlterConfigs and CreateTopics
// handlers, and TopicConfig gives the log layer a typed view of a topic's
// effective configuration.
package config

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Type is a config's data type, numbered as Kafka's DescribeConfigs
// ConfigType (kmsg.ConfigType).
type Type int8

// Config types, with Kafka's DescribeConfigs numbering.
const (
	TypeUnknown  Type = 0
	TypeBoolean  Type = 1
	TypeString   Type = 2
	TypeInt      Type = 3 // 32-bit signed
	TypeShort    Type = 4 // 16-bit signed
	TypeLong     Type = 5 // 64-bit signed
	TypeDouble   Type = 6
	TypeList     Type = 7 // comma-separated
	TypeClass    Type = 8
	TypePassword Type = 9
)

// String returns Kafka's name of the type (BOOLEAN, STRING, ...).
func (t Type) String() string {
	switch t {
	case TypeBoolean:
		return "BOOLEAN"
	case TypeString:
		return "STRING"
	case TypeInt:
		return "INT"
	case TypeShort:
		return "SHORT"
	case TypeLong:
		return "LONG"
	case TypeDouble:
		return "DOUBLE"
	case TypeList:
		return "LIST"
	case TypeClass:
		return "CLASS"
	case TypePassword:
		return "PASSWORD"
	}
	return "UNKNOWN"
}

// Source is where a config value comes from, numbered as Kafka's
// DescribeConfigs ConfigSource (kmsg.ConfigSource).
type Source int8

// Config sources, with Kafka's DescribeConfigs numbering.
const (
	SourceUnknown Source = 0
	// SourceDynamicTopic is a config set on the topic itself.
	SourceDynamicTopic Source = 1
	// SourceDynamicBroker is a dynamic config set for one broker
	// (Broker.PerBroker).
	SourceDynamicBroker Source = 2
	// SourceDynamicDefaultBroker is a dynamic config set cluster-wide for
	// all brokers (Broker.Dynamic).
	SourceDynamicDefaultBroker Source = 3
	// SourceStaticBroker is a config from the broker's startup
	// configuration.
	SourceStaticBroker Source = 4
	// SourceDefault is the built-in default.
	SourceDefault Source = 5
	// SourceDynamicBrokerLogger is a broker logger level (KIP-412).
	SourceDynamicBrokerLogger Source = 6
)

// String returns Kafka's name of the source (DYNAMIC_TOPIC_CONFIG, ...).
func (s Source) String() string {
	switch s {
	case SourceDynamicTopic:
		return "DYNAMIC_TOPIC_CONFIG"
	case SourceDynamicBroker:
		return "DYNAMIC_BROKER_CONFIG"
	case SourceDynamicDefaultBroker:
		return "DYNAMIC_DEFAULT_BROKER_CONFIG"
	case SourceStaticBroker:
		return "STATIC_BROKER_CONFIG"
	case SourceDefault:
		return "DEFAULT_CONFIG"
	case SourceDynamicBrokerLogger:
		return "DYNAMIC_BROKER_LOGGER_CONFIG"
	}
	return "UNKNOWN"
}

// Errors returned, wrapped with the key, the value and what is allowed, by
// Def.Check, ValidateTopicConfigs, ValidateBrokerConfigs and TopicConfig.
// Both map to Kafka's INVALID_CONFIG error code.
var (
	ErrUnknownConfig = errors.New("config: unknown config")
	ErrInvalidValue  = errors.New("config: invalid value")
)

// Def describes one config.
type Def struct {
	Name string
	Type Type
	// Default is the built-in default as Kafka prints it in
	// DescribeConfigs. It is meaningless when NullDefault is set.
	Default string
	// NullDefault means the config has no default (Kafka's null): when it
	// is not set, DescribeConfigs reports a null value.
	NullDefault bool
	// BrokerSynonym is, for a topic config, the broker config that
	// supplies its cluster default (Kafka's "Server Default Property"),
	// or "" when the topic config has none. Some synonyms have
	// lower-priority fallbacks (log.retention.ms falls back to
	// log.retention.minutes, then log.retention.hours); resolution
	// follows them.
	BrokerSynonym string
	// Doc is a one-line description.
	Doc string
	// Sensitive values (passwords) are never returned by DescribeConfigs.
	Sensitive bool
	// ReadOnly configs cannot be changed with AlterConfigs or
	// IncrementalAlterConfigs (Kafka's "read-only" update mode). They may
	// still be set in the broker's static configuration.
	ReadOnly bool
	// Validate, when non-nil, checks a value that already parses as Type
	// (ranges, allowed strings). It returns a reason, without the key.
	Validate func(string) error
	// Unsupported, when set, says why Sluice does not act on the config
	// (yet) and what to use instead. Check then accepts only the default
	// (nothing at all for a null default), so that no setting, static or
	// dynamic, is silently ignored.
	Unsupported string
}

// Check reports whether v is a valid value for the config: it must parse as
// the config's type (surrounding whitespace is ignored, as Kafka does) and
// pass Validate. The error wraps ErrInvalidValue and names the key, the value
// and what is allowed.
func (d Def) Check(v string) error {
	t := strings.TrimSpace(v)
	if err := checkType(d.Type, t); err != nil {
		return invalid(d.Name, v, err.Error())
	}
	if d.Validate != nil {
		if err := d.Validate(t); err != nil {
			return invalid(d.Name, v, err.Error())
		}
	}
	if d.Unsupported != "" && (d.NullDefault || !sameValue(d.Type, t, d.Default)) {
		only := "leave it unset"
		if !d.NullDefault {
			only = fmt.Sprintf("only its default, %s, is accepted", d.Default)
		}
		return invalid(d.Name, v, fmt.Sprintf("not supported: %s; %s", d.Unsupported, only))
	}
	return nil
}

// sameValue reports whether the trimmed values a and b of type typ are
// equal as values (007 and 7 are the same INT, TRUE and true the same
// BOOLEAN). Both parse as typ.
func sameValue(typ Type, a, b string) bool {
	b = strings.TrimSpace(b)
	switch typ {
	case TypeBoolean:
		return strings.EqualFold(a, b)
	case TypeInt, TypeShort, TypeLong:
		x, errA := strconv.ParseInt(a, 10, 64)
		y, errB := strconv.ParseInt(b, 10, 64)
		return errA == nil && errB == nil && x == y
	case TypeDouble:
		x, errA := parseDouble(a)
		y, errB := parseDouble(b)
		return errA == nil && errB == nil && x == y
	case TypeList:
		// The same elements, in any order and case ("controller,broker"
		// is process.roles' default too).
		return slices.Equal(ListElems(a), ListElems(b))
	}
	return a == b
}

// ListElems is a list value's elements, trimmed, lower-cased and sorted.
func ListElems(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.ToLower(strings.TrimSpace(e)); e != "" {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

func invalid(name, v, reason string) error {
	return fmt.Errorf("%w %q for %s: %s", ErrInvalidValue, v, name, reason)
}

func unknown(name, kind string) error {
	return fmt.Errorf("%w %q: not a %s config", ErrUnknownConfig, name, kind)
}

// checkType checks that the trimmed value t parses as typ, the way Kafka's
// ConfigDef.parseType does.
func checkType(typ Type, t string) error {
	switch typ {
	case TypeBoolean:
		if _, err := parseBool(t); err != nil {
			return err
		}
	case TypeInt:
		if _, err := strconv.ParseInt(t, 10, 32); err != nil {
			return errors.New("must be an INT (32-bit integer)")
		}
	case TypeShort:
		if _, err := strconv.ParseInt(t, 10, 16); err != nil {
			return errors.New("must be a SHORT (16-bit integer)")
		}
	case TypeLong:
		if _, err := strconv.ParseInt(t, 10, 64); err != nil {
			return errors.New("must be a LONG (64-bit integer)")
		}
	case TypeDouble:
		if _, err := parseDouble(t); err != nil {
			return err
		}
	case TypeString, TypeList, TypeClass, TypePassword:
		// Any string; lists are checked item by item by Validate.
	default:
		return fmt.Errorf("config has unknown type %d", typ)
	}
	return nil
}

// parseBool accepts true or false in any case, as Kafka does.
func parseBool(t string) (bool, error) {
	switch {
	case strings.EqualFold(t, "true"):
		return true, nil
	case strings.EqualFold(t, "false"):
		return false, nil
	}
	return false, errors.New("must be a BOOLEAN (true or false)")
}

func parseDouble(t string) (float64, error) {
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errors.New("must be a DOUBLE (finite number)")
	}
	return f, nil
}

// splitList splits a LIST value as Kafka does: an empty (or blank) value is
// the empty list, otherwise items are separated by commas with surrounding
// whitespace ignored.
func splitList(v string) []string {
	t := strings.TrimSpace(v)
	if t == "" {
		return nil
	}
	items := strings.Split(t, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

// Validators. Each is given a value that already parses as the config's
// type, but re-parses defensively so it can be called on its own.

func atLeast(min int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return errors.New("must be an integer")
		}
		if n < min {
			return fmt.Errorf("must be at least %d", min)
		}
		return nil
	}
}

func between(min, max int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return errors.New("must be an integer")
		}
		if n < min || n > max {
			return fmt.Errorf("must be between %d and %d", min, max)
		}
		return nil
	}
}

// betweenOr allows [min, max] and the single value or.
func betweenOr(min, max, or int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return errors.New("must be an integer")
		}
		if n != or && (n < min || n > max) {
			return fmt.Errorf("must be between %d and %d, or %d", min, max, or)
		}
		return nil
	}
}

func ratio(min, max float64) func(string) error {
	return func(v string) error {
		f, err := parseDouble(strings.TrimSpace(v))
		if err != nil {
			return err
		}
		if f < min || f > max {
			return fmt.Errorf("must be between %g and %g", min, max)
		}
		return nil
	}
}

// oneOf allows exactly one of the given strings (case-sensitive, as Kafka's
// ValidString).
func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(allowed, strings.TrimSpace(v)) {
			return fmt.Errorf("must be one of [%s]", strings.Join(allowed, ", "))
		}
		return nil
	}
}

// listOf allows a (possibly empty) comma-separated list whose every item is
// one of the given strings (case-sensitive, as Kafka's ValidList).
func listOf(allowed ...string) func(string) error {
	return func(v string) error {
		for _, it := range splitList(v) {
			if !slices.Contains(allowed, it) {
				return fmt.Errorf("each item must be one of [%s]; got %q", strings.Join(allowed, ", "), it)
			}
		}
		return nil
	}
}

// throttledReplicas accepts Kafka's throttled replica lists: "*" alone, or a
// comma-separated list of partitionId:brokerId.
func throttledReplicas(v string) error {
	items := splitList(v)
	if len(items) == 1 && items[0] == "*" {
		return nil
	}
	for _, it := range items {
		p, b, ok := strings.Cut(it, ":")
		if !ok || !isDigits(p) || !isDigits(b) {
			return errors.New("must be * or a list of partitionId:brokerId, e.g. 0:101,1:102")
		}
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
