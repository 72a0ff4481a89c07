package api

import (
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeCluster v0-2.
//
// The cluster id, the active controller's id and the registered brokers
// (KIP-700), from the metadata image, brokers sorted by id; none is ever
// fenced (IsFenced false, v2), so IncludeFencedBrokers changes nothing.
//
// EndpointType (v1+): this listener is a broker endpoint, so 1 (brokers) is
// answered and echoed; 2 (controllers) gets MISMATCHED_ENDPOINT_TYPE and any
// other value UNSUPPORTED_ENDPOINT_TYPE, with a message, as a Kafka broker
// answers (v0 has no EndpointType and always describes brokers).
//
// ClusterAuthorizedOperations is Kafka's "not requested" -2147483648
// unless IncludeClusterAuthorizedOperations; then, with no authorizer,
// every operation that applies to the cluster is allowed.
func (h *Handler) describeCluster(r *kmsg.DescribeClusterRequest) *kmsg.DescribeClusterResponse {
	resp := r.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.ThrottleMillis = 0
	if r.Version >= 1 {
		switch r.EndpointType {
		case 1:
		case 2:
			resp.ErrorCode = kerr.MismatchedEndpointType.Code
			resp.ErrorMessage = kmsg.StringPtr("The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER")
			return resp
		default:
			resp.ErrorCode = kerr.UnsupportedEndpointType.Code
			resp.ErrorMessage = kmsg.StringPtr("Unsupported endpoint type " + strconv.Itoa(int(r.EndpointType)))
			return resp
		}
		resp.EndpointType = r.EndpointType
	}
	img := h.b.Image()
	resp.ClusterID = img.ClusterID
	resp.ControllerID = h.controllerForClients(img)
	ids := make([]int32, 0, len(img.Brokers))
	for id := range img.Brokers {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		b := img.Brokers[id]
		sb := kmsg.NewDescribeClusterResponseBroker()
		sb.NodeID, sb.Host, sb.Port = b.NodeID, b.Host, b.Port
		if b.Rack != "" {
			sb.Rack = kmsg.StringPtr(b.Rack)
		}
		resp.Brokers = append(resp.Brokers, sb)
	}
	if r.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = clusterOperations
	}
	return resp
}

// clusterOperations is the bit set (1 << ACLOperation) of the operations
// Kafka's AclEntry.supportedOperations lists for the CLUSTER resource.
var clusterOperations = func() int32 {
	var bits int32
	for _, op := range []kmsg.ACLOperation{
		kmsg.ACLOperationCreate,
		kmsg.ACLOperationAlter,
		kmsg.ACLOperationDescribe,
		kmsg.ACLOperationClusterAction,
		kmsg.ACLOperationDescribeConfigs,
		kmsg.ACLOperationAlterConfigs,
		kmsg.ACLOperationIdempotentWrite,
	} {
		bits |= 1 << int32(op)
	}
	return bits
}()
