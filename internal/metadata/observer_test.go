package metadata

import (
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A broker-only node (an observer) follows the quorum without voting: it
// bootstraps nothing, is added by the controller once it has registered
// (the leader dials it at its registered address), applies every record,
// keeps what it applied across a restart, and is removed again on request.
func TestObserverFollowsQuorum(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	ctx := testCtx(t)
	ctl := c.controller()

	ln := listenLocal(t)
	obsAddr := ln.Addr().String()
	obsDir := filepath.Join(t.TempDir(), "meta")
	openObserver := func(ln net.Listener) *Store {
		t.Helper()
		s, err := open(Config{Dir: obsDir, NodeID: 7, Logger: testLogger(t), Voters: c.voters, Listener: ln, Observer: true},
			openOptions{timeouts: &testTimeouts})
		if err != nil {
			t.Fatalf("Open observer: %v", err)
		}
		return s
	}
	obs := openObserver(ln)
	if obs.CaughtUp() || obs.Image().ClusterID != "" {
		t.Fatal("an observer nobody added says it is caught up")
	}
	if err := obs.AddObserver(ctx, 7); !errors.Is(err, ErrNotController) {
		t.Fatalf("AddObserver on the observer = %v, want ErrNotController", err)
	}

	host, portStr, _ := net.SplitHostPort(obsAddr)
	port, _ := strconv.Atoi(portStr)
	if _, err := ctl.RegisterBrokerEpoch(ctx, Broker{NodeID: 7, Host: host, Port: int32(port), IncarnationID: "obs-1"}); err != nil {
		t.Fatal(err)
	}
	if err := ctl.AddObserver(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if err := ctl.AddObserver(ctx, 7); err != nil { // already a member: nothing to do
		t.Fatal(err)
	}
	mustCreateTopic(t, ctl, "seen-by-observer", 1, []int32{1}, nil)
	if err := obs.WaitApplied(ctx, ctl.raft.LastIndex()); err != nil {
		t.Fatal(err)
	}
	if _, ok := obs.Image().Topics["seen-by-observer"]; !ok || !obs.CaughtUp() {
		t.Fatalf("observer's image: %+v (caught up %v)", obs.Image(), obs.CaughtUp())
	}
	if l, ok := obs.Leader(); !ok || l != ctl.nodeID {
		t.Errorf("observer: Leader = %d, %v; want %d", l, ok, ctl.nodeID)
	}
	st := ctl.Status()
	if !slices.Equal(st.Observers, []int32{7}) || len(st.Voters) != 3 {
		t.Errorf("controller's Status: voters %v observers %v", st.Voters, st.Observers)
	}

	// Restarted, it resumes from its dir and catches up again.
	if err := obs.Close(); err != nil {
		t.Fatal(err)
	}
	mustCreateTopic(t, ctl, "while-observer-down", 1, []int32{1}, nil)
	ln2, err := net.Listen("tcp", obsAddr)
	if err != nil {
		t.Fatal(err)
	}
	obs = openObserver(ln2)
	defer obs.Close()
	if err := obs.WaitApplied(ctx, ctl.raft.LastIndex()); err != nil {
		t.Fatal(err)
	}
	if _, ok := obs.Image().Topics["while-observer-down"]; !ok {
		t.Fatal("restarted observer missed a topic")
	}

	if err := ctl.RemoveObserver(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if st := ctl.Status(); len(st.Observers) != 0 {
		t.Errorf("observers after RemoveObserver: %v", st.Observers)
	}
}

// A voter's dir refused as an observer's, and the observer's config errors.
func TestOpenObserverErrors(t *testing.T) {
	t.Parallel()
	three := []Voter{{1, "127.0.0.1:1"}, {2, "127.0.0.1:2"}, {3, "127.0.0.1:3"}}
	dir := filepath.Join(t.TempDir(), "meta")
	for name, c := range map[string]struct {
		cfg  Config
		want string
	}{
		"voter as observer": {Config{Dir: dir, NodeID: 1, Voters: three, Observer: true}, "a voter must have the controller role"},
		"no voters":         {Config{Dir: dir, NodeID: 4, Observer: true}, "needs --controller-quorum-voters"},
	} {
		c.cfg.Listener = listenLocal(t)
		s, err := Open(c.cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	// Voter 2's dir, opened by node 2 as a broker only (under another
	// voter list), and by an observer of another quorum.
	s := openUnreachableQuorum(t, dir, 2)
	s.Close()
	other := []Voter{{1, "127.0.0.1:1"}, {3, "127.0.0.1:3"}, {5, "127.0.0.1:5"}}
	for id, want := range map[int32]string{2: "node 2 is a voter", 4: "belongs to a quorum of voters [1 2 3]"} {
		s, err := Open(Config{Dir: dir, NodeID: id, Voters: other, Listener: listenLocal(t), Observer: true})
		if err == nil {
			s.Close()
			t.Errorf("observer %d opened voter 2's dir", id)
		} else if !strings.Contains(err.Error(), want) {
			t.Errorf("observer %d: %v, want %q", id, err, want)
		}
	}
}
