package metadata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func TestSnapshotRoundTrip(t *testing.T) {
	for name, img := range map[string]*Image{
		"empty":     emptyImage(),
		"populated": testImage(t),
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := encodeSnapshot(&buf, img); err != nil {
				t.Fatal(err)
			}
			enc := slicesClone(buf.Bytes())
			got, err := decodeSnapshot(&buf)
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, got)
			if !reflect.DeepEqual(got, img) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, img)
			}
			// The encoding is deterministic (map order does not leak).
			for range 5 {
				var again bytes.Buffer
				if err := encodeSnapshot(&again, got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(again.Bytes(), enc) {
					t.Fatal("encoding the same image twice gave different bytes")
				}
			}
		})
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// The FSM's snapshot goes through raft's sink and comes back through Restore
// into a fresh FSM, which publishes it and wakes Changes waiters.
func TestFSMSnapshotRestore(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	src := newFSM(log)
	img := testImage(t)
	src.publish(img)

	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, img.Index, 1, raft.Configuration{}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	metas, err := store.List()
	if err != nil || len(metas) != 1 {
		t.Fatalf("List = %v, %v", metas, err)
	}
	_, rc, err := store.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	dst := newFSM(log)
	ch := dst.changesCh()
	if err := dst.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if !isClosed(ch) {
		t.Error("Restore did not wake Changes waiters")
	}
	if got := dst.image.Load(); !reflect.DeepEqual(got, img) {
		t.Fatalf("restored:\n got %+v\nwant %+v", got, img)
	}

	// A damaged snapshot is refused and leaves the state alone.
	before := dst.image.Load()
	if err := dst.Restore(io.NopCloser(strings.NewReader("\x01{"))); err == nil {
		t.Error("Restore of a damaged snapshot succeeded")
	}
	if dst.image.Load() != before {
		t.Error("a failed Restore changed the image")
	}
}

// failingSink fails every write, like a full disk.
type failingSink struct{ canceled bool }

func (s *failingSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }
func (s *failingSink) Close() error              { return nil }
func (s *failingSink) ID() string                { return "x" }
func (s *failingSink) Cancel() error             { s.canceled = true; return nil }

func TestFSMSnapshotPersistFailure(t *testing.T) {
	f := newFSM(slog.New(slog.DiscardHandler))
	f.publish(testImage(t))
	snap, _ := f.Snapshot()
	sink := &failingSink{}
	if err := snap.Persist(sink); err == nil {
		t.Error("Persist to a failing sink succeeded")
	}
	if !sink.canceled {
		t.Error("Persist did not cancel the sink")
	}
}

func TestFSMApply(t *testing.T) {
	f := newFSM(slog.New(slog.DiscardHandler))
	start := f.image.Load()
	ch := f.changesCh()

	// Undecodable and refused records leave the image alone and wake no one.
	for _, data := range [][]byte{nil, {2}, []byte("\x01{"), []byte("\x01{\"type\":\"Bogus\"}")} {
		res, ok := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data}).(*applyResult)
		if !ok || res.err == nil {
			t.Errorf("Apply(%q) = %+v, want an error", data, res)
		}
	}
	// Non-command entries are not records.
	if res := f.Apply(&raft.Log{Index: 2, Type: raft.LogNoop}).(*applyResult); res.err != nil {
		t.Errorf("Apply(noop) = %v", res.err)
	}
	if f.image.Load() != start || isClosed(ch) {
		t.Fatal("a refused or non-command entry changed the image")
	}

	data, err := encodeRecord(&record{Type: recAllocateProducerIDs, Count: 4})
	if err != nil {
		t.Fatal(err)
	}
	res := f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: data}).(*applyResult)
	if res.err != nil || res.first != 0 {
		t.Fatalf("Apply = %+v", res)
	}
	if img := f.image.Load(); img.NextProducerID != 4 || img.Index != 3 {
		t.Errorf("image after Apply: %+v", img)
	}
	if !isClosed(ch) {
		t.Error("Apply did not wake Changes waiters")
	}
}

func encodeTestSnapshot(t *testing.T, s snapshotImage) []byte {
	t.Helper()
	b, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{snapshotVersion}, b...)
}

func TestDecodeSnapshotErrors(t *testing.T) {
	good := func() *Topic {
		return &Topic{Name: "t", ID: newUUID(), Partitions: newPartitions(0, 2, []int32{1, 2})}
	}
	mod := func(f func(*Topic)) *Topic { tp := good(); f(tp); return tp }
	dupID := good()
	dupID2 := good()
	dupID2.Name = "u"
	dupID2.ID = dupID.ID

	cases := map[string][]byte{
		"empty":       nil,
		"version 0":   []byte("\x00{}"),
		"version 2":   []byte("\x02{}"),
		"no json":     {snapshotVersion},
		"bad json":    []byte("\x01{"),
		"json array":  []byte("\x01[]"),
		"negative id": encodeTestSnapshot(t, snapshotImage{NextProducerID: -1}),
		"controller":  encodeTestSnapshot(t, snapshotImage{ControllerID: -2}),
		"bad broker":  encodeTestSnapshot(t, snapshotImage{Brokers: []Broker{{NodeID: -1}}}),
		"dup broker":  encodeTestSnapshot(t, snapshotImage{Brokers: []Broker{{NodeID: 1}, {NodeID: 1}}}),
		"null topic":  encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{nil}}),
		"dup topic":   encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{good(), good()}}),
		"dup id":      encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{dupID, dupID2}}),
		"bad name":    encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) { tp.Name = "../x" })}}),
		"zero id":     encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) { tp.ID = TopicID{} })}}),
		"no parts":    encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) { tp.Partitions = nil })}}),
		"part order":  encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) { tp.Partitions[0].ID = 1 })}}),
		"replicas":    encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) { tp.Partitions[1].Replicas = []int32{1, 1} })}}),
		"isr size":    encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) { tp.Partitions[0].ISR = []int32{1, 2, 3} })}}),
		"isr dup":     encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) { tp.Partitions[0].ISR = []int32{1, 1} })}}),
		"isr foreign": encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) { tp.Partitions[0].ISR = []int32{7} })}}),
		"leader":      encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) { tp.Partitions[0].Leader = 7 })}}),
		"epoch":       encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) { tp.Partitions[0].LeaderEpoch = -1 })}}),
		// Per-broker configs of an unregistered broker, empty or null.
		"cfg foreign": append([]byte{snapshotVersion}, `{"brokers":[{"NodeID":1}],"perBrokerConfigs":{"2":{"a":"1"}}}`...),
		"cfg empty":   append([]byte{snapshotVersion}, `{"brokers":[{"NodeID":1}],"perBrokerConfigs":{"1":{}}}`...),
		"cfg null":    append([]byte{snapshotVersion}, `{"brokers":[{"NodeID":1}],"perBrokerConfigs":{"1":null}}`...),
		"bad topic id": append([]byte{snapshotVersion},
			`{"topics":[{"Name":"t","ID":"!!!!!!!!!!!!!!!!!!!!!!","Partitions":[{"ID":0,"Leader":1,"Replicas":[1],"ISR":[1]}]}]}`...),
	}
	for name, b := range cases {
		if img, err := decodeSnapshot(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: decoded %+v", name, img)
		}
	}

	// Leaderless partitions with an empty ISR are valid states.
	ok := encodeTestSnapshot(t, snapshotImage{Topics: []*Topic{mod(func(tp *Topic) {
		tp.Partitions[0].Leader = -1
		tp.Partitions[0].ISR = nil
	})}})
	img, err := decodeSnapshot(bytes.NewReader(ok))
	if err != nil {
		t.Fatalf("leaderless partition refused: %v", err)
	}
	checkImage(t, img)
}

// FuzzDecodeRecord: decodeRecord reads the Raft log from disk; it must never
// panic, and whatever it accepts must apply (or be refused) without panicking.
func FuzzDecodeRecord(f *testing.F) {
	id := newUUID()
	for _, r := range []*record{
		{Type: recRegisterBroker, Broker: &Broker{NodeID: 3, Host: "h", Port: 9092}},
		{Type: recCreateTopic, Topic: "t", TopicID: &id, Partitions: 3, Replicas: []int32{0, 2}, Configs: map[string]string{"a": "b"}},
		{Type: recCreatePartitions, Topic: "t", Partitions: 9, Replicas: []int32{1}},
		{Type: recAllocateProducerIDs, Count: 12},
		{Type: recActivateController, NodeID: 1, ClusterID: "c"},
		{Type: recRegisterBroker, Broker: &Broker{NodeID: 4, Host: "h", Port: 1, IncarnationID: "i"}},
		{Type: recFenceBroker, NodeID: 3, Epoch: 9},
		{Type: recUnfenceBroker, NodeID: 4, Epoch: 10},
		{Type: recBeginControlledShutdown, NodeID: 5, Epoch: 11},
		{Type: recUnregisterBroker, NodeID: 1},
		{Type: recSetPerBrokerConfigs, NodeID: 2, Configs: map[string]string{"cordoned.log.dirs": "*"}},
		{Type: recCreateTopic, Topic: "u", TopicID: &id, Partitions: 2, Assignments: [][]int32{{1, 2}, {2}}},
		{Type: recCreatePartitions, Topic: "t3", Partitions: 4, Assignments: [][]int32{{5, 4}}},
		{Type: recChangePartitions, Changes: []PartitionChange{
			{Topic: "t3", Partition: 1, Leader: ptr(int32(5)), ISR: []int32{5}, ExpectLeaderEpoch: ptr(int32(0))},
			{Topic: "t1", Partition: 0, Leader: ptr(int32(-1)), ISR: []int32{}, Replicas: []int32{2}, BumpLeaderEpoch: true},
		}},
	} {
		b, _ := encodeRecord(r)
		f.Add(b)
	}
	f.Add([]byte("\x01{\"type\":\"CreateTopic\",\"partitions\":100000,\"replicas\":[1]}"))
	img := testImage(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		next, res := apply(img, r, img.Index+1)
		if res.err == nil {
			checkImage(t, next)
		}
	})
}

// FuzzDecodeSnapshot: what decodeSnapshot accepts is a valid image that
// survives another round trip unchanged.
func FuzzDecodeSnapshot(f *testing.F) {
	for _, img := range []*Image{emptyImage(), testImage(f)} {
		var buf bytes.Buffer
		if err := encodeSnapshot(&buf, img); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add([]byte("\x01{\"topics\":[null]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := decodeSnapshot(bytes.NewReader(b))
		if err != nil {
			return
		}
		checkImage(t, img)
		var buf bytes.Buffer
		if err := encodeSnapshot(&buf, img); err != nil {
			t.Fatal(err)
		}
		again, err := decodeSnapshot(&buf)
		if err != nil {
			t.Fatalf("re-decoding an accepted snapshot: %v", err)
		}
		if !reflect.DeepEqual(again, img) {
			t.Fatalf("round trip changed the image:\n%+v\n%+v", again, img)
		}
	})
}

// recordHandler keeps what the adapter logs.
type recordHandler struct {
	recs *[]slog.Record
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	*h.recs = append(*h.recs, r)
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

func TestHCLogAdapter(t *testing.T) {
	var recs []slog.Record
	a := newHCLogAdapter(slog.New(recordHandler{&recs}))

	a.Trace("t")
	a.Debug("d")
	a.Info("i")
	a.Log(hclog.Off, "off")
	a.Log(hclog.NoLevel, "none")
	if len(recs) != 0 {
		t.Fatalf("logged below warn or at Off: %v", recs)
	}

	a.Named("snap").With("k", "v").Warn("w", "x", 1)
	a.Error("e")
	a.StandardLogger(nil).Print("std line")
	if len(recs) != 3 {
		t.Fatalf("got %d records, want 3", len(recs))
	}
	attrs := func(r slog.Record) map[string]string {
		m := map[string]string{}
		r.Attrs(func(at slog.Attr) bool { m[at.Key] = at.Value.String(); return true })
		return m
	}
	if r := recs[0]; r.Level != slog.LevelWarn || r.Message != "w" {
		t.Errorf("record 0 = %v %q", r.Level, r.Message)
	} else if m := attrs(r); m["component"] != "raft.snap" || m["k"] != "v" || m["x"] != "1" {
		t.Errorf("record 0 attrs = %v", m)
	}
	if r := recs[1]; r.Level != slog.LevelError || attrs(r)["component"] != "raft" {
		t.Errorf("record 1 = %v %v", r.Level, attrs(r))
	}
	if r := recs[2]; r.Level != slog.LevelWarn || r.Message != "std line" {
		t.Errorf("record 2 = %v %q (trailing newline must be trimmed)", r.Level, r.Message)
	}

	// With does not share its argument slice between derived loggers.
	base := a.With("a", 1)
	l1 := base.With("b", 2)
	l2 := base.With("c", 3)
	if got := l1.ImpliedArgs(); len(got) != 4 || got[2] != "b" {
		t.Errorf("l1 args = %v", got)
	}
	if got := l2.ImpliedArgs(); len(got) != 4 || got[2] != "c" {
		t.Errorf("l2 args = %v", got)
	}
	if got := a.ResetNamed("x").Name(); got != "x" {
		t.Errorf("ResetNamed name = %q", got)
	}
}
