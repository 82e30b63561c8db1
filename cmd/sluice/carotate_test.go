package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluice-mesh/sluice/certs/ca"
)

// `sluice ca rotate` against a running control plane (file source, CA in
// a directory): an intermediate rotation requested and followed to its
// end, a root rotation started and shown by `sluice ca status`, a second
// request refused while it runs.
func TestCARotateAndStatus(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte("tokens:\n- {token: dev-cart, namespace: shop, serviceAccount: cart}\n"), 0o600))
	caDir := filepath.Join(dir, "ca")
	cfg := parseCAFlags(t, "--ca-tokens-file="+tokens, "--ca-dir="+caDir, "--ca-dns-names=localhost", "--ca-reload-interval=50ms")
	require.NoError(t, cfg.validate(true))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	authority, err := newCertificateService(ctx, cfg, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- authority.Serve(ctx, lis) }()
	before, err := ca.DirStore{Dir: caDir}.LoadState(ctx)
	require.NoError(t, err)

	var out bytes.Buffer
	require.NoError(t, runCA(ctx, []string{"rotate", "--ca-dir=" + caDir, "--intermediate", "--wait", "--poll=20ms", "--timeout=20s"}, &out, &out), out.String())
	assert.Contains(t, out.String(), "requested a intermediate rotation")
	assert.Contains(t, out.String(), "completed a intermediate rotation")
	after, err := ca.DirStore{Dir: caDir}.LoadState(ctx)
	require.NoError(t, err)
	assert.False(t, after.Material.Signer().Equal(before.Material.Signer()), "a new intermediate")
	assert.True(t, after.Material.Roots[0].Equal(before.Material.Roots[0]), "the same root")
	require.Eventually(t, func() bool {
		return authority.Debug().(caDebug).Service.CA.Intermediates[0].SHA256 == ca.Info(after.Material.Signer()).SHA256
	}, 10*time.Second, 10*time.Millisecond, "the service signs with it")

	// A root rotation: no agent is connected, so it reaches WaitLeaves
	// (one leaf lifetime, a minute here) after the minimum bundle wait.
	out.Reset()
	require.NoError(t, runCA(ctx, []string{"rotate", "--ca-dir=" + caDir}, &out, &out))
	assert.Contains(t, out.String(), "requested a root rotation")
	require.Eventually(t, func() bool {
		st, err := ca.DirStore{Dir: caDir}.LoadState(ctx)
		return err == nil && st.Phase() == ca.PhaseWaitLeaves
	}, 10*time.Second, 10*time.Millisecond)
	out.Reset()
	require.NoError(t, runCA(ctx, []string{"status", "--ca-dir=" + caDir}, &out, &out))
	text := out.String()
	assert.Contains(t, text, "WaitLeaves (root rotation")
	assert.Contains(t, text, "Trust bundle version:  2")
	assert.Equal(t, 2, bytes.Count(out.Bytes(), []byte("\nRoot: ")), text)
	assert.Contains(t, text, "Replica ")
	assert.NotContains(t, text, "PRIVATE KEY")

	out.Reset()
	require.NoError(t, runCA(ctx, []string{"status", "--ca-dir=" + caDir, "--json"}, &out, &out))
	var status caStatus
	require.NoError(t, json.Unmarshal(out.Bytes(), &status))
	assert.Equal(t, ca.PhaseWaitLeaves, status.Phase)
	assert.Len(t, status.Roots, 2)
	assert.Equal(t, ca.Redacted, status.RootKey)
	// The authority's in-memory view follows the store within a reload.
	require.Eventually(t, func() bool {
		return authority.Debug().(caDebug).Rotation.Phase == ca.PhaseWaitLeaves
	}, 10*time.Second, 10*time.Millisecond, "/debug/ca never showed WaitLeaves")
	assert.Len(t, authority.Debug().(caDebug).Rotation.Roots, 2)

	err = runCA(ctx, []string{"rotate", "--ca-dir=" + caDir}, &out, &out)
	assert.ErrorContains(t, err, "a root rotation is in progress (phase WaitLeaves")

	assert.ErrorIs(t, runCA(ctx, []string{"spin"}, &out, &out), errUsage)
	assert.ErrorIs(t, runCA(ctx, nil, &out, &out), errUsage)
	cancel()
	require.NoError(t, <-served)
}
