package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// InstanceID names one auditor run: random per run, so that several
// auditors can share an audit topic and each follows only its own records.
type InstanceID [16]byte

func (id InstanceID) String() string { return fmt.Sprintf("%x", id[:]) }

// Heartbeat is the value of an audit record. Its wire format, version 1,
// is 39 bytes, integers big-endian:
//
//	offset size
//	0      2    magic "SA"
//	2      1    version, 1
//	3      16   instance id
//	19     4    partition the record was produced to (int32)
//	23     8    sequence number in that partition (uint64, 0 first)
//	31     8    produce wall time, Unix nanoseconds (int64)
type Heartbeat struct {
	Instance  InstanceID
	Partition int32
	Sequence  uint64
	Produced  time.Time
}

const (
	heartbeatMagic0, heartbeatMagic1 = 'S', 'A'
	heartbeatVersion                 = 1
	// HeartbeatSize is the length of a version 1 value.
	HeartbeatSize = 39
)

// Errors of DecodeHeartbeat.
var (
	ErrNotHeartbeat       = errors.New("audit: not a heartbeat value")
	ErrHeartbeatVersion   = errors.New("audit: unknown heartbeat version")
	ErrHeartbeatMalformed = errors.New("audit: malformed heartbeat")
)

// AppendHeartbeat appends h's wire form to b.
func AppendHeartbeat(b []byte, h Heartbeat) []byte {
	b = append(b, heartbeatMagic0, heartbeatMagic1, heartbeatVersion)
	b = append(b, h.Instance[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(h.Partition))
	b = binary.BigEndian.AppendUint64(b, h.Sequence)
	return binary.BigEndian.AppendUint64(b, uint64(h.Produced.UnixNano()))
}

// DecodeHeartbeat reads a heartbeat value. It does not allocate for a valid
// one, and it refuses
// anything but exactly one version 1 heartbeat: ErrNotHeartbeat for other
// bytes (a record someone else wrote to the audit topic), ErrHeartbeatVersion
// for a heartbeat of another version (a newer auditor), ErrHeartbeatMalformed
// for a version 1 heartbeat of the wrong length or with a negative partition.
func DecodeHeartbeat(b []byte) (Heartbeat, error) {
	if len(b) < 3 || b[0] != heartbeatMagic0 || b[1] != heartbeatMagic1 {
		return Heartbeat{}, ErrNotHeartbeat
	}
	if b[2] != heartbeatVersion {
		return Heartbeat{}, fmt.Errorf("%w %d", ErrHeartbeatVersion, b[2])
	}
	if len(b) != HeartbeatSize {
		return Heartbeat{}, fmt.Errorf("%w: %d bytes, want %d", ErrHeartbeatMalformed, len(b), HeartbeatSize)
	}
	var h Heartbeat
	copy(h.Instance[:], b[3:19])
	h.Partition = int32(binary.BigEndian.Uint32(b[19:23]))
	if h.Partition < 0 {
		return Heartbeat{}, fmt.Errorf("%w: partition %d", ErrHeartbeatMalformed, h.Partition)
	}
	h.Sequence = binary.BigEndian.Uint64(b[23:31])
	h.Produced = time.Unix(0, int64(binary.BigEndian.Uint64(b[31:39])))
	return h, nil
}
