package api

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/metadata"
)

// leaderHint is where a partition's leader is now, for a client told
// NOT_LEADER_OR_FOLLOWER (KIP-951): with it the client moves to the new
// leader without a Metadata round trip first.
type leaderHint struct {
	id, epoch int32
	broker    metadata.Broker
}

// leaderHintFor returns the hint for a partition if it has a leader that
// clients may reach (registered and unfenced).
func leaderHintFor(img *metadata.Image, topic string, partition int32) (leaderHint, bool) {
	t := img.Topics[topic]
	if t == nil || partition < 0 || int(partition) >= len(t.Partitions) {
		return leaderHint{}, false
	}
	p := t.Partitions[partition]
	b, ok := img.Brokers[p.Leader]
	if p.Leader < 0 || !ok || b.Fenced {
		return leaderHint{}, false
	}
	return leaderHint{id: p.Leader, epoch: p.LeaderEpoch, broker: b}, true
}

// addProduceLeaderHints fills CurrentLeader of each partition answered
// NOT_LEADER_OR_FOLLOWER, and the response's Brokers with their addresses
// (Produce v10+).
func addProduceLeaderHints(img *metadata.Image, resp *kmsg.ProduceResponse) {
	if resp.Version < 10 {
		return
	}
	var ids []int32
	for ti := range resp.Topics {
		t := &resp.Topics[ti]
		name := t.Topic
		if resp.Version >= 13 {
			if tt := img.TopicsByID[metadata.TopicID(t.TopicID)]; tt != nil {
				name = tt.Name
			}
		}
		for pi := range t.Partitions {
			sp := &t.Partitions[pi]
			if sp.ErrorCode != kerr.NotLeaderForPartition.Code {
				continue
			}
			if h, ok := leaderHintFor(img, name, sp.Partition); ok {
				sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = h.id, h.epoch
				if !slices.Contains(ids, h.id) {
					ids = append(ids, h.id)
					b := kmsg.NewProduceResponseBroker()
					b.NodeID, b.Host, b.Port = h.id, h.broker.Host, h.broker.Port
					if h.broker.Rack != "" {
						b.Rack = kmsg.StringPtr(h.broker.Rack)
					}
					resp.Brokers = append(resp.Brokers, b)
				}
			}
		}
	}
}

// addFetchLeaderHints is addProduceLeaderHints for Fetch (CurrentLeader
// v12+, Brokers v16+).
func addFetchLeaderHints(img *metadata.Image, resp *kmsg.FetchResponse) {
	if resp.Version < 12 {
		return
	}
	var ids []int32
	for ti := range resp.Topics {
		t := &resp.Topics[ti]
		name := t.Topic
		if resp.Version >= 13 {
			if tt := img.TopicsByID[metadata.TopicID(t.TopicID)]; tt != nil {
				name = tt.Name
			}
		}
		for pi := range t.Partitions {
			sp := &t.Partitions[pi]
			if sp.ErrorCode != kerr.NotLeaderForPartition.Code && sp.ErrorCode != kerr.FencedLeaderEpoch.Code {
				continue
			}
			if h, ok := leaderHintFor(img, name, sp.Partition); ok {
				sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = h.id, h.epoch
				if resp.Version >= 16 && !slices.Contains(ids, h.id) {
					ids = append(ids, h.id)
					b := kmsg.NewFetchResponseBroker()
					b.NodeID, b.Host, b.Port = h.id, h.broker.Host, h.broker.Port
					if h.broker.Rack != "" {
						b.Rack = kmsg.StringPtr(h.broker.Rack)
					}
					resp.Brokers = append(resp.Brokers, b)
				}
			}
		}
	}
}
