package server

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// startLimited serves h (allVersions when nil) with limits l on a random
// port of 127.0.0.1.
func startLimited(t *testing.T, l Limits, h Handler) (*Server, string) {
	t.Helper()
	if h == nil {
		h = allVersions{}
	}
	s := New(h, nil)
	s.SetLimits(l)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

// dialFrom connects to addr from the loopback address from (127.0.0.x:
// every address of 127/8 is the loopback on Linux), so that the server
// sees another client address.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendAPIVersions writes an ApiVersions v0 request with correlation id id.
func sendAPIVersions(c net.Conn, id int32) error {
	body := frame(kmsg.NewPtrApiVersionsRequest(), id, nil)
	_, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...))
	return err
}

// readAnswer reads one response within wait and returns its correlation id.
func readAnswer(c net.Conn, wait time.Duration) (int32, error) {
	c.SetReadDeadline(time.Now().Add(wait))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return 0, err
	}
	resp := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, resp); err != nil {
		return 0, err
	}
	return int32(binary.BigEndian.Uint32(resp)), nil
}

// served checks that c gets an answer to an ApiVersions request.
func served(t *testing.T, c net.Conn, id int32) {
	t.Helper()
	if err := sendAPIVersions(c, id); err != nil {
		t.Fatalf("%s: send: %v", c.LocalAddr(), err)
	}
	got, err := readAnswer(c, 30*time.Second)
	if err != nil {
		t.Fatalf("%s: not served: %v", c.LocalAddr(), err)
	}
	if got != id {
		t.Fatalf("%s: answer to correlation id %d, want %d", c.LocalAddr(), got, id)
	}
}

// closedByServer checks that the server closes c without answering
// anything, within wait.
func closedByServer(t *testing.T, c net.Conn, wait time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	var b [1]byte
	n, err := c.Read(b[:])
	if n > 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: not closed by the server within %s (read %d bytes, %v)", c.LocalAddr(), wait, n, err)
	}
}

// TestMaxConnectionsPerIP: one address that opens more idle connections
// than the broker-wide limit keeps max.connections.per.ip of them, the
// rest are closed at once, and a client at another address is served. On
// main there was no per-address limit: the connections of one address
// took every slot and the other client was closed unanswered (as 4,096
// idle connections from one host locked every client out for 10 minutes).
func TestMaxConnectionsPerIP(t *testing.T) {
	const perIP = 8
	l := DefaultLimits()
	l.MaxConnections = 16
	l.MaxConnectionsPerIP = perIP
	s, addr := startLimited(t, l, nil)

	var kept []net.Conn
	for i := range 24 {
		c := dialFrom(t, "127.0.0.2", addr)
		if i < perIP {
			waitFor(t, "the connection counted", func() bool { return s.Connections() == i+1 })
			kept = append(kept, c)
			continue
		}
		closedByServer(t, c, 30*time.Second)
	}
	if n := s.Connections(); n != perIP {
		t.Fatalf("%d connections open, want %d", n, perIP)
	}
	served(t, dialFrom(t, "127.0.0.3", addr), 1)
	for i, c := range kept {
		served(t, c, int32(10+i))
	}
}

// TestMaxConnectionsPerIPOverrides: an override replaces
// max.connections.per.ip for its address, in either direction, and a
// default of 0 refuses every address without one.
func TestMaxConnectionsPerIPOverrides(t *testing.T) {
	l := DefaultLimits()
	l.MaxConnectionsPerIP = 0
	l.MaxConnectionsPerIPOverrides = map[netip.Addr]int{netip.MustParseAddr("127.0.0.4"): 2}
	_, addr := startLimited(t, l, nil)
	closedByServer(t, dialFrom(t, "127.0.0.5", addr), 30*time.Second)
	a, b := dialFrom(t, "127.0.0.4", addr), dialFrom(t, "127.0.0.4", addr)
	served(t, a, 1)
	served(t, b, 2)
	closedByServer(t, dialFrom(t, "127.0.0.4", addr), 30*time.Second)
	// A slot freed is a slot for the address again.
	a.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := dialFrom(t, "127.0.0.4", addr)
		if sendAPIVersions(c, 3) == nil {
			if _, err := readAnswer(c, 30*time.Second); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the freed slot was never given to the address again")
		}
		time.Sleep(10 * time.Millisecond) // the server notices the close on its own
	}
}

// TestMaxConnectionsBlocksAccept: at max.connections the server stops
// accepting, as Kafka's acceptor does: a new client waits (in the listen
// backlog) and is served once another connection closes. On main it was
// closed at once.
func TestMaxConnectionsBlocksAccept(t *testing.T) {
	l := DefaultLimits()
	l.MaxConnections = 4
	s, addr := startLimited(t, l, nil)
	var first []net.Conn
	for i := range 4 {
		c := dialFrom(t, "127.0.0.1"+string(rune('0'+i)), addr)
		served(t, c, int32(i))
		first = append(first, c)
	}
	late := dialFrom(t, "127.0.0.20", addr)
	if err := sendAPIVersions(late, 99); err != nil {
		t.Fatal(err)
	}
	// Not answered, and not closed, while the four are open.
	if _, err := readAnswer(late, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the fifth connection got %v while four were open; want it to wait", err)
	}
	if n := s.Connections(); n != 4 {
		t.Fatalf("%d connections open, want 4", n)
	}
	first[0].Close()
	if id, err := readAnswer(late, 30*time.Second); err != nil || id != 99 {
		t.Fatalf("the waiting connection was not served once a slot freed: %d, %v", id, err)
	}
}

// TestIdleConnectionClosed: a connection that sends nothing for
// connections.max.idle.ms is closed, while one that keeps sending is not.
// On main the setting was ignored and an idle connection stayed for 10
// minutes.
func TestIdleConnectionClosed(t *testing.T) {
	const idle = time.Second
	l := DefaultLimits()
	l.IdleTimeout = idle
	_, addr := startLimited(t, l, nil)
	start := time.Now()
	quiet := dialFrom(t, "127.0.0.2", addr)
	busy := dialFrom(t, "127.0.0.3", addr)
	// busy sends a request every idle/5 for 3 idle periods.
	for i := range 15 {
		served(t, busy, int32(i))
		time.Sleep(idle / 5)
	}
	closedByServer(t, quiet, 30*time.Second)
	if took := time.Since(start); took < idle {
		t.Fatalf("the idle connection was closed after %s, before connections.max.idle.ms (%s)", took, idle)
	}
	served(t, busy, 100)
}

// holdAPIVersions answers ApiVersions only after hold; the rest at once.
type holdAPIVersions struct {
	allVersions
	hold time.Duration
}

func (h holdAPIVersions) Handle(ctx context.Context, req *Request, reply func(Reply)) {
	if req.Key != apiVersionsKey {
		h.allVersions.Handle(ctx, req, reply)
		return
	}
	time.AfterFunc(h.hold, func() { reply(Reply{Msg: req.Msg.ResponseKind()}) })
}

// TestIdleExcludesRequestsInFlight: a connection waiting for an answer
// (a long poll, say) is not idle, however long the answer takes.
func TestIdleExcludesRequestsInFlight(t *testing.T) {
	const idle = 200 * time.Millisecond
	l := DefaultLimits()
	l.IdleTimeout = idle
	_, addr := startLimited(t, l, holdAPIVersions{hold: 4 * idle})
	c := dialFrom(t, "127.0.0.2", addr)
	served(t, c, 7)
}

// TestSocketRequestMaxBytes: a frame larger than socket.request.max.bytes
// closes the connection; one within it is served.
func TestSocketRequestMaxBytes(t *testing.T) {
	l := DefaultLimits()
	l.MaxFrameBytes = 1000
	_, addr := startLimited(t, l, nil)
	served(t, dialFrom(t, "127.0.0.2", addr), 1)
	big := dialFrom(t, "127.0.0.2", addr)
	if _, err := big.Write(binary.BigEndian.AppendUint32(nil, 1001)); err != nil {
		t.Fatal(err)
	}
	closedByServer(t, big, 30*time.Second)
}
