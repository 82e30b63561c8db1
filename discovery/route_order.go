package discovery

import (
	"cmp"

	"github.com/sluice-mesh/sluice/mesh"
)

// precedence is what orders one match among all matches on a service port.
type precedence struct {
	// HTTPRoute: pathRank is 0 for Exact, 1 for RegularExpression, 2 for
	// PathPrefix paths; pathLen the path's length.
	pathRank, pathLen int
	method            bool
	headers, query    int
	// GRPCRoute: the lengths of the service and method matched.
	serviceLen, methodLen int
}

func httpPrecedence(m mesh.RouteMatch) precedence {
	p := precedence{pathLen: len(m.Path.Value), method: m.Method != "", headers: len(m.Headers), query: len(m.QueryParams)}
	switch m.Path.Type {
	case mesh.MatchExact:
		p.pathRank = 0
	case mesh.MatchRegex:
		p.pathRank = 1
	default:
		p.pathRank = 2
	}
	return p
}

// orderedMatch is one match of one rule of one route attached to a port.
type orderedMatch struct {
	route *compiledRoute
	rule  *compiledRule
	match compiledMatch
}

// compareHTTPMatches orders HTTPRoute matches by the Gateway API's
// precedence: an Exact path, then the longest PathPrefix, then a method
// match, then the most header matches, then the most query parameter
// matches. RegularExpression paths (whose precedence the API leaves to
// implementations) come after Exact and before PathPrefix paths, longest
// first. Ties go to the oldest route, then the first by namespace/name,
// then the first rule and match of that route.
func compareHTTPMatches(a, b orderedMatch) int {
	pa, pb := a.match.prec, b.match.prec
	return cmp.Or(
		cmp.Compare(pa.pathRank, pb.pathRank),
		cmp.Compare(pb.pathLen, pa.pathLen),
		compareBoolFirst(pa.method, pb.method),
		cmp.Compare(pb.headers, pa.headers),
		cmp.Compare(pb.query, pa.query),
		compareTies(a, b),
	)
}

// compareGRPCMatches orders GRPCRoute matches by the Gateway API's
// precedence: the most characters in the matched service, then in the
// matched method, then the most header matches (hostnames, the first
// criteria, do not apply to mesh routes). Ties as for HTTPRoutes.
func compareGRPCMatches(a, b orderedMatch) int {
	pa, pb := a.match.prec, b.match.prec
	return cmp.Or(
		cmp.Compare(pb.serviceLen, pa.serviceLen),
		cmp.Compare(pb.methodLen, pa.methodLen),
		cmp.Compare(pb.headers, pa.headers),
		compareTies(a, b),
	)
}

func compareTies(a, b orderedMatch) int {
	return cmp.Or(
		compareRouteAge(a.route, b.route),
		cmp.Compare(a.rule.rule.RuleIndex, b.rule.rule.RuleIndex),
		cmp.Compare(a.match.index, b.match.index),
	)
}

// compareRouteAge orders routes oldest first, then by "namespace/name", the
// Gateway API's tie-break between routes and its rule for conflicts.
func compareRouteAge(a, b *compiledRoute) int {
	return cmp.Or(
		a.created.Compare(b.created),
		cmp.Compare(a.namespace, b.namespace),
		cmp.Compare(a.name, b.name),
		cmp.Compare(a.kind, b.kind),
	)
}

// compareBoolFirst orders true before false.
func compareBoolFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	default:
		return 1
	}
}
