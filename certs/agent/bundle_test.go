package agent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/sluice-mesh/sluice/certs/ca"
)

// A root rotation seen from one agent: a pushed bundle holding both roots
// is published with the current certificate at once (no renewal) and
// reported applied only ApplyDelay later; a bundle holding only the new
// root, to which the certificate does not verify, is published and the
// certificate renewed at once; a bundle that is not PEM is refused and
// reported.
func TestAgentAppliesPushedTrustBundles(t *testing.T) {
	clock := testingclock.NewFakeClock(t0)
	oldM, newM := material(t, clock.Now()), material(t, clock.Now())
	oldCA := caWith(t, oldM, 1, clock.Now)
	var signer atomic.Pointer[ca.CA]
	signer.Store(oldCA)
	issuer := IssuerFunc(func(ctx context.Context, csr []byte, ttl time.Duration) (*Issued, error) {
		return caIssuer(signer.Load(), time.Hour)(ctx, csr, ttl)
	})
	pub := newRecorder()
	a, err := New(Config{ID: testID("cart"), Issuer: issuer, Publishers: []Publisher{pub}, Clock: clock,
		Rand: func() float64 { return 0.5 }, ApplyDelay: 10 * time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	first := next(t, pub.ch)
	assert.Equal(t, uint64(1), first.TrustBundleVersion)
	waitIdle(t, clock, a, 1)
	assert.Equal(t, uint64(0), appliedVersion(a), "not applied before ApplyDelay")
	clock.Step(10 * time.Second)
	waitApplied(t, a, 1)

	// AddRoot: both roots. Same certificate, new bundle, no new request.
	both := ca.EncodeCertificates(oldM.Roots[0], newM.Roots[0])
	waiters := clock.Waiters() // the renewal timer, left behind when a bundle wakes the agent
	a.SetTrustBundle(TrustBundle{Version: 2, PEM: both})
	second := next(t, pub.ch)
	assert.Equal(t, first.Leaf.SerialNumber, second.Leaf.SerialNumber)
	assert.Equal(t, both, second.TrustBundlePEM)
	assert.Equal(t, uint64(2), second.TrustBundleVersion)
	assert.Equal(t, 1, a.Stats().Attempts)
	require.Eventually(t, func() bool { return clock.Waiters() > waiters }, 5*time.Second, time.Millisecond, "the agent waits again")
	clock.Step(9 * time.Second)
	assert.Never(t, func() bool { return appliedVersion(a) == 2 }, 50*time.Millisecond, 5*time.Millisecond)
	clock.Step(time.Second)
	stepUntilApplied(t, clock, a, 2)

	// SwitchSigner then DropOldRoot: the CA signs with the new chain and the
	// bundle loses the old root. The certificate no longer verifies: renew.
	signer.Store(caWith(t, &ca.Material{Roots: newM.Roots, RootKey: newM.RootKey, Intermediates: newM.Intermediates, IntermediateKey: newM.IntermediateKey}, 3, clock.Now))
	onlyNew := ca.EncodeCertificates(newM.Roots[0])
	a.SetTrustBundle(TrustBundle{Version: 3, PEM: onlyNew})
	third := next(t, pub.ch)
	assert.Equal(t, onlyNew, third.TrustBundlePEM, "the bundle is published first")
	fourth := next(t, pub.ch)
	assert.NotEqual(t, first.Leaf.SerialNumber, fourth.Leaf.SerialNumber, "renewed at once")
	assert.Equal(t, newM.Signer().SubjectKeyId, fourth.Leaf.AuthorityKeyId, "signed by the new intermediate")
	assert.Equal(t, uint64(3), fourth.TrustBundleVersion)
	assert.True(t, fourth.verifies(clock.Now()))

	// Garbage is refused and reported; the version stays.
	stepUntilApplied(t, clock, a, 3)
	a.SetTrustBundle(TrustBundle{Version: 4, PEM: []byte("not PEM")})
	require.Eventually(t, func() bool { _, e, _ := a.AppliedTrustBundle(); return e != "" }, 5*time.Second, time.Millisecond)
	v, applyErr, _ := a.AppliedTrustBundle()
	assert.Equal(t, uint64(3), v)
	assert.Contains(t, applyErr, "trust bundle")
	assert.Same(t, fourth, a.Current())
}

// A certificate is published with the newer of the bundle the issuer sent
// and the one pushed, and refused if it does not verify to that.
func TestAgentUsesNewestBundleForNewCertificates(t *testing.T) {
	clock := testingclock.NewFakeClock(t0)
	oldM, newM := material(t, clock.Now()), material(t, clock.Now())
	stale := caWith(t, oldM, 1, clock.Now) // a replica that has not seen the rotation
	pub := newRecorder()
	a, err := New(Config{ID: testID("cart"), Issuer: caIssuer(stale, time.Hour), Publishers: []Publisher{pub}, Clock: clock,
		Rand: func() float64 { return 0.5 }})
	require.NoError(t, err)
	a.SetTrustBundle(TrustBundle{Version: 2, PEM: ca.EncodeCertificates(oldM.Roots[0], newM.Roots[0])})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	first := next(t, pub.ch)
	assert.Equal(t, uint64(2), first.TrustBundleVersion, "the pushed bundle is newer than the issuer's")
	//lint:ignore SA1019 the pool is built from PEM here, never the system pool
	assert.Len(t, first.Roots.Subjects(), 2) //nolint:staticcheck // counting roots

	cancel()
	require.NoError(t, <-done)

	// Pushed: only the new root. The stale replica's certificate is
	// refused: peers holding the new bundle would refuse it.
	b, err := New(Config{ID: testID("cart"), Issuer: caIssuer(stale, time.Hour), Clock: clock, Rand: func() float64 { return 0.5 }})
	require.NoError(t, err)
	b.SetTrustBundle(TrustBundle{Version: 3, PEM: ca.EncodeCertificates(newM.Roots[0])})
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- b.Run(ctx) }()
	waitIdle(t, clock, b, 1)
	cancel()
	require.NoError(t, <-done)
	assert.Nil(t, b.Current())
	assert.Positive(t, b.Stats().Failures)
	assert.Equal(t, b.Stats().Attempts, b.Stats().Failures, "every certificate refused")
}

func material(t *testing.T, now time.Time) *ca.Material {
	t.Helper()
	m, err := ca.Generate(ca.GenerateOptions{TrustDomain: "cluster.local", Now: now})
	require.NoError(t, err)
	return m
}

func caWith(t *testing.T, m *ca.Material, version uint64, now func() time.Time) *ca.CA {
	t.Helper()
	c, err := ca.New(m, ca.Options{Now: now, BundleVersion: version})
	require.NoError(t, err)
	return c
}

func appliedVersion(a *Agent) uint64 {
	v, _, _ := a.AppliedTrustBundle()
	return v
}

func waitApplied(t *testing.T, a *Agent, version uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return appliedVersion(a) == version }, 5*time.Second, time.Millisecond,
		"applied version stays %d, want %d", appliedVersion(a), version)
}

// stepUntilApplied moves the clock a second at a time until the agent
// reports version applied: the agent's wait may start after a step.
func stepUntilApplied(t *testing.T, clock *testingclock.FakeClock, a *Agent, version uint64) {
	t.Helper()
	require.Eventually(t, func() bool {
		if appliedVersion(a) == version {
			return true
		}
		clock.Step(time.Second)
		return false
	}, 5*time.Second, 20*time.Millisecond, "applied version stays %d, want %d", appliedVersion(a), version)
}
