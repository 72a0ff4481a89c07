package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partitionOffsets lists the start or end offsets of every partition of
// the topic.
func partitionOffsets(ctx context.Context, o Options, end bool) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.seeds()...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	list := adm.ListStartOffsets
	if end {
		list = adm.ListEndOffsets
	}
	listed, err := list(ctx, o.Topic)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", o.Topic, err)
	}
	out := map[int32]int64{}
	for p, lo := range listed[o.Topic] {
		if lo.Err != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", o.Topic, p, lo.Err)
		}
		out[p] = lo.Offset
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s not found at %s", o.Topic, o.Brokers)
	}
	return out, nil
}

func runConsume(ctx context.Context, o Options) (Result, error) {
	starts, err := partitionOffsets(ctx, o, false)
	if err != nil {
		return Result{}, err
	}
	ends, err := partitionOffsets(ctx, o, true)
	if err != nil {
		return Result{}, err
	}
	// Without --records, read up to the end offsets seen now.
	target := o.Records
	if target == 0 {
		for p, e := range ends {
			if e > starts[p] {
				target += e - starts[p]
			}
		}
		if target == 0 {
			return Result{}, fmt.Errorf("topic %s is empty: produce to it first (sluice bench produce)", o.Topic)
		}
	}
	from := map[int32]kgo.Offset{}
	for p, s := range starts {
		from[p] = kgo.NewOffset().At(s)
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(o.seeds()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: from}),
		// Transaction markers take offsets too: see them, so that the end
		// offsets are reached when a marker is last; they are not counted.
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return Result{}, err
	}
	defer cl.Close()

	runCtx := ctx
	if o.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	var m meter
	stop := startProgress(o, &m, "consume", target, false)
	start := time.Now()
	next := map[int32]int64{}
	for p, s := range starts {
		next[p] = s
	}
	done := func() bool {
		if o.Records > 0 {
			return m.records.Load() >= o.Records
		}
		for p, e := range ends {
			if next[p] < e {
				return false
			}
		}
		return true
	}
	var last time.Time
	for !done() {
		fs := cl.PollFetches(runCtx)
		if runCtx.Err() != nil {
			break
		}
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				m.fail(err)
			}
		})
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			for _, r := range fp.Records {
				if o.Records > 0 && m.records.Load() >= o.Records {
					return
				}
				if o.Records == 0 && r.Offset >= ends[fp.Partition] {
					return // past the end seen at the start
				}
				if r.Attrs.IsControl() {
					next[fp.Partition] = r.Offset + 1
					continue
				}
				m.ok(len(r.Key)+len(r.Value), -1)
				next[fp.Partition] = r.Offset + 1
			}
		})
		last = time.Now()
	}
	stop()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if last.IsZero() {
		last = time.Now()
	}
	if !done() {
		fmt.Fprintf(o.Stderr, "note: stopped by --duration after %d of %d records\n", m.records.Load(), target)
	}
	if m.firstErr != nil {
		fmt.Fprintf(o.Stderr, "first error: %v\n", m.firstErr)
	}
	return m.result(ModeConsume, last.Sub(start), false), nil
}
