package backend

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func startTestBackend(t *testing.T) *Server {
	t.Helper()
	s, err := Start(Config{
		Identity: Identity{Pod: "echo-1", Namespace: "ns", Zone: "zone-a", Version: "v2"},
		IP:       "127.0.0.1",
		Ports:    []Port{{Name: "grpc", Port: 0, Protocol: GRPC}, {Name: "http", Port: 0, Protocol: HTTP}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestGRPCAnswersWithIdentity(t *testing.T) {
	s := startTestBackend(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cc := dial(t, s.Addrs()[0].String())

	want := Identity{Pod: "echo-1", Namespace: "ns", Zone: "zone-a", Version: "v2"}
	if id, err := WhoGRPC(ctx, cc); err != nil || id != want {
		t.Errorf("WhoGRPC = %+v, %v; want %+v", id, err, want)
	}
	var hdr metadata.MD
	resp, err := testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 3}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetServerId() != "echo-1" || resp.GetHostname() != "zone-a" || len(resp.GetPayload().GetBody()) != 3 {
		t.Errorf("UnaryCall = %v, want server_id echo-1, hostname zone-a, 3-byte payload", resp)
	}
	for k, want := range map[string]string{HeaderPod: "echo-1", HeaderZone: "zone-a", HeaderVersion: "v2"} {
		if got := hdr.Get(k); len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %v, want %q", k, got, want)
		}
	}

	hdr = nil
	if _, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get(HeaderPod); len(got) != 1 || got[0] != "echo-1" {
		t.Errorf("EmptyCall header %s = %v", HeaderPod, got)
	}

	_, err = testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{
		ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Unavailable), Message: "asked for"},
	})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("UnaryCall with response_status = %v, want Unavailable", err)
	}

	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: TestServiceName})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v; want SERVING", h, err)
	}
}

func TestHTTPAnswersWithIdentity(t *testing.T) {
	s := startTestBackend(t)
	base := "http://" + s.Addrs()[1].String()
	want := Identity{Pod: "echo-1", Namespace: "ns", Zone: "zone-a", Version: "v2"}
	if id, err := WhoHTTP(t.Context(), http.DefaultClient, base+"/"); err != nil || id != want {
		t.Errorf("WhoHTTP = %+v, %v; want %+v", id, err, want)
	}

	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var id Identity
	if err := json.NewDecoder(resp.Body).Decode(&id); err != nil {
		t.Fatal(err)
	}
	if id != want {
		t.Errorf("GET / = %+v, want %+v", id, want)
	}
	if got := resp.Header.Get(HeaderZone); got != "zone-a" {
		t.Errorf("header %s = %q", HeaderZone, got)
	}

	for path, code := range map[string]int{"/healthz": 200, "/readyz": 200, "/status/503": 503, "/sleep/10ms": 200, "/sleep/x": 400, "/nope": 404} {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != code {
			t.Errorf("GET %s = %d, want %d", path, r.StatusCode, code)
		}
	}
}

func TestStopIsGraceful(t *testing.T) {
	s := startTestBackend(t)
	base := "http://" + s.Addrs()[1].String()

	// A request in flight when Stop starts still completes.
	done := make(chan int, 1)
	go func() {
		r, err := http.Get(base + "/sleep/300ms")
		if err != nil {
			done <- 0
			return
		}
		r.Body.Close()
		done <- r.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)
	cc := dial(t, s.Addrs()[0].String())
	hc := healthpb.NewHealthClient(cc)
	if _, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 200 {
		t.Errorf("in-flight request ended with %d, want 200", code)
	}
	if _, err := http.Get(base + "/"); err == nil {
		t.Error("HTTP still answers after Stop")
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("gRPC still answers after Stop")
	}
}

func TestStartFailsOnBusyPort(t *testing.T) {
	s := startTestBackend(t)
	busy := s.Addrs()[0].(*net.TCPAddr).Port
	if b, err := Start(Config{IP: "127.0.0.1", Ports: []Port{{Name: "grpc", Port: busy, Protocol: GRPC}}}); err == nil {
		b.Close()
		t.Fatalf("Start on busy port %d succeeded", busy)
	}
}

func TestProtocolForPortName(t *testing.T) {
	for name, want := range map[string]Protocol{"grpc": GRPC, "grpc-web": GRPC, "http": HTTP, "metrics": HTTP, "": HTTP} {
		if got := ProtocolForPortName(name); got != want {
			t.Errorf("ProtocolForPortName(%q) = %q, want %q", name, got, want)
		}
	}
}
