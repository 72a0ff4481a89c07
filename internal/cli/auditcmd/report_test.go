package auditcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/cli/collectcmd"
	"github.com/sluice-io/sluice/internal/cli/mirrorcmd"
)

// reportJSON is what -o json prints.
type reportJSON struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
	audit.CountReport
}

// totals sums each stage's counts over the windows of the report.
func (r reportJSON) totals() map[string]audit.StageCount {
	out := map[string]audit.StageCount{}
	for _, w := range r.Windows {
		for s, c := range w.Stages {
			t := out[s]
			t.Count += c.Count
			t.Raw += c.Raw
			t.Instances = max(t.Instances, c.Instances)
			out[s] = t
		}
	}
	return out
}

// runReport runs `sluice audit report --settle 0 -o json [--expect ...]`
// against addr.
func runReport(t *testing.T, addr string, expect ...string) (reportJSON, error) {
	t.Helper()
	c, bufs := clitest.Common(addr, nil)
	err := Report(clitest.Ctx(t), ReportOptions{Common: c, CountsTopic: audit.DefaultCountsTopic, Since: time.Hour, CountTopics: true, Output: "json",
		Expect: expect})
	var out reportJSON
	if jerr := json.Unmarshal(bufs.Out.Bytes(), &out); jerr != nil {
		t.Fatalf("report: %v, %v\n%s%s", err, jerr, bufs.Out, bufs.Err)
	}
	return out, err
}

// collectEvents runs `sluice collect --audit` against addr, posts n events
// to the events stream, and stops it (which flushes the events and the
// counts).
func collectEvents(t *testing.T, addr string, n int) {
	t.Helper()
	ctx := clitest.Ctx(t)
	path := filepath.Join(t.TempDir(), "collect.yaml")
	if err := os.WriteFile(path, []byte("streams:\n  events: {topic: events}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := clitest.FreeAddr(t)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- collectcmd.Run(runCtx, collectcmd.Options{Brokers: []string{addr}, Listen: listen, ConfigPath: path, LogLevel: "error",
			Audit: true, AuditTopic: audit.DefaultCountsTopic})
	}()
	clitest.WaitReady(t, ctx, "http://"+listen+"/readyz", done)
	const perRequest = 50
	for sent := 0; sent < n; sent += perRequest {
		var body strings.Builder
		for i := sent; i < min(n, sent+perRequest); i++ {
			fmt.Fprintf(&body, "{\"user\":\"u%d\",\"i\":%d}\n", i%7, i)
		}
		res, err := http.Post("http://"+listen+"/v1/streams/events", "application/x-ndjson", strings.NewReader(body.String()))
		if err != nil || res.StatusCode != http.StatusAccepted {
			t.Fatalf("post: %v %v", res, err)
		}
		res.Body.Close()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("collect: %v", err)
	}
}

// endSum is the sum of topic's end offsets on addr.
func endSum(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(clitest.Ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(l kadm.ListedOffset) {
		if l.Err == nil {
			n += l.Offset
		}
	})
	return n
}

// mirrorAll runs `sluice mirror --audit` from a to b with group until b's
// copy of events has want records, then stops it.
func mirrorAll(t *testing.T, a, b, group string, want int64) {
	t.Helper()
	ctx := clitest.Ctx(t)
	bcl, err := kgo.NewClient(kgo.SeedBrokers(b))
	if err != nil {
		t.Fatal(err)
	}
	defer bcl.Close()
	badm := kadm.NewClient(bcl)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- mirrorcmd.Run(runCtx, mirrorcmd.Options{From: []string{a}, To: []string{b}, Topics: "events", Group: group,
			TopicSyncInterval: time.Second, CommitInterval: 100 * time.Millisecond, StopTimeout: 10 * time.Second, Timeout: 5 * time.Second,
			SessionTimeout: 6 * time.Second, LogLevel: "error", Audit: true, AuditTopic: audit.DefaultCountsTopic})
	}()
	for endSum(t, badm, "events") < want {
		select {
		case err := <-done:
			t.Fatalf("mirror returned: %v", err)
		case <-ctx.Done():
			t.Fatalf("the target has %d of %d records", endSum(t, badm, "events"), want)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("mirror: %v", err)
	}
}

// The pipeline for real: sluice collect --audit -> a topic on broker A ->
// sluice mirror --audit -> broker B. The report sees every stage equal;
// a second mirror run over the same source offsets is deduplicated;
// events collected and never mirrored are missing at the mirror; records
// deleted from the topic are missing at the topic stage; both exit with
// ErrRecordsMissing.
func TestReportPipeline(t *testing.T) {
	static := map[string]string{"group.initial.rebalance.delay.ms": "0"}
	a, b := clitest.Start(t, static).Addr, clitest.Start(t, static).Addr
	acl, err := kgo.NewClient(kgo.SeedBrokers(a))
	if err != nil {
		t.Fatal(err)
	}
	defer acl.Close()
	aadm := kadm.NewClient(acl)
	if _, err := aadm.CreateTopic(clitest.Ctx(t), 2, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	const n = 300
	collectEvents(t, a, n)
	// No mirror has run: without --expect only collect and topic compare
	// (equal); with --expect mirror, every record is missing there.
	if r, err := runReport(t, a); err != nil || !r.OK || !equalStages(r.Stages, audit.StageCollect, audit.StageTopic) {
		t.Fatalf("before the mirror: %v\n%+v", err, r)
	}
	if r, err := runReport(t, a, audit.StageMirror); !errors.Is(err, ErrRecordsMissing) || r.Missing != n {
		t.Fatalf("before the mirror, expecting it: %v\n%+v", err, r)
	}
	mirrorAll(t, a, b, "mirror-1", n)

	r, err := runReport(t, a)
	if err != nil || !r.OK || r.Missing != 0 || r.Extra != 0 || len(r.Windows) == 0 {
		t.Fatalf("after collect and mirror: %v\n%+v", err, r)
	}
	if !equalStages(r.Stages, audit.StageCollect, audit.StageTopic, audit.StageMirror) {
		t.Fatalf("stages %v", r.Stages)
	}
	tot := r.totals()
	for _, s := range r.Stages {
		if tot[s].Count != n || tot[s].Raw != n {
			t.Errorf("%s: %+v, want %d", s, tot[s], n)
		}
	}

	// The mirror again, as a new group from the start: every source
	// offset copied twice, counted once.
	mirrorAll(t, a, b, "mirror-2", 2*n)
	r, err = runReport(t, a)
	if err != nil || !r.OK || r.Missing != 0 || r.Extra != 0 {
		t.Fatalf("after a second mirror run: %v\n%+v", err, r)
	}
	if m := r.totals()[audit.StageMirror]; m.Count != n || m.Raw != 2*n || m.Instances != 2 {
		t.Fatalf("mirror after two runs: %+v", m)
	}

	// Collected, not mirrored (the mirror stopped before the end).
	const more = 40
	collectEvents(t, a, more)
	r, err = runReport(t, a)
	if !errors.Is(err, ErrRecordsMissing) || r.OK || r.Missing != more || len(r.Problems) == 0 {
		t.Fatalf("after a collect not mirrored: %v\n%+v", err, r)
	}
	for _, w := range r.Windows {
		for _, g := range w.Missing {
			if g.Stage != audit.StageMirror || g.After != audit.StageTopic {
				t.Errorf("%s: %+v", w.Window, g)
			}
		}
	}
	if tot := r.totals(); tot[audit.StageCollect].Count != n+more || tot[audit.StageTopic].Count != n+more || tot[audit.StageMirror].Count != n {
		t.Fatalf("%+v", tot)
	}

	// Every record deleted from the topic: the topic stage is short of
	// what the collector had acknowledged (and counts 0: it is not taken
	// for a stage that does not count the topic).
	ends, err := aadm.ListEndOffsets(clitest.Ctx(t), "events")
	if err != nil {
		t.Fatal(err)
	}
	del := kadm.Offsets{}
	ends.Each(func(l kadm.ListedOffset) { del.AddOffset("events", l.Partition, l.Offset, -1) })
	if res, err := aadm.DeleteRecords(clitest.Ctx(t), del); err != nil || res.Error() != nil {
		t.Fatalf("delete records: %v %v", err, res.Error())
	}
	r, err = runReport(t, a)
	if !errors.Is(err, ErrRecordsMissing) {
		t.Fatalf("after deleting records: %v\n%+v", err, r)
	}
	var atTopic int64
	for _, w := range r.Windows {
		for _, g := range w.Missing {
			if g.Stage == audit.StageTopic {
				atTopic += g.Records
			}
		}
	}
	if atTopic != n+more || r.totals()[audit.StageTopic].Count != 0 || r.Extra != n {
		t.Fatalf("missing at topic %d, want %d; extra %d at the mirror, want %d\n%+v", atTopic, n+more, r.Extra, n, r)
	}

	// The table says the same.
	c, bufs := clitest.Common(a, nil)
	err = Report(clitest.Ctx(t), ReportOptions{Common: c, CountsTopic: audit.DefaultCountsTopic, Since: time.Hour, CountTopics: true})
	if !errors.Is(err, ErrRecordsMissing) || !strings.Contains(bufs.Out.String(), "MISSING") ||
		!strings.Contains(bufs.Out.String(), "COLLECT") || !strings.Contains(bufs.Out.String(), "deduped") {
		t.Fatalf("%v\n%s", err, bufs.Out)
	}
	t.Logf("the table:\n%s", bufs.Out)
}

func equalStages(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}

// The default --settle leaves the minutes just counted open, unjudged;
// --settle 0 judges them.
func TestReportSettle(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	now := time.Now()
	for stage, n := range map[string]int64{audit.StageCollect: 2, audit.StageSink: 1} {
		c, err := audit.NewCounter(ctx, audit.CounterOptions{Stage: stage,
			NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
				return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr)}, opts...)...)
			}})
		if err != nil {
			t.Fatal(err)
		}
		for i := int64(0); i < n; i++ {
			c.Count("nowhere", 0, i, now)
		}
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	o, bufs := clitest.Common(b.Addr, nil)
	err := Report(ctx, ReportOptions{Common: o, Since: time.Hour, Settle: audit.DefaultSettle, Output: "json", CountsTopic: audit.DefaultCountsTopic, Now: now})
	if err != nil || !strings.Contains(bufs.Out.String(), `"open": true`) {
		t.Fatalf("%v\n%s", err, bufs.Out)
	}
	o, bufs = clitest.Common(b.Addr, nil)
	err = Report(ctx, ReportOptions{Common: o, Since: time.Hour, Output: "json", CountsTopic: audit.DefaultCountsTopic, Now: now})
	if !errors.Is(err, ErrRecordsMissing) || !strings.Contains(bufs.Out.String(), `"open": false`) {
		t.Fatalf("%v\n%s", err, bufs.Out)
	}
	if err := Report(ctx, ReportOptions{Common: o, Since: 0, Output: "json"}); err == nil {
		t.Fatal("--since 0 taken")
	}
}

// No counts topic: the error says how to get one. --help names the stages.
func TestReportNoCountsTopicAndHelp(t *testing.T) {
	b := clitest.Start(t, nil)
	o, _ := clitest.Common(b.Addr, nil)
	err := Report(clitest.Ctx(t), ReportOptions{Common: o, Since: time.Hour, CountsTopic: "nothing-here"})
	if err == nil || !strings.Contains(err.Error(), "--audit") || errors.Is(err, ErrRecordsMissing) {
		t.Fatalf("%v", err)
	}
	var out strings.Builder
	cmd := Command()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"report", "--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"collect", "topic", "mirror", "sink", "Dedupe", "--settle", "--since", "--count-topics", "non-zero"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report --help does not say %q", want)
		}
	}
}
