package translate

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/sluice-mesh/sluice/mesh"
)

// grpcServerAddr is an address a proxyless gRPC server may listen on: the
// address and target port of an endpoint of a gRPC or HTTP/2 service port.
type grpcServerAddr struct {
	addr netip.AddrPort
	// tls is the TLS mode of the services with an endpoint there
	// (mergeTLSModes).
	tls mesh.TLSMode
	// service names the first of them, for messages.
	service string
}

// grpcServerListeners returns the listeners proxyless gRPC servers
// (xds.NewGRPCServer) ask for: one per address an endpoint of a gRPC or
// HTTP/2 service port of the proxy's namespace has, named
// GRPCServerListenerName(<ip>:<port>), the name grpc-go makes from the
// bootstrap's server_listener_resource_name_template and its listening
// address. An endpoint's address and target port are what its server
// listens on; its pod lives in the service's namespace, as the server's
// proxy does.
//
// Servers are not told apart by IP (the xDS server classes gRPC proxies by
// kind, namespace and zone only), so a translation holds the listeners of
// every such endpoint of the namespace, whatever its health (a server that
// is not ready yet needs its listener to become ready); each server
// subscribes to its own. A proxy without a namespace gets none.
//
// What grpc-go (A36, processServerSideListener) requires and this
// satisfies: no listener filters and no use_original_dst, hence no
// tls_inspector; a socket address equal to the listening address; filter
// chains with an HttpConnectionManager as the only network filter, the
// router HTTP filter last, RDS over ADS or an inline route configuration;
// and every route a non_forwarding_action (any other action fails the RPCs
// it matches). Filter chain matches on destination port, server names,
// application protocols or a transport protocol other than raw_buffer make
// grpc-go drop the chain, so there is one chain without a match.
//
// TLS: DISABLE gives a chain without a transport socket (the server uses
// its fallback credentials, plaintext); STRICT a DownstreamTlsContext that
// requires a client certificate from the mesh (for a server without
// certificates, no listener: it does not serve). PERMISSIVE cannot be done:
// grpc-go cannot sniff TLS (no tls_inspector, and a transport_protocol
// match other than raw_buffer drops the chain), so one port is either TLS
// or plaintext. Since meshed clients call STRICT and PERMISSIVE services
// with mutual TLS, PERMISSIVE is served as STRICT: meshed clients work,
// plaintext clients are refused. A service that sets PERMISSIVE
// explicitly gets a warning saying so. A server without certificates
// serves PERMISSIVE ports in plaintext.
func (t *translator) grpcServerListeners(ports []servicePort) []types.Resource {
	addrs := t.grpcServerAddrs(ports)
	out := make([]types.Resource, 0, len(addrs))
	// A namespace may have thousands of server addresses on a few ports:
	// the filter chain depends on the port and TLS only, so it is built
	// (and its Anys marshaled) once per pair and shared, read-only.
	chains := map[grpcServerChainKey]*listenerv3.FilterChain{}
	for _, a := range addrs {
		if a.tls == mesh.TLSStrict && !t.proxy.MTLS {
			continue // fail closed: the server does not serve
		}
		k := grpcServerChainKey{port: uint32(a.addr.Port()), tls: a.tls != mesh.TLSDisable && t.proxy.MTLS}
		fc, ok := chains[k]
		if !ok {
			fc = t.grpcServerFilterChain(k)
			chains[k] = fc
		}
		out = append(out, &listenerv3.Listener{
			Name:             GRPCServerListenerName(a.addr),
			Address:          socketAddress(a.addr.Addr().String(), k.port),
			TrafficDirection: corev3.TrafficDirection_INBOUND,
			FilterChains:     []*listenerv3.FilterChain{fc},
		})
	}
	return out
}

type grpcServerChainKey struct {
	port uint32
	tls  bool
}

// grpcServerAddrs lists the server addresses of the proxy's namespace.
func (t *translator) grpcServerAddrs(ports []servicePort) []grpcServerAddr {
	ns := t.proxy.Namespace
	if ns == "" {
		return nil
	}
	var out []grpcServerAddr
	index := map[netip.AddrPort]int{}
	for _, sp := range ports {
		if sp.key.Namespace != ns || (sp.port.Protocol != mesh.ProtocolGRPC && sp.port.Protocol != mesh.ProtocolHTTP2) {
			continue
		}
		eps := t.snap.Endpoints[sp.key]
		if len(eps) == 0 {
			continue
		}
		mode := t.tlsModeOf(sp.svc)
		switch {
		case mode == mesh.TLSStrict && !t.proxy.MTLS:
			t.warnf("%s is STRICT: proxyless gRPC servers without certificates (no MTLS in their node metadata) get no listener for port %d and do not serve", sp.svc.Key(), sp.key.Port)
		case sp.svc.TLSMode == mesh.TLSPermissive && t.proxy.MTLS:
			t.warnf("%s: PERMISSIVE: proxyless gRPC servers of port %d accept mutual TLS only (grpc-go cannot accept TLS and plaintext on one port); plaintext clients are refused; set sluice.dev/tls-mode DISABLE to accept them", sp.svc.Key(), sp.key.Port)
		}
		for _, ep := range eps {
			a, err := netip.ParseAddr(ep.Address)
			if err != nil || ep.Port == 0 || ep.Port > 65535 {
				continue
			}
			ap := netip.AddrPortFrom(a.Unmap(), uint16(ep.Port))
			i, seen := index[ap]
			if !seen {
				index[ap] = len(out)
				out = append(out, grpcServerAddr{addr: ap, tls: mode, service: sp.svc.Key().String()})
				continue
			}
			if merged, differ := mergeTLSModes(out[i].tls, mode); differ {
				t.warnf("%s is %s for %s and %s for %s: proxyless gRPC servers there require mutual TLS", ap, out[i].tls, out[i].service, mode, sp.svc.Key())
				out[i].tls = merged
			}
		}
	}
	return out
}

// grpcServerFilterChain is the filter chain of a server port: an inline
// route configuration that accepts every RPC (non_forwarding_action: the
// server handles it itself), and mutual TLS when k.tls.
func (t *translator) grpcServerFilterChain(k grpcServerChainKey) *listenerv3.FilterChain {
	name := InboundClusterName(k.port)
	fc := &listenerv3.FilterChain{
		Name: name,
		Filters: []*listenerv3.Filter{t.hcmFilter(t.inlineConnectionManager(name, &routev3.RouteConfiguration{
			Name: name,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    name,
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
				}},
			}},
		}))},
	}
	if k.tls {
		fc.TransportSocket = t.grpcDownstreamTLS()
	}
	return fc
}
