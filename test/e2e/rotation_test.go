//go:build e2e

package e2e

import (
	"context"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/sluice-mesh/sluice/certs/agent"
	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
	"github.com/sluice-mesh/sluice/certs/trustbundle"
	"github.com/sluice-mesh/sluice/discovery"
	"github.com/sluice-mesh/sluice/test/cluster"
	"github.com/sluice-mesh/sluice/xds/bootstrap"
)

const (
	rotNamespace = "rotation"
	// rotMaxConnAge makes servers close connections this often, so that
	// clients handshake again (with the certificates of the moment) all
	// through the test instead of once.
	rotMaxConnAge = 5 * time.Second
	// rotMinRenewals is how many leaf rotations every agent must go through.
	rotMinRenewals = 5
)

var rotServices = []string{"a", "b", "c"}

// TestRotationUnderLoad: three services a, b, c (STRICT), each a one-pod
// Deployment running as its own service account with a grpc-go xDS server
// (xDS credentials), and three client pods (service accounts a, b, c) each
// calling the two other services over long-lived xDS channels, RPCs back
// to back. Every pod has a certificate agent (in process, TokenRequest
// token) that trusts what the ConfigMap sluice-ca-root Sluice publishes in
// the namespace says, renews its one-minute certificates at half life and
// follows the trust bundle over WatchTrustBundle. Servers close
// connections every 5s so handshakes use the current certificates.
//
// Under that load: every agent renews at least five times and one root
// rotation, asked for with the real `sluice ca rotate`, runs to its end
// (Idle, the old root gone from the CA and from the ConfigMap). An agent
// started in the middle of the rotation, trusting the ConfigMap of that
// moment, gets a certificate, as does one started after it. No RPC fails,
// and each server saw its caller's SPIFFE ID.
func TestRotationUnderLoad(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 9*time.Minute)
	defer cancel()

	require.NoError(t, c.CreateNamespace(ctx, rotNamespace))
	_, err := c.Client.CoreV1().Namespaces().Patch(ctx, rotNamespace, "application/merge-patch+json",
		fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"STRICT"}}}`, discovery.AnnotationTLSMode), metav1.PatchOptions{})
	require.NoError(t, err)
	clientPods := map[string]*corev1.Pod{}
	for _, name := range rotServices {
		_, err := c.Client.CoreV1().ServiceAccounts(rotNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		require.NoError(t, err)
		createRotationWorkload(ctx, t, c, name)
	}
	for _, name := range rotServices {
		clientPods[name] = createClientPod(ctx, t, c, rotNamespace, "client-"+name, name)
	}
	servers := map[string]cluster.Endpoint{}
	for _, name := range rotServices {
		servers[name] = waitReady(ctx, t, c, rotNamespace, name, 1)[0]
	}

	cp := startSluice(t, c, "--leaf-ttl=1m", "--ca-reload-interval=1s")
	trust0 := publishedTrustBundle(ctx, t, c, rotNamespace, 1)
	t.Logf("trust bundle published in %s/%s: %d root(s)", rotNamespace, trustbundle.DefaultName, countPEM(trust0))

	var agents []*rotationAgent
	clientFiles := map[string]bootstrap.CertificateFiles{}
	for _, name := range rotServices {
		pod, err := c.Client.CoreV1().Pods(rotNamespace).Get(ctx, servers[name].TargetRef.Name, metav1.GetOptions{})
		require.NoError(t, err)
		a := startRotationAgent(ctx, t, c, cp, trust0, pod)
		agents = append(agents, a)
		startRotationServer(ctx, t, cp, pod, servers[name].Addresses[0], a.files)
		cl := startRotationAgent(ctx, t, c, cp, trust0, clientPods[name])
		agents = append(agents, cl)
		clientFiles[name] = cl.files
	}

	// The load: every client calls the two other services.
	load := &rotationLoad{}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, from := range rotServices {
		for _, to := range rotServices {
			if from == to {
				continue
			}
			cc := dialRotation(t, cp, clientPods[from], clientFiles[from], to)
			load.warmUp(ctx, t, cc, from, to)
			wg.Add(1)
			go func() {
				defer wg.Done()
				load.run(loadCtx, cc, from, to)
			}()
		}
	}
	loadStart := time.Now()
	t.Logf("load running: 6 channels")

	// A root rotation, asked for with the real CLI, after a few renewals'
	// worth of steady state.
	time.Sleep(15 * time.Second)
	out, err := exec.CommandContext(ctx, sluiceBinary(t), "ca", "rotate", "--kubeconfig", c.Kubeconfig).CombinedOutput()
	require.NoError(t, err, "sluice ca rotate: %s", out)
	t.Logf("sluice ca rotate: %s", strings.TrimSpace(string(out)))

	// Follow the rotation on /debug/ca and the ConfigMap until it is done
	// and every agent renewed enough.
	var (
		phases       []phaseAt
		maxRoots     int
		lateAgents   int
		rotationDone bool
		finalBundle  []byte
	)
	deadline := loadStart.Add(5 * time.Minute)
	for {
		var dbg struct {
			Rotation struct {
				Phase              ca.Phase  `json:"phase"`
				TrustBundleVersion uint64    `json:"trustBundleVersion"`
				WaitingFor         []string  `json:"waitingFor"`
				LastError          string    `json:"lastError"`
				LastRotation       *struct{} `json:"lastRotation"`
			} `json:"rotation"`
		}
		require.NoError(t, httpJSON(cp.DebugURL+"/debug/ca", &dbg))
		r := dbg.Rotation
		if len(phases) == 0 || phases[len(phases)-1].phase != r.Phase {
			phases = append(phases, phaseAt{r.Phase, time.Now(), r.TrustBundleVersion})
			t.Logf("phase %s (bundle version %d) waiting for %v %s", r.Phase, r.TrustBundleVersion, r.WaitingFor, r.LastError)
		}
		bundle := publishedTrustBundle(ctx, t, c, rotNamespace, 0)
		maxRoots = max(maxRoots, countPEM(bundle))

		// A workload starting during the rotation (after the switch, when
		// the certificate service's own certificate is from the new root)
		// and one after it: the ConfigMap of the moment is all they trust.
		if (r.Phase == ca.PhaseWaitLeaves && lateAgents == 0) || (rotationDone && lateAgents == 1) {
			late := startRotationAgent(ctx, t, c, cp, bundle, clientPods["a"])
			t.Logf("agent started in phase %s trusting %d root(s) from the ConfigMap: certificate obtained", r.Phase, countPEM(bundle))
			late.stop()
			lateAgents++
		}
		if !rotationDone && r.Phase == ca.PhaseIdle && len(phases) > 1 {
			rotationDone = true
			finalBundle = bundle
		}
		if rotationDone && lateAgents == 2 && minRenewals(agents) >= rotMinRenewals &&
			countPEM(publishedTrustBundle(ctx, t, c, rotNamespace, 0)) == 1 {
			break
		}
		if time.Now().After(deadline) {
			stopLoad()
			wg.Wait()
			t.Fatalf("after %s: rotation done %v (phases %v), renewals %v, late agents %d; load %s\n%s",
				time.Since(loadStart).Round(time.Second), rotationDone, phases, renewals(agents), lateAgents, load, cp.logTail(40))
		}
		time.Sleep(500 * time.Millisecond)
	}
	// A little more load after the old root is gone.
	time.Sleep(3 * time.Second)
	stopLoad()
	wg.Wait()
	elapsed := time.Since(loadStart)

	// The figures.
	t.Logf("load: %s over %s", load, elapsed.Round(time.Second))
	t.Logf("renewals per agent: %v (attempts/failures: %v)", renewals(agents), agentStats(agents))
	for i, p := range phases {
		d := "-"
		if i+1 < len(phases) {
			d = phases[i+1].at.Sub(p.at).Round(100 * time.Millisecond).String()
		}
		t.Logf("  phase %-12s bundle v%d for %s (polled every 0.5s)", p.phase, p.version, d)
	}

	assert.Zero(t, load.failed.Load(), "failed RPCs: %v", load.errors())
	assert.Zero(t, load.wrongPeer.Load(), "RPCs where a side saw the wrong identity")
	assert.Greater(t, load.ok.Load(), int64(1000), "RPCs succeeded")
	assert.GreaterOrEqual(t, maxRoots, 2, "during the rotation the ConfigMap held both roots")
	require.Equal(t, 1, countPEM(finalBundle), "the old root was dropped from the ConfigMap")
	assert.NotEqual(t, string(trust0), string(finalBundle), "the ConfigMap holds the new root")
	sec, err := c.Client.CoreV1().Secrets("sluice-system").Get(ctx, ca.DefaultSecretName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, string(sec.Data[ca.FileRootCert]), string(finalBundle), "the ConfigMap holds the CA's roots")
	if len(phases) > 2 {
		t.Logf("root rotation: %s from the first phase after Idle to Idle again", phases[len(phases)-1].at.Sub(phases[1].at).Round(100*time.Millisecond))
	}

	// Why workloads need the published bundle: a pod that trusted only the
	// root it had before the rotation can no longer reach the certificate
	// service (its certificate now chains to the new root).
	stale, err := agent.NewClient(agent.ClientConfig{Address: cp.CAAddress, ServerName: mtlsCAServerName, TrustPEM: trust0, TokenFile: requestToken(ctx, t, c, clientPods["a"])})
	require.NoError(t, err)
	defer stale.Close()
	_, err = stale.CreateCertificate(ctx, csrFor(t, spiffeIn("a")), time.Hour)
	assert.Equal(t, codes.Unavailable, status.Code(err), "a client trusting only the old root: %v", err)
	assert.ErrorContains(t, err, "certificate signed by unknown authority")

	for _, ph := range []ca.Phase{ca.PhaseWaitBundle, ca.PhaseWaitLeaves} {
		assert.True(t, seenPhase(phases, ph), "phase %s seen", ph)
	}
	for _, a := range agents {
		assert.GreaterOrEqual(t, a.agent.Stats().Renewals, rotMinRenewals, "renewals of %s", a.name)
	}
}

type phaseAt struct {
	phase   ca.Phase
	at      time.Time
	version uint64
}

func (p phaseAt) String() string { return fmt.Sprintf("%s@%s", p.phase, p.at.Format("15:04:05.0")) }

func seenPhase(phases []phaseAt, ph ca.Phase) bool {
	for _, p := range phases {
		if p.phase == ph {
			return true
		}
	}
	return false
}

// publishedTrustBundle reads the ConfigMap Sluice publishes in namespace
// ns, through the API as a workload's volume would show it,
// waiting until it holds at least minRoots roots.
func publishedTrustBundle(ctx context.Context, t *testing.T, c *cluster.Cluster, ns string, minRoots int) []byte {
	t.Helper()
	var bundle []byte
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, trustbundle.DefaultName, metav1.GetOptions{})
		if !assert.NoError(ct, err) {
			return
		}
		bundle = []byte(cm.Data[trustbundle.DefaultKey])
		assert.GreaterOrEqual(ct, countPEM(bundle), max(minRoots, 1))
	}, 30*time.Second, 100*time.Millisecond, "ConfigMap %s/%s", ns, trustbundle.DefaultName)
	return bundle
}

func countPEM(b []byte) int {
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return n
		}
		n++
	}
}

// createRotationWorkload: Service name (grpc, 9443) and a one-pod
// Deployment running as service account name.
func createRotationWorkload(ctx context.Context, t *testing.T, c *cluster.Cluster, name string) {
	t.Helper()
	labels := map[string]string{"app": name}
	_, err := c.Client.CoreV1().Services(rotNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: mtlsPort, TargetPort: intstr.FromInt32(mtlsPort), AppProtocol: ptr.To("grpc")}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	createBackends(ctx, t, c, backendSpec{namespace: rotNamespace, name: name, app: name, replicas: 1, serviceAccount: name})
}

// rotationAgent is a pod's certificate agent, run as `sluice agent` runs
// it: renewal loop and trust bundle watch, files for grpc-go's
// file_watcher (refreshed every second, so applied after 2s).
type rotationAgent struct {
	name  string
	agent *agent.Agent
	files bootstrap.CertificateFiles
	stop  func()
}

func startRotationAgent(ctx context.Context, t *testing.T, c *cluster.Cluster, cp *controlPlane, trust []byte, pod *corev1.Pod) *rotationAgent {
	t.Helper()
	tokenFile := requestToken(ctx, t, c, pod)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	client, err := agent.NewClient(agent.ClientConfig{Address: cp.CAAddress, ServerName: mtlsCAServerName, TrustPEM: trust, TokenFile: tokenFile, Log: log})
	require.NoError(t, err)
	id, err := identity.New(identity.DefaultTrustDomain, pod.Namespace, pod.Spec.ServiceAccountName)
	require.NoError(t, err)
	w := agent.FileWriter{Dir: t.TempDir()}
	a, err := agent.New(agent.Config{ID: id, Issuer: client, Publishers: []agent.Publisher{w}, ApplyDelay: 2 * time.Second, Log: log})
	require.NoError(t, err)
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- a.Run(actx) }()
	go func() { done <- client.WatchTrustBundle(actx, pod.Name, a) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			<-done
			client.Close()
		})
	}
	t.Cleanup(stop)
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent of %s exited: %v", pod.Name, err)
	case <-time.After(time.Minute):
		t.Fatalf("agent of %s has no certificate after a minute: %+v", pod.Name, a.Stats())
	}
	chain, key, bundle := w.Paths()
	return &rotationAgent{
		name: pod.Name, agent: a, stop: stop,
		files: bootstrap.CertificateFiles{CertificateFile: chain, PrivateKeyFile: key, CACertificateFile: bundle, RefreshInterval: time.Second},
	}
}

// startRotationServer is startMTLSServer with connections closed every
// rotMaxConnAge (in-flight RPCs finish first).
func startRotationServer(ctx context.Context, t *testing.T, cp *controlPlane, pod *corev1.Pod, ip string, files bootstrap.CertificateFiles) {
	t.Helper()
	startMTLSServer(ctx, t, cp, pod, ip, files,
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: rotMaxConnAge, MaxConnectionAgeGrace: 30 * time.Second}))
}

// dialRotation opens a long-lived xDS channel from client pod to service
// to, with xDS credentials and the pod's certificate files.
func dialRotation(t *testing.T, cp *controlPlane, pod *corev1.Pod, files bootstrap.CertificateFiles, to string) *grpc.ClientConn {
	t.Helper()
	cfg, err := bootstrap.GRPC(bootstrap.Workload{Pod: pod.Name, Namespace: rotNamespace, ServiceAccount: pod.Spec.ServiceAccountName, XDSAddress: cp.XDSAddress})
	require.NoError(t, err)
	cfg, err = bootstrap.WithCertificateProviders(cfg, files)
	require.NoError(t, err)
	builder, err := xds.NewXDSResolverWithConfigForTesting(cfg)
	require.NoError(t, err)
	cc, err := grpc.NewClient(fmt.Sprintf("xds:///%s.%s:%d", to, rotNamespace, mtlsPort),
		grpc.WithTransportCredentials(xdsClientCredentials(t)), grpc.WithResolvers(builder))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// rotationLoad counts the RPCs of the load.
type rotationLoad struct {
	ok, failed, wrongPeer atomic.Int64
	mu                    sync.Mutex
	errs                  []string
}

func (l *rotationLoad) String() string {
	return fmt.Sprintf("%d RPCs ok, %d failed, %d with a wrong identity", l.ok.Load(), l.failed.Load(), l.wrongPeer.Load())
}

func (l *rotationLoad) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

func spiffeIn(sa string) string {
	return identity.ID{TrustDomain: identity.DefaultTrustDomain, Namespace: rotNamespace, ServiceAccount: sa}.String()
}

// call sends one RPC from client from to service to and checks both
// identities.
func (l *rotationLoad) call(ctx context.Context, cc *grpc.ClientConn, from, to string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var md metadata.MD
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md), grpc.Peer(&p)); err != nil {
		return err
	}
	server := ""
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && ti.SPIFFEID != nil {
		server = ti.SPIFFEID.String()
	}
	if caller := first(md.Get("x-caller")); caller != spiffeIn(from) || server != spiffeIn(to) {
		l.wrongPeer.Add(1)
		return fmt.Errorf("%s -> %s: server saw %q, client saw %q", from, to, caller, server)
	}
	return nil
}

// warmUp waits until the channel's first RPC succeeds (xDS resolution and
// first connection); those attempts are not counted.
func (l *rotationLoad) warmUp(ctx context.Context, t *testing.T, cc *grpc.ClientConn, from, to string) {
	t.Helper()
	var err error
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if err = l.call(ctx, cc, from, to); err == nil {
			return
		}
	}
	t.Fatalf("%s -> %s never succeeded: %v", from, to, err)
}

// run sends RPCs back to back (a short pause between them) until ctx ends.
func (l *rotationLoad) run(ctx context.Context, cc *grpc.ClientConn, from, to string) {
	for ctx.Err() == nil {
		err := l.call(ctx, cc, from, to)
		switch {
		case err == nil:
			l.ok.Add(1)
		case ctx.Err() != nil:
			return // stopped mid-RPC: not a failure
		default:
			l.failed.Add(1)
			l.mu.Lock()
			if len(l.errs) < 20 {
				l.errs = append(l.errs, fmt.Sprintf("%s %s -> %s: %v", time.Now().Format("15:04:05.000"), from, to, err))
			}
			l.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func minRenewals(agents []*rotationAgent) int {
	m := -1
	for _, a := range agents {
		if r := a.agent.Stats().Renewals; m < 0 || r < m {
			m = r
		}
	}
	return m
}

func renewals(agents []*rotationAgent) map[string]int {
	out := map[string]int{}
	for _, a := range agents {
		out[a.name] = a.agent.Stats().Renewals
	}
	return out
}

func agentStats(agents []*rotationAgent) map[string]string {
	out := map[string]string{}
	for _, a := range agents {
		s := a.agent.Stats()
		out[a.name] = fmt.Sprintf("%d/%d", s.Attempts, s.Failures)
	}
	return out
}
