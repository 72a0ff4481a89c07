package produce

import (
	"io"
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
	// A record over the broker's limit fails the run, non-zero.
	c, _ = clitest.Common(b.Addr, strings.NewReader(strings.Repeat("x", 2<<20)+"\n"))
	if err := Run(ctx, Options{Common: c, Topic: "t", Partition: -1}); err == nil {
		t.Fatal("2 MiB record: no error")
	} else {
		t.Logf("2 MiB record: %v", err)
	}
}
