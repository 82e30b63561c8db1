package server

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"

	"github.com/sluice-mesh/sluice/mesh"
)

// TestGRPCClient points a real grpc-go xDS client at the server and checks
// where its RPCs land: spread over every endpoint, and not on an endpoint
// once its removal is ACKed.
func TestGRPCClient(t *testing.T) {
	var backends []string
	for range 3 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		go gs.Serve(lis)
		t.Cleanup(gs.Stop)
		backends = append(backends, lis.Addr().String())
	}
	snapWith := func(addrs []string) *mesh.Snapshot {
		s := service("default", "api", 8080)
		for _, a := range addrs {
			host, port, _ := net.SplitHostPort(a)
			var p uint32
			fmt.Sscan(port, &p)
			s.eps = append(s.eps, mesh.Endpoint{Address: host, Port: p, Zone: "a", Health: mesh.Healthy})
		}
		return snapshotOf(s)
	}
	env := newTestEnv(t, nil, snapWith(backends))

	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "grpc-e2e", "metadata": {"NAMESPACE": "default"}}
	}`, env.addr)
	resolver, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///api.default:8080", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	call := func(ctx context.Context) (string, error) {
		var p peer.Peer
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true)); err != nil {
			return "", err
		}
		return p.Addr.String(), nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hits := map[string]int{}
	for range 30 {
		addr, err := call(ctx)
		if err != nil {
			t.Fatalf("RPC through xds:///api.default:8080: %v", err)
		}
		hits[addr]++
	}
	t.Logf("RPCs per backend: %v", hits)
	for _, b := range backends {
		if hits[b] == 0 {
			t.Errorf("backend %s got no RPC: %v", b, hits)
		}
	}
	if err := env.srv.WaitAllAcked(ctx, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}

	// Remove one endpoint (fast path); once ACKed it gets no new RPC.
	env.srv.OnSnapshot(ctx, snapWith(backends[:2]), true)
	if err := env.srv.WaitAllAcked(ctx, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	// The client applies the update right after ACKing it; allow it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for clean := 0; clean < 30; {
		addr, err := call(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if addr == backends[2] {
			clean = 0
			if time.Now().After(deadline) {
				t.Fatalf("removed backend %s still gets RPCs", addr)
			}
			continue
		}
		clean++
	}
	p := env.srv.Proxies()
	if len(p) != 1 || p[0].ID != "grpc-e2e" || p[0].Kind != "grpc" || len(p[0].Types) != 4 {
		t.Fatalf("Proxies() = %+v", p)
	}
	for _, ts := range p[0].Types {
		if ts.AckedVersion == "" || ts.LastNack != nil {
			t.Errorf("%s: acked %q, nack %+v", shortType(ts.TypeURL), ts.AckedVersion, ts.LastNack)
		}
	}
}
