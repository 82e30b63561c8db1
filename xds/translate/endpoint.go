package translate

import (
	"net/netip"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/mesh"
)

// endpoints returns one ClusterLoadAssignment per service port, in the
// order of ports, and the empty one of InvalidBackendCluster when
// proxyless gRPC has that cluster.
func (t *translator) endpoints(ports []servicePort) []types.Resource {
	out := make([]types.Resource, 0, len(ports)+1)
	for _, sp := range ports {
		out = append(out, t.loadAssignment(sp))
	}
	if t.needsInvalidBackendCluster(ports) {
		out = append(out, &endpointv3.ClusterLoadAssignment{ClusterName: InvalidBackendCluster})
	}
	return out
}

// loadAssignment builds the EDS resource of a service port.
//
// Endpoints are grouped into one locality per zone. Every endpoint has
// weight 1 and every locality the number of its endpoints, so that a
// client weighting localities (grpc-go's xds_wrr_locality) still spreads
// load evenly over endpoints.
//
// Health: Healthy endpoints are HEALTHY. Draining (serving but terminating)
// endpoints are DRAINING for Envoy, which lets requests in flight finish and
// sends it no new ones, and are left out for proxyless gRPC, which has no
// draining state. Unhealthy endpoints are left out for both.
//
// Locality-aware routing uses priorities: when the service asks for it and
// the proxy's zone has endpoints, that zone is priority 0 and every other
// zone priority 1. Envoy then spills over gradually: with the default
// overprovisioning factor of 1.4 it moves traffic to priority 1 in
// proportion as fewer than ~71% of the local endpoints are healthy.
// grpc-go's priority policy moves to priority 1 only when priority 0 has no
// reachable endpoint at all. Priorities are contiguous from 0, as grpc-go
// requires: with no local endpoint every zone is priority 0.
func (t *translator) loadAssignment(sp servicePort) *endpointv3.ClusterLoadAssignment {
	name := ClusterName(sp.key, t.domain)
	lb := t.lbFor(sp.svc)
	eps := t.snap.Endpoints[sp.key]
	byZone := make(map[string][]*endpointv3.LbEndpoint, 4)
	seen := make(map[netip.AddrPort]bool, len(eps))
	var buf [64]byte
	for _, ep := range eps {
		status, offered := t.healthStatus(ep.Health)
		if !offered {
			continue
		}
		addr, err := netip.ParseAddr(ep.Address)
		if err != nil {
			t.warnf("%s: endpoint address %q is not an IP address: skipped", name, ep.Address)
			continue
		}
		if ep.Port == 0 || ep.Port > 65535 {
			t.warnf("%s: endpoint %s has invalid port %d: skipped", name, ep.Address, ep.Port)
			continue
		}
		ap := netip.AddrPortFrom(addr.Unmap(), uint16(ep.Port))
		if seen[ap] {
			// grpc-go NACKs an EDS resource that repeats an address.
			t.warnf("%s: duplicate endpoint %s: skipped", name, ap)
			continue
		}
		seen[ap] = true
		ip := ep.Address
		if canonical := ap.Addr().AppendTo(buf[:0]); string(canonical) != ip {
			ip = string(canonical)
		}
		byZone[ep.Zone] = append(byZone[ep.Zone], &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(ip, ep.Port),
			}},
			HealthStatus:        status,
			LoadBalancingWeight: wrapperspb.UInt32(1),
		})
	}

	zones := make([]string, 0, len(byZone))
	for z := range byZone {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	_, hasLocal := byZone[t.proxy.Zone]
	prioritise := lb.localityAware && t.proxy.Zone != "" && hasLocal

	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, z := range zones {
		var priority uint32
		if prioritise && z != t.proxy.Zone {
			priority = 1
		}
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Zone: z},
			LbEndpoints:         byZone[z],
			LoadBalancingWeight: wrapperspb.UInt32(uint32(len(byZone[z]))),
			Priority:            priority,
		})
	}
	// Priority 0 first, then zones in order: the same order every time.
	sort.SliceStable(cla.Endpoints, func(i, j int) bool { return cla.Endpoints[i].Priority < cla.Endpoints[j].Priority })
	return cla
}

// healthStatus maps a model health state to the EDS status for the proxy's
// kind, and reports whether the endpoint is offered at all.
func (t *translator) healthStatus(h mesh.Health) (corev3.HealthStatus, bool) {
	switch h {
	case mesh.Healthy:
		return corev3.HealthStatus_HEALTHY, true
	case mesh.Draining:
		if t.kind == mesh.ProxyEnvoy {
			return corev3.HealthStatus_DRAINING, true
		}
	}
	return corev3.HealthStatus_UNKNOWN, false
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
