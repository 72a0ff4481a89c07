package collect

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Limits a config leaves at 0 take these defaults.
const (
	// DefaultMaxBodyBytes bounds a request body, compressed and again
	// decompressed (a gzip bomb stops here); over it, 413.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxEvents bounds the events of one request; over it, 413.
	DefaultMaxEvents = 1000
	// DefaultBufferBytes bounds the events accepted and not yet acknowledged
	// by the cluster (their encoded values and keys); full, 503.
	DefaultBufferBytes = 64 << 20
	// DefaultRefreshInterval is how often a stream on "latest" asks the
	// registry for a newer version.
	DefaultRefreshInterval = 30 * time.Second
	// DefaultDeliveryTimeout is how long a record may wait for the cluster
	// in memory before it is dropped (counted in
	// sluice_collect_events_dropped_total), without a spool.
	DefaultDeliveryTimeout = 2 * time.Minute
	// DefaultSpoolDeliveryTimeout is how long a record may wait for the
	// cluster in memory, with a spool, before it is spooled: short, because
	// a kill -9 loses what is in memory and not what is spooled.
	DefaultSpoolDeliveryTimeout = 10 * time.Second
	// DefaultRetryAfter is the Retry-After of a 503 and a 429.
	DefaultRetryAfter = 1 * time.Second
)

// Config is a collector's configuration file (YAML, or JSON, which is
// YAML). Unknown fields are refused: a typo must not silently open a
// stream or drop a limit.
type Config struct {
	// CollectorID is stamped on every record (header sluice-collector-id);
	// default: the host name.
	CollectorID string `yaml:"collector_id"`
	// SchemaRegistry is the base URL of a Confluent-compatible registry;
	// needed only when a stream names a schema.
	SchemaRegistry string `yaml:"schema_registry"`
	// RefreshInterval: how often "latest" schemas are fetched again.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	Limits          Limits        `yaml:"limits"`
	Spool           SpoolConfig   `yaml:"spool"`
	CORS            CORS          `yaml:"cors"`
	// Sources are the senders that hold a token, by name.
	Sources map[string]Source `yaml:"sources"`
	// Streams are served at /v1/streams/{name}.
	Streams map[string]Stream `yaml:"streams"`
}

// Limits of a collector; 0 means the Default of each.
type Limits struct {
	MaxBodyBytes    int64         `yaml:"max_body_bytes"`
	MaxEvents       int           `yaml:"max_events"`
	BufferBytes     int64         `yaml:"buffer_bytes"`
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"`
	RetryAfter      time.Duration `yaml:"retry_after"`
}

// SpoolConfig places the disk spool that takes events while the cluster
// cannot; without a dir there is none, and a full buffer is a 503.
type SpoolConfig struct {
	Dir string `yaml:"dir"`
	// MaxBytes bounds the spool's files (0: DefaultSpoolBytes); full, 503.
	MaxBytes int64 `yaml:"max_bytes"`
}

// CORS lists the origins browsers may post from ("*": any).
type CORS struct {
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// Source is one sender: its token (given as `Authorization: Bearer T` or,
// for sendBeacon and the GIF, as ?token=T) and its rate limit.
type Source struct {
	Token string `yaml:"token"`
	// TokenEnv names an environment variable holding the token instead,
	// to keep secrets out of the file.
	TokenEnv string `yaml:"token_env"`
	// RatePerSecond is requests per second (0: unlimited); Burst is how
	// many may come at once (0: RatePerSecond, at least 1).
	RatePerSecond float64 `yaml:"rate_per_second"`
	Burst         int     `yaml:"burst"`
}

// Stream maps /v1/streams/{name} to a topic.
type Stream struct {
	Topic string `yaml:"topic"`
	// KeyField is the top-level field whose value keys the record (so one
	// user's events share a partition); a missing field: no key.
	KeyField string `yaml:"key_field"`
	// Sources may post to the stream; empty: anyone, without a token.
	Sources []string `yaml:"sources"`
	// Schema validates and encodes events; absent: any JSON object, sent
	// as received.
	Schema *StreamSchema `yaml:"schema"`
}

// StreamSchema names a registered schema.
type StreamSchema struct {
	Subject string `yaml:"subject"`
	// Version is a number or "latest" (the default), which is refreshed.
	Version string `yaml:"version"`
	// JSONWirePrefix sends JSON Schema events with Confluent's 5-byte
	// prefix (magic 0 and the schema id) as Confluent's JSON serializer
	// does; off, as received. Avro events always carry it.
	JSONWirePrefix bool `yaml:"json_wire_prefix"`
}

// version returns the registry version to ask for: -1 for latest.
func (s *StreamSchema) version() (int, error) {
	if s.Version == "" || s.Version == "latest" {
		return -1, nil
	}
	v, err := strconv.Atoi(s.Version)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("schema version %q: want a number from 1, or latest", s.Version)
	}
	return v, nil
}

// ParseConfig parses and checks a config file's content.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("collect: parse config: %w", err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("collect: config: %w", err)
	}
	return &c, nil
}

// LoadConfig reads and parses the config file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("collect: read config: %w", err)
	}
	return ParseConfig(data)
}

// check refuses what cannot work and fills in defaults and env tokens.
func (c *Config) check() error {
	if len(c.Streams) == 0 {
		return errors.New("no streams: add one under streams: (see `sluice collect --help`)")
	}
	if c.CollectorID == "" {
		h, err := os.Hostname()
		if err != nil {
			h = "sluice-collect"
		}
		c.CollectorID = h
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	l := &c.Limits
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.MaxEvents <= 0 {
		l.MaxEvents = DefaultMaxEvents
	}
	if l.BufferBytes <= 0 {
		l.BufferBytes = DefaultBufferBytes
	}
	// DeliveryTimeout 0 is decided by New: it depends on the spool, which
	// a flag may set after the file is parsed.
	if l.DeliveryTimeout < 0 {
		l.DeliveryTimeout = 0
	}
	if l.RetryAfter <= 0 {
		l.RetryAfter = DefaultRetryAfter
	}
	if c.Spool.MaxBytes <= 0 {
		c.Spool.MaxBytes = DefaultSpoolBytes
	}
	tokens := map[string]string{}
	for name, s := range c.Sources {
		if s.TokenEnv != "" {
			s.Token = os.Getenv(s.TokenEnv)
			if s.Token == "" {
				return fmt.Errorf("source %q: environment variable %s is empty", name, s.TokenEnv)
			}
		}
		if s.Token == "" {
			return fmt.Errorf("source %q has no token (token: or token_env:)", name)
		}
		if other, ok := tokens[s.Token]; ok {
			return fmt.Errorf("sources %q and %q share a token: a token must name one source", other, name)
		}
		tokens[s.Token] = name
		if s.RatePerSecond < 0 || s.Burst < 0 {
			return fmt.Errorf("source %q: negative rate or burst", name)
		}
		c.Sources[name] = s
	}
	for name, st := range c.Streams {
		if strings.ContainsAny(name, "/ ") || name == "" {
			return fmt.Errorf("stream %q: a name may not hold / or spaces", name)
		}
		if st.Topic == "" {
			return fmt.Errorf("stream %q has no topic", name)
		}
		for _, src := range st.Sources {
			if _, ok := c.Sources[src]; !ok {
				return fmt.Errorf("stream %q names source %q, which is not under sources:", name, src)
			}
		}
		if st.Schema != nil {
			if st.Schema.Subject == "" {
				return fmt.Errorf("stream %q: schema has no subject", name)
			}
			if _, err := st.Schema.version(); err != nil {
				return fmt.Errorf("stream %q: %w", name, err)
			}
			if c.SchemaRegistry == "" {
				return fmt.Errorf("stream %q has a schema but schema_registry is not set", name)
			}
		}
	}
	return nil
}
