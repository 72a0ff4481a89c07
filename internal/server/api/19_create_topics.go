package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/controller"
	"github.com/sluice-io/sluice/internal/metadata"
)

// CreateTopics v0-7.
//
// Each topic is checked in Kafka's order, and the first failure is its
// answer, with an ErrorMessage (v1+):
//   - a name given more than once in the request: one INVALID_REQUEST
//     answer for that name, and it is not created;
//   - __cluster_metadata: INVALID_REQUEST, as Kafka's controller;
//   - an illegal name, or one that differs from an existing topic's only
//     in '.' versus '_': INVALID_TOPIC_EXCEPTION;
//   - an existing topic: TOPIC_ALREADY_EXISTS;
//   - a manual ReplicaAssignment needs NumPartitions and ReplicationFactor
//     of -1 (else INVALID_REQUEST), partitions 0..n-1 each once, and
//     replica lists that are non-empty, without duplicates, of registered
//     brokers and of one length (else INVALID_REPLICA_ASSIGNMENT);
//   - without one, NumPartitions and ReplicationFactor of -1 take
//     num.partitions and default.replication.factor (KIP-464, v4+; like
//     Kafka's broker, lower versions are not refused for it); other values
//     must be positive (INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR)
//     and the factor at most the registered brokers;
//   - Configs must be known topic configs with valid values, none null
//     (INVALID_CONFIG).
//
// Then, for the request as a whole: topics that pass would create more
// than maxPartitionsPerRequest partitions together: POLICY_VIOLATION for
// each of them, and nothing is created (Kafka's controller answers a
// request of more than 10,000 records so). Then, in request order, a topic
// that would take this broker past max.broker.partitions (internal topics
// included): POLICY_VIOLATION.
//
// ValidateOnly (v1+) runs every check and creates nothing. Otherwise the
// topic is written through the metadata quorum and the broker opens its
// partitions before the answer. Creation is all or nothing: if a partition
// fails to open (a disk error), the topic is deleted from the metadata
// again, its opened partitions closed and removed, and the answer is
// KAFKA_STORAGE_ERROR. v5+ answers carry NumPartitions, ReplicationFactor
// and the topic's configs as DescribeConfigs shows them (-1, -1 and none
// on errors); v7 the TopicID (zero for ValidateOnly and errors).
//
// Without a manual assignment, replicas are placed as Kafka places them
// (controller.PlaceNew: leaders round-robin over the unfenced brokers from
// a random one, followers shifted, racks alternated), never on a cordoned
// broker (KIP-1066's cordoned.log.dirs=*); a replication factor above the
// brokers left is INVALID_REPLICATION_FACTOR, naming the cordoned ones. A
// manual assignment may name a cordoned broker, as in Kafka.
//
// In a cluster, a broker that is not the active controller forwards the
// request there (forward.go); this runs on the controller.
//
// Deviation: TimeoutMillis is not used (a metadata write is bounded by
// metadataWriteTimeout instead).
func (h *Handler) createTopics(ctx context.Context, r *kmsg.CreateTopicsRequest) *kmsg.CreateTopicsResponse {
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	resp.ThrottleMillis = 0
	validateOnly := r.ValidateOnly && r.Version >= 1

	seen := make(map[string]int, len(r.Topics))
	for _, rt := range r.Topics {
		seen[rt.Topic]++
	}
	img := h.b.Image()
	// Names normalized for '.'/'_' collisions: existing topics, then
	// those this request creates.
	normalized := make(map[string]string, len(img.Topics))
	for name := range img.Topics {
		normalized[collisionName(name)] = name
	}
	fail := func(st *kmsg.CreateTopicsResponseTopic, err error) {
		st.ErrorCode = errorCode(err)
		st.ErrorMessage = errorMessage(err)
		st.NumPartitions, st.ReplicationFactor, st.Configs = -1, -1, nil
	}

	// Check every topic first: the request's size is bounded as a whole
	// before anything is written.
	type planned struct {
		i    int // index in resp.Topics
		plan topicPlan
	}
	var plans []planned
	answeredDup := map[string]bool{}
	var total int64
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := kmsg.NewCreateTopicsResponseTopic()
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
		plan, err := h.planTopic(img, rt, normalized)
		if err != nil {
			fail(&st, err)
			resp.Topics = append(resp.Topics, st)
			continue
		}
		normalized[collisionName(rt.Topic)] = rt.Topic
		plans = append(plans, planned{len(resp.Topics), plan})
		total += int64(plan.partitions)
		resp.Topics = append(resp.Topics, st)
	}
	if err := checkRequestPartitions(total); err != nil {
		for _, p := range plans {
			fail(&resp.Topics[p.i], err)
		}
		return resp
	}

	type made struct {
		i int // index in resp.Topics
		t *metadata.Topic
	}
	var created []made
	hosted, maxHosted := h.hostedPartitions(img), h.brokerInt("max.broker.partitions")
	for _, p := range plans {
		st := &resp.Topics[p.i]
		if mine := p.plan.hostedBy(h.b.NodeID()); mine > 0 {
			if err := checkBrokerPartitions(hosted, mine, maxHosted); err != nil {
				fail(st, err)
				continue
			}
			hosted += mine
		}
		if !validateOnly {
			t, err := h.writeTopic(ctx, st.Topic, p.plan)
			if err != nil {
				fail(st, err)
				continue
			}
			created = append(created, made{p.i, t})
		}
		st.NumPartitions = p.plan.partitions
		st.ReplicationFactor = int16(len(p.plan.assignments[0]))
		for _, e := range config.ResolveTopic(p.plan.configs, h.b.BrokerConfigs()) {
			c := kmsg.NewCreateTopicsResponseTopicConfig()
			c.Name = e.Name
			if !e.Null {
				c.Value = kmsg.StringPtr(e.Value)
			}
			c.ReadOnly = e.ReadOnly
			c.Source = int8(e.Source)
			c.IsSensitive = e.Sensitive
			st.Configs = append(st.Configs, c)
		}
	}

	if len(created) == 0 {
		return resp
	}
	rerr := h.b.Reconcile()
	var undone bool
	for _, m := range created {
		st := &resp.Topics[m.i]
		st.TopicID = m.t.ID
		if err := h.checkOpened(m.t, 0, rerr); err != nil {
			fail(st, h.undoTopic(ctx, m.t, err))
			st.TopicID = [16]byte{}
			undone = true
		}
	}
	if undone {
		if err := h.b.Reconcile(); err != nil {
			h.logger.Error("closing the partitions of topics whose creation failed", "err", err)
		}
	}
	return resp
}

// topicPlan is what a CreateTopics entry resolves to.
type topicPlan struct {
	partitions  int32
	assignments [][]int32 // replicas by partition; the first leads
	configs     map[string]string
}

// hostedBy is how many of the planned partitions broker id holds.
func (p topicPlan) hostedBy(id int32) int64 {
	var n int64
	for _, a := range p.assignments {
		if slices.Contains(a, id) {
			n++
		}
	}
	return n
}

// planTopic checks one CreateTopics entry against img and resolves its
// partition count, replicas and configs. normalized maps collision-folded
// names to the topic holding them.
func (h *Handler) planTopic(img *metadata.Image, rt *kmsg.CreateTopicsRequestTopic, normalized map[string]string) (topicPlan, error) {
	var plan topicPlan
	if rt.Topic == clusterMetadataTopic {
		return plan, codeErr(kerr.InvalidRequest, "Creation of internal topic %s is prohibited.", clusterMetadataTopic)
	}
	if err := checkTopicName(rt.Topic); err != nil {
		return plan, err
	}
	if _, ok := img.Topics[rt.Topic]; ok {
		return plan, codeErr(kerr.TopicAlreadyExists, "Topic '%s' already exists.", rt.Topic)
	}
	if other, ok := normalized[collisionName(rt.Topic)]; ok && other != rt.Topic {
		return plan, codeErr(kerr.InvalidTopicException, "Topic '%s' collides with existing topic: %s", rt.Topic, other)
	}

	if len(rt.ReplicaAssignment) > 0 {
		if rt.ReplicationFactor != -1 {
			return plan, codeErr(kerr.InvalidRequest, "A manual partition assignment was specified, but replication factor was not set to -1.")
		}
		if rt.NumPartitions != -1 {
			return plan, codeErr(kerr.InvalidRequest, "A manual partition assignment was specified, but numPartitions was not set to -1.")
		}
		byPartition := make(map[int32][]int32, len(rt.ReplicaAssignment))
		rf := -1
		for _, a := range rt.ReplicaAssignment {
			if _, dup := byPartition[a.Partition]; dup {
				return plan, codeErr(kerr.InvalidReplicaAssignment, "Found multiple manual partition assignments for partition %d", a.Partition)
			}
			if err := checkReplicaList(a.Replicas, rf, img.Brokers); err != nil {
				return plan, err
			}
			rf = len(a.Replicas)
			byPartition[a.Partition] = a.Replicas
		}
		n := int32(len(byPartition))
		for p := range n {
			if _, ok := byPartition[p]; !ok {
				return plan, codeErr(kerr.InvalidReplicaAssignment, "partitions should be a consecutive 0-based integer sequence")
			}
		}
		plan.partitions = n
		for p := range n {
			plan.assignments = append(plan.assignments, slices.Clone(byPartition[p]))
		}
	} else {
		n := rt.NumPartitions
		if n == -1 {
			n = int32(h.brokerInt("num.partitions"))
		}
		if n <= 0 {
			return plan, codeErr(kerr.InvalidPartitions, "Number of partitions was set to an invalid non-positive value.")
		}
		rf := rt.ReplicationFactor
		if rf == -1 {
			rf = int16(h.brokerInt("default.replication.factor"))
		}
		if rf <= 0 {
			return plan, codeErr(kerr.InvalidReplicationFactor, "Replication factor must be larger than 0, or -1 to use the default value.")
		}
		plan.partitions = n
		if checkRequestPartitions(int64(n)) != nil {
			// Too many for one request: the request-wide check refuses
			// it; placing them first would only allocate.
			return plan, nil
		}
		if usable := len(controller.UsableBrokers(img)); int(rf) > usable {
			return plan, codeErr(kerr.InvalidReplicationFactor, "%s", controller.TooFewBrokers(img, int(rf), usable))
		}
		assignments, err := controller.PlaceNew(img, 0, n, int(rf))
		if err != nil {
			return plan, codeErr(kerr.InvalidReplicationFactor, "%v", err)
		}
		plan.partitions, plan.assignments = n, assignments
	}

	configs := make(map[string]string, len(rt.Configs))
	var nulls []string
	for _, c := range rt.Configs {
		if c.Value == nil {
			nulls = append(nulls, c.Name)
			continue
		}
		configs[c.Name] = *c.Value
	}
	if len(nulls) > 0 {
		return plan, codeErr(kerr.InvalidConfig, "Null value not supported for topic configs: %s", strings.Join(nulls, ","))
	}
	if err := config.ValidateTopicConfigs(configs); err != nil {
		return plan, err
	}
	plan.configs = configs
	return plan, nil
}

// writeTopic creates the planned topic through the metadata quorum.
func (h *Handler) writeTopic(ctx context.Context, name string, plan topicPlan) (*metadata.Topic, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
	defer cancel()
	t, err := h.b.Meta().CreateTopicAssigned(ctx, name, plan.assignments, plan.configs)
	if err != nil {
		h.logger.Info("creating topic failed", "topic", name, "err", err)
		return nil, err
	}
	h.logger.Info("created topic", "topic", name, "partitions", plan.partitions, "replicas", plan.assignments)
	return t, nil
}

// undoTopic deletes t, whose partitions did not all open (cause), from the
// metadata again, so that no half-created topic stays, and returns the
// error to answer: KAFKA_STORAGE_ERROR with cause, and whether the topic
// is gone. The caller reconciles to close the partitions that did open.
func (h *Handler) undoTopic(ctx context.Context, t *metadata.Topic, cause error) error {
	if err := h.deleteTopic(ctx, t.Name); err != nil && !errors.Is(err, metadata.ErrUnknownTopic) {
		h.logger.Error("removing a topic whose partitions did not open failed", "topic", t.Name, "err", err)
		return codeErr(kerr.KafkaStorageError, "%v; removing the topic again failed too (%v): delete it before creating it again", cause, err)
	}
	return codeErr(kerr.KafkaStorageError, "%v; the topic was removed again", cause)
}

// checkOpened reports a KAFKA_STORAGE_ERROR if a partition of t from
// index from on that this broker leads is not open after a Reconcile that
// returned rerr.
func (h *Handler) checkOpened(t *metadata.Topic, from int32, rerr error) error {
	for _, p := range t.Partitions[from:] {
		if p.Leader != h.b.NodeID() {
			continue
		}
		if _, ok := h.b.Partition(t.Name, p.ID); !ok {
			h.logger.Error("new partition did not open", "topic", t.Name, "partition", p.ID, "err", rerr)
			return codeErr(kerr.KafkaStorageError, "topic %s is in the metadata, but its partition %d could not be opened: %v", t.Name, p.ID, rerr)
		}
	}
	return nil
}

// checkReplicaList checks a manual replica assignment of one partition:
// non-empty, no broker twice, every broker registered, and rf replicas
// unless rf is -1.
func checkReplicaList(replicas []int32, rf int, brokers map[int32]metadata.Broker) error {
	if len(replicas) == 0 {
		return codeErr(kerr.InvalidReplicaAssignment, "The manual partition assignment includes an empty replica list.")
	}
	for i, id := range replicas {
		if slices.Contains(replicas[:i], id) {
			return codeErr(kerr.InvalidReplicaAssignment, "The manual partition assignment includes the broker %d more than once.", id)
		}
		if _, ok := brokers[id]; !ok {
			return codeErr(kerr.InvalidReplicaAssignment, "The manual partition assignment includes broker %d, but no such broker is registered.", id)
		}
	}
	if rf != -1 && len(replicas) != rf {
		return codeErr(kerr.InvalidReplicaAssignment,
			"The manual partition assignment includes a partition with %d replica(s), but this is not consistent with previous partitions, which have %d replica(s).",
			len(replicas), rf)
	}
	return nil
}

// checkTopicName refuses, with INVALID_TOPIC_EXCEPTION and Kafka's
// messages, a name Kafka's Topic.validate refuses.
func checkTopicName(name string) error {
	switch {
	case name == "":
		return codeErr(kerr.InvalidTopicException, "Topic name is illegal, it can't be empty")
	case name == "." || name == "..":
		return codeErr(kerr.InvalidTopicException, `Topic name cannot be "." or ".."`)
	case len(name) > 249:
		return codeErr(kerr.InvalidTopicException, "Topic name is illegal, it can't be longer than 249 characters, topic name: %s", name)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return codeErr(kerr.InvalidTopicException,
				"Topic name %q is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'", name)
		}
	}
	return nil
}

// collisionName folds '.' into '_': two topics with the same folded name
// would share metric names in Kafka, which refuses the second.
func collisionName(name string) string { return strings.ReplaceAll(name, ".", "_") }

// codeError is an error answered with a given Kafka code and, where the
// response has one, a message for the client: errorCode finds the code
// through Unwrap and errorMessage sends msg.
type codeError struct {
	code *kerr.Error
	msg  string
}

func (e *codeError) Error() string { return e.msg }
func (e *codeError) Unwrap() error { return e.code }

func codeErr(code *kerr.Error, format string, args ...any) error {
	return &codeError{code: code, msg: fmt.Sprintf(format, args...)}
}
