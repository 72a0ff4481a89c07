// Package benchref runs the reference broker that `sluice bench` figures
// are compared with: franz-go's in-memory fake Kafka (kfake), one broker on
// 127.0.0.1. It keeps records in memory and never fsyncs, so it is an upper
// bound on what a Kafka-protocol broker in Go can serve to the same client
// on the same machine, not a durable broker.
package benchref

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Start runs a single-broker kfake cluster on a random 127.0.0.1 port whose
// topics created without a partition count get partitions partitions. It
// stops when stop is called or ctx ends.
func Start(ctx context.Context, partitions int) (addr string, stop func(), err error) {
	return StartOn(ctx, "127.0.0.1:0", partitions)
}

// StartOn is Start listening on listen (host:port; port 0 picks one).
func StartOn(ctx context.Context, listen string, partitions int) (addr string, stop func(), err error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return "", nil, fmt.Errorf("listen address %q: want host:port", listen)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", nil, fmt.Errorf("listen address %q: bad port", listen)
	}
	if partitions <= 0 {
		partitions = 1
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(port),
		// kfake always asks for 127.0.0.1:port; listen on the host asked for.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
		kfake.DefaultNumPartitions(partitions),
		kfake.AllowAutoTopicCreation(),
	)
	if err != nil {
		return "", nil, fmt.Errorf("start kfake: %w", err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		c.Close()
		return "", nil, fmt.Errorf("kfake listens on %v, want one address", addrs)
	}
	var once sync.Once
	done := make(chan struct{})
	stop = func() {
		once.Do(func() {
			close(done)
			c.Close()
		})
	}
	go func() {
		select {
		case <-ctx.Done():
			stop()
		case <-done:
		}
	}()
	return addrs[0], stop, nil
}
