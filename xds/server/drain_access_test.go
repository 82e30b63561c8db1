package server

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

func TestPendingAcks(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	withoutIP := func(ip string) func(types.Resource) bool {
		return func(r types.Resource) bool {
			return !slices.Contains(endpointsOf(r.(*endpointv3.ClusterLoadAssignment)), ip)
		}
	}
	const api = "api.default:8080"
	proxies := func(ps []PendingAck) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Proxy)
		}
		return out
	}

	a := env.sotw(t, grpcNode("a", nil))
	a.subscribe(resourcev3.EndpointType, api)
	first := a.recvType(resourcev3.EndpointType)
	if got := env.srv.PendingAcks(resourcev3.EndpointType, api, withoutIP("10.0.0.9")); len(got) != 1 || !strings.Contains(got[0].Reason, "first copy") {
		t.Fatalf("first response not ACKed: %+v", got)
	}
	a.ack(first)
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	if got := env.srv.PendingAcks(resourcev3.EndpointType, api, withoutIP("10.0.0.9")); len(got) != 0 {
		t.Fatalf("ACKed, address never there: %+v", got)
	}
	got := env.srv.PendingAcks(resourcev3.EndpointType, api, withoutIP("10.0.0.2"))
	if !slices.Equal(proxies(got), []string{"a"}) || got[0].Stream == "" || got[0].Reason != "applies a copy routing there" {
		t.Fatalf("ACKed with the address: %+v", got)
	}
	if got := env.srv.PendingAcks(resourcev3.EndpointType, "web.default:80", withoutIP("10.0.0.3")); len(got) != 0 {
		t.Fatalf("a resource no stream was sent: %+v", got)
	}

	// 10.0.0.2 leaves; the ACK closes SyncChanged and clears the stream.
	changed := env.srv.SyncChanged()
	env.srv.OnSnapshot(context.Background(), snapshotOf(service("default", "api", 8080).withEndpoints(8080, "10.0.0.1"), (*twoServices())[1]), true)
	upd := a.recvType(resourcev3.EndpointType)
	if got := env.srv.PendingAcks(resourcev3.EndpointType, api, withoutIP("10.0.0.2")); len(got) != 1 || !strings.Contains(got[0].Reason, "not ACKed the update") {
		t.Fatalf("update not ACKed: %+v", got)
	}
	a.ack(upd)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("SyncChanged not closed by the ACK")
	}
	if got := env.srv.PendingAcks(resourcev3.EndpointType, api, withoutIP("10.0.0.2")); len(got) != 0 {
		t.Fatalf("update ACKed: %+v", got)
	}

	// Another change that keeps 10.0.0.2 out does not make the stream
	// pending while it is in flight; one that brings it back does.
	env.srv.OnSnapshot(context.Background(), snapshotOf(service("default", "api", 8080).withEndpoints(8080, "10.0.0.1", "10.0.0.4"), (*twoServices())[1]), true)
	upd = a.recvType(resourcev3.EndpointType)
	if got := env.srv.PendingAcks(resourcev3.EndpointType, api, withoutIP("10.0.0.2")); len(got) != 0 {
		t.Fatalf("churn without 10.0.0.2: %+v", got)
	}
	a.ack(upd)
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	env.srv.OnSnapshot(context.Background(), twoServices().snapshot(), true)
	upd = a.recvType(resourcev3.EndpointType)
	if got := env.srv.PendingAcks(resourcev3.EndpointType, api, withoutIP("10.0.0.2")); len(got) != 1 || got[0].Reason != "was sent a copy routing there" {
		t.Fatalf("10.0.0.2 back, in flight: %+v", got)
	}
	a.nack(upd, "bad endpoints")
	waitForPending(t, func() bool {
		got := env.srv.PendingAcks(resourcev3.EndpointType, api, withoutIP("10.0.0.4"))
		return len(got) == 1 && strings.Contains(got[0].Reason, "bad endpoints")
	})
}

func waitForPending(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
