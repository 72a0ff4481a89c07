package metadata

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testTimeouts are raft timings short enough that an election on 127.0.0.1
// takes well under a second, long enough not to flap on a loaded machine
// running the race detector.
var testTimeouts = raftTimeouts{
	heartbeat:   300 * time.Millisecond,
	election:    300 * time.Millisecond,
	leaderLease: 150 * time.Millisecond,
	commit:      10 * time.Millisecond,
}

func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// refusingDial fails every dial, as if no other voter were up.
func refusingDial(addr string, _ time.Duration) (net.Conn, error) {
	return nil, fmt.Errorf("test: %s is unreachable", addr)
}

// openUnreachableQuorum opens node id of a 3-voter quorum (ids 1-3) whose
// other voters never answer. The caller closes it.
func openUnreachableQuorum(t *testing.T, dir string, id int32) *Store {
	t.Helper()
	voters := []Voter{{1, "127.0.0.1:1"}, {2, "127.0.0.1:2"}, {3, "127.0.0.1:3"}}
	s, err := open(Config{Dir: dir, NodeID: id, Logger: testLogger(t), Voters: voters, Listener: listenLocal(t), Dial: refusingDial},
		openOptions{timeouts: &testTimeouts})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// testCluster is n Stores in this process, each with its own TCP listener
// on 127.0.0.1 and its own dir.
type testCluster struct {
	t      *testing.T
	voters []Voter
	dirs   map[int32]string
	stores map[int32]*Store // running ones
}

func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dirs: map[int32]string{}, stores: map[int32]*Store{}}
	// Every listener first, so that every node knows every address.
	lns := map[int32]net.Listener{}
	for i := range n {
		id := int32(i + 1)
		lns[id] = listenLocal(t)
		c.voters = append(c.voters, Voter{ID: id, Addr: lns[id].Addr().String()})
		c.dirs[id] = filepath.Join(t.TempDir(), "meta")
	}
	for id, ln := range lns {
		c.start(id, ln)
	}
	t.Cleanup(func() {
		for id := range c.stores {
			c.stop(id)
		}
	})
	return c
}

func (c *testCluster) addr(id int32) string {
	for _, v := range c.voters {
		if v.ID == id {
			return v.Addr
		}
	}
	panic("BUG: no voter " + fmt.Sprint(id))
}

func (c *testCluster) start(id int32, ln net.Listener) {
	c.t.Helper()
	s, err := open(Config{Dir: c.dirs[id], NodeID: id, Logger: testLogger(c.t), Voters: c.voters, Listener: ln},
		openOptions{timeouts: &testTimeouts})
	if err != nil {
		c.t.Fatalf("Open node %d: %v", id, err)
	}
	c.stores[id] = s
}

// restart starts a stopped node again on its old address and dir.
func (c *testCluster) restart(id int32) {
	c.t.Helper()
	ln, err := net.Listen("tcp", c.addr(id))
	if err != nil {
		c.t.Fatalf("listen again on %s: %v", c.addr(id), err)
	}
	c.start(id, ln)
}

func (c *testCluster) stop(id int32) {
	c.t.Helper()
	if err := c.stores[id].Close(); err != nil {
		c.t.Errorf("Close node %d: %v", id, err)
	}
	delete(c.stores, id)
}

// controller waits until one running node is the active controller.
func (c *testCluster) controller() *Store {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), testTimeout)
	defer cancel()
	won := make(chan *Store, len(c.stores))
	for _, s := range c.stores {
		go func() {
			if s.WaitReady(ctx) == nil {
				won <- s
			}
		}()
	}
	select {
	case s := <-won:
		return s
	case <-ctx.Done():
		c.t.Fatalf("no controller elected among %d nodes", len(c.stores))
		return nil
	}
}

// converge waits until every running node has applied all ctl has written and
// checks that their images are the same.
func (c *testCluster) converge(ctl *Store) {
	c.t.Helper()
	want := ctl.Image()
	// Not want.Index: refused records after the last accepted one count.
	last := ctl.raft.LastIndex()
	for id, s := range c.stores {
		if err := s.WaitApplied(testCtx(c.t), last); err != nil {
			c.t.Fatalf("node %d: %v", id, err)
		}
		got := s.Image()
		checkImage(c.t, got)
		if !reflect.DeepEqual(got, want) {
			c.t.Fatalf("node %d's image differs from the controller's:\n got %+v\nwant %+v", id, got, want)
		}
	}
}

func (c *testCluster) followers(ctl *Store) []*Store {
	var out []*Store
	for _, s := range c.stores {
		if s != ctl {
			out = append(out, s)
		}
	}
	return out
}

func TestThreeVoters(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	ctx := testCtx(t)

	ctl := c.controller()
	img := ctl.Image()
	if img.ControllerID != ctl.nodeID || img.ClusterID == "" {
		t.Fatalf("controller %d's image: controller %d cluster %q", ctl.nodeID, img.ControllerID, img.ClusterID)
	}
	tp := mustCreateTopic(t, ctl, "t0", 2, []int32{1, 2, 3}, map[string]string{"a": "b"})
	populate(t, ctl) // one of every kind of record, applied alike by every voter
	c.converge(ctl)
	for id, s := range c.stores {
		if s.Image().Topics["t0"].ID != tp.ID {
			t.Errorf("node %d has another topic id", id)
		}
		if l, ok := s.Leader(); !ok || l != ctl.nodeID {
			t.Errorf("node %d: Leader = %d, %v; want %d", id, l, ok, ctl.nodeID)
		}
		if !s.CaughtUp() {
			t.Errorf("node %d is not caught up after applying everything", id)
		}
		st := s.Status()
		wantVoters := []VoterStatus{{1, c.addr(1)}, {2, c.addr(2)}, {3, c.addr(3)}}
		if !reflect.DeepEqual(st.Voters, wantVoters) || st.NodeID != id || st.LeaderID != ctl.nodeID ||
			st.Term == 0 || st.CommitIndex < img.Index || st.AppliedIndex < img.Index || st.LastLogIndex < st.CommitIndex {
			t.Errorf("node %d: Status = %+v", id, st)
		}
		if wantState := map[bool]string{true: "Leader", false: "Follower"}[s == ctl]; st.State != wantState || st.IsController != (s == ctl) {
			t.Errorf("node %d: state %s controller %v", id, st.State, st.IsController)
		}
		if s != ctl && st.LastLeaderContact.IsZero() {
			t.Errorf("follower %d: no last leader contact", id)
		}
	}
	for _, f := range c.followers(ctl) {
		if _, err := f.CreateTopic(ctx, "on-follower", 1, []int32{1}, nil); !errors.Is(err, ErrNotController) {
			t.Errorf("CreateTopic on follower %d = %v, want ErrNotController", f.nodeID, err)
		}
		if f.IsController() {
			t.Errorf("follower %d says it is the controller", f.nodeID)
		}
	}

	// The controller goes away: another is elected, announces itself, and
	// takes writes.
	old := ctl.nodeID
	c.stop(old)
	ctl = c.controller()
	if ctl.nodeID == old {
		t.Fatal("BUG: the stopped node is the controller")
	}
	if got := ctl.Image().ControllerID; got != ctl.nodeID {
		t.Errorf("new controller's image names %d", got)
	}
	mustCreateTopic(t, ctl, "after-failover", 1, []int32{2}, nil)
	if _, err := ctl.AllocateProducerIDs(ctx, 10); err != nil {
		t.Fatal(err)
	}
	c.converge(ctl)

	// The old controller comes back with its dir and catches up.
	c.restart(old)
	c.converge(ctl)
	back := c.stores[old]
	if _, ok := back.Image().Topics["after-failover"]; !ok || back.Image().ControllerID != ctl.nodeID {
		t.Errorf("restarted node's image: %+v", back.Image())
	}
	if !back.CaughtUp() {
		t.Error("restarted node is not caught up after applying everything")
	}
	if l, ok := back.Leader(); !ok || l != ctl.nodeID {
		t.Errorf("restarted node: Leader = %d, %v; want %d", l, ok, ctl.nodeID)
	}
}

func TestFiveVoters(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 5)
	ctx := testCtx(t)

	ctl := c.controller()
	mustCreateTopic(t, ctl, "before", 1, []int32{1}, nil)
	c.converge(ctl)

	// Two down (the controller among them): three of five still elect and
	// write.
	c.stop(ctl.nodeID)
	c.stop(c.followers(ctl)[0].nodeID)
	ctl = c.controller()
	mustCreateTopic(t, ctl, "after", 1, []int32{1}, nil)
	c.converge(ctl)

	// Three down: two of five can neither write nor elect.
	c.stop(ctl.nodeID)
	for id, s := range c.stores {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := s.CreateTopic(wctx, "never", 1, []int32{1}, nil); !errors.Is(err, ErrNotController) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("node %d: CreateTopic without a quorum = %v", id, err)
		}
		cancel()
	}
	wctx, cancel := context.WithTimeout(ctx, 4*testTimeouts.election)
	defer cancel()
	for id, s := range c.stores {
		if err := s.WaitReady(wctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("node %d: WaitReady without a quorum = %v", id, err)
		}
		if _, ok := s.Image().Topics["never"]; ok {
			t.Errorf("node %d applied a write made without a quorum", id)
		}
	}
}

// The Store dials each peer at the address its own Voters give for that id
// (here through a dialer that counts), never at an address from the raft
// configuration.
func TestDialResolvesThroughOwnVoters(t *testing.T) {
	t.Parallel()
	ln := listenLocal(t)
	var dialed []string
	sl := newStreamLayer(ln, 1, []Voter{{1, "a:1"}, {2, "proxy-for-2:9"}}, func(addr string, _ time.Duration) (net.Conn, error) {
		dialed = append(dialed, addr)
		return nil, errors.New("no")
	})
	defer sl.Close()
	if _, err := sl.Dial("2", time.Second); err == nil || !slices.Equal(dialed, []string{"proxy-for-2:9"}) {
		t.Errorf("Dial(2): %v, dialed %v", err, dialed)
	}
	if _, err := sl.Dial("127.0.0.1:9", time.Second); err == nil || !strings.Contains(err.Error(), "does not list") {
		t.Errorf("Dial of an unknown server = %v", err)
	}
	if got := sl.Addr().String(); got != "1" {
		t.Errorf("Addr = %q, want the node id", got)
	}
}

// Accept serves at most maxInboundRaftConns connections at once and takes
// one more when one closes.
func TestStreamLayerBoundsInbound(t *testing.T) {
	t.Parallel()
	sl := newStreamLayer(listenLocal(t), 1, nil, nil)
	defer sl.Close()
	addr := sl.ln.Addr().String()
	var served []net.Conn
	for range maxInboundRaftConns + 1 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for range maxInboundRaftConns {
		c, err := sl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		served = append(served, c)
	}
	extra := make(chan net.Conn, 1)
	go func() {
		c, err := sl.Accept()
		if err == nil {
			extra <- c
		}
		close(extra)
	}()
	select {
	case <-extra:
		t.Fatal("Accept went past the limit")
	case <-time.After(50 * time.Millisecond): // a negative check: nothing may happen
	}
	served[0].Close()
	served[0].Close() // a second Close gives back nothing more
	select {
	case c, ok := <-extra:
		if !ok {
			t.Fatal("Accept failed after a slot was freed")
		}
		c.Close()
	case <-testCtx(t).Done():
		t.Fatal("Accept did not resume after a connection closed")
	}
	for _, c := range served[1:] {
		c.Close()
	}
	if len(sl.slots) != 0 {
		t.Errorf("%d slots still taken after every connection closed", len(sl.slots))
	}
	sl.Close()
	if _, err := sl.Accept(); err == nil {
		t.Error("Accept after Close succeeded")
	}
}

func TestParseVoters(t *testing.T) {
	t.Parallel()
	got, err := ParseVoters(" 3@h3:9093, 1@[::1]:9093,2@h2.example.com:1 ")
	want := []Voter{{3, "h3:9093"}, {1, "[::1]:9093"}, {2, "h2.example.com:1"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseVoters = %v, %v; want %v", got, err, want)
	}
	if got[0].String() != "3@h3:9093" {
		t.Errorf("String = %q", got[0].String())
	}
	for _, empty := range []string{"", "  "} {
		if got, err := ParseVoters(empty); got != nil || err != nil {
			t.Errorf("ParseVoters(%q) = %v, %v; want none", empty, got, err)
		}
	}
	many := make([]string, maxVoters+1)
	for i := range many {
		many[i] = fmt.Sprintf("%d@h:%d", i, i+1)
	}
	for in, wantErr := range map[string]string{
		"1@h:1,":                    "want id@host:port",
		"h:1":                       "want id@host:port",
		"x@h:1":                     "not a non-negative",
		"-1@h:1":                    "not a non-negative",
		"99999999999@h:1":           "not a non-negative",
		"1@h":                       "not host:port",
		"1@:9093":                   "not host:port",
		"1@h:0":                     "not 1-65535",
		"1@h:65536":                 "not 1-65535",
		"1@h:x":                     "not 1-65535",
		"1@h:1,1@g:1":               "listed twice",
		"1@h:1,2@h:1":               "same address",
		strings.Join(many, ","):     "at most",
		"1@h:1,2@g:1,3@f:1,x@e:1":   "not a non-negative",
		"1@h:1, 2@g:1 ,3@f:1,3@e:1": "listed twice",
	} {
		if got, err := ParseVoters(in); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseVoters(%q) = %v, %v; want an error with %q", in, got, err, wantErr)
		}
	}
}

func TestOpenVoterConfigErrors(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "meta")
	three := []Voter{{1, "127.0.0.1:1"}, {2, "127.0.0.1:2"}, {3, "127.0.0.1:3"}}
	for name, c := range map[string]struct {
		cfg  Config
		want string
	}{
		"not a voter": {Config{Dir: dir, NodeID: 4, Voters: three}, "not in --controller-quorum-voters"},
		"no listener": {Config{Dir: dir, NodeID: 1, Voters: three}, "Listener is nil"},
		"bad voters":  {Config{Dir: dir, NodeID: 1, Voters: []Voter{{1, "nohost"}}}, "not host:port"},
	} {
		ln := listenLocal(t)
		if c.cfg.Voters != nil && name != "no listener" {
			c.cfg.Listener = ln
		}
		s, err := Open(c.cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
		if c.cfg.Listener != nil {
			if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s: a failed Open left the listener open (Accept: %v)", name, err)
			}
		}
		ln.Close()
	}
}

// A dir created by one voter set is refused when started with another, with
// an error that names both and says what to do, and the refused start
// leaves it usable with the right set.
func TestOpenRefusesOtherVoterSet(t *testing.T) {
	t.Parallel()

	// A quorum of one restarted as one of three.
	single := filepath.Join(t.TempDir(), "meta")
	s := readyStore(t, single, 1)
	want := s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	three := []Voter{{1, "127.0.0.1:1"}, {2, "127.0.0.1:2"}, {3, "127.0.0.1:3"}}
	ln := listenLocal(t)
	s2, err := Open(Config{Dir: single, NodeID: 1, Logger: testLogger(t), Voters: three, Listener: ln, Dial: refusingDial})
	if err == nil {
		s2.Close()
		t.Fatal("a quorum-of-one dir opened with three voters")
	}
	for _, part := range []string{"voters [1]", "names [1 2 3]", "not supported", "naming exactly the voters [1]"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the refused Open left the listener open (Accept: %v)", err)
	}
	// Nothing was written: the dir opens as before, with or without a
	// one-voter list.
	s3 := readyStore(t, single, 1)
	if got := s3.Image(); !reflect.DeepEqual(got, want) {
		t.Errorf("image after a refused Open:\n got %+v\nwant %+v", got, want)
	}
	s3.Close()
	s4, err := Open(Config{Dir: single, NodeID: 1, Logger: testLogger(t), Voters: three[:1]})
	if err != nil {
		t.Fatalf("Open with the one voter it was created with: %v", err)
	}
	if err := s4.WaitReady(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	s4.Close()

	// A dir of a 3-voter quorum, started with another set or with none.
	multi := filepath.Join(t.TempDir(), "meta")
	openUnreachableQuorum(t, multi, 2).Close()
	for name, c := range map[string]struct {
		voters []Voter
		want   string
	}{
		"none":  {nil, "no --controller-quorum-voters was given"},
		"other": {[]Voter{{1, "127.0.0.1:1"}, {2, "127.0.0.1:2"}, {4, "127.0.0.1:4"}}, "names [1 2 4]"},
		"more":  {append(slices.Clone(three), Voter{4, "127.0.0.1:4"}, Voter{5, "127.0.0.1:5"}), "names [1 2 3 4 5]"},
	} {
		cfg := Config{Dir: multi, NodeID: 2, Logger: testLogger(t), Voters: c.voters, Dial: refusingDial}
		if c.voters != nil {
			cfg.Listener = listenLocal(t)
		}
		s, err := Open(cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "quorum of voters [1 2 3]") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Another node's id on this dir.
	if s, err := Open(Config{Dir: multi, NodeID: 1, Logger: testLogger(t)}); err == nil {
		s.Close()
		t.Error("node 1 opened a 3-voter dir as a quorum of one")
	}
	// The same set opens.
	openUnreachableQuorum(t, multi, 2).Close()
}

// WaitApplied counts raft's no-op and barrier entries, which the FSM never
// sees: on a restarted quorum of one the last entries are exactly those.
func TestWaitAppliedNoopAndBarrier(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "meta")
	s := readyStore(t, dir, 1)
	if !s.CaughtUp() {
		t.Error("a ready quorum of one is not caught up")
	}
	mustCreateTopic(t, s, "t", 1, []int32{1}, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, 1)
	if s.CaughtUp() && !s.IsController() {
		t.Error("caught up before being elected")
	}
	if err := s.WaitReady(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	last := s.raft.LastIndex()
	if last <= s.Image().Index {
		t.Fatalf("last index %d, image index %d: want no-op and barrier entries after the last record", last, s.Image().Index)
	}
	if err := s.WaitApplied(testCtx(t), last); err != nil {
		t.Fatalf("WaitApplied(%d): %v", last, err)
	}
	short, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	if err := s.WaitApplied(short, last+100); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitApplied beyond the log = %v, want DeadlineExceeded", err)
	}
	s.Close()
	if err := s.WaitApplied(context.Background(), last+100); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitApplied after Close = %v, want ErrClosed", err)
	}
}

// A snapshot carries the FSM's applied index, so refused records and
// configuration entries above the image's index count as applied after a
// restore; an old snapshot without it restores with the image's index.
func TestSnapshotAppliedIndex(t *testing.T) {
	t.Parallel()
	img := testImage(t)
	var buf strings.Builder
	if err := encodeSnapshotApplied(&buf, img, img.Index+5); err != nil {
		t.Fatal(err)
	}
	got, applied, err := decodeSnapshotApplied(strings.NewReader(buf.String()))
	if err != nil || applied != img.Index+5 || !reflect.DeepEqual(got, img) {
		t.Errorf("decode: applied %d, %v", applied, err)
	}
	old := strings.Replace(buf.String(), fmt.Sprintf(`,"applied":%d`, img.Index+5), "", 1)
	if _, applied, err := decodeSnapshotApplied(strings.NewReader(old)); err != nil || applied != img.Index {
		t.Errorf("old snapshot: applied %d, %v; want %d", applied, err, img.Index)
	}
	bad := strings.Replace(buf.String(), fmt.Sprintf(`"applied":%d`, img.Index+5), `"applied":1`, 1)
	if _, _, err := decodeSnapshotApplied(strings.NewReader(bad)); err == nil {
		t.Error("applied below the image's index accepted")
	}
}
