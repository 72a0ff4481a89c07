package broker

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/kclient"
)

// forwarder sends admin requests that only the active controller executes
// (CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs, ...) from a
// broker that is not it to the controller's broker listener, at the
// address it registered (its advertised address), as a Kafka broker
// forwards them to its controller.
type forwarder struct {
	opts kclient.Options

	mu    sync.Mutex
	conns map[string]*kclient.Conn // by address; one request at a time each
}

// Forward sends req, at the version it carries, to the active controller's
// broker listener and returns its response.
func (b *Broker) Forward(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	img := b.meta.Image()
	ctrl, ok := img.Brokers[img.ControllerID]
	if img.ControllerID < 0 || !ok {
		return nil, fmt.Errorf("broker: no active controller known to forward %s to", kmsg.NameForKey(req.Key()))
	}
	addr := net.JoinHostPort(ctrl.Host, strconv.Itoa(int(ctrl.Port)))
	f := b.fwd
	f.mu.Lock()
	c := f.conns[addr]
	f.mu.Unlock()
	if c == nil {
		var err error
		if c, err = kclient.Dial(ctx, addr, f.opts); err != nil {
			return nil, err
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
	resp, err := c.RequestAt(ctx, req, req.GetVersion())
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
