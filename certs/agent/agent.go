package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-mesh/sluice/certs/identity"
)

// Issuer signs CSRs: the certificate service, seen from the agent.
type Issuer interface {
	// CreateCertificate sends a PEM CSR and returns what was issued.
	CreateCertificate(ctx context.Context, csrPEM []byte, ttl time.Duration) (*Issued, error)
}

// Issued is what the certificate service returns for a CSR.
type Issued struct {
	// ChainPEM is the certificate then the intermediates.
	ChainPEM []byte
	// TrustBundle is the service's current trust bundle.
	TrustBundle TrustBundle
}

// IssuerFunc adapts a function to Issuer.
type IssuerFunc func(ctx context.Context, csrPEM []byte, ttl time.Duration) (*Issued, error)

// CreateCertificate calls f.
func (f IssuerFunc) CreateCertificate(ctx context.Context, csrPEM []byte, ttl time.Duration) (*Issued, error) {
	return f(ctx, csrPEM, ttl)
}

// Publisher receives every new Credentials: the SDS server, the file
// writer.
type Publisher interface {
	Publish(ctx context.Context, c *Credentials) error
}

// Clock is the time the agent schedules with (k8s.io/utils/clock's clocks
// fit).
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures an Agent.
type Config struct {
	// ID is the workload's identity, put in its CSRs. Required.
	ID     identity.ID
	Issuer Issuer
	// TTL asked for; zero lets the service choose.
	TTL        time.Duration
	Publishers []Publisher
	// MinBackoff and MaxBackoff bound the wait between failed attempts
	// (1s, 1m).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// RequestTimeout bounds one request to the issuer (30s).
	RequestTimeout time.Duration
	// ApplyDelay is how long after publishing a trust bundle its consumers
	// are sure to use it, e.g. gRPC's file_watcher refresh interval: only
	// then is the bundle reported applied (AppliedTrustBundle), which tells
	// the CA it may sign with a root only that bundle trusts.
	ApplyDelay time.Duration
	Clock      Clock
	// Rand returns numbers in [0,1) for jitter; math/rand/v2 when nil.
	Rand func() float64
	Log  *slog.Logger
}

// Agent keeps a workload's credentials fresh.
type Agent struct {
	cfg Config
	log *slog.Logger

	current  atomic.Pointer[Credentials]
	ready    chan struct{}
	once     sync.Once
	mu       sync.Mutex
	attempts int
	failures int
	renewals int

	// wake interrupts Run's wait when a trust bundle arrives.
	wake chan struct{}
	// bundleMu guards the trust bundle state below.
	bundleMu sync.Mutex
	// watched is the last bundle SetTrustBundle got; watchedNew says Run
	// has yet to apply it.
	watched    *TrustBundle
	watchedNew bool
	// applied is the version published everywhere ApplyDelay ago,
	// applyErr why the last bundle could not be applied; appliedChanged is
	// closed when either changes.
	applied        uint64
	applyErr       string
	appliedChanged chan struct{}
}

// New returns an agent for cfg.
func New(cfg Config) (*Agent, error) {
	var errs []error
	if err := cfg.ID.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("workload identity: %w", err))
	}
	if cfg.Issuer == nil {
		errs = append(errs, errors.New("no issuer"))
	}
	if cfg.TTL < 0 {
		errs = append(errs, fmt.Errorf("TTL %s is negative", cfg.TTL))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("certificate agent: %w", err)
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Agent{
		cfg: cfg, log: cfg.Log.With("component", "agent", "id", cfg.ID.String()),
		ready: make(chan struct{}), wake: make(chan struct{}, 1), appliedChanged: make(chan struct{}),
	}, nil
}

// Current is the credentials in use, nil before the first.
func (a *Agent) Current() *Credentials { return a.current.Load() }

// Ready is closed once the first credentials are published everywhere.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Stats counts attempts to obtain a certificate, failed ones, and
// renewals (certificates obtained after the first).
type Stats struct{ Attempts, Failures, Renewals int }

// Stats returns the counts so far.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Stats{a.attempts, a.failures, a.renewals}
}

// Run obtains credentials and renews them until ctx ends. While the issuer
// fails it retries with exponential backoff and jitter, and the current
// credentials stay published. A trust bundle from SetTrustBundle is
// published with the current certificate at once, without waiting for the
// renewal; if the certificate does not verify to it, the certificate is
// renewed at once too. It returns nil when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	backoff := a.cfg.MinBackoff
	// unpublished lists the publishers the current credentials have yet to
	// reach; nil when all have them.
	var unpublished []Publisher
	var renewAt time.Time
	renewNow := false
	// apply is the bundle version published everywhere, to be reported
	// applied at applyAt.
	var apply *pendingApply
	for {
		failed := false
		now := a.cfg.Clock.Now()
		if c := a.current.Load(); c == nil || renewNow || !now.Before(renewAt) {
			next, err := a.obtain(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				failed = true
				a.logFailure(err, c, backoff)
			} else {
				a.current.Store(next)
				unpublished = append([]Publisher{}, a.cfg.Publishers...) // non-nil: to publish
				renewAt, renewNow = a.renewTime(next), false
				a.log.Info("obtained certificate", "serial", next.Leaf.SerialNumber.Text(16),
					"notAfter", next.Leaf.NotAfter.UTC(), "renewAt", renewAt.UTC(), "trustBundleVersion", next.TrustBundleVersion)
			}
		}
		if c := a.current.Load(); c != nil {
			if b, ok := a.takeWatched(); ok && !c.hasBundle(b) {
				next, err := c.withTrustBundle(b)
				if err != nil {
					a.log.Error("refusing the trust bundle the CA sent", "version", b.Version, "error", err)
					a.setApplied(a.appliedVersion(), err.Error())
				} else {
					a.current.Store(next)
					unpublished = append([]Publisher{}, a.cfg.Publishers...)
					a.log.Info("new trust bundle", "version", b.Version, "previous", c.TrustBundleVersion)
					if !next.verifies(now) {
						a.log.Info("the certificate does not verify to the new trust bundle; renewing it now")
						renewNow = true
					}
				}
			}
		}
		if c := a.current.Load(); c != nil && unpublished != nil {
			unpublished = a.publish(ctx, c, unpublished)
			if len(unpublished) > 0 {
				failed = true
			} else {
				unpublished = nil
				a.once.Do(func() { close(a.ready) })
				if v := c.TrustBundleVersion; v != a.appliedVersion() && (apply == nil || apply.version != v) {
					apply = &pendingApply{version: v, at: now.Add(a.cfg.ApplyDelay)}
				}
			}
		}
		if apply != nil && !now.Before(apply.at) {
			a.setApplied(apply.version, "")
			apply = nil
		}
		wait := renewAt.Sub(now)
		if renewNow {
			wait = 0
		}
		if apply != nil {
			wait = min(wait, apply.at.Sub(now))
		}
		if failed {
			wait = backoff/2 + time.Duration(a.cfg.Rand()*float64(backoff/2))
			backoff = min(2*backoff, a.cfg.MaxBackoff)
		} else {
			backoff = a.cfg.MinBackoff
		}
		if wait <= 0 {
			// Due now (a fake clock never fires After(0)).
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		case <-a.cfg.Clock.After(wait):
		}
	}
}

type pendingApply struct {
	version uint64
	at      time.Time
}

// SetTrustBundle hands the agent a trust bundle pushed by the CA. The
// latest one wins, whatever its version (a CA made anew starts again at
// 1). Run publishes it with the current certificate.
func (a *Agent) SetTrustBundle(b TrustBundle) {
	a.bundleMu.Lock()
	a.watched, a.watchedNew = &b, true
	a.bundleMu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// takeWatched returns the bundle SetTrustBundle got, once.
func (a *Agent) takeWatched() (TrustBundle, bool) {
	a.bundleMu.Lock()
	defer a.bundleMu.Unlock()
	if !a.watchedNew {
		return TrustBundle{}, false
	}
	a.watchedNew = false
	return *a.watched, true
}

// AppliedTrustBundle returns the trust bundle version published to every
// publisher at least ApplyDelay ago (0: none yet), why the last bundle
// received could not be applied (empty if it could), and a channel closed
// when either changes.
func (a *Agent) AppliedTrustBundle() (version uint64, applyErr string, changed <-chan struct{}) {
	a.bundleMu.Lock()
	defer a.bundleMu.Unlock()
	return a.applied, a.applyErr, a.appliedChanged
}

func (a *Agent) appliedVersion() uint64 {
	v, _, _ := a.AppliedTrustBundle()
	return v
}

func (a *Agent) setApplied(version uint64, applyErr string) {
	a.bundleMu.Lock()
	defer a.bundleMu.Unlock()
	if a.applied == version && a.applyErr == applyErr {
		return
	}
	a.applied, a.applyErr = version, applyErr
	close(a.appliedChanged)
	a.appliedChanged = make(chan struct{})
}

// obtain makes a key and has the issuer sign it. The trust bundle is the
// newer of the one the issuer sent and the last one pushed, and the
// certificate must verify to it: one that peers holding the newest bundle
// would refuse is refused.
func (a *Agent) obtain(ctx context.Context) (*Credentials, error) {
	a.mu.Lock()
	a.attempts++
	a.mu.Unlock()
	key, csr, err := newKeyAndCSR(a.cfg.ID)
	if err != nil {
		return nil, a.failed(err)
	}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	issued, err := a.cfg.Issuer.CreateCertificate(rctx, csr, a.cfg.TTL)
	if err != nil {
		return nil, a.failed(err)
	}
	bundle := issued.TrustBundle
	a.bundleMu.Lock()
	if w := a.watched; w != nil && w.Version >= bundle.Version {
		bundle, a.watchedNew = *w, false
	}
	a.bundleMu.Unlock()
	c, err := newCredentials(a.cfg.ID, key, issued.ChainPEM, bundle, a.cfg.Clock.Now())
	if err != nil {
		return nil, a.failed(fmt.Errorf("refusing what the CA sent: %w", err))
	}
	a.mu.Lock()
	if a.current.Load() != nil {
		a.renewals++
	}
	a.mu.Unlock()
	return c, nil
}

func (a *Agent) failed(err error) error {
	a.mu.Lock()
	a.failures++
	a.mu.Unlock()
	return err
}

// renewTime is between 40% and 50% of the remaining lifetime from now, so
// that replicas started together spread their renewals.
func (a *Agent) renewTime(c *Credentials) time.Time {
	now := a.cfg.Clock.Now()
	life := c.Leaf.NotAfter.Sub(now)
	delay := time.Duration(float64(life) * (0.5 - 0.1*a.cfg.Rand()))
	return now.Add(max(delay, time.Second))
}

// publish hands c to ps and returns those that failed.
func (a *Agent) publish(ctx context.Context, c *Credentials, ps []Publisher) []Publisher {
	var failed []Publisher
	for _, p := range ps {
		if err := p.Publish(ctx, c); err != nil {
			a.log.Error("could not publish the certificate; will retry", "publisher", fmt.Sprintf("%T", p), "error", err)
			failed = append(failed, p)
		}
	}
	return failed
}

func (a *Agent) logFailure(err error, current *Credentials, backoff time.Duration) {
	if current == nil {
		a.log.Warn("could not obtain a certificate; retrying", "error", err, "backoff", backoff)
		return
	}
	level := slog.LevelWarn
	if !a.cfg.Clock.Now().Before(current.Leaf.NotAfter) {
		level = slog.LevelError
	}
	a.log.Log(context.Background(), level, "could not renew the certificate; keeping the current one and retrying",
		"error", err, "backoff", backoff, "currentNotAfter", current.Leaf.NotAfter.UTC())
}
