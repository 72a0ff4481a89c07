package produce

import (
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/cli/consume"
	"github.com/sluice-io/sluice/internal/cli/topic"
)

func TestStreams(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	c, _ := clitest.Common(b.Addr, nil)
	if err := topic.RunCreate(ctx, topic.CreateOptions{Common: c, Topics: []string{"s"}, Partitions: 2, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	// Lines are produced as they are read: the first is consumable while
	// stdin is still open.
	pr, pw := io.Pipe()
	c, pio := clitest.Common(b.Addr, pr)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Options{Common: c, Topic: "s", Partition: 1, Acks: "all", Compression: "snappy"})
	}()
	if _, err := io.WriteString(pw, "first\n"); err != nil {
		t.Fatal(err)
	}
	c, cio := clitest.Common(b.Addr, nil)
	if err := consume.Run(ctx, consume.Options{Common: c, Topic: "s", FromBeginning: true, Count: 1, Partitions: []int32{1}, Format: "%p:%v"}); err != nil {
		t.Fatal(err)
	}
	if got := cio.Out.String(); got != "1:first\n" {
		t.Fatalf("consumed %q while stdin was open", got)
	}
	io.WriteString(pw, "\nlast without newline")
	pw.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("produce did not end at EOF")
	}
	if got, want := pio.Err.String(), "produced 3 records (25 bytes of keys and values) to s\n"; got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
	c, cio = clitest.Common(b.Addr, nil)
	if err := consume.Run(ctx, consume.Options{Common: c, Topic: "s", FromBeginning: true, ExitAtEnd: true, Format: "%p:%v"}); err != nil {
		t.Fatal(err)
	}
	if got, want := cio.Out.String(), "1:first\n1:\n1:last without newline\n"; got != want {
		t.Fatalf("consumed %q, want %q", got, want)
	}
}

func TestErrors(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	c, _ := clitest.Common(b.Addr, nil)
	if err := topic.RunCreate(ctx, topic.CreateOptions{Common: c, Topics: []string{"t"}, Partitions: 1, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	run := func(addr string, o Options) (string, error) {
		c, io := clitest.Common(addr, strings.NewReader("a\nb\n"))
		o.Common = c
		if o.Partition == 0 {
			o.Partition = -1
		}
		err := Run(ctx, o)
		return io.Err.String(), err
	}

	dead := clitest.DeadAddr(t)
	start := time.Now()
	_, err := run(dead, Options{Topic: "t"})
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach broker at "+dead+": ") || !strings.HasSuffix(err.Error(), "is `sluice serve` running?") {
		t.Fatalf("unreachable: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("unreachable broker took %v to report", time.Since(start))
	}
	_, err = run(b.Addr, Options{Topic: "nope"})
	if err == nil || err.Error() != "topic nope does not exist; create it with `sluice topic create nope`" {
		t.Fatalf("missing topic: %v", err)
	}
	// Not created by the attempt.
	c, io := clitest.Common(b.Addr, nil)
	if err := topic.RunList(ctx, topic.ListOptions{Common: c}); err != nil || strings.Contains(io.Out.String(), "nope") {
		t.Fatalf("list: %v\n%s", err, io.Out)
	}
	for name, o := range map[string]Options{
		"bad compression": {Topic: "t", Compression: "brotli"},
		"bad acks":        {Topic: "t", Acks: "2"},
		"bad header":      {Topic: "t", Headers: []string{"novalue"}},
		"bad partition":   {Topic: "t", Partition: 3},
	} {
		if _, err := run(b.Addr, o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A record over the topic's limit fails the run, non-zero, before it
	// is sent.
	c, _ = clitest.Common(b.Addr, strings.NewReader(strings.Repeat("x", 2<<20)+"\n"))
	if err := Run(ctx, Options{Common: c, Topic: "t", Partition: -1}); err == nil ||
		!strings.Contains(err.Error(), "record too large: over topic t's max.message.bytes (1048588): raise it with `sluice config alter topic t --set max.message.bytes=N`") {
		t.Fatalf("2 MiB record: %v", err)
	}
	for name, o := range map[string]Options{
		"bad max":           {Topic: "t", MaxMessageBytes: 100},
		"-l without a file": {Topic: "t", LineFiles: true},
		"format and -K":     {Topic: "t", Format: "%v\n", KeyDelimiter: ":"},
		"files and format":  {Topic: "t", Files: []string{"x"}, Format: "%v"},
		"bad format":        {Topic: "t", Format: "%k%v"},
		"bad delimiter":     {Topic: "t", Delimiter: `\q`},
	} {
		if _, err := run(b.Addr, o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// produceIn runs produce with stdin and returns its summary and error.
func produceIn(t *testing.T, addr, stdin string, o Options) (string, error) {
	t.Helper()
	c, io := clitest.Common(addr, strings.NewReader(stdin))
	o.Common = c
	if o.Partition == 0 && o.Topic != "" {
		o.Partition = -1
	}
	err := Run(clitest.Ctx(t), o)
	return io.Err.String(), err
}

// consumeAll returns the topic's records, formatted.
func consumeAll(t *testing.T, addr, topic, format string) string {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	if err := consume.Run(clitest.Ctx(t), consume.Options{Common: c, Topic: topic, FromBeginning: true, ExitAtEnd: true, Format: format}); err != nil {
		t.Fatal(err)
	}
	return io.Out.String()
}

func createTopic(t *testing.T, addr, name string, partitions int32, configs ...string) {
	t.Helper()
	c, _ := clitest.Common(addr, nil)
	if err := topic.RunCreate(clitest.Ctx(t), topic.CreateOptions{Common: c, Topics: []string{name}, Partitions: partitions, Replicas: 1, Configs: configs}); err != nil {
		t.Fatal(err)
	}
}

// A record up to the topic's max.message.bytes is sent, whatever the
// client's own default (kgo's 1,000,012 bytes).
func TestLargeRecords(t *testing.T) {
	b := clitest.Start(t, nil)
	createTopic(t, b.Addr, "big", 1, "max.message.bytes=3000000")
	createTopic(t, b.Addr, "small", 1)
	value := strings.Repeat("v", 2<<20)
	summary, err := produceIn(t, b.Addr, value+"\n", Options{Topic: "big"})
	if err != nil || summary != "produced 1 record (2097152 bytes of keys and values) to big\n" {
		t.Fatalf("2 MiB record to a topic allowing 3 MB: %v %q", err, summary)
	}
	if got := consumeAll(t, b.Addr, "big", "%v"); got != value+"\n" {
		t.Fatalf("consumed %d bytes", len(got))
	}
	// --max-message-bytes sizes the client; the broker holds the topic to
	// its own limit.
	_, err = produceIn(t, b.Addr, value+"\n", Options{Topic: "small", MaxMessageBytes: 3000000})
	if err == nil || !strings.Contains(err.Error(), "MESSAGE_TOO_LARGE") || !strings.Contains(err.Error(), "raise that with `sluice config alter topic small --set max.message.bytes=N`") {
		t.Fatalf("2 MiB record with --max-message-bytes to a topic of 1 MB: %v", err)
	}
	_, err = produceIn(t, b.Addr, value+"\n", Options{Topic: "big", MaxMessageBytes: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "record too large: over --max-message-bytes (1048576)") {
		t.Fatalf("2 MiB record over --max-message-bytes: %v", err)
	}
	// A whole file too.
	path := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := produceIn(t, b.Addr, "", Options{Topic: "big", Files: []string{path}}); err != nil {
		t.Fatal(err)
	}
	if _, err := produceIn(t, b.Addr, "", Options{Topic: "small", Files: []string{path}}); err == nil || !strings.Contains(err.Error(), "file "+path+": record too large") {
		t.Fatalf("2 MiB file to a topic of 1 MB: %v", err)
	}
}

// Delimiters (kcat -D, -K), files (kcat's FILE arguments and -l), and
// rpk's -f formats.
func TestInputs(t *testing.T) {
	b := clitest.Start(t, nil)
	createTopic(t, b.Addr, "in", 1)
	createTopic(t, b.Addr, "other", 3)
	check := func(name, stdin string, o Options, want string) {
		t.Helper()
		createTopic(t, b.Addr, name, 3)
		o.Topic = name
		if _, err := produceIn(t, b.Addr, stdin, o); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Partitions are read in any order; each one's records in order.
		if got := byPartition(consumeAll(t, b.Addr, name, `%p|%k|%v|%h;`)); got != byPartition(want) {
			t.Fatalf("%s: consumed\n%q\nwant\n%q", name, got, want)
		}
	}
	check("nul", "a\x00k=b\x00\x00", Options{Delimiter: `\x00`, KeyDelimiter: "=", Partition: 1},
		"1||a|;\n1|k|b|;\n1|||;\n")
	check("multi", "one<>two<>three", Options{Delimiter: "<>", KeyDelimiter: `\t`, Partition: 2}, "2||one|;\n2||two|;\n2||three|;\n")
	check("fmt", "0 1 a=1;|k1 v1\n2 2 a=2;b=3;|k2 v2\n", Options{Format: `%p %H %h{%k=%v;}|%k %v\n`, Headers: []string{"src=cli"}},
		"0|k1|v1|a=1,src=cli;\n2|k2|v2|a=2,b=3,src=cli;\n")
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "1"), filepath.Join(dir, "2")
	os.WriteFile(f1, []byte("line 1\nline 2\n"), 0o600)
	os.WriteFile(f2, []byte("\x00binary\xff"), 0o600)
	check("files", "ignored", Options{Files: []string{f1, f2}, Partition: 1}, "1||line 1\nline 2\n|;\n1||\x00binary\xff|;\n")
	check("lines", "ignored", Options{Files: []string{f1}, LineFiles: true, Partition: 1}, "1||line 1|;\n1||line 2|;\n")

	// %t: records to other topics, each checked.
	summary, err := produceIn(t, b.Addr, "in:a\nother:b\n", Options{Topic: "in", Format: `%t:%v\n`})
	if err != nil || summary != "produced 2 records (2 bytes of keys and values) to in, other\n" {
		t.Fatalf("%%t: %v %q", err, summary)
	}
	if _, err := produceIn(t, b.Addr, "nope:a\n", Options{Topic: "in", Format: `%t:%v\n`}); err == nil ||
		err.Error() != "produce to in: input record 1: topic nope does not exist; create it with `sluice topic create nope`" {
		t.Fatalf("%%t of a missing topic: %v", err)
	}
	if _, err := produceIn(t, b.Addr, "0 a\n5 b\n", Options{Topic: "in", Format: `%p %v\n`}); err == nil ||
		!strings.Contains(err.Error(), "input record 2: partition 5: topic in has partitions 0 to 0") {
		t.Fatalf("%%p out of range: %v", err)
	}
	if _, err := produceIn(t, b.Addr, "a b\nc", Options{Topic: "in", Format: `%k %v\n`}); err == nil ||
		!strings.Contains(err.Error(), `input record 2: %k: input ended before " "`) {
		t.Fatalf("input not matching the format: %v", err)
	}
}

// byPartition orders lines that start with "partition|" by partition,
// keeping the order of each partition's lines.
func byPartition(out string) string {
	lines := strings.SplitAfter(out, "\n")
	part := func(l string) string { p, _, _ := strings.Cut(l, "|"); return p }
	sort.SliceStable(lines, func(i, j int) bool { return part(lines[i]) < part(lines[j]) })
	return strings.Join(lines, "")
}
