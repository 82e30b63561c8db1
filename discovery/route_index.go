package discovery

import (
	"maps"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
)

// Gateway API kinds the store holds.
const (
	KindHTTPRoute      = "HTTPRoute"
	KindGRPCRoute      = "GRPCRoute"
	KindReferenceGrant = "ReferenceGrant"
)

// routeObjects are the Gateway API objects of an objectIndex. Like every
// indexed object they are never mutated; an update replaces the pointer.
type routeObjects struct {
	http   map[objectKey]*gatewayv1.HTTPRoute
	grpc   map[objectKey]*gatewayv1.GRPCRoute
	grants map[objectKey]*gatewayv1beta1.ReferenceGrant
}

func newRouteObjects() routeObjects {
	return routeObjects{
		http:   map[objectKey]*gatewayv1.HTTPRoute{},
		grpc:   map[objectKey]*gatewayv1.GRPCRoute{},
		grants: map[objectKey]*gatewayv1beta1.ReferenceGrant{},
	}
}

func (c *changes) route() {
	if c != nil {
		c.routes = true
	}
}

// sameRouteInput reports whether an update of a route changes nothing the
// mesh or the route's status uses: a status write (ours or another
// controller's) or a label change. A new generation always counts.
func sameRouteInput(old, cur metav1.Object, sameSpec func() bool) bool {
	if sameVersion(old, cur) {
		return true
	}
	oldCreated, curCreated := old.GetCreationTimestamp(), cur.GetCreationTimestamp()
	return old.GetUID() == cur.GetUID() && old.GetGeneration() == cur.GetGeneration() &&
		oldCreated.Equal(&curCreated) && maps.Equal(old.GetAnnotations(), cur.GetAnnotations()) && sameSpec()
}

func (x *objectIndex) upsertHTTPRoute(r *gatewayv1.HTTPRoute, ch *changes) bool {
	k := objectKey{r.Namespace, r.Name}
	old := x.routes.http[k]
	x.routes.http[k] = r // the latest status is read from here
	if old != nil && sameRouteInput(old, r, func() bool { return apiequality.Semantic.DeepEqual(old.Spec, r.Spec) }) {
		return false
	}
	ch.route()
	return true
}

func (x *objectIndex) upsertGRPCRoute(r *gatewayv1.GRPCRoute, ch *changes) bool {
	k := objectKey{r.Namespace, r.Name}
	old := x.routes.grpc[k]
	x.routes.grpc[k] = r
	if old != nil && sameRouteInput(old, r, func() bool { return apiequality.Semantic.DeepEqual(old.Spec, r.Spec) }) {
		return false
	}
	ch.route()
	return true
}

func (x *objectIndex) upsertReferenceGrant(g *gatewayv1beta1.ReferenceGrant, ch *changes) bool {
	k := objectKey{g.Namespace, g.Name}
	old := x.routes.grants[k]
	x.routes.grants[k] = g
	if old != nil && (sameVersion(old, g) || apiequality.Semantic.DeepEqual(old.Spec, g.Spec)) {
		return false
	}
	ch.route()
	return true
}

// deleteRouteObject deletes a route or grant of the given kind.
func (x *objectIndex) deleteRouteObject(kind string, k objectKey, ch *changes) bool {
	var ok bool
	switch kind {
	case KindHTTPRoute:
		_, ok = x.routes.http[k]
		delete(x.routes.http, k)
	case KindGRPCRoute:
		_, ok = x.routes.grpc[k]
		delete(x.routes.grpc, k)
	case KindReferenceGrant:
		_, ok = x.routes.grants[k]
		delete(x.routes.grants, k)
	}
	if ok {
		ch.route()
	}
	return ok
}

// routeParents returns the status parents of the route of the given kind as
// the store last saw them, and whether the route exists.
func (x *objectIndex) routeParents(kind string, k objectKey) ([]gatewayv1.RouteParentStatus, bool) {
	switch kind {
	case KindHTTPRoute:
		if r := x.routes.http[k]; r != nil {
			return r.Status.Parents, true
		}
	case KindGRPCRoute:
		if r := x.routes.grpc[k]; r != nil {
			return r.Status.Parents, true
		}
	}
	return nil, false
}
