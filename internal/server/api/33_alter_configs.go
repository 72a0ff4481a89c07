package api

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/metadata"
)

// AlterConfigs v0-2.
//
// Kafka's original, non-incremental semantics: the configs given become the
// resource's whole set of dynamic configs, and any dynamic config not given
// is removed (an empty list removes them all). Resources, each answered on
// its own, in request order:
//   - TOPIC (2): the topic's overrides. An illegal name is
//     INVALID_TOPIC_EXCEPTION, an unknown topic UNKNOWN_TOPIC_OR_PARTITION.
//   - BROKER (4): the empty name is the cluster default, the dynamic
//     configs of every broker (DYNAMIC_DEFAULT_BROKER_CONFIG); a broker's
//     id is that broker's own dynamic configs (DYNAMIC_BROKER_CONFIG),
//     which take precedence over the cluster default on it. Read-only
//     broker configs are INVALID_CONFIG. A name that is not a number, a
//     negative one, or the id of no registered broker is INVALID_REQUEST.
//     Deviation: Kafka's admin client sends broker N's alter to broker N,
//     which refuses any other id and forwards it to the controller; here
//     any broker takes the alter of any registered broker (each forwards
//     to the controller, which checks the id), so a request as Kafka's
//     tools send it works too.
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
		id, perBroker, err := alterBrokerID(img, name)
		if err != nil {
			return nil, err
		}
		if perBroker {
			return img.PerBrokerConfigs[id], nil
		}
		return img.BrokerConfigs, nil
	}
	return nil, codeErr(kerr.InvalidRequest, "Unsupported resource type: %s (%d)", typ, int8(typ))
}

// alterBrokerID reads the name of a BROKER resource to alter: "" is the
// cluster default (perBroker false), else it must be the id of a broker
// registered in img. The errors are Kafka's for a name it cannot take.
func alterBrokerID(img *metadata.Image, name string) (id int32, perBroker bool, err error) {
	if name == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(name, 10, 32)
	if err != nil {
		return 0, false, codeErr(kerr.InvalidRequest, "Broker id must be an integer, but it is: %s", name)
	}
	if n < 0 {
		return 0, false, codeErr(kerr.InvalidRequest, "Invalid negative broker ID.")
	}
	if _, ok := img.Brokers[int32(n)]; !ok {
		ids := make([]int32, 0, len(img.Brokers))
		for id := range img.Brokers {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return 0, false, codeErr(kerr.InvalidRequest, "Unexpected broker id %d: no broker with that id is registered (the registered ones: %v)", n, ids)
	}
	return int32(n), true, nil
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
		// A copy is born a copy: an offset-preserving mirror creates
		// its topics with sluice.mirror.source. Set later on a topic,
		// the topic's own records would sit at offsets the mirror
		// takes for the source's (it passes over batches below the
		// log end as already copied), and a change of source would
		// mix two clusters' offsets. Deleting it is the failover.
		if v := configs[config.MirrorSourceConfig]; v != "" {
			cur, err := h.dynamicConfigs(typ, name)
			if err != nil {
				return err
			}
			if cur[config.MirrorSourceConfig] != v {
				return codeErr(kerr.InvalidConfig, "%s can be set only when a topic is created (`sluice mirror --preserve-offsets` creates its copies with it): a topic's own records cannot become a copy's, nor a copy another cluster's; mirror into a new topic instead",
					config.MirrorSourceConfig)
			}
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
	switch {
	case typ == kmsg.ConfigResourceTypeTopic:
		err = h.b.Meta().SetTopicConfigs(ctx, name, maps.Clone(configs))
	case name == "":
		err = h.b.Meta().SetBrokerConfigs(ctx, maps.Clone(configs))
	default:
		// dynamicConfigs checked the name; the broker may have been
		// unregistered since, which the metadata decides in log order.
		id, _ := strconv.ParseInt(name, 10, 32)
		err = h.b.Meta().SetPerBrokerConfigs(ctx, int32(id), maps.Clone(configs))
		if errors.Is(err, metadata.ErrUnknownBroker) {
			err = codeErr(kerr.InvalidRequest, "Unexpected broker id %d: %v", id, err)
		}
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
