package discovery

import (
	"fmt"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-mesh/sluice/mesh"
)

// refIssue is why a reference of a route could not be resolved: a reason of
// the ResolvedRefs condition and a message.
type refIssue struct {
	reason  gatewayv1.RouteConditionReason
	message string
}

// backendResolver resolves backendRefs (and mirror backendRefs) against the
// services of the mesh and the ReferenceGrants.
type backendResolver struct {
	services map[mesh.ServiceKey]*mesh.Service
	grants   referenceGrants
}

// resolve returns the service port a backend reference of a route of kind
// fromKind in fromNamespace names, or why it names none. Only Services of
// the mesh are backends (ExternalName Services are not); the port is the
// Service port and is required; a Service in another namespace needs a
// ReferenceGrant there.
func (b backendResolver) resolve(fromKind, fromNamespace string, ref gatewayv1.BackendObjectReference) (mesh.PortKey, *refIssue) {
	group, kind := "", "Service"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	ns := fromNamespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	name := fmt.Sprintf("%s/%s", ns, ref.Name)
	if group != "" || kind != "Service" {
		gk := kind
		if group != "" {
			gk = kind + "." + group
		}
		return mesh.PortKey{}, &refIssue{gatewayv1.RouteReasonInvalidKind,
			fmt.Sprintf("backend %s is a %s; only core Services are supported", name, gk)}
	}
	if ns != fromNamespace && !b.grants.allowsService(fromKind, fromNamespace, ns, string(ref.Name)) {
		return mesh.PortKey{}, &refIssue{gatewayv1.RouteReasonRefNotPermitted,
			fmt.Sprintf("backend Service %s is in another namespace and no ReferenceGrant in %s allows %ss from %s to refer to it",
				name, ns, fromKind, fromNamespace)}
	}
	if ref.Port == nil {
		return mesh.PortKey{}, &refIssue{gatewayv1.RouteReasonBackendNotFound,
			fmt.Sprintf("backend Service %s has no port: a Service backendRef needs one", name)}
	}
	svc := b.services[mesh.ServiceKey{Namespace: ns, Name: string(ref.Name)}]
	if svc == nil {
		return mesh.PortKey{}, &refIssue{gatewayv1.RouteReasonBackendNotFound,
			fmt.Sprintf("backend Service %s not found (or not part of the mesh)", name)}
	}
	for _, p := range svc.Ports {
		if p.Port == uint32(*ref.Port) {
			return mesh.PortKey{Namespace: ns, Name: string(ref.Name), Port: p.Port}, nil
		}
	}
	return mesh.PortKey{}, &refIssue{gatewayv1.RouteReasonBackendNotFound,
		fmt.Sprintf("backend Service %s has no TCP port %d", name, *ref.Port)}
}

// weightedBackends resolves the backendRefs of a rule. Unresolved ones stay,
// with their weight, as Invalid backends, so that their share of requests
// fails as the Gateway API requires.
func (b backendResolver) weightedBackends(fromKind, fromNamespace string, refs []gatewayv1.BackendRef, issues *[]refIssue) []mesh.WeightedBackend {
	if len(refs) == 0 {
		return nil
	}
	out := make([]mesh.WeightedBackend, 0, len(refs))
	for _, ref := range refs {
		weight := uint32(1)
		if ref.Weight != nil {
			weight = uint32(max(*ref.Weight, 0))
		}
		pk, issue := b.resolve(fromKind, fromNamespace, ref.BackendObjectReference)
		if issue != nil {
			*issues = append(*issues, *issue)
			out = append(out, mesh.WeightedBackend{Weight: weight, Invalid: true})
			continue
		}
		out = append(out, mesh.WeightedBackend{Port: pk, Weight: weight})
	}
	return out
}
