package server

import (
	"context"
	"slices"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
)

func TestDeltaWildcardUpdatesAndRemovals(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := env.delta(t, envoyNode("envoy-1"))
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	first := c.recv()
	if got := deltaNames(first); !slices.Equal(got, []string{"api.default:8080", "web.default:80"}) {
		t.Fatalf("CDS = %v", got)
	}
	c.ack(first)
	c.expectNone(200 * time.Millisecond)

	// Only the changed cluster is sent.
	specs := *twoServices()
	specs[0].withTimeout(2 * time.Second)
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	upd := c.recv()
	if got := deltaNames(upd); !slices.Equal(got, []string{"api.default:8080"}) || len(upd.GetRemovedResources()) != 0 {
		t.Fatalf("update = %v removed %v", got, upd.GetRemovedResources())
	}
	if deltaVersions(upd)["api.default:8080"] == deltaVersions(first)["api.default:8080"] {
		t.Fatal("changed cluster kept its version")
	}
	c.ack(upd)

	// A removed service: removed_resources, nothing else.
	env.srv.OnSnapshot(context.Background(), snapshotOf(specs[0]), false)
	rm := c.recv()
	if len(rm.GetResources()) != 0 || !slices.Equal(rm.GetRemovedResources(), []string{"web.default:80"}) {
		t.Fatalf("removal = %v removed %v", deltaNames(rm), rm.GetRemovedResources())
	}
	c.ack(rm)
	c.expectNone(200 * time.Millisecond)
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	if got := env.metric("sluice_xds_change_to_ack_seconds", map[string]string{"type": "cluster"}); got != 2 {
		t.Errorf("change-to-ACK observations = %v, want 2", got)
	}
}

func TestDeltaByNameSubscribeUnsubscribe(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := env.delta(t, grpcNode("grpc-1", nil))
	c.send(&discoveryv3.DeltaDiscoveryRequest{
		TypeUrl:                resourcev3.EndpointType,
		ResourceNamesSubscribe: []string{"api.default:8080", "web.default:80", "later.default:1"},
	})
	r := c.recv()
	if got := deltaNames(r); !slices.Equal(got, []string{"api.default:8080", "web.default:80"}) {
		t.Fatalf("EDS = %v", got)
	}
	c.ack(r)

	// Unsubscribing sends nothing (not even a removal) and stops updates.
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesUnsubscribe: []string{"web.default:80"}})
	c.expectNone(200 * time.Millisecond)
	specs := append(*twoServices(), service("default", "later", 1).withEndpoints(1, "10.0.2.1"))
	specs[1].withEndpoints(80, "10.0.0.7")
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	// The subscribed name that now exists arrives; web does not.
	got := c.recv()
	if n := deltaNames(got); !slices.Equal(n, []string{"later.default:1"}) {
		t.Fatalf("after adding later and changing web: %v", n)
	}
	c.ack(got)

	// Subscribing again sends the current web.
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"web.default:80"}})
	again := c.recv()
	if n := deltaNames(again); !slices.Equal(n, []string{"web.default:80"}) {
		t.Fatalf("resubscribe = %v", n)
	}
	c.ack(again)
	c.expectNone(200 * time.Millisecond)
}

func TestDeltaReconnectWithInitialVersions(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := env.delta(t, envoyNode("envoy-1"))
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	first := c.recv()
	c.ack(first)
	known := deltaVersions(first)
	c.cancel()

	// While disconnected: web goes away, db arrives, api is unchanged.
	specs := append(*twoServices(), service("default", "db", 5432))
	env.srv.OnSnapshot(context.Background(), snapshotOf(specs[0], specs[2]), false)

	c2 := env.delta(t, envoyNode("envoy-1"))
	c2.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, InitialResourceVersions: known})
	r := c2.recv()
	if got := deltaNames(r); !slices.Equal(got, []string{"db.default:5432"}) {
		t.Errorf("after reconnect sent %v, want only the new cluster (api is unchanged)", got)
	}
	if !slices.Equal(r.GetRemovedResources(), []string{"web.default:80"}) {
		t.Errorf("removed = %v, want web", r.GetRemovedResources())
	}
	c2.ack(r)
	c2.expectNone(200 * time.Millisecond)

	// A reconnect knowing everything gets an empty answer (a wildcard first
	// request is always answered so Envoy finishes initializing).
	c2.cancel()
	c3 := env.delta(t, envoyNode("envoy-1"))
	all := map[string]string{}
	for k, v := range known {
		if k != "web.default:80" {
			all[k] = v
		}
	}
	for k, v := range deltaVersions(r) {
		all[k] = v
	}
	c3.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, InitialResourceVersions: all})
	if e := c3.recv(); len(e.GetResources()) != 0 || len(e.GetRemovedResources()) != 0 {
		t.Errorf("reconnect with everything known: %v removed %v", deltaNames(e), e.GetRemovedResources())
	}
}

func TestDeltaNackIsNotResent(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := env.delta(t, envoyNode("envoy-1"))
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	c.ack(c.recv())

	specs := *twoServices()
	specs[0].withTimeout(2 * time.Second)
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	bad := c.recv()
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: bad.GetNonce(), ErrorDetail: &status.Status{Code: 3, Message: "rejected"}})
	c.expectNone(500 * time.Millisecond)
	if got := env.metric("sluice_xds_nacks_total", map[string]string{"type": "cluster"}); got != 1 {
		t.Errorf("nacks = %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := env.srv.WaitAllAcked(ctx, env.srv.Seq()); err == nil {
		t.Error("WaitAllAcked succeeded while the proxy is on a NACK")
	}

	// A fix of the rejected cluster is sent and clears the NACK state.
	specs[0].withTimeout(3 * time.Second)
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	fix := c.recv()
	if got := deltaNames(fix); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("fix = %v", got)
	}
	c.ack(fix)
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
}

func TestDeltaEndpointFastPathSendsTheDiff(t *testing.T) {
	// Two delta clients subscribed to every EDS resource by name, as Envoy
	// is: endpoint-only snapshots go out as the diff of the endpoint
	// class's views, including to a client whose subscription changed in
	// between (which is compared in full once, then diffed again).
	env := newTestEnv(t, nil, twoServices().snapshot())
	names := []string{"api.default:8080", "web.default:80"}
	var clients []*deltaClient
	for _, id := range []string{"envoy-1", "envoy-2"} {
		c := env.delta(t, envoyNode(id))
		c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names})
		r := c.recv()
		if got := deltaNames(r); !slices.Equal(got, names) {
			t.Fatalf("%s: EDS = %v", id, got)
		}
		c.ack(r)
		clients = append(clients, c)
	}
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}

	specs := *twoServices()
	specs[0].withEndpoints(8080, "10.0.0.4")
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), true)
	for _, c := range clients {
		r := c.recv()
		if got := deltaNames(r); !slices.Equal(got, []string{"api.default:8080"}) || len(r.GetRemovedResources()) != 0 {
			t.Fatalf("endpoint update = %v removed %v", got, r.GetRemovedResources())
		}
		if n := len(endpointsOf(decode(r.GetResources()[0].GetResource()))); n != 3 {
			t.Fatalf("api has %d endpoints, want 3", n)
		}
		c.ack(r)
	}
	// The update was a diff: the new view records its base, and each
	// client is known to hold the new view.
	env.srv.cache.mu.Lock()
	for ek, ev := range env.srv.cache.gen.eds {
		if ev.tv.baseID == 0 || len(ev.tv.changed) != 1 {
			t.Errorf("EDS view of %v: base %d, %d changed", ek, ev.tv.baseID, len(ev.tv.changed))
		}
		for _, st := range env.srv.cache.streams {
			if got := st.types[resourcev3.EndpointType].knownID; got != ev.tv.id {
				t.Errorf("stream %v holds view %d, want %d", st.key, got, ev.tv.id)
			}
		}
	}
	env.srv.cache.mu.Unlock()

	// envoy-2 drops web; then web changes (not sent to it) and api again.
	clients[1].send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesUnsubscribe: []string{"web.default:80"}})
	clients[1].expectNone(200 * time.Millisecond)
	specs[1].withEndpoints(80, "10.0.1.9")
	specs[0].withEndpoints(8080, "10.0.0.5")
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), true)
	if got := deltaNames(clients[0].recv()); !slices.Equal(got, names) {
		t.Fatalf("envoy-1 update = %v, want both", got)
	}
	r := clients[1].recv()
	if got := deltaNames(r); !slices.Equal(got, []string{"api.default:8080"}) {
		t.Fatalf("envoy-2 update = %v, want api only", got)
	}
	clients[1].ack(r)
	clients[1].expectNone(200 * time.Millisecond)
	if got := env.tr.endpoints.Load(); got != 2 {
		t.Errorf("endpoint translations = %d, want 2 (one per snapshot for the shared endpoint class)", got)
	}
}
