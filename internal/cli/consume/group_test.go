package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/cli/produce"
)

// groupBroker is a broker whose groups rebalance at once.
func groupBroker(t *testing.T) *clitest.Broker {
	return clitest.Start(t, map[string]string{"group.initial.rebalance.delay.ms": "0"})
}

// lines returns "prefix<from>\n" ... "prefix<to-1>\n".
func lines(prefix string, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s%d\n", prefix, i)
	}
	return b.String()
}

// consumeGroup runs a group consumer with out as its stdout and returns
// what it printed and its error.
func consumeGroup(t *testing.T, ctx context.Context, addr string, o Options) (string, error) {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	o.Common = c
	err := Run(ctx, o)
	return io.Out.String(), err
}

// A group consumer commits what it printed before it exits, whatever made
// it exit: a rerun goes on where it stopped, nothing printed twice or lost.
func TestGroupCommitsWhatItPrinted(t *testing.T) {
	b := groupBroker(t)
	create(t, b.Addr, "g", 1)
	ctx := clitest.Ctx(t)
	produceLines(t, b.Addr, produce.Options{Topic: "g", Partition: -1, Acks: "all"}, lines("r", 0, 10))

	// --count reached, in the middle of a fetch.
	for i, want := range []string{lines("r", 0, 3), lines("r", 3, 6)} {
		out, err := consumeGroup(t, ctx, b.Addr, Options{Topic: "g", Group: "G", FromBeginning: true, Count: 3})
		if err != nil || out != want {
			t.Fatalf("run %d with --count 3: %v, printed %q, want %q", i, err, out, want)
		}
	}
	// --exit-at-end with --group: to the high watermarks at start.
	out, err := consumeGroup(t, ctx, b.Addr, Options{Topic: "g", Group: "G", ExitAtEnd: true})
	if err != nil || out != lines("r", 6, 10) {
		t.Fatalf("--exit-at-end: %v, printed %q", err, out)
	}
	if out, err = consumeGroup(t, ctx, b.Addr, Options{Topic: "g", Group: "G", ExitAtEnd: true}); err != nil || out != "" {
		t.Fatalf("--exit-at-end at the end: %v, printed %q", err, out)
	}

	// Interrupted (the context ends) after printing.
	produceLines(t, b.Addr, produce.Options{Topic: "g", Partition: -1, Acks: "all"}, lines("r", 10, 13))
	c, _ := clitest.Common(b.Addr, nil)
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &watchWriter{cancelAt: "r11\n", cancel: cancel}
	c.Out = w
	if err := Run(ictx, Options{Common: c, Topic: "g", Group: "G"}); err != nil {
		t.Fatalf("interrupted: %v", err)
	}
	first := w.String()
	if !strings.HasPrefix(lines("r", 10, 13), first) || !strings.Contains(first, "r11\n") {
		t.Fatalf("interrupted run printed %q", first)
	}
	out, err = consumeGroup(t, ctx, b.Addr, Options{Topic: "g", Group: "G", ExitAtEnd: true})
	if err != nil || first+out != lines("r", 10, 13) {
		t.Fatalf("after the interrupted run (which printed %q): %v, printed %q", first, err, out)
	}

	// An error after printing: stdout closes after the first record (as
	// `| head -1` does). What reached stdout is committed.
	produceLines(t, b.Addr, produce.Options{Topic: "g", Partition: -1, Acks: "all"}, lines("r", 13, 16))
	c, _ = clitest.Common(b.Addr, nil)
	c.Out = &brokenPipe{room: len("r13\n")}
	if err := Run(ctx, Options{Common: c, Topic: "g", Group: "G", ExitAtEnd: true}); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("stdout closed: %v", err)
	}
	out, err = consumeGroup(t, ctx, b.Addr, Options{Topic: "g", Group: "G", ExitAtEnd: true})
	if err != nil || out != lines("r", 14, 16) {
		t.Fatalf("after stdout closed: %v, printed %q", err, out)
	}
}

// --exit-at-end with --group ends when every assigned partition reaches its
// high watermark at start, empty partitions included.
func TestGroupExitAtEnd(t *testing.T) {
	b := groupBroker(t)
	create(t, b.Addr, "multi", 3)
	ctx := clitest.Ctx(t)
	produceLines(t, b.Addr, produce.Options{Topic: "multi", Partition: 0, Acks: "all"}, lines("a", 0, 5))
	produceLines(t, b.Addr, produce.Options{Topic: "multi", Partition: 1, Acks: "all"}, lines("b", 0, 7))
	out, err := consumeGroup(t, ctx, b.Addr, Options{Topic: "multi", Group: "E", FromBeginning: true, ExitAtEnd: true, Format: "%v"})
	if err != nil || strings.Count(out, "\n") != 12 || !strings.Contains(out, "a4\n") || !strings.Contains(out, "b6\n") {
		t.Fatalf("--exit-at-end over 3 partitions: %v, printed %q", err, out)
	}
	// From the end (the default), nothing is left to print.
	if out, err = consumeGroup(t, ctx, b.Addr, Options{Topic: "multi", Group: "F", ExitAtEnd: true}); err != nil || out != "" {
		t.Fatalf("new group from the end: %v, printed %q", err, out)
	}
	// --count and --exit-at-end: whichever comes first.
	if out, err = consumeGroup(t, ctx, b.Addr, Options{Topic: "multi", Group: "H", FromBeginning: true, ExitAtEnd: true, Count: 2}); err != nil || strings.Count(out, "\n") != 2 {
		t.Fatalf("--count 2 --exit-at-end: %v, printed %q", err, out)
	}
}

// watchWriter cancels when what was written contains cancelAt.
type watchWriter struct {
	mu       sync.Mutex
	b        strings.Builder
	cancelAt string
	cancel   context.CancelFunc
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), w.cancelAt) {
		w.cancel()
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// brokenPipe takes room bytes, then fails as a closed pipe does.
type brokenPipe struct{ room int }

func (w *brokenPipe) Write(p []byte) (int, error) {
	n := min(len(p), w.room)
	w.room -= n
	if n < len(p) {
		return n, syscall.EPIPE
	}
	return n, nil
}

// Two members reading a group to its end together print every record once
// between them, however the partitions move between them.
func TestGroupTwoMembersExitAtEnd(t *testing.T) {
	b := groupBroker(t)
	create(t, b.Addr, "two", 4)
	ctx := clitest.Ctx(t)
	var want []string
	for p := range int32(4) {
		in := lines(fmt.Sprintf("p%d-", p), 0, 50)
		produceLines(t, b.Addr, produce.Options{Topic: "two", Partition: p, Acks: "all"}, in)
		want = append(want, strings.Split(strings.TrimSuffix(in, "\n"), "\n")...)
	}
	outs := make([]string, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			outs[i], errs[i] = consumeGroup(t, ctx, b.Addr, Options{Topic: "two", Group: "T", FromBeginning: true, ExitAtEnd: true})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(outs[0]+outs[1], "\n"), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("two members printed %d records (want %d, each once):\n%q\n%q", len(got), len(want), outs[0], outs[1])
	}
}
