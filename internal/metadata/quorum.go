package metadata

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// This file holds what a quorum of several controller voters needs: the
// voter list (--controller-quorum-voters), the raft transport over the
// caller's listener, and the check of a data dir's stored voter set.
//
// Addressing: the raft configuration stores each server's ServerAddress as
// its node id ("2"), never a host:port. The stream layer resolves an id
// through THIS node's Voters when it dials, so every node reaches a peer at
// the address its own command line gives: a proxy or NAT in between works,
// and two nodes may reach the same peer through different addresses.

// Voter is one controller voter of the metadata quorum as this node's
// command line names it: Addr is the host:port at which this node dials that
// voter's controller listener.
type Voter struct {
	ID   int32
	Addr string
}

// String formats v as ParseVoters reads it: id@host:port.
func (v Voter) String() string { return strconv.Itoa(int(v.ID)) + "@" + v.Addr }

// maxVoters bounds the quorum size. Every metadata write waits for a
// majority of voters, so more voters make each write slower while adding
// failures tolerated only per two voters; Kafka recommends 3 or 5. An even
// count is allowed (Open logs a warning): it tolerates no more failures than
// one voter fewer.
const maxVoters = 9

// Raft timeouts for a quorum of several voters, where every message crosses
// a network. These are hashicorp/raft's defaults, chosen by its authors for
// LAN deployments: a follower starts an election after missing the leader
// for 1-2 s (HeartbeatTimeout randomized), a candidate gives up a round after
// 1-2 s, and a leader that has not heard from a majority for 500 ms steps
// down so that a partitioned leader stops accepting writes before a new one
// is elected. Shorter values elect faster after a crash but turn a GC pause
// or a network hiccup into a leadership change.
const (
	networkHeartbeatTimeout   = 1 * time.Second
	networkElectionTimeout    = 1 * time.Second
	networkLeaderLeaseTimeout = 500 * time.Millisecond // must be <= networkHeartbeatTimeout
	// networkCommitTimeout is how long a leader with nothing new to send
	// waits before it tells followers the commit index again: it bounds
	// how stale a follower's Image is after the leader commits.
	networkCommitTimeout = 50 * time.Millisecond
)

// Raft transport limits.
const (
	// transportMaxPool is how many idle connections to each peer are kept
	// for reuse; more are dialed when raft needs them concurrently and
	// closed after use. raft sends heartbeats, appends and votes on
	// separate connections, so 3 covers the steady state.
	transportMaxPool = 3
	// transportTimeout is the dial timeout and the I/O deadline of each
	// RPC (InstallSnapshot scales it by the snapshot's size, per 256 KiB).
	transportTimeout = 10 * time.Second
	// transportMaxRPCsInFlight is how many AppendEntries a leader
	// pipelines to one follower before waiting for answers.
	transportMaxRPCsInFlight = raft.DefaultMaxRPCsInFlight
	// maxInboundRaftConns bounds the connections this node serves at once
	// (each costs a goroutine and buffers). One peer holds up to about
	// 8 (pooled ones, a pipeline, a snapshot stream, the ones in use), so
	// 64 covers the largest quorum; past it, Accept waits for one to close.
	maxInboundRaftConns = 64
)

// ParseVoters parses the --controller-quorum-voters value: a
// comma-separated list of id@host:port, e.g. "1@h1:9093,2@h2:9093,3@h3:9093".
// An empty (or all-blank) string returns no voters, which means a quorum of
// one on this node alone. The result is in the order given.
func ParseVoters(s string) ([]Voter, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxVoters {
		return nil, fmt.Errorf("metadata: --controller-quorum-voters lists %d voters, at most %d are supported", len(parts), maxVoters)
	}
	voters := make([]Voter, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		idStr, addr, ok := strings.Cut(p, "@")
		if !ok {
			return nil, fmt.Errorf("metadata: --controller-quorum-voters entry %q: want id@host:port, e.g. 1@controller-1:9093", p)
		}
		id, err := strconv.ParseInt(idStr, 10, 32)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("metadata: --controller-quorum-voters entry %q: node id %q is not a non-negative 32-bit integer", p, idStr)
		}
		voters = append(voters, Voter{ID: int32(id), Addr: addr})
	}
	if err := validVoters(voters); err != nil {
		return nil, err
	}
	return voters, nil
}

// validVoters checks a voter list (from ParseVoters or built by a caller).
func validVoters(voters []Voter) error {
	if len(voters) > maxVoters {
		return fmt.Errorf("metadata: %d controller voters, at most %d are supported", len(voters), maxVoters)
	}
	for i, v := range voters {
		if v.ID < 0 {
			return fmt.Errorf("metadata: controller voter %s: negative node id", v)
		}
		host, port, err := net.SplitHostPort(v.Addr)
		if err != nil || host == "" {
			return fmt.Errorf("metadata: controller voter %d: address %q is not host:port", v.ID, v.Addr)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("metadata: controller voter %d: port %q is not 1-65535", v.ID, port)
		}
		for _, w := range voters[:i] {
			if w.ID == v.ID {
				return fmt.Errorf("metadata: controller voter %d is listed twice (%s and %s)", v.ID, w, v)
			}
			if w.Addr == v.Addr {
				return fmt.Errorf("metadata: controller voters %d and %d have the same address %s", w.ID, v.ID, v.Addr)
			}
		}
	}
	return nil
}

// voterIDs returns the sorted ids of voters.
func voterIDs(voters []Voter) []int32 {
	ids := make([]int32, len(voters))
	for i, v := range voters {
		ids[i] = v.ID
	}
	slices.Sort(ids)
	return ids
}

// serverAddr is the raft ServerAddress (and ServerID) of a node: its id.
func serverAddr(id int32) raft.ServerAddress { return raft.ServerAddress(strconv.Itoa(int(id))) }

// bootstrapConfiguration is the configuration every voter of a fresh quorum
// bootstraps with: identical on every node (hashicorp/raft accepts the same
// bootstrap on all members), voters sorted by id, addresses = ids.
func bootstrapConfiguration(ids []int32) raft.Configuration {
	var c raft.Configuration
	for _, id := range ids {
		c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(serverAddr(id)), Address: serverAddr(id)})
	}
	return c
}

// storedVoterIDs returns the sorted voter ids of a stored configuration, and
// false if one of them is not a node id (never written by this package).
func storedVoterIDs(c raft.Configuration) ([]int32, bool) {
	var ids []int32
	for _, sv := range c.Servers {
		if sv.Suffrage != raft.Voter {
			continue
		}
		id, err := strconv.ParseInt(string(sv.ID), 10, 32)
		if err != nil || id < 0 {
			return nil, false
		}
		ids = append(ids, int32(id))
	}
	slices.Sort(ids)
	return ids, true
}

// checkStoredObserver refuses an observer's data dir that holds another
// quorum's configuration, or one in which this node is a voter. An observer
// that has not been added yet has stored nothing (no check).
func checkStoredObserver(dir string, nodeID int32, stored raft.Configuration, want []int32) error {
	ids, ok := storedVoterIDs(stored)
	if !ok {
		return fmt.Errorf("metadata: %s holds a raft configuration with a server id that is not a node id (%v); it was not written by sluice", dir, stored.Servers)
	}
	if slices.Contains(ids, nodeID) {
		return fmt.Errorf("metadata: %s belongs to a quorum in which node %d is a voter (voters %v), but it was started as a broker only (process.roles=broker); start it with process.roles=broker,controller or check node.id and the data dir",
			dir, nodeID, ids)
	}
	if len(ids) > 0 && !slices.Equal(ids, want) {
		return fmt.Errorf("metadata: %s belongs to a quorum of voters %v, but --controller-quorum-voters names %v; name exactly the voters %v",
			dir, ids, want, ids)
	}
	return nil
}

// checkStoredVoters refuses a data dir whose stored voter set is not the
// one this node was started with. Changing the voter set takes raft
// configuration entries written by the leader (not supported yet); a
// restart with another list would otherwise run a node that disagrees
// with its dir about who may elect it.
func checkStoredVoters(dir string, nodeID int32, stored raft.Configuration, want []int32, fromFlag bool) error {
	ids, ok := storedVoterIDs(stored)
	if !ok {
		return fmt.Errorf("metadata: %s holds a raft configuration with a server id that is not a node id (%v); it was not written by sluice", dir, stored.Servers)
	}
	if !slices.Contains(ids, nodeID) {
		return fmt.Errorf("metadata: %s belongs to a quorum in which node %d is not a voter (voters %v); check node.id or the data dir",
			dir, nodeID, ids)
	}
	if slices.Equal(ids, want) {
		return nil
	}
	wantDesc := fmt.Sprintf("--controller-quorum-voters names %v", want)
	if !fromFlag {
		wantDesc = "no --controller-quorum-voters was given (a quorum of this node alone)"
	}
	return fmt.Errorf("metadata: %s belongs to a quorum of voters %v, but %s; changing the voter set by restarting is not supported yet: restart with --controller-quorum-voters naming exactly the voters %v (each id@host:port as this node reaches it)",
		dir, ids, wantDesc, ids)
}

// nodeAddr is the net.Addr of the stream layer: the node id, so that
// raft's LocalAddr matches the addresses in its configuration.
type nodeAddr string

func (a nodeAddr) Network() string { return "sluice-raft" }
func (a nodeAddr) String() string  { return string(a) }

// streamLayer is raft's StreamLayer over the caller's listener (already
// demultiplexed from other traffic) and dialer. Dial resolves a raft
// address (a node id) through this node's voter list, and an observer's
// (a broker-only node's) through resolve: the address that broker
// registered, where its Kafka listener also takes raft connections.
//
// Accept serves at most maxInboundRaftConns connections at once. Close
// closes the listener; raft's NetworkTransport calls it on shutdown.
type streamLayer struct {
	ln    net.Listener
	addr  nodeAddr
	peers map[raft.ServerAddress]string // node id -> host:port, from Voters; read-only
	dial  func(addr string, timeout time.Duration) (net.Conn, error)
	// resolve finds a server that Voters does not list (an observer); nil
	// or false: unreachable.
	resolve func(raft.ServerAddress) (string, bool)

	slots     chan struct{} // one token per inbound connection being served
	closed    chan struct{}
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(ln net.Listener, self int32, voters []Voter, dial func(string, time.Duration) (net.Conn, error)) *streamLayer {
	if dial == nil {
		dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout("tcp", addr, timeout)
		}
	}
	peers := make(map[raft.ServerAddress]string, len(voters))
	for _, v := range voters {
		peers[serverAddr(v.ID)] = v.Addr
	}
	return &streamLayer{
		ln:     ln,
		addr:   nodeAddr(serverAddr(self)),
		peers:  peers,
		dial:   dial,
		slots:  make(chan struct{}, maxInboundRaftConns),
		closed: make(chan struct{}),
	}
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case s.slots <- struct{}{}:
	case <-s.closed:
		return nil, net.ErrClosed
	}
	c, err := s.ln.Accept()
	if err != nil {
		<-s.slots
		return nil, err
	}
	return &slotConn{Conn: c, release: func() { <-s.slots }}, nil
}

func (s *streamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		err = s.ln.Close()
	})
	return err
}

func (s *streamLayer) Addr() net.Addr { return s.addr }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	hostPort, ok := s.peers[address]
	if !ok && s.resolve != nil {
		hostPort, ok = s.resolve(address)
	}
	if !ok {
		return nil, fmt.Errorf("metadata: raft wants to reach server %q, which --controller-quorum-voters does not list and which has not registered as a broker", address)
	}
	c, err := s.dial(hostPort, timeout)
	if err != nil {
		return nil, fmt.Errorf("metadata: dial controller %s at %s: %w", address, hostPort, err)
	}
	return c, nil
}

// slotConn gives its Accept slot back when closed.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// observingTransport is raft's NetworkTransport with one addition: it
// remembers the highest commit index that a leader has announced to this
// node (AppendEntries' LeaderCommitIndex), which CaughtUp compares with what
// this node has applied. raft keeps only min(leader's commit, own last
// index), which looks caught up while entries are still on their way.
//
// It forwards every inbound RPC from the NetworkTransport's consumer channel
// to its own, on one goroutine that ends when the transport is closed (raft
// closes it on Shutdown).
type observingTransport struct {
	*raft.NetworkTransport
	consumer     chan raft.RPC
	done         chan struct{}
	closeOnce    sync.Once
	leaderCommit atomic.Uint64
}

func newObservingTransport(nt *raft.NetworkTransport) *observingTransport {
	t := &observingTransport{NetworkTransport: nt, consumer: make(chan raft.RPC), done: make(chan struct{})}
	go t.forward(nt.Consumer())
	return t
}

func (t *observingTransport) forward(in <-chan raft.RPC) {
	for {
		select {
		case rpc := <-in:
			if ae, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				for {
					cur := t.leaderCommit.Load()
					if ae.LeaderCommitIndex <= cur || t.leaderCommit.CompareAndSwap(cur, ae.LeaderCommitIndex) {
						break
					}
				}
			}
			select {
			case t.consumer <- rpc:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

// Consumer replaces the NetworkTransport's channel with the forwarded one.
func (t *observingTransport) Consumer() <-chan raft.RPC { return t.consumer }

// Close stops forwarding and closes the NetworkTransport (and the listener).
func (t *observingTransport) Close() error {
	t.closeOnce.Do(func() { close(t.done) })
	return t.NetworkTransport.Close()
}

// errNoListener is returned by Open for several voters without a Listener.
var errNoListener = errors.New("metadata: Config.Listener is nil, but a quorum of several voters needs this node's controller listener for raft connections")
