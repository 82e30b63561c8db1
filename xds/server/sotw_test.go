package server

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-mesh/sluice/mesh"
)

func twoServices() *svcSpecs {
	return &svcSpecs{
		service("default", "api", 8080).withEndpoints(8080, "10.0.0.1", "10.0.0.2"),
		service("default", "web", 80).withEndpoints(80, "10.0.0.3"),
	}
}

type svcSpecs []*svcSpec

func (s *svcSpecs) snapshot() *mesh.Snapshot { return snapshotOf(*s...) }

func TestSotwWildcardAsEnvoy(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := env.sotw(t, envoyNode("envoy-1"))

	c.subscribe(resourcev3.ClusterType) // empty names: legacy wildcard
	cds := c.recvType(resourcev3.ClusterType)
	if got, want := names(cds), []string{"api.default:8080", "web.default:80"}; !slices.Equal(got, want) {
		t.Fatalf("CDS names = %v, want %v", got, want)
	}
	c.ack(cds)

	c.subscribe(resourcev3.EndpointType, "api.default:8080", "web.default:80")
	eds := c.recvType(resourcev3.EndpointType)
	if got := names(eds); len(got) != 2 {
		t.Fatalf("EDS names = %v", got)
	}
	c.ack(eds)

	c.subscribe(resourcev3.ListenerType, "*") // explicit wildcard
	lds := c.recvType(resourcev3.ListenerType)
	if got := names(lds); len(got) != 2 {
		t.Fatalf("LDS names = %v", got)
	}
	c.ack(lds)
	c.subscribe(resourcev3.RouteType, "api.default:8080")
	rds := c.recvType(resourcev3.RouteType)
	if got := names(rds); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("RDS names = %v", got)
	}
	c.ack(rds)
	c.expectNone(200 * time.Millisecond)

	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	if v, ok := env.srv.AckedVersion("envoy-1", resourcev3.ClusterType); !ok || v != cds.GetVersionInfo() {
		t.Errorf("AckedVersion(CDS) = %q, %v; want %q", v, ok, cds.GetVersionInfo())
	}
	proxies := env.srv.Proxies()
	if len(proxies) != 1 || proxies[0].Kind != "envoy" || proxies[0].Namespace != "default" || proxies[0].IP != "10.1.0.1" || len(proxies[0].Types) != 4 {
		t.Fatalf("Proxies() = %+v", proxies)
	}
	if ts := proxies[0].Types[0]; ts.TypeURL != resourcev3.ClusterType || ts.AckedNonce != cds.GetNonce() || ts.Resources != 2 || !ts.Wildcard {
		t.Errorf("CDS status = %+v", ts)
	}
	if got := env.metric("sluice_xds_connected_proxies", map[string]string{"kind": "envoy"}); got != 1 {
		t.Errorf("connected envoy proxies = %v, want 1", got)
	}

	// A new service reaches the wildcard subscriptions, not the named ones.
	specs := append(*twoServices(), service("other", "db", 5432).withEndpoints(5432, "10.0.1.1"))
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	cds2 := c.recvType(resourcev3.ClusterType)
	if got := names(cds2); len(got) != 3 || cds2.GetVersionInfo() == cds.GetVersionInfo() {
		t.Fatalf("CDS after add = %v version %s", got, cds2.GetVersionInfo())
	}
	c.ack(cds2)
	lds2 := c.recvType(resourcev3.ListenerType)
	if got := names(lds2); len(got) != 3 {
		t.Fatalf("LDS after add = %v", got)
	}
	c.ack(lds2)
	c.expectNone(200 * time.Millisecond)
}

func TestSotwByNameAsGRPC(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := env.sotw(t, grpcNode("grpc-1", nil)) // no metadata at all

	c.subscribe(resourcev3.ListenerType, "api.default:8080")
	lds := c.recvType(resourcev3.ListenerType)
	if got := names(lds); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("LDS = %v", got)
	}
	c.ack(lds)

	// A second channel asks for a listener that does not exist: LDS is full
	// state, so the answer (without it) tells the client right away.
	c.subscribe(resourcev3.ListenerType, "api.default:8080", "nope.default:1")
	lds2 := c.recvType(resourcev3.ListenerType)
	if got := names(lds2); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("LDS with a missing name = %v", got)
	}
	c.ack(lds2)

	c.subscribe(resourcev3.RouteType, "api.default:8080")
	c.ack(c.recvType(resourcev3.RouteType))
	c.subscribe(resourcev3.ClusterType, "api.default:8080")
	cds := c.recvType(resourcev3.ClusterType)
	if got := names(cds); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("CDS = %v", got)
	}
	c.ack(cds)
	c.subscribe(resourcev3.EndpointType, "api.default:8080")
	eds := c.recvType(resourcev3.EndpointType)
	if got := names(eds); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("EDS = %v", got)
	}
	c.ack(eds)
	c.expectNone(200 * time.Millisecond)

	// A change to a service it does not use reaches nobody.
	specs := *twoServices()
	specs[1].withTimeout(3*time.Second).withEndpoints(80, "10.0.0.9")
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	c.expectNone(300 * time.Millisecond)
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	if p := env.srv.Proxies(); len(p) != 1 || p[0].Kind != "grpc" {
		t.Fatalf("Proxies() = %+v", p)
	}
}

func TestSotwNackIsRecordedAndNotResent(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := env.sotw(t, grpcNode("grpc-1", nil))
	c.subscribe(resourcev3.ClusterType, "api.default:8080")
	first := c.recvType(resourcev3.ClusterType)
	c.ack(first)

	specs := *twoServices()
	specs[0].withTimeout(2 * time.Second)
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	bad := c.recvType(resourcev3.ClusterType)
	c.nack(bad, "connect_timeout too long")

	// No resend loop: the rejected version is not sent again.
	c.expectNone(500 * time.Millisecond)
	if got := env.metric("sluice_xds_nacks_total", map[string]string{"type": "cluster"}); got != 1 {
		t.Errorf("nacks = %v, want 1", got)
	}
	if v, _ := env.srv.AckedVersion("grpc-1", resourcev3.ClusterType); v != first.GetVersionInfo() {
		t.Errorf("AckedVersion = %q, want the last accepted %q", v, first.GetVersionInfo())
	}
	p := env.srv.Proxies()
	if n := p[0].Types[0].LastNack; n == nil || n.Version != bad.GetVersionInfo() || n.Nonce != bad.GetNonce() || n.Message != "connect_timeout too long" {
		t.Errorf("LastNack = %+v", n)
	}
	if !strings.Contains(env.logs.String(), "connect_timeout too long") {
		t.Errorf("NACK not logged: %s", env.logs.String())
	}
	// The proxy is not up to date while on its NACK.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := env.srv.WaitAllAcked(ctx, env.srv.Seq()); err == nil || !strings.Contains(err.Error(), "NACKed") {
		t.Errorf("WaitAllAcked = %v, want a timeout naming the NACK", err)
	}

	// The next change is sent and accepted.
	specs[0].withTimeout(3 * time.Second)
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	good := c.recvType(resourcev3.ClusterType)
	if good.GetVersionInfo() == bad.GetVersionInfo() {
		t.Fatal("same version after a change")
	}
	c.ack(good)
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	if got := env.metric("sluice_xds_change_to_ack_seconds", map[string]string{"type": "cluster"}); got != 1 {
		t.Errorf("change-to-ACK observations = %v, want 1 (the NACKed change is not an ACK)", got)
	}
}

func TestSotwUnsubscribe(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := env.sotw(t, grpcNode("grpc-1", nil))
	c.subscribe(resourcev3.EndpointType, "api.default:8080", "web.default:80")
	both := c.recvType(resourcev3.EndpointType)
	if len(both.GetResources()) != 2 {
		t.Fatalf("EDS = %v", names(both))
	}
	c.ack(both)

	c.names[resourcev3.EndpointType] = []string{"api.default:8080"}
	c.subscribe(resourcev3.EndpointType, "api.default:8080")
	one := c.recvType(resourcev3.EndpointType)
	if got := names(one); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("EDS after unsubscribing web = %v", got)
	}
	c.ack(one)

	// Changes to what it no longer watches are not sent.
	specs := *twoServices()
	specs[1].withEndpoints(80, "10.0.0.8")
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), true)
	c.expectNone(300 * time.Millisecond)

	// Subscribing again gets it back.
	c.subscribe(resourcev3.EndpointType, "api.default:8080", "web.default:80")
	again := c.recvType(resourcev3.EndpointType)
	if len(again.GetResources()) != 2 {
		t.Fatalf("EDS after resubscribing = %v", names(again))
	}
}

func TestSotwFirstRequestBeforeSnapshotWaits(t *testing.T) {
	env := newTestEnv(t, nil, nil)
	if err := env.srv.Ready(); err == nil {
		t.Fatal("Ready before any snapshot")
	}
	c := env.sotw(t, envoyNode("envoy-1"))
	c.subscribe(resourcev3.ClusterType)
	c.expectNone(200 * time.Millisecond) // no empty configuration before the first snapshot
	env.srv.OnSnapshot(context.Background(), twoServices().snapshot(), false)
	if got := names(c.recvType(resourcev3.ClusterType)); len(got) != 2 {
		t.Fatalf("CDS = %v", got)
	}
	if err := env.srv.Ready(); err != nil {
		t.Fatal(err)
	}
}

func TestSotwEmptyFirstResponse(t *testing.T) {
	env := newTestEnv(t, nil, snapshotOf())
	c := env.sotw(t, envoyNode("envoy-1"))
	c.subscribe(resourcev3.ClusterType)
	if r := c.recvType(resourcev3.ClusterType); len(r.GetResources()) != 0 {
		t.Fatalf("CDS of an empty mesh = %v", names(r))
	}
}

func TestFetch(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	cds := clusterserviceClient(env)
	resp, err := cds.FetchClusters(context.Background(), fetchRequest("api.default:8080"))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(resp); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("FetchClusters = %v", got)
	}
	var cl clusterv3.Cluster
	if err := resp.GetResources()[0].UnmarshalTo(&cl); err != nil || cl.GetEdsClusterConfig().GetServiceName() != "api.default:8080" {
		t.Fatalf("cluster = %v, %v", &cl, err)
	}
}

func waitAcked(env *testEnv, seq uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	return env.srv.WaitAllAcked(ctx, seq)
}

func clusterserviceClient(env *testEnv) clusterservice.ClusterDiscoveryServiceClient {
	return clusterservice.NewClusterDiscoveryServiceClient(env.conn)
}

func fetchRequest(names ...string) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{Node: grpcNode("fetch", nil), TypeUrl: resourcev3.ClusterType, ResourceNames: names}
}
