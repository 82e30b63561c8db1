package translate_test

import (
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// EndpointInputs is sound: for endpoint-only changes, equal inputs mean
// equal listeners, routes, clusters and warnings. And it is precise
// enough to keep the fast path for what only reaches EDS (health, zone,
// endpoints elsewhere).
func TestEndpointInputs(t *testing.T) {
	grpcKey := mesh.PortKey{Namespace: "shop", Name: "cart", Port: 9090}
	httpKey := mesh.PortKey{Namespace: "shop", Name: "web", Port: 80}
	base := func() *mesh.Snapshot {
		return &mesh.Snapshot{
			Services: []*mesh.Service{
				{Namespace: "shop", Name: "cart", ClusterIPs: []string{"10.96.0.1"}, TLSMode: mesh.TLSStrict, Ports: []mesh.Port{{Port: 9090, Protocol: mesh.ProtocolGRPC}}},
				{Namespace: "shop", Name: "web", ClusterIPs: []string{"10.96.0.2"}, Ports: []mesh.Port{{Port: 80, Protocol: mesh.ProtocolHTTP}}},
			},
			Endpoints: map[mesh.PortKey][]mesh.Endpoint{
				grpcKey: {{Address: "10.0.0.1", Port: 9090, Zone: "a", ServiceAccount: "cart"}, {Address: "10.0.0.2", Port: 9090, Zone: "a", ServiceAccount: "cart"}},
				httpKey: {{Address: "10.0.0.1", Port: 8080, Zone: "a", ServiceAccount: "cart"}},
			},
		}
	}
	variants := map[string]struct {
		change func(s *mesh.Snapshot)
		// same is whether non-EDS output stays the same for the Envoy
		// proxy at 10.0.0.1 and for the gRPC proxy of shop.
		sameEnvoy, sameGRPC bool
	}{
		"health":       {func(s *mesh.Snapshot) { s.Endpoints[grpcKey][1].Health = mesh.Draining }, true, true},
		"zone and pod": {func(s *mesh.Snapshot) { s.Endpoints[grpcKey][1].Zone, s.Endpoints[grpcKey][1].Pod = "b", "x" }, true, true},
		"a grpc endpoint elsewhere": {func(s *mesh.Snapshot) {
			s.Endpoints[grpcKey] = append(s.Endpoints[grpcKey], mesh.Endpoint{Address: "10.0.0.3", Port: 9090, ServiceAccount: "cart"})
		}, true, false},
		"an http endpoint elsewhere": {func(s *mesh.Snapshot) {
			s.Endpoints[httpKey] = append(s.Endpoints[httpKey], mesh.Endpoint{Address: "10.0.0.3", Port: 8080, ServiceAccount: "cart"})
		}, true, true},
		"an endpoint at the proxy":   {func(s *mesh.Snapshot) { s.Endpoints[httpKey][0].Port = 8081 }, false, true},
		"a new service account":      {func(s *mesh.Snapshot) { s.Endpoints[grpcKey][1].ServiceAccount = "cart-v2" }, false, false},
		"an unknown service account": {func(s *mesh.Snapshot) { s.Endpoints[grpcKey][1].ServiceAccount = "" }, false, false},
		"endpoints removed":          {func(s *mesh.Snapshot) { delete(s.Endpoints, grpcKey) }, false, false},
	}
	opts := translate.Options{TrustDomain: "cluster.local"}
	proxies := map[string]*mesh.Proxy{
		"envoy": {ID: "e", Kind: mesh.ProxyEnvoy, Namespace: "shop", IP: "10.0.0.1", MTLS: true},
		"grpc":  {ID: "g", Kind: mesh.ProxyGRPC, Namespace: "shop", MTLS: true},
	}
	for name, v := range variants {
		for kind, p := range proxies {
			t.Run(name+"/"+kind, func(t *testing.T) {
				a, b := base(), base()
				v.change(b)
				sameInputs := translate.EndpointInputs(a, p, opts) == translate.EndpointInputs(b, p, opts)
				ra, rb := translate.Translate(a, p, opts), translate.Translate(b, p, opts)
				sameOutput := cmp.Equal(ra.Warnings, rb.Warnings)
				for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType} {
					sameOutput = sameOutput && cmp.Equal(ra.Resources[typ], rb.Resources[typ], protocmp.Transform())
				}
				if sameInputs && !sameOutput {
					t.Errorf("EndpointInputs unchanged but Translate's non-EDS output changed: the fast path would serve stale resources")
				}
				want := v.sameEnvoy
				if kind == "grpc" {
					want = v.sameGRPC
				}
				if sameInputs != want {
					t.Errorf("EndpointInputs unchanged = %v, want %v", sameInputs, want)
				}
			})
		}
	}
}
