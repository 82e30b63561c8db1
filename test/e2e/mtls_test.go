//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/sluice-mesh/sluice/certs/agent"
	"github.com/sluice-mesh/sluice/certs/authn"
	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
	"github.com/sluice-mesh/sluice/certs/wellknown"
	"github.com/sluice-mesh/sluice/discovery"
	"github.com/sluice-mesh/sluice/test/cluster"
	"github.com/sluice-mesh/sluice/xds/bootstrap"
)

const (
	mtlsNamespace = "mtls"
	// mtlsPort is where the test's xDS servers listen on their pods' IPs;
	// the backend the test kubelet runs is on grpcPort.
	mtlsPort = 9443
	// mtlsServerSA runs every server pod; mtlsClientSA and mtlsOtherSA are
	// callers.
	mtlsServerSA = "server"
	mtlsClientSA = "a"
	mtlsOtherSA  = "b"
)

// TestMTLS runs grpc-go xDS servers and clients with xDS credentials on
// the test cluster, their certificates issued by `sluice serve` to
// certificate agents (certs/agent, in process, one per workload) that
// authenticate with projected ServiceAccount tokens (TokenRequest,
// audience sluice) checked by TokenReview against the real API server.
//
// Namespace mtls says sluice.dev/tls-mode STRICT; Services strict
// (inheriting it), permissive (PERMISSIVE) and disabled (DISABLE) each
// select a one-pod Deployment running as service account "server". The
// test kubelet runs the backend on the pod's port 9090; the test runs an
// xds.NewGRPCServer on the pod's IP, port 9443, which each Service
// targets, so the endpoints Sluice sees carry the pod and its service
// account.
func TestMTLS(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()

	require.NoError(t, c.CreateNamespace(ctx, mtlsNamespace))
	_, err := c.Client.CoreV1().Namespaces().Patch(ctx, mtlsNamespace, "application/merge-patch+json",
		fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"STRICT"}}}`, discovery.AnnotationTLSMode), metav1.PatchOptions{})
	require.NoError(t, err)
	for _, sa := range []string{mtlsServerSA, mtlsClientSA, mtlsOtherSA} {
		_, err := c.Client.CoreV1().ServiceAccounts(mtlsNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	modes := map[string]string{"strict": "", "permissive": "PERMISSIVE", "disabled": "DISABLE"}
	for svc, mode := range modes {
		createMTLSService(ctx, t, c, svc, mode)
		createMTLSDeployment(ctx, t, c, svc)
	}
	clientPod := createClientPod(ctx, t, c, mtlsNamespace, "client-a", mtlsClientSA)
	servers := map[string]cluster.Endpoint{}
	for svc := range modes {
		servers[svc] = waitReady(ctx, t, c, mtlsNamespace, svc, 1)[0]
	}

	// Sluice starts once the endpoints exist, so its first snapshot has
	// them (see the report on endpoint-only updates and server listeners).
	cp := startSluice(t, c)
	root := caRoot(ctx, t, c)

	serverIDs := map[string]string{}
	for svc, ep := range servers {
		pod, err := c.Client.CoreV1().Pods(mtlsNamespace).Get(ctx, ep.TargetRef.Name, metav1.GetOptions{})
		require.NoError(t, err)
		files := runAgent(ctx, t, c, cp, root, pod)
		serverIDs[svc] = startMTLSServer(ctx, t, cp, pod, ep.Addresses[0], files)
	}
	clientFiles := runAgent(ctx, t, c, cp, root, clientPod)
	spiffeOf := func(sa string) string {
		return identity.ID{TrustDomain: identity.DefaultTrustDomain, Namespace: mtlsNamespace, ServiceAccount: sa}.String()
	}
	t.Logf("servers: %v", serverIDs)

	t.Run("STRICT from the namespace: mTLS, both sides see the other's SPIFFE ID", func(t *testing.T) {
		res := mtlsCall(ctx, t, cp, "strict", &clientFiles, xdsClientCredentials(t))
		require.NoError(t, res.err)
		assert.Equal(t, spiffeOf(mtlsClientSA), res.caller, "the server saw the caller's identity")
		assert.Equal(t, spiffeOf(mtlsServerSA), res.server, "the client saw the server's identity")
		assert.Equal(t, servers["strict"].TargetRef.Name, res.pod)
	})
	t.Run("STRICT refuses a plaintext client", func(t *testing.T) {
		res := mtlsCall(ctx, t, cp, "strict", nil, insecure.NewCredentials())
		requireMTLSRefused(t, res.err, "error reading server preface")
	})
	t.Run("STRICT refuses a client certificate from another CA", func(t *testing.T) {
		foreign := foreignCertificate(t, root)
		res := mtlsCall(ctx, t, cp, "strict", &foreign, xdsClientCredentials(t))
		requireMTLSRefused(t, res.err, "unknown certificate authority", "broken pipe", "connection reset", "error reading server preface")
	})
	t.Run("PERMISSIVE: mTLS accepted; plaintext refused by a grpc-go server", func(t *testing.T) {
		res := mtlsCall(ctx, t, cp, "permissive", &clientFiles, xdsClientCredentials(t))
		require.NoError(t, res.err)
		assert.Equal(t, spiffeOf(mtlsClientSA), res.caller)
		// grpc-go cannot accept TLS and plaintext on one port: Sluice serves
		// PERMISSIVE to proxyless servers as mTLS (docs/mtls.md).
		res = mtlsCall(ctx, t, cp, "permissive", nil, insecure.NewCredentials())
		requireMTLSRefused(t, res.err, "error reading server preface")
		// ...and says so where operators look.
		var problems struct {
			Translation []string `json:"translation"`
		}
		require.NoError(t, httpJSON(cp.DebugURL+"/debug/problems", &problems))
		assert.Contains(t, problems.Translation, fmt.Sprintf("%s/permissive: PERMISSIVE: proxyless gRPC servers of port %d accept mutual TLS only "+
			"(grpc-go cannot accept TLS and plaintext on one port); plaintext clients are refused; set sluice.dev/tls-mode DISABLE to accept them", mtlsNamespace, mtlsPort))
	})
	t.Run("DISABLE: plaintext, and xDS credentials fall back to it", func(t *testing.T) {
		res := mtlsCall(ctx, t, cp, "disabled", nil, insecure.NewCredentials())
		require.NoError(t, res.err)
		assert.Empty(t, res.caller)
		res = mtlsCall(ctx, t, cp, "disabled", &clientFiles, xdsClientCredentials(t))
		require.NoError(t, res.err)
		assert.Empty(t, res.caller, "DISABLE must not use TLS")
		assert.Empty(t, res.server)
	})
	t.Run("a token for service account a cannot get a certificate for b", func(t *testing.T) {
		tokenFile := requestToken(ctx, t, c, clientPod)
		client, err := agent.NewClient(agent.ClientConfig{
			Address: cp.CAAddress, ServerName: mtlsCAServerName, TrustPEM: root, TokenFile: tokenFile,
		})
		require.NoError(t, err)
		defer client.Close()
		for _, tt := range []struct {
			sa   string
			want codes.Code
		}{{mtlsOtherSA, codes.PermissionDenied}, {mtlsClientSA, codes.OK}} {
			_, err := client.CreateCertificate(ctx, csrFor(t, spiffeOf(tt.sa)), time.Hour)
			assert.Equal(t, tt.want, status.Code(err), "certificate for %s with a's token: %v", tt.sa, err)
		}
	})
}

// mtlsCAServerName is a name in the certificate service's certificate.
const mtlsCAServerName = "sluice.sluice-system.svc"

func createMTLSService(ctx context.Context, t *testing.T, c *cluster.Cluster, name, mode string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{
				Name: "grpc", Port: mtlsPort, TargetPort: intstr.FromInt32(mtlsPort), AppProtocol: ptr.To("grpc"),
			}},
		},
	}
	if mode != "" {
		svc.Annotations = map[string]string{discovery.AnnotationTLSMode: mode}
	}
	_, err := c.Client.CoreV1().Services(mtlsNamespace).Create(ctx, svc, metav1.CreateOptions{})
	require.NoError(t, err)
}

// createMTLSDeployment: one pod running as mtlsServerSA. Port 9443 is not
// declared, so the test kubelet leaves it to the test's xDS server.
func createMTLSDeployment(ctx context.Context, t *testing.T, c *cluster.Cluster, app string) {
	t.Helper()
	createBackends(ctx, t, c, backendSpec{namespace: mtlsNamespace, name: app, app: app, replicas: 1, serviceAccount: mtlsServerSA})
}

// createClientPod creates a bare pod in ns running as sa (a client
// workload, so its tokens can be bound to a pod) and waits until it has an IP.
func createClientPod(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name, sa string) *corev1.Pod {
	t.Helper()
	_, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName:            sa,
			TerminationGracePeriodSeconds: ptr.To(int64(1)),
			Containers:                    []corev1.Container{{Name: "app", Image: "sluice.test/backend"}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	var pod *corev1.Pod
	require.Eventually(t, func() bool {
		pod, err = c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && pod.Status.PodIP != ""
	}, time.Minute, 100*time.Millisecond, "pod %s never got an IP", name)
	return pod
}

// caRoot is the trust bundle Sluice publishes for workloads: the
// ConfigMap sluice-ca-root in their namespace (what the agent's
// --ca-trust-file mounts). It must hold the CA Secret's roots.
func caRoot(ctx context.Context, t *testing.T, c *cluster.Cluster) []byte {
	t.Helper()
	root := publishedTrustBundle(ctx, t, c, mtlsNamespace, 1)
	s, err := c.Client.CoreV1().Secrets("sluice-system").Get(ctx, ca.DefaultSecretName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, string(s.Data[ca.FileRootCert]), string(root), "the published bundle is the CA's roots")
	return root
}

// requestToken asks the API server (TokenRequest) for a token of the pod's
// service account, audience sluice, bound to the pod, as the kubelet
// projects it, and writes it to a file.
func requestToken(ctx context.Context, t *testing.T, c *cluster.Cluster, pod *corev1.Pod) string {
	t.Helper()
	tr, err := c.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{authn.DefaultAudience},
			ExpirationSeconds: ptr.To(int64(3600)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte(tr.Status.Token), 0o600))
	return path
}

// runAgent runs the certificate agent of a pod (as its sidecar would):
// the pod's token, a key made here, a certificate from `sluice serve`,
// written for grpc-go's file_watcher. It returns the files once written.
func runAgent(ctx context.Context, t *testing.T, c *cluster.Cluster, cp *controlPlane, root []byte, pod *corev1.Pod) bootstrap.CertificateFiles {
	t.Helper()
	tokenFile := requestToken(ctx, t, c, pod)
	client, err := agent.NewClient(agent.ClientConfig{Address: cp.CAAddress, ServerName: mtlsCAServerName, TrustPEM: root, TokenFile: tokenFile})
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	id, err := identity.New(identity.DefaultTrustDomain, pod.Namespace, pod.Spec.ServiceAccountName)
	require.NoError(t, err)
	w := agent.FileWriter{Dir: t.TempDir()}
	a, err := agent.New(agent.Config{
		ID: id, Issuer: client, Publishers: []agent.Publisher{w},
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent of %s exited: %v", pod.Name, err)
	case <-time.After(time.Minute):
		t.Fatalf("agent of %s has no certificate after a minute: %+v", pod.Name, a.Stats())
	}
	chain, key, bundle := w.Paths()
	return bootstrap.CertificateFiles{CertificateFile: chain, PrivateKeyFile: key, CACertificateFile: bundle, RefreshInterval: time.Second}
}

// startMTLSServer runs an xds.NewGRPCServer with xDS credentials for pod
// on ip:9443, its bootstrap made as the agent would make it, plus opts, and
// waits until Sluice has given it its listener. Every RPC answers with
// headers naming the pod and the caller's SPIFFE ID. It returns the server's
// own SPIFFE ID.
func startMTLSServer(ctx context.Context, t *testing.T, cp *controlPlane, pod *corev1.Pod, ip string, files bootstrap.CertificateFiles, opts ...grpc.ServerOption) string {
	t.Helper()
	cfg, err := bootstrap.GRPC(bootstrap.Workload{
		Pod: pod.Name, Namespace: pod.Namespace, ServiceAccount: pod.Spec.ServiceAccountName, IP: ip, XDSAddress: cp.XDSAddress,
	})
	require.NoError(t, err)
	cfg, err = bootstrap.WithCertificateProviders(cfg, files)
	require.NoError(t, err)
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	require.NoError(t, err)
	serving := make(chan error, 16)
	srv, err := xds.NewGRPCServer(append([]grpc.ServerOption{
		grpc.Creds(creds),
		xds.BootstrapContentsForTesting(cfg),
		xds.ServingModeCallback(func(_ net.Addr, args xds.ServingModeChangeArgs) {
			if args.Mode == connectivity.ServingModeServing {
				serving <- nil
			} else if args.Err != nil {
				serving <- args.Err
			}
		}),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := grpc.SetHeader(ctx, metadata.Pairs("x-pod", pod.Name, "x-caller", peerSPIFFE(ctx))); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
	}, opts...)...)
	require.NoError(t, err)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(mtlsPort)))
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	for {
		select {
		case err := <-serving:
			if err == nil {
				chain, err := os.ReadFile(files.CertificateFile)
				require.NoError(t, err)
				return leafSPIFFE(t, chain)
			}
			t.Logf("xDS server of %s not serving yet: %v", pod.Name, err)
		case <-ctx.Done():
			t.Fatalf("xDS server of %s never served: %v", pod.Name, ctx.Err())
		case <-time.After(time.Minute):
			t.Fatalf("xDS server of %s not serving after a minute\n%s", pod.Name, cp.logTail(30))
		}
	}
}

func peerSPIFFE(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && ti.SPIFFEID != nil {
			return ti.SPIFFEID.String()
		}
	}
	return ""
}

func leafSPIFFE(t *testing.T, chainPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(chainPEM)
	require.NotNil(t, block)
	leaf, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	require.Len(t, leaf.URIs, 1)
	return leaf.URIs[0].String()
}

func xdsClientCredentials(t *testing.T) credentials.TransportCredentials {
	t.Helper()
	c, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	require.NoError(t, err)
	return c
}

// mtlsResult is what one RPC showed: the pod that answered, the caller's
// identity as the server saw it, the server's as the client saw it.
type mtlsResult struct {
	pod, caller, server string
	err                 error
}

// mtlsCall dials xds:///<svc>.mtls:9443 as a proxyless client of
// namespace mtls (pod client-a), with certificate files (its bootstrap then
// has the certificate provider and says MTLS) or without, and sends one
// RPC.
func mtlsCall(ctx context.Context, t *testing.T, cp *controlPlane, svc string, files *bootstrap.CertificateFiles, creds credentials.TransportCredentials) mtlsResult {
	t.Helper()
	cfg, err := bootstrap.GRPC(bootstrap.Workload{Pod: "client-a", Namespace: mtlsNamespace, ServiceAccount: mtlsClientSA, XDSAddress: cp.XDSAddress})
	require.NoError(t, err)
	if files != nil {
		cfg, err = bootstrap.WithCertificateProviders(cfg, *files)
		require.NoError(t, err)
	}
	builder, err := xds.NewXDSResolverWithConfigForTesting(cfg)
	require.NoError(t, err)
	cc, err := grpc.NewClient(fmt.Sprintf("xds:///%s.%s:%d", svc, mtlsNamespace, mtlsPort), grpc.WithTransportCredentials(creds), grpc.WithResolvers(builder))
	require.NoError(t, err)
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var md metadata.MD
	var p peer.Peer
	// Not wait-for-ready: the RPC waits while the channel resolves and
	// connects, and fails with the connection's error once it is in
	// transient failure.
	_, err = healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md), grpc.Peer(&p))
	res := mtlsResult{err: err}
	if err != nil {
		return res
	}
	res.pod, res.caller = first(md.Get("x-pod")), first(md.Get("x-caller"))
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && ti.SPIFFEID != nil {
		res.server = ti.SPIFFEID.String()
	}
	return res
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// requireMTLSRefused checks that the RPC failed on its connection, for one
// of the reasons given.
func requireMTLSRefused(t *testing.T, err error, reasons ...string) {
	t.Helper()
	require.Error(t, err, "the RPC succeeded; want it refused")
	if status.Code(err) == codes.Unavailable {
		for _, r := range reasons {
			if strings.Contains(err.Error(), r) {
				t.Logf("refused as expected: %v", err)
				return
			}
		}
	}
	t.Fatalf("RPC failed with %v; want Unavailable because of one of %q", err, reasons)
}

// foreignCertificate is a certificate for service account a from a CA
// that is not Sluice's, with the mesh's real roots to check servers by.
func foreignCertificate(t *testing.T, meshRoot []byte) bootstrap.CertificateFiles {
	t.Helper()
	m, err := ca.Generate(ca.GenerateOptions{TrustDomain: identity.DefaultTrustDomain, Now: time.Now()})
	require.NoError(t, err)
	other, err := ca.New(m, ca.Options{})
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	issued, err := other.IssueLeaf(ca.LeafRequest{
		PublicKey: key.Public(),
		ID:        identity.ID{TrustDomain: identity.DefaultTrustDomain, Namespace: mtlsNamespace, ServiceAccount: mtlsClientSA},
		TTL:       time.Hour,
	})
	require.NoError(t, err)
	keyPEM, err := ca.EncodePrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	files := bootstrap.CertificateFiles{
		CertificateFile:   filepath.Join(dir, wellknown.CertChainFile),
		PrivateKeyFile:    filepath.Join(dir, wellknown.KeyFile),
		CACertificateFile: filepath.Join(dir, wellknown.TrustBundleFile),
		RefreshInterval:   time.Second,
	}
	for path, data := range map[string][]byte{files.CertificateFile: issued.ChainPEM, files.PrivateKeyFile: keyPEM, files.CACertificateFile: meshRoot} {
		require.NoError(t, os.WriteFile(path, data, 0o600))
	}
	return files
}

// csrFor is a PEM CSR for a SPIFFE ID.
func csrFor(t *testing.T, spiffeID string) []byte {
	t.Helper()
	id, err := identity.Parse(spiffeID)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
