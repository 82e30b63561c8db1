package agent

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	testingclock "k8s.io/utils/clock/testing"
)

// The agent renews at about half the lifetime, and while the CA is
// unreachable it retries with growing backoff and keeps the certificate it
// has.
func TestAgentRenewsAndKeepsCertificateDuringOutage(t *testing.T) {
	clock := testingclock.NewFakeClock(t0)
	c := newCA(t, clock.Now)
	var down atomic.Bool
	signer := caIssuer(c, time.Hour)
	issuer := IssuerFunc(func(ctx context.Context, csr []byte, ttl time.Duration) (*Issued, error) {
		if down.Load() {
			return nil, errors.New("connection refused")
		}
		return signer(ctx, csr, ttl)
	})
	pub := newRecorder()
	a, err := New(Config{
		ID: testID("cart"), Issuer: issuer, Publishers: []Publisher{pub}, Clock: clock,
		Rand:       func() float64 { return 0.5 }, // renew at 45% of life; backoff waits 75% of its step
		MinBackoff: time.Second, MaxBackoff: 8 * time.Second,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	first := next(t, pub.ch)
	<-a.Ready()
	assert.Equal(t, "spiffe://cluster.local/ns/shop/sa/cart", first.Leaf.URIs[0].String())
	assert.Equal(t, t0.Add(time.Hour), first.Leaf.NotAfter)
	waitIdle(t, clock, a, 1)

	// Renewal is due at 27 minutes (45% of 1h), not before.
	clock.Step(26 * time.Minute)
	assert.Never(t, func() bool { return a.Stats().Attempts > 1 }, 100*time.Millisecond, 10*time.Millisecond)
	clock.Step(time.Minute)
	second := next(t, pub.ch)
	assert.NotEqual(t, first.Leaf.SerialNumber, second.Leaf.SerialNumber)
	assert.False(t, first.Certificate.PrivateKey == second.Certificate.PrivateKey, "a new key per certificate")
	assert.Equal(t, 1, a.Stats().Renewals)
	waitIdle(t, clock, a, 2)

	// The CA goes away when the next renewal is due (27 min later).
	down.Store(true)
	clock.Step(27 * time.Minute)
	waitIdle(t, clock, a, 3)
	// Backoff: 0.75s, 1.5s, 3s, 6s, then capped at 8s → 6s each.
	for i, wait := range []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 6 * time.Second, 6 * time.Second} {
		attempts := a.Stats().Attempts
		clock.Step(wait - 10*time.Millisecond)
		assert.Never(t, func() bool { return a.Stats().Attempts > attempts }, 50*time.Millisecond, 5*time.Millisecond, "retry %d came early", i)
		clock.Step(10 * time.Millisecond)
		waitIdle(t, clock, a, attempts+1)
		assert.Same(t, second, a.Current(), "the valid certificate is kept")
	}
	assert.Equal(t, 6, a.Stats().Failures)
	assert.Equal(t, 2, pub.count(), "nothing new published during the outage")

	// The CA is back: the next retry renews.
	down.Store(false)
	clock.Step(6 * time.Second)
	third := next(t, pub.ch)
	assert.Same(t, third, a.Current())
	assert.Equal(t, 2, a.Stats().Renewals)
}

// A publisher that fails is retried with backoff, without asking the CA
// for a new certificate.
func TestAgentRetriesFailedPublisher(t *testing.T) {
	clock := testingclock.NewFakeClock(t0)
	c := newCA(t, clock.Now)
	good, bad := newRecorder(), newRecorder()
	bad.setFail(true)
	a, err := New(Config{ID: testID("cart"), Issuer: caIssuer(c, time.Hour), Publishers: []Publisher{good, bad}, Clock: clock,
		Rand: func() float64 { return 0.5 }})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	first := next(t, good.ch)
	waitIdle(t, clock, a, 1)
	select {
	case <-a.Ready():
		t.Fatal("ready although a publisher failed")
	default:
	}
	bad.setFail(false)
	clock.Step(time.Second)
	assert.Same(t, first, next(t, bad.ch))
	<-a.Ready()
	assert.Equal(t, 1, a.Stats().Attempts, "no new certificate for a publishing retry")
	assert.Equal(t, 1, good.count(), "the publisher that worked is not called again")
}

// The agent refuses a certificate that is not for its key or identity.
func TestAgentRefusesWrongCertificate(t *testing.T) {
	clock := testingclock.NewFakeClock(t0)
	c := newCA(t, clock.Now)
	other := issue(t, c, testID("web"), t0)
	a, err := New(Config{ID: testID("cart"), Clock: clock, Issuer: IssuerFunc(func(context.Context, []byte, time.Duration) (*Issued, error) {
		return &Issued{ChainPEM: other.ChainPEM, TrustBundle: TrustBundle{Version: 1, PEM: other.TrustBundlePEM}}, nil
	})})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitIdle(t, clock, a, 1)
	cancel()
	require.NoError(t, <-done)
	assert.Nil(t, a.Current())
	assert.Equal(t, 1, a.Stats().Failures)
}

// waitIdle waits until the agent made attempts attempts and sleeps.
func waitIdle(t *testing.T, clock *testingclock.FakeClock, a *Agent, attempts int) {
	t.Helper()
	require.Eventually(t, func() bool { return a.Stats().Attempts >= attempts && clock.HasWaiters() }, 10*time.Second, time.Millisecond,
		"agent did not reach %d attempts (has %d)", attempts, a.Stats().Attempts)
}
