package server

import (
	"context"
	"slices"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// grpcLike subscribes a SotW client to everything api needs, by name, as
// gRPC does, and ACKs it.
func grpcLike(t *testing.T, env *testEnv, id string, md map[string]string) *sotwClient {
	c := env.sotw(t, grpcNode(id, md))
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		c.subscribe(typ, "api.default:8080")
		c.ack(c.recvType(typ))
	}
	return c
}

func TestEndpointFastPathPushesOnlyEDS(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	c := grpcLike(t, env, "grpc-1", nil)
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	translations := env.tr.translations.Load()

	specs := *twoServices()
	specs[0].withEndpoints(8080, "10.0.0.4")
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), true)
	eds := c.recvType(resourcev3.EndpointType)
	var cla = decode(eds.GetResources()[0])
	if n := len(endpointsOf(cla)); n != 3 {
		t.Fatalf("EDS has %d endpoints, want 3", n)
	}
	c.ack(eds)
	c.expectNone(300 * time.Millisecond) // no CDS, LDS or RDS
	if got := env.tr.translations.Load(); got != translations {
		t.Errorf("full translations = %d, want %d (fast path)", got, translations)
	}
	if got := env.tr.endpoints.Load(); got != 1 {
		t.Errorf("endpoint translations = %d, want 1", got)
	}
	if got := env.metric("sluice_xds_translations_total", map[string]string{"mode": "endpoints"}); got != 1 {
		t.Errorf("sluice_xds_translations_total{mode=endpoints} = %v", got)
	}
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	if got := env.metric("sluice_xds_change_to_ack_seconds", map[string]string{"type": "endpoint"}); got != 1 {
		t.Errorf("EDS change-to-ACK observations = %v, want 1", got)
	}
}

func TestResourcesMarshaledOnceAndShared(t *testing.T) {
	tr := &testTranslator{share: true}
	env := newTestEnv(t, tr, twoServices().snapshot())
	const perSnapshot = 8 // 2 services x 4 types

	// Three gRPC clients of one class (their pods differ) share one
	// translation and one marshaling.
	var clients []*sotwClient
	for _, pod := range []string{"a-1", "a-2", "a-3"} {
		clients = append(clients, grpcLike(t, env, pod, map[string]string{MetaNamespace: "default", MetaPodName: pod}))
	}
	if got := tr.translations.Load(); got != 1 {
		t.Errorf("translations = %d, want 1 for one class", got)
	}
	if got := env.srv.cache.intern.marshals.Load(); got != perSnapshot {
		t.Errorf("marshals = %d, want %d", got, perSnapshot)
	}

	// Another class (another namespace) gets its own translation; message
	// identities are remembered per translation only, so its resources are
	// marshaled again, except EDS, which the endpoint class (kind and zone)
	// shares. The entries are the same (TestDistinctClassesShareEqualResources).
	const perSnapshotButEDS = 6
	grpcLike(t, env, "b-1", map[string]string{MetaNamespace: "other"})
	if got := tr.translations.Load(); got != 2 {
		t.Errorf("translations = %d, want 2 for two classes", got)
	}
	if got := env.srv.cache.intern.marshals.Load(); got != perSnapshot+perSnapshotButEDS {
		t.Errorf("marshals = %d, want %d", got, perSnapshot+perSnapshotButEDS)
	}

	// A change: one translation per class, the resources of each
	// translation marshaled once (EDS once for both), the same bytes to
	// everyone.
	specs := *twoServices()
	specs[0].withTimeout(2 * time.Second)
	env.srv.OnSnapshot(context.Background(), specs.snapshot(), false)
	if got, want := env.srv.cache.intern.marshals.Load(), int64(2*(perSnapshot+perSnapshotButEDS)); got != want {
		t.Errorf("marshals after a change = %d, want %d", got, want)
	}
	var first []byte
	for _, c := range clients {
		r := c.recvType(resourcev3.ClusterType)
		b := r.GetResources()[0].GetValue()
		if first == nil {
			first = b
		} else if !slices.Equal(first, b) {
			t.Error("clients of one class got different bytes")
		}
		var again []byte
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(decode(r.GetResources()[0]))
		if err != nil || !slices.Equal(again, b) {
			t.Errorf("payload is not the deterministic marshaling: %v", err)
		}
	}
	if got := env.metric("sluice_xds_resources", map[string]string{"type": "cluster"}); got != 2 {
		t.Errorf("distinct clusters = %v, want 2", got)
	}
}

func TestDistinctClassesShareEqualResources(t *testing.T) {
	// Without shared messages, equal resources of two classes are
	// marshaled once per class but stored once (one entry, one version);
	// EDS is translated once for both (same kind and zone).
	env := newTestEnv(t, nil, twoServices().snapshot())
	grpcLike(t, env, "a", map[string]string{MetaNamespace: "default"})
	grpcLike(t, env, "b", map[string]string{MetaNamespace: "other"})
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	if got := env.srv.cache.intern.marshals.Load(); got != 14 {
		t.Errorf("marshals = %d, want 14 (6 per class, and EDS once for their endpoint class)", got)
	}
	va, _ := env.srv.AckedVersion("a", resourcev3.ClusterType)
	vb, _ := env.srv.AckedVersion("b", resourcev3.ClusterType)
	if va == "" || va != vb {
		t.Errorf("equal resources, versions %q and %q", va, vb)
	}
	env.srv.cache.mu.Lock()
	defer env.srv.cache.mu.Unlock()
	ea := env.srv.cache.streamOf("a").types[resourcev3.ClusterType].acked.get("api.default:8080")
	eb := env.srv.cache.streamOf("b").types[resourcev3.ClusterType].acked.get("api.default:8080")
	if ea == nil || ea != eb {
		t.Errorf("entries %p and %p: equal resources are not shared", ea, eb)
	}
}
