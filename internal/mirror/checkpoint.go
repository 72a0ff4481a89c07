package mirror

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Checkpoint translates, once, the committed offsets of the source's
// consumer groups on mirrored topics and commits them to the same groups on
// the target (see the package doc for the rules). It returns how many
// partition offsets it committed. Run calls it every CheckpointInterval;
// it is safe to call concurrently with Run.
func (m *Mirror) Checkpoint(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	listed, err := m.srcAdm.ListGroups(ctx)
	if err != nil {
		return 0, fmt.Errorf("mirror: checkpoint: list source groups: %w", err)
	}
	var groups []string
	for _, g := range listed.Sorted() {
		if g.Group != m.opts.Group && (g.ProtocolType == "consumer" || g.ProtocolType == "") {
			groups = append(groups, g.Group)
		}
	}
	if len(groups) == 0 {
		return 0, nil
	}
	fetched := m.srcAdm.FetchManyOffsets(ctx, groups...)
	translated := map[string]kadm.Offsets{}
	m.mu.Lock()
	for _, g := range groups {
		r, ok := fetched[g]
		if !ok || r.Err != nil {
			continue
		}
		r.Fetched.Each(func(o kadm.OffsetResponse) {
			if o.Err != nil || o.At < 0 || !m.Matches(o.Topic) {
				return
			}
			st := m.parts[tp{o.Topic, o.Partition}]
			if st == nil {
				return
			}
			at, ok := st.translate(o.At)
			if m.pres != nil {
				// The same offsets: written once the copy has reached
				// them, so that a consumer moving over finds its record.
				at, ok = o.At, st.next >= o.At
			}
			if !ok {
				return
			}
			if translated[g] == nil {
				translated[g] = kadm.Offsets{}
			}
			offs := translated[g]
			offs.Add(kadm.Offset{Topic: m.opts.TopicPrefix + o.Topic, Partition: o.Partition, At: at, LeaderEpoch: -1})
		})
	}
	m.mu.Unlock()
	if len(translated) == 0 {
		return 0, nil
	}
	names := make([]string, 0, len(translated))
	for g := range translated {
		names = append(names, g)
	}
	described, err := m.dstAdm.DescribeGroups(ctx, names...)
	if err != nil {
		return 0, fmt.Errorf("mirror: checkpoint: describe target groups: %w", err)
	}
	current := m.dstAdm.FetchManyOffsets(ctx, names...)
	n := 0
	var errs []error
	for g, offs := range translated {
		if d, ok := described[g]; ok && len(d.Members) > 0 {
			continue // its consumers commit their own offsets
		}
		if cur, ok := current[g]; ok && cur.Err == nil {
			offs.KeepFunc(func(o kadm.Offset) bool {
				c, ok := cur.Fetched.Lookup(o.Topic, o.Partition)
				return !ok || c.Err != nil || c.At < o.At
			})
		}
		if len(offs) == 0 {
			continue
		}
		resp, err := m.dstAdm.CommitOffsets(ctx, g, offs)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("mirror: checkpoint: commit group %s on the target: %w", g, err))
			continue
		}
		k := 0
		offs.Each(func(kadm.Offset) { k++ })
		n += k
		m.metrics.translated.WithLabelValues(g).Add(float64(k))
	}
	return n, errors.Join(errs...)
}
