package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// apiVersionsKey is special: its response header never has tagged fields
// (KIP-511), and an unsupported version is answered, not refused.
const apiVersionsKey = 18

// maxPooledWriteBytes is the largest response buffer kept for reuse.
const maxPooledWriteBytes = 1 << 20

// connBufferBytes is the size of each connection's read and write buffers.
const connBufferBytes = 64 << 10

// errIdle ends a connection idle for connections.max.idle.ms.
var errIdle = errors.New("server: connection idle for connections.max.idle.ms")

// conn is one client connection.
type conn struct {
	s      *Server
	nc     net.Conn
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan *slot // requests in order, waiting for their replies
	budget budget
	// pending is the requests read and not yet answered or dropped: the
	// reader adds, the writer subtracts once it is done with a reply.
	pending atomic.Int64
	// lastActive is when the connection last read or wrote a byte (or its
	// reader last waited for room on the broker's behalf), in Unix
	// nanoseconds; the idle timeout counts from it.
	lastActive atomic.Int64
}

// slot is the place of one request's reply in the connection's order.
type slot struct {
	key           int16
	correlationID int32
	done          chan struct{}
	reply         Reply
	once          sync.Once
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{s: s, nc: nc, ctx: ctx, cancel: cancel, slots: make(chan *slot, maxInFlightPerConn)}
	c.touch()
	c.budget.init(maxBufferedBytesPerConn)
	// A reader waiting for budget wakes when the connection ends.
	context.AfterFunc(ctx, c.budget.close)
	context.AfterFunc(ctx, s.queued.wake)
	return c
}

func (c *conn) serve() {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	switch {
	case errors.Is(err, errIdle):
		c.s.logger.Debug("closing idle connection", "remote", c.nc.RemoteAddr(), "idle", c.s.limits.IdleTimeout)
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, context.Canceled):
		c.s.logger.Info("closing connection", "remote", c.nc.RemoteAddr(), "reason", err)
	}
	close(c.slots)
	<-writerDone
	c.cancel()
	c.budget.close()
	c.nc.Close()
}

// touch notes activity now.
func (c *conn) touch() { c.lastActive.Store(time.Now().UnixNano()) }

// idleReader reads the connection for the reader goroutine, ending it with
// errIdle once the connection has been idle for connections.max.idle.ms:
// nothing read or written and no request in flight.
type idleReader struct{ c *conn }

func (r idleReader) Read(p []byte) (int, error) {
	c := r.c
	idle := c.s.limits.IdleTimeout
	for {
		if idle > 0 {
			from := time.Unix(0, c.lastActive.Load())
			if c.pending.Load() > 0 {
				from = time.Now()
			}
			if err := c.nc.SetReadDeadline(from.Add(idle)); err != nil {
				return 0, err
			}
		}
		n, err := c.nc.Read(p)
		if n > 0 {
			c.touch()
		}
		if n == 0 && idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			// The writer may have been busy meanwhile, or a request
			// may be in flight: look again.
			if c.pending.Load() > 0 || time.Since(time.Unix(0, c.lastActive.Load())) < idle {
				continue
			}
			return 0, errIdle
		}
		return n, err
	}
}

func (c *conn) readLoop() error {
	r := bufio.NewReaderSize(idleReader{c}, connBufferBytes)
	maxFrame := c.s.limits.MaxFrameBytes
	var sizeBuf [4]byte
	for {
		if _, err := io.ReadFull(r, sizeBuf[:]); err != nil {
			return err
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		if size < 8 || int64(size) > int64(maxFrame) {
			return fmt.Errorf("frame of %d bytes is outside [8, %d] (socket.request.max.bytes)", size, maxFrame)
		}
		// Room for the whole frame, in this connection's budget and the
		// broker's, before reading it: a connection that does not get it
		// is not read (backpressure), and a frame is never half-admitted,
		// so connections cannot deadlock holding parts of frames.
		n := int(size)
		if err := c.budget.acquire(c.ctx, n); err != nil {
			return err
		}
		if err := c.s.queued.acquire(c.ctx, n); err != nil {
			c.budget.release(n)
			return err
		}
		// Time spent waiting for room is the broker's, not the client's
		// idleness.
		c.touch()
		release := func() {
			c.s.queued.release(n)
			c.budget.release(n)
		}
		frame, err := readFrame(r, n)
		if err != nil {
			release()
			return fmt.Errorf("read frame of %d bytes: %w", size, err)
		}
		req, err := parseRequest(frame, c.s.handler)
		if err != nil {
			release()
			return err
		}
		// A frame read from the buffer after the server or the
		// connection began closing is not handled: a produce would be
		// appended with no one to tell.
		if err := c.ctx.Err(); err != nil {
			release()
			return err
		}
		req.Remote = c.nc.RemoteAddr()
		sl := &slot{key: req.Key, correlationID: req.CorrelationID, done: make(chan struct{})}
		c.pending.Add(1)
		select {
		case c.slots <- sl:
		case <-c.ctx.Done():
			c.pending.Add(-1)
			release()
			return c.ctx.Err()
		}
		started := time.Now()
		reply := func(rep Reply) {
			sl.once.Do(func() {
				c.s.observer.Request(req.Key, req.Version, time.Since(started))
				sl.reply = rep
				close(sl.done)
				release()
			})
		}
		if err := c.handle(req, reply); err != nil {
			return err
		}
	}
}

// readFrame reads a frame body of size bytes into a buffer that grows as
// the bytes arrive (doubling from frameEagerBytes), so that memory follows
// what a client sent rather than what its size prefix claimed.
func readFrame(r io.Reader, size int) ([]byte, error) {
	frame := make([]byte, 0, min(size, frameEagerBytes))
	for len(frame) < size {
		if len(frame) == cap(frame) {
			frame = slices.Grow(frame, min(size-len(frame), len(frame)))
		}
		// Grow may round the capacity up past the frame: read no further.
		n, err := io.ReadFull(r, frame[len(frame):min(cap(frame), size)])
		frame = frame[:len(frame)+n]
		if err != nil {
			return nil, err
		}
	}
	return frame, nil
}

// handle calls the handler, turning a panic into a closed connection
// rather than a dead broker.
func (c *conn) handle(req *Request, reply func(Reply)) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.s.logger.Error("BUG: handler panicked", "api_key", req.Key, "version", req.Version, "panic", p)
			reply(Reply{Close: true})
			err = fmt.Errorf("handler panicked on api key %d v%d", req.Key, req.Version)
		}
	}()
	c.s.handler.Handle(c.ctx, req, reply)
	return nil
}

// parseRequest decodes the request header and body.
func parseRequest(frame []byte, h Handler) (*Request, error) {
	key := int16(binary.BigEndian.Uint16(frame[0:]))
	version := int16(binary.BigEndian.Uint16(frame[2:]))
	req := &Request{Key: key, Version: version, CorrelationID: int32(binary.BigEndian.Uint32(frame[4:])), Size: len(frame)}
	rest := frame[8:]
	if len(rest) < 2 {
		return nil, fmt.Errorf("request header truncated")
	}
	idLen := int16(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if idLen >= 0 {
		if int(idLen) > len(rest) {
			return nil, fmt.Errorf("client id of %d bytes overruns the frame", idLen)
		}
		id := string(rest[:idLen])
		req.ClientID = &id
		rest = rest[idLen:]
	} else if idLen != -1 {
		return nil, fmt.Errorf("client id length %d", idLen)
	}
	msg := kmsg.RequestForKey(key)
	if msg == nil {
		return nil, fmt.Errorf("unknown api key %d", key)
	}
	msg.SetVersion(version)
	req.Msg = msg
	if !h.Supports(key, version) {
		if key == apiVersionsKey {
			// Answered with UNSUPPORTED_VERSION and our ranges (KIP-511);
			// the body's format is unknown, so it is not parsed.
			return req, nil
		}
		return nil, fmt.Errorf("unsupported version %d of api key %d (%s)", version, key, kmsg.NameForKey(key))
	}
	if msg.IsFlexible() {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return nil, fmt.Errorf("request header tags: %w", err)
		}
	}
	if err := msg.ReadFrom(rest); err != nil {
		return nil, fmt.Errorf("decode %s v%d: %w", kmsg.NameForKey(key), version, err)
	}
	return req, nil
}

// skipTags skips a tagged-field section.
func skipTags(b []byte) ([]byte, error) {
	n, b, err := uvarint(b)
	if err != nil {
		return nil, err
	}
	for i := uint64(0); i < n; i++ {
		if _, b, err = uvarint(b); err != nil {
			return nil, err
		}
		var size uint64
		if size, b, err = uvarint(b); err != nil {
			return nil, err
		}
		if size > uint64(len(b)) {
			return nil, fmt.Errorf("tag of %d bytes overruns the header", size)
		}
		b = b[size:]
	}
	return b, nil
}

func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("bad uvarint")
	}
	return v, b[n:], nil
}

func (c *conn) writeLoop() {
	w := bufio.NewWriterSize(c.nc, connBufferBytes)
	var buf []byte
	flush := func() {
		if w.Buffered() > 0 {
			if err := w.Flush(); err != nil {
				c.fail(err)
				return
			}
			c.touch()
		}
	}
	for {
		// Flush before blocking: whatever is buffered must not wait for
		// a reply that is not ready yet.
		var sl *slot
		var ok bool
		select {
		case sl, ok = <-c.slots:
		default:
			flush()
			sl, ok = <-c.slots
		}
		if !ok {
			flush()
			return
		}
		buf = c.writeReply(w, flush, sl, buf)
		// Activity before the request leaves pending, so that the
		// reader never sees no request in flight and a stale time.
		c.touch()
		c.pending.Add(-1)
	}
}

// writeReply waits for sl's reply and writes it to w (or drops it if the
// connection is closing), returning buf for reuse.
func (c *conn) writeReply(w *bufio.Writer, flush func(), sl *slot, buf []byte) []byte {
	select {
	case <-sl.done:
	default:
		flush()
		select {
		case <-sl.done:
		case <-c.ctx.Done():
			return buf // closing: drain without writing
		}
	}
	rep := sl.reply
	defer ReleaseRegions(rep.Regions) // sent (sendfile is done when writePieces returns) or dropped
	if c.ctx.Err() != nil {
		return buf
	}
	if rep.Close {
		flush()
		c.cancel()
		c.nc.Close()
		return buf
	}
	if rep.None || rep.Msg == nil {
		return buf
	}
	buf = appendResponse(buf[:0], sl, rep.Msg)
	if err := c.nc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		c.fail(err)
		return buf
	}
	if len(rep.Regions) > 0 {
		pieces, err := spliceRegions(buf, rep.Regions, rep.Msg.IsFlexible())
		if err == nil {
			err = writePieces(w, c.nc, pieces)
		}
		if err != nil {
			c.fail(err)
			return buf
		}
	} else if _, err := w.Write(buf); err != nil {
		c.fail(err)
		return buf
	}
	if cap(buf) > maxPooledWriteBytes {
		return nil
	}
	return buf
}

func (c *conn) fail(err error) {
	if c.ctx.Err() == nil {
		c.s.logger.Info("write failed; closing connection", "remote", c.nc.RemoteAddr(), "err", err)
	}
	c.cancel()
	c.nc.Close()
}

// appendResponse frames msg: size, correlation id, header tags for
// flexible versions (never for ApiVersions), body.
func appendResponse(buf []byte, sl *slot, msg kmsg.Response) []byte {
	buf = append(buf, 0, 0, 0, 0)
	buf = binary.BigEndian.AppendUint32(buf, uint32(sl.correlationID))
	if msg.IsFlexible() && sl.key != apiVersionsKey {
		buf = append(buf, 0)
	}
	buf = msg.AppendTo(buf)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	return buf
}

// budget bounds the request bytes a connection holds.
type budget struct {
	mu      sync.Mutex
	cond    *sync.Cond
	total   int
	free    int
	waiting int // acquires blocked for room
	closed  bool
}

func (b *budget) init(n int) {
	b.total, b.free = n, n
	b.cond = sync.NewCond(&b.mu)
}

// acquire takes n bytes of room, waiting for them; more than the whole
// budget is taken as the whole budget (a frame larger than it is admitted
// alone). The waiter wakes when ctx ends only if something broadcasts:
// the connection's budget is closed with the connection, and the broker's
// is broadcast to whenever room is released.
func (b *budget) acquire(ctx context.Context, n int) error {
	n = min(n, b.total)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waiting++
	defer func() { b.waiting-- }()
	for b.free < n && !b.closed {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.cond.Wait()
	}
	if b.closed {
		return net.ErrClosed
	}
	b.free -= n
	return nil
}

func (b *budget) release(n int) {
	n = min(n, b.total)
	b.mu.Lock()
	b.free += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// usage is the bytes taken and the acquires waiting.
func (b *budget) usage() (held, waiting int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total - b.free, b.waiting
}

// wake broadcasts to the waiters, so that those whose ctx ended return.
func (b *budget) wake() { b.cond.Broadcast() }

func (b *budget) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}
