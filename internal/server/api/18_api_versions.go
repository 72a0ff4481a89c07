package api

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ApiVersions v0-5.
//
// Lists exactly the APIs and versions that Supports lets through. A request
// at a version above ours is answered, not refused (KIP-511): error
// UNSUPPORTED_VERSION and our ranges, in the v0 format every client reads.
// v3+ advertise one feature, Kafka's transaction.version (supported 0-2,
// finalized at the transaction.version broker config, 2 by default):
// clients use KIP-890 part 2 transactions when it is 2. The
// metadata.version feature comes with the cluster.
func (h *Handler) apiVersions(r *kmsg.ApiVersionsRequest) kmsg.Response {
	resp := kmsg.NewPtrApiVersionsResponse()
	if !h.Supports(r.Key(), r.Version) {
		resp.SetVersion(0)
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		resp.ApiKeys = apiKeys()
		return resp
	}
	resp.SetVersion(r.Version)
	resp.ApiKeys = apiKeys()
	if r.Version >= 3 {
		tv := h.txnVersion
		resp.SupportedFeatures = []kmsg.ApiVersionsResponseSupportedFeature{{Name: "transaction.version", MinVersion: 0, MaxVersion: 2}}
		resp.FinalizedFeatures = []kmsg.ApiVersionsResponseFinalizedFeature{{Name: "transaction.version", MinVersionLevel: tv, MaxVersionLevel: tv}}
		resp.FinalizedFeaturesEpoch = finalizedFeaturesEpoch
	}
	return resp
}

// finalizedFeaturesEpoch is the epoch of the advertised finalized features.
// They change only with a restart on new configs, which clients see when
// they reconnect; a constant above -1 says the features are known.
const finalizedFeaturesEpoch = 1
