package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// DefaultSettle is how long after its end a window is judged: until
	// then the stages may still be counting it (a mirror behind, a sink
	// whose object is not committed, a count not yet published).
	DefaultSettle = 2 * time.Minute
	// countsLookback is how far before --since the counts topic is read
	// (by publish time): a count of a window is published after the
	// window starts, but on another host's clock.
	countsLookback = 10 * time.Minute
	// maxReportTopics bounds the topics a report reads (the topic stage
	// reads each whole from --since).
	maxReportTopics = 1000
)

// StageCount is one stage's count of one topic in one window, merged
// over its instances and entries.
type StageCount struct {
	// Count is the distinct records: the offsets in the union of every
	// instance's ranges, plus the records counted without an offset.
	Count int64 `json:"count"`
	// Raw is every record counted by every instance: Raw minus Count is
	// what the dedupe removed (a stage that ran twice over the same
	// offsets: a retry, a restart from an older commit).
	Raw       int64 `json:"raw"`
	Instances int   `json:"instances"`
}

// Gap is a stage's difference to the stage before it in a window.
type Gap struct {
	Stage   string `json:"stage"`
	After   string `json:"after"` // the stage compared with
	Records int64  `json:"records"`
}

// WindowCounts is a report's line: a topic's window and its stages.
type WindowCounts struct {
	Window time.Time             `json:"window"`
	Topic  string                `json:"topic"`
	Stages map[string]StageCount `json:"stages"`
	// Open: the window ended less than Settle ago and is not judged.
	Open    bool  `json:"open"`
	Missing []Gap `json:"missing,omitempty"` // a stage lower than the one before it
	Extra   []Gap `json:"extra,omitempty"`   // a stage higher than the one before it (after dedupe)
}

// CountReport compares the stages' counts, window by window.
type CountReport struct {
	Since  time.Time `json:"since"`
	Settle string    `json:"settle"`
	// Stages are every stage seen, in the order compared; a topic compares
	// only the stages that counted something of it in the report's range.
	Stages      []string       `json:"stages"`
	Windows     []WindowCounts `json:"windows"`
	Missing     int64          `json:"missing"` // over the judged windows
	Extra       int64          `json:"extra"`
	Undecodable int            `json:"undecodable"` // records of the counts topic that are not count records
}

type stageKey struct {
	stage, topic string
	window       int64
}

type merged struct {
	set       offsetSet
	unranged  int64
	raw       int64
	instances map[string]bool
}

// mergeCounts merges count records (the newest of each key; older
// versions of a key are ignored) into per-stage counts by (stage, topic,
// window), deduplicating the offsets: an offset counted by two instances
// of a stage (or twice by one) counts once.
func mergeCounts(recs []CountRecord) map[stageKey]StageCount {
	newest := map[string]CountRecord{}
	for _, r := range recs {
		// A key's versions are cumulative: the newest has the most.
		if old, ok := newest[r.Key()]; !ok || r.Count >= old.Count {
			newest[r.Key()] = r
		}
	}
	ms := map[stageKey]*merged{}
	for _, r := range newest {
		k := stageKey{r.Stage, r.Topic, r.Window}
		m := ms[k]
		if m == nil {
			m = &merged{set: offsetSet{}, instances: map[string]bool{}}
			ms[k] = m
		}
		for _, rg := range r.Ranges {
			m.set.add(rg)
		}
		m.unranged += r.Unranged
		m.raw += r.Count
		m.instances[r.Instance] = true
	}
	out := make(map[stageKey]StageCount, len(ms))
	for k, m := range ms {
		out[k] = StageCount{Count: m.set.size() + m.unranged, Raw: m.raw, Instances: len(m.instances)}
	}
	return out
}

// compare builds the report's windows from the merged counts: for every
// topic, the stages that counted any of it, in pipeline order; each
// judged window (ended settle before now; every window when settle is 0)
// compares every stage with the one before it.
func compare(counts map[stageKey]StageCount, since, now time.Time, settle time.Duration) CountReport {
	r := CountReport{Since: since, Settle: settle.String(), Windows: []WindowCounts{}, Stages: []string{}}
	stagesOf := map[string][]string{}
	rows := map[windowKey]*WindowCounts{}
	allStages := map[string]bool{}
	for k, c := range counts {
		if !slices.Contains(stagesOf[k.topic], k.stage) {
			stagesOf[k.topic] = append(stagesOf[k.topic], k.stage)
		}
		allStages[k.stage] = true
		wk := windowKey{k.topic, k.window}
		row := rows[wk]
		if row == nil {
			start := time.UnixMilli(k.window).UTC()
			row = &WindowCounts{Window: start, Topic: k.topic, Stages: map[string]StageCount{},
				Open: settle > 0 && start.Add(CountWindow).After(now.Add(-settle))}
			rows[wk] = row
		}
		row.Stages[k.stage] = c
	}
	for s := range allStages {
		r.Stages = append(r.Stages, s)
	}
	slices.SortFunc(r.Stages, compareStages)
	for _, row := range rows {
		stages := stagesOf[row.Topic]
		slices.SortFunc(stages, compareStages)
		for _, s := range stages { // a stage present for the topic and silent in the window counted 0
			if _, ok := row.Stages[s]; !ok {
				row.Stages[s] = StageCount{}
			}
		}
		if !row.Open {
			for i := 1; i < len(stages); i++ {
				prev, cur := row.Stages[stages[i-1]].Count, row.Stages[stages[i]].Count
				if cur < prev {
					row.Missing = append(row.Missing, Gap{Stage: stages[i], After: stages[i-1], Records: prev - cur})
					r.Missing += prev - cur
				} else if cur > prev {
					row.Extra = append(row.Extra, Gap{Stage: stages[i], After: stages[i-1], Records: cur - prev})
					r.Extra += cur - prev
				}
			}
		}
		r.Windows = append(r.Windows, *row)
	}
	slices.SortFunc(r.Windows, func(a, b WindowCounts) int {
		if c := a.Window.Compare(b.Window); c != 0 {
			return c
		}
		if a.Topic < b.Topic {
			return -1
		}
		if a.Topic > b.Topic {
			return 1
		}
		return 0
	})
	return r
}

// ReportOptions configure BuildCountReport.
type ReportOptions struct {
	// NewClient builds a client of the cluster with the counts topic (and,
	// for the topic stage, the topics).
	NewClient   func(opts ...kgo.Opt) (*kgo.Client, error)
	CountsTopic string   // "": DefaultCountsTopic
	Topics      []string // only these topics; none: every topic counted
	Since       time.Time
	// Settle: a window is judged once it ended Settle ago; 0:
	// DefaultSettle; negative: every window is judged, the current one
	// too (for a pipeline whose stages are all stopped and flushed).
	Settle time.Duration
	// CountTopics adds the topic stage: the records of each topic, read
	// from the first offset at or after Since up to its end offsets as of
	// the start of the report, counted by the window of their timestamp.
	CountTopics bool
	// Expect names stages every topic must have: one silent since Since
	// (a stage stopped all along) counts 0 in every window, where
	// otherwise it would not be compared at all.
	Expect []string
	Now    time.Time // the report's time; zero: time.Now()
}

// expectStages adds a zero count of each expected stage to every (topic,
// window) that has counts and none of it.
func expectStages(counts map[stageKey]StageCount, expect []string) {
	if len(expect) == 0 {
		return
	}
	windows := map[windowKey]bool{}
	for k := range counts {
		windows[windowKey{k.topic, k.window}] = true
	}
	for w := range windows {
		for _, s := range expect {
			k := stageKey{s, w.topic, w.window}
			if _, ok := counts[k]; !ok {
				counts[k] = StageCount{}
			}
		}
	}
}

// BuildCountReport reads the counts topic (from countsLookback before
// Since to its end as of now), merges the stages' counts with dedupe,
// counts the topics themselves when asked, and compares the stages window
// by window from Since.
func BuildCountReport(ctx context.Context, o ReportOptions) (CountReport, error) {
	if o.NewClient == nil {
		panic("BUG: audit: ReportOptions.NewClient is nil")
	}
	if o.CountsTopic == "" {
		o.CountsTopic = DefaultCountsTopic
	}
	switch {
	case o.Settle < 0:
		o.Settle = 0
	case o.Settle == 0:
		o.Settle = DefaultSettle
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	cl, err := o.NewClient()
	if err != nil {
		return CountReport{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	sinceWindow := windowOf(o.Since)
	want := func(topic string) bool { return len(o.Topics) == 0 || slices.Contains(o.Topics, topic) }
	var recs []CountRecord
	undecodable := 0
	err = readTopic(ctx, o.NewClient, adm, o.CountsTopic, o.Since.Add(-countsLookback), func(r *kgo.Record) {
		c, err := DecodeCount(r.Value)
		if err != nil {
			undecodable++
			return
		}
		if c.Window >= sinceWindow && want(c.Topic) {
			recs = append(recs, c)
		}
	})
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return CountReport{}, fmt.Errorf("audit: no counts topic %s on this cluster: run the stages with --audit (sluice collect --audit, sluice mirror --audit) and --audit-brokers here, or name the topic with --counts-topic: %w", o.CountsTopic, err)
	}
	if err != nil {
		return CountReport{}, fmt.Errorf("audit: reading the counts topic %s: %w", o.CountsTopic, err)
	}
	counts := mergeCounts(recs)
	if o.CountTopics {
		topics := slices.Clone(o.Topics)
		for k := range counts {
			if !slices.Contains(topics, k.topic) {
				topics = append(topics, k.topic)
			}
		}
		if len(topics) > maxReportTopics {
			return CountReport{}, fmt.Errorf("audit: %d topics to count, over %d; name some with --topic", len(topics), maxReportTopics)
		}
		slices.Sort(topics)
		for _, t := range topics {
			perWindow := map[int64]int64{}
			err := readTopic(ctx, o.NewClient, adm, t, time.UnixMilli(sinceWindow), func(r *kgo.Record) {
				if r.Attrs.IsControl() {
					return
				}
				if w := windowOf(r.Timestamp); w >= sinceWindow {
					perWindow[w]++
				}
			})
			if err != nil {
				return CountReport{}, fmt.Errorf("audit: counting topic %s: %w", t, err)
			}
			for w, n := range perWindow {
				counts[stageKey{StageTopic, t, w}] = StageCount{Count: n, Raw: n}
			}
			// The topic is read: where it has nothing, it counts 0 (and
			// is compared), not absent.
			for k := range counts {
				if k.topic == t && k.stage != StageTopic {
					tk := stageKey{StageTopic, t, k.window}
					if _, ok := counts[tk]; !ok {
						counts[tk] = StageCount{}
					}
				}
			}
		}
	}
	expectStages(counts, o.Expect)
	r := compare(counts, time.UnixMilli(sinceWindow).UTC(), o.Now, o.Settle)
	r.Undecodable = undecodable
	return r, nil
}

// readTopic calls fn with every record of topic from the first offset at
// or after the time from, per partition, to the end offsets read first.
func readTopic(ctx context.Context, newClient func(...kgo.Opt) (*kgo.Client, error), adm *kadm.Client, topic string, from time.Time, fn func(*kgo.Record)) error {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets: %w", err)
	}
	starts, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("offsets at %s: %w", from.Format(time.RFC3339), err)
	}
	logStarts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = logStarts.Error()
	}
	if err != nil {
		return fmt.Errorf("start offsets: %w", err)
	}
	at := map[int32]kgo.Offset{}
	end := map[int32]int64{}
	ends.Each(func(l kadm.ListedOffset) {
		s, ok := starts.Lookup(topic, l.Partition)
		start := s.Offset
		if !ok || start < 0 || start > l.Offset {
			start = l.Offset // nothing at or after from
		}
		if ls, ok := logStarts.Lookup(topic, l.Partition); ok && ls.Offset > start {
			start = ls.Offset // deleted before it (retention, DeleteRecords)
		}
		if start < l.Offset {
			at[l.Partition] = kgo.NewOffset().At(start)
			end[l.Partition] = l.Offset
		}
	})
	if len(at) == 0 {
		return nil
	}
	cl, err := newClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: at}),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(end) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			left := make([]int32, 0, len(end))
			for p := range end {
				left = append(left, p)
			}
			slices.Sort(left)
			return fmt.Errorf("partitions %v not read to their end: %w", left, ctx.Err())
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("partition %d: %w", p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			e, ok := end[r.Partition]
			if !ok || r.Offset >= e {
				return
			}
			fn(r)
			if r.Offset+1 >= e {
				delete(end, r.Partition)
			}
		})
	}
	return nil
}
