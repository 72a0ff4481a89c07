package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

const (
	// arriveTimeout is how long a test waits for bytes that must come
	// through; generous, since the machine is shared.
	arriveTimeout = 10 * time.Second
	// silence is how long a test watches for bytes that must not come.
	silence = 300 * time.Millisecond
)

// echoServer echoes every connection and counts what it accepted and read,
// so that a test can tell "never reached the target" from "reached it, the
// answer was lost".
type echoServer struct {
	t  *testing.T
	ln net.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	accepted int
	received int
	changed  chan struct{} // closed and replaced on every change of the counts
	conns    []net.Conn
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{t: t, ln: ln, changed: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) bump(accepted, received int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted += accepted
	s.received += received
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *echoServer) counts() (accepted, received int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.received
}

// waitReceived waits until the server has read at least n bytes in all.
func (s *echoServer) waitReceived(n int) {
	s.t.Helper()
	deadline := time.NewTimer(arriveTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, ch := s.received, s.changed
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			s.t.Fatalf("echo server read %d bytes in %v; want %d", got, arriveTimeout, n)
		}
	}
}

func (s *echoServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.bump(1, 0)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					s.bump(0, n)
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// dialFrom connects to addr from the source IP from (127.0.0.x).
func dialFrom(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: arriveTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(t *testing.T, addr string) net.Conn { return dialFrom(t, addr, "127.0.0.1") }

func send(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(arriveTimeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
}

// expectRead reads exactly len(want) bytes and checks them.
func expectRead(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(arriveTimeout))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

func expectEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	send(t, c, msg)
	expectRead(t, c, msg)
}

// expectSilence checks that nothing arrives on c for a while and that c is
// still open.
func expectSilence(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(silence))
	buf := make([]byte, 1)
	n, err := c.Read(buf)
	if n > 0 {
		t.Fatalf("read %q; want nothing within %v", buf[:n], silence)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v; want no data and the connection still open", err)
	}
}

// expectClosed checks that c is closed by the other end soon.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(arriveTimeout))
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if err == nil {
			if n > 0 {
				t.Fatalf("read %q; want the connection closed", buf[:n])
			}
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection still open after %v; want it closed", arriveTimeout)
		}
		return // EOF or reset
	}
}

func TestPass(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	expectEcho(t, c, "hello")
	expectEcho(t, c, "again")
	if got := p.Rule(netip.MustParseAddr("127.0.0.1")); got != (Rule{}) {
		t.Fatalf("rule with none set: %v; want pass", got)
	}
}

func TestDelayKeepsOrderAndHealReleases(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	expectEcho(t, c, "before")

	p.SetDefault(Rule{Fault: Delay, Delay: 2 * silence})
	for _, m := range []string{"a", "bb", "ccc", "dddd"} {
		send(t, c, m)
	}
	expectSilence(t, c) // each way waits 2*silence
	expectRead(t, c, "abbcccdddd")

	// A long delay holds the bytes; healing lets them go at once.
	p.SetDefault(Rule{Fault: Delay, Delay: time.Hour})
	send(t, c, "held")
	expectSilence(t, c)
	p.Heal()
	expectRead(t, c, "held")
	expectEcho(t, c, "after")
}

func TestDropIsABlackhole(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	old := dial(t, p.Addr())
	expectEcho(t, old, "before")
	_, received := s.counts()

	p.SetDefault(Rule{Fault: Drop})
	send(t, old, "lost")
	expectSilence(t, old) // open, but nothing comes back

	// A new connection is accepted but never reaches the target.
	accepted, _ := s.counts()
	blackhole := dial(t, p.Addr())
	send(t, blackhole, "nowhere")
	expectSilence(t, blackhole)
	if a, r := s.counts(); a != accepted || r != received {
		t.Fatalf("under drop the target accepted %d and read %d more bytes; want 0 and 0", a-accepted, r-received)
	}

	p.Heal()
	expectEcho(t, dial(t, p.Addr()), "healed")
	// The old connection flows again, without what was dropped.
	expectEcho(t, old, "again")
	// The connection accepted under drop still goes nowhere.
	send(t, blackhole, "still nowhere")
	expectSilence(t, blackhole)
}

func TestDropToTarget(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	expectEcho(t, c, "before")
	_, received := s.counts()

	p.SetDefault(Rule{Fault: DropToTarget})
	send(t, c, "lost")
	expectSilence(t, c)
	fresh := dial(t, p.Addr())
	send(t, fresh, "lost too")
	expectSilence(t, fresh)
	if _, r := s.counts(); r != received {
		t.Fatalf("target read %d bytes sent under drop-to-target; want 0", r-received)
	}

	p.Heal()
	expectEcho(t, c, "after")
}

func TestDropToClient(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	expectEcho(t, c, "before")
	_, received := s.counts()

	p.SetDefault(Rule{Fault: DropToClient})
	send(t, c, "echo lost")
	s.waitReceived(received + len("echo lost")) // the request got through
	expectSilence(t, c)                         // the answer did not

	p.Heal()
	expectEcho(t, c, "after")
}

func TestCut(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	expectEcho(t, c, "before")

	p.SetDefault(Rule{Fault: Cut})
	expectClosed(t, c)
	// New connections are accepted and closed while the rule holds.
	d := net.Dialer{Timeout: arriveTimeout}
	if nc, err := d.Dial("tcp", p.Addr()); err == nil {
		t.Cleanup(func() { nc.Close() })
		expectClosed(t, nc)
	}

	p.Heal()
	expectEcho(t, dial(t, p.Addr()), "healed")
}

func TestRulesPerSourceIP(t *testing.T) {
	node2 := netip.MustParseAddr("127.0.0.2")
	node3 := netip.MustParseAddr("127.0.0.3")
	s := newEchoServer(t)
	p := newProxy(t, s.addr())

	p.Set(node2, Rule{Fault: Drop})
	c2 := dialFrom(t, p.Addr(), "127.0.0.2")
	c3 := dialFrom(t, p.Addr(), "127.0.0.3")
	expectEcho(t, c3, "from 3")
	send(t, c2, "from 2")
	expectSilence(t, c2)
	expectEcho(t, dial(t, p.Addr()), "from a client")

	// Cutting node 3 closes its connection and leaves node 2's alone.
	p.Set(node3, Rule{Fault: Cut})
	expectClosed(t, c3)
	expectSilence(t, c2)

	p.Clear(node2)
	if got := p.Rule(node2); got != (Rule{}) {
		t.Fatalf("rule of 127.0.0.2 after Clear: %v; want pass", got)
	}
	expectEcho(t, dialFrom(t, p.Addr(), "127.0.0.2"), "2 again")

	// A default drop with one source let through.
	p.Heal()
	p.SetDefault(Rule{Fault: Drop})
	p.Set(node3, Rule{})
	expectEcho(t, dialFrom(t, p.Addr(), "127.0.0.3"), "3 let through")
	other := dialFrom(t, p.Addr(), "127.0.0.4")
	send(t, other, "from 4")
	expectSilence(t, other)
}

func TestDelayedBytesAreBounded(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	expectEcho(t, c, "before")
	_, received := s.counts()

	// Read (and discard) the echoes in the background, so that only the
	// proxy's delay can hold the writer back.
	echoed := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, c)
		echoed <- n
	}()

	p.SetDefault(Rule{Fault: Delay, Delay: time.Hour})
	// The kernel buffers a few MiB each side; past them and the proxy's
	// bound, writes must block.
	const limit = 64 << 20
	block := bytes.Repeat([]byte("x"), 64<<10)
	written := 0
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	for written < limit {
		n, err := c.Write(block)
		written += n
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write: %v", err)
			}
			break
		}
	}
	if written >= limit {
		t.Fatalf("wrote %d MiB into a connection delayed by an hour without blocking; want backpressure", written>>20)
	}
	if _, r := s.counts(); r != received {
		t.Fatalf("target read %d delayed bytes; want 0 before the delay ends", r-received)
	}
	// Nothing was lost: once healed, all of it arrives.
	p.Heal()
	s.waitReceived(received + written)
	t.Logf("a connection delayed by an hour took %d KiB before blocking; all delivered after heal", written>>10)
	c.SetReadDeadline(time.Now().Add(time.Millisecond))
	<-echoed
}

func TestSetTarget(t *testing.T) {
	s1, s2 := newEchoServer(t), newEchoServer(t)
	p := newProxy(t, s1.addr())
	old := dial(t, p.Addr())
	expectEcho(t, old, "one")

	p.SetTarget(s2.addr())
	if p.Target() != s2.addr() {
		t.Fatalf("Target() = %s; want %s", p.Target(), s2.addr())
	}
	expectEcho(t, dial(t, p.Addr()), "two")
	if a, _ := s2.counts(); a != 1 {
		t.Fatalf("second target accepted %d connections; want 1", a)
	}
	expectEcho(t, old, "one still")
}

func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := newProxy(t, dead)
	expectClosed(t, dial(t, p.Addr()))
}

func TestClose(t *testing.T) {
	s := newEchoServer(t)
	p, err := New("127.0.0.1:0", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	expectEcho(t, c, "hello")
	blackholeSrc := netip.MustParseAddr("127.0.0.2")
	p.Set(blackholeSrc, Rule{Fault: Drop})
	b := dialFrom(t, p.Addr(), "127.0.0.2")
	send(t, b, "x")

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expectClosed(t, c)
	expectClosed(t, b)
	if n := p.Conns(); n != 0 {
		t.Fatalf("%d connections after Close; want 0", n)
	}
	d := net.Dialer{Timeout: arriveTimeout}
	if nc, err := d.Dial("tcp", p.Addr()); err == nil {
		nc.Close()
		t.Fatalf("dial after Close succeeded; want refused")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestBadRulePanics(t *testing.T) {
	p := newProxy(t, "127.0.0.1:1")
	for _, r := range []Rule{{Fault: Delay}, {Fault: Cut + 1}, {Fault: -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SetDefault(%v) did not panic", r)
				}
			}()
			p.SetDefault(r)
		}()
	}
}
