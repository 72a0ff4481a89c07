package e2e

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/record"
)

// rawRequest frames a request as a client does.
func rawRequest(key, version int16, correlationID int32, body []byte, flexible bool) []byte {
	b := make([]byte, 4, 64+len(body))
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(correlationID))
	b = binary.BigEndian.AppendUint16(b, 4)
	b = append(b, "test"...)
	if flexible {
		b = append(b, 0)
	}
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func readFrame(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("read response size: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read response: %v", err)
	}
	return b
}

// TestApiVersionsUnsupportedVersion: a version above ours is answered with
// UNSUPPORTED_VERSION and our ranges in the v0 format (KIP-511).
func TestApiVersionsUnsupportedVersion(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	c, err := net.Dial("tcp", tb.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(rawRequest(18, 99, 7, []byte{0, 0, 0}, true))
	b := readFrame(t, c)
	if id := int32(binary.BigEndian.Uint32(b)); id != 7 {
		t.Fatalf("correlation id %d", id)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(0)
	if err := resp.ReadFrom(b[4:]); err != nil {
		t.Fatalf("decode v0 response: %v", err)
	}
	if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) == 0 {
		t.Fatalf("response %+v", resp)
	}
	// The connection stays open: a supported version works next.
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	req.ClientSoftwareName, req.ClientSoftwareVersion = "test", "1"
	c.Write(rawRequest(18, 3, 8, req.AppendTo(nil), true))
	b = readFrame(t, c)
	resp = kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(3)
	if err := resp.ReadFrom(b[4:]); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("v3 after v99: %v %+v", err, resp)
	}
	// Every API advertised is served at its lowest and highest version.
	for _, k := range resp.ApiKeys {
		for _, v := range []int16{k.MinVersion, k.MaxVersion} {
			r := kmsg.RequestForKey(k.ApiKey)
			if r == nil || v > r.MaxVersion() {
				t.Errorf("advertised %d v%d that kmsg does not know", k.ApiKey, v)
			}
		}
	}
}

// TestBadInputClosesOneConnection: garbage, oversized frames and unknown
// APIs close that connection only; other clients keep working.
func TestBadInputClosesOneConnection(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	cl := tb.client(kgo.DefaultProduceTopic("survivor"), kgo.AllowAutoTopicCreation())
	produce := func() {
		t.Helper()
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("still here")}).FirstErr(); err != nil {
			t.Fatalf("produce after bad input: %v", err)
		}
	}
	produce()
	bad := map[string][]byte{
		"garbage":        []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"oversized":      {0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0},
		"negative size":  {0xff, 0xff, 0xff, 0xf0, 0, 0},
		"unknown api":    rawRequest(999, 0, 1, nil, false),
		"bad version":    rawRequest(0, 99, 1, nil, false),
		"truncated body": rawRequest(3, 9, 1, []byte{5, 0, 0}, true),
	}
	for name, b := range bad {
		c, err := net.Dial("tcp", tb.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(make([]byte, 64))
		if err == nil {
			t.Errorf("%s: got %d bytes back, want the connection closed", name, n)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: connection left open", name)
		}
		c.Close()
		produce()
	}
}

// TestAcksZeroNoResponse: acks=0 produce gets no response; the next
// response on the socket answers the next request. An acks=0 produce that
// fails (a batch that is not one) closes the connection instead, as Kafka
// does, since the producer has no response to learn it from.
func TestAcksZeroNoResponse(t *testing.T) {
	tb := start(t, t.TempDir(), "", nil)
	createTopic(t, tb.admin(), "a0", 1, nil)
	c, err := net.Dial("tcp", tb.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now().UnixMilli()
	batch, err := record.BuildBatch(record.BatchSpec{FirstTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]record.Record{{Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	produce := func(correlationID int32, records []byte) {
		p := kmsg.NewPtrProduceRequest()
		p.SetVersion(9)
		p.Acks = 0
		p.TimeoutMillis = 1000
		pt := kmsg.NewProduceRequestTopic()
		pt.Topic = "a0"
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Records = records
		pt.Partitions = append(pt.Partitions, pp)
		p.Topics = append(p.Topics, pt)
		c.Write(rawRequest(0, 9, correlationID, p.AppendTo(nil), true))
	}
	metadata := func(correlationID int32) {
		m := kmsg.NewPtrMetadataRequest()
		m.SetVersion(1)
		c.Write(rawRequest(3, 1, correlationID, m.AppendTo(nil), false))
	}
	produce(1, batch)
	metadata(2)
	b := readFrame(t, c)
	if id := int32(binary.BigEndian.Uint32(b)); id != 2 {
		t.Fatalf("first response answers correlation id %d, want 2", id)
	}
	produce(3, []byte("not a batch at all, and acks=0 has no response to say so"))
	metadata(4)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 4)); err != io.EOF {
		t.Fatalf("after an acks=0 produce that failed: read %d bytes, err %v; want the connection closed (EOF)", n, err)
	}
}
