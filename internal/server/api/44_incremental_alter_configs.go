package api

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/config"
)

// IncrementalAlterConfigs v0-1.
//
// Applies operations to a resource's current dynamic configs, then handles
// the result like AlterConfigs (same resources, same checks, validated as a
// whole, ValidateOnly, written through the metadata quorum, partitions
// updated before the answer):
//   - SET (0) sets a value; DELETE (1) removes the dynamic value, so the
//     config falls back to the broker's or the default (deleting one that is
//     not set is fine);
//   - APPEND (2) and SUBTRACT (3) add the comma-separated items not yet in
//     the list, or remove them, for LIST configs only (others are
//     INVALID_CONFIG); a list not set dynamically starts from the config's
//     default, as in Kafka;
//   - another operation is INVALID_REQUEST.
//
// A resource given twice, a config name given twice in one resource, or a
// null value for anything but DELETE is INVALID_REQUEST. BROKER_LOGGER (8)
// takes this node's id (else INVALID_REQUEST); this node has no log4j
// loggers, so SET and DELETE of any logger are INVALID_CONFIG ("does not
// exist") and APPEND and SUBTRACT INVALID_REQUEST, as Kafka answers for an
// unknown logger.
func (h *Handler) incrementalAlterConfigs(ctx context.Context, r *kmsg.IncrementalAlterConfigsRequest) *kmsg.IncrementalAlterConfigsResponse {
	resp := r.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	resp.ThrottleMillis = 0
	dups := duplicateResources(len(r.Resources), func(i int) (kmsg.ConfigResourceType, string) {
		return r.Resources[i].ResourceType, r.Resources[i].ResourceName
	})
	var changed bool
	for i, rr := range r.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		err := func() error {
			if dups[i] {
				return codeErr(kerr.InvalidRequest, "Each resource must appear at most once.")
			}
			names := make([]string, 0, len(rr.Configs))
			var nulls []string
			for _, c := range rr.Configs {
				names = append(names, c.Name)
				if c.Value == nil && c.Op != kmsg.IncrementalAlterConfigOpDelete {
					nulls = append(nulls, c.Name)
				}
			}
			if hasDuplicate(names) {
				return codeErr(kerr.InvalidRequest, "Error due to duplicate config keys")
			}
			if len(nulls) > 0 {
				return codeErr(kerr.InvalidRequest, "Null value not supported for : %s", strings.Join(nulls, ", "))
			}
			if rr.ResourceType == kmsg.ConfigResourceTypeBrokerLogger {
				return h.alterLoggers(rr)
			}
			current, err := h.dynamicConfigs(rr.ResourceType, rr.ResourceName)
			if err != nil {
				return err
			}
			next, err := applyConfigOps(rr.ResourceType, current, rr.Configs)
			if err != nil {
				return err
			}
			return h.writeConfigs(ctx, rr.ResourceType, rr.ResourceName, next, r.ValidateOnly)
		}()
		if err == nil && !r.ValidateOnly && rr.ResourceType != kmsg.ConfigResourceTypeBrokerLogger {
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

// alterLoggers answers a BROKER_LOGGER resource: there are no loggers.
func (h *Handler) alterLoggers(rr kmsg.IncrementalAlterConfigsRequestResource) error {
	if err := h.checkBrokerName(rr.ResourceName); err != nil {
		return err
	}
	for _, c := range rr.Configs {
		switch c.Op {
		case kmsg.IncrementalAlterConfigOpSet, kmsg.IncrementalAlterConfigOpDelete:
			return codeErr(kerr.InvalidConfig, "Logger %s does not exist!", c.Name)
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			return codeErr(kerr.InvalidRequest, "%s operation is not allowed for the BROKER_LOGGER resource", c.Op)
		default:
			return codeErr(kerr.InvalidRequest, "Unknown operation type %d is not allowed for the BROKER_LOGGER resource", int8(c.Op))
		}
	}
	return nil
}

// applyConfigOps applies the operations to a copy of current.
func applyConfigOps(typ kmsg.ConfigResourceType, current map[string]string, ops []kmsg.IncrementalAlterConfigsRequestResourceConfig) (map[string]string, error) {
	lookup := config.TopicDef
	if typ == kmsg.ConfigResourceTypeBroker {
		lookup = config.BrokerDef
	}
	next := maps.Clone(current)
	if next == nil {
		next = map[string]string{}
	}
	for _, op := range ops {
		switch op.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			next[op.Name] = *op.Value
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(next, op.Name)
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			d, ok := lookup(op.Name)
			if !ok || d.Type != config.TypeList {
				return nil, codeErr(kerr.InvalidConfig, "Can't %s to key %s because its type is not LIST.", op.Op, op.Name)
			}
			v, set := next[op.Name]
			if !set && !d.NullDefault {
				v = d.Default
			}
			items := listItems(v)
			for _, it := range strings.Split(*op.Value, ",") {
				if op.Op == kmsg.IncrementalAlterConfigOpAppend {
					if !slices.Contains(items, it) {
						items = append(items, it)
					}
				} else if i := slices.Index(items, it); i >= 0 {
					items = slices.Delete(items, i, i+1)
				}
			}
			next[op.Name] = strings.Join(items, ",")
		default:
			return nil, codeErr(kerr.InvalidRequest, "Unknown alter configs operation type %d for %s", int8(op.Op), op.Name)
		}
	}
	return next, nil
}

// listItems splits a LIST value as Kafka's getParts does: on commas,
// dropping empty items.
func listItems(v string) []string {
	var out []string
	for _, it := range strings.Split(v, ",") {
		if it != "" {
			out = append(out, it)
		}
	}
	return out
}
