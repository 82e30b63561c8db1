package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/sluice-mesh/sluice/certs/wellknown"
)

// sdsNode is the one cache key: the socket serves the pod's own Envoy
// only, whatever node ID it sends.
const sdsNode = "local"

type oneNode struct{}

func (oneNode) ID(*corev3.Node) string { return sdsNode }

// SDSServer serves the workload's credentials to the local Envoy over SDS:
// secret wellknown.SDSCertificate (certificate chain and key) and
// wellknown.SDSTrustBundle (the roots). Requests made before the first
// certificate wait for it. It implements Publisher.
type SDSServer struct {
	cache   cachev3.SnapshotCache
	version atomic.Uint64
	log     *slog.Logger
}

// NewSDSServer returns a server with no credentials yet.
func NewSDSServer(log *slog.Logger) *SDSServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SDSServer{cache: cachev3.NewSnapshotCache(false, oneNode{}, nil), log: log.With("component", "sds")}
}

// Publish makes c the secrets served, pushing them to open streams.
func (s *SDSServer) Publish(ctx context.Context, c *Credentials) error {
	snap, err := cachev3.NewSnapshot(strconv.FormatUint(s.version.Add(1), 10), map[resourcev3.Type][]types.Resource{
		resourcev3.SecretType: Secrets(c),
	})
	if err != nil {
		return fmt.Errorf("SDS snapshot: %w", err)
	}
	if err := s.cache.SetSnapshot(ctx, sdsNode, snap); err != nil {
		return fmt.Errorf("SDS snapshot: %w", err)
	}
	return nil
}

// Secrets are c as the SDS secrets Envoy asks for.
func Secrets(c *Credentials) []types.Resource {
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	return []types.Resource{
		&tlsv3.Secret{
			Name: wellknown.SDSCertificate,
			Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inline(c.ChainPEM),
				PrivateKey:       inline(c.KeyPEM),
			}},
		},
		&tlsv3.Secret{
			Name: wellknown.SDSTrustBundle,
			Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: inline(c.TrustBundlePEM),
			}},
		},
	}
}

// Serve serves SDS on lis until ctx ends.
func (s *SDSServer) Serve(ctx context.Context, lis net.Listener) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gs := grpc.NewServer()
	secretservice.RegisterSecretDiscoveryServiceServer(gs, serverv3.NewServer(sctx, s.cache, nil))
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	s.log.Info("serving SDS", "address", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("SDS server: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("SDS server: %w", err)
	}
	return nil
}

// ListenUnix listens on a Unix socket at path, replacing a stale socket
// left by a previous run. The socket is mode 0660: Envoy must run as the
// agent's user or group.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("SDS socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("SDS socket %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale SDS socket: %w", err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("SDS socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, fmt.Errorf("SDS socket: %w", err)
	}
	return lis, nil
}
