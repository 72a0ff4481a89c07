package serve

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/freeport"
	"github.com/sluice-io/sluice/internal/server"
)

// What sluice serve does with a broker config set with -c.
const (
	// actedOn: accepted, and acted on by the broker or the protocol
	// handlers (the comment of each says where).
	actedOn = iota
	// wired: accepted and turned into settings by resolve; the entry's
	// check looks at them.
	wired
	// refused: sluice serve does not start; the error names the config.
	refused
)

// decision is what sluice serve must do with a non-default value of a
// broker config.
type decision struct {
	value string // a valid value other than the default
	does  int
	check func(settings) bool // wired: the value shows in the settings
}

// brokerConfigDecisions holds every broker config Sluice knows. A config
// added to internal/config without an entry here fails
// TestEveryBrokerConfigIsDecided: decide whether it is acted on, wired
// here, or refused (config.Def.Unsupported) before adding it.
var brokerConfigDecisions = map[string]decision{
	"auto.create.topics.enable":               {"false", actedOn, nil}, // api: autoCreate
	"auto.leader.rebalance.enable":            {"false", actedOn, nil}, // controller: preferred leaders
	"broker.heartbeat.interval.ms":            {"500", actedOn, nil},   // broker: heartbeats to the controller
	"broker.id":                               {"5", refused, nil},     // must be -1 or node.id (1)
	"broker.session.timeout.ms":               {"3000", actedOn, nil},  // controller: fencing
	"compression.gzip.level":                  {"5", actedOn, nil},     // topic compression.gzip.level
	"compression.lz4.level":                   {"3", actedOn, nil},     // topic compression.lz4.level
	"compression.type":                        {"zstd", actedOn, nil},  // topic compression.type
	"compression.zstd.level":                  {"9", actedOn, nil},     // topic compression.zstd.level
	"connections.max.idle.ms":                 {"1234", wired, func(s settings) bool { return s.limits.IdleTimeout == 1234*time.Millisecond }},
	"cordoned.log.dirs":                       {"*", refused, nil}, // set dynamically: the controller reads it from the metadata
	"default.replication.factor":              {"2", actedOn, nil}, // api: CreateTopics, auto-creation
	"delete.topic.enable":                     {"false", actedOn, nil},
	"fetch.max.bytes":                         {"1048576", refused, nil},
	"follower.replication.throttled.rate":     {"1048576", actedOn, nil}, // broker: replica fetcher (throttle.go)
	"group.consumer.heartbeat.interval.ms":    {"3000", actedOn, nil},    // broker: group coordinator
	"group.consumer.session.timeout.ms":       {"30000", actedOn, nil},
	"group.initial.rebalance.delay.ms":        {"0", actedOn, nil},
	"group.max.session.timeout.ms":            {"600000", actedOn, nil},
	"group.max.size":                          {"100", actedOn, nil},
	"group.min.session.timeout.ms":            {"1000", actedOn, nil},
	"leader.imbalance.check.interval.seconds": {"60", actedOn, nil},
	"leader.imbalance.per.broker.percentage":  {"20", actedOn, nil},
	"leader.replication.throttled.rate":       {"1048576", actedOn, nil}, // api: replica fetch (broker/throttle.go)
	"log.cleaner.backoff.ms":                  {"20", actedOn, nil},      // broker: cleaner
	"log.cleaner.dedupe.buffer.size":          {"1048576", actedOn, nil},
	"log.cleaner.delete.retention.ms":         {"1000", actedOn, nil}, // topic delete.retention.ms
	"log.cleaner.enable":                      {"false", actedOn, nil},
	"log.cleaner.io.buffer.load.factor":       {"0.5", actedOn, nil},
	"log.cleaner.io.buffer.size":              {"65536", actedOn, nil},
	"log.cleaner.io.max.bytes.per.second":     {"1000000", actedOn, nil},
	"log.cleaner.max.compaction.lag.ms":       {"60000", actedOn, nil}, // topic max.compaction.lag.ms
	"log.cleaner.min.cleanable.ratio":         {"0.1", actedOn, nil},   // topic min.cleanable.dirty.ratio
	"log.cleaner.min.compaction.lag.ms":       {"1000", actedOn, nil},  // topic min.compaction.lag.ms
	"log.cleaner.threads":                     {"2", actedOn, nil},
	"log.cleanup.policy":                      {"compact", actedOn, nil}, // topic cleanup.policy
	"log.dirs":                                {"/elsewhere", refused, nil},
	"log.flush.interval.messages":             {"1", refused, nil},
	"log.flush.interval.ms":                   {"1000", refused, nil},
	"log.flush.max.delay.ms":                  {"10", actedOn, nil}, // broker: flusher
	"log.flush.policy":                        {"none", actedOn, nil},
	"log.flush.scheduler.interval.ms":         {"1000", refused, nil},
	"log.index.interval.bytes":                {"1024", actedOn, nil}, // topic index.interval.bytes
	"log.index.size.max.bytes":                {"1048576", refused, nil},
	"log.local.retention.bytes":               {"1000", refused, nil},
	"log.local.retention.ms":                  {"1000", refused, nil},
	"log.message.downconversion.enable":       {"false", actedOn, nil}, // a no-op, as in Kafka 4.0: no version served down-converts
	"log.message.timestamp.after.max.ms":      {"1000", actedOn, nil},  // topic message.timestamp.after.max.ms
	"log.message.timestamp.before.max.ms":     {"1000", actedOn, nil},
	"log.message.timestamp.type":              {"LogAppendTime", actedOn, nil},
	"log.preallocate":                         {"true", refused, nil},
	"log.retention.bytes":                     {"1000000", actedOn, nil}, // topic retention.bytes
	"log.retention.check.interval.ms":         {"1234", wired, func(s settings) bool { return s.retentionCheck == 1234*time.Millisecond }},
	"log.retention.hours":                     {"24", actedOn, nil}, // topic retention.ms
	"log.retention.minutes":                   {"60", actedOn, nil},
	"log.retention.ms":                        {"60000", actedOn, nil},
	"log.roll.hours":                          {"24", actedOn, nil}, // topic segment.ms
	"log.roll.jitter.hours":                   {"1", refused, nil},
	"log.roll.jitter.ms":                      {"1000", refused, nil},
	"log.roll.ms":                             {"60000", actedOn, nil},
	"log.segment.bytes":                       {"1048576", actedOn, nil}, // topic segment.bytes
	"log.segment.delete.delay.ms":             {"0", actedOn, nil},       // topic file.delete.delay.ms
	"max.broker.partitions":                   {"10", actedOn, nil},      // api: CreateTopics, CreatePartitions, auto-creation
	"max.connections":                         {"10", wired, func(s settings) bool { return s.limits.MaxConnections == 10 }},
	"max.connections.per.ip":                  {"7", wired, func(s settings) bool { return s.limits.MaxConnectionsPerIP == 7 }},
	"max.connections.per.ip.overrides": {"127.0.0.9:3,::1:4", wired, func(s settings) bool {
		o := s.limits.MaxConnectionsPerIPOverrides
		return len(o) == 2 && o[netip.MustParseAddr("127.0.0.9")] == 3 && o[netip.MustParseAddr("::1")] == 4
	}},
	"max.incremental.fetch.session.cache.slots":                   {"0", actedOn, nil},       // api: fetch sessions
	"message.max.bytes":                                           {"2000000", actedOn, nil}, // topic max.message.bytes
	"metrics.partition.level":                                     {"true", wired, func(s settings) bool { return s.partitionMetrics }},
	"min.incremental.fetch.session.eviction.ms":                   {"1000", actedOn, nil},
	"min.insync.replicas":                                         {"2", actedOn, nil},
	"node.id":                                                     {"7", refused, nil}, // set with --node-id (1)
	"num.partitions":                                              {"3", actedOn, nil},
	"offset.metadata.max.bytes":                                   {"100", actedOn, nil}, // broker: group coordinator
	"offsets.retention.check.interval.ms":                         {"1000", actedOn, nil},
	"offsets.retention.minutes":                                   {"60", actedOn, nil},
	"offsets.topic.num.partitions":                                {"3", actedOn, nil}, // api: the offsets topic
	"offsets.topic.replication.factor":                            {"1", actedOn, nil},
	"offsets.topic.segment.bytes":                                 {"1048576", actedOn, nil},
	"producer.id.expiration.check.interval.ms":                    {"1000", actedOn, nil}, // broker
	"producer.id.expiration.ms":                                   {"1000", actedOn, nil},
	"queued.max.request.bytes":                                    {"209715200", wired, func(s settings) bool { return s.queued == 200<<20 }},
	"process.roles":                                               {"controller", refused, nil},                                               // without --controller-quorum-voters; see TestRunDedicatedRoles
	"replica.selector.class":                                      {"org.apache.kafka.common.replica.RackAwareReplicaSelector", actedOn, nil}, // api: fetch
	"replica.alter.log.dirs.io.max.bytes.per.second":              {"1048576", actedOn, nil},
	"replica.fetch.max.bytes":                                     {"65536", actedOn, nil}, // broker: replica fetcher
	"replica.fetch.min.bytes":                                     {"2", actedOn, nil},
	"replica.fetch.response.max.bytes":                            {"65536", actedOn, nil},
	"replica.fetch.wait.max.ms":                                   {"100", actedOn, nil},
	"replica.lag.time.max.ms":                                     {"10000", actedOn, nil}, // broker: ISR shrink
	"socket.request.max.bytes":                                    {"1000", wired, func(s settings) bool { return s.limits.MaxFrameBytes == 1000 }},
	"transaction.abort.timed.out.transaction.cleanup.interval.ms": {"500", actedOn, nil}, // broker: transaction coordinator
	"transaction.max.timeout.ms":                                  {"60000", actedOn, nil},
	"transaction.partition.verification.enable":                   {"false", actedOn, nil}, // api: produce
	"transaction.remove.expired.transaction.cleanup.interval.ms":  {"1000", actedOn, nil},
	"transaction.state.log.min.isr":                               {"1", refused, nil},
	"transaction.state.log.num.partitions":                        {"3", actedOn, nil}, // api: the transaction state topic
	"transaction.state.log.replication.factor":                    {"1", actedOn, nil},
	"transaction.state.log.segment.bytes":                         {"1048576", actedOn, nil},
	"transaction.version":                                         {"1", actedOn, nil}, // api: ApiVersions
	"transactional.id.expiration.ms":                              {"1000", actedOn, nil},
	"unclean.leader.election.enable":                              {"true", actedOn, nil},
}

// TestEveryBrokerConfigIsDecided: sluice serve acts on every broker
// config set with -c or refuses it at start with an error naming it; none
// is accepted and ignored. On main -c broker.id=5, -c log.dirs=... and
// -c socket.request.max.bytes=1000 (among others) were accepted and
// ignored.
func TestEveryBrokerConfigIsDecided(t *testing.T) {
	dataDir := t.TempDir()
	defs := map[string]bool{}
	for _, d := range config.BrokerDefs() {
		defs[d.Name] = true
		dec, ok := brokerConfigDecisions[d.Name]
		if !ok {
			t.Errorf("broker config %s: decide whether sluice serve acts on it or refuses it (brokerConfigDecisions)", d.Name)
			continue
		}
		if !d.NullDefault && dec.value == d.Default {
			t.Errorf("%s: the test value %q is the default", d.Name, dec.value)
		}
		if (d.Unsupported != "") != (dec.does == refused && d.Name != "broker.id" && d.Name != "node.id" && d.Name != "log.dirs" && d.Name != "process.roles" && d.Name != "cordoned.log.dirs") {
			t.Errorf("%s: Unsupported %q does not match the decision %d", d.Name, d.Unsupported, dec.does)
		}
		o := Options{NodeID: 1, Configs: []string{d.Name + "=" + dec.value}}
		set, err := resolve(context.Background(), o, dataDir)
		switch dec.does {
		case refused:
			if err == nil || !strings.Contains(err.Error(), d.Name) {
				t.Errorf("-c %s=%s: want it refused naming the config, got %v", d.Name, dec.value, err)
			}
			// Its default (when it has one) is what Sluice does: accepted.
			if !d.NullDefault {
				o.Configs = []string{d.Name + "=" + d.Default}
				if _, err := resolve(context.Background(), o, dataDir); err != nil {
					t.Errorf("-c %s=%s (the default): %v", d.Name, d.Default, err)
				}
			}
		case actedOn, wired:
			if err != nil {
				t.Errorf("-c %s=%s: %v", d.Name, dec.value, err)
				continue
			}
			if set.static[d.Name] != dec.value {
				t.Errorf("-c %s=%s: not passed on to the broker", d.Name, dec.value)
			}
			if dec.does == wired && !dec.check(set) {
				t.Errorf("-c %s=%s: not in the settings %+v", d.Name, dec.value, set)
			}
		}
	}
	for name := range brokerConfigDecisions {
		if !defs[name] {
			t.Errorf("%s is decided but is no broker config", name)
		}
	}
}

// TestResolveDefaults: with no -c the server gets its own defaults, which
// are the configs' defaults.
func TestResolveDefaults(t *testing.T) {
	set, err := resolve(context.Background(), Options{NodeID: 1}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := server.DefaultLimits()
	got := set.limits
	if got.MaxConnections != want.MaxConnections || got.MaxConnectionsPerIP != want.MaxConnectionsPerIP ||
		got.IdleTimeout != want.IdleTimeout || got.MaxFrameBytes != want.MaxFrameBytes || len(got.MaxConnectionsPerIPOverrides) != 0 {
		t.Errorf("limits %+v, want the server's defaults %+v", got, want)
	}
	if set.queued != server.DefaultQueuedMaxRequestBytes || set.retentionCheck != 5*time.Minute {
		t.Errorf("queued %d, retention check %s", set.queued, set.retentionCheck)
	}
}

// TestResolveChecks: the checks that involve flags or several configs.
func TestResolveChecks(t *testing.T) {
	dataDir := t.TempDir()
	tests := []struct {
		configs []string
		node    int32
		errHas  string // "" accepted
	}{
		{[]string{"broker.id=1"}, 1, ""},
		{[]string{"broker.id=-1"}, 3, ""},
		{[]string{"broker.id=3"}, 3, ""},
		{[]string{"broker.id=2"}, 3, "broker.id must be -1 or equal node.id"},
		{[]string{"node.id=3"}, 3, ""},
		{[]string{"node.id=1"}, 3, "--node-id"},
		{[]string{"log.dirs=" + dataDir}, 1, ""},
		{[]string{"log.dirs= " + dataDir + "/ , "}, 1, ""},
		{[]string{"log.dirs=" + dataDir + "," + filepath.Join(dataDir, "b")}, 1, "nested"},
		{[]string{"log.dirs=" + dataDir + "," + dataDir + "-b," + dataDir + "-b"}, 1, "twice"},
		{[]string{"log.dirs=" + dataDir + "-b, " + dataDir}, 1, ""},
		{[]string{"log.dirs=" + dataDir + "-c"}, 1, "--data-dir"},
		{[]string{"min.insync.replicas=1"}, 1, ""},
		{[]string{"transaction.state.log.min.isr=3"}, 1, "not supported"},
		{[]string{"log.flush.interval.ms=0"}, 1, "leave it unset"},
		{[]string{"max.connections.per.ip=0"}, 1, "max.connections.per.ip.overrides"},
		{[]string{"max.connections.per.ip=0", "max.connections.per.ip.overrides=127.0.0.1:5"}, 1, ""},
		{[]string{"max.connections.per.ip.overrides=127.0.0.1"}, 1, "host:count"},
		{[]string{"max.connections.per.ip.overrides=127.0.0.1:-1"}, 1, "at least 0"},
		{[]string{"max.connections=0"}, 1, "at least 1"},
		{[]string{"connections.max.idle.ms=0"}, 1, "or -1"},
		{[]string{"connections.max.idle.ms=-1"}, 1, ""},
		{[]string{"socket.request.max.bytes=1048576000"}, 1, "queued.max.request.bytes (536870912) must be at least socket.request.max.bytes"},
		{[]string{"nosuch.config=1"}, 1, "nosuch.config"},
		{[]string{"novalue"}, 1, "key=value"},
	}
	for _, tc := range tests {
		_, err := resolve(context.Background(), Options{NodeID: tc.node, Configs: tc.configs}, dataDir)
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("%v (node %d): %v", tc.configs, tc.node, err)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("%v (node %d): got %v, want an error with %q", tc.configs, tc.node, err, tc.errHas)
		}
	}
	set, err := resolve(context.Background(), Options{NodeID: 1, Configs: []string{"connections.max.idle.ms=-1"}}, dataDir)
	if err != nil || set.limits.IdleTimeout >= 0 {
		t.Errorf("connections.max.idle.ms=-1: idle timeout %s, %v; want negative (never)", set.limits.IdleTimeout, err)
	}
}

// startRun runs sluice serve with configs and returns its Kafka address
// once it accepts connections; the broker stops when the test ends.
func startRun(t *testing.T, configs ...string) string {
	t.Helper()
	addr := freeport.ForTest(t, "127.0.0.1")
	o := Options{Listen: addr, HTTPListen: freeport.ForTest(t, "127.0.0.1"), DataDir: t.TempDir(), NodeID: 1, Configs: configs, LogLevel: "error"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("serve ended: %v", err)
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never listened on %s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// apiVersions sends an ApiVersions v0 request (correlation id id) on c and
// reads the answer's correlation id.
func apiVersions(c net.Conn, id int32) (int32, error) {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, 10)
	b = binary.BigEndian.AppendUint16(b, 18) // ApiVersions
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(id))
	b = binary.BigEndian.AppendUint16(b, 0xffff) // null client id
	if _, err := c.Write(b); err != nil {
		return 0, err
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return 0, err
	}
	resp := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, resp); err != nil {
		return 0, err
	}
	return int32(binary.BigEndian.Uint32(resp)), nil
}

// closed reports whether the broker closes c within a minute.
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Minute))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !strings.Contains(err.Error(), "timeout")
}

// TestRunActsOnConnectionConfigs: sluice serve hands socket.request.max.bytes,
// connections.max.idle.ms and max.connections.per.ip to its server. On
// main socket.request.max.bytes=1000 was ignored (a 2000-byte frame was
// read) and the other two were unknown configs.
func TestRunActsOnConnectionConfigs(t *testing.T) {
	addr := startRun(t, "socket.request.max.bytes=1000", "connections.max.idle.ms=1000", "max.connections.per.ip=2",
		"max.connections.per.ip.overrides=127.0.0.3:3")
	dial := func(from string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	big := dial("127.0.0.2")
	if _, err := big.Write(binary.BigEndian.AppendUint32(nil, 2000)); err != nil {
		t.Fatal(err)
	}
	if !closed(big) {
		t.Error("a 2000-byte frame was not refused under socket.request.max.bytes=1000")
	}

	start := time.Now()
	idle := dial("127.0.0.2")
	if !closed(idle) {
		t.Error("an idle connection was not closed under connections.max.idle.ms=1000")
	} else if took := time.Since(start); took < time.Second {
		t.Errorf("the idle connection was closed after %s", took)
	}

	// Two connections from 127.0.0.4, a third refused; three from 127.0.0.3.
	for i := range 3 {
		if id, err := apiVersions(dial("127.0.0.3"), int32(i)); err != nil || id != int32(i) {
			t.Fatalf("connection %d from 127.0.0.3 (override 3): %d, %v", i, id, err)
		}
	}
	for i := range 2 {
		if id, err := apiVersions(dial("127.0.0.4"), int32(i)); err != nil || id != int32(i) {
			t.Fatalf("connection %d from 127.0.0.4: %d, %v", i, id, err)
		}
	}
	if !closed(dial("127.0.0.4")) {
		t.Error("a third connection from 127.0.0.4 was served under max.connections.per.ip=2")
	}
}

// TestRunRefusesIgnoredConfigs: sluice serve stops at start, naming the
// config, instead of running with a setting it would ignore. On main each
// of these started a broker.
func TestRunRefusesIgnoredConfigs(t *testing.T) {
	for _, kv := range []string{"broker.id=5", "log.dirs=" + filepath.Join(t.TempDir(), "x"), "transaction.state.log.min.isr=3", "node.id=5", "log.preallocate=true"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // a broker that starts stops at once
		err := Run(ctx, Options{Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", DataDir: t.TempDir(), NodeID: 1,
			Configs: []string{kv}, LogLevel: "error"})
		name, _, _ := strings.Cut(kv, "=")
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("-c %s: got %v, want an error naming %s", kv, err, name)
		}
	}
}
