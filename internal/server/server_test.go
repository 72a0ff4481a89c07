package server

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// allVersions serves every version kmsg knows; used to exercise framing.
type allVersions struct{}

func (allVersions) Supports(key, version int16) bool {
	r := kmsg.RequestForKey(key)
	return r != nil && version >= 0 && version <= r.MaxVersion()
}

func (allVersions) Handle(_ context.Context, req *Request, reply func(Reply)) {
	reply(Reply{Msg: req.Msg.ResponseKind()})
}

// frame encodes a request as a client would, without the size prefix.
func frame(req kmsg.Request, correlationID int32, clientID *string) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(correlationID))
	if clientID == nil {
		b = binary.BigEndian.AppendUint16(b, 0xffff)
	} else {
		b = binary.BigEndian.AppendUint16(b, uint16(len(*clientID)))
		b = append(b, *clientID...)
	}
	if req.IsFlexible() {
		b = append(b, 0)
	}
	return req.AppendTo(b)
}

func TestParseRequest(t *testing.T) {
	id := "client-1"
	for _, v := range []int16{0, 3, 9, 13} {
		req := kmsg.NewPtrMetadataRequest()
		req.SetVersion(v)
		topic := "t"
		req.Topics = []kmsg.MetadataRequestTopic{{Topic: &topic}}
		got, err := parseRequest(frame(req, 42, &id), allVersions{})
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		m := got.Msg.(*kmsg.MetadataRequest)
		if got.CorrelationID != 42 || *got.ClientID != id || len(m.Topics) != 1 || *m.Topics[0].Topic != "t" {
			t.Fatalf("v%d: parsed %+v", v, got)
		}
	}
	// Unknown key and truncated header are errors, not panics.
	if _, err := parseRequest([]byte{0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0xff, 0xff}, allVersions{}); err == nil {
		t.Fatal("unknown key accepted")
	}
	if _, err := parseRequest([]byte{0, 3, 0, 0, 0, 0, 0, 1, 0, 50, 'x'}, allVersions{}); err == nil {
		t.Fatal("client id overrun accepted")
	}
}

// FuzzParseRequest feeds arbitrary frames to the request decoder: it may
// refuse them but must never panic.
func FuzzParseRequest(f *testing.F) {
	id := "fuzz"
	for _, req := range []kmsg.Request{
		kmsg.NewPtrMetadataRequest(), kmsg.NewPtrApiVersionsRequest(), kmsg.NewPtrProduceRequest(),
		kmsg.NewPtrFetchRequest(), kmsg.NewPtrListOffsetsRequest(), kmsg.NewPtrCreateTopicsRequest(),
	} {
		for _, v := range []int16{0, 4, req.MaxVersion()} {
			req.SetVersion(v)
			f.Add(frame(req, 1, &id))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 8 {
			return
		}
		parseRequest(b, allVersions{})
	})
}
