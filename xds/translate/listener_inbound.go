package translate

import (
	"net/netip"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/mesh"
)

// inboundPort is a port of the proxy's workload that some service targets.
type inboundPort struct {
	port     uint32
	protocol mesh.Protocol
	// service names the first service port that targets it, for messages.
	service string
}

// inboundPorts lists the target ports of the services whose endpoints
// include the proxy's IP, in port order, computed once per translation.
// Endpoints count whatever their health: a workload that is not ready yet
// still receives its readiness probes and first requests through Envoy.
func (t *translator) inboundPorts(ports []servicePort) []inboundPort {
	if t.inbound != nil || t.proxy.IP == "" {
		return t.inbound
	}
	self, err := netip.ParseAddr(t.proxy.IP)
	if err != nil {
		t.warnf("proxy %q: IP %q is not an IP address: no inbound ports", t.proxy.ID, t.proxy.IP)
		t.inbound = []inboundPort{}
		return t.inbound
	}
	self = self.Unmap()
	byPort := map[uint32]int{}
	t.inbound = []inboundPort{}
	for _, sp := range ports {
		for _, ep := range t.snap.Endpoints[sp.key] {
			a, err := netip.ParseAddr(ep.Address)
			if err != nil || a.Unmap() != self || ep.Port == 0 || ep.Port > 65535 {
				continue
			}
			in := inboundPort{port: ep.Port, protocol: sp.port.Protocol, service: sp.svc.Key().String()}
			i, seen := byPort[ep.Port]
			if !seen {
				byPort[ep.Port] = len(t.inbound)
				t.inbound = append(t.inbound, in)
				continue
			}
			// Two services target the same port. HTTP flavours share one
			// chain (the upstream speaks the client's protocol); if one
			// says TCP the port is proxied as TCP, which carries HTTP too.
			prev := t.inbound[i]
			if prev.protocol.IsHTTP() != in.protocol.IsHTTP() {
				t.warnf("proxy %q: port %d is HTTP for one of %s, %s and not for the other: proxied as TCP", t.proxy.ID, ep.Port, prev.service, in.service)
				t.inbound[i].protocol = mesh.ProtocolTCP
			}
		}
	}
	sort.Slice(t.inbound, func(i, j int) bool { return t.inbound[i].port < t.inbound[j].port })
	return t.inbound
}

// inboundListener receives every redirected inbound connection. The
// original_dst listener filter restores the port the client dialed; a
// filter chain per inbound port forwards to the application on 127.0.0.1
// (HTTP through a connection manager, anything else as TCP), and the
// default chain forwards any other port to its original destination.
//
// It does not use use_original_dst: handing inbound connections to other
// listeners would give them to the wildcard virtual listeners of headless
// services, which route as outbound.
func (t *translator) inboundListener(ports []servicePort) *listenerv3.Listener {
	l := &listenerv3.Listener{
		Name:             InboundListenerName,
		Address:          socketAddress("0.0.0.0", InboundListenerPort),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters:  []*listenerv3.ListenerFilter{t.originalDstListenerFilter()},
		DefaultFilterChain: &listenerv3.FilterChain{
			Name:    InboundPassthroughCluster,
			Filters: []*listenerv3.Filter{t.tcpProxyFilter(InboundPassthroughCluster, InboundPassthroughCluster)},
		},
	}
	for _, in := range t.inboundPorts(ports) {
		name := InboundClusterName(in.port)
		var f *listenerv3.Filter
		if in.protocol.IsHTTP() {
			f = t.hcmFilter(t.inlineConnectionManager(name, &routev3.RouteConfiguration{
				Name: name,
				VirtualHosts: []*routev3.VirtualHost{{
					Name:    name,
					Domains: []string{"*"},
					Routes: []*routev3.Route{{
						Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
						Action: &routev3.Route_Route{Route: &routev3.RouteAction{
							ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
							Timeout:          durationpb.New(0),
						}},
					}},
				}},
			}))
		} else {
			f = t.tcpProxyFilter(name, name)
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             name,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(in.port)},
			Filters:          []*listenerv3.Filter{f},
		})
	}
	return l
}
