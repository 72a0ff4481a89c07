package clustertest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The harness's own pieces, without a cluster.

func TestUnsettled(t *testing.T) {
	settled := func() kadm.Metadata {
		m := kadm.Metadata{Controller: 2, Topics: kadm.TopicDetails{topic: {Topic: topic, Partitions: kadm.PartitionDetails{}}}}
		for id := int32(1); id <= voterCount; id++ {
			m.Brokers = append(m.Brokers, kadm.BrokerDetail{NodeID: id})
		}
		for p := range int32(partitions) {
			m.Topics[topic].Partitions[p] = kadm.PartitionDetail{Topic: topic, Partition: p, Leader: p + 1, Replicas: []int32{1, 2, 3}, ISR: []int32{3, 1, 2}}
		}
		return m
	}
	if why := unsettled(settled(), voterCount); why != "" {
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
		if why := unsettled(m, voterCount); !strings.Contains(why, tc.want) {
			t.Errorf("%s: unsettled says %q; want it to say %q", name, why, tc.want)
		}
	}
}

// A drain run's cluster: four brokers, each partition on any three.
func TestUnsettledFourNodes(t *testing.T) {
	m := kadm.Metadata{Controller: 1, Topics: kadm.TopicDetails{topic: {Topic: topic, Partitions: kadm.PartitionDetails{}}}}
	for id := int32(1); id <= drainNodes; id++ {
		m.Brokers = append(m.Brokers, kadm.BrokerDetail{NodeID: id})
	}
	for p, rs := range [][]int32{{4, 2, 1}, {2, 3, 4}, {1, 3, 4}} {
		m.Topics[topic].Partitions[int32(p)] = kadm.PartitionDetail{Topic: topic, Partition: int32(p), Leader: rs[0], Replicas: rs, ISR: rs}
	}
	if why := unsettled(m, drainNodes); why != "" {
		t.Fatalf("a settled 4-node cluster: %q", why)
	}
	if why := unsettled(m, voterCount); !strings.Contains(why, "brokers [1 2 3 4]") {
		t.Fatalf("4 brokers where 3 are expected: %q", why)
	}
	p := m.Topics[topic].Partitions[1]
	p.Replicas = []int32{2, 3, 4, 1}
	m.Topics[topic].Partitions[1] = p
	if why := unsettled(m, drainNodes); !strings.Contains(why, "partition 1:") {
		t.Fatalf("4 replicas, a reassignment under way: %q", why)
	}
	m.Brokers = m.Brokers[:3]
	if why := unsettled(m, drainNodes); !strings.Contains(why, "brokers [1 2 3]") {
		t.Fatalf("the broker-only node missing: %q", why)
	}
}

func TestMetadataOf(t *testing.T) {
	resp := kmsg.NewPtrMetadataResponse()
	resp.ControllerID = 2
	for _, id := range []int32{3, 1, 2, 4} {
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID = id
		resp.Brokers = append(resp.Brokers, b)
	}
	rt := kmsg.NewMetadataResponseTopic()
	rt.Topic = kmsg.StringPtr(topic)
	for p := range int32(partitions) {
		rp := kmsg.NewMetadataResponseTopicPartition()
		rp.Partition, rp.Leader, rp.LeaderEpoch = p, 4, 7
		rp.Replicas, rp.ISR = []int32{4, 2, 1}, []int32{1, 2, 4}
		rt.Partitions = append(rt.Partitions, rp)
	}
	resp.Topics = append(resp.Topics, rt)
	m := metadataOf(resp)
	if why := unsettled(m, drainNodes); why != "" {
		t.Fatalf("settled as kmsg, not as kadm: %q (%s)", why, describe(m))
	}
	if got := m.Brokers.NodeIDs(); !slices.Equal(got, []int32{1, 2, 3, 4}) {
		t.Errorf("brokers %v, want them sorted", got)
	}
	if p := m.Topics[topic].Partitions[2]; !slices.Equal(p.Replicas, []int32{4, 2, 1}) || p.LeaderEpoch != 7 {
		t.Errorf("partition 2: %s; want replicas [4 2 1] in their order, epoch 7", describePartition(p))
	}
	resp.Topics[0].Partitions[0].ErrorCode = kerr.LeaderNotAvailable.Code
	if why := unsettled(metadataOf(resp), drainNodes); !strings.Contains(why, "partition 0:") {
		t.Errorf("a partition error: %q", why)
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
