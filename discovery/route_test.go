package discovery

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/sluice-mesh/sluice/mesh"
)

// inputsOf sorts objects into Inputs.
func inputsOf(t *testing.T, objs ...runtime.Object) Inputs {
	t.Helper()
	var in Inputs
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Service:
			in.Services = append(in.Services, o)
		case *discoveryv1.EndpointSlice:
			in.EndpointSlices = append(in.EndpointSlices, o)
		case *corev1.Namespace:
			in.Namespaces = append(in.Namespaces, o)
		case *gatewayv1.HTTPRoute:
			in.HTTPRoutes = append(in.HTTPRoutes, o)
		case *gatewayv1.GRPCRoute:
			in.GRPCRoutes = append(in.GRPCRoutes, o)
		case *gatewayv1beta1.ReferenceGrant:
			in.ReferenceGrants = append(in.ReferenceGrants, o)
		default:
			t.Fatalf("inputsOf: unsupported %T", o)
		}
	}
	return in
}

// canaryServices are api, api-stable and api-canary, each with gRPC port 9090.
func canaryServices(ns string) []runtime.Object {
	return []runtime.Object{grpcService(ns, "api").obj, grpcService(ns, "api-stable").obj, grpcService(ns, "api-canary").obj}
}

// ruleIDs lists the rules of a port as "route#rule.match".
func ruleIDs(pr *mesh.PortRoutes) []string {
	var out []string
	for _, r := range pr.Rules {
		out = append(out, fmt.Sprintf("%s#%d.%d", r.Route, r.RuleIndex, r.MatchIndex))
	}
	return out
}

func TestRoutesWeightedSplit(t *testing.T) {
	route := newHTTPRoute("shop", "canary").parent("api").
		rule(httpRule().to("api-stable", 9090, 90).to("api-canary", 9090, 10)).obj
	snap, problems := BuildSnapshot(inputsOf(t, append(canaryServices("shop"), route)...))
	assert.Empty(t, problems)
	api := portKey("shop", "api", 9090)
	require.Contains(t, snap.Routes, api)
	assert.Len(t, snap.Routes, 1, "only the parent's port has routes")
	assert.Equal(t, &mesh.PortRoutes{Port: api, Rules: []mesh.RouteRule{{
		Route: "shop/canary", Kind: mesh.RouteHTTP,
		Matches: []mesh.RouteMatch{{Path: &mesh.StringMatch{Type: mesh.MatchPrefix, Value: "/"}}},
		Backends: []mesh.WeightedBackend{
			{Port: portKey("shop", "api-stable", 9090), Weight: 90},
			{Port: portKey("shop", "api-canary", 9090), Weight: 10},
		},
	}}}, snap.Routes[api])
}

func TestRoutesWithoutRoutes(t *testing.T) {
	snap, _ := BuildSnapshot(inputsOf(t, canaryServices("shop")...))
	assert.Nil(t, snap.Routes, "no routes: every port routes to itself")
}

// TestRoutesHTTPPrecedence merges the rules of three routes on one port and
// checks the Gateway API order: exact path, then longest prefix (regex
// between), then method, most headers, most query params, then the oldest
// route, its name, and rule order.
func TestRoutesHTTPPrecedence(t *testing.T) {
	svcs := []runtime.Object{newService("ns", "web").port("http", 80).obj, newService("ns", "b").port("http", 80).obj}
	to := func(r httpRuleFixture) httpRuleFixture { return r.to("b", 80, 1) }
	old := newHTTPRoute("ns", "old").parent("web").age(0).
		rule(to(httpRule())). // #0: no match = prefix "/"
		rule(to(httpRule().match(pathMatch(gatewayv1.PathMatchPathPrefix, "/api")).
															match(withHeaders(pathMatch(gatewayv1.PathMatchPathPrefix, "/api"), "x-a", "1")))). // #1.0 and #1.1
		rule(to(httpRule().match(withQuery(pathMatch(gatewayv1.PathMatchPathPrefix, "/api"), "q", "1")))) // #2
	young := newHTTPRoute("ns", "young").parent("web").age(time.Hour).
		rule(to(httpRule().match(pathMatch(gatewayv1.PathMatchExact, "/x")))).                                             // #0
		rule(to(httpRule().match(pathMatch(gatewayv1.PathMatchPathPrefix, "/api/v1")))).                                   // #1
		rule(to(httpRule().match(withMethod(pathMatch(gatewayv1.PathMatchPathPrefix, "/api"), "POST")))).                  // #2
		rule(to(httpRule().match(withHeaders(pathMatch(gatewayv1.PathMatchPathPrefix, "/api"), "x-a", "1", "x-b", "2")))). // #3
		rule(to(httpRule().match(pathMatch(gatewayv1.PathMatchRegularExpression, "/re/.*"))))                              // #4
	// Same age as young, sorts after it by name: loses ties to it.
	younger := newHTTPRoute("ns", "zz").parent("web").age(time.Hour).
		rule(to(httpRule().match(pathMatch(gatewayv1.PathMatchPathPrefix, "/api"))))
	snap, problems := BuildSnapshot(inputsOf(t, append(svcs, younger.obj, young.obj, old.obj)...))
	require.Empty(t, problems)
	assert.Equal(t, []string{
		"ns/young#0.0", // Exact /x
		"ns/young#4.0", // RegularExpression, before prefixes
		"ns/young#1.0", // PathPrefix /api/v1, the longest prefix
		"ns/young#2.0", // /api with a method
		"ns/young#3.0", // /api with 2 headers
		"ns/old#1.1",   // /api with 1 header
		"ns/old#2.0",   // /api with 1 query param
		"ns/old#1.0",   // /api: old is older than young and zz
		"ns/zz#0.0",    // /api: same age as young, later name
		"ns/old#0.0",   // "/"
	}, ruleIDs(snap.Routes[portKey("ns", "web", 80)]))
}

func TestRoutesGRPCMethodMatches(t *testing.T) {
	route := newGRPCRoute("shop", "methods").parent("api").
		rule([]string{"grpc.testing.TestService/UnaryCall"}, backendRef("", "api-canary", 9090, 1)).
		rule([]string{"grpc.testing.TestService/"}, backendRef("", "api-stable", 9090, 1)).
		rule([]string{"/EmptyCall"}, backendRef("", "api-stable", 9090, 1)).
		rule(nil, backendRef("", "api", 9090, 1)).
		ruleWith(gatewayv1.GRPCRouteRule{Matches: []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{
			Type: ptr.To(gatewayv1.GRPCMethodMatchRegularExpression), Service: ptr.To(`grpc\.health\..*|x`),
		}}}})
	snap, problems := BuildSnapshot(inputsOf(t, append(canaryServices("shop"), route.obj)...))
	require.Empty(t, problems)
	pr := snap.Routes[portKey("shop", "api", 9090)]
	require.NotNil(t, pr)
	paths := map[string]*mesh.StringMatch{}
	for _, r := range pr.Rules {
		paths[fmt.Sprintf("#%d", r.RuleIndex)] = r.Matches[0].Path
	}
	assert.Equal(t, map[string]*mesh.StringMatch{
		"#0": {Type: mesh.MatchExact, Value: "/grpc.testing.TestService/UnaryCall"},
		"#1": {Type: mesh.MatchPrefix, Value: "/grpc.testing.TestService/"},
		"#2": {Type: mesh.MatchRegex, Value: "/[^/]+/EmptyCall"},
		"#3": nil,
		"#4": {Type: mesh.MatchRegex, Value: `/(?:grpc\.health\..*|x)/[^/]+`},
	}, paths)
	// The most service characters first, then method characters; no match last.
	assert.Equal(t, []string{"shop/methods#0.0", "shop/methods#1.0", "shop/methods#4.0", "shop/methods#2.0", "shop/methods#3.0"}, ruleIDs(pr))
}

func TestRoutesHeaderMatchesNormalized(t *testing.T) {
	m := pathMatch(gatewayv1.PathMatchPathPrefix, "/")
	m.Headers = []gatewayv1.HTTPHeaderMatch{
		{Name: "X-Canary", Value: "true"},
		{Name: "x-canary", Value: "ignored: the first of equivalent names counts"},
		{Name: "X-Version", Value: "v[0-9]+", Type: ptr.To(gatewayv1.HeaderMatchRegularExpression)},
	}
	route := newHTTPRoute("shop", "h").parent("api").rule(httpRule().match(m).to("api-canary", 9090, 1)).obj
	snap, problems := BuildSnapshot(inputsOf(t, append(canaryServices("shop"), route)...))
	require.Empty(t, problems)
	assert.Equal(t, []mesh.HeaderMatch{
		{Name: "x-canary", Type: mesh.MatchExact, Value: "true"},
		{Name: "x-version", Type: mesh.MatchRegex, Value: "v[0-9]+"},
	}, snap.Routes[portKey("shop", "api", 9090)].Rules[0].Matches[0].Headers)
}

func TestRoutesFiltersTimeoutsRetries(t *testing.T) {
	rule := httpRule().to("api-stable", 9090, 1).
		filter(gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
			RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "x-a", Value: "1"}}, Remove: []string{"x-b"}}}).
		filter(gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier,
			ResponseHeaderModifier: &gatewayv1.HTTPHeaderFilter{Add: []gatewayv1.HTTPHeader{{Name: "x-c", Value: "2"}}}}).
		filter(gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestMirror,
			RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{BackendRef: backendRef("", "api-canary", 9090, 1).BackendObjectReference}}).
		filter(gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterURLRewrite,
			URLRewrite: &gatewayv1.HTTPURLRewriteFilter{Hostname: ptr.To(gatewayv1.PreciseHostname("b.example")),
				Path: &gatewayv1.HTTPPathModifier{Type: gatewayv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr.To("/v2")}}})
	rule.r.Timeouts = &gatewayv1.HTTPRouteTimeouts{Request: ptr.To(gatewayv1.Duration("10s")), BackendRequest: ptr.To(gatewayv1.Duration("2s"))}
	withField := httpRule().to("api-stable", 9090, 1)
	withField.r.Retry = &gatewayv1.HTTPRouteRetry{Attempts: ptr.To(4), Codes: []gatewayv1.HTTPRouteRetryStatusCode{502, 503}, Backoff: ptr.To(gatewayv1.Duration("100ms"))}
	route := newHTTPRoute("shop", "f").parent("api").annotate(AnnotationRetry, "attempts=3, codes=503|504, backoff=50ms").
		rule(rule).rule(withField).obj
	snap, problems := BuildSnapshot(inputsOf(t, append(canaryServices("shop"), route)...))
	require.Empty(t, problems)
	rules := snap.Routes[portKey("shop", "api", 9090)].Rules
	require.Len(t, rules, 2)
	got := rules[0]
	assert.Equal(t, mesh.RouteFilters{
		RequestHeaders:  &mesh.HeaderModifier{Set: []mesh.Header{{Name: "x-a", Value: "1"}}, Remove: []string{"x-b"}},
		ResponseHeaders: &mesh.HeaderModifier{Add: []mesh.Header{{Name: "x-c", Value: "2"}}},
		Mirror:          ptr.To(portKey("shop", "api-canary", 9090)),
		Rewrite:         &mesh.URLRewrite{Hostname: "b.example", FullPath: "/v2"},
	}, got.Filters)
	assert.Equal(t, 10*time.Second, got.Timeout)
	assert.Equal(t, 2*time.Second, got.BackendTimeout)
	assert.Equal(t, &mesh.RetryPolicy{Attempts: 3, Codes: []int{503, 504}, Backoff: 50 * time.Millisecond}, got.Retry, "the annotation")
	assert.Equal(t, &mesh.RetryPolicy{Attempts: 4, Codes: []int{502, 503}, Backoff: 100 * time.Millisecond}, rules[1].Retry, "the field wins")
}

func TestParseRetryAnnotation(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  *mesh.RetryPolicy
		err   string
	}{
		{value: "on", want: &mesh.RetryPolicy{Attempts: 1, Codes: []int{503}}},
		{value: "off"},
		{value: "attempts=0"},
		{value: " Attempts = 2 ", want: &mesh.RetryPolicy{Attempts: 2, Codes: []int{503}}},
		{value: "codes=504|502|502", want: &mesh.RetryPolicy{Attempts: 1, Codes: []int{502, 504}}},
		{value: "attempts=11", err: "outside 0-10"},
		{value: "codes=200", err: "not an HTTP status code"},
		{value: "backoff=soon", err: "not a duration"},
		{value: "tries=2", err: "unknown key"},
		{value: "attempts", err: "not key=value"},
	} {
		got, err := parseRetryAnnotation(map[string]string{AnnotationRetry: tc.value})
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, tc.value)
			assert.Nil(t, got)
			continue
		}
		assert.NoError(t, err, tc.value)
		assert.Equal(t, tc.want, got, tc.value)
	}
}

func TestRoutesReferenceGrant(t *testing.T) {
	objs := []runtime.Object{
		grpcService("shop", "api").obj,
		grpcService("shared", "db").obj,
		grpcService("shared", "cache").obj,
	}
	route := newHTTPRoute("shop", "x").parent("api").
		rule(httpRule().toRef(backendRef("shared", "db", 9090, 3)).toRef(backendRef("shared", "cache", 9090, 1))).obj
	backends := func(objs ...runtime.Object) ([]mesh.WeightedBackend, []Problem) {
		snap, problems := BuildSnapshot(inputsOf(t, objs...))
		return snap.Routes[portKey("shop", "api", 9090)].Rules[0].Backends, problems
	}

	got, problems := backends(append(objs, route)...)
	assert.Equal(t, []mesh.WeightedBackend{{Weight: 3, Invalid: true}, {Weight: 1, Invalid: true}}, got,
		"without a grant, both are invalid and keep their weight")
	assert.Equal(t, []string{string(gatewayv1.RouteReasonRefNotPermitted), string(gatewayv1.RouteReasonRefNotPermitted)}, reasons(problems))

	got, problems = backends(append(objs, route, newReferenceGrant("shared", "g", "HTTPRoute", "shop", "db"))...)
	assert.Equal(t, []mesh.WeightedBackend{{Port: portKey("shared", "db", 9090), Weight: 3}, {Weight: 1, Invalid: true}}, got,
		"a grant naming db allows db only")
	assert.Len(t, problems, 1)

	got, problems = backends(append(objs, route, newReferenceGrant("shared", "g", "HTTPRoute", "shop", ""))...)
	assert.False(t, got[0].Invalid || got[1].Invalid, "a grant without a name allows every Service")
	assert.Empty(t, problems)

	for name, g := range map[string]*gatewayv1beta1.ReferenceGrant{
		"from another kind":      newReferenceGrant("shared", "g", "GRPCRoute", "shop", ""),
		"from another namespace": newReferenceGrant("shared", "g", "HTTPRoute", "other", ""),
		"in the wrong namespace": newReferenceGrant("shop", "g", "HTTPRoute", "shop", ""),
	} {
		got, _ = backends(append(objs, route, g)...)
		assert.True(t, got[0].Invalid && got[1].Invalid, name)
	}
}

func TestRoutesAllWeightsZero(t *testing.T) {
	route := newHTTPRoute("shop", "zero").parent("api").
		rule(httpRule().to("api-stable", 9090, 0).to("api-canary", 9090, 0)).obj
	in := inputsOf(t, append(canaryServices("shop"), route)...)
	snap, problems := BuildSnapshot(in)
	assert.Empty(t, problems, "all weights zero is valid: every request fails")
	assert.Equal(t, []mesh.WeightedBackend{{Port: portKey("shop", "api-stable", 9090)}, {Port: portKey("shop", "api-canary", 9090)}},
		snap.Routes[portKey("shop", "api", 9090)].Rules[0].Backends)
	st := BuildRouteStatuses(in)
	require.Len(t, st, 1)
	assert.Equal(t, map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "True/ResolvedRefs"}, conditionSummary(st[0].Parents[0]))
}

func TestRoutesParentPorts(t *testing.T) {
	svc := newService("shop", "web").port("http", 80).port("grpc", 9090).obj
	b := grpcService("shop", "b").obj
	named := serviceParent("web")
	named.SectionName = ptr.To(gatewayv1.SectionName("grpc"))
	for name, tc := range map[string]struct {
		route *gatewayv1.HTTPRoute
		ports []mesh.PortKey
	}{
		"every port":      {newHTTPRoute("shop", "r").parent("web").rule(httpRule().to("b", 9090, 1)).obj, []mesh.PortKey{portKey("shop", "web", 80), portKey("shop", "web", 9090)}},
		"by number":       {newHTTPRoute("shop", "r").parent("web", 80).rule(httpRule().to("b", 9090, 1)).obj, []mesh.PortKey{portKey("shop", "web", 80)}},
		"by section name": {newHTTPRoute("shop", "r").parentRef(named).rule(httpRule().to("b", 9090, 1)).obj, []mesh.PortKey{portKey("shop", "web", 9090)}},
	} {
		snap, problems := BuildSnapshot(inputsOf(t, svc, b, tc.route))
		assert.Empty(t, problems, name)
		var got []mesh.PortKey
		for pk := range snap.Routes {
			got = append(got, pk)
		}
		assert.ElementsMatch(t, tc.ports, got, name)
	}
}

func TestRoutesDecodedFromFiles(t *testing.T) {
	decoded, err := decodeFile([]byte(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 9090}]
  rules:
  - backendRefs: [{name: api-stable, port: 9090, weight: 9}, {name: api-canary, port: 9090, weight: 1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{group: "", kind: Service, name: api}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: g, namespace: shared}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]
  to: [{group: "", kind: Service}]
`))
	require.NoError(t, err)
	require.Empty(t, decoded.warnings)
	require.Len(t, decoded.objects, 3)
	assert.Equal(t, "default", decoded.objects[1].(*gatewayv1.GRPCRoute).Namespace)
	store := NewStore()
	for _, o := range decoded.objects {
		require.NoError(t, store.Upsert(o))
	}
	assert.Equal(t, 1, store.Counts()[KindReferenceGrant], "a v1 ReferenceGrant is stored as v1beta1")
	sb := store.build(newBuilder())
	require.True(t, sb.built)
	assert.Len(t, sb.routeStatuses, 2)
	require.NoError(t, store.Delete(KindHTTPRoute, "shop", "canary"))
	assert.Equal(t, 0, store.Counts()[KindHTTPRoute])
}
