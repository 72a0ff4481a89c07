package collectcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// Environment of a collector process run by TestKillDuringReplay.
const (
	childEnv        = "SLUICE_COLLECT_CHILD"
	childBrokersEnv = "SLUICE_COLLECT_CHILD_BROKERS"
	childListenEnv  = "SLUICE_COLLECT_CHILD_LISTEN"
	childConfigEnv  = "SLUICE_COLLECT_CHILD_CONFIG"
)

// TestCollectorProcess is `sluice collect` as a process for
// TestKillDuringReplay to kill; it runs only when that test starts it.
func TestCollectorProcess(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("a collector process that TestKillDuringReplay starts and kills")
	}
	err := Run(context.Background(), Options{Brokers: []string{os.Getenv(childBrokersEnv)},
		Listen: os.Getenv(childListenEnv), ConfigPath: os.Getenv(childConfigEnv), LogLevel: "warn"})
	if err != nil {
		t.Fatal(err)
	}
}

// collectorProcess is a running collector process (this test binary).
type collectorProcess struct {
	cmd  *exec.Cmd
	base string
	out  *bytes.Buffer
}

func startCollectorProcess(t *testing.T, brokers, config string) *collectorProcess {
	t.Helper()
	addr := clitest.FreeAddr(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCollectorProcess$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1", childBrokersEnv+"="+brokers, childListenEnv+"="+addr,
		childConfigEnv+"="+config)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &collectorProcess{cmd: cmd, base: "http://" + addr, out: out}
	t.Cleanup(p.kill)
	deadline := time.Now().Add(time.Minute)
	for {
		res, err := http.Get(p.base + "/healthz")
		if err == nil {
			res.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector process not serving after a minute:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL to the process (by its PID) and reaps it.
func (p *collectorProcess) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

func (p *collectorProcess) metric(t *testing.T, series string) float64 {
	t.Helper()
	res, err := http.Get(p.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	sub := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if sub == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(sub[1]), 64)
	return v
}

// waitMetric waits until the process's series reaches want.
func (p *collectorProcess) waitMetric(t *testing.T, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for p.metric(t, series) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v after a minute, want %v:\n%s", series, p.metric(t, series), want, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The spool under kill -9. A collector whose cluster is unreachable takes
// events into its spool and is killed; a second on the same spool dir,
// with the cluster back, is killed while it replays; a third finishes the
// replay. Every event answered 202 is in the topic; an event is there
// twice only if it was in the replay window the kill interrupted.
func TestKillDuringReplay(t *testing.T) {
	b := clitest.Start(t, nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := clitest.Ctx(t)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	const (
		bufferBytes = 32 << 10
		requests    = 400
		perRequest  = 100
		events      = requests * perRequest
	)
	config := filepath.Join(t.TempDir(), "collect.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf(`limits: {buffer_bytes: %d, delivery_timeout: 1s}
spool: {dir: %s}
streams:
  events: {topic: events, key_field: user}
`, bufferBytes, t.TempDir())), 0o600)

	// 1: the cluster unreachable; everything ends up spooled.
	p1 := startCollectorProcess(t, clitest.DeadAddr(t), config)
	for r := range requests {
		var body strings.Builder
		for i := range perRequest {
			n := r*perRequest + i
			fmt.Fprintf(&body, `{"n":%d,"user":"u%d","page":"/some/page/of/the/shop/%d"}`+"\n", n, n%97, n)
		}
		res, err := http.Post(p1.base+"/v1/streams/events", "application/x-ndjson", strings.NewReader(body.String()))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("request %d with the cluster down: %d", r, res.StatusCode)
		}
	}
	p1.waitMetric(t, `sluice_collect_events_spooled_total{stream="events"}`, events)
	p1.kill()

	// 2: the cluster back; killed in the middle of the replay.
	endOffsets := func() int64 {
		ends, err := adm.ListEndOffsets(ctx, "events")
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		return sum
	}
	p2 := startCollectorProcess(t, b.Addr, config)
	killAt := 1 + rand.Int64N(events/2)
	var atKill int64
	for {
		if atKill = endOffsets(); atKill >= killAt {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	p2.kill()
	if atKill >= events {
		t.Fatalf("the replay finished (%d records) before the kill: make it longer", atKill)
	}

	// 3: finishes the replay.
	p3 := startCollectorProcess(t, b.Addr, config)
	p3.waitMetric(t, `sluice_collect_spool_bytes`, 0)
	total := endOffsets()
	consumer, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.ConsumeTopics("events"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	seen := make([]int, events)
	for read := int64(0); read < total; {
		fs := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", read, total)
		}
		fs.EachRecord(func(r *kgo.Record) {
			read++
			var ev struct{ N int }
			if err := json.Unmarshal(r.Value, &ev); err != nil || ev.N < 0 || ev.N >= events {
				t.Fatalf("record %q: %v", r.Value, err)
			}
			seen[ev.N]++
		})
	}
	dups := 0
	for n, c := range seen {
		if c == 0 {
			t.Fatalf("event %d answered 202 and never delivered (%d records at the kill, %d in all)", n, atKill, total)
		}
		dups += c - 1
	}
	// One replay window holds at most half the buffer, and every record
	// counts at least 64 bytes against it.
	if maxDups := bufferBytes / 2 / 64; dups > maxDups {
		t.Fatalf("%d events delivered twice, more than one replay window (%d)", dups, maxDups)
	}
	t.Logf("%d events, %d records at the kill -9, %d delivered twice", events, atKill, dups)
}
