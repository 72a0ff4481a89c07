package api

import (
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
)

// DescribeConfigs v0-4.
//
// Resources, each answered on its own, in request order:
//   - TOPIC (2): every topic config with its effective value and source
//     (the topic's own value, a dynamic or static broker synonym, or the
//     default). An illegal name is INVALID_TOPIC_EXCEPTION, an unknown
//     topic UNKNOWN_TOPIC_OR_PARTITION.
//   - BROKER (4): with this node's id as the name, every broker config as
//     this node resolves it (its own dynamic value, DYNAMIC_BROKER_CONFIG,
//     over the cluster-wide one, DYNAMIC_DEFAULT_BROKER_CONFIG, over its
//     static one and the default); with the empty name, only the dynamic
//     cluster-wide ones (as Kafka answers for the cluster default
//     resource). Another id, or a name that is not a number, is
//     INVALID_REQUEST: as in Kafka, broker N's configs are asked of broker
//     N (Kafka's admin client sends the request there).
//   - BROKER_LOGGER (8): this node has no log4j loggers to list, so its id
//     gets an empty list; the empty name or another id INVALID_REQUEST.
//   - anything else: INVALID_REQUEST.
//
// ConfigNames null or empty means every config; names that are not configs
// are left out without error. Sensitive values and their synonyms' values
// are null. Per version: IsDefault (v0: the source is the default), Source
// and, when IncludeSynonyms, ConfigSynonyms (v1+), ConfigType and, when
// IncludeDocumentation, Documentation (v3+). ReadOnly is the config's update
// mode (never for topic configs).
func (h *Handler) describeConfigs(r *kmsg.DescribeConfigsRequest) *kmsg.DescribeConfigsResponse {
	resp := r.ResponseKind().(*kmsg.DescribeConfigsResponse)
	resp.ThrottleMillis = 0
	synonyms := r.Version >= 1 && r.IncludeSynonyms
	docs := r.Version >= 3 && r.IncludeDocumentation
	for _, rr := range r.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		entries, err := h.describeResource(rr.ResourceType, rr.ResourceName)
		if err != nil {
			sr.ErrorCode = errorCode(err)
			sr.ErrorMessage = errorMessage(err)
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		sr.Configs = []kmsg.DescribeConfigsResponseResourceConfig{}
		for _, e := range entries {
			if len(rr.ConfigNames) > 0 && !slices.Contains(rr.ConfigNames, e.Name) {
				continue
			}
			sr.Configs = append(sr.Configs, describeEntry(e, synonyms, docs))
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// describeResource resolves the configs of one resource.
func (h *Handler) describeResource(typ kmsg.ConfigResourceType, name string) ([]config.Entry, error) {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if err := checkTopicName(name); err != nil {
			return nil, err
		}
		t, ok := h.b.Image().Topics[name]
		if !ok {
			return nil, codeErr(kerr.UnknownTopicOrPartition, "The topic '%s' does not exist.", name)
		}
		return config.ResolveTopic(t.Configs, h.b.BrokerConfigs()), nil

	case kmsg.ConfigResourceTypeBroker:
		b := h.b.BrokerConfigs()
		if name == "" {
			// The cluster default resource: this node's own values are
			// not part of it.
			b.PerBroker = nil
			all := config.ResolveBroker(b)
			dynamic := all[:0]
			for _, e := range all {
				if _, ok := b.Dynamic[e.Name]; ok {
					dynamic = append(dynamic, e)
				}
			}
			return dynamic, nil
		}
		if err := h.checkBrokerName(name); err != nil {
			return nil, err
		}
		return config.ResolveBroker(b), nil

	case kmsg.ConfigResourceTypeBrokerLogger:
		if name == "" {
			return nil, codeErr(kerr.InvalidRequest, "Broker id must not be empty")
		}
		if err := h.checkBrokerName(name); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return nil, codeErr(kerr.InvalidRequest, "Unsupported resource type: %s (%d)", typ, int8(typ))
}

// checkBrokerName accepts only this node's id as a broker resource name:
// what describing a broker's configs or loggers, which only that broker
// knows, needs.
func (h *Handler) checkBrokerName(name string) error {
	id, err := strconv.ParseInt(name, 10, 32)
	if err != nil {
		return codeErr(kerr.InvalidRequest, "Broker id must be an integer, but it is: %s", name)
	}
	if int32(id) != h.b.NodeID() {
		return codeErr(kerr.InvalidRequest, "Unexpected broker id, expected %d or empty string, but received %s", h.b.NodeID(), name)
	}
	return nil
}

// describeEntry turns a resolved config into its DescribeConfigs form.
func describeEntry(e config.Entry, synonyms, docs bool) kmsg.DescribeConfigsResponseResourceConfig {
	c := kmsg.NewDescribeConfigsResponseResourceConfig()
	c.Name = e.Name
	if !e.Null && !e.Sensitive {
		c.Value = kmsg.StringPtr(e.Value)
	}
	c.ReadOnly = e.ReadOnly
	c.IsDefault = e.Source == config.SourceDefault
	c.Source = kmsg.ConfigSource(e.Source)
	c.IsSensitive = e.Sensitive
	c.ConfigType = kmsg.ConfigType(e.Type)
	if synonyms {
		for _, s := range e.Synonyms {
			cs := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
			cs.Name = s.Name
			if !e.Sensitive {
				cs.Value = kmsg.StringPtr(s.Value)
			}
			cs.Source = kmsg.ConfigSource(s.Source)
			c.ConfigSynonyms = append(c.ConfigSynonyms, cs)
		}
	}
	if docs && e.Doc != "" {
		c.Documentation = kmsg.StringPtr(e.Doc)
	}
	return c
}
