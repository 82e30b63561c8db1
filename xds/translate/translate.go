package translate

import (
	"fmt"
	"sort"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-mesh/sluice/mesh"
)

// DefaultClusterDomain is used when Options.ClusterDomain is empty.
const DefaultClusterDomain = "cluster.local"

// Translate returns the LDS, RDS, CDS and EDS resources for one proxy. The
// result always has an entry (possibly empty) for each of the four type
// URLs, each sorted by name. A proxy with an empty Kind is treated as
// proxyless gRPC, the kind of a client that sent no metadata.
func Translate(snap *mesh.Snapshot, p *mesh.Proxy, opts Options) Result {
	t := newTranslator(snap, p, opts)
	res := map[string][]types.Resource{
		resourcev3.ListenerType: nil,
		resourcev3.RouteType:    nil,
		resourcev3.ClusterType:  nil,
		resourcev3.EndpointType: nil,
	}
	if t.ok() {
		ports := t.servicePorts()
		switch t.kind {
		case mesh.ProxyGRPC:
			res[resourcev3.ListenerType] = append(t.grpcListeners(ports), t.grpcServerListeners(ports)...)
			res[resourcev3.RouteType] = t.grpcRoutes(ports)
			res[resourcev3.ClusterType] = t.grpcClusters(ports)
		case mesh.ProxyEnvoy:
			res[resourcev3.ListenerType] = t.envoyListeners(ports)
			res[resourcev3.RouteType] = t.envoyRoutes(ports)
			res[resourcev3.ClusterType] = t.envoyClusters(ports)
		}
		res[resourcev3.EndpointType] = t.endpoints(ports)
		t.warnStrictWithoutCertificates()
	}
	for typ := range res {
		sortByName(res[typ])
	}
	return Result{Resources: res, Warnings: t.sortedWarnings()}
}

// Endpoints returns only the EDS resources of Translate, sorted by name:
// the fast path for a snapshot that differs from the previous one in
// endpoints alone. Its warnings are those of Translate and are dropped here.
func Endpoints(snap *mesh.Snapshot, p *mesh.Proxy, opts Options) []types.Resource {
	t := newTranslator(snap, p, opts)
	if !t.ok() {
		return nil
	}
	out := t.endpoints(t.servicePorts())
	sortByName(out)
	return out
}

// translator carries the arguments of one translation and collects its
// warnings. It is used by one goroutine and thrown away.
type translator struct {
	snap   *mesh.Snapshot
	proxy  *mesh.Proxy
	kind   mesh.ProxyKind
	domain string
	// trustDomain is Options.TrustDomain; empty when mutual TLS is off.
	trustDomain string
	// strictWithoutCertificates lists the STRICT services a proxy without
	// certificates calls (one warning for all, see tls.go).
	strictWithoutCertificates []string
	warnings                  []string
	// lb caches the resolved load-balancing settings of each service so
	// that a setting's warning is recorded once.
	lb map[mesh.ServiceKey]*lbConfig
	// inbound caches inboundPorts; nil until computed.
	inbound []inboundPort
	// portIndex holds the ports servicePorts returned, by key: the service
	// ports a route may send traffic to.
	portIndex map[mesh.PortKey]servicePort
}

func newTranslator(snap *mesh.Snapshot, p *mesh.Proxy, opts Options) *translator {
	t := &translator{snap: snap, proxy: p, domain: opts.ClusterDomain, trustDomain: opts.TrustDomain, lb: map[mesh.ServiceKey]*lbConfig{}}
	if t.domain == "" {
		t.domain = DefaultClusterDomain
	}
	switch {
	case snap == nil:
		t.warnf("no snapshot: nothing to translate")
	case p == nil:
		t.warnf("no proxy: nothing to translate")
	case p.Kind == "" || p.Kind == mesh.ProxyGRPC:
		t.kind = mesh.ProxyGRPC
	case p.Kind == mesh.ProxyEnvoy:
		t.kind = mesh.ProxyEnvoy
	default:
		t.warnf("proxy %q: unknown kind %q: nothing to translate", p.ID, p.Kind)
	}
	return t
}

func (t *translator) ok() bool { return t.kind != "" }

func (t *translator) warnf(format string, args ...any) {
	t.warnings = append(t.warnings, fmt.Sprintf(format, args...))
}

func (t *translator) sortedWarnings() []string {
	if len(t.warnings) == 0 {
		return nil
	}
	sort.Strings(t.warnings)
	out := t.warnings[:1]
	for _, w := range t.warnings[1:] {
		if w != out[len(out)-1] {
			out = append(out, w)
		}
	}
	return out
}

// servicePort is one port of one service, the unit that becomes a cluster.
type servicePort struct {
	svc  *mesh.Service
	port mesh.Port
	key  mesh.PortKey
}

// servicePorts lists the translatable ports of the snapshot in key order,
// skipping (with a warning) what cannot become a cluster.
func (t *translator) servicePorts() []servicePort {
	var out []servicePort
	for _, svc := range t.snap.Services {
		if svc == nil {
			continue
		}
		if svc.Name == "" || svc.Namespace == "" {
			t.warnf("service %q: missing name or namespace: skipped", svc.Key().String())
			continue
		}
		seen := make(map[uint32]bool, len(svc.Ports))
		for _, port := range svc.Ports {
			key := mesh.PortKey{Namespace: svc.Namespace, Name: svc.Name, Port: port.Port}
			switch {
			case port.Port == 0 || port.Port > 65535:
				t.warnf("%s: invalid port %d: skipped", svc.Key(), port.Port)
				continue
			case seen[port.Port]:
				t.warnf("%s: duplicate port %d: only the first is served", svc.Key(), port.Port)
				continue
			}
			seen[port.Port] = true
			out = append(out, servicePort{svc: svc, port: port, key: key})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return portKeyLess(out[i].key, out[j].key) })
	t.portIndex = make(map[mesh.PortKey]servicePort, len(out))
	for _, sp := range out {
		t.portIndex[sp.key] = sp
	}
	return out
}

func portKeyLess(a, b mesh.PortKey) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Port < b.Port
}

func sortByName(rs []types.Resource) {
	sort.SliceStable(rs, func(i, j int) bool {
		return resourceName(rs[i]) < resourceName(rs[j])
	})
}

// resourceName returns the xDS name of a resource: the cluster_name of a
// ClusterLoadAssignment, the name of anything else.
func resourceName(r types.Resource) string {
	switch v := r.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return v.GetClusterName()
	case interface{ GetName() string }:
		return v.GetName()
	}
	return ""
}
