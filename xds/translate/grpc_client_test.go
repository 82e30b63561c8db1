package translate_test

// Acceptance by a real grpc-go xDS client: the gRPC-kind output of
// Translate is served over ADS by a minimal state-of-the-world server on
// loopback, a grpc-go client resolves xds:///<service> through it, and RPCs
// go to real backends on 127.0.0.1. A NACK from the client fails the test,
// and where the RPCs land is asserted.

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	xdsgrpc "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/translate"
	"github.com/sluice-mesh/sluice/xds/validate"
)

// adsServer answers state-of-the-world ADS requests from a resource set
// that set replaces (pushing the new version to every open stream), and
// records ACKs and NACKs.
type adsServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer

	mu        sync.Mutex
	resources map[string][]types.Resource
	version   int
	changed   chan struct{} // closed and replaced by set
	nacks     []string
	acked     map[string]int // type URL -> last version ACKed
	streams   int
}

func newADSServer(res map[string][]types.Resource) *adsServer {
	return &adsServer{resources: res, version: 1, changed: make(chan struct{}), acked: map[string]int{}}
}

// set replaces the resources with a new version and returns it.
func (s *adsServer) set(res map[string][]types.Resource) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resources = res
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
	return s.version
}

func (s *adsServer) current() (map[string][]types.Resource, int, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resources, s.version, s.changed
}

func (s *adsServer) StreamAggregatedResources(stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	s.mu.Lock()
	s.streams++
	s.mu.Unlock()
	reqs := make(chan *discoveryv3.DiscoveryRequest)
	go func() {
		defer close(reqs)
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case reqs <- req:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	subs := map[string][]string{} // type URL -> names asked for, sorted
	sent := map[string]string{}   // type URL -> names and version last sent
	nonce := 0
	send := func(typeURL string) error {
		res, version, _ := s.current()
		names := subs[typeURL]
		key := fmt.Sprint(names, version)
		if sent[typeURL] == key {
			return nil // an ACK of what we sent
		}
		sent[typeURL] = key
		want := map[string]bool{}
		for _, n := range names {
			want[n] = true
		}
		resp := &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: strconv.Itoa(version)}
		for _, r := range res[typeURL] {
			if len(want) > 0 && !want[resourceName(r)] {
				continue
			}
			a, err := anypb.New(r)
			if err != nil {
				return err
			}
			resp.Resources = append(resp.Resources, a)
		}
		nonce++
		resp.Nonce = strconv.Itoa(nonce)
		return stream.Send(resp)
	}
	for {
		_, _, changed := s.current()
		select {
		case req, ok := <-reqs:
			if !ok {
				return nil
			}
			s.record(req)
			if req.GetErrorDetail() != nil {
				continue
			}
			names := append([]string(nil), req.GetResourceNames()...)
			sort.Strings(names)
			subs[req.GetTypeUrl()] = names
			if err := send(req.GetTypeUrl()); err != nil {
				return nil
			}
		case <-changed:
			typeURLs := make([]string, 0, len(subs))
			for typ := range subs {
				typeURLs = append(typeURLs, typ)
			}
			sort.Strings(typeURLs)
			for _, typ := range typeURLs {
				if err := send(typ); err != nil {
					return nil
				}
			}
		}
	}
}

// record notes a NACK, or the version a request ACKs.
func (s *adsServer) record(req *discoveryv3.DiscoveryRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.GetErrorDetail() != nil {
		s.nacks = append(s.nacks, fmt.Sprintf("%s: %s", req.GetTypeUrl(), req.GetErrorDetail().GetMessage()))
		return
	}
	if v, err := strconv.Atoi(req.GetVersionInfo()); err == nil && req.GetResponseNonce() != "" && v > s.acked[req.GetTypeUrl()] {
		s.acked[req.GetTypeUrl()] = v
	}
}

// waitACK waits until the client has ACKed version of typeURL.
func (s *adsServer) waitACK(t *testing.T, typeURL string, version int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		acked, nacks := s.acked[typeURL], len(s.nacks)
		s.mu.Unlock()
		if nacks > 0 {
			t.Fatalf("grpc-go NACKed: %q", s.nacked())
		}
		if acked >= version {
			return
		}
	}
	t.Fatalf("%s version %d not ACKed in 10s", typeURL, version)
}

func (s *adsServer) streamCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams
}

func resourceName(r types.Resource) string {
	if n, ok := r.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return r.(interface{ GetName() string }).GetName()
}

func (s *adsServer) nacked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.nacks...)
}

// serve starts a gRPC server on a loopback port and stops it with the test.
func serve(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// backends starts n health-serving backends and returns their ports.
func backends(t *testing.T, n int) []uint32 {
	t.Helper()
	var ports []uint32
	for i := 0; i < n; i++ {
		addr := serve(t, func(s *grpc.Server) { healthpb.RegisterHealthServer(s, health.NewServer()) })
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		ports = append(ports, uint32(port))
	}
	return ports
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) uint32 {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	return uint32(port)
}

// translateGRPC translates snap for a gRPC proxy in zone and checks the
// result with the deep validator.
func translateGRPC(t *testing.T, snap *mesh.Snapshot, zone string) map[string][]types.Resource {
	t.Helper()
	res := translate.Translate(snap, &mesh.Proxy{ID: "test-client", Kind: mesh.ProxyGRPC, Zone: zone}, translate.Options{})
	if err := validate.GRPCResources(res.Resources); err != nil {
		t.Fatalf("translation does not validate: %v", err)
	}
	return res.Resources
}

// xdsClient translates snap for a gRPC proxy in zone, serves the result
// and returns a connection to target through grpc-go's xDS resolver.
func xdsClient(t *testing.T, snap *mesh.Snapshot, zone, target string) (*grpc.ClientConn, *adsServer) {
	t.Helper()
	ads := newADSServer(translateGRPC(t, snap, zone))
	addr := serve(t, func(s *grpc.Server) { discoveryv3.RegisterAggregatedDiscoveryServiceServer(s, ads) })
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "test-client", "locality": {"zone": %q}}
	}`, addr, zone)
	builder, err := xdsgrpc.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(builder))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		if n := ads.nacked(); len(n) > 0 {
			t.Errorf("grpc-go NACKed: %q", n)
		}
	})
	return cc, ads
}

// pick sends one RPC and returns the port of the backend that served it.
func pick(t *testing.T, cc *grpc.ClientConn, md ...string) uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true)); err != nil {
		t.Fatalf("RPC: %v", err)
	}
	return uint32(p.Addr.(*net.TCPAddr).Port)
}

// warmUp sends RPCs until every backend in want has answered (round robin
// only picks connected endpoints, which come up one by one) or 5s pass,
// and returns where they went.
func warmUp(t *testing.T, cc *grpc.ClientConn, want ...uint32) map[uint32]int {
	t.Helper()
	counts := map[uint32]int{}
	all := func() bool {
		for _, p := range want {
			if counts[p] == 0 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !all(); {
		counts[pick(t, cc)]++
		time.Sleep(time.Millisecond)
	}
	return counts
}

func grpcSnapshot(lb mesh.LoadBalancing, eps ...mesh.Endpoint) *mesh.Snapshot {
	key := mesh.PortKey{Namespace: "default", Name: "echo", Port: 8080}
	return &mesh.Snapshot{
		Services: []*mesh.Service{{
			Namespace: "default", Name: "echo",
			Ports: []mesh.Port{{Name: "grpc", Port: 8080, Protocol: mesh.ProtocolGRPC}},
			LB:    lb,
		}},
		Endpoints: map[mesh.PortKey][]mesh.Endpoint{key: eps},
	}
}

func local(port uint32, zone string, h mesh.Health) mesh.Endpoint {
	return mesh.Endpoint{Address: "127.0.0.1", Port: port, Zone: zone, Health: h}
}

func TestGRPCClientRoundRobin(t *testing.T) {
	ports := backends(t, 3)
	snap := grpcSnapshot(mesh.LoadBalancing{},
		local(ports[0], "zone-a", mesh.Healthy), local(ports[1], "zone-a", mesh.Healthy), local(ports[2], "zone-b", mesh.Healthy))
	// Every listener name a client may dial works.
	for _, target := range []string{"echo.default.svc.cluster.local:8080", "echo.default.svc:8080", "echo.default:8080"} {
		t.Run(target, func(t *testing.T) {
			cc, _ := xdsClient(t, snap, "zone-a", target)
			warmUp(t, cc, ports...)
			counts := map[uint32]int{}
			// grpc-go picks a locality at random by weight (2:1 here), then
			// round robin inside it: 3,000 RPCs make ±150 (5 points) a
			// margin of about 6 standard deviations.
			const n = 3000
			for i := 0; i < n; i++ {
				counts[pick(t, cc)]++
			}
			for _, p := range ports {
				if c := counts[p]; c < n/3-150 || c > n/3+150 {
					t.Errorf("backend %d got %d of %d RPCs, want about %d: %v", p, c, n, n/3, counts)
				}
			}
		})
	}
}

func TestGRPCClientLocality(t *testing.T) {
	ports := backends(t, 3)
	lb := mesh.LoadBalancing{LocalityAware: true}
	t.Run("local zone preferred", func(t *testing.T) {
		snap := grpcSnapshot(lb, local(ports[0], "zone-a", mesh.Healthy), local(ports[1], "zone-a", mesh.Healthy), local(ports[2], "zone-b", mesh.Healthy))
		cc, _ := xdsClient(t, snap, "zone-a", "echo.default:8080")
		counts := warmUp(t, cc, ports[0], ports[1])
		for i := 0; i < 100; i++ {
			counts[pick(t, cc)]++
		}
		if counts[ports[2]] != 0 || counts[ports[0]] == 0 || counts[ports[1]] == 0 {
			t.Errorf("want zone-a backends %d and %d only, got %v", ports[0], ports[1], counts)
		}
	})
	t.Run("spill to the other zone when the local one is down", func(t *testing.T) {
		snap := grpcSnapshot(lb, local(closedPort(t), "zone-a", mesh.Healthy), local(ports[2], "zone-b", mesh.Healthy))
		cc, _ := xdsClient(t, snap, "zone-a", "echo.default:8080")
		for i := 0; i < 20; i++ {
			if got := pick(t, cc); got != ports[2] {
				t.Fatalf("RPC went to %d, want zone-b backend %d", got, ports[2])
			}
		}
	})
}

func TestGRPCClientRingHashHeader(t *testing.T) {
	ports := backends(t, 3)
	snap := grpcSnapshot(mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{Header: "X-User"}},
		local(ports[0], "zone-a", mesh.Healthy), local(ports[1], "zone-a", mesh.Healthy), local(ports[2], "zone-a", mesh.Healthy))
	cc, _ := xdsClient(t, snap, "zone-a", "echo.default.svc.cluster.local:8080")
	used := map[uint32]bool{}
	for k := 0; k < 12; k++ {
		user := "user-" + strconv.Itoa(k)
		first := pick(t, cc, "x-user", user)
		used[first] = true
		for i := 0; i < 10; i++ {
			if got := pick(t, cc, "x-user", user); got != first {
				t.Fatalf("%s went to %d then %d: ring hash on the header is not sticky", user, first, got)
			}
		}
	}
	if len(used) < 2 {
		t.Errorf("12 keys all hashed to %v: the header is not what is hashed", used)
	}
}

func TestGRPCClientSkipsDrainingAndUnhealthy(t *testing.T) {
	ports := backends(t, 3)
	snap := grpcSnapshot(mesh.LoadBalancing{},
		local(ports[0], "zone-a", mesh.Healthy), local(ports[1], "zone-a", mesh.Draining), local(ports[2], "zone-a", mesh.Unhealthy))
	cc, _ := xdsClient(t, snap, "zone-a", "echo.default:8080")
	for i := 0; i < 30; i++ {
		if got := pick(t, cc); got != ports[0] {
			t.Fatalf("RPC went to %d, want only the healthy backend %d", got, ports[0])
		}
	}
}

// Settings grpc-go cannot do are replaced, not NACKed: random becomes round
// robin, least request and outlier detection are accepted.
func TestGRPCClientAcceptsReplacedSettings(t *testing.T) {
	ports := backends(t, 2)
	for _, lb := range []mesh.LoadBalancing{
		{Policy: mesh.LBRandom, ConnectTimeout: time.Second},
		{Policy: mesh.LBLeastRequest, Outlier: &mesh.OutlierDetection{Consecutive5xx: 5, Interval: time.Second, BaseEjectionTime: time.Second, MaxEjectionPercent: 50}},
		{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{Cookie: "session"}},
	} {
		t.Run(string(lb.Policy), func(t *testing.T) {
			cc, _ := xdsClient(t, grpcSnapshot(lb, local(ports[0], "", mesh.Healthy), local(ports[1], "", mesh.Healthy)), "", "echo.default:8080")
			if lb.Policy == mesh.LBRingHash {
				seen := map[uint32]int{}
				for i := 0; i < 40; i++ {
					seen[pick(t, cc)]++
				}
				if len(seen) != 1 {
					t.Errorf("channel-id hashing should keep one channel on one backend, reached %v", seen)
				}
				return
			}
			if seen := warmUp(t, cc, ports...); len(seen) != 2 {
				t.Errorf("RPCs reached %v, want both backends", seen)
			}
		})
	}
}
