package translate_test

// Gateway API routes through a real grpc-go xDS client: weighted canaries
// and weight changes on a live channel, header and method matches, invalid
// backends, retries and timeouts. The parent service "api" has a backend
// of its own, which must get nothing once routes attach to it.

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sluice-mesh/sluice/mesh"
)

// countingListener counts the connections a backend accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// backend is a loopback gRPC server serving hs (a plain health server when
// nil), counting its connections.
type backend struct {
	port uint32
	lis  *countingListener
}

func startBackend(t *testing.T, hs healthpb.HealthServer) backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: lis}
	if hs == nil {
		hs = health.NewServer()
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(cl) }()
	t.Cleanup(srv.Stop)
	return backend{port: uint32(lis.Addr().(*net.TCPAddr).Port), lis: cl}
}

// routeMesh is the mesh of these tests: services api (the parent of the
// routes), api-stable, api-canary and api-probe, one backend each.
type routeMesh struct {
	api, stable, canary, probe backend
}

func newRouteMesh(t *testing.T) routeMesh {
	return routeMesh{api: startBackend(t, nil), stable: startBackend(t, nil), canary: startBackend(t, nil), probe: startBackend(t, nil)}
}

func portOf(name string) mesh.PortKey {
	return mesh.PortKey{Namespace: "default", Name: name, Port: 8080}
}

func ref(name string, weight uint32) mesh.WeightedBackend {
	return mesh.WeightedBackend{Port: portOf(name), Weight: weight}
}

// snapshot returns the mesh with rules attached to api:8080.
func (m routeMesh) snapshot(rules ...mesh.RouteRule) *mesh.Snapshot {
	snap := &mesh.Snapshot{Endpoints: map[mesh.PortKey][]mesh.Endpoint{}}
	for _, s := range []struct {
		name string
		b    backend
	}{{"api", m.api}, {"api-canary", m.canary}, {"api-probe", m.probe}, {"api-stable", m.stable}} {
		snap.Services = append(snap.Services, &mesh.Service{
			Namespace: "default", Name: s.name,
			Ports: []mesh.Port{{Name: "grpc", Port: 8080, Protocol: mesh.ProtocolGRPC}},
		})
		snap.Endpoints[portOf(s.name)] = []mesh.Endpoint{local(s.b.port, "", mesh.Healthy)}
	}
	if len(rules) > 0 {
		snap.Routes = map[mesh.PortKey]*mesh.PortRoutes{portOf("api"): {Port: portOf("api"), Rules: rules}}
	}
	return snap
}

func rule(i int, matches []mesh.RouteMatch, backends ...mesh.WeightedBackend) mesh.RouteRule {
	return mesh.RouteRule{Route: "default/api", Kind: mesh.RouteGRPC, RuleIndex: i, Matches: matches, Backends: backends}
}

func headerIs(name, value string) []mesh.RouteMatch {
	return []mesh.RouteMatch{{Headers: []mesh.HeaderMatch{{Name: name, Type: mesh.MatchExact, Value: value}}}}
}

// probeRule sends RPCs carrying x-probe: v<version> to api-probe: once one
// lands there, the client uses that version of the routes.
func probeRule(version int) mesh.RouteRule {
	return rule(0, headerIs("x-probe", "v"+strconv.Itoa(version)), ref("api-probe", 1))
}

// call sends one Check (or List when list is set) RPC without waiting for
// readiness and returns the backend port that served it or the error.
func call(cc *grpc.ClientConn, list bool, md ...string) (uint32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	var p peer.Peer
	var err error
	if list {
		_, err = healthpb.NewHealthClient(cc).List(ctx, &healthpb.HealthListRequest{}, grpc.Peer(&p))
	} else {
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	}
	if err != nil {
		return 0, err
	}
	return uint32(p.Addr.(*net.TCPAddr).Port), nil
}

// countRPCs sends n RPCs, without waiting for readiness, and counts where
// they land; any error fails.
func countRPCs(t *testing.T, cc *grpc.ClientConn, n int, md ...string) map[uint32]int {
	t.Helper()
	counts := map[uint32]int{}
	for i := 0; i < n; i++ {
		port, err := call(cc, false, md...)
		if err != nil {
			t.Fatalf("RPC %d of %d (metadata %q): %v", i, n, md, err)
		}
		counts[port]++
	}
	return counts
}

// load sends RPCs on cc until stopped and counts the failed ones.
type load struct {
	sent, failed atomic.Int64
	firstErr     atomic.Value
	stop         chan struct{}
	done         chan struct{}
}

func startLoad(cc *grpc.ClientConn) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			l.sent.Add(1)
			if _, err := call(cc, false); err != nil {
				l.failed.Add(1)
				l.firstErr.CompareAndSwap(nil, err.Error())
			}
		}
	}()
	return l
}

func (l *load) finish() (sent, failed int64, firstErr any) {
	close(l.stop)
	<-l.done
	return l.sent.Load(), l.failed.Load(), l.firstErr.Load()
}

// awaitVersion waits until RPCs with the version's probe header reach the
// probe backend: the client has switched to that version's routes.
func awaitVersion(t *testing.T, cc *grpc.ClientConn, m routeMesh, version int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if pick(t, cc, "x-probe", "v"+strconv.Itoa(version)) == m.probe.port {
			return
		}
	}
	t.Fatalf("routes of version %d not in use after 10s", version)
}

// A canary split, then weight changes on the same ClientConn under
// continuous load: every step's share matches its weights, no RPC fails,
// and no backend is connected to twice, even across weight 0 (the
// translator keeps zero-weight backends named for grpc-go).
func TestGRPCClientCanaryWeights(t *testing.T) {
	m := newRouteMesh(t)
	split := func(version int, stable, canary uint32) *mesh.Snapshot {
		return m.snapshot(probeRule(version), rule(1, nil, ref("api-stable", stable), ref("api-canary", canary)))
	}
	cc, ads := xdsClient(t, split(1, 90, 10), "", "api.default:8080")
	warmUp(t, cc, m.stable.port, m.canary.port)
	bg := startLoad(cc)

	const n = 10000
	steps := []struct {
		stable, canary uint32
		// margin is the allowed distance of the canary's share from its
		// weight, in points: 1.5 points of 10,000 RPCs is 5 standard
		// deviations at 90/10, 3 at 50/50 (so 2.5 there).
		margin float64
	}{{90, 10, 1.5}, {50, 50, 2.5}, {0, 100, 0}, {100, 0, 0}, {90, 10, 1.5}}
	for i, step := range steps {
		version := 1
		if i > 0 {
			version = ads.set(translateGRPC(t, split(i+1, step.stable, step.canary), ""))
			ads.waitACK(t, resourcev3.RouteType, version)
			awaitVersion(t, cc, m, i+1)
		}
		counts := countRPCs(t, cc, n)
		share := 100 * float64(counts[m.canary.port]) / n
		want := 100 * float64(step.canary) / float64(step.stable+step.canary)
		t.Logf("%d/%d: canary got %.2f%% of %d RPCs (ADS version %d)", step.stable, step.canary, share, n, version)
		if share < want-step.margin || share > want+step.margin {
			t.Errorf("%d/%d: canary share %.2f%%, want %.1f%% ± %.1f: %v", step.stable, step.canary, share, want, step.margin, counts)
		}
		if counts[m.stable.port]+counts[m.canary.port] != n {
			t.Errorf("%d/%d: RPCs reached other backends: %v", step.stable, step.canary, counts)
		}
	}
	for name, b := range map[string]backend{"stable": m.stable, "canary": m.canary, "probe": m.probe} {
		if got := b.lis.accepted.Load(); got != 1 {
			t.Errorf("%s accepted %d connections, want 1: weight changes must not reconnect", name, got)
		}
	}
	sent, failed, firstErr := bg.finish()
	t.Logf("background load: %d RPCs during the weight changes, %d failed; connections accepted: stable %d, canary %d",
		sent, failed, m.stable.lis.accepted.Load(), m.canary.lis.accepted.Load())
	if failed != 0 {
		t.Errorf("%d of %d RPCs failed during the weight changes, first: %v", failed, sent, firstErr)
	}
	if got := m.api.lis.accepted.Load(); got != 0 {
		t.Errorf("the parent service's own backend accepted %d connections, want none once routes attach", got)
	}
	if got := ads.streamCount(); got != 1 {
		t.Errorf("the client opened %d ADS streams, want 1", got)
	}
}

// A header match sends only RPCs with x-canary: true to the canary; a
// method match (an exact path) sends only List to the canary.
func TestGRPCClientHeaderAndMethodMatch(t *testing.T) {
	m := newRouteMesh(t)
	t.Run("header", func(t *testing.T) {
		cc, _ := xdsClient(t, m.snapshot(
			rule(0, headerIs("x-canary", "true"), ref("api-canary", 1)),
			rule(1, nil, ref("api-stable", 1)),
		), "", "api.default:8080")
		if got := countRPCs(t, cc, 300, "x-canary", "true"); got[m.canary.port] != 300 {
			t.Errorf("x-canary: true went to %v, want all on the canary %d", got, m.canary.port)
		}
		for _, md := range [][]string{nil, {"x-canary", "false"}, {"x-canary", "TRUE"}} {
			if got := countRPCs(t, cc, 300, md...); got[m.stable.port] != 300 {
				t.Errorf("metadata %q went to %v, want all on stable %d", md, got, m.stable.port)
			}
		}
	})
	t.Run("no rule matches", func(t *testing.T) {
		m := newRouteMesh(t)
		cc, _ := xdsClient(t, m.snapshot(
			rule(0, headerIs("x-canary", "true"), ref("api-canary", 1), ref("api-stable", 0)),
		), "", "api.default:8080")
		pick(t, cc, "x-canary", "true")
		// Neither a request without the header nor one with the header of
		// the route keeping api-stable (at weight 0) named matches a route.
		for _, md := range [][]string{nil, {"sluice-keep-backends", "x"}} {
			if port, err := call(cc, false, md...); status.Code(err) != codes.Unavailable {
				t.Errorf("metadata %q: RPC went to %d (%v), want UNAVAILABLE: no matched route", md, port, err)
			}
		}
		// api-stable gets no RPC, but its cluster is kept, connected.
		for deadline := time.Now().Add(5 * time.Second); m.stable.lis.accepted.Load() == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the zero-weight backend was never connected to")
			}
		}
	})
	t.Run("method", func(t *testing.T) {
		cc, _ := xdsClient(t, m.snapshot(
			rule(0, []mesh.RouteMatch{{Path: &mesh.StringMatch{Type: mesh.MatchExact, Value: healthpb.Health_List_FullMethodName}}}, ref("api-canary", 1)),
			rule(1, []mesh.RouteMatch{{Path: &mesh.StringMatch{Type: mesh.MatchPrefix, Value: "/grpc.health.v1.Health/"}}}, ref("api-stable", 1)),
		), "", "api.default:8080")
		pick(t, cc) // wait for the channel
		for i := 0; i < 200; i++ {
			list, err := call(cc, true)
			if err != nil || list != m.canary.port {
				t.Fatalf("List went to %d (%v), want the canary %d", list, err, m.canary.port)
			}
			check, err := call(cc, false)
			if err != nil || check != m.stable.port {
				t.Fatalf("Check went to %d (%v), want stable %d", check, err, m.stable.port)
			}
		}
	})
}

// Invalid backends: a rule with none usable fails every RPC with
// UNAVAILABLE, a half-invalid split about half of them, and other rules
// keep working.
func TestGRPCClientInvalidBackends(t *testing.T) {
	m := newRouteMesh(t)
	cc, _ := xdsClient(t, m.snapshot(
		rule(0, headerIs("x-backend", "invalid"), mesh.WeightedBackend{Weight: 1, Invalid: true}),
		rule(1, headerIs("x-backend", "zero"), ref("api-stable", 0), ref("api-canary", 0)),
		rule(2, headerIs("x-backend", "half"), ref("api-stable", 1), mesh.WeightedBackend{Weight: 1, Invalid: true}),
		rule(3, headerIs("x-backend", "mostly-invalid"), ref("api-stable", 1), mesh.WeightedBackend{Weight: 1 << 30, Invalid: true}),
		rule(4, nil, ref("api-stable", 1)),
	), "", "api.default:8080")
	warmUp(t, cc, m.stable.port)

	for _, which := range []string{"invalid", "zero"} {
		for i := 0; i < 50; i++ {
			port, err := call(cc, false, "x-backend", which)
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("%s: RPC went to %d with error %v, want UNAVAILABLE", which, port, err)
			}
			if i == 0 {
				t.Logf("%s: %v", which, err)
			}
		}
	}
	const n = 1000
	failed := 0
	for i := 0; i < n; i++ {
		port, err := call(cc, false, "x-backend", "half")
		switch {
		case status.Code(err) == codes.Unavailable:
			if failed == 0 {
				t.Logf("an RPC given to InvalidBackendCluster: %v", err)
			}
			failed++
		case err != nil:
			t.Fatalf("half: unexpected error %v", err)
		case port != m.stable.port:
			t.Fatalf("half: RPC went to %d, want stable %d", port, m.stable.port)
		}
	}
	t.Logf("half-invalid split: %d of %d RPCs failed with UNAVAILABLE", failed, n)
	if failed < 400 || failed > 600 {
		t.Errorf("half-invalid split: %d of %d RPCs failed, want about half", failed, n)
	}
	if got := countRPCs(t, cc, 200); got[m.stable.port] != 200 {
		t.Errorf("RPCs without the header went to %v, want all on stable", got)
	}

	// Wait-for-ready RPCs: a direct_response fails them at once; the empty
	// InvalidBackendCluster makes them wait until their deadline.
	waitForReady := func(which string, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-backend", which), timeout)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		return err
	}
	if err := waitForReady("invalid", 5*time.Second); status.Code(err) != codes.Unavailable {
		t.Errorf("wait-for-ready RPC to a rule without valid backends: %v, want UNAVAILABLE", err)
	}
	if err := waitForReady("mostly-invalid", 100*time.Millisecond); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("wait-for-ready RPC given to InvalidBackendCluster: %v, want DEADLINE_EXCEEDED", err)
	}
}

// flakyHealth fails the first two of every three Check calls with code.
type flakyHealth struct {
	healthpb.UnimplementedHealthServer
	code  codes.Code
	calls atomic.Int32
	delay time.Duration
}

func (h *flakyHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if h.delay > 0 {
		select {
		case <-time.After(h.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if h.code != codes.OK && h.calls.Add(1)%3 != 0 {
		return nil, status.Error(h.code, "flaky")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// Retries on HTTP codes reach grpc-go as gRPC status codes (500 is
// INTERNAL, 503 UNAVAILABLE), and the request timeout becomes the RPC's
// deadline.
func TestGRPCClientRetriesAndTimeout(t *testing.T) {
	m := newRouteMesh(t)
	internal := startBackend(t, &flakyHealth{code: codes.Internal})
	unavailable := startBackend(t, &flakyHealth{code: codes.Unavailable})
	slow := startBackend(t, &flakyHealth{delay: 300 * time.Millisecond})
	snap := m.snapshot(
		mesh.RouteRule{Route: "default/api", Kind: mesh.RouteGRPC, RuleIndex: 0, Matches: headerIs("x-to", "internal"),
			Backends: []mesh.WeightedBackend{ref("api-stable", 1)}, Retry: &mesh.RetryPolicy{Attempts: 2, Codes: []int{500}, Backoff: time.Millisecond}},
		mesh.RouteRule{Route: "default/api", Kind: mesh.RouteGRPC, RuleIndex: 1, Matches: headerIs("x-to", "unavailable"),
			Backends: []mesh.WeightedBackend{ref("api-canary", 1)}, Retry: &mesh.RetryPolicy{Attempts: 2, Codes: []int{503}, Backoff: time.Millisecond}},
		mesh.RouteRule{Route: "default/api", Kind: mesh.RouteGRPC, RuleIndex: 2, Matches: headerIs("x-to", "internal-no-retry"),
			Backends: []mesh.WeightedBackend{ref("api-stable", 1)}},
		mesh.RouteRule{Route: "default/api", Kind: mesh.RouteGRPC, RuleIndex: 3, Matches: headerIs("x-to", "slow"),
			Backends: []mesh.WeightedBackend{ref("api-probe", 1)}, Timeout: 50 * time.Millisecond},
		mesh.RouteRule{Route: "default/api", Kind: mesh.RouteGRPC, RuleIndex: 4, Matches: headerIs("x-to", "slow-no-timeout"),
			Backends: []mesh.WeightedBackend{ref("api-probe", 1)}},
	)
	// Point the stable, canary and probe services at the flaky and slow backends.
	snap.Endpoints[portOf("api-stable")] = []mesh.Endpoint{local(internal.port, "", mesh.Healthy)}
	snap.Endpoints[portOf("api-canary")] = []mesh.Endpoint{local(unavailable.port, "", mesh.Healthy)}
	snap.Endpoints[portOf("api-probe")] = []mesh.Endpoint{local(slow.port, "", mesh.Healthy)}
	cc, _ := xdsClient(t, snap, "", "api.default:8080")
	pick(t, cc, "x-to", "slow-no-timeout") // wait for the channel

	for _, to := range []string{"internal", "unavailable"} {
		for i := 0; i < 20; i++ {
			if _, err := call(cc, false, "x-to", to); err != nil {
				t.Fatalf("%s: RPC %d failed despite 2 retries: %v", to, i, err)
			}
		}
	}
	failed := 0
	for i := 0; i < 30; i++ {
		if _, err := call(cc, false, "x-to", "internal-no-retry"); status.Code(err) == codes.Internal {
			failed++
		}
	}
	if failed != 20 {
		t.Errorf("without retries %d of 30 RPCs failed with INTERNAL, want 20 (two of every three)", failed)
	}
	start := time.Now()
	_, err := call(cc, false, "x-to", "slow")
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("slow backend with a 50ms request timeout: got %v, want DEADLINE_EXCEEDED", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("the request timeout took %s to fire, want about 50ms", d)
	}
	if _, err := call(cc, false, "x-to", "slow-no-timeout"); err != nil {
		t.Errorf("slow backend without a timeout: %v", err)
	}
}
