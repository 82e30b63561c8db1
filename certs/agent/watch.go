package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	certsv1 "github.com/sluice-mesh/sluice/certs/api/v1"
)

// BundleTarget applies the trust bundles a watch receives: the Agent.
type BundleTarget interface {
	// SetTrustBundle hands over a bundle the CA pushed.
	SetTrustBundle(TrustBundle)
	// AppliedTrustBundle is the version applied, why the last bundle could
	// not be (empty if it could), and a channel closed when they change.
	AppliedTrustBundle() (version uint64, applyErr string, changed <-chan struct{})
}

// WatchTrustBundle keeps a WatchTrustBundle stream to the certificate
// service open until ctx ends: it hands every bundle received to target
// and acknowledges each version target reports applied, so that the CA
// knows which bundle this agent holds. pod names the agent in the CA's
// /debug. A failed stream is reopened with backoff; a stream the server
// ends (its maximum age) at once. It returns nil when ctx ends.
func (c *Client) WatchTrustBundle(ctx context.Context, pod string, target BundleTarget) error {
	backoff := c.watchMin
	for {
		opened := time.Now()
		received, err := c.watchOnce(ctx, pod, target)
		if ctx.Err() != nil {
			return nil
		}
		if received && time.Since(opened) > c.watchMax {
			backoff = c.watchMin // the stream was healthy for a while
		}
		wait := time.Duration(rand.Float64() * float64(100*time.Millisecond))
		if err != nil {
			wait = backoff/2 + time.Duration(rand.Float64()*float64(backoff/2))
			backoff = min(2*backoff, c.watchMax)
			c.log.Warn("trust bundle watch failed; reconnecting", "error", err, "in", wait)
		} else {
			backoff = c.watchMin
			c.log.Debug("the certificate service ended the trust bundle watch; reconnecting")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// watchOnce runs one stream until it fails or the server ends it (nil). It
// says whether a bundle was received.
func (c *Client) watchOnce(ctx context.Context, pod string, target BundleTarget) (bool, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.WatchTrustBundle(sctx)
	if err != nil {
		return false, fmt.Errorf("opening the trust bundle watch: %w", err)
	}
	version, applyErr, changed := target.AppliedTrustBundle()
	if err := stream.Send(&certsv1.TrustBundleAck{Pod: pod, AppliedVersion: version, Error: applyErr}); err != nil {
		return false, fmt.Errorf("trust bundle watch: %w", err)
	}
	type result struct {
		received bool
		err      error
	}
	done := make(chan result, 1)
	go func() {
		received := false
		for {
			b, err := stream.Recv()
			if err != nil {
				done <- result{received, err}
				return
			}
			received = true
			c.trust(b.GetTrustBundle())
			target.SetTrustBundle(TrustBundle{Version: b.GetVersion(), PEM: b.GetTrustBundle()})
		}
	}()
	for {
		select {
		case r := <-done:
			if errors.Is(r.err, io.EOF) {
				return r.received, nil
			}
			return r.received, fmt.Errorf("trust bundle watch: %w", r.err)
		case <-changed:
			v, e, ch := target.AppliedTrustBundle()
			changed = ch
			if v == version && e == applyErr {
				continue
			}
			version, applyErr = v, e
			if err := stream.Send(&certsv1.TrustBundleAck{Pod: pod, AppliedVersion: version, Error: applyErr}); err != nil {
				// The receiving goroutine reports why the stream broke.
				cancel()
				r := <-done
				return r.received, fmt.Errorf("trust bundle watch: %w", errors.Join(err, r.err))
			}
		}
	}
}
