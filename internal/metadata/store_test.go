package metadata

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluice-io/sluice/internal/vfs"
)

// testTimeout bounds every wait in these tests. It is a guard against hangs,
// never an assertion about speed: a single-node store is ready in a few
// hundred milliseconds.
const testTimeout = 20 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testLogger writes warnings and errors (the only levels the raft adapter
// forwards) to the test's output, shown with -v or on failure.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openStore opens a store in dir and closes it when the test ends.
func openStore(t *testing.T, dir string, nodeID int32) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, NodeID: nodeID, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open(%s, node %d): %v", dir, nodeID, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// readyStore opens a store and waits until it is the active controller.
func readyStore(t *testing.T, dir string, nodeID int32) *Store {
	t.Helper()
	s := openStore(t, dir, nodeID)
	if err := s.WaitReady(testCtx(t)); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	return s
}

func newReadyStore(t *testing.T) *Store {
	t.Helper()
	return readyStore(t, filepath.Join(t.TempDir(), "meta"), 1)
}

func mustCreateTopic(t *testing.T, s *Store, name string, partitions int32, replicas []int32, configs map[string]string) *Topic {
	t.Helper()
	tp, err := s.CreateTopic(testCtx(t), name, partitions, replicas, configs)
	if err != nil {
		t.Fatalf("CreateTopic(%q, %d, %v): %v", name, partitions, replicas, err)
	}
	return tp
}

// checkImage verifies the invariants every published image must hold.
func checkImage(t testing.TB, img *Image) {
	t.Helper()
	if img == nil {
		t.Fatal("nil image")
	}
	if img.Brokers == nil || img.Topics == nil || img.TopicsByID == nil || img.BrokerConfigs == nil || img.PerBrokerConfigs == nil {
		t.Fatalf("image has a nil map: %+v", img)
	}
	for id, c := range img.PerBrokerConfigs {
		if _, ok := img.Brokers[id]; !ok || len(c) == 0 {
			t.Fatalf("configs %v of broker %d (registered %v): only registered brokers have configs, never an empty set", c, id, ok)
		}
	}
	if len(img.Topics) != len(img.TopicsByID) {
		t.Fatalf("%d topics by name, %d by id", len(img.Topics), len(img.TopicsByID))
	}
	for name, tp := range img.Topics {
		if tp.Name != name {
			t.Fatalf("topic %q stored under %q", tp.Name, name)
		}
		if img.TopicsByID[tp.ID] != tp {
			t.Fatalf("topic %q: TopicsByID[%s] is not the same topic", name, tp.ID)
		}
		if tp.Configs == nil {
			t.Fatalf("topic %q has nil configs", name)
		}
		if err := validSnapshotTopic(tp); err != nil {
			t.Fatalf("topic %q: %v", name, err)
		}
	}
	for id, b := range img.Brokers {
		if b.NodeID != id {
			t.Fatalf("broker %d stored under %d", b.NodeID, id)
		}
		if err := validBroker(b); err != nil {
			t.Fatalf("broker %d: %v", id, err)
		}
	}
}

// isClosed reports whether ch is closed right now, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestOpenEmptyDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a", "meta") // Open creates missing parents
	s := openStore(t, dir, 7)
	if err := s.WaitReady(testCtx(t)); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	img := s.Image()
	checkImage(t, img)
	if img.ControllerID != 7 {
		t.Errorf("ControllerID = %d, want 7", img.ControllerID)
	}
	var cid TopicID
	if err := cid.UnmarshalText([]byte(img.ClusterID)); err != nil || cid.IsZero() {
		t.Errorf("ClusterID %q is not a 22-character base64 UUID: %v", img.ClusterID, err)
	}
	if len(img.Brokers) != 0 || len(img.Topics) != 0 || len(img.BrokerConfigs) != 0 || img.NextProducerID != 0 {
		t.Errorf("fresh image is not empty: %+v", img)
	}
	if img.Index == 0 {
		t.Error("Index = 0 after the activation record")
	}
	for _, name := range []string{journalName, stableName, vfs.LockName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// A second WaitReady on an active controller writes nothing.
	if err := s.WaitReady(testCtx(t)); err != nil {
		t.Fatalf("second WaitReady: %v", err)
	}
	if s.Image() != img {
		t.Error("second WaitReady changed the image")
	}
}

func TestOpenConfigErrors(t *testing.T) {
	t.Parallel()
	if _, err := Open(Config{}); err == nil {
		t.Error("Open with an empty Dir succeeded")
	}
	dir := filepath.Join(t.TempDir(), "meta")
	if _, err := Open(Config{Dir: dir, NodeID: -1}); err == nil {
		t.Error("Open with a negative node id succeeded")
	}
	// A file where the directory should be.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: file}); err == nil {
		t.Error("Open on a regular file succeeded")
	}
}

// A nil logger is allowed; the store then logs nowhere.
func TestOpenNilLogger(t *testing.T) {
	t.Parallel()
	s, err := Open(Config{Dir: filepath.Join(t.TempDir(), "meta"), NodeID: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WaitReady(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := s.Image().ControllerID; got != 0 {
		t.Errorf("ControllerID = %d, want 0", got)
	}
}

func TestOpenLockedDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "meta")
	openStore(t, dir, 1)
	// The bolt lock makes a second Open fail (after boltOpenTimeout) instead
	// of hanging or sharing the files.
	s2, err := Open(Config{Dir: dir, NodeID: 1, Logger: testLogger(t)})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of the same dir succeeded")
	}
	if !strings.Contains(err.Error(), "another sluice") {
		t.Errorf("error does not hint at the cause: %v", err)
	}
}

func TestOpenWrongNodeID(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "meta")
	s := readyStore(t, dir, 1)
	want := s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(Config{Dir: dir, NodeID: 2, Logger: testLogger(t)})
	if err == nil {
		s2.Close()
		t.Fatal("Open with another node id succeeded")
	}
	if !strings.Contains(err.Error(), "not a voter") {
		t.Errorf("unexpected error: %v", err)
	}

	// The failed Open released everything: the right node opens the dir.
	s3 := readyStore(t, dir, 1)
	if got := s3.Image(); !reflect.DeepEqual(got, want) {
		t.Errorf("image after reopen:\n got %+v\nwant %+v", got, want)
	}
}

func TestRegisterBroker(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)

	// The epoch is the raft index of the registration, whatever the caller
	// put in the fields the FSM decides.
	b1 := Broker{NodeID: 1, Host: "h1", Port: 9092, Rack: "r1"}
	b2 := Broker{NodeID: 2, Host: "h2", Port: 9093, Epoch: 77, Fenced: true, InControlledShutdown: true}
	if err := s.RegisterBroker(ctx, b1); err != nil {
		t.Fatal(err)
	}
	b1.Epoch = int64(s.Image().Index)
	epoch, err := s.RegisterBrokerEpoch(ctx, b2)
	if err != nil {
		t.Fatal(err)
	}
	if epoch != int64(s.Image().Index) || epoch <= b1.Epoch {
		t.Errorf("epoch %d: want the registration's index %d", epoch, s.Image().Index)
	}
	b2.Epoch, b2.Fenced, b2.InControlledShutdown = epoch, false, false
	img := s.Image()
	checkImage(t, img)
	if want := map[int32]Broker{1: b1, 2: b2}; !maps.Equal(img.Brokers, want) {
		t.Fatalf("Brokers = %v, want %v", img.Brokers, want)
	}

	// Re-registration replaces, with a new epoch.
	b1b := Broker{NodeID: 1, Host: "h1b", Port: 19092}
	if err := s.RegisterBroker(ctx, b1b); err != nil {
		t.Fatal(err)
	}
	b1b.Epoch = int64(s.Image().Index)
	if got := s.Image().Brokers[1]; got != b1b {
		t.Errorf("after re-registration Brokers[1] = %+v, want %+v", got, b1b)
	}
	if got := img.Brokers[1]; got != b1 {
		t.Errorf("an older image changed: Brokers[1] = %+v", got)
	}

	for _, b := range []Broker{
		{NodeID: -1, Host: "h", Port: 9092},
		{NodeID: 3, Host: "h", Port: -1},
		{NodeID: 3, Host: "h", Port: 65536},
		{NodeID: 3, Host: "h", Port: 1, IncarnationID: strings.Repeat("x", maxIncarnationIDLen+1)},
	} {
		if err := s.RegisterBroker(ctx, b); !errors.Is(err, ErrInvalidBroker) {
			t.Errorf("RegisterBroker(%+v) = %v, want ErrInvalidBroker", b, err)
		}
	}
	if len(s.Image().Brokers) != 2 {
		t.Errorf("invalid registrations changed the brokers: %v", s.Image().Brokers)
	}
}

func TestCreateTopic(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)

	configs := map[string]string{"cleanup.policy": "compact", "retention.ms": "1000"}
	tp, err := s.CreateTopic(ctx, "orders", 3, []int32{2, 1, 3}, configs)
	if err != nil {
		t.Fatal(err)
	}
	configs["retention.ms"] = "changed after the call" // must not reach the image
	img := s.Image()
	checkImage(t, img)
	if img.Topics["orders"] != tp || img.TopicsByID[tp.ID] != tp {
		t.Fatal("CreateTopic did not return the topic as it is in the image")
	}
	if tp.Name != "orders" || tp.ID.IsZero() {
		t.Errorf("topic = %+v", tp)
	}
	if want := map[string]string{"cleanup.policy": "compact", "retention.ms": "1000"}; !maps.Equal(tp.Configs, want) {
		t.Errorf("Configs = %v, want %v", tp.Configs, want)
	}
	if len(tp.Partitions) != 3 {
		t.Fatalf("%d partitions, want 3", len(tp.Partitions))
	}
	for i, p := range tp.Partitions {
		want := Partition{ID: int32(i), Leader: 2, LeaderEpoch: 0, Replicas: []int32{2, 1, 3}, ISR: []int32{2, 1, 3}}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("partition %d = %+v, want %+v", i, p, want)
		}
	}
	// Partitions do not share replica slices.
	if &tp.Partitions[0].Replicas[0] == &tp.Partitions[1].Replicas[0] || &tp.Partitions[0].Replicas[0] == &tp.Partitions[0].ISR[0] {
		t.Error("partitions share replica slices")
	}

	// nil configs become an empty map.
	tp2 := mustCreateTopic(t, s, "payments", 1, []int32{5}, nil)
	if tp2.Configs == nil || len(tp2.Configs) != 0 {
		t.Errorf("Configs = %#v, want an empty map", tp2.Configs)
	}
	if tp2.ID == tp.ID {
		t.Error("two topics got the same id")
	}

	// A duplicate is refused and publishes nothing.
	before := s.Image()
	if _, err := s.CreateTopic(ctx, "orders", 1, []int32{1}, nil); !errors.Is(err, ErrTopicExists) {
		t.Errorf("duplicate CreateTopic = %v, want ErrTopicExists", err)
	}
	if s.Image() != before {
		t.Error("a refused CreateTopic published an image")
	}
	if s.Image().Topics["orders"] != tp {
		t.Error("a refused CreateTopic changed the existing topic")
	}
}

func TestCreateTopicInvalid(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)

	for _, name := range []string{
		"", ".", "..",
		strings.Repeat("a", maxTopicNameLen+1),
		"has space", "slash/es", `back\slash`, "colon:", "star*", "bang!", "ümlaut", "tab\t", "nul\x00",
		"../escape", "a/../b",
	} {
		if _, err := s.CreateTopic(ctx, name, 1, []int32{1}, nil); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("CreateTopic(%q) = %v, want ErrInvalidTopic", name, err)
		}
	}
	for _, name := range []string{
		"a", "...", "_", "-", "a.b_c-D9", "__consumer_offsets",
		strings.Repeat("z", maxTopicNameLen),
	} {
		if _, err := s.CreateTopic(ctx, name, 1, []int32{1}, nil); err != nil {
			t.Errorf("CreateTopic(%q) = %v, want success", name, err)
		}
	}

	for _, n := range []int32{0, -1, maxPartitionsPerTopic + 1, -1 << 31} {
		if _, err := s.CreateTopic(ctx, "t", n, []int32{1}, nil); !errors.Is(err, ErrInvalidPartitions) {
			t.Errorf("CreateTopic with %d partitions = %v, want ErrInvalidPartitions", n, err)
		}
	}

	tooMany := make([]int32, maxReplicationFactor+1)
	for i := range tooMany {
		tooMany[i] = int32(i)
	}
	for _, r := range [][]int32{nil, {}, {1, 1}, {1, 2, 1}, {-1}, {0, -5}, tooMany} {
		if _, err := s.CreateTopic(ctx, "t", 1, r, nil); !errors.Is(err, ErrInvalidReplicas) {
			t.Errorf("CreateTopic with replicas %v = %v, want ErrInvalidReplicas", r, err)
		}
	}
	if _, ok := s.Image().Topics["t"]; ok {
		t.Error("an invalid CreateTopic created the topic")
	}
	checkImage(t, s.Image())
}

// A change too big for one record is refused before it reaches the log.
func TestCreateTopicRecordTooLarge(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	configs := map[string]string{"big": strings.Repeat("x", maxRecordBytes)}
	if _, err := s.CreateTopic(testCtx(t), "big", 1, []int32{1}, configs); !errors.Is(err, ErrRecordTooLarge) {
		t.Errorf("CreateTopic with a huge config = %v, want ErrRecordTooLarge", err)
	}
}

func TestDeleteTopic(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)

	if err := s.DeleteTopic(ctx, "nope"); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("DeleteTopic(unknown) = %v, want ErrUnknownTopic", err)
	}
	tp := mustCreateTopic(t, s, "doomed", 2, []int32{1}, nil)
	keep := mustCreateTopic(t, s, "kept", 1, []int32{1}, nil)
	withTopic := s.Image()
	if err := s.DeleteTopic(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	img := s.Image()
	checkImage(t, img)
	if _, ok := img.Topics["doomed"]; ok {
		t.Error("deleted topic still in Topics")
	}
	if _, ok := img.TopicsByID[tp.ID]; ok {
		t.Error("deleted topic still in TopicsByID")
	}
	if img.Topics["kept"] != keep {
		t.Error("deleting one topic changed another")
	}
	if withTopic.Topics["doomed"] != tp {
		t.Error("an older image lost the topic")
	}
	if err := s.DeleteTopic(ctx, "doomed"); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("second DeleteTopic = %v, want ErrUnknownTopic", err)
	}

	// Re-creating the name makes a new topic with a new id.
	again := mustCreateTopic(t, s, "doomed", 1, []int32{1}, nil)
	if again.ID == tp.ID {
		t.Error("re-created topic reused the old id")
	}
}

func TestCreatePartitions(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)

	if err := s.CreatePartitions(ctx, "nope", 5, []int32{1}); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("CreatePartitions(unknown) = %v, want ErrUnknownTopic", err)
	}
	old := mustCreateTopic(t, s, "grow", 2, []int32{1, 2}, map[string]string{"k": "v"})
	if err := s.CreatePartitions(ctx, "grow", 5, []int32{3, 1}); err != nil {
		t.Fatal(err)
	}
	img := s.Image()
	checkImage(t, img)
	tp := img.Topics["grow"]
	if tp.ID != old.ID || !maps.Equal(tp.Configs, old.Configs) {
		t.Errorf("growing changed the id or configs: %+v", tp)
	}
	if len(tp.Partitions) != 5 {
		t.Fatalf("%d partitions, want 5", len(tp.Partitions))
	}
	for i, p := range tp.Partitions {
		want := Partition{ID: int32(i), Leader: 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}}
		if i >= 2 {
			want = Partition{ID: int32(i), Leader: 3, Replicas: []int32{3, 1}, ISR: []int32{3, 1}}
		}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("partition %d = %+v, want %+v", i, p, want)
		}
	}
	if len(old.Partitions) != 2 {
		t.Errorf("the old topic value changed: %d partitions", len(old.Partitions))
	}

	for _, total := range []int32{5, 4, 1, 0, -1, maxPartitionsPerTopic + 1} {
		if err := s.CreatePartitions(ctx, "grow", total, []int32{1}); !errors.Is(err, ErrInvalidPartitions) {
			t.Errorf("CreatePartitions(total %d) = %v, want ErrInvalidPartitions", total, err)
		}
	}
	for _, r := range [][]int32{nil, {2, 2}, {-1}} {
		if err := s.CreatePartitions(ctx, "grow", 6, r); !errors.Is(err, ErrInvalidReplicas) {
			t.Errorf("CreatePartitions(replicas %v) = %v, want ErrInvalidReplicas", r, err)
		}
	}
	if s.Image() != img {
		t.Error("refused CreatePartitions calls published an image")
	}
}

func TestSetTopicConfigs(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)

	if err := s.SetTopicConfigs(ctx, "nope", map[string]string{"a": "1"}); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("SetTopicConfigs(unknown) = %v, want ErrUnknownTopic", err)
	}
	orig := mustCreateTopic(t, s, "cfg", 2, []int32{1}, map[string]string{"a": "1", "b": "2"})

	in := map[string]string{"b": "3", "c": "4"}
	if err := s.SetTopicConfigs(ctx, "cfg", in); err != nil {
		t.Fatal(err)
	}
	in["c"] = "changed after the call"
	img := s.Image()
	checkImage(t, img)
	tp := img.Topics["cfg"]
	if want := map[string]string{"b": "3", "c": "4"}; !maps.Equal(tp.Configs, want) {
		t.Errorf("Configs = %v, want exactly %v (replace, not merge)", tp.Configs, want)
	}
	if tp.ID != orig.ID || !reflect.DeepEqual(tp.Partitions, orig.Partitions) {
		t.Errorf("SetTopicConfigs changed more than configs: %+v", tp)
	}
	if want := map[string]string{"a": "1", "b": "2"}; !maps.Equal(orig.Configs, want) {
		t.Errorf("an older image's configs changed: %v", orig.Configs)
	}

	for _, empty := range []map[string]string{{}, nil} {
		if err := s.SetTopicConfigs(ctx, "cfg", map[string]string{"x": "y"}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetTopicConfigs(ctx, "cfg", empty); err != nil {
			t.Fatal(err)
		}
		if got := s.Image().Topics["cfg"].Configs; got == nil || len(got) != 0 {
			t.Errorf("after SetTopicConfigs(%#v) Configs = %#v, want an empty map", empty, got)
		}
	}
	checkImage(t, s.Image())
}

func TestSetBrokerConfigs(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)

	if err := s.SetBrokerConfigs(ctx, map[string]string{"a": "1", "b": "2"}); err != nil {
		t.Fatal(err)
	}
	first := s.Image()
	if err := s.SetBrokerConfigs(ctx, map[string]string{"b": "3"}); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"b": "3"}; !maps.Equal(s.Image().BrokerConfigs, want) {
		t.Errorf("BrokerConfigs = %v, want exactly %v", s.Image().BrokerConfigs, want)
	}
	if want := map[string]string{"a": "1", "b": "2"}; !maps.Equal(first.BrokerConfigs, want) {
		t.Errorf("an older image's broker configs changed: %v", first.BrokerConfigs)
	}
	if err := s.SetBrokerConfigs(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := s.Image().BrokerConfigs; got == nil || len(got) != 0 {
		t.Errorf("BrokerConfigs = %#v, want an empty map", got)
	}
}

// A broker's own configs are set, replaced whole and removed; only a
// registered broker may have them, and unregistering it removes them; they
// survive a snapshot and a restart.
func TestSetPerBrokerConfigs(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "meta")
	s := readyStore(t, dir, 1)
	ctx := testCtx(t)
	for _, b := range []Broker{{NodeID: 1, Host: "a", Port: 9092}, {NodeID: 2, Host: "b", Port: 9093}, {NodeID: 3, Host: "c", Port: 9094}} {
		if err := s.RegisterBroker(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	set := func(id int32, c map[string]string) {
		t.Helper()
		if err := s.SetPerBrokerConfigs(ctx, id, c); err != nil {
			t.Fatalf("SetPerBrokerConfigs(%d, %v): %v", id, c, err)
		}
	}
	set(2, map[string]string{"a": "1", "b": "2"})
	first := s.Image()
	set(2, map[string]string{"b": "3"})
	set(3, map[string]string{"cordoned.log.dirs": "*"})
	img := s.Image()
	checkImage(t, img)
	if want := map[string]string{"b": "3"}; !maps.Equal(img.PerBrokerConfigs[2], want) {
		t.Errorf("broker 2's configs = %v, want exactly %v", img.PerBrokerConfigs[2], want)
	}
	if want := map[string]string{"a": "1", "b": "2"}; !maps.Equal(first.PerBrokerConfigs[2], want) || len(first.PerBrokerConfigs) != 1 {
		t.Errorf("an older image's per-broker configs changed: %v", first.PerBrokerConfigs)
	}
	if len(img.BrokerConfigs) != 0 || len(img.PerBrokerConfigs[1]) != 0 {
		t.Errorf("one broker's configs leaked elsewhere: cluster-wide %v, broker 1 %v", img.BrokerConfigs, img.PerBrokerConfigs[1])
	}

	// An unregistered broker has none to set; removing is always fine.
	if err := s.SetPerBrokerConfigs(ctx, 9, map[string]string{"a": "1"}); !errors.Is(err, ErrUnknownBroker) {
		t.Errorf("configs of unregistered broker 9: %v, want ErrUnknownBroker", err)
	}
	if err := s.SetPerBrokerConfigs(ctx, -1, map[string]string{"a": "1"}); !errors.Is(err, ErrInvalidBroker) {
		t.Errorf("configs of broker -1: %v, want ErrInvalidBroker", err)
	}
	set(9, nil)
	set(1, map[string]string{})
	if _, ok := s.Image().PerBrokerConfigs[1]; ok {
		t.Error("an empty set left an entry")
	}

	// Snapshot, a change after it, restart: both come back.
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	set(1, map[string]string{"c": "4"})
	want := s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = readyStore(t, dir, 1)
	got := s.Image()
	checkImage(t, got)
	if !reflect.DeepEqual(got.PerBrokerConfigs, want.PerBrokerConfigs) || len(got.PerBrokerConfigs) != 3 {
		t.Fatalf("per-broker configs after restart: %v, want %v", got.PerBrokerConfigs, want.PerBrokerConfigs)
	}

	// Removed, and removed with its broker.
	if err := s.SetPerBrokerConfigs(ctx, 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.UnregisterBroker(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if got := s.Image().PerBrokerConfigs; len(got) != 1 || got[1]["c"] != "4" {
		t.Errorf("after removing broker 2's and unregistering broker 3: %v, want broker 1's alone", got)
	}
	// A broker registering again with the id starts without them.
	if err := s.RegisterBroker(ctx, Broker{NodeID: 3, Host: "new", Port: 9095}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Image().PerBrokerConfigs[3]; ok {
		t.Error("a re-registered broker got the configs of the one unregistered")
	}
}

func TestAllocateProducerIDs(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)

	for _, n := range []int64{0, -1, maxProducerIDBlock + 1} {
		if _, err := s.AllocateProducerIDs(ctx, n); !errors.Is(err, ErrInvalidProducerIDCount) {
			t.Errorf("AllocateProducerIDs(%d) = %v, want ErrInvalidProducerIDCount", n, err)
		}
	}
	next := int64(0)
	for _, n := range []int64{1, 10, maxProducerIDBlock, 5, 1} {
		first, err := s.AllocateProducerIDs(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if first != next {
			t.Errorf("AllocateProducerIDs(%d) = %d, want %d", n, first, next)
		}
		next = first + n
		if got := s.Image().NextProducerID; got != next {
			t.Errorf("NextProducerID = %d, want %d", got, next)
		}
	}
}

// Concurrent allocations get disjoint blocks that together tile the range.
func TestAllocateProducerIDsConcurrent(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)
	start := s.Image().NextProducerID

	type block struct{ first, count int64 }
	const workers, each = 8, 10
	var (
		mu     sync.Mutex
		blocks []block
		wg     sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				n := int64(1 + (w*each+i)%7)
				first, err := s.AllocateProducerIDs(ctx, n)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				blocks = append(blocks, block{first, n})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	slices.SortFunc(blocks, func(a, b block) int { return int(a.first - b.first) })
	at := start
	for _, b := range blocks {
		if b.first != at {
			t.Fatalf("blocks overlap or leave a gap at %d: %v", at, blocks)
		}
		at += b.count
	}
	if got := s.Image().NextProducerID; got != at {
		t.Errorf("NextProducerID = %d, want %d", got, at)
	}
}

func TestChanges(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)

	ch := s.Changes()
	before := s.Image()
	if isClosed(ch) {
		t.Fatal("Changes channel closed before any change")
	}
	// A refused write changes nothing and wakes no one.
	if err := s.DeleteTopic(ctx, "nope"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatal(err)
	}
	if isClosed(ch) {
		t.Fatal("Changes channel closed by a refused write")
	}

	// A waiter started before the write is woken and sees the change.
	woke := make(chan *Image, 1)
	go func() {
		<-ch
		woke <- s.Image()
	}()
	if err := s.SetBrokerConfigs(ctx, map[string]string{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	// The write returns after the image is published, so the channel is
	// already closed: no waiting needed.
	if !isClosed(ch) {
		t.Fatal("Changes channel still open after a successful write returned")
	}
	select {
	case img := <-woke:
		if img == before || img.BrokerConfigs["a"] != "1" {
			t.Errorf("woken waiter saw a stale image: %+v", img)
		}
	case <-ctx.Done():
		t.Fatal("waiter on Changes never woke")
	}

	// Each change gets a fresh channel.
	ch2 := s.Changes()
	if ch2 == ch || isClosed(ch2) {
		t.Fatal("Changes did not return a fresh open channel after a change")
	}
	if _, err := s.AllocateProducerIDs(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !isClosed(ch2) {
		t.Fatal("second Changes channel still open after a write")
	}
}

// populate writes one of every kind of record.
func populate(t *testing.T, s *Store) {
	t.Helper()
	ctx := testCtx(t)
	for _, b := range []Broker{{NodeID: 1, Host: "a", Port: 9092, Rack: "r"}, {NodeID: 2, Host: "b", Port: 9093}} {
		if err := s.RegisterBroker(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	mustCreateTopic(t, s, "t1", 3, []int32{1, 2}, map[string]string{"retention.ms": "1"})
	mustCreateTopic(t, s, "t2", 1, []int32{2}, nil)
	mustCreateTopic(t, s, "gone", 1, []int32{2}, nil)
	if err := s.DeleteTopic(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePartitions(ctx, "t2", 4, []int32{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTopicConfigs(ctx, "t1", map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBrokerConfigs(ctx, map[string]string{"log.retention.ms": "5"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPerBrokerConfigs(ctx, 2, map[string]string{"cordoned.log.dirs": "*"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AllocateProducerIDs(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	// The cluster records.
	epoch, err := s.RegisterBrokerEpoch(ctx, Broker{NodeID: 3, Host: "c", Port: 9094, Rack: "r", IncarnationID: "inc-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UnfenceBroker(ctx, 3, epoch); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginControlledShutdown(ctx, 3, epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisterBrokerEpoch(ctx, Broker{NodeID: 4, Host: "d", Port: 9095, IncarnationID: "inc-2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.UnregisterBroker(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTopicAssigned(ctx, "placed", [][]int32{{1, 3}, {3, 4}, {4, 1}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePartitionsAssigned(ctx, "placed", [][]int32{{3}}); err != nil {
		t.Fatal(err)
	}
	newLeader := int32(4)
	if err := s.ChangePartitions(ctx, []PartitionChange{
		{Topic: "placed", Partition: 1, Leader: &newLeader},
		{Topic: "t1", Partition: 0, ISR: []int32{1}},
	}); err != nil {
		t.Fatal(err)
	}
	// A refused record is in the log too; replay must refuse it again.
	if _, err := s.CreateTopic(ctx, "t1", 1, []int32{1}, nil); !errors.Is(err, ErrTopicExists) {
		t.Fatal(err)
	}
	if err := s.FenceBroker(ctx, 3, epoch-1); !errors.Is(err, ErrStaleBrokerEpoch) {
		t.Fatal(err)
	}
}

func TestReopenRestoresImage(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "meta")
	s := readyStore(t, dir, 1)
	populate(t, s)
	want := s.Image()
	checkImage(t, want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := readyStore(t, dir, 1)
	got := s2.Image()
	checkImage(t, got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("image after reopen:\n got %+v\nwant %+v", got, want)
	}
	// Producer ids continue where they were, never repeating.
	first, err := s2.AllocateProducerIDs(testCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if first != want.NextProducerID {
		t.Errorf("first producer id after reopen = %d, want %d", first, want.NextProducerID)
	}
	// Writes after reopen land on top of the restored state.
	if _, err := s2.CreateTopic(testCtx(t), "t1", 1, []int32{1}, nil); !errors.Is(err, ErrTopicExists) {
		t.Errorf("CreateTopic of a restored topic = %v, want ErrTopicExists", err)
	}
}

// Snapshot, more writes, reopen: the image comes back from the snapshot plus
// the log after it, and the log before the snapshot is compacted.
func TestManyWritesWithSnapshot(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "meta")
	s := readyStore(t, dir, 1)
	populate(t, s)

	// More records than trailingLogs, so a snapshot compacts the log. They
	// are written concurrently, which also lets raft batch them.
	const writers = 8
	perWriter := (trailingLogs + 200) / writers
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				var err error
				switch i % 4 {
				case 0:
					_, err = s.CreateTopic(ctx, topicName(w, i), 1+int32(i%3), []int32{int32(w % 3)}, map[string]string{"i": string(rune('a' + i%26))})
				case 1:
					err = s.SetTopicConfigs(ctx, topicName(w, i-1), map[string]string{"n": topicName(w, i)})
				case 2:
					_, err = s.AllocateProducerIDs(ctx, int64(i))
				case 3:
					err = s.CreatePartitions(ctx, topicName(w, i-3), 5, []int32{1, 2})
				}
				if err != nil {
					t.Errorf("writer %d op %d: %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	checkImage(t, s.Image())

	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	first, err := s.logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= 1 {
		t.Errorf("log not compacted after a snapshot: first index %d", first)
	}
	// A few records after the snapshot, replayed from the log on reopen.
	if err := s.DeleteTopic(ctx, topicName(0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBrokerConfigs(ctx, map[string]string{"after": "snapshot"}); err != nil {
		t.Fatal(err)
	}
	want := s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	snaps, err := openSnapshotStore(vfs.OS(), dir, snapshotsRetained, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("no snapshot on disk: %v %v", metas, err)
	}

	s2 := openStore(t, dir, 1)
	// Open restores the snapshot before returning (the log after it is
	// applied once this node commits as leader, which WaitReady waits for).
	if restored := s2.Image(); restored.Index == 0 || len(restored.Topics) == 0 {
		t.Errorf("Open did not restore the snapshot: index %d, %d topics", restored.Index, len(restored.Topics))
	}
	if err := s2.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	got := s2.Image()
	checkImage(t, got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("image after reopen differs:\n got %d topics, index %d, next pid %d\nwant %d topics, index %d, next pid %d",
			len(got.Topics), got.Index, got.NextProducerID, len(want.Topics), want.Index, want.NextProducerID)
	}

	// And once more, with the newest state snapshotted and nothing after it.
	if err := s2.raft.Snapshot().Error(); err != nil {
		t.Fatalf("second snapshot: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	s3 := readyStore(t, dir, 1)
	if !reflect.DeepEqual(s3.Image(), want) {
		t.Fatal("image after reopening from the second snapshot differs")
	}
}

func topicName(w, i int) string {
	return "w" + string(rune('a'+w)) + "-" + strings.Repeat("x", i%5) + string(rune('A'+i/26%26)) + string(rune('a'+i%26))
}

func TestClose(t *testing.T) {
	t.Parallel()
	s, err := Open(Config{Dir: filepath.Join(t.TempDir(), "meta"), NodeID: 1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	mustCreateTopic(t, s, "t", 1, []int32{1}, nil)
	img := s.Image()

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}

	if s.Image() != img {
		t.Error("Close changed the image")
	}
	if _, err := s.CreateTopic(ctx, "u", 1, []int32{1}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("CreateTopic after Close = %v, want ErrClosed", err)
	}
	if _, err := s.AllocateProducerIDs(ctx, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("AllocateProducerIDs after Close = %v, want ErrClosed", err)
	}
	if err := s.WaitReady(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitReady after Close = %v, want ErrClosed", err)
	}
}

// WaitReady blocked before leadership returns ErrClosed when the store closes.
func TestCloseWakesWaitReady(t *testing.T) {
	t.Parallel()
	s, err := Open(Config{Dir: filepath.Join(t.TempDir(), "meta"), NodeID: 1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitReady(context.Background()) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		// Depending on when Close lands, WaitReady may have become ready
		// first; both are fine, hanging is not.
		if err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("WaitReady = %v, want nil or ErrClosed", err)
		}
	case <-testCtx(t).Done():
		t.Fatal("WaitReady did not return after Close")
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.CreateTopic(canceled, "t", 1, []int32{1}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateTopic with a canceled ctx = %v, want context.Canceled", err)
	}
	if _, ok := s.Image().Topics["t"]; ok {
		t.Error("a write with a canceled ctx was applied")
	}
}

// A node that is not the leader refuses writes with ErrNotController, and
// WaitReady honors its ctx while waiting for a leadership that never comes:
// node 1 of a 3-voter quorum whose other voters never answer.
func TestNotController(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "meta")
	s := openUnreachableQuorum(t, dir, 1)
	t.Cleanup(func() { s.Close() })
	ctx := testCtx(t)

	if _, err := s.CreateTopic(ctx, "t", 1, []int32{1}, nil); !errors.Is(err, ErrNotController) {
		t.Errorf("CreateTopic on a follower = %v, want ErrNotController", err)
	}
	if err := s.RegisterBroker(ctx, Broker{NodeID: 1}); !errors.Is(err, ErrNotController) {
		t.Errorf("RegisterBroker on a follower = %v, want ErrNotController", err)
	}
	if _, err := s.AllocateProducerIDs(ctx, 1); !errors.Is(err, ErrNotController) {
		t.Errorf("AllocateProducerIDs on a follower = %v, want ErrNotController", err)
	}

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := s.WaitReady(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady without a quorum = %v, want context.DeadlineExceeded", err)
	}
	if img := s.Image(); img.ControllerID != -1 || img.ClusterID != "" {
		t.Errorf("a node without a quorum activated itself: %+v", img)
	}
	if s.IsController() || s.CaughtUp() {
		t.Error("a node without a quorum says it is the controller or caught up")
	}
	if id, ok := s.Leader(); ok {
		t.Errorf("Leader = %d, want none", id)
	}
}

func TestRaftErrorMapping(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   error
		want error
	}{
		{raft.ErrNotLeader, ErrNotController},
		{raft.ErrLeadershipLost, ErrNotController},
		{raft.ErrRaftShutdown, ErrClosed},
		{raft.ErrEnqueueTimeout, context.DeadlineExceeded},
	} {
		if got := raftError(c.in); !errors.Is(got, c.want) {
			t.Errorf("raftError(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if raftError(nil) != nil {
		t.Error("raftError(nil) != nil")
	}
	other := errors.New("other")
	if got := raftError(other); !errors.Is(got, other) {
		t.Errorf("raftError(other) = %v", got)
	}
}

func TestEnqueueTimeout(t *testing.T) {
	t.Parallel()
	if d := enqueueTimeout(context.Background()); d != 0 {
		t.Errorf("no deadline: %v, want 0", d)
	}
	past, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Hour))
	defer cancel()
	if d := enqueueTimeout(past); d <= 0 {
		t.Errorf("past deadline: %v, want > 0 (0 would mean forever)", d)
	}
}

func TestNewUUID(t *testing.T) {
	t.Parallel()
	seen := map[TopicID]bool{}
	for range 1000 {
		id := newUUID()
		if id.IsZero() || id[6]>>4 != 4 || id[8]>>6 != 2 {
			t.Fatalf("%x is not a version-4 UUID", id[:])
		}
		if s := id.String(); len(s) != 22 || s[0] == '-' {
			t.Fatalf("bad text form %q", s)
		}
		if seen[id] {
			t.Fatalf("%s twice", id)
		}
		seen[id] = true
	}
}

// The cluster records through the Store: results and sentinel errors reach
// the caller.
func TestStoreClusterRecords(t *testing.T) {
	t.Parallel()
	s := newReadyStore(t)
	ctx := testCtx(t)

	epoch, err := s.RegisterBrokerEpoch(ctx, Broker{NodeID: 7, Host: "h", Port: 9092, IncarnationID: newUUID().String()})
	if err != nil {
		t.Fatal(err)
	}
	if b := s.Image().Brokers[7]; b.Epoch != epoch || !b.Fenced {
		t.Fatalf("registered %+v, epoch %d", b, epoch)
	}
	if err := s.WaitApplied(ctx, uint64(epoch)); err != nil {
		t.Fatal(err)
	}
	if err := s.UnfenceBroker(ctx, 7, epoch+1); !errors.Is(err, ErrStaleBrokerEpoch) {
		t.Errorf("UnfenceBroker(stale) = %v", err)
	}
	if err := s.UnfenceBroker(ctx, 8, epoch); !errors.Is(err, ErrUnknownBroker) {
		t.Errorf("UnfenceBroker(unknown) = %v", err)
	}
	if err := s.UnfenceBroker(ctx, 7, epoch); err != nil || s.Image().Brokers[7].Fenced {
		t.Errorf("UnfenceBroker = %v, fenced %v", err, s.Image().Brokers[7].Fenced)
	}
	if err := s.FenceBroker(ctx, 7, epoch); err != nil || !s.Image().Brokers[7].Fenced {
		t.Errorf("FenceBroker = %v", err)
	}
	if err := s.BeginControlledShutdown(ctx, 7, epoch); err != nil || !s.Image().Brokers[7].InControlledShutdown {
		t.Errorf("BeginControlledShutdown = %v", err)
	}
	if err := s.UnregisterBroker(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if err := s.UnregisterBroker(ctx, 7); !errors.Is(err, ErrUnknownBroker) {
		t.Errorf("second UnregisterBroker = %v", err)
	}

	tp, err := s.CreateTopicAssigned(ctx, "placed", [][]int32{{1, 2}, {2, 1}}, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Image().Topics["placed"] != tp || tp.Partitions[1].Leader != 2 || tp.Configs["k"] != "v" {
		t.Errorf("CreateTopicAssigned = %+v", tp)
	}
	for _, a := range [][][]int32{nil, {{}}, {{1, 1}}, {{1}, {-1}}} {
		if _, err := s.CreateTopicAssigned(ctx, "bad", a, nil); !errors.Is(err, ErrInvalidPartitions) && !errors.Is(err, ErrInvalidReplicas) {
			t.Errorf("CreateTopicAssigned(%v) = %v", a, err)
		}
	}
	if _, err := s.CreateTopicAssigned(ctx, "a/b", [][]int32{{1}}, nil); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("CreateTopicAssigned(bad name) = %v", err)
	}
	if _, err := s.CreateTopicAssigned(ctx, "placed", [][]int32{{1}}, nil); !errors.Is(err, ErrTopicExists) {
		t.Errorf("CreateTopicAssigned(existing) = %v", err)
	}
	if err := s.CreatePartitionsAssigned(ctx, "placed", [][]int32{{3}, {1, 3}}); err != nil {
		t.Fatal(err)
	}
	if ps := s.Image().Topics["placed"].Partitions; len(ps) != 4 || ps[3].Leader != 1 || ps[3].ID != 3 {
		t.Errorf("after CreatePartitionsAssigned: %+v", ps)
	}
	if err := s.CreatePartitionsAssigned(ctx, "nope", [][]int32{{1}}); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("CreatePartitionsAssigned(unknown) = %v", err)
	}
	if err := s.CreatePartitionsAssigned(ctx, "placed", nil); !errors.Is(err, ErrInvalidPartitions) {
		t.Errorf("CreatePartitionsAssigned(none) = %v", err)
	}

	p := s.Image().Topics["placed"].Partitions[0]
	change := PartitionChange{Topic: "placed", TopicID: tp.ID, Partition: 0, Leader: ptr(int32(2)),
		ExpectLeaderEpoch: ptr(p.LeaderEpoch), ExpectPartitionEpoch: ptr(p.PartitionEpoch)}
	if err := s.ChangePartitions(ctx, []PartitionChange{change}); err != nil {
		t.Fatal(err)
	}
	if got := s.Image().Topics["placed"].Partitions[0]; got.Leader != 2 || got.LeaderEpoch != 1 || got.PartitionEpoch != 1 {
		t.Errorf("after ChangePartitions: %+v", got)
	}
	if err := s.ChangePartitions(ctx, []PartitionChange{change}); !errors.Is(err, ErrStaleLeaderEpoch) {
		t.Errorf("the same change again = %v, want ErrStaleLeaderEpoch", err)
	}
	change.ExpectLeaderEpoch = nil
	if err := s.ChangePartitions(ctx, []PartitionChange{change}); !errors.Is(err, ErrStalePartitionEpoch) {
		t.Errorf("the same change again = %v, want ErrStalePartitionEpoch", err)
	}
	if err := s.ChangePartitions(ctx, nil); !errors.Is(err, ErrInvalidPartitionChange) {
		t.Errorf("ChangePartitions(nil) = %v", err)
	}
	checkImage(t, s.Image())
}
