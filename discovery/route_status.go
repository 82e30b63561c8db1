package discovery

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// ControllerName is the controllerName of the route parent statuses Sluice
// writes.
const ControllerName gatewayv1.GatewayController = "sluice.dev/mesh-controller"

// RouteStatus is the status Sluice computes for one HTTPRoute or GRPCRoute:
// one parent status per parentRef that names a Service, in spec order,
// each with the conditions:
//
//   - Accepted: True (Accepted) when the route is attached to at least one
//     port of the Service; else False with NoMatchingParent (no such
//     Service in the mesh, or no port matching the parentRef's port and
//     sectionName), UnsupportedValue (a consumer route, whose Service is in
//     another namespace; or no valid rule) or Conflicted (HTTPRoutes and
//     GRPCRoutes on the same port: the oldest route's kind wins).
//   - ResolvedRefs: True (ResolvedRefs) when every backendRef (and mirror
//     backendRef) of the rules kept resolves; else False with the reason
//     of the first that does not: InvalidKind (not a core Service),
//     RefNotPermitted (another namespace without a ReferenceGrant) or
//     BackendNotFound (no such Service, or no such port); the message lists
//     them all.
//   - PartiallyInvalid: True (UnsupportedValue), only on an accepted route
//     some of whose rules were dropped (an invalid regular expression, an
//     unsupported filter or match type); the message starts with "Dropped
//     Rule".
//
// Every condition carries the route's generation as observedGeneration;
// LastTransitionTime is left zero for the writer to fill.
type RouteStatus struct {
	// Kind is KindHTTPRoute or KindGRPCRoute.
	Kind       string
	Namespace  string
	Name       string
	UID        string
	Generation int64
	// Parents are Sluice's parent statuses, ControllerName set.
	Parents []gatewayv1.RouteParentStatus
}

// Key returns "Kind namespace/name".
func (s RouteStatus) Key() string { return s.Kind + " " + s.Namespace + "/" + s.Name }

// BuildRouteStatuses computes the status of every route in in, sorted by
// kind, namespace and name. It is pure, and the same computation the
// snapshot build does.
func BuildRouteStatuses(in Inputs) []RouteStatus {
	return newBuilder().build(indexInputs(in), newChanges()).routeStatuses
}

// status is the route's computed status.
func (r *compiledRoute) status() RouteStatus {
	out := RouteStatus{Kind: string(r.kind), Namespace: r.namespace, Name: r.name, UID: r.uid, Generation: r.generation}
	for _, p := range r.parents {
		out.Parents = append(out.Parents, gatewayv1.RouteParentStatus{
			ParentRef:      *p.ref.DeepCopy(),
			ControllerName: ControllerName,
			Conditions:     r.conditions(p),
		})
	}
	return out
}

func (r *compiledRoute) conditions(p parentResult) []metav1.Condition {
	cond := func(t gatewayv1.RouteConditionType, ok bool, reason gatewayv1.RouteConditionReason, msg string) metav1.Condition {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		return metav1.Condition{Type: string(t), Status: status, Reason: string(reason), Message: msg, ObservedGeneration: r.generation}
	}
	acceptedMsg := p.message
	if p.accepted {
		acceptedMsg = "attached to Service port" + portList(p.ports)
		if p.message != "" {
			acceptedMsg += "; " + p.message
		}
	}
	out := []metav1.Condition{cond(gatewayv1.RouteConditionAccepted, p.accepted, p.reason, acceptedMsg)}
	if len(r.issues) == 0 {
		out = append(out, cond(gatewayv1.RouteConditionResolvedRefs, true, gatewayv1.RouteReasonResolvedRefs, "all references resolved"))
	} else {
		msgs := make([]string, len(r.issues))
		for i, is := range r.issues {
			msgs[i] = is.message
		}
		out = append(out, cond(gatewayv1.RouteConditionResolvedRefs, false, r.issues[0].reason, strings.Join(msgs, "; ")))
	}
	if p.accepted && len(r.dropped) > 0 {
		out = append(out, cond(gatewayv1.RouteConditionPartiallyInvalid, true, gatewayv1.RouteReasonUnsupportedValue,
			"Dropped Rule(s): "+strings.Join(r.dropped, "; ")))
	}
	return out
}

// statusProblems reports the route's failed conditions as problems (Events
// on the route, /debug/problems, metrics), which is also how a file source,
// which has no status to write, shows them. Their reasons are the
// conditions' reasons.
func (r *compiledRoute) statusProblems() []Problem {
	if len(r.parents) == 0 {
		return nil // not a mesh route: another controller's business
	}
	out := r.problems
	accepted := false
	add := func(reason gatewayv1.RouteConditionReason, msg string) {
		out = append(out, Problem{Kind: string(r.kind), Namespace: r.namespace, Name: r.name, UID: r.uid,
			Reason: string(reason), Message: msg})
	}
	for _, p := range r.parents {
		if !p.accepted {
			add(p.reason, p.message)
		}
		accepted = accepted || p.accepted
	}
	for _, is := range r.issues {
		add(is.reason, is.message)
	}
	if accepted && len(r.dropped) > 0 {
		add(gatewayv1.RouteReasonUnsupportedValue, "Dropped Rule(s): "+strings.Join(r.dropped, "; "))
	}
	return out
}
