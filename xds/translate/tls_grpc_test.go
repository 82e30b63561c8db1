package translate_test

// Mutual TLS as grpc-go does it: the gRPC-kind output of Translate is
// served over ADS (adsServer, grpc_client_test.go) to a real
// xds.NewGRPCServer with xDS server credentials and to real xDS clients
// with xDS client credentials, all on loopback. Certificates come from a
// real Sluice CA (certs/ca) through files and the file_watcher provider
// named by the bootstrap, as the certificate agent writes them.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	xdsgrpc "google.golang.org/grpc/xds"

	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/bootstrap"
	"github.com/sluice-mesh/sluice/xds/translate"
	"github.com/sluice-mesh/sluice/xds/validate"
)

const (
	tlsTestNamespace = "shop"
	tlsTestDomain    = "cluster.local"
)

// testCA issues workload certificates into directories for file_watcher.
type testCA struct{ ca *ca.CA }

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	m, err := ca.Generate(ca.GenerateOptions{TrustDomain: tlsTestDomain, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(m, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca: c}
}

// issue writes the certificate of service account sa (chain, key, and the
// roots of trust, which may be another CA's) and returns the files.
func (c *testCA) issue(t *testing.T, sa string, roots []byte) bootstrap.CertificateFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issued, err := c.ca.IssueLeaf(ca.LeafRequest{
		PublicKey: key.Public(),
		ID:        identity.ID{TrustDomain: tlsTestDomain, Namespace: tlsTestNamespace, ServiceAccount: sa},
		TTL:       time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.EncodePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if roots == nil {
		roots = issued.TrustBundlePEM
	}
	dir := t.TempDir()
	files := bootstrap.CertificateFiles{
		CertificateFile:   filepath.Join(dir, "cert-chain.pem"),
		PrivateKeyFile:    filepath.Join(dir, "key.pem"),
		CACertificateFile: filepath.Join(dir, "root-cert.pem"),
		RefreshInterval:   time.Second,
	}
	for path, data := range map[string][]byte{files.CertificateFile: issued.ChainPEM, files.PrivateKeyFile: keyPEM, files.CACertificateFile: roots} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// grpcBootstrap is the bootstrap a workload's agent writes: node metadata
// and the certificate provider "sluice" reading files.
func grpcBootstrap(t *testing.T, adsAddr, pod string, files bootstrap.CertificateFiles) []byte {
	t.Helper()
	base, err := bootstrap.GRPC(bootstrap.Workload{Pod: pod, Namespace: tlsTestNamespace, XDSAddress: adsAddr})
	if err != nil {
		t.Fatal(err)
	}
	out, err := bootstrap.WithCertificateProviders(base, files)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tlsMesh is service cart of namespace shop with one endpoint, a real
// xds.NewGRPCServer, and two ADS servers serving Translate's output for
// gRPC proxies of namespace shop: with certificates (MTLS, the server and
// mTLS clients, whose bootstraps have the certificate provider) and
// without (plaintext clients), as the xDS server's classes would.
type tlsMesh struct {
	snap    *mesh.Snapshot
	ads     map[bool]*adsServer
	adsAddr map[bool]string
	lis     net.Listener
	callers chan string
	ca      *testCA
}

// startADS translates the snapshot for a gRPC proxy of namespace shop with
// or without certificates and serves it.
func (m *tlsMesh) startADS(t *testing.T, mtls bool) {
	t.Helper()
	res := translate.Translate(m.snap, &mesh.Proxy{ID: "shop", Kind: mesh.ProxyGRPC, Namespace: tlsTestNamespace, MTLS: mtls}, translate.Options{TrustDomain: tlsTestDomain})
	if err := validate.GRPCResources(res.Resources); err != nil {
		t.Fatalf("translation does not validate: %v", err)
	}
	ads := newADSServer(res.Resources)
	m.ads[mtls] = ads
	m.adsAddr[mtls] = serve(t, func(s *grpc.Server) { discoveryv3.RegisterAggregatedDiscoveryServiceServer(s, ads) })
	t.Cleanup(func() {
		if n := ads.nacked(); len(n) > 0 {
			t.Errorf("grpc-go NACKed: %q", n)
		}
	})
}

// startTLSMesh translates cart (mode, endpoint service account
// endpointSA) and starts an xDS server with serverSA's certificate on the
// endpoint's address, waiting until it serves.
func startTLSMesh(t *testing.T, mode mesh.TLSMode, endpointSA, serverSA string) *tlsMesh {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &tlsMesh{lis: lis, callers: make(chan string, 100), ca: newTestCA(t), ads: map[bool]*adsServer{}, adsAddr: map[bool]string{}}
	port := uint32(lis.Addr().(*net.TCPAddr).Port)
	key := mesh.PortKey{Namespace: tlsTestNamespace, Name: "cart", Port: 9090}
	m.snap = &mesh.Snapshot{
		Services: []*mesh.Service{{
			Namespace: tlsTestNamespace, Name: "cart", TLSMode: mode,
			Ports: []mesh.Port{{Name: "grpc", Port: 9090, Protocol: mesh.ProtocolGRPC}},
		}},
		Endpoints: map[mesh.PortKey][]mesh.Endpoint{key: {{Address: "127.0.0.1", Port: port, ServiceAccount: endpointSA}}},
	}
	m.startADS(t, true)
	m.startADS(t, false)

	serverCreds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	serving := make(chan error, 10)
	srv, err := xdsgrpc.NewGRPCServer(
		grpc.Creds(serverCreds),
		xdsgrpc.BootstrapContentsForTesting(grpcBootstrap(t, m.adsAddr[true], "cart-1", m.ca.issue(t, serverSA, nil))),
		xdsgrpc.ServingModeCallback(func(_ net.Addr, args xdsgrpc.ServingModeChangeArgs) {
			if args.Mode == connectivity.ServingModeServing {
				serving <- nil
			} else if args.Err != nil {
				serving <- args.Err
			}
		}),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			m.callers <- peerSPIFFEID(ctx)
			return h(ctx, req)
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	select {
	case err := <-serving:
		if err != nil {
			t.Fatalf("xDS server not serving: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("xDS server not serving after 10s")
	}
	return m
}

// peerSPIFFEID is the SPIFFE ID of the peer's certificate, "" without one.
func peerSPIFFEID(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && ti.SPIFFEID != nil {
		return ti.SPIFFEID.String()
	}
	return ""
}

// call dials xds:///cart.shop:9090 as a client with its own bootstrap
// (certificate files or none) and credentials, sends one RPC and returns
// its error and the server's SPIFFE ID as the client saw it.
func (m *tlsMesh) call(t *testing.T, files *bootstrap.CertificateFiles, creds credentials.TransportCredentials) (string, error) {
	t.Helper()
	var cfg []byte
	if files != nil {
		cfg = grpcBootstrap(t, m.adsAddr[true], "web-1", *files)
	} else {
		var err error
		cfg, err = bootstrap.GRPC(bootstrap.Workload{Pod: "web-1", Namespace: tlsTestNamespace, XDSAddress: m.adsAddr[false]})
		if err != nil {
			t.Fatal(err)
		}
	}
	builder, err := xdsgrpc.NewXDSResolverWithConfigForTesting(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///cart.shop:9090", grpc.WithTransportCredentials(creds), grpc.WithResolvers(builder))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	// Not wait-for-ready: the RPC waits while the channel resolves and
	// connects, and fails with the connection's error (a failed handshake)
	// once it is in transient failure.
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		return "", err
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && ti.SPIFFEID != nil {
		return ti.SPIFFEID.String(), nil
	}
	return "", nil
}

func xdsClientCreds(t *testing.T) credentials.TransportCredentials {
	t.Helper()
	c, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func spiffe(sa string) string {
	return identity.ID{TrustDomain: tlsTestDomain, Namespace: tlsTestNamespace, ServiceAccount: sa}.String()
}

func (m *tlsMesh) lastCaller(t *testing.T) string {
	t.Helper()
	select {
	case id := <-m.callers:
		return id
	case <-time.After(time.Second):
		t.Fatal("the server saw no RPC")
		return ""
	}
}

// requireRefused checks that the connection failed, for one of the
// reasons given (substrings of the error).
func requireRefused(t *testing.T, err error, reasons ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("the RPC succeeded; want it refused")
	}
	if status.Code(err) == codes.Unavailable {
		for _, r := range reasons {
			if strings.Contains(err.Error(), r) {
				return
			}
		}
	}
	t.Fatalf("RPC failed with %v, want Unavailable because of one of %q", err, reasons)
}

// A plaintext client's HTTP/2 preface is a failed TLS handshake to the
// server, which closes the connection.
const closedByServer = "error reading server preface"

func TestGRPCMutualTLSStrict(t *testing.T) {
	m := startTLSMesh(t, mesh.TLSStrict, "cart", "cart")
	web := m.ca.issue(t, "web", nil)

	t.Run("mTLS client: both sides see the other's SPIFFE ID", func(t *testing.T) {
		server, err := m.call(t, &web, xdsClientCreds(t))
		if err != nil {
			t.Fatalf("RPC: %v", err)
		}
		if server != spiffe("cart") {
			t.Errorf("client saw server %q, want %q", server, spiffe("cart"))
		}
		if got := m.lastCaller(t); got != spiffe("web") {
			t.Errorf("server saw caller %q, want %q", got, spiffe("web"))
		}
	})
	t.Run("plaintext client is refused", func(t *testing.T) {
		_, err := m.call(t, nil, insecure.NewCredentials())
		requireRefused(t, err, closedByServer)
	})
	t.Run("client certificate from another CA is refused", func(t *testing.T) {
		// The client trusts the mesh's roots (so it accepts the server)
		// but its own certificate comes from another CA.
		meshRoots, err := os.ReadFile(web.CACertificateFile)
		if err != nil {
			t.Fatal(err)
		}
		foreign := newTestCA(t).issue(t, "web", meshRoots)
		_, err = m.call(t, &foreign, xdsClientCreds(t))
		// With TLS 1.3 the server checks the client's certificate after
		// the client's side of the handshake is done: the client sees the
		// server's alert, or the connection it closed.
		requireRefused(t, err, "unknown certificate authority", "broken pipe", "connection reset", closedByServer)
	})
	if len(m.callers) != 0 {
		t.Errorf("refused clients reached the handler: %d calls", len(m.callers))
	}
}

// The client checks the server's identity against the service accounts
// behind the endpoints: a server with another account's certificate is
// refused by the client.
func TestGRPCMutualTLSServerIdentityMismatch(t *testing.T) {
	m := startTLSMesh(t, mesh.TLSStrict, "cart", "impostor")
	web := m.ca.issue(t, "web", nil)
	_, err := m.call(t, &web, xdsClientCreds(t))
	requireRefused(t, err, "xds: received SANs {DNSNames: [], EmailAddresses: [], IPAddresses: [], URIs: [spiffe://cluster.local/ns/shop/sa/impostor]} do not match any of the accepted SANs")
	if len(m.callers) != 0 {
		t.Error("the impostor received the RPC")
	}
}

// PERMISSIVE is served as mutual TLS by grpc-go servers (they cannot sniff
// TLS): meshed clients work, plaintext ones are refused.
func TestGRPCMutualTLSPermissive(t *testing.T) {
	m := startTLSMesh(t, mesh.TLSPermissive, "cart", "cart")
	web := m.ca.issue(t, "web", nil)
	if _, err := m.call(t, &web, xdsClientCreds(t)); err != nil {
		t.Fatalf("mTLS RPC: %v", err)
	}
	if got := m.lastCaller(t); got != spiffe("web") {
		t.Errorf("server saw caller %q, want %q", got, spiffe("web"))
	}
	_, err := m.call(t, nil, insecure.NewCredentials())
	requireRefused(t, err, closedByServer)
}

// DISABLE: no TLS on either side. A plaintext client works, and so does a
// client with xDS credentials (it falls back to plaintext); the server sees
// no identity.
func TestGRPCMutualTLSDisabled(t *testing.T) {
	m := startTLSMesh(t, mesh.TLSDisable, "cart", "cart")
	if _, err := m.call(t, nil, insecure.NewCredentials()); err != nil {
		t.Fatalf("plaintext RPC: %v", err)
	}
	if got := m.lastCaller(t); got != "" {
		t.Errorf("server saw caller %q over plaintext", got)
	}
	web := m.ca.issue(t, "web", nil)
	server, err := m.call(t, &web, xdsClientCreds(t))
	if err != nil {
		t.Fatalf("RPC with xDS credentials: %v", err)
	}
	if server != "" || m.lastCaller(t) != "" {
		t.Errorf("TLS was used with DISABLE (server %q)", server)
	}
}

// The listener names grpc-go asks for are the ones Translate produces.
func TestGRPCServerListenerName(t *testing.T) {
	for addr, want := range map[string]string{
		"10.1.0.1:9090": "grpc/server?xds.resource.listening_address=10.1.0.1:9090",
		"[fd00::1]:443": "grpc/server?xds.resource.listening_address=[fd00::1]:443",
	} {
		if got := translate.GRPCServerListenerName(netip.MustParseAddrPort(addr)); got != want {
			t.Errorf("GRPCServerListenerName(%s) = %q, want %q", addr, got, want)
		}
	}
}
