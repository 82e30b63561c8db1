package drain

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/sluice-mesh/sluice/mesh"
)

const (
	ipA = "10.244.1.1"
	ipB = "10.244.1.2"
	ipC = "10.244.1.3"
)

// steady is default/api with three healthy pods.
func steady() *mesh.Snapshot {
	return snapshot(map[string][]mesh.Endpoint{"api": {
		ep("api-a", ipA, mesh.Healthy), ep("api-b", ipB, mesh.Healthy), ep("api-c", ipC, mesh.Healthy),
	}})
}

// aDraining is steady with api-a serving and terminating.
func aDraining() *mesh.Snapshot {
	return snapshot(map[string][]mesh.Endpoint{"api": {
		ep("api-a", ipA, mesh.Draining), ep("api-b", ipB, mesh.Healthy), ep("api-c", ipC, mesh.Healthy),
	}})
}

var podA = Target{Namespace: ns, Pod: "api-a"}

// pendingProxies lists the proxies of a status's pending entries.
func pendingProxies(st Status) []string {
	var out []string
	for _, p := range st.Pending {
		out = append(out, p.Proxy)
	}
	return out
}

func TestDrainedOnlyOnceEveryProxyACKedEndpointsWithoutThePod(t *testing.T) {
	env := newTestEnv(t)
	env.push(steady())

	g := env.sotw(grpcNode("grpc-1"), apiCluster)
	gFirst := g.recv()
	g.ack(gFirst)
	e := env.delta(envoyNode("envoy-1", "10.244.2.1"), apiCluster)
	eFirst := e.recv()
	e.ack(eFirst)
	if got := sotwEndpoints(t, gFirst, apiCluster)[ipA]; got != corev3.HealthStatus_HEALTHY {
		t.Fatalf("grpc client: api-a is %v before the drain, want HEALTHY", got)
	}

	// Ready in the snapshot: not drained, whatever the proxies have.
	st := env.tracker.Check(podA)
	if st.Drained || !strings.Contains(st.Reason, "still ready") {
		t.Fatalf("ready pod: %+v", st)
	}
	if len(st.Pending) != 1 || st.Pending[0].Proxy != "" || st.Pending[0].Cluster != apiCluster {
		t.Fatalf("ready pod: pending %+v, want the EndpointSlice entry", st.Pending)
	}

	// A wait started now ends when the last proxy ACKs, not before.
	type result struct {
		st  Status
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		st, err := env.tracker.Wait(ctx, podA)
		done <- result{st, err, time.Now()}
	}()

	env.push(aDraining())
	gUpd, eUpd := g.recv(), e.recv()
	if _, ok := sotwEndpoints(t, gUpd, apiCluster)[ipA]; ok {
		t.Fatalf("grpc client was sent the draining pod: %v", sotwEndpoints(t, gUpd, apiCluster))
	}
	if got := deltaEndpoints(t, eUpd, apiCluster)[ipA]; got != corev3.HealthStatus_DRAINING {
		t.Fatalf("envoy: api-a is %v, want DRAINING", got)
	}

	// Sent, not ACKed: both pending.
	st = env.tracker.Check(podA)
	if st.Drained || !slices.Equal(pendingProxies(st), []string{"envoy-1", "grpc-1"}) {
		t.Fatalf("before the ACKs: drained=%v pending %+v", st.Drained, st.Pending)
	}
	if !slices.Equal(st.Addresses, []string{ipA}) || !slices.Equal(st.Clusters, []string{apiCluster}) {
		t.Fatalf("addresses %v clusters %v", st.Addresses, st.Clusters)
	}

	g.ack(gUpd)
	waitFor(t, "only envoy-1 pending", func() bool {
		return slices.Equal(pendingProxies(env.tracker.Check(podA)), []string{"envoy-1"})
	})
	select {
	case r := <-done:
		t.Fatalf("wait ended while envoy-1 had not ACKed: %+v %v", r.st, r.err)
	case <-time.After(300 * time.Millisecond):
	}

	acked := time.Now()
	e.ack(eUpd)
	r := <-done
	if r.err != nil || !r.st.Drained {
		t.Fatalf("wait: %+v %v", r.st, r.err)
	}
	if lag := r.at.Sub(acked); lag > 2*time.Second {
		t.Errorf("wait returned %v after the last ACK", lag)
	}
	if r.st.WaitedSeconds <= 0.3 {
		t.Errorf("waited %.3fs, want more than the 300ms envoy-1 held its ACK", r.st.WaitedSeconds)
	}
	if n := env.metric("sluice_drain_waits_total", outcomeDrained); n != 1 {
		t.Errorf("drained waits = %v, want 1", n)
	}
	if n := env.metric("sluice_drain_wait_seconds", outcomeDrained); n != 1 {
		t.Errorf("drain duration samples = %v, want 1", n)
	}

	// The other pods are not drained.
	if st := env.tracker.Check(Target{Namespace: ns, Pod: "api-b"}); st.Drained {
		t.Errorf("api-b: %+v", st)
	}
	// By address too.
	if st := env.tracker.Check(Target{IP: ipA}); !st.Drained {
		t.Errorf("ip %s: %+v", ipA, st)
	}
}

func TestWaitTimesOutWithWhatIsPending(t *testing.T) {
	env := newTestEnv(t)
	env.push(steady())
	g := env.sotw(grpcNode("grpc-1"), apiCluster)
	g.ack(g.recv())
	env.push(aDraining())
	_ = g.recv() // never ACKed

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	st, err := env.tracker.Wait(ctx, podA)
	if !errors.Is(err, context.DeadlineExceeded) || st.Drained {
		t.Fatalf("wait: %+v %v", st, err)
	}
	if len(st.Pending) != 1 || st.Pending[0].Proxy != "grpc-1" || !strings.Contains(st.Pending[0].Reason, "not ACKed") {
		t.Fatalf("pending %+v", st.Pending)
	}
	if n := env.metric("sluice_drain_waits_total", outcomeTimeout); n != 1 {
		t.Errorf("timeouts = %v, want 1", n)
	}
}

func TestNACKKeepsThePodPending(t *testing.T) {
	env := newTestEnv(t)
	env.push(steady())
	g := env.sotw(grpcNode("grpc-1"), apiCluster)
	g.ack(g.recv())
	env.push(aDraining())
	g.nack(g.recv(), "no thanks")
	waitFor(t, "a NACK reason", func() bool {
		st := env.tracker.Check(podA)
		return !st.Drained && len(st.Pending) == 1 && strings.Contains(st.Pending[0].Reason, "no thanks")
	})
}

func TestPodRemovedWithoutDrainingStillWaitsForTheACK(t *testing.T) {
	env := newTestEnv(t)
	env.push(steady())
	g := env.sotw(grpcNode("grpc-1"), apiCluster)
	g.ack(g.recv())

	// The endpoint goes away at once (not ready, or the slice dropped it).
	env.push(snapshot(map[string][]mesh.Endpoint{"api": {ep("api-b", ipB, mesh.Healthy), ep("api-c", ipC, mesh.Healthy)}}))
	upd := g.recv()
	st := env.tracker.Check(podA)
	if st.Drained || !slices.Equal(pendingProxies(st), []string{"grpc-1"}) {
		t.Fatalf("removed, not ACKed: %+v", st)
	}
	g.ack(upd)
	waitFor(t, "drained after the ACK", func() bool { return env.tracker.Check(podA).Drained })
}

func TestEndpointChurnAfterTheACKDoesNotHoldTheDrainUp(t *testing.T) {
	env := newTestEnv(t)
	env.push(steady())
	g := env.sotw(grpcNode("grpc-1"), apiCluster)
	g.ack(g.recv())
	env.push(aDraining())
	g.ack(g.recv())
	waitFor(t, "drained", func() bool { return env.tracker.Check(podA).Drained })

	// A new pod arrives: the proxy is sent endpoints without api-a again
	// and has not ACKed them; api-a stays drained.
	env.push(snapshot(map[string][]mesh.Endpoint{"api": {
		ep("api-a", ipA, mesh.Draining), ep("api-b", ipB, mesh.Healthy), ep("api-c", ipC, mesh.Healthy), ep("api-d", "10.244.1.4", mesh.Healthy),
	}}))
	upd := g.recv()
	if _, ok := sotwEndpoints(t, upd, apiCluster)["10.244.1.4"]; !ok {
		t.Fatal("api-d not sent")
	}
	if st := env.tracker.Check(podA); !st.Drained {
		t.Fatalf("api-a after churn: %+v", st)
	}
	// But api-d, ready, is not drained.
	if st := env.tracker.Check(Target{Namespace: ns, Pod: "api-d"}); st.Drained {
		t.Fatalf("api-d: %+v", st)
	}
}

func TestPodComingBackIsNotDrained(t *testing.T) {
	env := newTestEnv(t)
	env.push(steady())
	g := env.sotw(grpcNode("grpc-1"), apiCluster)
	g.ack(g.recv())
	env.push(aDraining())
	g.ack(g.recv())
	waitFor(t, "drained", func() bool { return env.tracker.Check(podA).Drained })
	// Back to ready, but the proxy has not ACKed yet: it holds a drained
	// copy, and was sent one routing there again.
	env.push(steady())
	_ = g.recv()
	st := env.tracker.Check(podA)
	if st.Drained {
		t.Fatalf("ready again: %+v", st)
	}
}

func TestNoSubscriberMeansDrainedOnceNotReady(t *testing.T) {
	env := newTestEnv(t)
	// No proxy at all.
	env.push(steady())
	if st := env.tracker.Check(podA); st.Drained {
		t.Fatalf("ready pod without proxies: %+v", st)
	}
	env.push(aDraining())
	if st := env.tracker.Check(podA); !st.Drained {
		t.Fatalf("draining pod without proxies: %+v", st)
	}
	// A proxy of another service does not count.
	env.push(snapshot(map[string][]mesh.Endpoint{
		"api": {ep("api-a", ipA, mesh.Draining), ep("api-b", ipB, mesh.Healthy)},
		"web": {ep("web-a", "10.244.3.1", mesh.Healthy)},
	}))
	other := env.sotw(grpcNode("grpc-web"), "outbound|9090||web.default.svc.cluster.local")
	_ = other.recv() // not ACKed
	if st := env.tracker.Check(podA); !st.Drained {
		t.Fatalf("draining pod, proxy of another service only: %+v", st)
	}
}

func TestUnknownPodAndNoSnapshot(t *testing.T) {
	env := newTestEnv(t)
	if st := env.tracker.Check(podA); st.Drained || st.Reason != "no mesh snapshot yet" {
		t.Fatalf("before any snapshot: %+v", st)
	}
	env.push(steady())
	if st := env.tracker.Check(Target{Namespace: ns, Pod: "nobody"}); !st.Drained || len(st.Clusters) != 0 {
		t.Fatalf("unknown pod: %+v", st)
	}
	// Same name, other namespace: another pod.
	if st := env.tracker.Check(Target{Namespace: "other", Pod: "api-a"}); !st.Drained {
		t.Fatalf("other namespace: %+v", st)
	}
}

func TestPodInSeveralServicesWaitsForAll(t *testing.T) {
	env := newTestEnv(t)
	both := func(apiHealth, webHealth mesh.Health) *mesh.Snapshot {
		return snapshot(map[string][]mesh.Endpoint{
			"api": {ep("api-a", ipA, apiHealth), ep("api-b", ipB, mesh.Healthy)},
			"web": {ep("api-a", ipA, webHealth), ep("api-b", ipB, mesh.Healthy)},
		})
	}
	env.push(both(mesh.Healthy, mesh.Healthy))
	webCluster := "outbound|9090||web.default.svc.cluster.local"
	g := env.sotw(grpcNode("grpc-1"), apiCluster, webCluster)
	g.ack(g.recv())

	// One slice caught up, the other not yet.
	env.push(both(mesh.Draining, mesh.Healthy))
	g.ack(g.recv())
	st := env.tracker.Check(podA)
	if st.Drained || len(st.Pending) != 1 || st.Pending[0].Cluster != webCluster {
		t.Fatalf("web still ready: %+v", st)
	}
	env.push(both(mesh.Draining, mesh.Draining))
	g.ack(g.recv())
	waitFor(t, "drained in both", func() bool {
		st := env.tracker.Check(podA)
		return st.Drained && len(st.Clusters) == 2
	})
}

func TestRunStopsWaits(t *testing.T) {
	env := newTestEnv(t)
	env.push(steady())
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- env.tracker.Run(ctx) }()
	waited := make(chan error, 1)
	go func() {
		_, err := env.tracker.Wait(context.Background(), podA)
		waited <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case err := <-waited:
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("wait: %v, want ErrStopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait still blocked after Run ended")
	}
	if n := env.metric("sluice_drain_waits_total", outcomeStopped); n != 1 {
		t.Errorf("stopped waits = %v", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
