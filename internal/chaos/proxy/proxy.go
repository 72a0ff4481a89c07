// Package proxy is a fault-injecting TCP proxy for the cluster chaos test.
//
// One Proxy stands in front of one node: every connection to that node, from
// the other nodes and from clients, goes through it. The nodes of a test
// cluster bind their outgoing connections to their own 127.0.0.x address, so
// the proxy can tell them apart by source IP and apply a different Rule to
// each: partition node 1 from node 2 while clients still reach both, or
// delay only the links between nodes.
//
// Rules change at any time and apply to open connections from the next chunk
// on, as a network fault would: a partition does not wait for connections to
// be reopened. Every queue is bounded (chunkBytes, maxDelayedBytes, maxConns):
// a delayed link that fills up stops reading its socket, so the sender's TCP
// window closes instead of the proxy's memory growing.
//
// A Drop rule discards bytes rather than holding them back. A connection that
// lived through a Drop therefore carries a stream with a hole in it, which a
// real network never produces (TCP would retransmit): the peers must notice
// a corrupt frame or a missing response and reconnect. New connections after
// Heal are whole again.
package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// chunkBytes is the read buffer of each direction of a connection: the
	// most one read takes off a socket, forwarded (or delayed, or dropped)
	// as one chunk.
	chunkBytes = 32 << 10
	// maxDelayedBytes bounds the bytes one direction of one connection holds
	// while they wait to be written (so a connection holds at most twice
	// this, plus a chunk being read and one being written per direction).
	// When it is reached the proxy stops reading that side's socket until
	// the writer catches up: backpressure, never unbounded memory.
	maxDelayedBytes = 1 << 20
	// maxConns bounds the connections one proxy keeps open; past it a new
	// connection is accepted and closed at once, as a full server would.
	maxConns = 1024
	// dialTimeout bounds the dial to the target; when it fails the client's
	// connection is closed, as a refused connection would be.
	dialTimeout = 5 * time.Second
	// acceptRetry is the pause after a temporary accept error (EMFILE), so
	// that the loop does not spin while descriptors are short.
	acceptRetry = 50 * time.Millisecond
)

// Fault is what a Rule does to the bytes of a connection.
type Fault int

const (
	// Pass forwards everything as it comes.
	Pass Fault = iota
	// Delay forwards each chunk Rule.Delay after it was read, in order.
	Delay
	// Drop is a blackhole both ways: bytes are accepted and discarded and
	// the connection stays open, as across a network partition. A new
	// connection is accepted but goes nowhere (the target is not dialed),
	// and stays so after Heal.
	Drop
	// DropToTarget discards only what the client sends to the target; the
	// target's bytes still reach the client. A new connection is dialed
	// through so that the other direction flows.
	DropToTarget
	// DropToClient discards only what the target sends to the client.
	DropToClient
	// Cut closes every open connection the rule applies to when it is set;
	// while it holds, new connections are accepted and closed at once.
	Cut
)

func (f Fault) String() string {
	switch f {
	case Pass:
		return "pass"
	case Delay:
		return "delay"
	case Drop:
		return "drop"
	case DropToTarget:
		return "drop-to-target"
	case DropToClient:
		return "drop-to-client"
	case Cut:
		return "cut"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Rule is a fault and its parameter. The zero Rule passes everything.
type Rule struct {
	Fault Fault
	// Delay is how long each chunk waits before it is forwarded; used by
	// Delay only, and must then be positive.
	Delay time.Duration
}

func (r Rule) String() string {
	if r.Fault == Delay {
		return fmt.Sprintf("delay %v", r.Delay)
	}
	return r.Fault.String()
}

// check panics on a Rule no caller should build: these come from test code.
func (r Rule) check() {
	if r.Fault < Pass || r.Fault > Cut {
		panic(fmt.Sprintf("BUG: proxy: unknown fault %d", int(r.Fault)))
	}
	if r.Fault == Delay && r.Delay <= 0 {
		panic(fmt.Sprintf("BUG: proxy: delay rule with delay %v: want > 0", r.Delay))
	}
}

// drops says whether r discards bytes flowing toward the target (toTarget)
// or toward the client.
func (r Rule) drops(toTarget bool) bool {
	switch r.Fault {
	case Drop:
		return true
	case DropToTarget:
		return toTarget
	case DropToClient:
		return !toTarget
	}
	return false
}

// rules is an immutable set of rules. Setters replace the whole set and
// close the old set's changed channel, which wakes every writer waiting on a
// delay to look again.
type rules struct {
	def     Rule
	bySrc   map[netip.Addr]Rule
	changed chan struct{}
}

func (rs *rules) lookup(src netip.Addr) Rule {
	if r, ok := rs.bySrc[src]; ok {
		return r
	}
	return rs.def
}

// Proxy forwards the connections accepted on one address to a target
// address, applying the Rule of each connection's source IP. All methods are
// safe for concurrent use. Lock order: mu, then a conn's mu; rules
// are read without a lock (an atomic pointer to an immutable set) and
// replaced under mu.
type Proxy struct {
	ln    net.Listener
	rules atomic.Pointer[rules]
	wg    sync.WaitGroup // the accept loop and every connection goroutine

	mu     sync.Mutex
	target string
	conns  map[*conn]struct{}
	closed bool
}

// New listens on listenAddr (port 0 picks a free port; Addr tells which)
// and forwards each accepted connection to targetAddr, passing everything
// until a rule says otherwise. Close stops it.
func New(listenAddr, targetAddr string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("proxy: listening on %s: %w", listenAddr, err)
	}
	p := &Proxy{ln: ln, target: targetAddr, conns: map[*conn]struct{}{}}
	p.rules.Store(&rules{changed: make(chan struct{})})
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address the proxy listens on, as host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address new connections are forwarded to.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// SetTarget changes where new connections go; open ones keep their target.
// A node restarted on a new random port is reached through the same proxy
// address this way.
func (p *Proxy) SetTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

// SetDefault sets the rule of every source without a rule of its own.
func (p *Proxy) SetDefault(r Rule) {
	r.check()
	p.update(func(rs *rules) { rs.def = r })
}

// Set sets the rule of connections from src, overriding the default (Set
// with Pass lets src through while the default drops everything else).
func (p *Proxy) Set(src netip.Addr, r Rule) {
	r.check()
	src = src.Unmap()
	p.update(func(rs *rules) { rs.bySrc[src] = r })
}

// Clear removes src's own rule: its connections follow the default again.
func (p *Proxy) Clear(src netip.Addr) {
	src = src.Unmap()
	p.update(func(rs *rules) { delete(rs.bySrc, src) })
}

// Heal removes every rule: everything passes. Connections accepted under
// Drop stay blackholes; new connections flow.
func (p *Proxy) Heal() {
	p.update(func(rs *rules) {
		rs.def = Rule{}
		clear(rs.bySrc)
	})
}

// Rule is the rule that applies to connections from src now.
func (p *Proxy) Rule(src netip.Addr) Rule {
	return p.rules.Load().lookup(src.Unmap())
}

// Conns is the number of connections open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// update replaces the rule set with a copy changed by edit, wakes every
// writer waiting on the old one, and closes the open connections a Cut now
// applies to.
func (p *Proxy) update(edit func(*rules)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.rules.Load()
	rs := &rules{def: old.def, bySrc: make(map[netip.Addr]Rule, len(old.bySrc)+1), changed: make(chan struct{})}
	for src, r := range old.bySrc {
		rs.bySrc[src] = r
	}
	edit(rs)
	p.rules.Store(rs)
	close(old.changed)
	for c := range p.conns {
		if rs.lookup(c.src).Fault == Cut {
			c.close()
		}
	}
}

// Close stops accepting, closes every connection and waits for all the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and the like: wait for descriptors to come back
			// rather than give up on the node behind us.
			time.Sleep(acceptRetry)
			continue
		}
		src := netip.Addr{}
		if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
			src = ta.AddrPort().Addr().Unmap()
		}
		c := &conn{src: src, client: nc, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed || len(p.conns) >= maxConns || p.rules.Load().lookup(src).Fault == Cut {
			p.mu.Unlock()
			nc.Close()
			continue
		}
		p.conns[c] = struct{}{}
		target := p.target
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c, target)
	}
}

// serve dials the target for c and forwards both ways until both are done
// or anything fails, then forgets c.
func (p *Proxy) serve(c *conn, target string) {
	defer p.wg.Done()
	defer p.forget(c)
	defer c.close()

	if p.rules.Load().lookup(c.src).Fault == Drop {
		// A blackhole: take what the client sends and go nowhere.
		buf := make([]byte, chunkBytes)
		for {
			if _, err := c.client.Read(buf); err != nil {
				return
			}
		}
	}
	d := net.Dialer{Timeout: dialTimeout}
	tc, err := d.Dial("tcp", target)
	if err != nil {
		return // the client sees its connection closed, as if refused
	}
	if !c.setTarget(tc) {
		return // closed (Cut, Close) while dialing
	}
	var both sync.WaitGroup
	both.Add(2)
	go func() { defer both.Done(); p.pipe(c, c.client, tc, true) }()
	go func() { defer both.Done(); p.pipe(c, tc, c.client, false) }()
	both.Wait()
}

func (p *Proxy) forget(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// pipe forwards one direction of c from src to dst: a reader goroutine fills
// a bounded queue, this goroutine writes it out as the rules allow. It
// returns once src's EOF has been passed on (dst half-closed) or c is closed.
func (p *Proxy) pipe(c *conn, src, dst net.Conn, toTarget bool) {
	q := newQueue(maxDelayedBytes)
	readerDone := make(chan struct{})
	defer func() { <-readerDone }() // it ends once src is at EOF or c closed
	go func() {
		defer close(readerDone)
		defer q.closeInput()
		buf := make([]byte, chunkBytes)
		for {
			n, err := src.Read(buf)
			if n > 0 && !p.rules.Load().lookup(c.src).drops(toTarget) {
				data := make([]byte, n)
				copy(data, buf[:n])
				if !q.push(chunk{data: data, read: time.Now()}, c.done) {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		ch, ok := q.pop(c.done)
		if !ok {
			break
		}
		if !p.await(c, ch, toTarget) {
			continue // dropped
		}
		if _, err := dst.Write(ch.data); err != nil {
			c.close()
			return
		}
	}
	select {
	case <-c.done:
		return
	default:
	}
	// src said EOF and everything before it is written: pass it on, and
	// let the other direction finish on its own.
	if tc, ok := dst.(*net.TCPConn); ok {
		if err := tc.CloseWrite(); err != nil {
			c.close()
		}
	}
}

// await waits until ch may be written under the current rules and says
// whether to write it (false: drop it). A rule change while waiting is
// looked at at once: healing a delay releases what it held.
func (p *Proxy) await(c *conn, ch chunk, toTarget bool) bool {
	for {
		rs := p.rules.Load()
		r := rs.lookup(c.src)
		if r.drops(toTarget) {
			return false
		}
		if r.Fault != Delay {
			return true
		}
		wait := time.Until(ch.read.Add(r.Delay))
		if wait <= 0 {
			return true
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			return true
		case <-rs.changed:
			t.Stop()
		case <-c.done:
			t.Stop()
			return false
		}
	}
}

// conn is one proxied connection. target is nil until dialed (and for a
// blackhole, for ever).
type conn struct {
	src    netip.Addr
	client net.Conn
	done   chan struct{} // closed by close

	mu     sync.Mutex
	target net.Conn
	closed bool
}

// setTarget records the dialed target, or closes it and says false if c was
// closed meanwhile.
func (c *conn) setTarget(tc net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		tc.Close()
		return false
	}
	c.target = tc
	return true
}

// close closes both sockets, which ends every goroutine of c. Idempotent.
func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	close(c.done)
	c.client.Close()
	if c.target != nil {
		c.target.Close()
	}
}

// chunk is what one read took off a socket, and when.
type chunk struct {
	data []byte
	read time.Time
}

// queue is a FIFO of chunks bounded in bytes, with one pushing and one
// popping goroutine.
type queue struct {
	max int

	mu     sync.Mutex
	chunks []chunk
	bytes  int
	eof    bool
	space  chan struct{} // 1-buffered: bytes went down
	ready  chan struct{} // 1-buffered: a chunk came, or eof
}

func newQueue(maxBytes int) *queue {
	return &queue{max: maxBytes, space: make(chan struct{}, 1), ready: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push appends ch, waiting while the queue is full; false if done closed
// first. A chunk always fits an empty queue (chunkBytes <= max).
func (q *queue) push(ch chunk, done <-chan struct{}) bool {
	for {
		q.mu.Lock()
		if q.bytes == 0 || q.bytes+len(ch.data) <= q.max {
			q.chunks = append(q.chunks, ch)
			q.bytes += len(ch.data)
			q.mu.Unlock()
			signal(q.ready)
			return true
		}
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-done:
			return false
		}
	}
}

// closeInput says no chunk will follow: pop returns false once the queue
// is empty.
func (q *queue) closeInput() {
	q.mu.Lock()
	q.eof = true
	q.mu.Unlock()
	signal(q.ready)
}

// pop takes the oldest chunk, waiting for one; false at the end of input
// or when done closes.
func (q *queue) pop(done <-chan struct{}) (chunk, bool) {
	for {
		q.mu.Lock()
		if len(q.chunks) > 0 {
			ch := q.chunks[0]
			q.chunks[0] = chunk{}
			q.chunks = q.chunks[1:]
			q.bytes -= len(ch.data)
			q.mu.Unlock()
			signal(q.space)
			return ch, true
		}
		eof := q.eof
		q.mu.Unlock()
		if eof {
			return chunk{}, false
		}
		select {
		case <-q.ready:
		case <-done:
			return chunk{}, false
		}
	}
}
