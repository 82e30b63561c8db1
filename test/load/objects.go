package load

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// ManagedBy is the endpointslice.kubernetes.io/managed-by value of the
// harness's slices: the EndpointSlice controller leaves them alone (their
// Services have no selector anyway).
const ManagedBy = "load.sluice.dev"

// Objects of the world, as the API server (or the file source) holds them.
// Services have no selector, so no controller writes their EndpointSlices:
// the harness writes them directly and times from its own write.

func namespaceObject(name string) *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}
}

func nodeObject(name, zone string) *corev1.Node {
	return &corev1.Node{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelTopologyZone: zone,
			corev1.LabelHostname:     name,
		}},
	}
}

func serviceAccountObject(ns, name string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
	}
}

// serviceObject is s's Service; clusterIP is left for the API server to
// choose unless withIP.
func serviceObject(s *Service, withIP bool) *corev1.Service {
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: map[string]string{"app": s.Name}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{
				Name:       "http",
				Protocol:   corev1.ProtocolTCP,
				Port:       ServicePort,
				TargetPort: intstr.FromInt32(ServicePort),
			}},
		},
	}
	if withIP {
		svc.Spec.ClusterIP = s.ClusterIP
		svc.Spec.ClusterIPs = []string{s.ClusterIP}
	}
	return svc
}

// podObject is p as the kubelet would have reported it: scheduled, running
// and ready (or not) at its IP.
func podObject(s *Service, p *Pod) *corev1.Pod {
	ready := corev1.ConditionFalse
	if p.Ready {
		ready = corev1.ConditionTrue
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.Namespace,
			Name:      p.Name,
			Labels:    map[string]string{"app": s.Name},
		},
		Spec: corev1.PodSpec{
			NodeName:                     p.Node,
			ServiceAccountName:           s.ServiceAccount,
			AutomountServiceAccountToken: new(false),
			Containers:                   []corev1.Container{{Name: "app", Image: "sluice-load"}},
		},
		Status: corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIP:  p.IP,
			PodIPs: []corev1.PodIP{{IP: p.IP}},
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: ready},
				{Type: corev1.ContainersReady, Status: ready},
			},
		},
	}
}

// sliceObject is the EndpointSlice of s: one endpoint per pod; a pod that
// is not ready is not serving either (it is going away).
func sliceObject(s *Service) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.Namespace,
			Name:      s.Name,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: s.Name,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{
			Name:     new("http"),
			Protocol: new(corev1.ProtocolTCP),
			Port:     new(int32(ServicePort)),
		}},
	}
	for _, p := range s.Pods {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{p.IP},
			Conditions: discoveryv1.EndpointConditions{
				Ready:       new(p.Ready),
				Serving:     new(p.Ready),
				Terminating: new(false),
			},
			NodeName:  new(p.Node),
			Zone:      new(p.Zone),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: s.Namespace, Name: p.Name},
		})
	}
	return es
}

// routeName is the HTTPRoute that splits r.Service's traffic.
func routeName(r *Route) string { return "split-" + r.Service.Name }

// httpRouteObject is a GAMMA HTTPRoute attached to r.Service (parentRef
// kind Service) that sends r.Weight% of its requests to r.Service and the
// rest to r.Other, a service of the same namespace.
func httpRouteObject(r *Route) *gatewayv1.HTTPRoute {
	backend := func(s *Service, w int) gatewayv1.HTTPBackendRef {
		return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{
				Group: new(gatewayv1.Group("")),
				Kind:  new(gatewayv1.Kind("Service")),
				Name:  gatewayv1.ObjectName(s.Name),
				Port:  new(gatewayv1.PortNumber(ServicePort)),
			},
			Weight: new(int32(w)),
		}}
	}
	return &gatewayv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "HTTPRoute"},
		ObjectMeta: metav1.ObjectMeta{Namespace: r.Service.Namespace, Name: routeName(r)},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Group: new(gatewayv1.Group("")),
				Kind:  new(gatewayv1.Kind("Service")),
				Name:  gatewayv1.ObjectName(r.Service.Name),
				Port:  new(gatewayv1.PortNumber(ServicePort)),
			}}},
			Rules: []gatewayv1.HTTPRouteRule{{
				BackendRefs: []gatewayv1.HTTPBackendRef{backend(r.Service, r.Weight), backend(r.Other, 100-r.Weight)},
			}},
		},
	}
}

// weightSignature is how a proxy's route configuration shows r's split:
// "<fqdn>=<weight>" per backend, sorted (see fact.vhostWeights).
func weightSignature(r *Route, domain string) string {
	a := fmt.Sprintf("%s=%d", r.Service.FQDN(domain), r.Weight)
	b := fmt.Sprintf("%s=%d", r.Other.FQDN(domain), 100-r.Weight)
	if b < a {
		a, b = b, a
	}
	return a + "," + b
}
