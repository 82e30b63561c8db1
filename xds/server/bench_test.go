package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-mesh/sluice/mesh"
)

// BenchmarkEndpointChange measures one endpoint change delivered to 1,000
// connected proxyless gRPC clients (SotW ADS over loopback TCP, 10
// connections of 100 streams), each subscribed by name to the LDS, RDS, CDS
// and EDS of one service of a 100-service mesh: from OnSnapshot to every
// client having ACKed the new EDS. The clients run in the same process, so
// time and allocations include their side (receiving, decoding, ACKing).
func BenchmarkEndpointChange(b *testing.B) {
	const proxies, conns, services = 1000, 10, 100
	specs := make([]*svcSpec, services)
	snapWith := func(extra string) *mesh.Snapshot {
		for i := range specs {
			specs[i] = service("default", fmt.Sprintf("svc-%03d", i), 8080).withEndpoints(8080, "10.0.0.1", "10.0.0.2")
		}
		specs[0].withEndpoints(8080, extra)
		return snapshotOf(specs...)
	}
	env := newTestEnv(b, nil, snapWith("10.0.1.0"))
	var cc []*grpc.ClientConn
	for range conns {
		conn, err := grpc.NewClient(env.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		cc = append(cc, conn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	name := "svc-000.default:8080"
	for i := range proxies {
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc[i%conns]).StreamAggregatedResources(ctx)
		if err != nil {
			b.Fatal(err)
		}
		node := grpcNode(fmt.Sprintf("client-%d", i), map[string]string{MetaNamespace: "default"})
		for j, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
			req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, ResourceNames: []string{name}}
			if j == 0 {
				req.Node = node
			}
			if err := stream.Send(req); err != nil {
				b.Fatal(err)
			}
		}
		go func() { // ACK everything
			for {
				r, err := stream.Recv()
				if err != nil {
					return
				}
				if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: []string{name}, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
					return
				}
			}
		}()
	}
	wait := func() {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		if err := env.srv.WaitAllAcked(wctx, env.srv.Seq()); err != nil {
			b.Fatal(err)
		}
	}
	// WaitAllAcked counts the streams whose first request arrived.
	for start := time.Now(); len(env.srv.Proxies()) != proxies; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			b.Fatalf("%d proxies connected, want %d", len(env.srv.Proxies()), proxies)
		}
	}
	wait()
	pushes := func() float64 {
		mfs, _ := env.reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "sluice_xds_pushes_total" {
				var sum float64
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
				return sum
			}
		}
		return 0
	}
	before := pushes()

	b.ReportAllocs()
	b.ResetTimer()
	var inSnapshot time.Duration
	for i := 0; i < b.N; i++ {
		snap := snapWith(fmt.Sprintf("10.0.1.%d", i%250+1))
		start := time.Now()
		env.srv.OnSnapshot(ctx, snap, true)
		inSnapshot += time.Since(start)
		wait()
	}
	b.StopTimer()
	if got, want := pushes()-before, float64(b.N*proxies); got != want {
		b.Fatalf("%v responses for %d changes to %d proxies, want %v (EDS only)", got, b.N, proxies, want)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*proxies), "ns/proxy")
	// OnSnapshot alone: EDS translation, marshaling, and queuing a response
	// for every proxy.
	b.ReportMetric(float64(inSnapshot.Nanoseconds())/float64(b.N), "ns-OnSnapshot/op")
}
