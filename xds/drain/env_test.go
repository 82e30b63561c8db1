package drain

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/server"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// testEnv is a real xDS server (real translation) on a loopback port, a
// tracker fed the same snapshots, and a connection for ADS clients.
type testEnv struct {
	t       *testing.T
	srv     *server.Server
	tracker *Tracker
	reg     *prometheus.Registry
	conn    *grpc.ClientConn
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	opts := translate.Options{}
	tr := server.TranslatorFuncs{
		TranslateFunc: func(s *mesh.Snapshot, p *mesh.Proxy) translate.Result { return translate.Translate(s, p, opts) },
		EndpointsFunc: func(s *mesh.Snapshot, p *mesh.Proxy) []types.Resource { return translate.Endpoints(s, p, opts) },
	}
	reg := prometheus.NewRegistry()
	srv := server.New(server.Config{}, tr, nil, nil)
	tracker := NewTracker(srv, Options{Registerer: reg, Poll: 50 * time.Millisecond})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return")
		}
	})
	return &testEnv{t: t, srv: srv, tracker: tracker, reg: reg, conn: conn}
}

// push installs a snapshot in the server, then in the tracker, as serve
// wires them.
func (e *testEnv) push(snap *mesh.Snapshot) {
	e.srv.OnSnapshot(context.Background(), snap, false)
	e.tracker.OnSnapshot(context.Background(), snap, false)
}

// metric reads a counter (or a histogram's count) with the given outcome.
func (e *testEnv) metric(name, outcome string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "outcome" && lp.GetValue() == outcome {
					if h := m.GetHistogram(); h != nil {
						return float64(h.GetSampleCount())
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

const (
	ns   = "default"
	port = 9090
)

var apiPort = mesh.PortKey{Namespace: ns, Name: "api", Port: port}

// apiCluster is the EDS name of default/api:9090.
var apiCluster = translate.ClusterName(apiPort, translate.DefaultClusterDomain)

// snapshot returns a mesh with the gRPC services default/<name>:9090, each
// with the given endpoints.
func snapshot(services map[string][]mesh.Endpoint) *mesh.Snapshot {
	snap := &mesh.Snapshot{Endpoints: map[mesh.PortKey][]mesh.Endpoint{}}
	for _, name := range sortedServiceNames(services) {
		snap.Services = append(snap.Services, &mesh.Service{
			Namespace: ns, Name: name,
			Ports: []mesh.Port{{Name: "grpc", Port: port, Protocol: mesh.ProtocolGRPC}},
		})
		if eps := services[name]; eps != nil {
			snap.Endpoints[mesh.PortKey{Namespace: ns, Name: name, Port: port}] = eps
		}
	}
	return snap
}

func sortedServiceNames(m map[string][]mesh.Endpoint) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ep is an endpoint of pod on port 9090 (the slice order is the caller's:
// keep it sorted by address).
func ep(pod, ip string, h mesh.Health) mesh.Endpoint {
	return mesh.Endpoint{Address: ip, Port: port, Zone: "zone-a", Health: h, Pod: pod}
}

func grpcNode(id string) *corev3.Node {
	return &corev3.Node{Id: id, UserAgentName: "gRPC Go", Metadata: nodeMetadata(map[string]string{server.MetaNamespace: ns})}
}

func envoyNode(id, ip string) *corev3.Node {
	return &corev3.Node{Id: id, UserAgentName: "envoy", Metadata: nodeMetadata(map[string]string{server.MetaNamespace: ns, server.MetaInstanceIP: ip})}
}

func nodeMetadata(md map[string]string) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range md {
		s.Fields[k] = structpb.NewStringValue(v)
	}
	return s
}

const recvTimeout = 5 * time.Second

// sotwClient is an ADS state-of-the-world client that subscribes to EDS
// only and ACKs when the test says so.
type sotwClient struct {
	t      *testing.T
	node   *corev3.Node
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resps  chan *discoveryv3.DiscoveryResponse
	names  []string
	acked  string
	sent   bool
}

func (e *testEnv) sotw(node *corev3.Node, names ...string) *sotwClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn).StreamAggregatedResources(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &sotwClient{t: e.t, node: node, stream: stream, resps: make(chan *discoveryv3.DiscoveryResponse, 64), names: names}
	go func() {
		defer close(c.resps)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			c.resps <- r
		}
	}()
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: names})
	return c
}

func (c *sotwClient) send(req *discoveryv3.DiscoveryRequest) {
	c.t.Helper()
	if !c.sent {
		req.Node, c.sent = c.node, true
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *sotwClient) recv() *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if !ok {
			c.t.Fatal("stream closed")
		}
		return r
	case <-time.After(recvTimeout):
		c.t.Fatal("no response")
	}
	return nil
}

func (c *sotwClient) ack(r *discoveryv3.DiscoveryResponse) {
	c.t.Helper()
	c.acked = r.GetVersionInfo()
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: c.names, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
}

func (c *sotwClient) nack(r *discoveryv3.DiscoveryResponse, msg string) {
	c.t.Helper()
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: c.names, VersionInfo: c.acked, ResponseNonce: r.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: msg}})
}

// deltaClient is an ADS delta client that subscribes to EDS only and ACKs
// when the test says so.
type deltaClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	resps  chan *discoveryv3.DeltaDiscoveryResponse
}

func (e *testEnv) delta(node *corev3.Node, names ...string) *deltaClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &deltaClient{t: e.t, stream: stream, resps: make(chan *discoveryv3.DeltaDiscoveryResponse, 64)}
	go func() {
		defer close(c.resps)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			c.resps <- r
		}
	}()
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names}); err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (c *deltaClient) recv() *discoveryv3.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if !ok {
			c.t.Fatal("stream closed")
		}
		return r
	case <-time.After(recvTimeout):
		c.t.Fatal("no response")
	}
	return nil
}

func (c *deltaClient) ack(r *discoveryv3.DeltaDiscoveryResponse) {
	c.t.Helper()
	if err := c.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
		c.t.Fatal(err)
	}
}

// sotwEndpoints returns address → health of the cluster in a SotW response.
func sotwEndpoints(t *testing.T, r *discoveryv3.DiscoveryResponse, cluster string) map[string]corev3.HealthStatus {
	t.Helper()
	for _, a := range r.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		if cla.GetClusterName() == cluster {
			return claEndpoints(cla)
		}
	}
	t.Fatalf("no %s in the response", cluster)
	return nil
}

// deltaEndpoints returns address → health of the cluster in a delta response.
func deltaEndpoints(t *testing.T, r *discoveryv3.DeltaDiscoveryResponse, cluster string) map[string]corev3.HealthStatus {
	t.Helper()
	for _, res := range r.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := res.GetResource().UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		if cla.GetClusterName() == cluster {
			return claEndpoints(cla)
		}
	}
	t.Fatalf("no %s in the response", cluster)
	return nil
}

func claEndpoints(cla *endpointv3.ClusterLoadAssignment) map[string]corev3.HealthStatus {
	out := map[string]corev3.HealthStatus{}
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			out[lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = lb.GetHealthStatus()
		}
	}
	return out
}
