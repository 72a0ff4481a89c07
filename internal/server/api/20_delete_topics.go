package api

import (
	"context"
	"errors"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/metadata"
)

// DeleteTopics v0-6.
//
// v0-5 name topics (TopicNames); v6 names each topic either by name or by
// TopicID (Topics). Like Kafka's controller:
//   - neither or both of name and id: INVALID_REQUEST;
//   - a name or id given twice: one INVALID_REQUEST answer for it, and it
//     is not deleted; so is a name whose topic's id is also given;
//   - an unknown name: UNKNOWN_TOPIC_OR_PARTITION; an unknown id:
//     UNKNOWN_TOPIC_ID;
//   - an internal topic (__consumer_offsets, __transaction_state):
//     INVALID_REQUEST, and it stays (Kafka's broker deletes it, and every
//     group's offsets or transaction's state with it);
//   - with delete.topic.enable=false every topic is refused:
//     TOPIC_DELETION_DISABLED (v3+) or INVALID_REQUEST (v0-2).
//
// Each topic is removed through the metadata quorum; then the broker closes
// and deletes the partitions' data before the answer. Answers carry the
// name and the id (v6+) of the topic whenever they are known; ErrorMessage
// is v5+. Answers are in request order (Kafka shuffles them).
// TimeoutMillis is not used.
func (h *Handler) deleteTopics(ctx context.Context, r *kmsg.DeleteTopicsRequest) *kmsg.DeleteTopicsResponse {
	resp := r.ResponseKind().(*kmsg.DeleteTopicsResponse)
	resp.ThrottleMillis = 0

	// Both lists are read: a request has only the one of its version.
	refs := make([]kmsg.DeleteTopicsRequestTopic, 0, len(r.TopicNames)+len(r.Topics))
	for _, name := range r.TopicNames {
		refs = append(refs, kmsg.DeleteTopicsRequestTopic{Topic: kmsg.StringPtr(name)})
	}
	refs = append(refs, r.Topics...)

	answer := func(name *string, id [16]byte, err error) {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = name, id
		st.ErrorCode = errorCode(err)
		st.ErrorMessage = errorMessage(err)
		resp.Topics = append(resp.Topics, st)
	}

	v, _ := h.b.BrokerConfigs().Value("delete.topic.enable")
	if strings.EqualFold(strings.TrimSpace(v), "false") {
		code := kerr.TopicDeletionDisabled
		if r.Version < 3 {
			code = kerr.InvalidRequest
		}
		for _, ref := range refs {
			answer(ref.Topic, ref.TopicID, codeErr(code, "Topic deletion is disabled."))
		}
		return resp
	}

	img := h.b.Image()
	names := map[string]int{}
	ids := map[metadata.TopicID]int{}
	for _, ref := range refs {
		switch {
		case ref.Topic != nil && ref.TopicID == [16]byte{}:
			names[*ref.Topic]++
		case ref.Topic == nil && ref.TopicID != [16]byte{}:
			ids[ref.TopicID]++
		}
	}
	// A topic named by name whose id is also given is a duplicate too.
	for name := range names {
		if t, ok := img.Topics[name]; ok && ids[t.ID] > 0 {
			names[name]++
			ids[t.ID]++
		}
	}

	answered := map[string]bool{}
	var deleted bool
	for _, ref := range refs {
		var t *metadata.Topic
		switch {
		case ref.Topic == nil && ref.TopicID == [16]byte{}:
			answer(nil, ref.TopicID, codeErr(kerr.InvalidRequest, "Neither topic name nor id were specified."))
			continue
		case ref.Topic != nil && ref.TopicID != [16]byte{}:
			answer(ref.Topic, ref.TopicID, codeErr(kerr.InvalidRequest, "You may not specify both topic name and topic id."))
			continue
		case ref.Topic != nil:
			name := *ref.Topic
			if names[name] > 1 {
				if !answered["n"+name] {
					answered["n"+name] = true
					answer(ref.Topic, ref.TopicID, codeErr(kerr.InvalidRequest, "Duplicate topic name."))
				}
				continue
			}
			var ok bool
			if t, ok = img.Topics[name]; !ok {
				answer(ref.Topic, ref.TopicID, codeErr(kerr.UnknownTopicOrPartition, "This server does not host this topic-partition."))
				continue
			}
		default:
			id := metadata.TopicID(ref.TopicID)
			if ids[id] > 1 {
				if !answered["i"+id.String()] {
					answered["i"+id.String()] = true
					answer(nil, ref.TopicID, codeErr(kerr.InvalidRequest, "Duplicate topic id."))
				}
				continue
			}
			var ok bool
			if t, ok = img.TopicsByID[id]; !ok {
				answer(nil, ref.TopicID, codeErr(kerr.UnknownTopicID, "This server does not host this topic ID."))
				continue
			}
		}
		if isInternalTopic(t.Name) {
			answer(kmsg.StringPtr(t.Name), t.ID, codeErr(kerr.InvalidRequest,
				"Deletion of internal topic %s is prohibited: it holds the state of Sluice's coordinators.", t.Name))
			continue
		}
		err := h.deleteTopic(ctx, t.Name)
		if errors.Is(err, metadata.ErrUnknownTopic) && ref.Topic == nil {
			err = codeErr(kerr.UnknownTopicID, "This server does not host this topic ID.")
		}
		if err == nil {
			deleted = true
		}
		answer(kmsg.StringPtr(t.Name), t.ID, err)
	}

	if deleted {
		if err := h.b.Reconcile(); err != nil {
			h.logger.Error("applying metadata after deleting topics", "err", err)
		}
	}
	return resp
}

// deleteTopic removes one topic through the metadata quorum.
func (h *Handler) deleteTopic(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
	defer cancel()
	if err := h.b.Meta().DeleteTopic(ctx, name); err != nil {
		h.logger.Info("deleting topic failed", "topic", name, "err", err)
		return err
	}
	h.logger.Info("deleted topic", "topic", name)
	return nil
}
