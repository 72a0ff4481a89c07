// Package server is the Kafka protocol front door: it accepts connections,
// reads size-prefixed frames within named limits, decodes request headers
// and bodies with kmsg, hands each request to a Handler, and writes the
// responses back in request order, as Kafka's protocol requires.
//
// Each connection has one reader goroutine and one writer goroutine. The
// reader calls the Handler synchronously, so a handler sees the requests of
// one connection in order (produce appends keep their order); a handler that
// must wait (acks=all, long-poll fetch) answers later from its own
// goroutine. The queue between reader and writer is bounded: when it is
// full the reader stops reading the socket, which is the backpressure.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Limits, with their units. Zero is never "unlimited".
const (
	// DefaultMaxFrameBytes is socket.request.max.bytes (Kafka's default):
	// the largest request frame.
	DefaultMaxFrameBytes = 100 << 20
	// DefaultMaxConnections is max.connections. Kafka's default is no
	// bound; each connection holds two 64 KiB buffers and two goroutines,
	// so 4096 connections hold at most 512 MiB besides the request bytes
	// (queued.max.request.bytes).
	DefaultMaxConnections = 4096
	// DefaultMaxConnectionsPerIP is max.connections.per.ip. Kafka's
	// default is no bound; a quarter of DefaultMaxConnections, so that one
	// host (a connection leak, a hostile client) cannot take every slot,
	// and far more than a host of ordinary clients opens (a Kafka client
	// opens a few connections per broker).
	DefaultMaxConnectionsPerIP = 1000
	// DefaultIdleTimeout is connections.max.idle.ms (Kafka's default).
	DefaultIdleTimeout = 10 * time.Minute
	// maxInFlightPerConn is how many requests of one connection may be
	// read but not yet answered.
	maxInFlightPerConn = 64
	// maxBufferedBytesPerConn is how many request bytes one connection may
	// hold in memory while they are being handled.
	maxBufferedBytesPerConn = 256 << 20
	// DefaultQueuedMaxRequestBytes is queued.max.request.bytes: request
	// bytes held by all connections together, from a frame's size prefix
	// until its answer. A connection whose next frame does not fit stops
	// being read until others are answered (Kafka's memory pool; Kafka's
	// default, -1, is no bound).
	DefaultQueuedMaxRequestBytes = 512 << 20
	// frameEagerBytes is the largest frame body allocated whole when its
	// size arrives (a produce request of 1 MiB batches to a few partitions
	// is read with one allocation and no copy); a larger frame's buffer
	// starts at this size and grows (doubling) as its bytes arrive, so a
	// frame that claims 100 MiB and sends 1 KiB holds 8 MiB, not 100.
	// Growing small frames too cost a third of produce throughput with
	// 1 KiB records (copies and zeroing on the request's critical path).
	frameEagerBytes = 8 << 20
	// writeTimeout bounds how long one response may take to write.
	writeTimeout = 2 * time.Minute
	// refusalLogInterval is the least time between two log lines about
	// connections refused for max.connections.per.ip, or about
	// max.connections reached (a client that reconnects in a loop must not
	// flood the log).
	refusalLogInterval = 10 * time.Second
)

// Limits are a server's connection limits, each one of Kafka's broker
// configs. They are static: set them before Serve.
type Limits struct {
	// MaxConnections is max.connections: client connections served at
	// once (at least 1). At the limit the server stops accepting, as
	// Kafka's acceptor does: new connections wait in the listen backlog
	// until one closes. (Kafka closes the least recently used connection
	// only to let an inter-broker connection in; Sluice has none.)
	MaxConnections int
	// MaxConnectionsPerIP is max.connections.per.ip: connections from one
	// IP address. One more is closed as soon as it is accepted; 0 refuses
	// every address without an override.
	MaxConnectionsPerIP int
	// MaxConnectionsPerIPOverrides is max.connections.per.ip.overrides:
	// the limit of particular addresses in place of MaxConnectionsPerIP.
	MaxConnectionsPerIPOverrides map[netip.Addr]int
	// IdleTimeout is connections.max.idle.ms: a connection that reads
	// nothing, writes nothing and has no request in flight for this long
	// is closed. Negative: never (Kafka's -1). Unlike Kafka, a request in
	// flight (a long poll) keeps its connection open however long it
	// takes: its own timeout bounds it.
	IdleTimeout time.Duration
	// MaxFrameBytes is socket.request.max.bytes: a frame whose size
	// prefix is larger closes the connection (at least 1).
	MaxFrameBytes int
}

// DefaultLimits are the limits of a server that SetLimits was not called on.
func DefaultLimits() Limits {
	return Limits{
		MaxConnections:      DefaultMaxConnections,
		MaxConnectionsPerIP: DefaultMaxConnectionsPerIP,
		IdleTimeout:         DefaultIdleTimeout,
		MaxFrameBytes:       DefaultMaxFrameBytes,
	}
}

// perIP is the connection limit of address ip.
func (l *Limits) perIP(ip netip.Addr) int {
	if n, ok := l.MaxConnectionsPerIPOverrides[ip]; ok {
		return n
	}
	return l.MaxConnectionsPerIP
}

// Request is one decoded request.
type Request struct {
	Key           int16
	Version       int16
	CorrelationID int32
	ClientID      *string
	Msg           kmsg.Request // its version set
	Remote        net.Addr
	// Size is the frame's size in bytes.
	Size int
}

// Reply is a handler's answer.
type Reply struct {
	Msg kmsg.Response // version is set from the request
	// None sends nothing (acks=0 produce): the next response answers the
	// next request.
	None bool
	// Close closes the connection after earlier responses are written.
	Close bool
	// Regions are file ranges sent in place of their markers in Msg.
	Regions []Region
}

// Handler serves requests. Handle is called on the connection's reader
// goroutine in request order; it must call reply exactly once, from any
// goroutine, now or later.
type Handler interface {
	Handle(ctx context.Context, req *Request, reply func(Reply))
	// Supports says whether a version of an API is served. Requests for
	// others close the connection, except ApiVersions, which Handle
	// answers with UNSUPPORTED_VERSION and Msg's body unread.
	Supports(key, version int16) bool
}

// Observer is told about connections and requests, for metrics. Its
// methods must be cheap and safe for concurrent use.
type Observer interface {
	ConnectionOpened()
	ConnectionClosed()
	// Request is called when a request's reply is ready, with the time
	// since its frame was read.
	Request(key, version int16, elapsed time.Duration)
}

type nopObserver struct{}

func (nopObserver) ConnectionOpened()                   {}
func (nopObserver) ConnectionClosed()                   {}
func (nopObserver) Request(int16, int16, time.Duration) {}

// Server accepts Kafka connections.
type Server struct {
	handler  Handler
	logger   *slog.Logger
	observer Observer

	// limits are set before Serve and read-only after.
	limits Limits

	// queued is the broker-wide budget of request bytes
	// (queued.max.request.bytes); each connection also has its own.
	queued budget

	// mu guards the fields below; slotFree (on mu) is broadcast when a
	// connection ends and when the server closes.
	mu       sync.Mutex
	slotFree *sync.Cond
	ln       net.Listener
	conns    map[*conn]struct{}
	perIP    map[netip.Addr]int // open connections by client address
	refused  refusals
	fullLog  time.Time // when max.connections reached was last logged
	closed   bool
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

// refusals counts connections refused for max.connections.per.ip since the
// last log line about them.
type refusals struct {
	lastLog time.Time
	count   int
}

// New returns a server that hands requests to h.
func New(h Handler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{handler: h, logger: logger, observer: nopObserver{}, limits: DefaultLimits(),
		conns: map[*conn]struct{}{}, perIP: map[netip.Addr]int{}, ctx: ctx, cancel: cancel}
	s.slotFree = sync.NewCond(&s.mu)
	s.queued.init(DefaultQueuedMaxRequestBytes)
	return s
}

// SetLimits sets the connection limits; call before Serve. Values out of
// range are a programmer's error (configs are checked at start).
func (s *Server) SetLimits(l Limits) {
	if l.MaxConnections < 1 || l.MaxConnectionsPerIP < 0 || l.MaxFrameBytes < 1 || l.IdleTimeout == 0 {
		panic(fmt.Sprintf("BUG: server: limits out of range: %+v", l))
	}
	for ip, n := range l.MaxConnectionsPerIPOverrides {
		if n < 0 || !ip.IsValid() {
			panic(fmt.Sprintf("BUG: server: max.connections.per.ip.overrides: %v:%d", ip, n))
		}
	}
	s.limits = l
}

// SetQueuedMaxRequestBytes sets queued.max.request.bytes (n > 0); call
// before Serve. A frame larger than n is admitted alone.
func (s *Server) SetQueuedMaxRequestBytes(n int) {
	if n <= 0 {
		panic(fmt.Sprintf("BUG: server: queued.max.request.bytes %d is not positive", n))
	}
	s.queued.init(n)
}

// QueuedRequestBytes is the request bytes held now by all connections, and
// the number of connections waiting for room to read their next frame.
func (s *Server) QueuedRequestBytes() (held, waiting int) { return s.queued.usage() }

// SetObserver sets the observer; call before Serve.
func (s *Server) SetObserver(o Observer) { s.observer = o }

// Serve accepts connections on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	var delay time.Duration
	for {
		if !s.waitForSlot() {
			return nil
		}
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			// EMFILE and the like: back off, keep serving those connected.
			s.logger.Warn("accept failed", "err", err)
			delay = min(max(delay*2, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		ip, hasIP := remoteIP(nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		if hasIP {
			if limit := s.limits.perIP(ip); s.perIP[ip] >= limit {
				s.noteRefusal(ip, limit)
				s.mu.Unlock()
				nc.Close()
				continue
			}
			s.perIP[ip]++
		}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.observer.ConnectionOpened()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			if hasIP {
				if s.perIP[ip]--; s.perIP[ip] <= 0 {
					delete(s.perIP, ip)
				}
			}
			s.slotFree.Broadcast()
			s.mu.Unlock()
			s.observer.ConnectionClosed()
		}()
	}
}

// waitForSlot waits until fewer than max.connections connections are
// open, and reports false if the server closed meanwhile.
func (s *Server) waitForSlot() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.closed && len(s.conns) >= s.limits.MaxConnections {
		if now := time.Now(); now.Sub(s.fullLog) >= refusalLogInterval {
			s.logger.Warn("max.connections reached; new connections wait until one closes", "limit", s.limits.MaxConnections)
			s.fullLog = now
		}
		s.slotFree.Wait()
	}
	return !s.closed
}

// noteRefusal logs a connection refused for max.connections.per.ip, at
// most once per refusalLogInterval. s.mu is held.
func (s *Server) noteRefusal(ip netip.Addr, limit int) {
	s.refused.count++
	if now := time.Now(); now.Sub(s.refused.lastLog) >= refusalLogInterval {
		s.logger.Warn("refused a connection: the address has max.connections.per.ip connections open",
			"address", ip, "limit", limit, "refused_since_last_log", s.refused.count)
		s.refused = refusals{lastLog: now}
	}
}

// remoteIP is the client address of nc, if it is an IP connection.
func remoteIP(nc net.Conn) (netip.Addr, bool) {
	a, ok := nc.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	return a.AddrPort().Addr().Unmap(), true
}

// Connections is the number of open client connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops accepting, closes every connection and waits for their
// goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.slotFree.Broadcast()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	// The context first: a reader that finds its connection closed
	// finds the server closing too, and handles no frame it buffered.
	s.cancel()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("server: close listener: %w", err)
	}
	return nil
}
