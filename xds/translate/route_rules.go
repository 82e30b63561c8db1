package translate

import (
	"math"
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/mesh"
)

// Gateway API routes attached to a service port (GAMMA) as xDS routes.
//
// Each rule becomes one xDS route per match, in the order of the model
// (already sorted by Gateway API precedence; the first match wins in both
// Envoy and grpc-go). A rule without matches matches everything (prefix
// "/"). A match a proxy kind cannot evaluate is left out with a warning,
// so requests it would have caught fall through to the next rule; see
// route_match.go. A port with routes has no implicit catch-all: a request
// matching no rule gets 404 from Envoy and UNAVAILABLE ("no matched route")
// from grpc-go, as the Gateway API asks.

// routesFor returns the routes of a service port's virtual host: its
// Gateway API rules when routes attach to it, else one route sending
// everything to the port's own cluster.
func (t *translator) routesFor(sp servicePort) []*routev3.Route {
	pr := t.snap.Routes[sp.key]
	if pr == nil {
		return []*routev3.Route{t.clusterRoute(sp)}
	}
	var out []*routev3.Route
	for i := range pr.Rules {
		out = append(out, t.ruleRoutes(sp, &pr.Rules[i])...)
	}
	if len(out) == 0 {
		t.warnf("%s: routes attach to port %d but none of their rules could be translated: every request fails (%s)", sp.svc.Key(), sp.key.Port, t.noRouteFailure())
	}
	if t.kind == mesh.ProxyGRPC {
		if keep := t.keepBackendsRoute(pr, out); keep != nil {
			out = append(out, keep)
		}
	}
	return out
}

// keepBackendsHeader names the header of the route keepBackendsRoute adds.
const keepBackendsHeader = "sluice-keep-backends"

// keepBackendsRoute returns, for proxyless gRPC, a route that never
// matches (it needs a header both present and absent) and names the valid
// backends of the port's rules that no other route names: those at weight
// 0. grpc-go keeps a cluster, and its connections, only while a route of
// the virtual host names it with a positive weight, and when a cluster
// enters the routes it installs the new routes before its balancer knows
// the cluster, so RPCs picking it in that window fail with UNAVAILABLE
// ("unknown cluster selected for RPC", grpc-go 1.85). Keeping zero-weight
// backends named means a canary's weight steps (100/0, 90/10 ... 0/100)
// never add or remove a cluster: no reconnect, no failed RPC.
func (t *translator) keepBackendsRoute(pr *mesh.PortRoutes, routes []*routev3.Route) *routev3.Route {
	named := map[string]bool{}
	for _, r := range routes {
		ra := r.GetRoute()
		if c := ra.GetCluster(); c != "" {
			named[c] = true
		}
		for _, wc := range ra.GetWeightedClusters().GetClusters() {
			named[wc.GetName()] = true
		}
	}
	var keep []string
	for i := range pr.Rules {
		for _, b := range pr.Rules[i].Backends {
			if _, ok := t.portIndex[b.Port]; !ok || b.Invalid {
				continue
			}
			if name := ClusterName(b.Port, t.domain); !named[name] {
				named[name] = true
				keep = append(keep, name)
			}
		}
	}
	if len(keep) == 0 {
		return nil
	}
	ra := &routev3.RouteAction{}
	if len(keep) == 1 {
		ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: keep[0]}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, name := range keep {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(1)})
		}
		ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	present := func(p bool) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: keepBackendsHeader, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: p}}
	}
	return &routev3.Route{
		Name: "sluice/keep-zero-weight-backends",
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			Headers:       []*routev3.HeaderMatcher{present(true), present(false)},
		},
		Action: &routev3.Route_Route{Route: ra},
	}
}

func (t *translator) noRouteFailure() string {
	if t.kind == mesh.ProxyGRPC {
		return "UNAVAILABLE, no matched route"
	}
	return "HTTP 404"
}

// ruleRoutes returns the routes of one rule: the action and filters are
// built once, then each match gets its copy.
func (t *translator) ruleRoutes(sp servicePort, r *mesh.RouteRule) []*routev3.Route {
	who := ruleWho(r)
	tmpl := t.ruleTemplate(who, sp, r)
	matches := r.Matches
	if len(matches) == 0 {
		matches = []mesh.RouteMatch{{}}
	}
	out := make([]*routev3.Route, 0, len(matches))
	for j := range matches {
		mWho := who
		if len(r.Matches) > 1 {
			mWho += " match " + strconv.Itoa(j)
		}
		m, path, ok := t.routeMatch(mWho, &matches[j])
		if !ok {
			continue
		}
		route := proto.Clone(tmpl).(*routev3.Route)
		route.Name = routeName(r, j)
		route.Match = m
		if ra := route.GetRoute(); ra != nil && r.Filters.Rewrite != nil && t.kind == mesh.ProxyEnvoy {
			t.pathRewrite(mWho, r.Filters.Rewrite, path, ra)
		}
		out = append(out, route)
	}
	return out
}

// ruleWho names a rule in warnings.
func ruleWho(r *mesh.RouteRule) string {
	kind := string(r.Kind)
	if kind == "" {
		kind = "route"
	}
	return kind + " " + r.Route + " rule " + strconv.Itoa(r.RuleIndex)
}

// routeName is the xDS name of the route of match j of a rule, shown in
// Envoy's config dump and access logs (%ROUTE_NAME%).
func routeName(r *mesh.RouteRule, j int) string {
	return r.Route + "/rule-" + strconv.Itoa(r.RuleIndex) + "/match-" + strconv.Itoa(j)
}

// ruleTemplate builds a rule's route without its match: the backends, or a
// failure when no backend can take traffic, then hashing, timeouts,
// retries and filters.
func (t *translator) ruleTemplate(who string, sp servicePort, r *mesh.RouteRule) *routev3.Route {
	valid, invalid := t.splitBackends(who, r)
	if len(valid) == 0 {
		t.warnf("%s: no valid backend has a positive weight: matching requests fail (%s)", who, t.backendFailure(r))
		return &routev3.Route{Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: failStatus(r),
		}}}
	}
	ra := &routev3.RouteAction{}
	if len(valid) == 1 && invalid == 0 {
		ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: ClusterName(valid[0].key, t.domain)}
	} else {
		ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: t.weightedClusters(who, valid, invalid)}
	}
	if invalid > 0 {
		t.warnf("%s: backends that could not be resolved get weight %d: their share of requests fails (%s)", who, invalid, t.backendFailure(r))
		if t.kind == mesh.ProxyEnvoy {
			ra.ClusterNotFoundResponseCode = routev3.RouteAction_SERVICE_UNAVAILABLE
			if failStatus(r) == 500 {
				ra.ClusterNotFoundResponseCode = routev3.RouteAction_INTERNAL_SERVER_ERROR
			}
		}
	}
	ra.HashPolicy = t.ruleHashPolicies(who, valid)
	total, perTry := t.ruleTimeouts(who, r)
	t.setTimeout(who, r, total, perTry, ra)
	ra.RetryPolicy = t.retryPolicy(who, sp, r, perTry)
	route := &routev3.Route{Action: &routev3.Route_Route{Route: ra}}
	t.applyFilters(who, r, route, ra)
	return route
}

// failStatus is the HTTP status of a request that matched a rule whose
// backends cannot take it: 500 for HTTPRoute, as the Gateway API asks, and
// 503 for GRPCRoute, which Envoy's local reply turns into the gRPC status
// UNAVAILABLE the Gateway API asks for there. grpc-go ignores the status:
// it fails RPCs that match a direct_response route with UNAVAILABLE.
func failStatus(r *mesh.RouteRule) uint32 {
	if r.Kind == mesh.RouteGRPC {
		return 503
	}
	return 500
}

func (t *translator) backendFailure(r *mesh.RouteRule) string {
	switch {
	case t.kind == mesh.ProxyGRPC || r.Kind == mesh.RouteGRPC:
		return "UNAVAILABLE"
	default:
		return "HTTP 500"
	}
}

// weightedBackend is a valid backend of a rule with its merged weight.
type weightedBackend struct {
	key    mesh.PortKey
	sp     servicePort
	weight uint64
}

// splitBackends returns a rule's valid backends with a positive weight, in
// order and merged by port (two backendRefs to one port add up), and the
// total weight of the backends that cannot take traffic: those marked
// Invalid and those whose port is not a port of the snapshot. Zero weights
// are dropped: grpc-go skips them and they carry no traffic in Envoy.
func (t *translator) splitBackends(who string, r *mesh.RouteRule) ([]weightedBackend, uint64) {
	var valid []weightedBackend
	var invalid uint64
	for _, b := range r.Backends {
		if b.Weight == 0 {
			continue
		}
		if b.Invalid {
			invalid += uint64(b.Weight)
			continue
		}
		sp, ok := t.portIndex[b.Port]
		if !ok {
			if who != "" {
				t.warnf("%s: backend %s/%s:%d is not a service port of the mesh: treated as invalid", who, b.Port.Namespace, b.Port.Name, b.Port.Port)
			}
			invalid += uint64(b.Weight)
			continue
		}
		merged := false
		for i := range valid {
			if valid[i].key == b.Port {
				valid[i].weight += uint64(b.Weight)
				merged = true
				break
			}
		}
		if !merged {
			valid = append(valid, weightedBackend{key: b.Port, sp: sp, weight: uint64(b.Weight)})
		}
	}
	return valid, invalid
}

// weightedClusters lists the valid backends and, when some backends are
// invalid, InvalidBackendCluster with their weight. Weights are per
// request, so a weight change moves traffic on existing connections. Both
// Envoy and grpc-go need the total to fit in 32 bits; a larger total is
// scaled down (never to zero) with a warning.
func (t *translator) weightedClusters(who string, valid []weightedBackend, invalid uint64) *routev3.WeightedCluster {
	type entry struct {
		name   string
		weight uint64
	}
	entries := make([]entry, 0, len(valid)+1)
	var total uint64
	for _, b := range valid {
		entries = append(entries, entry{ClusterName(b.key, t.domain), b.weight})
		total += b.weight
	}
	if invalid > 0 {
		entries = append(entries, entry{InvalidBackendCluster, invalid})
		total += invalid
	}
	shift := 0
	for {
		var sum uint64
		for _, e := range entries {
			sum += scaleWeight(e.weight, shift)
		}
		if sum <= math.MaxUint32 {
			break
		}
		shift++
	}
	if shift > 0 {
		t.warnf("%s: backend weights add up to %d, over 2^32-1: scaled down by 2^%d", who, total, shift)
	}
	wc := &routev3.WeightedCluster{}
	for _, e := range entries {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name:   e.name,
			Weight: wrapperspb.UInt32(uint32(scaleWeight(e.weight, shift))),
		})
	}
	return wc
}

// scaleWeight shifts a weight right, keeping it at least 1.
func scaleWeight(w uint64, shift int) uint64 {
	if s := w >> shift; s > 0 {
		return s
	}
	return 1
}

// ruleHashPolicies returns the hash policies of the rule's ring-hash
// backends. A route has one set of hash policies for all its clusters;
// versions of one service normally share their settings, and when they
// differ the first backend's win.
func (t *translator) ruleHashPolicies(who string, valid []weightedBackend) []*routev3.RouteAction_HashPolicy {
	var out []*routev3.RouteAction_HashPolicy
	var from mesh.ServiceKey
	for _, b := range valid {
		hp := t.lbFor(b.sp.svc).hashPolicies()
		if hp == nil {
			continue
		}
		if out == nil {
			out, from = hp, b.sp.svc.Key()
			continue
		}
		if !proto.Equal(&routev3.RouteAction{HashPolicy: out}, &routev3.RouteAction{HashPolicy: hp}) {
			t.warnf("%s: backends %s and %s hash differently: using the hash policy of %s", who, from, b.sp.svc.Key(), from)
		}
	}
	return out
}

// needsInvalidBackendCluster reports whether some rule on these ports
// sends part of its traffic to InvalidBackendCluster, which proxyless gRPC
// must then receive as a real (empty) cluster.
func (t *translator) needsInvalidBackendCluster(ports []servicePort) bool {
	if t.kind != mesh.ProxyGRPC || len(t.snap.Routes) == 0 {
		return false
	}
	for _, sp := range ports {
		pr := t.snap.Routes[sp.key]
		if pr == nil {
			continue
		}
		for i := range pr.Rules {
			if valid, invalid := t.splitBackends("", &pr.Rules[i]); len(valid) > 0 && invalid > 0 {
				return true
			}
		}
	}
	return false
}
