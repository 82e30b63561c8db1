package server

import (
	"context"
	"slices"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

var allTypes = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// envoyLike subscribes a SotW client as Envoy does (CDS and LDS wildcard,
// EDS and RDS by name) and ACKs everything.
func envoyLike(t *testing.T, env *testEnv, names ...string) *sotwClient {
	c := env.sotw(t, envoyNode("envoy-1"))
	for _, typ := range allTypes {
		if typ == resourcev3.ClusterType || typ == resourcev3.ListenerType {
			c.subscribe(typ)
		} else {
			c.subscribe(typ, names...)
		}
		c.ack(c.recvType(typ))
	}
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSotwOrderOnUpdate(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := envoyLike(t, env, "api.default:8080", "web.default:80")

	// One snapshot changes all four types of api: they arrive clusters,
	// endpoints, listeners, routes.
	specs := *twoServices()
	specs[0].withTimeout(4*time.Second).withEndpoints(8080, "10.0.0.9")
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	var got []string
	for range allTypes {
		r := c.recv()
		got = append(got, r.GetTypeUrl())
		c.ack(r)
	}
	if !slices.Equal(got, allTypes) {
		t.Fatalf("order = %v, want CDS, EDS, LDS, RDS", shortTypes(got))
	}
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
}

func TestSotwRemovalOrder(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := envoyLike(t, env, "api.default:8080", "web.default:80")

	specs := *twoServices()
	env.srv.OnSnapshot(context.Background(), snapshotOf(specs[0]), false)

	// The listener goes first; nothing else moves until it is ACKed.
	lds := c.recvType(resourcev3.ListenerType)
	if got := names(lds); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("LDS = %v", got)
	}
	c.expectNone(300 * time.Millisecond)
	c.ack(lds)

	// Then the route, and the cluster only once the route is ACKed.
	rds := c.recvType(resourcev3.RouteType)
	if got := names(rds); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("RDS = %v", got)
	}
	c.expectNone(300 * time.Millisecond)
	c.ack(rds)
	cds := c.recvType(resourcev3.ClusterType)
	if got := names(cds); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("CDS = %v", got)
	}
	c.expectNone(300 * time.Millisecond)
	c.ack(cds)
	// Endpoints last, once the cluster is gone.
	eds := c.recvType(resourcev3.EndpointType)
	if got := names(eds); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("EDS = %v", got)
	}
	c.ack(eds)
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	c.expectNone(200 * time.Millisecond)
}

func TestDeltaOrderAndRemovalOrder(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := env.delta(t, envoyNode("envoy-1"))
	for _, typ := range allTypes {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}
		if typ == resourcev3.EndpointType || typ == resourcev3.RouteType {
			req.ResourceNamesSubscribe = []string{"api.default:8080", "web.default:80"}
		}
		c.send(req)
		r := c.recv()
		if r.GetTypeUrl() != typ || len(r.GetResources()) != 2 {
			t.Fatalf("%s: %v", shortType(typ), deltaNames(r))
		}
		c.ack(r)
	}

	specs := *twoServices()
	specs[0].withTimeout(4*time.Second).withEndpoints(8080, "10.0.0.9")
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	var got []string
	for range allTypes {
		r := c.recv()
		if n := deltaNames(r); !slices.Equal(n, []string{"api.default:8080"}) {
			t.Fatalf("%s update = %v", shortType(r.GetTypeUrl()), n)
		}
		got = append(got, r.GetTypeUrl())
		c.ack(r)
	}
	if !slices.Equal(got, allTypes) {
		t.Fatalf("order = %v", shortTypes(got))
	}

	// Removal of web: listener, route, cluster, endpoints, each after the
	// ACK of the one before.
	env.srv.OnSnapshot(context.Background(), snapshotOf(specs[0]), false)
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		r := c.recv()
		if r.GetTypeUrl() != typ || !slices.Equal(r.GetRemovedResources(), []string{"web.default:80"}) || len(r.GetResources()) != 0 {
			t.Fatalf("got %s removing %v, want %s removing web", shortType(r.GetTypeUrl()), r.GetRemovedResources(), shortType(typ))
		}
		c.expectNone(200 * time.Millisecond)
		c.ack(r)
	}
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
}

func shortTypes(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = shortType(u)
	}
	return out
}
