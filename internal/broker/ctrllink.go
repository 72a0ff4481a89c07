package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/kclient"
	"github.com/sluice-io/sluice/internal/metadata"
)

// Timing of the broker's conversation with the active controller.
const (
	// controllerRetryDelay is the pause before a controller request is
	// retried after a failure (no leader known, connection refused,
	// NOT_CONTROLLER).
	controllerRetryDelay = 50 * time.Millisecond
	// controllerRequestTimeout bounds one request to the controller.
	controllerRequestTimeout = 10 * time.Second
	// controllerDialTimeout bounds connecting to a voter (TCP and the
	// ApiVersions exchange): a voter that is stopped (SIGSTOP, a hung
	// host) accepts the TCP connection in its kernel but never answers,
	// and a broker must move on to the next voter well before its
	// session (broker.session.timeout.ms) runs out.
	controllerDialTimeout = 2 * time.Second
)

// controllerLink sends a broker's requests to the active controller: the
// quorum's leader, reached at the address this node's voters list gives
// for it (never at an address learned otherwise). One connection, redialed
// when the leader moves or the connection fails.
type controllerLink struct {
	meta   *metadata.Store
	voters map[int32]string
	opts   kclient.Options

	mu    sync.Mutex
	conn  *kclient.Conn
	to    int32
	probe int // the voter tried next while no leader is known
}

func newControllerLink(meta *metadata.Store, voters []metadata.Voter, nodeID int32, local net.Addr) *controllerLink {
	l := &controllerLink{meta: meta, voters: map[int32]string{},
		opts: kclient.Options{ClientID: fmt.Sprintf("sluice-broker-%d", nodeID), LocalAddr: local}}
	for _, v := range voters {
		l.voters[v.ID] = v.Addr
	}
	return l
}

// send sends req to the active controller, retrying until ctx ends on
// anything that a new leader or a new connection can cure. code returns
// the response's top-level error code (NOT_CONTROLLER is retried).
func (l *controllerLink) send(ctx context.Context, req kmsg.Request, code func(kmsg.Response) int16) (kmsg.Response, error) {
	var last error
	for {
		if err := ctx.Err(); err != nil {
			if last == nil {
				last = err
			}
			return nil, fmt.Errorf("no answer from the active controller: %w (last: %v)", ctx.Err(), last)
		}
		conn, err := l.connect(ctx)
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, controllerRequestTimeout)
			var resp kmsg.Response
			resp, err = conn.Request(rctx, req)
			cancel()
			if err == nil {
				if c := code(resp); c == kerr.NotController.Code {
					err = kerr.NotController
				} else {
					return resp, nil
				}
			}
			l.drop(conn)
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(controllerRetryDelay):
		}
	}
}

// connect returns a connection to the current leader.
func (l *controllerLink) connect(ctx context.Context) (*kclient.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id, ok := l.meta.Leader()
	if !ok {
		// A broker-only node learns the leader from the log the leader
		// sends it, which starts only once it has registered: until then
		// it tries the voters in turn (one that is not the active
		// controller answers NOT_CONTROLLER, and send moves on).
		if len(l.voters) == 0 {
			return nil, errors.New("no metadata quorum leader known yet")
		}
		ids := slices.Sorted(maps.Keys(l.voters))
		id = ids[l.probe%len(ids)]
		l.probe++
	}
	if l.conn != nil && l.to == id {
		return l.conn, nil
	}
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
	addr, ok := l.voters[id]
	if !ok {
		return nil, fmt.Errorf("the quorum leader %d is not in this node's --controller-quorum-voters", id)
	}
	dctx, cancel := context.WithTimeout(ctx, controllerDialTimeout)
	defer cancel()
	c, err := kclient.Dial(dctx, addr, l.opts)
	if err != nil {
		return nil, err
	}
	l.conn, l.to = c, id
	return c, nil
}

func (l *controllerLink) drop(c *kclient.Conn) {
	l.mu.Lock()
	if l.conn == c {
		l.conn = nil
	}
	l.mu.Unlock()
	c.Close()
}

func (l *controllerLink) close() {
	l.mu.Lock()
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
	l.mu.Unlock()
}

func newIncarnation() [16]byte {
	var id [16]byte
	rand.Read(id[:])
	return id
}
