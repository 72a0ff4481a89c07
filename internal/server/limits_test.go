package server

import (
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// startServer serves allVersions on a random loopback port.
func startServer(t *testing.T, queued int) (*Server, string) {
	t.Helper()
	s := New(allVersions{}, nil)
	if queued > 0 {
		s.SetQueuedMaxRequestBytes(queued)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

// waitFor polls cond (an event the test caused) for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sendPartial opens a connection and sends the size prefix of a frame of
// size bytes and the first sent bytes of its body, then holds.
func sendPartial(t *testing.T, addr string, size, sent int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	b := binary.BigEndian.AppendUint32(nil, uint32(size))
	b = append(b, make([]byte, sent)...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFrameMemoryFollowsBytesSent: connections that claim 99 MiB frames and
// send 64 KiB of them hold memory for at most frameEagerBytes each. On main each frame
// was allocated whole when its size prefix arrived: 20 such connections
// took the broker from 21 MB to 2.16 GB.
func TestFrameMemoryFollowsBytesSent(t *testing.T) {
	const (
		conns   = 10
		claimed = 99 << 20
		sent    = 64 << 10
	)
	s, addr := startServer(t, 2<<30)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range conns {
		sendPartial(t, addr, claimed, sent)
	}
	waitFor(t, "every frame admitted", func() bool { held, _ := s.QueuedRequestBytes(); return held == conns*claimed })
	// Let the readers take the bytes sent.
	time.Sleep(100 * time.Millisecond)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// Each holds its first frameEagerBytes, not the 99 MiB claimed.
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > conns*frameEagerBytes+32<<20 {
		t.Fatalf("heap grew by %d MiB for %d frames of which %d KiB each were sent", grew>>20, conns, sent>>10)
	}
}

// TestQueuedMaxRequestBytes: with the broker's budget taken by one
// connection's frame, another connection is not read until the first
// frame's bytes are released; then it is answered.
func TestQueuedMaxRequestBytes(t *testing.T) {
	s, addr := startServer(t, 1<<20)
	a := sendPartial(t, addr, 900<<10, 1000)
	waitFor(t, "the first frame admitted", func() bool { held, _ := s.QueuedRequestBytes(); return held == 900<<10 })

	b, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks = 9, 1
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = make([]byte, 200<<10)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	body := frame(req, 7, nil)
	if _, err := b.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second connection to wait for room", func() bool { _, waiting := s.QueuedRequestBytes(); return waiting == 1 })
	a.Close()
	var size [4]byte
	b.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.ReadFull(b, size[:]); err != nil {
		t.Fatalf("no answer once the room was released: %v", err)
	}
	resp := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(b, resp); err != nil {
		t.Fatal(err)
	}
	if id := int32(binary.BigEndian.Uint32(resp)); id != 7 {
		t.Fatalf("answer to correlation id %d, want 7", id)
	}
	waitFor(t, "the bytes released", func() bool { held, _ := s.QueuedRequestBytes(); return held == 0 })
}
