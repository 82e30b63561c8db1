package validate

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Fixtures: small valid resources, each test breaking one thing.

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func router(t *testing.T) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}
}

func rdsHCM(t *testing.T, route string) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix:     "test",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: route}},
		HttpFilters:    []*hcmv3.HttpFilter{router(t)},
	}
}

func apiListener(t *testing.T, name string, hcm *hcmv3.HttpConnectionManager) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(t, hcm)}}
}

func addr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func tcpChain(t *testing.T, cluster string, match *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{
		FilterChainMatch: match,
		Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.tcp_proxy",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &tcpproxyv3.TcpProxy{
				StatPrefix: "tcp", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
			})},
		}},
	}
}

func routeConfig(name, cluster string, domains ...string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: name, Domains: domains,
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()},
	}
}

func lbEndpoint(ip string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr(ip, port)}},
		LoadBalancingWeight: wrapperspb.UInt32(1),
	}
}

func cla(name string, localities ...*endpointv3.LocalityLbEndpoints) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: localities}
}

func locality(zone string, priority uint32, eps ...*endpointv3.LbEndpoint) *endpointv3.LocalityLbEndpoints {
	return &endpointv3.LocalityLbEndpoints{
		Locality: &corev3.Locality{Zone: zone}, Priority: priority,
		LoadBalancingWeight: wrapperspb.UInt32(uint32(len(eps))), LbEndpoints: eps,
	}
}

// grpcSet is a valid proxyless gRPC configuration for one service.
func grpcSet(t *testing.T) map[string][]types.Resource {
	return map[string][]types.Resource{
		resourcev3.ListenerType: {apiListener(t, "echo:8080", rdsHCM(t, "echo"))},
		resourcev3.RouteType:    {routeConfig("echo", "echo-cluster", "echo:8080")},
		resourcev3.ClusterType:  {edsCluster("echo-cluster")},
		resourcev3.EndpointType: {cla("echo-cluster", locality("a", 0, lbEndpoint("10.0.0.1", 80)), locality("b", 1, lbEndpoint("10.0.0.2", 80)))},
	}
}

func requireErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

// The case from the issue: ValidateAll does not look inside Any.
func TestResourceOpensAny(t *testing.T) {
	noStatPrefix := rdsHCM(t, "r")
	noStatPrefix.StatPrefix = ""
	l := &listenerv3.Listener{
		Name:         "l",
		Address:      addr("0.0.0.0", 80),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, noStatPrefix)}}}}},
	}
	if err := l.ValidateAll(); err != nil {
		t.Fatalf("precondition: ValidateAll should miss the invalid HttpConnectionManager, got %v", err)
	}
	err := Resource(l)
	requireErr(t, err, "StatPrefix")
	requireErr(t, err, "filter_chains[0].filters[0].typed_config<envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager>")

	// An invalid inline route configuration, two Anys deep: a virtual host
	// without domains inside an HCM inside an api_listener.
	badRoutes := &hcmv3.HttpConnectionManager{
		StatPrefix:     "s",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routeConfig("rc", "c")},
		HttpFilters:    []*hcmv3.HttpFilter{router(t)},
	}
	api := apiListener(t, "api", badRoutes)
	if err := api.ValidateAll(); err != nil {
		t.Fatalf("precondition: ValidateAll passes, got %v", err)
	}
	requireErr(t, Resource(api), "Domains")

	// A valid listener passes.
	if err := Resource(apiListener(t, "ok", rdsHCM(t, "r"))); err != nil {
		t.Fatalf("valid listener: %v", err)
	}
}

func TestResourceRecursesThroughNestedAnys(t *testing.T) {
	// An Any inside a map (typed_extension_protocol_options) holding an
	// Any-free but invalid message is still found.
	c := edsCluster("c")
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
		"x": mustAny(t, &corev3.HealthCheck{}), // timeout, interval, health_checker are required
	}
	if err := c.ValidateAll(); err != nil {
		t.Fatalf("precondition: %v", err)
	}
	requireErr(t, Resource(c), `typed_extension_protocol_options["x"]<envoy.config.core.v3.HealthCheck>`)

	// An Any of a type nobody registered cannot be checked: an error.
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"y": {TypeUrl: "type.googleapis.com/no.such.Type", Value: []byte{1}}}
	requireErr(t, Resource(c), "cannot open Any")

	// Garbage bytes in a known type.
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"z": {TypeUrl: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", Value: []byte{0xff, 0xff}}}
	requireErr(t, Resource(c), "does not unmarshal")

	// A resource passed as an Any is opened.
	requireErr(t, Resource(mustAny(t, &listenerv3.Listener{Name: "l", ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(t, &hcmv3.HttpConnectionManager{})}})), "StatPrefix")

	// Well-known types that hold no Any (Struct) are walked without error.
	s, _ := structpb.NewStruct(map[string]any{"a": []any{1.0, map[string]any{"b": "c"}}})
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"k": s}}
	if err := Resource(md); err != nil {
		t.Fatalf("metadata: %v", err)
	}
}

func TestResourcesValidSet(t *testing.T) {
	if err := Resources(grpcSet(t)); err != nil {
		t.Fatal(err)
	}
	if err := GRPCResources(grpcSet(t)); err != nil {
		t.Fatal(err)
	}
	// A partial set: references to absent types are not checked.
	partial := grpcSet(t)
	delete(partial, resourcev3.RouteType)
	delete(partial, resourcev3.ClusterType)
	if err := Resources(partial); err != nil {
		t.Fatal(err)
	}
}

func TestResourcesRules(t *testing.T) {
	tlsMatch := &listenerv3.FilterChainMatch{ServerNames: []string{"example.com"}}
	bound := func(name, ip string, port uint32, chains ...*listenerv3.FilterChain) *listenerv3.Listener {
		return &listenerv3.Listener{Name: name, Address: addr(ip, port), FilterChains: chains}
	}
	tests := []struct {
		name   string
		change func(t *testing.T, s map[string][]types.Resource)
		want   string
	}{{
		name: "route names a missing cluster",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.RouteType] = []types.Resource{routeConfig("echo", "nope", "echo:8080")}
		},
		want: `cluster "nope" does not exist`,
	}, {
		name: "weighted cluster names a missing cluster",
		change: func(t *testing.T, s map[string][]types.Resource) {
			rc := routeConfig("echo", "echo-cluster", "echo:8080")
			rc.VirtualHosts[0].Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
				Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "echo-cluster", Weight: wrapperspb.UInt32(1)}, {Name: "gone", Weight: wrapperspb.UInt32(1)}},
			}}
			s[resourcev3.RouteType] = []types.Resource{rc}
		},
		want: `cluster "gone" does not exist`,
	}, {
		name: "listener fetches a missing route configuration",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.ListenerType] = append(s[resourcev3.ListenerType], apiListener(t, "other", rdsHCM(t, "missing")))
		},
		want: `route configuration "missing" does not exist`,
	}, {
		name: "EDS cluster without endpoints resource",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.ClusterType] = append(s[resourcev3.ClusterType], edsCluster("lonely"))
		},
		want: `EDS resource "lonely" does not exist`,
	}, {
		name: "duplicate listener name",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.ListenerType] = append(s[resourcev3.ListenerType], apiListener(t, "echo:8080", rdsHCM(t, "echo")))
		},
		want: "duplicate name",
	}, {
		name: "two listeners on one address",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.ListenerType] = append(s[resourcev3.ListenerType],
				bound("a", "0.0.0.0", 80, tcpChain(t, "echo-cluster", nil)),
				bound("b", "0.0.0.0", 80, tcpChain(t, "echo-cluster", nil)))
		},
		want: `is also the address of listener "a"`,
	}, {
		name: "duplicate filter chain match",
		change: func(t *testing.T, s map[string][]types.Resource) {
			m := func() *listenerv3.FilterChainMatch {
				return &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(8080)}
			}
			s[resourcev3.ListenerType] = append(s[resourcev3.ListenerType],
				bound("a", "0.0.0.0", 80, tcpChain(t, "echo-cluster", m()), tcpChain(t, "echo-cluster", m())))
		},
		want: "same filter_chain_match as filter chain 0",
	}, {
		name: "tcp_proxy to a missing cluster",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.ListenerType] = append(s[resourcev3.ListenerType], bound("a", "0.0.0.0", 80, tcpChain(t, "nowhere", nil)))
		},
		want: `cluster "nowhere" does not exist`,
	}, {
		name: "server_names match without tls_inspector",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.ListenerType] = append(s[resourcev3.ListenerType], bound("a", "0.0.0.0", 443, tcpChain(t, "echo-cluster", tlsMatch)))
		},
		want: "no tls_inspector",
	}, {
		name: "router not last",
		change: func(t *testing.T, s map[string][]types.Resource) {
			hcm := rdsHCM(t, "echo")
			hcm.HttpFilters = append(hcm.HttpFilters, &hcmv3.HttpFilter{Name: "second", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}})
			s[resourcev3.ListenerType] = []types.Resource{apiListener(t, "echo:8080", hcm)}
		},
		want: "is not last",
	}, {
		name: "duplicate domain across virtual hosts",
		change: func(t *testing.T, s map[string][]types.Resource) {
			rc := routeConfig("echo", "echo-cluster", "echo:8080")
			rc.VirtualHosts = append(rc.VirtualHosts, routeConfig("two", "echo-cluster", "echo:8080").VirtualHosts...)
			s[resourcev3.RouteType] = []types.Resource{rc}
		},
		want: `domain "echo:8080" is also a domain of virtual host "echo"`,
	}, {
		name: "listener with no filter chain",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.ListenerType] = append(s[resourcev3.ListenerType], bound("a", "0.0.0.0", 80))
		},
		want: "no filter chains",
	}, {
		name: "resource under the wrong type URL",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.ClusterType] = append(s[resourcev3.ClusterType], routeConfig("x", "echo-cluster", "x"))
		},
		want: "under type",
	}, {
		name: "invalid resource inside the set",
		change: func(t *testing.T, s map[string][]types.Resource) {
			hcm := rdsHCM(t, "echo")
			hcm.StatPrefix = ""
			s[resourcev3.ListenerType] = []types.Resource{apiListener(t, "echo:8080", hcm)}
		},
		want: "StatPrefix",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := grpcSet(t)
			tt.change(t, s)
			requireErr(t, Resources(s), tt.want)
		})
	}

	t.Run("server_names match with tls_inspector", func(t *testing.T) {
		s := grpcSet(t)
		l := bound("a", "0.0.0.0", 443, tcpChain(t, "echo-cluster", tlsMatch))
		l.ListenerFilters = []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &tlsinspectorv3.TlsInspector{})},
		}}
		s[resourcev3.ListenerType] = append(s[resourcev3.ListenerType], l)
		if err := Resources(s); err != nil {
			t.Fatal(err)
		}
	})
}

func TestGRPCResourcesRules(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, s map[string][]types.Resource)
		want   string
	}{{
		name: "STATIC cluster",
		change: func(t *testing.T, s map[string][]types.Resource) {
			c := edsCluster("echo-cluster")
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			c.EdsClusterConfig = nil
			s[resourcev3.ClusterType] = []types.Resource{c}
		},
		want: "cluster type STATIC is not supported",
	}, {
		name: "RANDOM lb policy",
		change: func(t *testing.T, s map[string][]types.Resource) {
			c := edsCluster("echo-cluster")
			c.LbPolicy = clusterv3.Cluster_RANDOM
			s[resourcev3.ClusterType] = []types.Resource{c}
		},
		want: "lb_policy RANDOM is not supported",
	}, {
		name: "least request choice count 1",
		change: func(t *testing.T, s map[string][]types.Resource) {
			c := edsCluster("echo-cluster")
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(2)}}
			s[resourcev3.ClusterType] = []types.Resource{c}
			if err := GRPCResources(s); err != nil {
				t.Fatalf("choice count 2 is fine: %v", err)
			}
			c.GetLeastRequestLbConfig().ChoiceCount = wrapperspb.UInt32(1)
		},
		want: "choice_count 1 < 2",
	}, {
		name: "EDS config source not ADS",
		change: func(t *testing.T, s map[string][]types.Resource) {
			c := edsCluster("echo-cluster")
			//lint:ignore SA1019 a deprecated, non-ADS config source is what this case must reject
			c.EdsClusterConfig.EdsConfig = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/x"}}
			s[resourcev3.ClusterType] = []types.Resource{c}
		},
		want: "EDS config source is neither ads nor self",
	}, {
		name: "duplicate endpoint address across localities",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.EndpointType] = []types.Resource{cla("echo-cluster", locality("a", 0, lbEndpoint("10.0.0.1", 80)), locality("b", 0, lbEndpoint("10.0.0.1", 80)))}
		},
		want: "duplicate endpoint address 10.0.0.1:80",
	}, {
		name: "priorities not contiguous",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.EndpointType] = []types.Resource{cla("echo-cluster", locality("a", 0, lbEndpoint("10.0.0.1", 80)), locality("b", 2, lbEndpoint("10.0.0.2", 80)))}
		},
		want: "priority 1 missing",
	}, {
		name: "locality weight zero",
		change: func(t *testing.T, s map[string][]types.Resource) {
			l := locality("a", 0, lbEndpoint("10.0.0.1", 80))
			l.LoadBalancingWeight = nil
			s[resourcev3.EndpointType] = []types.Resource{cla("echo-cluster", l)}
		},
		want: "weight 0",
	}, {
		name: "locality twice in a priority",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.EndpointType] = []types.Resource{cla("echo-cluster", locality("a", 0, lbEndpoint("10.0.0.1", 80)), locality("a", 0, lbEndpoint("10.0.0.2", 80)))}
		},
		want: "twice in priority 0",
	}, {
		name: "route without a cluster",
		change: func(t *testing.T, s map[string][]types.Resource) {
			rc := routeConfig("echo", "echo-cluster", "echo:8080")
			rc.VirtualHosts[0].Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"}
			s[resourcev3.RouteType] = []types.Resource{rc}
		},
		want: "no cluster",
	}, {
		name: "cookie hash policy",
		change: func(t *testing.T, s map[string][]types.Resource) {
			rc := routeConfig("echo", "echo-cluster", "echo:8080")
			rc.VirtualHosts[0].Routes[0].GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{{
				PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "c"}},
			}}
			s[resourcev3.RouteType] = []types.Resource{rc}
		},
		want: "is ignored by grpc-go",
	}, {
		name: "server listener with a tcp_proxy",
		change: func(t *testing.T, s map[string][]types.Resource) {
			s[resourcev3.ListenerType] = append(s[resourcev3.ListenerType], &listenerv3.Listener{Name: "bound", Address: addr("0.0.0.0", 80), FilterChains: []*listenerv3.FilterChain{tcpChain(t, "echo-cluster", nil)}})
		},
		want: "not an HttpConnectionManager, the only network filter of grpc-go servers",
	}, {
		name: "xff_num_trusted_hops",
		change: func(t *testing.T, s map[string][]types.Resource) {
			hcm := rdsHCM(t, "echo")
			hcm.XffNumTrustedHops = 1
			s[resourcev3.ListenerType] = []types.Resource{apiListener(t, "echo:8080", hcm)}
		},
		want: "xff_num_trusted_hops must be zero",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := grpcSet(t)
			tt.change(t, s)
			requireErr(t, GRPCResources(s), tt.want)
		})
	}
}
