package crashtest

// TestCrashSegmentRolls: TestCrash's load and checks with 1 MiB segments
// (log.segment.bytes, the least the broker accepts), so that kills land
// next to segment rolls, and kills inside a clean shutdown, where the
// checkpoints are written. The recovery checkpoint has no config to shorten
// it (log.flush.offset.checkpoint.interval.ms is not a broker config: the
// broker writes it every minute, internal/broker.checkpointInterval), so
// kills next to the periodic write cost a minute of idling each:
// CRASH_CHECKPOINT_ROUNDS of them run, none by default (`make crash` runs
// some).

import (
	"context"
	"crypto/rand"
	"fmt"
	"github.com/sluice-io/sluice/internal/freeport"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// rollSegmentBytes is log.segment.bytes in TestCrashSegmentRolls.
	rollSegmentBytes = 1 << 20
	// rollPad is the filler sent with each record, so that the load
	// (a few thousand records a round) fills a segment every round or two.
	rollPad = 512
	// defaultRollRounds is how many kills TestCrashSegmentRolls does;
	// CRASH_ROLL_ROUNDS overrides it.
	defaultRollRounds = 6
	// nearRollBytes: a kill landed at a roll when a partition's newest
	// segment held less than this (a few milliseconds of the load).
	nearRollBytes = 64 << 10
	// rollWait bounds how long a kill at a roll waits for one.
	rollWait = 5 * time.Second
	// aimDelay bounds the SIGKILL's delay after what a kill plan aims at.
	aimDelay = 2 * time.Millisecond
	// rollAfter bounds the delay of a kill after a new segment appears:
	// the load writes a few KiB to a few tens of KiB to it meanwhile.
	rollAfter = 30 * time.Millisecond
	// pollEvery is how often a kill plan looks at the data directory.
	pollEvery = 500 * time.Microsecond
	// shutdownKillMax bounds the SIGKILL's delay after a SIGTERM when it
	// is not aimed at a checkpoint write: a clean shutdown under this load
	// took 13-28 ms here, its recovery checkpoint written 8-60 ms after the
	// SIGTERM.
	shutdownKillMax = 15 * time.Millisecond
	// checkpointTick is the broker's recovery checkpoint interval
	// (log.flush.offset.checkpoint.interval.ms, fixed at Kafka's default);
	// the ticker starts when the broker opens.
	checkpointTick = time.Minute
	// tickLead is how long before the first checkpoint tick a checkpoint
	// round starts producing.
	tickLead = 1500 * time.Millisecond

	recoveryCheckpoint = "recovery-point-offset-checkpoint"
	cleanShutdownFile  = ".kafka_cleanshutdown"
)

func TestCrashSegmentRolls(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and kills a real broker; skipped under -short")
	}
	rounds := txnEnvInt(t, "CRASH_ROLL_ROUNDS", defaultRollRounds)
	tickRounds := txnEnvInt(t, "CRASH_CHECKPOINT_ROUNDS", 0)
	if rounds+tickRounds < 1 {
		t.Fatal("CRASH_ROLL_ROUNDS and CRASH_CHECKPOINT_ROUNDS are both 0: nothing to do")
	}
	budget := 3*time.Minute + time.Duration(rounds)*roundBudget + time.Duration(tickRounds)*(checkpointTick+roundBudget)
	if dl, ok := t.Deadline(); ok {
		budget = min(budget, time.Until(dl)-15*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()

	dir := t.TempDir()
	bin := buildSluice(ctx, t, dir)
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "broker.log")
	args := []string{"-c", "log.segment.bytes=" + strconv.Itoa(rollSegmentBytes)}
	pad := make([]byte, rollPad)
	rand.Read(pad)

	ackedAt := map[string]acked{}
	var seq [producers]int64
	var (
		nearRoll   int      // kills that left a partition's newest segment under nearRollBytes
		inShutdown int      // kills inside a clean shutdown
		clean      int      // SIGTERMs that finished before their SIGKILL
		atTick     int      // kills next to a periodic checkpoint write
		kinds      []string // each round's plan, for the summary
	)
	start := time.Now()
	total := rounds + tickRounds
	for round := 0; round < total; round++ {
		if ctx.Err() != nil {
			t.Fatalf("round %d: test budget of %v used up", round, budget)
		}
		b := startBrokerAt(ctx, t, bin, dataDir, logPath, round, freeport.ForTest(t, "127.0.0.1"), args...)
		opened := time.Now()
		if round == 0 {
			createTopic(ctx, t, b)
		} else {
			verify(ctx, t, b, ackedAt, round)
		}
		var plan killPlan
		kind := ""
		switch {
		case round >= rounds:
			kind, plan = "checkpoint", killAtCheckpointTick(dataDir, opened, round%2 == 0)
			idle := time.Until(opened.Add(checkpointTick - tickLead))
			t.Logf("round %d: idling %v until just before the broker's first recovery checkpoint", round, idle.Round(time.Second))
			select {
			case <-time.After(idle):
			case <-ctx.Done():
				t.Fatalf("round %d: test budget of %v used up", round, budget)
			}
		case round%3 == 0:
			kind, plan = "random", killAtRandom
		case round%3 == 1:
			kind, plan = "roll", killAtRoll(partitionDirs(dataDir, topic, partitions), round%2 == 0)
		default:
			kind, plan = "shutdown", killInShutdown(dataDir, round%2 == 0)
		}
		n := produceUntilDead(ctx, t, b, round, &seq, ackedAt, pad, plan)
		active := newestSegmentBytes(t, dataDir, topic, partitions)
		why := lastMarker(logPath)
		if kind == "roll" && !strings.Contains(why, "nothing to aim at") || kind != "shutdown" && slices.Min(active) < nearRollBytes {
			nearRoll++
		}
		switch {
		case strings.Contains(why, "exited cleanly"):
			clean++
		case kind == "shutdown":
			inShutdown++
		case kind == "checkpoint" && strings.Contains(why, "checkpoint"):
			atTick++
		}
		kinds = append(kinds, kind)
		if testing.Verbose() {
			t.Logf("round %d (%s): %d records acknowledged (%d in all); newest segments hold %v bytes; %s",
				round, kind, n, len(ackedAt), active, why)
		}
	}
	b := startBrokerAt(ctx, t, bin, dataDir, logPath, total, freeport.ForTest(t, "127.0.0.1"), args...)
	held := verify(ctx, t, b, ackedAt, total)
	if err := b.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: broker did not exit cleanly: %v\n%s", err, tail(logPath))
	}
	segs := 0
	for _, d := range partitionDirs(dataDir, topic, partitions) {
		segs += len(segmentBases(d))
	}
	t.Logf("%d rounds (%v) in %v: %d records acknowledged, all found at their offsets (%d in the log, %d segments of %d bytes); %d kills at a roll or within %d bytes after one, %d inside a shutdown, %d shutdowns finished first, %d next to a periodic checkpoint",
		total, kinds, time.Since(start).Round(time.Millisecond), len(ackedAt), held, segs, rollSegmentBytes,
		nearRoll, nearRollBytes, inShutdown, clean, atTick)
	if segs <= 2*partitions {
		t.Errorf("the partitions hold %d segments in all after %d rounds: the load did not roll them, so no kill landed near a roll", segs, total)
	}
	if rounds >= 3 && nearRoll == 0 {
		t.Errorf("no kill of %d landed at a segment roll or within %d bytes after one", total, nearRollBytes)
	}
	if rounds >= 3 && inShutdown == 0 {
		t.Errorf("no kill of %d landed inside a clean shutdown", total)
	}
}

// partitionDirs are the directories of topic's partitions under dataDir.
func partitionDirs(dataDir, topic string, parts int32) []string {
	var dirs []string
	for p := int32(0); p < parts; p++ {
		dirs = append(dirs, filepath.Join(dataDir, fmt.Sprintf("%s-%d", topic, p)))
	}
	return dirs
}

// segmentBases lists the base offsets of dir's segments, in order.
func segmentBases(dir string) []int64 {
	ents, _ := os.ReadDir(dir)
	var bases []int64
	for _, e := range ents {
		name := e.Name()
		if len(name) != 24 || !strings.HasSuffix(name, ".log") {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSuffix(name, ".log"), 10, 64); err == nil {
			bases = append(bases, n)
		}
	}
	slices.Sort(bases)
	return bases
}

// newestSegmentBytes is the size of each partition's newest segment.
func newestSegmentBytes(t *testing.T, dataDir, topic string, parts int32) []int64 {
	t.Helper()
	var out []int64
	for _, d := range partitionDirs(dataDir, topic, parts) {
		bases := segmentBases(d)
		if len(bases) == 0 {
			t.Fatalf("%s holds no segment", d)
		}
		st, err := os.Stat(filepath.Join(d, fmt.Sprintf("%020d.log", bases[len(bases)-1])))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, st.Size())
	}
	return out
}

// killWhen lets the load run killMin..killMax, then calls watch and polls
// the condition it returns every pollEvery until it holds or limit passes,
// then SIGKILLs b after a random delay in [after[0], after[1]). It returns
// what the condition said, or that it never held.
func killWhen(ctx context.Context, t *testing.T, b *broker, round int, limit time.Duration, after [2]time.Duration, watch func() func() (string, bool)) string {
	t.Helper()
	select {
	case <-time.After(killMin + mrand.N(killMax-killMin)):
	case <-b.done:
		t.Fatalf("round %d: broker exited by itself while producing (%v)\n%s", round, b.err, tail(b.log))
	}
	cond := watch()
	deadline := time.Now().Add(limit)
	why := fmt.Sprintf("nothing to aim at within %v", limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if w, ok := cond(); ok {
			why = w
			break
		}
		select {
		case <-b.done:
			t.Fatalf("round %d: broker exited by itself while producing (%v)\n%s", round, b.err, tail(b.log))
		case <-time.After(pollEvery):
		}
	}
	delay := after[0] + time.Duration(mrand.N(int64(after[1]-after[0])))
	time.Sleep(delay)
	if err := b.stop(syscall.SIGKILL); err != nil {
		t.Fatalf("round %d: SIGKILL: %v", round, err)
	}
	return fmt.Sprintf("SIGKILL %v after %s", delay.Round(10*time.Microsecond), why)
}

// killAtRoll SIGKILLs the broker at a roll of one of dirs (after
// killWhen's warm-up): 0..aimDelay after the full segment's indexes are
// being written, which a roll does first (an index file, or a temporary
// one, that was not there before), when early; else aimDelay..rollAfter
// after the new segment is there, so that its first batches are there too.
func killAtRoll(dirs []string, early bool) killPlan {
	return func(ctx context.Context, t *testing.T, b *broker, round int) string {
		t.Helper()
		after := [2]time.Duration{aimDelay, rollAfter}
		if early {
			after = [2]time.Duration{0, aimDelay}
		}
		return killWhen(ctx, t, b, round, rollWait, after, func() func() (string, bool) {
			newest := map[string]int64{}
			had := map[string]bool{}
			for _, d := range dirs {
				if bs := segmentBases(d); len(bs) > 0 {
					newest[d] = bs[len(bs)-1]
				}
				for _, n := range indexFiles(d) {
					had[filepath.Join(d, n)] = true
				}
			}
			return func() (string, bool) {
				for _, d := range dirs {
					if early {
						for _, n := range indexFiles(d) {
							if !had[filepath.Join(d, n)] {
								return fmt.Sprintf("%s wrote %s", filepath.Base(d), n), true
							}
						}
						continue
					}
					bs := segmentBases(d)
					if len(bs) > 0 && bs[len(bs)-1] > newest[d] {
						return fmt.Sprintf("%s rolled to segment %d", filepath.Base(d), bs[len(bs)-1]), true
					}
				}
				return "", false
			}
		})
	}
}

// indexFiles lists dir's offset and time index files and temporary files.
func indexFiles(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".index") || strings.HasSuffix(n, ".timeindex") || strings.HasSuffix(n, ".tmp") {
			out = append(out, n)
		}
	}
	return out
}

// fileStamp identifies one version of a file written whole (by rename).
type fileStamp struct {
	ino   uint64
	mtime time.Time
	size  int64
}

func stampOf(path string) (fileStamp, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	var ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	return fileStamp{ino, st.ModTime(), st.Size()}, true
}

// changed returns a cond that holds once the file at path differs from
// what it was when changed was called (written, replaced or created).
func changed(path string) func() (string, bool) {
	was, existed := stampOf(path)
	return func() (string, bool) {
		now, exists := stampOf(path)
		if exists && (!existed || now != was) {
			return filepath.Base(path) + " written", true
		}
		return "", false
	}
}

// killInShutdown sends SIGTERM killMin..killMax after it is called, then
// SIGKILL while the broker closes: at
// the moment the recovery checkpoint is written (aim), or after a random
// 0-shutdownKillMax. A broker that finishes first has shut down cleanly,
// and must say so by its exit status.
func killInShutdown(dataDir string, aim bool) killPlan {
	return func(ctx context.Context, t *testing.T, b *broker, round int) string {
		t.Helper()
		select {
		case <-time.After(killMin + mrand.N(killMax-killMin)):
		case <-b.done:
			t.Fatalf("round %d: broker exited by itself while producing (%v)\n%s", round, b.err, tail(b.log))
		}
		cond := changed(filepath.Join(dataDir, recoveryCheckpoint))
		sent := time.Now()
		if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("round %d: SIGTERM: %v", round, err)
		}
		delay := time.Duration(mrand.N(int64(shutdownKillMax)))
		why := fmt.Sprintf("%v after SIGTERM", delay.Round(10*time.Microsecond))
		deadline := sent.Add(delay)
		if aim {
			deadline = sent.Add(exitTimeout)
			why = "no checkpoint written"
		}
		for time.Now().Before(deadline) {
			if aim {
				if w, ok := cond(); ok {
					why = fmt.Sprintf("%s %v after SIGTERM", w, time.Since(sent).Round(10*time.Microsecond))
					break
				}
			}
			select {
			case <-b.done:
				if b.err != nil {
					t.Fatalf("round %d: broker's clean shutdown failed: %v\n%s", round, b.err, tail(b.log))
				}
				return fmt.Sprintf("SIGTERM: exited cleanly after %v", time.Since(sent).Round(10*time.Microsecond))
			case <-time.After(pollEvery):
			}
		}
		select {
		case <-b.done:
			if b.err != nil {
				t.Fatalf("round %d: broker's clean shutdown failed: %v\n%s", round, b.err, tail(b.log))
			}
			return fmt.Sprintf("SIGTERM: exited cleanly after %v", time.Since(sent).Round(10*time.Microsecond))
		default:
		}
		if err := b.stop(syscall.SIGKILL); err != nil && !strings.Contains(err.Error(), "already exited") {
			t.Fatalf("round %d: SIGKILL: %v", round, err)
		}
		return "SIGTERM, then SIGKILL: " + why
	}
}

// killAtCheckpointTick SIGKILLs the broker, opened at opened, next to its
// first periodic recovery checkpoint write: the moment the file changes
// (aim), or at a random moment within 300 ms of the tick.
func killAtCheckpointTick(dataDir string, opened time.Time, aim bool) killPlan {
	return func(ctx context.Context, t *testing.T, b *broker, round int) string {
		t.Helper()
		tick := opened.Add(checkpointTick)
		if !aim {
			at := tick.Add(time.Duration(mrand.N(int64(600*time.Millisecond))) - 300*time.Millisecond)
			select {
			case <-time.After(time.Until(at)):
			case <-b.done:
				t.Fatalf("round %d: broker exited by itself while producing (%v)\n%s", round, b.err, tail(b.log))
			}
			if err := b.stop(syscall.SIGKILL); err != nil {
				t.Fatalf("round %d: SIGKILL: %v", round, err)
			}
			return fmt.Sprintf("SIGKILL %v from the first checkpoint tick", time.Since(tick).Round(time.Millisecond))
		}
		return killWhen(ctx, t, b, round, time.Until(tick)+5*time.Second, [2]time.Duration{0, aimDelay}, func() func() (string, bool) {
			return changed(filepath.Join(dataDir, recoveryCheckpoint))
		})
	}
}

// lastMarker is the last "==== round" line of the broker log.
func lastMarker(logPath string) string {
	data, _ := os.ReadFile(logPath)
	s := strings.TrimRight(string(data), "\n")
	i := strings.LastIndex(s, "==== round ")
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(s[i:], "\n")
	return strings.Trim(line, "= ")
}
