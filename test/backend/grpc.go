package backend

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Response header metadata (gRPC) and HTTP response headers every backend
// sets.
const (
	HeaderPod     = "x-sluice-pod"
	HeaderZone    = "x-sluice-zone"
	HeaderVersion = "x-sluice-version"
)

// TestServiceName is the gRPC service the backend implements, and the
// service name its health server reports.
const TestServiceName = "grpc.testing.TestService"

type healthState struct{ *health.Server }

func (h *healthState) shutdown() { h.Shutdown() }

// newGRPCServer returns a gRPC server with grpc.testing.TestService and the
// standard health service, stamping every response with id.
func newGRPCServer(id Identity) (*grpc.Server, *healthState) {
	md := metadata.Pairs(HeaderPod, id.Pod, HeaderZone, id.Zone, HeaderVersion, id.Version)
	gs := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			_ = grpc.SetHeader(ctx, md)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			_ = ss.SetHeader(md)
			return h(srv, ss)
		}),
	)
	testpb.RegisterTestServiceServer(gs, &testService{id: id})
	hs := health.NewServer()
	hs.SetServingStatus(TestServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	return gs, &healthState{hs}
}

// testService implements the unary calls of grpc.testing.TestService.
type testService struct {
	testpb.UnimplementedTestServiceServer
	id Identity
}

func (s *testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// UnaryCall answers with ServerId = pod name and Hostname = zone. A request
// with ResponseStatus set fails with that code and message, so tests can
// provoke errors (retries, outlier detection); ResponseSize asks for a
// payload of that many zero bytes.
func (s *testService) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	resp := &testpb.SimpleResponse{ServerId: s.id.Pod, Hostname: s.id.Zone}
	if n := req.GetResponseSize(); n > 0 {
		resp.Payload = &testpb.Payload{Body: make([]byte, n)}
	}
	if req.GetFillUsername() {
		resp.Username = strings.Join([]string{s.id.Namespace, s.id.Pod}, "/")
	}
	return resp, nil
}
