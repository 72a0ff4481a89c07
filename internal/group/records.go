package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The records of __consumer_offsets, in Kafka's formats, so that Kafka's
// tools read our log and we read theirs: a key starts with its version,
// which says what it is.
const (
	offsetCommitKeyVersion  = 1 // OffsetCommitKey v1 (v0 is read too)
	groupMetadataKeyVersion = 2 // GroupMetadataKey v2
	// offsetCommitValueVersion is written unless the commit carries an
	// explicit expiry (OffsetCommit v1-v4), which only v1 holds.
	offsetCommitValueVersion             = 3
	offsetCommitValueExpireVersion       = 1
	groupMetadataValueVersion            = 3
	firstUnknownKeyVersion         int16 = 3 // KIP-848 and share group records: not ours yet
)

// ErrBadRecord is a __consumer_offsets record that does not decode.
var ErrBadRecord = errors.New("group: bad __consumer_offsets record")

// Record is a key and value to append to __consumer_offsets; a nil Value is
// a tombstone.
type Record struct {
	Key   []byte
	Value []byte
}

func offsetKey(group string, tp TopicPartition) []byte {
	k := kmsg.OffsetCommitKey{Version: offsetCommitKeyVersion, Group: group, Topic: tp.Topic, Partition: tp.Partition}
	return k.AppendTo(nil)
}

func offsetValue(o offset) []byte {
	v := kmsg.OffsetCommitValue{Version: offsetCommitValueVersion, Offset: o.Offset, LeaderEpoch: o.LeaderEpoch,
		Metadata: o.Metadata, CommitTimestamp: o.CommitTime.UnixMilli()}
	if !o.ExpireTime.IsZero() {
		v.Version = offsetCommitValueExpireVersion
		v.ExpireTimestamp = o.ExpireTime.UnixMilli()
	}
	return v.AppendTo(nil)
}

func groupKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: groupMetadataKeyVersion, Group: group}
	return k.AppendTo(nil)
}

// groupValue encodes a group's metadata with the given assignment (nil:
// the members' current ones).
func groupValue(g *group, assignment map[string][]byte) []byte {
	v := kmsg.GroupMetadataValue{Version: groupMetadataValueVersion, ProtocolType: g.protocolType,
		Generation: g.generation, CurrentStateTimestamp: -1}
	if !g.stateTime.IsZero() {
		v.CurrentStateTimestamp = g.stateTime.UnixMilli()
	}
	if g.protocol != "" {
		v.Protocol = kmsg.StringPtr(g.protocol)
	}
	if g.leader != "" {
		v.Leader = kmsg.StringPtr(g.leader)
	}
	for _, id := range g.order {
		m := g.members[id]
		a := m.assignment
		if assignment != nil {
			a = assignment[id]
		}
		v.Members = append(v.Members, kmsg.GroupMetadataValueMember{
			MemberID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost,
			RebalanceTimeoutMillis: m.rebalanceTimeout, SessionTimeoutMillis: m.sessionTimeout,
			Subscription: nonNil(m.metadata(g.protocol)), Assignment: nonNil(a),
		})
	}
	return v.AppendTo(nil)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// decoded is one decoded record of __consumer_offsets.
type decoded struct {
	kind    int // recordOffset, recordGroup or recordOther
	group   string
	tp      TopicPartition
	offset  *offset                  // nil: tombstone
	meta    *kmsg.GroupMetadataValue // nil: tombstone
	version int16                    // of the key
}

const (
	recordOffset = iota
	recordGroup
	recordOther
)

// decodeRecord reads a key and value of __consumer_offsets.
func decodeRecord(key, value []byte) (decoded, error) {
	if len(key) < 2 {
		return decoded{}, fmt.Errorf("%w: key of %d bytes", ErrBadRecord, len(key))
	}
	version := int16(binary.BigEndian.Uint16(key))
	switch {
	case version == 0 || version == 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(key); err != nil {
			return decoded{}, fmt.Errorf("%w: offset commit key: %v", ErrBadRecord, err)
		}
		d := decoded{kind: recordOffset, group: k.Group, tp: TopicPartition{k.Topic, k.Partition}, version: version}
		if value == nil {
			return d, nil
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(value); err != nil {
			return decoded{}, fmt.Errorf("%w: offset commit value of group %q: %v", ErrBadRecord, k.Group, err)
		}
		o := offset{Offset: v.Offset, LeaderEpoch: v.LeaderEpoch, Metadata: v.Metadata, CommitTime: time.UnixMilli(v.CommitTimestamp)}
		if v.Version < 3 {
			o.LeaderEpoch = -1
		}
		if v.Version == 1 {
			o.ExpireTime = time.UnixMilli(v.ExpireTimestamp)
		}
		d.offset = &o
		return d, nil
	case version == groupMetadataKeyVersion:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(key); err != nil {
			return decoded{}, fmt.Errorf("%w: group metadata key: %v", ErrBadRecord, err)
		}
		d := decoded{kind: recordGroup, group: k.Group, version: version}
		if value == nil {
			return d, nil
		}
		var v kmsg.GroupMetadataValue
		if err := v.ReadFrom(value); err != nil {
			return decoded{}, fmt.Errorf("%w: group metadata value of group %q: %v", ErrBadRecord, k.Group, err)
		}
		if id := duplicateMember(v.Members); id != "" {
			return decoded{}, fmt.Errorf("%w: group metadata value of group %q lists %s twice", ErrBadRecord, k.Group, id)
		}
		d.meta = &v
		return d, nil
	case version >= firstUnknownKeyVersion:
		return decoded{kind: recordOther, version: version}, nil
	}
	return decoded{}, fmt.Errorf("%w: key version %d", ErrBadRecord, version)
}

// duplicateMember names a member id or group.instance.id that members
// list twice ("" if none): a group holds one member of each (Kafka refuses
// to load a repeated instance id too), so such a record is damaged.
func duplicateMember(members []kmsg.GroupMetadataValueMember) string {
	ids := make(map[string]bool, len(members))
	static := make(map[string]bool)
	for _, m := range members {
		if ids[m.MemberID] {
			return fmt.Sprintf("member %q", m.MemberID)
		}
		ids[m.MemberID] = true
		if m.InstanceID != nil {
			if static[*m.InstanceID] {
				return fmt.Sprintf("instance %q", *m.InstanceID)
			}
			static[*m.InstanceID] = true
		}
	}
	return ""
}

// loadGroupValue sets a group's metadata from its record: Stable with its
// members, or Empty without. Each member supports only the group's
// protocol, with its subscription as metadata.
func loadGroupValue(g *group, v *kmsg.GroupMetadataValue) {
	g.protocolType, g.generation = v.ProtocolType, v.Generation
	if v.Protocol != nil {
		g.protocol = *v.Protocol
	}
	if v.CurrentStateTimestamp >= 0 {
		g.stateTime = time.UnixMilli(v.CurrentStateTimestamp)
	}
	for _, vm := range v.Members {
		m := &member{
			id: vm.MemberID, instanceID: vm.InstanceID, clientID: vm.ClientID, clientHost: vm.ClientHost,
			sessionTimeout: vm.SessionTimeoutMillis, rebalanceTimeout: vm.RebalanceTimeoutMillis,
			protocolType: v.ProtocolType, protocols: []Protocol{{Name: g.protocol, Metadata: vm.Subscription}},
			assignment: vm.Assignment,
		}
		if m.rebalanceTimeout < 0 {
			m.rebalanceTimeout = m.sessionTimeout
		}
		g.add(m)
	}
	g.leader = ""
	if v.Leader != nil {
		if _, ok := g.members[*v.Leader]; ok {
			g.leader = *v.Leader
		}
	}
	if g.leader == "" && len(g.order) > 0 {
		g.leader = g.order[0]
	}
	g.state, g.prevState = Empty, Empty
	if len(g.members) > 0 {
		g.state, g.prevState = Stable, Stable
	}
}
