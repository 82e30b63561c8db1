package translate

import (
	"fmt"
	"strings"

	"github.com/sluice-mesh/sluice/mesh"
)

// EndpointInputs returns, as a comparable string, what Translate's
// listeners, routes, clusters and warnings for p read from snap.Endpoints:
// the proxy's inbound ports (Envoy), its namespace's server addresses
// (proxyless gRPC) with their TLS modes, and, with mutual TLS on, the
// service accounts behind each service port (SAN matchers). Health, zones,
// labels and pod names are not in it: they only reach EDS.
//
// The endpoint fast path (Endpoints alone for a snapshot that differs
// from the previous one in endpoints only) is sound for p exactly when
// EndpointInputs is the same for both snapshots; otherwise Translate must
// run again. Like Translate it depends on p's kind, namespace, IP and
// MTLS only.
func EndpointInputs(snap *mesh.Snapshot, p *mesh.Proxy, opts Options) string {
	t := newTranslator(snap, p, opts)
	if !t.ok() {
		return ""
	}
	ports := t.servicePorts()
	var b strings.Builder
	switch t.kind {
	case mesh.ProxyEnvoy:
		for _, in := range t.inboundPorts(ports) {
			fmt.Fprintf(&b, "in %d %s %s;", in.port, in.protocol, in.tls)
		}
	case mesh.ProxyGRPC:
		for _, a := range t.grpcServerAddrs(ports) {
			fmt.Fprintf(&b, "srv %s %s;", a.addr, a.tls)
		}
	}
	if t.trustDomain != "" {
		for _, sp := range ports {
			unknown := 0
			for _, ep := range t.snap.Endpoints[sp.key] {
				if ep.ServiceAccount == "" {
					unknown++
				}
			}
			fmt.Fprintf(&b, "ids %s %v %d;", ClusterName(sp.key, t.domain), t.peerIDs(sp), unknown)
		}
	}
	return b.String()
}
