package translate

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/bootstrap"
)

// Resource names. One scheme for both proxy kinds, Istio-style so that
// operators recognise them in config dumps and stats:
//
//	cluster (CDS) and its endpoints (EDS)  outbound|<port>||<svc>.<ns>.svc.<domain>
//	inbound cluster (Envoy, STATIC)         inbound|<target port>
//	passthrough clusters (Envoy)            PassthroughCluster, InboundPassthroughCluster
//	refusing cluster (Envoy)                BlackHoleCluster
//	gRPC API listeners (LDS)                <svc>.<ns>.svc.<domain>:<port>
//	                                        <svc>.<ns>.svc:<port>
//	                                        <svc>.<ns>:<port>
//	gRPC route configuration (RDS)          <svc>.<ns>.svc.<domain>:<port>
//	gRPC server listeners (LDS)             grpc/server?xds.resource.listening_address=<ip>:<port>
//	Envoy listeners (LDS)                   outbound (0.0.0.0:15001), inbound (0.0.0.0:15006),
//	                                        <ClusterIP>_<port>, 0.0.0.0_<port> (headless HTTP)
//	Envoy route configuration (RDS)         outbound|<port>, shared by every HTTP service on that port
//	inbound filter chains (Envoy, gRPC)     inbound|<port>; inbound|<port>|mtls beside it (PERMISSIVE)
//	route (Gateway API rule × match)        <route ns>/<route name>/rule-<i>/match-<j>
//	gRPC route keeping weight-0 backends    sluice/keep-zero-weight-backends
//	invalid backendRefs                     InvalidBackendCluster
//
// The EDS resource of a cluster has the cluster's name (eds_cluster_config
// leaves service_name empty). Names do not say which proxy kind they are for:
// a cluster of the same name differs between an Envoy and a gRPC proxy (and
// its endpoints between zones), so a cache must key resources by content.
const (
	// OutboundListenerName is the Envoy listener that iptables redirects
	// outbound traffic to; it hands connections to the virtual listener of
	// their original destination.
	OutboundListenerName = "outbound"
	// InboundListenerName is the Envoy listener for traffic to the workload.
	InboundListenerName = "inbound"
	// OutboundListenerPort and InboundListenerPort are the ports iptables
	// redirects to.
	OutboundListenerPort = 15001
	InboundListenerPort  = 15006
	// PassthroughCluster forwards outbound traffic with no matching service
	// to its original destination.
	PassthroughCluster = "PassthroughCluster"
	// InboundPassthroughCluster forwards inbound traffic on a port no service
	// declares to its original destination.
	InboundPassthroughCluster = "InboundPassthroughCluster"
	// BlackHoleCluster is an Envoy cluster without endpoints: connections
	// sent to it are closed (a STRICT port of a sidecar without
	// certificates, which must neither accept plaintext nor pass it on).
	BlackHoleCluster = "BlackHoleCluster"
	// InvalidBackendCluster receives the share of a route rule's traffic
	// that belongs to backendRefs that could not be resolved, so that those
	// requests fail as the Gateway API requires. For Envoy no cluster of
	// this name exists: the route's cluster_not_found_response_code answers
	// 500 (HTTPRoute) or 503, which Envoy turns into UNAVAILABLE for gRPC
	// (GRPCRoute). For proxyless gRPC it is an EDS cluster without
	// endpoints, on which grpc-go fails RPCs with UNAVAILABLE.
	InvalidBackendCluster = "InvalidBackendCluster"
)

// FQDN returns the service's cluster-local DNS name, <svc>.<ns>.svc.<domain>.
func FQDN(k mesh.ServiceKey, domain string) string {
	return k.Name + "." + k.Namespace + ".svc." + domain
}

// ClusterName returns the CDS (and EDS) name of a service port.
func ClusterName(k mesh.PortKey, domain string) string {
	return "outbound|" + strconv.FormatUint(uint64(k.Port), 10) + "||" + FQDN(k.Service(), domain)
}

// InboundClusterName returns the name of the Envoy cluster that delivers
// inbound traffic for a target port to the local application.
func InboundClusterName(port uint32) string {
	return "inbound|" + strconv.FormatUint(uint64(port), 10)
}

// GRPCListenerNames returns the API listener names of a service port, the
// targets a proxyless client may dial (xds:///<name>): the FQDN, and the
// short forms <svc>.<ns>.svc and <svc>.<ns>, each with the port. The bare
// <svc>:<port> form is not offered because it depends on the client's
// namespace, which a client without metadata does not send.
func GRPCListenerNames(k mesh.PortKey, domain string) []string {
	port := ":" + strconv.FormatUint(uint64(k.Port), 10)
	return []string{
		FQDN(k.Service(), domain) + port,
		k.Name + "." + k.Namespace + ".svc" + port,
		k.Name + "." + k.Namespace + port,
	}
}

// GRPCServerListenerName returns the name of the listener a proxyless gRPC
// server listening on addr asks for (bootstrap.ServerListenerTemplate with
// the address as grpc-go formats it: <ip>:<port>, [<ipv6>]:<port>).
func GRPCServerListenerName(addr netip.AddrPort) string {
	return fmt.Sprintf(bootstrap.ServerListenerTemplate, addr.String())
}

// GRPCRouteName returns the RDS name shared by a service port's gRPC API
// listeners.
func GRPCRouteName(k mesh.PortKey, domain string) string {
	return FQDN(k.Service(), domain) + ":" + strconv.FormatUint(uint64(k.Port), 10)
}

// EnvoyRouteName returns the RDS name of the Envoy outbound routes on a port.
func EnvoyRouteName(port uint32) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10)
}

// VirtualListenerName returns the name of the Envoy listener for traffic to
// ip:port; ip is "0.0.0.0" for the wildcard listener of headless services.
func VirtualListenerName(ip string, port uint32) string {
	return ip + "_" + strconv.FormatUint(uint64(port), 10)
}

// hostDomains returns the Host/authority values an Envoy virtual host
// matches for a service port: each name with and without the port. The
// bare service name is included only for a client in the same namespace.
func hostDomains(svc *mesh.Service, port uint32, proxyNamespace, domain string) []string {
	names := []string{
		FQDN(svc.Key(), domain),
		svc.Name + "." + svc.Namespace + ".svc",
		svc.Name + "." + svc.Namespace,
	}
	if proxyNamespace != "" && proxyNamespace == svc.Namespace {
		names = append(names, svc.Name)
	}
	for _, ip := range svc.ClusterIPs {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is6() {
			ip = "[" + a.String() + "]"
		}
		names = append(names, ip)
	}
	p := ":" + strconv.FormatUint(uint64(port), 10)
	out := make([]string, 0, 2*len(names))
	for _, n := range names {
		out = append(out, n, n+p)
	}
	return out
}
