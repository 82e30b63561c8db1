package discovery

import (
	"cmp"
	"maps"
	"reflect"
	"slices"

	"github.com/sluice-mesh/sluice/mesh"
)

// BuildSnapshot builds a mesh snapshot from Kubernetes objects. It is pure:
// the result depends only on in. Problems are sorted and never stop the
// build; the objects they name are skipped or served with defaults.
//
// Every port of every served service has an entry in Snapshot.Endpoints
// (nil when it has no endpoints). Endpoints in every health state are
// included; translators decide what to offer.
func BuildSnapshot(in Inputs) (*mesh.Snapshot, []Problem) {
	r := newBuilder().build(indexInputs(in), newChanges())
	return r.snapshot, r.problems
}

// buildResult is what one incremental build produced.
type buildResult struct {
	// snapshot is the new snapshot, or the previous one (pointer-equal) when
	// nothing in the model changed.
	snapshot *mesh.Snapshot
	// changed reports whether snapshot differs from the previous one.
	changed bool
	// endpointsOnly: the services are the previous ones (the same slice and
	// pointers); only endpoints changed.
	endpointsOnly   bool
	changedServices []mesh.ServiceKey
	changedPorts    []mesh.PortKey
	// changedRoutes are the ports whose routes were added, changed or
	// removed; a route change is never endpointsOnly.
	changedRoutes []mesh.PortKey
	// problems are all current problems, sorted.
	problems []Problem
	// routeStatuses are the current route statuses; routeStatusChanged
	// says whether they differ from the previous build's (always true on
	// the first build).
	routeStatuses      []RouteStatus
	routeStatusChanged bool
}

// builder builds snapshots incrementally: it keeps what it built last and
// rebuilds only the services and endpoints that the recorded changes touch.
// Unchanged services keep their *mesh.Service pointer, and unchanged ports
// their endpoint slice, across snapshots.
type builder struct {
	snap     *mesh.Snapshot
	services map[mesh.ServiceKey]*mesh.Service
	// servicePorts are the PortKeys each service has in snap.Endpoints.
	servicePorts     map[mesh.ServiceKey][]mesh.PortKey
	serviceProblems  map[mesh.ServiceKey][]Problem
	endpointProblems map[mesh.ServiceKey][]Problem
	// podRefs maps a pod to the services whose endpoints refer to it
	// (usually one); servicePods is the reverse, to drop stale references.
	podRefs     map[objectKey][]mesh.ServiceKey
	servicePods map[mesh.ServiceKey][]objectKey
	// routeProblems and routeStatuses are from the last route resolution.
	routeProblems []Problem
	routeStatuses []RouteStatus
}

func newBuilder() *builder {
	return &builder{
		services:         map[mesh.ServiceKey]*mesh.Service{},
		servicePorts:     map[mesh.ServiceKey][]mesh.PortKey{},
		serviceProblems:  map[mesh.ServiceKey][]Problem{},
		endpointProblems: map[mesh.ServiceKey][]Problem{},
		podRefs:          map[objectKey][]mesh.ServiceKey{},
		servicePods:      map[mesh.ServiceKey][]objectKey{},
	}
}

// build applies the changes recorded since the last build. The first build
// ignores ch and builds everything in idx.
func (b *builder) build(idx *objectIndex, ch *changes) buildResult {
	first := b.snap == nil
	var res buildResult

	// Services: rebuild those whose Service or Namespace changed.
	toRebuild := map[mesh.ServiceKey]struct{}{}
	if first {
		for k := range idx.services {
			toRebuild[k] = struct{}{}
		}
	} else {
		maps.Copy(toRebuild, ch.services)
		if len(ch.namespaces) > 0 {
			for k := range idx.services {
				if _, ok := ch.namespaces[k.Namespace]; ok {
					toRebuild[k] = struct{}{}
				}
			}
		}
	}
	endpointsDirty := map[mesh.ServiceKey]struct{}{}
	for k := range toRebuild {
		var svc *mesh.Service
		var problems []Problem
		if obj := idx.services[k]; obj != nil {
			svc, problems = buildService(obj, idx.namespaces[k.Namespace])
		}
		setOrDelete(b.serviceProblems, k, problems)
		old := b.services[k]
		if old == nil && svc == nil || old != nil && svc != nil && reflect.DeepEqual(old, svc) {
			continue
		}
		res.changedServices = append(res.changedServices, k)
		endpointsDirty[k] = struct{}{}
		if svc == nil {
			delete(b.services, k)
		} else {
			b.services[k] = svc
		}
	}

	// Endpoints: rebuild the services whose slices, pods or model changed.
	if first || ch.nodes {
		for k := range b.services {
			endpointsDirty[k] = struct{}{}
		}
	}
	if first {
		for k := range idx.slicesByService {
			endpointsDirty[k] = struct{}{}
		}
	} else {
		maps.Copy(endpointsDirty, ch.sliceServices)
		for pod := range ch.pods {
			for _, k := range b.podRefs[pod] {
				endpointsDirty[k] = struct{}{}
			}
		}
	}
	var endpoints map[mesh.PortKey][]mesh.Endpoint
	if first {
		endpoints = map[mesh.PortKey][]mesh.Endpoint{}
	}
	for k := range endpointsDirty {
		_, exists := idx.services[k]
		built := buildEndpoints(k, b.services[k], exists, idx)
		setOrDelete(b.endpointProblems, k, built.problems)
		b.setPodRefs(k, built.pods)
		oldPorts := b.servicePorts[k]
		newPorts := slices.SortedFunc(maps.Keys(built.ports), comparePortKeys)
		for _, pk := range oldPorts {
			if _, ok := built.ports[pk]; !ok {
				if endpoints == nil {
					endpoints = maps.Clone(b.snap.Endpoints)
				}
				delete(endpoints, pk)
				res.changedPorts = append(res.changedPorts, pk)
			}
		}
		for _, pk := range newPorts {
			eps := built.ports[pk]
			if !first {
				if old, ok := b.snap.Endpoints[pk]; ok && endpointsEqual(old, eps) {
					continue
				}
			}
			if endpoints == nil {
				endpoints = maps.Clone(b.snap.Endpoints)
			}
			endpoints[pk] = eps
			res.changedPorts = append(res.changedPorts, pk)
		}
		setOrDelete(b.servicePorts, k, newPorts)
	}

	// Routes: resolve them again when a route, a grant or a service changed.
	var routes map[mesh.PortKey]*mesh.PortRoutes
	routesResolved := first || ch.routes || len(res.changedServices) > 0
	if routesResolved {
		rr := resolveRoutes(b.services, idx.routes)
		b.routeProblems = rr.problems
		res.routeStatusChanged = first || !reflect.DeepEqual(rr.statuses, b.routeStatuses)
		b.routeStatuses = rr.statuses
		var prev map[mesh.PortKey]*mesh.PortRoutes
		if !first {
			prev = b.snap.Routes
		}
		routes, res.changedRoutes = mergeRoutes(prev, rr.routes)
	}
	res.routeStatuses = b.routeStatuses

	res.problems = b.problems()
	if !first && len(res.changedServices) == 0 && len(res.changedPorts) == 0 && len(res.changedRoutes) == 0 {
		res.snapshot = b.snap
		return res
	}
	snap := &mesh.Snapshot{Endpoints: endpoints, Routes: routes}
	if endpoints == nil {
		snap.Endpoints = b.snap.Endpoints
	}
	if !routesResolved {
		snap.Routes = b.snap.Routes
	}
	if first || len(res.changedServices) > 0 {
		snap.Services = make([]*mesh.Service, 0, len(b.services))
		for _, svc := range b.services {
			snap.Services = append(snap.Services, svc)
		}
		slices.SortFunc(snap.Services, func(a, b *mesh.Service) int {
			return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		})
	} else {
		snap.Services = b.snap.Services
		res.endpointsOnly = len(res.changedRoutes) == 0
	}
	slices.SortFunc(res.changedServices, compareServiceKeys)
	slices.SortFunc(res.changedPorts, comparePortKeys)
	slices.SortFunc(res.changedRoutes, comparePortKeys)
	b.snap = snap
	res.snapshot, res.changed = snap, true
	return res
}

// setPodRefs records the pods the endpoints of service k refer to.
func (b *builder) setPodRefs(k mesh.ServiceKey, pods []objectKey) {
	for _, pod := range b.servicePods[k] {
		refs := slices.DeleteFunc(b.podRefs[pod], func(s mesh.ServiceKey) bool { return s == k })
		setOrDelete(b.podRefs, pod, refs)
	}
	for _, pod := range pods {
		b.podRefs[pod] = append(b.podRefs[pod], k)
	}
	setOrDelete(b.servicePods, k, pods)
}

// problems returns all current problems, sorted and without duplicates.
func (b *builder) problems() []Problem {
	var out []Problem
	for _, ps := range b.serviceProblems {
		out = append(out, ps...)
	}
	for _, ps := range b.endpointProblems {
		out = append(out, ps...)
	}
	out = append(out, b.routeProblems...)
	return sortProblems(out)
}

func setOrDelete[K comparable, V any](m map[K][]V, k K, v []V) {
	if len(v) == 0 {
		delete(m, k)
	} else {
		m[k] = v
	}
}

func endpointsEqual(a, b []mesh.Endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y mesh.Endpoint) bool {
		return x.Address == y.Address && x.Port == y.Port && x.Zone == y.Zone && x.Health == y.Health &&
			x.Pod == y.Pod && x.ServiceAccount == y.ServiceAccount && maps.Equal(x.Labels, y.Labels)
	})
}

func compareServiceKeys(a, b mesh.ServiceKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

func comparePortKeys(a, b mesh.PortKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port))
}
