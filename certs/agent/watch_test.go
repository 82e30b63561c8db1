package agent

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluice-mesh/sluice/certs/authn"
	"github.com/sluice-mesh/sluice/certs/authn/authntest"
	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/service"
	"github.com/sluice-mesh/sluice/certs/wellknown"
)

// Two agents watch the trust bundle of the real certificate service over
// loopback TLS. A new bundle reaches both without a renewal (same
// certificate, new roots, in the files too); both acknowledge it and the
// service records each agent's identity, pod and version. When the
// service's own certificate moves to the new root, the agents still reach
// it, and a watch that breaks is reopened.
func TestTwoAgentsWatchTheTrustBundle(t *testing.T) {
	oldM, newM := material(t, time.Now()), material(t, time.Now())
	source := ca.NewSource(caWith(t, oldM, 1, time.Now))
	svc, addr, stop := serveFrom(t, source)
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cart := watchingAgent(ctx, t, addr, oldM, "cart")
	web := watchingAgent(ctx, t, addr, oldM, "web")
	agents := waitServiceAgents(t, svc, func(as []service.AgentStatus) bool {
		return len(as) == 2 && as[0].AppliedVersion == 1 && as[1].AppliedVersion == 1
	})
	assert.Equal(t, "spiffe://cluster.local/ns/shop/sa/cart", agents[0].ID)
	assert.Equal(t, "cart-1", agents[0].Pod)
	assert.Equal(t, "web-1", agents[1].Pod)
	first := cart.agent.Current()

	// AddRoot: both roots, version 2, pushed to both agents.
	both := &ca.Material{Roots: append(oldM.Roots[:1:1], newM.Roots...), RootKey: oldM.RootKey, Intermediates: oldM.Intermediates, IntermediateKey: oldM.IntermediateKey}
	source.Set(caWith(t, both, 2, time.Now))
	waitServiceAgents(t, svc, func(as []service.AgentStatus) bool {
		return len(as) == 2 && as[0].AppliedVersion == 2 && as[1].AppliedVersion == 2
	})
	for _, a := range []*runningAgent{cart, web} {
		c := a.agent.Current()
		assert.Equal(t, uint64(2), c.TrustBundleVersion, a.name)
		assert.Equal(t, ca.EncodeCertificates(both.Roots...), c.TrustBundlePEM, a.name)
		assert.Equal(t, 1, a.agent.Stats().Attempts, "%s: no renewal", a.name)
		onDisk, err := os.ReadFile(filepath.Join(a.dir, wellknown.TrustBundleFile))
		require.NoError(t, err)
		assert.Equal(t, c.TrustBundlePEM, onDisk, a.name)
	}
	assert.Equal(t, first.Leaf.SerialNumber, cart.agent.Current().Leaf.SerialNumber)

	// SwitchSigner: the service's certificate now chains to the new root
	// only; the agents trust it through the pushed bundle.
	switched := &ca.Material{Roots: both.Roots, RootKey: newM.RootKey, Intermediates: newM.Intermediates, IntermediateKey: newM.IntermediateKey}
	source.Set(caWith(t, switched, 2, time.Now))
	_, csr, err := newKeyAndCSR(testID("web"))
	require.NoError(t, err)
	issued, err := web.client.CreateCertificate(ctx, csr, 0)
	require.NoError(t, err, "a new handshake with the re-signed service")
	assert.Equal(t, uint64(2), issued.TrustBundle.Version)

	// DropOldRoot reaches both; cart's certificate (old chain) no longer
	// verifies to it, so cart renews at once, from the new intermediate.
	source.Set(caWith(t, &ca.Material{Roots: newM.Roots, RootKey: newM.RootKey, Intermediates: newM.Intermediates, IntermediateKey: newM.IntermediateKey}, 3, time.Now))
	waitServiceAgents(t, svc, func(as []service.AgentStatus) bool {
		return len(as) == 2 && as[0].AppliedVersion == 3 && as[1].AppliedVersion == 3
	})
	require.Eventually(t, func() bool {
		c := cart.agent.Current()
		return c.TrustBundleVersion == 3 && bytes.Equal(c.Leaf.AuthorityKeyId, newM.Signer().SubjectKeyId)
	}, 10*time.Second, 5*time.Millisecond)
	assert.True(t, cart.agent.Current().verifies(time.Now()))

	// The service restarts: the agents' watches come back.
	stop()
	source.Set(caWith(t, &ca.Material{Roots: newM.Roots, RootKey: newM.RootKey, Intermediates: newM.Intermediates, IntermediateKey: newM.IntermediateKey}, 4, time.Now))
	svc2, stop2 := serveOn(t, source, addr)
	defer stop2()
	waitServiceAgents(t, svc2, func(as []service.AgentStatus) bool {
		return len(as) == 2 && as[0].AppliedVersion == 4 && as[1].AppliedVersion == 4
	})
}

type runningAgent struct {
	name   string
	agent  *Agent
	client *Client
	dir    string
}

// watchingAgent runs an agent for sa (token tok-<sa>, pod <sa>-1) writing
// files, with its trust bundle watch.
func watchingAgent(ctx context.Context, t *testing.T, addr string, trust *ca.Material, sa string) *runningAgent {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("tok-"+sa), 0o600))
	cl, err := NewClient(ClientConfig{Address: addr, ServerName: serviceName, TrustPEM: ca.EncodeCertificates(trust.Roots...), TokenFile: tokenFile,
		WatchMinBackoff: 20 * time.Millisecond, WatchMaxBackoff: 200 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	certs := filepath.Join(dir, "certs")
	a, err := New(Config{ID: testID(sa), Issuer: cl, Publishers: []Publisher{FileWriter{Dir: certs}}, MinBackoff: 10 * time.Millisecond})
	require.NoError(t, err)
	done := make(chan error, 2)
	go func() { done <- a.Run(ctx) }()
	go func() { done <- cl.WatchTrustBundle(ctx, sa+"-1", a) }()
	t.Cleanup(func() { assert.NoError(t, <-done); assert.NoError(t, <-done) })
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("agent %s got no certificate (%+v)", sa, a.Stats())
	}
	return &runningAgent{name: sa, agent: a, client: cl, dir: certs}
}

// serveFrom runs the certificate service reading its CA from source.
func serveFrom(t *testing.T, source *ca.Source) (*service.Service, string, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	svc, stop := serveListener(t, source, lis)
	return svc, lis.Addr().String(), stop
}

func serveOn(t *testing.T, source *ca.Source, addr string) (*service.Service, func()) {
	t.Helper()
	var lis net.Listener
	require.Eventually(t, func() bool {
		var err error
		lis, err = net.Listen("tcp", addr)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	return serveListener(t, source, lis)
}

func serveListener(t *testing.T, source *ca.Source, lis net.Listener) (*service.Service, func()) {
	t.Helper()
	k8s := authntest.NewClientset(map[string]authntest.Token{
		"tok-cart": {Namespace: "shop", ServiceAccount: "cart", Audiences: []string{"sluice"}},
		"tok-web":  {Namespace: "shop", ServiceAccount: "web", Audiences: []string{"sluice"}},
	})
	svc, err := service.New(service.Options{
		CA: source.Current, CAChanges: source.Changed,
		Authenticator:   authn.NewTokenReview(k8s, "sluice"),
		ServingDNSNames: []string{serviceName},
		Log:             slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, lis) }()
	stopped := false
	return svc, func() {
		if !stopped {
			stopped = true
			cancel()
			assert.NoError(t, <-done)
		}
	}
}

func waitServiceAgents(t *testing.T, svc *service.Service, ok func([]service.AgentStatus) bool) []service.AgentStatus {
	t.Helper()
	var got []service.AgentStatus
	require.Eventually(t, func() bool { got = svc.Agents().List(); return ok(got) }, 15*time.Second, 5*time.Millisecond, "agents: %+v", got)
	return got
}
