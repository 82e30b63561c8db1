package server

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// controlPlane identifies Sluice in every response.
var controlPlane = &corev3.ControlPlane{Identifier: "sluice"}

// sotwResponse is a SotW response built from pre-marshaled, shared
// resources. go-control-plane sets the nonce on the proto it gets, so each
// call builds a new (shallow) DiscoveryResponse around the shared payloads.
type sotwResponse struct {
	c        *xdsCache
	st       *streamState
	req      *discoveryv3.DiscoveryRequest
	version  string
	anys     []*anypb.Any
	returned map[string]string
	meta     *responseMeta
}

var _ cachev3.Response = (*sotwResponse)(nil)

// newSotwResponse answers req with list. anys, when given, are the list's
// payloads already gathered. st and meta are nil for Fetch.
func newSotwResponse(c *xdsCache, st *streamState, req *discoveryv3.DiscoveryRequest, version string, list []*entry, anys []*anypb.Any, meta *responseMeta) *sotwResponse {
	if anys == nil {
		anys = make([]*anypb.Any, len(list))
		for i, e := range list {
			anys[i] = e.any
		}
	}
	returned := make(map[string]string, len(list))
	for _, e := range list {
		returned[e.name] = e.version
	}
	return &sotwResponse{c: c, st: st, req: req, version: version, anys: anys, returned: returned, meta: meta}
}

func (r *sotwResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	out := &discoveryv3.DiscoveryResponse{
		VersionInfo:  r.version,
		Resources:    r.anys,
		TypeUrl:      r.req.GetTypeUrl(),
		ControlPlane: controlPlane,
	}
	if r.st != nil {
		r.c.building(r.st, out, r.meta)
	}
	return out, nil
}

func (r *sotwResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }

// GetVersion returns the version.
//
// Deprecated: go-control-plane's; use GetResponseVersion.
func (r *sotwResponse) GetVersion() (string, error) { return r.version, nil }

func (r *sotwResponse) GetResponseVersion() string { return r.version }

// GetReturnedResources is the name → version map of what the response
// carries; go-control-plane stores it in the subscription (and edits it), so
// it is never shared.
func (r *sotwResponse) GetReturnedResources() map[string]string { return r.returned }

func (r *sotwResponse) GetContext() context.Context { return context.Background() }

// deltaResponse is a delta response built from pre-marshaled, shared
// resources.
type deltaResponse struct {
	c         *xdsCache
	st        *streamState
	req       *discoveryv3.DeltaDiscoveryRequest
	resources []*discoveryv3.Resource
	next      map[string]string
	meta      *responseMeta
}

var _ cachev3.DeltaResponse = (*deltaResponse)(nil)

func newDeltaResponse(c *xdsCache, st *streamState, req *discoveryv3.DeltaDiscoveryRequest, next map[string]string, meta *responseMeta) *deltaResponse {
	res := make([]*discoveryv3.Resource, len(meta.entries))
	for i, e := range meta.entries {
		res[i] = e.delta
	}
	return &deltaResponse{c: c, st: st, req: req, resources: res, next: next, meta: meta}
}

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discoveryv3.DeltaDiscoveryResponse, error) {
	out := &discoveryv3.DeltaDiscoveryResponse{
		SystemVersionInfo: r.meta.version,
		Resources:         r.resources,
		RemovedResources:  r.meta.removed,
		TypeUrl:           r.req.GetTypeUrl(),
		ControlPlane:      controlPlane,
	}
	r.c.building(r.st, out, r.meta)
	return out, nil
}

func (r *deltaResponse) GetDeltaRequest() *discoveryv3.DeltaDiscoveryRequest { return r.req }

// GetSystemVersion returns the snapshot sequence number the response was built from.
//
// Deprecated: go-control-plane's; use GetResponseVersion.
func (r *deltaResponse) GetSystemVersion() (string, error) { return r.meta.version, nil }

func (r *deltaResponse) GetResponseVersion() string { return r.meta.version }

// GetNextVersionMap returns GetReturnedResources.
//
// Deprecated: go-control-plane's; use GetReturnedResources.
func (r *deltaResponse) GetNextVersionMap() map[string]string { return r.next }

// GetReturnedResources is what the client knows once the response is
// applied: name → version.
func (r *deltaResponse) GetReturnedResources() map[string]string { return r.next }

func (r *deltaResponse) GetContext() context.Context { return context.Background() }
