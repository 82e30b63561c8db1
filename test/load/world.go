package load

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// ServicePort is the one port of every service of the load mesh: HTTP, so
// Envoy gets an HttpConnectionManager and RDS, and gRPC an API listener.
const ServicePort = 8080

// Zones the pods are spread over, with the nodes that carry them.
var zones = []struct{ node, zone string }{
	{"load-node-a", "zone-a"},
	{"load-node-b", "zone-b"},
}

// podNetwork is where the harness's pod IPs come from. No traffic ever goes
// to them: they are only written into EndpointSlices and Pod status.
var podNetwork = netip.MustParseAddr("10.250.0.0")

// World is the mesh the harness writes and the proxies should end up
// with: services of E endpoints spread over namespaces.
type World struct {
	// Domain is the cluster domain (service FQDNs end in .svc.<Domain>).
	Domain string
	// Namespaces the services are spread over, round robin.
	Namespaces []string
	// PerServiceAccounts gives each service's pods their own service
	// account (named after the service); otherwise they use "default".
	PerServiceAccounts bool

	mu       sync.Mutex
	services []*Service
	byFQDN   map[string]*Service
	nextIP   uint32
	nextPod  int
}

// Service is one service of the world and its pods.
type Service struct {
	Index     int
	Namespace string
	Name      string
	// ClusterIP is chosen by the harness (file source) or the API server.
	ClusterIP      string
	ServiceAccount string
	Pods           []*Pod
	// New marks a service created by a change (removed after the case).
	New bool
}

// Route splits the traffic of Service between it (Weight percent) and
// Other, with a GAMMA HTTPRoute.
type Route struct {
	Service *Service
	Other   *Service
	Weight  int
}

// Pod is one endpoint of a service.
type Pod struct {
	Name  string
	IP    string
	Node  string
	Zone  string
	Ready bool
}

// NewWorld returns an empty world.
func NewWorld(domain string, namespaces int, perServiceAccounts bool) *World {
	w := &World{Domain: domain, PerServiceAccounts: perServiceAccounts, byFQDN: map[string]*Service{}}
	for i := range max(namespaces, 1) {
		w.Namespaces = append(w.Namespaces, fmt.Sprintf("load-%d", i))
	}
	return w
}

// FQDN is the service's DNS name.
func (s *Service) FQDN(domain string) string {
	return s.Name + "." + s.Namespace + ".svc." + domain
}

// Key is "<namespace>/<name>".
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// Services returns the services, in creation order (new ones last).
func (w *World) Services() []*Service {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.services)
}

// Grow adds regular services until there are n of them, each with e pods,
// and returns the added ones.
func (w *World) Grow(n, e int) []*Service {
	w.mu.Lock()
	defer w.mu.Unlock()
	var added []*Service
	for i := len(w.services); i < n; i++ {
		s := w.newService(fmt.Sprintf("svc-%04d", i), w.Namespaces[i%len(w.Namespaces)], i, e)
		s.ClusterIP = clusterIP(i)
		added = append(added, s)
	}
	return added
}

// AddNew adds a service created by a change.
func (w *World) AddNew(name string, e int) *Service {
	w.mu.Lock()
	defer w.mu.Unlock()
	idx := len(w.services)
	s := w.newService(name, w.Namespaces[0], idx, e)
	s.ClusterIP = clusterIP(10000 + idx)
	s.New = true
	return s
}

// NewServiceName is the name of the k-th service a case creates; gRPC-like
// proxies subscribe to it in advance.
func NewServiceName(k int) string { return fmt.Sprintf("new-%03d", k) }

// NewServiceFQDN is the FQDN NewServiceName(k) will have.
func (w *World) NewServiceFQDN(k int) string {
	return NewServiceName(k) + "." + w.Namespaces[0] + ".svc." + w.Domain
}

func (w *World) newService(name, ns string, idx, e int) *Service {
	s := &Service{Index: idx, Namespace: ns, Name: name, ServiceAccount: "default"}
	if w.PerServiceAccounts {
		s.ServiceAccount = name
	}
	for j := range e {
		s.Pods = append(s.Pods, w.newPod(s, j))
	}
	w.services = append(w.services, s)
	w.byFQDN[s.FQDN(w.Domain)] = s
	return s
}

// newPod returns a ready pod of s with a new IP and name.
func (w *World) newPod(s *Service, slot int) *Pod {
	w.nextIP++
	b := podNetwork.As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n += w.nextIP
	ip := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	z := zones[slot%len(zones)]
	w.nextPod++
	return &Pod{
		Name:  fmt.Sprintf("%s-%d-%05d", s.Name, slot, w.nextPod),
		IP:    ip.String(),
		Node:  z.node,
		Zone:  z.zone,
		Ready: true,
	}
}

// Remove forgets a service.
func (w *World) Remove(s *Service) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.services = slices.DeleteFunc(w.services, func(x *Service) bool { return x == s })
	delete(w.byFQDN, s.FQDN(w.Domain))
}

// Restart replaces pod slot of s by a new pod (new name and IP) and returns
// the old and new pods.
func (w *World) Restart(s *Service, slot int) (old, repl *Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	old = s.Pods[slot]
	repl = w.newPod(s, slot)
	pods := slices.Clone(s.Pods)
	pods[slot] = repl
	s.Pods = pods
	return old, repl
}

// SetReady flips the readiness of pod slot of s.
func (w *World) SetReady(s *Service, slot int, ready bool) *Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := *s.Pods[slot]
	p.Ready = ready
	pods := slices.Clone(s.Pods)
	pods[slot] = &p
	s.Pods = pods
	return &p
}

// SetClusterIP records the address the API server gave s.
func (w *World) SetClusterIP(s *Service, ip string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s.ClusterIP = ip
}

// ClusterIP returns the address of s.
func (w *World) ClusterIP(s *Service) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return s.ClusterIP
}

// expected is, per service FQDN, the endpoints ("ip:port") a proxy should
// hold as healthy. It is a copy: the world may change afterwards.
type expected map[string][]string

// Expected returns what proxies should hold now.
func (w *World) Expected() expected {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(expected, len(w.services))
	for _, s := range w.services {
		var eps []string
		for _, p := range s.Pods {
			if p.Ready {
				eps = append(eps, endpointAddr(p))
			}
		}
		out[s.FQDN(w.Domain)] = eps
	}
	return out
}

func endpointAddr(p *Pod) string { return fmt.Sprintf("%s:%d", p.IP, ServicePort) }

// clusterIP is the harness's ClusterIP of service i (file source only).
func clusterIP(i int) string {
	return fmt.Sprintf("10.96.%d.%d", 1+i/250, 1+i%250)
}
