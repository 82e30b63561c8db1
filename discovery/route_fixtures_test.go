package discovery

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
)

// Fluent route fixtures:
// newHTTPRoute("default", "api").parent("api").rule(httpRule().to("api-stable", 9090, 90)).obj.

// epoch is the creation time of fixture routes; age() moves a route.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func routeMeta(kind, ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace: ns, Name: name, UID: types.UID("uid-" + kind + "-" + ns + "-" + name),
		Generation: 1, CreationTimestamp: metav1.NewTime(epoch),
	}
}

func serviceParent(name string) gatewayv1.ParentReference {
	return gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: gatewayv1.ObjectName(name)}
}

type httpRouteFixture struct{ obj *gatewayv1.HTTPRoute }

func newHTTPRoute(ns, name string) httpRouteFixture {
	return httpRouteFixture{&gatewayv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: "gateway.networking.k8s.io/v1", Kind: "HTTPRoute"},
		ObjectMeta: routeMeta("http", ns, name),
	}}
}

// parent adds a Service parentRef; a port restricts it to that port.
func (f httpRouteFixture) parent(svc string, port ...int32) httpRouteFixture {
	ref := serviceParent(svc)
	if len(port) > 0 {
		ref.Port = ptr.To(port[0])
	}
	f.obj.Spec.ParentRefs = append(f.obj.Spec.ParentRefs, ref)
	return f
}

func (f httpRouteFixture) parentRef(ref gatewayv1.ParentReference) httpRouteFixture {
	f.obj.Spec.ParentRefs = append(f.obj.Spec.ParentRefs, ref)
	return f
}

func (f httpRouteFixture) rule(r httpRuleFixture) httpRouteFixture {
	f.obj.Spec.Rules = append(f.obj.Spec.Rules, r.r)
	return f
}

// age sets the creation time to epoch plus d.
func (f httpRouteFixture) age(d time.Duration) httpRouteFixture {
	f.obj.CreationTimestamp = metav1.NewTime(epoch.Add(d))
	return f
}

func (f httpRouteFixture) annotate(k, v string) httpRouteFixture {
	if f.obj.Annotations == nil {
		f.obj.Annotations = map[string]string{}
	}
	f.obj.Annotations[k] = v
	return f
}

type httpRuleFixture struct{ r gatewayv1.HTTPRouteRule }

func httpRule() httpRuleFixture { return httpRuleFixture{} }

func (f httpRuleFixture) to(svc string, port int32, weight int32) httpRuleFixture {
	f.r.BackendRefs = append(f.r.BackendRefs, gatewayv1.HTTPBackendRef{BackendRef: backendRef("", svc, port, weight)})
	return f
}

func (f httpRuleFixture) toRef(ref gatewayv1.BackendRef) httpRuleFixture {
	f.r.BackendRefs = append(f.r.BackendRefs, gatewayv1.HTTPBackendRef{BackendRef: ref})
	return f
}

func (f httpRuleFixture) match(m gatewayv1.HTTPRouteMatch) httpRuleFixture {
	f.r.Matches = append(f.r.Matches, m)
	return f
}

func (f httpRuleFixture) filter(fl gatewayv1.HTTPRouteFilter) httpRuleFixture {
	f.r.Filters = append(f.r.Filters, fl)
	return f
}

func backendRef(ns, svc string, port int32, weight int32) gatewayv1.BackendRef {
	ref := gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(svc), Port: ptr.To(port)},
		Weight:                 ptr.To(weight),
	}
	if ns != "" {
		ref.Namespace = ptr.To(gatewayv1.Namespace(ns))
	}
	return ref
}

func pathMatch(typ gatewayv1.PathMatchType, v string) gatewayv1.HTTPRouteMatch {
	return gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(typ), Value: ptr.To(v)}}
}

func withHeaders(m gatewayv1.HTTPRouteMatch, kv ...string) gatewayv1.HTTPRouteMatch {
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, gatewayv1.HTTPHeaderMatch{Name: gatewayv1.HTTPHeaderName(kv[i]), Value: kv[i+1]})
	}
	return m
}

func withQuery(m gatewayv1.HTTPRouteMatch, kv ...string) gatewayv1.HTTPRouteMatch {
	for i := 0; i+1 < len(kv); i += 2 {
		m.QueryParams = append(m.QueryParams, gatewayv1.HTTPQueryParamMatch{Name: gatewayv1.HTTPHeaderName(kv[i]), Value: kv[i+1]})
	}
	return m
}

func withMethod(m gatewayv1.HTTPRouteMatch, method string) gatewayv1.HTTPRouteMatch {
	m.Method = ptr.To(gatewayv1.HTTPMethod(method))
	return m
}

type grpcRouteFixture struct{ obj *gatewayv1.GRPCRoute }

func newGRPCRoute(ns, name string) grpcRouteFixture {
	return grpcRouteFixture{&gatewayv1.GRPCRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: "gateway.networking.k8s.io/v1", Kind: "GRPCRoute"},
		ObjectMeta: routeMeta("grpc", ns, name),
	}}
}

func (f grpcRouteFixture) parent(svc string) grpcRouteFixture {
	f.obj.Spec.ParentRefs = append(f.obj.Spec.ParentRefs, serviceParent(svc))
	return f
}

func (f grpcRouteFixture) age(d time.Duration) grpcRouteFixture {
	f.obj.CreationTimestamp = metav1.NewTime(epoch.Add(d))
	return f
}

// rule adds a rule with one match per method ("svc/method", "svc/", "/method")
// and weighted backends given as name, port, weight triples.
func (f grpcRouteFixture) rule(methods []string, backends ...gatewayv1.BackendRef) grpcRouteFixture {
	r := gatewayv1.GRPCRouteRule{}
	for _, m := range methods {
		svc, method, _ := cut(m)
		mm := &gatewayv1.GRPCMethodMatch{}
		if svc != "" {
			mm.Service = ptr.To(svc)
		}
		if method != "" {
			mm.Method = ptr.To(method)
		}
		r.Matches = append(r.Matches, gatewayv1.GRPCRouteMatch{Method: mm})
	}
	for _, b := range backends {
		r.BackendRefs = append(r.BackendRefs, gatewayv1.GRPCBackendRef{BackendRef: b})
	}
	f.obj.Spec.Rules = append(f.obj.Spec.Rules, r)
	return f
}

func (f grpcRouteFixture) ruleWith(r gatewayv1.GRPCRouteRule) grpcRouteFixture {
	f.obj.Spec.Rules = append(f.obj.Spec.Rules, r)
	return f
}

func cut(s string) (before, after string, found bool) {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func newReferenceGrant(ns, name, fromKind, fromNamespace string, toName string) *gatewayv1beta1.ReferenceGrant {
	g := &gatewayv1beta1.ReferenceGrant{
		TypeMeta:   metav1.TypeMeta{APIVersion: "gateway.networking.k8s.io/v1beta1", Kind: "ReferenceGrant"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-grant-" + ns + "-" + name)},
		Spec: gatewayv1beta1.ReferenceGrantSpec{
			From: []gatewayv1beta1.ReferenceGrantFrom{{Group: gatewayGroup, Kind: gatewayv1.Kind(fromKind), Namespace: gatewayv1.Namespace(fromNamespace)}},
			To:   []gatewayv1beta1.ReferenceGrantTo{{Group: "", Kind: "Service"}},
		},
	}
	if toName != "" {
		g.Spec.To[0].Name = ptr.To(gatewayv1.ObjectName(toName))
	}
	return g
}

// grpcService is a Service with one gRPC port 9090.
func grpcService(ns, name string) serviceFixture {
	return newService(ns, name).appPort("grpc", 9090, "grpc")
}
