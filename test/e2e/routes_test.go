//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/test/backend"
	"github.com/sluice-mesh/sluice/test/cluster"
	"github.com/sluice-mesh/sluice/test/xdsclient"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// routeController is the controllerName Sluice writes route status with.
const routeController = "sluice.dev/mesh-controller"

// routesEnv is the shared state of TestRoutes: a namespace with Services
// api (with its own pods, "base-*"), api-stable ("stable-*") and
// api-canary ("canary-*"), and a control plane watching them.
type routesEnv struct {
	t  *testing.T
	c  *cluster.Cluster
	cp *controlPlane
	gw gatewayclient.Interface
	ns string
}

// TestRoutes drives Gateway API routes attached to Services (GAMMA)
// through `sluice serve` on the test cluster and checks, with grpc-go xDS
// clients, where real RPCs land, and what status the routes get.
func TestRoutes(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute)
	defer cancel()
	cp := startSluice(t, c) // which creates sluice-system, where the leader election Lease lives
	gw, err := gatewayclient.NewForConfig(c.RESTConfig)
	require.NoError(t, err)
	e := &routesEnv{t: t, c: c, cp: cp, gw: gw, ns: "routes"}
	require.NoError(t, c.CreateNamespace(ctx, e.ns))
	for _, d := range []struct {
		svc, deploy string
		replicas    int32
	}{{"api", "base", 1}, {"api-stable", "stable", 2}, {"api-canary", "canary", 2}} {
		createServiceSelecting(ctx, t, c, e.ns, d.svc, d.svc)
		createDeployment(ctx, t, c, e.ns, d.deploy, d.svc, d.replicas, "")
	}
	for svc, n := range map[string]int{"api": 1, "api-stable": 2, "api-canary": 2} {
		waitReady(ctx, t, c, e.ns, svc, n)
	}
	client := newClient(t, cp, "canary-client", e.ns, "", "api")
	const proxy = "canary-client.routes"
	waitForPods(ctx, t, client, 1) // no route yet: everything goes to api's own pod
	stable, canary := e.cluster("api-stable"), e.cluster("api-canary")

	e.applyHTTPRoute(ctx, httpRoute(e.ns, "split", "api", httpSplit(90, 10)))

	t.Run("a 90/10 split sends 10% ± 1.5 points of 10,000 RPCs to the canary", func(t *testing.T) {
		e.waitAccepted(ctx, "HTTPRoute", "split", "api")
		waitAckedWeights(ctx, t, cp, proxy, map[string]uint32{stable: 90, canary: 10})
		counts, err := xdsclient.Spread(ctx, client, 10000)
		require.NoError(t, err)
		share := groupShare(counts, "canary-")
		t.Logf("90/10: canary share %.2f%% (%s)", 100*share, counts)
		assert.InDelta(t, 0.10, share, 0.015)
		assert.Zero(t, groupShare(counts, "base-"), "the route replaces api's default routing")
	})

	for _, w := range [][2]int32{{100, 0}, {0, 100}} {
		t.Run(fmt.Sprintf("%d/%d is exact", w[0], w[1]), func(t *testing.T) {
			e.applyHTTPRoute(ctx, httpRoute(e.ns, "split", "api", httpSplit(w[0], w[1])))
			waitAckedWeights(ctx, t, cp, proxy, map[string]uint32{stable: uint32(w[0]), canary: uint32(w[1])})
			counts, err := xdsclient.Spread(ctx, client, 2000)
			require.NoError(t, err)
			assert.Equal(t, float64(w[1])/100, groupShare(counts, "canary-"), counts.String())
			assert.Equal(t, float64(w[0])/100, groupShare(counts, "stable-"), counts.String())
		})
	}

	t.Run("a header match sends x-canary: true to the canary only", func(t *testing.T) {
		r := httpRoute(e.ns, "split", "api", httpSplit(100, 0))
		r.Spec.Rules = append([]gatewayv1.HTTPRouteRule{{
			Matches:     []gatewayv1.HTTPRouteMatch{{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-canary", Value: "true"}}}},
			BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: serviceBackend("", "api-canary", 1)}},
		}}, r.Spec.Rules...)
		e.applyHTTPRoute(ctx, r)
		waitAckedRoutes(ctx, t, cp, proxy, "two routes, the header one first", func(rs []ackedRoute) bool {
			return len(rs) == 2 && strings.Contains(rs[0].match, "x-canary") && rs[0].weights[canary] > 0 && rs[1].weights[stable] > 0
		})
		yes := metadata.AppendToOutgoingContext(ctx, "x-canary", "true")
		counts, err := xdsclient.Spread(yes, client, 500)
		require.NoError(t, err)
		assert.Equal(t, 1.0, groupShare(counts, "canary-"), "with the header: %s", counts)
		no := metadata.AppendToOutgoingContext(ctx, "x-canary", "false")
		for _, c := range []context.Context{ctx, no} {
			counts, err = xdsclient.Spread(c, client, 500)
			require.NoError(t, err)
			assert.Equal(t, 1.0, groupShare(counts, "stable-"), "without it: %s", counts)
		}
	})

	t.Run("a GRPCRoute method match routes UnaryCall only", func(t *testing.T) {
		// A Service without pods is a pure routing frontend.
		createServiceSelecting(ctx, t, c, e.ns, "methods", "nothing")
		e.applyGRPCRoute(ctx, &gatewayv1.GRPCRoute{
			ObjectMeta: metav1.ObjectMeta{Name: "methods", Namespace: e.ns},
			Spec: gatewayv1.GRPCRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{serviceParentRef("methods")}},
				Rules: []gatewayv1.GRPCRouteRule{
					{
						Matches: []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{
							Service: ptr.To(backend.TestServiceName), Method: ptr.To("UnaryCall"),
						}}},
						BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: serviceBackend("", "api-canary", 1)}},
					},
					{BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: serviceBackend("", "api-stable", 1)}}},
				},
			},
		})
		e.waitAccepted(ctx, "GRPCRoute", "methods", "methods")
		mc := newClient(t, cp, "methods-client", e.ns, "", "methods")
		mc.Connect() // subscribe now: the ACK is waited for before any RPC
		waitAckedRoutes(ctx, t, cp, "methods-client.routes", "the UnaryCall route first", func(rs []ackedRoute) bool {
			return len(rs) == 2 && strings.Contains(rs[0].match, "UnaryCall") && rs[0].weights[canary] > 0 && rs[1].weights[stable] > 0
		})
		unary, err := xdsclient.Spread(ctx, mc, 300, grpc.WaitForReady(true))
		require.NoError(t, err)
		assert.Equal(t, 1.0, groupShare(unary, "canary-"), "UnaryCall: %s", unary)
		empty := xdsclient.Counts{}
		for range 300 {
			pod, err := emptyCallPod(ctx, mc)
			require.NoError(t, err)
			empty[pod]++
		}
		assert.Equal(t, 1.0, groupShare(empty, "stable-"), "EmptyCall: %s", empty)
	})

	t.Run("weight steps under continuous load fail no RPC", func(t *testing.T) {
		e.applyHTTPRoute(ctx, httpRoute(e.ns, "split", "api", httpSplit(100, 0)))
		waitAckedWeights(ctx, t, cp, proxy, map[string]uint32{stable: 100})
		load := startRouteLoad(ctx, client, 2)
		for _, w := range [][2]int32{{75, 25}, {50, 50}, {0, 100}} {
			before := load.ok.Load()
			e.applyHTTPRoute(ctx, httpRoute(e.ns, "split", "api", httpSplit(w[0], w[1])))
			waitAckedWeights(ctx, t, cp, proxy, map[string]uint32{stable: uint32(w[0]), canary: uint32(w[1])})
			const n = 10000
			counts, err := xdsclient.Spread(ctx, client, n)
			require.NoError(t, err)
			share := groupShare(counts, "canary-")
			t.Logf("%d/%d: canary share %.2f%% of %d after the ACK; load so far %d RPCs, %d failed",
				w[0], w[1], 100*share, n, load.ok.Load(), load.failed.Load())
			assert.Greater(t, load.ok.Load()-before, int64(100), "the load ran across the change")
			if w[0] == 0 {
				assert.Equal(t, 1.0, share, counts.String())
			} else {
				// ±5 binomial standard deviations (≤ 2.5 points at 10,000
				// RPCs): grpc-go picks clusters at random by weight, and a
				// tighter bound fails about one run in two hundred.
				sd := math.Sqrt(float64(w[1]) / 100 * float64(w[0]) / 100 / n)
				assert.InDelta(t, float64(w[1])/100, share, 5*sd, counts.String())
			}
		}
		ok, failed, errs := load.stop()
		t.Logf("continuous load: %d RPCs, %d failed", ok+failed, failed)
		assert.Greater(t, ok, int64(1000), "the load ran")
		assert.Zero(t, failed, "failed RPCs during weight changes: %v", errs)
	})

	t.Run("bad input gets the right status and traffic, and other routes keep working", func(t *testing.T) {
		e.badInput(ctx, client, proxy)
	})

	t.Run("a second replica serves the same routes and writes no status", func(t *testing.T) {
		cp2 := startSluice(t, c)
		c2 := newClient(t, cp2, "replica-client", e.ns, "", "api")
		c2.Connect()
		waitAckedWeights(ctx, t, cp2, "replica-client.routes", map[string]uint32{stable: 100})
		counts, err := xdsclient.Spread(ctx, c2, 200)
		require.NoError(t, err)
		assert.Equal(t, 1.0, groupShare(counts, "stable-"), counts.String())
		leaders := 0.0
		for _, p := range []*controlPlane{cp, cp2} {
			n, err := p.metricSum("sluice_leader_election_is_leader")
			require.NoError(t, err)
			leaders += n
		}
		assert.Equal(t, 1.0, leaders, "exactly one leader")
		written, err := cp2.metricSum(`sluice_route_status_writes_total{result="written"}`)
		require.NoError(t, err)
		assert.Zero(t, written, "the follower wrote status")
		written, err = cp.metricSum(`sluice_route_status_writes_total{result="written"}`)
		require.NoError(t, err)
		assert.Positive(t, written, "the leader wrote status")
	})
}

// badInput creates one broken route per case, each on its own parent
// Service, checks its status conditions and traffic, and then that the
// good route on api still routes.
func (e *routesEnv) badInput(ctx context.Context, good *grpc.ClientConn, goodProxy string) {
	t, c := e.t, e.c
	stable := e.cluster("api-stable")
	// Parent Services are frontends; bad-regex selects the stable pods so
	// that its default routing (with no route attached) is visible.
	for _, svc := range []string{"missing-backend", "zero-weights", "cross-ns"} {
		createServiceSelecting(ctx, t, c, e.ns, svc, "nothing")
	}
	createServiceSelecting(ctx, t, c, e.ns, "bad-regex", "api-stable")
	require.NoError(t, c.CreateNamespace(ctx, "elsewhere"))
	createServiceSelecting(ctx, t, c, "elsewhere", "remote", "remote")
	createDeployment(ctx, t, c, "elsewhere", "remote", "remote", 1, "")
	waitReady(ctx, t, c, "elsewhere", "remote", 1)

	// A backendRef to a Service that does not exist.
	mb := httpRoute(e.ns, "missing-backend", "missing-backend", []gatewayv1.HTTPBackendRef{
		{BackendRef: serviceBackend("", "api-stable", 1)}, {BackendRef: serviceBackend("", "ghost", 1)}})
	e.applyHTTPRoute(ctx, mb)
	// All weights zero.
	e.applyHTTPRoute(ctx, httpRoute(e.ns, "zero-weights", "zero-weights", httpSplit(0, 0)))
	// A cross-namespace backendRef without a ReferenceGrant.
	e.applyHTTPRoute(ctx, httpRoute(e.ns, "cross-ns", "cross-ns", []gatewayv1.HTTPBackendRef{{BackendRef: serviceBackend("elsewhere", "remote", 1)}}))
	// An invalid regular expression in the route's only rule.
	br := httpRoute(e.ns, "bad-regex", "bad-regex", []gatewayv1.HTTPBackendRef{{BackendRef: serviceBackend("", "api-canary", 1)}})
	br.Spec.Rules[0].Matches = []gatewayv1.HTTPRouteMatch{{Headers: []gatewayv1.HTTPHeaderMatch{
		{Name: "x-user", Value: "(unclosed", Type: ptr.To(gatewayv1.HeaderMatchRegularExpression)}}}}
	e.applyHTTPRoute(ctx, br)
	// A route to a Service that does not exist.
	e.applyHTTPRoute(ctx, httpRoute(e.ns, "no-parent", "no-such-service", httpSplit(50, 50)))

	e.waitConditions(ctx, "HTTPRoute", "missing-backend", "missing-backend", "Accepted=True/Accepted", "ResolvedRefs=False/BackendNotFound")
	e.waitConditions(ctx, "HTTPRoute", "zero-weights", "zero-weights", "Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs")
	e.waitConditions(ctx, "HTTPRoute", "cross-ns", "cross-ns", "Accepted=True/Accepted", "ResolvedRefs=False/RefNotPermitted")
	e.waitConditions(ctx, "HTTPRoute", "bad-regex", "bad-regex", "Accepted=False/UnsupportedValue", "ResolvedRefs=True/ResolvedRefs")
	e.waitConditions(ctx, "HTTPRoute", "no-parent", "no-such-service", "Accepted=False/NoMatchingParent", "ResolvedRefs=True/ResolvedRefs")

	t.Run("a missing backend fails its share of RPCs with UNAVAILABLE", func(t *testing.T) {
		cc := newClient(t, e.cp, "mb-client", e.ns, "", "missing-backend")
		cc.Connect() // subscribe now: the ACK is waited for before any RPC
		waitAckedRoutes(ctx, t, e.cp, "mb-client.routes", "one route", func(rs []ackedRoute) bool { return len(rs) == 1 })
		counts, fails := tally(ctx, cc, 1000)
		t.Logf("missing backend: %s, failures %v", counts, fails)
		assert.InDelta(t, 0.5, float64(counts.Total())/1000, 0.1, "half the RPCs reach api-stable: %s", counts)
		assert.Equal(t, 1.0, groupShare(counts, "stable-"))
		assert.Equal(t, 1000-counts.Total(), fails[codes.Unavailable], "the rest fail UNAVAILABLE: %v", fails)
	})

	t.Run("all weights zero fail every RPC with UNAVAILABLE", func(t *testing.T) {
		cc := newClient(t, e.cp, "zero-client", e.ns, "", "zero-weights")
		cc.Connect() // subscribe now: the ACK is waited for before any RPC
		waitAckedRoutes(ctx, t, e.cp, "zero-client.routes", "one route", func(rs []ackedRoute) bool { return len(rs) == 1 })
		counts, fails := tally(ctx, cc, 100)
		assert.Zero(t, counts.Total(), counts.String())
		assert.Equal(t, 100, fails[codes.Unavailable], "%v", fails)
	})

	t.Run("a cross-namespace backend works once a ReferenceGrant allows it", func(t *testing.T) {
		cc := newClient(t, e.cp, "cross-client", e.ns, "", "cross-ns")
		cc.Connect() // subscribe now: the ACK is waited for before any RPC
		waitAckedRoutes(ctx, t, e.cp, "cross-client.routes", "one route", func(rs []ackedRoute) bool { return len(rs) == 1 })
		counts, fails := tally(ctx, cc, 100)
		assert.Zero(t, counts.Total(), counts.String())
		assert.Equal(t, 100, fails[codes.Unavailable], "without a grant: %v", fails)

		_, err := e.gw.GatewayV1beta1().ReferenceGrants("elsewhere").Create(ctx, &gatewayv1beta1.ReferenceGrant{
			ObjectMeta: metav1.ObjectMeta{Name: "from-routes"},
			Spec: gatewayv1beta1.ReferenceGrantSpec{
				From: []gatewayv1beta1.ReferenceGrantFrom{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Namespace: gatewayv1.Namespace(e.ns)}},
				To:   []gatewayv1beta1.ReferenceGrantTo{{Group: "", Kind: "Service", Name: ptr.To(gatewayv1.ObjectName("remote"))}},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		e.waitConditions(ctx, "HTTPRoute", "cross-ns", "cross-ns", "Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs")
		remote := translate.ClusterName(mesh.PortKey{Namespace: "elsewhere", Name: "remote", Port: grpcPort}, translate.DefaultClusterDomain)
		waitAckedWeights(ctx, t, e.cp, "cross-client.routes", map[string]uint32{remote: 1})
		waitForPods(ctx, t, cc, 1)
		counts, err = xdsclient.Spread(ctx, cc, 100)
		require.NoError(t, err)
		assert.Equal(t, 1.0, groupShare(counts, "remote-"), counts.String())
	})

	t.Run("a route that is not accepted leaves the Service's default routing", func(t *testing.T) {
		cc := newClient(t, e.cp, "regex-client", e.ns, "", "bad-regex")
		waitForPods(ctx, t, cc, 2)
		counts, err := xdsclient.Spread(ctx, cc, 200)
		require.NoError(t, err)
		assert.Equal(t, 1.0, groupShare(counts, "stable-"), "bad-regex's own (stable) pods, not the route's canary: %s", counts)
	})

	t.Run("the good route still routes", func(t *testing.T) {
		e.applyHTTPRoute(ctx, httpRoute(e.ns, "split", "api", httpSplit(100, 0)))
		waitAckedWeights(ctx, t, e.cp, goodProxy, map[string]uint32{stable: 100})
		counts, err := xdsclient.Spread(ctx, good, 500)
		require.NoError(t, err)
		assert.Equal(t, 1.0, groupShare(counts, "stable-"), counts.String())
		e.waitConditions(ctx, "HTTPRoute", "split", "api", "Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs")
	})
}

// cluster is the xDS cluster name of a Service's gRPC port in the env's namespace.
func (e *routesEnv) cluster(svc string) string {
	return translate.ClusterName(mesh.PortKey{Namespace: e.ns, Name: svc, Port: grpcPort}, translate.DefaultClusterDomain)
}

func serviceParentRef(svc string) gatewayv1.ParentReference {
	return gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")),
		Name: gatewayv1.ObjectName(svc), Port: ptr.To(gatewayv1.PortNumber(grpcPort))}
}

func serviceBackend(ns, svc string, weight int32) gatewayv1.BackendRef {
	ref := gatewayv1.BackendRef{Weight: ptr.To(weight), BackendObjectReference: gatewayv1.BackendObjectReference{
		Name: gatewayv1.ObjectName(svc), Port: ptr.To(gatewayv1.PortNumber(grpcPort))}}
	if ns != "" {
		ref.Namespace = ptr.To(gatewayv1.Namespace(ns))
	}
	return ref
}

func httpSplit(stable, canary int32) []gatewayv1.HTTPBackendRef {
	return []gatewayv1.HTTPBackendRef{
		{BackendRef: serviceBackend("", "api-stable", stable)},
		{BackendRef: serviceBackend("", "api-canary", canary)},
	}
}

// httpRoute is an HTTPRoute on a Service's gRPC port with one rule.
func httpRoute(ns, name, parent string, backends []gatewayv1.HTTPBackendRef) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{serviceParentRef(parent)}},
			Rules:           []gatewayv1.HTTPRouteRule{{BackendRefs: backends}},
		},
	}
}

// applyHTTPRoute creates the route or replaces its spec.
func (e *routesEnv) applyHTTPRoute(ctx context.Context, r *gatewayv1.HTTPRoute) {
	e.t.Helper()
	routes := e.gw.GatewayV1().HTTPRoutes(r.Namespace)
	_, err := routes.Create(ctx, r, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur *gatewayv1.HTTPRoute
		cur, err = routes.Get(ctx, r.Name, metav1.GetOptions{})
		if err == nil {
			cur.Spec = r.Spec
			_, err = routes.Update(ctx, cur, metav1.UpdateOptions{})
		}
	}
	require.NoError(e.t, err, "apply HTTPRoute %s", r.Name)
}

func (e *routesEnv) applyGRPCRoute(ctx context.Context, r *gatewayv1.GRPCRoute) {
	e.t.Helper()
	_, err := e.gw.GatewayV1().GRPCRoutes(r.Namespace).Create(ctx, r, metav1.CreateOptions{})
	require.NoError(e.t, err, "create GRPCRoute %s", r.Name)
}

// parentConditions returns "Type=Status/Reason" for each condition Sluice
// wrote for the route's parentRef to the Service parent, checking that
// each observed the route's current generation.
func (e *routesEnv) parentConditions(ctx context.Context, kind, name, parent string) ([]string, error) {
	var meta metav1.ObjectMeta
	var parents []gatewayv1.RouteParentStatus
	switch kind {
	case "HTTPRoute":
		r, err := e.gw.GatewayV1().HTTPRoutes(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		meta, parents = r.ObjectMeta, r.Status.Parents
	default:
		r, err := e.gw.GatewayV1().GRPCRoutes(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		meta, parents = r.ObjectMeta, r.Status.Parents
	}
	for _, p := range parents {
		if string(p.ControllerName) != routeController || string(p.ParentRef.Name) != parent {
			continue
		}
		var out []string
		for _, c := range p.Conditions {
			if c.ObservedGeneration != meta.Generation {
				return nil, fmt.Errorf("condition %s observed generation %d, route is at %d", c.Type, c.ObservedGeneration, meta.Generation)
			}
			out = append(out, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
		}
		return out, nil
	}
	return nil, fmt.Errorf("no status from %s for parent %s yet", routeController, parent)
}

// waitConditions waits until the route's status for parent has exactly
// the given conditions ("Type=Status/Reason").
func (e *routesEnv) waitConditions(ctx context.Context, kind, name, parent string, want ...string) {
	e.t.Helper()
	var got []string
	var err error
	require.Eventually(e.t, func() bool {
		got, err = e.parentConditions(ctx, kind, name, parent)
		return err == nil && assert.ObjectsAreEqual(want, got)
	}, time.Minute, 100*time.Millisecond, "%s %s: want %v, last %v (err %v)", kind, name, want, got, err)
}

func (e *routesEnv) waitAccepted(ctx context.Context, kind, name, parent string) {
	e.t.Helper()
	e.waitConditions(ctx, kind, name, parent, "Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs")
}

// keepBackendsHeader marks the route that translate adds for proxyless
// gRPC to keep clusters of zero-weight backends; it never matches.
const keepBackendsHeader = "sluice-keep-backends"

// ackedRoute is one route of an ACKed RouteConfiguration: its match as
// JSON and the clusters it sends to with their weights (zero weights left
// out; a single cluster has weight 1).
type ackedRoute struct {
	match   string
	weights map[string]uint32
}

// ackedRoutes returns the routes of every RouteConfiguration the proxy
// was last sent, and whether it ACKed that version.
func (cp *controlPlane) ackedRoutes(proxyID string) ([]ackedRoute, bool, error) {
	var dump struct {
		Types []struct {
			TypeURL      string            `json:"typeUrl"`
			Version      string            `json:"version"`
			AckedVersion string            `json:"ackedVersion"`
			Resources    []json.RawMessage `json:"resources"`
		} `json:"types"`
	}
	if err := httpJSON(cp.DebugURL+"/debug/config_dump?proxy="+proxyID, &dump); err != nil {
		return nil, false, err
	}
	for _, ty := range dump.Types {
		if !strings.HasSuffix(ty.TypeURL, "RouteConfiguration") {
			continue
		}
		var out []ackedRoute
		for _, raw := range ty.Resources {
			var rc struct {
				VirtualHosts []struct {
					Routes []struct {
						Match json.RawMessage `json:"match"`
						Route struct {
							Cluster          string `json:"cluster"`
							WeightedClusters struct {
								Clusters []struct {
									Name   string `json:"name"`
									Weight uint32 `json:"weight"`
								} `json:"clusters"`
							} `json:"weightedClusters"`
						} `json:"route"`
					} `json:"routes"`
				} `json:"virtualHosts"`
			}
			if err := json.Unmarshal(raw, &rc); err != nil {
				return nil, false, err
			}
			for _, vh := range rc.VirtualHosts {
				for _, r := range vh.Routes {
					if strings.Contains(string(r.Match), keepBackendsHeader) {
						continue // never matches: it keeps zero-weight clusters warm
					}
					ar := ackedRoute{match: string(r.Match), weights: map[string]uint32{}}
					if r.Route.Cluster != "" {
						ar.weights[r.Route.Cluster] = 1
					}
					for _, wc := range r.Route.WeightedClusters.Clusters {
						if wc.Weight > 0 {
							ar.weights[wc.Name] = wc.Weight
						}
					}
					out = append(out, ar)
				}
			}
		}
		return out, ty.Version != "" && ty.Version == ty.AckedVersion, nil
	}
	return nil, false, fmt.Errorf("proxy %s has no RDS state", proxyID)
}

// waitAckedRoutes waits until the proxy has ACKed route configurations
// for which ok holds, then gives the client a moment to switch to them.
func waitAckedRoutes(ctx context.Context, t *testing.T, cp *controlPlane, proxyID, what string, ok func([]ackedRoute) bool) {
	t.Helper()
	var rs []ackedRoute
	var acked bool
	var err error
	if !assert.Eventually(t, func() bool {
		rs, acked, err = cp.ackedRoutes(proxyID)
		return err == nil && acked && ok(rs)
	}, time.Minute, 50*time.Millisecond, "proxy %s never ACKed %s: last %+v acked=%v err=%v", proxyID, what, rs, acked, err) {
		var dump json.RawMessage
		_ = httpJSON(cp.DebugURL+"/debug/config_dump?proxy="+proxyID, &dump)
		t.Fatalf("config dump of %s: %s", proxyID, dump)
	}
	// The ACK is sent once the resource is accepted; the channel picks the
	// new config up right after.
	time.Sleep(100 * time.Millisecond)
}

// waitAckedWeights waits until the proxy ACKed a single route whose
// clusters have the proportions of want (zero weights ignored).
func waitAckedWeights(ctx context.Context, t *testing.T, cp *controlPlane, proxyID string, want map[string]uint32) {
	t.Helper()
	waitAckedRoutes(ctx, t, cp, proxyID, fmt.Sprintf("weights %v", want), func(rs []ackedRoute) bool {
		return len(rs) == 1 && sameProportions(rs[0].weights, want)
	})
}

func sameProportions(got, want map[string]uint32) bool {
	var wantTotal, gotTotal uint64
	nonzero := 0
	for _, w := range want {
		wantTotal += uint64(w)
		if w > 0 {
			nonzero++
		}
	}
	for _, w := range got {
		gotTotal += uint64(w)
	}
	if len(got) != nonzero || gotTotal == 0 || wantTotal == 0 {
		return false
	}
	for name, w := range want {
		if w > 0 && uint64(got[name])*wantTotal != uint64(w)*gotTotal {
			return false
		}
	}
	return true
}

// groupShare is the share of RPCs answered by pods whose names start with prefix.
func groupShare(c xdsclient.Counts, prefix string) float64 {
	n := 0
	for pod, k := range c {
		if strings.HasPrefix(pod, prefix) {
			n += k
		}
	}
	if c.Total() == 0 {
		return 0
	}
	return float64(n) / float64(c.Total())
}

// tally sends n RPCs and counts where they landed and how they failed.
func tally(ctx context.Context, cc *grpc.ClientConn, n int) (xdsclient.Counts, map[codes.Code]int) {
	counts, fails := xdsclient.Counts{}, map[codes.Code]int{}
	for range n {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		id, err := backend.WhoGRPC(rctx, cc)
		cancel()
		if err != nil {
			fails[status.Code(err)]++
			continue
		}
		counts[id.Pod]++
	}
	return counts, fails
}

// emptyCallPod calls EmptyCall and returns the pod that answered.
func emptyCallPod(ctx context.Context, cc *grpc.ClientConn) (string, error) {
	var hdr metadata.MD
	if _, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}, grpc.Header(&hdr)); err != nil {
		return "", err
	}
	if v := hdr.Get(backend.HeaderPod); len(v) == 1 {
		return v[0], nil
	}
	return "", fmt.Errorf("no %s header: %v", backend.HeaderPod, hdr)
}

// routeLoad sends RPCs on a connection from several workers until stopped.
type routeLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

func startRouteLoad(ctx context.Context, cc *grpc.ClientConn, workers int) *routeLoad {
	ctx, cancel := context.WithCancel(ctx)
	l := &routeLoad{cancel: cancel}
	for range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := backend.WhoGRPC(rctx, cc)
				rcancel()
				switch {
				case err == nil:
					l.ok.Add(1)
				case ctx.Err() != nil: // stopping
				default:
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	return l
}

func (l *routeLoad) stop() (ok, failed int64, errs []string) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.failed.Load(), l.errs
}

// createServiceSelecting creates a Service named name selecting app=app
// with one gRPC port.
func createServiceSelecting(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name, app string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": app},
			Ports: []corev1.ServicePort{{
				Name: "grpc", Port: grpcPort, TargetPort: intstr.FromString("grpc"), AppProtocol: ptr.To("grpc"),
			}},
		},
	}
	_, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	require.NoError(t, err)
}
