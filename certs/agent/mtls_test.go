package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sluice-mesh/sluice/certs/authn"
	"github.com/sluice-mesh/sluice/certs/authn/authntest"
	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
	"github.com/sluice-mesh/sluice/certs/service"
)

const serviceName = "sluice.sluice-system.svc"

// Two agents get certificates from the real certificate service (loopback
// TLS, TokenReview against a fake API server); then a grpc-go server with
// one agent's certificate and a client with the other's talk mTLS, each
// side checking the other's SPIFFE ID. A certificate from another CA and a
// plaintext client are refused.
func TestTwoAgentsTalkMTLS(t *testing.T) {
	c := newCA(t, time.Now)
	addr := serveCertificates(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	server := runAgent(ctx, t, c, addr, "cart")
	client := runAgent(ctx, t, c, addr, "web")

	// The cart server requires a client certificate from the mesh and
	// records the caller's SPIFFE ID.
	callers := make(chan string, 4)
	srvTLS := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{server.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    server.Roots,
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(srvTLS)), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			p, _ := peer.FromContext(ctx)
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && ti.SPIFFEID != nil {
				callers <- ti.SPIFFEID.String()
			}
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go gs.Serve(lis)
	defer gs.Stop()

	call := func(cfg *tls.Config) error {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		require.NoError(t, err)
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		_, err = healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(false))
		return err
	}

	require.NoError(t, call(clientTLS(client, server.ID)))
	assert.Equal(t, "spiffe://cluster.local/ns/shop/sa/web", <-callers)

	// The client refuses a server that is not who it expects.
	err = call(clientTLS(client, testID("payments")))
	assert.ErrorContains(t, err, "spiffe://cluster.local/ns/shop/sa/cart, want spiffe://cluster.local/ns/shop/sa/payments")

	// A client whose certificate is from another CA is refused.
	foreign := issue(t, newCA(t, time.Now), testID("web"), time.Now())
	foreignCfg := clientTLS(foreign, server.ID)
	foreignCfg.RootCAs, foreignCfg.VerifyConnection = nil, verifyPeer(server.Roots, server.ID)
	err = call(foreignCfg)
	assert.Equal(t, codes.Unavailable, status.Code(err), "handshake refused: %v", err)

	// A plaintext client is refused.
	pconn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecureCreds()))
	require.NoError(t, err)
	defer pconn.Close()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	_, err = healthpb.NewHealthClient(pconn).Check(pctx, &healthpb.HealthCheckRequest{})
	assert.Error(t, err)
	assert.Empty(t, callers, "no refused caller reached the handler")
}

// A token for service account web cannot get a certificate for cart: the
// agent configured with the wrong identity keeps failing.
func TestAgentWithAnotherServiceAccountsTokenGetsNothing(t *testing.T) {
	c := newCA(t, time.Now)
	addr := serveCertificates(t, c)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("tok-web\n"), 0o600))
	cl, err := NewClient(ClientConfig{Address: addr, ServerName: serviceName, TrustPEM: c.TrustBundlePEM(), TokenFile: tokenFile})
	require.NoError(t, err)
	defer cl.Close()
	_, csr, err := newKeyAndCSR(testID("cart"))
	require.NoError(t, err)
	_, err = cl.CreateCertificate(context.Background(), csr, 0)
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
}

// The client does not talk to a certificate service it cannot verify.
func TestClientVerifiesTheService(t *testing.T) {
	c := newCA(t, time.Now)
	addr := serveCertificates(t, c)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("tok-cart"), 0o600))
	for name, cfg := range map[string]ClientConfig{
		"other CA":   {Address: addr, ServerName: serviceName, TrustPEM: newCA(t, time.Now).TrustBundlePEM(), TokenFile: tokenFile},
		"wrong name": {Address: addr, ServerName: "evil.example", TrustPEM: c.TrustBundlePEM(), TokenFile: tokenFile},
	} {
		cl, err := NewClient(cfg)
		require.NoError(t, err)
		_, csr, err := newKeyAndCSR(testID("cart"))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = cl.CreateCertificate(ctx, csr, 0)
		cancel()
		cl.Close()
		assert.ErrorContains(t, err, "verifying the certificate service", name)
	}
}

// serveCertificates runs the real certificate service for tokens tok-cart
// and tok-web.
func serveCertificates(t *testing.T, c *ca.CA) string {
	t.Helper()
	k8s := authntest.NewClientset(map[string]authntest.Token{
		"tok-cart": {Namespace: "shop", ServiceAccount: "cart", Audiences: []string{"sluice"}},
		"tok-web":  {Namespace: "shop", ServiceAccount: "web", Audiences: []string{"sluice"}},
	})
	svc, err := service.New(service.Options{
		CA:              func() *ca.CA { return c },
		Authenticator:   authn.NewTokenReview(k8s, "sluice"),
		ServingDNSNames: []string{serviceName},
		Log:             slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); assert.NoError(t, <-done) })
	return lis.Addr().String()
}

// runAgent runs an agent for service account sa (token tok-<sa>) and
// returns its first credentials.
func runAgent(ctx context.Context, t *testing.T, c *ca.CA, addr, sa string) *Credentials {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("tok-"+sa), 0o600))
	cl, err := NewClient(ClientConfig{Address: addr, ServerName: serviceName, TrustPEM: c.TrustBundlePEM(), TokenFile: tokenFile})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	a, err := New(Config{ID: testID(sa), Issuer: cl, MinBackoff: 10 * time.Millisecond})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { assert.NoError(t, <-done) })
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("agent %s got no certificate (%+v)", sa, a.Stats())
	}
	return a.Current()
}

// clientTLS presents creds and accepts only a server with SPIFFE ID want,
// chained to creds' trust bundle (workload certificates have no DNS names,
// so the usual host name check does not apply).
func clientTLS(creds *Credentials, want identity.ID) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{creds.Certificate},
		InsecureSkipVerify: true, //nolint:gosec // verified by verifyPeer
		VerifyConnection:   verifyPeer(creds.Roots, want),
	}
}

func verifyPeer(roots *x509.CertPool, want identity.ID) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return err
		}
		if len(leaf.URIs) != 1 {
			return fmt.Errorf("peer has %d URI SANs", len(leaf.URIs))
		}
		got, err := identity.FromURL(leaf.URIs[0])
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("peer is %s, want %s", got, want)
		}
		return nil
	}
}
