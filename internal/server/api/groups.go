package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/group"
	"github.com/sluice-io/sluice/internal/metadata"
)

// The group APIs (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups,
// DeleteGroups, OffsetDelete) hand their requests to the broker's group
// coordinator (internal/group), which answers from its runner goroutines:
// the handlers never wait, so a parked JoinGroup or SyncGroup does not hold
// up the connection's reader. The coordinator's results carry Kafka error
// codes as kerr values; errorCode passes them through.

// groupAuthorizedOperations is what DescribeGroups reports when asked:
// with no ACLs, every group operation (READ, DELETE, DESCRIBE).
const groupAuthorizedOperations = 1<<3 | 1<<6 | 1<<8

// groups returns the group coordinator if it serves: started at broker
// start when __consumer_offsets exists, or here when someone created the
// topic since. It never waits; with no topic yet, requests answer
// NOT_COORDINATOR and the client's FindCoordinator creates it.
func (h *Handler) groups() (*group.Coordinator, bool) {
	c := h.b.Groups()
	if c.Partitions() > 0 {
		return c, true
	}
	t, ok := h.b.Image().Topics[group.Topic]
	if !ok {
		return nil, false
	}
	if h.b.Clustered() {
		// The partitions this broker leads are elected by the broker as
		// their leadership moves; the coordinator answers NOT_COORDINATOR
		// for the others.
		return c, true
	}
	// Created but maybe not opened yet (by a concurrent FindCoordinator):
	// start once every partition is open.
	for p := range t.Partitions {
		if _, ok := h.b.Partition(group.Topic, int32(p)); !ok {
			return nil, false
		}
	}
	c.Start(len(t.Partitions))
	return c, true
}

// ensureGroups is groups for FindCoordinator: it creates __consumer_offsets
// on first use, as Kafka does (offsets.topic.num.partitions partitions,
// compacted, offsets.topic.replication.factor replicas or as many brokers
// as there are), and waits for its partitions to open.
func (h *Handler) ensureGroups(ctx context.Context) (*group.Coordinator, error) {
	if c, ok := h.groups(); ok {
		return c, nil
	}
	rf := min(h.brokerInt("offsets.topic.replication.factor"), int64(len(h.b.Image().Brokers)))
	configs := map[string]string{
		"cleanup.policy":   "compact",
		"compression.type": "producer",
		"segment.bytes":    strconv.FormatInt(h.brokerInt("offsets.topic.segment.bytes"), 10),
	}
	_, err := h.createTopic(ctx, group.Topic, int32(h.brokerInt("offsets.topic.num.partitions")), int16(max(rf, 1)), configs)
	switch {
	case errors.Is(err, metadata.ErrTopicExists):
		// Created meanwhile by another request: wait for its partitions.
		if err := h.b.Reconcile(); err != nil {
			return nil, fmt.Errorf("%w: opening %s: %v", kerr.CoordinatorNotAvailable, group.Topic, err)
		}
	case err != nil:
		h.logger.Error("creating the offsets topic failed", "topic", group.Topic, "err", err)
		return nil, fmt.Errorf("%w: creating %s: %v", kerr.CoordinatorNotAvailable, group.Topic, err)
	default:
		h.logger.Info("created the offsets topic", "topic", group.Topic)
	}
	c, ok := h.groups()
	if !ok {
		return nil, kerr.CoordinatorNotAvailable
	}
	if h.b.Clustered() {
		return c, nil
	}
	// Loading new, empty partitions takes moments: wait, so that the
	// client's first JoinGroup is not told COORDINATOR_LOAD_IN_PROGRESS.
	select {
	case <-c.Ready():
	case <-ctx.Done():
	}
	return c, nil
}

// clientHost is a client's address as Kafka shows it in group
// descriptions ("/127.0.0.1").
func clientHost(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return "/" + tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "/" + addr.String()
	}
	return "/" + host
}

// gather returns a function to call once per part: the n-th call runs
// done. With n 0, done runs at once. Safe for concurrent use; done sees
// every part's writes.
func gather(n int, done func()) func() {
	if n == 0 {
		done()
		return func() {}
	}
	var mu sync.Mutex
	left := n
	return func() {
		mu.Lock()
		left--
		last := left == 0
		mu.Unlock()
		if last {
			done()
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
