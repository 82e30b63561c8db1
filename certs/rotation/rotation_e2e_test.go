package rotation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/tls/certprovider"
	"google.golang.org/grpc/credentials/tls/certprovider/pemfile"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/sluice-mesh/sluice/certs/agent"
	"github.com/sluice-mesh/sluice/certs/authn"
	"github.com/sluice-mesh/sluice/certs/authn/authntest"
	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
	"github.com/sluice-mesh/sluice/certs/service"
	"github.com/sluice-mesh/sluice/certs/wellknown"
)

// Timings of the rotation under load, scaled down from hours to seconds.
const (
	e2eLeafTTL     = 3 * time.Second
	e2eReload      = 250 * time.Millisecond
	e2eFileRefresh = 100 * time.Millisecond
	// e2eApplyDelay covers the file watcher's refresh.
	e2eApplyDelay = 3 * e2eFileRefresh
)

// A whole root rotation, then an intermediate rotation, while two
// workloads talk mTLS. The real
// certificate service (loopback TLS, TokenReview against a fake API
// server) signs with the CA the real rotation machine serves; two agents
// (cart, web) renew 3-second certificates, watch the trust bundle and
// write files; a grpc-go server with cart's files and a client with web's,
// both reading them through grpc-go's pemfile certificate provider (the
// file_watcher of proxyless gRPC), verify each other's chain and SPIFFE ID.
// RPCs run in a loop from before the rotation starts until after it ends,
// each on a new connection (a full handshake) and on one long-lived
// connection: none may fail. The server must have seen client
// certificates from the three intermediates.
func TestRootRotationUnderLoadFailsNoRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("a root rotation takes about ten seconds")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	store := ca.DirStore{Dir: filepath.Join(dir, "ca")}
	_, err := ca.LoadOrCreate(ctx, store, ca.BootstrapOptions{Generate: true, GenerateOptions: ca.GenerateOptions{TrustDomain: "cluster.local"}})
	require.NoError(t, err)
	initial, err := store.LoadState(ctx)
	require.NoError(t, err)
	oldInter := initial.Material.Signer()

	// The control plane: the service reads the machine's CA.
	k8s := authntest.NewClientset(map[string]authntest.Token{
		"tok-cart": {Namespace: "shop", ServiceAccount: "cart", Pod: "cart-1", Audiences: []string{"sluice"}},
		"tok-web":  {Namespace: "shop", ServiceAccount: "web", Pod: "web-1", Audiences: []string{"sluice"}},
	})
	agents := service.NewAgents()
	m, err := New(ctx, Config{
		Store: store, Agents: agents, Replica: "sluice-0",
		Generate:   ca.GenerateOptions{TrustDomain: "cluster.local"},
		MaxLeafTTL: e2eLeafTTL, ReloadInterval: e2eReload, Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	svc, err := service.New(service.Options{
		CA: m.Source().Current, CAChanges: m.Source().Changed, Agents: agents,
		Authenticator: authn.NewTokenReview(k8s, "sluice"), ServingDNSNames: []string{"sluice.sluice-system.svc"},
		DefaultTTL: e2eLeafTTL, MaxTTL: e2eLeafTTL, MinTTL: time.Second,
	})
	require.NoError(t, err)
	caLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	bg.Add(2)
	go func() { defer bg.Done(); assert.NoError(t, svc.Serve(ctx, caLis)) }()
	go func() { defer bg.Done(); assert.NoError(t, m.Run(ctx)) }()

	// The workloads' agents.
	cart := startAgent(ctx, t, &bg, caLis.Addr().String(), initial.Material, "cart", dir)
	web := startAgent(ctx, t, &bg, caLis.Addr().String(), initial.Material, "web", dir)

	// cart serves gRPC with its files; web calls it with its own.
	cartID, webID := shopID("cart"), shopID("web")
	serverCreds := providerCreds(t, cart.dir, true, webID)
	var clientIssuers sync.Map // authority key IDs of the client certificates seen
	gs := grpc.NewServer(grpc.Creds(serverCreds), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if p, ok := peer.FromContext(ctx); ok {
				if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
					clientIssuers.Store(hex.EncodeToString(ti.State.PeerCertificates[0].AuthorityKeyId), true)
				}
			}
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go gs.Serve(lis)
	defer gs.Stop()
	clientCreds := providerCreds(t, web.dir, false, cartID)

	// Load: fresh connections (a handshake each) and one long-lived one.
	var handshakeOK, handshakeFail, streamOK, streamFail atomic.Int64
	var failures sync.Map
	load, stopLoad := context.WithCancel(ctx)
	var loaders sync.WaitGroup
	loaders.Add(2)
	go func() {
		defer loaders.Done()
		for load.Err() == nil {
			err := checkOnce(load, lis.Addr().String(), clientCreds)
			switch {
			case err == nil:
				handshakeOK.Add(1)
			case load.Err() == nil:
				handshakeFail.Add(1)
				failures.Store(err.Error(), true)
			}
		}
	}()
	go func() {
		defer loaders.Done()
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(clientCreds))
		if !assert.NoError(t, err) {
			return
		}
		defer conn.Close()
		hc := healthpb.NewHealthClient(conn)
		for load.Err() == nil {
			rctx, rcancel := context.WithTimeout(load, 5*time.Second)
			_, err := hc.Check(rctx, &healthpb.HealthCheckRequest{})
			rcancel()
			switch {
			case err == nil:
				streamOK.Add(1)
			case load.Err() == nil:
				streamFail.Add(1)
				failures.Store(err.Error(), true)
			}
			time.Sleep(time.Millisecond)
		}
	}()

	// Leaves rotate a couple of times before the root rotation starts.
	time.Sleep(e2eLeafTTL)
	renewalsBefore := cart.agent.Stats().Renewals + web.agent.Stats().Renewals
	rootReq := NewRequest(ca.RotateRoot, "test", time.Now())
	require.NoError(t, m.Request(ctx, rootReq))
	started := time.Now()
	phases := watchPhases(t, m, rootReq, 30*time.Second)
	rotation := time.Since(started)
	afterRoot, err := store.LoadState(ctx)
	require.NoError(t, err)
	// Leaves rotate under the new root; then the intermediate is rotated.
	time.Sleep(e2eLeafTTL)
	interReq := NewRequest(ca.RotateIntermediate, "test", time.Now())
	require.NoError(t, m.Request(ctx, interReq))
	interStarted := time.Now()
	watchPhases(t, m, interReq, 30*time.Second)
	interPhases := time.Since(interStarted).Round(10 * time.Millisecond)
	// And after it ends.
	time.Sleep(e2eLeafTTL)
	stopLoad()
	loaders.Wait()

	final, err := store.LoadState(ctx)
	require.NoError(t, err)
	require.NotNil(t, final.Rotation.Last)
	assert.Equal(t, ca.RotateIntermediate, final.Rotation.Last.Kind)
	assert.True(t, final.Material.Roots[0].Equal(afterRoot.Material.Roots[0]), "the intermediate rotation kept the root")
	assert.False(t, final.Material.Signer().Equal(afterRoot.Material.Signer()))
	require.Equal(t, ca.PhaseIdle, final.Phase())
	require.Len(t, final.Material.Roots, 1)
	assert.False(t, final.Material.Roots[0].Equal(initial.Material.Roots[0]), "a new root")
	assert.Equal(t, uint64(3), final.TrustBundleVersion())
	for _, a := range []*e2eAgent{cart, web} {
		c := a.agent.Current()
		assert.Equal(t, uint64(3), c.TrustBundleVersion, a.name)
		assert.True(t, c.Leaf.CheckSignatureFrom(final.Material.Signer()) == nil, "%s: leaf from the new intermediate", a.name)
	}
	seen := 0
	clientIssuers.Range(func(any, any) bool { seen++; return true })
	_, sawOld := clientIssuers.Load(hex.EncodeToString(oldInter.SubjectKeyId))
	_, sawNew := clientIssuers.Load(hex.EncodeToString(afterRoot.Material.Signer().SubjectKeyId))
	_, sawLast := clientIssuers.Load(hex.EncodeToString(final.Material.Signer().SubjectKeyId))
	assert.True(t, sawOld && sawNew && sawLast, "client certificates from the three intermediates reached the server (%d issuers)", seen)

	renewals := cart.agent.Stats().Renewals + web.agent.Stats().Renewals
	t.Logf("root rotation: %s (%s); intermediate rotation: %s; leaf renewals: %d in all, %d from the root rotation on",
		rotation.Round(10*time.Millisecond), phases, interPhases, renewals, renewals-renewalsBefore)
	t.Logf("RPCs: %d on new connections (%d failed), %d on one connection (%d failed)",
		handshakeOK.Load(), handshakeFail.Load(), streamOK.Load(), streamFail.Load())
	failures.Range(func(k, _ any) bool { t.Errorf("RPC failure: %v", k); return true })
	assert.Zero(t, handshakeFail.Load()+streamFail.Load(), "failed RPCs")
	assert.Greater(t, handshakeOK.Load(), int64(100))
	assert.Greater(t, streamOK.Load(), int64(100))
	assert.GreaterOrEqual(t, renewals, 10, "at least five leaf rotations per agent")
}

type e2eAgent struct {
	name  string
	agent *agent.Agent
	dir   string
}

func startAgent(ctx context.Context, t *testing.T, bg *sync.WaitGroup, addr string, trust *ca.Material, sa, dir string) *e2eAgent {
	t.Helper()
	tokenFile := filepath.Join(dir, sa+".token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("tok-"+sa), 0o600))
	cl, err := agent.NewClient(agent.ClientConfig{
		Address: addr, ServerName: "sluice.sluice-system.svc", TrustPEM: ca.EncodeCertificates(trust.Roots...), TokenFile: tokenFile,
		WatchMinBackoff: 20 * time.Millisecond, WatchMaxBackoff: 200 * time.Millisecond,
	})
	require.NoError(t, err)
	certs := filepath.Join(dir, sa)
	a, err := agent.New(agent.Config{
		ID: shopID(sa), Issuer: cl, TTL: e2eLeafTTL, Publishers: []agent.Publisher{agent.FileWriter{Dir: certs}},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, ApplyDelay: e2eApplyDelay,
		Log: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	bg.Add(2)
	go func() { defer bg.Done(); assert.NoError(t, a.Run(ctx)) }()
	go func() { defer bg.Done(); defer cl.Close(); assert.NoError(t, cl.WatchTrustBundle(ctx, sa+"-1", a)) }()
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("agent %s got no certificate (%+v)", sa, a.Stats())
	}
	return &e2eAgent{name: sa, agent: a, dir: certs}
}

func shopID(sa string) identity.ID {
	return identity.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: sa}
}

// providerCreds are mTLS credentials from an agent's files, read by
// grpc-go's pemfile provider, requiring the peer to be want.
func providerCreds(t *testing.T, dir string, server bool, want identity.ID) credentials.TransportCredentials {
	t.Helper()
	prov, err := pemfile.NewProvider(pemfile.Options{
		CertFile: filepath.Join(dir, wellknown.CertChainFile), KeyFile: filepath.Join(dir, wellknown.KeyFile),
		RootFile: filepath.Join(dir, wellknown.TrustBundleFile), RefreshDuration: e2eFileRefresh,
	})
	require.NoError(t, err)
	t.Cleanup(prov.Close)
	material := func() (*certprovider.KeyMaterial, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return prov.KeyMaterial(ctx)
	}
	cert := func() (*tls.Certificate, error) {
		km, err := material()
		if err != nil {
			return nil, err
		}
		return &km.Certs[0], nil
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Workload certificates have no DNS names: the chain and the
		// SPIFFE ID are checked below.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyPeerCertificate
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			km, err := material()
			if err != nil {
				return err
			}
			return verifyPeer(raw, km.Roots, want, server)
		},
	}
	if server {
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert() }
		cfg.ClientAuth = tls.RequireAnyClientCert
	} else {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert() }
	}
	return credentials.NewTLS(cfg)
}

func verifyPeer(raw [][]byte, roots *x509.CertPool, want identity.ID, server bool) error {
	if len(raw) == 0 {
		return errors.New("no peer certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	usage := x509.ExtKeyUsageServerAuth
	if server {
		usage = x509.ExtKeyUsageClientAuth
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("peer certificate (issuer key %x): %w", certs[0].AuthorityKeyId, err)
	}
	if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != want.String() {
		return fmt.Errorf("peer is %v, want %s", certs[0].URIs, want)
	}
	return nil
}

// checkOnce makes one RPC on a new connection.
func checkOnce(ctx context.Context, addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(rctx, &healthpb.HealthCheckRequest{})
	return err
}

// watchPhases waits until the rotation requested by req is completed and
// returns how long each phase it saw lasted.
func watchPhases(t *testing.T, m *Machine, req ca.RotationRequest, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	last, since := ca.PhaseIdle, time.Now()
	var out []string
	for time.Now().Before(deadline) {
		s := m.Status()
		if s.Phase != last {
			if last != ca.PhaseIdle {
				out = append(out, fmt.Sprintf("%s %s", last, time.Since(since).Round(10*time.Millisecond)))
			}
			last, since = s.Phase, time.Now()
		}
		if s.Phase == ca.PhaseIdle && s.Request != nil && s.Request.ID == req.ID && strings.HasPrefix(s.RequestResult, "completed") {
			return strings.Join(out, ", ")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the rotation did not end within %s (phase %s, waiting for %v)", limit, last, m.Status().WaitingFor)
	return ""
}
