package mirror

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/benchref"
	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// alterConfigs applies ops (config -> value; nil deletes) to topic.
func (c *cluster) alterConfigs(t testing.TB, topic string, ops map[string]*string) {
	t.Helper()
	var acs []kadm.AlterConfig
	for k, v := range ops {
		op := kadm.SetConfig
		if v == nil {
			op = kadm.DeleteConfig
		}
		acs = append(acs, kadm.AlterConfig{Op: op, Name: k, Value: v})
	}
	resp, err := c.adm.AlterTopicConfigs(clitest.Ctx(t), acs, topic)
	if err == nil {
		_, err = resp.On(topic, nil)
	}
	if err == nil {
		for _, r := range resp {
			err = r.Err
		}
	}
	if err != nil {
		t.Fatalf("alter configs of %s on %s: %v", topic, c.addr, err)
	}
}

// topicConfigs returns topic's DYNAMIC_TOPIC_CONFIG configs on c.
func (c *cluster) topicConfigs(t testing.TB, topic string) (map[string]string, error) {
	t.Helper()
	rcs, err := c.adm.DescribeTopicConfigs(clitest.Ctx(t), topic)
	if err != nil {
		return nil, err
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, cf := range rc.Configs {
		if cf.Source == kmsg.ConfigSourceDynamicTopicConfig && cf.Value != nil {
			out[cf.Key] = *cf.Value
		}
	}
	return out, nil
}

// waitConfigs waits until topic's dynamic configs on c satisfy ok.
func (c *cluster) waitConfigs(t testing.TB, topic, what string, ok func(map[string]string) bool) map[string]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := c.topicConfigs(t, topic) // an error: not created yet
		if err == nil && ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s: configs %v (%v), want %s", topic, c.addr, got, err, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMirrorFollowsTopicConfigs changes a source topic's configs while the
// mirror runs: the target topic follows (SET for changed and new configs,
// DELETE for one the source no longer sets), never copies an excluded
// config, keeps a config an operator set on the target only, and, in the
// offset-preserving mode, keeps its sluice.mirror.source. Against Sluice
// in both modes, and against kfake (translating).
func TestMirrorFollowsTopicConfigs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		preserve bool
		kfake    bool
	}{{"sluice", false, false}, {"sluice-preserve", true, false}, {"kfake", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			a := connect(t, startBroker(t))
			var b *cluster
			if tc.kfake {
				addr, stopKfake, err := benchref.Start(clitest.Ctx(t), 1)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(stopKfake)
				b = connect(t, addr)
			} else {
				b = connect(t, startBroker(t))
			}
			s := func(v string) *string { return &v }
			a.create(t, "orders", 2, map[string]*string{"retention.ms": s("1000000"), "max.message.bytes": s("500000")})
			m, stop := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "orders",
				PreserveOffsets: tc.preserve, TopicSyncInterval: 100 * time.Millisecond})
			b.waitConfigs(t, "orders", "the source's at creation", func(c map[string]string) bool {
				return c["retention.ms"] == "1000000" && c["max.message.bytes"] == "500000"
			})
			// An operator's own config on the target, which the source
			// does not set.
			b.alterConfigs(t, "orders", map[string]*string{"retention.bytes": s("987654321")})

			a.alterConfigs(t, "orders", map[string]*string{"retention.ms": s("2000000"), "cleanup.policy": s("compact"),
				"min.insync.replicas": s("1"), "message.timestamp.type": s("LogAppendTime")})
			got := b.waitConfigs(t, "orders", "retention.ms=2000000 cleanup.policy=compact", func(c map[string]string) bool {
				return c["retention.ms"] == "2000000" && c["cleanup.policy"] == "compact"
			})
			for _, k := range []string{"min.insync.replicas", "message.timestamp.type"} {
				if v, ok := got[k]; ok {
					t.Errorf("%s=%s copied to the target, an excluded config", k, v)
				}
			}

			// The source drops a config it had set: the target drops it
			// too; the operator's stays.
			a.alterConfigs(t, "orders", map[string]*string{"max.message.bytes": nil})
			got = b.waitConfigs(t, "orders", "no max.message.bytes", func(c map[string]string) bool {
				_, ok := c["max.message.bytes"]
				return !ok
			})
			want := map[string]string{"retention.ms": "2000000", "cleanup.policy": "compact", "retention.bytes": "987654321"}
			if tc.preserve {
				want[MirrorSourceConfig] = m.SourceClusterID()
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("target %s=%q, want %q (all: %v)", k, got[k], v, got)
				}
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			for _, op := range []string{"set", "delete"} {
				if n := metric(t, m, "sluice_mirror_topic_config_changes_total", "topic=orders,op="+op); n < 1 {
					t.Errorf("sluice_mirror_topic_config_changes_total{op=%s} = %v", op, n)
				}
			}
			if n := metric(t, m, "sluice_mirror_topic_config_changes_total", "topic=orders,op=set"); n != 2 {
				t.Errorf("%v configs set, want 2 (retention.ms, cleanup.policy)", n)
			}
		})
	}
}

// TestMirrorConfigRefusedByTarget: a source config the target does not
// know (kfake stores any name; Sluice refuses an unknown one) is refused
// once, counted, not asked again while its value stays, and holds back
// none of the topic's other config changes.
func TestMirrorConfigRefusedByTarget(t *testing.T) {
	addr, stopKfake, err := benchref.Start(clitest.Ctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopKfake)
	k, b := connect(t, addr), connect(t, startBroker(t))
	s := func(v string) *string { return &v }
	k.create(t, "orders", 1, map[string]*string{"retention.ms": s("1000000")})
	m, stop := start(t, Options{Source: []string{addr}, Target: []string{b.addr}, Topics: "orders", TopicSyncInterval: 100 * time.Millisecond})
	b.waitConfigs(t, "orders", "retention.ms=1000000", func(c map[string]string) bool { return c["retention.ms"] == "1000000" })
	k.alterConfigs(t, "orders", map[string]*string{"no.such.config": s("1"), "retention.ms": s("2000000")})
	b.waitConfigs(t, "orders", "retention.ms=2000000", func(c map[string]string) bool { return c["retention.ms"] == "2000000" })
	// Syncs go on: a later change is applied, the refused one not asked again.
	k.alterConfigs(t, "orders", map[string]*string{"retention.ms": s("3000000")})
	got := b.waitConfigs(t, "orders", "retention.ms=3000000", func(c map[string]string) bool { return c["retention.ms"] == "3000000" })
	if _, ok := got["no.such.config"]; ok {
		t.Fatalf("the target took no.such.config: %v", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := metric(t, m, "sluice_mirror_topic_config_refused_total", "topic=orders"); n != 1 {
		t.Fatalf("sluice_mirror_topic_config_refused_total = %v, want 1 (refused once, not asked again)", n)
	}
}
