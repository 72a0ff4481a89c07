package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// run runs the command line through the real command tree.
func run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := Root()
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(clitest.Ctx(t))
	return out.String(), errb.String(), err
}

func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Example == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	// The commands of this change and the root; `sluice bench` is checked
	// with its own package.
	root := Root()
	if root.Example == "" {
		t.Error("sluice has no Example")
	}
	for _, c := range root.Commands() {
		switch c.Name() {
		case "serve", "topic", "config", "produce", "consume", "cluster", "version", "audit":
			walk(c)
		}
	}
	for _, args := range [][]string{{"topic", "describe", "--help"}, {"consume", "--help"}, {"produce", "--help"}, {"cluster", "info", "--help"},
		{"config", "describe", "--help"}, {"config", "alter", "--help"}, {"audit", "check", "--help"}, {"audit", "run", "--help"}} {
		out, _, err := run(t, "", args...)
		if err != nil || !strings.Contains(out, "Examples:") || !strings.Contains(out, "--brokers") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

func TestCommandLines(t *testing.T) {
	b := clitest.Start(t, nil)
	t.Setenv("SLUICE_BROKERS", b.Addr) // the flags' default
	if _, _, err := run(t, "", "topic", "create", "demo", "-p", "2", "-c", "retention.ms=60000"); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := run(t, "a:1\nb:2\nc:3\n", "produce", "demo", "-K", ":", "--headers", "h=1,g=2", "--compression", "lz4", "--acks", "1", "--partition", "1")
	if err != nil || stderr != "produced 3 records (6 bytes of keys and values) to demo\n" {
		t.Fatalf("produce: %v %q", err, stderr)
	}
	// acks=1 records become visible (the high watermark reaches them) once
	// the broker's flusher has fsynced them: wait for the three with --count.
	out, _, err := run(t, "", "consume", "demo", "--from-beginning", "--count", "3", "-f", `%p %k=%v %h\n`)
	if err != nil || out != "1 a=1 h=1,g=2\n1 b=2 h=1,g=2\n1 c=3 h=1,g=2\n" {
		t.Fatalf("consume: %v %q", err, out)
	}
	out, _, err = run(t, "", "topic", "list", "-o", "json", "--brokers", b.Addr)
	if err != nil || !strings.Contains(out, `"name": "demo"`) {
		t.Fatalf("list: %v %q", err, out)
	}
	out, _, err = run(t, "", "config", "describe", "topic", "demo", "--all")
	if err != nil || !strings.Contains(out, "retention.ms") || !strings.Contains(out, "DYNAMIC_TOPIC_CONFIG") {
		t.Fatalf("config describe: %v %q", err, out)
	}
	if _, _, err = run(t, "", "config", "describe", "group", "g"); err == nil || !strings.Contains(err.Error(), "`topic NAME` or `broker ID`") {
		t.Fatalf("config describe group: %v", err)
	}
	out, _, err = run(t, "", "config", "alter", "topic", "demo", "--delete", "retention.ms", "-o", "json")
	if err != nil || !strings.Contains(out, `"deleted": [`) {
		t.Fatalf("config alter: %v %q", err, out)
	}
	out, _, err = run(t, "", "version")
	if err != nil || !strings.HasPrefix(out, "sluice dev (go") {
		t.Fatalf("version: %v %q", err, out)
	}

	dead := clitest.DeadAddr(t)
	for _, args := range [][]string{{"produce", "demo"}, {"consume", "demo"}, {"topic", "list"}, {"cluster", "info"}} {
		_, _, err := run(t, "x\n", append(args, "--brokers", dead)...)
		if err == nil || !strings.Contains(err.Error(), "cannot reach broker at "+dead) {
			t.Errorf("%v against %s: %v", args, dead, err)
		}
	}
	_, _, err = run(t, "x\n", "produce", "missing")
	if err == nil || err.Error() != "topic missing does not exist; create it with `sluice topic create missing`" {
		t.Fatalf("produce to a missing topic: %v", err)
	}
}

// walk calls fn on c and every command under it.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

func TestUnknownSubcommand(t *testing.T) {
	// Every command group refuses a subcommand it does not have, non-zero.
	walk(Root(), func(c *cobra.Command) {
		if !c.HasSubCommands() {
			return
		}
		args := append(strings.Fields(c.CommandPath())[1:], "nosuchcommand")
		_, _, err := run(t, "", args...)
		if want := `unknown command "nosuchcommand" for "` + c.CommandPath() + `"`; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%v: got %v, want %s...", args, err, want)
		}
	})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"topic", "creat", "x"}, `unknown command "creat" for "sluice topic"; did you mean create?`},
		{[]string{"group", "lst"}, `unknown command "lst" for "sluice group"; did you mean list?`},
		{[]string{"topci", "list"}, `unknown command "topci" for "sluice"; did you mean topic?`},
	} {
		if _, _, err := run(t, "", tc.args...); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %s", tc.args, err, tc.want)
		}
	}
	// A group alone still shows its help.
	out, _, err := run(t, "", "topic")
	if err != nil || !strings.Contains(out, "Available Commands:") {
		t.Fatalf("sluice topic: %v\n%s", err, out)
	}
}

func TestFlagHelp(t *testing.T) {
	walk(Root(), func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			// One default per flag: the usage's own words or pflag's
			// "(default ...)", not both.
			fs := pflag.NewFlagSet("", pflag.ContinueOnError)
			fs.AddFlag(f)
			if line := fs.FlagUsages(); strings.Count(line, "(default") > 1 {
				t.Errorf("%s: two defaults in %q", c.CommandPath(), strings.TrimSpace(line))
			}
		})
		// -b is --brokers everywhere.
		if f := c.LocalFlags().Lookup("brokers"); f != nil && f.Shorthand != "b" {
			t.Errorf("%s: --brokers has no -b", c.CommandPath())
		}
	})
}
