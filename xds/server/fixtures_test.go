package server

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// testTranslator builds, for each service port, resources a proxyless gRPC
// client accepts, all named "<svc>.<ns>:<port>": an API listener with RDS,
// a route configuration sending everything to the cluster, an EDS cluster
// and its endpoints grouped by zone. The service's connect timeout shows in
// the listener, the route and the cluster, so tests can change those three
// at once. It ignores the proxy: every class gets the same resources.
type testTranslator struct {
	translations atomic.Int64
	endpoints    atomic.Int64
	// share returns the same messages to every class of a snapshot.
	share bool

	mu     sync.Mutex
	shared map[*mesh.Snapshot]translate.Result
}

func (tt *testTranslator) Translate(snap *mesh.Snapshot, _ *mesh.Proxy) translate.Result {
	tt.translations.Add(1)
	if tt.share {
		tt.mu.Lock()
		defer tt.mu.Unlock()
		if r, ok := tt.shared[snap]; ok {
			return r
		}
	}
	res := map[string][]types.Resource{}
	for _, svc := range snap.Services {
		for _, port := range svc.Ports {
			name := resourceName(svc, port.Port)
			timeout := svc.LB.ConnectTimeout
			if timeout == 0 {
				timeout = time.Second
			}
			res[resourcev3.ListenerType] = append(res[resourcev3.ListenerType], testListener(name, timeout))
			res[resourcev3.RouteType] = append(res[resourcev3.RouteType], testRoute(name, timeout))
			res[resourcev3.ClusterType] = append(res[resourcev3.ClusterType], testCluster(name, timeout))
		}
	}
	res[resourcev3.EndpointType] = tt.eds(snap)
	r := translate.Result{Resources: res}
	if tt.share {
		if tt.shared == nil {
			tt.shared = map[*mesh.Snapshot]translate.Result{}
		}
		tt.shared[snap] = r
	}
	return r
}

func (tt *testTranslator) Endpoints(snap *mesh.Snapshot, _ *mesh.Proxy) []types.Resource {
	tt.endpoints.Add(1)
	return tt.eds(snap)
}

func (tt *testTranslator) eds(snap *mesh.Snapshot) []types.Resource {
	var out []types.Resource
	for _, svc := range snap.Services {
		for _, port := range svc.Ports {
			out = append(out, testEndpoints(resourceName(svc, port.Port), snap.Endpoints[mesh.PortKey{Namespace: svc.Namespace, Name: svc.Name, Port: port.Port}]))
		}
	}
	return out
}

func resourceName(svc *mesh.Service, port uint32) string {
	return fmt.Sprintf("%s.%s:%d", svc.Name, svc.Namespace, port)
}

var adsSource = &corev3.ConfigSource{
	ResourceApiVersion:    corev3.ApiVersion_V3,
	ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func testListener(name string, timeout time.Duration) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:        name,
		StreamIdleTimeout: durationpb.New(timeout),
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource,
			RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(hcm)}}
}

func testRoute(name string, timeout time.Duration) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
					Timeout:          durationpb.New(timeout),
				}},
			}},
		}},
	}
}

func testCluster(name string, timeout time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource, ServiceName: name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		ConnectTimeout:       durationpb.New(timeout),
	}
}

func testEndpoints(name string, eps []mesh.Endpoint) *endpointv3.ClusterLoadAssignment {
	byZone := map[string][]*endpointv3.LbEndpoint{}
	for _, ep := range eps {
		if ep.Health != mesh.Healthy {
			continue
		}
		byZone[ep.Zone] = append(byZone[ep.Zone], &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address:       ep.Address,
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: ep.Port},
				}}},
			}},
			HealthStatus:        corev3.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapperspb.UInt32(1),
		})
	}
	zones := make([]string, 0, len(byZone))
	for z := range byZone {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, z := range zones {
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Zone: z},
			LbEndpoints:         byZone[z],
			LoadBalancingWeight: wrapperspb.UInt32(1),
		})
	}
	return cla
}

// svcSpec is a fluent service fixture.
type svcSpec struct {
	svc *mesh.Service
	eps []mesh.Endpoint
}

func service(ns, name string, port uint32) *svcSpec {
	return &svcSpec{svc: &mesh.Service{
		Namespace: ns,
		Name:      name,
		Ports:     []mesh.Port{{Name: "grpc", Port: port, Protocol: mesh.ProtocolGRPC}},
	}}
}

func (s *svcSpec) withTimeout(d time.Duration) *svcSpec {
	s.svc.LB.ConnectTimeout = d
	return s
}

// withEndpoints adds healthy endpoints "ip:port" in zone "a".
func (s *svcSpec) withEndpoints(port uint32, ips ...string) *svcSpec {
	for _, ip := range ips {
		s.eps = append(s.eps, mesh.Endpoint{Address: ip, Port: port, Zone: "a", Health: mesh.Healthy})
	}
	return s
}

func snapshotOf(specs ...*svcSpec) *mesh.Snapshot {
	snap := &mesh.Snapshot{Endpoints: map[mesh.PortKey][]mesh.Endpoint{}}
	for _, s := range specs {
		snap.Services = append(snap.Services, s.svc)
		for _, p := range s.svc.Ports {
			snap.Endpoints[mesh.PortKey{Namespace: s.svc.Namespace, Name: s.svc.Name, Port: p.Port}] = s.eps
		}
	}
	sort.Slice(snap.Services, func(i, j int) bool {
		a, b := snap.Services[i], snap.Services[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	return snap
}
