package translate_test

import (
	"fmt"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// BenchmarkGRPCServerListeners translates, for a gRPC proxy with
// certificates, a namespace whose one gRPC service has 10,000 endpoints:
// 10,000 server listeners (every gRPC proxy of the namespace gets them).
func BenchmarkGRPCServerListeners(b *testing.B) {
	key := mesh.PortKey{Namespace: "shop", Name: "huge", Port: 9090}
	snap := &mesh.Snapshot{
		Services:  []*mesh.Service{{Namespace: "shop", Name: "huge", Ports: []mesh.Port{{Port: 9090, Protocol: mesh.ProtocolGRPC}}}},
		Endpoints: map[mesh.PortKey][]mesh.Endpoint{},
	}
	for i := 0; i < 10000; i++ {
		snap.Endpoints[key] = append(snap.Endpoints[key], mesh.Endpoint{
			Address: fmt.Sprintf("10.1.%d.%d", i/256, i%256), Port: 9090, ServiceAccount: "huge",
		})
	}
	p := &mesh.Proxy{ID: "g", Kind: mesh.ProxyGRPC, Namespace: "shop", MTLS: true}
	opts := translate.Options{TrustDomain: "cluster.local"}
	b.ReportAllocs()
	for b.Loop() {
		if r := translate.Translate(snap, p, opts); len(r.Resources[resourcev3.ListenerType]) != 10003 {
			b.Fatalf("%d listeners", len(r.Resources[resourcev3.ListenerType]))
		}
	}
}
