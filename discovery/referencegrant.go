package discovery

import (
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
)

// gatewayGroup is the API group of the Gateway API kinds.
const gatewayGroup = "gateway.networking.k8s.io"

// referenceGrants answers whether a ReferenceGrant allows a reference from
// a route in one namespace to a Service in another.
type referenceGrants struct {
	byNamespace map[string][]*gatewayv1beta1.ReferenceGrant
}

func newReferenceGrants(grants map[objectKey]*gatewayv1beta1.ReferenceGrant) referenceGrants {
	g := referenceGrants{byNamespace: map[string][]*gatewayv1beta1.ReferenceGrant{}}
	for k, grant := range grants {
		g.byNamespace[k.namespace] = append(g.byNamespace[k.namespace], grant)
	}
	return g
}

// allowsService reports whether a ReferenceGrant in the Service's namespace
// lets routes of fromKind in fromNamespace refer to the Service: one of its
// "from" entries names the route's group, kind and namespace, and one of its
// "to" entries names the core group, kind Service and either no name or the
// Service's name.
func (g referenceGrants) allowsService(fromKind, fromNamespace, toNamespace, toName string) bool {
	for _, grant := range g.byNamespace[toNamespace] {
		if grantAllowsFrom(grant, fromKind, fromNamespace) && grantAllowsService(grant, toName) {
			return true
		}
	}
	return false
}

func grantAllowsFrom(grant *gatewayv1beta1.ReferenceGrant, kind, namespace string) bool {
	for _, f := range grant.Spec.From {
		if string(f.Group) == gatewayGroup && string(f.Kind) == kind && string(f.Namespace) == namespace {
			return true
		}
	}
	return false
}

func grantAllowsService(grant *gatewayv1beta1.ReferenceGrant, name string) bool {
	for _, t := range grant.Spec.To {
		if t.Group == "" && t.Kind == "Service" && (t.Name == nil || *t.Name == "" || string(*t.Name) == name) {
			return true
		}
	}
	return false
}
