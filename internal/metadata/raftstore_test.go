package metadata

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluice-io/sluice/internal/vfs"
)

// These tests drive the three raft stores (log, stable, snapshots) through
// a fixed sequence of calls on a vfs.MemFS and check, after crashes and
// injected faults at every filesystem operation, that the stores reopen
// holding everything a call returned success for and nothing half-written.

const storeTestDir = "/data/meta"

// raftStores is the three stores of one meta directory.
type raftStores struct {
	logs   *logStore
	stable *stableStore
	snaps  *snapshotStore
}

func openRaftStores(fsys vfs.FS, dir string) (*raftStores, error) {
	log := slog.New(slog.DiscardHandler) // torn tails are expected here
	if err := vfs.MkdirAll(fsys, dir); err != nil {
		return nil, err
	}
	logs, err := openLogStore(fsys, dir, log)
	if err != nil {
		return nil, err
	}
	stable, err := openStableStore(fsys, dir)
	if err != nil {
		logs.Close()
		return nil, err
	}
	snaps, err := openSnapshotStore(fsys, dir, snapshotsRetained, log)
	if err != nil {
		logs.Close()
		return nil, err
	}
	return &raftStores{logs: logs, stable: stable, snaps: snaps}, nil
}

func (s *raftStores) close() {
	if s != nil {
		s.logs.Close()
	}
}

// storeModel is what the stores must hold after a sequence of calls.
type storeModel struct {
	logs   []raft.Log
	stable map[string][]byte
	snaps  []modelSnap // every snapshot finished, oldest first
}

type modelSnap struct {
	id          string
	index, term uint64
	state       []byte
}

func (m storeModel) clone() storeModel {
	return storeModel{logs: slices.Clone(m.logs), stable: maps.Clone(m.stable), snaps: slices.Clone(m.snaps)}
}

// testEntries returns entries from..to of term, with data that names them.
func testEntries(from, to, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		l := &raft.Log{
			Index: i, Term: term, Type: raft.LogCommand,
			Data:       []byte(fmt.Sprintf("entry %d of term %d %s", i, term, strings.Repeat("x", int(i%7)*50))),
			AppendedAt: time.Unix(1_700_000_000+int64(i), int64(i)).UTC(),
		}
		if i%3 == 0 {
			l.Extensions = []byte{byte(i), 0, 1}
		}
		if i%5 == 0 {
			l.Type = raft.LogNoop
			l.Data = nil
		}
		out = append(out, l)
	}
	return out
}

func derefLogs(ls []*raft.Log) []raft.Log {
	out := make([]raft.Log, len(ls))
	for i, l := range ls {
		out[i] = *l
	}
	return out
}

// storeStep is one call (or a few that belong together) and its effect on
// the model if it succeeds.
type storeStep struct {
	name  string
	run   func(s **raftStores, fsys vfs.FS) error
	apply func(m *storeModel)
}

func storeLogsStep(from, to, term uint64) storeStep {
	return storeStep{
		name: fmt.Sprintf("StoreLogs %d..%d term %d", from, to, term),
		run:  func(s **raftStores, _ vfs.FS) error { return (*s).logs.StoreLogs(testEntries(from, to, term)) },
		apply: func(m *storeModel) {
			m.logs = append(m.logs, derefLogs(testEntries(from, to, term))...)
		},
	}
}

func deleteRangeStep(min, max uint64) storeStep {
	return storeStep{
		name: fmt.Sprintf("DeleteRange %d..%d", min, max),
		run:  func(s **raftStores, _ vfs.FS) error { return (*s).logs.DeleteRange(min, max) },
		apply: func(m *storeModel) {
			m.logs = slices.DeleteFunc(m.logs, func(l raft.Log) bool { return l.Index >= min && l.Index <= max })
		},
	}
}

func setStep(key string, val []byte) storeStep {
	return storeStep{
		name:  "Set " + key,
		run:   func(s **raftStores, _ vfs.FS) error { return (*s).stable.Set([]byte(key), val) },
		apply: func(m *storeModel) { m.stable[key] = val },
	}
}

func setUint64Step(key string, val uint64) storeStep {
	return storeStep{
		name:  fmt.Sprintf("SetUint64 %s %d", key, val),
		run:   func(s **raftStores, _ vfs.FS) error { return (*s).stable.SetUint64([]byte(key), val) },
		apply: func(m *storeModel) { m.stable[key] = binary.BigEndian.AppendUint64(nil, val) },
	}
}

var testConfiguration = raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "1", Address: "node-1"}}}

func snapshotStep(index, term uint64, cancel bool) storeStep {
	state := bytes.Repeat(fmt.Appendf(nil, "state at %d/%d;", term, index), 200)
	name := fmt.Sprintf("snapshot %d term %d", index, term)
	if cancel {
		name += " canceled"
	}
	return storeStep{
		name: name,
		run: func(s **raftStores, _ vfs.FS) error {
			sink, err := (*s).snaps.Create(1, index, term, testConfiguration, 1, nil)
			if err != nil {
				return err
			}
			// In two writes, as a bufio.Writer in Persist may do.
			if _, err := sink.Write(state[:100]); err != nil {
				sink.Cancel()
				return err
			}
			if _, err := sink.Write(state[100:]); err != nil {
				sink.Cancel()
				return err
			}
			if cancel {
				return sink.Cancel()
			}
			return sink.Close()
		},
		apply: func(m *storeModel) {
			if !cancel {
				m.snaps = append(m.snaps, modelSnap{id: snapshotID(term, index), index: index, term: term, state: state})
			}
		},
	}
}

// reopenStep closes the stores and opens them again on the same FS.
var reopenStep = storeStep{
	name: "reopen",
	run: func(s **raftStores, fsys vfs.FS) error {
		(*s).close()
		*s = nil
		ns, err := openRaftStores(fsys, storeTestDir)
		if err != nil {
			return err
		}
		*s = ns
		return nil
	},
	apply: func(*storeModel) {},
}

// openStep opens the stores; the first step of every sequence.
var openStep = storeStep{name: "open", run: reopenStep.run, apply: reopenStep.apply}

// storeSteps is the sequence: every kind of write, compaction after a
// snapshot, a follower's suffix truncation, a reopen, snapshot reaping and
// a canceled snapshot, the whole log deleted (after a snapshot install).
func storeSteps() []storeStep {
	return []storeStep{
		openStep,
		storeLogsStep(1, 3, 1),
		setUint64Step("CurrentTerm", 1),
		storeLogsStep(4, 10, 1),
		snapshotStep(8, 1, false),
		deleteRangeStep(1, 5),
		storeLogsStep(11, 12, 1),
		deleteRangeStep(11, 12),
		storeLogsStep(11, 13, 2),
		reopenStep,
		setUint64Step("CurrentTerm", 2),
		setUint64Step("LastVoteTerm", 2),
		setStep("LastVoteCand", []byte("node-1")),
		snapshotStep(12, 2, false),
		snapshotStep(13, 2, true),
		snapshotStep(13, 2, false),
		deleteRangeStep(6, 13),
		storeLogsStep(20, 22, 3),
		storeLogsStep(23, 23, 3),
	}
}

func newModel() storeModel { return storeModel{stable: map[string][]byte{}} }

// verifyStores checks that s holds one of the allowed states: its log and
// its stable keys each equal those of one allowed model, its newest
// snapshot is the newest of one, every snapshot it lists opens and holds
// the state it was written with, and no unfinished file is left. strict
// also asks for exactly the newest snapshotsRetained snapshots.
func verifyStores(s *raftStores, fsys vfs.FS, strict bool, allowed ...storeModel) error {
	var errs []error
	if !slices.ContainsFunc(allowed, func(m storeModel) bool { return logsMatch(s.logs, m.logs) == nil }) {
		errs = append(errs, fmt.Errorf("log: %w", logsMatch(s.logs, allowed[len(allowed)-1].logs)))
	}
	if !slices.ContainsFunc(allowed, func(m storeModel) bool { return stableMatch(s.stable, m.stable) == nil }) {
		errs = append(errs, fmt.Errorf("stable: %w", stableMatch(s.stable, allowed[len(allowed)-1].stable)))
	}
	known := map[string]modelSnap{}
	newest := map[string]bool{}
	for _, m := range allowed {
		for _, sn := range m.snaps {
			known[sn.id] = sn
		}
		if n := len(m.snaps); n > 0 {
			newest[m.snaps[n-1].id] = true
		} else {
			newest[""] = true
		}
	}
	metas, err := s.snaps.List()
	if err != nil {
		errs = append(errs, err)
	}
	var ids []string
	for _, meta := range metas {
		ids = append(ids, meta.ID)
		want, ok := known[meta.ID]
		if !ok {
			errs = append(errs, fmt.Errorf("snapshot %s was never finished", meta.ID))
			continue
		}
		got, rc, err := s.snaps.Open(meta.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		state, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(state, want.state) || got.Index != want.index || got.Term != want.term ||
			got.Size != int64(len(want.state)) || !slices.Equal(got.Configuration.Servers, testConfiguration.Servers) ||
			!metaEqual(meta, got) {
			errs = append(errs, fmt.Errorf("snapshot %s: read %d bytes (%v), meta %+v, want %d bytes", meta.ID, len(state), err, got, len(want.state)))
		}
	}
	top := ""
	if len(ids) > 0 {
		top = ids[0]
	}
	if !newest[top] {
		errs = append(errs, fmt.Errorf("newest snapshot %q, want one of %v", top, slices.Collect(maps.Keys(newest))))
	}
	if len(ids) > snapshotsRetained+1 {
		errs = append(errs, fmt.Errorf("%d snapshots kept: %v", len(ids), ids))
	}
	if strict {
		m := allowed[0]
		var want []string
		for i := len(m.snaps) - 1; i >= 0 && len(want) < snapshotsRetained; i-- {
			want = append(want, m.snaps[i].id)
		}
		if !slices.Equal(ids, want) {
			errs = append(errs, fmt.Errorf("snapshots %v, want %v", ids, want))
		}
	}
	names, err := fsys.List(storeTestDir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) {
			errs = append(errs, fmt.Errorf("unfinished file %s left after open", n))
		}
	}
	return errors.Join(errs...)
}

func metaEqual(a, b *raft.SnapshotMeta) bool {
	return a.ID == b.ID && a.Index == b.Index && a.Term == b.Term && a.Size == b.Size &&
		a.ConfigurationIndex == b.ConfigurationIndex && slices.Equal(a.Configuration.Servers, b.Configuration.Servers)
}

// logsMatch compares the log store with want through raft's interface.
func logsMatch(s *logStore, want []raft.Log) error {
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	var wf, wl uint64
	if len(want) > 0 {
		wf, wl = want[0].Index, want[len(want)-1].Index
	}
	if first != wf || last != wl {
		return fmt.Errorf("indexes %d..%d, want %d..%d", first, last, wf, wl)
	}
	for _, w := range want {
		var got raft.Log
		if err := s.GetLog(w.Index, &got); err != nil {
			return fmt.Errorf("GetLog(%d): %w", w.Index, err)
		}
		if err := entryMatch(got, w); err != nil {
			return err
		}
	}
	var l raft.Log
	if err := s.GetLog(wl+1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		return fmt.Errorf("GetLog past the end = %v, want ErrLogNotFound", err)
	}
	return nil
}

func entryMatch(got, want raft.Log) error {
	if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
		!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
		return fmt.Errorf("entry %d = %+v, want %+v", want.Index, got, want)
	}
	return nil
}

func stableMatch(s *stableStore, want map[string][]byte) error {
	s.mu.Lock()
	got := maps.Clone(s.kv)
	s.mu.Unlock()
	if !maps.EqualFunc(got, want, bytes.Equal) {
		return fmt.Errorf("keys %q, want %q", got, want)
	}
	return nil
}

// runSteps runs steps on fsys from the first, stopping at the first that
// fails. It returns the stores, the model after the last step that
// succeeded, the model had the failed step succeeded (equal when none
// failed), and the failed step's index (-1 if none). onStep is called with
// a step's index before it runs.
func runSteps(fsys vfs.FS, steps []storeStep, onStep func(int)) (s *raftStores, done, pending storeModel, failed int, err error) {
	done = newModel()
	for i, st := range steps {
		if onStep != nil {
			onStep(i)
		}
		pending = done.clone()
		st.apply(&pending)
		if err := st.run(&s, fsys); err != nil {
			return s, done, pending, i, fmt.Errorf("step %d (%s): %w", i, st.name, err)
		}
		done = pending
	}
	return s, done, done.clone(), -1, nil
}

// Crash after every step: the stores reopen with exactly what the calls so
// far returned success for.
func TestRaftStoresCrashAfterEachStep(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	model := newModel()
	var s *raftStores
	for i, st := range storeSteps() {
		if err := st.run(&s, mem); err != nil {
			t.Fatalf("step %d (%s): %v", i, st.name, err)
		}
		st.apply(&model)
		if err := verifyStores(s, mem, true, model); err != nil {
			t.Fatalf("after step %d (%s), before any crash:\n%v", i, st.name, err)
		}
		crashed := mem.Crash()
		c, err := openRaftStores(crashed, storeTestDir)
		if err != nil {
			t.Fatalf("reopen after a crash after step %d (%s): %v", i, st.name, err)
		}
		if err := verifyStores(c, crashed, true, model); err != nil {
			t.Fatalf("after a crash after step %d (%s):\n%v", i, st.name, err)
		}
		c.close()
	}
	s.close()
}

// countOps runs the whole sequence once on a fault FS that fails nothing
// and returns how many operations it made.
func countOps(t *testing.T) int {
	t.Helper()
	n := 0
	fsys := vfs.NewFault(vfs.NewMem(), func(vfs.Op, string) error { n++; return nil })
	s, _, _, _, err := runSteps(fsys, storeSteps(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.close()
	return n
}

// A crash before every filesystem operation of the sequence: the step in
// flight is there whole or not at all; every step before it is there.
func TestRaftStoresCrashAtEveryOp(t *testing.T) {
	t.Parallel()
	total := countOps(t)
	steps := storeSteps()
	for k := 1; k <= total; k++ {
		mem := vfs.NewMem()
		var (
			crashed *vfs.MemFS
			op      string
			n       int
		)
		fsys := vfs.NewFault(mem, func(o vfs.Op, path string) error {
			if n++; n == k {
				crashed, op = mem.Crash(), fmt.Sprintf("%v %s", o, path)
			}
			return nil
		})
		step := 0 // the step in flight at the crash
		s, _, _, _, err := runSteps(fsys, steps, func(i int) {
			if crashed == nil {
				step = i
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		s.close()
		if crashed == nil {
			t.Fatalf("op %d of %d never came", k, total)
		}
		before, after := newModel(), newModel()
		for i := 0; i <= step; i++ {
			before = after.clone()
			steps[i].apply(&after)
		}
		c, err := openRaftStores(crashed, storeTestDir)
		if err != nil {
			t.Fatalf("crash before op %d (%s) in step %d (%s): reopen: %v", k, op, step, steps[step].name, err)
		}
		if err := verifyStores(c, crashed, false, before, after); err != nil {
			t.Fatalf("crash before op %d (%s) in step %d (%s):\n%v", k, op, step, steps[step].name, err)
		}
		c.close()
	}
}

// Each filesystem operation of the sequence fails in turn (a plain error,
// or a short write for writes): the failing call returns an error, and
// both a process restart (the files as they are) and a power cut (what was
// synced) reopen with every successful call's effect and the failed one
// whole or not at all.
func TestRaftStoresFaultAtEveryOp(t *testing.T) {
	t.Parallel()
	total := countOps(t)
	for _, short := range []bool{false, true} {
		for k := 1; k <= total; k++ {
			mem := vfs.NewMem()
			n := 0
			var failedOp string
			fsys := vfs.NewFault(mem, func(o vfs.Op, path string) error {
				if n++; n != k {
					return nil
				}
				failedOp = fmt.Sprintf("%v %s", o, path)
				if short && o == vfs.OpWrite {
					return &vfs.ShortWrite{N: 7}
				}
				return vfs.ErrInjected
			})
			s, done, pending, failed, err := runSteps(fsys, storeSteps(), nil)
			s.close()
			if failed >= 0 && !errors.Is(err, vfs.ErrInjected) && !errors.Is(err, io.ErrShortWrite) {
				t.Fatalf("op %d (%s) failed; the step's error does not say so: %v", k, failedOp, err)
			}
			what := fmt.Sprintf("op %d (%s) failing, short=%v, step %d", k, failedOp, short, failed)
			crashed := mem.Crash()
			// Process restart: every byte written is still there.
			live, err := openRaftStores(mem, storeTestDir)
			if err != nil {
				t.Fatalf("%s: reopen: %v", what, err)
			}
			if err := verifyStores(live, mem, false, done, pending); err != nil {
				t.Fatalf("%s: after a restart:\n%v", what, err)
			}
			live.close()
			// Power cut: only what was synced.
			c, err := openRaftStores(crashed, storeTestDir)
			if err != nil {
				t.Fatalf("%s: reopen after a crash: %v", what, err)
			}
			if err := verifyStores(c, crashed, false, done, pending); err != nil {
				t.Fatalf("%s: after a crash:\n%v", what, err)
			}
			c.close()
		}
	}
}
