package validate

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func provider(cert string) *tlsv3.CertificateProviderPluginInstance {
	return &tlsv3.CertificateProviderPluginInstance{InstanceName: "sluice", CertificateName: cert}
}

func tlsSocket(t *testing.T, ctx proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, ctx)}}
}

func grpcCommon() *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: provider("default"),
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: provider("ROOTCA"),
		}},
	}
}

func downstream(common *tlsv3.CommonTlsContext) *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{CommonTlsContext: common, RequireClientCertificate: wrapperspb.Bool(true)}
}

// serverListener is what Sluice sends a proxyless gRPC server: one chain
// without a match, an inline route of non_forwarding_action, mTLS.
func serverListener(t *testing.T) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "inbound|9090",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "inbound|9090",
			VirtualHosts: []*routev3.VirtualHost{{
				Name: "inbound|9090", Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{router(t)},
	}
	return &listenerv3.Listener{
		Name:    "grpc/server?xds.resource.listening_address=10.0.0.1:9090",
		Address: addr("10.0.0.1", 9090),
		FilterChains: []*listenerv3.FilterChain{{
			Name: "inbound|9090",
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)},
			}},
			TransportSocket: tlsSocket(t, downstream(grpcCommon())),
		}},
	}
}

func serverHCM(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	return hcm
}

func setServerHCM(t *testing.T, l *listenerv3.Listener, hcm *hcmv3.HttpConnectionManager) {
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}
}

// tlsSet is grpcSet with an mTLS cluster and a server listener.
func tlsSet(t *testing.T) map[string][]types.Resource {
	s := grpcSet(t)
	c := edsCluster("echo-cluster")
	c.TransportSocket = tlsSocket(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: grpcCommon()})
	s[resourcev3.ClusterType] = []types.Resource{c}
	s[resourcev3.ListenerType] = append(s[resourcev3.ListenerType], serverListener(t))
	return s
}

func TestGRPCTLSValidSet(t *testing.T) {
	if err := GRPCResources(tlsSet(t)); err != nil {
		t.Fatal(err)
	}
}

func TestGRPCTLSRules(t *testing.T) {
	setCluster := func(t *testing.T, s map[string][]types.Resource, ctx proto.Message, name string) {
		c := edsCluster("echo-cluster")
		c.TransportSocket = tlsSocket(t, ctx)
		if name != "" {
			c.TransportSocket.Name = name
		}
		s[resourcev3.ClusterType] = []types.Resource{c}
	}
	server := func(s map[string][]types.Resource) *listenerv3.Listener {
		return s[resourcev3.ListenerType][1].(*listenerv3.Listener)
	}
	tests := []struct {
		name   string
		change func(t *testing.T, s map[string][]types.Resource)
		want   string
	}{{
		name: "server listener with a tls_inspector",
		change: func(t *testing.T, s map[string][]types.Resource) {
			server(s).ListenerFilters = []*listenerv3.ListenerFilter{{
				Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &tlsinspectorv3.TlsInspector{})},
			}}
		},
		want: "1 listener filters (grpc-go servers accept none)",
	}, {
		name: "server chain matching a destination port",
		change: func(t *testing.T, s map[string][]types.Resource) {
			server(s).FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9090)}
		},
		want: "destination_port match: grpc-go drops the chain",
	}, {
		name: "server chain matching transport protocol tls",
		change: func(t *testing.T, s map[string][]types.Resource) {
			server(s).FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
		},
		want: `transport_protocol "tls": grpc-go drops the chain`,
	}, {
		name: "server route that forwards",
		change: func(t *testing.T, s map[string][]types.Resource) {
			l := server(s)
			hcm := serverHCM(t, l)
			hcm.GetRouteConfig().VirtualHosts[0].Routes[0].Action = &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "echo-cluster"}}}
			setServerHCM(t, l, hcm)
		},
		want: "not a non_forwarding_action",
	}, {
		name: "server RDS from self",
		change: func(t *testing.T, s map[string][]types.Resource) {
			l := server(s)
			hcm := serverHCM(t, l)
			hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
				ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}}},
				RouteConfigName: "echo",
			}}
			setServerHCM(t, l, hcm)
		},
		want: "RDS config source is not ads",
	}, {
		name: "server TLS with SAN matchers",
		change: func(t *testing.T, s map[string][]types.Resource) {
			common := grpcCommon()
			//lint:ignore SA1019 the deprecated field is what grpc-go accepts
			common.GetValidationContext().MatchSubjectAltNames = []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "spiffe://x/ns/a/sa/b"}}}
			server(s).FilterChains[0].TransportSocket = tlsSocket(t, downstream(common))
		},
		want: "match_subject_alt_names is not supported on grpc-go servers",
	}, {
		name: "server requires client certificates without roots",
		change: func(t *testing.T, s map[string][]types.Resource) {
			common := grpcCommon()
			common.ValidationContextType = nil
			server(s).FilterChains[0].TransportSocket = tlsSocket(t, downstream(common))
		},
		want: "require_client_certificate without a ca_certificate_provider_instance",
	}, {
		name: "server TLS without an identity",
		change: func(t *testing.T, s map[string][]types.Resource) {
			common := grpcCommon()
			common.TlsCertificateProviderInstance = nil
			server(s).FilterChains[0].TransportSocket = tlsSocket(t, downstream(common))
		},
		want: "a server needs tls_certificate_provider_instance",
	}, {
		name: "cluster TLS with SDS secrets (Envoy's way)",
		change: func(t *testing.T, s map[string][]types.Resource) {
			setCluster(t, s, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default"}},
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
					ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"},
				},
			}}, "")
		},
		want: "certificates given inline or by SDS",
	}, {
		name: "cluster TLS with typed SAN matchers",
		change: func(t *testing.T, s map[string][]types.Resource) {
			common := grpcCommon()
			common.GetValidationContext().MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_URI,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "spiffe://x/ns/a/sa/b"}},
			}}
			setCluster(t, s, &tlsv3.UpstreamTlsContext{CommonTlsContext: common}, "")
		},
		want: "match_typed_subject_alt_names is ignored by grpc-go",
	}, {
		name: "cluster TLS without roots",
		change: func(t *testing.T, s map[string][]types.Resource) {
			common := grpcCommon()
			common.ValidationContextType = nil
			setCluster(t, s, &tlsv3.UpstreamTlsContext{CommonTlsContext: common}, "")
		},
		want: "no validation context (a client needs the roots)",
	}, {
		name: "cluster TLS with tls_params",
		change: func(t *testing.T, s map[string][]types.Resource) {
			common := grpcCommon()
			common.TlsParams = &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3}
			setCluster(t, s, &tlsv3.UpstreamTlsContext{CommonTlsContext: common}, "")
		},
		want: "tls_params is not supported by grpc-go",
	}, {
		name: "cluster transport socket with another name",
		change: func(t *testing.T, s map[string][]types.Resource) {
			setCluster(t, s, &tlsv3.UpstreamTlsContext{CommonTlsContext: grpcCommon()}, "tls")
		},
		want: `name "tls", grpc-go wants "envoy.transport_sockets.tls"`,
	}, {
		name: "cluster with a DownstreamTlsContext",
		change: func(t *testing.T, s map[string][]types.Resource) {
			setCluster(t, s, downstream(grpcCommon()), "")
		},
		want: "not an UpstreamTlsContext",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tlsSet(t)
			tt.change(t, s)
			requireErr(t, GRPCResources(s), tt.want)
		})
	}
}

// Envoy's side of TLS: context types by place, and a chain matching TLS
// must terminate it.
func TestTLSSocketRules(t *testing.T) {
	chain := func(t *testing.T, match *listenerv3.FilterChainMatch, ts *corev3.TransportSocket) map[string][]types.Resource {
		fc := tcpChain(t, "echo-cluster", match)
		fc.TransportSocket = ts
		return map[string][]types.Resource{
			resourcev3.ListenerType: {&listenerv3.Listener{
				Name: "inbound", Address: addr("0.0.0.0", 15006), FilterChains: []*listenerv3.FilterChain{fc},
				ListenerFilters: []*listenerv3.ListenerFilter{{
					Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &tlsinspectorv3.TlsInspector{})},
				}},
			}},
			resourcev3.ClusterType: {edsCluster("echo-cluster")},
		}
	}
	if err := Resources(chain(t, &listenerv3.FilterChainMatch{TransportProtocol: "tls"}, tlsSocket(t, downstream(grpcCommon())))); err != nil {
		t.Fatalf("valid TLS chain: %v", err)
	}
	requireErr(t, Resources(chain(t, &listenerv3.FilterChainMatch{TransportProtocol: "tls"}, nil)), "matches transport_protocol tls but does not terminate TLS")
	requireErr(t, Resources(chain(t, nil, tlsSocket(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: grpcCommon()}))), "not a DownstreamTlsContext")
	s := chain(t, nil, nil)
	c := edsCluster("echo-cluster")
	c.TransportSocket = tlsSocket(t, downstream(grpcCommon()))
	s[resourcev3.ClusterType] = []types.Resource{c}
	requireErr(t, Resources(s), "not an UpstreamTlsContext")
}
