package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	certsv1 "github.com/sluice-mesh/sluice/certs/api/v1"
	"github.com/sluice-mesh/sluice/certs/authn"
	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
)

// Service is the certificate service.
type Service struct {
	certsv1.UnimplementedCertificateServiceServer

	opts    Options
	log     *slog.Logger
	metrics *metrics
	limiter *identityLimiter
	serving *servingCertificate
	agents  *Agents
	started atomic.Bool
	// stopping is closed when Serve's context ends, ending watch streams
	// so that the server can stop gracefully.
	stopping chan struct{}
}

// New returns the service configured by opts.
func New(opts Options) (*Service, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	agents := opts.Agents
	if agents == nil {
		agents = NewAgents()
	}
	m, err := newMetrics(opts.Registerer, opts.CA, agents)
	if err != nil {
		return nil, err
	}
	return &Service{
		opts:     opts,
		log:      opts.Log.With("component", "certificates"),
		metrics:  m,
		limiter:  newIdentityLimiter(opts.Rate, opts.Burst),
		agents:   agents,
		stopping: make(chan struct{}),
		serving: &servingCertificate{
			current: opts.CA, dnsNames: opts.ServingDNSNames, id: opts.ServingID,
			ttl: opts.ServingTTL, now: opts.Now,
		},
	}, nil
}

// TLSConfig is the server side of the service's TLS: a certificate from the
// CA for the serving DNS names, no client certificate asked (callers prove
// who they are with tokens: they have no certificate yet).
func (s *Service) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.serving.get}
}

// Serve serves the API over TLS on lis until ctx ends, then stops
// gracefully (at most 5s). It may be called once.
func (s *Service) Serve(ctx context.Context, lis net.Listener) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("certificate service: Serve called twice")
	}
	// Fail now, not at the first handshake, if the CA cannot sign for us.
	if _, err := s.serving.get(nil); err != nil {
		return fmt.Errorf("certificate service: %w", err)
	}
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.TLSConfig())),
		grpc.MaxRecvMsgSize(maxMessageBytes),
		// Watch streams are idle for hours: ping so that dead peers and
		// idle-killing middleboxes are noticed.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
	)
	certsv1.RegisterCertificateServiceServer(gs, s)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	s.log.Info("serving certificates", "address", lis.Addr().String(), "trustDomain", s.opts.TrustDomain,
		"authenticator", s.opts.AuthenticatorName, "dnsNames", s.opts.ServingDNSNames)
	select {
	case err := <-errc:
		return fmt.Errorf("certificate service on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	close(s.stopping)
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("certificate service on %s: %w", lis.Addr(), err)
	}
	return nil
}

// CreateCertificate implements the API: authenticate, rate-limit, check the
// CSR against the caller's identity, sign. Each refusal has its own code and
// reason; nothing is signed on any of them.
func (s *Service) CreateCertificate(ctx context.Context, req *certsv1.CreateCertificateRequest) (*certsv1.CreateCertificateResponse, error) {
	p, err := s.authenticate(ctx, "certificate")
	if err != nil {
		return nil, err
	}
	csr, id, err := ca.ParseCSR(req.GetCsr(), s.opts.MaxCSRBytes)
	if ce := (*ca.CSRError)(nil); errors.As(err, &ce) {
		return nil, s.refuse(ctx, &p, string(ce.Problem), codes.InvalidArgument, ce.Error())
	} else if err != nil {
		return nil, s.refuse(ctx, &p, string(ca.CSRMalformed), codes.InvalidArgument, err.Error())
	}
	want := identity.ID{TrustDomain: s.opts.TrustDomain, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount}
	if id.TrustDomain != want.TrustDomain {
		return nil, s.refuse(ctx, &p, reasonWrongTrustDomain, codes.PermissionDenied,
			fmt.Sprintf("the CSR asks for trust domain %q; this CA issues for %q", id.TrustDomain, want.TrustDomain))
	}
	if id != want {
		return nil, s.refuse(ctx, &p, reasonIdentityMismatch, codes.PermissionDenied,
			fmt.Sprintf("the token is service account %s/%s's; the CSR asks for %s", p.Namespace, p.ServiceAccount, id))
	}
	ttl, err := s.ttl(req)
	if err != nil {
		return nil, s.refuse(ctx, &p, reasonBadTTL, codes.InvalidArgument, err.Error())
	}
	issued, err := s.opts.CA().IssueLeaf(ca.LeafRequest{PublicKey: csr.PublicKey, ID: id, TTL: ttl})
	if err != nil {
		s.log.Error("signing failed", "id", id.String(), "error", err)
		return nil, s.refuse(ctx, &p, reasonSigningFailed, codes.Internal, "signing failed")
	}
	s.metrics.issued.Inc()
	s.log.Info("issued certificate", "id", id.String(), "pod", p.Pod, "serial", issued.Certificate.SerialNumber.Text(16),
		"notAfter", issued.Certificate.NotAfter.UTC(), "peer", peerAddr(ctx))
	return &certsv1.CreateCertificateResponse{
		CertificateChain:   issued.ChainPEM,
		TrustBundle:        issued.TrustBundlePEM,
		TrustBundleVersion: issued.TrustBundleVersion,
	}, nil
}

// authenticate checks the caller's bearer token and the rate of its
// identity's requests (what names the request in a refusal). A refusal is
// counted and logged, and returned as the status error to send.
func (s *Service) authenticate(ctx context.Context, what string) (authn.Principal, error) {
	token, err := bearerToken(ctx)
	if err != nil {
		return authn.Principal{}, s.refuse(ctx, nil, reasonNoToken, codes.Unauthenticated, err.Error())
	}
	p, err := s.opts.Authenticator.Authenticate(ctx, token)
	switch {
	case errors.Is(err, authn.ErrUnauthenticated):
		return p, s.refuse(ctx, nil, reasonBadToken, codes.Unauthenticated, "token refused: "+err.Error())
	case errors.Is(err, authn.ErrNotServiceAccount):
		return p, s.refuse(ctx, nil, reasonNotSA, codes.PermissionDenied, "certificates are for service accounts: "+err.Error())
	case err != nil:
		s.log.Warn("could not check a token", "error", err)
		return p, s.refuse(ctx, nil, reasonAuthnUnavailable, codes.Unavailable, "the token could not be checked now; retry later")
	}
	if !s.limiter.allow(p.Namespace+"/"+p.ServiceAccount, s.opts.Now()) {
		return p, s.refuse(ctx, &p, reasonRateLimited, codes.ResourceExhausted,
			fmt.Sprintf("too many %s requests for %s/%s; retry later", what, p.Namespace, p.ServiceAccount))
	}
	return p, nil
}

// ttl is the lifetime to sign for: the default when none is asked, capped
// to [MinTTL, MaxTTL].
func (s *Service) ttl(req *certsv1.CreateCertificateRequest) (time.Duration, error) {
	if req.GetTtl() == nil {
		return s.opts.DefaultTTL, nil
	}
	if err := req.GetTtl().CheckValid(); err != nil {
		return 0, fmt.Errorf("ttl: %w", err)
	}
	ttl := req.GetTtl().AsDuration()
	switch {
	case ttl < 0:
		return 0, fmt.Errorf("ttl %s is negative", ttl)
	case ttl == 0:
		return s.opts.DefaultTTL, nil
	case ttl < s.opts.MinTTL:
		return s.opts.MinTTL, nil
	case ttl > s.opts.MaxTTL:
		return s.opts.MaxTTL, nil
	}
	return ttl, nil
}

func (s *Service) refuse(ctx context.Context, p *authn.Principal, reason string, code codes.Code, msg string) error {
	s.metrics.refused.WithLabelValues(reason).Inc()
	attrs := []any{"reason", reason, "code", code.String(), "message", msg, "peer", peerAddr(ctx)}
	if p != nil {
		attrs = append(attrs, "namespace", p.Namespace, "serviceAccount", p.ServiceAccount, "pod", p.Pod)
	}
	s.log.Info("refused request", attrs...)
	return status.Error(code, msg)
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// DebugInfo is the service's /debug page: configuration and the CA, keys
// redacted.
type DebugInfo struct {
	TrustDomain     string          `json:"trustDomain"`
	Authenticator   string          `json:"authenticator"`
	DefaultTTL      string          `json:"defaultTTL"`
	MinTTL          string          `json:"minTTL"`
	MaxTTL          string          `json:"maxTTL"`
	ServingDNSNames []string        `json:"servingDNSNames"`
	CA              ca.MaterialInfo `json:"ca"`
	// TrustBundleVersion is the version pushed to agents; Agents are those
	// watching it on this replica, with the version each applied.
	TrustBundleVersion uint64        `json:"trustBundleVersion"`
	Agents             []AgentStatus `json:"agents"`
}

// Debug returns the DebugInfo (for a debug.Section's Data).
func (s *Service) Debug() any {
	return DebugInfo{
		TrustDomain:        s.opts.TrustDomain,
		Authenticator:      s.opts.AuthenticatorName,
		DefaultTTL:         s.opts.DefaultTTL.String(),
		MinTTL:             s.opts.MinTTL.String(),
		MaxTTL:             s.opts.MaxTTL.String(),
		ServingDNSNames:    s.opts.ServingDNSNames,
		CA:                 s.opts.CA().Material().Info(),
		TrustBundleVersion: s.opts.CA().TrustBundleVersion(),
		Agents:             s.agents.List(),
	}
}

// Agents are the agents watching the trust bundle on this replica.
func (s *Service) Agents() *Agents { return s.agents }
