package api

import (
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/controller"
)

// clusterMetadataPartition is the metadata quorum's log as Kafka names it.
const clusterMetadataPartition = 0

// DescribeQuorum v0-2.
//
// The metadata quorum (Kafka's __cluster_metadata partition 0, KIP-595):
// its leader (the active controller), the leader epoch (Raft term), the
// high watermark (the commit index), and each voter with the last metadata
// offset its broker applied and reported in a heartbeat, and when; a
// voter's lag is the high watermark minus that. Answered by the active
// controller (other brokers forward it there); on one node the node alone.
func (h *Handler) describeQuorum(r *kmsg.DescribeQuorumRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeQuorumResponse)
	st := h.b.Meta().Status()
	for _, rt := range r.Topics {
		t := kmsg.NewDescribeQuorumResponseTopic()
		t.Topic = rt.Topic
		for _, p := range rt.Partitions {
			sp := kmsg.NewDescribeQuorumResponseTopicPartition()
			sp.Partition = p.Partition
			if rt.Topic != clusterMetadataTopic || p.Partition != clusterMetadataPartition {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				t.Partitions = append(t.Partitions, sp)
				continue
			}
			if !st.IsController {
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				t.Partitions = append(t.Partitions, sp)
				continue
			}
			sp.LeaderID, sp.LeaderEpoch, sp.HighWatermark = st.NodeID, int32(st.Term), int64(st.CommitIndex)
			if c := h.b.Controller(); c != nil {
				state := func(v controller.VoterState) kmsg.DescribeQuorumResponseTopicPartitionReplicaState {
					rs := kmsg.NewDescribeQuorumResponseTopicPartitionReplicaState()
					rs.ReplicaID, rs.LogEndOffset = v.ID, v.AppliedIndex
					rs.LastFetchTimestamp, rs.LastCaughtUpTimestamp = -1, -1
					if !v.LastHeartbeat.IsZero() {
						rs.LastFetchTimestamp = v.LastHeartbeat.UnixMilli()
						if v.AppliedIndex >= sp.HighWatermark {
							rs.LastCaughtUpTimestamp = rs.LastFetchTimestamp
						}
					}
					return rs
				}
				for _, v := range c.Voters() {
					sp.CurrentVoters = append(sp.CurrentVoters, state(v))
				}
				// Broker-only nodes follow the log without voting.
				for _, v := range c.Observers() {
					sp.Observers = append(sp.Observers, state(v))
				}
			} else {
				rs := kmsg.NewDescribeQuorumResponseTopicPartitionReplicaState()
				rs.ReplicaID, rs.LogEndOffset = st.NodeID, int64(st.AppliedIndex)
				sp.CurrentVoters = append(sp.CurrentVoters, rs)
			}
			t.Partitions = append(t.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	if r.Version >= 2 {
		for _, v := range st.Voters {
			n := kmsg.NewDescribeQuorumResponseNode()
			n.NodeID = v.ID
			if host, port, err := net.SplitHostPort(v.Addr); err == nil {
				pn, _ := strconv.Atoi(port)
				l := kmsg.NewDescribeQuorumResponseNodeListener()
				l.Name, l.Host, l.Port = "CONTROLLER", host, uint16(pn)
				n.Listeners = append(n.Listeners, l)
			}
			resp.Nodes = append(resp.Nodes, n)
		}
	}
	return resp
}
