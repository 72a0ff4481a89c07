package api

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/server"
)

// send hands req to h at version v and waits for its one reply.
func send(t *testing.T, h *Handler, req kmsg.Request, v int16) kmsg.Response {
	t.Helper()
	req.SetVersion(v)
	ch := make(chan server.Reply, 2)
	client := "cl"
	h.Handle(context.Background(), &server.Request{Key: req.Key(), Version: v, Msg: req, ClientID: &client,
		Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}}, func(r server.Reply) { ch <- r })
	select {
	case r := <-ch:
		if r.Msg == nil || r.Close {
			t.Fatalf("key %d v%d: reply %+v", req.Key(), v, r)
		}
		if r.Msg.Key() != req.Key() || r.Msg.GetVersion() != v {
			t.Fatalf("key %d v%d: response key %d v%d", req.Key(), v, r.Msg.Key(), r.Msg.GetVersion())
		}
		back := req.ResponseKind()
		if err := back.ReadFrom(r.Msg.AppendTo(nil)); err != nil {
			t.Fatalf("key %d v%d: response does not decode: %v", req.Key(), v, err)
		}
		select {
		case r2 := <-ch:
			t.Fatalf("key %d v%d: a second reply %+v", req.Key(), v, r2)
		default:
		}
		return r.Msg
	case <-time.After(20 * time.Second):
		t.Fatalf("key %d v%d: no reply", req.Key(), v)
		return nil
	}
}

// TestGroupDispatch sends empty group requests at every served version and
// checks that each is answered once, with a response of its own key and
// version that decodes at that version.
func TestGroupDispatch(t *testing.T) {
	h := adminHandler(t, map[string]string{"group.initial.rebalance.delay.ms": "0"})
	for _, key := range []int16{8, 9, 10, 11, 12, 13, 14, 15, 16, 42, 47} {
		for v := versions[key][0]; v <= versions[key][1]; v++ {
			send(t, h, kmsg.RequestForKey(key), v)
		}
	}
}

// TestGroupEveryVersion runs a one-member group through every version of
// JoinGroup (and matching SyncGroup, Heartbeat, OffsetCommit, OffsetFetch
// and LeaveGroup versions).
func TestGroupEveryVersion(t *testing.T) {
	h := adminHandler(t, map[string]string{"group.initial.rebalance.delay.ms": "0"})
	adminCreate(t, h, "t", 2, nil)
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "g"
	if resp := send(t, h, fc, 0).(*kmsg.FindCoordinatorResponse); resp.ErrorCode != 0 || resp.NodeID != 1 || resp.Port != 9092 {
		t.Fatalf("find coordinator: %+v", resp)
	}
	topicID := h.b.Image().Topics["t"].ID
	for v := int16(0); v <= versions[11][1]; v++ {
		g := fmt.Sprintf("g%d", v)
		join := kmsg.NewPtrJoinGroupRequest()
		join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis, join.ProtocolType = g, 10_000, 10_000, "consumer"
		join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 0, 0, 0, 0, 0}}}
		jr := send(t, h, join, v).(*kmsg.JoinGroupResponse)
		if v >= 4 {
			if jr.ErrorCode != kerr.MemberIDRequired.Code || jr.MemberID == "" {
				t.Fatalf("v%d first join: %+v", v, jr)
			}
			join.MemberID = jr.MemberID
			jr = send(t, h, join, v).(*kmsg.JoinGroupResponse)
		}
		if jr.ErrorCode != 0 || jr.Generation != 1 || jr.LeaderID != jr.MemberID || len(jr.Members) != 1 || jr.Protocol == nil || *jr.Protocol != "range" {
			t.Fatalf("v%d join: %+v", v, jr)
		}
		if v >= 7 && (jr.ProtocolType == nil || *jr.ProtocolType != "consumer") {
			t.Errorf("v%d join protocol type %v", v, jr.ProtocolType)
		}
		member := jr.MemberID

		sync := kmsg.NewPtrSyncGroupRequest()
		sync.Group, sync.Generation, sync.MemberID = g, 1, member
		sync.ProtocolType, sync.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr("range")
		sync.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: member, MemberAssignment: []byte("x")}}
		sv := min(v, versions[14][1])
		if sr := send(t, h, sync, sv).(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 || string(sr.MemberAssignment) != "x" {
			t.Fatalf("sync v%d: %+v", sv, sr)
		}
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.Generation, hb.MemberID = g, 1, member
		hv := min(v, versions[12][1])
		if hr := send(t, h, hb, hv).(*kmsg.HeartbeatResponse); hr.ErrorCode != 0 {
			t.Fatalf("heartbeat v%d: %+v", hv, hr)
		}

		commit := kmsg.NewPtrOffsetCommitRequest()
		commit.Group, commit.Generation, commit.MemberID = g, 1, member
		cv := min(v+1, versions[8][1])
		ct := kmsg.OffsetCommitRequestTopic{Topic: "t", TopicID: topicID, Partitions: []kmsg.OffsetCommitRequestTopicPartition{
			{Partition: 1, Offset: int64(100 + v), LeaderEpoch: -1, Metadata: kmsg.StringPtr("md")},
			{Partition: 7, Offset: 1, LeaderEpoch: -1},
		}}
		commit.Topics = []kmsg.OffsetCommitRequestTopic{ct, {Topic: "nope", TopicID: [16]byte{1}, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0}}}}
		if cv == 0 {
			// v0 has no generation: an outsider's commit, refused while
			// the group has members.
			commit.Generation, commit.MemberID = -1, ""
		}
		cr := send(t, h, commit, cv).(*kmsg.OffsetCommitResponse)
		wantCommit, wantUnknown := int16(0), kerr.UnknownTopicOrPartition.Code
		if cv == 0 {
			wantCommit = kerr.UnknownMemberID.Code
		}
		if cv >= 10 {
			wantUnknown = kerr.UnknownTopicID.Code
		}
		if p := cr.Topics[0].Partitions; p[0].ErrorCode != wantCommit || p[1].ErrorCode != kerr.UnknownTopicOrPartition.Code ||
			cr.Topics[1].Partitions[0].ErrorCode != wantUnknown {
			t.Fatalf("commit v%d: %+v", cv, cr.Topics)
		}

		fetch := kmsg.NewPtrOffsetFetchRequest()
		fv := min(v+1, versions[9][1])
		fetch.Group = g
		fetch.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1}}}
		fetch.Groups = []kmsg.OffsetFetchRequestGroup{{Group: g, Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", TopicID: topicID, Partitions: []int32{0, 1}}}}}
		fr := send(t, h, fetch, fv).(*kmsg.OffsetFetchResponse)
		var got []int64
		if fv < 8 {
			for _, p := range fr.Topics[0].Partitions {
				got = append(got, p.Offset)
			}
		} else {
			if fv >= 10 && fr.Groups[0].Topics[0].TopicID != topicID {
				t.Errorf("fetch v%d topic id %x", fv, fr.Groups[0].Topics[0].TopicID)
			}
			for _, p := range fr.Groups[0].Topics[0].Partitions {
				got = append(got, p.Offset)
			}
		}
		want := fmt.Sprint([]int64{-1, int64(100 + v)})
		if cv == 0 {
			want = "[-1 -1]"
		}
		if fmt.Sprint(got) != want {
			t.Errorf("fetch v%d: %v, want %s", fv, got, want)
		}

		leave := kmsg.NewPtrLeaveGroupRequest()
		leave.Group, leave.MemberID = g, member
		leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: member}, {MemberID: "ghost"}}
		lv := min(v, versions[13][1])
		lr := send(t, h, leave, lv).(*kmsg.LeaveGroupResponse)
		if lv < 3 && lr.ErrorCode != 0 || lv >= 3 && (lr.ErrorCode != 0 || lr.Members[0].ErrorCode != 0 || lr.Members[1].ErrorCode != kerr.UnknownMemberID.Code) {
			t.Fatalf("leave v%d: %+v", lv, lr)
		}
	}
	// Every group is empty now: list them with a state filter.
	list := kmsg.NewPtrListGroupsRequest()
	list.StatesFilter = []string{"empty"}
	lr := send(t, h, list, 4).(*kmsg.ListGroupsResponse)
	if lr.ErrorCode != 0 || len(lr.Groups) != int(versions[11][1])+1 {
		t.Fatalf("list: %+v", lr)
	}
	desc := kmsg.NewPtrDescribeGroupsRequest()
	desc.Groups = []string{"g9", "g3"}
	desc.IncludeAuthorizedOperations = true
	dr := send(t, h, desc, 5).(*kmsg.DescribeGroupsResponse)
	for _, g := range dr.Groups {
		if g.ErrorCode != 0 || g.State != "Empty" || g.ProtocolType != "consumer" || g.AuthorizedOperations != groupAuthorizedOperations {
			t.Errorf("describe: %+v", g)
		}
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"g9", "missing"}
	delr := send(t, h, del, 2).(*kmsg.DeleteGroupsResponse)
	if delr.Groups[0].ErrorCode != 0 || delr.Groups[1].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("delete: %+v", delr.Groups)
	}
}

// TestGroupAPIsBeforeTheOffsetsTopic: with no __consumer_offsets yet, the
// group APIs answer NOT_COORDINATOR (ListGroups nothing) without creating
// it; FindCoordinator creates it.
func TestGroupAPIsBeforeTheOffsetsTopic(t *testing.T) {
	h := adminHandler(t, nil)
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group = "g"
	if r := send(t, h, join, 9).(*kmsg.JoinGroupResponse); r.ErrorCode != kerr.NotCoordinator.Code {
		t.Errorf("join: %+v", r)
	}
	if r := send(t, h, kmsg.NewPtrListGroupsRequest(), 5).(*kmsg.ListGroupsResponse); r.ErrorCode != 0 || len(r.Groups) != 0 {
		t.Errorf("list: %+v", r)
	}
	if _, ok := h.b.Image().Topics["__consumer_offsets"]; ok {
		t.Fatal("the offsets topic was created by a group request")
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKeys = []string{"g"}
	fc.CoordinatorType = 2
	if r := send(t, h, fc, 6).(*kmsg.FindCoordinatorResponse); r.Coordinators[0].ErrorCode != kerr.InvalidRequest.Code {
		t.Errorf("share coordinator: %+v", r)
	}
	fc.CoordinatorType = 0
	if r := send(t, h, fc, 6).(*kmsg.FindCoordinatorResponse); r.Coordinators[0].ErrorCode != 0 {
		t.Errorf("find coordinator: %+v", r)
	}
	topic := h.b.Image().Topics["__consumer_offsets"]
	if topic == nil || len(topic.Partitions) != 50 || topic.Configs["cleanup.policy"] != "compact" {
		t.Fatalf("offsets topic %+v", topic)
	}
	join.SessionTimeoutMillis = 10_000
	if r := send(t, h, join, 9).(*kmsg.JoinGroupResponse); r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Errorf("join without protocols: %+v", r)
	}
}
