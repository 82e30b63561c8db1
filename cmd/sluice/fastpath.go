package main

import (
	"hash/fnv"
	"slices"
	"strconv"

	"github.com/sluice-mesh/sluice/mesh"
)

// endpointIdentity summarises what of the endpoints reaches more than EDS:
// which addresses, target ports and service accounts stand behind each
// service port. Envoy's inbound listener (which ports serve the proxy's own
// IP), proxyless gRPC server listeners (server addresses) and mTLS SAN
// matchers (service accounts) are built from it; health, zones and labels
// reach EDS only.
//
// The xDS server's endpoint fast path re-translates EDS alone, so an update
// that discovery marks endpoints-only is sent down that path only when this
// summary did not change; otherwise it is a full update. Readiness flips and
// draining, the hot case, keep the fast path; new or removed pods do not.
// (translate.EndpointInputs is the exact, per-proxy form of the same rule.)
func endpointIdentity(s *mesh.Snapshot) uint64 {
	h := fnv.New64a()
	keys := make([]mesh.PortKey, 0, len(s.Endpoints))
	for k := range s.Endpoints {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b mesh.PortKey) int {
		if a.Namespace != b.Namespace {
			return compare(a.Namespace, b.Namespace)
		}
		if a.Name != b.Name {
			return compare(a.Name, b.Name)
		}
		return int(a.Port) - int(b.Port)
	})
	for _, k := range keys {
		h.Write([]byte(k.Namespace + "/" + k.Name + ":" + strconv.Itoa(int(k.Port)) + "{"))
		for _, ep := range s.Endpoints[k] { // sorted by address, then port
			h.Write([]byte(ep.Address + ":" + strconv.Itoa(int(ep.Port)) + "@" + ep.ServiceAccount + ";"))
		}
		h.Write([]byte("}"))
	}
	return h.Sum64()
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// fastPathGuard turns endpoints-only updates into full ones when the
// endpoint identity changed. It is used by the coalescer's consumer, one
// update at a time.
type fastPathGuard struct {
	last  uint64
	valid bool
}

// endpointsOnly says whether an update may take the endpoint fast path.
func (g *fastPathGuard) endpointsOnly(s *mesh.Snapshot, discoveryEndpointsOnly bool) bool {
	id := endpointIdentity(s)
	same := g.valid && id == g.last
	g.last, g.valid = id, true
	return discoveryEndpointsOnly && same
}
