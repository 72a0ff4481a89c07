package audit

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestHeartbeatRoundTrip(t *testing.T) {
	h := Heartbeat{Instance: InstanceID{0xde, 0xad}, Partition: 7, Sequence: 1<<40 + 3, Produced: time.Unix(1_700_000_000, 123)}
	b := AppendHeartbeat(nil, h)
	if len(b) != HeartbeatSize {
		t.Fatalf("%d bytes", len(b))
	}
	got, err := DecodeHeartbeat(b)
	if err != nil || got.Instance != h.Instance || got.Partition != 7 || got.Sequence != h.Sequence || !got.Produced.Equal(h.Produced) {
		t.Fatalf("%+v %v", got, err)
	}
	for _, c := range []struct {
		b    []byte
		want error
	}{
		{nil, ErrNotHeartbeat},
		{[]byte(`{"json":1}`), ErrNotHeartbeat},
		{append([]byte("SA\x02"), b[3:]...), ErrHeartbeatVersion},
		{b[:HeartbeatSize-1], ErrHeartbeatMalformed},
		{append(bytes.Clone(b), 0), ErrHeartbeatMalformed},
		{AppendHeartbeat(nil, Heartbeat{Partition: -1}), ErrHeartbeatMalformed},
	} {
		if _, err := DecodeHeartbeat(c.b); !errors.Is(err, c.want) {
			t.Errorf("%q: %v, want %v", c.b, err, c.want)
		}
	}
}

// Whatever the bytes, DecodeHeartbeat does not panic, and what it accepts
// encodes back to the same bytes.
func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add(AppendHeartbeat(nil, Heartbeat{Instance: InstanceID{1}, Partition: 3, Sequence: 42, Produced: time.Unix(1, 2)}))
	f.Add([]byte("SA\x01"))
	f.Add([]byte("SA\x02xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeartbeat(b)
		if err != nil {
			return
		}
		if again := AppendHeartbeat(nil, h); !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v from %x, encodes to %x", h, b, again)
		}
	})
}
