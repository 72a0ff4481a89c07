package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/kclient"
)

// forwarder keeps connections to other brokers' listeners, at the
// addresses they registered (their advertised addresses): for admin
// requests that only the active controller executes (CreateTopics,
// DeleteTopics, CreatePartitions, AlterConfigs, ...), forwarded there as a
// Kafka broker forwards them to its controller, and for transaction
// markers sent to partition leaders.
type forwarder struct {
	opts kclient.Options

	mu    sync.Mutex
	conns map[string]*kclient.Conn // by address; one request at a time each
}

// Forward sends req, at the version it carries, to the active controller's
// controller listener (at the address this node's voters list gives for
// it) and returns its response.
//
// While no leader is known, or the one known cannot be dialed (it died and
// the quorum is electing another), it waits and tries again until ctx
// ends: the request has not been sent, so trying again cannot apply it
// twice. A connection that fails after sending is returned as an error.
func (b *Broker) Forward(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	var last error
	for {
		id, ok := b.meta.Leader()
		if !ok {
			last = fmt.Errorf("no active controller known to forward %s to", kmsg.NameForKey(req.Key()))
		} else if id == b.cfg.NodeID {
			// Never to itself: it would wait for its own connection.
			if b.meta.IsController() {
				return nil, ErrNowController
			}
			last = fmt.Errorf("this node is the quorum's leader but not yet the active controller")
		} else if addr, ok := b.link.voters[id]; !ok {
			return nil, fmt.Errorf("broker: the active controller %d is not in --controller-quorum-voters", id)
		} else {
			resp, err := b.request(ctx, addr, req, req.GetVersion())
			var de *dialError
			if !errors.As(err, &de) {
				return resp, err
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("broker: forward %s: %w (last: %v)", kmsg.NameForKey(req.Key()), ctx.Err(), last)
		case <-time.After(controllerRetryDelay):
		}
	}
}

// ErrNowController is Forward's answer when this node has become the
// active controller since the caller decided to forward: run it here.
var ErrNowController = errors.New("broker: this node is the active controller now")

// dialError is a failure to connect: nothing was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// SendToBroker sends req to broker id at the address it registered, at
// the highest version both know (a cluster only).
func (b *Broker) SendToBroker(ctx context.Context, id int32, req kmsg.Request) (kmsg.Response, error) {
	return b.sendToBroker(ctx, id, req)
}

// sendToBroker is SendToBroker.
func (b *Broker) sendToBroker(ctx context.Context, id int32, req kmsg.Request) (kmsg.Response, error) {
	br, ok := b.meta.Image().Brokers[id]
	if !ok {
		return nil, fmt.Errorf("broker %d is not registered", id)
	}
	return b.request(ctx, net.JoinHostPort(br.Host, strconv.Itoa(int(br.Port))), req, -1)
}

// request sends req to addr at version v (-1: the highest both know) over
// the connection kept for addr.
func (b *Broker) request(ctx context.Context, addr string, req kmsg.Request, v int16) (kmsg.Response, error) {
	f := b.fwd
	f.mu.Lock()
	c := f.conns[addr]
	f.mu.Unlock()
	if c == nil {
		var err error
		if c, err = kclient.Dial(ctx, addr, f.opts); err != nil {
			return nil, &dialError{err}
		}
		f.mu.Lock()
		if old := f.conns[addr]; old != nil {
			c.Close()
			c = old
		} else {
			f.conns[addr] = c
		}
		f.mu.Unlock()
	}
	var resp kmsg.Response
	var err error
	if v < 0 {
		resp, err = c.Request(ctx, req)
	} else {
		resp, err = c.RequestAt(ctx, req, v)
	}
	if err != nil {
		f.mu.Lock()
		if f.conns[addr] == c {
			delete(f.conns, addr)
		}
		f.mu.Unlock()
		c.Close()
		return nil, err
	}
	return resp, nil
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, c := range f.conns {
		c.Close()
		delete(f.conns, a)
	}
}
