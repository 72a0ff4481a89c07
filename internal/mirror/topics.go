package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// uncopiedConfigs are the dynamic topic configs never copied to the target,
// at creation or in a later sync (and never deleted there): MM2's
// DefaultConfigPropertyFilter's default config.properties.exclude, the two
// bounds that replaced message.timestamp.difference.max.ms (KIP-937), and
// Sluice's mirror mark. They describe the source cluster's operation
// (throttles, durability), not the data, and
// message.timestamp.type=LogAppendTime would replace the copied timestamps.
var uncopiedConfigs = map[string]bool{
	"follower.replication.throttled.replicas": true,
	"leader.replication.throttled.replicas":   true,
	"message.timestamp.difference.max.ms":     true,
	"message.timestamp.before.max.ms":         true,
	"message.timestamp.after.max.ms":          true,
	"message.timestamp.type":                  true,
	"unclean.leader.election.enable":          true,
	"min.insync.replicas":                     true,
	// A source topic that is itself an offset-preserving copy: the mark
	// says where that cluster's copy comes from, not this one's. Copied,
	// it would make the target topic read-only to all but the mirror and
	// pass over every batch a translating mirror sends (their offsets are
	// the producer's zeros); the offset-preserving mode sets its own.
	MirrorSourceConfig: true,
}

// Matches says whether the mirror copies source topic t.
func (m *Mirror) Matches(t string) bool {
	return !strings.HasPrefix(t, "__") && m.re.MatchString(t)
}

// syncTopics makes sure every matching source topic exists on the target
// with at least its partitions, and consumes the new ones; with configs,
// the target topics that existed before it follow their source's configs
// (configsync.go; a failure there is only logged). One sync runs at a
// time.
func (m *Mirror) syncTopics(ctx context.Context, configs bool) error {
	m.topicMu.Lock()
	defer m.topicMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	src, err := m.srcAdm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("mirror: list source topics: %w", err)
	}
	var want []string
	count := map[string]int{}
	for _, d := range src.Sorted() {
		if d.Err != nil || !m.Matches(d.Topic) {
			continue
		}
		want = append(want, d.Topic)
		count[d.Topic] = len(d.Partitions)
	}
	if len(want) == 0 {
		return nil
	}
	targets := m.targetNames(want)
	dst, err := m.dstAdm.ListTopics(ctx, targets...)
	if err != nil {
		return fmt.Errorf("mirror: list target topics: %w", err)
	}
	var added, existed []string
	var errs []error
	for _, t := range want {
		tt := m.opts.TopicPrefix + t
		n := count[t]
		d, ok := dst[tt]
		if m.pres != nil && ok && d.Err == nil && !m.checked[tt] {
			if err := m.checkMirrorTopic(ctx, tt); err != nil {
				return err // not a copy to write to: the mirror stops
			}
			m.checked[tt] = true
		}
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			if err := m.createTopic(ctx, t, tt, n); err != nil {
				errs = append(errs, err)
				continue
			}
			if m.pres != nil {
				if err := m.checkMirrorTopic(ctx, tt); err != nil {
					return err // not a copy to write to: the mirror stops
				}
				m.checked[tt] = true
			}
		case d.Err != nil:
			errs = append(errs, fmt.Errorf("mirror: target topic %s: %w", tt, d.Err))
			continue
		case len(d.Partitions) < n:
			resp, err := m.dstAdm.UpdatePartitions(ctx, n, tt)
			if err == nil {
				err = resp.Error()
			}
			if err != nil && !errors.Is(err, kerr.InvalidPartitions) {
				errs = append(errs, fmt.Errorf("mirror: add partitions to target topic %s (%d -> %d): %w", tt, len(d.Partitions), n, err))
				continue
			}
			m.log.Info("added partitions to the target topic", "topic", tt, "from", len(d.Partitions), "to", n)
			m.dst.ForceMetadataRefresh()
			existed = append(existed, t)
		default:
			existed = append(existed, t)
		}
		if _, seen := m.topics[t]; !seen {
			added = append(added, t)
		}
		m.topics[t] = int32(n)
	}
	if configs {
		if err := m.syncConfigs(ctx, existed); err != nil {
			m.log.Warn("following the source's topic configs failed; retried at the next topic sync", "err", err)
		}
	}
	if len(added) > 0 {
		m.log.Info("mirroring topics", "topics", strings.Join(added, ","))
		if m.pres != nil {
			m.startPartitions()
		} else {
			m.src.AddConsumeTopics(added...)
		}
	} else if m.pres != nil {
		m.startPartitions() // partitions added to known topics
	}
	return errors.Join(errs...)
}

// createTopic creates target topic tt for source topic t with n partitions
// and t's dynamic configs.
func (m *Mirror) createTopic(ctx context.Context, t, tt string, n int) error {
	rcs, err := m.srcAdm.DescribeTopicConfigs(ctx, t)
	if err != nil {
		return fmt.Errorf("mirror: describe configs of source topic %s: %w", t, err)
	}
	configs := map[string]*string{}
	var names []string
	for _, rc := range rcs {
		if rc.Err != nil {
			return fmt.Errorf("mirror: describe configs of source topic %s: %w", t, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Source != 1 || uncopiedConfigs[c.Key] || c.Sensitive { // 1: DYNAMIC_TOPIC_CONFIG
				continue
			}
			configs[c.Key] = c.Value
			names = append(names, c.Key)
		}
	}
	if m.pres != nil {
		// The source's own mark, when it is a mirror itself, is replaced.
		configs[MirrorSourceConfig] = &m.sourceID
	}
	resp, err := m.dstAdm.CreateTopic(ctx, int32(n), m.opts.ReplicationFactor, configs, tt)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil // another mirror, or a sync that raced us (checked by the caller)
	}
	if m.pres != nil && errors.Is(err, kerr.InvalidConfig) {
		return fmt.Errorf("mirror: create target topic %s: %w; keeping the source's offsets needs a Sluice target (the %s config)", tt, kadmErr(err, resp), MirrorSourceConfig)
	}
	if err != nil {
		return fmt.Errorf("mirror: create target topic %s (%d partitions, replication factor %d): %w", tt, n, m.opts.ReplicationFactor, kadmErr(err, resp))
	}
	for _, k := range names {
		m.setSynced(tt, k, *configs[k])
	}
	slices.Sort(names)
	m.log.Info("created the target topic", "topic", tt, "partitions", n, "configs", strings.Join(names, ","))
	return nil
}

func kadmErr(err error, resp kadm.CreateTopicResponse) error {
	if resp.ErrMessage != "" && !strings.Contains(err.Error(), resp.ErrMessage) {
		return fmt.Errorf("%w: %s", err, resp.ErrMessage)
	}
	return err
}

// ensurePartition makes sure the target has partition p of source topic t
// and that the producer knows it, before a record of it is produced. It
// runs on Run's goroutine, which owns m.ready.
func (m *Mirror) ensurePartition(ctx context.Context, t string, p int32) error {
	if m.ready[t] > p {
		return nil
	}
	m.topicMu.Lock()
	n := m.topics[t]
	m.topicMu.Unlock()
	if n <= p {
		if err := m.syncTopics(ctx, false); err != nil {
			return err
		}
		m.topicMu.Lock()
		n = m.topics[t]
		m.topicMu.Unlock()
		if n <= p {
			return fmt.Errorf("BUG: mirror: source %s[%d] fetched, but the topic has %d partitions after a sync", t, p, n)
		}
	}
	tt := m.opts.TopicPrefix + t
	if _, had := m.ready[t]; had {
		// The producer knows the topic, with fewer partitions: wait until
		// it sees the new ones (kgo fails a record for a partition it
		// does not know at once).
		deadline := time.Now().Add(partitionWait)
		for {
			if leader, _, _ := m.dst.PartitionLeader(tt, p); leader >= 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("mirror: the target's metadata does not show %s[%d] %s after it was created; is the target cluster healthy?", tt, p, partitionWait)
			}
			m.dst.ForceMetadataRefresh()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(partitionPoll):
			}
		}
	}
	// A topic the producer never produced to is loaded on its first
	// record, with the partitions created above.
	m.ready[t] = n
	return nil
}

// targetNames is the target topic of each of the source topics.
func (m *Mirror) targetNames(topics []string) []string {
	out := make([]string, len(topics))
	for i, t := range topics {
		out[i] = m.opts.TopicPrefix + t
	}
	return out
}
