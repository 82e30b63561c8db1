package translate

import (
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-mesh/sluice/mesh"
)

// grpcRoutes returns one route configuration per service port, with one
// virtual host whose domains are the port's listener names (grpc-go matches
// the virtual host on the name the client dialed) and the port's routes
// (routesFor): its Gateway API rules, or one route sending every RPC to the
// port's cluster.
func (t *translator) grpcRoutes(ports []servicePort) []types.Resource {
	out := make([]types.Resource, 0, len(ports))
	for _, sp := range ports {
		name := GRPCRouteName(sp.key, t.domain)
		out = append(out, &routev3.RouteConfiguration{
			Name: name,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    name,
				Domains: GRPCListenerNames(sp.key, t.domain),
				Routes:  t.routesFor(sp),
			}},
		})
	}
	return out
}

// clusterRoute sends every request to the service port's cluster, hashing
// as the service's ring hash asks. The route timeout is disabled: the
// default 15s would cut long-lived streams (gRPC streaming, watches).
func (t *translator) clusterRoute(sp servicePort) *routev3.Route {
	return &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(sp.key, t.domain)},
			HashPolicy:       t.lbFor(sp.svc).hashPolicies(),
			Timeout:          t.routeTimeout(),
		}},
	}
}

// routeTimeout is nil for gRPC, which ignores it, and zero (no timeout)
// for Envoy.
func (t *translator) routeTimeout() *durationpb.Duration {
	if t.kind == mesh.ProxyGRPC {
		return nil
	}
	return durationpb.New(0)
}

// envoyRoutes returns one route configuration per port that has an HTTP
// service, named EnvoyRouteName(port), shared by the virtual listeners of
// every HTTP service on that port. It holds a virtual host per service,
// matching every name of the service (hostDomains) and holding the port's
// routes (routesFor), and a last "allow_any"
// virtual host that forwards requests for any other host to their original
// destination, as if there were no sidecar.
func (t *translator) envoyRoutes(ports []servicePort) []types.Resource {
	byPort := map[uint32][]servicePort{}
	var order []uint32
	for _, sp := range ports {
		if !sp.port.Protocol.IsHTTP() {
			if t.snap.Routes[sp.key] != nil {
				t.warnf("%s: routes attach to port %d, which is not HTTP (protocol %q): Envoy proxies it as TCP and does not apply them", sp.svc.Key(), sp.key.Port, sp.port.Protocol)
			}
			continue
		}
		if _, ok := byPort[sp.key.Port]; !ok {
			order = append(order, sp.key.Port)
		}
		byPort[sp.key.Port] = append(byPort[sp.key.Port], sp)
	}
	sortUint32(order)
	out := make([]types.Resource, 0, len(order))
	for _, port := range order {
		name := EnvoyRouteName(port)
		rc := &routev3.RouteConfiguration{Name: name}
		used := map[string]string{}
		for _, sp := range byPort[port] {
			vhName := GRPCRouteName(sp.key, t.domain)
			var domains []string
			for _, d := range hostDomains(sp.svc, port, t.proxy.Namespace, t.domain) {
				if other, dup := used[d]; dup {
					t.warnf("%s: host %q is also a name of %s: routed there", vhName, d, other)
					continue
				}
				used[d] = vhName
				domains = append(domains, d)
			}
			if len(domains) == 0 {
				continue
			}
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
				Name:    vhName,
				Domains: domains,
				Routes:  t.routesFor(sp),
			})
		}
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    "allow_any",
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: PassthroughCluster},
					Timeout:          durationpb.New(0),
				}},
			}},
		})
		out = append(out, rc)
	}
	return out
}

func sortUint32(s []uint32) { sort.Slice(s, func(i, j int) bool { return s[i] < s[j] }) }
