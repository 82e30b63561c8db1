package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/sluice-mesh/sluice/mesh"
)

// Server serves the translated mesh over xDS.
//
// Consumes mesh snapshots (OnSnapshot); produces ADS responses, SotW and
// delta, to every connected proxy, plus their status for /debug.
type Server struct {
	cfg     Config
	log     *slog.Logger
	cache   *xdsCache
	serving atomic.Bool
}

// New returns a server translating with tr. Metrics are registered on reg
// (nothing is registered when reg is nil).
func New(cfg Config, tr Translator, reg prometheus.Registerer, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "xds")
	return &Server{cfg: cfg.withDefaults(), log: log, cache: newCache(tr, newMetrics(reg), log)}
}

// OnSnapshot installs a new snapshot and pushes what changed to every
// connected proxy. endpointsOnly says the snapshot differs from the previous
// one in endpoints alone: only EDS is recomputed, listeners, routes and
// clusters are reused. Calls are serialized; the snapshot must not be
// modified afterwards.
func (s *Server) OnSnapshot(_ context.Context, snap *mesh.Snapshot, endpointsOnly bool) {
	start := time.Now()
	seq := s.cache.setSnapshot(snap, endpointsOnly)
	s.log.Debug("xDS snapshot installed", "seq", seq, "endpointsOnly", endpointsOnly, "took", time.Since(start))
}

// Seq is the sequence number of the latest snapshot (1 for the first, 0
// before any).
func (s *Server) Seq() uint64 {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.gen.seq
}

// Ready returns nil once a full snapshot has been installed, else why not.
// Proxies that connect earlier wait for it; they get no empty configuration.
func (s *Server) Ready() error {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	if !s.cache.fullSnapshot {
		return errors.New("xDS server: no full snapshot yet")
	}
	return nil
}

// Serve serves xDS on lis until ctx is canceled, then ends the streams,
// waits up to Config.ShutdownGrace for the connections to close and closes
// the rest. It returns nil after a shutdown, the serving error otherwise.
// It may be called once (stream numbering is per go-control-plane server).
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("xDS server: Serve called twice")
	}
	xdsCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	xs := serverv3.NewServer(xdsCtx, s.cache, s.cache,
		// One ordered channel per ADS stream: responses leave in the order
		// the cache produced them (clusters before endpoints...).
		sotw.WithOrderedADS(),
		sotw.WithLogger(gcpLogger{s.log}),
	)
	gs := grpc.NewServer(s.cfg.serverOptions()...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xs)

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	s.log.Info("serving xDS", "address", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serving xDS on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	// xdsCtx is done: go-control-plane ends every stream; GracefulStop then
	// waits for the handlers to return and tells clients to go away.
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(s.cfg.ShutdownGrace):
		s.log.Warn("xDS streams still open after the shutdown grace period; closing them", "grace", s.cfg.ShutdownGrace)
		gs.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving xDS on %s: %w", lis.Addr(), err)
	}
	s.log.Info("xDS server stopped")
	return nil
}

// gcpLogger sends go-control-plane's logs to slog at debug level (its
// warnings and errors at theirs).
type gcpLogger struct{ l *slog.Logger }

var _ gcplog.Logger = gcpLogger{}

func (g gcpLogger) logf(level slog.Level, format string, args []any) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, fmt.Sprintf(format, args...), "source", "go-control-plane")
	}
}

func (g gcpLogger) Debugf(format string, args ...any) { g.logf(slog.LevelDebug, format, args) }
func (g gcpLogger) Infof(format string, args ...any)  { g.logf(slog.LevelDebug, format, args) }
func (g gcpLogger) Warnf(format string, args ...any)  { g.logf(slog.LevelWarn, format, args) }
func (g gcpLogger) Errorf(format string, args ...any) { g.logf(slog.LevelError, format, args) }
