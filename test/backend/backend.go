// Package backend is the fake workload of Sluice's end-to-end tests: a gRPC
// and HTTP server that answers every request with the name, zone and version
// of the pod it pretends to be. The test kubelet (test/cluster) starts one
// per pod on the pod's IP; tests can also start one directly.
package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// Identity is what a backend reports about itself in every response.
type Identity struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Zone      string `json:"zone"`
	Version   string `json:"version"`
}

// Protocol is what a backend serves on a port.
type Protocol string

// The protocols a backend serves.
const (
	GRPC Protocol = "grpc"
	HTTP Protocol = "http"
)

// Port is one listening port of a backend.
type Port struct {
	Name     string
	Port     int
	Protocol Protocol
}

// Default ports of a pod whose containers declare none.
const (
	DefaultGRPCPort = 9090
	DefaultHTTPPort = 8080
)

// DefaultPorts is what a backend serves when a pod declares no ports.
func DefaultPorts() []Port {
	return []Port{
		{Name: "grpc", Port: DefaultGRPCPort, Protocol: GRPC},
		{Name: "http", Port: DefaultHTTPPort, Protocol: HTTP},
	}
}

// ProtocolForPortName says what a backend serves on a port with that name:
// gRPC when the name starts with "grpc", HTTP otherwise.
func ProtocolForPortName(name string) Protocol {
	if strings.HasPrefix(name, "grpc") {
		return GRPC
	}
	return HTTP
}

// Config says who a backend is and where it listens.
type Config struct {
	Identity
	// IP is the address every port listens on, e.g. the pod IP.
	IP string
	// Ports to serve; DefaultPorts() when empty.
	Ports []Port
}

// Server is a running backend.
type Server struct {
	id        Identity
	grpcs     []*grpc.Server
	https     []*http.Server
	health    []*healthState
	addrs     []net.Addr
	stopOnce  sync.Once
	closeOnce sync.Once
}

// Start listens on every port of cfg and serves until Stop or Close.
func Start(cfg Config) (*Server, error) {
	ports := cfg.Ports
	if len(ports) == 0 {
		ports = DefaultPorts()
	}
	s := &Server{id: cfg.Identity}
	for _, p := range ports {
		addr := net.JoinHostPort(cfg.IP, strconv.Itoa(p.Port))
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("backend %s: listen on %s (port %q): %w", cfg.Pod, addr, p.Name, err)
		}
		s.addrs = append(s.addrs, lis.Addr())
		switch p.Protocol {
		case GRPC:
			gs, hs := newGRPCServer(s.id)
			s.grpcs = append(s.grpcs, gs)
			s.health = append(s.health, hs)
			go func() { _ = gs.Serve(lis) }()
		default:
			hs := &http.Server{Handler: newHTTPHandler(s.id), ReadHeaderTimeout: 10 * time.Second}
			s.https = append(s.https, hs)
			go func() { _ = hs.Serve(lis) }()
		}
	}
	return s, nil
}

// Addrs are the addresses the backend listens on, in the order of its ports.
func (s *Server) Addrs() []net.Addr { return s.addrs }

// Stop shuts the backend down gracefully: gRPC health turns NOT_SERVING,
// listeners close, and in-flight requests finish until ctx is done, after
// which the remaining connections are closed.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		for _, h := range s.health {
			h.shutdown()
		}
		var wg sync.WaitGroup
		for _, gs := range s.grpcs {
			wg.Go(func() {
				done := make(chan struct{})
				go func() { gs.GracefulStop(); close(done) }()
				select {
				case <-done:
				case <-ctx.Done():
					gs.Stop()
				}
			})
		}
		var mu sync.Mutex
		for _, hs := range s.https {
			wg.Go(func() {
				if e := hs.Shutdown(ctx); e != nil && !errors.Is(e, context.Canceled) && !errors.Is(e, context.DeadlineExceeded) {
					mu.Lock()
					err = errors.Join(err, e)
					mu.Unlock()
				}
				_ = hs.Close()
			})
		}
		wg.Wait()
	})
	return err
}

// Close stops the backend at once, dropping in-flight requests.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		for _, gs := range s.grpcs {
			gs.Stop()
		}
		for _, hs := range s.https {
			_ = hs.Close()
		}
	})
}
