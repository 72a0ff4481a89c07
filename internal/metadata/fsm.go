package metadata

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// fsm is the raft.FSM. hashicorp/raft calls Apply, Snapshot and Restore from
// one goroutine (its FSM goroutine), never concurrently, so those methods own
// the right to publish images. fsmSnapshot.Persist runs on another goroutine
// concurrently with Apply; it only reads an image, which is immutable.
//
// Readers use image and applied (atomic), changes and progress (under mu)
// from any goroutine.
type fsm struct {
	log   *slog.Logger
	image atomic.Pointer[Image]
	// applied is the raft index of the last entry this FSM has processed:
	// a command (accepted or refused), a configuration entry, or the last
	// one a restored snapshot covered. raft's own no-op and barrier entries
	// never reach the FSM (Store.appliedThrough accounts for them).
	applied atomic.Uint64

	mu       sync.Mutex    // guards changes and progress
	changes  chan struct{} // closed by the next publish
	progress chan struct{} // closed by the next advance of applied
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
)

func newFSM(log *slog.Logger) *fsm {
	f := &fsm{log: log, changes: make(chan struct{}), progress: make(chan struct{})}
	f.image.Store(emptyImage())
	return f
}

// advance records that every entry up to index has been processed and wakes
// progress waiters. Called after publish, so a waiter that sees index
// applied also sees its image.
func (f *fsm) advance(index uint64) {
	f.mu.Lock()
	f.applied.Store(index)
	old := f.progress
	f.progress = make(chan struct{})
	f.mu.Unlock()
	close(old)
}

// progressCh returns the channel that the next advance closes.
func (f *fsm) progressCh() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.progress
}

// publish makes img current and wakes every Changes waiter. The image is
// stored before the old channel is closed, so a waiter that took its channel
// before the call sees img (or newer) when it re-reads.
func (f *fsm) publish(img *Image) {
	f.mu.Lock()
	f.image.Store(img)
	old := f.changes
	f.changes = make(chan struct{})
	f.mu.Unlock()
	close(old)
}

// changesCh returns the channel that the next publish closes.
func (f *fsm) changesCh() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changes
}

// Apply applies one committed log entry and returns an *applyResult.
//
// A record that cannot be decoded (a version or type from a newer node, or a
// damaged log) is refused with an error, logged at error level, and leaves the
// image unchanged: every node decides the same way, so voters stay identical,
// but the change is lost, so a node must never be downgraded below the record
// version its quorum writes.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return &applyResult{}
	}
	defer f.advance(l.Index)
	r, err := decodeRecord(l.Data)
	if err != nil {
		f.log.Error("metadata: refusing undecodable record", "index", l.Index, "err", err)
		return &applyResult{err: err}
	}
	next, res := apply(f.image.Load(), r, l.Index)
	if res.err != nil {
		return &res
	}
	f.publish(next)
	return &res
}

// StoreConfiguration is called by raft for each committed configuration
// entry. The image holds no raft configuration; the call only counts the
// entry as applied.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) { f.advance(index) }

// Snapshot captures the current image; Persist encodes it later on another
// goroutine, which is safe because images are immutable.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{img: f.image.Load(), applied: f.applied.Load()}, nil
}

// Restore replaces the whole state with a snapshot written by Persist.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	img, applied, err := decodeSnapshotApplied(rc)
	if err != nil {
		return err
	}
	f.publish(img)
	f.advance(applied)
	return nil
}

type fsmSnapshot struct {
	img     *Image
	applied uint64
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriter(sink)
	err := encodeSnapshotApplied(w, s.img, s.applied)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("metadata: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// snapshotVersion is the first byte of an encoded snapshot. The cluster
// fields (broker epoch, incarnation, fencing, controlled shutdown; partition
// epoch; the applied index) were added without a new version: they are
// omitted when zero, so a snapshot written before them decodes to exactly
// the image it held (see the note on recordVersion for older nodes).
const snapshotVersion byte = 1

// snapshotImage is the encoded form of an Image: slices in a fixed order
// instead of maps keyed by non-strings, and TopicsByID left out (rebuilt).
type snapshotImage struct {
	ClusterID      string            `json:"clusterId"`
	ControllerID   int32             `json:"controllerId"`
	Brokers        []Broker          `json:"brokers"`
	Topics         []*Topic          `json:"topics"`
	BrokerConfigs  map[string]string `json:"brokerConfigs"`
	NextProducerID int64             `json:"nextProducerId"`
	Index          uint64            `json:"index"`
	// PerBrokerConfigs is Image.PerBrokerConfigs; left out when empty, so
	// a snapshot without any is what a node before them wrote.
	PerBrokerConfigs map[int32]map[string]string `json:"perBrokerConfigs,omitempty"`
	// Applied is the fsm's applied index when the snapshot was taken: at
	// least Index (refused records and configuration entries count too).
	// Snapshots written before it existed have none; Index stands in.
	Applied uint64 `json:"applied,omitempty"`
}

// encodeSnapshot encodes img with img.Index as its applied index.
func encodeSnapshot(w io.Writer, img *Image) error {
	return encodeSnapshotApplied(w, img, img.Index)
}

func encodeSnapshotApplied(w io.Writer, img *Image, applied uint64) error {
	s := snapshotImage{
		ClusterID:      img.ClusterID,
		ControllerID:   img.ControllerID,
		BrokerConfigs:  img.BrokerConfigs,
		NextProducerID: img.NextProducerID,
		Index:          img.Index,
		Applied:        max(applied, img.Index), // an image published without advance (tests) has applied 0

		PerBrokerConfigs: img.PerBrokerConfigs,
	}
	for _, b := range img.Brokers {
		s.Brokers = append(s.Brokers, b)
	}
	slices.SortFunc(s.Brokers, func(a, b Broker) int { return int(a.NodeID) - int(b.NodeID) })
	for _, t := range img.Topics {
		s.Topics = append(s.Topics, t)
	}
	slices.SortFunc(s.Topics, func(a, b *Topic) int { return strings.Compare(a.Name, b.Name) })
	if _, err := w.Write([]byte{snapshotVersion}); err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(&s)
}

// decodeSnapshot reads what encodeSnapshot wrote and drops the applied index.
func decodeSnapshot(r io.Reader) (*Image, error) {
	img, _, err := decodeSnapshotApplied(r)
	return img, err
}

// decodeSnapshotApplied reads what encodeSnapshotApplied wrote. The bytes
// come from disk (or, with more voters, from the leader), so every invariant
// of an Image is checked before it is published (FuzzDecodeSnapshot).
func decodeSnapshotApplied(r io.Reader) (*Image, uint64, error) {
	img, s, err := decodeSnapshotImage(r)
	if err != nil {
		return nil, 0, err
	}
	applied := s.Applied
	if applied == 0 {
		applied = img.Index // written before Applied existed
	}
	if applied < img.Index {
		return nil, 0, fmt.Errorf("metadata: snapshot: applied index %d below the image's index %d", applied, img.Index)
	}
	return img, applied, nil
}

func decodeSnapshotImage(r io.Reader) (*Image, *snapshotImage, error) {
	br := bufio.NewReader(io.LimitReader(r, maxSnapshotBytes+1))
	v, err := br.ReadByte()
	if err != nil {
		return nil, nil, fmt.Errorf("metadata: read snapshot: %w", err)
	}
	if v != snapshotVersion {
		return nil, nil, fmt.Errorf("metadata: snapshot version %d, this node knows only %d; upgrade this node", v, snapshotVersion)
	}
	b, err := io.ReadAll(br)
	if err != nil {
		return nil, nil, fmt.Errorf("metadata: read snapshot: %w", err)
	}
	// The limit is on the whole snapshot, version byte included; the
	// LimitReader lets one byte more through so that an oversized snapshot
	// is reported as such instead of as truncated JSON.
	if 1+len(b) > maxSnapshotBytes {
		return nil, nil, fmt.Errorf("metadata: snapshot larger than %d bytes", maxSnapshotBytes)
	}
	var s snapshotImage
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, fmt.Errorf("metadata: decode snapshot: %w", err)
	}
	img := emptyImage()
	img.ClusterID = s.ClusterID
	img.ControllerID = s.ControllerID
	img.NextProducerID = s.NextProducerID
	img.Index = s.Index
	img.BrokerConfigs = cloneConfigs(s.BrokerConfigs)
	if s.NextProducerID < 0 {
		return nil, nil, errors.New("metadata: snapshot: negative next producer id")
	}
	if s.ControllerID < -1 {
		return nil, nil, fmt.Errorf("metadata: snapshot: controller id %d", s.ControllerID)
	}
	for _, b := range s.Brokers {
		if err := validBroker(b); err != nil {
			return nil, nil, fmt.Errorf("metadata: snapshot: %w", err)
		}
		if _, dup := img.Brokers[b.NodeID]; dup {
			return nil, nil, fmt.Errorf("metadata: snapshot: broker %d twice", b.NodeID)
		}
		img.Brokers[b.NodeID] = b
	}
	for id, c := range s.PerBrokerConfigs {
		if _, ok := img.Brokers[id]; !ok {
			return nil, nil, fmt.Errorf("metadata: snapshot: configs of broker %d, which is not registered", id)
		}
		if len(c) == 0 {
			return nil, nil, fmt.Errorf("metadata: snapshot: an empty set of configs for broker %d", id)
		}
		img.PerBrokerConfigs[id] = c
	}
	for _, t := range s.Topics {
		if err := validSnapshotTopic(t); err != nil {
			return nil, nil, fmt.Errorf("metadata: snapshot: %w", err)
		}
		if _, dup := img.Topics[t.Name]; dup {
			return nil, nil, fmt.Errorf("metadata: snapshot: topic %q twice", t.Name)
		}
		if _, dup := img.TopicsByID[t.ID]; dup {
			return nil, nil, fmt.Errorf("metadata: snapshot: topic id %s twice", t.ID)
		}
		t.Configs = cloneConfigs(t.Configs)
		img.Topics[t.Name] = t
		img.TopicsByID[t.ID] = t
	}
	return img, &s, nil
}

func validSnapshotTopic(t *Topic) error {
	if t == nil {
		return errors.New("null topic")
	}
	if !validTopicName(t.Name) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, t.Name)
	}
	if t.ID.IsZero() {
		return fmt.Errorf("topic %q has the zero id", t.Name)
	}
	if len(t.Partitions) == 0 || len(t.Partitions) > maxPartitionsPerTopic {
		return fmt.Errorf("%w: topic %q has %d", ErrInvalidPartitions, t.Name, len(t.Partitions))
	}
	for i, p := range t.Partitions {
		if p.ID != int32(i) {
			return fmt.Errorf("topic %q: partition %d at index %d", t.Name, p.ID, i)
		}
		if err := validPartitionState(p.Replicas, p.Leader, p.ISR); err != nil {
			return fmt.Errorf("topic %q partition %d: %w", t.Name, i, err)
		}
		if p.LeaderEpoch < 0 || p.PartitionEpoch < 0 {
			return fmt.Errorf("topic %q partition %d: negative leader epoch %d or partition epoch %d", t.Name, i, p.LeaderEpoch, p.PartitionEpoch)
		}
	}
	return nil
}
