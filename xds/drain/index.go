package drain

import (
	"net/netip"
	"time"

	"github.com/sluice-mesh/sluice/mesh"
)

// podKey names a pod. Endpoints carry only the pod's name; its namespace is
// the service's (an EndpointSlice refers to pods of its own namespace).
type podKey struct {
	namespace, name string
}

// endpointKey is one address of one service port: the unit a proxy routes to.
type endpointKey struct {
	port mesh.PortKey
	addr string
}

// endpointState is what the index knows of an endpoint.
type endpointState struct {
	pod podKey
	// health is the best health of the address at the port (an address
	// listed twice with different target ports counts as routable if either
	// is).
	health mesh.Health
	// goneAt is when the endpoint left the snapshot; zero while present.
	goneAt time.Time
}

// goneRecord queues a removal for pruning, oldest first.
type goneRecord struct {
	key endpointKey
	at  time.Time
}

// index holds the endpoints of the latest snapshot plus, for retention, the
// endpoints removed since, by pod and by address.
type index struct {
	endpoints map[endpointKey]*endpointState
	byPod     map[podKey]map[endpointKey]struct{}
	byAddr    map[string]map[endpointKey]struct{}
	gone      []goneRecord
	// ports are the endpoint slices of the latest snapshot: a port whose
	// slice is the same (same backing array and length) did not change.
	ports map[mesh.PortKey][]mesh.Endpoint
}

func newIndex() *index {
	return &index{
		endpoints: map[endpointKey]*endpointState{},
		byPod:     map[podKey]map[endpointKey]struct{}{},
		byAddr:    map[string]map[endpointKey]struct{}{},
		ports:     map[mesh.PortKey][]mesh.Endpoint{},
	}
}

// update brings the index to snap at time now. Ports whose endpoint slice
// is unchanged (discovery keeps the slice of a port whose endpoints did not
// change) are skipped, so the cost follows what changed.
func (x *index) update(snap *mesh.Snapshot, now time.Time) {
	for k, old := range x.ports {
		if _, ok := snap.Endpoints[k]; !ok {
			x.diff(k, old, nil, now)
			delete(x.ports, k)
		}
	}
	for k, eps := range snap.Endpoints {
		old, ok := x.ports[k]
		if ok && sameSlice(old, eps) {
			continue
		}
		x.diff(k, old, eps, now)
		x.ports[k] = eps
	}
}

func sameSlice(a, b []mesh.Endpoint) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// diff applies the change of port k from old to eps.
func (x *index) diff(k mesh.PortKey, old, eps []mesh.Endpoint, now time.Time) {
	present := make(map[string]struct{}, len(eps))
	for _, ep := range eps {
		addr := canonicalAddr(ep.Address)
		key := endpointKey{port: k, addr: addr}
		pod := podKey{}
		if ep.Pod != "" {
			pod = podKey{namespace: k.Namespace, name: ep.Pod}
		}
		if _, dup := present[addr]; dup {
			if st := x.endpoints[key]; ep.Health < st.health {
				st.health = ep.Health
			}
			continue
		}
		present[addr] = struct{}{}
		st := x.endpoints[key]
		if st == nil {
			st = &endpointState{}
			x.endpoints[key] = st
			link(x.byAddr, addr, key)
		} else if st.pod != pod {
			unlink(x.byPod, st.pod, key)
		}
		if pod != (podKey{}) {
			link(x.byPod, pod, key)
		}
		st.pod, st.health, st.goneAt = pod, ep.Health, time.Time{}
	}
	for _, ep := range old {
		key := endpointKey{port: k, addr: canonicalAddr(ep.Address)}
		if _, ok := present[key.addr]; ok {
			continue
		}
		if st := x.endpoints[key]; st != nil && st.goneAt.IsZero() {
			st.goneAt = now
			x.gone = append(x.gone, goneRecord{key: key, at: now})
		}
	}
}

// prune forgets endpoints gone for longer than retention.
func (x *index) prune(now time.Time, retention time.Duration) {
	i := 0
	for ; i < len(x.gone) && now.Sub(x.gone[i].at) > retention; i++ {
		r := x.gone[i]
		st := x.endpoints[r.key]
		if st == nil || !st.goneAt.Equal(r.at) {
			continue // came back (and maybe left again: a later record)
		}
		delete(x.endpoints, r.key)
		unlink(x.byPod, st.pod, r.key)
		unlink(x.byAddr, r.key.addr, r.key)
	}
	x.gone = append(x.gone[:0], x.gone[i:]...)
}

// lookup returns the endpoints of a pod and of an address.
func (x *index) lookup(ns, pod, addr string) map[endpointKey]*endpointState {
	out := map[endpointKey]*endpointState{}
	if pod != "" {
		for k := range x.byPod[podKey{namespace: ns, name: pod}] {
			out[k] = x.endpoints[k]
		}
	}
	if addr != "" {
		for k := range x.byAddr[canonicalAddr(addr)] {
			out[k] = x.endpoints[k]
		}
	}
	return out
}

func link[K comparable](m map[K]map[endpointKey]struct{}, k K, e endpointKey) {
	set := m[k]
	if set == nil {
		set = map[endpointKey]struct{}{}
		m[k] = set
	}
	set[e] = struct{}{}
}

func unlink[K comparable](m map[K]map[endpointKey]struct{}, k K, e endpointKey) {
	if set := m[k]; set != nil {
		delete(set, e)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// canonicalAddr writes an IP address as translation does (IPv4-mapped IPv6
// unmapped), so index keys and EDS addresses compare equal.
func canonicalAddr(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return a.Unmap().String()
}
