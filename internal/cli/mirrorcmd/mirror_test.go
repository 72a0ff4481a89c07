package mirrorcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/mirror"
)

func TestHelpTeaches(t *testing.T) {
	var out bytes.Buffer
	cmd := Command()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--from", "--to", "--topics", "--topic-prefix", "--group", "--listen", "at least once",
		"sluice-mirror-source", "SAME", "sluice mirror status", "--max-in-flight-bytes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not say %q", want)
		}
	}
}

func TestMissingFlags(t *testing.T) {
	err := Run(context.Background(), Options{To: []string{"b:9092"}})
	if err == nil || !strings.Contains(err.Error(), "--from") || !strings.Contains(err.Error(), "--topics") || strings.Contains(err.Error(), "--to ") {
		t.Fatalf("Run without --from and --topics: %v", err)
	}
	cmd := Command()
	cmd.SetArgs([]string{"stauts"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err == nil {
		t.Fatal("an unknown subcommand runs")
	}
}

// metric reads one series from a /metrics page.
func metric(t *testing.T, addr, series string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// The command mirrors, serves /metrics, stops on its context; status
// shows both ends and the lag.
func TestRunMetricsStatus(t *testing.T) {
	static := map[string]string{"group.initial.rebalance.delay.ms": "0"}
	a, b := clitest.Start(t, static).Addr, clitest.Start(t, static).Addr
	cl, err := kgo.NewClient(kgo.SeedBrokers(a), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(clitest.Ctx(t), 2, -1, nil, "logs"); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 30 {
		recs = append(recs, &kgo.Record{Topic: "logs", Partition: int32(i % 2), Value: []byte(fmt.Sprint(i))})
	}
	if err := cl.ProduceSync(clitest.Ctx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan string, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- Run(ctx, Options{From: []string{a}, To: []string{b}, Topics: "logs", TopicPrefix: "a.", Listen: "127.0.0.1:0",
			Group: mirror.DefaultGroup, LogLevel: "info", Err: &logs, Started: func(addr string) { started <- addr }})
	}()
	var addr string
	select {
	case addr = <-started:
	case err := <-done:
		t.Fatalf("Run: %v\n%s", err, logs.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, addr, `sluice_mirror_records_total{topic="logs"}`) != "30" {
		if time.Now().After(deadline) {
			t.Fatalf("30 records not copied in 30 s:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, series := range []string{`sluice_mirror_lag_records{partition="1",topic="logs"}`,
		`sluice_mirror_seconds_behind{partition="1",topic="logs"}`, `sluice_mirror_in_flight_bytes`} {
		if v := metric(t, addr, series); v != "0" {
			t.Fatalf("%s: %q, want 0 once all is copied", series, v)
		}
	}
	if v := metric(t, addr, `sluice_mirror_bytes_total{topic="logs"}`); v == "" || v == "0" {
		t.Fatalf("bytes copied of logs: %q", v)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after its stop: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "source offsets committed") {
		t.Fatalf("no clean-stop line in the log:\n%s", logs.String())
	}

	// The stop committed everything: the lag is 0 on both partitions.
	var out bytes.Buffer
	err = RunStatus(context.Background(), StatusOptions{From: []string{a}, To: []string{b}, Topics: "logs", TopicPrefix: "a.",
		Group: mirror.DefaultGroup, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	want := "TOPIC  TARGET TOPIC  PARTITION  SOURCE END  TARGET END  COMMITTED  LAG\n" +
		"logs   a.logs        0          15          15          15         0\n" +
		"logs   a.logs        1          15          15          15         0\n"
	if out.String() != want {
		t.Fatalf("status:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	if err := RunStatus(context.Background(), StatusOptions{From: []string{a}, To: []string{b}, Topics: "logs",
		Group: "nobody", Output: "json", Out: &out}); err != nil {
		t.Fatal(err)
	}
	var st []mirror.PartitionStatus
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || len(st) != 2 || st[0].TargetEnd != -1 || st[0].Lag != 15 {
		t.Fatalf("status -o json of an unmirrored name and group: %v %+v\n%s", err, st, out.String())
	}
}
