package drain

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// Target names what to check: a pod (Namespace and Pod), an address (IP),
// or both (their endpoints together).
type Target struct {
	Namespace string
	Pod       string
	IP        string
}

// Validate reports whether the target names something.
func (t Target) Validate() error {
	switch {
	case t.Pod != "" && t.Namespace == "":
		return fmt.Errorf("pod %q without a namespace", t.Pod)
	case t.Pod == "" && t.Namespace != "":
		return fmt.Errorf("namespace %q without a pod", t.Namespace)
	case t.Pod == "" && t.IP == "":
		return fmt.Errorf("need a pod (namespace and name) or an IP address")
	}
	if t.IP != "" {
		if _, err := netip.ParseAddr(t.IP); err != nil {
			return fmt.Errorf("ip %q: %w", t.IP, err)
		}
	}
	return nil
}

func (t Target) String() string {
	var parts []string
	if t.Pod != "" {
		parts = append(parts, t.Namespace+"/"+t.Pod)
	}
	if t.IP != "" {
		parts = append(parts, t.IP)
	}
	return strings.Join(parts, " ")
}

// Status is the drain state of a target.
type Status struct {
	Drained   bool   `json:"drained"`
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	IP        string `json:"ip,omitempty"`
	// Reason says in words why the target is, or is not yet, drained.
	Reason string `json:"reason"`
	// Addresses and Clusters are the target's endpoint addresses and the
	// EDS resources (clusters) they are or were in.
	Addresses []string `json:"addresses,omitempty"`
	Clusters  []string `json:"clusters,omitempty"`
	// Pending lists what holds the drain up (at most maxPending entries);
	// PendingTotal counts them all.
	Pending      []Pending `json:"pending,omitempty"`
	PendingTotal int       `json:"pendingTotal,omitempty"`
	// WaitedSeconds is how long Wait waited.
	WaitedSeconds float64 `json:"waitedSeconds"`
}

// Pending is one thing a drain waits for: a proxy (by node id and stream)
// that may still pick the target in a cluster, or, without a proxy, the
// EndpointSlice still having the target ready.
type Pending struct {
	Cluster string `json:"cluster"`
	Proxy   string `json:"proxy,omitempty"`
	Stream  string `json:"stream,omitempty"`
	Reason  string `json:"reason"`
}

func (p Pending) String() string {
	if p.Proxy == "" && p.Stream == "" {
		return fmt.Sprintf("%s: %s", p.Cluster, p.Reason)
	}
	return fmt.Sprintf("%s: proxy %s (%s) %s", p.Cluster, p.Proxy, p.Stream, p.Reason)
}

// maxPending bounds the pending list of a status.
const maxPending = 50

// Check returns the drain state of the target now.
func (t *Tracker) Check(target Target) Status {
	st := Status{Namespace: target.Namespace, Pod: target.Pod, IP: target.IP}
	t.mu.RLock()
	if !t.seen {
		t.mu.RUnlock()
		st.Reason = "no mesh snapshot yet"
		return st
	}
	found := t.idx.lookup(target.Namespace, target.Pod, target.IP)
	// The addresses to look for in each cluster, and endpoints still ready.
	byPort := map[mesh.PortKey]map[string]struct{}{}
	var ready []Pending
	addrs := map[string]struct{}{}
	for k, es := range found {
		addrs[k.addr] = struct{}{}
		if byPort[k.port] == nil {
			byPort[k.port] = map[string]struct{}{}
		}
		byPort[k.port][k.addr] = struct{}{}
		if es.goneAt.IsZero() && es.health == mesh.Healthy {
			ready = append(ready, Pending{
				Cluster: t.clusterName(k.port),
				Reason:  fmt.Sprintf("endpoint %s is still ready in the EndpointSlices of %s/%s", k.addr, k.port.Namespace, k.port.Name),
			})
		}
	}
	t.mu.RUnlock()

	st.Addresses = sortedKeys(addrs)
	ports := make([]mesh.PortKey, 0, len(byPort))
	for k := range byPort {
		ports = append(ports, k)
		st.Clusters = append(st.Clusters, t.clusterName(k))
	}
	slices.Sort(st.Clusters)
	slices.SortFunc(ports, comparePorts)
	if len(found) == 0 {
		st.Drained = true
		st.Reason = "not an endpoint of any service (or removed more than the retention period ago)"
		return st
	}
	if len(ready) > 0 {
		slices.SortFunc(ready, func(a, b Pending) int { return strings.Compare(a.String(), b.String()) })
		st.Reason = "still ready in the mesh: the EndpointSlice controller has not marked it terminating yet"
		st.setPending(ready)
		return st
	}

	var pending []Pending
	for _, k := range ports {
		name := t.clusterName(k)
		for _, p := range t.acks.PendingAcks(resourcev3.EndpointType, name, notRoutingTo(byPort[k])) {
			pending = append(pending, Pending{Cluster: name, Proxy: p.Proxy, Stream: p.Stream, Reason: p.Reason})
		}
	}
	if len(pending) > 0 {
		st.Reason = "waiting for proxies to apply endpoints without it"
		st.setPending(pending)
		return st
	}
	st.Drained = true
	st.Reason = "every proxy using its clusters has ACKed endpoints that send it no new requests"
	return st
}

func (s *Status) setPending(p []Pending) {
	s.PendingTotal = len(p)
	if len(p) > maxPending {
		p = p[:maxPending]
	}
	s.Pending = p
}

func (t *Tracker) clusterName(k mesh.PortKey) string {
	return translate.ClusterName(k, t.opts.ClusterDomain)
}

// notRoutingTo approves a ClusterLoadAssignment in which no address of addrs
// is offered for new requests: absent, or DRAINING, UNHEALTHY or TIMEOUT.
// HEALTHY, UNKNOWN (which Envoy and gRPC treat as healthy) and DEGRADED
// (used when too few are healthy) endpoints still get new requests.
func notRoutingTo(addrs map[string]struct{}) func(types.Resource) bool {
	return func(r types.Resource) bool {
		cla, ok := r.(*endpointv3.ClusterLoadAssignment)
		if !ok {
			return false
		}
		for _, loc := range cla.GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				addr := canonicalAddr(lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
				if _, ok := addrs[addr]; ok && routable(lb.GetHealthStatus()) {
					return false
				}
			}
		}
		return true
	}
}

func routable(h corev3.HealthStatus) bool {
	switch h {
	case corev3.HealthStatus_DRAINING, corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_TIMEOUT:
		return false
	default:
		return true
	}
}

func comparePorts(a, b mesh.PortKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port))
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
