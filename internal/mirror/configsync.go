package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Following the source's topic configs after creation, as MM2's
// MirrorSourceConnector.syncTopicConfigs does, but without its full
// replace (see the package doc, "What is copied").
//
// A topic's copied configs are its source's DYNAMIC_TOPIC_CONFIG ones that
// are neither in uncopiedConfigs nor sensitive. At every topic sync:
//
//   - a copied config whose value differs from the target's
//     DYNAMIC_TOPIC_CONFIG one (or that the target topic does not set) is
//     SET on the target;
//   - a config the mirror set (or found equal) in this run and that the
//     source no longer sets is DELETEd on the target, when the target still
//     has the value the mirror left there;
//   - every other config of the target topic is left alone: an operator's
//     own settings there stay, unless the source sets the same config.
//
// What the mirror set is remembered in memory (Mirror.synced): a config
// removed from the source while no mirror ran stays on the target.

// configDiff is what one target topic needs.
type configDiff struct {
	topic, target string // source and target topic names
	ops           []kmsg.IncrementalAlterConfigsRequestResourceConfig
	from          map[string]*string // the target's values before, by config
	same          map[string]string  // copied configs already equal on the target
}

// copiedConfigs returns the configs of rc that the mirror copies.
func copiedConfigs(rc kadm.ResourceConfig) map[string]string {
	out := map[string]string{}
	for _, c := range rc.Configs {
		if c.Source != kmsg.ConfigSourceDynamicTopicConfig || uncopiedConfigs[c.Key] || c.Sensitive || c.Value == nil {
			continue
		}
		out[c.Key] = *c.Value
	}
	return out
}

// topicConfigs returns the DYNAMIC_TOPIC_CONFIG values of rc.
func topicConfigs(rc kadm.ResourceConfig) map[string]string {
	out := map[string]string{}
	for _, c := range rc.Configs {
		if c.Source == kmsg.ConfigSourceDynamicTopicConfig && c.Value != nil {
			out[c.Key] = *c.Value
		}
	}
	return out
}

// syncConfigs makes the target topics of the source topics given follow
// their configs (see above). Called with topicMu held. A failure to
// describe either side is returned; a config the target refuses is
// logged and tried again only once its source value changes.
func (m *Mirror) syncConfigs(ctx context.Context, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	targets := m.targetNames(topics)
	src, err := m.srcAdm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return fmt.Errorf("mirror: describe configs of the source topics: %w", err)
	}
	dst, err := m.dstAdm.DescribeTopicConfigs(ctx, targets...)
	if err != nil {
		return fmt.Errorf("mirror: describe configs of the target topics: %w", err)
	}
	var diffs []*configDiff
	var errs []error
	for i, t := range topics {
		tt := targets[i]
		s, err := configsOn(src, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("mirror: describe configs of source topic %s: %w", t, err))
			continue
		}
		d, err := configsOn(dst, tt)
		if err != nil {
			errs = append(errs, fmt.Errorf("mirror: describe configs of target topic %s: %w", tt, err))
			continue
		}
		if diff := m.diffConfigs(t, tt, copiedConfigs(s), topicConfigs(d)); diff != nil {
			diffs = append(diffs, diff)
		}
	}
	if len(diffs) > 0 {
		if err := m.alterConfigs(ctx, diffs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// configsOn is topic's configs in rs, or why they are not there.
func configsOn(rs kadm.ResourceConfigs, topic string) (kadm.ResourceConfig, error) {
	rc, err := rs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	return rc, err
}

// diffConfigs compares source topic t's copied configs want with target
// topic tt's own have, and returns the changes, or nil when there are
// none. It forgets the configs the mirror set that the target no longer
// holds as it left them. Called with topicMu held.
func (m *Mirror) diffConfigs(t, tt string, want, have map[string]string) *configDiff {
	diff := &configDiff{topic: t, target: tt, from: map[string]*string{}, same: map[string]string{}}
	set := m.synced[tt]
	refused := m.refused[tt]
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := want[k]
		if old, ok := have[k]; ok && old == v {
			diff.same[k] = v
			continue
		}
		if r, ok := refused[k]; ok && r == v {
			continue // refused before: tried again when the source changes it
		}
		if old, ok := have[k]; ok {
			diff.from[k] = &old
		}
		diff.ops = append(diff.ops, kmsg.IncrementalAlterConfigsRequestResourceConfig{
			Name: k, Op: kmsg.IncrementalAlterConfigOpSet, Value: &v})
	}
	var gone []string
	for k, v := range set {
		if _, ok := want[k]; ok {
			continue
		}
		if old, ok := have[k]; ok && old == v {
			gone = append(gone, k)
			continue
		}
		delete(set, k) // changed or removed on the target since: not the mirror's any more
	}
	slices.Sort(gone)
	for _, k := range gone {
		old := set[k]
		diff.from[k] = &old
		diff.ops = append(diff.ops, kmsg.IncrementalAlterConfigsRequestResourceConfig{
			Name: k, Op: kmsg.IncrementalAlterConfigOpDelete})
	}
	for k, v := range diff.same {
		m.setSynced(tt, k, v)
	}
	if len(diff.ops) == 0 {
		return nil
	}
	return diff
}

// setSynced notes that the mirror left config k of target topic tt at v;
// topicMu is held.
func (m *Mirror) setSynced(tt, k, v string) {
	if m.synced[tt] == nil {
		m.synced[tt] = map[string]string{}
	}
	m.synced[tt][k] = v
}

// alterConfigs applies the diffs in one IncrementalAlterConfigs request;
// the configs of a topic the target refuses as a whole are then tried one
// by one, so that one config the target does not take (one it does not
// know) holds back none of the others.
func (m *Mirror) alterConfigs(ctx context.Context, diffs []*configDiff) error {
	failed, err := m.alterOnce(ctx, diffs)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range failed {
		for _, op := range d.ops {
			one := &configDiff{topic: d.topic, target: d.target, from: d.from,
				ops: []kmsg.IncrementalAlterConfigsRequestResourceConfig{op}}
			bad, err := m.alterOnce(ctx, []*configDiff{one})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, b := range bad {
				m.metrics.configRefused.WithLabelValues(d.topic).Inc()
				if !refusesValue(b.err) {
					// Not the value (authorization, a topic being
					// deleted): tried again at the next sync.
					m.log.Warn("the target refused a topic config change; retried at the next topic sync",
						"topic", d.target, "config", op.Name, "op", opName(op.Op), "value", strOrNil(op.Value), "err", b.err)
					continue
				}
				if op.Op == kmsg.IncrementalAlterConfigOpSet {
					if m.refused[d.target] == nil {
						m.refused[d.target] = map[string]string{}
					}
					m.refused[d.target][op.Name] = *op.Value
				}
				m.log.Warn("the target refused a topic config of the source; tried again when the source changes it",
					"topic", d.target, "config", op.Name, "op", opName(op.Op), "value", strOrNil(op.Value), "err", b.err)
			}
		}
	}
	return errors.Join(errs...)
}

// failedDiff is a diff the target refused, with its reason.
type failedDiff struct {
	*configDiff
	err error
}

// alterOnce sends one IncrementalAlterConfigs request with the diffs and
// applies the answers: each topic's changes are logged, counted and noted
// in Mirror.synced, or returned as failed when the target refused them
// with a non-retriable error (a retriable one is returned as the error,
// and tried again at the next sync).
func (m *Mirror) alterOnce(ctx context.Context, diffs []*configDiff) ([]failedDiff, error) {
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	byName := map[string]*configDiff{}
	for _, d := range diffs {
		r := kmsg.NewIncrementalAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName, r.Configs = kmsg.ConfigResourceTypeTopic, d.target, d.ops
		req.Resources = append(req.Resources, r)
		byName[d.target] = d
	}
	resp, err := req.RequestWith(ctx, m.dst)
	if err != nil {
		return nil, fmt.Errorf("mirror: alter configs of target topics: %w", err)
	}
	var failed []failedDiff
	var errs []error
	for _, r := range resp.Resources {
		d := byName[r.ResourceName]
		if d == nil {
			continue
		}
		delete(byName, r.ResourceName)
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			if r.ErrorMessage != nil && *r.ErrorMessage != "" {
				err = fmt.Errorf("%w: %s", err, *r.ErrorMessage)
			}
			var ke *kerr.Error
			if errors.As(err, &ke) && ke.Retriable {
				errs = append(errs, fmt.Errorf("mirror: alter configs of target topic %s: %w", d.target, err))
				continue
			}
			failed = append(failed, failedDiff{d, err})
			continue
		}
		for _, op := range d.ops {
			if op.Op == kmsg.IncrementalAlterConfigOpSet {
				m.setSynced(d.target, op.Name, *op.Value)
				delete(m.refused[d.target], op.Name)
				m.metrics.configChanges.WithLabelValues(d.topic, "set").Inc()
				m.log.Info("changed a config of the target topic as on the source", "topic", d.target,
					"config", op.Name, "from", strOrNil(d.from[op.Name]), "to", *op.Value)
			} else {
				delete(m.synced[d.target], op.Name)
				m.metrics.configChanges.WithLabelValues(d.topic, "delete").Inc()
				m.log.Info("deleted a config of the target topic, as the source no longer sets it", "topic", d.target,
					"config", op.Name, "was", strOrNil(d.from[op.Name]))
			}
		}
	}
	for name := range byName {
		errs = append(errs, fmt.Errorf("mirror: alter configs: no answer for target topic %s", name))
	}
	return failed, errors.Join(errs...)
}

// refusesValue says whether a target's answer refuses the config or its
// value itself (a config it does not know, a value out of its range, its
// policy), which asking again does not change.
func refusesValue(err error) bool {
	return errors.Is(err, kerr.InvalidConfig) || errors.Is(err, kerr.PolicyViolation) || errors.Is(err, kerr.InvalidRequest)
}

func opName(op kmsg.IncrementalAlterConfigOp) string {
	if op == kmsg.IncrementalAlterConfigOpDelete {
		return "delete"
	}
	return "set"
}

func strOrNil(s *string) string {
	if s == nil {
		return "(not set)"
	}
	return *s
}
