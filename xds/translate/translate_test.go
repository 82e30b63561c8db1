package translate

import (
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/mesh"
)

func TestNames(t *testing.T) {
	k := mesh.PortKey{Namespace: "shop", Name: "cart", Port: 8080}
	if got, want := ClusterName(k, "cluster.local"), "outbound|8080||cart.shop.svc.cluster.local"; got != want {
		t.Errorf("ClusterName = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"cart.shop.svc.example:8080", "cart.shop.svc:8080", "cart.shop:8080"}, GRPCListenerNames(k, "example")); diff != "" {
		t.Errorf("GRPCListenerNames (-want +got):\n%s", diff)
	}
	if got := EnvoyRouteName(80); got != "outbound|80" {
		t.Errorf("EnvoyRouteName = %q", got)
	}
	if got := VirtualListenerName("fd00::1", 80); got != "fd00::1_80" {
		t.Errorf("VirtualListenerName = %q", got)
	}
}

func TestHostDomains(t *testing.T) {
	tests := []struct {
		name    string
		svc     *mesh.Service
		proxyNS string
		want    []string
	}{{
		name:    "other namespace, no short name",
		svc:     service("shop", "cart").withClusterIPs("10.0.0.1").Service,
		proxyNS: "default",
		want: []string{
			"cart.shop.svc.cluster.local", "cart.shop.svc.cluster.local:80",
			"cart.shop.svc", "cart.shop.svc:80", "cart.shop", "cart.shop:80",
			"10.0.0.1", "10.0.0.1:80",
		},
	}, {
		name:    "same namespace and IPv6",
		svc:     service("shop", "cart").withClusterIPs("FD00::0001").Service,
		proxyNS: "shop",
		want: []string{
			"cart.shop.svc.cluster.local", "cart.shop.svc.cluster.local:80",
			"cart.shop.svc", "cart.shop.svc:80", "cart.shop", "cart.shop:80",
			"cart", "cart:80", "[fd00::1]", "[fd00::1]:80",
		},
	}, {
		name:    "headless, proxy namespace unknown",
		svc:     service("shop", "cart").Service,
		proxyNS: "",
		want: []string{
			"cart.shop.svc.cluster.local", "cart.shop.svc.cluster.local:80",
			"cart.shop.svc", "cart.shop.svc:80", "cart.shop", "cart.shop:80",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, hostDomains(tt.svc, 80, tt.proxyNS, "cluster.local")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveLB(t *testing.T) {
	tests := []struct {
		name     string
		kind     mesh.ProxyKind
		zone     string
		lb       mesh.LoadBalancing
		policy   clusterv3.Cluster_LbPolicy
		hash     hashKind
		hashName string
		locality bool
		warning  string // substring of the only warning; empty for none
	}{
		{name: "default", kind: mesh.ProxyEnvoy, policy: clusterv3.Cluster_ROUND_ROBIN},
		{name: "least request grpc", kind: mesh.ProxyGRPC, lb: mesh.LoadBalancing{Policy: mesh.LBLeastRequest}, policy: clusterv3.Cluster_LEAST_REQUEST},
		{name: "random envoy", kind: mesh.ProxyEnvoy, lb: mesh.LoadBalancing{Policy: mesh.LBRandom}, policy: clusterv3.Cluster_RANDOM},
		{name: "random grpc", kind: mesh.ProxyGRPC, lb: mesh.LoadBalancing{Policy: mesh.LBRandom}, policy: clusterv3.Cluster_ROUND_ROBIN, warning: "random is not supported by proxyless gRPC"},
		{name: "unknown policy", kind: mesh.ProxyEnvoy, lb: mesh.LoadBalancing{Policy: "magic"}, policy: clusterv3.Cluster_ROUND_ROBIN, warning: `unknown lb policy "magic"`},
		{name: "ring hash header lower-cased", kind: mesh.ProxyGRPC, lb: mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{Header: "X-User"}}, policy: clusterv3.Cluster_RING_HASH, hash: hashHeader, hashName: "x-user"},
		{name: "ring hash binary header", kind: mesh.ProxyGRPC, lb: mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{Header: "x-bin"}}, policy: clusterv3.Cluster_RING_HASH, warning: "invalid hash header name"},
		{name: "ring hash cookie envoy", kind: mesh.ProxyEnvoy, lb: mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{Cookie: "s"}}, policy: clusterv3.Cluster_RING_HASH, hash: hashCookie, hashName: "s"},
		{name: "ring hash cookie grpc", kind: mesh.ProxyGRPC, lb: mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{Cookie: "s"}}, policy: clusterv3.Cluster_RING_HASH, hash: hashChannelID, warning: "cannot hash on cookie"},
		{name: "ring hash source ip envoy", kind: mesh.ProxyEnvoy, lb: mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{SourceIP: true}}, policy: clusterv3.Cluster_RING_HASH, hash: hashSourceIP},
		{name: "ring hash source ip grpc", kind: mesh.ProxyGRPC, lb: mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{SourceIP: true}}, policy: clusterv3.Cluster_RING_HASH, hash: hashChannelID, warning: "cannot hash on the source IP"},
		{name: "ring hash without key", kind: mesh.ProxyEnvoy, lb: mesh.LoadBalancing{Policy: mesh.LBRingHash}, policy: clusterv3.Cluster_RING_HASH, warning: "without a hash policy"},
		{name: "hash without ring hash", kind: mesh.ProxyEnvoy, lb: mesh.LoadBalancing{Hash: &mesh.HashPolicy{Header: "x"}}, policy: clusterv3.Cluster_ROUND_ROBIN, warning: "hash policy is ignored"},
		{name: "locality envoy", kind: mesh.ProxyEnvoy, zone: "a", lb: mesh.LoadBalancing{LocalityAware: true}, policy: clusterv3.Cluster_ROUND_ROBIN, locality: true},
		{name: "locality grpc", kind: mesh.ProxyGRPC, zone: "a", lb: mesh.LoadBalancing{LocalityAware: true}, policy: clusterv3.Cluster_ROUND_ROBIN, locality: true, warning: "does not spill over gradually"},
		{name: "locality without zone", kind: mesh.ProxyEnvoy, lb: mesh.LoadBalancing{LocalityAware: true}, policy: clusterv3.Cluster_ROUND_ROBIN, warning: "has no zone"},
		{name: "connect timeout grpc", kind: mesh.ProxyGRPC, lb: mesh.LoadBalancing{ConnectTimeout: time.Second}, policy: clusterv3.Cluster_ROUND_ROBIN, warning: "connect timeout 1s is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTranslator(&mesh.Snapshot{}, &mesh.Proxy{ID: "p", Kind: tt.kind, Zone: tt.zone}, Options{})
			c := tr.resolveLB("ns/svc", tt.lb)
			if c.policy != tt.policy || c.hash != tt.hash || c.hashName != tt.hashName || c.localityAware != tt.locality {
				t.Errorf("got policy %v hash %v %q locality %v; want %v %v %q %v", c.policy, c.hash, c.hashName, c.localityAware, tt.policy, tt.hash, tt.hashName, tt.locality)
			}
			switch {
			case tt.warning == "" && len(tr.warnings) != 0:
				t.Errorf("unexpected warnings %q", tr.warnings)
			case tt.warning != "" && (len(tr.warnings) != 1 || !strings.Contains(tr.warnings[0], tt.warning)):
				t.Errorf("warnings %q, want one containing %q", tr.warnings, tt.warning)
			}
		})
	}
}

func TestOutlierDetection(t *testing.T) {
	lb := mesh.LoadBalancing{Outlier: &mesh.OutlierDetection{Consecutive5xx: 3, Interval: 10 * time.Second, BaseEjectionTime: time.Minute, MaxEjectionPercent: 150}}
	envoy := newTranslator(&mesh.Snapshot{}, &mesh.Proxy{Kind: mesh.ProxyEnvoy}, Options{})
	want := &clusterv3.OutlierDetection{
		Consecutive_5Xx:    wrapperspb.UInt32(3),
		Interval:           durationpb.New(10 * time.Second),
		BaseEjectionTime:   durationpb.New(time.Minute),
		MaxEjectionPercent: wrapperspb.UInt32(100),
	}
	if diff := cmp.Diff(want, envoy.resolveLB("s", lb).outlierDetection(), protocmp.Transform()); diff != "" {
		t.Errorf("envoy (-want +got):\n%s", diff)
	}
	if len(envoy.warnings) != 1 || !strings.Contains(envoy.warnings[0], "over 100") {
		t.Errorf("warnings %q", envoy.warnings)
	}
	grpc := newTranslator(&mesh.Snapshot{}, &mesh.Proxy{Kind: mesh.ProxyGRPC}, Options{})
	want.Consecutive_5Xx = nil
	if diff := cmp.Diff(want, grpc.resolveLB("s", lb).outlierDetection(), protocmp.Transform()); diff != "" {
		t.Errorf("grpc (-want +got):\n%s", diff)
	}
}

func lbEP(ip string, port uint32, h corev3.HealthStatus) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(ip, port)}},
		HealthStatus:        h,
		LoadBalancingWeight: wrapperspb.UInt32(1),
	}
}

func TestLoadAssignment(t *testing.T) {
	const name = "outbound|80||echo.default.svc.cluster.local"
	eps := []mesh.Endpoint{
		ep("10.0.0.1", 8080, "a", mesh.Healthy),
		ep("10.0.0.2", 8080, "a", mesh.Draining),
		ep("10.0.0.3", 8080, "b", mesh.Healthy),
		ep("10.0.0.4", 8080, "b", mesh.Unhealthy),
		ep("10.0.0.5", 8080, "", mesh.Healthy),
	}
	healthy, draining := corev3.HealthStatus_HEALTHY, corev3.HealthStatus_DRAINING
	loc := func(zone string, prio uint32, lbs ...*endpointv3.LbEndpoint) *endpointv3.LocalityLbEndpoints {
		return &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Zone: zone}, Priority: prio, LbEndpoints: lbs, LoadBalancingWeight: wrapperspb.UInt32(uint32(len(lbs)))}
	}
	tests := []struct {
		name     string
		kind     mesh.ProxyKind
		zone     string
		locality bool
		want     []*endpointv3.LocalityLbEndpoints
	}{{
		name: "envoy, no locality: drains kept",
		kind: mesh.ProxyEnvoy, zone: "a",
		want: []*endpointv3.LocalityLbEndpoints{
			loc("", 0, lbEP("10.0.0.5", 8080, healthy)),
			loc("a", 0, lbEP("10.0.0.1", 8080, healthy), lbEP("10.0.0.2", 8080, draining)),
			loc("b", 0, lbEP("10.0.0.3", 8080, healthy)),
		},
	}, {
		name: "grpc, locality aware in zone b: drains dropped, b first",
		kind: mesh.ProxyGRPC, zone: "b", locality: true,
		want: []*endpointv3.LocalityLbEndpoints{
			loc("b", 0, lbEP("10.0.0.3", 8080, healthy)),
			loc("", 1, lbEP("10.0.0.5", 8080, healthy)),
			loc("a", 1, lbEP("10.0.0.1", 8080, healthy)),
		},
	}, {
		name: "locality aware, no local endpoint: one priority",
		kind: mesh.ProxyGRPC, zone: "z", locality: true,
		want: []*endpointv3.LocalityLbEndpoints{
			loc("", 0, lbEP("10.0.0.5", 8080, healthy)),
			loc("a", 0, lbEP("10.0.0.1", 8080, healthy)),
			loc("b", 0, lbEP("10.0.0.3", 8080, healthy)),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := snapshot(service("default", "echo").withPort(80, mesh.ProtocolHTTP).withLB(mesh.LoadBalancing{LocalityAware: tt.locality})).
				withEndpoints("default", "echo", 80, eps...)
			tr := newTranslator(f.Snapshot, &mesh.Proxy{Kind: tt.kind, Zone: tt.zone}, Options{})
			got := tr.loadAssignment(tr.servicePorts()[0])
			want := &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: tt.want}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestInboundPorts(t *testing.T) {
	f := snapshot(
		service("a", "web").withPort(80, mesh.ProtocolHTTP).withPort(81, mesh.ProtocolGRPC),
		service("b", "raw").withPort(9000, mesh.ProtocolTCP),
		service("c", "other").withPort(80, mesh.ProtocolHTTP),
	).
		withEndpoints("a", "web", 80, ep("10.0.0.1", 8080, "", mesh.Unhealthy)).
		withEndpoints("a", "web", 81, ep("10.0.0.1", 8081, "", mesh.Healthy), ep("10.0.0.2", 8081, "", mesh.Healthy)).
		withEndpoints("b", "raw", 9000, ep("10.0.0.1", 8080, "", mesh.Healthy)).
		withEndpoints("c", "other", 80, ep("10.0.0.2", 7000, "", mesh.Healthy))
	tr := newTranslator(f.Snapshot, &mesh.Proxy{ID: "p", Kind: mesh.ProxyEnvoy, IP: "::ffff:10.0.0.1"}, Options{})
	got := tr.inboundPorts(tr.servicePorts())
	want := []inboundPort{{port: 8080, protocol: mesh.ProtocolTCP, tls: mesh.TLSDisable, service: "a/web"}, {port: 8081, protocol: mesh.ProtocolGRPC, tls: mesh.TLSDisable, service: "a/web"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(inboundPort{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if len(tr.warnings) != 1 || !strings.Contains(tr.warnings[0], "proxied as TCP") {
		t.Errorf("warnings %q", tr.warnings)
	}
}

func TestTranslateBadArguments(t *testing.T) {
	tests := []struct {
		name    string
		snap    *mesh.Snapshot
		proxy   *mesh.Proxy
		warning string
	}{
		{"nil snapshot", nil, &mesh.Proxy{Kind: mesh.ProxyEnvoy}, "no snapshot"},
		{"nil proxy", &mesh.Snapshot{}, nil, "no proxy"},
		{"unknown kind", &mesh.Snapshot{}, &mesh.Proxy{ID: "x", Kind: "linkerd"}, `unknown kind "linkerd"`},
		{"nil service", &mesh.Snapshot{Services: []*mesh.Service{nil}}, &mesh.Proxy{Kind: mesh.ProxyGRPC}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Translate(tt.snap, tt.proxy, Options{})
			for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
				if _, ok := res.Resources[typ]; !ok {
					t.Errorf("no entry for %s", typ)
				}
				if len(res.Resources[typ]) != 0 {
					t.Errorf("%s: %d resources, want none", typ, len(res.Resources[typ]))
				}
			}
			if tt.warning == "" && len(res.Warnings) != 0 || tt.warning != "" && (len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], tt.warning)) {
				t.Errorf("warnings %q, want %q", res.Warnings, tt.warning)
			}
			if got := Endpoints(tt.snap, tt.proxy, Options{}); len(got) != 0 {
				t.Errorf("Endpoints: %d resources", len(got))
			}
		})
	}
}

// A client that sends no metadata (empty kind) is served as proxyless gRPC.
func TestEmptyKindIsGRPC(t *testing.T) {
	f := snapshot(service("default", "echo").withPort(80, mesh.ProtocolGRPC))
	res := Translate(f.Snapshot, &mesh.Proxy{ID: "anon"}, Options{})
	if n := len(res.Resources[resourcev3.ListenerType]); n != 3 {
		t.Fatalf("%d listeners, want the 3 API listeners", n)
	}
}

// Equal inputs give byte-identical resources, whatever the map order.
func TestTranslateDeterministic(t *testing.T) {
	build := func() *mesh.Snapshot {
		f := snapshot(
			service("a", "x").withPort(80, mesh.ProtocolHTTP).withClusterIPs("10.0.0.1").withLB(mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{Header: "h"}, LocalityAware: true}),
			service("a", "y").withPort(80, mesh.ProtocolHTTP).withPort(90, mesh.ProtocolTCP).withClusterIPs("10.0.0.2"),
		)
		for i := 0; i < 20; i++ {
			f.withEndpoints("a", "x", 80, ep("10.1.0."+strconv.Itoa(i), 80, "zone-"+strconv.Itoa(i%4), mesh.Healthy))
			f.withEndpoints("a", "y", 90, ep("10.2.0."+strconv.Itoa(i), 90, "zone-"+strconv.Itoa(i%3), mesh.Draining))
		}
		return f.Snapshot
	}
	for _, kind := range []mesh.ProxyKind{mesh.ProxyEnvoy, mesh.ProxyGRPC} {
		p := &mesh.Proxy{ID: "p", Kind: kind, Namespace: "a", IP: "10.1.0.3", Zone: "zone-1"}
		first := Translate(build(), p, Options{})
		for i := 0; i < 5; i++ {
			again := Translate(build(), p, Options{})
			for typ, rs := range first.Resources {
				if len(rs) != len(again.Resources[typ]) {
					t.Fatalf("%s %s: %d then %d resources", kind, typ, len(rs), len(again.Resources[typ]))
				}
				for j := range rs {
					a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(rs[j])
					b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(again.Resources[typ][j])
					if string(a) != string(b) {
						t.Fatalf("%s %s[%d] differs between runs", kind, typ, j)
					}
				}
			}
		}
	}
}

// The gRPC route carries the hash policy; Envoy's also disables the timeout.
func TestClusterRoute(t *testing.T) {
	f := snapshot(service("ns", "s").withPort(80, mesh.ProtocolGRPC).withLB(mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{Header: "x-key"}}))
	for _, kind := range []mesh.ProxyKind{mesh.ProxyGRPC, mesh.ProxyEnvoy} {
		tr := newTranslator(f.Snapshot, &mesh.Proxy{Kind: kind}, Options{})
		got := tr.clusterRoute(tr.servicePorts()[0])
		want := &routev3.Route{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|80||s.ns.svc.cluster.local"},
				HashPolicy: []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
					Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-key"},
				}}},
			}},
		}
		if kind == mesh.ProxyEnvoy {
			want.GetRoute().Timeout = durationpb.New(0)
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", kind, diff)
		}
	}
}
