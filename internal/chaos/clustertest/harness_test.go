package clustertest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
)

// The harness's own pieces, without a cluster.

func TestUnsettled(t *testing.T) {
	settled := func() kadm.Metadata {
		m := kadm.Metadata{Controller: 2, Topics: kadm.TopicDetails{topic: {Topic: topic, Partitions: kadm.PartitionDetails{}}}}
		for id := int32(1); id <= nodeCount; id++ {
			m.Brokers = append(m.Brokers, kadm.BrokerDetail{NodeID: id})
		}
		for p := range int32(partitions) {
			m.Topics[topic].Partitions[p] = kadm.PartitionDetail{Topic: topic, Partition: p, Leader: p + 1, Replicas: []int32{1, 2, 3}, ISR: []int32{3, 1, 2}}
		}
		return m
	}
	if why := unsettled(settled()); why != "" {
		t.Fatalf("a settled cluster: %q", why)
	}
	for name, tc := range map[string]struct {
		edit func(m *kadm.Metadata)
		want string
	}{
		"a broker missing": {func(m *kadm.Metadata) { m.Brokers = m.Brokers[:2] }, "brokers [1 2]"},
		"no controller":    {func(m *kadm.Metadata) { m.Controller = -1 }, "no controller"},
		"no topic":         {func(m *kadm.Metadata) { delete(m.Topics, topic) }, "topic missing"},
		"no leader": {func(m *kadm.Metadata) {
			p := m.Topics[topic].Partitions[1]
			p.Leader = -1
			m.Topics[topic].Partitions[1] = p
		}, "partition 1: leader -1"},
		"isr short": {func(m *kadm.Metadata) {
			p := m.Topics[topic].Partitions[2]
			p.ISR = []int32{3}
			m.Topics[topic].Partitions[2] = p
		}, "partition 2: leader 3 epoch 0 replicas [1 2 3] isr [3]"},
	} {
		m := settled()
		tc.edit(&m)
		if why := unsettled(m); !strings.Contains(why, tc.want) {
			t.Errorf("%s: unsettled says %q; want it to say %q", name, why, tc.want)
		}
	}
}

func TestLineRing(t *testing.T) {
	r := newLineRing(3)
	if got := r.lines(); len(got) != 0 {
		t.Fatalf("empty ring: %q", got)
	}
	var want []string
	for i := range 5 {
		s := fmt.Sprint(i)
		r.add(s)
		want = append(want, s)
		if got, w := r.lines(), want[max(0, len(want)-3):]; !slices.Equal(got, w) {
			t.Fatalf("after %d lines: %q; want %q", i+1, got, w)
		}
	}
}
