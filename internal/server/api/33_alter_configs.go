package api

import (
	"context"
	"maps"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
)

// AlterConfigs v0-2.
//
// Kafka's original, non-incremental semantics: the configs given become the
// resource's whole set of dynamic configs, and any dynamic config not given
// is removed (an empty list removes them all). Resources, each answered on
// its own, in request order:
//   - TOPIC (2): the topic's overrides. An illegal name is
//     INVALID_TOPIC_EXCEPTION, an unknown topic UNKNOWN_TOPIC_OR_PARTITION.
//   - BROKER (4): the empty name (cluster default) or this node's id (else
//     INVALID_REQUEST). Both change the one set of dynamic broker configs
//     this cluster keeps, reported as DYNAMIC_DEFAULT_BROKER_CONFIG: there
//     are no per-broker dynamic configs. Read-only broker configs are
//     INVALID_CONFIG.
//   - BROKER_LOGGER (8), as in Kafka: INVALID_REQUEST (AlterConfigs does not
//     support it). Anything else: INVALID_REQUEST.
//
// A resource given twice is INVALID_REQUEST for both; so is a config name
// given twice or a null value. The new set is validated as a whole (unknown
// names and bad values are INVALID_CONFIG, with a message) before anything
// is written; ValidateOnly stops there. A change is written through the
// metadata quorum, and the partitions pick up their new effective configs
// before the answer.
func (h *Handler) alterConfigs(ctx context.Context, r *kmsg.AlterConfigsRequest) *kmsg.AlterConfigsResponse {
	resp := r.ResponseKind().(*kmsg.AlterConfigsResponse)
	resp.ThrottleMillis = 0
	dups := duplicateResources(len(r.Resources), func(i int) (kmsg.ConfigResourceType, string) {
		return r.Resources[i].ResourceType, r.Resources[i].ResourceName
	})
	var changed bool
	for i, rr := range r.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		err := func() error {
			if dups[i] {
				return codeErr(kerr.InvalidRequest, "Each resource must appear at most once.")
			}
			names := make([]string, 0, len(rr.Configs))
			var nulls []string
			configs := make(map[string]string, len(rr.Configs))
			for _, c := range rr.Configs {
				names = append(names, c.Name)
				if c.Value == nil {
					nulls = append(nulls, c.Name)
					continue
				}
				configs[c.Name] = *c.Value
			}
			if hasDuplicate(names) {
				return codeErr(kerr.InvalidRequest, "Error due to duplicate config keys")
			}
			if len(nulls) > 0 {
				return codeErr(kerr.InvalidRequest, "Null value not supported for : %s", strings.Join(nulls, ", "))
			}
			if rr.ResourceType == kmsg.ConfigResourceTypeBrokerLogger {
				return codeErr(kerr.InvalidRequest, "AlterConfigs is deprecated and does not support the resource type BROKER_LOGGER")
			}
			if _, err := h.dynamicConfigs(rr.ResourceType, rr.ResourceName); err != nil {
				return err
			}
			return h.writeConfigs(ctx, rr.ResourceType, rr.ResourceName, configs, r.ValidateOnly)
		}()
		if err == nil && !r.ValidateOnly {
			changed = true
		}
		sr.ErrorCode = errorCode(err)
		sr.ErrorMessage = errorMessage(err)
		resp.Resources = append(resp.Resources, sr)
	}
	if changed {
		h.applyConfigs()
	}
	return resp
}

// dynamicConfigs returns the current dynamic configs of a TOPIC or BROKER
// resource to alter, or the error to answer for the resource.
func (h *Handler) dynamicConfigs(typ kmsg.ConfigResourceType, name string) (map[string]string, error) {
	img := h.b.Image()
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if name == "" {
			return nil, codeErr(kerr.InvalidRequest, "Default topic resources are not allowed.")
		}
		if err := checkTopicName(name); err != nil {
			return nil, err
		}
		t, ok := img.Topics[name]
		if !ok {
			return nil, codeErr(kerr.UnknownTopicOrPartition, "The topic '%s' does not exist.", name)
		}
		return t.Configs, nil
	case kmsg.ConfigResourceTypeBroker:
		if name != "" {
			if err := h.checkBrokerName(name); err != nil {
				return nil, err
			}
		}
		return img.BrokerConfigs, nil
	}
	return nil, codeErr(kerr.InvalidRequest, "Unsupported resource type: %s (%d)", typ, int8(typ))
}

// writeConfigs validates configs as the complete new set of dynamic configs
// of a TOPIC or BROKER resource and, unless validateOnly, writes it through
// the metadata quorum. The caller calls applyConfigs after its writes.
func (h *Handler) writeConfigs(ctx context.Context, typ kmsg.ConfigResourceType, name string, configs map[string]string, validateOnly bool) error {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if err := config.ValidateTopicConfigs(configs); err != nil {
			return err
		}
	case kmsg.ConfigResourceTypeBroker:
		var readOnly []string
		for k := range configs {
			if d, ok := config.BrokerDef(k); ok && d.ReadOnly {
				readOnly = append(readOnly, k)
			}
		}
		if len(readOnly) > 0 {
			sort.Strings(readOnly)
			return codeErr(kerr.InvalidConfig, "Cannot update these configs dynamically: %s", strings.Join(readOnly, ", "))
		}
		if err := config.ValidateBrokerConfigs(configs); err != nil {
			return err
		}
	default:
		return codeErr(kerr.InvalidRequest, "Unsupported resource type: %s (%d)", typ, int8(typ))
	}
	if validateOnly {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
	defer cancel()
	var err error
	if typ == kmsg.ConfigResourceTypeTopic {
		err = h.b.Meta().SetTopicConfigs(ctx, name, maps.Clone(configs))
	} else {
		err = h.b.Meta().SetBrokerConfigs(ctx, maps.Clone(configs))
	}
	if err != nil {
		h.logger.Info("altering configs failed", "type", typ, "name", name, "err", err)
		return err
	}
	h.logger.Info("altered configs", "type", typ, "name", name, "configs", len(configs))
	return nil
}

// applyConfigs makes the open partitions pick up changed configs.
func (h *Handler) applyConfigs() {
	if err := h.b.Reconcile(); err != nil {
		h.logger.Error("applying metadata after a config change", "err", err)
	}
}

// duplicateResources marks the resources (type and name) given more than
// once among n.
func duplicateResources(n int, at func(int) (kmsg.ConfigResourceType, string)) []bool {
	type key struct {
		typ  kmsg.ConfigResourceType
		name string
	}
	count := make(map[key]int, n)
	for i := range n {
		t, name := at(i)
		count[key{t, name}]++
	}
	out := make([]bool, n)
	for i := range n {
		t, name := at(i)
		out[i] = count[key{t, name}] > 1
	}
	return out
}

func hasDuplicate(names []string) bool {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			return true
		}
		seen[n] = true
	}
	return false
}
