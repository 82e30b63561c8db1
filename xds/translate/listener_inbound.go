package translate

import (
	"net/netip"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/mesh"
)

// inboundPort is a port of the proxy's workload that some service targets.
type inboundPort struct {
	port     uint32
	protocol mesh.Protocol
	// tls is the TLS mode of the services that target it (mergeTLSModes).
	tls mesh.TLSMode
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
			in := inboundPort{port: ep.Port, protocol: sp.port.Protocol, tls: t.tlsModeOf(sp.svc), service: sp.svc.Key().String()}
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
			if mode, differ := mergeTLSModes(prev.tls, in.tls); differ {
				t.warnf("proxy %q: port %d is %s for %s and %s for %s: it accepts both mutual TLS and plaintext", t.proxy.ID, ep.Port, prev.tls, prev.service, in.tls, in.service)
				t.inbound[i].tls = mode
			}
		}
	}
	sort.Slice(t.inbound, func(i, j int) bool { return t.inbound[i].port < t.inbound[j].port })
	return t.inbound
}

// inboundListener receives every redirected inbound connection. The
// original_dst listener filter restores the port the client dialed; filter
// chains per inbound port forward to the application on 127.0.0.1 (HTTP
// through a connection manager, anything else as TCP), and the default
// chain forwards any other port to its original destination.
//
// Per the port's TLS mode: DISABLE, one plaintext chain; STRICT, one chain
// that terminates mutual TLS (a plaintext client fails the handshake), or,
// for a sidecar without certificates, one to BlackHoleCluster;
// PERMISSIVE, both, told apart by the tls_inspector listener filter: the
// chain inbound|<port>|mtls matches transport_protocol "tls", the plaintext
// chain inbound|<port> everything else. The inspector waits for the
// client's first bytes; continue_on_listener_filters_timeout lets a
// server-first protocol through (as plaintext) instead of closing it.
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
	sniff := false
	for _, in := range t.inboundPorts(ports) {
		name := InboundClusterName(in.port)
		chain := func(name, transport string, f *listenerv3.Filter, tls bool) *listenerv3.FilterChain {
			fc := &listenerv3.FilterChain{
				Name:             name,
				FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(in.port), TransportProtocol: transport},
				Filters:          []*listenerv3.Filter{f},
			}
			if tls {
				fc.TransportSocket = t.envoyDownstreamTLS(in.protocol.IsHTTP())
			}
			return fc
		}
		switch {
		case in.tls == mesh.TLSStrict && !t.proxy.MTLS:
			t.warnf("proxy %q has no certificates: port %d is STRICT (%s): every connection to it is refused", t.proxy.ID, in.port, in.service)
			l.FilterChains = append(l.FilterChains, chain(name, "", t.tcpProxyFilter(name, BlackHoleCluster), false))
		case in.tls == mesh.TLSStrict:
			l.FilterChains = append(l.FilterChains, chain(name, "", t.inboundFilter(in, true), true))
		case in.tls == mesh.TLSPermissive && t.proxy.MTLS:
			sniff = true
			l.FilterChains = append(l.FilterChains,
				chain(name+"|mtls", "tls", t.inboundFilter(in, true), true),
				chain(name, "", t.inboundFilter(in, false), false))
		default:
			l.FilterChains = append(l.FilterChains, chain(name, "", t.inboundFilter(in, false), false))
		}
	}
	if sniff {
		l.ListenerFilters = append(l.ListenerFilters, t.tlsInspectorListenerFilter())
		l.ContinueOnListenerFiltersTimeout = true
	}
	return l
}

// inboundFilter delivers an inbound port's traffic to the application:
// through a connection manager with one catch-all route for HTTP ports, as
// TCP otherwise. Behind mutual TLS, the connection manager replaces
// x-forwarded-client-cert with the caller's SPIFFE ID (URI), so the
// application learns who called; in plaintext it strips the header, so
// nobody can claim an identity.
func (t *translator) inboundFilter(in inboundPort, mtls bool) *listenerv3.Filter {
	name := InboundClusterName(in.port)
	if !in.protocol.IsHTTP() {
		return t.tcpProxyFilter(name, name)
	}
	hcm := t.inlineConnectionManager(name, &routev3.RouteConfiguration{
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
	})
	if mtls {
		hcm.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
		hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	}
	return t.hcmFilter(hcm)
}
