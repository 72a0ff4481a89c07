package auditcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// DefaultSince is how far back `sluice audit report` looks with no --since.
const DefaultSince = time.Hour

// maxProblemsShown bounds the windows named in report's error.
const maxProblemsShown = 5

// ReportOptions are the flags of `sluice audit report`.
type ReportOptions struct {
	clientopts.Common
	CountsTopic string
	Topics      []string
	Since       time.Duration
	Settle      time.Duration
	CountTopics bool
	Expect      []string
	Output      string
	// Now is the report's time; zero: time.Now (tests).
	Now time.Time
}

const reportLong = `Read the audit counts that the pipeline's stages publish (sluice collect
--audit, sluice mirror --audit, the sink) and count the topics themselves, then
compare the stages minute by minute of record time, and say where records went
missing or were duplicated between the app and the last stage.

Stages, in the order compared:
  collect  an event counted when the cluster acknowledged it (acks=all) to the
           collector, in the minute of its receive time; with its produced
           partition and offset
  topic    the records in the topic, counted by this command from the first
           offset at --since to the end, by timestamp (not published)
  mirror   a record counted when the target cluster acknowledged its copy,
           under its source topic, with its source partition and offset
  sink     a record counted when the object holding it is uploaded and
           committed, with the offset it was read at
A topic compares only the stages that counted some of it since --since, and
those named with --expect: name every stage your pipeline has, so that one
stopped for the whole period shows its records missing instead of being
left out.

Dedupe: a stage run more than once over the same records (a mirror restarted
from its last commit, a sink retrying an upload) counts the same source offsets
again; the offsets of every instance of a stage are merged, so each counts
once. RAW in -o json is every count before the merge. A duplicate that has its
own offset (an event the collector's spool replayed after a kill -9 is a new
record in the topic) is not a duplicate to the audit: it is a record of the
topic, counted by every stage.

In each minute that ended more than --settle ago, each stage is compared with
the one before it: lower is MISSING there (lost, or still not there: a mirror
far behind), higher is EXTRA (records no earlier stage counted, or counted
twice without an offset). Minutes not settled are shown as open and not
judged; --settle 0 judges every minute, the current one too, for a pipeline
whose stages are all stopped and flushed. It exits non-zero when a judged minute has records missing.

Keep --since within the topics' retention: records deleted by retention look
missing to the topic stage and to every stage after it. Windows are of record
time: a topic with message.timestamp.type=LogAppendTime does not compare.`

func reportCommand() *cobra.Command {
	o := ReportOptions{}
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Compare the pipeline stages' counts minute by minute: where were records lost?",
		Long:  reportLong,
		Example: `  sluice audit report -b kafka-a:9092 --since 3h
  sluice audit report -b kafka-a:9092 --topic pageviews --settle 10m
  sluice audit report -o json | jq '.windows[] | select(.missing) | {window, topic, missing}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.SetStreams(cmd)
			return Report(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	clientopts.AddFlags(fs, &o.Common)
	fs.StringVar(&o.CountsTopic, "counts-topic", audit.DefaultCountsTopic, "the audit counts topic the stages publish to")
	fs.StringSliceVar(&o.Topics, "topic", nil, "only these topics (repeat or comma-separate; default: every topic counted)")
	fs.DurationVar(&o.Since, "since", DefaultSince, "how far back to compare")
	fs.DurationVar(&o.Settle, "settle", audit.DefaultSettle, "how long after its end a minute is judged (the stages may still be counting it before); 0: judge every minute, the current one too (once every stage is stopped)")
	fs.StringSliceVar(&o.Expect, "expect", nil, "stages every topic must have (collect,mirror,sink): one that counted nothing since --since is then missing, not left out")
	fs.BoolVar(&o.CountTopics, "count-topics", true, "count the topics themselves (stage topic); reads every record since --since")
	clientopts.AddOutputFlag(fs, &o.Output)
	return cmd
}

// ErrRecordsMissing is what Report's error is (errors.Is) when a judged
// window has a stage lower than the one before it.
var ErrRecordsMissing = errors.New("audit report: records missing")

// Report builds the count report, prints it, and returns an error
// wrapping ErrRecordsMissing when records are missing.
func Report(ctx context.Context, o ReportOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	if o.Since <= 0 {
		return fmt.Errorf("--since %s: give a positive duration", o.Since)
	}
	if o.Settle < 0 {
		return fmt.Errorf("--settle %s: give 0 or more", o.Settle)
	}
	cl, _, err := o.Connect(ctx, nil) // the friendly "cannot reach broker" error
	if err != nil {
		return err
	}
	cl.Close()
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	settle := o.Settle
	if settle == 0 {
		settle = -1 // the package's 0 is its default; the flag's 0 is none
	}
	r, err := audit.BuildCountReport(ctx, audit.ReportOptions{
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return o.NewClient(append(opts, kgo.ClientID(clientID))...)
		},
		CountsTopic: o.CountsTopic, Topics: o.Topics, Since: now.Add(-o.Since), Settle: settle,
		CountTopics: o.CountTopics, Expect: o.Expect, Now: now,
	})
	if err != nil {
		return err
	}
	problems := reportProblems(r)
	if o.Output == clientopts.OutputJSON {
		out := struct {
			OK       bool     `json:"ok"`
			Problems []string `json:"problems"`
			audit.CountReport
		}{len(problems) == 0, problems, r}
		if out.Problems == nil {
			out.Problems = []string{}
		}
		if err := clientopts.JSON(o.Stdout(), out); err != nil {
			return err
		}
	} else if err := printCountReport(o.Stdout(), r); err != nil {
		return err
	}
	if r.Undecodable > 0 {
		fmt.Fprintf(o.Stderr(), "warning: %s on %s not count records (ignored)\n",
			clientopts.Count(int64(r.Undecodable), "record", "records"), o.CountsTopic)
	}
	if r.Missing > 0 {
		more := ""
		if len(problems) > maxProblemsShown {
			more = fmt.Sprintf("; and %d more", len(problems)-maxProblemsShown)
			problems = problems[:maxProblemsShown]
		}
		return fmt.Errorf("%w: %d in all: %s%s", ErrRecordsMissing, r.Missing, strings.Join(problems, "; "), more)
	}
	return nil
}

// reportProblems names the judged windows with records missing.
func reportProblems(r audit.CountReport) []string {
	var out []string
	for _, w := range r.Windows {
		if len(w.Missing) == 0 {
			continue
		}
		var what []string
		for _, g := range w.Missing {
			what = append(what, fmt.Sprintf("%d missing at %s (after %s)", g.Records, g.Stage, g.After))
		}
		out = append(out, fmt.Sprintf("%s %s: %s", w.Topic, w.Window.Format("2006-01-02T15:04Z"), strings.Join(what, ", ")))
	}
	return out
}

// printCountReport prints a line per window and topic: each stage's
// count and what is missing or extra.
func printCountReport(w io.Writer, r audit.CountReport) error {
	header := []string{"WINDOW", "TOPIC"}
	for _, s := range r.Stages {
		header = append(header, strings.ToUpper(s))
	}
	header = append(header, "STATUS")
	rows := make([][]string, 0, len(r.Windows))
	for _, x := range r.Windows {
		row := []string{x.Window.Format("2006-01-02 15:04"), x.Topic}
		for _, s := range r.Stages {
			c, ok := x.Stages[s]
			switch {
			case !ok:
				row = append(row, "-")
			case c.Raw > c.Count:
				row = append(row, fmt.Sprintf("%d (+%d deduped)", c.Count, c.Raw-c.Count))
			default:
				row = append(row, fmt.Sprint(c.Count))
			}
		}
		var status []string
		for _, g := range x.Missing {
			status = append(status, fmt.Sprintf("MISSING %d at %s", g.Records, g.Stage))
		}
		for _, g := range x.Extra {
			status = append(status, fmt.Sprintf("extra %d at %s", g.Records, g.Stage))
		}
		switch {
		case x.Open:
			status = append(status, "open")
		case len(status) == 0:
			status = append(status, "ok")
		}
		rows = append(rows, append(row, strings.Join(status, ", ")))
	}
	if err := clientopts.Table(w, header, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nsince %s, settle %s: %d missing, %d extra\n", r.Since.Format(time.RFC3339), r.Settle, r.Missing, r.Extra)
	return err
}
