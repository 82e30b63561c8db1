package discovery

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-mesh/sluice/mesh"
)

// incremental drives a builder through a Store, as the coalescer does.
type incremental struct {
	t     *testing.T
	store *Store
	b     *builder
}

func newIncremental(t *testing.T, objs ...runtime.Object) (*incremental, buildResult) {
	h := &incremental{t: t, store: NewStore(), b: newBuilder()}
	h.upsert(objs...)
	return h, h.build()
}

func (h *incremental) upsert(objs ...runtime.Object) {
	for _, o := range objs {
		require.NoError(h.t, h.store.Upsert(o))
	}
}

func (h *incremental) build() buildResult {
	sb := h.store.build(h.b)
	require.True(h.t, sb.built)
	return sb.buildResult
}

// inputs lists the store's objects, for a from-scratch build.
func (h *incremental) inputs() Inputs {
	x := h.store.idx
	return Inputs{
		Services:        slices.Collect(maps.Values(x.services)),
		EndpointSlices:  slices.Collect(maps.Values(x.slices)),
		Pods:            slices.Collect(maps.Values(x.pods)),
		Namespaces:      slices.Collect(maps.Values(x.namespaces)),
		Nodes:           slices.Collect(maps.Values(x.nodes)),
		HTTPRoutes:      slices.Collect(maps.Values(x.routes.http)),
		GRPCRoutes:      slices.Collect(maps.Values(x.routes.grpc)),
		ReferenceGrants: slices.Collect(maps.Values(x.routes.grants)),
	}
}

// sameSlice reports whether two slices share their backing array.
func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func twoServices() []runtime.Object {
	return []runtime.Object{
		newService("default", "a").port("http", 80).obj,
		newService("default", "b").port("http", 80).port("grpc", 90).obj,
		newSlice("default", "a-1", "a").port("http", 8080).endpoint("10.0.0.1", forPod("a-1")).obj,
		newSlice("default", "b-1", "b").port("http", 8080).port("grpc", 9090).endpoint("10.0.1.1", onNode("n1")).obj,
		newPod("default", "a-1", "n1", "sa-a", map[string]string{"app": "a"}),
		newNode("n1", "zone-1"),
	}
}

func TestIncrementalFirstBuild(t *testing.T) {
	_, r := newIncremental(t, twoServices()...)
	assert.True(t, r.changed)
	assert.False(t, r.endpointsOnly)
	assert.Equal(t, []mesh.ServiceKey{{Namespace: "default", Name: "a"}, {Namespace: "default", Name: "b"}}, r.changedServices)
	assert.Equal(t, []mesh.PortKey{portKey("default", "a", 80), portKey("default", "b", 80), portKey("default", "b", 90)}, r.changedPorts)
}

func TestIncrementalEndpointsOnly(t *testing.T) {
	h, first := newIncremental(t, twoServices()...)
	h.upsert(newSlice("default", "a-1", "a").port("http", 8080).endpoint("10.0.0.1", forPod("a-1")).endpoint("10.0.0.2").obj)
	r := h.build()
	require.True(t, r.changed)
	assert.True(t, r.endpointsOnly)
	assert.True(t, sameSlice(first.snapshot.Services, r.snapshot.Services), "services are shared")
	assert.Empty(t, r.changedServices)
	assert.Equal(t, []mesh.PortKey{portKey("default", "a", 80)}, r.changedPorts)
	assert.Len(t, r.snapshot.Endpoints[portKey("default", "a", 80)], 2)
	b80 := portKey("default", "b", 80)
	assert.True(t, sameSlice(first.snapshot.Endpoints[b80], r.snapshot.Endpoints[b80]), "untouched ports share their endpoints")
	assert.Len(t, first.snapshot.Endpoints[portKey("default", "a", 80)], 1, "the previous snapshot is not modified")
}

func TestIncrementalServiceChange(t *testing.T) {
	h, first := newIncremental(t, twoServices()...)
	h.upsert(newService("default", "a").port("http", 80).annotate(AnnotationLBPolicy, "random").obj)
	r := h.build()
	require.True(t, r.changed)
	assert.False(t, r.endpointsOnly)
	assert.Equal(t, []mesh.ServiceKey{{Namespace: "default", Name: "a"}}, r.changedServices)
	assert.Empty(t, r.changedPorts, "the endpoints of a did not change")
	assert.NotSame(t, first.snapshot.Services[0], r.snapshot.Services[0])
	assert.Same(t, first.snapshot.Services[1], r.snapshot.Services[1], "an unchanged service keeps its pointer")
	assert.Equal(t, mesh.LBRandom, r.snapshot.Services[0].LB.Policy)
}

func TestIncrementalNoOps(t *testing.T) {
	h, first := newIncremental(t, twoServices()...)

	// A service update that changes nothing the model uses.
	svc := newService("default", "a").port("http", 80).obj
	svc.Labels = map[string]string{"new": "label"}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "1.2.3.4"}}
	h.upsert(svc)
	// A pod status change.
	pod := newPod("default", "a-1", "n1", "sa-a", map[string]string{"app": "a"})
	pod.Status.Phase = corev1.PodRunning
	h.upsert(pod)
	// A pod no endpoint refers to.
	h.upsert(newPod("default", "lonely", "n1", "", map[string]string{"x": "y"}))
	// An annotation the mesh does not use changes the Service, not the model.
	h.upsert(newService("default", "b").port("http", 80).port("grpc", 90).annotate("example.com/owner", "me").obj)

	r := h.build()
	assert.False(t, r.changed)
	assert.Same(t, first.snapshot, r.snapshot)
}

func TestIncrementalPodAndNodeChanges(t *testing.T) {
	h, _ := newIncremental(t, twoServices()...)
	a80 := portKey("default", "a", 80)

	h.upsert(newPod("default", "a-1", "n1", "sa-a", map[string]string{"app": "a", "version": "v2"}))
	r := h.build()
	require.True(t, r.changed)
	assert.True(t, r.endpointsOnly)
	assert.Equal(t, []mesh.PortKey{a80}, r.changedPorts)
	assert.Equal(t, "v2", r.snapshot.Endpoints[a80][0].Labels["version"])

	h.upsert(newNode("n1", "zone-2"))
	r = h.build()
	require.True(t, r.changed)
	assert.True(t, r.endpointsOnly)
	assert.Equal(t, []mesh.PortKey{a80, portKey("default", "b", 80), portKey("default", "b", 90)}, r.changedPorts)
	assert.Equal(t, "zone-2", r.snapshot.Endpoints[a80][0].Zone)

	require.NoError(t, h.store.Delete(KindPod, "default", "a-1"))
	r = h.build()
	require.True(t, r.changed)
	assert.Equal(t, mesh.Endpoint{Address: "10.0.0.1", Port: 8080, Health: mesh.Healthy, Pod: "a-1"}, r.snapshot.Endpoints[a80][0],
		"without its pod, the endpoint keeps the pod name from targetRef and loses the rest")

	// A pod that appears after its slice fills the endpoint in.
	h.upsert(newPod("default", "a-1", "n1", "sa-new", nil))
	r = h.build()
	require.True(t, r.changed)
	assert.Equal(t, "sa-new", r.snapshot.Endpoints[a80][0].ServiceAccount)
}

func TestIncrementalServiceLifecycle(t *testing.T) {
	h, _ := newIncremental(t, twoServices()...)
	require.NoError(t, h.store.Delete(KindService, "default", "a"))
	r := h.build()
	require.True(t, r.changed)
	assert.False(t, r.endpointsOnly)
	assert.Equal(t, []mesh.ServiceKey{{Namespace: "default", Name: "a"}}, r.changedServices)
	assert.Equal(t, []mesh.PortKey{portKey("default", "a", 80)}, r.changedPorts)
	_, ok := r.snapshot.Endpoints[portKey("default", "a", 80)]
	assert.False(t, ok, "a removed service's ports leave the snapshot")
	assert.Equal(t, []string{ReasonUnknownService}, reasons(r.problems), "its slice is now orphaned")

	h.upsert(newService("default", "a").port("http", 80).obj)
	r = h.build()
	require.True(t, r.changed)
	assert.Empty(t, r.problems)
	assert.Len(t, r.snapshot.Endpoints[portKey("default", "a", 80)], 1)

	// A slice relabelled to another service moves its endpoints.
	h.upsert(newSlice("default", "a-1", "b").port("http", 8080).endpoint("10.0.0.1").obj)
	r = h.build()
	require.True(t, r.changed)
	assert.True(t, r.endpointsOnly)
	assert.Empty(t, r.snapshot.Endpoints[portKey("default", "a", 80)])
	assert.Len(t, r.snapshot.Endpoints[portKey("default", "b", 80)], 2)

	// A port removed from a service leaves the snapshot.
	h.upsert(newService("default", "b").port("http", 80).obj)
	r = h.build()
	require.True(t, r.changed)
	assert.Contains(t, r.changedPorts, portKey("default", "b", 90))
	_, ok = r.snapshot.Endpoints[portKey("default", "b", 90)]
	assert.False(t, ok)
}

// TestIncrementalMatchesFromScratch applies random changes and checks that
// every incremental snapshot equals a from-scratch build of the same objects.
func TestIncrementalMatchesFromScratch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h, _ := newIncremental(t)
	services := []string{"s0", "s1", "s2", "s3"}
	pods := []string{"p0", "p1", "p2", "p3", "p4"}
	nodes := []string{"n0", "n1"}
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	withRoutes, routeChanges := 0, 0
	for step := range 400 {
		for range 1 + rng.IntN(3) {
			switch rng.IntN(14) {
			case 0:
				s := newService("ns", pick(services)).port("http", 80)
				if rng.IntN(2) == 0 {
					s = s.port("grpc", 90)
				}
				if rng.IntN(3) == 0 {
					s = s.annotate(AnnotationLBPolicy, pick([]string{"random", "bogus"}))
				}
				h.upsert(s.obj)
			case 1:
				require.NoError(t, h.store.Delete(KindService, "ns", pick(services)))
			case 2, 3:
				sl := newSlice("ns", fmt.Sprintf("slice-%d", rng.IntN(6)), pick(services)).port("http", 8080)
				if rng.IntN(2) == 0 {
					sl = sl.port("grpc", 9090)
				}
				for range rng.IntN(4) {
					opts := []endpointOpt{forPod(pick(pods))}
					if rng.IntN(3) == 0 {
						opts = append(opts, notReady())
					}
					if rng.IntN(3) == 0 {
						opts = append(opts, onNode(pick(nodes)))
					}
					sl = sl.endpoint(fmt.Sprintf("10.0.0.%d", rng.IntN(5)), opts...)
				}
				h.upsert(sl.obj)
			case 4:
				require.NoError(t, h.store.Delete(KindEndpointSlice, "ns", fmt.Sprintf("slice-%d", rng.IntN(6))))
			case 5:
				h.upsert(newPod("ns", pick(pods), pick(nodes), pick([]string{"", "sa"}), map[string]string{"v": pick([]string{"1", "2"})}))
			case 6:
				require.NoError(t, h.store.Delete(KindPod, "ns", pick(pods)))
			case 7:
				h.upsert(newNode(pick(nodes), pick([]string{"za", "zb", ""})))
			case 8:
				h.upsert(newNamespace("ns", map[string]string{AnnotationLBPolicy: pick([]string{"least_request", "nope"})}))
			case 9, 10:
				h.upsert(randomHTTPRoute(rng, services))
			case 11:
				h.upsert(randomGRPCRoute(rng, services))
			case 12:
				kind := pick([]string{KindHTTPRoute, KindGRPCRoute, KindReferenceGrant})
				require.NoError(t, h.store.Delete(kind, "ns", fmt.Sprintf("r%d", rng.IntN(3))))
			case 13:
				if rng.IntN(2) == 0 {
					h.upsert(newService("other", "o").port("http", 80).obj)
				}
				h.upsert(newReferenceGrant("other", fmt.Sprintf("r%d", rng.IntN(3)), pick([]string{KindHTTPRoute, KindGRPCRoute}), "ns", pick([]string{"", "o", "p"})))
			}
		}
		r := h.build()
		want, wantProblems := BuildSnapshot(h.inputs())
		require.Equal(t, want, r.snapshot, "step %d", step)
		require.Equal(t, wantProblems, r.problems, "step %d", step)
		require.Equal(t, BuildRouteStatuses(h.inputs()), r.routeStatuses, "step %d", step)
		if len(r.snapshot.Routes) > 0 {
			withRoutes++
		}
		if len(r.changedRoutes) > 0 {
			routeChanges++
		}
	}
	assert.Greater(t, withRoutes, 200, "most snapshots have routes")
	assert.Greater(t, routeChanges, 100, "routes change often")
}

// randomHTTPRoute is one of three routes with random parents, matches,
// weights and backends, valid or not, for TestIncrementalMatchesFromScratch.
func randomHTTPRoute(rng *rand.Rand, services []string) *gatewayv1.HTTPRoute {
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	f := newHTTPRoute("ns", fmt.Sprintf("r%d", rng.IntN(3))).age(time.Duration(rng.IntN(3)) * time.Minute)
	if rng.IntN(3) == 0 {
		f = f.parent(pick(services), 80)
	} else {
		f = f.parent(pick(services))
	}
	for range 1 + rng.IntN(2) {
		r := httpRule()
		switch rng.IntN(5) {
		case 0:
			r = r.match(pathMatch(gatewayv1.PathMatchExact, "/x"))
		case 1:
			r = r.match(withHeaders(pathMatch(gatewayv1.PathMatchPathPrefix, pick([]string{"/", "/a", "/ab"})), "x-canary", "true"))
		case 2:
			r = r.match(pathMatch(gatewayv1.PathMatchRegularExpression, pick([]string{"/re.*", "/(bad"})))
		}
		for range rng.IntN(3) {
			if rng.IntN(4) == 0 {
				r = r.toRef(backendRef("other", pick([]string{"o", "p"}), 80, int32(rng.IntN(3))))
			} else {
				r = r.to(pick(services), int32(80+10*rng.IntN(2)), int32(rng.IntN(3)))
			}
		}
		f = f.rule(r)
	}
	f.obj.Generation = int64(1 + rng.IntN(2))
	return f.obj
}

func randomGRPCRoute(rng *rand.Rand, services []string) *gatewayv1.GRPCRoute {
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	f := newGRPCRoute("ns", fmt.Sprintf("r%d", rng.IntN(3))).parent(pick(services)).age(time.Duration(rng.IntN(3)) * time.Minute)
	var methods []string
	if rng.IntN(2) == 0 {
		methods = []string{pick([]string{"s.S/M", "s.S/", "/M"})}
	}
	return f.rule(methods, backendRef("", pick(services), 90, int32(rng.IntN(3)))).obj
}

func TestIncrementalRouteChanges(t *testing.T) {
	objs := append(twoServices(), grpcService("default", "c").obj, grpcService("default", "d").obj)
	route := newGRPCRoute("default", "r").parent("c").rule(nil, backendRef("", "d", 9090, 1))
	h, first := newIncremental(t, append(objs, route.obj, newHTTPRoute("default", "h").parent("a").rule(httpRule().to("b", 80, 1)).obj)...)
	c, a := portKey("default", "c", 9090), portKey("default", "a", 80)
	require.Contains(t, first.snapshot.Routes, c)
	assert.True(t, first.routeStatusChanged)

	// A route change is never endpoints-only, and other ports keep their routes.
	changed := newGRPCRoute("default", "r").parent("c").rule(nil, backendRef("", "d", 9090, 1), backendRef("", "c", 9090, 1))
	changed.obj.Generation = 2
	h.upsert(changed.obj)
	r := h.build()
	require.True(t, r.changed)
	assert.False(t, r.endpointsOnly)
	assert.Empty(t, r.changedServices)
	assert.Equal(t, []mesh.PortKey{c}, r.changedRoutes)
	assert.Same(t, first.snapshot.Routes[a], r.snapshot.Routes[a], "an unchanged port keeps its *PortRoutes")
	assert.True(t, r.routeStatusChanged, "the generation changed")

	// A status write (ours) is not a change.
	written := changed.obj.DeepCopy()
	written.ResourceVersion = "99"
	written.Status.Parents = []gatewayv1.RouteParentStatus{{ParentRef: serviceParent("c"), ControllerName: ControllerName}}
	h.upsert(written)
	r = h.build()
	assert.False(t, r.changed)
	assert.False(t, r.routeStatusChanged)
	parents, ok := h.store.routeStatusParents(KindGRPCRoute, "default", "r")
	assert.True(t, ok)
	assert.Len(t, parents, 1, "the store holds the latest status")

	// Removing the backend Service changes the route (an invalid backend).
	require.NoError(t, h.store.Delete(KindService, "default", "d"))
	r = h.build()
	assert.Equal(t, []mesh.PortKey{c}, r.changedRoutes)
	assert.True(t, r.snapshot.Routes[c].Rules[0].Backends[0].Invalid)

	// Deleting the route removes its port's entry.
	require.NoError(t, h.store.Delete(KindGRPCRoute, "default", "r"))
	r = h.build()
	assert.Equal(t, []mesh.PortKey{c}, r.changedRoutes)
	assert.NotContains(t, r.snapshot.Routes, c)
}
