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
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Limits, with their units. Zero is never "unlimited".
const (
	// maxFrameBytes is socket.request.max.bytes: the largest request frame.
	maxFrameBytes = 100 << 20
	// maxConnections is how many client connections are served at once;
	// more are closed on accept.
	maxConnections = 4096
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
	// idleTimeout is connections.max.idle.ms: a connection that sends
	// nothing for this long is closed.
	idleTimeout = 10 * time.Minute
	// writeTimeout bounds how long one response may take to write.
	writeTimeout = 2 * time.Minute
)

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

	// queued is the broker-wide budget of request bytes
	// (queued.max.request.bytes); each connection also has its own.
	queued budget

	mu     sync.Mutex
	ln     net.Listener
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// New returns a server that hands requests to h.
func New(h Handler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{handler: h, logger: logger, observer: nopObserver{}, conns: map[*conn]struct{}{}, ctx: ctx, cancel: cancel}
	s.queued.init(DefaultQueuedMaxRequestBytes)
	return s
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
		s.mu.Lock()
		if s.closed || len(s.conns) >= maxConnections {
			full := !s.closed
			s.mu.Unlock()
			if full {
				s.logger.Warn("too many connections; closing the new one", "limit", maxConnections, "remote", nc.RemoteAddr())
			}
			nc.Close()
			continue
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
			s.mu.Unlock()
			s.observer.ConnectionClosed()
		}()
	}
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
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("server: close listener: %w", err)
	}
	return nil
}
