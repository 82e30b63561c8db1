package server

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

func TestConfigDump(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	grpcLike(t, env, "grpc-1", nil)
	out, err := env.srv.ConfigDump("grpc-1")
	if err != nil {
		t.Fatal(err)
	}
	var dump struct {
		ID    string `json:"id"`
		Types []struct {
			TypeURL   string            `json:"typeUrl"`
			Version   string            `json:"version"`
			Resources []json.RawMessage `json:"resources"`
		} `json:"types"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if dump.ID != "grpc-1" || len(dump.Types) != 4 || dump.Types[0].TypeURL != resourcev3.ClusterType {
		t.Fatalf("dump = %s", out)
	}
	for _, ty := range dump.Types {
		if len(ty.Resources) != 1 || ty.Version == "" {
			t.Errorf("%s: %d resources, version %q", ty.TypeURL, len(ty.Resources), ty.Version)
		}
	}
	var cluster map[string]any
	if err := json.Unmarshal(dump.Types[0].Resources[0], &cluster); err != nil || cluster["name"] != "api.default:8080" {
		t.Errorf("cluster = %v (%v)", cluster, err)
	}
	if _, err := env.srv.ConfigDump("nobody"); !errors.Is(err, ErrUnknownProxy) {
		t.Errorf("ConfigDump(unknown) = %v", err)
	}
}

func TestAckedEverywhere(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	a := grpcLike(t, env, "a", nil)
	b := grpcLike(t, env, "b", map[string]string{MetaNamespace: "other"})
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	without := func(ip string) func(types.Resource) bool {
		return func(r types.Resource) bool {
			for _, addr := range endpointsOf(r.(*endpointv3.ClusterLoadAssignment)) {
				if addr == ip {
					return false
				}
			}
			return true
		}
	}
	if !env.srv.AckedEverywhere(resourcev3.EndpointType, "api.default:8080", without("10.0.0.9")) {
		t.Error("no proxy has 10.0.0.9, yet not AckedEverywhere")
	}
	if env.srv.AckedEverywhere(resourcev3.EndpointType, "api.default:8080", without("10.0.0.2")) {
		t.Error("every proxy has 10.0.0.2, yet AckedEverywhere without it")
	}
	env.srv.OnSnapshot(context.Background(), snapshotOf(service("default", "api", 8080).withEndpoints(8080, "10.0.0.1"), (*twoServices())[1]), true)
	ra := a.recvType(resourcev3.EndpointType)
	rb := b.recvType(resourcev3.EndpointType)
	a.ack(ra)
	if env.srv.AckedEverywhere(resourcev3.EndpointType, "api.default:8080", without("10.0.0.2")) {
		t.Error("b has not ACKed yet")
	}
	b.ack(rb)
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	if !env.srv.AckedEverywhere(resourcev3.EndpointType, "api.default:8080", without("10.0.0.2")) {
		t.Error("both ACKed endpoints without 10.0.0.2")
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	srv := New(Config{ShutdownGrace: 10 * time.Second}, &testTranslator{}, prometheus.NewRegistry(), nil)
	srv.OnSnapshot(context.Background(), twoServices().snapshot(), false)
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
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: grpcNode("x", nil), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	// Streams are ended by the server, not cut by the grace timeout.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	if _, err := stream.Recv(); err == nil {
		t.Error("stream still open after shutdown")
	}
}
