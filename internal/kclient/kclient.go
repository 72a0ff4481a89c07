// Package kclient is the broker's own Kafka-protocol client for the
// requests nodes send each other: a broker's BrokerRegistration,
// BrokerHeartbeat, AlterPartition and forwarded admin requests to the
// active controller, a follower's Fetch from its leader, a transaction
// coordinator's WriteTxnMarkers to partition leaders.
//
// Why not kgo: kgo is a whole client (metadata, routing, retries, its own
// connection pools), made for talking to a cluster; a node talks to one
// address it already chose, one request at a time per connection, and
// decides itself what a failure means. A Conn is one TCP connection with
// request/response framing (kmsg encodes the messages); versions are
// negotiated once with ApiVersions when it is dialed.
package kclient

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Limits.
const (
	// MaxResponseBytes bounds one response read: above the largest replica
	// fetch response (replica.fetch.response.max.bytes is 10 MiB by default)
	// with room to spare, far below what a broken peer could make us
	// allocate.
	MaxResponseBytes = 128 << 20
	// DefaultDialTimeout bounds a dial when the context has no deadline.
	DefaultDialTimeout = 10 * time.Second
)

// ErrUnsupported: the peer does not serve the API (at any version we know).
var ErrUnsupported = errors.New("kclient: API not supported by the peer")

// Options configure Dial.
type Options struct {
	// ClientID is sent in every request header (shows in the peer's logs).
	ClientID string
	// LocalAddr, if set, is the address to dial from (a test cluster binds
	// each node's outgoing connections to its own 127.0.0.x).
	LocalAddr net.Addr
	// Prefix, if set, is written right after connecting (netmux's
	// RaftPrefix for Raft; nothing for Kafka).
	Prefix []byte
}

// Conn is one connection to a peer. Requests on it are serialized; a
// failed request (IO error, timeout, undecodable response) closes it, and
// every later call fails: dial again.
type Conn struct {
	addr     string
	nc       net.Conn
	br       *bufio.Reader
	format   *kmsg.RequestFormatter
	versions map[int16]int16 // key -> highest version the peer serves

	mu     sync.Mutex // one request at a time
	corr   int32
	broken error
}

// Dial connects to addr and asks the peer which versions it serves.
func Dial(ctx context.Context, addr string, o Options) (*Conn, error) {
	d := net.Dialer{LocalAddr: o.LocalAddr}
	if _, ok := ctx.Deadline(); !ok {
		d.Timeout = DefaultDialTimeout
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kclient: dial %s: %w", addr, err)
	}
	c := &Conn{addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 64<<10),
		format: kmsg.NewRequestFormatter(kmsg.FormatterClientID(o.ClientID))}
	if len(o.Prefix) > 0 {
		if _, err := nc.Write(o.Prefix); err != nil {
			nc.Close()
			return nil, fmt.Errorf("kclient: greet %s: %w", addr, err)
		}
	}
	// ApiVersions v3 (KIP-511) is what every current peer serves; our own
	// servers serve 0-5.
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	req.ClientSoftwareName = "sluice"
	req.ClientSoftwareVersion = "1"
	resp, err := c.roundTrip(ctx, req)
	if err != nil {
		c.Close()
		return nil, err
	}
	av := resp.(*kmsg.ApiVersionsResponse)
	if av.ErrorCode != 0 {
		c.Close()
		return nil, fmt.Errorf("kclient: ApiVersions to %s: error code %d", addr, av.ErrorCode)
	}
	c.versions = make(map[int16]int16, len(av.ApiKeys))
	for _, k := range av.ApiKeys {
		c.versions[k.ApiKey] = k.MaxVersion
	}
	return c, nil
}

// Addr is the address dialed.
func (c *Conn) Addr() string { return c.addr }

// Version is the version Request would use for key: the highest both
// sides know, or -1 if the peer does not serve the API.
func (c *Conn) Version(key int16, ours int16) int16 {
	v, ok := c.versions[key]
	if !ok {
		return -1
	}
	return min(v, ours)
}

// Request sends req at the highest version both sides know (unless the
// caller set a lower one with SetVersion and Pinned) and returns the
// response. ctx's deadline bounds the whole exchange.
func (c *Conn) Request(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	v := c.Version(req.Key(), req.MaxVersion())
	if v < 0 {
		return nil, fmt.Errorf("%w: key %d at %s", ErrUnsupported, req.Key(), c.addr)
	}
	req.SetVersion(v)
	return c.roundTrip(ctx, req)
}

// RequestAt is Request at exactly version v (an error if the peer does
// not serve it): for requests whose meaning depends on the version.
func (c *Conn) RequestAt(ctx context.Context, req kmsg.Request, v int16) (kmsg.Response, error) {
	if max, ok := c.versions[req.Key()]; !ok || v > max || v > req.MaxVersion() {
		return nil, fmt.Errorf("%w: key %d v%d at %s", ErrUnsupported, req.Key(), v, c.addr)
	}
	req.SetVersion(v)
	return c.roundTrip(ctx, req)
}

func (c *Conn) roundTrip(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, c.broken
	}
	resp, err := c.exchange(ctx, req)
	if err != nil {
		c.broken = fmt.Errorf("kclient: connection to %s failed earlier: %w", c.addr, err)
		c.nc.Close()
		return nil, fmt.Errorf("kclient: %s to %s: %w", kmsg.NameForKey(req.Key()), c.addr, err)
	}
	return resp, nil
}

func (c *Conn) exchange(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Time{}
	}
	if err := c.nc.SetDeadline(dl); err != nil {
		return nil, err
	}
	// Cancellation without a deadline: close the deadline early.
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	c.corr++
	corr := c.corr
	buf := c.format.AppendRequest(nil, req, corr)
	if _, err := c.nc.Write(buf); err != nil {
		return nil, ctxErr(ctx, err)
	}
	var size [4]byte
	if _, err := io.ReadFull(c.br, size[:]); err != nil {
		return nil, ctxErr(ctx, err)
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > MaxResponseBytes {
		return nil, fmt.Errorf("response of %d bytes (limit %d)", n, MaxResponseBytes)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return nil, ctxErr(ctx, err)
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		return nil, fmt.Errorf("response correlation id %d, want %d", got, corr)
	}
	body = body[4:]
	// Flexible responses have a tag section in the header, except
	// ApiVersions' (always header v0, so old clients can read it).
	if req.IsFlexible() && req.Key() != 18 {
		var err error
		if body, err = skipTags(body); err != nil {
			return nil, err
		}
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decode %s response: %w", kmsg.NameForKey(req.Key()), err)
	}
	return resp, nil
}

// ctxErr prefers ctx's error to the IO error it caused. The socket's
// deadline is ctx's, so it may fire a moment before ctx reports itself
// done: a timeout with ctx's deadline passed is ctx's too.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

// skipTags skips a tagged-field section.
func skipTags(b []byte) ([]byte, error) {
	n, read := binary.Uvarint(b)
	if read <= 0 {
		return nil, errors.New("bad tag count in response header")
	}
	b = b[read:]
	for range n {
		_, r1 := binary.Uvarint(b)
		if r1 <= 0 {
			return nil, errors.New("bad tag in response header")
		}
		b = b[r1:]
		size, r2 := binary.Uvarint(b)
		if r2 <= 0 || uint64(len(b)-r2) < size {
			return nil, errors.New("bad tag size in response header")
		}
		b = b[r2+int(size):]
	}
	return b, nil
}

// Close closes the connection.
// A request in flight fails at once.
func (c *Conn) Close() error {
	err := c.nc.Close() // first: unblocks a request holding mu
	c.mu.Lock()
	if c.broken == nil {
		c.broken = fmt.Errorf("kclient: connection to %s closed", c.addr)
	}
	c.mu.Unlock()
	return err
}
