package discovery

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// Fluent fixtures: newService("default", "api").port("http", 80).obj.

type serviceFixture struct{ obj *corev1.Service }

func newService(ns, name string) serviceFixture {
	return serviceFixture{&corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-svc-" + ns + "-" + name)},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP},
	}}
}

func (f serviceFixture) port(name string, port int32) serviceFixture {
	f.obj.Spec.Ports = append(f.obj.Spec.Ports, corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP})
	return f
}

func (f serviceFixture) appPort(name string, port int32, appProtocol string) serviceFixture {
	f.obj.Spec.Ports = append(f.obj.Spec.Ports, corev1.ServicePort{
		Name: name, Port: port, Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To(appProtocol),
	})
	return f
}

func (f serviceFixture) udpPort(name string, port int32) serviceFixture {
	f.obj.Spec.Ports = append(f.obj.Spec.Ports, corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolUDP})
	return f
}

func (f serviceFixture) clusterIP(ips ...string) serviceFixture {
	f.obj.Spec.ClusterIP = ips[0]
	f.obj.Spec.ClusterIPs = ips
	return f
}

func (f serviceFixture) annotate(kv ...string) serviceFixture {
	if f.obj.Annotations == nil {
		f.obj.Annotations = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		f.obj.Annotations[kv[i]] = kv[i+1]
	}
	return f
}

type sliceFixture struct{ obj *discoveryv1.EndpointSlice }

func newSlice(ns, name, service string) sliceFixture {
	s := &discoveryv1.EndpointSlice{
		TypeMeta:    metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-slice-" + ns + "-" + name)},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	if service != "" {
		s.Labels = map[string]string{discoveryv1.LabelServiceName: service}
	}
	return sliceFixture{s}
}

func (f sliceFixture) port(name string, port int32) sliceFixture {
	f.obj.Ports = append(f.obj.Ports, discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)})
	return f
}

func (f sliceFixture) ipv6() sliceFixture {
	f.obj.AddressType = discoveryv1.AddressTypeIPv6
	return f
}

// endpoint adds an endpoint; opts set its conditions, zone, node and pod.
func (f sliceFixture) endpoint(addr string, opts ...endpointOpt) sliceFixture {
	ep := discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
	for _, o := range opts {
		o(&ep)
	}
	f.obj.Endpoints = append(f.obj.Endpoints, ep)
	return f
}

type endpointOpt func(*discoveryv1.Endpoint)

func conditions(ready, serving, terminating *bool) endpointOpt {
	return func(e *discoveryv1.Endpoint) {
		e.Conditions = discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}
	}
}

func notReady() endpointOpt {
	return conditions(ptr.To(false), ptr.To(false), ptr.To(false))
}

func terminatingServing() endpointOpt {
	return conditions(ptr.To(false), ptr.To(true), ptr.To(true))
}

func inZone(z string) endpointOpt { return func(e *discoveryv1.Endpoint) { e.Zone = ptr.To(z) } }

func onNode(n string) endpointOpt { return func(e *discoveryv1.Endpoint) { e.NodeName = ptr.To(n) } }

func forPod(name string) endpointOpt {
	return func(e *discoveryv1.Endpoint) { e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: name} }
}

func newPod(ns, name, node, serviceAccount string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: serviceAccount},
	}
}

func newNode(name, zone string) *corev1.Node {
	n := &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}
	if zone != "" {
		n.Labels = map[string]string{corev1.LabelTopologyZone: zone}
	}
	return n
}

func newNamespace(name string, annotations map[string]string) *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations, UID: types.UID("uid-ns-" + name)},
	}
}
