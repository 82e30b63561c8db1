package validate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// TLS transport sockets as Envoy loads them: a cluster's holds an
// UpstreamTlsContext, a filter chain's a DownstreamTlsContext (Envoy
// rejects the other way round), and a filter chain that matches
// transport_protocol "tls" terminates TLS (without a transport socket it
// would hand TLS bytes to a plaintext filter).

// checkUpstreamSocket checks a cluster's transport socket.
func (s *set) checkUpstreamSocket(where string, ts *corev3.TransportSocket) {
	if ts.GetName() != wellknown.TransportSocketTLS {
		return
	}
	if !ts.GetTypedConfig().MessageIs(&tlsv3.UpstreamTlsContext{}) {
		s.errorf("%s: TLS transport socket holds %q, not an UpstreamTlsContext", where, ts.GetTypedConfig().GetTypeUrl())
	}
}

// checkDownstreamSocket checks a filter chain's transport socket.
func (s *set) checkDownstreamSocket(where string, fc *listenerv3.FilterChain) {
	ts := fc.GetTransportSocket()
	if ts.GetName() == wellknown.TransportSocketTLS && !ts.GetTypedConfig().MessageIs(&tlsv3.DownstreamTlsContext{}) {
		s.errorf("%s: TLS transport socket holds %q, not a DownstreamTlsContext", where, ts.GetTypedConfig().GetTypeUrl())
	}
	if fc.GetFilterChainMatch().GetTransportProtocol() == "tls" && ts.GetName() != wellknown.TransportSocketTLS {
		s.errorf("%s: matches transport_protocol tls but does not terminate TLS", where)
	}
}
