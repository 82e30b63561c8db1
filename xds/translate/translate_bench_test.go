package translate_test

import (
	"fmt"
	"sort"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// benchSnapshot builds n services in 10 namespaces, each with one port
// (every fourth TCP, the rest HTTP) and perService endpoints over 3 zones;
// every other service is locality aware.
func benchSnapshot(n, perService int) *mesh.Snapshot {
	s := &mesh.Snapshot{Endpoints: map[mesh.PortKey][]mesh.Endpoint{}}
	for i := 0; i < n; i++ {
		proto := mesh.ProtocolHTTP
		if i%4 == 0 {
			proto = mesh.ProtocolTCP
		}
		svc := &mesh.Service{
			Namespace:  fmt.Sprintf("ns-%d", i%10),
			Name:       fmt.Sprintf("svc-%04d", i),
			ClusterIPs: []string{fmt.Sprintf("10.96.%d.%d", i/256, i%256)},
			Ports:      []mesh.Port{{Name: "p", Port: 8080, Protocol: proto}},
			LB:         mesh.LoadBalancing{LocalityAware: i%2 == 0},
		}
		s.Services = append(s.Services, svc)
		key := mesh.PortKey{Namespace: svc.Namespace, Name: svc.Name, Port: 8080}
		for j := 0; j < perService; j++ {
			s.Endpoints[key] = append(s.Endpoints[key], mesh.Endpoint{
				Address: fmt.Sprintf("10.%d.%d.%d", 1+j, i/256, i%256),
				Port:    8080,
				Zone:    fmt.Sprintf("zone-%d", j%3),
				Health:  mesh.Healthy,
			})
		}
	}
	// Sorted as the snapshot contract says.
	sort.Slice(s.Services, func(i, j int) bool {
		a, b := s.Services[i], s.Services[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	return s
}

var benchProxies = []*mesh.Proxy{
	{ID: "envoy", Kind: mesh.ProxyEnvoy, Namespace: "ns-0", IP: "10.1.0.1", Zone: "zone-0"},
	{ID: "grpc", Kind: mesh.ProxyGRPC, Namespace: "ns-0", Zone: "zone-0"},
}

// BenchmarkTranslate1000Services translates 1,000 services x 10 endpoints
// for one proxy of each kind.
func BenchmarkTranslate1000Services(b *testing.B) {
	snap := benchSnapshot(1000, 10)
	for _, p := range benchProxies {
		b.Run(string(p.Kind), func(b *testing.B) {
			b.ReportAllocs()
			var res translate.Result
			for i := 0; i < b.N; i++ {
				res = translate.Translate(snap, p, translate.Options{})
			}
			if len(res.Resources[resourcev3.ClusterType]) < 1000 {
				b.Fatalf("%d clusters", len(res.Resources[resourcev3.ClusterType]))
			}
		})
	}
}

// BenchmarkEndpoints1000Services is the endpoint-only fast path on the
// same snapshot.
func BenchmarkEndpoints1000Services(b *testing.B) {
	snap := benchSnapshot(1000, 10)
	for _, p := range benchProxies {
		b.Run(string(p.Kind), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if n := len(translate.Endpoints(snap, p, translate.Options{})); n != 1000 {
					b.Fatalf("%d endpoints resources", n)
				}
			}
		})
	}
}
