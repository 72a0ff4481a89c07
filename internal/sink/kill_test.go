package sink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluice-io/sluice/internal/cli/sinkcmd"
)

const childArgsEnv = "SLUICE_SINK_TEST_CHILD_ARGS"

// TestSinkProcess is `sluice sink` with the arguments in childArgsEnv (a
// JSON list); it runs only as the child of TestKillNine.
func TestSinkProcess(t *testing.T) {
	js := os.Getenv(childArgsEnv)
	if js == "" {
		t.Skip("the child process of TestKillNine")
	}
	var args []string
	if err := json.Unmarshal([]byte(js), &args); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cmd := sinkcmd.Command()
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestKillNine runs `sluice sink` as a process with small files (many
// objects) while records are produced, SIGKILLs it at random moments and
// starts it again; at each kill the group's committed offsets are covered
// by the objects stored, and at the end every record is stored exactly
// once.
func TestKillNine(t *testing.T) {
	c := startCluster(t)
	const topic, partitions, n = "kill", 3, 12000
	c.create(t, topic, partitions)
	root := t.TempDir()
	args, _ := json.Marshal([]string{"--brokers", c.addr, "--topics", topic, "--group", "gk", "--instance-id", "sink-1",
		"--session-timeout", "6s", "--to", "file://" + root, "--format", "jsonl", "--partition-by", testTemplate,
		"--roll-size", "4KiB", "--roll-time", "150ms", "--log-level", "warn"})
	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSinkProcess$", "-test.v")
		cmd.Env = append(os.Environ(), childArgsEnv+"="+string(args))
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill() // by its pid
				cmd.Wait()
			}
		})
		return cmd, out
	}
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < n; i += 200 { // a stream over the kills
			c.produce(t, topic, partitions, i, i+200)
			time.Sleep(150 * time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := range 6 {
		began := time.Now()
		cmd, out := start()
		// Until it has committed something new, then a random moment.
		before := sumAt(c.committed(t, "gk", topic))
		deadline := time.Now().Add(20 * time.Second)
		for sumAt(c.committed(t, "gk", topic)) == before {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the sink committed nothing in 20 s:\n%s", round, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		cmd.Process.Kill() // SIGKILL, by pid
		cmd.Wait()
		com := c.committed(t, "gk", topic)
		objs := readDir(t, root)
		covered(t, objs, com)
		pending := 0
		for _, o := range com {
			if o.Metadata != "" {
				pending++
			}
		}
		t.Logf("kill %d after %s: committed %d records, %d objects stored, %d partitions with a pending flush", round+1, time.Since(began).Round(time.Millisecond), sumAt(com), len(objs), pending)
	}
	<-produced
	cmd, out := start()
	c.waitCommitted(t, "gk", topic, 25*time.Second, func() string { return "\n" + out.String() })
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	check(t, readDir(t, root), topic, partitions, testTemplate, c.ends(t, topic))
}

func sumAt(m map[int32]kadm.OffsetResponse) int64 {
	var n int64
	for _, o := range m {
		n += o.At
	}
	return n
}
