package kv

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/cli/topic"
)

func create(t *testing.T, addr, name string, partitions int32, configs ...string) {
	t.Helper()
	c, _ := clitest.Common(addr, nil)
	if err := topic.RunCreate(clitest.Ctx(t), topic.CreateOptions{Common: c, Topics: []string{name}, Partitions: partitions, Replicas: 1, Configs: configs}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

func put(t *testing.T, addr, tp, k, v string, headers ...string) string {
	t.Helper()
	var in *strings.Reader
	if strings.HasPrefix(v, "stdin:") {
		in, v = strings.NewReader(strings.TrimPrefix(v, "stdin:")), "-"
	}
	c, io := clitest.Common(addr, in)
	if in == nil {
		c.In = nil
	}
	if err := RunPut(clitest.Ctx(t), PutOptions{Common: c, Topic: tp, Key: k, Value: v, Headers: headers}); err != nil {
		t.Fatalf("put %s=%s: %v", k, v, err)
	}
	return io.Out.String()
}

func del(t *testing.T, addr, tp, k string) string {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	if err := RunDelete(clitest.Ctx(t), DeleteOptions{Common: c, Topic: tp, Key: k}); err != nil {
		t.Fatalf("delete %s: %v", k, err)
	}
	return io.Out.String()
}

func get(t *testing.T, addr, tp, k, output string) (string, error) {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	err := RunGet(clitest.Ctx(t), GetOptions{Common: c, Topic: tp, Key: k, Output: output})
	return io.Out.String(), err
}

func scan(t *testing.T, addr, tp, prefix, output string) (string, string) {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	if err := RunScan(clitest.Ctx(t), ScanOptions{Common: c, Topic: tp, Prefix: prefix, Output: output}); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return io.Out.String(), io.Err.String()
}

func TestKV(t *testing.T) {
	b := clitest.Start(t, nil)
	create(t, b.Addr, "users", 3, "cleanup.policy=compact")

	if out, errs := scan(t, b.Addr, "users", "", ""); out != "KEY  VALUE  PARTITION  OFFSET  TIMESTAMP\n" || errs != "0 keys in users (0 records read from 3 partitions)\n" {
		t.Fatalf("scan of an empty topic: %q %q", out, errs)
	}
	if out := put(t, b.Addr, "users", "alice", "v1"); !strings.HasPrefix(out, `put "alice" in users (partition `) {
		t.Fatalf("put printed %q", out)
	}
	put(t, b.Addr, "users", "bob", "b1", "source=test")
	put(t, b.Addr, "users", "alice", "v2", "h=1", "g=2")
	put(t, b.Addr, "users", "carol", "stdin:line 1\nline 2\n\x00\xff")
	put(t, b.Addr, "users", "team/x", "")
	for i := range 30 {
		put(t, b.Addr, "users", fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	if out := del(t, b.Addr, "users", "bob"); !strings.HasPrefix(out, `deleted "bob" in users (tombstone at partition `) {
		t.Fatalf("delete printed %q", out)
	}
	del(t, b.Addr, "users", "never-written") // not an error

	if out, err := get(t, b.Addr, "users", "alice", ""); err != nil || out != "v2\n" {
		t.Fatalf("get alice: %q %v", out, err)
	}
	if out, err := get(t, b.Addr, "users", "carol", "value"); err != nil || out != "line 1\nline 2\n\x00\xff\n" {
		t.Fatalf("get carol: %q %v", out, err)
	}
	if out, err := get(t, b.Addr, "users", "team/x", ""); err != nil || out != "\n" {
		t.Fatalf("get of an empty value: %q %v", out, err)
	}
	_, err := get(t, b.Addr, "users", "bob", "")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `key "bob" was deleted from users (tombstone at partition`) {
		t.Fatalf("get of a deleted key: %v", err)
	}
	_, err = get(t, b.Addr, "users", "nobody", "")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `users has no key "nobody" (`) {
		t.Fatalf("get of a missing key: %v", err)
	}
	out, err := get(t, b.Addr, "users", "alice", "json")
	var e Entry
	if err != nil || json.Unmarshal([]byte(out), &e) != nil || *e.Key != "alice" || *e.Value != "v2" || len(e.Headers) != 2 ||
		e.Headers[1].Key != "g" || *e.Headers[1].Value != "2" || e.Timestamp == 0 {
		t.Fatalf("get -o json: %v\n%s", err, out)
	}
	if out, err := get(t, b.Addr, "users", "alice", "table"); err != nil || !strings.HasPrefix(out, "KEY    VALUE  PARTITION") || !strings.Contains(out, "\nalice  v2  ") {
		t.Fatalf("get -o table: %v\n%s", err, out)
	}
	if _, err := get(t, b.Addr, "users", "alice", "yaml"); err == nil {
		t.Fatal("get -o yaml: no error")
	}

	// scan: sorted, tombstoned keys out, prefix, json.
	out, errs := scan(t, b.Addr, "users", "", "")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1+33 || !strings.HasPrefix(lines[1], "alice ") || !strings.Contains(lines[2], `carol   "line 1\nline 2\n\x00\xff"  2 `) ||
		!strings.HasPrefix(lines[3], "k00 ") || !strings.HasPrefix(lines[33], "team/x ") {
		t.Fatalf("scan:\n%s", out)
	}
	if !strings.HasPrefix(errs, "33 keys in users (") || !strings.HasSuffix(errs, " records read from 3 partitions)\n") {
		t.Fatalf("scan summary %q", errs)
	}
	out, _ = scan(t, b.Addr, "users", "k1", "json")
	var es []Entry
	if err := json.Unmarshal([]byte(out), &es); err != nil || len(es) != 10 || *es[0].Key != "k10" || *es[9].Value != "19" {
		t.Fatalf("scan --prefix k1 -o json: %v\n%s", err, out)
	}
	out, _ = scan(t, b.Addr, "users", "car", "json")
	es = nil
	if err := json.Unmarshal([]byte(out), &es); err != nil || len(es) != 1 || es[0].Value != nil || es[0].ValueBase64 != "bGluZSAxCmxpbmUgMgoA/w==" {
		t.Fatalf("scan of a binary value -o json: %v\n%s", err, out)
	}

	// Every key stays in one partition: its hash's.
	ix, err := load(clitest.Ctx(t), mustCommon(b.Addr), "users", nil)
	if err != nil {
		t.Fatal(err)
	}
	for p, m := range ix.parts {
		for k := range m {
			if want := partitionOf("users", []byte(k), 3); p != want {
				t.Fatalf("key %s in partition %d, its hash picks %d", k, p, want)
			}
		}
	}

	// Errors: missing topic, dead broker.
	c, _ := clitest.Common(b.Addr, nil)
	if err := RunGet(clitest.Ctx(t), GetOptions{Common: c, Topic: "missing", Key: "k"}); err == nil || !strings.Contains(err.Error(), "topic missing does not exist") {
		t.Fatalf("get from a missing topic: %v", err)
	}
	if err := RunPut(clitest.Ctx(t), PutOptions{Common: c, Topic: "missing", Key: "k", Value: "v"}); err == nil || !strings.Contains(err.Error(), "topic missing does not exist") {
		t.Fatalf("put to a missing topic: %v", err)
	}
	dead := clitest.DeadAddr(t)
	c, _ = clitest.Common(dead, nil)
	if err := RunScan(clitest.Ctx(t), ScanOptions{Common: c, Topic: "users"}); err == nil || !strings.Contains(err.Error(), "cannot reach broker at "+dead) {
		t.Fatalf("scan against a dead broker: %v", err)
	}
}

func mustCommon(addr string) clientopts.Common {
	c, _ := clitest.Common(addr, nil)
	return c
}

// TestKeyInSeveralPartitions: the record in the key's own partition
// decides; others only count when it has none there.
func TestKeyInSeveralPartitions(t *testing.T) {
	b := clitest.Start(t, nil)
	create(t, b.Addr, "multi", 3)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	home := partitionOf("multi", []byte("x"), 3)
	at := func(p int32, v string, ts time.Time) {
		t.Helper()
		if err := cl.ProduceSync(clitest.Ctx(t), &kgo.Record{Topic: "multi", Partition: p, Key: []byte("x"), Value: []byte(v), Timestamp: ts}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	want := func(v string) {
		t.Helper()
		out, err := get(t, b.Addr, "multi", "x", "")
		if v == "" {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("get x: %q %v, want not found", out, err)
			}
			return
		}
		if err != nil || out != v+"\n" {
			t.Fatalf("get x: %q %v, want %q", out, err, v)
		}
	}
	at((home+1)%3, "elsewhere", now)
	want("elsewhere")
	at((home+2)%3, "later elsewhere", now.Add(time.Second))
	want("later elsewhere")
	put(t, b.Addr, "multi", "x", "home")
	want("home")
	at((home+1)%3, "newer elsewhere", now.Add(time.Hour))
	want("home")
	del(t, b.Addr, "multi", "x")
	want("")
	if out, _ := scan(t, b.Addr, "multi", "", ""); strings.Contains(out, "\nx ") {
		t.Fatalf("scan shows a deleted key:\n%s", out)
	}
}

func TestExamples(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Example == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		if c.Runnable() && c.Flags().Lookup("brokers") == nil {
			t.Errorf("%q has no --brokers", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(Command())
}
