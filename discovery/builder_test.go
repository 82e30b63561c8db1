package discovery

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"github.com/sluice-mesh/sluice/mesh"
)

func portKey(ns, name string, port uint32) mesh.PortKey {
	return mesh.PortKey{Namespace: ns, Name: name, Port: port}
}

func reasons(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Reason)
	}
	return out
}

func TestBuildSnapshotService(t *testing.T) {
	svc := newService("default", "api").
		clusterIP("10.0.0.10", "fd00::10").
		appPort("grpc", 9090, "grpc").
		port("http-web", 80).
		port("", 7000).
		udpPort("dns", 53).
		annotate(AnnotationLBPolicy, "least_request")
	snap, problems := BuildSnapshot(Inputs{Services: []*corev1.Service{svc.obj}})
	assert.Empty(t, problems)
	require.Len(t, snap.Services, 1)
	assert.Equal(t, &mesh.Service{
		Namespace:  "default",
		Name:       "api",
		ClusterIPs: []string{"10.0.0.10", "fd00::10"},
		Ports: []mesh.Port{
			{Name: "http-web", Port: 80, Protocol: mesh.ProtocolHTTP},
			{Name: "", Port: 7000, Protocol: mesh.ProtocolTCP},
			{Name: "grpc", Port: 9090, Protocol: mesh.ProtocolGRPC},
		},
		LB: mesh.LoadBalancing{Policy: mesh.LBLeastRequest, LocalityAware: true},
	}, snap.Services[0])
	// Every port has an entry, even without endpoints.
	assert.Len(t, snap.Endpoints, 3)
	for _, p := range snap.Services[0].Ports {
		eps, ok := snap.Endpoints[portKey("default", "api", p.Port)]
		assert.True(t, ok, "port %d has no entry", p.Port)
		assert.Empty(t, eps)
	}
	assert.Same(t, snap.Services[0], snap.Service(mesh.ServiceKey{Namespace: "default", Name: "api"}))
}

func TestBuildSnapshotServicesSorted(t *testing.T) {
	var in Inputs
	for _, k := range [][2]string{{"b", "x"}, {"a", "z"}, {"a", "y"}, {"c", "a"}} {
		in.Services = append(in.Services, newService(k[0], k[1]).port("http", 80).obj)
	}
	snap, _ := BuildSnapshot(in)
	var got []string
	for _, s := range snap.Services {
		got = append(got, s.Key().String())
	}
	assert.Equal(t, []string{"a/y", "a/z", "b/x", "c/a"}, got)
}

func TestEndpointHealth(t *testing.T) {
	yes, no := ptr.To(true), ptr.To(false)
	tests := []struct {
		name                        string
		ready, serving, terminating *bool
		want                        mesh.Health
	}{
		{"all nil means ready", nil, nil, nil, mesh.Healthy},
		{"ready", yes, yes, no, mesh.Healthy},
		{"ready, serving unset", yes, nil, nil, mesh.Healthy},
		{"not ready, not serving", no, no, no, mesh.Unhealthy},
		{"not ready, serving unset (nil serving = true)", no, nil, nil, mesh.Draining},
		{"serving but not ready", no, yes, no, mesh.Draining},
		{"terminating and serving", no, yes, yes, mesh.Draining},
		{"terminating, serving, ready (publishNotReadyAddresses)", yes, yes, yes, mesh.Draining},
		{"terminating, not serving", no, no, yes, mesh.Unhealthy},
		{"terminating, serving unset", no, nil, yes, mesh.Draining},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := endpointHealth(discoveryv1.EndpointConditions{Ready: tt.ready, Serving: tt.serving, Terminating: tt.terminating})
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestBuildSnapshotEndpoints(t *testing.T) {
	svc := newService("shop", "cart").port("http", 80).port("grpc-admin", 9000)
	slice := newSlice("shop", "cart-abc", "cart").
		port("http", 8080).port("grpc-admin", 9001).
		endpoint("10.1.0.2", forPod("cart-2"), notReady()).
		endpoint("10.1.0.1", forPod("cart-1")).
		endpoint("10.1.0.3", terminatingServing(), inZone("zone-c"))
	in := Inputs{
		Services:       []*corev1.Service{svc.obj},
		EndpointSlices: []*discoveryv1.EndpointSlice{slice.obj},
		Pods: []*corev1.Pod{
			newPod("shop", "cart-1", "node-a", "cart-sa", map[string]string{"app": "cart", "version": "v1"}),
			newPod("shop", "cart-2", "node-b", "", map[string]string{"app": "cart"}),
		},
		Nodes: []*corev1.Node{newNode("node-a", "zone-a"), newNode("node-b", "zone-b")},
	}
	snap, problems := BuildSnapshot(in)
	assert.Empty(t, problems)
	want := []mesh.Endpoint{
		{Address: "10.1.0.1", Port: 8080, Zone: "zone-a", Health: mesh.Healthy, Pod: "cart-1", ServiceAccount: "cart-sa",
			Labels: map[string]string{"app": "cart", "version": "v1"}},
		{Address: "10.1.0.2", Port: 8080, Zone: "zone-b", Health: mesh.Unhealthy, Pod: "cart-2", ServiceAccount: "default",
			Labels: map[string]string{"app": "cart"}},
		{Address: "10.1.0.3", Port: 8080, Zone: "zone-c", Health: mesh.Draining},
	}
	assert.Equal(t, want, snap.Endpoints[portKey("shop", "cart", 80)])
	admin := snap.Endpoints[portKey("shop", "cart", 9000)]
	require.Len(t, admin, 3)
	assert.Equal(t, uint32(9001), admin[0].Port, "the endpoint port is the slice's (target) port")
}

func TestBuildSnapshotZoneFallback(t *testing.T) {
	tests := []struct {
		name string
		opts []endpointOpt
		pods []*corev1.Pod
		want string
	}{
		{name: "endpoint zone", opts: []endpointOpt{inZone("z-ep"), onNode("node-a")}, want: "z-ep"},
		{name: "endpoint node", opts: []endpointOpt{onNode("node-a")}, want: "zone-a"},
		{name: "endpoint node wins over the pod's", opts: []endpointOpt{onNode("node-a"), forPod("p")},
			pods: []*corev1.Pod{newPod("default", "p", "node-b", "", nil)}, want: "zone-a"},
		{name: "pod's node", opts: []endpointOpt{forPod("p")},
			pods: []*corev1.Pod{newPod("default", "p", "node-b", "", nil)}, want: "zone-b"},
		{name: "unknown node", opts: []endpointOpt{onNode("node-x")}, want: ""},
		{name: "node without a zone label", opts: []endpointOpt{onNode("node-nozone")}, want: ""},
		{name: "unknown pod", opts: []endpointOpt{forPod("missing")}, want: ""},
		{name: "nothing", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, problems := BuildSnapshot(Inputs{
				Services:       []*corev1.Service{newService("default", "s").port("http", 80).obj},
				EndpointSlices: []*discoveryv1.EndpointSlice{newSlice("default", "s-1", "s").port("http", 80).endpoint("10.0.0.1", tt.opts...).obj},
				Pods:           tt.pods,
				Nodes:          []*corev1.Node{newNode("node-a", "zone-a"), newNode("node-b", "zone-b"), newNode("node-nozone", "")},
			})
			assert.Empty(t, problems)
			eps := snap.Endpoints[portKey("default", "s", 80)]
			require.Len(t, eps, 1)
			assert.Equal(t, tt.want, eps[0].Zone)
		})
	}
}

func TestBuildSnapshotDedupe(t *testing.T) {
	tests := []struct {
		name       string
		first      []endpointOpt
		second     []endpointOpt
		wantHealth mesh.Health
	}{
		{"terminating copy first, ready copy second", []endpointOpt{terminatingServing()}, nil, mesh.Healthy},
		{"ready copy first, not-ready copy second", nil, []endpointOpt{notReady()}, mesh.Healthy},
		{"not ready and draining", []endpointOpt{notReady()}, []endpointOpt{terminatingServing()}, mesh.Draining},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, _ := BuildSnapshot(Inputs{
				Services: []*corev1.Service{newService("default", "s").port("http", 80).obj},
				EndpointSlices: []*discoveryv1.EndpointSlice{
					newSlice("default", "s-a", "s").port("http", 8080).endpoint("10.0.0.1", tt.first...).endpoint("10.0.0.2").obj,
					newSlice("default", "s-b", "s").port("http", 8080).endpoint("10.0.0.1", tt.second...).obj,
				},
			})
			eps := snap.Endpoints[portKey("default", "s", 80)]
			require.Len(t, eps, 2, "10.0.0.1 must be kept once: %+v", eps)
			assert.Equal(t, "10.0.0.1", eps[0].Address)
			assert.Equal(t, tt.wantHealth, eps[0].Health)
		})
	}
	t.Run("same address, different target ports, kept apart", func(t *testing.T) {
		snap, _ := BuildSnapshot(Inputs{
			Services: []*corev1.Service{newService("default", "s").port("http", 80).obj},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				newSlice("default", "s-a", "s").port("http", 8080).endpoint("10.0.0.1").obj,
				newSlice("default", "s-b", "s").port("http", 8081).endpoint("10.0.0.1").obj,
			},
		})
		assert.Len(t, snap.Endpoints[portKey("default", "s", 80)], 2)
	})
}

func TestBuildSnapshotIPv6AndAddresses(t *testing.T) {
	snap, problems := BuildSnapshot(Inputs{
		Services: []*corev1.Service{newService("default", "s").port("http", 80).obj},
		EndpointSlices: []*discoveryv1.EndpointSlice{
			newSlice("default", "s-v6", "s").ipv6().port("http", 80).endpoint("FD00:0:0::1").obj,
			newSlice("default", "s-v4", "s").port("http", 80).endpoint("10.0.0.1").endpoint("fd00::2").endpoint("not-an-ip").obj,
		},
	})
	eps := snap.Endpoints[portKey("default", "s", 80)]
	require.Len(t, eps, 2)
	assert.Equal(t, "10.0.0.1", eps[0].Address)
	assert.Equal(t, "fd00::1", eps[1].Address, "addresses are canonical")
	require.Len(t, problems, 1)
	assert.Equal(t, ReasonInvalidEndpoint, problems[0].Reason)
	assert.Equal(t, "s-v4", problems[0].Name)
	assert.Contains(t, problems[0].Message, "2 endpoint(s)")
}

// TestBuildSnapshotBadInput checks each kind of bad input named by the issue:
// the bad object is skipped or defaulted with a clear problem, and the good
// service next to it is unaffected.
func TestBuildSnapshotBadInput(t *testing.T) {
	good := newService("default", "good").port("http", 80)
	goodSlice := newSlice("default", "good-1", "good").port("http", 8080).endpoint("10.0.0.1")
	tests := []struct {
		name         string
		services     []*corev1.Service
		slices       []*discoveryv1.EndpointSlice
		wantServices []string
		wantProblems []Problem // UIDs are ignored
		check        func(t *testing.T, snap *mesh.Snapshot)
	}{
		{
			name:         "service without ports",
			services:     []*corev1.Service{newService("default", "empty").obj},
			slices:       []*discoveryv1.EndpointSlice{newSlice("default", "empty-1", "empty").endpoint("10.0.0.9").obj},
			wantServices: []string{"default/good"},
			wantProblems: []Problem{{Kind: "Service", Namespace: "default", Name: "empty", Reason: ReasonNoPorts,
				Message: "the service has no ports; not served"}},
		},
		{
			name:         "slice for an unknown service",
			slices:       []*discoveryv1.EndpointSlice{newSlice("default", "ghost-1", "ghost").port("http", 80).endpoint("10.0.0.9").obj},
			wantServices: []string{"default/good"},
			wantProblems: []Problem{{Kind: "EndpointSlice", Namespace: "default", Name: "ghost-1", Reason: ReasonUnknownService,
				Message: "service default/ghost does not exist; slice ignored"}},
		},
		{
			name:         "slice without a service label",
			slices:       []*discoveryv1.EndpointSlice{newSlice("default", "orphan", "").port("http", 80).endpoint("10.0.0.9").obj},
			wantServices: []string{"default/good"},
			wantProblems: []Problem{{Kind: "EndpointSlice", Namespace: "default", Name: "orphan", Reason: ReasonUnknownService,
				Message: "no kubernetes.io/service-name label names the slice's service; slice ignored"}},
		},
		{
			name:         "invalid annotation",
			services:     []*corev1.Service{newService("default", "odd").port("http", 80).annotate(AnnotationLBPolicy, "fastest").obj},
			wantServices: []string{"default/good", "default/odd"},
			wantProblems: []Problem{{Kind: "Service", Namespace: "default", Name: "odd", Reason: ReasonInvalidAnnotation,
				Message: `invalid sluice.dev/lb-policy "fastest": want round_robin, least_request, ring_hash or random; using round_robin`}},
			check: func(t *testing.T, snap *mesh.Snapshot) {
				odd := snap.Service(mesh.ServiceKey{Namespace: "default", Name: "odd"})
				assert.Equal(t, mesh.LBRoundRobin, odd.LB.Policy)
				assert.Equal(t, []string{`invalid sluice.dev/lb-policy "fastest": want round_robin, least_request, ring_hash or random; using round_robin`}, odd.Warnings)
			},
		},
		{
			name:         "duplicate ports",
			services:     []*corev1.Service{newService("default", "dup").port("http", 80).port("http-alt", 80).port("http", 81).port("grpc", 90).obj},
			wantServices: []string{"default/dup", "default/good"},
			wantProblems: []Problem{
				{Kind: "Service", Namespace: "default", Name: "dup", Reason: ReasonDuplicatePort, Message: `port 80 is declared twice; the second ("http-alt") is skipped`},
				{Kind: "Service", Namespace: "default", Name: "dup", Reason: ReasonDuplicatePort, Message: `port name "http" is used twice; port 81 is skipped`},
			},
			check: func(t *testing.T, snap *mesh.Snapshot) {
				dup := snap.Service(mesh.ServiceKey{Namespace: "default", Name: "dup"})
				assert.Equal(t, []mesh.Port{{Name: "http", Port: 80, Protocol: mesh.ProtocolHTTP}, {Name: "grpc", Port: 90, Protocol: mesh.ProtocolGRPC}}, dup.Ports)
				assert.Len(t, dup.Warnings, 2)
			},
		},
		{
			name:         "invalid port number and cluster IP",
			services:     []*corev1.Service{newService("default", "bad").clusterIP("10.0.0.300").port("http", 70000).port("grpc", 90).obj},
			wantServices: []string{"default/bad", "default/good"},
			wantProblems: []Problem{
				{Kind: "Service", Namespace: "default", Name: "bad", Reason: ReasonInvalidClusterIP, Message: `cluster IP "10.0.0.300" is not an IP address; skipped`},
				{Kind: "Service", Namespace: "default", Name: "bad", Reason: ReasonInvalidPort, Message: `port "http" has number 70000, outside 1-65535; skipped`},
			},
		},
		{
			name:         "only invalid ports",
			services:     []*corev1.Service{newService("default", "bad").port("http", 0).obj},
			wantServices: []string{"default/good"},
			wantProblems: []Problem{
				{Kind: "Service", Namespace: "default", Name: "bad", Reason: ReasonInvalidPort, Message: `port "http" has number 0, outside 1-65535; skipped`},
				{Kind: "Service", Namespace: "default", Name: "bad", Reason: ReasonNoPorts, Message: "the service has no valid TCP port; not served"},
			},
		},
		{
			name:         "UDP-only service and its slices are not the mesh's, silently",
			services:     []*corev1.Service{newService("kube-system", "dns").udpPort("dns", 53).obj},
			slices:       []*discoveryv1.EndpointSlice{newSlice("kube-system", "dns-1", "dns").port("dns", 53).endpoint("10.0.0.53").obj},
			wantServices: []string{"default/good"},
		},
		{
			name: "ExternalName service, silently",
			services: []*corev1.Service{func() *corev1.Service {
				s := newService("default", "ext").port("http", 80).obj
				s.Spec.Type = corev1.ServiceTypeExternalName
				return s
			}()},
			wantServices: []string{"default/good"},
		},
		{
			name:         "slice port that matches no service port",
			slices:       []*discoveryv1.EndpointSlice{newSlice("default", "good-2", "good").port("metrics", 9100).endpoint("10.0.0.2").obj},
			wantServices: []string{"default/good"},
			wantProblems: []Problem{{Kind: "EndpointSlice", Namespace: "default", Name: "good-2", Reason: ReasonUnknownPort,
				Message: `port "metrics" matches no port of service good by name; ignored`}},
		},
		{
			name: "FQDN slice",
			slices: []*discoveryv1.EndpointSlice{func() *discoveryv1.EndpointSlice {
				s := newSlice("default", "good-fqdn", "good").port("http", 80).endpoint("example.com").obj
				s.AddressType = discoveryv1.AddressTypeFQDN
				return s
			}()},
			wantServices: []string{"default/good"},
			wantProblems: []Problem{{Kind: "EndpointSlice", Namespace: "default", Name: "good-fqdn", Reason: ReasonInvalidEndpoint,
				Message: `address type "FQDN" is not supported (want IPv4 or IPv6); slice ignored`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Inputs{
				Services:       append([]*corev1.Service{good.obj}, tt.services...),
				EndpointSlices: append([]*discoveryv1.EndpointSlice{goodSlice.obj}, tt.slices...),
			}
			snap, problems := BuildSnapshot(in)
			var got []string
			for _, s := range snap.Services {
				got = append(got, s.Key().String())
			}
			assert.Equal(t, tt.wantServices, got)
			for i := range problems {
				assert.NotEmpty(t, problems[i].UID, "problem %d names no UID", i)
				problems[i].UID = ""
			}
			assert.Equal(t, tt.wantProblems, problems)
			// The good service is intact.
			assert.Equal(t, []mesh.Endpoint{{Address: "10.0.0.1", Port: 8080, Health: mesh.Healthy}},
				snap.Endpoints[portKey("default", "good", 80)])
			assert.Empty(t, snap.Service(mesh.ServiceKey{Namespace: "default", Name: "good"}).Warnings)
			if tt.check != nil {
				tt.check(t, snap)
			}
		})
	}
}

func TestBuildSnapshotNamespaceAnnotations(t *testing.T) {
	snap, problems := BuildSnapshot(Inputs{
		Namespaces: []*corev1.Namespace{newNamespace("team", map[string]string{
			AnnotationLBPolicy: "least_request", AnnotationConnectTimeout: "never"})},
		Services: []*corev1.Service{
			newService("team", "a").port("http", 80).obj,
			newService("team", "b").port("http", 80).annotate(AnnotationLBPolicy, "random").obj,
		},
	})
	a := snap.Service(mesh.ServiceKey{Namespace: "team", Name: "a"})
	b := snap.Service(mesh.ServiceKey{Namespace: "team", Name: "b"})
	assert.Equal(t, mesh.LBLeastRequest, a.LB.Policy)
	assert.Equal(t, mesh.LBRandom, b.LB.Policy)
	assert.Zero(t, a.LB.ConnectTimeout, "an invalid value leaves the timeout unset: the proxy default")
	assert.Contains(t, a.Warnings[0], "namespace annotation: invalid sluice.dev/connect-timeout")
	// One problem, on the namespace, though two services inherit the value.
	require.Len(t, problems, 1)
	assert.Equal(t, Problem{Kind: "Namespace", Name: "team", UID: "uid-ns-team", Reason: ReasonInvalidAnnotation,
		Message: `invalid sluice.dev/connect-timeout "never": want a positive duration such as 250ms or 2s; using the default 1s`}, problems[0])
}

// TestBuildSnapshotLargeService checks a 10,000-endpoint service (100 slices
// of 100, as the EndpointSlice controller writes them) next to a small one.
func TestBuildSnapshotLargeService(t *testing.T) {
	in := Inputs{Services: []*corev1.Service{
		newService("default", "big").port("http", 80).obj,
		newService("default", "small").port("http", 80).obj,
	}}
	for s := range 100 {
		slice := newSlice("default", fmt.Sprintf("big-%03d", s), "big").port("http", 8080)
		for e := range 100 {
			slice = slice.endpoint(fmt.Sprintf("10.%d.%d.%d", 1+s/200, s%200, 1+e), inZone(fmt.Sprintf("zone-%d", e%3)))
		}
		in.EndpointSlices = append(in.EndpointSlices, slice.obj)
	}
	in.EndpointSlices = append(in.EndpointSlices, newSlice("default", "small-1", "small").port("http", 8080).endpoint("10.9.0.1").obj)

	start := time.Now()
	snap, problems := BuildSnapshot(in)
	elapsed := time.Since(start)
	t.Logf("built a 10,000-endpoint service in %v", elapsed)
	assert.Empty(t, problems)
	big := snap.Endpoints[portKey("default", "big", 80)]
	require.Len(t, big, 10000)
	for i := 1; i < len(big); i++ {
		require.Less(t, big[i-1].Address, big[i].Address, "endpoints sorted, without duplicates")
	}
	assert.Len(t, snap.Endpoints[portKey("default", "small", 80)], 1)
}
