package discovery

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-mesh/sluice/mesh"
)

// compiledRoute is an HTTPRoute or GRPCRoute in model terms, before it is
// attached to its parents.
type compiledRoute struct {
	kind            mesh.RouteKind
	namespace, name string
	uid             string
	generation      int64
	created         time.Time
	parentRefs      []gatewayv1.ParentReference
	// ruleCount is the number of rules in the spec; rules are the valid ones.
	ruleCount int
	rules     []compiledRule
	// dropped says why each invalid rule was dropped.
	dropped []string
	// issues are the references that could not be resolved.
	issues   []refIssue
	problems []Problem
	// parents are the results of the route's Service parentRefs.
	parents []parentResult
}

// parentResult is what became of one parentRef that names a Service.
type parentResult struct {
	ref      gatewayv1.ParentReference
	accepted bool
	reason   gatewayv1.RouteConditionReason
	message  string
	// ports are the service ports the route is attached to through this
	// parentRef.
	ports []mesh.PortKey
}

func newCompiledRoute(kind mesh.RouteKind, meta *metav1.ObjectMeta, parents []gatewayv1.ParentReference, rules int) *compiledRoute {
	return &compiledRoute{
		kind: kind, namespace: meta.Namespace, name: meta.Name, uid: string(meta.UID),
		generation: meta.Generation, created: meta.CreationTimestamp.Time,
		parentRefs: parents, ruleCount: rules,
	}
}

func (r *compiledRoute) key() string { return r.namespace + "/" + r.name }

func (r *compiledRoute) ruleContext(backends backendResolver) *ruleContext {
	c := &ruleContext{kind: r.kind, namespace: r.namespace, route: r.key(), backends: backends}
	return c
}

// addRule records a compiled rule, or why it was dropped.
func (r *compiledRoute) addRule(i int, rule compiledRule, err error) {
	if err == nil {
		r.rules = append(r.rules, rule)
		return
	}
	var re ruleError
	if !errors.As(err, &re) {
		re = ruleError{err.Error()}
	}
	r.dropped = append(r.dropped, fmt.Sprintf("rule %d: %s", i, re.msg))
}

func (r *compiledRoute) annotationRetry(annotations map[string]string) *mesh.RetryPolicy {
	p, err := parseRetryAnnotation(annotations)
	if err != nil {
		r.problems = append(r.problems, Problem{Kind: string(r.kind), Namespace: r.namespace, Name: r.name, UID: r.uid,
			Reason: ReasonInvalidAnnotation, Message: err.Error()})
	}
	return p
}

func compileHTTPRoute(hr *gatewayv1.HTTPRoute, backends backendResolver) *compiledRoute {
	r := newCompiledRoute(mesh.RouteHTTP, &hr.ObjectMeta, hr.Spec.ParentRefs, len(hr.Spec.Rules))
	c := r.ruleContext(backends)
	c.retry = r.annotationRetry(hr.Annotations)
	for i, rule := range hr.Spec.Rules {
		cr, err := c.compileHTTPRule(i, rule)
		r.addRule(i, cr, err)
	}
	r.issues = c.issues
	return r
}

func compileGRPCRoute(gr *gatewayv1.GRPCRoute, backends backendResolver) *compiledRoute {
	r := newCompiledRoute(mesh.RouteGRPC, &gr.ObjectMeta, gr.Spec.ParentRefs, len(gr.Spec.Rules))
	c := r.ruleContext(backends)
	c.retry = r.annotationRetry(gr.Annotations)
	for i, rule := range gr.Spec.Rules {
		cr, err := c.compileGRPCRule(i, rule)
		r.addRule(i, cr, err)
	}
	r.issues = c.issues
	return r
}

// isServiceParent reports whether a parentRef names a Service (group ""
// and kind Service), the GAMMA convention; other parents, Gateways by
// default, belong to other controllers.
func isServiceParent(ref gatewayv1.ParentReference) bool {
	return ref.Group != nil && *ref.Group == "" && ref.Kind != nil && *ref.Kind == "Service"
}

// routeResolution is every route resolved against the mesh.
type routeResolution struct {
	// routes are the merged, ordered rules of each port routes attach to;
	// nil when there are none.
	routes   map[mesh.PortKey]*mesh.PortRoutes
	statuses []RouteStatus
	problems []Problem
}

// resolveRoutes attaches every route to the service ports its parentRefs
// name, merges the rules of the routes on each port in precedence order and
// computes every route's status. It is pure.
func resolveRoutes(services map[mesh.ServiceKey]*mesh.Service, objs routeObjects) routeResolution {
	backends := backendResolver{services: services, grants: newReferenceGrants(objs.grants)}
	routes := make([]*compiledRoute, 0, len(objs.http)+len(objs.grpc))
	for _, hr := range objs.http {
		routes = append(routes, compileHTTPRoute(hr, backends))
	}
	for _, gr := range objs.grpc {
		routes = append(routes, compileGRPCRoute(gr, backends))
	}
	slices.SortFunc(routes, func(a, b *compiledRoute) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
	})

	for _, r := range routes {
		for _, ref := range r.parentRefs {
			if isServiceParent(ref) {
				r.parents = append(r.parents, attachParent(r, ref, services))
			}
		}
	}
	resolveKindConflicts(routes)

	var out routeResolution
	byPort := map[mesh.PortKey][]*compiledRoute{}
	for _, r := range routes {
		for _, p := range r.parents {
			if !p.accepted {
				continue
			}
			for _, pk := range p.ports {
				if !slices.Contains(byPort[pk], r) {
					byPort[pk] = append(byPort[pk], r)
				}
			}
		}
		out.statuses = append(out.statuses, r.status())
		out.problems = append(out.problems, r.statusProblems()...)
	}
	if len(byPort) > 0 {
		out.routes = make(map[mesh.PortKey]*mesh.PortRoutes, len(byPort))
		for pk, rs := range byPort {
			out.routes[pk] = portRoutes(pk, rs)
		}
	}
	out.problems = sortProblems(out.problems)
	return out
}

// attachParent decides whether a route attaches to the Service a parentRef
// names, and to which of its ports.
func attachParent(r *compiledRoute, ref gatewayv1.ParentReference, services map[mesh.ServiceKey]*mesh.Service) parentResult {
	res := parentResult{ref: ref}
	ns := r.namespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	parent := ns + "/" + string(ref.Name)
	if ns != r.namespace {
		res.reason = gatewayv1.RouteReasonUnsupportedValue
		res.message = fmt.Sprintf("parent Service %s is in another namespace: consumer routes are not supported; "+
			"create the route in namespace %s", parent, ns)
		return res
	}
	svc := services[mesh.ServiceKey{Namespace: ns, Name: string(ref.Name)}]
	if svc == nil {
		res.reason = gatewayv1.RouteReasonNoMatchingParent
		res.message = fmt.Sprintf("parent Service %s not found (or not part of the mesh)", parent)
		return res
	}
	for _, p := range svc.Ports {
		if ref.Port != nil && uint32(*ref.Port) != p.Port || ref.SectionName != nil && string(*ref.SectionName) != p.Name {
			continue
		}
		res.ports = append(res.ports, mesh.PortKey{Namespace: ns, Name: svc.Name, Port: p.Port})
	}
	if len(res.ports) == 0 {
		res.reason = gatewayv1.RouteReasonNoMatchingParent
		res.message = fmt.Sprintf("parent Service %s has no TCP port%s", parent, describePortRef(ref))
		return res
	}
	if r.ruleCount > 0 && len(r.rules) == 0 {
		res.ports = nil
		res.reason = gatewayv1.RouteReasonUnsupportedValue
		res.message = "no valid rule: " + strings.Join(r.dropped, "; ")
		return res
	}
	res.accepted, res.reason = true, gatewayv1.RouteReasonAccepted
	return res
}

func describePortRef(ref gatewayv1.ParentReference) string {
	var parts []string
	if ref.Port != nil {
		parts = append(parts, fmt.Sprintf(" %d", *ref.Port))
	}
	if ref.SectionName != nil {
		parts = append(parts, fmt.Sprintf(" named %q", *ref.SectionName))
	}
	return strings.Join(parts, " and")
}

// ReasonConflicted is the reason of an Accepted=False condition of a route
// that lost every port it names to routes of the other kind: HTTPRoutes
// and GRPCRoutes are not merged, so on each service port the kind of the
// oldest route (then the first by namespace/name) wins, as the Gateway API
// decides between the two kinds on one listener.
const ReasonConflicted gatewayv1.RouteConditionReason = "Conflicted"

// resolveKindConflicts detaches routes from the ports where a route of the
// other kind is older.
func resolveKindConflicts(routes []*compiledRoute) {
	oldest := map[mesh.PortKey]*compiledRoute{}
	for _, r := range routes {
		for _, p := range r.parents {
			for _, pk := range p.ports {
				if o := oldest[pk]; o == nil || compareRouteAge(r, o) < 0 {
					oldest[pk] = r
				}
			}
		}
	}
	for _, r := range routes {
		for i := range r.parents {
			p := &r.parents[i]
			if !p.accepted {
				continue
			}
			var kept, lost []mesh.PortKey
			var winner *compiledRoute
			for _, pk := range p.ports {
				if o := oldest[pk]; o.kind != r.kind {
					lost, winner = append(lost, pk), o
					continue
				}
				kept = append(kept, pk)
			}
			p.ports = kept
			switch {
			case len(lost) > 0 && len(kept) == 0:
				p.accepted, p.reason = false, ReasonConflicted
				p.message = fmt.Sprintf("%s %s is older and attached to the same port%s; HTTPRoutes and GRPCRoutes cannot share a service port",
					winner.kind, winner.key(), portList(lost))
			case len(lost) > 0:
				p.message = fmt.Sprintf("not attached to port%s, where %s %s is older", portList(lost), winner.kind, winner.key())
			}
		}
	}
}

func portList(ports []mesh.PortKey) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p.Port)
	}
	if len(s) == 1 {
		return " " + s[0]
	}
	return "s " + strings.Join(s, ", ")
}

// portRoutes merges the rules of the routes attached to a port, one
// mesh.RouteRule per match, in precedence order.
func portRoutes(pk mesh.PortKey, routes []*compiledRoute) *mesh.PortRoutes {
	var matches []orderedMatch
	for _, r := range routes {
		for i := range r.rules {
			for _, m := range r.rules[i].matches {
				matches = append(matches, orderedMatch{route: r, rule: &r.rules[i], match: m})
			}
		}
	}
	compare := compareHTTPMatches
	if len(routes) > 0 && routes[0].kind == mesh.RouteGRPC {
		compare = compareGRPCMatches
	}
	slices.SortFunc(matches, compare)
	out := &mesh.PortRoutes{Port: pk, Rules: make([]mesh.RouteRule, 0, len(matches))}
	for _, m := range matches {
		rule := m.rule.rule
		rule.MatchIndex = m.match.index
		rule.Matches = []mesh.RouteMatch{m.match.match}
		out.Rules = append(out.Rules, rule)
	}
	return out
}

// mergeRoutes returns next with the previous *mesh.PortRoutes kept for every
// port whose rules did not change (so consumers may cache by identity), and
// the ports that changed. It returns prev itself when nothing changed.
func mergeRoutes(prev, next map[mesh.PortKey]*mesh.PortRoutes) (map[mesh.PortKey]*mesh.PortRoutes, []mesh.PortKey) {
	var changed []mesh.PortKey
	for pk, pr := range next {
		if old, ok := prev[pk]; ok && reflect.DeepEqual(old, pr) {
			next[pk] = old
			continue
		}
		changed = append(changed, pk)
	}
	for pk := range prev {
		if _, ok := next[pk]; !ok {
			changed = append(changed, pk)
		}
	}
	if len(changed) == 0 {
		return prev, nil
	}
	return next, changed
}
