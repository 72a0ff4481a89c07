package mirror

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// streamRecords produces at least total records to topic's partitions
// (round robin), in batches of 100 with pause between them, in the
// background, and goes on until more is closed (nil: stops at total); wait
// returns the records by partition in offset order.
func streamRecords(t *testing.T, c *cluster, topic string, partitions int32, total int, pause time.Duration, more <-chan struct{}) (wait func() map[int32][]*kgo.Record) {
	t.Helper()
	out := map[int32][]*kgo.Record{}
	var wg sync.WaitGroup
	wg.Add(1)
	errc := make(chan error, 1)
	go func() {
		defer wg.Done()
		for i := 0; ; i += 100 {
			if i >= total {
				if more == nil {
					return
				}
				select {
				case <-more:
					return
				default:
				}
			}
			var recs []*kgo.Record
			for j := i; j < i+100; j++ {
				p := int32(j) % partitions
				r := &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("k%d", j)), Value: []byte(fmt.Sprintf("v%d", j))}
				recs = append(recs, r)
				out[p] = append(out[p], r)
			}
			if err := c.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				errc <- err
				return
			}
			time.Sleep(pause) // a stream, not one burst
		}
	}()
	return func() map[int32][]*kgo.Record {
		wg.Wait()
		select {
		case err := <-errc:
			t.Fatalf("produce: %v", err)
		default:
		}
		return out
	}
}

func same(a, b *kgo.Record) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value)
}

// TestMirrorCleanStopRestart stops the mirror mid-stream and starts it
// again: the target holds every record exactly once, in order.
func TestMirrorCleanStopRestart(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "stream", 3, nil)
	const total = 30000
	wait := streamRecords(t, a, "stream", 3, total, 0, nil) // a burst: much in flight at the stop
	m1, stop1 := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "stream"})
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, m1, "sluice_mirror_records_total", "topic=stream") < 3000 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	inFlight := metric(t, m1, "sluice_mirror_in_flight_bytes", "")
	if err := stop1(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	// A clean stop commits exactly what the target has.
	ends := b.ends(t, "stream")
	committed, err := a.adm.FetchOffsets(clitest.Ctx(t), DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range ends {
		if c, _ := committed.Lookup("stream", p); c.At != end {
			t.Fatalf("after a clean stop, partition %d: committed %d on the source, %d records on the target", p, c.At, end)
		}
	}
	first := sum(ends)
	t.Logf("stopped with %.0f bytes in flight", inFlight)
	start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "stream"})
	src := wait()
	got := b.read(t, "stream", total)
	t.Logf("first run copied %d of %d records; the second the rest", first, total)
	if first >= total {
		t.Logf("the first run copied everything before its stop: the restart was not mid-stream")
	}
	for p, want := range src {
		if len(got[p]) != len(want) {
			t.Fatalf("partition %d: %d records on the target, want %d", p, len(got[p]), len(want))
		}
		for i := range want {
			if !same(got[p][i], want[i]) {
				t.Fatalf("partition %d offset %d: %s, want %s", p, i, got[p][i].Value, want[i].Value)
			}
		}
	}
	if n := sum(b.ends(t, "stream")); n != total {
		t.Fatalf("%d records on the target, want %d: duplicates after a clean stop", n, total)
	}
}

const (
	// childSessionTimeout is the killed mirror's session timeout, and so
	// how long the next run waits to join the group.
	childSessionTimeout = 6 * time.Second
	childEnv            = "SLUICE_MIRROR_TEST_CHILD"
	childSourceEnv      = "SLUICE_MIRROR_TEST_SOURCE"
	childTargetEnv      = "SLUICE_MIRROR_TEST_TARGET"
)

// TestMirrorProcess is the mirror that TestMirrorCrashRestart and
// TestMirrorPreserveCrashRestart kill; it runs only as their child.
func TestMirrorProcess(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("the child process of TestMirrorCrashRestart and TestMirrorPreserveCrashRestart")
	}
	o := Options{Source: []string{os.Getenv(childSourceEnv)}, Target: []string{os.Getenv(childTargetEnv)},
		Topics: "stream", CheckpointInterval: -1, SessionTimeout: childSessionTimeout}
	if os.Getenv(childPreserveEnv) != "" {
		o.PreserveOffsets, o.SessionTimeout = true, 0
	}
	m, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil { // until SIGKILL
		t.Fatal(err)
	}
}

// mirrorChild is a TestMirrorProcess process between the brokers a and
// b; extra env (childPreserveEnv=1) chooses its mode.
type mirrorChild struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	killed bool
}

func startMirrorChild(t *testing.T, a, b *cluster, env ...string) *mirrorChild {
	t.Helper()
	c := &mirrorChild{cmd: exec.Command(os.Args[0], "-test.run=^TestMirrorProcess$", "-test.v")}
	c.cmd.Env = append(append(os.Environ(), childEnv+"=1", childSourceEnv+"="+a.addr, childTargetEnv+"="+b.addr), env...)
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.kill)
	return c
}

// kill SIGKILLs the process, by its PID, and waits for it.
func (c *mirrorChild) kill() {
	if !c.killed {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		c.killed = true
	}
}

// TestMirrorCrashRestart SIGKILLs a mirror process mid-stream and runs
// another: nothing is missing, and the only duplicates are the records the
// target acknowledged after the last commit of source offsets, copied again
// by the next run right after the first copies.
func TestMirrorCrashRestart(t *testing.T) {
	a, b := connect(t, startBroker(t)), connect(t, startBroker(t))
	a.create(t, "stream", 3, nil)
	more := make(chan struct{}) // records go on until after the restart
	wait := streamRecords(t, a, "stream", 3, 3000, 5*time.Millisecond, more)

	child := startMirrorChild(t, a, b)
	deadline := time.Now().Add(30 * time.Second)
	for {
		committed, _ := a.adm.FetchOffsets(clitest.Ctx(t), DefaultGroup)
		var c int64
		committed.Each(func(o kadm.OffsetResponse) { c += max(o.At, 0) })
		if c >= 1500 && sum(b.ends(t, "stream")) >= 2000 {
			break // a commit happened, and copying goes on
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mirror process did not copy and commit within 30 s:\n%s", child.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	child.kill()
	atKill := b.ends(t, "stream")
	t.Logf("at the kill: source ends %v, target ends %v", a.ends(t, "stream"), atKill)
	committed, err := a.adm.FetchOffsets(clitest.Ctx(t), DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}

	// The dead member stays in the group for the session timeout: the
	// next run joins once it has expired.
	m, _ := start(t, Options{Source: []string{a.addr}, Target: []string{b.addr}, Topics: "stream", SessionTimeout: childSessionTimeout})
	for metric(t, m, "sluice_mirror_records_total", "topic=stream") < 100 && time.Now().Before(deadline.Add(30*time.Second)) {
		time.Sleep(5 * time.Millisecond)
	}
	close(more)
	src := wait()
	total := 0
	for _, rs := range src {
		total += len(rs)
	}
	var dups int64
	want := 0
	commits := map[int32]int64{}
	for p, rs := range src {
		c, ok := committed.Lookup("stream", p)
		if !ok || c.At < 0 {
			t.Fatalf("partition %d: no committed offset at the kill", p)
		}
		commits[p] = c.At
		want += len(rs)
	}
	// The final count is only known once the restarted mirror is done:
	// wait for at least every record, then for the mirror's end.
	for {
		ends := b.ends(t, "stream")
		doneAll := true
		for p, rs := range src {
			// partition p must end as src[:x] ++ src[commit:], x >= commit
			if ends[p] < int64(len(rs)) || ends[p]-int64(len(rs))+commits[p] < atKill[p] {
				doneAll = false
			}
		}
		if doneAll {
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("target ends %v, source %d records, at the kill %v, committed %v", ends, want, atKill, commits)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ends := b.ends(t, "stream")
	got := b.read(t, "stream", int(sum(ends)))
	var report []string
	for p, want := range src {
		g := got[p]
		x := int64(len(g)) - (int64(len(want)) - commits[p]) // where the second run's copies begin
		if x < commits[p] {
			t.Fatalf("partition %d: %d records on the target, %d on the source: records missing", p, len(g), len(want))
		}
		for i := range x {
			if !same(g[i], want[i]) {
				t.Fatalf("partition %d: target offset %d is %s, want %s (first run)", p, i, g[i].Value, want[i].Value)
			}
		}
		for i := x; i < int64(len(g)); i++ {
			if w := want[commits[p]+i-x]; !same(g[i], w) {
				t.Fatalf("partition %d: target offset %d is %s, want %s (second run, from the committed offset %d)", p, i, g[i].Value, w.Value, commits[p])
			}
		}
		dups += x - commits[p]
		report = append(report, fmt.Sprintf("p%d: committed %d, on the target at the kill %d, copied twice %d", p, commits[p], atKill[p], x-commits[p]))
	}
	t.Logf("SIGKILL mid-stream of %d records: nothing missing, %d duplicates (%s)", total, dups, strings.Join(report, "; "))
}
