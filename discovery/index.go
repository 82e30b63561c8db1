package discovery

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/sluice-mesh/sluice/mesh"
)

// Inputs are the Kubernetes objects a snapshot is built from. When two
// objects share a namespace and name, the later one wins.
type Inputs struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Pods           []*corev1.Pod
	Namespaces     []*corev1.Namespace
	Nodes          []*corev1.Node
	// Gateway API routes attached to Services (GAMMA), and the grants that
	// allow their cross-namespace backend references.
	HTTPRoutes      []*gatewayv1.HTTPRoute
	GRPCRoutes      []*gatewayv1.GRPCRoute
	ReferenceGrants []*gatewayv1beta1.ReferenceGrant
}

// objectKey names a namespaced object.
type objectKey struct {
	namespace, name string
}

// objectIndex holds the current objects, indexed for the builder: slices by
// the service they belong to, pods by key, nodes by name. Objects are never
// mutated once indexed; an update replaces the pointer.
type objectIndex struct {
	services   map[mesh.ServiceKey]*corev1.Service
	slices     map[objectKey]*discoveryv1.EndpointSlice
	pods       map[objectKey]*corev1.Pod
	namespaces map[string]*corev1.Namespace
	nodes      map[string]*corev1.Node
	// slicesByService indexes slices by their kubernetes.io/service-name
	// label; slices without it are under the key with an empty Name.
	slicesByService map[mesh.ServiceKey]map[string]*discoveryv1.EndpointSlice
	routes          routeObjects
}

func newObjectIndex() *objectIndex {
	return &objectIndex{
		services:        map[mesh.ServiceKey]*corev1.Service{},
		slices:          map[objectKey]*discoveryv1.EndpointSlice{},
		pods:            map[objectKey]*corev1.Pod{},
		namespaces:      map[string]*corev1.Namespace{},
		nodes:           map[string]*corev1.Node{},
		slicesByService: map[mesh.ServiceKey]map[string]*discoveryv1.EndpointSlice{},
		routes:          newRouteObjects(),
	}
}

// indexInputs indexes a list of inputs.
func indexInputs(in Inputs) *objectIndex {
	idx := newObjectIndex()
	var ch *changes // a first build rebuilds everything; nothing to record
	for _, o := range in.Namespaces {
		idx.upsertNamespace(o, ch)
	}
	for _, o := range in.Nodes {
		idx.upsertNode(o, ch)
	}
	for _, o := range in.Pods {
		idx.upsertPod(o, ch)
	}
	for _, o := range in.Services {
		idx.upsertService(o, ch)
	}
	for _, o := range in.EndpointSlices {
		idx.upsertSlice(o, ch)
	}
	for _, o := range in.HTTPRoutes {
		idx.upsertHTTPRoute(o, ch)
	}
	for _, o := range in.GRPCRoutes {
		idx.upsertGRPCRoute(o, ch)
	}
	for _, o := range in.ReferenceGrants {
		idx.upsertReferenceGrant(o, ch)
	}
	return idx
}

// changes records what changed in an objectIndex since the last build, in
// the terms the builder needs to decide what to rebuild.
type changes struct {
	// services whose Service object changed (added, updated, deleted).
	services map[mesh.ServiceKey]struct{}
	// namespaces whose Namespace object changed: their services' defaults may differ.
	namespaces map[string]struct{}
	// nodes is set when a node's zone changed: any endpoint's zone may differ.
	nodes bool
	// sliceServices are the services whose EndpointSlices changed.
	sliceServices map[mesh.ServiceKey]struct{}
	// pods whose labels, service account or node changed.
	pods map[objectKey]struct{}
	// routes is set when an HTTPRoute, GRPCRoute or ReferenceGrant changed.
	routes bool
}

func newChanges() *changes {
	return &changes{
		services:      map[mesh.ServiceKey]struct{}{},
		namespaces:    map[string]struct{}{},
		sliceServices: map[mesh.ServiceKey]struct{}{},
		pods:          map[objectKey]struct{}{},
	}
}

// The record methods accept a nil *changes, which records nothing.

func (c *changes) service(k mesh.ServiceKey) {
	if c != nil {
		c.services[k] = struct{}{}
	}
}

func (c *changes) namespace(name string) {
	if c != nil {
		c.namespaces[name] = struct{}{}
	}
}

func (c *changes) node() {
	if c != nil {
		c.nodes = true
	}
}

func (c *changes) sliceService(k mesh.ServiceKey) {
	if c != nil {
		c.sliceServices[k] = struct{}{}
	}
}

func (c *changes) pod(k objectKey) {
	if c != nil {
		c.pods[k] = struct{}{}
	}
}

// count is the number of recorded changes, for logs and metrics.
func (c *changes) count() int {
	n := len(c.services) + len(c.namespaces) + len(c.sliceServices) + len(c.pods)
	if c.nodes {
		n++
	}
	if c.routes {
		n++
	}
	return n
}

func sliceServiceKey(s *discoveryv1.EndpointSlice) mesh.ServiceKey {
	return mesh.ServiceKey{Namespace: s.Namespace, Name: s.Labels[discoveryv1.LabelServiceName]}
}

// sameVersion reports whether two objects carry the same non-empty
// resourceVersion: an informer resync, nothing changed.
func sameVersion(a, b metav1.Object) bool {
	return a.GetResourceVersion() != "" && a.GetResourceVersion() == b.GetResourceVersion()
}

func (x *objectIndex) upsertService(s *corev1.Service, ch *changes) bool {
	k := mesh.ServiceKey{Namespace: s.Namespace, Name: s.Name}
	old := x.services[k]
	x.services[k] = s
	if old != nil && (sameVersion(old, s) || (old.UID == s.UID &&
		maps.Equal(old.Annotations, s.Annotations) && apiequality.Semantic.DeepEqual(old.Spec, s.Spec))) {
		return false
	}
	ch.service(k)
	return true
}

func (x *objectIndex) deleteService(k mesh.ServiceKey, ch *changes) bool {
	if _, ok := x.services[k]; !ok {
		return false
	}
	delete(x.services, k)
	ch.service(k)
	return true
}

func (x *objectIndex) upsertSlice(s *discoveryv1.EndpointSlice, ch *changes) bool {
	k := objectKey{s.Namespace, s.Name}
	old := x.slices[k]
	if old != nil {
		x.unindexSlice(old)
	}
	x.slices[k] = s
	sk := sliceServiceKey(s)
	if x.slicesByService[sk] == nil {
		x.slicesByService[sk] = map[string]*discoveryv1.EndpointSlice{}
	}
	x.slicesByService[sk][s.Name] = s
	if old != nil && (sameVersion(old, s) || (old.UID == s.UID && sliceServiceKey(old) == sk &&
		old.AddressType == s.AddressType &&
		apiequality.Semantic.DeepEqual(old.Ports, s.Ports) &&
		apiequality.Semantic.DeepEqual(old.Endpoints, s.Endpoints))) {
		return false
	}
	if old != nil {
		ch.sliceService(sliceServiceKey(old))
	}
	ch.sliceService(sk)
	return true
}

func (x *objectIndex) unindexSlice(s *discoveryv1.EndpointSlice) {
	sk := sliceServiceKey(s)
	delete(x.slicesByService[sk], s.Name)
	if len(x.slicesByService[sk]) == 0 {
		delete(x.slicesByService, sk)
	}
}

func (x *objectIndex) deleteSlice(k objectKey, ch *changes) bool {
	old, ok := x.slices[k]
	if !ok {
		return false
	}
	x.unindexSlice(old)
	delete(x.slices, k)
	ch.sliceService(sliceServiceKey(old))
	return true
}

// upsertPod records a pod; only its labels, service account and node matter
// to the mesh, so other updates (status) are not changes.
func (x *objectIndex) upsertPod(p *corev1.Pod, ch *changes) bool {
	k := objectKey{p.Namespace, p.Name}
	old := x.pods[k]
	x.pods[k] = p
	if old != nil && (sameVersion(old, p) || (maps.Equal(old.Labels, p.Labels) &&
		old.Spec.ServiceAccountName == p.Spec.ServiceAccountName &&
		old.Spec.NodeName == p.Spec.NodeName)) {
		return false
	}
	ch.pod(k)
	return true
}

func (x *objectIndex) deletePod(k objectKey, ch *changes) bool {
	if _, ok := x.pods[k]; !ok {
		return false
	}
	delete(x.pods, k)
	ch.pod(k)
	return true
}

// upsertNamespace records a namespace; only its annotations (defaults for
// its services) matter.
func (x *objectIndex) upsertNamespace(n *corev1.Namespace, ch *changes) bool {
	old := x.namespaces[n.Name]
	x.namespaces[n.Name] = n
	if old != nil && (sameVersion(old, n) || (old.UID == n.UID && maps.Equal(old.Annotations, n.Annotations))) {
		return false
	}
	ch.namespace(n.Name)
	return true
}

func (x *objectIndex) deleteNamespace(name string, ch *changes) bool {
	if _, ok := x.namespaces[name]; !ok {
		return false
	}
	delete(x.namespaces, name)
	ch.namespace(name)
	return true
}

// upsertNode records a node; only its zone matters.
func (x *objectIndex) upsertNode(n *corev1.Node, ch *changes) bool {
	old := x.nodes[n.Name]
	x.nodes[n.Name] = n
	if old != nil && (sameVersion(old, n) || nodeZone(old) == nodeZone(n)) {
		return false
	}
	ch.node()
	return true
}

func (x *objectIndex) deleteNode(name string, ch *changes) bool {
	if _, ok := x.nodes[name]; !ok {
		return false
	}
	delete(x.nodes, name)
	ch.node()
	return true
}

// nodeZone is the node's topology.kubernetes.io/zone label.
func nodeZone(n *corev1.Node) string {
	return n.Labels[corev1.LabelTopologyZone]
}
