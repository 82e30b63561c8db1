package discovery

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/sluice-mesh/sluice/mesh"
)

// Object kinds the store holds.
const (
	KindService       = "Service"
	KindEndpointSlice = "EndpointSlice"
	KindPod           = "Pod"
	KindNamespace     = "Namespace"
	KindNode          = "Node"
)

// Store holds the current Kubernetes objects, keyed by kind, namespace and
// name, and records what changed since the last build. Sources (the
// Kubernetes informers, the file source) write into it; the Coalescer reads
// it. It is safe for concurrent use.
//
// Objects put into the store must not be mutated afterwards (informer
// objects never are; the file source decodes fresh ones): snapshots may
// share data, such as pod label maps, with them.
//
// When two sources write the same object, the last write wins; run one
// source per store unless their objects are disjoint.
type Store struct {
	mu      sync.Mutex
	idx     *objectIndex
	pending *changes
	// sources maps a registered source to whether it has synced.
	sources        map[string]bool
	sourceProblems map[string][]Problem
	listeners      []func()
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{
		idx:            newObjectIndex(),
		pending:        newChanges(),
		sources:        map[string]bool{},
		sourceProblems: map[string][]Problem{},
	}
}

// OnChange registers fn to be called, without the store's lock held, after
// every change to the store's objects, source problems or sync state.
func (s *Store) OnChange(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, fn)
}

func (s *Store) notify() {
	s.mu.Lock()
	ls := slices.Clone(s.listeners)
	s.mu.Unlock()
	for _, fn := range ls {
		fn()
	}
}

// Upsert adds or replaces an object: a *corev1.Service,
// *discoveryv1.EndpointSlice, *corev1.Pod, *corev1.Namespace,
// *corev1.Node, *gatewayv1.HTTPRoute, *gatewayv1.GRPCRoute or
// *gatewayv1beta1.ReferenceGrant (a *gatewayv1.ReferenceGrant is stored as
// the identical v1beta1 type). Updates that change nothing the mesh uses (an informer
// resync, a pod status change) are recorded without triggering a build.
func (s *Store) Upsert(obj runtime.Object) error {
	s.mu.Lock()
	var changed bool
	switch o := obj.(type) {
	case *corev1.Service:
		changed = s.idx.upsertService(o, s.pending)
	case *discoveryv1.EndpointSlice:
		changed = s.idx.upsertSlice(o, s.pending)
	case *corev1.Pod:
		changed = s.idx.upsertPod(o, s.pending)
	case *corev1.Namespace:
		changed = s.idx.upsertNamespace(o, s.pending)
	case *corev1.Node:
		changed = s.idx.upsertNode(o, s.pending)
	case *gatewayv1.HTTPRoute:
		changed = s.idx.upsertHTTPRoute(o, s.pending)
	case *gatewayv1.GRPCRoute:
		changed = s.idx.upsertGRPCRoute(o, s.pending)
	case *gatewayv1beta1.ReferenceGrant:
		changed = s.idx.upsertReferenceGrant(o, s.pending)
	case *gatewayv1.ReferenceGrant:
		changed = s.idx.upsertReferenceGrant((*gatewayv1beta1.ReferenceGrant)(o), s.pending)
	default:
		s.mu.Unlock()
		return fmt.Errorf("store: unsupported object type %T", obj)
	}
	s.mu.Unlock()
	if changed {
		s.notify()
	}
	return nil
}

// Delete removes the object of the given kind (one of the Kind* constants),
// namespace (empty for namespaces and nodes) and name. Deleting an object
// that is not there does nothing.
func (s *Store) Delete(kind, namespace, name string) error {
	s.mu.Lock()
	var changed bool
	switch kind {
	case KindService:
		changed = s.idx.deleteService(mesh.ServiceKey{Namespace: namespace, Name: name}, s.pending)
	case KindEndpointSlice:
		changed = s.idx.deleteSlice(objectKey{namespace, name}, s.pending)
	case KindPod:
		changed = s.idx.deletePod(objectKey{namespace, name}, s.pending)
	case KindNamespace:
		changed = s.idx.deleteNamespace(name, s.pending)
	case KindNode:
		changed = s.idx.deleteNode(name, s.pending)
	case KindHTTPRoute, KindGRPCRoute, KindReferenceGrant:
		changed = s.idx.deleteRouteObject(kind, objectKey{namespace, name}, s.pending)
	default:
		s.mu.Unlock()
		return fmt.Errorf("store: unsupported kind %q", kind)
	}
	s.mu.Unlock()
	if changed {
		s.notify()
	}
	return nil
}

// RegisterSource declares a source that fills the store. No snapshot is
// built until every registered source has called the returned function,
// which marks it synced (its initial state is complete): a half-synced
// store would publish a mesh with services missing.
func (s *Store) RegisterSource(name string) (markSynced func()) {
	s.mu.Lock()
	s.sources[name] = false
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		already := s.sources[name]
		s.sources[name] = true
		s.mu.Unlock()
		if !already {
			s.notify()
		}
	}
}

// Synced reports whether every registered source has synced.
func (s *Store) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncedLocked()
}

func (s *Store) syncedLocked() bool {
	for _, synced := range s.sources {
		if !synced {
			return false
		}
	}
	return true
}

// SetSourceProblems replaces the problems a source found outside any
// object, such as files that do not parse.
func (s *Store) SetSourceProblems(source string, problems []Problem) {
	s.mu.Lock()
	old := s.sourceProblems[source]
	problems = sortProblems(slices.Clone(problems))
	setOrDelete(s.sourceProblems, source, problems)
	s.mu.Unlock()
	if !slices.Equal(old, problems) {
		s.notify()
	}
}

// SourceProblems returns the problems set by every source, sorted.
func (s *Store) SourceProblems() []Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sourceProblemsLocked()
}

func (s *Store) sourceProblemsLocked() []Problem {
	var out []Problem
	for _, name := range slices.Sorted(maps.Keys(s.sourceProblems)) {
		out = append(out, s.sourceProblems[name]...)
	}
	return sortProblems(out)
}

// Counts returns the number of objects of each kind.
func (s *Store) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]int{
		KindService:        len(s.idx.services),
		KindEndpointSlice:  len(s.idx.slices),
		KindPod:            len(s.idx.pods),
		KindNamespace:      len(s.idx.namespaces),
		KindNode:           len(s.idx.nodes),
		KindHTTPRoute:      len(s.idx.routes.http),
		KindGRPCRoute:      len(s.idx.routes.grpc),
		KindReferenceGrant: len(s.idx.routes.grants),
	}
}

// storeBuild is the outcome of Store.build.
type storeBuild struct {
	buildResult
	// built is false when the store is not synced yet.
	built bool
	// changes is the number of object changes the build consumed.
	changes int
	// sourceProblems are the sources' problems at build time.
	sourceProblems []Problem
}

// build runs the builder on the changes recorded since the last build and
// clears them. It holds the store's lock while building, so sources block
// for the duration of one build (milliseconds) and the builder never sees a
// half-applied change.
func (s *Store) build(b *builder) storeBuild {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.syncedLocked() {
		return storeBuild{}
	}
	ch := s.pending
	s.pending = newChanges()
	return storeBuild{
		buildResult:    b.build(s.idx, ch),
		built:          true,
		changes:        ch.count(),
		sourceProblems: s.sourceProblemsLocked(),
	}
}
