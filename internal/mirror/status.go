package mirror

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// PartitionStatus compares a source partition with its copy.
type PartitionStatus struct {
	Topic       string `json:"topic"`        // source topic
	TargetTopic string `json:"target_topic"` // TopicPrefix + Topic
	Partition   int32  `json:"partition"`
	SourceEnd   int64  `json:"source_end"`  // source high watermark
	TargetEnd   int64  `json:"target_end"`  // target high watermark; -1 when the target has no such partition
	Committed   int64  `json:"committed"`   // the mirror group's committed source offset; -1 when none
	Lag         int64  `json:"lag_records"` // SourceEnd minus Committed (all of SourceEnd when nothing is committed)
}

// StatusOptions say what Status compares.
type StatusOptions struct {
	Source, Target []string
	Topics         string // regexp, as Options.Topics
	Group          string // "" is DefaultGroup
	TopicPrefix    string
	Timeout        time.Duration // 0: DefaultTimeout
	// PreserveOffsets: the copies keep the source's offsets, so the
	// target's end is how far the mirror has copied (Committed) and no
	// group is read.
	PreserveOffsets bool
}

// Status lists, for every source topic that matches, each partition's end
// on both sides and the mirror group's lag (from its committed offsets: it
// lags behind what is copied by at most CommitInterval). It needs no
// running mirror.
func Status(ctx context.Context, o StatusOptions) ([]PartitionStatus, error) {
	if o.Topics == "" {
		return nil, fmt.Errorf("mirror: no topics regexp; give one (\".*\" for all topics)")
	}
	re, err := regexpFull(o.Topics)
	if err != nil {
		return nil, err
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	admin := func(seeds []string) (*kadm.Client, error) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ClientID(clientID), kgo.DialTimeout(o.Timeout))
		if err != nil {
			return nil, err
		}
		a := kadm.NewClient(cl)
		a.SetTimeoutMillis(int32(o.Timeout.Milliseconds()))
		return a, nil
	}
	src, err := admin(o.Source)
	if err != nil {
		return nil, fmt.Errorf("mirror: source: %w", err)
	}
	defer src.Close()
	dst, err := admin(o.Target)
	if err != nil {
		return nil, fmt.Errorf("mirror: target: %w", err)
	}
	defer dst.Close()
	topics, err := src.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("mirror: cannot list the source's topics at %s: %w", strings.Join(o.Source, ","), err)
	}
	var names, targets []string
	for _, t := range topics.Names() {
		if !strings.HasPrefix(t, "__") && re.MatchString(t) {
			names = append(names, t)
			targets = append(targets, o.TopicPrefix+t)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	srcEnds, err := src.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("mirror: source end offsets: %w", err)
	}
	dstEnds, err := dst.ListEndOffsets(ctx, targets...)
	if err != nil {
		return nil, fmt.Errorf("mirror: cannot list the target's end offsets at %s: %w", strings.Join(o.Target, ","), err)
	}
	var committed kadm.OffsetResponses
	if !o.PreserveOffsets {
		if committed, err = src.FetchOffsets(ctx, o.Group); err != nil {
			return nil, fmt.Errorf("mirror: offsets of group %s on the source: %w", o.Group, err)
		}
	}
	var out []PartitionStatus
	srcEnds.Each(func(l kadm.ListedOffset) {
		s := PartitionStatus{Topic: l.Topic, TargetTopic: o.TopicPrefix + l.Topic, Partition: l.Partition,
			SourceEnd: l.Offset, TargetEnd: -1, Committed: -1}
		if d, ok := dstEnds.Lookup(s.TargetTopic, l.Partition); ok && d.Err == nil {
			s.TargetEnd = d.Offset
		}
		if c, ok := committed.Lookup(l.Topic, l.Partition); ok && c.Err == nil && c.At >= 0 {
			s.Committed = c.At
		}
		if o.PreserveOffsets {
			s.Committed = s.TargetEnd
		}
		s.Lag = s.SourceEnd - max(s.Committed, 0)
		out = append(out, s)
	})
	slices.SortFunc(out, func(a, b PartitionStatus) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	return out, nil
}
