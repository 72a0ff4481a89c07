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

	"github.com/sluice-io/sluice/internal/audit"
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
		"sluice-mirror-source", "SAME", "sluice mirror status", "--max-in-flight-bytes", "--preserve-offsets", "sluice.mirror.source",
		"IncrementalAlterConfigs", "min.insync.replicas", "aborted transactions included"} {
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

// With --preserve-offsets the copy has the source's offsets (the first
// records deleted on the source, so they differ from the target's own),
// its topic names the source cluster, and the clean stop says so.
func TestRunPreserveOffsets(t *testing.T) {
	a, b := clitest.Start(t, nil).Addr, clitest.Start(t, nil).Addr
	cl, err := kgo.NewClient(kgo.SeedBrokers(a))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(clitest.Ctx(t), 1, -1, nil, "logs"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 { // ten batches
		if err := cl.ProduceSync(clitest.Ctx(t), &kgo.Record{Topic: "logs", Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: "logs", Partition: 0, At: 4})
	if _, err := adm.DeleteRecords(clitest.Ctx(t), del); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- Run(ctx, Options{From: []string{a}, To: []string{b}, Topics: "logs", PreserveOffsets: true,
			TopicSyncInterval: 100 * time.Millisecond, Timeout: 10 * time.Second, StopTimeout: 10 * time.Second,
			LogLevel: "info", Err: &logs, Audit: true, AuditTopic: audit.DefaultCountsTopic})
	}()
	bc, err := kgo.NewClient(kgo.SeedBrokers(b), kgo.ConsumeTopics("logs"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMaxAge(200*time.Millisecond), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	var got []string
	for len(got) < 6 {
		fs := bc.PollFetches(clitest.Ctx(t))
		if clitest.Ctx(t).Err() != nil {
			t.Fatalf("copied %v:\n%s", got, logs.String())
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, fmt.Sprintf("%d=%s", r.Offset, r.Value)) })
	}
	if want := "[4=4 5=5 6=6 7=7 8=8 9=9]"; fmt.Sprint(got) != want {
		t.Fatalf("the copy holds %v, want %s", got, want)
	}
	rcs, err := kadm.NewClient(bc).DescribeTopicConfigs(clitest.Ctx(t), "logs")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("logs", nil)
	source := ""
	for _, c := range rc.Configs {
		if c.Key == mirror.MirrorSourceConfig {
			source = c.MaybeValue()
		}
	}
	if source == "" {
		t.Fatalf("no %s on the copy: %+v", mirror.MirrorSourceConfig, rc.Configs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "copied batches acknowledged") {
		t.Fatalf("no clean-stop line in the log:\n%s", logs.String())
	}
	// --audit counted the six records copied, as the topic holds them.
	r, err := audit.BuildCountReport(clitest.Ctx(t), audit.ReportOptions{Since: time.Now().Add(-time.Hour), Settle: -1, CountTopics: true,
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(a)}, opts...)...)
		}})
	if err != nil {
		t.Fatal(err)
	}
	var counted int64
	for _, w := range r.Windows {
		counted += w.Stages[audit.StageMirror].Count
	}
	if counted != 6 || r.Missing != 0 || r.Extra != 0 {
		t.Fatalf("audit report: mirror counted %d, want 6; %d missing, %d extra: %+v", counted, r.Missing, r.Extra, r.Windows)
	}
	var out bytes.Buffer
	err = RunStatus(context.Background(), StatusOptions{From: []string{a}, To: []string{b}, Topics: "logs", PreserveOffsets: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	want := "TOPIC  TARGET TOPIC  PARTITION  SOURCE END  TARGET END  COMMITTED  LAG\n" +
		"logs   logs          0          10          10          10         0\n"
	if out.String() != want {
		t.Fatalf("status:\n%s\nwant:\n%s", out.String(), want)
	}
}
