package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-mesh/sluice/mesh"
)

// testEnv is a server on a loopback port and a connection to it.
type testEnv struct {
	t    *testing.T
	srv  *Server
	tr   *testTranslator
	reg  *prometheus.Registry
	logs *syncBuffer
	addr string
	conn *grpc.ClientConn
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestEnv(t testing.TB, tr *testTranslator, snap *mesh.Snapshot) *testEnv {
	t.Helper()
	if tr == nil {
		tr = &testTranslator{}
	}
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	srv := New(Config{}, tr, reg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if snap != nil {
		srv.OnSnapshot(context.Background(), snap, false)
	}
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
			t.Errorf("Serve did not return after cancel")
		}
	})
	env := &testEnv{srv: srv, tr: tr, reg: reg, logs: logs, addr: lis.Addr().String(), conn: conn}
	if tt, ok := t.(*testing.T); ok {
		env.t = tt
	}
	return env
}

// counter reads a counter or gauge of the env's registry (0 when absent).
func (e *testEnv) metric(name string, labels map[string]string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func envoyNode(id string) *corev3.Node {
	return &corev3.Node{Id: id, UserAgentName: "envoy", Metadata: metadata(map[string]string{MetaNamespace: "default", MetaInstanceIP: "10.1.0.1"})}
}

func grpcNode(id string, md map[string]string) *corev3.Node {
	return &corev3.Node{Id: id, UserAgentName: "gRPC Go", Metadata: metadata(md)}
}

func metadata(md map[string]string) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range md {
		s.Fields[k] = structpb.NewStringValue(v)
	}
	return s
}

const recvTimeout = 5 * time.Second

// sotwClient is an ADS state-of-the-world client driven by the test.
type sotwClient struct {
	t      testing.TB
	node   *corev3.Node
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	resps  chan *discoveryv3.DiscoveryResponse
	// per type: names subscribed, last response received
	names map[string][]string
	last  map[string]*discoveryv3.DiscoveryResponse
	acked map[string]string
	sent  bool
}

func (e *testEnv) sotw(t testing.TB, node *corev3.Node) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &sotwClient{t: t, node: node, stream: stream, cancel: cancel, resps: make(chan *discoveryv3.DiscoveryResponse, 64),
		names: map[string][]string{}, last: map[string]*discoveryv3.DiscoveryResponse{}, acked: map[string]string{}}
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
	t.Cleanup(cancel)
	return c
}

func (c *sotwClient) send(req *discoveryv3.DiscoveryRequest) {
	c.t.Helper()
	if !c.sent {
		req.Node = c.node
		c.sent = true
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// subscribe (re)subscribes to names of typeURL, with the last version and
// nonce seen for the type.
func (c *sotwClient) subscribe(typeURL string, names ...string) {
	c.t.Helper()
	c.names[typeURL] = names
	c.send(&discoveryv3.DiscoveryRequest{
		TypeUrl:       typeURL,
		ResourceNames: names,
		VersionInfo:   c.acked[typeURL],
		ResponseNonce: c.last[typeURL].GetNonce(),
	})
}

func (c *sotwClient) recv() *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if !ok {
			c.t.Fatal("stream closed")
		}
		c.last[r.GetTypeUrl()] = r
		return r
	case <-time.After(recvTimeout):
		c.t.Fatal("no response")
	}
	return nil
}

// recvType receives one response and checks its type.
func (c *sotwClient) recvType(typeURL string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	r := c.recv()
	if r.GetTypeUrl() != typeURL {
		c.t.Fatalf("got a %s response, want %s", shortType(r.GetTypeUrl()), shortType(typeURL))
	}
	return r
}

func (c *sotwClient) expectNone(d time.Duration) {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if ok {
			c.t.Fatalf("unexpected %s response version %s with %v", shortType(r.GetTypeUrl()), r.GetVersionInfo(), names(r))
		}
	case <-time.After(d):
	}
}

func (c *sotwClient) ack(r *discoveryv3.DiscoveryResponse) {
	c.t.Helper()
	c.acked[r.GetTypeUrl()] = r.GetVersionInfo()
	c.send(&discoveryv3.DiscoveryRequest{
		TypeUrl:       r.GetTypeUrl(),
		ResourceNames: c.names[r.GetTypeUrl()],
		VersionInfo:   r.GetVersionInfo(),
		ResponseNonce: r.GetNonce(),
	})
}

func (c *sotwClient) nack(r *discoveryv3.DiscoveryResponse, msg string) {
	c.t.Helper()
	c.send(&discoveryv3.DiscoveryRequest{
		TypeUrl:       r.GetTypeUrl(),
		ResourceNames: c.names[r.GetTypeUrl()],
		VersionInfo:   c.acked[r.GetTypeUrl()],
		ResponseNonce: r.GetNonce(),
		ErrorDetail:   &status.Status{Code: 3, Message: msg},
	})
}

// names returns the resource names of a SotW response, sorted.
func names(r *discoveryv3.DiscoveryResponse) []string {
	out := make([]string, 0, len(r.GetResources()))
	for _, a := range r.GetResources() {
		out = append(out, nameOfAny(a.GetTypeUrl(), a.GetValue()))
	}
	sort.Strings(out)
	return out
}

// deltaClient is an ADS delta client driven by the test.
type deltaClient struct {
	t      testing.TB
	node   *corev3.Node
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	resps  chan *discoveryv3.DeltaDiscoveryResponse
	sent   bool
	cancel context.CancelFunc
}

func (e *testEnv) delta(t testing.TB, node *corev3.Node) *deltaClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{t: t, node: node, stream: stream, cancel: cancel, resps: make(chan *discoveryv3.DeltaDiscoveryResponse, 64)}
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
	t.Cleanup(cancel)
	return c
}

func (c *deltaClient) send(req *discoveryv3.DeltaDiscoveryRequest) {
	c.t.Helper()
	if !c.sent {
		req.Node = c.node
		c.sent = true
	}
	if err := c.stream.Send(req); err != nil && !errors.Is(err, context.Canceled) {
		c.t.Fatalf("send: %v", err)
	}
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

func (c *deltaClient) expectNone(d time.Duration) {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if ok {
			c.t.Fatalf("unexpected %s delta response: %v removed %v", shortType(r.GetTypeUrl()), deltaNames(r), r.GetRemovedResources())
		}
	case <-time.After(d):
	}
}

func (c *deltaClient) ack(r *discoveryv3.DeltaDiscoveryResponse) {
	c.t.Helper()
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
}

func deltaNames(r *discoveryv3.DeltaDiscoveryResponse) []string {
	out := make([]string, 0, len(r.GetResources()))
	for _, res := range r.GetResources() {
		out = append(out, res.GetName())
		if got := nameOfAny(res.GetResource().GetTypeUrl(), res.GetResource().GetValue()); got != res.GetName() {
			panic("delta resource name " + res.GetName() + " wraps " + got)
		}
	}
	sort.Strings(out)
	return out
}

func deltaVersions(r *discoveryv3.DeltaDiscoveryResponse) map[string]string {
	out := map[string]string{}
	for _, res := range r.GetResources() {
		out[res.GetName()] = res.GetVersion()
	}
	return out
}
