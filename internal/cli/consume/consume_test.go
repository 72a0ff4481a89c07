package consume

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/cli/produce"
	"github.com/sluice-io/sluice/internal/cli/topic"
)

func create(t *testing.T, addr, name string, partitions int32) {
	t.Helper()
	c, _ := clitest.Common(addr, nil)
	if err := topic.RunCreate(clitest.Ctx(t), topic.CreateOptions{Common: c, Topics: []string{name}, Partitions: partitions, Replicas: 1}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

func produceLines(t *testing.T, addr string, o produce.Options, input string) string {
	t.Helper()
	c, io := clitest.Common(addr, strings.NewReader(input))
	o.Common = c
	if err := produce.Run(clitest.Ctx(t), o); err != nil {
		t.Fatalf("produce: %v\n%s", err, io.Err)
	}
	return io.Err.String()
}

func consume(t *testing.T, addr string, o Options) string {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	o.Common = c
	if err := Run(clitest.Ctx(t), o); err != nil {
		t.Fatalf("consume: %v", err)
	}
	return io.Out.String()
}

func TestRoundTrip(t *testing.T) {
	b := clitest.Start(t, nil)
	create(t, b.Addr, "lines", 1)
	var in strings.Builder
	var keyBytes, valueBytes int
	for i := range 1000 {
		k, v := fmt.Sprintf("key-%d", i%37), fmt.Sprintf("value %d: \"quoted\" <tag> & ünïcode\ttab", i)
		if i%100 == 7 {
			v = "" // empty values survive
		}
		fmt.Fprintf(&in, "%s:%s\n", k, v)
		keyBytes += len(k)
		valueBytes += len(v)
	}
	summary := produceLines(t, b.Addr, produce.Options{Topic: "lines", KeyDelimiter: ":",
		Headers: []string{"source=test", "run=1"}, Compression: "zstd", Acks: "all", Partition: -1}, in.String())
	if want := fmt.Sprintf("produced 1000 records (%d bytes of keys and values) to lines\n", keyBytes+valueBytes); summary != want {
		t.Fatalf("produce summary %q, want %q", summary, want)
	}

	out := consume(t, b.Addr, Options{Topic: "lines", FromBeginning: true, ExitAtEnd: true, Format: "%k:%v"})
	if out != in.String() {
		t.Fatalf("%%k:%%v output differs from the input: got %d bytes, want %d", len(out), in.Len())
	}

	out = consume(t, b.Addr, Options{Topic: "lines", FromBeginning: true, ExitAtEnd: true, Format: "json"})
	lines := strings.SplitAfter(out, "\n")
	if lines[len(lines)-1] != "" || len(lines) != 1001 {
		t.Fatalf("json: %d lines", len(lines)-1)
	}
	for i, line := range strings.Split(strings.TrimSuffix(in.String(), "\n"), "\n") {
		k, v, _ := strings.Cut(line, ":")
		var rec struct{ Timestamp int64 }
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil {
			t.Fatalf("json line %d: %v: %s", i, err, lines[i])
		}
		want := fmt.Sprintf(`{"topic":"lines","partition":0,"offset":%d,"timestamp":%d,"key":%s,"value":%s,"headers":[{"key":"source","value":"test"},{"key":"run","value":"1"}]}`+"\n",
			i, rec.Timestamp, jsonString(k), jsonString(v))
		if lines[i] != want {
			t.Fatalf("json line %d:\n got %s\nwant %s", i, lines[i], want)
		}
	}

	// Headers, offsets and the verbs; --offset, --count.
	out = consume(t, b.Addr, Options{Topic: "lines", Offset: "998", ExitAtEnd: true, Format: `%t %p %o [%h] 100%%\t%k`})
	if want := "lines 0 998 [source=test,run=1] 100%\tkey-36\nlines 0 999 [source=test,run=1] 100%\tkey-0\n"; out != want {
		t.Fatalf("verbs:\n got %q\nwant %q", out, want)
	}
	if out = consume(t, b.Addr, Options{Topic: "lines", Offset: "-3", ExitAtEnd: true, Format: `%o\n`}); out != "997\n998\n999\n" {
		t.Fatalf("--offset -3: %q", out)
	}
	if out = consume(t, b.Addr, Options{Topic: "lines", FromBeginning: true, Count: 2, Format: `%o`}); out != "0\n1\n" {
		t.Fatalf("--count 2: %q", out)
	}
	// At the end already: nothing to print, and no wait.
	if out = consume(t, b.Addr, Options{Topic: "lines", ExitAtEnd: true}); out != "" {
		t.Fatalf("from the end with --exit-at-end: %q", out)
	}
	// From a time after every record: nothing; from long ago: everything.
	future := time.Now().Add(time.Hour).Format(time.RFC3339)
	if out = consume(t, b.Addr, Options{Topic: "lines", FromTime: future, ExitAtEnd: true}); out != "" {
		t.Fatalf("--from-time in the future: %q", out)
	}
	if out = consume(t, b.Addr, Options{Topic: "lines", FromTime: "0", ExitAtEnd: true, Format: "%o"}); strings.Count(out, "\n") != 1000 {
		t.Fatalf("--from-time 0: %d records", strings.Count(out, "\n"))
	}
}

func jsonString(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return strings.TrimSuffix(buf.String(), "\n")
}

func TestPartitions(t *testing.T) {
	b := clitest.Start(t, nil)
	create(t, b.Addr, "multi", 3)
	var in strings.Builder
	for i := range 300 {
		fmt.Fprintf(&in, "k%d=v%d\n", i%10, i)
	}
	produceLines(t, b.Addr, produce.Options{Topic: "multi", KeyDelimiter: "=", Compression: "lz4", Acks: "1", Partition: -1}, in.String())
	produceLines(t, b.Addr, produce.Options{Topic: "multi", Compression: "gzip", Acks: "0", Partition: 2}, "unkeyed\n")

	// acks=0 and acks=1 records become visible once the broker's flusher
	// has fsynced them (within log.flush.max.delay.ms): wait for all.
	out := consume(t, b.Addr, Options{Topic: "multi", FromBeginning: true, Count: 301, Format: "%p %k=%v"})
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(got) != 301 {
		t.Fatalf("consumed %d records, want 301", len(got))
	}
	keyPart := map[string]string{}
	var values []string
	for _, line := range got {
		p, kv, _ := strings.Cut(line, " ")
		if kv == "=unkeyed" {
			if p != "2" {
				t.Fatalf("--partition 2 record in partition %s", p)
			}
			continue
		}
		k, _, _ := strings.Cut(kv, "=")
		if q, ok := keyPart[k]; ok && q != p {
			t.Fatalf("key %s in partitions %s and %s", k, q, p)
		}
		keyPart[k] = p
		values = append(values, kv+"\n")
	}
	want := strings.SplitAfter(strings.TrimSuffix(in.String(), "\n"), "\n")
	want[len(want)-1] += "\n"
	slices.Sort(values)
	slices.Sort(want)
	if !slices.Equal(values, want) {
		t.Fatal("consumed records differ from the produced lines")
	}

	// Only partition 2, which ends with the unkeyed record.
	out = consume(t, b.Addr, Options{Topic: "multi", FromBeginning: true, ExitAtEnd: true, Partitions: []int32{2}, Format: "%p %v"})
	if !strings.HasSuffix(out, "2 unkeyed\n") {
		t.Fatalf("--partition 2:\n%s", out)
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !strings.HasPrefix(line, "2 ") {
			t.Fatalf("--partition 2 printed %q", line)
		}
	}
}

func TestErrors(t *testing.T) {
	b := clitest.Start(t, nil)
	create(t, b.Addr, "t", 1)
	ctx := clitest.Ctx(t)
	run := func(addr string, o Options) error {
		c, _ := clitest.Common(addr, nil)
		o.Common = c
		return Run(ctx, o)
	}
	dead := clitest.DeadAddr(t)
	start := time.Now()
	err := run(dead, Options{Topic: "t"})
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach broker at "+dead+": ") || !strings.HasSuffix(err.Error(), "is `sluice serve` running?") {
		t.Fatalf("unreachable: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("unreachable broker took %v to report", time.Since(start))
	}
	if err := run(b.Addr, Options{Topic: "nope", FromBeginning: true}); err == nil ||
		err.Error() != "topic nope does not exist; create it with `sluice topic create nope`" {
		t.Fatalf("missing topic: %v", err)
	}
	for name, o := range map[string]Options{
		"two starts":   {Topic: "t", FromBeginning: true, Offset: "3"},
		"bad offset":   {Topic: "t", Offset: "x"},
		"bad time":     {Topic: "t", FromTime: "yesterday"},
		"bad verb":     {Topic: "t", Format: "%q"},
		"lone percent": {Topic: "t", Format: "%v%"},
		"no partition": {Topic: "t", Partitions: []int32{5}},
	} {
		if err := run(b.Addr, o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFollow(t *testing.T) {
	b := clitest.Start(t, nil)
	create(t, b.Addr, "live", 1)
	// From the end (the default), records produced after the start are
	// printed as they come.
	c, io := clitest.Common(b.Addr, nil)
	ctx, cancel := context.WithTimeout(clitest.Ctx(t), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, Options{Common: c, Topic: "live", Count: 3}) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		produceLines(t, b.Addr, produce.Options{Topic: "live", Partition: -1, Acks: "all"}, "a\nb\nc\n")
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
			if got := io.Out.String(); got != "a\nb\nc\n" {
				t.Fatalf("printed %q", got)
			}
			return
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("consumer printed nothing")
		}
	}
}
