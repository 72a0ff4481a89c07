// Package netmux shares one TCP listener between the Kafka protocol and the
// metadata quorum's Raft traffic, told apart by the first byte a connection
// sends. The controller listener (--controller-listen) uses it: voters reach
// each other's Raft there, and brokers send it their controller requests
// (BrokerRegistration, BrokerHeartbeat, AlterPartition, forwarded admin
// requests) in the Kafka protocol.
//
// Why one port: a node is reached by its peers exactly at the addresses an
// operator gives (the controller quorum voters list), so that a proxy or NAT
// in between works; every extra port would be one more address to give and
// to open. A Kafka request starts with its 4-byte big-endian size, whose
// first byte is 0 for every frame under 16 MiB and never RaftPrefix (0x52)
// for a frame the controller listener accepts (that would be over 1.3 GiB).
// So a Raft dialer writes RaftPrefix first and everything else is Kafka.
//
// The first byte is peeked with MSG_PEEK, so a Kafka connection is handed on
// as the *net.TCPConn it is: the fetch path's sendfile still applies.
package netmux

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// RaftPrefix is the first byte a Raft connection sends (never the first
// byte of an acceptable Kafka frame; see the package comment).
const RaftPrefix byte = 'R'

// Limits.
const (
	// PeekTimeout bounds how long a new connection may stay silent before
	// it is classified: a client that connects and sends nothing is closed
	// after it (Kafka clients send ApiVersions or Metadata at once).
	PeekTimeout = 10 * time.Second
	// MaxPending bounds connections accepted but not yet classified; the
	// accept loop waits (backpressure) when that many are pending.
	MaxPending = 1024
	// acceptBacklog is the queue of classified connections per route
	// waiting for their server's Accept.
	acceptBacklog = 64
	// acceptRetryDelay is the pause after a temporary accept error.
	acceptRetryDelay = 50 * time.Millisecond
)

// Mux splits one listener into two: Kafka() and Raft().
type Mux struct {
	ln      net.Listener
	logger  *slog.Logger
	kafka   *route
	raft    *route
	pending chan struct{}
	done    chan struct{}
	once    sync.Once
}

// New starts splitting ln's connections. Close the Mux (not ln) to stop.
func New(ln net.Listener, logger *slog.Logger) *Mux {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Mux{ln: ln, logger: logger, pending: make(chan struct{}, MaxPending), done: make(chan struct{})}
	m.kafka = &route{m: m, conns: make(chan net.Conn, acceptBacklog)}
	m.raft = &route{m: m, conns: make(chan net.Conn, acceptBacklog)}
	go m.acceptLoop()
	return m
}

// Kafka is the listener of every connection that is not Raft's.
func (m *Mux) Kafka() net.Listener { return m.kafka }

// Raft is the listener of connections that began with RaftPrefix; the
// prefix has been read off.
func (m *Mux) Raft() net.Listener { return m.raft }

// Addr is the shared listener's address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Close stops accepting and closes the listener; both routes' Accept then
// fail with net.ErrClosed. Connections already handed out are their
// servers' to close.
func (m *Mux) Close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		err = m.ln.Close()
	})
	return err
}

func (m *Mux) acceptLoop() {
	for {
		select {
		case m.pending <- struct{}{}:
		case <-m.done:
			return
		}
		c, err := m.ln.Accept()
		if err != nil {
			<-m.pending
			select {
			case <-m.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				m.Close()
				return
			}
			m.logger.Warn("accept failed; retrying", "addr", m.ln.Addr().String(), "err", err)
			time.Sleep(acceptRetryDelay)
			continue
		}
		go m.classify(c)
	}
}

// classify peeks at c's first byte and hands c to its route.
func (m *Mux) classify(c net.Conn) {
	defer func() { <-m.pending }()
	first, err := peekByte(c)
	if err != nil {
		// Silent for PeekTimeout, or gone before saying anything.
		c.Close()
		return
	}
	r := m.kafka
	if first == RaftPrefix {
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			c.Close()
			return
		}
		r = m.raft
	}
	select {
	case r.conns <- c:
	case <-m.done:
		c.Close()
	}
}

// peekByte returns c's first byte without consuming it, waiting at most
// PeekTimeout.
func peekByte(c net.Conn) (byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(PeekTimeout)); err != nil {
		return 0, err
	}
	defer c.SetReadDeadline(time.Time{})
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("netmux: %T cannot be peeked", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		buf  [1]byte
		n    int
		rerr error
	)
	err = raw.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
		// EAGAIN: nothing yet; returning false parks on the poller (which
		// honours the read deadline).
		return !errors.Is(rerr, syscall.EAGAIN)
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, io.EOF
	}
	return buf[0], nil
}

// route is one side of the split, a net.Listener.
type route struct {
	m     *Mux
	conns chan net.Conn
}

func (r *route) Accept() (net.Conn, error) {
	select {
	case c := <-r.conns:
		return c, nil
	case <-r.m.done:
		return nil, net.ErrClosed
	}
}

// Close closes the whole Mux: both routes share one port.
func (r *route) Close() error   { return r.m.Close() }
func (r *route) Addr() net.Addr { return r.m.ln.Addr() }

// DialRaft dials addr and sends RaftPrefix, so that a Mux there hands the
// connection to its Raft listener. local, if set, is the address to dial
// from (a test cluster binds each node's outgoing connections to its own
// 127.0.0.x so a fault-injecting proxy can tell nodes apart).
func DialRaft(addr string, timeout time.Duration, local net.Addr) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: local}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if timeout > 0 {
		c.SetWriteDeadline(time.Now().Add(timeout))
	}
	if _, err := c.Write([]byte{RaftPrefix}); err != nil {
		c.Close()
		return nil, fmt.Errorf("netmux: greet %s: %w", addr, err)
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}
