package translate

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// Filter builders shared by the listener builders.

// routerFilter is the terminal HTTP filter; Envoy and grpc-go both require
// the last HTTP filter to be terminal.
func (t *translator) routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.any(&routerv3.Router{})},
	}
}

// rdsConnectionManager is an HttpConnectionManager that fetches the route
// configuration routeName over ADS.
func (t *translator) rdsConnectionManager(statPrefix, routeName string) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters: []*hcmv3.HttpFilter{t.routerFilter()},
	}
}

// inlineConnectionManager is an HttpConnectionManager with its route
// configuration inline.
func (t *translator) inlineConnectionManager(statPrefix string, rc *routev3.RouteConfiguration) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix:     statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters:    []*hcmv3.HttpFilter{t.routerFilter()},
	}
}

// hcmFilter wraps an HttpConnectionManager as a network filter.
func (t *translator) hcmFilter(hcm *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.any(hcm)},
	}
}

// tcpProxyFilter proxies a connection to cluster without looking inside.
func (t *translator) tcpProxyFilter(statPrefix, cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name: wellknown.TCPProxy,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.any(&tcpproxyv3.TcpProxy{
			StatPrefix:       statPrefix,
			ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
		})},
	}
}

// originalDstListenerFilter restores the destination address iptables
// rewrote, so filter chains can match on the original port.
func (t *translator) originalDstListenerFilter() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:       wellknown.OriginalDestination,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: t.any(&originaldstv3.OriginalDst{})},
	}
}

// tlsInspectorListenerFilter sets a connection's transport protocol to
// "tls" when it starts with a TLS ClientHello, so filter chains can tell
// mutual TLS from plaintext (PERMISSIVE ports).
func (t *translator) tlsInspectorListenerFilter() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:       wellknown.TLSInspector,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: t.any(&tlsinspectorv3.TlsInspector{})},
	}
}
