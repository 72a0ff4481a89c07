package replica

// Scenario tests: testdata/*.txt are scripts of events, each followed by
// what the leader printed after it, in the style of etcd/raft's and pebble's
// datadriven tests. A block is a command line, a "----" line and the
// expected output, ended by a blank line; lines starting with # are
// comments. `go test ./internal/replica -rewrite` rewrites the expected
// output from what the code prints (then read the diff).
//
// Commands (times are durations since the scenario's start; t= is sticky):
//
//	leader self=1 epoch=1 pepoch=1 replicas=1,2,3 isr=1,2,3 leo=0 hw=0 start=0 [lag=30s] [minisr=1] [t=0s]
//	append leo=N [t=]                  the leader's LEO after an append
//	fetch ID offset=N [t=]             a fetch from follower ID
//	tick [t=]
//	take                               hand out the proposal to send
//	commit [last] [isr=..] [pepoch=N] [epoch=N] [t=]
//	                                   the controller commits the proposal in flight
//	                                   (default: as proposed, at its partition epoch + 1);
//	                                   with last, the last one take handed out instead
//	fail [last] [t=]                   the controller refuses it without effect
//	metadata epoch=N pepoch=N replicas=.. isr=.. [t=]
//	fence ID [t=] / unfence ID [t=]    SetEligible false / true
//	produce acks=N                     CheckProduce
//	acked offset=N                     Acked
//	state                              print the state

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt scenarios")

// minScenarios is how many scenario files the package must keep.
const minScenarios = 6

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < minScenarios {
		t.Fatalf("%d scenario files in testdata, want at least %d", len(files), minScenarios)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) { runScenario(t, path) })
	}
}

// block is one command of a script and its expected output.
type block struct {
	pre  []string // comment and blank lines before the command
	cmd  string
	line int
	want []string
}

func parseScript(text string) (blocks []block, tail []string, err error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		n++
		return sc.Text(), true
	}
	var pre []string
	for {
		line, ok := next()
		if !ok {
			break
		}
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			pre = append(pre, line)
			continue
		}
		b := block{pre: pre, cmd: line, line: n}
		pre = nil
		if sep, ok := next(); !ok || sep != "----" {
			return nil, nil, fmt.Errorf("line %d: %q is not followed by ----", b.line, line)
		}
		for {
			out, ok := next()
			if !ok || out == "" {
				break
			}
			b.want = append(b.want, out)
		}
		blocks = append(blocks, b)
	}
	return blocks, pre, sc.Err()
}

func runScenario(t *testing.T, path string) {
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks, tail, err := parseScript(string(text))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	h := &harness{now: t0}
	var out strings.Builder
	for _, b := range blocks {
		got, err := h.run(b.cmd)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", path, b.line, b.cmd, err)
		}
		gotLines := strings.Split(strings.TrimRight(got, "\n"), "\n")
		if got == "" {
			gotLines = nil
		}
		if !*rewrite && strings.Join(gotLines, "\n") != strings.Join(b.want, "\n") {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, b.line, b.cmd,
				strings.Join(gotLines, "\n"), strings.Join(b.want, "\n"))
		}
		for _, l := range b.pre {
			out.WriteString(l + "\n")
		}
		out.WriteString(b.cmd + "\n----\n")
		for _, l := range gotLines {
			out.WriteString(l + "\n")
		}
		out.WriteString("\n")
	}
	for _, l := range tail {
		out.WriteString(l + "\n")
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// harness runs script commands against one Leader.
type harness struct {
	l   *Leader
	now time.Time
	// taken is the last proposal take handed out.
	taken AlterPartition
}

// args are a command's words: positional ones and key=value ones.
type args struct {
	pos []string
	kv  map[string]string
}

func parseArgs(words []string) args {
	a := args{kv: make(map[string]string)}
	for _, w := range words {
		if k, v, ok := strings.Cut(w, "="); ok {
			a.kv[k] = v
		} else {
			a.pos = append(a.pos, w)
		}
	}
	return a
}

func (a args) int64(key string, def int64) (int64, error) {
	v, ok := a.kv[key]
	if !ok {
		return def, nil
	}
	return strconv.ParseInt(v, 10, 64)
}

func (a args) int32(key string, def int32) (int32, error) {
	v, err := a.int64(key, int64(def))
	return int32(v), err
}

func (a args) ids(key string, def []int32) ([]int32, error) {
	v, ok := a.kv[key]
	if !ok {
		return def, nil
	}
	out := []int32{}
	for _, s := range strings.Split(v, ",") {
		if s == "" {
			continue
		}
		id, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return nil, err
		}
		out = append(out, int32(id))
	}
	return out, nil
}

func (a args) id() (int32, error) {
	if len(a.pos) != 1 {
		return 0, errors.New("want one replica id")
	}
	id, err := strconv.ParseInt(a.pos[0], 10, 32)
	return int32(id), err
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) run(cmd string) (string, error) {
	words := strings.Fields(cmd)
	a := parseArgs(words[1:])
	if v, ok := a.kv["t"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return "", err
		}
		h.now = at(d)
	}
	if words[0] != "leader" && h.l == nil {
		return "", errors.New("no leader yet")
	}
	var b strings.Builder
	hw := int64(0)
	if h.l != nil {
		hw = h.l.HighWatermark()
	}
	// moved reports an event's hwChanged and checks it against the HW.
	moved := func(changed bool) error {
		if changed != (h.l.HighWatermark() != hw) {
			return fmt.Errorf("hwChanged %v, but the HW went from %d to %d", changed, hw, h.l.HighWatermark())
		}
		if h.l.HighWatermark() < hw {
			return fmt.Errorf("the HW went back from %d to %d", hw, h.l.HighWatermark())
		}
		if changed {
			fmt.Fprintf(&b, "hw: %d -> %d\n", hw, h.l.HighWatermark())
		}
		return nil
	}
	report := func(err error) {
		if err != nil {
			fmt.Fprintf(&b, "error: %v\n", err)
		}
	}
	switch words[0] {
	case "leader":
		self, err1 := a.int32("self", 1)
		epoch, err2 := a.int32("epoch", 1)
		pepoch, err3 := a.int32("pepoch", 1)
		replicas, err4 := a.ids("replicas", nil)
		isr, err5 := a.ids("isr", nil)
		leo, err6 := a.int64("leo", 0)
		hw0, err7 := a.int64("hw", 0)
		start, err8 := a.int64("start", leo)
		minISR, err9 := a.int64("minisr", 0)
		var lagMax time.Duration
		var err10 error
		if v, ok := a.kv["lag"]; ok {
			lagMax, err10 = time.ParseDuration(v)
		}
		if err := firstErr(err1, err2, err3, err4, err5, err6, err7, err8, err9, err10); err != nil {
			return "", err
		}
		l, err := NewLeader(Config{ReplicaLagTimeMax: lagMax, MinInsyncReplicas: int(minISR)}, self,
			PartitionState{LeaderEpoch: epoch, PartitionEpoch: pepoch, Replicas: replicas, ISR: isr},
			LogOffsets{LogEndOffset: leo, HighWatermark: hw0, EpochStartOffset: start}, h.now)
		if err != nil {
			report(err)
			return b.String(), nil
		}
		h.l = l
	case "append":
		leo, err := a.int64("leo", -1)
		if err != nil {
			return "", err
		}
		if err := moved(h.l.LeaderAppended(leo, h.now)); err != nil {
			return "", err
		}
	case "fetch":
		id, err1 := a.id()
		offset, err2 := a.int64("offset", 0)
		if err := firstErr(err1, err2); err != nil {
			return "", err
		}
		changed, err := h.l.FollowerFetched(id, offset, h.now)
		report(err)
		if err := moved(changed); err != nil {
			return "", err
		}
	case "tick":
		if err := moved(h.l.Tick(h.now)); err != nil {
			return "", err
		}
	case "take":
		p, ok := h.l.TakeProposal()
		if !ok {
			b.WriteString("nothing to send\n")
		} else {
			h.taken = p
			fmt.Fprintf(&b, "send: %s\n", fmtProposal(p))
		}
	case "commit", "fail":
		p, ok := h.l.InFlight()
		if len(a.pos) == 1 && a.pos[0] == "last" {
			p, ok = h.taken, true
		}
		if !ok {
			return "", errors.New("no proposal in flight")
		}
		var changed bool
		var err error
		if words[0] == "fail" {
			changed, err = h.l.Failed(p, h.now)
		} else {
			isr, err1 := a.ids("isr", p.ISR)
			pepoch, err2 := a.int32("pepoch", p.PartitionEpoch+1)
			epoch, err3 := a.int32("epoch", h.l.LeaderEpoch())
			if err := firstErr(err1, err2, err3); err != nil {
				return "", err
			}
			changed, err = h.l.Committed(p, LeaderAndISR{LeaderEpoch: epoch, PartitionEpoch: pepoch, ISR: isr}, h.now)
		}
		report(err)
		if err := moved(changed); err != nil {
			return "", err
		}
	case "metadata":
		epoch, err1 := a.int32("epoch", h.l.LeaderEpoch())
		pepoch, err2 := a.int32("pepoch", h.l.PartitionEpoch())
		replicas, err3 := a.ids("replicas", h.l.Replicas())
		isr, err4 := a.ids("isr", h.l.ISR())
		if err := firstErr(err1, err2, err3, err4); err != nil {
			return "", err
		}
		changed, err := h.l.MakeLeader(PartitionState{LeaderEpoch: epoch, PartitionEpoch: pepoch, Replicas: replicas, ISR: isr}, h.now)
		report(err)
		if err := moved(changed); err != nil {
			return "", err
		}
	case "fence", "unfence":
		id, err := a.id()
		if err != nil {
			return "", err
		}
		if err := moved(h.l.SetEligible(id, words[0] == "unfence", h.now)); err != nil {
			return "", err
		}
	case "produce":
		acks, err := a.int64("acks", -1)
		if err != nil {
			return "", err
		}
		if err := h.l.CheckProduce(int16(acks)); err != nil {
			report(err)
		} else {
			b.WriteString("ok\n")
		}
		return b.String(), nil
	case "acked":
		offset, err := a.int64("offset", -1)
		if err != nil {
			return "", err
		}
		done, err := h.l.Acked(offset)
		switch {
		case err != nil:
			fmt.Fprintf(&b, "done: %v\n", err)
		case done:
			b.WriteString("done\n")
		default:
			b.WriteString("waiting\n")
		}
		return b.String(), nil
	case "state":
	default:
		return "", fmt.Errorf("unknown command %q", words[0])
	}
	b.WriteString(h.state())
	return b.String(), nil
}

func fmtIDs(ids []int32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ",")
}

func fmtProposal(p AlterPartition) string {
	verb := "shrink"
	if p.Expand {
		verb = "expand"
	}
	return fmt.Sprintf("%s %s isr=%s epoch=%d pepoch=%d", verb, fmtIDs(p.Changed), fmtIDs(p.ISR), p.LeaderEpoch, p.PartitionEpoch)
}

// state prints the leader: offsets and epochs, the ISR, the proposal in
// flight, then one line per follower.
func (h *harness) state() string {
	l := h.l
	var b strings.Builder
	fmt.Fprintf(&b, "hw=%d leo=%d epoch=%d pepoch=%d start=%d isr=%s maximal=%s",
		l.HighWatermark(), l.LogEndOffset(), l.LeaderEpoch(), l.PartitionEpoch(), l.EpochStartOffset(),
		fmtIDs(l.ISR()), fmtIDs(l.MaximalISR()))
	if l.UnderMinISR() {
		b.WriteString(" under-min-isr")
	}
	b.WriteString("\n")
	if p, ok := l.InFlight(); ok {
		sent := "unsent"
		if l.sent {
			sent = "sent"
		}
		fmt.Fprintf(&b, "inflight: %s (%s)\n", fmtProposal(p), sent)
	}
	for _, f := range l.Followers() {
		fmt.Fprintf(&b, "  %d: leo=%d lag=%d caughtup=%s fetched=%s", f.ID, f.LogEndOffset, f.Lag,
			fmtTime(f.LastCaughtUpTime), fmtTime(f.LastFetchTime))
		if f.InSync {
			b.WriteString(" in-isr")
		}
		if !f.Eligible {
			b.WriteString(" fenced")
		}
		b.WriteString("\n")
	}
	return b.String()
}
