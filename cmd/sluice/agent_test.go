package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluice-mesh/sluice/certs/ca"
)

// The file source, end to end: `sluice serve`'s certificate service with a
// tokens file and a CA directory, and `sluice agent` getting a certificate
// from it, writing files, the gRPC bootstrap and serving SDS.
func TestAgentAgainstFileSourceCertificateService(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte("tokens:\n- {token: dev-cart, namespace: shop, serviceAccount: cart}\n"), 0o600))
	caDir := filepath.Join(dir, "ca")
	cfg := parseCAFlags(t, "--ca-tokens-file="+tokens, "--ca-dir="+caDir, "--ca-dns-names=localhost")
	require.NoError(t, cfg.validate(true))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := newCertificateService(ctx, cfg, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- svc.Serve(ctx, lis) }()
	assert.Contains(t, svc.Debug().(caDebug).Service.Authenticator, "DEVELOPMENT ONLY")

	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("dev-cart"), 0o600))
	certDir := filepath.Join(dir, "certs")
	bootstrapFile := filepath.Join(dir, "grpc", "bootstrap.json")
	sock := filepath.Join(dir, "sds", "sds.sock")
	stdout, stderr := &syncWriter{}, &syncWriter{}
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- runAgent(ctx, []string{
			"--ca-address=" + lis.Addr().String(), "--ca-server-name=localhost",
			"--ca-trust-file=" + filepath.Join(caDir, ca.FileRootCert), "--token-file=" + tokenFile,
			"--namespace=shop", "--service-account=cart",
			"--cert-dir=" + certDir, "--grpc-bootstrap=" + bootstrapFile, "--sds-socket=" + sock,
			"--xds-address=127.0.0.1:15010", "--name=cart-1", "--grpc-certificate-refresh=100ms",
		}, stdout, stderr)
	}()

	require.Eventually(t, func() bool { _, err := os.Stat(bootstrapFile); return err == nil }, 20*time.Second, 20*time.Millisecond, "stderr: %s", stderr)
	chain, err := ca.ParseCertificates(mustRead(t, filepath.Join(certDir, "cert-chain.pem")))
	require.NoError(t, err)
	assert.Equal(t, "spiffe://cluster.local/ns/shop/sa/cart", chain[0].URIs[0].String())
	fi, err := os.Stat(filepath.Join(certDir, "key.pem"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	bs := string(mustRead(t, bootstrapFile))
	assert.Contains(t, bs, `"certificate_providers"`)
	assert.Contains(t, bs, filepath.Join(certDir, "cert-chain.pem"))
	assert.Contains(t, bs, `"SERVICE_ACCOUNT": "cart"`)
	fi, err = os.Stat(sock)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket, fi.Mode().Type())

	// The agent watches the trust bundle and acknowledges it once gRPC's
	// refresh interval has passed.
	require.Eventually(t, func() bool {
		agents := svc.Debug().(caDebug).Service.Agents
		return len(agents) == 1 && agents[0].Pod == "cart-1" && agents[0].AppliedVersion == 1
	}, 20*time.Second, 20*time.Millisecond, "stderr: %s", stderr)
	assert.Equal(t, "spiffe://cluster.local/ns/shop/sa/cart", svc.Debug().(caDebug).Service.Agents[0].ID)

	cancel()
	require.NoError(t, <-agentDone)
	require.NoError(t, <-served)
}

func TestAgentConfigValidate(t *testing.T) {
	parse := func(args ...string) agentConfig {
		var c agentConfig
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		c.addFlags(fs)
		require.NoError(t, fs.Parse(args))
		return c
	}
	assert.NoError(t, parse("--ca-trust-file=r.pem", "--cert-dir=/tmp/x").validate())
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no trust":           {[]string{"--cert-dir=/x"}, "--ca-trust-file is required"},
		"no output":          {[]string{"--ca-trust-file=r"}, "nothing to hand"},
		"bootstrap no files": {[]string{"--ca-trust-file=r", "--sds-socket=/s", "--grpc-bootstrap=/b"}, "needs --cert-dir"},
		"bad address":        {[]string{"--ca-trust-file=r", "--cert-dir=/x", "--ca-address=nope"}, "--ca-address"},
	} {
		assert.ErrorContains(t, parse(tc.args...).validate(), tc.want, name)
	}
}

func TestAgentIdentityFromToken(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	// header.{"sub":"system:serviceaccount:shop:cart"}.sig
	require.NoError(t, os.WriteFile(tok, []byte("e30.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDpjYXJ0In0.c2ln"), 0o600))
	id, err := agentIdentity(agentConfig{tokenFile: tok, trustDomain: "cluster.local"})
	require.NoError(t, err)
	assert.Equal(t, "spiffe://cluster.local/ns/shop/sa/cart", id.String())
	id, err = agentIdentity(agentConfig{tokenFile: tok, trustDomain: "cluster.local", serviceAccount: "web"})
	require.NoError(t, err)
	assert.Equal(t, "spiffe://cluster.local/ns/shop/sa/web", id.String(), "flags win")
	_, err = agentIdentity(agentConfig{tokenFile: filepath.Join(t.TempDir(), "none"), trustDomain: "cluster.local"})
	assert.Error(t, err)
}

// syncWriter is an io.Writer safe for the agent's logger and the test.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
