// Command backend starts the example mesh's backends on loopback: three
// greeter pods (gRPC, 127.0.0.1-3:50051) and one web pod (HTTP,
// 127.0.0.4:8080), matching examples/mesh. Each answers with its pod name
// and zone.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluice-mesh/sluice/test/backend"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pods := []backend.Config{
		{Identity: backend.Identity{Pod: "greeter-1", Namespace: "demo", Zone: "zone-a"}, IP: "127.0.0.1", Ports: []backend.Port{{Name: "grpc", Port: 50051, Protocol: backend.GRPC}}},
		{Identity: backend.Identity{Pod: "greeter-2", Namespace: "demo", Zone: "zone-a"}, IP: "127.0.0.2", Ports: []backend.Port{{Name: "grpc", Port: 50051, Protocol: backend.GRPC}}},
		{Identity: backend.Identity{Pod: "greeter-3", Namespace: "demo", Zone: "zone-b"}, IP: "127.0.0.3", Ports: []backend.Port{{Name: "grpc", Port: 50051, Protocol: backend.GRPC}}},
		{Identity: backend.Identity{Pod: "web-1", Namespace: "demo", Zone: "zone-a"}, IP: "127.0.0.4", Ports: []backend.Port{{Name: "http", Port: 8080, Protocol: backend.HTTP}}},
	}
	var servers []*backend.Server
	for _, cfg := range pods {
		s, err := backend.Start(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "backend:", err)
			os.Exit(1)
		}
		servers = append(servers, s)
		fmt.Printf("%s (%s) listening on %v\n", cfg.Pod, cfg.Zone, s.Addrs())
	}
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Stop(shutdown)
	}
}
