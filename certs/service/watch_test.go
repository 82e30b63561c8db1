package service

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	certsv1 "github.com/sluice-mesh/sluice/certs/api/v1"
	"github.com/sluice-mesh/sluice/certs/ca"
)

// An agent's stream gets the bundle at once and each new one when the CA
// changes; its acknowledgements are recorded with its identity and pod,
// and it is forgotten when it goes.
func TestWatchTrustBundle(t *testing.T) {
	var source *ca.Source
	h := newHarness(t, func(o *Options) {
		source = ca.NewSource(o.CA())
		o.CA, o.CAChanges = source.Current, source.Changed
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := h.client.WatchTrustBundle(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tok-cart"))
	require.NoError(t, err)
	require.NoError(t, stream.Send(&certsv1.TrustBundleAck{Pod: "ignored: the token names the pod"}))

	b, err := stream.Recv()
	require.NoError(t, err)
	assert.Equal(t, uint64(1), b.Version)
	assert.Equal(t, h.ca.TrustBundlePEM(), b.TrustBundle)
	agents := waitAgents(t, h.svc, func(a []AgentStatus) bool { return len(a) == 1 && a[0].SentVersion == 1 })
	assert.Equal(t, "spiffe://cluster.local/ns/shop/sa/cart", agents[0].ID)
	assert.Equal(t, "cart-1", agents[0].Pod)
	assert.Zero(t, agents[0].AppliedVersion)
	assert.Len(t, h.svc.Agents().Lagging(1), 1)
	assertGauge(t, h, "sluice_ca_trust_bundle_lagging_agents", 1)

	require.NoError(t, stream.Send(&certsv1.TrustBundleAck{AppliedVersion: 1}))
	waitAgents(t, h.svc, func(a []AgentStatus) bool { return a[0].AppliedVersion == 1 })
	assert.Empty(t, h.svc.Agents().Lagging(1))
	assertGauge(t, h, "sluice_ca_trust_bundle_lagging_agents", 0)

	// A rotation adds a root: version 2 is pushed on the open stream.
	other, err := ca.Generate(ca.GenerateOptions{Now: time.Now()})
	require.NoError(t, err)
	m := *h.ca.Material()
	m.Roots = append(append(m.Roots[:0:0], m.Roots...), other.Roots...)
	c2, err := ca.New(&m, ca.Options{BundleVersion: 2})
	require.NoError(t, err)
	changed := h.svc.Agents().Changed()
	source.Set(c2)
	b, err = stream.Recv()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), b.Version)
	assert.Equal(t, c2.TrustBundlePEM(), b.TrustBundle)
	assert.Len(t, h.svc.Agents().Lagging(2), 1, "not applied yet")
	assertGauge(t, h, "sluice_ca_trust_bundle_version", 2)

	require.NoError(t, stream.Send(&certsv1.TrustBundleAck{AppliedVersion: 2}))
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("no change notified")
	}
	waitAgents(t, h.svc, func(a []AgentStatus) bool { return a[0].AppliedVersion == 2 })

	// An agent that cannot apply a bundle says so.
	require.NoError(t, stream.Send(&certsv1.TrustBundleAck{AppliedVersion: 2, Error: "disk full"}))
	waitAgents(t, h.svc, func(a []AgentStatus) bool { return a[0].Error == "disk full" })
	assert.Equal(t, 1.0, testutil.ToFloat64(h.svc.metrics.applyErrors))
	assert.Equal(t, 2.0, testutil.ToFloat64(h.svc.metrics.acks))
	assert.Equal(t, 2.0, testutil.ToFloat64(h.svc.metrics.pushes))

	require.NoError(t, stream.CloseSend())
	_, err = stream.Recv()
	assert.Error(t, err, "the server ends the stream when the agent does")
	waitAgents(t, h.svc, func(a []AgentStatus) bool { return len(a) == 0 })
}

// A watch is authenticated like CreateCertificate.
func TestWatchTrustBundleRefusals(t *testing.T) {
	h := newHarness(t, nil)
	for token, code := range map[string]codes.Code{
		"":                   codes.Unauthenticated,
		"Bearer nope":        codes.Unauthenticated,
		"Bearer tok-vault":   codes.Unauthenticated,
		"Bearer tok-alice":   codes.PermissionDenied,
		"Bearer tok-expired": codes.Unauthenticated,
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", token)
		}
		stream, err := h.client.WatchTrustBundle(ctx)
		require.NoError(t, err)
		_, err = stream.Recv()
		cancel()
		assert.Equal(t, code, status.Code(err), "%q: %v", token, err)
	}
	assert.Empty(t, h.svc.Agents().List())
}

// Streams end after MaxWatchAge, so that agents come back with a fresh
// token, and when the service stops.
func TestWatchTrustBundleMaxAge(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxWatchAge = 200 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := h.client.WatchTrustBundle(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tok-web"))
	require.NoError(t, err)
	_, err = stream.Recv()
	require.NoError(t, err)
	start := time.Now()
	_, err = stream.Recv()
	assert.ErrorIs(t, err, io.EOF, "ended with an OK status")
	assert.Less(t, time.Since(start), 5*time.Second)
}

func waitAgents(t *testing.T, s *Service, ok func([]AgentStatus) bool) []AgentStatus {
	t.Helper()
	var got []AgentStatus
	require.Eventually(t, func() bool { got = s.Agents().List(); return ok(got) }, 10*time.Second, 5*time.Millisecond, "agents: %+v", got)
	return got
}

func assertGauge(t *testing.T, h *harness, name string, want float64) {
	t.Helper()
	families, err := h.reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			assert.Equal(t, want, f.GetMetric()[0].GetGauge().GetValue(), name)
			return
		}
	}
	t.Errorf("no metric %s among %d", name, len(families))
}
