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
// No features are advertised (the metadata.version feature comes with the
// cluster).
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
	return resp
}
