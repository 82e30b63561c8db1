package discovery

import (
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// mergeParentStatuses returns a route's status parents with Sluice's
// replaced by desired: other controllers' entries are kept as they are, in
// place; Sluice's entries for parentRefs no longer desired are dropped;
// desired entries replace Sluice's entry for the same parentRef or are
// appended. A condition keeps its lastTransitionTime while its status stays
// the same; a changed or new one gets now. It is pure.
func mergeParentStatuses(existing, desired []gatewayv1.RouteParentStatus, now metav1.Time) []gatewayv1.RouteParentStatus {
	out := make([]gatewayv1.RouteParentStatus, 0, len(existing)+len(desired))
	placed := make([]bool, len(desired))
	for _, e := range existing {
		if e.ControllerName != ControllerName {
			out = append(out, e)
			continue
		}
		i := indexParent(desired, e.ParentRef)
		if i < 0 || placed[i] {
			continue
		}
		placed[i] = true
		out = append(out, parentWithTimes(desired[i], e.Conditions, now))
	}
	for i, d := range desired {
		if !placed[i] {
			out = append(out, parentWithTimes(d, nil, now))
		}
	}
	return out
}

func indexParent(ps []gatewayv1.RouteParentStatus, ref gatewayv1.ParentReference) int {
	for i, p := range ps {
		if apiequality.Semantic.DeepEqual(p.ParentRef, ref) {
			return i
		}
	}
	return -1
}

func parentWithTimes(d gatewayv1.RouteParentStatus, old []metav1.Condition, now metav1.Time) gatewayv1.RouteParentStatus {
	out := *d.DeepCopy()
	for i := range out.Conditions {
		c := &out.Conditions[i]
		c.LastTransitionTime = now
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	return out
}

// parentStatusesEqual reports whether writing merged would change nothing.
func parentStatusesEqual(a, b []gatewayv1.RouteParentStatus) bool {
	return apiequality.Semantic.DeepEqual(a, b)
}
