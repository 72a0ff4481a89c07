package api

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/controller"
	"github.com/sluice-io/sluice/internal/metadata"
)

// CreatePartitions v0-3.
//
// Grows each topic to Count partitions. Like Kafka's controller, per topic:
//   - a topic given more than once: one INVALID_REQUEST answer for it, and
//     it is not changed;
//   - an unknown topic: UNKNOWN_TOPIC_OR_PARTITION;
//   - an internal topic (__consumer_offsets, __transaction_state):
//     INVALID_REQUEST (Kafka's broker grows it, which moves groups and
//     transactional ids to other partitions, away from their state);
//   - a Count that is not above the current count: INVALID_PARTITIONS, with
//     a message saying how many there are;
//   - a non-null Assignment must have one replica list per new partition,
//     each non-empty, without duplicates, of registered brokers and as long
//     as the topic's replication factor (INVALID_REPLICA_ASSIGNMENT).
//
// Then, for the request as a whole: topics that pass would add more than
// maxPartitionsPerRequest partitions together: POLICY_VIOLATION for each
// of them, and nothing changes (as Kafka's controller answers a request of
// more than 10,000 records). Then, in request order, a topic whose new
// partitions would take this broker past max.broker.partitions:
// POLICY_VIOLATION.
//
// Without an Assignment the new partitions go to the least loaded brokers
// (fewest replicas, then fewest preferred leaderships, racks apart:
// controller.PlaceLeastLoaded) that are not cordoned (KIP-1066), with the
// replication factor of partition 0, so that brokers added since the topic
// was made take them first; too few such brokers is INVALID_REPLICATION_FACTOR.
// An Assignment may name a cordoned broker, as in Kafka. ValidateOnly
// checks and changes nothing. Otherwise the change is written through the
// metadata quorum and the broker opens the new partitions before the
// answer (KAFKA_STORAGE_ERROR if one does not open; unlike a new topic's,
// the partitions stay in the metadata, since a topic cannot shrink, and
// the broker opens them at its next reconcile). Answers are in request
// order, with an ErrorMessage on errors.
//
// In a cluster, a broker that is not the active controller forwards the
// request there (forward.go).
//
// Deviation: TimeoutMillis is not used.
func (h *Handler) createPartitions(ctx context.Context, r *kmsg.CreatePartitionsRequest) *kmsg.CreatePartitionsResponse {
	resp := r.ResponseKind().(*kmsg.CreatePartitionsResponse)
	resp.ThrottleMillis = 0
	seen := make(map[string]int, len(r.Topics))
	for _, rt := range r.Topics {
		seen[rt.Topic]++
	}
	fail := func(st *kmsg.CreatePartitionsResponseTopic, err error) {
		st.ErrorCode = errorCode(err)
		st.ErrorMessage = errorMessage(err)
	}
	// Check every topic first: the request's size is bounded as a whole
	// before anything is written.
	type planned struct {
		i        int // index in resp.Topics
		rt       *kmsg.CreatePartitionsRequestTopic
		from     int32     // first new partition
		replicas [][]int32 // of each new partition
	}
	var plans []planned
	answeredDup := map[string]bool{}
	img := h.b.Image()
	var total int64
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		if seen[rt.Topic] > 1 {
			if answeredDup[rt.Topic] {
				continue
			}
			answeredDup[rt.Topic] = true
			fail(&st, codeErr(kerr.InvalidRequest, "Duplicate topic name."))
			resp.Topics = append(resp.Topics, st)
			continue
		}
		replicas, err := h.planPartitions(img, rt)
		if err != nil {
			fail(&st, err)
			resp.Topics = append(resp.Topics, st)
			continue
		}
		from := int32(len(img.Topics[rt.Topic].Partitions))
		plans = append(plans, planned{len(resp.Topics), rt, from, replicas})
		total += int64(rt.Count - from)
		resp.Topics = append(resp.Topics, st)
	}
	if err := checkRequestPartitions(total); err != nil {
		for _, p := range plans {
			fail(&resp.Topics[p.i], err)
		}
		return resp
	}

	type grown struct {
		i    int // index in resp.Topics
		name string
		from int32 // first new partition
	}
	var changed []grown
	hosted, maxHosted := h.hostedPartitions(img), h.brokerInt("max.broker.partitions")
	for _, p := range plans {
		st := &resp.Topics[p.i]
		if add := (topicPlan{assignments: p.replicas}).hostedBy(h.b.NodeID()); add > 0 {
			if err := checkBrokerPartitions(hosted, add, maxHosted); err != nil {
				fail(st, err)
				continue
			}
			hosted += add
		}
		if r.ValidateOnly {
			continue
		}
		if err := h.growTopic(ctx, p.rt.Topic, p.rt.Count, p.replicas); err != nil {
			fail(st, err)
			continue
		}
		changed = append(changed, grown{p.i, p.rt.Topic, p.from})
	}

	if len(changed) == 0 {
		return resp
	}
	rerr := h.b.Reconcile()
	img = h.b.Image()
	for _, g := range changed {
		t, ok := img.Topics[g.name]
		if !ok || int(g.from) > len(t.Partitions) {
			continue // deleted meanwhile
		}
		if err := h.checkOpened(t, g.from, rerr); err != nil {
			fail(&resp.Topics[g.i], err)
		}
	}
	return resp
}

// planPartitions checks one CreatePartitions entry against img and returns
// the replicas of the new partitions.
func (h *Handler) planPartitions(img *metadata.Image, rt *kmsg.CreatePartitionsRequestTopic) ([][]int32, error) {
	t, ok := img.Topics[rt.Topic]
	if !ok {
		return nil, codeErr(kerr.UnknownTopicOrPartition, "The topic '%s' does not exist.", rt.Topic)
	}
	if isInternalTopic(rt.Topic) {
		return nil, codeErr(kerr.InvalidRequest,
			"Adding partitions to internal topic %s is prohibited: a group's or transactional id's partition is its hash modulo the partition count, which must not change.", rt.Topic)
	}
	cur := int32(len(t.Partitions))
	switch {
	case rt.Count == cur:
		return nil, codeErr(kerr.InvalidPartitions, "Topic already has %d partition(s).", cur)
	case rt.Count < cur:
		return nil, codeErr(kerr.InvalidPartitions, "The topic %s currently has %d partition(s); %d would not be an increase.", rt.Topic, cur, rt.Count)
	}
	add := rt.Count - cur
	rf := len(t.Partitions[0].Replicas)
	if rt.Assignment == nil {
		if checkRequestPartitions(int64(add)) != nil {
			// Too many for one request: the request-wide check refuses
			// it; placing them first would only allocate.
			return nil, nil
		}
		// The least loaded brokers first: ones that joined after the
		// topic was made get the new partitions.
		usable := controller.UsableBrokers(img)
		if rf > len(usable) {
			return nil, codeErr(kerr.InvalidReplicationFactor, "%s", controller.TooFewBrokers(img, rf, len(usable)))
		}
		placed, err := controller.PlaceLeastLoaded(usable, controller.LoadOf(img), add, rf)
		if err != nil {
			return nil, codeErr(kerr.InvalidReplicationFactor, "%v", err)
		}
		return placed, nil
	}
	if int64(len(rt.Assignment)) != int64(add) {
		return nil, codeErr(kerr.InvalidReplicaAssignment, "Attempted to add %d additional partition(s), but only %d assignment(s) were specified.", add, len(rt.Assignment))
	}
	out := make([][]int32, 0, len(rt.Assignment))
	for _, a := range rt.Assignment {
		if err := checkReplicaList(a.Replicas, rf, img.Brokers); err != nil {
			return nil, err
		}
		out = append(out, slices.Clone(a.Replicas))
	}
	return out, nil
}

// growTopic adds the partitions through the metadata quorum.
func (h *Handler) growTopic(ctx context.Context, name string, total int32, replicas [][]int32) error {
	ctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
	defer cancel()
	if err := h.b.Meta().CreatePartitionsAssigned(ctx, name, replicas); err != nil {
		h.logger.Info("creating partitions failed", "topic", name, "count", total, "err", err)
		return err
	}
	h.logger.Info("created partitions", "topic", name, "count", total, "replicas", replicas)
	return nil
}
